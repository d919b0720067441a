"""What this host's agents are doing, and what their panes show: read-only.

`local_status` answers for every agent of this host's slice in one `list-panes`
call per tmux server plus one state read per live pane (batched), and `peek` reads
a pane's last lines, each on the agent's own server (its entry's socket). Nothing
here types into a pane.

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
import threading
import time

from agent_mesh import paths
from agent_mesh.delivery.paste import pane_state
from agent_mesh.delivery.state import classify
from agent_mesh.errors import MeshError, PaneGone, WireError, printable
from agent_mesh.fsutil import locked
from agent_mesh.model import Agent
from agent_mesh.tmux import Tmux, TmuxResult, fields_format, parse_records

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a peer's rpc an import
    from typing import Any

KINDS = ("idle", "working", "drafting", "waiting", "shell", "running", "dead", "gone",
         "unreachable")
MAX_PEEK_LINES = 10000
MAX_PEEK_BYTES = 4 * 1024 * 1024  # 10000 lines of 400 columns; anything more is cut
_PANE_FIELDS = ("pane_id", "window_activity", "pane_dead")


def pane_status(tmux: Tmux, agent: Agent) -> dict[str, str]:
    """{"state", "program", "detail"} of the agent's pane, from the one classifier that
    delivery uses (delivery/state.classify), plus `gone` for a pane that no longer exists."""
    try:
        st = pane_state(tmux, agent.pane_id or agent.target)
    except PaneGone:
        return {"state": "gone", "program": "", "detail": "its pane no longer exists"}
    from agent_mesh.delivery.turns import combine  # the agent's own hooks, where installed

    status = combine(st, classify(st))
    return {"state": status.kind, "program": status.program, "detail": status.detail}


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
        tmux = server_of(on_it[0])
        panes[socket] = live_panes(tmux)
        found.update(statuses(tmux, [a for a in on_it if a.pane_id in panes[socket]]))
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
        row["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["since"]))
        del row["activity"]
    return rows


# --- many panes in one tmux call ------------------------------------------------------
# A tmux client call costs ~2-3 ms (spawn, connect), most of a pane's status. The state
# read does one tmux call per pane; here each agent's first call is recorded, all are run
# as ONE tmux command list (a random marker line between them), and each status is then
# computed again from its share of the output. Generic on purpose: whatever
# pane_status reads with its first call is batched; any further call runs as usual.


class _Recorded(BaseException):  # BaseException: passes any `except Exception` in between
    def __init__(self, args: tuple[str, ...]) -> None:
        super().__init__()
        self.tmux_args = args


class _Recorder(Tmux):
    def __init__(self, real: Tmux) -> None:
        super().__init__(real.socket_path, real.binary)

    def run(self, *args: str, input: bytes | None = None, timeout: float = 10.0,
            check: bool = True) -> TmuxResult:
        raise _Recorded(args)


class _Replay(Tmux):
    """Answers the first call with the batched output; later calls go to tmux."""

    def __init__(self, real: Tmux, stdout: bytes) -> None:
        super().__init__(real.socket_path, real.binary)
        self.first: bytes | None = stdout

    def run(self, *args: str, input: bytes | None = None, timeout: float = 10.0,
            check: bool = True) -> TmuxResult:
        if self.first is None:
            return super().run(*args, input=input, timeout=timeout, check=check)
        out, self.first = self.first, None
        return TmuxResult(0, out, b"")


_BATCH_BYTES = 12000  # tmux refuses a client command over ~16 KB


def statuses(tmux: Tmux, agents: list[Agent]) -> dict[str, dict[str, str]]:
    """pane_status for each agent (address -> status), in as few tmux calls as fit."""
    found: dict[str, dict[str, str]] = {}
    calls: list[tuple[Agent, tuple[str, ...]]] = []
    for agent in agents:
        try:
            found[agent.address] = _guarded_status(_Recorder(tmux), agent)  # made no call
        except _Recorded as rec:
            calls.append((agent, rec.tmux_args))
    groups: list[list[tuple[Agent, tuple[str, ...]]]] = [[]]
    size = 0
    for call in calls:
        cost = sum(len(a.encode()) + 1 for a in call[1]) + 64
        if groups[-1] and size + cost > _BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(call)
        size += cost
    threads = [threading.Thread(target=_run_group, args=(tmux, g, found)) for g in groups[1:]]
    for thread in threads:
        thread.start()
    _run_group(tmux, groups[0], found)
    for thread in threads:
        thread.join()
    return found


def _run_group(tmux: Tmux, group: list[tuple[Agent, tuple[str, ...]]],
               found: dict[str, dict[str, str]]) -> None:
    if not group:
        return
    marker = f"agent-mesh-{os.urandom(12).hex()}"
    argv: list[str] = []
    for _agent, args in group:
        argv += [*args, ";", "display-message", "-p", marker, ";"]
    try:
        result = tmux.run(*argv[:-1], check=False)
        chunks = result.stdout.split(marker.encode() + b"\n")
    except MeshError:
        chunks = []
    for n, (agent, _args) in enumerate(group):
        if n < len(chunks) - 1:  # its output is complete: replay it
            found[agent.address] = _guarded_status(_Replay(tmux, chunks[n]), agent)
        else:  # a command failed (a pane closed meanwhile): ask on its own
            found[agent.address] = _guarded_status(tmux, agent)


def _guarded_status(tmux: Tmux, agent: Agent) -> dict[str, str]:
    try:
        return pane_status(tmux, agent)
    except MeshError as exc:
        return {"state": "gone" if exc.exit_code == 2 else "unknown", "program": "",
                "detail": str(exc)}


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
