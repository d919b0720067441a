"""Delegation across the mesh: broadcast, ask and reply, the queue view, and spawn.

Everything here is built from one primitive, a mesh/host.py `Host`'s `request`:
the same rpc request answered in-process for this host and by `agent-mesh rpc` over SSH
for a peer (mesh/handlers.py answers), so a local and a remote agent behave alike.
Requests to several hosts go out in parallel, one per host. Nothing here keeps running
once its command returns:
queued messages are sent by the recipient host's short-lived waiter (delivery.queue).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent_mesh.delivery import mailbox
from agent_mesh.errors import (
    DELIVERED,
    NOT_READY,
    QUEUED,
    UNKNOWN_AGENT,
    USAGE,
    WIRE,
    AskTimeout,
    MeshError,
    NoMatch,
    Outcome,
    UsageError,
    WireError,
    bounded,
)
from agent_mesh.mesh.handlers import DEFAULT_SPAWN_WAIT, MAX_SPAWN_WAIT
from agent_mesh.mesh.host import READ_TIMEOUT, connect, hosts
from agent_mesh.mesh.origin import LocalOrigin
from agent_mesh.mesh.transport import Host
from agent_mesh.model import Agent, Envelope
from agent_mesh.receivers import DEFAULT_COMMAND
from agent_mesh.registry import naming, view, whoami
from agent_mesh.registry.select import select

DEFAULT_ASK_TIMEOUT = 600.0
DEFAULT_AGENT_COMMAND = (DEFAULT_COMMAND,)
POLL_SECONDS = 0.1


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `1d` as seconds; UsageError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], 0)
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        value = -1
    if not value > 0:
        raise UsageError(f"bad duration {text!r}: use e.g. 90s, 10m, 2h")
    return value


def reply_origin() -> LocalOrigin:
    """This process as a reply's sender: this host, and the registered pane it runs
    in (never AGENT_NAME, which anyone may set to anything)."""
    return LocalOrigin(naming.self_alias(), whoami.own_address(view.load_agents()))


# --- broadcast ---------------------------------------------------------------------


class Recipient:
    """What happened for one recipient of a broadcast: its Outcome and a detail line."""

    __slots__ = ("address", "host", "line", "outcome")

    def __init__(self, address: str, host: str, outcome: Outcome, line: str) -> None:
        self.address, self.host, self.outcome, self.line = address, host, outcome, line

    @property
    def code(self) -> int:
        return self.outcome.code

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "host": self.host, "code": self.code,
                "outcome": self.outcome.word, "detail": self.line}


# Which exit code wins when recipients differ: a wire failure is worst, then a usage
# error, an unknown/gone agent, a refusal, then queued; all delivered is 0.
_SEVERITY = {DELIVERED: 0, QUEUED: 1, NOT_READY: 2, UNKNOWN_AGENT: 3, USAGE: 4, WIRE: 5}


def worst(codes: Iterable[int]) -> int:
    return max(codes, key=lambda c: _SEVERITY.get(c, 6), default=0)


def broadcast(patterns: list[str], envelope: Envelope) -> list[Recipient]:
    """Deliver envelope to every agent matching patterns (never the sender), one request
    per host in parallel; one Recipient per recipient."""
    if envelope.re:
        raise UsageError("a reply goes to its one asker: it cannot fan out to a pattern")
    agents = view.load_agents()
    me = whoami.own_address(agents)
    targets = [a for a in select(agents, patterns) if a.address != me]
    if not targets:
        raise NoMatch(f"no agent matches {' '.join(patterns)} (try agent-mesh list)")
    by_host: dict[str, list[Agent]] = {}
    for agent in targets:
        by_host.setdefault(agent.host, []).append(agent)

    def send_host(host: Host) -> dict[str, Any]:
        envelopes = [envelope.replace(address=a.address).to_json() for a in by_host[host.host]]
        return host.request({"op": "deliver_many", "envelopes": envelopes})

    answers = hosts(by_host).each(send_host)
    outcomes: list[Recipient] = []
    for host, agents_there in by_host.items():
        answer = answers[host]
        if isinstance(answer, MeshError):
            failed = Outcome.of_error(answer)
            outcomes.extend(Recipient(agent.address, host, failed, str(answer))
                            for agent in agents_there)
            continue
        for row in answer.get("results", []):
            outcome = Outcome.parse(row.get("outcome", ""), int(row.get("code", WIRE)))
            outcomes.append(Recipient(str(row.get("address", "?")), host, outcome,
                                      str(row.get("detail", ""))))
    return outcomes


# --- ask and reply -----------------------------------------------------------------


def ask(address: str, question: str, timeout: float = DEFAULT_ASK_TIMEOUT,
        send: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Deliver question with a reply instruction, then wait for the reply; the exchange.

    The reply goes to this pane's address when the asker is a registered pane, else
    to this host's alias (kept in the mailbox, typed nowhere), and is taken only from
    the agent asked (mailbox.check_reply). The question is sent queued: a busy
    recipient gets it as soon as it is ready. Once the ask ends, a late reply is
    typed into the asking pane, or refused for a script (nothing would read it).
    """
    from agent_mesh.mesh.send import send as default_send

    agents = view.load_agents()
    asked = view.resolve(address, agents)  # its host is where the reply must come from
    route = whoami.own_address(agents) or naming.self_alias()
    ask_id = mailbox.new_ask_id()
    mailbox.record_ask(ask_id, asked.address, asked.host, route, question, timeout)
    started = time.monotonic()
    how = "failed"
    reply = None
    try:
        result = (send or default_send)(address, question, ask=ask_id, reply_to=route,
                                        queue=True)
        deadline = started + timeout
        while True:
            reply = mailbox.take_reply(ask_id)
            if reply is not None or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        how = "timed out"
    except KeyboardInterrupt:
        how = "interrupted"
        raise
    finally:  # a reply stored while the ask ends is still taken: none is left unread
        late = mailbox.end_ask(ask_id, "answered" if reply else how, take=reply is None)
        reply = reply or late
    if reply is None:
        later = (f"typed into {route}" if route != naming.self_alias()
                 else "refused: nothing would read it")
        raise AskTimeout(f"no reply from {address} within {timeout:g} s (id {ask_id}); "
                         f"a later reply is {later}")
    return {"id": ask_id, "to": address, "question": question, "outcome": result.outcome.word,
            "reply": reply.get("body", ""), "from": reply.get("from", ""),
            "at": reply.get("at", ""), "waited": round(time.monotonic() - started, 3)}


