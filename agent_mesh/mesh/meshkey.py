"""Which peers this host reaches with its mesh key, and where that key is (issue 18).

Its own small module: both transports ask on every request (mesh/trust.py, which
manages the key, imports the OpenSSH transport to close masters).
"""

from __future__ import annotations

import os

from agent_mesh import paths

KEY_NAME = "mesh_ed25519"
PEERS_FILE = "mesh-key.peers"


def key_path() -> str:
    return os.path.join(paths.agents_dir(), KEY_NAME)


def peers_path() -> str:
    return os.path.join(paths.agents_dir(), PEERS_FILE)


def trusted_peers() -> list[str]:
    """The peers this host reaches with its mesh key (~/.agents/mesh-key.peers)."""
    try:
        with open(peers_path(), encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def mesh_key_for(alias: str) -> str | None:
    """The private key to reach alias with, or None (the user's own SSH setup)."""
    if alias not in trusted_peers():
        return None
    key = key_path()
    return key if os.path.exists(key) else None


