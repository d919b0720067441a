"""Who really sent a request, as this host can tell it (a reply is accepted only from
the host, or the pane, of the agent that was asked: delivery/mailbox.py decides).

- This process (a local notify-pane): this host, and the registered pane it runs in.
- `agent-mesh rpc` under sshd: the address the SSH connection comes from
  (`SSH_CONNECTION`), matched against the addresses this host's own `ssh -G ALIAS`
  gives for the asked agent's host. The envelope's `sender` is never used: any peer
  can write any name there.
- `agent-mesh rpc --peer HOST` (a mesh key's forced command): HOST, for sure.
- `agent-mesh rpc` run without SSH: a process of this host, in no known pane.
"""

from __future__ import annotations

import os

from agent_mesh.delivery.mailbox import Origin
from agent_mesh.registry import naming


class LocalOrigin(Origin):
    """A process of this host; `pane` is its registered pane's address ('' if none)."""

    def __init__(self, host: str, pane: str = "") -> None:
        self.host, self._pane = host, pane

    def why_not_host(self, alias: str) -> str | None:
        return None if alias == self.host else f"it was sent on {self.host}"

    def pane(self) -> str:
        return self._pane


    def verified_host(self) -> str:
        return self.host


class KeyOrigin(Origin):
    """An rpc request under a mesh key's forced command (`rpc --peer HOST`, issue 18):
    sshd matched HOST's key, so the calling host is known for sure."""

    def __init__(self, host: str) -> None:
        self.host = host

    def why_not_host(self, alias: str) -> str | None:
        return None if alias == self.host else f"it came with {self.host}'s mesh key"

    def verified_host(self) -> str:
        return self.host

    def remote(self) -> bool:
        return True


class SshOrigin(Origin):
    """An rpc request over SSH: what is known is the address it connected from."""

    def __init__(self, connection: str) -> None:
        words = connection.split()
        self._raw = words[0] if words else ""

    @property
    def address(self) -> str:
        """Normalised when asked (ipaddress costs an import every request would pay)."""
        return _normal(self._raw) if self._raw else ""

    def verified_host(self) -> str:
        return ""  # a login key: any host holding it could be calling

    def remote(self) -> bool:
        return True

    def why_not_host(self, alias: str) -> str | None:
        if not self.address:
            return "the SSH connection's address is unknown"
        addresses = host_addresses(alias)
        if self.address in addresses:
            return None
        known = ", ".join(sorted(addresses)) or "no address"
        return (f"it came over SSH from {self.address}, and {alias} is {known} here "
                "(a jump host or NAT in between hides the sender: see Security model)")


def connection_origin(peer: str = "") -> Origin:
    """The caller of this `agent-mesh rpc`, from its environment; `peer`: the host whose
    mesh key sshd matched (`rpc --peer`)."""
    if peer:
        return KeyOrigin(peer)
    connection = os.environ.get("SSH_CONNECTION")
    if connection is not None:
        return SshOrigin(connection)
    return LocalOrigin(naming.self_alias())


def host_addresses(alias: str) -> set[str]:
    """The addresses this host would connect to for alias (`ssh -G`, then DNS)."""
    import socket

    from agent_mesh.mesh.paramiko import resolve_alias

    try:
        hostname = resolve_alias(alias).hostname
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except Exception:  # an alias that does not resolve has no address: refused
        return set()
    return {_normal(str(info[4][0])) for info in infos}


def _normal(address: str) -> str:
    """One spelling per address (`::ffff:10.0.0.1` is 10.0.0.1; no zone)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)
