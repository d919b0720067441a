"""What this host's agents are doing, and what their panes show: read-only.

`local_status` answers for every agent of this host's slice in one tmux call per
server (`list-panes`, then each agent pane's state in the same command list), and
`peek` reads a pane's last lines, each on the agent's own server (its entry's
socket). Nothing here types into a pane.

`since`, when the state last changed, is as good as can be known without a
daemon: a small per-host cache (~/.agents/state.cache, marshal, 0600, replaced
atomically, rewritten only when a state changed; marshal rather than JSON as json's
import costs a local status ~5 ms of its 100 ms budget) remembers
each agent's state at the previous status call. A state that is unchanged keeps
its old `since`. A new or changed state is dated by the window's last output
(tmux `#{window_activity}`): the state is read from the screen, which has not
changed since then; but never earlier than the previous call that saw the old
state. An agent never seen before is dated by its last output alone.
"""

from __future__ import annotations

import marshal
import os
import time

from agent_mesh import paths
from agent_mesh.clock import iso
from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.pane import is_pane_id, read_states, read_states_after
from agent_mesh.delivery.state import PaneState
from agent_mesh.errors import MeshError, Outcome, PaneGone, WireError, printable
from agent_mesh.fsutil import locked
from agent_mesh.model import Agent
from agent_mesh.tmux import Tmux, fields_format, parse_records

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a peer's rpc an import
    from typing import Any

KINDS = ("idle", "working", "drafting", "waiting", "shell", "running", "dead", "gone",
         "unreachable")
MAX_PEEK_LINES = 10000
MAX_PEEK_BYTES = 4 * 1024 * 1024  # 10000 lines of 400 columns; anything more is cut
_PANE_FIELDS = ("pane_id", "window_activity", "pane_dead")


def live_panes(tmux: Tmux) -> dict[str, dict[str, str]]:
    """Every pane of this host's tmux server ({} when no server runs), in one call."""
    result = tmux.run("list-panes", "-a", "-F", fields_format(_PANE_FIELDS), check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace")
        if "no server running" in err or "error connecting to" in err:
            return {}
        raise WireError(f"tmux list-panes failed: {result.error_line}")
    return {r["pane_id"]: r for r in parse_records(result.stdout, _PANE_FIELDS)}


def server_of(agent: Agent) -> Tmux:
    """The agent's own tmux server (its entry's socket), as delivery uses: pane ids are
    numbered per server, so another server's %0 is another pane."""
    return Tmux(socket_path=agent.socket or None)


def local_status(agents: list[Agent]) -> list[dict[str, Any]]:
    """One row per agent of this host: address, host, state, since, program, role, detail.
    Each tmux server is asked about its own agents' panes (one list-panes each)."""
    by_server: dict[str, list[Agent]] = {}
    for agent in agents:
        by_server.setdefault(agent.socket, []).append(agent)
    panes: dict[str, dict[str, dict[str, str]]] = {}
    found: dict[str, dict[str, str]] = {}
    for socket, on_it in by_server.items():
        panes[socket], here = _read_server(server_of(on_it[0]), on_it)
        found.update(here)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for agent in agents:
        status = found.get(agent.address) or {
            "state": "gone", "program": "", "detail": "its window is closed (registry entry only)"
        }
        activity = panes[agent.socket].get(agent.pane_id, {}).get("window_activity", "")
        rows.append({
            "address": agent.address, "host": agent.host, "state": status["state"],
            "since": 0.0, "program": status["program"] or agent.command, "role": agent.role,
            "detail": status["detail"], "pane": agent.pane_id, "target": agent.target,
            "activity": float(activity) if activity.isdigit() else 0.0,
        })
    _date_states(rows, now)
    for row in rows:
        row["since"] = iso(row["since"])
        del row["activity"]
    return rows


def _read_server(tmux: Tmux, agents: list[Agent]) -> tuple[dict[str, dict[str, str]],
                                                            dict[str, dict[str, str]]]:
    """(every pane of the server, the status of each agent whose pane is among them),
    from one tmux call: list-panes and then the agents' panes, which a pane closed
    meanwhile cuts short (those after it are read again, in one more call). No
    list-panes output (no server, tmux failed): live_panes says which, as before."""
    targets = [a.pane_id for a in agents if is_pane_id(a.pane_id)]
    head, states = read_states_after(tmux, ("list-panes", "-a", "-F", fields_format(_PANE_FIELDS)),
                                     targets)
    if head is None:
        panes = live_panes(tmux)
        return panes, statuses(tmux, [a for a in agents if a.pane_id in panes])
    panes = {r["pane_id"]: r for r in parse_records(head, _PANE_FIELDS)}
    live = [a for a in agents if a.pane_id in panes]
    missing = [a for a in live if a.pane_id not in states]
    found = statuses(tmux, missing) if missing else {}
    found.update((a.address, _status_of(states[a.pane_id])) for a in live
                 if a.pane_id in states)
    return panes, found


def statuses(tmux: Tmux, agents: list[Agent]) -> dict[str, dict[str, str]]:
    """{"state", "program", "detail"} of each agent's pane (address -> status), from the
    one classifier that delivery uses, plus `gone` for a pane that no longer exists; the
    panes read in as few tmux calls as fit (delivery/pane.read_states)."""
    states = read_states(tmux, [agent.pane_id or agent.target for agent in agents])
    return {agent.address: _status_of(states[agent.pane_id or agent.target])
            for agent in agents}


def _status_of(state: PaneState | MeshError) -> dict[str, str]:
    if isinstance(state, PaneGone):
        return {"state": "gone", "program": "", "detail": "its pane no longer exists"}
    if isinstance(state, MeshError):
        return {"state": "gone" if Outcome.of_error(state) == Outcome.UNKNOWN
                else "unknown", "program": "",
                "detail": str(state)}
    from agent_mesh.delivery.turns import combine  # the agent's own hooks, where installed

    status = combine(state, classify(state))
    return {"state": status.kind, "program": status.program, "detail": status.detail}


# --- since: the per-host state cache ---------------------------------------------------


def state_cache() -> str:
    return os.path.join(paths.agents_dir(), "state.cache")


def _date_states(rows: list[dict[str, Any]], now: float) -> None:
    """Set each row's `since` (epoch) from the cache and tmux activity; update the cache."""
    try:
        with open(state_cache(), "rb") as fh:
            cache = marshal.load(fh)
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError, EOFError, TypeError):
        cache = {}
    fresh: dict[str, list[Any]] = {}
    for row in rows:
        key = f"{row['address']} {row['pane']}"
        prev = cache.get(key)
        if not (isinstance(prev, list) and len(prev) == 3
                and all(isinstance(v, (int, float)) for v in prev[1:])):
            prev = None  # a cache from elsewhere or hand-edited: start afresh
        if prev is not None and prev[0] == row["state"]:
            since = float(prev[1])
        else:
            since = row["activity"] or now
            if prev is not None:
                since = max(since, float(prev[2]))
        row["since"] = min(since, now)
        fresh[key] = [row["state"], row["since"], now]
    if {k: v[0] for k, v in fresh.items()} == {
        k: v[0] for k, v in cache.items() if isinstance(v, list) and v
    }:
        return  # nothing changed: the old times still hold (`checked` only gets coarser)
    try:
        with locked(state_cache() + ".lock", timeout=1.0):
            _replace(state_cache(), marshal.dumps(fresh))
    except (OSError, TimeoutError):
        pass  # without the cache, `since` falls back to the last output


