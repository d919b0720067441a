"""Registry sync: exchange slices with every peer in parallel, merge atomically.

One SSH request per peer both pushes this host's slice and fetches the peer's.
A fetched slice is validated before it replaces the last good copy in
~/.agents/slices/<alias>.toml; a peer that cannot be reached, or that sends a
malformed or hostile slice, keeps its last good slice, marked stale with when it
was last fetched, so its agents never vanish in a network blip. Slices received
by push are stored the same way and never pushed onward: nothing echoes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent_mesh import paths, registry, store
from agent_mesh.errors import UsageError, WireError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Agent

MAX_SLICE_BYTES = 1024 * 1024
MAX_AGENTS = 2000
SYNC_TIMEOUT = 20.0  # a peer that connects but never answers must not hold up the rest
_TEXT_FIELDS = ("host", "target", "session", "window", "role", "scope", "pane_id", "command",
                "updated", "session_id", "window_id")


class SliceRejected(Exception):
    """A peer's slice that must not replace the last good one."""


@dataclass(frozen=True)
class PeerReport:
    alias: str
    status: str  # ok | unreachable | rejected
    detail: str
    agents: int
    elapsed_ms: float = 0.0

    def line(self) -> str:
        if self.status == "ok":
            return f"{self.alias}: ok, {self.agents} agent(s) ({self.elapsed_ms:.0f} ms)"
        return f"{self.alias}: {self.status}: {self.detail}"


def valid_alias(alias: str) -> bool:
    return bool(alias) and not alias.startswith("-") and all(
        ch.isalnum() or ch in "._-@:" for ch in alias
    )


def read_peers() -> list[str]:
    """Aliases from peers.conf (one per line, `#` comments), without this host."""
    try:
        text = Path(paths.peers_conf()).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    me = registry.self_alias()
    peers: list[str] = []
    for line in text.splitlines():
        alias = line.split("#", 1)[0].strip()
        if not alias or alias == me or alias in peers:
            continue
        if not valid_alias(alias):
            raise UsageError(f"{Path(paths.peers_conf())}: invalid host alias {alias!r}")
        peers.append(alias)
    return peers


def validate_slice(alias: str, text: str) -> dict[str, Agent]:
    """Parse a peer's slice; reject anything a well-behaved peer would not send."""
    if len(text.encode("utf-8")) > MAX_SLICE_BYTES:
        raise SliceRejected(f"slice larger than {MAX_SLICE_BYTES // 1024} KiB")
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SliceRejected(f"invalid TOML ({exc})") from None
    tables = doc.get("agents", {})
    if not isinstance(tables, dict):
        raise SliceRejected("'agents' is not a table")
    if len(tables) > MAX_AGENTS:
        raise SliceRejected(f"more than {MAX_AGENTS} agents")
    prefix = registry.host_part(alias) + "-"
    agents: dict[str, Agent] = {}
    for address, table in tables.items():
        if not registry.is_valid_address(address) or not address.startswith(prefix):
            raise SliceRejected(f"address {address[:60]!r} is not a valid address of {alias}")
        if not isinstance(table, dict):
            raise SliceRejected(f"entry {address} is not a table")
        if table.get("host") != alias:
            raise SliceRejected(f"entry {address} claims host {str(table.get('host'))[:40]!r}")
        for name in _TEXT_FIELDS:
            if name in table and not isinstance(table[name], str):
                raise SliceRejected(f"entry {address} field {name} is not a string")
        pane = str(table.get("pane_id", ""))
        if pane and not (pane.startswith("%") and pane[1:].isdigit()):
            raise SliceRejected(f"entry {address} has pane id {pane[:20]!r}")
        try:
            agents[address] = Agent.from_table(address, table)
        except ValueError as exc:
            raise SliceRejected(f"entry {address}: {exc}") from None
    return agents


def store_slice(alias: str, agents: dict[str, Agent], fetched: str, stale: bool = False,
                error: str = "") -> None:
    meta: dict[str, object] = {"host": alias, "fetched": fetched, "stale": stale}
    if error:
        meta["error"] = error
    text = registry.dump_tables(
        [f"agent-mesh: last good slice of {alias}. Do not edit."],
        {"slice": {"meta": meta}, "agents": {a: ag.to_table() for a, ag in agents.items()}},
    )
    atomic_write(Path(paths.slices_dir()) / f"{alias}.toml", text.encode("utf-8"))


