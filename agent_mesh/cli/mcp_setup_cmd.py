"""`agent-mesh mcp register|unregister|status [CLI…]`: render ops/mcp_clients.py.

Register `agent-mesh mcp` with every installed agent CLI (Claude Code, Codex, Gemini
CLI) in its own user-level config, remove only our entries, or show where it stands.
The same functions are what an `agent-mesh setup --agents` wires in. Stdlib only.
"""

from __future__ import annotations

import sys

from agent_mesh.errors import MeshError, printable

PROG = "agent-mesh mcp"
USAGE = """\
usage: agent-mesh mcp register [claude|codex|gemini …]
       agent-mesh mcp unregister [claude|codex|gemini …]
       agent-mesh mcp status

register: add (or refresh) the agent-mesh MCP server in the user-level config of every
installed agent CLI, or of those named; unregister: remove only that entry; status:
where it is registered. Exit 1 when a config could not be read or written.
"""


def _emit(kind: str, text: str) -> None:
    line = printable(text)
    if kind == "say":
        print(f"{PROG}: {line}", flush=True)
    else:
        tag = "warning" if kind == "warn" else "error"
        print(f"{PROG}: {tag}: {line}", file=sys.stderr, flush=True)


def run(action: str, names: list[str]) -> int:
    from agent_mesh.ops import mcp_clients
    from agent_mesh.ops.setup import Report

    report = Report(_emit)
    try:
        if action == "register":
            mcp_clients.install(report, names or None)
        elif action == "unregister":
            mcp_clients.uninstall(report, names or None)
        else:
            rows = mcp_clients.status()
            if not rows:
                print(f"{PROG}: no agent CLI found (Claude Code, Codex, Gemini CLI)")
            for client, state, detail in rows:
                print(printable(f"{client.label}: {state}: {detail}"))
            return 1 if any(state != "ok" for _, state, _ in rows) else 0
    except MeshError as exc:
        _emit("error", str(exc))
        return exc.exit_code
    return 1 if report.problems else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0 if argv else 1
    action, names = argv[0], argv[1:]
    if action == "status" and names:
        print(f"{PROG}: status takes no argument ({USAGE.splitlines()[0]})", file=sys.stderr)
        return 1
    return run(action, names)
