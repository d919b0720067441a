"""One tmux pane: read its state, paste into it, press its keys, hold its lock.

A `Pane` is a target (`%N`, or `session:window` before it is resolved) on one tmux
server. `state()` reads everything the classifier needs in one tmux call (flags,
cursor, the screen with its SGR escapes) plus the foreground group from /proc;
`read_states` reads many panes of one server in as few calls as fit. `paste` loads
the text from stdin into a uniquely named buffer and pastes it (bracketed when the
program asked; never as tmux argv), with its Enter scheduled inside tmux after a
settle. `lock` is the per-pane lock every sender of this host shares, keyed by the
tmux server's socket identity; the lock file holds when the last paste's Enter lands.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.delivery.state import DEAD_REASON, PaneState
from agent_mesh.errors import MeshError, PaneDead, PaneGone, TornRecord, WireError
from agent_mesh.fsutil import locked
from agent_mesh.procs import foreground, tty_mode
from agent_mesh.tmux import Tmux, TmuxResult, fields_format, parse_head

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from collections.abc import Callable

__all__ = ["DEAD", "Pane", "is_pane_id", "pane_state", "read_deadline", "read_states",
           "read_states_after", "server_identity", "write_deadline"]

_STATE_FIELDS = (
    "pane_id",
    "pane_dead",
    "pane_in_mode",
    "pane_mode",
    "cursor_x",
    "cursor_y",
    "cursor_flag",
    "pane_width",
    "alternate_on",
    "pane_current_command",
    "pane_pid",
    "@agent-accept",
    "@agent-allow",
    "socket_path",
    "session_name",
    "window_index",
    "bracketed_paste",
    "window_id",
    "pane_tty",
)
DEAD = f"{DEAD_REASON}; FORCE_SEND cannot deliver to it"
_DEAD_SENTINEL = b"agent-mesh:pane-dead"
_SHORT_SENTINEL = b"agent-mesh:buffer-short"
_LOAD_ATTEMPTS = 5
_BATCH_BYTES = 12000  # tmux refuses a client command over ~16 KB


class Pane:
    """A pane of one tmux server, addressed by its id or a `session:window` target."""

    __slots__ = ("target", "tmux")

    def __init__(self, tmux: Tmux, target: str) -> None:
        self.tmux = tmux
        self.target = target

    def state(self, meanwhile: Callable[[], object] | None = None) -> PaneState:
        """Flags, cursor, foreground program and visible screen in one tmux call;
        PaneGone for a pane that no longer exists, WireError when tmux fails.
        `meanwhile` runs while tmux answers (a delivery loads its rules then)."""
        for _attempt in range(3):
            call = self.tmux.start(*self._state_args())
            try:
                if meanwhile is not None:
                    meanwhile()
                    meanwhile = None
            finally:  # collected even if meanwhile failed: no tmux client left behind
                result = call.result(check=False)
            state = self._parse_state(result)
            if state is not None:
                return state
        raise WireError(f"tmux kept returning a malformed record for pane {self.target}")

    def _state_args(self) -> tuple[str, ...]:
        target = self.target
        return ("display-message", "-p", "-t", target, fields_format(_STATE_FIELDS), ";",
                "capture-pane", "-p", "-e", "-t", target)

    def _parse_state(self, result: TmuxResult) -> PaneState | None:
        """The state tmux printed; None for a torn record (read again)."""
        split = _split_state(result.stdout)
        if split is None:
            return None
        record, screen = split
        target = self.target
        if not record.get("pane_id", "").startswith("%"):
            # tmux says "can't find pane" (or prints empty fields) for a pane that is
            # gone; anything else (no server, a broken tmux) is a tmux failure.
            if result.returncode == 0 or b"can't find" in result.stderr:
                raise PaneGone(
                    f"its pane {target} no longer exists; the registry is out of date "
                    "(run agent-discover on that host)"
                )
            raise WireError(f"tmux failed reading pane {target}: {result.error_line}")
        pane_pid = int(record["pane_pid"] or 0)
        procs = foreground(pane_pid)
        return PaneState(
            pane_id=record["pane_id"],
            dead=record["pane_dead"] == "1",
            in_mode=record["pane_in_mode"] == "1",
            mode=record["pane_mode"],
            cursor_x=int(record["cursor_x"] or 0),
            cursor_y=int(record["cursor_y"] or 0),
            cursor_visible=record["cursor_flag"] != "0",
            width=int(record["pane_width"] or 0),
            alternate_on=record["alternate_on"] == "1",
            current_command=record["pane_current_command"],
            pane_pid=pane_pid,
            accept=record["@agent-accept"],
            screen=screen,
            foreground=procs.group[0].comm if procs is not None and procs.group else "",
            procs=procs,
            target=f"{record['session_name']}:{record['window_index']}",
            socket=record["socket_path"],
            bracketed=record["bracketed_paste"],
            window_id=record["window_id"],
            tty_mode=tty_mode(record["pane_tty"]),
            allow=record["@agent-allow"],
        )

    def press(self, key: str, check: bool = True) -> None:
        """Send one key (`Escape`, `Enter`) as a key, never as text."""
        self.tmux.run("send-keys", "-t", self.target, key, check=check)

    def leave_mode(self) -> None:
        """Leave any tmux mode (copy mode, a chooser) over the pane."""
        self.tmux.run("copy-mode", "-q", "-t", self.target)

    def lock(self, timeout: float) -> locked:
        """The pane's lock, shared by every sender of this host (the target must be an id).
        Its file holds the deadline of the last paste's Enter (read_deadline)."""
        name = f"pane-{hash_text(server_identity(self.tmux))}-{self.target.lstrip('%')}.lock"
        return locked(os.path.join(paths.locks_dir(), name), timeout=timeout)

    def paste(self, text: str, settle: float, enter: bool = True) -> None:
        """Load the text from stdin, then paste it and schedule Enter only if tmux holds
        all of it and the pane is alive, checked inside tmux's queue in the same call.

        A sender killed mid-load closes the tmux client's stdin early: the client still
        runs the rest of the command list, and without the size check it would paste
        the truncated buffer and submit it. Only the pane id, our buffer name and the
        byte count, never message text, appear in the command strings. The size check
        reads tmux's newest buffer; another client's load landing in between reads as
        a mismatch, and the whole call is retried with a fresh buffer.
        """
        tmux, pane = self.tmux, self.target
        if not is_pane_id(pane):
            raise WireError(f"refusing to address pane {pane!r}: not a tmux pane id")
        data = text.encode("utf-8")
        for _attempt in range(_LOAD_ATTEMPTS):
            buffer = f"agent-mesh-{os.getpid()}-{os.urandom(4).hex()}"
            loaded = (
                f"#{{&&:#{{==:#{{buffer_name}},{buffer}}},#{{==:#{{buffer_size}},{len(data)}}}}}"
            )
            result = tmux.run(
                "load-buffer", "-b", buffer, "-", ";",
                "if-shell", "-F", f"#{{?{loaded},,1}}",
                f"delete-buffer -b {buffer} ; display-message -p {_SHORT_SENTINEL.decode()}", ";",
                "if-shell", "-F", "-t", pane, "#{pane_dead}",
                f"delete-buffer -b {buffer} ; display-message -p {_DEAD_SENTINEL.decode()}", ";",
                # Fails (ending the list before the Enter) if a check above deleted the buffer.
                "paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", pane,
                *((";", "run-shell", "-b", "-d", f"{settle:.3f}", "-C",
                   f"send-keys -t {pane} Enter") if enter else ()),
                input=data,
                check=False,
            )
            if _DEAD_SENTINEL in result.stdout:
                raise PaneDead(DEAD)
            if _SHORT_SENTINEL not in result.stdout:
                if result.returncode != 0:
                    # the list stopped part-way: the message must not stay in a tmux buffer
                    tmux.run("delete-buffer", "-b", buffer, check=False)
                    raise WireError(f"tmux paste-buffer failed: {result.error_line}")
                return
        raise WireError(f"tmux did not load the whole message ({len(data)} bytes); try again")


