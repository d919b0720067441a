"""What an agent's own hooks say it is doing: the pane's ground truth, when there is one.

Claude Code and Codex run `agent-mesh agent-event EVENT` at their lifecycle events
(ops/agents.py installs the hooks). Each call records, for the pane it runs in, the
state that event proves and when: `working` from the prompt's submission to the turn's
end, `waiting` while a permission or question is open, `idle` once the turn ended,
`ended` when the session closed. One small JSON file per pane, keyed by the tmux
server (its socket's device and inode, the identity delivery's pane locks use) and
the pane id: `~/.agents/turns/<dev>-<ino>-<N>.json`, written atomically.

A record speaks only for the agent process that wrote it: it keeps that process's pid
and start time, and is *fresh* only while that same process lives. An agent that
exited, a pane id reused after a server restart, or a different agent started in the
pane since, all leave a stale record, which is ignored: the screen decides again.

Where hook and screen disagree, the safer reading wins (`combine`): a turn the hooks
say is running, or a question they say is open, is never typed into, whatever the
screen shows. One exception is bounded: Claude Code fires no hook when a turn is
interrupted with Escape, so a Claude Code whose hooks still say `working` while its
screen shows an idle input box, STALE_WORKING
seconds after the last event, counts as idle (Codex has an Interrupt hook, and its
screen is the weaker witness). A `waiting` never lapses on the screen's word: a question the
screen misreads as idle must not be answered by a message, so after a refused permission
messages stay queued until the agent's next turn ends.

Stdlib only and cheap to import: the hook's fast path records with it, and every
delivery reads it.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_mesh.delivery.state import PaneState, PaneStatus

IDLE, WORKING, WAITING, ENDED = "idle", "working", "waiting", "ended"
STALE_WORKING = 30.0  # seconds (Claude Code only; see the module's docstring)
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "fish", "ksh", "env", "timeout"})

# Claude Code's Notification types that mean a question or dialog is open.
_ASKING = frozenset({"permission_prompt", "elicitation_dialog", "elicitation_url_dialog",
                     "agent_needs_input", "worker_permission_prompt"})


def turns_dir() -> str:
    from agent_mesh import paths

    return os.path.join(paths.agents_dir(), "turns")


# --- which state an event proves ------------------------------------------------


def event_state(event: str, payload: dict[str, object]) -> tuple[str, str]:
    """(state, what shows it) for one hook event; state "" when the event proves
    nothing about the turn (it is still recorded as the last event seen)."""
    if event == "SessionStart":
        if payload.get("source") == "compact":  # auto-compaction, mid-turn or not
            return "", "context compacted"
        return IDLE, f"session started ({payload.get('source') or 'startup'})"
    if event in ("UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure",
                 "SubagentStart", "PreCompact", "PostCompact"):
        return WORKING, _EVENT_DETAIL.get(event, event)
    if event in ("PermissionRequest", "Elicitation"):
        tool = payload.get("tool_name") or payload.get("mcp_server_name") or ""
        return WAITING, f"a permission question is open{f' ({tool})' if tool else ''}"
    if event == "Notification":
        kind = str(payload.get("notification_type") or "")
        if kind in _ASKING:
            return WAITING, f"it asks for an answer ({kind})"
        if kind == "idle_prompt":
            return IDLE, "it waits for input (idle_prompt)"
        return "", f"notification {kind or '?'}"
    if event in ("ElicitationResult", "PermissionDenied"):
        return WORKING, f"{event}: the answer was given"
    if event in ("Stop", "StopFailure", "Interrupt"):
        return IDLE, {"Stop": "its turn ended", "StopFailure": "its turn ended on an error",
                      "Interrupt": "its turn was interrupted"}[event]
    if event == "SessionEnd":
        return ENDED, f"session ended ({payload.get('reason') or 'exit'})"
    return "", event


_EVENT_DETAIL = {
    "UserPromptSubmit": "a prompt was submitted: its turn runs",
    "PreToolUse": "it is running a tool",
    "PostToolUse": "a tool finished: its turn runs",
    "PostToolUseFailure": "a tool failed: its turn runs",
    "SubagentStart": "a subagent runs",
    "PreCompact": "it compacts its context",
    "PostCompact": "it compacted its context",
}


# --- where, and who --------------------------------------------------------------


def server_key(socket: str) -> str:
    """The tmux server's identity for file names: its socket's device and inode (the
    same identity paste.server_identity keys pane locks by); "" when there is none."""
    try:
        st = os.stat(socket)
    except OSError:
        return ""
    return f"{st.st_dev}-{st.st_ino}"


def record_path(socket: str, pane_id: str) -> str:
    key = server_key(socket)
    if not key or not pane_id.startswith("%") or not pane_id[1:].isdigit():
        return ""
    return os.path.join(turns_dir(), f"{key}-{pane_id[1:]}.json")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, start time in clock ticks) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        close = data.rindex(b")")
        comm = data[data.index(b"(") + 1 : close].decode("utf-8", "replace")
        fields = data[close + 2 :].split()
        return comm, int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def agent_process(start: int, server_pid: int) -> tuple[int, int, str]:
    """(pid, start time, comm) of the agent that ran this hook: the first ancestor from
    `start` up that is not a shell wrapper (`sh -c`), or the pane's own process (a child
    of the tmux server) whatever it is. (0, 0, "") when /proc cannot tell."""
    pid = start
    for _ in range(12):
        info = _stat(pid)
        if info is None or pid <= 1:
            return 0, 0, ""
        comm, ppid, started = info
        if ppid == server_pid or comm not in _SHELLS:
            return pid, started, comm
        pid = ppid
    return 0, 0, ""


def alive(pid: int, started: int) -> bool:
    """Is the process pid still the one that started at `started`?"""
    if pid <= 0:
        return False
    info = _stat(pid)
    return info is not None and info[2] == started


# --- the record ---------------------------------------------------------------------


def write(path: str, record: dict[str, object]) -> None:
    """Atomically replace the pane's record (a temp file renamed over it)."""
    import json

    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read(path: str) -> dict[str, object] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, ValueError):
        return None
    import json  # only once a record exists: a pane without hooks never gets here

    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Turn:
    """A fresh hook record: state, since when, the last event, which agent CLI."""

    __slots__ = ("agent", "detail", "event", "since", "state", "time")

    def __init__(self, record: dict[str, object]) -> None:
        self.state = str(record.get("state") or "")
        self.event = str(record.get("event") or "")
        self.detail = str(record.get("detail") or "")
        self.agent = str(record.get("agent") or "")
        self.since = _num(record.get("since"))
        self.time = _num(record.get("time"))

    @property
    def busy(self) -> bool:
        return self.state in (WORKING, WAITING)


