"""The `agent-mesh` click group and the guard every command body runs in.

Its own module so the command modules (main, observe_cmds, delegate_cmds) add
commands to the group without importing each other: cli/main.py imports them all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from agent_mesh import __version__, errors
from agent_mesh.cli.guard import guarded

CONTEXT = {"help_option_names": ["-h", "--help"]}


def run_guarded(prog: str, func: Callable[[], Any]) -> None:
    """Run a click command's body in the one guard (cli/guard.py); a failure exits
    with its code, what the body returns is ignored."""
    def body() -> None:
        func()

    code = guarded(prog, body, say=lambda line: click.echo(line, err=True))
    if code:
        sys.exit(code)


def table(rows: list[list[str]]) -> str:
    """Rows of cells (the first the header) in columns two spaces apart; cells are
    made printable, the last column is not padded."""
    cells = [[errors.printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False))
                     + "  " + row[-1] for row in cells)


class _Group(click.Group):
    """Lists each command with its whole first sentence, never cut with "..."."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="agent-mesh")
def mesh() -> None:
    """agent-mesh: message CLI agents in tmux panes, on this host and mesh peers.

    Internal subcommands, not listed: `rpc` (what a peer runs over SSH) and
    `push` (what the tmux hooks start to push this host's slice to the peers)."""
