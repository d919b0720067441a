"""Every error type, the exit-code table, the Outcome of a delivery, the machine causes
an error may carry, and the one renderer.

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
    6  waited the whole timeout: `agent-mesh ask` got no reply, `agent-mesh lock
       --wait` found the path still held
    130 interrupted

Stdlib only: this is on every hot path. `printable` reads escape sequences with the one
parser, agent_mesh/screen.py (a leaf like this one).
"""

from __future__ import annotations

from agent_mesh.screen import SGR, TEXT, tokens

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every hot path an import
    from typing import ClassVar

DELIVERED, USAGE, UNKNOWN_AGENT, NOT_READY, WIRE, QUEUED, ASK_TIMEOUT = 0, 1, 2, 3, 4, 5, 6
INTERRUPTED = 130


class Outcome:
    """What became of one message for one recipient: a word, its form in JSON, logs and
    on screen (the words peers have always sent: a previous version interoperates), and
    the exit code it stands for. The members below are the whole set; `parse` turns a
    peer's or a log's (word, code) back into one, `of_error` names a failure's.

    Not an enum.Enum: `enum` costs the hook and every peer's rpc milliseconds of import.
    """

    __slots__ = ("code", "word")
    DELIVERED: ClassVar[Outcome]  # typed into the pane (exit 0)
    MAILBOX: ClassVar[Outcome]  # a reply kept for its waiting asker, typed nowhere (exit 0)
    QUEUED: ClassVar[Outcome]  # held on the recipient's host until the pane is ready (exit 5)
    REFUSED: ClassVar[Outcome]  # the pane is not ready: NotReady (exit 3)
    UNKNOWN: ClassVar[Outcome]  # no such agent, or its pane is gone (exit 2)
    FAILED: ClassVar[Outcome]  # tmux or the network failed (exit 4)
    INVALID: ClassVar[Outcome]  # usage: a bad request, file or configuration (exit 1)
    MEMBERS: ClassVar[tuple[Outcome, ...]]

    word: str
    code: int

    def __init__(self, word: str, code: int) -> None:
        object.__setattr__(self, "word", word)
        object.__setattr__(self, "code", code)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Outcome is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and (self.word, self.code) == (other.word, other.code)

    def __hash__(self) -> int:
        return hash((self.word, self.code))

    def __str__(self) -> str:
        return self.word

    def __repr__(self) -> str:
        return f"Outcome({self.word!r}, {self.code})"

    @property
    def ok(self) -> bool:
        """Delivered, kept or queued: the message is on its way (no error)."""
        return self.code in (DELIVERED, QUEUED)

    @property
    def done(self) -> bool:
        """Delivered, or kept for its asker: nothing more happens to it (exit 0)."""
        return self.code == DELIVERED

    @classmethod
    def parse(cls, word: object, code: object = None) -> Outcome:
        """A (word, code) as JSON carries it: the member with that word (and that code,
        when one is given: "failed" is 4, or 1 in a log); a word this version does not
        know (a newer peer) is kept with its code, or counts as a wire failure."""
        known = [m for m in cls.MEMBERS if m.word == word]
        if isinstance(code, int) and not isinstance(code, bool):
            for member in known:
                if member.code == code:
                    return member
            return cls(str(word), code)
        return known[0] if known else cls(str(word), WIRE)

    @classmethod
    def of_error(cls, exc: BaseException) -> Outcome:
        """The outcome a failure stands for: its exit code's (one that is no MeshError
        failed on the way: a wire failure, as a peer's rpc answers it)."""
        return cls.of_code(exc.exit_code) if isinstance(exc, MeshError) else cls.FAILED

    @classmethod
    def of_code(cls, code: int) -> Outcome:
        """The member for an exit code (0 is DELIVERED); a code no member has (6, an
        ask's timeout) "failed" with that code."""
        for member in cls.MEMBERS:
            if member.code == code:
                return member
        return cls("failed", code)

    @classmethod
    def from_json(cls, data: dict[str, object], default: Outcome | None = None) -> Outcome:
        """From a record's or a row's `outcome` and `code` fields (default: no `outcome`)."""
        if "outcome" not in data and default is not None:
            return default
        return cls.parse(data.get("outcome"), data.get("code"))

    def to_json(self) -> dict[str, object]:
        """The fields a record or a row carries: `outcome`, and `code` for a failure
        (a success's code is implied by its word, as it always was on the wire)."""
        return {"outcome": self.word} if self.ok else {"outcome": self.word, "code": self.code}


Outcome.DELIVERED = Outcome("delivered", DELIVERED)
Outcome.MAILBOX = Outcome("mailbox", DELIVERED)
Outcome.QUEUED = Outcome("queued", QUEUED)
Outcome.REFUSED = Outcome("refused", NOT_READY)
Outcome.UNKNOWN = Outcome("unknown", UNKNOWN_AGENT)
Outcome.FAILED = Outcome("failed", WIRE)
Outcome.INVALID = Outcome("failed", USAGE)  # the word logs and peers have always used
Outcome.MEMBERS = (Outcome.DELIVERED, Outcome.MAILBOX, Outcome.QUEUED, Outcome.REFUSED,
                   Outcome.UNKNOWN, Outcome.FAILED, Outcome.INVALID)


