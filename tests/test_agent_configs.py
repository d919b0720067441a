"""How agent-mesh rewrites the agent CLIs' own config files (review items 1, 2, 3, 6):
one writer in fsutil (new files 0600, an existing file's mode and symlink kept), edits
that never clobber the agent's own concurrent write, uninstall that leaves no empty
container of ours behind, and concurrent `setup --agents` runs serialised."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from conftest import run_cli


def setup_agents(*args: str) -> subprocess.CompletedProcess[bytes]:
    out = run_cli("agent-mesh", "setup", "--agents", *args)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- item 2: one writer, one rule for modes ------------------------------------------------


def test_new_agent_configs_are_private_and_existing_ones_keep_mode_and_symlink(
        isolated_env: Path) -> None:
    """Before: the hooks step made settings.json and config.toml 0644 while the MCP step
    made them 0600, and the MCP step let the umask strip an existing file's bits."""
    (isolated_env / ".claude").mkdir()
    (isolated_env / ".codex").mkdir()
    old = os.umask(0o022)
    try:
        setup_agents()
    finally:
        os.umask(old)
    for made in (isolated_env / ".claude" / "settings.json", isolated_env / ".claude.json",
                 isolated_env / ".codex" / "config.toml", isolated_env / ".codex" / "hooks.json"):
        assert mode(made) == 0o600, (made, oct(mode(made)))
    setup_agents("--uninstall")
    # a user's file with its own mode, behind a symlink into a dotfiles repo
    dotfiles = isolated_env / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "claude.json"
    real.write_text('{"theme": "dark"}\n')
    real.chmod(0o660)
    (isolated_env / ".claude.json").unlink(missing_ok=True)
    (isolated_env / ".claude.json").symlink_to(real)
    old = os.umask(0o022)
    try:
        setup_agents()
    finally:
        os.umask(old)
    assert (isolated_env / ".claude.json").is_symlink()
    assert "agent-mesh" in json.loads(real.read_text())["mcpServers"]
    assert mode(real) == 0o660, oct(mode(real))
