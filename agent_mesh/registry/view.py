"""The merged view: registry.toml assembled from this host's slice and the peers'
last good slices, read back as `model.Agent` values, and addresses resolved.

`assemble` runs on the hook's path (lean imports; the peers' part is cached so
tomllib is needed only when a peer slice changed); `load_agents` runs on every
notify-pane (a marshal cache of registry.toml keyed by the file's identity).
Delivery (delivery/paste.py) checks, under the pane's lock and in the same tmux
call as the pane's state, that an entry's pane still sits in the entry's window,
else the registry is out of date (UnknownAddress, exit 2).
"""

from __future__ import annotations

import marshal
import os

from agent_mesh import __version__, paths
from agent_mesh.clock import now_iso
from agent_mesh.errors import UnknownAddress, UnknownAgent, UsageError
from agent_mesh.fsutil import locked
from agent_mesh.model import Agent
from agent_mesh.registry.naming import (
    SCRATCH_RULE,
    fold,
    host_part,
    mesh_aliases,
    scratch_session_in,
    self_alias,
)
from agent_mesh.registry.toml import (
    SLICE_FIELDS,
    clean_table,
    comment,
    ensure_agents_dir,
    parse_slice,
    parse_toml,
    read_own,
    read_text,
    table_lines,
    tables_from,
    write_file,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs ~1 ms of every message's start
    from collections.abc import Iterable, Mapping


# --- assembling registry.toml ---------------------------------------------------


def _registry_lock() -> str:
    return os.path.join(paths.agents_dir(), "registry.toml.lock")


def peer_slice_files() -> list[str]:
    """`~/.agents/slices/<peer>.toml`, sorted (hidden and temp files skipped)."""
    slices = paths.slices_dir()
    try:
        names = os.listdir(slices)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        os.path.join(slices, n) for n in names if n.endswith(".toml") and not n.startswith(".")
    )


def read_slice(path: str) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """A stored slice's `[slice.meta]` table and its agents (ValueError if not TOML)."""
    doc = parse_toml(read_text(path))
    slice_tables = doc.get("slice", {})
    meta = slice_tables.get("meta", {}) if isinstance(slice_tables, dict) else {}
    return (meta if isinstance(meta, dict) else {}), tables_from(doc)


_PEER_CACHE = ".peers.cache"


