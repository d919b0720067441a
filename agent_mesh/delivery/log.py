"""The delivery log on both ends: what this host sent, what each of its agents received.

~/.agents/log/sent.jsonl holds one JSON line per message or file this host sent,
with its outcome (delivered, refused and why, failed). That line is written before
the delivery starts (outcome "sending", with the sender's pid) and completed by a
second, short line with the same id once the outcome is known (`"update": true`):
a sender killed mid-paste, whose message tmux may still deliver, leaves its line,
which `read` shows as "interrupted". ~/.agents/log/received/
<address>.jsonl one line per message an agent here was given or refused. Every
message carries a short id (in its envelope) that appears in both logs.

This is on every delivery's path, so: stdlib `os` only (json's import pulls in
`re`; the few string escapes JSON needs are done here), one O_APPEND write per
record (whole lines, even with concurrent writers), rotation at MAX_BYTES keeping
one old file, 0600, and an OSError (disk full, read-only HOME) is swallowed: the
log must never block or fail a delivery.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.clock import now_iso
from agent_mesh.errors import Outcome
from agent_mesh.fsutil import append_rotating

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on the hot path
    from types import TracebackType
    from typing import Any

    from agent_mesh.model import Agent, Envelope

MAX_BYTES = 1024 * 1024
# What can become of a queued message, as its recipient's received log records it.
QUEUE_ENDS = frozenset({Outcome.DELIVERED.word, "expired", "cancelled", "held",
                        Outcome.FAILED.word})
BODY_LIMIT = 2000  # characters of a body kept in a record; `bytes` has the full size


def new_id() -> str:
    """Six hex characters: short enough to quote, and two messages a second for a year
    rarely collide within one agent's log."""
    return os.urandom(3).hex()


def log_dir() -> str:
    return os.path.join(paths.agents_dir(), "log")


def sent_path() -> str:
    return os.path.join(log_dir(), "sent.jsonl")


def received_path(address: str) -> str:
    """The per-agent log; the address is a registry address (no `/`), checked anyway."""
    safe = address.replace("/", "_").lstrip(".") or "_"
    return os.path.join(log_dir(), "received", f"{safe}.jsonl")


# --- writing ----------------------------------------------------------------

_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t",
                 ord("\r"): "\\r", 0x7F: "\\u007f", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def _encode(value: object) -> str:
    """JSON for the values a record holds: str, int, float, bool, None."""
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _encode(str(value))


def encode_record(record: dict[str, object]) -> bytes:
    line = "{" + ", ".join(f"{_encode(k)}: {_encode(v)}" for k, v in record.items()) + "}\n"
    return line.encode("utf-8", "replace")  # lone surrogates (undecodable argv) become ?


def append(path: str, record: dict[str, object]) -> None:
    """Append one line to path; rotate past MAX_BYTES. Never raises OSError."""
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        append_rotating(path, encode_record(record), MAX_BYTES)
    except OSError:
        pass  # a full disk must not cost a delivery


def _body(body: str) -> dict[str, object]:
    out: dict[str, object] = {"body": body[:BODY_LIMIT]}
    if len(body) > BODY_LIMIT:
        out["truncated"] = True
    return out


def _outcome(exc: BaseException | None) -> dict[str, object]:
    """delivered, or the failure's Outcome (refused, unknown, failed) with its code."""
    if exc is None:
        return Outcome.DELIVERED.to_json()
    return {**Outcome.of_error(exc).to_json(), "reason": str(exc).split("\n", 1)[0][:300]}


SENDING = "sending"
INTERRUPTED = "the sender stopped before it knew the outcome (see the recipient's inbox)"


