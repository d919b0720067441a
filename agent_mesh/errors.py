"""Every error type, the exit-code table, and the one renderer.

The core raises; only the CLI layer prints or exits, and every entry point
(notify-pane, the agent-mesh commands, the tmux hook's log, `agent-mesh rpc`'s
reply, doctor) renders a failure with `line, code = report(exc)`, so a failure
reads the same locally and from a peer.

Exit codes (those of the bash tool):

    0  delivered
    1  usage: bad arguments, unreadable file, invalid configuration, local file error
    2  unknown agent: not in the registry, or the registry names a pane that is
       gone (the registry is out of date; agent-discover on that host fixes it)
    3  not ready: the recipient must not be typed into now (FORCE_SEND=1 overrides,
       unless the error says it cannot)
    4  wire failure: tmux or the network failed between us and the recipient, or a
       peer answered something that is not a valid reply
    5  queued (`--queue`): the recipient was busy; its host delivers the message when
       it is ready (an outcome, not an error)
    6  `agent-mesh ask`: no reply within the timeout
    130 interrupted

Stdlib only and nothing imported at module level: this is on every hot path.
"""

from __future__ import annotations

DELIVERED, USAGE, UNKNOWN_AGENT, NOT_READY, WIRE, QUEUED, ASK_TIMEOUT = 0, 1, 2, 3, 4, 5, 6
INTERRUPTED = 130


class MeshError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code."""

    exit_code = USAGE
    answered = False  # rebuilt from a peer's reply: the request reached it (wire.py)


class UsageError(MeshError):
    """Bad arguments, unreadable file, invalid configuration."""

    exit_code = USAGE


class UnknownAgent(MeshError):
    """The address is not in the registry; carries close matches for the hint."""

    exit_code = UNKNOWN_AGENT

    def __init__(self, address: str, suggestions: list[str] | None = None) -> None:
        self.address = address
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        # a command every caller has (peek, status, ask have no --list of their own)
        super().__init__(f"unknown agent '{address}'{hint} (every address: notify-pane --list)")


class PaneGone(MeshError):
    """The registry names a pane tmux no longer has: the registry is out of date,
    so to the sender this is an unknown agent (exit 2), not a wire failure."""

    exit_code = UNKNOWN_AGENT


class NotReady(MeshError):
    """The recipient pane must not be typed into right now (FORCE_SEND=1 overrides
    when `overridable`). `address` is filled in by the CLI, which knows it."""

    exit_code = NOT_READY
    overridable = True

    def __init__(self, message: str, *, overridable: bool | None = None,
                 address: str = "") -> None:
        super().__init__(message)
        if overridable is not None:
            self.overridable = overridable
        self.address = address


class PaneDead(NotReady):
    """The pane's program exited (remain-on-exit). Not overridable: nothing would read
    the message, and tmux 3.3a's server crashes on `paste-buffer` into a dead pane."""

    overridable = False

    def __init__(self, message: str, *, overridable: bool | None = None,
                 address: str = "") -> None:
        super().__init__(message, overridable=False, address=address)


class AwaitingAnswer(NotReady):
    """The agent shows a question (permission, approval, a menu, a password prompt).
    Not overridable: whatever FORCE_SEND typed would be taken as the answer."""

    overridable = False

    def __init__(self, question: str, *, overridable: bool | None = None,
                 address: str = "") -> None:
        message = question if question.startswith("waiting for an answer") else (
            f"waiting for an answer: {question}; answer it in the pane first "
            "(FORCE_SEND does not type into dialogs)")
        super().__init__(message, overridable=False, address=address)


class WireError(MeshError):
    """tmux or the network failed between us and the recipient."""

    exit_code = WIRE


class Refused(MeshError):
    """A rule of the recipient's host refuses this sender or operation: a window's
    @agent-allow, or a peer's rights in ~/.agents/config.toml (issue 18). The message
    names the rule; FORCE_SEND does not override it."""

    exit_code = NOT_READY


class SliceRejected(MeshError):
    """A peer's slice that must not replace the last good one."""

    exit_code = WIRE


class NoMatch(MeshError):
    """A pattern or id matched nothing in the mesh (exit 2, like an unknown agent)."""

    exit_code = UNKNOWN_AGENT


class AskTimeout(MeshError):
    """`agent-mesh ask` waited its whole timeout and no reply came (exit 6)."""

    exit_code = ASK_TIMEOUT


