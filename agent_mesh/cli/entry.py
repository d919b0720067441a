"""The `agent-mesh` console script.

Machine-facing subcommands skip click (~30 ms of imports): `rpc` is on every
remote message's path and `push` is started by every tmux hook when there are
peers. Everything else is the click group in cli.py.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    command = sys.argv[1:2]
    if command == ["rpc"]:
        from agent_mesh.mesh import rpc

        rpc.main()
        os._exit(0)  # the reply is flushed; skip interpreter teardown on the hot path
    if command == ["push"]:
        from agent_mesh.mesh import sync

        for report in sync.push_pending():
            print(report.line())
        sys.exit(0)
    if command == ["status"]:  # plain status skips click; see cli/observe_cmds.py
        from agent_mesh.cli.observe_cmds import quick_status

        code = quick_status(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    from agent_mesh.cli.main import mesh_main

    mesh_main()
