"""What the recipient's host does with an envelope: reply mailbox, paste, or queue.

Used alike by a local notify-pane and by `agent-mesh rpc` for a peer's envelope, so a
queued or replied message behaves the same on both paths; the queue's waiter then
delivers with delivery.paste directly (the message is already queued and recorded).
"""

from __future__ import annotations

from agent_mesh.delivery import log
from agent_mesh.delivery.inbox import SourceFile, Upload
from agent_mesh.delivery.paste import deliver_envelope
from agent_mesh.errors import (
    MeshError,
    MidTurn,
    NotReady,
    Outcome,
    PaneDead,
    Refused,
    UsageError,
)
from agent_mesh.model import Agent, DeliveryResult, Envelope, is_hex_id
from agent_mesh.registry import naming

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from collections.abc import Callable

    from agent_mesh.delivery.mailbox import Origin
    from agent_mesh.delivery.state import PaneState


def _result(agent: Agent, envelope: Envelope, outcome: Outcome, note: str) -> DeliveryResult:
    return DeliveryResult(address=agent.address, host=agent.host, target=agent.target,
                          pane_id=agent.pane_id, bytes_sent=0, notes=[note] if note else [],
                          outcome=outcome, msg_id=envelope.msg_id)


def receive(
    envelope: Envelope,
    agent: Agent,
    file: SourceFile | Upload | bytes | None = None,
    origin: Origin | None = None,
    verified: str | None = None,
) -> DeliveryResult:
    """Deliver envelope to agent's pane on this host, honouring `re` and `queue`.
    `verified`: the sending host as this host knows it ('' : only claimed); None: from
    origin (None: a process of this host).

    A reply is checked first against its ask and `origin` (who really sent it, as
    this host can tell): a refused one is neither stored, queued nor typed. While
    the `ask` waits, keeping it in the mailbox is the whole delivery (nothing is
    typed); once the ask has ended, it is typed into the asker's pane. A message
    sent with `queue` that finds the pane busy is stored and handed to a waiter
    (Outcome.QUEUED). Never queued: a forced send (it goes now or is refused), a
    dead pane, and a pane that will not become ready by itself (a shell, a program
    that takes no messages), where it would only wait for its time to live.
    """
    _check_reply_fields(envelope)
    # Who really sends (issue 18): a peer's mesh key, this host, or nobody knows.
    envelope = envelope.replace(verified=_verified(origin) if verified is None else verified)
    if envelope.force:
        envelope = envelope.replace(queue=False)
    late = ""
    if envelope.re:
        from agent_mesh.delivery import mailbox  # json: only for replies

        ask = mailbox.check_reply(envelope, origin)
        if mailbox.store_reply(envelope, ask):
            return _result(agent, envelope, Outcome.MAILBOX, "the asker was waiting: kept for it")
        late = f"its ask ended ({mailbox.ended(ask)}): typed into the asker's pane"
    # A window's @agent-allow (a reply to its own ask is held to the asked agent instead):
    # read with the pane's state, in the same tmux call; by itself only before queueing.
    allowed = None if envelope.re else _allow_check(envelope, agent)
    if envelope.queue:
        from agent_mesh.delivery import queue  # json: only for queued messages

        queue.check_request(envelope)  # before the pane is looked at; enqueue relies on it
        if queue.has_pending(agent.address):  # behind the ones already waiting, in order
            if allowed is not None:
                _check_allowed(envelope, agent)
            queue.enqueue(envelope, agent, "earlier messages are still queued")
            queue.start_waiter(agent.address)
            return _result(agent, envelope, Outcome.QUEUED, "queued behind earlier messages")
    try:
        result = deliver_envelope(envelope, agent, file, allowed=allowed)
    except Refused as exc:
        if envelope.queue:  # the receiving log leaves a queued message's refusals to us
            log.received_event(envelope, agent.address, Outcome.REFUSED, str(exc))
        raise
    except MidTurn as exc:  # mid-turn by its own hooks: for its Stop hook, --queue or not
        return _queue_for_turn_end(envelope, agent, file, str(exc))
    except NotReady as exc:
        if not envelope.queue:
            raise
        if isinstance(exc, PaneDead) or _stays(agent):
            refused = NotReady(f"{exc}; not queued: it will not become ready by itself",
                               overridable=exc.overridable)
            log.received_event(envelope, agent.address, Outcome.REFUSED, str(refused))
            raise refused from None
        from agent_mesh.delivery import queue  # json: only for queued messages

        if allowed is not None:  # refused before its state was read (the lock was busy)
            _check_allowed(envelope, agent)
        queue.enqueue(envelope, agent, str(exc))
        queue.start_waiter(agent.address)
        return _result(agent, envelope, Outcome.QUEUED, f"queued: {exc}")
    return result.replace(notes=[*result.notes, late] if late else result.notes,
                          msg_id=envelope.msg_id)


