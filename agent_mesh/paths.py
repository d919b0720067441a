"""Every file location in one place, as plain strings.

Functions, not constants: tests and the lab point HOME (or AGENT_MESH_HOME)
elsewhere after import. Strings, not pathlib: the hook and notify-pane import
this, and pathlib's import alone (~9 ms here) costs more than a delivery's
tmux calls. Callers that want path objects wrap them in Path().
"""

from __future__ import annotations

import os


def home() -> str:
    return os.environ.get("HOME") or os.path.expanduser("~")


def agents_dir() -> str:
    """~/.agents, overridable with AGENT_MESH_HOME."""
    return os.environ.get("AGENT_MESH_HOME") or os.path.join(home(), ".agents")


def local_slice() -> str:
    """This host's own entries, rewritten by the tmux hooks."""
    return os.path.join(agents_dir(), "local.toml")


def registry_file() -> str:
    """The merged view of every host's slice that notify-pane reads."""
    return os.path.join(agents_dir(), "registry.toml")


def registry_cache() -> str:
    """registry.toml as marshal data, keyed by that file's identity (see registry)."""
    return os.path.join(agents_dir(), ".registry.cache")


def slices_dir() -> str:
    """Last good copy of each peer's slice, one file per peer alias."""
    return os.path.join(agents_dir(), "slices")


def peers_conf() -> str:
    return os.path.join(agents_dir(), "peers.conf")


def self_conf() -> str:
    return os.path.join(agents_dir(), "self.conf")


def hook_log() -> str:
    return os.path.join(agents_dir(), "hook.log")


def locks_dir() -> str:
    return os.path.join(agents_dir(), "locks")


def coord_dir() -> str:
    """The bulletin, decisions, locks and task boards this host is the authority for
    (agent_mesh/coord), and the last entries read from each peer."""
    return os.path.join(agents_dir(), "coord")


def inbox_dir() -> str:
    """Where file drops land: ~/.agent-inbox/<sender>/<name>."""
    return os.path.join(home(), ".agent-inbox")


# --- what `agent-mesh setup` installs (ops/setup.py writes them, ops/doctor.py checks) ---


def local_bin() -> str:
    """Where the commands are reachable: `agent-mesh setup` links them here, pipx puts
    them here, and a peer's SSH command and the tmux hook look here first."""
    return os.path.join(home(), ".local", "bin")


def share_dir() -> str:
    """~/.local/share/agent-mesh: the hook launcher, the tmux snippet, install.sh's venv."""
    return os.path.join(home(), ".local", "share", "agent-mesh")


def hook_launcher() -> str:
    """The sh launcher every tmux hook runs (a fixed path, whatever the install)."""
    return os.path.join(share_dir(), "hooks", "tmux-event")


def package_paths() -> list[str]:
    """What `python -S` needs on sys.path for this installation (the rpc launcher, the
    server helper): the package's root, then this interpreter's site-packages (an
    editable install's dependencies)."""
    import sys

    import agent_mesh

    root = os.path.dirname(os.path.dirname(os.path.abspath(agent_mesh.__file__)))
    extra = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
             and os.path.realpath(p) != os.path.realpath(root)]
    return [root, *dict.fromkeys(extra)]


def rpc_launcher() -> str:
    """What a peer's request runs, when setup wrote it (mesh/wire.py REMOTE_COMMAND
    names this path as it is relative to HOME)."""
    return os.path.join(share_dir(), "rpc")


def managed_tmux_conf() -> str:
    """A copy of tmux.conf.snippet, for `tmux source-file` into a running server."""
    return os.path.join(share_dir(), "tmux.conf")


def notify_launcher() -> str:
    """The notify-pane that `agent-mesh setup` writes and links into local_bin():
    `python -I -S`, without site or the console script's imports (issue 20)."""
    return command_launcher("notify-pane")


def command_launcher(name: str) -> str:
    """The launcher `agent-mesh setup` writes for command `name` (notify-pane,
    agent-mesh) and links into local_bin() in place of its console script."""
    return os.path.join(share_dir(), name)


def setup_links() -> str:
    """The command links `agent-mesh setup` created in local_bin(), for --uninstall."""
    return os.path.join(share_dir(), "linked-commands")


def tmux_conf() -> str:
    return os.path.join(home(), ".tmux.conf")


def setup_made_tmux_conf() -> str:
    """Present when `agent-mesh setup` created ~/.tmux.conf: --uninstall then removes
    it if nothing but our block was ever in it."""
    return os.path.join(share_dir(), "created-tmux.conf")


def systemd_user_dir() -> str:
    return os.path.join(home(), ".config", "systemd", "user")
