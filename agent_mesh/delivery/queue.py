"""Messages waiting for a busy pane, on the recipient's host, and the waiter that sends them.

A queued message is one JSON file in `~/.agents/queue/<address>/`, named so that a
directory listing is the delivery order (`<ns since epoch>-<id>.json`). It is written
before the sender hears "queued", so nothing is lost if the waiter, tmux or the host
restarts: the next hook, timer run or send starts a waiter again (`resume`).

The waiter is a short-lived `agent-mesh queue-run ADDRESS` process (no daemon): it holds
the queue's flock, delivers the oldest message as soon as the pane's state says it is
ready, drops expired ones (logged, never delivered), and exits when the queue is empty.
Only the address (a registry key: `[A-Za-z0-9._-]`) appears in its argv; no message text.
"""

from __future__ import annotations

import json
import os
import sys
import time

from agent_mesh import paths
from agent_mesh.errors import NotReady, PaneDead, UsageError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Envelope
from agent_mesh.procs import spawn_detached
from agent_mesh.registry.naming import is_valid_address

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent_mesh.model import DeliveryResult

DEFAULT_TTL = 3600.0
POLL_SECONDS = 0.1


def queue_root() -> str:
    return os.path.join(paths.agents_dir(), "queue")


def _queue_dir(address: str) -> str:
    if not is_valid_address(address):
        raise UsageError(f"cannot queue for {address!r}: not a registry address")
    return os.path.join(queue_root(), address)


def enqueue(envelope: Envelope, address: str, reason: str) -> dict[str, object]:
    """Store envelope for address (atomic, 0600); returns the stored record."""
    ttl = envelope.ttl if envelope.ttl > 0 else DEFAULT_TTL
    now = time.time()
    record: dict[str, object] = {
        "id": envelope.msg_id, "address": address, "queued_at": now,
        "expires_at": now + ttl, "reason": reason, "envelope": envelope.to_json(),
    }
    folder = _queue_dir(address)
    name = f"{time.time_ns():020d}-{envelope.msg_id or os.urandom(3).hex()}.json"
    atomic_write(os.path.join(folder, name), json.dumps(record).encode(), mode=0o600)
    return record


def pending(address: str | None = None) -> list[dict[str, object]]:
    """Queued records (oldest first), for one address or every address on this host."""
    root = queue_root()
    try:
        addresses = [address] if address else sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    records: list[dict[str, object]] = []
    for addr in addresses:
        folder = os.path.join(root, addr)
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            record = _read(os.path.join(folder, name))
            if record is not None:
                record["file"] = os.path.join(folder, name)
                records.append(record)
    return records


def _read(path: str) -> dict[str, object] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("envelope"), dict):
        return None  # not one of ours (hand-made, truncated by a crash): skipped
    numbers = (record.get("queued_at"), record.get("expires_at"))
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        return None
    return record


def cancel(msg_id: str) -> dict[str, object] | None:
    """Remove the queued message with this id; returns it, or None if not queued here."""
    for record in pending():
        if record.get("id") == msg_id:
            try:
                os.unlink(str(record["file"]))
            except FileNotFoundError:
                return None
            return record
    return None


def has_pending(address: str) -> bool:
    """Does address have queued messages (one listdir)?"""
    try:
        return any(n.endswith(".json") for n in os.listdir(_queue_dir(address)))
    except FileNotFoundError:
        return False


def has_waiting() -> list[str]:
    """Addresses with at least one queued message (one listdir per address)."""
    try:
        addresses = sorted(os.listdir(queue_root()))
    except FileNotFoundError:
        return []
    out = []
    for addr in addresses:
        try:
            if any(n.endswith(".json") for n in os.listdir(os.path.join(queue_root(), addr))):
                out.append(addr)
        except OSError:
            continue
    return out


def _lock_path(address: str) -> str:
    return os.path.join(queue_root(), f".{address}.lock")


def start_waiter(address: str) -> bool:
    """Start `agent-mesh queue-run ADDRESS` detached, unless one already holds the queue."""
    _queue_dir(address)  # validates the name before it reaches an argv
    try:
        with locked(_lock_path(address), timeout=0):
            pass
    except TimeoutError:
        return False  # a waiter is running
    exe = os.path.join(os.path.dirname(sys.executable), "agent-mesh")
    if not os.access(exe, os.X_OK):
        from shutil import which

        exe = which("agent-mesh") or ""
        if not exe:
            return False
    spawn_detached([exe, "queue-run", address])
    return True


def resume() -> list[str]:
    """Start a waiter for every queue that has messages (hook, timer, every send)."""
    return [address for address in has_waiting() if start_waiter(address)]


def run_waiter(
    address: str,
    deliver: Callable[[Envelope], DeliveryResult],
    log: Callable[[dict[str, object], str, str], None],
    poll: float = POLL_SECONDS,
) -> int:
    """Deliver address's queue in order as the pane becomes ready; returns how many.

    `deliver` raises NotReady while the pane is busy. A dead or gone pane, or tmux or
    the host down, stops the waiter and keeps the queue for a later resume; a message
    that can never be delivered (a usage error) is logged as failed and removed.
    Expired messages are logged as expired and removed. A send that found the lock
    still held just as the queue emptied is caught by looking once more after it.
    """
    delivered = 0
    while True:
        try:
            with locked(_lock_path(address), timeout=0):
                delivered += _drain(address, deliver, log, poll)
        except _Held:
            return delivered
        except TimeoutError:
            return delivered  # another waiter owns this queue
        if not pending(address):  # a send that found us still holding the lock: go again
            return delivered


class _Held(Exception):
    """The pane is gone, dead or unreachable: keep the queue for a later resume."""


def _drain(
    address: str,
    deliver: Callable[[Envelope], DeliveryResult],
    log: Callable[[dict[str, object], str, str], None],
    poll: float,
) -> int:
    """Under the queue's lock: deliver until it is empty; _Held when it must wait."""
    delivered = 0
    pause = poll
    while True:
        records = pending(address)
        if not records:
            return delivered
        record = records[0]
        path = str(record["file"])
        if float(str(record.get("expires_at", 0) or 0)) <= time.time():
            _remove(path)
            log(record, "expired", "its time to live ran out before the pane was ready")
            continue
        try:
            envelope = Envelope.from_json(record["envelope"])  # type: ignore[arg-type]
            result = deliver(envelope)
        except PaneDead as exc:  # nothing will ever read it there: keep it, stop
            log(record, "held", str(exc))
            raise _Held from None
        except NotReady:
            time.sleep(pause)
            pause = min(pause * 1.02, 0.5)  # ~1 min at 0.1 s, then up to 0.5 s
            continue
        except Exception as exc:
            line, code = str(exc), int(getattr(exc, "exit_code", 1))
            if code in (2, 4):  # pane gone, tmux or host down: keep it for a resume
                log(record, "held", line)
                raise _Held from None
            _remove(path)  # the message itself is bad: it can never be delivered
            log(record, "failed", line)
            continue
        _remove(path)
        delivered += 1
        pause = poll
        log(record, "delivered", f"{result.host}[{result.target}]")


def _remove(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        os.unlink(path)
    except FileNotFoundError:
        pass