def _replace(path: str, data: bytes) -> None:
    """Atomic for readers (a rename) but, unlike fsutil.atomic_write, no fsync: a cache
    lost in a crash only costs `since` its precision, and fsync costs a status call
    milliseconds on a busy disk."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- peek ---------------------------------------------------------------------------


def peek(agent: Agent, lines: int = 40, ansi: bool = False, tmux: Tmux | None = None) -> str:
    """The last `lines` lines of the agent's pane (screen plus scrollback), made
    printable (errors.printable; with ansi, SGR colours are kept)."""
    tmux = tmux or server_of(agent)
    lines = max(1, min(int(lines), MAX_PEEK_LINES))
    target = agent.pane_id or agent.target
    args = ["capture-pane", "-p", "-S", f"-{lines}", "-t", target]
    if ansi:
        args.insert(2, "-e")
    result = tmux.run(*args, check=False)
    if result.returncode != 0:
        if b"can't find" in result.stderr or b"no server running" in result.stderr:
            raise PaneGone(f"its pane {target} no longer exists (run agent-discover there)")
        raise WireError(f"tmux capture-pane failed: {result.error_line}")
    return last_lines(result.stdout.decode("utf-8", "replace"), lines, ansi)


def last_lines(text: str, lines: int, ansi: bool = False) -> str:
    """A screen as peek shows it: at most `lines` lines (trailing blank ones dropped)
    and MAX_PEEK_BYTES, printable. The same cut for this host's pane and for what a
    peer's peek sent, which may be anything up to the wire's limit."""
    lines = max(1, min(int(lines), MAX_PEEK_LINES))
    if len(text) > MAX_PEEK_BYTES:
        text = text.encode("utf-8", "replace")[-MAX_PEEK_BYTES:].decode("utf-8", "ignore")
    rows = text.split("\n")
    while rows and not rows[-1].strip():
        rows.pop()
    rows = rows[-lines:]
    return printable("\n".join(rows), lines=True, sgr=ansi) + ("\n" if rows else "")
