"""Messages waiting for a busy pane, on the recipient's host, and the waiter that sends them.

A queued message is one JSON file in `~/.agents/queue/<address>/`, named so that a
directory listing is the delivery order (`<ns since epoch>-<random>.json`: the queue
names its files, the message's id is only inside the record). It is written
before the sender hears "queued", so nothing is lost if the waiter, tmux or the host
restarts: the next hook, timer run or send starts a waiter again (`resume`).

A message belongs to the pane it was queued for, not to its address: the record keeps
the pane id, window id, tmux socket and that server's pid and start time. It is typed
only into that pane, in that window, of that same server (pane ids restart with the
server). When they are gone nothing proves that another pane is the same agent, so the
message is *held*: kept (`.held`), shown by `agent-mesh queue` with the reason, and
never typed anywhere; it ends by `agent-mesh queue --cancel ID` or its time to live.

The waiter is a short-lived `agent-mesh queue-run ADDRESS` process (no daemon): it holds
the queue's flock, delivers the oldest message as soon as its pane is ready, under the
normal rules whatever the sender's environment (FORCE_SEND is never kept), drops expired
ones, backs off while a pane stays busy (logging one line per change of state, not per
look), and exits when nothing is left to deliver. Just before the paste the record is
renamed `.sending`; a waiter that finds one (its predecessor was killed) looks the id up
in the agent's received log: delivered there, it is done; not there, it may or may not
have reached the pane, so it is held rather than typed twice.
Only the address (a registry key: `[A-Za-z0-9._-]`) appears in the waiter's argv.
"""

from __future__ import annotations

import json
import os
import time

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.detach import start_helper
from agent_mesh.errors import MeshError, NotReady, Outcome, UsageError, WireError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.limits import limit
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.registry.naming import is_valid_address
from agent_mesh.tmux import Tmux

DEFAULT_TTL = 3600.0
POLL_SECONDS = 0.1
MAX_PAUSE = 1.0  # the longest a waiter sleeps between looks at a busy pane
WAITING, SENDING, HELD = ".json", ".sending", ".held"


def queue_root() -> str:
    return os.path.join(paths.agents_dir(), "queue")


def queue_log() -> str:
    return os.path.join(paths.agents_dir(), "queue.log")


def _queue_dir(address: str) -> str:
    if not is_valid_address(address):
        raise UsageError(f"cannot queue for {address!r}: not a registry address")
    return os.path.join(queue_root(), address)


# --- what a queued message may be --------------------------------------------------


def check_request(envelope: Envelope) -> None:
    """Refuse (exit 1) a queued send this host would not keep: a TTL over its maximum
    or a text over its size cap, before the pane is even looked at."""
    ttl_max = limit("queue_ttl_max")
    if not envelope.ttl <= ttl_max:  # also NaN
        raise UsageError(f"--ttl {envelope.ttl:g} s is over this host's maximum of "
                         f"{ttl_max} s (limits.queue_ttl_max in ~/.agents/config.toml)")
    size = len(envelope.body.encode("utf-8", "replace"))
    cap = limit("queue_message_bytes")
    if size > cap:
        raise UsageError(f"the message is too large to queue ({size} bytes; this host queues "
                         f"up to {cap}: limits.queue_message_bytes in ~/.agents/config.toml); "
                         "send it without --queue, or as a file when the agent is ready")


def _check_room(envelope: Envelope, size: int) -> None:
    """Under the queue's own lock (exit 3): the sender's count, and everyone's messages
    and bytes on disk (each record's own size: an empty text still takes room). The
    sender is the name it claims, which a peer sets freely: the totals bound everyone."""
    count, total, stored = 0, 0, 0
    for record in pending():
        stored += 1
        total += int(str(record.get("size") or 0))
        env = record["envelope"]
        if isinstance(env, dict) and env.get("sender") == envelope.sender:
            count += 1
    per_sender = limit("queue_per_sender")
    if count >= per_sender:
        raise NotReady(f"{envelope.sender} already has {count} messages queued on this host "
                       f"(limits.queue_per_sender is {per_sender}): not queued; wait for "
                       "them or cancel some (agent-mesh queue)", overridable=False)
    most = limit("queue_total_messages")
    if stored >= most:
        raise NotReady(f"this host's queue is full ({stored} messages, "
                       "limits.queue_total_messages): not queued; try again later",
                       overridable=False)
    total_cap = limit("queue_total_bytes")
    if total + size > total_cap:
        raise NotReady(f"this host's queue is full ({total} of {total_cap} bytes, "
                       "limits.queue_total_bytes): not queued; try again later",
                       overridable=False)