def _peer_signature(files: list[str]) -> str:
    """Identity of every peer slice file: name, inode, mtime and size.

    Slices are replaced by rename, so any rewrite changes the inode.
    """
    parts = [f"v{__version__}"]
    for path in files:
        st = os.stat(path)
        name = os.path.basename(path).encode("utf-8", "surrogateescape").hex()
        parts.append(f"{name}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    return " ".join(parts)


def _render_peers(files: list[str]) -> tuple[list[str], list[list[str]]]:
    """Parse the peer slices: their aliases and their tables as emitted lines.

    The first peer (by file name) to claim an address keeps it. A slice whose
    meta says `stale = true` marks its agents stale with the time it was last
    fetched, so they stay addressable through a network blip.
    """
    sources: list[str] = []
    blocks: list[list[str]] = []
    seen_addresses: set[str] = set()
    for path in files:
        try:
            meta, tables = read_slice(path)
        except (OSError, ValueError):
            continue
        sources.append(os.path.basename(path)[: -len(".toml")])
        stale = bool(meta.get("stale"))
        fetched = str(meta.get("fetched", ""))
        for address, table in tables.items():
            if address in seen_addresses:
                continue
            seen_addresses.add(address)
            entry = clean_table(table, SLICE_FIELDS)
            if stale:
                entry["stale"] = True
                if fetched:
                    entry["last_seen"] = fetched
            blocks.append(table_lines(address, entry))
    return sources, blocks


def _peer_section() -> tuple[list[str], list[list[str]]]:
    """The peers' part of registry.toml, re-parsed only when a slice file changed.

    Parsing needs tomllib (~13 ms to import) and every peer file, on every
    hook; the rendered result is cached in ~/.agents/.peers.cache under the
    signature of the files it came from, with a checksum so a damaged cache is
    rebuilt rather than copied into registry.toml.
    """
    files = peer_slice_files()
    if not files:
        return [], []
    try:
        signature = _peer_signature(files)
    except OSError:  # a slice vanished meanwhile: don't cache this round
        return _render_peers(files)
    from binascii import crc32

    cache = os.path.join(paths.agents_dir(), _PEER_CACHE)
    try:
        head, checksum, body = read_text(cache).split("\n", 2)
        if head == signature and checksum == f"{crc32(body.encode()):08x}":
            lines = body.split("\n")
            sources = lines[0].split("\t") if lines[0] else []
            blocks: list[list[str]] = []
            for line in lines[1:]:
                if line.startswith("["):
                    blocks.append([line])
                elif line and blocks:
                    blocks[-1].append(line)
            return sources, blocks
    except (OSError, ValueError):
        pass
    sources, blocks = _render_peers(files)
    body = "\t".join(comment(s)[2:].replace("\t", "?") for s in sources) + "\n"
    body += "".join(line + "\n" for block in blocks for line in block)
    text = f"{signature}\n{crc32(body.encode()):08x}\n{body}"
    write_file(cache, text.encode("utf-8"))
    return sources, blocks


def assemble(local: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """Write registry.toml: this host's slice, then each peer's last good slice.

    `local` is the slice just written (callers that hold the slice lock pass it,
    so two hooks can't assemble in the wrong order); without it local.toml is
    read. This host's own agents win any address clash. Returns the text written.
    """
    ensure_agents_dir()
    with locked(_registry_lock()):
        if local is None:
            local = (parse_slice(read_text(paths.local_slice())) or ({}, False))[0]
        lines = [
            comment("agent-mesh registry: assembled from every host's ~/.agents/local.toml."
                    " Do not edit."),
            "",  # the Mesh: line, once the peers are known
            comment(f"Last assembled: {now_iso()}"),
        ]
        mine = set()
        for address, table in local.items():
            block = table_lines(address, clean_table(table, SLICE_FIELDS))
            mine.add(block[0])
            lines.append("")
            lines.extend(block)
        sources, blocks = _peer_section()
        lines[1] = comment(f"Mesh: {' '.join([self_alias(), *sources])}")
        for block in blocks:
            if block[0] not in mine:
                lines.append("")
                lines.extend(block)
        text = "\n".join(lines) + "\n"
        write_file(paths.registry_file(), text.encode("utf-8"))
    return text


def reassemble() -> dict[str, Agent]:
    """Rewrite registry.toml from local.toml and the peers' last good slices."""
    return agents_from(parse_toml(assemble()))


# --- reading it ------------------------------------------------------------------


def agents_of(tables: Mapping[str, Mapping[str, object]]) -> dict[str, Agent]:
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
    """What we wrote (local.toml, registry.toml) is read back without tomllib (~7 ms of
    a peer's delivery); anything else (a hand edit) through it."""
    try:
        text = data.decode("utf-8")
        own = read_own(text)
        return dict(own) if own is not None else parse_toml(text)
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise UsageError(
            f"{path} is not valid TOML ({exc}); run agent-discover to rebuild it"
        ) from exc


def agents_from(doc: Mapping[str, object]) -> dict[str, Agent]:
    """The agents of a parsed registry file (malformed entries skipped)."""
    return agents_of(tables_from(doc))


def load_agents(path: str | os.PathLike[str] | None = None) -> dict[str, Agent]:
    """The agents of a registry file (default: the merged registry.toml, cached)."""
    if path is None:
        return agents_of(_registry_tables())
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
    tables = {a: dict(t) for a, t in tables_from(_parse(b"".join(chunks), path)).items()}
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        write_file(paths.registry_cache(), marshal.dumps((key, tables)))
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
        meta, tables = read_slice(os.fspath(path))
    except ValueError as exc:  # not TOML
        raise UsageError(
            f"{path} is not valid TOML ({exc}); run agent-discover to rebuild it"
        ) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return meta, agents_of(tables)


# --- resolving addresses -----------------------------------------------------------


def resolve(address: str, agents: Mapping[str, Agent] | None = None) -> Agent:
    """Find an agent by address (case-insensitively when that is unambiguous), or
    raise UnknownAgent saying why: a scratch session, or close matches."""
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
    folded = [a for a in table if fold(a) == fold(address)]
    if len(folded) == 1:
        return table[folded[0]]
    hosts = sorted({self_alias(), *(a.host for a in table.values())}, key=len, reverse=True)
    scratch = scratch_session_in(address.lower(), hosts)
    if scratch:
        raise UnknownAddress(
            address,
            f"unknown agent '{address}': {SCRATCH_RULE}; rename it: "
            f"tmux rename-session -t {scratch} work",
        )
    raise UnknownAgent(address, _close_matches(address, table, hosts))


def _close_matches(address: str, table: Mapping[str, Agent], hosts: list[str]) -> list[str]:
    """Up to three addresses like this one. Within a host, what follows the host's
    part is compared: `vm-` alone makes every address of vm look alike, and a closed
    session's address would get unrelated ones."""
    import difflib

    prefix = next((p for p in (host_part(h) + "-" for h in hosts) if address.startswith(p)), "")
    tails = {a[len(prefix):]: a for a in table if a.startswith(prefix)}
    close = [tails[t] for t in difflib.get_close_matches(address[len(prefix):], list(tails),
                                                          n=3, cutoff=0.6)]
    close += [a for a in table if address and address in a and a not in close][: 3 - len(close)]
    return close


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


def not_its_own(alias: str, address: str, host: object, aliases: Iterable[str]) -> str:
    """Why an entry that `alias` sent as its own is not (another `host`, an address
    outside `<alias>-`, or one under a longer alias such as `peer-2` for `peer`); ''
    when it is. A peer speaks only for itself: its slice (sync) and its status rows."""
    if host != alias:
        return f"{address} claims host {str(host)[:40]!r}"
    if not address.startswith(host_part(alias) + "-"):
        return f"{address} is not an address of {alias}"
    owner = address_owner(address, {*aliases, alias})
    if owner != alias:
        return f"{address} belongs to {owner} (the longer alias)"
    return ""


def _mesh_aliases(table: Mapping[str, Agent]) -> set[str]:
    """Every host alias known here: this host, peers.conf, and the registry's hosts."""
    return {*mesh_aliases(strict=False), *(agent.host for agent in table.values())}
