"""How a message reaches the host that runs the recipient's tmux.

One interface, two implementations: `LocalTransport` delivers on this host;
`SshTransport` (mesh/ssh.py, paramiko imported only when a remote host is contacted)
sends the envelope to `agent-mesh rpc` on the peer, which runs the same delivery.
mesh/hosts.py chooses between them.
"""

from __future__ import annotations

from agent_mesh.model import Agent, DeliveryResult, Envelope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_mesh.delivery.inbox import SourceFile


class Transport:
    """The interface (a plain base class: typing.Protocol costs an import on the hot path)."""

    host: str

    def deliver(
        self, envelope: Envelope, agent: Agent, file_data: SourceFile | bytes | None = None
    ) -> DeliveryResult:
        """Deliver envelope to agent's pane, dropping file_data into the inbox first."""
        raise NotImplementedError

    def close(self) -> None:
        """Release any connection (nothing to do locally)."""


class LocalTransport(Transport):
    """Delivery to a pane of this host's own tmux server."""

    def __init__(self, host: str) -> None:
        self.host = host

    def deliver(
        self, envelope: Envelope, agent: Agent, file_data: SourceFile | bytes | None = None
    ) -> DeliveryResult:
        from agent_mesh.delivery.receive import receive

        return receive(envelope, agent, file_data)

