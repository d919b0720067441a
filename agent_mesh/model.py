"""Plain values passed between the layers.

`Frozen` gives what `@dataclass(frozen=True)` would (slots, equality, repr,
replace, as_dict) without importing dataclasses, which pulls in inspect, ast and
dis: ~13 ms, a third of a local delivery, measured on this machine kind.
"""

from __future__ import annotations


class Frozen:
    """An immutable value with slots; subclasses list their fields, in order, in
    FIELDS (__slots__ holds the same names; its order is not relied on)."""

    __slots__: tuple[str, ...] = ()
    FIELDS: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self, **changes: object) -> Frozen:
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(repr(v) for v in self.as_dict().values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({inner})"


_OPTIONAL = frozenset({"stale", "last_seen", "session_id", "window_id"})


class Agent(Frozen):
    """One registered tmux window: an address and where to deliver to it.

    `stale` and `last_seen` are set on the merged view only: the peer's slice
    could not be refreshed at the last sync.
    """

    FIELDS = (
        "address", "host", "target", "session", "window", "role", "scope", "pane_id", "command",
        "updated", "session_id", "window_id", "stale", "last_seen"
    )
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
    stale: bool
    last_seen: str

    def __init__(self, address: str, host: str, target: str, session: str = "",
                 window: str = "", role: str = "", scope: str = "", pane_id: str = "",
                 command: str = "", updated: str = "", session_id: str = "",
                 window_id: str = "", stale: bool = False, last_seen: str = "") -> None:
        self._set(address=address, host=host, target=target, session=session, window=window,
                  role=role, scope=scope, pane_id=pane_id, command=command, updated=updated,
                  session_id=session_id, window_id=window_id, stale=stale,
                  last_seen=last_seen)

    def replace(self, **changes: object) -> Agent:
        return Agent(**{**self.as_dict(), **changes})  # type: ignore[arg-type]

    def to_table(self) -> dict[str, str | bool]:
        """The TOML table body: everything but the address, empty extras left out."""
        table: dict[str, str | bool] = {}
        for name in self.FIELDS[1:]:
            value = getattr(self, name)
            if name in _OPTIONAL and not value:
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
    """A message on its way: who from, to which address, what, and how."""

    FIELDS = (
        "sender", "address", "body", "timestamp", "force", "skip_dismiss", "file_name",
        "file_size", "id"
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
    id: str  # short id shared by both ends' delivery logs (delivery/log.py)

    def __init__(self, sender: str, address: str, body: str, timestamp: str,
                 force: bool = False, skip_dismiss: bool = False,
                 file_name: str | None = None, file_size: int | None = None,
                 id: str = "") -> None:
        self._set(sender=sender, address=address, body=body, timestamp=timestamp, force=force,
                  skip_dismiss=skip_dismiss, file_name=file_name, file_size=file_size, id=id)

    def replace(self, **changes: object) -> Envelope:
        return Envelope(**{**self.as_dict(), **changes})  # type: ignore[arg-type]


class DeliveryResult(Frozen):
    """Where a message went and what the sender should be told about it."""

    FIELDS = (
        "address", "host", "target", "pane_id", "bytes_sent", "notes"
    )
    __slots__ = FIELDS
    address: str
    host: str
    target: str
    pane_id: str
    bytes_sent: int
    notes: list[str]

    def __init__(self, address: str, host: str, target: str, pane_id: str, bytes_sent: int,
                 notes: list[str] | None = None) -> None:
        self._set(address=address, host=host, target=target, pane_id=pane_id,
                  bytes_sent=bytes_sent, notes=list(notes or []))
