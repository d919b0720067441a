"""Click commands: parse, call the core, render. Only the cli package (this module,
notify and hook) prints or exits; the core raises MeshError subclasses,
mapped here to the bash tool's exit codes with a one-line message."""

from __future__ import annotations

import json
import os
import sys

import click

from agent_mesh.cli import coord_cmds, delegate_cmds, observe_cmds, trust_cmds  # noqa: F401
from agent_mesh.cli.group import CONTEXT, mesh, run_guarded
from agent_mesh.cli.notify import listed_agents
from agent_mesh.clock import age
from agent_mesh.errors import UsageError, printable
from agent_mesh.registry import local
from agent_mesh.registry.naming import self_alias
from agent_mesh.registry.view import agents_of
from agent_mesh.tmux import Tmux, fields_format, parse_records

observe_cmds.register(mesh)  # status, peek, inbox, log (delegate_cmds: ask, queue, spawn)
coord_cmds.register(mesh)  # post, bulletin, decide, decisions, lock, unlock, locks, task(s)


def _invoke(command: click.Command, prog: str) -> None:
    """Run a click command; a usage error is one line and exit 1 (errors' table), not
    click's four lines and exit 2, which the table gives to "unknown agent"."""
    try:
        code = command.main(prog_name=prog, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `agent-mesh`: its help
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog
        message = " ".join(exc.format_message().split())
        click.echo(f"{where}: {printable(message)} (see {where} --help)", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"{prog}: {printable(' '.join(exc.format_message().split()))}", err=True)
        sys.exit(1)
    except click.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)



# --- agent-mesh ---------------------------------------------------------------


@mesh.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the agents as a JSON array.")
def list_cmd(as_json: bool) -> None:
    """Show every registered agent: address, host, role, scope, command, age."""

    def body() -> None:
        agents, empty = listed_agents()
        if as_json:
            click.echo(json.dumps([a.as_dict() for a in agents.values()], indent=2))
            return
        if not agents:
            click.echo(f"agent-mesh list: {empty}")
            return
        rows: list[list[str]] = [["ADDRESS", "HOST", "ROLE", "SCOPE", "COMMAND", "AGE"]]
        for agent in agents.values():
            when = age(agent.last_seen or agent.updated) or "?"
            if agent.stale:
                when += " (stale)"
            fields = (agent.address, agent.host, agent.role, agent.scope, agent.command)
            rows.append([printable(f)[:40] for f in fields] + [when])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            padded = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            click.echo("  ".join(padded).rstrip())

    run_guarded("agent-mesh list", body)


@mesh.command("discover")
def discover_cmd() -> None:
    """Rebuild this host's slice from live tmux (same as agent-discover)."""
    run_guarded("agent-discover", _discover)


def _discover() -> None:
    from agent_mesh.mesh import sync

    tables = local.rescan(Tmux(), every_server=True)
    sessions = {(t.get("socket"), t.get("session")) for t in tables.values()}
    servers = {t.get("socket") for t in tables.values()}
    on_servers = f" on {len(servers)} tmux servers" if len(servers) > 1 else ""
    click.echo(
        f"agent-discover: {len(sessions)} session(s), {len(tables)} window(s){on_servers} "
        f"on {printable(self_alias())}"
    )
    for report in sync.sync():  # failures are reported, not fatal: the timer runs this
        click.echo(f"agent-discover: {printable(report.line())}")
    from agent_mesh.delivery import queue

    queue.expire_held()  # held messages have no waiter: the timer ends them
    from agent_mesh.coord import locks

    try:
        ended = locks.sweep()  # locks past their TTL, or whose holder's window closed
    except UsageError as exc:  # a damaged table: say so, the rest is done
        click.echo(f"agent-discover: locks not swept: {printable(str(exc))}")
    else:
        if ended:
            click.echo(f"agent-discover: released {len(ended)} lock(s)")
    for address in queue.resume():  # the timer also restarts queues left waiting
        click.echo(f"agent-discover: resumed the queue of {address}")


@mesh.command("sync")
def sync_cmd() -> None:
    """Exchange slices with every peer in peers.conf, in parallel, and rebuild
    registry.toml. One line per peer; exit 4 if any peer failed (its last good
    slice is kept, marked stale)."""
    from agent_mesh.cli.observe_cmds import run_sync  # a plain `sync` skips click (entry.py)

    sys.exit(run_sync())


@mesh.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--no-peers", is_flag=True, help="Skip contacting the peers (local checks only).")
def doctor_cmd(as_json: bool, no_peers: bool) -> None:
    """Check tmux, hooks, PATH, config, the timer, the registry and every peer.
    One line per check with the fix for each failure; exit 1 if anything is broken."""
    from agent_mesh.ops import doctor

    def body() -> None:
        checks = doctor.run_checks(include_peers=not no_peers)
        if as_json:
            click.echo(doctor.to_json(checks))
        else:
            click.echo(doctor.render(checks))
            click.echo(doctor.summary(checks))
        sys.exit(doctor.exit_code(checks))

    run_guarded("agent-mesh doctor", body)


@mesh.command("setup")
@click.option("--uninstall", is_flag=True,
              help="Remove what setup added; keeps ~/.agents and your own config lines.")
@click.option("--cron", is_flag=True, help="Use a crontab line even where systemd runs.")
@click.option("--no-discover", is_flag=True, help="Skip the first agent-discover.")
@click.option("--agents", is_flag=True,
              help="Only the agent CLIs' own config (Claude Code, Codex): their hooks.")