class Cause:
    """Machine causes an error carries (`MeshError.cause`), read by doctor and scripts
    instead of the English message: short stable strings, also sent over the wire."""

    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    HOST_KEY_REVOKED = "host-key-revoked"
    AUTH_FAILED = "auth-failed"
    UNKNOWN_HOST = "unknown-host"
    NO_HANDSHAKE = "no-handshake"
    UNREACHABLE = "unreachable"
    CONNECTION_LOST = "connection-lost"
    SSH_FAILED = "ssh-failed"
    NOT_INSTALLED = "not-installed"
    VERSION_MISMATCH = "version-mismatch"
    NO_ANSWER = "no-answer"


class MeshError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code.

    `cause`: a Cause string, or "" where the exit code says all there is."""

    exit_code = USAGE
    answered = False  # rebuilt from a peer's reply: the request reached it (wire.py)
    cause = ""

    def __init__(self, *args: object, cause: str = "") -> None:
        super().__init__(*args)
        if cause:
            self.cause = cause


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


class UnknownAddress(UnknownAgent):
    """Exit 2 with a reason of its own (out of date, scratch session) instead of
    the did-you-mean hint (registry/view.py)."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        self.suggestions = []
        MeshError.__init__(self, message)


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


class MidTurn(NotReady):
    """The agent is mid-turn (or asking) by its own hooks (delivery/turns.py): the
    message is queued for its Stop hook (exit 5) rather than refused or typed."""

    queues = True  # the queue logs what becomes of it (delivery/log.py)


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


class TornRecord(WireError):
    """tmux printed a record whose length prefixes do not add up: a field tmux reads from
    the OS at each use (`pane_current_command`) changed between its length and its value
    (a foreground program starting or ending). Reading again gives a whole record."""


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


class Held(MeshError):
    """A lock or a task is someone else's (exit 3): the line names the holder."""

    exit_code = NOT_READY


class WaitTimeout(MeshError):
    """`agent-mesh lock --wait` waited its whole time and the path is still held (exit 6)."""

    exit_code = ASK_TIMEOUT


class SetupError(UsageError):
    """Setup cannot start or go on without the user fixing something first (ops/setup.py)."""


class DemoFailed(Exception):
    """A step of `agent-mesh demo` failed; the message is the one-line reason shown to
    the user (ops/demo.py: not a MeshError, the demo reports its own steps)."""


# Rebuilding a peer's error by name keeps its type and flags; unknown names fall
# back to the exit code (a newer peer may have more types).
KINDS: dict[str, type[MeshError]] = {
    cls.__name__: cls
    for cls in (UsageError, UnknownAgent, PaneGone, NotReady, PaneDead, AwaitingAnswer, WireError,
                Refused, SliceRejected, NoMatch, AskTimeout, Held, WaitTimeout)
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

# Bidirectional controls reorder what follows them on screen (U+202E shows `txt.exe` as
# `exe.txt`): dropped from anything shown, as escape sequences are.
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def printable(text: str, *, lines: bool = False, sgr: bool = False) -> str:
    """Text safe to show on a terminal: the one place that makes it so, for every
    name, error, status cell and peeked screen that came from a pane or a peer.

    Escape sequences (screen.tokens) are dropped whole, so nothing clears a screen or
    writes a clipboard; bidi controls are dropped; line breaks, tabs and other spaces
    become spaces; any other C0/C1 control or DEL becomes `?`; other non-printables are
    shown escaped, not obeyed. lines: keep `\n` (a screen); sgr: keep colour sequences
    (`ESC [ … m`, `peek --ansi`).
    """
    if lines:  # line by line: most rows of a screen take the fast path
        return "\n".join(printable(row, sgr=sgr) for row in text.split("\n"))
    if text.isprintable():
        return text
    out: list[str] = []
    for run, kind in tokens(text):
        if kind != TEXT:
            if sgr and kind == SGR:
                out.append(run)
            continue
        out.append(run if run.isprintable() else "".join(map(_shown, run)))
    return "".join(out)


def _shown(ch: str) -> str:
    """One character of text as printable shows it."""
    if ch.isprintable() or ch == " ":
        return ch
    if ch in "\n\r\t\v\f":
        return " "
    if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
        return "?"
    if ch in BIDI:
        return ""
    if ch.isspace():  # NBSP, U+2028 and other spaces
        return " "
    return ch.encode("unicode_escape").decode("ascii")  # format chars, unassigned: not obeyed


def printable_json(dumped: str) -> str:
    """JSON text (json.dumps with ensure_ascii=False) safe for a terminal: DEL, C1,
    bidi controls and line separators inside its strings are written as \\uXXXX
    escapes (json.dumps leaves them raw), so a script still reads the exact value."""
    if dumped.isprintable() or all(c.isprintable() or c in "\n " for c in dumped):
        return dumped
    return "".join(f"\\u{ord(c):04x}" if (0x7F <= ord(c) <= 0x9F or c in BIDI
                                           or c in "\u2028\u2029") else c for c in dumped)


class ToolFailure(Exception):
    """An MCP tool's failure as the one line the client shows (agent-mesh mcp makes the SDK's
    ToolError from it at the edge, so the tools' helpers need no SDK import)."""


def bounded(value: object, what: str, default: float, maximum: float) -> float:
    """A number a peer sent (a wait, a count: mesh/handlers.py, coord/serve.py), clamped
    to maximum; missing is default. NaN, infinities, negatives and non-numbers are a
    UsageError (exit 1): a peer must not hold a process for 1e300 s, nor slip a NaN past
    a comparison."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise UsageError(f"bad {what} {printable(repr(value))[:40]}: "
                         f"a number from 0 to {maximum:g}")
    return min(float(value), maximum)