def pane_state(tmux: Tmux, target: str) -> PaneState:
    """One read of one pane: Pane(tmux, target).state()."""
    return Pane(tmux, target).state()


def _split_state(out: bytes) -> tuple[dict[str, str], str] | None:
    """The display-message record, then the screen; ({}, "") when tmux printed none, None
    when its record is torn (pane_current_command changed between its length and value)."""
    if not out.strip():
        return {}, ""
    try:
        record, rest = parse_head(out, _STATE_FIELDS)
    except TornRecord:
        return None
    return record, rest.decode("utf-8", "replace")


# --- many panes in one tmux call ------------------------------------------------------
# A tmux client call costs ~2-3 ms (spawn, connect), most of a pane's status. Here the
# state reads of many panes run as ONE tmux command list (a random marker line between
# them), and each state is parsed from its share of the output; a pane whose share is
# cut short (a command failed: the pane closed meanwhile) is read again on its own.


def read_states(tmux: Tmux, targets: list[str]) -> dict[str, PaneState | MeshError]:
    """Each target's state, or the error reading it gave (PaneGone, WireError), in as few
    tmux calls as fit (command lists of up to _BATCH_BYTES, run side by side)."""
    groups: list[list[Pane]] = [[]]
    size = 0
    for target in targets:
        pane = Pane(tmux, target)
        cost = sum(len(a.encode()) + 1 for a in pane._state_args()) + 64
        if groups[-1] and size + cost > _BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(pane)
        size += cost
    found: dict[str, PaneState | MeshError] = {}
    if len(groups) == 1:  # threading's imports (~2.5 ms) only for more than one call
        _read_group(tmux, groups[0], found)
        return found
    import threading

    threads = [threading.Thread(target=_read_group, args=(tmux, g, found)) for g in groups[1:]]
    for thread in threads:
        thread.start()
    _read_group(tmux, groups[0], found)
    for thread in threads:
        thread.join()
    return found


