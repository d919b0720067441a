"""Smoke tests of the agent-CLI harness (tests/agent_clis.py, tests/fake_model.py).

They prove the real Claude Code and Codex run in tmux panes against the fake model:
a prompt typed in the pane reaches the server whole, a slow streamed answer is drawn,
the CLI returns to idle, and a tool call round-trips (the model asks for a shell
command, the CLI runs it without asking, the next request carries its output).
"""

from __future__ import annotations

import time

import pytest
from agent_clis import AgentCli, AgentClis
from conftest import SENDER, notify
from fake_model import Text, ToolCall

ANSWER = "The fake model streams this answer slowly, in twenty pieces, zebra-quartz."


def _prompt_and_answer(agent: AgentCli) -> None:
    agent.model.script(Text(ANSWER, seconds=2.0, chunks=20))
    prompt = "harness smoke: please answer with the scripted text 7f3a"
    start = time.monotonic()
    agent.submit(prompt)
    req = agent.model.wait_main(1, timeout=30)[0]
    assert prompt in req.user_texts()[-1]
    # Mid-stream the TUI says it is working and has not drawn the whole answer yet.
    assert agent.busy() or not agent.idle()
    screen = agent.wait_idle(timeout=30)
    assert time.monotonic() - start >= 2.0
    assert "zebra-quartz" in screen.replace("\n", " ")


def _tool_round_trip(agent: AgentCli, call: ToolCall) -> None:
    agent.model.script(call, Text("The command printed forty-two, done."))
    agent.run_turn("harness smoke: run the tool please")
    main = agent.model.main_requests()
    assert len(main) == 2, [r.path for r in agent.model.requests]
    assert any("tool-ran-42" in result for result in main[1].tool_results())
    assert "forty-two, done" in agent.screen()


def test_claude_prompt_streamed_answer_idle(claude: AgentCli) -> None:
    _prompt_and_answer(claude)


def test_claude_tool_call_round_trip(claude: AgentCli) -> None:
    _tool_round_trip(claude, ToolCall("Bash", {"command": "echo tool-ran-$((6*7))",
                                               "description": "Print a number"}))


def test_codex_prompt_streamed_answer_idle(codex: AgentCli) -> None:
    _prompt_and_answer(codex)


def test_codex_tool_call_round_trip(codex: AgentCli) -> None:
    _tool_round_trip(codex, ToolCall("exec_command", {"cmd": "echo tool-ran-$((6*7))"}))


@pytest.mark.parametrize("kind", ["claude", "codex"])
def test_notify_pane_reaches_the_model_whole(agent_clis: AgentClis, kind: str) -> None:
    """agent-mesh's own delivery into the real TUI: the message lands in the model's
    request whole, with its sender tag, and the answer is drawn."""
    agent = agent_clis.claude() if kind == "claude" else agent_clis.codex()
    agent_clis.spawner.register()
    agent.model.script(Text("Got it, thanks."))
    body = "line one of a message to a real agent 5c2e\nline two: 'quotes' $HOME ; done"
    out = notify(agent.address, body)
    assert out.returncode == 0, out.stderr
    req = agent.model.wait_main(1, timeout=30)[0]
    last = req.user_texts()[-1]
    assert body in last and f"[from {SENDER}" in last
    agent.wait_idle()
    assert "Got it, thanks." in agent.screen()
