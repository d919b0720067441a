"""notify-pane's core: resolve the address, build the envelope, pick the transport."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent_mesh import registry
from agent_mesh.errors import UsageError
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.tmux import Tmux
from agent_mesh.transport import FileBody, transport_for


def sender_id(tmux: Tmux | None = None, agents: Mapping[str, Agent] | None = None) -> str:
    """Who is sending: AGENT_NAME, else this pane's registry address, else
    `<host>[<session>]` inside tmux, else the host alias. `agents` is the registry
    when the caller has already read it."""
    name = os.environ.get("AGENT_NAME", "").strip()
    if name:
        return name
    host = registry.self_alias()
    pane = os.environ.get("TMUX_PANE", "")
    if not pane or not os.environ.get("TMUX"):
        return host
    try:
        for agent in (registry.load_agents() if agents is None else agents).values():
            if agent.pane_id == pane and agent.host == host:
                return agent.address
    except UsageError:
        pass
    try:
        out = (tmux or Tmux()).run("display-message", "-p", "-t", pane, "#{session_name}")
        session = out.stdout.decode("utf-8", "replace").strip()
    except Exception:
        session = ""
    return f"{host}[{session}]" if session else host


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except IsADirectoryError:
        raise UsageError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def send(
    address: str,
    body: str,
    *,
    file_path: str | None = None,
    force: bool = False,
    skip_dismiss: bool = False,
) -> DeliveryResult:
    """Deliver body (and optionally a file, streamed: never whole in memory) to the
    agent at address."""
    file_data = FileBody.open(file_path) if file_path is not None else None
    agents = registry.load_agents()
    agent = registry.resolve(address, agents)
    envelope = Envelope(
        sender=sender_id(agents=agents),
        address=address,
        body=body,
        timestamp=registry.now_iso(),
        force=force,
        skip_dismiss=skip_dismiss,
        file_name=os.path.basename(file_path) if file_path else None,
        file_size=file_data.size if file_data is not None else None,
    )
    transport = transport_for(agent.host, registry.self_alias())
    try:
        return transport.deliver(envelope, agent, file_data)
    finally:
        if file_data is not None:
            file_data.close()
