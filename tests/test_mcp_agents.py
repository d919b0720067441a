"""Real Claude Code and Codex calling `agent-mesh mcp`, driven by a fake model server that
asks for the tool calls (tests/agent_clis.py, tests/fake_model.py).

The server is registered the way a user registers it (`agent-mesh mcp register`), each
CLI runs in a pane of the test's private tmux server and starts the server itself: the
sender must come out as that pane's address. Skips, saying why, where the CLIs are not
installed (scripts/install-agent-clis).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agent_clis import AgentCli, AgentClis
from conftest import Spawner, retry_until, run_cli
from fake_model import FakeModel, Text, ToolCall

# Everything a shell or a TUI could misread, and two lines: it must land whole.
MESSAGE = "hello from the model: 'quoted' \"double\" $HOME `tick` ; | & -- --queue\nline two"


def register(*clis: str) -> None:
    res = run_cli("agent-mesh", "mcp", "register", *clis)
    assert res.returncode == 0, res.stdout + res.stderr


def call(agent: AgentCli, tool: str, args: dict[str, Any]) -> ToolCall:
    """The model's call of one of our tools, as each CLI names it (Codex makes the server
    name an identifier: its namespace is `mcp__agent_mesh`)."""
    if agent.kind == "claude":
        return ToolCall(f"mcp__agent-mesh__{tool}", args)
    return ToolCall(tool, args, namespace="mcp__agent_mesh")


def tool_result(agent: AgentCli) -> str:
    """The text of the tool results in the CLI's latest model request."""
    return "\n".join(agent.model.main_requests()[-1].tool_results())


def _send_lands_whole(agent: AgentCli, spawn: Spawner) -> None:
    peer = spawn.agent_tui("peer")
    spawn.register()  # the CLI's own window gets its address too
    agent.model.script(call(agent, "send", {"to": peer.address, "text": MESSAGE}),
                       Text("Sent it."))
    agent.run_turn("harness: send the message", requests=2)
    assert "delivered message" in tool_result(agent), (tool_result(agent), agent.screen())
    (line,) = peer.wait_lines(1)
    assert line.startswith(f"[from {agent.address} @ "), line
    assert line.endswith(f"] {MESSAGE}"), line
    assert "delivered message" in tool_result(agent), tool_result(agent)


def test_claude_code_send_lands_in_another_pane_as_the_caller(
    agent_clis: AgentClis, spawn: Spawner
) -> None:
    register("claude")
    claude = agent_clis.claude("caller")
    _send_lands_whole(claude, spawn)


def test_codex_send_lands_in_another_pane_as_the_caller(
    agent_clis: AgentClis, spawn: Spawner
) -> None:
    """Codex starts MCP servers without $TMUX: the registered entry passes it through
    (and agent-mesh's settings, such as the receivers list that makes the test's
    stand-in peer a known agent)."""
    register("codex")
    codex = agent_clis.codex("caller")
    _send_lands_whole(codex, spawn)


def test_claude_asks_codex_replies_and_wait_reply_returns_the_answer(
    agent_clis: AgentClis, spawn: Spawner, isolated_env: Path, tmp_path: Path
) -> None:
    """Claude Code calls ask; the question reaches a real Codex, whose model calls reply
    with the id from the question's tag; Claude Code's wait_reply returns the answer.

    Each CLI has its own fake model. Codex is kept busy (a slow streamed answer) while
    Claude asks, so the question is queued and typed in once Codex is idle: by then the
    id is known and Codex's scripted `reply` call carries it."""
    register("claude", "codex")
    with FakeModel() as codex_model:
        codex_clis = AgentClis(spawn, codex_model, isolated_env, tmp_path)
        codex = codex_clis.codex("answerer")
        claude = agent_clis.claude("asker")
        spawn.register()
        reply_args: dict[str, Any] = {}  # filled in once the id is known
        codex_model.script(Text("busy for a while", seconds=8, chunks=40),
                           call(codex, "reply", reply_args), Text("Replied."))
        codex.submit("harness: work on something")
        retry_until(codex.busy, timeout=15)

        claude.model.script(call(claude, "ask", {"to": codex.address, "text": "What is 6*7?"}),
                            Text("Asked."))
        claude.run_turn("harness: ask codex", requests=2)
        asked = tool_result(claude)
        match = re.search(r"\b([0-9a-f]{16})\b", asked)
        assert match and "queued" in asked, asked
        ask_id = match.group(1)
        reply_args.update(id=ask_id, text="42, from codex")

        # Codex finishes, gets the question typed in, and its model calls reply
        codex_model.wait_main(3, timeout=60)
        question = codex_model.main_requests()[1].text()
        assert f"--re {ask_id}" in question and "What is 6*7?" in question
        codex.wait_idle(timeout=60)
        assert "kept for" in "\n".join(codex_model.main_requests()[2].tool_results())

        claude.model.script(call(claude, "wait_reply", {"id": ask_id, "timeout": 20}),
                            Text("Got the answer."))
        claude.run_turn("harness: collect the reply", requests=2)
        answer = tool_result(claude)
        assert f"reply from {codex.address} to {ask_id}:\n42, from codex" in answer, answer