def start_ask(address: str, question: str, lifetime: float = DEFAULT_ASK_TIMEOUT,
              send: Callable[..., Any] | None = None) -> dict[str, Any]:
    """`ask` without the wait (the MCP `ask` tool): record the ask, deliver the question
    (queued, as `ask` does) and return at once with its id. While this process lives and
    `lifetime` runs, the reply is kept in the mailbox for `wait_reply`; after that, a
    late reply is typed into the asking pane (refused for a process in no pane)."""
    from agent_mesh.mesh.send import send as default_send

    agents = view.load_agents()
    asked = view.resolve(address, agents)
    route = whoami.own_address(agents) or naming.self_alias()
    ask_id = mailbox.new_ask_id()
    mailbox.record_ask(ask_id, asked.address, asked.host, route, question, lifetime)
    try:
        result = (send or default_send)(address, question, ask=ask_id, reply_to=route,
                                        queue=True)
    except BaseException:
        mailbox.end_ask(ask_id, "failed")
        raise
    return {"id": ask_id, "to": asked.address, "route": route, "outcome": str(result.outcome),
            "msg_id": result.msg_id, "lifetime": lifetime}


def wait_reply(ask_id: str, timeout: float) -> dict[str, Any] | None:
    """The reply to this process's ask `ask_id` if one comes within `timeout` seconds,
    else None (the ask stays open: wait again). NoMatch for an ask this process did not
    make; AskTimeout once the ask has ended or its lifetime has run out (a reply that
    came meanwhile is still returned)."""
    record = mailbox.read_ask(mailbox.check_id(ask_id))
    if record is None or record.get("pid") != os.getpid():
        raise NoMatch(f"no ask {ask_id} was made here (wait_reply takes the id ask returned)")
    if record.get("ended_at"):
        raise AskTimeout(f"ask {ask_id} has ended ({mailbox.ended(record)})")
    to, route = str(record.get("to", "")), str(record.get("route", ""))
    asked_at, lifetime = _seconds(record.get("asked_at")), _seconds(record.get("timeout"))
    ends = asked_at + lifetime
    deadline = time.monotonic() + max(0.0, min(timeout, ends - time.time()))
    while True:
        reply = mailbox.take_reply(ask_id)
        if reply is not None:
            mailbox.end_ask(ask_id, "answered", take=False)
            break
        if time.time() >= ends:
            reply = mailbox.end_ask(ask_id, "timed out")
            if reply is not None:
                break
            later = (f"typed into {route}" if route != naming.self_alias()
                     else "refused: nothing would read it")
            raise AskTimeout(f"no reply from {to} within the ask's {lifetime:g} s "
                             f"(id {ask_id}); a later reply is {later}")
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)
    return {"id": ask_id, "to": to, "reply": reply.get("body", ""),
            "from": reply.get("from", ""), "at": reply.get("at", ""),
            "waited": round(time.time() - asked_at, 3)}


