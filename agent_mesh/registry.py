"""The registry: addresses, this host's slice, and the merged view.

`local.toml` holds this host's agents (one table per tmux window) and is rebuilt
from live tmux under a lock; `registry.toml` is this slice merged with the last
good slice of every peer. Read with tomllib; written by a small emitter here
rather than tomlkit, whose import alone (~27 ms) would more than double the
hook's run time. The emitter writes only strings and booleans, and the tests
check that tomllib and tomlkit read back exactly what was written.

Stays stdlib-only (and re-free): the tmux hook imports it.
"""

from __future__ import annotations

import contextlib
import socket
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from agent_mesh import __version__, paths
from agent_mesh.errors import UnknownAgent, UsageError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Agent
from agent_mesh.tmux import Tmux, fields_format, parse_records

SLUG_MAX = 40
ADDRESS_MAX = 128
_ADDRESS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_SHELLS = frozenset({"bash", "zsh", "fish", "sh", "dash", "ksh", "tcsh", "csh"})

# Scratch sessions the bash tool never registers; kept for compatibility.
_SCRATCH_NAMES = frozenset({"scratch", "tmp", "temp", "test"})

SCAN_FIELDS = (
    "session_id",
    "session_name",
    "window_id",
    "window_index",
    "window_name",
    "pane_id",
    "pane_current_command",
    "pane_current_path",
    "@agent-role",
    "@agent-scope",
)


# --- identity and addresses -------------------------------------------------


def self_alias() -> str:
    """This host's name in the mesh: first line of self.conf, else `hostname -s`."""
    try:
        first = paths.self_conf().read_text(encoding="utf-8").splitlines()[0]
        alias = "".join(first.split())
        if alias:
            return alias
    except (OSError, IndexError, UnicodeDecodeError):
        pass
    return socket.gethostname().split(".")[0]


def slug(name: str) -> str:
    """Lowercase; every run of non-alphanumerics becomes one `-`; at most 40 chars."""
    out: list[str] = []
    for ch in name.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out)[:SLUG_MAX].strip("-")


def is_valid_address(address: str) -> bool:
    return (
        0 < len(address) <= ADDRESS_MAX
        and address[0].isalnum()
        and all(ch in _ADDRESS_CHARS for ch in address)
    )


def host_part(alias: str) -> str:
    """The host alias as it appears in addresses (kept as is when already safe)."""
    return alias if is_valid_address(alias) else (slug(alias) or "host")


def is_scratch_session(name: str) -> bool:
    return name in _SCRATCH_NAMES or name.startswith(("test-", "_"))


def _unique(base: str, taken: set[str]) -> str:
    address, n = base, 2
    while address in taken:
        address = f"{base}-{n}"
        n += 1
    taken.add(address)
    return address


def infer_role(command: str, session: str, window: str) -> str:
    where = f"{session}:{window}"
    if command in ("claude", "claude-code"):
        return f"Claude Code agent in {where}"
    if command == "codex":
        return f"Codex agent in {where}"
    if command in _SHELLS:
        return f"Shell agent in {where}"
    if not command:
        return f"CLI agent in {where}"
    return f"{command} agent in {where}"


def infer_scope(path: str, target: str) -> str:
    return f"Window target {target}; current path {path}" if path else f"Window target {target}"


# --- TOML -------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"
}


