"""Same-host delivery: into a pane, or as a file dropped into the inbox.

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
from collections.abc import Callable

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.delivery.state import DEAD_REASON, PaneState, foreground_program, refusal
from agent_mesh.errors import NotReady, UsageError, WireError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.tmux import Tmux, fields_format, parse_head

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
)


def settle_seconds() -> float:
    """AGENT_MESH_SETTLE overrides the pause between paste and Enter (seconds)."""
    raw = os.environ.get("AGENT_MESH_SETTLE", "")
    try:
        value = float(raw)
    except ValueError:
        return SETTLE_SECONDS
    return min(max(value, 0.0), 5.0)


# --- message text -----------------------------------------------------------


def require_unicode(body: str) -> None:
    """Refuse text that is not valid Unicode (undecodable argv bytes) as a usage error."""
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError("message is not valid UTF-8; refusing to guess what was meant") from exc


def sanitize(body: str) -> tuple[str, int]:
    """Drop what could escape the bracketed paste or act as a key.

    ESC (an `ESC[201~` would end the paste early), other C0 controls, DEL and C1
    are removed; tab and newline stay; CRLF and lone CR become LF. Text that is
    not valid Unicode (undecodable argv bytes) is refused rather than altered.
    """
    require_unicode(body)
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    kept = [
        ch
        for ch in text
        if ch in "\t\n" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F)
    ]
    return "".join(kept), len(text) - len(kept)


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
        foreground=foreground_program(pane_pid),
    )


def _split_state(out: bytes) -> tuple[dict[str, str], str]:
    """The display-message record, then the screen; ({}, "") when tmux printed none."""
    try:
        record, rest = parse_head(out, _STATE_FIELDS)
    except WireError:
        return {}, ""
    return record, rest.decode("utf-8", "replace")


class PaneGone(WireError):
    """The registry names a pane tmux no longer has."""

    exit_code = 2


class PaneDead(NotReady):
    """The pane's program exited (remain-on-exit). Not overridable: nothing would read
    the message, and tmux 3.3a's server crashes on `paste-buffer` into a dead pane."""

    overridable = False

    def __init__(self) -> None:
        super().__init__(f"{DEAD_REASON}; FORCE_SEND cannot deliver to it")


_DEAD_SENTINEL = b"agent-mesh:pane-dead"


# --- delivery ---------------------------------------------------------------