class _Recorder:
    """`with`-block that appends one record with the block's outcome (and lets any error
    through): a plain class, as contextlib costs the hot path an import. With `early`,
    the record is written on entry and its outcome appended as an update on exit."""

    def __init__(self, path: str, record: dict[str, object], early: bool = False,
                 queued: bool = False) -> None:
        self.path = path
        self.record = record
        self.early = early and bool(record.get("id"))  # the update finds its line by id
        self.queued = queued  # a refusal is the queue's to log (queued, waiting, refused)

    def result(self, outcome: Outcome, reason: str = "") -> None:
        """The block ended with this outcome (queued, mailbox) rather than "delivered"."""
        self.record["outcome"] = outcome.word
        if reason:
            self.record["reason"] = reason[:300]

    def __enter__(self) -> _Recorder:
        if self.early:
            append(self.path, {**self.record, "outcome": SENDING, "pid": os.getpid()})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, Exception):
            if self.early:  # Ctrl-C mid-delivery: the message may have gone or not
                append(self.path, {"id": self.record["id"], "update": True,
                                   "outcome": "interrupted", "reason": INTERRUPTED})
            return  # KeyboardInterrupt etc.: not an outcome
        if (self.queued or getattr(exc, "queues", False)) and exc is not None \
                and Outcome.of_error(exc) == Outcome.REFUSED:
            return  # queued (or mid-turn by its hooks): the queue logs what becomes of it
        outcome: dict[str, object]
        if exc is None and "outcome" in self.record:  # set by result()
            outcome = {k: self.record[k] for k in ("outcome", "reason") if k in self.record}
        else:
            outcome = _outcome(exc)
        self.record.update(outcome)
        if self.early:
            append(self.path, {"id": self.record["id"], "update": True, **outcome})
        else:
            append(self.path, self.record)


def sending(envelope: Envelope, agent: Agent) -> _Recorder:
    """Around the sender's delivery: logs to sent.jsonl what went where and how it ended."""
    record: dict[str, object] = {
        "id": envelope.msg_id, "time": now_iso(), "from": envelope.sender, "to": envelope.address,
        "host": agent.host, "kind": "file" if envelope.file_name else "message",
    }
    if envelope.file_name:
        record["file"] = envelope.file_name
        record["size"] = envelope.file_size
    record.update(_body(envelope.body))
    record["bytes"] = len(envelope.body.encode("utf-8", "replace"))
    return _Recorder(sent_path(), record, early=True)


def _received(envelope: Envelope, address: str) -> dict[str, object]:
    record: dict[str, object] = {
        "id": envelope.msg_id, "time": now_iso(), "from": envelope.sender, "to": address,
        "sent": envelope.timestamp, "kind": "file" if envelope.file_name else "message",
        # the sending host as this host verified it (a mesh key, or this host), or not
        "verified": bool(envelope.verified), "host": envelope.verified,
    }
    if envelope.ask:  # a question: where its reply goes (the MCP `reply` tool reads it)
        record["ask"] = envelope.ask
        record["reply_to"] = envelope.reply_to
    if envelope.file_name:  # the path it lands at is filled in once it is placed
        record["file"] = envelope.file_name
        record["size"] = envelope.file_size
    record.update(_body(envelope.body))
    return record


def receiving(envelope: Envelope, agent: Agent) -> _Recorder:
    """Around the receiving host's delivery into a pane: logs to the agent's own log.
    For a queued message a refusal is not logged here: the queue logs what becomes of
    it (queued, then delivered, expired, cancelled or held), once, not per look."""
    return _Recorder(received_path(agent.address), _received(envelope, agent.address),
                     queued=envelope.queue)


def received_event(envelope: Envelope, address: str, outcome: Outcome | str,
                   reason: str) -> None:
    """One line in address's received log for what became of a queued message: an
    Outcome, or a step of its life in the queue (QUEUE_ENDS, "queued", "waiting")."""
    record = _received(envelope, address)
    record.update({"outcome": str(outcome), "reason": reason[:300]})
    append(received_path(address), record)


# --- reading (CLI and rpc side: json is fine here) ---------------------------


def read(path: str, limit: int = 0) -> list[dict[str, Any]]:
    """The records of a log, oldest first, the rotated file's before the current one's;
    the last `limit` only when limit > 0. Unreadable lines are skipped. An update line
    completes the "sending" record with its id (one whose line rotated away is dropped);
    a "sending" record whose sender is gone reads as "interrupted"."""
    import json

    from agent_mesh.procs import alive

    records: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    for name in (path + ".1", path):
        try:
            with open(name, "rb") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            key = record.get("id")
            if record.get("update") is True:
                target = pending.pop(key, None) if isinstance(key, str) else None
                if target is not None:
                    del record["update"]
                    target.pop("pid", None)
                    target.update(record)
                continue
            if record.get("outcome") == SENDING and isinstance(key, str):
                pending[key] = record
            records.append(record)
    for record in pending.values():
        pid = record.pop("pid", 0)
        if not (isinstance(pid, int) and alive(pid)):
            record.update(outcome="interrupted", reason=INTERRUPTED)
    return records[-limit:] if limit > 0 else records
