"""Every file location in one place.

Functions, not constants: tests and the lab point HOME (or AGENT_MESH_HOME) elsewhere
after import.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def agents_dir() -> Path:
    """~/.agents, overridable with AGENT_MESH_HOME."""
    override = os.environ.get("AGENT_MESH_HOME")
    return Path(override) if override else home() / ".agents"


def local_slice() -> Path:
    """This host's own entries, rewritten by the tmux hooks."""
    return agents_dir() / "local.toml"


def registry_file() -> Path:
    """The merged view of every host's slice that notify-pane reads."""
    return agents_dir() / "registry.toml"


def slices_dir() -> Path:
    """Last good copy of each peer's slice, one file per peer alias."""
    return agents_dir() / "slices"


def peers_conf() -> Path:
    return agents_dir() / "peers.conf"


def self_conf() -> Path:
    return agents_dir() / "self.conf"


def hook_log() -> Path:
    return agents_dir() / "hook.log"


def locks_dir() -> Path:
    return agents_dir() / "locks"


def inbox_dir() -> Path:
    """Where file drops land: ~/.agent-inbox/<sender>/<name>."""
    return home() / ".agent-inbox"