def setup_cmd(uninstall: bool, cron: bool, no_discover: bool, agents: bool) -> None:
    """Wire this installation into tmux, the timer and ~/.local/bin (safe to re-run)."""
    from agent_mesh.cli import setup_cmd as command

    if agents:
        sys.exit(command.run_agents(uninstall=uninstall))
    sys.exit(command.run(uninstall=uninstall, cron=cron, discover=not no_discover))


@mesh.command("mcp", context_settings={"ignore_unknown_options": True, **CONTEXT},
              add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def mcp_cmd(args: tuple[str, ...]) -> None:
    """Serve the mesh as MCP tools over stdio, for an agent CLI that starts it in its
    pane; `agent-mesh mcp register` adds it to every installed agent CLI (see README)."""
    from agent_mesh.cli.mcp_server import main

    sys.exit(main(list(args)))  # cli/entry.py runs `agent-mesh mcp …` without click


@mesh.command("disconnect")
@click.argument("aliases", nargs=-1)
def disconnect_cmd(aliases: tuple[str, ...]) -> None:
    """Close the SSH control masters agent-mesh keeps open to peers (ALIASES, else
    all of them). The next message to a peer starts a new one."""

    def body() -> None:
        from agent_mesh.mesh import openssh

        closed = openssh.disconnect(list(aliases) or None)
        if not closed:
            click.echo("agent-mesh disconnect: no master was open")
        for name in closed:
            click.echo(f"agent-mesh disconnect: closed the master to {printable(name)}")

    run_guarded("agent-mesh disconnect", body)


@mesh.command("demo")
@click.option("--keep", is_flag=True, help="Leave the demo's tmux server running to attach.")
def demo_cmd(keep: bool) -> None:
    """Two agents on a private tmux server: register them, deliver a message and a
    file between them, show what each pane shows. Touches none of your own files."""
    from agent_mesh.ops import demo

    sys.exit(demo.run_demo(keep=keep))


def mesh_main() -> None:
    _invoke(mesh, "agent-mesh")


# --- agent-discover -----------------------------------------------------------


@click.command(context_settings=CONTEXT)
def discover() -> None:
    """Rebuild this host's slice (~/.agents/local.toml) from live tmux, then
    re-assemble the registry. Authoritative: windows whose close hook was missed
    disappear."""
    run_guarded("agent-discover", _discover)


def discover_main() -> None:
    _invoke(discover, "agent-discover")


# --- agent-self-identify --------------------------------------------------------

_WINDOW_FIELDS = ("session_id", "session_name", "window_id", "window_index", "window_name",
                  "pane_id", "pane_index")


@click.command(context_settings=CONTEXT)
@click.option("--role", default=None,
              help='What this agent is, e.g. "Claude Code reviewer" (default: $AGENT_ROLE). '
                   "An empty value removes the label.")
@click.option("--scope", default=None,
              help="What it works on (default: $AGENT_SCOPE). An empty value removes the label.")
@click.option("-t", "--target", default=None,
              help="tmux window or pane to label (default: this pane, from $TMUX_PANE).")
def self_identify(role: str | None, scope: str | None, target: str | None) -> None:
    """Label a tmux window with @agent-role / @agent-scope and re-register its
    session, so `notify-pane --list` shows what the agent is. Labels not given
    are left as they are; unlabelled windows get a role inferred from their
    command (Claude Code, Codex, shell, ...)."""

    def body() -> None:
        tmux = Tmux()
        where = target or os.environ.get("TMUX_PANE", "")
        if not where:
            raise UsageError("not inside tmux: pass -t <session:window>")
        out = tmux.run(
            "display-message", "-p", "-t", where, fields_format(_WINDOW_FIELDS), check=False
        )
        records = parse_records(out.stdout, _WINDOW_FIELDS) if out.returncode == 0 else []
        if not records or not records[0]["window_id"].startswith("@") or (
            target and not _names_it(target, records[0])
        ):
            raise UsageError(f"no tmux window {printable(where)!r}")
        info = records[0]
        labels = {
            "@agent-role": role if role is not None else os.environ.get("AGENT_ROLE"),
            "@agent-scope": scope if scope is not None else os.environ.get("AGENT_SCOPE"),
        }
        for option, value in labels.items():
            if value is None:
                continue
            if value:
                tmux.run("set-option", "-w", "-t", info["window_id"], "--", option, value)
            else:
                tmux.run("set-option", "-w", "-u", "-t", info["window_id"], option)
        fresh = agents_of(local.register_session(tmux, info["session_id"])[0])
        mine = [a for a in fresh.values() if a.window_id == info["window_id"]]
        label = f"{info['session_name']}:{info['window_index']}"
        if not mine:
            click.echo(
                f"agent-self-identify: labelled {printable(label)}; its session is not "
                "registered (scratch sessions never are)"
            )
            return
        agent = mine[0]
        click.echo(
            f"agent-self-identify: {agent.address} ({printable(label)}) "
            f'role="{printable(agent.role)}" scope="{printable(agent.scope)}"'
        )

    run_guarded("agent-self-identify", body)


def _names_it(target: str, found: dict[str, str]) -> bool:
    """Does the window tmux found really match the target's window part? tmux takes a
    missing index (`dev:99`) or pane (`dev:0.9`) as the current one instead of failing."""
    _, colon, rest = target.rpartition(":")
    if not colon:
        return True  # a session, `%pane`, `@window` or `{special}`: tmux checks those itself
    window, dot, pane = rest.partition(".")
    if window.isdigit() and window != found["window_index"]:
        return False
    return not (dot and pane.isdigit() and pane != found["pane_index"])


def self_identify_main() -> None:
    _invoke(self_identify, "agent-self-identify")
