"""Click commands: parse, call the core, render. Only this module (with
notify_cli and hook) prints or exits; the core raises MeshError subclasses,
mapped here to the bash tool's exit codes with a one-line message."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click

from agent_mesh import __version__, registry
from agent_mesh.errors import MeshError, UsageError
from agent_mesh.tmux import Tmux


def _run_guarded(prog: str, func: Callable[[], Any]) -> None:
    """Run a click command; MeshError becomes `prog: message` and its exit code."""
    try:
        func()
    except MeshError as exc:
        click.echo(f"{prog}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)


def _age(updated: str) -> str:
    try:
        then = time.mktime(time.strptime(updated, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        return "?"
    seconds = max(0, int(time.time() - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- agent-mesh ---------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent-mesh")
def mesh() -> None:
    """agent-mesh: message CLI agents in tmux panes, on this host and mesh peers."""


@mesh.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the agents as JSON.")
def list_cmd(as_json: bool) -> None:
    """Show every registered agent: address, host, role, command, age."""

    def body() -> None:
        agents = registry.load_agents()
        if as_json:
            click.echo(json.dumps([asdict(a) for a in agents.values()], indent=2))
            return
        rows = [("ADDRESS", "HOST", "ROLE", "SCOPE", "COMMAND", "AGE")]
        for agent in agents.values():
            age = _age(agent.last_seen or agent.updated)
            if agent.stale:
                age += " (stale)"
            rows.append(
                (agent.address, agent.host, agent.role[:40], agent.scope[:40], agent.command, age)
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            click.echo("  ".join(cells).rstrip())

    _run_guarded("agent-mesh list", body)


@mesh.command("discover")
def discover_cmd() -> None:
    """Rebuild this host's slice from live tmux (same as agent-discover)."""
    _run_guarded("agent-discover", _discover)


def _discover() -> None:
    agents = registry.rescan(Tmux())
    sessions = {a.session for a in agents.values()}
    click.echo(
        f"agent-discover: {len(sessions)} session(s), {len(agents)} window(s) "
        f"on {registry.self_alias()}"
    )


def mesh_main() -> None:
    mesh(prog_name="agent-mesh")


# --- agent-discover -----------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def discover() -> None:
    """Rebuild this host's slice (~/.agents/local.toml) from live tmux, then
    re-assemble the registry. Authoritative: windows whose close hook was missed
    disappear."""
    _run_guarded("agent-discover", _discover)


def discover_main() -> None:
    discover(prog_name="agent-discover")


# --- agent-self-identify --------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--role", default=None, help="What this agent is (default: $AGENT_ROLE or inferred).")
@click.option("--scope", default=None, help="What it works on (default: $AGENT_SCOPE or inferred).")
@click.option(
    "-t", "--target", default=None, help="tmux window to label (default: the current pane's)."
)
def self_identify(role: str | None, scope: str | None, target: str | None) -> None:
    """Set @agent-role / @agent-scope on a tmux window and re-register it."""

    def body() -> None:
        tmux = Tmux()
        where = target or os.environ.get("TMUX_PANE", "")
        if not where:
            raise UsageError("not inside tmux: pass -t <session:window>")
        fields = ("session_id", "session_name", "window_name", "window_index", "pane_id",
                  "pane_current_command", "pane_current_path")
        from agent_mesh.tmux import fields_format, parse_records

        out = tmux.run("display-message", "-p", "-t", where, fields_format(fields), check=False)
        records = parse_records(out.stdout, fields) if out.returncode == 0 else []
        if not records or not records[0]["pane_id"]:
            raise UsageError(f"no tmux window {where!r}")
        info = records[0]
        tmux_target = f"{info['session_id']}:{info['window_index']}"
        label = f"{info['session_name']}:{info['window_index']}"
        new_role = role or os.environ.get("AGENT_ROLE") or registry.infer_role(
            info["pane_current_command"], info["session_name"], info["window_name"]
        )
        new_scope = scope or os.environ.get("AGENT_SCOPE") or registry.infer_scope(
            info["pane_current_path"], label
        )
        tmux.run("set-option", "-w", "-t", tmux_target, "--", "@agent-role", new_role)
        tmux.run("set-option", "-w", "-t", tmux_target, "--", "@agent-scope", new_scope)
        registry.register_session(tmux, info["session_id"])
        click.echo(f'agent-self-identify: {label} role="{new_role}" scope="{new_scope}"')

    _run_guarded("agent-self-identify", body)


def self_identify_main() -> None:
    self_identify(prog_name="agent-self-identify")

