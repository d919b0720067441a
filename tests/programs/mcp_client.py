"""An MCP client in a tmux pane: starts `agent-mesh mcp` as its child (as an agent CLI
does), makes the calls given as JSON, writes the results as JSON.

    mcp_client.py AGENT_MESH OUT.json GO_FILE '[["whoami", {}], ...]' [--scrub]

Waits for GO_FILE first (the test registers the window meanwhile). --scrub starts the
server with HOME and PATH (and the test's receivers list) only, as Codex does: no
TMUX, no TMUX_PANE.
"""

import json
import os
import sys
import time

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client


async def main() -> None:
    agent_mesh, out, go, calls = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    scrub = "--scrub" in sys.argv[5:]
    while not os.path.exists(go):
        time.sleep(0.05)
    if scrub:
        keep = ("HOME", "PATH", "LANG", "TMUX_TMPDIR", "AGENT_MESH_RECEIVERS")
        env = {k: os.environ[k] for k in keep if k in os.environ}
    else:
        env = dict(os.environ)
    results = []
    params = StdioServerParameters(command=agent_mesh, args=["mcp"], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for name, args in calls:
            res = await session.call_tool(name, args)
            results.append({"tool": name, "error": bool(res.is_error),
                            "text": "".join(getattr(c, "text", "") for c in res.content)})
    with open(out + ".tmp", "w") as fh:
        json.dump(results, fh)
    os.rename(out + ".tmp", out)


anyio.run(main)