def toml_string(value: str) -> str:
    """A TOML basic string; control characters escaped, lone surrogates replaced."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    """Bare when possible (so the bash tool's sed/awk still read the file), else quoted."""
    return key if key and all(ch in _BARE_KEY_CHARS for ch in key) else toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


def dump_tables(
    header: Iterable[str], groups: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> str:
    """Emit `# header` lines then `[group.name]` tables of scalar key = value pairs."""
    lines = [f"# {line}" for line in header]
    for group, tables in groups.items():
        for name, table in tables.items():
            lines.append("")
            lines.append(f"[{toml_key(group)}.{toml_key(name)}]")
            lines.extend(f"{toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file; a missing file is empty; invalid TOML raises UsageError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{path} is not valid TOML ({exc}); run agent-discover to rebuild it"
        ) from exc


def agents_from(doc: Mapping[str, object]) -> dict[str, Agent]:
    agents = doc.get("agents", {})
    if not isinstance(agents, dict):
        return {}
    return {
        address: Agent.from_table(address, table)
        for address, table in agents.items()
        if isinstance(table, dict)
    }


def load_agents(path: Path | None = None) -> dict[str, Agent]:
    """The agents of a registry file (default: the merged registry.toml)."""
    return agents_from(read_toml(path or paths.registry_file()))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- this host's slice ------------------------------------------------------


def _slice_lock() -> Path:
    return paths.agents_dir() / "local.toml.lock"


def scan_windows(tmux: Tmux) -> list[dict[str, str]]:
    """Every window of the tmux server in one call ([] when no server runs)."""
    result = tmux.run("list-windows", "-a", "-F", _scan_format(), check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace")
        if "no server running" in err or "error connecting to" in err:
            return []
        tmux.run("list-windows", "-a")  # re-run checked for a uniform WireError
    return parse_records(result.stdout, SCAN_FIELDS)


def _scan_format() -> str:
    return fields_format(SCAN_FIELDS)


def build_agents(
    windows: Iterable[Mapping[str, str]],
    host: str,
    previous: Mapping[str, Agent],
    taken: set[str],
    now: str,
) -> dict[str, Agent]:
    """Turn scanned windows into addressed agents.

    Windows are taken in (session, index) order so duplicate slugs get the same
    `-2`, `-3` suffixes on every rescan; `updated` is kept when nothing changed.
    """
    prefix = host_part(host)
    agents: dict[str, Agent] = {}
    ordered = sorted(windows, key=lambda w: (w["session_name"], int(w["window_index"] or 0)))
    for w in ordered:
        session, index, name = w["session_name"], w["window_index"], w["window_name"]
        if is_scratch_session(session):
            continue
        base = f"{prefix}-{slug(session) or 'session'}-{slug(name) or f'win{index}'}"
        address = _unique(base, taken)
        target = f"{session}:{index}"
        command = w["pane_current_command"]
        agent = Agent(
            address=address,
            host=host,
            target=target,
            session=session,
            window=name,
            role=w["@agent-role"] or infer_role(command, session, name),
            scope=w["@agent-scope"] or infer_scope(w["pane_current_path"], target),
            pane_id=w["pane_id"],
            command=command,
            updated=now,
            session_id=w["session_id"],
            window_id=w["window_id"],
        )
        old = previous.get(address)
        if old is not None and replace(old, updated=now) == agent:
            agent = old
        agents[address] = agent
    return agents


def write_slice(agents: Mapping[str, Agent], host: str) -> None:
    header = [
        "agent-mesh: this host's agents, rewritten by the tmux hooks. Do not edit;",
        'advertise yourself with: agent-self-identify --role "..." --scope "..."',
    ]
    meta = {"host": host, "generated": now_iso(), "version": __version__}
    text = dump_tables(
        header,
        {"slice": {"meta": meta}, "agents": {a: ag.to_table() for a, ag in agents.items()}},
    )
    atomic_write(paths.local_slice(), text.encode("utf-8"))


def _read_local_for_update() -> dict[str, Agent]:
    """The current slice; a corrupt one is treated as empty (it is being rebuilt)."""
    try:
        return load_agents(paths.local_slice())
    except UsageError:
        return {}


def rescan(tmux: Tmux) -> dict[str, Agent]:
    """Rebuild this host's whole slice from live tmux (authoritative)."""
    host = self_alias()
    with locked(_slice_lock()):
        previous = _read_local_for_update()
        agents = build_agents(scan_windows(tmux), host, previous, set(), now_iso())
        write_slice(agents, host)
    assemble()
    return agents


def _in_session(agent: Agent, session: str) -> bool:
    return agent.session == session or (bool(agent.session_id) and agent.session_id == session)


def register_session(tmux: Tmux, session: str) -> dict[str, Agent]:
    """Re-register one session (name or `$id`); other sessions' entries stay as they are."""
    host = self_alias()
    with locked(_slice_lock()):
        previous = _read_local_for_update()
        kept = {a: ag for a, ag in previous.items() if not _in_session(ag, session)}
        windows = [
            w for w in scan_windows(tmux) if session in (w["session_name"], w["session_id"])
        ]
        fresh = build_agents(windows, host, previous, set(kept), now_iso())
        write_slice({**kept, **fresh}, host)
    assemble()
    return fresh


def unregister_session(session: str) -> list[str]:
    """Drop one session's entries (it closed); returns the removed addresses."""
    host = self_alias()
    with locked(_slice_lock()):
        previous = _read_local_for_update()
        removed = [a for a, ag in previous.items() if _in_session(ag, session)]
        if removed:
            write_slice({a: ag for a, ag in previous.items() if a not in removed}, host)
    assemble()
    return removed


# --- the merged view --------------------------------------------------------


def _registry_lock() -> Path:
    return paths.agents_dir() / "registry.toml.lock"


def read_slice_file(path: Path) -> tuple[dict[str, object], dict[str, Agent]]:
    """A stored slice's `[slice.meta]` table and its agents."""
    doc = read_toml(path)
    slice_tables = doc.get("slice", {})
    meta = slice_tables.get("meta", {}) if isinstance(slice_tables, dict) else {}
    return (meta if isinstance(meta, dict) else {}), agents_from(doc)


def assemble() -> dict[str, Agent]:
    """Write registry.toml: this host's slice, then each peer's last good slice.

    A peer slice whose meta says `stale = true` marks its agents stale with the
    time it was last fetched, so they stay addressable through a network blip.
    This host's own agents win any address clash.
    """
    merged: dict[str, Agent] = {}
    sources: list[str] = []
    with locked(_registry_lock()):
        with contextlib.suppress(UsageError):
            merged.update(load_agents(paths.local_slice()))
        sources.append(self_alias())
        slice_dir = paths.slices_dir()
        peer_files = sorted(slice_dir.glob("*.toml")) if slice_dir.is_dir() else []
        for path in peer_files:
            try:
                meta, agents = read_slice_file(path)
            except UsageError:
                continue
            sources.append(path.stem)
            stale = bool(meta.get("stale"))
            seen = str(meta.get("fetched", ""))
            for address, agent in agents.items():
                if address in merged:
                    continue
                merged[address] = replace(agent, stale=stale, last_seen=seen if stale else "")
        header = [
            "agent-mesh registry: assembled from every host's ~/.agents/local.toml. Do not edit.",
            f"Mesh: {' '.join(sources)}",
            f"Last assembled: {now_iso()}",
        ]
        text = dump_tables(header, {"agents": {a: ag.to_table() for a, ag in merged.items()}})
        atomic_write(paths.registry_file(), text.encode("utf-8"))
    return merged


def resolve(address: str, agents: Mapping[str, Agent] | None = None) -> Agent:
    """Find an agent by address, or raise UnknownAgent with close matches."""
    table = load_agents() if agents is None else agents
    agent = table.get(address)
    if agent is not None:
        return agent
    import difflib

    close = difflib.get_close_matches(address, list(table), n=3, cutoff=0.6)
    close += [a for a in table if address and address in a and a not in close][: 3 - len(close)]
    raise UnknownAgent(address, close)
