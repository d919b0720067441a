"""Registry sync: exchange slices with every peer in parallel, merge atomically.

One SSH request per peer both pushes this host's slice and fetches the peer's.
A fetched slice is validated before it replaces the last good copy in
~/.agents/slices/<alias>.toml; a peer that cannot be reached, or that sends a
malformed or hostile slice, keeps its last good slice, marked stale with when it
was last fetched, so its agents never vanish in a network blip.

Peers speak only for themselves: a slice keeps only entries of its own host
(right `host`, an address under that alias and under no longer alias; the rest
are dropped with a note). A pushed slice is a hint, never data: the receiver
pulls the sender's slice over its own SSH connection (its own known_hosts), so a
member cannot forge another's slice. Each exchange has a wall-clock deadline
(AGENT_MESH_SYNC_DEADLINE, default 10 s): a peer that trickles bytes cannot hold
up the others, registry.toml is assembled from those that answered.
"""

from __future__ import annotations

import os
import time

from agent_mesh import clock, paths
from agent_mesh.clock import age
from agent_mesh.detach import start_helper
from agent_mesh.errors import SliceRejected, UsageError, printable
from agent_mesh.fsutil import locked, make_dirs
from agent_mesh.mesh.transport import Host
from agent_mesh.model import Agent
from agent_mesh.registry import naming, view
from agent_mesh.registry.naming import read_peers
from agent_mesh.registry.toml import (
    SLICE_FIELDS,
    dump_tables,
    ensure_agents_dir,
    read_own,
    write_file,
)
from agent_mesh.registry.view import assemble, read_slice_file

TYPE_CHECKING = False
if TYPE_CHECKING:  # no dataclasses, pathlib, contextlib or collections: ~10 ms of every
    from collections.abc import Callable  # sync's start, and of every peer's `exchange`
    from typing import Any

MAX_SLICE_BYTES = 1024 * 1024
MAX_AGENTS = 2000
SYNC_TIMEOUT = 20.0  # a peer that connects but never answers must not hold up the rest
DEFAULT_DEADLINE = 10.0  # wall clock for one whole exchange (connect, request, reply)
STUCK_GRACE = 5.0  # a push round older than the deadline plus this is stuck: don't wait on it
MAX_NOTES = 3


class PeerReport:
    """How one peer's exchange ended (status: ok | unreachable | rejected)."""

    __slots__ = ("agents", "alias", "detail", "elapsed_ms", "notes", "status")

    def __init__(self, alias: str, status: str, detail: str, agents: int,
                 elapsed_ms: float = 0.0, notes: tuple[str, ...] = ()) -> None:
        self.alias, self.status, self.detail = alias, status, detail
        self.agents, self.elapsed_ms, self.notes = agents, elapsed_ms, notes

    def __repr__(self) -> str:
        return (f"PeerReport({self.alias!r}, {self.status!r}, {self.detail!r}, "
                f"{self.agents!r}, {self.elapsed_ms!r}, {self.notes!r})")

    def line(self) -> str:
        """One line, safe for a terminal: details and notes may quote the peer."""
        if self.status == "ok":
            text = f"{self.alias}: ok, {self.agents} agent(s) ({self.elapsed_ms:.0f} ms)"
            if self.notes:
                text += "; " + "; ".join(self.notes)
        else:
            text = f"{self.alias}: {self.status}: {self.detail}"
        return printable(text)


def deadline() -> float:
    """Seconds one exchange may take as a whole: AGENT_MESH_SYNC_DEADLINE, else 10."""
    try:
        value = float(os.environ.get("AGENT_MESH_SYNC_DEADLINE", ""))
    except ValueError:
        return DEFAULT_DEADLINE
    return value if 0 < value <= 3600 else DEFAULT_DEADLINE


def validate_slice(alias: str, text: str,
                   aliases: set[str] | None = None) -> tuple[dict[str, Agent], list[str]]:
    """Parse a peer's slice: its own entries, and notes on the entries dropped.

    A malformed slice (not TOML, too big, wrong types, an impossible address or
    pane id) is rejected whole. An entry that is not the sender's own (another
    `host`, an address outside `<alias>-`, or under a longer alias such as
    `peer-2` for `peer`) is dropped: a peer only ever speaks for itself.
    """
    if len(text.encode("utf-8")) > MAX_SLICE_BYTES:
        raise SliceRejected(f"slice larger than {MAX_SLICE_BYTES // 1024} KiB")
    doc: dict[str, Any] | None = read_own(text)  # what peers write, without tomllib (~13 ms)
    if doc is None:  # anything else: tomllib, the reference
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
    known = (aliases if aliases is not None else set(naming.mesh_aliases())) | {alias}
    agents: dict[str, Agent] = {}
    dropped: list[str] = []
    for address, table in tables.items():
        if not naming.is_valid_address(address):
            raise SliceRejected(f"address {address[:60]!r} is not a valid address")
        if not isinstance(table, dict):
            raise SliceRejected(f"entry {address} is not a table")
        for name in SLICE_FIELDS:
            if name in table and not isinstance(table[name], str):
                raise SliceRejected(f"entry {address} field {name} is not a string")
        pane = str(table.get("pane_id", ""))
        if pane and not (pane.startswith("%") and pane[1:].isdigit()):
            raise SliceRejected(f"entry {address} has pane id {pane[:20]!r}")
        why = view.not_its_own(alias, address, table.get("host"), known)
        if why:
            dropped.append(why)
            continue
        try:
            agents[address] = Agent.from_table(address, table)
        except ValueError as exc:
            raise SliceRejected(f"entry {address}: {exc}") from None
    notes = []
    if dropped:
        shown = ", ".join(dropped[:MAX_NOTES])
        more = f" and {len(dropped) - MAX_NOTES} more" if len(dropped) > MAX_NOTES else ""
        notes.append(f"dropped {len(dropped)} entr{'y' if len(dropped) == 1 else 'ies'} "
                     f"not its own: {printable(shown)}{more}")
    return agents, notes