# --- the pane a message belongs to ---------------------------------------------------

_WHERE = "#{pane_id}\t#{window_id}\t#{pid}\t#{start_time}"


def _where(tmux: Tmux, pane_id: str) -> dict[str, str] | None:
    """The pane's window and its server's identity now; None when it or its server is
    gone. A tmux that fails otherwise is a WireError (the message is kept)."""
    out = tmux.run("display-message", "-p", "-t", pane_id, _WHERE, check=False)
    fields = out.stdout.decode("utf-8", "replace").strip().split("\t")
    if out.returncode == 0 and len(fields) == 4 and fields[0] == pane_id:
        return {"pane_id": fields[0], "window_id": fields[1], "server": f"{fields[2]}@{fields[3]}"}
    error = out.stderr.decode("utf-8", "replace")
    if out.returncode == 0 or any(sign in error for sign in (
            "can't find", "no server running", "error connecting", "No such file")):
        return None
    raise WireError(f"tmux failed reading pane {pane_id}: {out.error_line}")


def bind(agent: Agent) -> dict[str, str]:
    """Where a message for agent belongs: its pane, window, socket and server identity."""
    target = agent.pane_id or agent.target
    where = _where(Tmux(socket_path=agent.socket or None), target)
    if where is None:
        from agent_mesh.errors import PaneGone

        raise PaneGone(f"its pane {target} no longer exists; the registry is out of date "
                       "(run agent-discover on that host)")
    return {**where, "socket": agent.socket}


def _gone(pane: object) -> str:
    """Why a record's pane can no longer take it ("" when it still can)."""
    if not isinstance(pane, dict) or not str(pane.get("pane_id", "")).startswith("%"):
        return "it was queued without its pane (by an older agent-mesh); resend it"
    pane_id, window = str(pane["pane_id"]), str(pane.get("window_id", ""))
    now = _where(Tmux(socket_path=str(pane.get("socket") or "") or None), pane_id)
    if now is None:
        return (f"its pane {pane_id} (window {window}) is gone; a new window with the same "
                "name is not the same agent, so it is kept here, typed nowhere")
    if now["server"] != pane.get("server"):
        return (f"the tmux server it was queued on has restarted: {pane_id} is another "
                "pane now, so it is kept here, typed nowhere")
    if now["window_id"] != window:
        return (f"its pane {pane_id} moved from window {window} to {now['window_id']}; "
                "kept here, typed nowhere")
    return ""


# --- storing -------------------------------------------------------------------------


def enqueue(envelope: Envelope, agent: Agent, reason: str) -> dict[str, object]:
    """Store envelope for agent's pane (atomic, 0600) within the caps; the stored record.

    The request was checked by the caller (check_request, as receive does). FORCE_SEND is
    dropped: a queued message is delivered only under the normal rules."""
    ttl = envelope.ttl if envelope.ttl > 0 else DEFAULT_TTL
    now = time.time()
    record: dict[str, object] = {
        "id": envelope.msg_id, "address": agent.address, "queued_at": now,
        "expires_at": now + ttl, "reason": reason, "pane": bind(agent),
        "envelope": envelope.replace(force=False).to_json(),
    }
    data = json.dumps(record).encode()
    folder = _queue_dir(agent.address)
    with locked(os.path.join(queue_root(), ".room.lock"), timeout=30):
        _check_room(envelope, len(data))
        # named by the queue, never by the sender's id (the id is in the record)
        name = f"{time.time_ns():020d}-{os.urandom(4).hex()}{WAITING}"
        atomic_write(os.path.join(folder, name), data, mode=0o600)
    _record(record, Outcome.QUEUED, reason)
    return record


def pending(address: str | None = None) -> list[dict[str, object]]:
    """Queued records (oldest first), for one address or every address on this host;
    each with "file", "state" (waiting, sending, held) and "size" (bytes on disk)."""
    root = queue_root()
    try:
        addresses = [address] if address else sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    states = {WAITING: "waiting", SENDING: "sending", HELD: "held"}
    records: list[dict[str, object]] = []
    for addr in addresses:
        folder = os.path.join(root, addr)
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            suffix = os.path.splitext(name)[1]
            if suffix not in states or name.startswith("."):
                continue
            record = _read(os.path.join(folder, name))
            if record is not None:
                record["file"] = os.path.join(folder, name)
                record["state"] = states[suffix]
                records.append(record)
    return records