def mark_stale(alias: str, error: str) -> tuple[int, str]:
    """Keep the last good slice but flag it; returns (agents kept, last fetch time)."""
    path = Path(paths.slices_dir()) / f"{alias}.toml"
    with locked(Path(paths.slices_dir()) / f".{alias}.lock"):
        try:
            meta, agents = registry.read_slice_file(path)
        except UsageError:
            meta, agents = {}, {}
        fetched = str(meta.get("fetched", ""))
        if path.exists() or agents:
            store_slice(alias, agents, fetched, stale=True, error=error)
    return len(agents), fetched


def accept_pushed_slice(sender: str, text: str) -> None:
    """A peer pushed its slice to us: store it if the sender is a member and it is valid."""
    if sender not in read_peers():
        raise UsageError(f"{sender!r} is not in this host's peers.conf; slice ignored")
    try:
        agents = validate_slice(sender, text)
    except SliceRejected as exc:
        raise UsageError(f"slice from {sender} rejected: {exc}") from None
    with locked(Path(paths.slices_dir()) / f".{sender}.lock"):
        store_slice(sender, agents, registry.now_iso())
    registry.assemble()


def _ago(stamp: str) -> str:
    return f"{store.age(stamp)} ago" if store.age(stamp) else "never"


def sync_one(alias: str, local_text: str | None, kind: str | None = None) -> PeerReport:
    from agent_mesh.transport import Transport, remote_transport

    transport: Transport | None = None
    try:
        transport = remote_transport(alias, kind)
        text, elapsed = transport.exchange(registry.self_alias(), local_text, SYNC_TIMEOUT)
    except (WireError, UsageError) as exc:
        kept, fetched = mark_stale(alias, str(exc))
        cause = str(exc).removeprefix(f"{alias}: ")
        return PeerReport(alias, "unreachable", f"{cause}; keeping {kept} agent(s) last seen "
                          f"{_ago(fetched)} (stale)", kept)
    finally:
        if transport is not None:
            transport.close()
    try:
        agents = validate_slice(alias, text)
    except SliceRejected as exc:
        kept, fetched = mark_stale(alias, f"rejected: {exc}")
        return PeerReport(alias, "rejected", f"{exc}; keeping {kept} agent(s) from "
                          f"{_ago(fetched)} (stale)", kept)
    with locked(Path(paths.slices_dir()) / f".{alias}.lock"):
        store_slice(alias, agents, registry.now_iso())
    return PeerReport(alias, "ok", "", len(agents), elapsed)


def sync(push: bool = True) -> list[PeerReport]:
    """Exchange slices with every peer in parallel, then re-assemble registry.toml."""
    peers = read_peers()
    local_text: str | None = None
    if push:
        try:
            local_text = Path(paths.local_slice()).read_text(encoding="utf-8")
        except FileNotFoundError:
            local_text = None
    Path(paths.slices_dir()).mkdir(parents=True, exist_ok=True)
    reports: list[PeerReport] = []
    if peers:
        from concurrent.futures import ThreadPoolExecutor

        from agent_mesh.transport import chosen_transport

        kind = chosen_transport()  # once, not per thread
        with ThreadPoolExecutor(max_workers=min(32, len(peers))) as pool:
            reports = list(pool.map(lambda alias: sync_one(alias, local_text, kind), peers))
    for old in Path(paths.slices_dir()).glob("*.toml"):
        if old.stem not in peers:  # no longer a member
            old.unlink(missing_ok=True)
    registry.assemble()
    return reports


def push_pending() -> list[PeerReport]:
    """What the hook's background `agent-mesh push` runs: coalesce bursts of hooks.

    Each caller marks a push as pending; whoever holds the push lock loops until
    no mark is left, so 30 hooks firing together cost one or two rounds, and a
    change made during a round is never lost.
    """
    pending = Path(paths.agents_dir()) / "push.pending"
    lock_path = Path(paths.agents_dir()) / "push.lock"
    pending.touch()
    reports: list[PeerReport] = []
    while pending.exists():
        try:
            with locked(lock_path, timeout=0):
                while pending.exists():
                    pending.unlink(missing_ok=True)
                    reports = sync(push=True)
        except TimeoutError:
            return reports  # the holder will see our mark
    return reports