def store_slice(alias: str, agents: dict[str, Agent], fetched: str, stale: bool = False,
                error: str = "") -> None:
    meta: dict[str, object] = {"host": alias, "fetched": fetched, "stale": stale}
    if error:
        meta["error"] = error
    text = dump_tables(
        [f"agent-mesh: last good slice of {alias}. Do not edit."],
        {"slice": {"meta": meta}, "agents": {a: ag.to_table() for a, ag in agents.items()}},
    )
    write_file(_slice_path(alias), text.encode("utf-8"))


def _slice_path(alias: str, suffix: str = ".toml", prefix: str = "") -> str:
    return os.path.join(paths.slices_dir(), f"{prefix}{alias}{suffix}")


def mark_stale(alias: str, error: str) -> tuple[int, str]:
    """Keep the last good slice but flag it; returns (agents kept, last fetch time)."""
    path = _slice_path(alias)
    with locked(_slice_path(alias, ".lock", ".")):
        try:
            meta, agents = read_slice_file(path)
        except UsageError:
            meta, agents = {}, {}
        fetched = str(meta.get("fetched", ""))
        if os.path.exists(path) or agents:
            store_slice(alias, agents, fetched, stale=True, error=error)
    return len(agents), fetched


def schedule_pull(sender: str, pushed: str | None = None) -> bool:
    """A member pushed: treat it as a hint and pull its slice ourselves, detached.

    What arrived is not stored: any member could have sent `from = <another>`.
    The pull goes over this host's own SSH connection to that alias, so the key
    that answers is the one in our known_hosts. It runs in a new session with
    its output in push.log, so the rpc answers at once and nothing waits on it.
    A push that says what we last verified (the timer's syncs) needs no pull.
    Returns whether a pull was started.
    """
    if sender not in read_peers():
        raise UsageError(f"{sender!r} is not in this host's peers.conf; slice ignored")
    if pushed is not None and _matches_verified(sender, pushed):
        return False
    agents_dir = ensure_agents_dir()
    start_helper(f"{__name__}:pull_main", sender, log=os.path.join(agents_dir, "push.log"))
    return True


def _matches_verified(alias: str, text: str) -> bool:
    """Does a pushed slice hold exactly the agents we last fetched from alias ourselves?"""
    try:
        agents, _notes = validate_slice(alias, text)
        meta, stored = view.read_slice_file(_slice_path(alias))
    except (SliceRejected, UsageError):
        return False
    return bool(meta.get("fetched")) and not meta.get("stale") and agents == stored


def _ago(stamp: str) -> str:
    return f"{age(stamp)} ago" if age(stamp) else "never"


Outcome = tuple[str, float] | Exception


def exchange_all(peers: list[str], local_text: str | None) -> list[PeerReport]:
    """Exchange with every peer in parallel, each within the deadline as a whole.

    A peer that has not answered completely by then is reported unreachable and
    keeps its last good slice (stale); its answer, should it ever come, is thrown
    away (mesh/group.py): only this thread stores slices.
    """
    from agent_mesh.mesh.group import Group
    from agent_mesh.mesh.remote import chosen_transport, remote_transport

    limit = deadline()
    kind = chosen_transport()  # once, not per thread
    me = naming.self_alias()

    def fetch(peer: Host) -> tuple[str, float]:  # only network I/O here, nothing is stored
        return peer.exchange(me, local_text, min(SYNC_TIMEOUT, limit))

    answers = Group(peers, lambda alias: remote_transport(alias, kind)).each(
        fetch, limit, why="deadline; AGENT_MESH_SYNC_DEADLINE sets it")
    aliases = set(naming.mesh_aliases())
    return [_settle(alias, answer, aliases) for alias, answer in answers.items()]