def _read(path: str) -> dict[str, object] | None:
    """The record at path, with "size" (its bytes on disk, for the caps); None if it is
    not one of ours (hand-made, truncated by a crash): skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            size = os.fstat(fh.fileno()).st_size
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("envelope"), dict):
        return None
    numbers = (record.get("queued_at"), record.get("expires_at"))
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        return None
    record["size"] = size
    return record


def cancel(msg_id: str) -> dict[str, object] | None:
    """Remove the queued message with this id; returns it, or None if not queued here."""
    for record in pending():
        if record.get("id") == msg_id and record.get("state") != "sending":
            try:
                os.unlink(str(record["file"]))
            except FileNotFoundError:
                return None
            _record(record, "cancelled", "by agent-mesh queue --cancel")
            return record
    return None


def _live(names: list[str]) -> bool:
    return any(n.endswith((WAITING, SENDING)) and not n.startswith(".") for n in names)


def has_pending(address: str) -> bool:
    """Does address have messages still to deliver (one listdir; held ones don't count)?"""
    try:
        return _live(os.listdir(_queue_dir(address)))
    except FileNotFoundError:
        return False


def has_waiting() -> list[str]:
    """Addresses with at least one message still to deliver (one listdir per address)."""
    try:
        addresses = sorted(os.listdir(queue_root()))
    except FileNotFoundError:
        return []
    out = []
    for addr in addresses:
        try:
            if _live(os.listdir(os.path.join(queue_root(), addr))):
                out.append(addr)
        except OSError:
            continue
    return out


def _lock_path(address: str) -> str:
    return os.path.join(queue_root(), f".{address}.lock")


def start_waiter(address: str) -> bool:
    """Start a waiter for address (run_waiter, detached), unless one already holds the queue."""
    _queue_dir(address)  # validates the name before it reaches an argv
    try:
        with locked(_lock_path(address), timeout=0):
            pass
    except TimeoutError:
        return False  # a waiter is running
    start_helper(f"{__name__}:run_waiter", address)
    return True


def resume() -> list[str]:
    """Start a waiter for every queue that has messages (hook, timer, every send)."""
    return [address for address in has_waiting() if start_waiter(address)]


def expire_held() -> None:
    """Drop held messages past their time to live (logged as expired)."""
    now = time.time()
    for record in pending():
        if record.get("state") == "held" and float(str(record["expires_at"])) <= now:
            finish(record, "expired", "its time to live ran out while it was held")


# --- what became of a message: queue.log, the agent's received log -----------------


def _record(record: dict[str, object], outcome: Outcome | str, detail: str) -> None:
    """One line in queue.log, and the same event in the agent's received log (not a
    change while it waits, nor "delivered", which delivery writes there itself).
    outcome: how the message's delivery ended, or a step of its life in the queue."""
    address = str(record.get("address", ""))
    log.append(queue_log(), {"time": time.time(), "id": record.get("id"), "address": address,
                             "outcome": str(outcome), "detail": detail})
    if outcome != Outcome.DELIVERED and outcome != "waiting" and address:
        env = record.get("envelope")
        if isinstance(env, dict):
            try:
                envelope = Envelope.from_json(env, trusted=True)
            except (KeyError, TypeError, ValueError):
                return
            log.received_event(envelope, address, outcome, detail)


def finish(record: dict[str, object], outcome: Outcome | str, detail: str) -> None:
    _remove(str(record["file"]))
    _record(record, outcome, detail)


def _hold(record: dict[str, object], reason: str) -> None:
    """Keep record, never to be typed automatically: `.held`, with the reason."""
    path = str(record["file"])
    kept = {k: v for k, v in record.items() if k not in ("file", "state", "size")}
    kept["held"] = reason
    atomic_write(os.path.splitext(path)[0] + HELD, json.dumps(kept).encode(), mode=0o600)
    _remove(path)
    _record(record, "held", reason)


def delivered_before(record: dict[str, object]) -> bool:
    """Is the id in the agent's received log as delivered (a waiter killed after the
    paste, before it could remove the record)?"""
    path = log.received_path(str(record.get("address", "")))
    return any(line.get("id") == record.get("id") and line.get("outcome") == Outcome.DELIVERED.word
               for line in log.read(path))


# --- the waiter ----------------------------------------------------------------------


def run_waiter(address: str, poll: float = POLL_SECONDS) -> int:
    """Deliver address's queue in order as its panes become ready; returns how many.

    tmux or the host failing stops the waiter and keeps the queue for a later resume.
    A send that found the lock still held just as the queue emptied is caught by
    looking once more after it.
    """
    delivered = 0
    while True:
        try:
            with locked(_lock_path(address), timeout=0):
                delivered += _drain(address, poll)
        except _Stop:
            return delivered
        except TimeoutError:
            return delivered  # another waiter owns this queue
        if not has_pending(address):  # a send that found us still holding the lock
            return delivered


class _Stop(Exception):
    """tmux or the host is down: keep the queue for a later resume."""


def _drain(address: str, poll: float) -> int:
    """Under the queue's lock: deliver until nothing deliverable is left."""
    delivered = 0
    pause = poll
    seen = ""  # the last waiting state logged
    while True:
        record = _head(address)
        if record is None:
            return delivered
        if float(str(record["expires_at"])) <= time.time():
            finish(record, "expired", "its time to live ran out before the pane was ready")
            continue
        if record["state"] == "sending":
            if delivered_before(record):
                finish(record, Outcome.DELIVERED, "found in the agent's received log")
            else:
                _hold(record, "its waiter was stopped during the paste: it may or may not "
                      "have reached the pane (see agent-mesh peek), so it is not typed again")
            continue
        try:
            gone = _gone(record.get("pane"))
            if gone:
                _hold(record, gone)
                continue
            result = _deliver(record, address)
        except NotReady as exc:
            state = str(exc).split(" (", 1)[0]
            if state != (seen or str(record.get("reason", "")).split(" (", 1)[0]):
                _record(record, "waiting", str(exc))  # one line per change of state,
                pause = poll  # and a quick look again: the pane is changing
            seen = state
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            continue
        except MeshError as exc:
            outcome = Outcome.of_error(exc)
            if outcome == Outcome.UNKNOWN:  # the pane went away or moved meanwhile
                _hold(record, str(exc))
                continue
            if outcome == Outcome.FAILED:  # tmux or the host failed: keep it for a resume
                _record(record, "waiting", str(exc))
                raise _Stop from None
            finish(record, outcome, str(exc))  # the message itself is bad (usage)
            continue
        except (KeyError, TypeError, ValueError) as exc:  # not a record this code wrote
            finish(record, Outcome.INVALID, f"not a valid queued message: {exc}")
            continue
        finish(record, result.outcome, f"{result.host}[{result.target}]")
        delivered += 1
        pause, seen = poll, ""


_last: tuple[str, dict[str, object]] = ("", {})


def _head(address: str) -> dict[str, object] | None:
    """The oldest message still to deliver (waiting or sending), read once while it
    stays the head: a waiter holds one record in memory, not the whole queue."""
    global _last
    folder = _queue_dir(address)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return None
    for name in names:
        suffix = os.path.splitext(name)[1]
        if name.startswith(".") or suffix not in (WAITING, SENDING):
            continue
        path = os.path.join(folder, name)
        if _last[0] == path:
            return _last[1]
        record = _read(path)
        if record is not None:
            record["file"] = path
            record["state"] = "waiting" if suffix == WAITING else "sending"
            _last = (path, record)
            return record
    return None


def _deliver(record: dict[str, object], address: str) -> DeliveryResult:
    """One attempt at record's own pane, under the normal rules (never FORCE_SEND);
    the record becomes `.sending` just before the paste."""
    from agent_mesh.delivery.paste import deliver_envelope
    from agent_mesh.registry.naming import self_alias

    pane = record["pane"]
    assert isinstance(pane, dict)
    socket = str(pane.get("socket") or "")
    agent = Agent(address=address, host=self_alias(), target=str(pane["pane_id"]),
                  pane_id=str(pane["pane_id"]), window_id=str(pane["window_id"]), socket=socket)
    envelope = Envelope.from_json(record["envelope"], trusted=True)  # type: ignore[arg-type]
    envelope = envelope.replace(force=False, queue=True)
    path = str(record["file"])
    sending = os.path.splitext(path)[0] + SENDING

    def before_paste() -> None:
        try:
            os.rename(path, sending)
        except FileNotFoundError:  # its agent's Stop hook handed it over meanwhile
            raise NotReady("handed over at the turn's end meanwhile") from None
        record["file"] = sending
        if os.environ.get("AGENT_MESH_FAULT") == "queue-kill-before-paste":  # tests
            os.kill(os.getpid(), 9)

    try:
        result = deliver_envelope(envelope, agent, tmux=Tmux(socket_path=socket or None),
                                  before_paste=before_paste)
    except BaseException:
        if record["file"] == sending:  # the paste failed: it is waiting again
            os.rename(sending, path)
            record["file"] = path
        raise
    if os.environ.get("AGENT_MESH_FAULT") == "queue-kill-after-paste":  # tests/test_queue.py
        os.kill(os.getpid(), 9)  # between the paste and the dequeue, as `kill -9` would
    return result


def _remove(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        os.unlink(path)
    except FileNotFoundError:
        pass
