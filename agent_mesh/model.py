"""Plain values passed between the layers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class Agent:
    """One registered tmux window: an address and where to deliver to it."""

    address: str
    host: str
    target: str
    session: str = ""
    window: str = ""
    role: str = ""
    scope: str = ""
    pane_id: str = ""
    command: str = ""
    updated: str = ""
    session_id: str = ""
    window_id: str = ""
    # Set on the merged view only: the peer's slice could not be refreshed.
    stale: bool = False
    last_seen: str = ""

    def to_table(self) -> dict[str, str | bool]:
        """The TOML table body: everything but the address, empty extras left out."""
        table: dict[str, str | bool] = {}
        for name, value in asdict(self).items():
            if name == "address":
                continue
            if name in _OPTIONAL and not value:
                continue
            table[name] = value
        return table

    @classmethod
    def from_table(cls, address: str, table: dict[str, object]) -> Agent:
        """Build from a parsed TOML table, ignoring unknown keys (newer peers).

        Raises ValueError (not a bare TypeError) when `host` or `target` is missing.
        """
        known = {f.name for f in fields(cls)} - {"address"}
        values: dict[str, object] = {}
        for key, value in table.items():
            if key not in known:
                continue
            if key == "stale":
                values[key] = bool(value)
            else:
                values[key] = str(value)
        missing = [key for key in ("host", "target") if key not in values]
        if missing:
            raise ValueError(f"agent {address!r} has no {' or '.join(missing)}")
        return cls(address=address, **values)  # type: ignore[arg-type]


_OPTIONAL = {"stale", "last_seen", "session_id", "window_id"}


@dataclass(frozen=True)
class Envelope:
    """A message on its way: who from, to which address, what, and how."""

    sender: str
    address: str
    body: str
    timestamp: str
    force: bool = False
    skip_dismiss: bool = False
    file_name: str | None = None
    file_size: int | None = None

    def text(self) -> str:
        """What lands in the pane: the bash tool's tag, then the body."""
        return f"[from {self.sender} @ {self.timestamp}] {self.body}"


@dataclass(frozen=True)
class DeliveryResult:
    address: str
    host: str
    target: str
    pane_id: str
    bytes_sent: int
    notes: list[str] = field(default_factory=list)
