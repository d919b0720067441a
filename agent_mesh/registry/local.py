"""This host's slice, `~/.agents/local.toml`: rebuilt from live tmux under a lock.

Several tmux servers may run on one host (`tmux -L work`), each with the hooks
loaded. Every entry records its server's socket, and a hook rewrites only the
entries of the server it runs in (rescan, on, off); agent-discover rebuilds from
every live server that has entries (plus the current one) and drops the entries
of servers that are gone. After every write the merged registry.toml is
re-assembled under the same lock, so two hooks can't assemble in the wrong order.

The hook runs all of this (a quarter of the bash tool's time is the budget):
plain dicts of strings, os and time only; tomllib only for a hand-edited file.
"""

from __future__ import annotations

import os

from agent_mesh import __version__, paths
from agent_mesh.clock import now_iso
from agent_mesh.fsutil import locked
from agent_mesh.registry.naming import self_alias, server_part
from agent_mesh.registry.scan import build_tables, scan_windows, server_socket
from agent_mesh.registry.toml import (
    Table,
    dump_tables,
    ensure_agents_dir,
    parse_slice,
    read_text,
    write_file,
)
from agent_mesh.registry.view import assemble

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from agent_mesh.tmux import Tmux


def _slice_lock() -> str:
    return os.path.join(paths.agents_dir(), "local.toml.lock")


def in_session(table: Mapping[str, object], session: str) -> bool:
    """Does this entry belong to the session given by name or by `$id`?"""
    return table.get("session") == session or (
        bool(table.get("session_id")) and table.get("session_id") == session
    )


def _on(table: Mapping[str, object], sockets: set[str]) -> bool:
    """Is this entry on one of these servers? An entry from before sockets were
    recorded counts as the default server's."""
    socket = str(table.get("socket", ""))
    if socket:
        return socket in sockets
    return any(not server_part(s) for s in sockets)


def _sockets(tmux: Tmux, windows: Iterable[Mapping[str, str]]) -> set[str]:
    return {server_socket(tmux), *(w["socket_path"] for w in windows)}


def _order(item: tuple[str, Table]) -> tuple[str, str, int, str]:
    table = item[1]
    index = str(table.get("target", "")).rpartition(":")[2]
    return (str(table.get("socket", "")), str(table.get("session", "")),
            int(index) if index.isdigit() else 0, item[0])


def write_slice(tables: Mapping[str, Table], host: str, old_text: str) -> dict[str, Table]:
    """Write local.toml (callers hold the slice lock), entries in a stable order
    (server, session, index) so a rewrite with nothing new changes nothing.
    Returns the tables in that order."""
    ordered = dict(sorted(tables.items(), key=_order))
    header = [
        "agent-mesh: this host's agents, rewritten by the tmux hooks. Do not edit;",
        'advertise yourself with: agent-self-identify --role "..." --scope "..."',
    ]
    meta = {"host": host, "generated": now_iso(), "version": __version__}
    text = dump_tables(header, {"slice": {"meta": meta}, "agents": ordered})
    if _content(text) != _content(old_text):  # unchanged: keep the inode, push nothing
        write_file(paths.local_slice(), text.encode("utf-8"))
    return ordered


def _content(text: str) -> list[str]:
    """A slice's lines without the generation stamp: what peers care about."""
    return [line for line in text.splitlines() if not line.startswith("generated = ")]


def rescan(tmux: Tmux, every_server: bool = False) -> dict[str, Table]:
    """Rebuild this server's entries from live tmux (authoritative for it) and
    return them; other servers' entries stay as they are. every_server (what
    agent-discover does): rebuild the whole slice, rescanning every other server
    that has entries and still answers (a server that is gone loses its entries),
    and return all of it."""
    host = self_alias()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = read_text(paths.local_slice())
        previous, trusted = parse_slice(old_text) or ({}, False)
        windows = scan_windows(tmux)
        seen = _sockets(tmux, windows)
        if not every_server:
            kept = {a: t for a, t in previous.items() if not _on(t, seen)}
        else:
            from agent_mesh.errors import WireError
            from agent_mesh.tmux import Tmux

            kept = {}
            others = {str(t.get("socket", "")) for t in previous.values()} - seen - {""}
            for socket in sorted(others):
                other = Tmux(socket_path=socket, binary=tmux.binary)
                try:
                    found = scan_windows(other)
                except WireError:  # not known to be gone: keep what we had
                    kept.update({a: t for a, t in previous.items() if t.get("socket") == socket})
                    continue
                found = [w for w in found if w["socket_path"] not in seen]
                seen |= {socket, *(w["socket_path"] for w in found)}
                windows += found
        fresh = build_tables(windows, host, set(kept), now_iso(), previous, trusted)
        tables = write_slice({**kept, **fresh}, host, old_text)
        assemble(tables)
    return tables if every_server else fresh


def register_session(tmux: Tmux, session: str) -> tuple[dict[str, Table], int]:
    """Re-register one session (name or `$id`) of this server; every other entry
    stays as it is. Returns its entries and how many live windows it has (0: no
    such session). A local.toml that does not parse is rebuilt from tmux instead."""
    host = self_alias()
    now = now_iso()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = read_text(paths.local_slice())
        parsed = parse_slice(old_text)
        windows = scan_windows(tmux)
        ours = [w for w in windows if session in (w["session_name"], w["session_id"])]
        if parsed is None:
            tables = build_tables(windows, host, set(), now)
            fresh = {a: t for a, t in tables.items() if in_session(t, session)}
        else:
            previous, trusted = parsed
            mine = _sockets(tmux, windows)
            kept = {a: t for a, t in previous.items()
                    if not (_on(t, mine) and in_session(t, session))}
            fresh = build_tables(ours, host, set(kept), now, previous, trusted)
            tables = {**kept, **fresh}
        assemble(write_slice(tables, host, old_text))
    return fresh, len(ours)


def unregister_session(tmux: Tmux, session: str) -> list[str]:
    """Drop one session's entries on this server (it closed); returns the removed
    addresses. A local.toml that does not parse is rebuilt from tmux instead."""
    host = self_alias()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = read_text(paths.local_slice())
        parsed = parse_slice(old_text)
        if parsed is None:
            tables = build_tables(scan_windows(tmux), host, set(), now_iso())
            removed: list[str] = []
        else:
            previous = parsed[0]
            mine = {server_socket(tmux)}
            removed = [a for a, t in previous.items() if _on(t, mine) and in_session(t, session)]
            tables = {a: t for a, t in previous.items() if a not in removed}
        assemble(write_slice(tables, host, old_text))
    return removed


# What a running tmux hook's processes have in their argv: the launcher (sh), its
# fast path (python -c '… agent_mesh.cli.hook …') and its slow path (the console script).
HOOK_MARKS = (b"agent-mesh/hooks/tmux-event", b"agent_mesh.cli.hook", b"agent-register-hook")


def wait_for_hooks(timeout: float = 3.0) -> None:
    """Let the tmux hooks running now (this HOME's) finish their write, for at most
    timeout: a window made a moment ago is then registered. A hook just forked may
    not show yet, so no hook must be seen for a short while before this returns."""
    import time

    from agent_mesh.procs import running

    env = b"HOME=" + os.fsencode(paths.home())
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if running(HOOK_MARKS, env):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 0.15:
            break
        time.sleep(0.02)
    try:  # a rescan holding the lock finishes its write first
        with locked(_slice_lock(), timeout=max(0.0, deadline - time.monotonic())):
            pass
    except (TimeoutError, OSError):
        pass
