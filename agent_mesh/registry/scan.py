"""tmux → registry entries: one `list-windows -a` call per server, addressed.

Addresses never move: a window keeps the address it was given (matched by its
server, session and window ids) for as long as its names still lead to that
address, so closing `dup:0` never hands `…-dup-w` to `dup:1`, and a newcomer
whose slug collides with a holder's (`a-b`+`c` vs `a`+`b-c`) gets the `-2`.

On the hook's path: os only (plus tmux, naming, toml, clock).
"""

from __future__ import annotations

import os

from agent_mesh.clock import is_stamp
from agent_mesh.registry.naming import (
    base_address,
    derives_from,
    infer_role,
    is_scratch_session,
    unique,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from agent_mesh.registry.toml import Table
    from agent_mesh.tmux import Tmux

# What one `list-windows -a` call reads for every window. `#{@agent-role}` is
# looked up by tmux in the window's options, then the session's, then the
# global session options (`set -g`): the precedence wanted (window option over
# session option over inferred). One quirk of tmux's lookup: a *global window*
# option (`set -gw @agent-role ...`) counts as the window's own and so beats
# session options; use `set -g` for a global default.
SCAN_FIELDS = (
    "session_id",
    "session_name",
    "window_id",
    "window_index",
    "window_name",
    "pane_id",
    "pane_current_command",
    "@agent-role",
    "@agent-scope",
    "socket_path",
)


def server_socket(tmux: Tmux) -> str:
    """The socket path of the server `tmux` talks to, worked out as tmux does
    (no tmux call: the server may be gone): -S, else $TMUX, else the default
    socket in $TMUX_TMPDIR (resolved, as tmux resolves it)."""
    if tmux.socket_path:
        return tmux.socket_path
    inside = os.environ.get("TMUX", "")
    if inside:
        return inside.split(",")[0]
    base = os.path.realpath(os.environ.get("TMUX_TMPDIR") or "/tmp")
    return os.path.join(base, f"tmux-{os.getuid()}", "default")


def scan_windows(tmux: Tmux) -> list[dict[str, str]]:
    """Every window of the tmux server in one call ([] when no server runs).

    A server whose last session just closed answers `no current target` until it
    exits: the hooks of that last close often reach it then, so that too means
    no windows (not a failure that would leave the closed windows registered).
    """
    from agent_mesh.errors import TornRecord, WireError
    from agent_mesh.tmux import fields_format, parse_records

    for attempt in range(3):  # a torn record (a foreground program changing): read again
        result = tmux.run("list-windows", "-a", "-F", fields_format(SCAN_FIELDS), check=False)
        if result.returncode != 0:
            if server_is_gone(result.stderr) or b"no current target" in result.stderr:
                return []
            raise WireError(f"tmux list-windows failed: {result.error_line}")
        try:
            return parse_records(result.stdout, SCAN_FIELDS)
        except TornRecord:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def server_is_gone(stderr: bytes) -> bool:
    """Does tmux's error say no server listens on the socket?"""
    err = stderr.decode("utf-8", "replace")
    return "no server running" in err or (
        "error connecting to" in err and ("No such file" in err or "refused" in err)
    )


def _window_order(w: Mapping[str, str]) -> tuple[str, int]:
    index = w["window_index"]
    return w["session_name"], int(index) if index.isdigit() else 0


def identity(table: Mapping[str, object]) -> tuple[str, str, str]:
    """What an address is held by: server, session and window ids."""
    return (str(table.get("socket", "")), str(table.get("session_id", "")),
            str(table.get("window_id", "")))


def build_tables(
    windows: Iterable[Mapping[str, str]],
    host: str,
    taken: set[str],
    now: str,
    previous: Mapping[str, Mapping[str, object]] | None = None,
    stamps_trusted: bool = True,
) -> dict[str, Table]:
    """Turn scanned windows into addressed tables.

    A window that held an address in `previous` (the last slice) keeps it while
    its names still lead there; the others take the first free `-N` in
    (session, index) order. `updated` is kept from `previous` for a table that
    is otherwise unchanged (when stamps_trusted: the file was ours).
    """
    held: dict[tuple[str, str, str], list[str]] = {}
    for address, entry in (previous or {}).items():
        if entry.get("window_id"):
            held.setdefault(identity(entry), []).append(address)
    pending: list[tuple[str, Table]] = []
    claimed: dict[int, str] = {}
    ordered = [w for w in sorted(windows, key=_window_order)
               if not is_scratch_session(w["session_name"])]
    for n, w in enumerate(ordered):
        session, index, name = w["session_name"], w["window_index"], w["window_name"]
        base = base_address(host, w["socket_path"], session, name, index)
        target = f"{session}:{index}"
        command = w["pane_current_command"]
        table: Table = {
            "host": host,
            "target": target,
            "session": session,
            "window": name,
            "role": w["@agent-role"] or infer_role(command, session, name),
            "scope": w["@agent-scope"],  # empty unless set: a guessed scope is noise
            "pane_id": w["pane_id"],
            "command": command,
            "updated": now,
            "session_id": w["session_id"],
            "window_id": w["window_id"],
            "socket": w["socket_path"],
        }
        pending.append((base, table))
        for address in held.get(identity(table), ()):
            if address not in taken and derives_from(address, base):
                taken.add(address)
                claimed[n] = address
                break
    tables: dict[str, Table] = {}
    for n, (base, table) in enumerate(pending):
        address = claimed.get(n) or unique(base, taken)
        old = (previous or {}).get(address) if stamps_trusted else None
        if old is not None:
            stamp = str(old.get("updated", ""))
            if is_stamp(stamp) and {**old, "updated": now} == table:
                table["updated"] = stamp
        tables[address] = table
    return tables
