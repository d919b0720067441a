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

from agent_mesh.delivery import log
from agent_mesh.delivery.inbox import SourceFile, Upload, place, sweep_stale_parts
from agent_mesh.delivery.pane import DEAD, Pane, is_pane_id, read_deadline, write_deadline
from agent_mesh.delivery.state import NO_BRACKETED_PASTE, PaneState, PaneStatus
from agent_mesh.errors import (
    AwaitingAnswer,
    MidTurn,
    NotReady,
    PaneDead,
    UnknownAddress,
    WireError,
)
from agent_mesh.fsutil import locked
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.text import require_unicode, sanitize
from agent_mesh.tmux import Tmux

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from collections.abc import Callable

SETTLE_SECONDS = 0.25
# After the previous sender's Enter, how long a not-ready pane may take to clear.
_RECENT_WINDOW = 2.0
_READY_POLL = 1.5

def settle_seconds() -> float:
    """AGENT_MESH_SETTLE overrides the pause between paste and Enter (seconds)."""
    raw = os.environ.get("AGENT_MESH_SETTLE", "")
    try:
        value = float(raw)
    except ValueError:
        return SETTLE_SECONDS
    return min(max(value, 0.0), 5.0)


# --- delivery ---------------------------------------------------------------


class ClaimedPane:
    """A pane held under its lock and found ready: paste one message into it."""

    __slots__ = ("_fd", "_force", "_settle", "_state", "_status", "notes", "pane", "pane_id")

    def __init__(self, pane: Pane, fd: int, state: PaneState, status: PaneStatus,
                 settle: float, force: bool, notes: list[str]) -> None:
        self.pane = pane
        self.pane_id = pane.target
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
        from agent_mesh.delivery.rule import bracketed_paste

        if "\n" in text and not bracketed_paste(self._state, self._status):
            if not self._force:
                program = self._status.program or "the program"
                raise NotReady(NO_BRACKETED_PASTE.format(program=program))
            text = " ".join(text.split("\n"))
            self.notes.append("sent as one line: the program has no bracketed paste")
        if self._status.kind == "working" and not self._force:
            self._paste_then_look(text)
            return
        self.pane.paste(text, self._settle)
        from agent_mesh.delivery.turns import mark_submitted

        mark_submitted(self._state.socket, self.pane_id)  # mid-turn now, where hooks report
        try:
            write_deadline(self._fd, time.time() + self._settle)
        except OSError:
            time.sleep(self._settle + 0.05)

    def _paste_then_look(self, text: str) -> None:
        """Into an agent mid-turn (one that keeps a message for the turn's end): paste,
        wait the settle under the lock, and press Enter only if no question has
        appeared meanwhile (a permission dialog opened mid-turn would take the Enter
        as its answer). Without the Enter the text stays in the input box, unsent."""
        self.pane.paste(text, self._settle, enter=False)
        time.sleep(self._settle)
        try:
            status = _classify(self.pane.state())
        except WireError:
            status = PaneStatus("waiting", detail="the pane could not be read again")
        if status.kind in ("waiting", "dead"):
            self.notes.append(f"pasted but not submitted: {status.detail or status.kind} "
                              "appeared meanwhile; the text waits in its input box")
            return
        self.pane.press("Enter", check=False)
        try:  # noqa: SIM105 - bookkeeping, never fails a delivery (contextlib: an import)
            write_deadline(self._fd, time.time())
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
                 entry: Agent | None = None,
                 allowed: Callable[[PaneState], None] | None = None) -> None:
        self.tmux = tmux
        self.target = target
        self.force = force
        self.skip_dismiss = skip_dismiss
        self.multiline = multiline
        self.entry = entry  # the registry entry: its pane must still be in its window
        self.allowed = allowed  # raises unless the pane's @agent-allow takes the sender
        self._lock: locked | None = None

    def __enter__(self) -> ClaimedPane:
        tmux, target = self.tmux, self.target
        settle = settle_seconds()
        pane = Pane(tmux, target if is_pane_id(target) else Pane(tmux, target).state().pane_id)
        lock = pane.lock(_LOCK_TIMEOUT)
        try:
            fd = lock.__enter__()
        except TimeoutError:
            raise NotReady(f"another sender has held the pane {pane.target} for "
                           f"{_LOCK_TIMEOUT:g} s; try again") from None
        notes: list[str] = []
        try:
            state, status = _wait_until_ready(
                pane, fd, self.force, self.skip_dismiss, self.multiline, notes, self.entry,
                self.allowed,
            )
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        self._lock = lock
        return ClaimedPane(pane, fd, state, status, settle, self.force, notes)

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
    message, and text that only a shell would read (rule.unforceable): refused even with
    FORCE_SEND. force: the send is forced (only then, or with `shell` accepted, is bash's
    vi mode read)."""
    from agent_mesh.delivery.rule import beneath_refusal, decide, unforceable

    if status.kind == "dead":
        raise PaneDead(DEAD)
    if status.kind == "waiting" and status.under is None:
        raise AwaitingAnswer(status.detail)
    if status.kind == "waiting" and beneath_refusal(state, status) is not None:
        raise NotReady(decide(state, status) or status.detail, overridable=False)
    reason = unforceable(state, status, force)
    if reason:
        raise NotReady(f"{reason}; FORCE_SEND cannot deliver there", overridable=False)


def _leave_mode(pane: Pane, state: PaneState, notes: list[str]) -> tuple[PaneState, PaneStatus]:
    """FORCE_SEND leaves a tmux mode (any mode: `copy-mode -q`) before the pane is read
    again, so every rule applies to the program as it is once the mode is gone."""
    pane.leave_mode()
    notes.append(f"left tmux {state.mode or 'mode'} first")
    state = pane.state()
    status = _classify(state)
    _refuse_for_good(state, status, True)
    if state.in_mode:
        raise NotReady(f"its pane is still in {state.mode or 'a tmux mode'} after leaving it "
                       "was asked", overridable=False)
    return state, status


def _wait_until_ready(
    pane: Pane, fd: int, force: bool, skip_dismiss: bool, multiline: bool,
    notes: list[str], entry: Agent | None = None,
    allowed: Callable[[PaneState], None] | None = None,
) -> tuple[PaneState, PaneStatus]:
    """Under the pane lock: wait out the previous message, then check the pane; close a
    known harmless dialog with Escape (never Enter) and check again."""
    previous_deadline = read_deadline(fd)
    wait = previous_deadline - time.time()
    if wait > 0:
        time.sleep(wait + 0.05)
    state = pane.state(meanwhile=_load_rules)
    from agent_mesh.delivery.rule import bracketed_paste, decide  # loaded by now

    if entry is not None:
        _check_window(state, entry)
    if allowed is not None:  # who may message it comes before whether it is ready
        allowed(state)
    status = _classify(state)
    if not force:
        _mid_turn(state, status)  # mid-turn or asking by its hooks: queued (MidTurn)
    _refuse_for_good(state, status, force)
    if force and state.in_mode:  # the program under the mode would take the message
        state, status = _leave_mode(pane, state, notes)
    if not force:
        reason = decide(state, status, multiline)
        recently_used = time.time() - previous_deadline < _RECENT_WINDOW
        if reason and recently_used:
            state, status, reason = _poll_ready(pane, multiline)
        if reason:
            raise NotReady(reason)
        if skip_dismiss and _dismissable(state, status):
            raise NotReady(
                f"a {_dismissable(state, status)} dialog is open and SKIP_DISMISS=1 keeps it: "
                "the text would go into it"
            )
    modal = "" if skip_dismiss else _dismissable(state, status)
    if modal:  # Escape only, and only on a dialog known to be harmless to close
        pane.press("Escape")
        time.sleep(0.5)
        notes.append(f"dismissed the {modal} dialog first")
        state = pane.state()
        status = _classify(state)
        if not force:
            _mid_turn(state, status)
        _refuse_for_good(state, status, force)
        reason = None if force else decide(state, status, multiline)
        if reason:
            raise NotReady(f"after closing the {modal} dialog: {reason}")
    if multiline and not force and not bracketed_paste(state, status):
        raise NotReady(NO_BRACKETED_PASTE.format(program=status.program or "the program"))
    return state, status


def _load_rules() -> None:
    """What judges a pane's state (the classifier, the rules, the agents' own hook
    state), loaded while tmux reads the pane the first time: ~1 ms of a local send's
    imports then runs beside that tmux call instead of before it (issue 20). So do the
    C modules the state's reading needs next: termios (procs.tty_mode) and unicodedata
    (screen.parse_screen, for a screen with any non-ASCII character)."""
    from agent_mesh.delivery import classify, rule, turns  # noqa: F401

    try:
        import termios  # noqa: F401
        import unicodedata  # noqa: F401
    except ImportError:  # tty_mode and parse_screen find out themselves
        pass


def _classify(state: PaneState) -> PaneStatus:
    """classify() with the agent's own hook state laid over it (delivery/turns.py)."""
    from agent_mesh.delivery.classify import classify
    from agent_mesh.delivery.turns import combine

    return combine(state, classify(state))


