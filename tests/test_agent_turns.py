"""Issue 15's acceptance, with the real Claude Code and Codex (tests/agent_clis.py) in tmux
panes against the fake model, with agent-mesh's hooks installed by `setup --agents`:

- a message sent mid-turn is queued (exit 5), nothing is typed, and it reaches the model
  whole in the request after the turn, whose slow answer went back complete;
- 10 messages sent during one turn arrive once each, in order;
- an agent killed with messages queued keeps them, and a new agent in the pane gets them;
- with the hooks uninstalled, delivery is today's (screen only).

They skip, saying why, where the CLIs are not installed (scripts/install-agent-clis)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from agent_clis import (
    CLAUDE_ENV,
    CLAUDE_KEY,
    CODEX_KEY_ENV,
    AgentCli,
    AgentClis,
    require,
    write_claude_config,
    write_codex_config,
)
from conftest import notify, retry_until, run_cli
from fake_model import Text

ANSWER = "A slow answer streamed in thirty pieces that must arrive whole, zebra-quartz."
KINDS = ["claude", "codex"]


def install_hooks(home: Path) -> None:
    (home / ".claude").mkdir(exist_ok=True)
    (home / ".codex").mkdir(exist_ok=True)
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 0, (out.stdout, out.stderr)


def start(agent_clis: AgentClis, kind: str, hooks: bool = True) -> AgentCli:
    if hooks:
        install_hooks(agent_clis.home)
    agent = agent_clis.claude() if kind == "claude" else agent_clis.codex()
    agent_clis.spawner.register()
    return agent


def hook_state(agent: AgentCli) -> str:
    out = run_cli("agent-mesh", "status", "--json")
    rows = json.loads(out.stdout)["agents"]
    row = next((r for r in rows if r["address"] == agent.address), {})
    return f"{row.get('state')}: {row.get('detail')}"


def wait_mid_turn(agent: AgentCli) -> None:
    retry_until(lambda: "by its hooks" in hook_state(agent), timeout=20)


def queued(out: subprocess.CompletedProcess[bytes]) -> str:
    assert out.returncode == 5, (out.returncode, out.stdout, out.stderr)
    return re.search(rb"queued as ([0-9a-f]+)", out.stdout).group(1).decode()  # type: ignore[union-attr]


def occurrences(agent: AgentCli, needle: str) -> int:
    """In how many main requests' last user text a message first appears (each message
    is new text once; later requests repeat the whole conversation)."""
    seen = 0
    before = ""
    for req in agent.model.main_requests():
        texts = "\n".join(req.user_texts())
        seen += texts.count(needle) - before.count(needle) if texts.startswith(before) \
            else texts.count(needle)
        before = texts
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_a_message_mid_turn_reaches_the_model_after_the_turn_whole(
        agent_clis: AgentClis, kind: str) -> None:
    agent = start(agent_clis, kind)
    agent.model.script(Text(ANSWER, seconds=4.0, chunks=30), Text("Continued, thanks."))
    agent.submit("a slow turn please")
    agent.model.wait_main(1, timeout=30)
    wait_mid_turn(agent)
    body = "mid-turn message: whole, 'quoted' $HOME ; `x`\nsecond line 9c1d"
    queued(notify(agent.address, body))
    assert "9c1d" not in agent.screen()  # nothing typed into the working agent
    second = agent.model.wait_main(2, timeout=60)[1]
    first = agent.model.main_requests()[0]
    assert first.done
    assert any(body in text for text in second.user_texts()), second.user_texts()
    assert any("[from tester @" in text for text in second.user_texts())
    assert "zebra-quartz" in second.text()  # the slow answer went back complete
    screen = agent.wait_idle(timeout=60)
    assert "Continued, thanks." in screen
    assert occurrences(agent, "9c1d") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_ten_messages_in_one_turn_arrive_once_each_in_order(agent_clis: AgentClis,
                                                            kind: str) -> None:
    agent = start(agent_clis, kind)
    agent.model.script(Text(ANSWER, seconds=8.0, chunks=40), Text("All ten, thanks."))
    agent.submit("a slow turn please")
    agent.model.wait_main(1, timeout=30)
    wait_mid_turn(agent)
    for n in range(10):
        queued(notify(agent.address, f"numbered message {n:02d} of ten"))
    assert not agent.model.main_requests()[0].done, "the turn ended before all were sent"
    second = agent.model.wait_main(2, timeout=60)[1]
    text = "\n".join(second.user_texts())
    at = [text.find(f"numbered message {n:02d} of ten") for n in range(10)]
    assert all(i >= 0 for i in at) and at == sorted(at), at
    agent.wait_idle(timeout=60)
    assert [occurrences(agent, f"message {n:02d} of") for n in range(10)] == [1] * 10
    assert len(agent.model.main_requests()) == 2


def agent_argv(agent_clis: AgentClis, kind: str, cwd: Path) -> list[str]:
    """The command line AgentClis starts `kind` with (env, config), to type into a shell."""
    home = agent_clis.home
    if kind == "claude":
        write_claude_config(home, cwd)
        env = {"HOME": str(home), "ANTHROPIC_BASE_URL": agent_clis.model.url,
               "ANTHROPIC_API_KEY": CLAUDE_KEY, **CLAUDE_ENV}
    else:
        write_codex_config(home, cwd, agent_clis.model)
        env = {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), CODEX_KEY_ENV: "sk-fake"}
    return ["env", "-C", str(cwd), *(f"{k}={v}" for k, v in env.items()), str(require(kind))]


def foreground_group(agent: AgentCli) -> int:
    pid = int(agent.pane.display("#{pane_pid}"))
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[5])


@pytest.mark.parametrize("kind", KINDS)
def test_an_agent_killed_with_messages_queued_hands_them_to_the_next_one(
        agent_clis: AgentClis, kind: str) -> None:
    install_hooks(agent_clis.home)
    require(kind)
    cwd = agent_clis.tmp / f"proj-{kind}"
    cwd.mkdir()
    pane = agent_clis.spawner.window(kind, ["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
    agent = AgentCli(kind, pane, agent_clis.model, kind, cwd, agent_clis.home,
                     agent_clis.spawner)
    pane.send_keys(shlex.join(agent_argv(agent_clis, kind, cwd)), "Enter")
    agent.wait_idle(timeout=60)
    agent_clis.spawner.register()
    agent.model.script(Text(ANSWER, seconds=60.0, chunks=60))
    agent.submit("a very slow turn please")
    agent.model.wait_main(1, timeout=30)
    wait_mid_turn(agent)
    ids = [queued(notify(agent.address, f"kept across agents {n} 4e7a")) for n in range(2)]
    group = foreground_group(agent)
    os.killpg(group, signal.SIGKILL)
    retry_until(lambda: pane.display("#{pane_current_command}") == "bash", timeout=15)
    pane.send_keys("clear", "Enter")  # the TUI's screen, killed, is left drawn
    retry_until(lambda: agent.screen().strip() == "$", timeout=10)
    listed = run_cli("agent-mesh", "queue", "--json").stdout.decode()
    assert all(i in listed for i in ids), listed
    time.sleep(1.5)
    assert agent.screen().strip() == "$"  # never typed into the shell
    agent.model.script(Text("Got the first."), Text("Got the second."))
    pane.send_keys(shlex.join(agent_argv(agent_clis, kind, cwd)), "Enter")
    retry_until(lambda: sum(occurrences(agent, f"agents {n} 4e7a") for n in range(2)) == 2,
                timeout=90)
    agent.wait_idle(timeout=60)
    assert [occurrences(agent, f"agents {n} 4e7a") for n in range(2)] == [1, 1]
    received = Path.home() / ".agents" / "log" / "received" / f"{agent.address}.jsonl"
    outcomes = [json.loads(line) for line in received.read_text().splitlines()]
    assert [r["id"] for r in outcomes if r.get("outcome") == "delivered"] == ids


@pytest.mark.parametrize("kind", KINDS)
def test_with_the_hooks_uninstalled_delivery_is_todays(agent_clis: AgentClis,
                                                       kind: str) -> None:
    install_hooks(agent_clis.home)
    out = run_cli("agent-mesh", "setup", "--agents", "--uninstall")
    assert out.returncode == 0, out.stderr
    agent = start(agent_clis, kind, hooks=False)
    agent.model.script(Text("Got it."))
    assert notify(agent.address, "to an idle agent 3b8f").returncode == 0
    req = agent.model.wait_main(1, timeout=30)[0]
    assert "to an idle agent 3b8f" in req.user_texts()[-1]
    agent.wait_idle()
    assert not list((Path.home() / ".agents" / "turns").glob("*.json"))
    assert "by its hooks" not in hook_state(agent)
    if kind == "codex":  # mid-turn on screen: refused as today (exit 3), or queued with --queue
        agent.model.script(Text(ANSWER, seconds=4.0, chunks=20))
        agent.submit("a slow turn please")
        agent.model.wait_main(2, timeout=30)
        retry_until(agent.busy, timeout=10)
        assert notify(agent.address, "mid-turn").returncode == 3


def test_a_permission_question_gets_no_keystroke_and_the_message_follows(
        agent_clis: AgentClis) -> None:
    """Claude Code asks before running a tool it may not run unasked: its PermissionRequest
    hook marks the pane waiting, so a message is queued, the dialog gets no keystroke, and
    the message goes over at the end of the turn once the question is answered. (The
    harness runs Codex with approval_policy = "never": it asks nothing.)"""
    from fake_model import ToolCall

    install_hooks(agent_clis.home)
    agent = agent_clis.claude(settings={"permissions": {"allow": ["Read"]}})
    agent_clis.spawner.register()
    agent.model.script(ToolCall("Bash", {"command": "touch made.txt && echo asked-$((6*7))",
                                         "description": "Print a number"}),
                       Text("The command ran."), Text("Message read, thanks."))
    agent.submit("run a command please")
    agent.model.wait_main(1, timeout=30)
    try:
        retry_until(lambda: hook_state(agent).startswith("waiting"), timeout=30)
    except AssertionError:
        log = Path.home() / ".agents" / "agent-event.log"
        turns = [p.read_text() for p in (Path.home() / ".agents" / "turns").glob("*.json")]
        seen = log.read_text() if log.exists() else ""
        raise AssertionError(f"{hook_state(agent)}\n{turns}\n{seen}\n{agent.screen()}") from None
    queued(notify(agent.address, "while you were asked 6b0e"))
    time.sleep(1.0)
    assert "6b0e" not in agent.screen()  # not typed into the dialog
    assert len(agent.model.main_requests()) == 1  # the question is still open
    agent.pane.send_keys("Enter")  # the user answers: yes (the first choice)
    third = agent.model.wait_main(3, timeout=60)[2]
    assert any("while you were asked 6b0e" in t for t in third.user_texts())
    assert any("asked-42" in r for r in agent.model.main_requests()[1].tool_results())
    agent.wait_idle(timeout=60)
    assert occurrences(agent, "6b0e") == 1
