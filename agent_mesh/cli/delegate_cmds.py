"""`agent-mesh ask`, `queue` and `spawn`: parse, call mesh.delegate, render."""

from __future__ import annotations

import json
import sys
import time

import click

from agent_mesh.cli.group import CONTEXT, mesh, run_guarded, table
from agent_mesh.errors import printable, printable_json


def _lines(text: str) -> str:
    """A reply keeps its line breaks; escape sequences from the peer never reach the terminal."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from agent_mesh.errors import UsageError
    from agent_mesh.mesh.delegate import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


@mesh.command("ask", context_settings=CONTEXT)
@click.argument("agent")
@click.argument("question", nargs=-1, required=True)
@click.option("--timeout", callback=_duration, default="10m", show_default=True,
              help="How long to wait for the reply (90s, 10m, 2h).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole exchange as JSON.")
def ask_cmd(agent: str, question: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Deliver QUESTION to AGENT with a reply instruction in its tag, wait for the
    reply (`notify-pane <you> --re ID "…"`) and print it. Exit 0 with the reply,
    6 when none came within the timeout; other codes as notify-pane's."""

    def body() -> None:
        from agent_mesh.mesh import delegate

        exchange = delegate.ask(agent, " ".join(question), timeout=timeout)
        if as_json:
            click.echo(printable_json(json.dumps(exchange, ensure_ascii=False)))
        else:
            click.echo(_lines(str(exchange["reply"])))

    run_guarded("agent-mesh ask", body)


@mesh.command("queue", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the pending messages as JSON.")
@click.option("--cancel", "cancel_id", metavar="ID", help="Cancel the queued message ID.")
def queue_cmd(as_json: bool, cancel_id: str | None) -> None:
    """List messages waiting for a busy agent, on every host of the mesh (each is
    delivered by its host as soon as the agent is ready), or cancel one."""

    def body() -> None:
        from agent_mesh.mesh import delegate

        if cancel_id:
            host = delegate.queue_cancel(cancel_id)
            click.echo(f"cancelled {printable(cancel_id)} on {printable(host)}")
            return
        rows, failed = delegate.queue_list()
        if as_json:
            click.echo(json.dumps({"pending": rows,
                                   "unreachable": {h: str(e) for h, e in failed.items()}}))
        else:
            if not rows:
                click.echo("no queued messages")
            else:
                click.echo(table(_queue_rows(rows, time.time())))
            for host, exc in failed.items():
                click.echo(f"{printable(host)}: unreachable: {printable(str(exc))}")
        if failed:
            sys.exit(4)

    run_guarded("agent-mesh queue", body)


def _queue_rows(rows: list[dict[str, object]], now: float) -> list[list[str]]:
    """A header, then one row per queued message; one past its time reads `expired`
    (its host drops it at its next look)."""
    from agent_mesh.clock import duration

    out = [["ID", "TO", "FROM", "EXPIRES", "WHY QUEUED", "MESSAGE"]]
    for row in rows:
        left = float(str(row.get("expires_at") or 0)) - now
        why = str(row.get("reason", ""))
        out.append([str(row.get("id", "")), str(row.get("address", "")),
                    str(row.get("from", "")),
                    f"in {duration(left)}" if left >= 1 else "expired",
                    why if len(why) <= 40 else why[:40] + "…", str(row.get("preview", ""))])
    return out


@mesh.command("spawn", context_settings=CONTEXT)
@click.argument("host")
@click.argument("command", nargs=-1)
@click.option("--session", default="agents", show_default=True, help="tmux session to use.")
@click.option("--name", default="", help="Window name (default: the command's name).")
@click.option("--role", default="", help="The window's @agent-role.")
@click.option("--accept", default="", metavar="PROGRAM",
              help="Set @agent-accept (for a program not in the known-agents list).")
@click.option("--task", default="", help="Deliver this message once the agent is ready.")
@click.option("--ask", "ask_reply", is_flag=True, help="Wait for the reply to --task.")
@click.option("--wait", callback=_duration, default="60s", show_default=True,
              help="How long to wait for the new agent to be ready.")
@click.option("--timeout", callback=_duration, default="10m", show_default=True,
              help="With --ask: how long to wait for the reply.")
def spawn_cmd(host: str, command: tuple[str, ...], session: str, name: str, role: str,
              accept: str, task: str, ask_reply: bool, wait: float, timeout: float) -> None:
    """Start COMMAND (after `--`; default $AGENT_MESH_AGENT_COMMAND or `claude`) in a
    new window of HOST's tmux, wait until its input is ready, register it with
    ROLE, deliver TASK (with --ask, wait for the reply) and print the new address."""

    def body() -> None:
        from agent_mesh.errors import NotReady, UsageError
        from agent_mesh.mesh import delegate
        from agent_mesh.mesh.send import send
        from agent_mesh.mesh.sync import sync

        if ask_reply and not task:
            raise UsageError("--ask needs --task")
        spawned = delegate.spawn(host, list(command), session, name, role, accept, wait)
        address = str(spawned["address"])
        if not spawned.get("ready"):
            waited = min(wait, delegate.MAX_SPAWN_WAIT)
            raise NotReady(f"{address} started but is not ready after {waited:g} s: "
                           f"{spawned.get('detail')}")
        if host != delegate.naming.self_alias():
            sync()  # the new window's address is known here before the task goes out
        click.echo(address)
        if task and ask_reply:
            exchange = delegate.ask(address, task, timeout=timeout)
            click.echo(_lines(str(exchange["reply"])))
        elif task:
            result = send(address, task, queue=True)
            click.echo(f"task {result.outcome}: {result.msg_id}", err=True)

    run_guarded("agent-mesh spawn", body)
