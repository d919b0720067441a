"""notify-pane's core: resolve the address, build the envelope, connect to its host."""

from __future__ import annotations

import os

from agent_mesh.clock import now_iso
from agent_mesh.delivery import log
from agent_mesh.delivery.inbox import SourceFile
from agent_mesh.errors import Outcome, UsageError
from agent_mesh.mesh.host import connect
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.registry import naming, view, whoami
from agent_mesh.registry.view import load_agents
from agent_mesh.tmux import Tmux

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and collections cost the hot path an import (~1 ms)
    from collections.abc import Mapping

    from agent_mesh.delivery.mailbox import Origin


def sender_id(agents: Mapping[str, Agent] | None = None) -> str:
    """Who is sending: AGENT_NAME, else the invoking pane's registry address, else
    `<host>[<session>]` for a known pane that is not registered, else the host alias
    (outside tmux, or a run-shell job whose pane is unknown: registry/whoami.py).
    `agents` is the registry when the caller has already read it."""
    name = os.environ.get("AGENT_NAME", "").strip()
    if name:
        return name
    host = naming.self_alias()
    here = whoami.invoking_pane()
    if here is None:
        return host
    try:
        agent = whoami.own_agent(load_agents() if agents is None else agents, here)
    except UsageError:
        agent = None
    if agent is not None:
        return agent.address
    socket, pane = here
    try:
        out = Tmux(socket_path=socket).run("display-message", "-p", "-t", pane,
                                           "#{session_name}")
        session = out.stdout.decode("utf-8", "replace").strip()
    except Exception:
        session = ""
    return f"{host}[{session}]" if session else host


def send(
    address: str,
    body: str,
    *,
    file_path: str | None = None,
    force: bool = False,
    skip_dismiss: bool = False,
    queue: bool = False,
    ttl: float = 0.0,
    re: str = "",
    ask: str = "",
    reply_to: str = "",
    origin: Origin | None = None,
) -> DeliveryResult:
    """Deliver body (and optionally a file) to the agent at address.

    queue: hold it on the recipient's host while the pane is busy (Outcome.QUEUED);
    re: this is the reply to ask `re` — it may then go to a host alias, whose mailbox
    keeps it for an asker that is not a pane; `origin` is this process as its sender
    on this host (mesh.delegate.reply_origin; without it a reply here is refused).
    """
    if queue and file_path is not None:
        raise UsageError("--queue does not take --file: send the file when the agent is ready")
    if re:
        from agent_mesh.delivery.mailbox import check_id

        check_id(re)
    file_data = SourceFile(file_path) if file_path is not None else None
    agents = view.load_agents()
    envelope = Envelope(
        sender=sender_id(agents=agents),
        address=address,
        body=body,
        timestamp=now_iso(),
        force=force,
        skip_dismiss=skip_dismiss,
        file_name=os.path.basename(file_path) if file_path else None,
        file_size=file_data.size if file_data is not None else None,
        msg_id=log.new_id(),
        queue=queue,
        ttl=ttl,
        re=re,
        ask=ask,
        reply_to=reply_to,
    )
    if re and address not in agents and _is_host_alias(address):
        from agent_mesh.mesh.wire import result_from_reply  # a peer's path

        with connect(address, origin) as host:
            reply = host.request({"op": "reply", "envelope": envelope.to_json()})
        return result_from_reply(address, reply).replace(address=address,
                                                         msg_id=envelope.msg_id)
    agent = view.resolve(address, agents)
    with connect(agent.host, origin) as host, log.sending(envelope, agent) as sent:
        result = host.deliver(envelope, agent, file_data)  # sent.jsonl: what went where
        if result.outcome != Outcome.DELIVERED:  # queued on its host (agent-mesh log follows it)
            sent.result(result.outcome, f"on {result.host}")
        return result


def _is_host_alias(name: str) -> bool:
    """This host's alias or a peer's (a reply's route when the asker is not a pane)."""
    return name in naming.mesh_aliases()