def _num(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def turn(socket: str, pane_id: str) -> Turn | None:
    """The pane's hook state if its agent is still the one that reported it, else None."""
    path = record_path(socket or default_socket(), pane_id)
    return _fresh(read(path) if path else None)


def hook_for(state: PaneState) -> Turn | None:
    """turn() for this read of the pane, read once: the classification and the mid-turn
    check of one delivery step ask the same record (a stat, a read, a /proc look)."""
    try:
        return state._turn  # type: ignore[return-value]
    except AttributeError:
        found = turn(state.socket, state.pane_id)
        object.__setattr__(state, "_turn", found)
        return found


def _fresh(record: dict[str, object] | None) -> Turn | None:
    """The record's Turn while it counts: its agent alive, a paste not yet lapsed, a
    state it still proves."""
    if record is None:
        return None
    proc = record.get("proc")
    if not (isinstance(proc, list) and len(proc) == 2 and alive(int(proc[0]), int(proc[1]))):
        return None
    found = Turn(record)
    if found.event == PASTED and time.time() - found.time > PASTE_GRACE:
        return None  # no hook confirmed a turn: the screen decides
    return found if found.state and found.state != ENDED else None


def default_socket() -> str:
    """The socket a plain `tmux` talks to: $TMUX's, else $TMUX_TMPDIR (or /tmp)/tmux-UID/default."""
    inside = os.environ.get("TMUX", "").split(",")[0]
    if inside:
        return inside
    base = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}")
    return os.path.join(os.path.realpath(base), "default")


# --- hook and screen together --------------------------------------------------------


def combine(state: PaneState, status: PaneStatus, hook: Turn | None = None) -> PaneStatus:
    """The pane's status with its fresh hook state laid over the screen's: where they
    disagree the safer one wins (a question or a running turn beats an idle screen)."""
    if hook is None:
        hook = hook_for(state)
    if hook is None or status.kind in ("dead", "shell", "running") or state.in_mode:
        return status
    from agent_mesh.delivery.state import PaneStatus

    agent = status.agent or hook.agent
    program = status.program or hook.agent
    if hook.state == WAITING and status.kind != "waiting":
        if status.kind == "idle" and stale_working(hook):
            return status
        return PaneStatus("waiting", program, f"{hook.detail} (its {hook.event} hook)", agent)
    if hook.state == WORKING and status.kind in ("idle", "drafting", "working"):
        if status.kind == "idle" and stale_working(hook):
            return status
        return PaneStatus("working", program, f"mid-turn by its hooks ({hook.detail}, "
                          f"{hook.event} {_ago(hook.time)} ago)", agent)
    return status


def stale_working(hook: Turn) -> bool:
    """A Claude Code `working` that no event has confirmed for STALE_WORKING seconds while
    its screen shows it idle: an interrupted turn (Escape fires no hook). Never a `waiting`:
    when in doubt about an open question, the message waits."""
    from agent_mesh.receivers import traits

    return (hook.state == WORKING and not traits(hook.agent).interrupt_hook
            and time.time() - hook.time >= STALE_WORKING)


def mid_turn(state: PaneState, status: PaneStatus) -> Turn | None:
    """The fresh hook state when it says the agent is mid-turn or asking (so a message
    must be queued for its Stop hook), else None."""
    if status.kind in ("dead", "shell", "running"):
        return None
    hook = hook_for(state)
    if hook is None or not hook.busy:
        return None
    if status.kind == "idle" and stale_working(hook):
        return None
    return hook


PASTED = "paste"  # the event name of a submission agent-mesh typed itself
PASTE_GRACE = 10.0  # seconds a paste counts as a turn before the agent's hook confirms it


def mark_submitted(socket: str, pane_id: str) -> None:
    """agent-mesh just submitted a message into the pane: where its agent reports through
    hooks, the pane is mid-turn from now on (the agent's UserPromptSubmit comes a moment
    later), so the next message waits for the turn's end rather than being typed into
    the turn just started. Unconfirmed, it lapses after PASTE_GRACE seconds."""
    path = record_path(socket or default_socket(), pane_id)
    record = read(path) if path else None
    if record is None or _fresh(record) is None:
        return
    now = time.time()
    record.update(state=WORKING, event=PASTED, time=now, since=now,
                  detail="agent-mesh submitted a message: its turn starts")
    try:  # noqa: SIM105 - contextlib costs the delivery path an import
        write(path, record)
    except OSError:
        pass


def _ago(when: float) -> str:
    from agent_mesh.clock import duration  # only for this message: off the hook's path

    return duration(time.time() - when)