def _mid_turn(state: PaneState, status: PaneStatus) -> None:
    """Mid-turn or asking by its own hooks: never typed into (the message is queued for
    its Stop hook by receive), whatever the screen shows."""
    from agent_mesh.delivery.turns import mid_turn

    hook = mid_turn(state, status)
    if hook is None:
        return
    raise MidTurn(f"{hook.state} by its hooks: {hook.detail} (since its {hook.event} hook); "
                  "messages go over when its turn ends")


def _dismissable(state: PaneState, status: PaneStatus) -> str:
    """The known harmless dialog on screen, only where an agent TUI is recognised: a
    known agent that reads its own keys (raw terminal), never a name match alone."""
    if not status.agent or state.tty_mode != "raw":
        return ""
    from agent_mesh.delivery.prompts import modal_in

    return modal_in(state.rows)


def _poll_ready(pane: Pane, multiline: bool) -> tuple[PaneState, PaneStatus, str | None]:
    """The previous message may still be landing: give the pane a moment to clear."""
    from agent_mesh.delivery.rule import decide

    deadline = time.monotonic() + _READY_POLL
    while True:
        state = pane.state()
        status = _classify(state)
        _mid_turn(state, status)  # a turn its hooks started meanwhile: queued, as at first
        reason = decide(state, status, multiline)
        if status.kind in ("dead", "waiting") or reason is None or time.monotonic() >= deadline:
            _refuse_for_good(state, status, False)
            return state, status, reason
        time.sleep(0.05)


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
    allowed: Callable[[PaneState], None] | None = None,
) -> DeliveryResult:
    """The whole same-host delivery of one envelope: used locally and by `agent-mesh rpc`.

    A file (a local one, or an Upload a peer's rpc already received) goes into
    the inbox only once the pane is claimed and ready, and is taken out again if
    the paste then fails: a message that is not delivered leaves nothing behind.
    `before_paste` runs under the pane's lock right before the paste (the queue's
    waiter marks its record there, so a kill mid-paste is never typed twice).
    `allowed` checks the sender against the pane's @agent-allow (delivery/allow.py).
    """
    require_unicode(envelope.body)  # a usage error comes before any check of the pane
    notes: list[str] = []
    tmux = tmux or Tmux(socket_path=agent.socket or None)  # the entry's own tmux server
    target = agent.pane_id or agent.target
    with log.receiving(envelope, agent) as received:  # the agent's log (delivery/log.py)
        multiline = "\n" in envelope.body or "\r" in envelope.body
        with claim_pane(
            tmux, target, force=envelope.force, skip_dismiss=envelope.skip_dismiss,
            multiline=multiline, entry=agent, allowed=allowed,
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
