"""Asks and their replies on the asker's host: `~/.agents/asks/` and `~/.agents/mailbox/`.

`agent-mesh ask` records its question in `~/.agents/asks/<id>.json`: whom it asked
(address and host), where the reply goes (the asking pane's address, or this host's
alias for a script) and its pid. A reply (`notify-pane ASKER --re ID …`) is accepted
only for a recorded ask, sent to that ask's route, and from the asked agent: its
pane, or a process of its host that is not another registered pane. The host is
what this side knows of the caller (an `Origin`), never the envelope's word.

While the ask waits, the reply is kept in `~/.agents/mailbox/<id>.*.json` (bounded:
see limits.py) and taken (read, then deleted) by the ask. Once the ask has ended,
a reply to a pane is typed into that pane; a reply to a script is refused, since
nothing would read it. Ended asks are remembered for a while so a late reply is told
so; a refused reply is never stored.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.errors import NoMatch, NotReady, UsageError
from agent_mesh.fsutil import atomic_write, locked, make_dirs
from agent_mesh.limits import config_path, limit
from agent_mesh.model import Envelope, is_hex_id
from agent_mesh.procs import alive

ID_BYTES = 8  # 64 bits: not guessed in a mesh, even by a peer that tries
KEEP_ENDED = 7 * 86400.0  # an ended ask is remembered this long (seconds)
MAX_ASKS = 1000  # ask records kept at most


class Origin:
    """Where a reply really comes from, as this host can tell it: never the envelope's
    claim. This base knows nothing, so every reply it carries is refused; the mesh
    layer knows more (this process and its pane, or the SSH connection's address)."""

    def why_not_host(self, alias: str) -> str | None:
        """None when the caller is verified to be on host `alias`, else why not."""
        return "this host cannot tell where it comes from"

    def pane(self) -> str:
        """The registered pane of this host it was sent from ('' if none or unknown)."""
        return ""

    def verified_host(self) -> str:
        """The sending host, where this host knows it for sure ('' where it is only
        claimed). This base stands for a process of this host (an in-process call)."""
        from agent_mesh.registry.naming import self_alias

        return self_alias()

    def remote(self) -> bool:
        """Did it come from another host (peer rights apply)?"""
        return False


def where(name: str) -> str:
    """How to raise a cap, for a refusal line."""
    return f"limits.{name} in {config_path()}"


def _dir(name: str) -> str:
    return os.path.join(paths.agents_dir(), name)


def check_id(ask_id: str) -> str:
    """A reply id as the question's tag shows it: hex (new ids are 16 digits; shorter
    ones are still read, and match no ask)."""
    if not is_hex_id(ask_id, shortest=4):
        raise UsageError(f"bad reply id {ask_id!r}: expected the hex id from the question's tag")
    return ask_id


def new_ask_id() -> str:
    """A fresh 64-bit id (16 hex digits)."""
    return os.urandom(ID_BYTES).hex()


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _ask_path(ask_id: str) -> str:
    return os.path.join(_dir("asks"), f"{check_id(ask_id)}.json")


def _lock() -> locked:
    """One lock for asks and mailbox: a reply is stored only while its ask still waits."""
    make_dirs(_dir("mailbox"))
    return locked(os.path.join(_dir("mailbox"), ".lock"))


def _load(path: str) -> dict[str, object] | None:
    import json  # not at the top: status imports Origin, and json imports re (~4 ms)

    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _encoded(record: dict[str, object]) -> bytes:
    import json

    return json.dumps(record).encode()


def record_ask(ask_id: str, to: str, to_host: str, route: str, question: str,
               timeout: float) -> None:
    """Remember an ask: whom it went to, where its reply goes, and who waits (our pid)."""
    make_dirs(_dir("asks"))
    _prune_asks()
    record = {"id": ask_id, "to": to, "to_host": to_host, "route": route,
              "question": question, "pid": os.getpid(), "asked_at": time.time(),
              "timeout": timeout}
    atomic_write(_ask_path(ask_id), _encoded(record), mode=0o600)


def read_ask(ask_id: str) -> dict[str, object] | None:
    """The record of ask ask_id on this host, or None (never asked here, or forgotten)."""
    return _load(_ask_path(ask_id))


def end_ask(ask_id: str, how: str, take: bool = True) -> dict[str, object] | None:
    """Mark the ask ended (`answered`, `timed out`, …); with take, a reply that arrived
    meanwhile is taken and returned. Any other reply to it is deleted: nothing would
    read it (under the lock, so none is stored after)."""
    with _lock():
        record = _load(_ask_path(ask_id))
        if record is not None:
            record.update(ended_at=time.time(), end=how)
            atomic_write(_ask_path(ask_id), _encoded(record), mode=0o600)
        reply = take_reply(ask_id) if take else None
        while take_reply(ask_id) is not None:
            pass
        return reply


def _prune_asks() -> None:
    """Forget asks that ended (or whose asker died) over KEEP_ENDED ago, and the oldest
    beyond MAX_ASKS: the folder stays bounded."""
    now = time.time()
    folder = _dir("asks")
    kept = []
    for name in _listdir(folder):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # another writer's temporary file
        path = os.path.join(folder, name)
        record = _load(path)
        if record is None:
            _unlink(path)
            continue
        when = _number(record.get("asked_at"))
        ends = _number(record.get("ended_at")) or when + _number(record.get("timeout"))
        if now - ends > KEEP_ENDED:
            _unlink(path)
        else:
            kept.append((when, path))
    for _, path in sorted(kept)[: max(0, len(kept) - MAX_ASKS + 1)]:
        _unlink(path)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost an import
        os.unlink(path)
    except FileNotFoundError:
        pass


def check_reply(envelope: Envelope, origin: Origin | None) -> dict[str, object]:
    """The ask this reply answers, if the reply may be taken; else raise (exit 2 for an
    id asked nowhere here, 3 for the wrong route or sender). Nothing is stored."""
    ask_id = check_id(envelope.re)
    record = _load(_ask_path(ask_id))
    if record is None:
        raise NoMatch(f"reply {ask_id}: no such ask on this host (check the id in the "
                      "question's tag; asks are forgotten a week after they end)")
    route, to, host = (str(record.get(k, "")) for k in ("route", "to", "to_host"))
    if envelope.address != route:
        raise NotReady(f"reply {ask_id} goes to its asker {route}, not to {envelope.address}",
                       overridable=False)
    why = (origin or Origin()).why_not_host(host)
    if why:
        raise NotReady(f"reply {ask_id} must come from {to}, the agent asked (on {host}): {why}",
                       overridable=False)
    pane = (origin or Origin()).pane()
    if pane and pane != to:
        raise NotReady(f"reply {ask_id} must come from {to}, the agent asked, not from {pane}",
                       overridable=False)
    return record


def waiting(record: dict[str, object]) -> bool:
    """Is the `agent-mesh ask` of this record still waiting for its reply? (Not past
    its timeout either: a killed asker's pid may belong to another process by now.)"""
    deadline = _number(record.get("asked_at")) + _number(record.get("timeout")) + 5
    return (not record.get("ended_at") and time.time() < deadline
            and alive(int(_number(record.get("pid")))))


def ended(record: dict[str, object]) -> str:
    """How an ask that no longer waits ended, for the replier: `timed out 12s ago`."""
    at = _number(record.get("ended_at"))
    if not at:
        return "its asker exited"
    return f"{record.get('end', 'ended')} {max(0, round(time.time() - at))}s ago"


def store_reply(envelope: Envelope, record: dict[str, object]) -> bool:
    """Keep a checked reply for its waiting ask (atomic, 0600); False when the ask no
    longer waits (nothing stored). Raises when a cap of limits.py would be passed."""
    size, cap = len(envelope.body.encode("utf-8", "surrogatepass")), limit("mailbox_reply_bytes")
    if size > cap:
        raise UsageError(f"reply {envelope.re}: {size} bytes, over this host's cap of {cap} "
                         f"(raise {where('mailbox_reply_bytes')})")
    with _lock():
        record = _load(_ask_path(envelope.re)) or record
        if not waiting(record):
            return False
        folder = _dir("mailbox")
        sender = str(record.get("to", ""))
        count, total = 0, size
        for name, kept in _kept():
            live = _load(_ask_path(name.split(".", 1)[0]))
            if live is None or not waiting(live):  # its ask is gone: nobody will read it
                _unlink(os.path.join(folder, name))
                continue
            total += os.path.getsize(os.path.join(folder, name))
            count += kept.get("to") == sender
        if count >= limit("mailbox_per_sender"):
            raise NotReady(f"the mailbox already holds {count} replies from {sender} "
                           f"(raise {where('mailbox_per_sender')})", overridable=False)
        cap = limit("mailbox_total_bytes")
        if total > cap:
            raise NotReady(f"the mailbox would hold {total} bytes, over its cap of {cap} "
                           f"(raise {where('mailbox_total_bytes')})", overridable=False)
        kept_record = {"id": envelope.re, "to": sender, "from": envelope.sender,
                       "at": envelope.timestamp, "received_at": time.time(),
                       "body": envelope.body, "msg_id": envelope.msg_id}
        path = os.path.join(folder, f"{envelope.re}.{time.time_ns():020d}.json")
        atomic_write(path, _encoded(kept_record), mode=0o600)
    return True


def _kept() -> list[tuple[str, dict[str, object]]]:
    """Every reply in the mailbox (file name, record), oldest first per id."""
    folder = _dir("mailbox")
    out = []
    for name in _listdir(folder):
        if name.endswith(".json") and not name.startswith("."):
            record = _load(os.path.join(folder, name))
            if record is not None:
                out.append((name, record))
    return out


def take_reply(ask_id: str) -> dict[str, object] | None:
    """The oldest reply kept for ask_id, removed from the mailbox (read once)."""
    folder = _dir("mailbox")
    for name in _listdir(folder):
        if name.startswith(f"{check_id(ask_id)}.") and name.endswith(".json"):
            path = os.path.join(folder, name)
            record = _load(path)
            _unlink(path)
            if record is not None:
                return record
    return None


def has_reply(ask_id: str) -> bool:
    """Is a reply to ask_id kept in the mailbox, not yet taken?"""
    prefix = f"{check_id(ask_id)}."
    return any(n.startswith(prefix) and n.endswith(".json") for n in _listdir(_dir("mailbox")))


def keep_for_asker(envelope: Envelope, origin: Origin | None, host: str) -> None:
    """A reply sent to a host alias (its asker is a script there): kept while the ask
    waits; once it has ended, refused (typed nowhere, nothing would read it)."""
    record = check_reply(envelope, origin)
    if not store_reply(envelope, record):
        raise NotReady(f"reply {envelope.re}: its ask ended ({ended(record)}), and its asker "
                       f"on {host} is not a pane: nothing would read the reply",
                       overridable=False)
