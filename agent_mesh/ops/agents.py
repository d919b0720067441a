"""`agent-mesh setup --agents`: wire agent-mesh into each agent CLI's own user config.

One `AgentCLI` per agent CLI agent-mesh integrates with (Claude Code, Codex), each with
a list of `Step`s. A step installs, removes and checks one thing in that CLI's config;
today there is one, `hooks` (the lifecycle hooks that run `agent-mesh agent-event`,
cli/agent_event.py). Another feature adds its own step to every CLI with
`add_step(factory)` (the MCP server registration does), and `setup --agents` and
`doctor` run it with the rest: nothing here needs to change.

Every step is idempotent and touches only its own entries: agent-mesh's hook handlers
are found by their command (the launcher path, HOOK_MARK) and only those are added,
updated or removed; the user's own entries, their order, and (in TOML, through tomlkit)
their comments stay as they were. JSON keeps its key order. A config that does not
parse is reported and left alone.

Where things go:
- Claude Code: `hooks` in ~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json).
- Codex (ops/codex.py): ~/.codex/hooks.json ($CODEX_HOME), and in ~/.codex/config.toml
  the trust Codex requires for hooks it does not manage (`[hooks.state."<hooks.json>:
  <event>:<group>:<handler>"] trusted_hash`, the hash Codex computes),
  `[features] hooks = true` where no `hooks` flag is set, and `[features]
  daemon_auto_start = false` where it is not set (DAEMON_FLAG: why).
Agent CLIs without such hooks (aider, and any other) stay keystroke-only.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.clock import duration
from agent_mesh.fsutil import locked
from agent_mesh.ops.agentcli import AgentCLI, ClaudeCode, Step, StepFactory, add_step, launcher
from agent_mesh.ops.codex import Codex
from agent_mesh.ops.setup_base import Report, tilde

__all__ = ["AgentCLI", "Step", "StepFactory", "add_step", "clis", "describe", "install",
           "setup_lock", "uninstall"]

SETUP_LOCK_WAIT = 120.0  # seconds a second setup --agents waits for the first


def setup_lock() -> locked:
    """One `setup --agents` (or its --uninstall) at a time on this host: two would each
    read a config, install the launcher and write the trust for their own view of it.
    TimeoutError (an OSError: one line) when another run holds it past SETUP_LOCK_WAIT."""
    return locked(os.path.join(paths.locks_dir(), "setup-agents.lock"), SETUP_LOCK_WAIT)


def clis() -> list[AgentCLI]:
    """Every agent CLI agent-mesh integrates with."""
    return [ClaudeCode(), Codex()]


# --- what setup --agents and doctor run ---------------------------------------------------


def install(report: Report) -> None:
    """Every step for every agent CLI on this host; the others are named and skipped."""
    for cli in clis():
        if not cli.present():
            report.say(f"{cli.label}: not installed here ({cli.name} not on PATH, no "
                       f"{tilde(cli.config_dir())}); skipped")
            continue
        for step in cli.steps():
            step.install(report)


def uninstall(report: Report) -> None:
    """Remove every step's entries from every agent CLI's config (present or not)."""
    for cli in clis():
        for step in cli.steps():
            step.uninstall(report)
    target = launcher()
    if os.path.exists(target):
        os.unlink(target)
        report.say(f"removed {tilde(target)}")


def describe(now: float | None = None) -> list[tuple[str, bool, str]]:
    """(check name, ok, detail) per agent CLI on this host: steps installed and
    current, its version, when a hook last fired."""
    now = time.time() if now is None else now
    rows = []
    for cli in clis():
        if not cli.present():
            continue
        version = cli.version()
        fired = cli.last_fired()
        when = "never" if fired is None else f"{duration(now - fired)} ago"
        for step in cli.steps():
            ok, line = step.check()
            rows.append((f"agent:{cli.name}:{step.name}", ok,
                         f"{cli.label} {version}: {line}; a hook last fired {when}"
                         if step.name == "hooks" else f"{cli.label}: {line}"))
    return rows


