"""Reaching hosts: the local-or-remote choice, one request to one host, a request to many.

The one primitive every mesh command is built from is `call_host(host, request)`: the
same rpc request answered in-process for this host and by `agent-mesh rpc` over SSH
for a peer, so a local and a remote agent behave alike. Requests to several hosts go
out in parallel, one per host (`each_host`).
"""

from __future__ import annotations

from agent_mesh import __version__
from agent_mesh.errors import MeshError, WireError
from agent_mesh.mesh.remote import remote_transport
from agent_mesh.mesh.transport import LocalTransport, Transport
from agent_mesh.mesh.wire import PROTOCOL
from agent_mesh.registry import naming

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every message's path
    from collections.abc import Callable, Iterable
    from typing import Any

    from agent_mesh.delivery.mailbox import Origin

# How long a mesh-wide read (status, queue, peek, inbox) waits for one host: a hung
# peer costs every read the same, and never a write's longer wait.
READ_TIMEOUT = 15.0


def transport_for(host: str, self_host: str, origin: Origin | None = None) -> Transport:
    """Local for this host (`origin`: this process, for a reply); for any other, the
    chosen remote transport (the peer learns who sends from the connection)."""
    if host == self_host:
        return LocalTransport(host, origin)
    return remote_transport(host)


def call_host(host: str, request: dict[str, Any], timeout: float = 60.0,
              origin: Origin | None = None) -> dict[str, Any]:
    """Send one rpc request to host (in-process when it is this host); its reply.
    Raises the MeshError the peer reported, or WireError. In-process, `origin` is
    this process as a reply's sender (by default one whose replies are refused)."""
    if host == naming.self_alias():
        from agent_mesh.delivery.mailbox import Origin
        from agent_mesh.mesh import rpc

        return rpc.handle({**request, "protocol": PROTOCOL, "version": __version__},
                          origin=origin or Origin())
    transport = remote_transport(host)
    try:
        return transport.request(request, timeout=timeout)
    finally:
        transport.close()


def each_host(
    hosts: Iterable[str], request: Callable[[str], dict[str, Any]]
) -> dict[str, dict[str, Any] | MeshError]:
    """request(host) for every host in parallel, the first in this thread; a host's
    MeshError is its answer. Plain threads: concurrent.futures costs ~10 ms (logging)."""
    import threading

    answers: dict[str, dict[str, Any] | MeshError] = {}

    def one(host: str) -> None:
        try:
            answers[host] = request(host)
        except MeshError as exc:
            answers[host] = exc
        except Exception as exc:  # one broken host must not hide the others' answers
            answers[host] = WireError(f"{host}: {type(exc).__name__}: {exc}")

    hosts = list(dict.fromkeys(hosts))
    threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in hosts[1:]]
    for thread in threads:
        thread.start()
    if hosts:
        one(hosts[0])
    for thread in threads:
        thread.join()
    return {host: answers[host] for host in hosts}
