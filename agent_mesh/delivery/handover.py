"""Queued messages handed to an agent at the end of its turn, by its own Stop hook.

A message for an agent that is mid-turn by its hooks is queued (delivery/queue.py, the
one queue: same records, same states, same log). When the turn ends the agent runs
`agent-mesh agent-event Stop`, which takes every message queued for *its* pane (the
pane id, tmux socket and server pid the record was bound to), in queue order, and
returns them as one continuation text: each whole, `[from … @ …]`-tagged, a blank line
between them. The agent goes on with that text as its next input; nothing is typed.

Nothing lost, nothing twice:
- The pane's delivery lock (the one paste.claim_pane takes) is held from reading the
  records to removing them, so the queue's waiter never pastes a record the hook is
  handing over, and a message queued meanwhile stays for the next turn end or the
  paste path.
- A record is removed, and logged `delivered` in queue.log and the agent's received log,
  only after the whole text is written to the agent (`commit`). A hook killed before
  that leaves the records as they were: still queued, delivered later. The CLIs ignore
  the output of a hook that did not exit 2 itself, so a kill after the write delivers
  nothing either.
- An id already in the agent's received log as delivered is never handed over again.
- Only a first Stop is used (`stop_hook_active` false): the CLIs cap how often a Stop
  hook may extend one turn and drop the text beyond that cap, so messages queued while
  a continuation runs wait for the next turn end, or go by paste once the agent is idle.

Size: one handover carries whole messages, in order, up to MAX_CHARS in all (a queued
message may be 1 MB; Claude Code shows a hook's text past 10,000 characters only as a
preview and a file path, as others read it from its 2.1 binary, not documented; Codex's
limit, if any, was not checked). The first that does not fit and every later one stay
queued, and a last line says how many: they come at the next turn's end, or by paste
once the agent is idle (the idle Stop starts their waiters). A first message bigger than
the cap alone is not handed over at all: it goes by paste, whole.
"""

from __future__ import annotations

import os
import time

from agent_mesh.delivery import log, queue
from agent_mesh.errors import Outcome
from agent_mesh.fsutil import locked
from agent_mesh.model import Envelope
from agent_mesh.text import sanitize

LOCK_TIMEOUT = 5.0  # the hook must answer well within the CLIs' hook timeouts
SEPARATOR = "\n\n"
MAX_CHARS = 9000  # the whole continuation text, the line about the rest included


def rest_line(count: int) -> str:
    """The last line of a handover that left count messages queued."""
    return (f"[agent-mesh: {count} more queued message(s) did not fit in this handover; they "
            "follow at your next turn's end, or once you are idle]")


class Handover:
    """The continuation text for one turn end, and the records it carries."""

    __slots__ = ("records", "text")

    def __init__(self, text: str, records: list[dict[str, object]]) -> None:
        self.text = text
        self.records = records

    @property
    def ids(self) -> list[str]:
        return [str(r.get("id") or "") for r in self.records]


def _same_socket(recorded: str, socket: str) -> bool:
    from agent_mesh.delivery.turns import default_socket

    a, b = recorded or default_socket(), socket or default_socket()
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def belongs(record: dict[str, object], socket: str, server_pid: str, pane_id: str) -> bool:
    """Was record queued for this pane of this tmux server?"""
    pane = record.get("pane")
    if not isinstance(pane, dict) or pane.get("pane_id") != pane_id:
        return False
    if str(pane.get("server") or "").split("@", 1)[0] != server_pid:
        return False
    return _same_socket(str(pane.get("socket") or ""), socket)


def for_pane(socket: str, server_pid: str, pane_id: str) -> list[dict[str, object]]:
    """The waiting (not held, not mid-paste) records of this pane, oldest first."""
    mine = [r for r in queue.pending() if r.get("state") == "waiting"
            and belongs(r, socket, server_pid, pane_id)]
    mine.sort(key=lambda r: os.path.basename(str(r["file"])))  # names sort by queue time
    return mine


def pane_lock(socket: str, pane_id: str) -> locked:
    """The pane's delivery lock (delivery/pane.Pane.lock, as paste.claim_pane takes it)."""
    from agent_mesh.delivery.pane import Pane
    from agent_mesh.tmux import Tmux

    return Pane(Tmux(socket_path=socket or None), pane_id).lock(LOCK_TIMEOUT)


def prepare(records: list[dict[str, object]], cap: int = MAX_CHARS) -> Handover | None:
    """The continuation for records: expired ones and ones already delivered are
    finished (logged) and left out; whole messages up to cap characters in all, the
    rest left queued and counted in a last line; None when nothing is to hand over."""
    now = time.time()
    kept: list[dict[str, object]] = []
    parts: list[str] = []
    room = cap - len(SEPARATOR) - len(rest_line(len(records)))  # the line may follow
    used = 0
    left = 0
    for index, record in enumerate(records):
        if float(str(record.get("expires_at") or 0)) <= now:
            queue.finish(record, "expired", "its time to live ran out before the turn ended")
            continue
        if queue.delivered_before(record):
            queue.finish(record, Outcome.DELIVERED, "found in the agent's received log")
            continue
        try:
            envelope = Envelope.from_json(record["envelope"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            queue.finish(record, Outcome.INVALID, f"not a valid queued message: {exc}")
            continue
        text, _removed = sanitize(f"{envelope.tag()} {envelope.body}")
        size = len(text) + (len(SEPARATOR) if parts else 0)
        if used + size > room:  # whole messages only: this one and the rest wait
            left = len(records) - index
            break
        parts.append(text)
        kept.append(record)
        used += size
    if not kept:
        return None
    if left:
        parts.append(rest_line(left))
    return Handover(SEPARATOR.join(parts), kept)


def commit(handover: Handover, detail: str) -> None:
    """The text reached the agent: log each message delivered and dequeue it."""
    for record in handover.records:
        try:
            envelope = Envelope.from_json(record["envelope"])  # type: ignore[arg-type]
            log.received_event(envelope, str(record.get("address") or ""), Outcome.DELIVERED,
                               detail)
        except (KeyError, TypeError, ValueError):
            pass
        queue.finish(record, Outcome.DELIVERED, detail)
