"""Reaching hosts: `connect(alias)` gives this host's `LocalHost` or a peer's transport,
and `hosts(aliases)` a Group of them.

`LocalHost` is the one local path: it answers a request by calling the rpc handlers
directly (no wire format, no version check: it is this very installation) and
delivers with `receive`, as a peer's `agent-mesh rpc` does for its own agents. So a
local and a remote agent behave alike, and callers never ask which one they have.
"""

from __future__ import annotations

from agent_mesh.mesh.transport import REQUEST_TIMEOUT, Host
from agent_mesh.registry import naming

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every message's path
    from collections.abc import Iterable
    from typing import Any

    from agent_mesh.delivery.inbox import SourceFile
    from agent_mesh.delivery.mailbox import Origin
    from agent_mesh.mesh.group import Group
    from agent_mesh.mesh.transport import FileBody
    from agent_mesh.model import Agent, DeliveryResult, Envelope

# How long a mesh-wide read (status, queue, peek, inbox) waits for one host: a hung
# peer costs every read the same, and never a write's longer wait.
READ_TIMEOUT = 15.0


class LocalHost(Host):
    """This host, answered in-process. `origin` is this process as a reply's sender
    (None: one whose replies are refused)."""

    def __init__(self, alias: str, origin: Origin | None = None) -> None:
        self.host = alias
        self.origin = origin

    def request(self, header: dict[str, Any], stream: FileBody | None = None,
                timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """The handler's answer to header (a file to deliver goes through `deliver`)."""
        from agent_mesh.delivery.mailbox import Origin
        from agent_mesh.mesh import rpc

        return rpc.dispatch(header, None, self.origin or Origin())

    def deliver(
        self, envelope: Envelope, agent: Agent, file_data: SourceFile | bytes | None = None
    ) -> DeliveryResult:
        from agent_mesh.delivery.receive import receive

        return receive(envelope, agent, file_data, self.origin)


def connect(alias: str, origin: Origin | None = None, kind: str | None = None) -> Host:
    """The host called alias: LocalHost for this one, else the chosen remote transport
    (`kind`, else the configured one; the peer learns who sends from the connection)."""
    if alias == naming.self_alias():
        return LocalHost(alias, origin)
    from agent_mesh.mesh.remote import remote_transport  # not on a local message's path

    return remote_transport(alias, kind)


def hosts(aliases: Iterable[str], origin: Origin | None = None,
          kind: str | None = None) -> Group:
    """A Group of these hosts, each reached as `connect` reaches it."""
    from agent_mesh.mesh.group import Group  # not on a local message's path

    return Group(aliases, lambda alias: connect(alias, origin, kind))