def hash_text(text: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    value = 0
    for byte in text.encode("utf-8"):
        value = (value * 131 + byte) % 1_000_000_007
    return value


def deliver_text(
    text: str | Callable[[], str],
    target: str,
    *,
    force: bool = False,
    skip_dismiss: bool = False,
    tmux: Tmux | None = None,
) -> tuple[str, list[str]]:
    """Paste text into the pane `target` and submit it; returns (pane_id, notes).

    `text` may be a function, called only once the pane has been found ready
    (under its lock): a file drop then happens only for a message that will be
    delivered. Raises NotReady (unless force), PaneGone, WireError.
    """
    tmux = tmux or Tmux()
    notes: list[str] = []
    settle = settle_seconds()
    pane = target if _is_pane_id(target) else pane_state(tmux, target).pane_id
    lock = os.path.join(
        paths.locks_dir(), f"pane-{hash_text(_server_key(tmux))}-{pane.lstrip('%')}.lock"
    )
    try:
        with locked(lock, timeout=_LOCK_TIMEOUT) as fd:
            _deliver_locked(tmux, fd, pane, text, force, skip_dismiss, settle, notes)
    except TimeoutError:
        raise NotReady(
            f"another sender has held the pane {pane} for {_LOCK_TIMEOUT:g} s; try again"
        ) from None
    return pane, notes


_LOCK_TIMEOUT = 120.0


def _deliver_locked(
    tmux: Tmux,
    fd: int,
    pane: str,
    text: str | Callable[[], str],
    force: bool,
    skip_dismiss: bool,
    settle: float,
    notes: list[str],
) -> None:
    """Under the pane lock: wait out the previous message, check, paste, schedule Enter."""
    previous_deadline = _read_deadline(fd)
    wait = previous_deadline - time.time()
    if wait > 0:
        time.sleep(wait + 0.05)
    state = pane_state(tmux, pane)
    if state.dead:
        raise PaneDead()
    if not force:
        reason = refusal(state)
        recently_used = time.time() - previous_deadline < _RECENT_WINDOW
        if reason and recently_used:
            state, reason = _poll_ready(tmux, pane)
        if reason:
            raise NotReady(reason)
    if callable(text):
        text = text()
    if not skip_dismiss:
        modal = detect_modal(state.screen)
        if modal:
            tmux.run("send-keys", "-t", pane, "Escape")
            time.sleep(0.5)
            notes.append(f"dismissed the {modal} dialog first")
    if state.in_mode:
        tmux.run("copy-mode", "-q", "-t", pane)
        notes.append("left tmux copy mode first")
    _paste_and_submit(tmux, pane, text, settle)
    _write_deadline(fd, time.time() + settle)


def _server_key(tmux: Tmux) -> str:
    return tmux.socket_path or os.environ.get("TMUX", "").split(",")[0] or os.environ.get(
        "TMUX_TMPDIR", "/tmp"
    )


def _poll_ready(tmux: Tmux, pane: str) -> tuple[PaneState, str | None]:
    """The previous message may still be landing: give the pane a moment to clear."""
    deadline = time.monotonic() + _READY_POLL
    while True:
        state = pane_state(tmux, pane)
        reason = refusal(state)
        if reason is None or time.monotonic() >= deadline:
            return state, reason
        time.sleep(0.05)


def _is_pane_id(target: str) -> bool:
    return target.startswith("%") and target[1:].isdigit()


def _paste_and_submit(tmux: Tmux, pane: str, text: str, settle: float) -> None:
    """One tmux call: load the text from stdin, paste it unless the pane has died
    meanwhile (checked inside tmux's queue, so there is no window for the crash),
    and schedule Enter after the settle. Only the pane id and our buffer name, never
    message text, appear in the command strings."""
    if not _is_pane_id(pane):
        raise WireError(f"refusing to address pane {pane!r}: not a tmux pane id")
    buffer = f"agent-mesh-{os.getpid()}-{os.urandom(4).hex()}"
    result = tmux.run(
        "load-buffer", "-b", buffer, "-", ";",
        "if-shell", "-F", "-t", pane, "#{pane_dead}",
        f"delete-buffer -b {buffer} ; display-message -p {_DEAD_SENTINEL.decode()}",
        f"paste-buffer -p -r -d -b {buffer} -t {pane}", ";",
        "run-shell", "-b", "-d", f"{settle:.3f}", "-C", f"send-keys -t {pane} Enter",
        input=text.encode("utf-8"),
    )
    if _DEAD_SENTINEL in result.stdout:
        raise PaneDead()


def _read_deadline(fd: int) -> float:
    try:
        return float(os.pread(fd, 64, 0).decode() or 0)
    except (OSError, ValueError):
        return 0.0


def _write_deadline(fd: int, deadline: float) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{deadline:.3f}".encode(), 0)


# Claude Code dialogs that would eat a message into their own search box; the
# bash tool dismisses them with Escape first (SKIP_DISMISS=1 opts out).
def detect_modal(screen: str) -> str:
    """Which Claude Code dialog is open, or "".

    Escape also interrupts a working agent, so this must not misfire on text that
    merely mentions these words: a dialog replaces the input box, so nothing is
    recognised while an input prompt row is visible, and the markers must be in
    the bottom 20 non-blank rows, where the dialogs are drawn.
    """
    plain = _strip_sgr(screen)
    lines = [line.strip() for line in plain.splitlines() if line.strip()][-20:]
    if any(_is_prompt_row(line) for line in lines[-8:]):
        return ""
    joined = "\n".join(lines)
    if all(word in joined for word in ("Status", "Config", "Usage", "Stats")) and any(
        line.split()[:4] == ["Status", "Config", "Usage", "Stats"] for line in lines if line
    ):
        return "/config"
    if "Help" in lines and any(line.startswith("/") and " " in line for line in lines):
        return "/help"
    if "Permissions" in lines and any(
        line.split()[:1] in (["Allow"], ["Deny"], ["Ask"]) for line in lines if line
    ):
        return "/permissions"
    return ""


def _is_prompt_row(line: str) -> bool:
    """`❯ …`, `› …`, `> …` (or the glyph alone): an agent's input box row."""
    row = line.lstrip("│ ")
    return row[:1] in ("❯", "›", ">") and (len(row) == 1 or row[1] in " \u00a0")


def _strip_sgr(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\x1b" and i + 1 < n and text[i + 1] == "[":
            j = i + 2
            while j < n and not ("@" <= text[j] <= "~"):
                j += 1
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


# --- files ------------------------------------------------------------------


def safe_component(name: str, fallback: str) -> str:
    """A single path component: no `/`, no control characters, not `.`/`..`."""
    cleaned = "".join(
        "_" if ch in "/\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch for ch in name
    ).strip()
    while cleaned.startswith("."):
        cleaned = cleaned[1:]
    encoded = cleaned.encode("utf-8", "replace")[:200]
    cleaned = encoded.decode("utf-8", "ignore")
    return cleaned or fallback


def sender_dir_name(sender: str) -> str:
    """The bash tool's inbox folder for a sender (spaces and brackets become `_`)."""
    return safe_component(sender.translate(str.maketrans(" []", "___")), "unknown")


def drop_file(data: bytes, sender: str, name: str) -> tuple[str, int]:
    """Write data into ~/.agent-inbox/<sender>/<name> atomically; returns (display path, size)."""
    folder = sender_dir_name(sender)
    base = safe_component(os.path.basename(name), "file")
    inbox = paths.inbox_dir()
    target_dir = os.path.join(inbox, folder)
    for folder_path in (inbox, target_dir):
        if not os.path.isdir(folder_path):
            os.makedirs(folder_path, 0o700, exist_ok=True)
        os.chmod(folder_path, 0o700)
    atomic_write(os.path.join(target_dir, base), data, mode=0o600)
    return f"~/.agent-inbox/{folder}/{base}", len(data)


def drop_notice(display_path: str, size: int, body: str) -> str:
    notice = f"file dropped at {display_path} ({size} bytes)"
    return f"{notice}: {body}" if body else notice


def deliver_envelope(
    envelope: Envelope,
    agent: Agent,
    file_data: bytes | None = None,
    tmux: Tmux | None = None,
    place_file: Callable[[], tuple[str, int]] | None = None,
) -> DeliveryResult:
    """The whole same-host delivery of one envelope: used locally and by `agent-mesh rpc`.

    A file (file_data here, or place_file for one the peer's rpc already
    received) is put into the inbox only after the pane was found ready, so a
    refused message leaves nothing behind.
    """
    require_unicode(envelope.body)  # a usage error comes before any check of the pane
    if file_data is not None and place_file is None:
        data = file_data

        def place_file() -> tuple[str, int]:
            return drop_file(data, envelope.sender, envelope.file_name or "file")

    notes: list[str] = []
    sent: list[str] = []

    def compose() -> str:
        body = envelope.body
        if place_file is not None:
            try:
                shown, size = place_file()
            except OSError as exc:  # the recipient's disk, not the sender's arguments
                raise WireError(
                    f"could not drop the file into ~/.agent-inbox: {exc.strerror or exc}"
                ) from None
            body = drop_notice(shown, size, body)
        text, removed = sanitize(f"[from {envelope.sender} @ {envelope.timestamp}] {body}")
        if removed:
            notes.append(f"removed {removed} control character(s) from the message")
        sent.append(text)
        return text

    target = agent.pane_id or agent.target
    with log.receiving(envelope, agent):  # the agent's received log (delivery/log.py)
        pane, more = deliver_text(
            compose, target, force=envelope.force, skip_dismiss=envelope.skip_dismiss, tmux=tmux
        )
    return DeliveryResult(
        address=agent.address,
        host=agent.host,
        target=agent.target,
        pane_id=pane,
        bytes_sent=len(sent[0].encode("utf-8")),
        notes=notes + more,
    )
