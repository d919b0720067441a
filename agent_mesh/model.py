"""Plain values passed between the layers.

`Frozen` gives what `@dataclass(frozen=True)` would (slots, equality, repr,
as_dict, replace) without importing dataclasses, which pulls in inspect, ast and
dis: ~13 ms, a third of a local delivery, measured on this machine kind.
"""

from __future__ import annotations

from agent_mesh.errors import Outcome, printable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from typing import Self


class Frozen:
    """An immutable value with slots; subclasses list their fields, in order, in
    FIELDS (__slots__ holds the same names; its order is not relied on)."""

    __slots__: tuple[str, ...] = ()
    FIELDS: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self, **changes: object) -> Self:
        """A copy with some fields changed (dataclasses.replace)."""
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(repr(v) for v in self.as_dict().values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({inner})"


# The registry's table keys, in the order they are written: the one list of them
# (registry.toml and mesh.sync import it). `socket` is the tmux server's socket
# path as the host that runs it sees it; `stale` and `last_seen` are set on the
# merged view only (a peer's slice that could not be refreshed).
TABLE_FIELDS = (
    "host", "target", "session", "window", "role", "scope", "pane_id", "command", "updated",
    "session_id", "window_id", "socket", "stale", "last_seen",
)
OPTIONAL_FIELDS = frozenset({"session_id", "window_id", "socket", "stale", "last_seen"})


class Agent(Frozen):
    """One registered tmux window: an address and where to deliver to it."""

    FIELDS = ("address", *TABLE_FIELDS)
    __slots__ = FIELDS
    address: str
    host: str
    target: str
    session: str
    window: str
    role: str
    scope: str
    pane_id: str
    command: str
    updated: str
    session_id: str
    window_id: str
    socket: str
    stale: bool
    last_seen: str

    def __init__(self, address: str, host: str, target: str, session: str = "",
                 window: str = "", role: str = "", scope: str = "", pane_id: str = "",
                 command: str = "", updated: str = "", session_id: str = "",
                 window_id: str = "", socket: str = "", stale: bool = False,
                 last_seen: str = "") -> None:
        self._set(address=address, host=host, target=target, session=session, window=window,
                  role=role, scope=scope, pane_id=pane_id, command=command, updated=updated,
                  session_id=session_id, window_id=window_id, socket=socket, stale=stale,
                  last_seen=last_seen)

    def to_table(self) -> dict[str, str | bool]:
        """The TOML table body: everything but the address, empty extras left out."""
        table: dict[str, str | bool] = {}
        for name in self.FIELDS[1:]:
            value = getattr(self, name)
            if name in OPTIONAL_FIELDS and not value:
                continue
            table[name] = value
        return table

    @classmethod
    def from_table(cls, address: str, table: dict[str, object]) -> Agent:
        """Build from a parsed TOML table, ignoring unknown keys (newer peers).

        Raises ValueError (not a bare TypeError) when `host` or `target` is missing.
        """
        known = cls.FIELDS[1:]
        values: dict[str, object] = {}
        for key, value in table.items():
            if key not in known:
                continue
            values[key] = bool(value) if key == "stale" else str(value)
        missing = [key for key in ("host", "target") if key not in values]
        if missing:
            raise ValueError(f"agent {address!r} has no {' or '.join(missing)}")
        return cls(address=address, **values)  # type: ignore[arg-type]


class Envelope(Frozen):
    """A message on its way: who from, to which address, what, and how.

    Coordination fields: `msg_id` names the message in logs, queues and replies;
    `queue`/`ttl` ask the recipient's host to hold it while the pane is busy;
    `ask` is the id a reply must quote and `reply_to` where it goes; `re` marks
    this message as the reply to ask `re`; `fanout` names the pattern of a broadcast.
    """

    FIELDS = (
        "sender", "address", "body", "timestamp", "force", "skip_dismiss", "file_name",
        "file_size", "msg_id", "queue", "ttl", "ask", "reply_to", "re", "fanout", "verified"
    )
    __slots__ = FIELDS
    sender: str
    address: str
    body: str
    timestamp: str
    force: bool
    skip_dismiss: bool
    file_name: str | None
    file_size: int | None
    msg_id: str
    queue: bool
    ttl: float
    ask: str
    reply_to: str
    re: str
    fanout: str
    verified: str

    def __init__(self, sender: str, address: str, body: str, timestamp: str,
                 force: bool = False, skip_dismiss: bool = False,
                 file_name: str | None = None, file_size: int | None = None,
                 msg_id: str = "", queue: bool = False, ttl: float = 0.0, ask: str = "",
                 reply_to: str = "", re: str = "", fanout: str = "",
                 verified: str = "") -> None:
        """verified: the sending host as the receiving host knows it (a mesh key, or this
        host itself); set there, never taken from a sender (from_json drops it)."""
        self._set(sender=sender, address=address, body=body, timestamp=timestamp, force=force,
                  skip_dismiss=skip_dismiss, file_name=file_name, file_size=file_size,
                  msg_id=msg_id, queue=queue, ttl=ttl, ask=ask, reply_to=reply_to, re=re,
                  fanout=fanout, verified=verified)

    def tag(self) -> str:
        """The `[from … @ …]` line that opens the pasted message. A verified sending host
        shows as `✓HOST` right after the time; a ✓ in any field the sender wrote
        (its name, time, reply route, pattern) is shown as `?`, so only the receiving
        host can put one in a tag (README: Security model)."""
        extra = ""
        if self.ask:
            extra = f', reply: notify-pane {self.reply_to} --re {self.ask} "…"'
        elif self.re:
            extra = f", re {self.re}"
        if self.fanout:
            extra += f", to {self.fanout}"
        claimed = f"from {self.sender} @ {self.timestamp}".replace(VERIFIED_MARK, "?")
        mark = f" {VERIFIED_MARK}{self.verified}" if self.verified else ""
        return f"[{claimed}{mark}{extra.replace(VERIFIED_MARK, '?')}]"

    def to_json(self) -> dict[str, object]:
        return self.as_dict()

    @classmethod
    def from_json(cls, data: dict[str, object], trusted: bool = False) -> Envelope:
        """From a peer's JSON: unknown keys ignored, types coerced (a peer may be older);
        `verified` only from this host's own records (trusted), never a peer's word."""
        size = data.get("file_size")
        name = data.get("file_name")
        return cls(
            sender=str(data["sender"]), address=str(data["address"]), body=str(data["body"]),
            timestamp=str(data["timestamp"]), force=bool(data.get("force")),
            skip_dismiss=bool(data.get("skip_dismiss")),
            file_name=None if name is None else str(name),
            file_size=None if size is None else int(size),  # type: ignore[call-overload]
            msg_id=_msg_id(data.get("msg_id")), queue=bool(data.get("queue")),
            ttl=_ttl(data.get("ttl")),
            ask=str(data.get("ask") or ""), reply_to=str(data.get("reply_to") or ""),
            re=str(data.get("re") or ""), fanout=str(data.get("fanout") or ""),
            verified=str(data.get("verified") or "") if trusted else "",
        )


_HEX = frozenset("0123456789abcdef")
VERIFIED_MARK = "\u2713"  # ✓: written into a tag only by the receiving host


def is_hex_id(value: str, shortest: int = 1) -> bool:
    """The one form of every id (message, ask, reply): `shortest` to 32 lowercase hex
    digits, nothing a shell or a path would read as more than a word."""
    return shortest <= len(value) <= 32 and set(value) <= _HEX


def _msg_id(value: object) -> str:
    """A peer's msg_id: 1-32 lowercase hex digits (log.new_id makes 6), or none. It is
    shown, logged and quoted to `queue --cancel`; anything else is refused, not cleaned."""
    msg_id = "" if value is None else str(value)
    if msg_id and not is_hex_id(msg_id):
        raise ValueError(f"bad message id {msg_id[:40]!r}: 1 to 32 lowercase hex digits")
    return msg_id


def _ttl(value: object) -> float:
    """A peer's ttl: a finite number of seconds, 0 or more (0: the queue's default);
    NaN or an infinity would never expire. The queue caps large ones."""
    ttl = float(value or 0)  # type: ignore[arg-type]
    if not 0 <= ttl < float("inf"):
        raise ValueError(f"bad ttl {ttl!r}: a number of seconds, 0 or more")
    return ttl


class DeliveryResult(Frozen):
    """Where a message went and what the sender should be told about it.

    One form end to end: the paste makes it, receive sets its outcome, a peer's rpc
    sends `to_json()`, the sender reads it back with `from_json` (the JSON field names
    of every earlier version, so a peer one version apart still interoperates)."""

    FIELDS = (
        "address", "host", "target", "pane_id", "bytes_sent", "notes", "outcome", "msg_id"
    )
    __slots__ = FIELDS
    address: str
    host: str
    target: str
    pane_id: str
    bytes_sent: int
    notes: list[str]
    outcome: Outcome
    msg_id: str

    def __init__(self, address: str, host: str, target: str, pane_id: str, bytes_sent: int,
                 notes: list[str] | None = None, outcome: Outcome = Outcome.DELIVERED,
                 msg_id: str = "") -> None:
        """outcome: DELIVERED, QUEUED (held on the recipient's host until the pane is
        ready) or MAILBOX (a reply kept for a waiting asker, typed nowhere)."""
        self._set(address=address, host=host, target=target, pane_id=pane_id,
                  bytes_sent=bytes_sent, notes=list(notes or []), outcome=outcome,
                  msg_id=msg_id)

    def to_json(self) -> dict[str, object]:
        """The `result` of a deliver reply (and of a reply kept for its asker)."""
        return {"address": self.address, "host": self.host, "target": self.target,
                "pane_id": self.pane_id, "bytes_sent": self.bytes_sent,
                "notes": list(self.notes), "outcome": self.outcome.word, "msg_id": self.msg_id}

    @classmethod
    def from_json(cls, data: dict[str, object], host: str | None = None) -> DeliveryResult:
        """From a peer's JSON, its text made printable (it is shown); host: the alias the
        sender reached it by (a peer's own name for itself is not trusted). Raises
        KeyError, TypeError, ValueError or AttributeError when malformed."""
        notes = data.get("notes", [])
        if not isinstance(notes, list):
            raise TypeError("notes is not a list")
        return cls(
            address=printable(str(data["address"])),
            host=printable(str(data["host"] if host is None else host)),
            target=printable(str(data["target"])), pane_id=printable(str(data["pane_id"])),
            bytes_sent=int(data["bytes_sent"]),  # type: ignore[call-overload]
            notes=[printable(str(note)) for note in notes],
            outcome=Outcome.from_json(data, default=Outcome.DELIVERED),
            msg_id=str(data.get("msg_id", "")),
        )
