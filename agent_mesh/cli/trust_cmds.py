"""`agent-mesh trust`: mesh keys that can do nothing but agent-mesh (mesh/trust.py)."""

from __future__ import annotations

import sys

import click

from agent_mesh.cli.group import CONTEXT, mesh, run_guarded
from agent_mesh.errors import UsageError, printable


@mesh.group("trust", cls=type(mesh), context_settings=CONTEXT)
def trust_group() -> None:
    """Mesh keys: peers reach this host only through agent-mesh, and are verified.

    `init` makes this host's key, `add ALIAS` installs it on a peer (over your own
    SSH access, once), `remove ALIAS` takes it out again."""


@trust_group.command("init")
def init_cmd() -> None:
    """Create this host's mesh key (~/.agents/mesh_ed25519, ed25519, 0600)."""

    def body() -> None:
        from agent_mesh.mesh import trust

        path, made = trust.init()
        click.echo(f"agent-mesh trust: {'created' if made else 'already there'}: {path}")
        click.echo("next: agent-mesh trust add ALIAS (for each peer)")

    run_guarded("agent-mesh trust", body)


@trust_group.command("add")
@click.argument("alias")
@click.option("--print", "print_only", is_flag=True,
              help="Only print the authorized_keys line, to add on the peer by hand.")
def add_cmd(alias: str, print_only: bool) -> None:
    """Install this host's mesh key on peer ALIAS, restricted to agent-mesh."""

    def body() -> None:
        from agent_mesh.mesh import trust
        from agent_mesh.registry.naming import self_alias

        me = self_alias()
        if print_only:
            line = trust.print_line(me)
            trust.mark_trusted(alias)
            click.echo(line)
            click.echo(f"# add the line above to ~/.ssh/authorized_keys on {alias}; this host "
                       f"now reaches {alias} with its mesh key", err=True)
            return
        click.echo(f"agent-mesh trust: installing this host's mesh key on {alias} over your "
                   f"own ssh access (ssh {alias} …)", err=True)
        line = trust.add(alias, me)
        click.echo(f"agent-mesh trust: {alias} now has: {printable(line)}")

    run_guarded("agent-mesh trust", body)


@trust_group.command("remove")
@click.argument("alias")
def remove_cmd(alias: str) -> None:
    """Remove this host's mesh key line from peer ALIAS (exactly that line)."""

    def body() -> None:
        from agent_mesh.mesh import trust
        from agent_mesh.registry.naming import self_alias

        removed = trust.remove(alias, self_alias())
        what = "removed our line from" if removed else "no line of ours on"
        click.echo(f"agent-mesh trust: {what} {alias}; it is reached with your own ssh "
                   "setup again")

    run_guarded("agent-mesh trust", body)


@trust_group.command("authorize", hidden=True)
def authorize_cmd() -> None:
    """(What `trust add` runs on the peer: stdin is the caller's alias, then its key.)"""

    def body() -> None:
        from agent_mesh.mesh import trust

        words = sys.stdin.read(4096).split("\n")
        if len(words) < 2:
            raise UsageError("expected the caller's alias and its public key on stdin")
        line, _changed = trust.authorize(words[0].strip(), words[1].strip())
        click.echo(line)

    run_guarded("agent-mesh trust", body)


@trust_group.command("revoke", hidden=True)
def revoke_cmd() -> None:
    """(What `trust remove` runs on the peer: stdin is the caller's alias.)"""

    def body() -> None:
        from agent_mesh.mesh import trust

        caller = sys.stdin.read(256).strip()
        click.echo("removed" if trust.revoke(caller) else "absent")

    run_guarded("agent-mesh trust", body)