def _verified(origin: Origin | None) -> str:
    """The sending host where this host knows it ('' where it is only claimed); no
    origin: a process of this host (a local notify-pane)."""
    if origin is None:
        return naming.self_alias()
    return origin.verified_host()


def _allow_check(envelope: Envelope, agent: Agent) -> Callable[[PaneState], None]:
    """What claim_pane runs on the pane's first state: refused unless its @agent-allow
    takes this sender (delivery/allow.py)."""
    from agent_mesh.delivery import allow

    def check(state: PaneState) -> None:
        allow.check(envelope, agent, state.allow)

    return check


def _check_allowed(envelope: Envelope, agent: Agent) -> None:
    """The window's @agent-allow read by itself (one more tmux call: only for a message
    queued without a look at its pane); a refusal is logged as such."""
    from agent_mesh.delivery import allow

    try:
        allow.check(envelope, agent)
    except Refused as exc:
        log.received_event(envelope, agent.address, Outcome.REFUSED, str(exc))
        raise


def _queue_for_turn_end(envelope: Envelope, agent: Agent,
                        file: SourceFile | Upload | bytes | None, reason: str) -> DeliveryResult:
    """Queue a message for an agent that is mid-turn by its hooks (exit 5): its Stop hook
    hands it over (delivery/handover.py). A file is dropped into the inbox now and its
    announcement queued, so it is announced the same way."""
    from agent_mesh.delivery import queue  # json: only for queued messages

    envelope = envelope.replace(queue=True, force=False)
    queue.check_request(envelope)
    if file is not None:
        from agent_mesh.delivery.inbox import place
        from agent_mesh.delivery.paste import drop_notice

        dropped = place(file, envelope.sender, envelope.file_name)
        envelope = envelope.replace(body=drop_notice(dropped.shown, dropped.size,
                                                     envelope.body))
        try:
            queue.enqueue(envelope, agent, reason)
        except BaseException:
            dropped.remove()
            raise
    else:
        queue.enqueue(envelope, agent, reason)
    queue.start_waiter(agent.address)  # the paste path's safety net: an idle agent later
    return _result(agent, envelope, Outcome.QUEUED, f"queued for the end of its turn: {reason}")


def _stays(agent: Agent) -> bool:
    """Would this pane's refusal stand until someone changes it (rule.lasting)?"""
    from agent_mesh.delivery.classify import classify
    from agent_mesh.delivery.pane import pane_state
    from agent_mesh.delivery.rule import lasting
    from agent_mesh.tmux import Tmux

    try:
        state = pane_state(Tmux(socket_path=agent.socket or None), agent.pane_id or agent.target)
    except MeshError:
        return False  # gone or unreadable: the waiter finds out and keeps it
    return lasting(state, classify(state))


def _check_reply_fields(envelope: Envelope) -> None:
    """The tag shows `reply: notify-pane <reply_to> --re <ask>` for the agent to run:
    both come from the sender, so they must be an address and a hex id, nothing a
    shell would read as more than words."""
    for value, what in ((envelope.ask, "ask id"), (envelope.re, "reply id")):
        if value and not is_hex_id(value):
            raise UsageError(f"bad {what} {value[:40]!r} in the message: refused")
    route = envelope.reply_to
    if route and not naming.is_valid_address(route):  # an address or a host alias
        raise UsageError(f"bad reply address {route[:40]!r} in the message: refused")