def _settle(alias: str, outcome: Outcome, aliases: set[str]) -> PeerReport:
    """Store a fetched slice, or keep the last good one marked stale; say which."""
    if isinstance(outcome, Exception):
        kept, fetched = mark_stale(alias, printable(str(outcome)))
        cause = printable(str(outcome).removeprefix(f"{alias}: "))
        return PeerReport(alias, "unreachable", f"{cause}; keeping {kept} agent(s) last seen "
                          f"{_ago(fetched)} (stale)", kept)
    text, elapsed = outcome
    try:
        agents, notes = validate_slice(alias, text, aliases)
    except SliceRejected as exc:
        kept, fetched = mark_stale(alias, printable(f"rejected: {exc}"))
        return PeerReport(alias, "rejected", f"{printable(str(exc))}; keeping {kept} agent(s) "
                          f"from {_ago(fetched)} (stale)", kept)
    with locked(_slice_path(alias, ".lock", ".")):
        store_slice(alias, agents, clock.now_iso())
    return PeerReport(alias, "ok", "", len(agents), elapsed, tuple(notes))


def sync(push: bool = True) -> list[PeerReport]:
    """Exchange slices with every peer in parallel, then re-assemble registry.toml."""
    peers = read_peers()
    local_text: str | None = None
    if push:
        try:
            with open(paths.local_slice(), encoding="utf-8") as fh:
                local_text = fh.read()
        except FileNotFoundError:
            local_text = None
    make_dirs(paths.slices_dir())
    reports = exchange_all(peers, local_text) if peers else []
    for name in os.listdir(paths.slices_dir()):
        if name.endswith(".toml") and not name.startswith(".") and name[:-5] not in peers:
            try:  # noqa: SIM105 - no longer a member
                os.unlink(os.path.join(paths.slices_dir(), name))
            except FileNotFoundError:
                pass
    assemble()
    return reports


def pull(alias: str) -> list[PeerReport]:
    """Fetch one member's slice (it pushed us a hint), store it, re-assemble."""
    if alias not in read_peers():
        return []
    make_dirs(paths.slices_dir())
    reports = exchange_all([alias], None)
    view.assemble()
    return reports


def pull_main(alias: str) -> None:
    """The detached helper `schedule_pull` starts: coalesced per alias, logged."""
    _logged(f"pull {printable(alias)}", lambda: _coalesced(f"pull-{alias}", lambda: pull(alias)))


def push_main() -> None:
    """The detached helper a hook starts (cli/hook.py): coalesced pushes, logged."""
    _logged("push", push_pending)


def _logged(what: str, run: Callable[[], list[PeerReport]]) -> None:
    """A helper's rounds as push.log lines: one per peer, or one for a failure."""
    try:
        for report in run():
            print(f"{clock.now_iso()} {what.split()[0]} {report.line()}")
    except Exception as exc:  # the log gets one line, never a traceback
        print(f"{clock.now_iso()} {what}: failed: {printable(str(exc))}")


def push_pending() -> list[PeerReport]:
    """What the hook's background `agent-mesh push` runs: coalesce bursts of hooks.

    Each caller marks a push as pending; whoever holds the push lock loops until
    no mark is left, so 30 hooks firing together cost one or two rounds, and a
    change made during a round is never lost.
    """
    return _coalesced("push", lambda: sync(push=True))


def _coalesced(name: str, run: Callable[[], list[PeerReport]]) -> list[PeerReport]:
    """Run `run` until no `<name>.pending` mark is left, one holder at a time.

    Callers that find the lock held leave their mark and go: the holder runs
    again for them. A holder whose round started longer ago than its own
    deadline allows is stuck (stopped, suspended, hung): the newer caller takes
    over under a second lock instead of waiting on it, so a stuck push never
    blocks later ones.
    """
    base = paths.agents_dir()
    pending = os.path.join(base, f"{name}.pending")
    os.close(os.open(pending, os.O_WRONLY | os.O_CREAT, 0o600))
    reports: list[PeerReport] = []
    for lock_path in (os.path.join(base, f"{name}.lock"),
                      os.path.join(base, f"{name}.takeover.lock")):
        try:
            with locked(lock_path, timeout=0) as fd:
                while os.path.exists(pending):
                    try:  # noqa: SIM105
                        os.unlink(pending)
                    except FileNotFoundError:
                        pass
                    _stamp(fd)
                    reports = run()
                return reports
        except TimeoutError:
            if not _holder_stuck(lock_path):
                return reports  # the holder will see our mark
    return reports


def _stamp(fd: int) -> None:
    """Record in the held lock file who runs a round, since when, with which deadline."""
    data = f"{os.getpid()} {time.time():.3f} {deadline():g}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _holder_stuck(lock_path: str) -> bool:
    """Has the holder's round outlived its deadline (every exchange is bounded by it)?"""
    try:
        with open(lock_path, encoding="utf-8") as fh:
            _pid, started, limit = fh.read().split()[:3]
        overdue = time.time() - float(started) - float(limit)
    except (OSError, ValueError):
        return False
    return overdue > STUCK_GRACE
