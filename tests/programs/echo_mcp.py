"""A minimal MCP stdio server (hand-rolled JSON-RPC, no SDK): one tool, `echo(text)`.

Why: tests/test_agent_clis.py proves a real Claude Code and Codex load a user-level MCP
server from their config and call its tool when the (fake) model asks. Each call is
appended to the log file named by argv[1] as one JSON line.
"""

from __future__ import annotations

import json
import sys

LOG = sys.argv[1]
TOOL = {"name": "echo", "description": "Echo text back, prefixed with 'echo:'.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"]}}


def reply(ident: object, result: dict[str, object]) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    method, ident = msg.get("method"), msg.get("id")
    if ident is None:  # a notification
        continue
    if method == "initialize":
        version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
        reply(ident, {"protocolVersion": version, "capabilities": {"tools": {}},
                      "serverInfo": {"name": "echo-mcp", "version": "1"}})
    elif method == "tools/list":
        reply(ident, {"tools": [TOOL]})
    elif method == "tools/call":
        args = msg.get("params", {}).get("arguments") or {}
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(msg.get("params")) + "\n")
        reply(ident, {"content": [{"type": "text", "text": f"echo:{args.get('text', '')}"}],
                      "isError": False})
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": ident, "error": {
            "code": -32601, "message": f"no method {method}"}}) + "\n")
        sys.stdout.flush()
