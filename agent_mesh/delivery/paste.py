"""Same-host delivery into a pane: claim it, place any file, paste, submit.

`claim_pane` takes the pane's lock (keyed by the tmux server's socket identity,
so every sender of this host shares it), waits out the previous message and
checks readiness; only then does the caller place a file (delivery.inbox) and
call `pane.paste(text)`. `deliver_envelope` is that sequence for one envelope.

Text never travels as tmux argv: it goes on stdin into a uniquely named buffer
and is pasted with `paste-buffer -p -r -d` (bracketed paste when the program
asked for it; LF kept; buffer deleted). Enter follows as a separate key after a
settle, scheduled inside tmux (`run-shell -b -d`), because agent TUIs take an
Enter that arrives within ~150 ms of fast input as part of a paste. The sender
does not wait for the settle; the next sender to the same pane does (per-pane
lock plus the deadline recorded in the lock file), so messages never interleave
and a message still waiting for its Enter is not mistaken for a user's draft.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.delivery.inbox import SourceFile, Upload, place, sweep_stale_parts
from agent_mesh.delivery.state import (
    DEAD_REASON,
    NO_BRACKETED_PASTE,
    PaneState,
    PaneStatus,
    beneath_refusal,
    bracketed_paste,
    classify,
    decide,
    detect_modal,
    unforceable,
)
from agent_mesh.errors import AwaitingAnswer, MidTurn, NotReady, PaneDead, PaneGone, WireError
from agent_mesh.fsutil import locked
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.procs import foreground, tty_mode
from agent_mesh.registry.view import UnknownAddress
from agent_mesh.text import require_unicode, sanitize
from agent_mesh.tmux import Tmux, fields_format, parse_head

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from collections.abc import Callable

SETTLE_SECONDS = 0.25
# After the previous sender's Enter, how long a not-ready pane may take to clear.
_RECENT_WINDOW = 2.0
_READY_POLL = 1.5

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
    "socket_path",
    "session_name",
    "window_index",
    "bracketed_paste",
    "window_id",
    "pane_tty",
)


def settle_seconds() -> float:
    """AGENT_MESH_SETTLE overrides the pause between paste and Enter (seconds)."""
    raw = os.environ.get("AGENT_MESH_SETTLE", "")
    try:
        value = float(raw)
    except ValueError:
        return SETTLE_SECONDS
    return min(max(value, 0.0), 5.0)


# --- pane state -------------------------------------------------------------


def pane_state(tmux: Tmux, target: str) -> PaneState:
    """Flags, cursor, foreground program and visible screen in one tmux call."""
    result = tmux.run(
        "display-message", "-p", "-t", target, fields_format(_STATE_FIELDS), ";",
        "capture-pane", "-p", "-e", "-t", target,
        check=False,
    )
    record, screen = _split_state(result.stdout)
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
    )


def _split_state(out: bytes) -> tuple[dict[str, str], str]:
    """The display-message record, then the screen; ({}, "") when tmux printed none."""
    try:
        record, rest = parse_head(out, _STATE_FIELDS)
    except WireError:
        return {}, ""
    return record, rest.decode("utf-8", "replace")


_DEAD = f"{DEAD_REASON}; FORCE_SEND cannot deliver to it"


_DEAD_SENTINEL = b"agent-mesh:pane-dead"


# --- delivery ---------------------------------------------------------------


def hash_text(text: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    value = 0
    for byte in text.encode("utf-8"):
        value = (value * 131 + byte) % 1_000_000_007
    return value


class ClaimedPane:
    """A pane held under its lock and found ready: paste one message into it."""

    __slots__ = ("_fd", "_force", "_settle", "_state", "_status", "notes", "pane_id", "tmux")

    def __init__(self, tmux: Tmux, pane_id: str, fd: int, state: PaneState, status: PaneStatus,
                 settle: float, force: bool, notes: list[str]) -> None:
        self.tmux = tmux
        self.pane_id = pane_id
        self.notes = notes
        self._fd = fd
        self._state = state
        self._status = status
        self._settle = settle
        self._force = force

    def paste(self, text: str) -> None:
        """Paste text and schedule its Enter; record when it lands for the next sender.

        A multi-line text to a program without bracketed paste is refused, or with
        FORCE_SEND sent as one line: never submitted line by line. Once tmux has
        the message nothing here fails: the record is bookkeeping (on a full disk
        we wait for our own Enter instead), so a delivered message is never
        reported as failed and never duplicated by a retry.
        """
        tmux, pane, state = self.tmux, self.pane_id, self._state
        if "\n" in text and not bracketed_paste(state, self._status):
            if not self._force:
                program = self._status.program or "the program"
                raise NotReady(NO_BRACKETED_PASTE.format(program=program))
            text = " ".join(text.split("\n"))
            self.notes.append("sent as one line: the program has no bracketed paste")
        if self._status.kind == "working" and not self._force:
            self._paste_then_look(text)
            return
        _paste_and_submit(tmux, pane, text, self._settle)
        try:
            _write_deadline(self._fd, time.time() + self._settle)
        except OSError:
            time.sleep(self._settle + 0.05)

    def _paste_then_look(self, text: str) -> None:
        """Into an agent mid-turn (one that keeps a message for the turn's end): paste,
        wait the settle under the lock, and press Enter only if no question has
        appeared meanwhile (a permission dialog opened mid-turn would take the Enter
        as its answer). Without the Enter the text stays in the input box, unsent."""
        tmux, pane = self.tmux, self.pane_id
        _paste_and_submit(tmux, pane, text, self._settle, enter=False)
        time.sleep(self._settle)
        try:
            status = _classify(pane_state(tmux, pane))
        except WireError:
            status = PaneStatus("waiting", detail="the pane could not be read again")
        if status.kind in ("waiting", "dead"):
            self.notes.append(f"pasted but not submitted: {status.detail or status.kind} "
                              "appeared meanwhile; the text waits in its input box")
            return
        tmux.run("send-keys", "-t", pane, "Enter", check=False)
        try:  # noqa: SIM105 - bookkeeping, never fails a delivery (contextlib: an import)
            _write_deadline(self._fd, time.time())
        except OSError:
            pass


class claim_pane:  # lowercase: used like a function, `with claim_pane(...) as pane:`
    """Take the pane's lock, wait out the previous message and check readiness.

        with claim_pane(tmux, target, force=False, multiline=False) as pane:
            ...place any file (delivery.inbox)...
            pane.paste(text)

    Raises NotReady (unless force), AwaitingAnswer and PaneDead (even with force),
    PaneGone, WireError on entry, before the caller has placed anything; a known
    harmless dialog is closed with Escape first. The lock is held until the block ends.
    """

    def __init__(self, tmux: Tmux, target: str, *, force: bool = False,
                 skip_dismiss: bool = False, multiline: bool = False,
                 entry: Agent | None = None) -> None:
        self.tmux = tmux
        self.target = target
        self.force = force
        self.skip_dismiss = skip_dismiss
        self.multiline = multiline
        self.entry = entry  # the registry entry: its pane must still be in its window
        self._lock: locked | None = None

    def __enter__(self) -> ClaimedPane:
        tmux, target = self.tmux, self.target
        settle = settle_seconds()
        pane = target if _is_pane_id(target) else pane_state(tmux, target).pane_id
        lock = locked(
            os.path.join(
                paths.locks_dir(),
                f"pane-{hash_text(server_identity(tmux))}-{pane.lstrip('%')}.lock",
            ),
            timeout=_LOCK_TIMEOUT,
        )
        try:
            fd = lock.__enter__()
        except TimeoutError:
            raise NotReady(
                f"another sender has held the pane {pane} for {_LOCK_TIMEOUT:g} s; try again"
            ) from None
        notes: list[str] = []
        try:
            state, status = _wait_until_ready(
                tmux, fd, pane, self.force, self.skip_dismiss, self.multiline, notes, self.entry
            )
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        self._lock = lock
        return ClaimedPane(tmux, pane, fd, state, status, settle, self.force, notes)

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


_LOCK_TIMEOUT = 120.0


def _check_window(state: PaneState, entry: Agent) -> None:
    """Pane ids are unique only while their server runs, and a pane can be moved to
    another window: the entry's pane must sit in the entry's window (read in the same
    tmux call as the rest of the pane's state), else exit 2, "out of date". Entries
    without a window id (an older peer's) are not checked."""
    if entry.window_id and state.window_id and state.window_id != entry.window_id:
        raise UnknownAddress(
            entry.address,
            f"{entry.address}: the registry is out of date (pane {entry.pane_id} of window "
            f"{entry.window_id} is now in window {state.window_id}; run agent-discover on "
            f"{entry.host})",
        )


def _refuse_for_good(state: PaneState, status: PaneStatus, force: bool) -> None:
    """Dead panes, questions on screen, a tmux mode over a program that must not get the
    message, and text that only a shell would read (state.unforceable): refused even with
    FORCE_SEND. force: the send is forced (only then, or with `shell` accepted, is bash's
    vi mode read)."""
    if status.kind == "dead":
        raise PaneDead(_DEAD)
    if status.kind == "waiting" and status.under is None:
        raise AwaitingAnswer(status.detail)
    if status.kind == "waiting" and beneath_refusal(state, status) is not None:
        raise NotReady(decide(state, status) or status.detail, overridable=False)
    reason = unforceable(state, status, force)
    if reason:
        raise NotReady(f"{reason}; FORCE_SEND cannot deliver there", overridable=False)


def _leave_mode(tmux: Tmux, pane: str, state: PaneState,
                notes: list[str]) -> tuple[PaneState, PaneStatus]:
    """FORCE_SEND leaves a tmux mode (any mode: `copy-mode -q`) before the pane is read
    again, so every rule applies to the program as it is once the mode is gone."""
    tmux.run("copy-mode", "-q", "-t", pane)
    notes.append(f"left tmux {state.mode or 'mode'} first")
    state = pane_state(tmux, pane)
    status = _classify(state)
    _refuse_for_good(state, status, True)
    if state.in_mode:
        raise NotReady(f"its pane is still in {state.mode or 'a tmux mode'} after leaving it "
                       "was asked", overridable=False)
    return state, status


def _wait_until_ready(
    tmux: Tmux, fd: int, pane: str, force: bool, skip_dismiss: bool, multiline: bool,
    notes: list[str], entry: Agent | None = None,
) -> tuple[PaneState, PaneStatus]:
    """Under the pane lock: wait out the previous message, then check the pane; close a
    known harmless dialog with Escape (never Enter) and check again."""
    previous_deadline = _read_deadline(fd)
    wait = previous_deadline - time.time()
    if wait > 0:
        time.sleep(wait + 0.05)
    state = pane_state(tmux, pane)
    if entry is not None:
        _check_window(state, entry)
    status = _classify(state)
    if not force:
        _mid_turn(state, status)  # mid-turn or asking by its hooks: queued (MidTurn)
    _refuse_for_good(state, status, force)
    if force and state.in_mode:  # the program under the mode would take the message
        state, status = _leave_mode(tmux, pane, state, notes)
    if not force:
        reason = decide(state, status, multiline)
        recently_used = time.time() - previous_deadline < _RECENT_WINDOW
        if reason and recently_used:
            state, status, reason = _poll_ready(tmux, pane, multiline)
        if reason:
            raise NotReady(reason)
        if skip_dismiss and _dismissable(state, status):
            raise NotReady(
                f"a {detect_modal(state.screen)} dialog is open and SKIP_DISMISS=1 keeps it: "
                "the text would go into it"
            )
    modal = "" if skip_dismiss else _dismissable(state, status)
    if modal:  # Escape only, and only on a dialog known to be harmless to close
        tmux.run("send-keys", "-t", pane, "Escape")
        time.sleep(0.5)
        notes.append(f"dismissed the {modal} dialog first")
        state = pane_state(tmux, pane)
        status = _classify(state)
        _refuse_for_good(state, status, force)
        reason = None if force else decide(state, status, multiline)
        if reason:
            raise NotReady(f"after closing the {modal} dialog: {reason}")
    if multiline and not force and not bracketed_paste(state, status):
        raise NotReady(NO_BRACKETED_PASTE.format(program=status.program or "the program"))
    return state, status


def _classify(state: PaneState) -> PaneStatus:
    """classify() with the agent's own hook state laid over it (delivery/turns.py)."""
    from agent_mesh.delivery.turns import combine

    return combine(state, classify(state))


def _mid_turn(state: PaneState, status: PaneStatus) -> None:
    """Mid-turn or asking by its own hooks: never typed into (the message is queued for
    its Stop hook by receive), whatever the screen shows."""
    from agent_mesh.delivery.turns import mid_turn

    hook = mid_turn(state, status)
    if hook is None:
        return None
    raise MidTurn(f"{hook.state} by its hooks: {hook.detail} (since its {hook.event} hook); "
                  "messages go over when its turn ends")


def _dismissable(state: PaneState, status: PaneStatus) -> str:
    """The known harmless dialog on screen, only where an agent TUI is recognised: a
    known agent that reads its own keys (raw terminal), never a name match alone."""
    if not status.agent or state.tty_mode != "raw":
        return ""
    return detect_modal(state.screen)


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


def _poll_ready(
    tmux: Tmux, pane: str, multiline: bool
) -> tuple[PaneState, PaneStatus, str | None]:
    """The previous message may still be landing: give the pane a moment to clear."""
    deadline = time.monotonic() + _READY_POLL
    while True:
        state = pane_state(tmux, pane)
        status = _classify(state)
        reason = decide(state, status, multiline)
        if status.kind in ("dead", "waiting") or reason is None or time.monotonic() >= deadline:
            _refuse_for_good(state, status, False)
            return state, status, reason
        time.sleep(0.05)


def _is_pane_id(target: str) -> bool:
    return target.startswith("%") and target[1:].isdigit()


def _paste_and_submit(tmux: Tmux, pane: str, text: str, settle: float,
                      enter: bool = True) -> None:
    """Load the text from stdin, then paste it and schedule Enter only if tmux holds
    all of it and the pane is alive, checked inside tmux's queue in the same call.

    A sender killed mid-load closes the tmux client's stdin early: the client still
    runs the rest of the command list, and without the size check it would paste
    the truncated buffer and submit it. Only the pane id, our buffer name and the
    byte count, never message text, appear in the command strings. The size check
    reads tmux's newest buffer; another client's load landing in between reads as
    a mismatch, and the whole call is retried with a fresh buffer.
    """
    if not _is_pane_id(pane):
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
            *((";", "run-shell", "-b", "-d", f"{settle:.3f}", "-C", f"send-keys -t {pane} Enter")
              if enter else ()),
            input=data,
            check=False,
        )
        if _DEAD_SENTINEL in result.stdout:
            raise PaneDead(_DEAD)
        if _SHORT_SENTINEL not in result.stdout:
            if result.returncode != 0:
                # the list stopped part-way: the message must not stay in a tmux buffer
                tmux.run("delete-buffer", "-b", buffer, check=False)
                raise WireError(f"tmux paste-buffer failed: {result.error_line}")
            return
    raise WireError(f"tmux did not load the whole message ({len(data)} bytes); try again")


_LOAD_ATTEMPTS = 5
_SHORT_SENTINEL = b"agent-mesh:buffer-short"


def _read_deadline(fd: int) -> float:
    try:
        return float(os.pread(fd, 64, 0).decode() or 0)
    except (OSError, ValueError):
        return 0.0


def _write_deadline(fd: int, deadline: float) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{deadline:.3f}".encode(), 0)


# --- files ------------------------------------------------------------------


def drop_notice(display_path: str, size: int, body: str) -> str:
    notice = f"file dropped at {display_path} ({size} bytes)"
    return f"{notice}: {body}" if body else notice


def deliver_envelope(
    envelope: Envelope,
    agent: Agent,
    file: SourceFile | Upload | bytes | None = None,
    tmux: Tmux | None = None,
    before_paste: Callable[[], None] | None = None,
) -> DeliveryResult:
    """The whole same-host delivery of one envelope: used locally and by `agent-mesh rpc`.

    A file (a local one, or an Upload a peer's rpc already received) goes into
    the inbox only once the pane is claimed and ready, and is taken out again if
    the paste then fails: a message that is not delivered leaves nothing behind.
    `before_paste` runs under the pane's lock right before the paste (the queue's
    waiter marks its record there, so a kill mid-paste is never typed twice).
    """
    require_unicode(envelope.body)  # a usage error comes before any check of the pane
    notes: list[str] = []
    tmux = tmux or Tmux(socket_path=agent.socket or None)  # the entry's own tmux server
    target = agent.pane_id or agent.target
    with log.receiving(envelope, agent) as received:  # the agent's log (delivery/log.py)
        multiline = "\n" in envelope.body or "\r" in envelope.body
        with claim_pane(
            tmux, target, force=envelope.force, skip_dismiss=envelope.skip_dismiss,
            multiline=multiline, entry=agent,
        ) as pane:
            dropped = place(file, envelope.sender, envelope.file_name) if file is not None else None
            if dropped is not None:
                received.record["file"] = dropped.shown
            try:
                body = envelope.body
                if dropped is not None:
                    body = drop_notice(dropped.shown, dropped.size, body)
                text, removed = sanitize(f"{envelope.tag()} {body}")
                if removed:
                    notes.append(f"removed {removed} control character(s) from the message")
                if before_paste is not None:
                    before_paste()
                pane.paste(text)
            except BaseException:
                if dropped is not None:
                    dropped.remove()
                raise
    sweep_stale_parts()  # housekeeping after the paste and its log line: never raises
    return DeliveryResult(
        address=agent.address,
        host=agent.host,
        target=agent.target,
        pane_id=pane.pane_id,
        bytes_sent=len(text.encode("utf-8")),
        notes=notes + pane.notes,
    )
