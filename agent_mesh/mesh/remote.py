"""Which transport reaches a peer: OpenSSH with a control master (the default where an
`ssh` client exists) or paramiko, chosen per run, per user config or by what is installed.

Its own module so that sync and mesh/host.py can both ask without importing each other
(sync answers rpc pushes; host.py's LocalHost calls rpc in-process).
"""

from __future__ import annotations

from agent_mesh.config import value as config_value
from agent_mesh.errors import UsageError
from agent_mesh.mesh.transport import TRANSPORTS, Host


def chosen_transport() -> str:
    """`AGENT_MESH_TRANSPORT` for one run, else `transport` in ~/.agents/config.toml,
    else openssh when an `ssh` client is on PATH, else paramiko."""
    import os

    choice = os.environ.get("AGENT_MESH_TRANSPORT", "").strip().lower()
    where = "AGENT_MESH_TRANSPORT"
    if not choice:
        choice = (config_value("transport") or "").strip().lower()
        where = "transport in ~/.agents/config.toml"
    if choice and choice not in TRANSPORTS:
        raise UsageError(f"{where}: unknown transport {choice!r} (openssh or paramiko)")
    if choice:
        return choice
    from agent_mesh.mesh.sshclient import ssh_client

    return "openssh" if ssh_client() else "paramiko"


def remote_transport(host: str, kind: str | None = None) -> Host:
    """The transport to a peer: `kind`, else the chosen one (imported only now)."""
    kind = kind or chosen_transport()
    if kind == "openssh":
        from agent_mesh.mesh.openssh import OpenSshTransport

        return OpenSshTransport(host)
    from agent_mesh.mesh.paramiko import ParamikoTransport

    return ParamikoTransport(host)
