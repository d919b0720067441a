"""The `agent-mesh` console script.

Machine-facing subcommands skip click (~30 ms of imports): `rpc` is on every
remote message's path and `push` is started by every tmux hook when there are
peers; so do plain `sync` and `status`, whose time is mostly the peers'.
Everything else is the click group in cli/main.py.
"""

from __future__ import annotations

import sys

RPC_HELP = """\
usage: agent-mesh rpc [--peer HOST] < REQUEST.json

What a peer's notify-pane and sync run on this host over SSH (internal): reads
one JSON request on stdin, runs it against this host's tmux and registry slice,
writes one JSON reply on stdout and exits 0; errors travel in the reply with the
same exit codes as a local run. `--peer HOST`: the forced command of HOST's mesh
key (agent-mesh trust add): only requests are answered, HOST is the verified caller.
"""

PUSH_HELP = """\
usage: agent-mesh push

What the tmux hooks start in the background (internal): exchanges this host's
slice with every peer in ~/.agents/peers.conf, coalescing bursts of hooks, and
prints one line per peer. Run `agent-mesh sync` to do the same by hand.
"""

QUEUE_RUN_HELP = """\
usage: agent-mesh queue-run ADDRESS

What a queued message starts on its recipient's host (internal): delivers the
messages queued for ADDRESS in order, each only into the pane it was queued for,
as soon as that pane is ready; holds those whose pane is gone, drops expired ones,
and exits when nothing is left to deliver. `agent-mesh queue` lists and cancels them.
"""


# The launcher (ops/data/agent-mesh) starts with the collector off: a status, a sync or
# an agent's hook event lives ~30 ms and makes next to no cycles, while the collector's
# passes over the modules it imports cost ~0.7 ms. Everything else may live long (mcp,
# queue-run, --watch): on.
SHORT_LIVED = (["rpc"], ["push"], ["sync"], ["status"], ["agent-event"])


def main() -> None:
    import gc

    command = sys.argv[1:2]
    if command not in SHORT_LIVED:
        gc.enable()
    wants_help = any(arg in ("-h", "--help") for arg in sys.argv[2:])
    if command == ["rpc"]:
        if wants_help:
            print(RPC_HELP, end="")
            sys.exit(0)
        from agent_mesh.mesh import rpc

        rpc.launch(sys.argv[2:])  # `--peer HOST`: a mesh key's forced command
    if command == ["push"]:
        if wants_help:
            print(PUSH_HELP, end="")
            sys.exit(0)
        from agent_mesh.cli.guard import guarded
        from agent_mesh.errors import printable
        from agent_mesh.mesh import sync

        def push() -> None:
            for report in sync.push_pending():
                print(printable(report.line()))

        sys.exit(guarded("agent-mesh push", push))
    if command == ["queue-run"]:
        if wants_help:
            print(QUEUE_RUN_HELP, end="")
            sys.exit(0)
        if len(sys.argv) != 3:
            print("agent-mesh queue-run: usage: agent-mesh queue-run ADDRESS (see --help)",
                  file=sys.stderr)
            sys.exit(1)
        _queue_run(sys.argv[2])
        sys.exit(0)
    if command == ["agent-event"]:  # what the agent CLIs' hooks run: no click, exit 0 or 2
        from agent_mesh.cli.agent_event import main as agent_event

        sys.exit(agent_event(sys.argv[2:]))
    if command == ["mcp"]:  # an agent CLI starts it: click's import is not needed
        from agent_mesh.cli.mcp_server import main as mcp_main

        sys.exit(mcp_main(sys.argv[2:]))
    if command == ["sync"] and len(sys.argv) == 2:  # plain sync: cli/main.py sync_cmd
        from agent_mesh.cli.observe_cmds import run_sync

        sys.exit(run_sync())
    if command == ["status"]:  # plain status skips click; see cli/observe_cmds.py
        from agent_mesh.cli.observe_cmds import quick_status

        quick = quick_status(sys.argv[2:])
        if quick is not None:
            from agent_mesh.cli.guard import exit_now

            exit_now(quick)
    if command == ["bulletin"]:  # plain bulletin skips click too; see cli/coord_render.py
        from agent_mesh.cli.coord_render import quick_bulletin

        quick = quick_bulletin(sys.argv[2:])
        if quick is not None:
            sys.exit(quick)
    from agent_mesh.cli.main import mesh_main

    gc.enable()
    mesh_main()


def _queue_run(address: str) -> None:
    """The waiter a queued message starts on its recipient's host (detached, no tty)."""
    from agent_mesh.delivery import queue

    queue.run_waiter(address)
