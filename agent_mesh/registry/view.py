"""The registry as the rest of the program sees it: addresses and Agent values.

The files themselves are built and written by `agent_mesh.registry.store`, which the
tmux hook imports and which therefore works on plain dicts with as few imports
as possible; this module turns those tables into `model.Agent` values, reads
with tomllib, and resolves addresses for senders.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Iterable, Mapping

from agent_mesh import __version__, paths
from agent_mesh.errors import UnknownAgent, UsageError
from agent_mesh.fsutil import atomic_write
from agent_mesh.model import Agent
from agent_mesh.registry import store
from agent_mesh.registry.store import (
    ADDRESS_MAX,
    SCAN_FIELDS,
    SLUG_MAX,
    dump_tables,
    host_part,
    infer_role,
    infer_scope,
    is_scratch_session,
    is_valid_address,
    now_iso,
    scan_windows,
    self_alias,
    slug,
    toml_key,
    toml_string,
)
from agent_mesh.tmux import Tmux

__all__ = [
    "ADDRESS_MAX",
    "SCAN_FIELDS",
    "SLUG_MAX",
    "agents_from",
    "assemble",
    "dump_tables",
    "host_part",
    "infer_role",
    "infer_scope",
    "is_scratch_session",
    "is_valid_address",
    "load_agents",
    "now_iso",
    "paths",
    "read_slice_file",
    "read_toml",
    "register_session",
    "rescan",
    "resolve",
    "scan_windows",
    "self_alias",
    "slug",
    "toml_key",
    "toml_string",
    "unregister_session",
]


def _agents(tables: Mapping[str, Mapping[str, object]]) -> dict[str, Agent]:
    return {address: Agent.from_table(address, dict(t)) for address, t in tables.items()}


def read_toml(path: str | os.PathLike[str]) -> dict[str, object]:
    """Parse a TOML file; a missing file is empty; invalid TOML raises UsageError."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return _parse(data, path)


def _parse(data: bytes, path: object) -> dict[str, object]:
    try:
        return store.parse_toml(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise UsageError(
            f"{path} is not valid TOML ({exc}); run agent-discover to rebuild it"
        ) from exc


def agents_from(doc: Mapping[str, object]) -> dict[str, Agent]:
    """The agents of a parsed registry file (malformed entries skipped)."""
    return _agents(store.tables_from(doc))


def load_agents(path: str | os.PathLike[str] | None = None) -> dict[str, Agent]:
    """The agents of a registry file (default: the merged registry.toml, cached)."""
    if path is None:
        return _agents(_registry_tables())
    return agents_from(read_toml(path))


def _registry_tables() -> dict[str, dict[str, object]]:
    """registry.toml's entries, through a marshal cache keyed by the file's identity.

    Importing tomllib costs ~13 ms here, more than a local delivery's tmux calls,
    while the registry only changes when windows come and go. The cache holds the
    parsed tables with the (inode, size, mtime, version) of the file they came
    from, read from the same descriptor, so any rewrite of registry.toml (always a
    rename, so a new inode) or a hand edit makes it miss.
    """
    path = paths.registry_file()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, __version__)
        cached = _read_cache(key)
        if cached is not None:
            return cached
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    tables = {a: dict(t) for a, t in store.tables_from(_parse(b"".join(chunks), path)).items()}
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        atomic_write(paths.registry_cache(), marshal.dumps((key, tables)), mode=0o600)
    except OSError:
        pass  # a cache that can't be written only costs the next reader a parse
    return tables


def _read_cache(key: tuple[object, ...]) -> dict[str, dict[str, object]] | None:
    try:
        with open(paths.registry_cache(), "rb") as fh:
            cached_key, tables = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if cached_key != key or not isinstance(tables, dict):
        return None
    return tables


def read_slice_file(path: str | os.PathLike[str]) -> tuple[dict[str, object], dict[str, Agent]]:
    """A stored slice's `[slice.meta]` table and its agents (a missing file is empty)."""
    try:
        meta, tables = store.read_slice(os.fspath(path))
    except ValueError as exc:  # not TOML
        raise UsageError(
            f"{path} is not valid TOML ({exc}); run agent-discover to rebuild it"
        ) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return meta, _agents(tables)


def rescan(tmux: Tmux) -> dict[str, Agent]:
    """Rebuild this host's whole slice from live tmux (authoritative)."""
    return _agents(store.rescan(tmux))


def register_session(tmux: Tmux, session: str) -> dict[str, Agent]:
    """Re-register one session (name or `$id`); other sessions' entries stay as they are."""
    return _agents(store.register_session(tmux, session))


def unregister_session(session: str, tmux: Tmux | None = None) -> list[str]:
    """Drop one session's entries (it closed); returns the removed addresses."""
    return store.unregister_session(session, tmux)


def assemble() -> dict[str, Agent]:
    """Rewrite registry.toml from local.toml and the peers' last good slices."""
    return agents_from(store.parse_toml(store.assemble()))


def resolve(address: str, agents: Mapping[str, Agent] | None = None) -> Agent:
    """Find an agent by address, or raise UnknownAgent with close matches."""
    table = load_agents() if agents is None else agents
    agent = table.get(address)
    if agent is not None:
        owner = address_owner(address, _mesh_aliases(table))
        if owner is not None and owner != agent.host:
            err = UnknownAgent(address)
            err.args = (f"'{address}' belongs to host {owner} (the longest host alias it starts "
                        f"with), yet the registry has it on {agent.host}; not delivering there. "
                        f"Rename that window on {agent.host}, or sync once {owner} is back",)
            raise err
        return agent
    import difflib

    close = difflib.get_close_matches(address, list(table), n=3, cutoff=0.6)
    close += [a for a in table if address and address in a and a not in close][: 3 - len(close)]
    raise UnknownAgent(address, close)


def address_owner(address: str, aliases: Iterable[str]) -> str | None:
    """The host an address belongs to: the LONGEST alias whose `<alias>-` starts it.

    Aliases may prefix each other (`peer`, `peer-2`): `peer-2-prod-deploy` is
    peer-2's even while peer-2 is down and `peer` lists a window of that name.
    """
    best, best_len = None, -1
    for alias in aliases:
        part = host_part(alias)
        if len(part) > best_len and address.startswith(part + "-"):
            best, best_len = alias, len(part)
    return best


def _mesh_aliases(table: Mapping[str, Agent]) -> set[str]:
    """Every host alias known here: this host, peers.conf, and the registry's hosts."""
    aliases = {agent.host for agent in table.values()}
    aliases.add(self_alias())
    try:
        with open(paths.peers_conf(), encoding="utf-8") as fh:
            aliases.update(line.split("#", 1)[0].strip() for line in fh)
    except (OSError, UnicodeDecodeError):
        pass
    aliases.discard("")
    return aliases