# --- the queue, mesh-wide ----------------------------------------------------------


def queue_list() -> tuple[list[dict[str, Any]], dict[str, MeshError]]:
    """Pending messages on every host; and the hosts that did not answer."""
    answers = hosts(naming.mesh_aliases()).each(
        lambda h: h.request({"op": "queue"}, timeout=READ_TIMEOUT))
    rows: list[dict[str, Any]] = []
    failed: dict[str, MeshError] = {}
    for host, answer in answers.items():
        if isinstance(answer, MeshError):
            failed[host] = answer
            continue
        for row in answer.get("pending", []):
            if isinstance(row, dict):  # a peer's odd row is skipped, never a crash
                rows.append({**row, "host": host, "queued_at": _seconds(row.get("queued_at")),
                             "expires_at": _seconds(row.get("expires_at"))})
    rows.sort(key=lambda r: r["queued_at"])
    return rows, failed


def _seconds(value: object) -> float:
    """A time from a queue record (ours or a peer's); anything else (NaN and the
    infinities included: JSON lets a peer send them) counts as 0."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return seconds if abs(seconds) < float("inf") else 0.0


def queue_cancel(msg_id: str) -> str:
    """Cancel a queued message wherever it waits; returns the host, or raises."""
    request = {"op": "cancel", "id": msg_id}
    answers = hosts(naming.mesh_aliases()).each(lambda h: h.request(request))
    for host, answer in answers.items():
        if isinstance(answer, dict) and answer.get("cancelled"):
            return host
    raise NoMatch(f"no queued message has id {msg_id!r} (see agent-mesh queue)")


# --- spawn -------------------------------------------------------------------------


def default_agent_command() -> list[str]:
    """AGENT_MESH_AGENT_COMMAND (split on spaces), else `claude`."""
    raw = os.environ.get("AGENT_MESH_AGENT_COMMAND", "").split()
    return raw or list(DEFAULT_AGENT_COMMAND)


def spawn(host: str, argv: list[str], session: str, name: str, role: str, accept: str,
          wait: float = DEFAULT_SPAWN_WAIT) -> dict[str, Any]:
    """Start a window running argv on host, wait until its input is ready; its address.

    The request is held open (`hold`) while the peer waits: if this process dies, the
    peer sees its end close and removes the window. Cut off without an answer, the
    error names the address the window would have, so a retry does not make a twin."""
    argv = argv or default_agent_command()
    wait = bounded(wait, "--wait", DEFAULT_SPAWN_WAIT, MAX_SPAWN_WAIT)
    request = {"op": "spawn", "argv": argv, "session": session, "name": name, "role": role,
               "accept": accept, "wait": wait, "hold": True}
    try:
        with connect(host) as there:
            return there.request(request, timeout=wait + 30)
    except WireError as exc:
        if exc.answered or host == naming.self_alias():
            raise
        window = name or os.path.basename(argv[0])
        address = naming.base_address(host, "", session, window, "0")
        raise WireError(f"{exc}; the window may have started there as {address}: check "
                        f"with agent-mesh status host:{host} before a retry") from None