def _read_group(tmux: Tmux, group: list[Pane], found: dict[str, PaneState | MeshError]) -> None:
    if not group:
        return
    marker = f"agent-mesh-{os.urandom(12).hex()}"
    argv: list[str] = []
    for pane in group:
        argv += [*pane._state_args(), ";", "display-message", "-p", marker, ";"]
    try:
        chunks = tmux.run(*argv[:-1], check=False).stdout.split(marker.encode() + b"\n")
    except MeshError:
        chunks = []
    for n, pane in enumerate(group):
        try:
            state = (pane._parse_state(TmuxResult(0, chunks[n], b""))
                     if n < len(chunks) - 1 else None)  # its output is complete
            found[pane.target] = state if state is not None else pane.state()
        except MeshError as exc:
            found[pane.target] = exc


def read_states_after(tmux: Tmux, head: tuple[str, ...],
                      targets: list[str]) -> tuple[bytes | None, dict[str, PaneState | MeshError]]:
    """A read-only tmux command (`head`), then the states of as many targets as fit,
    all in ONE call (a status: list-panes and its panes, not a call each). Returns
    head's output (None when tmux did not get past it: no server, a failure) and the
    states read whole; a target left out (over the size, a torn record, or cut short
    because a pane before it closed and the list stopped there) is the caller's to read."""
    marker = f"agent-mesh-{os.urandom(12).hex()}"
    argv = [*head, ";", "display-message", "-p", marker]
    size = sum(len(a.encode()) + 1 for a in argv)
    taken: list[Pane] = []
    for target in targets:
        pane = Pane(tmux, target)
        args = [";", *pane._state_args(), ";", "display-message", "-p", marker]
        cost = sum(len(a.encode()) + 1 for a in args)
        if size + cost > _BATCH_BYTES:
            break
        argv += args
        taken.append(pane)
        size += cost
    try:
        chunks = tmux.run(*argv, check=False).stdout.split(marker.encode() + b"\n")
    except MeshError:
        return None, {}
    found: dict[str, PaneState | MeshError] = {}
    for n, pane in enumerate(taken, start=1):
        if n >= len(chunks) - 1:
            break  # cut short here: this pane's output is incomplete
        try:
            state = pane._parse_state(TmuxResult(0, chunks[n], b""))
        except MeshError as exc:
            found[pane.target] = exc
            continue
        if state is not None:
            found[pane.target] = state
    return (chunks[0] if len(chunks) > 1 else None), found


# --- the lock and who shares it -----------------------------------------------------


def hash_text(text: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    value = 0
    for byte in text.encode("utf-8"):
        value = (value * 131 + byte) % 1_000_000_007
    return value


def server_identity(tmux: Tmux) -> str:
    """The tmux server's canonical identity: its socket's device and inode.

    The socket is found the way the tmux client finds it (-S, else $TMUX's first
    field, else $TMUX_TMPDIR or /tmp + /tmux-<uid>/default with the directory
    resolved), so a sender inside tmux, one outside and `agent-mesh rpc` all name
    the same server alike and share one lock per pane. Costs one stat, no tmux call.
    """
    path = tmux.socket_path
    if not path:
        inside = os.environ.get("TMUX", "")
        path = inside.split(",")[0] if not inside.startswith(",") else ""
    if not path:
        base = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", f"tmux-{os.getuid()}")
        path = os.path.join(os.path.realpath(base), "default")
    try:
        st = os.stat(path)
    except OSError:  # no server (yet): the resolved path is the best name there is
        return os.path.realpath(path)
    return f"{st.st_dev}:{st.st_ino}"


def read_deadline(fd: int) -> float:
    """When the last paste's Enter lands (epoch seconds), from the held lock file."""
    try:
        return float(os.pread(fd, 64, 0).decode() or 0)
    except (OSError, ValueError):
        return 0.0


def write_deadline(fd: int, deadline: float) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{deadline:.3f}".encode(), 0)


def is_pane_id(target: str) -> bool:
    return target.startswith("%") and target[1:].isdigit()