# Rebuilding a peer's error by name keeps its type and flags; unknown names fall
# back to the exit code (a newer peer may have more types).
KINDS: dict[str, type[MeshError]] = {
    cls.__name__: cls
    for cls in (UsageError, UnknownAgent, PaneGone, NotReady, PaneDead, AwaitingAnswer, WireError,
                Refused, SliceRejected, NoMatch, AskTimeout)
}
BY_CODE: dict[int, type[MeshError]] = {
    USAGE: UsageError, UNKNOWN_AGENT: UnknownAgent, NOT_READY: NotReady, WIRE: WireError,
}


def report(exc: BaseException) -> tuple[str, int]:
    """The one printable line and the exit code for any exception."""
    if isinstance(exc, NotReady):
        where = f" to '{exc.address}'" if exc.address else ""
        hint = " (FORCE_SEND=1 to override)" if exc.overridable else ""
        return printable(f"refusing to deliver{where}: {exc}{hint}"), exc.exit_code
    if isinstance(exc, MeshError):
        return printable(str(exc)), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(exc, OSError) and exc.strerror:
        # A read-only or full ~/.agents, a vanished directory: name the file.
        where = f"{exc.filename}: " if exc.filename else ""
        return printable(f"{where}{exc.strerror}"), USAGE
    return printable(f"unexpected error: {type(exc).__name__}: {exc}"), USAGE


# --- one printable line -----------------------------------------------------------

_ESC = "\x1b"
_STRING_INTRO = "]PX^_"  # OSC, DCS, SOS, PM, APC: run until BEL or ST
_C1_CSI, _C1_STRING = "\x9b", "\x9d\x90\x98\x9e\x9f"
_INTRO = _ESC + _C1_CSI + _C1_STRING
_STRING_END, _ST = "\x07\x9c", "\x1b\\"  # BEL or C1 ST; ESC \\
# Bidirectional controls reorder what follows them on screen (U+202E shows `txt.exe` as
# `exe.txt`): dropped from anything shown, as escape sequences are.
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def printable(text: str, *, lines: bool = False, sgr: bool = False) -> str:
    """Text safe to show on a terminal: the one place that makes it so, for every
    name, error, status cell and peeked screen that came from a pane or a peer.

    CSI (`ESC [ … final`) and string sequences (OSC, DCS, …, up to BEL or `ESC \\`)
    are dropped whole, so nothing clears a screen or writes a clipboard; bidi
    controls are dropped; line breaks, tabs and other spaces become spaces; any other
    C0/C1 control or DEL becomes `?`; other non-printables are shown escaped, not
    obeyed. lines: keep `\n` (a screen); sgr: keep colour sequences (`ESC [ … m`,
    `peek --ansi`).
    """
    if lines:  # line by line: most rows of a screen take the fast path
        return "\n".join(printable(row, sgr=sgr) for row in text.split("\n"))
    if text.isprintable():
        return text
    if sgr:  # colour sequences kept as they are, the text between them made printable
        import re  # only here: errors is on every hot path

        parts = re.split("(\x1b\\[[0-9;:]*m)", text)
        return "".join(part if n % 2 else printable(part) for n, part in enumerate(parts))
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch in _INTRO:
            if ch == _ESC:
                if i >= n:
                    break
                kind = text[i]
                i += 1
            else:
                kind = "[" if ch == _C1_CSI else "]"
            if kind == "[":  # parameters and intermediates up to one final byte
                while i < n and not "\x40" <= text[i] <= "\x7e":
                    i += 1
                i += 1
            elif kind in _STRING_INTRO:
                while i < n and text[i] not in _STRING_END and text[i:i + 2] != _ST:
                    i += 1
                i += 2 if text[i:i + 2] == _ST else 1
            elif "\x20" <= kind <= "\x2f":  # ESC ( B and kin: intermediates, then a final
                while i < n and "\x20" <= text[i] <= "\x2f":
                    i += 1
                i += 1
            # any other ESC x: a two-byte sequence, x already consumed
            continue
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in "\n\r\t\v\f":
            out.append(" ")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append("?")
        elif ch in BIDI:
            continue
        elif ch.isspace():  # NBSP, U+2028 and other spaces
            out.append(" ")
        else:  # other non-printables (format chars, unassigned): visible, not obeyed
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def printable_json(dumped: str) -> str:
    """JSON text (json.dumps with ensure_ascii=False) safe for a terminal: DEL, C1,
    bidi controls and line separators inside its strings are written as \\uXXXX
    escapes (json.dumps leaves them raw), so a script still reads the exact value."""
    if dumped.isprintable() or all(c.isprintable() or c in "\n " for c in dumped):
        return dumped
    return "".join(f"\\u{ord(c):04x}" if (0x7F <= ord(c) <= 0x9F or c in BIDI
                                           or c in "\u2028\u2029") else c for c in dumped)
