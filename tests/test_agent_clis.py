"""Smoke tests of the agent-CLI harness (tests/agent_clis.py, tests/fake_model.py).

They prove the real Claude Code and Codex run in tmux panes against the fake model:
a prompt typed in the pane reaches the server whole, a slow streamed answer is drawn,
the CLI returns to idle, and a tool call round-trips (the model asks for a shell
command, the CLI runs it without asking, the next request carries its output).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_clis import (
    AgentCli,
    AgentClis,
    cli_path,
    codex_hooks,
    trust_codex_hooks,
    write_codex_config,
)
from conftest import PROGRAMS, SENDER, notify, retry_until
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
    mid = retry_until(lambda: agent.busy() and agent.screen(), timeout=2)
    assert "zebra-quartz" not in mid
    screen = agent.wait_idle(timeout=30)
    assert time.monotonic() - start >= 2.0
    assert "zebra-quartz" in screen.replace("\n", " ")


def _tool_round_trip(agent: AgentCli, call: ToolCall) -> None:
    agent.model.script(call, Text("The command printed forty-two, done."))
    agent.run_turn("harness smoke: run the tool please", requests=2)
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


# --- the CLIs' own Stop hooks continue a turn (the schemas issue 15 builds on) -----

STOP_HOOK = r'''
import json, os, sys
event = json.load(sys.stdin)
base = sys.argv[1]
with open(os.path.join(base, "events.jsonl"), "a") as fh:
    fh.write(json.dumps(event) + "\n")
pending = os.path.join(base, "pending.txt")
if event.get("hook_event_name") == "Stop" and os.path.exists(pending):
    text = open(pending).read()
    os.unlink(pending)
    if sys.argv[2:] == ["json"]:  # the other form: a block decision on stdout, exit 0
        print(json.dumps({"decision": "block", "reason": text}))
        sys.exit(0)
    sys.stderr.write(text)
    sys.exit(2)
'''


def _hook_script(tmp_path: Path, mode: str = "exit2") -> tuple[Path, str]:
    script = tmp_path / "stop_hook.py"
    script.write_text(STOP_HOOK)
    return tmp_path, f"{sys.executable} {script} {tmp_path} {mode}"


def _continued_by_stop_hook(agent: AgentCli, base: Path) -> list[dict[str, object]]:
    """A slow turn; a message left for the Stop hook mid-turn reaches the model whole in
    the next request, after the answer was streamed in full. The hook events, in order."""
    message = "[from tester @ now] handed over by the Stop hook: whole, 'quoted' $X ; 1a2b"
    agent.model.script(Text(ANSWER, seconds=2.0, chunks=20), Text("Continued, thanks."))
    agent.submit("harness: a slow turn please")
    agent.model.wait_main(1, timeout=30)
    (base / "pending.txt").write_text(message)
    second = agent.model.wait_main(2, timeout=30)[1]
    first = agent.model.main_requests()[0]
    assert first.done
    assert any(message in text for text in second.user_texts()), second.user_texts()
    # The first answer went back to the model whole, as the assistant's turn.
    assert "zebra-quartz" in second.text()
    screen = agent.wait_idle()
    assert "Continued, thanks." in screen
    lines = (base / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("mode", ["exit2", "json"])
def test_claude_stop_hook_exit_2_continues_turn(agent_clis: AgentClis, tmp_path: Path,
                                                mode: str) -> None:
    """Exit 2 with the text on stderr, or `{"decision": "block", "reason": TEXT}` on stdout."""
    base, command = _hook_script(tmp_path, mode)
    hooks = {event: [{"hooks": [{"type": "command", "command": command}]}]
             for event in ("Stop", "UserPromptSubmit", "SessionStart")}
    claude = agent_clis.claude(settings={"hooks": hooks})
    events = _continued_by_stop_hook(claude, base)
    names = [e["hook_event_name"] for e in events]
    assert names[:1] == ["SessionStart"] and "UserPromptSubmit" in names
    assert names.count("Stop") == 2, names
    stops = [e for e in events if e["hook_event_name"] == "Stop"]
    assert stops[0]["stop_hook_active"] is False and stops[1]["stop_hook_active"] is True
    assert all(e["session_id"] == events[0]["session_id"] for e in events)
    assert events[0]["session_id"] == claude.requests()[0].session_id


@pytest.mark.parametrize("mode", ["exit2", "json"])
def test_codex_stop_hook_exit_2_continues_turn(agent_clis: AgentClis, tmp_path: Path,
                                               mode: str) -> None:
    """Exit 2 with the text on stderr, or `{"decision": "block", "reason": TEXT}` on stdout."""
    base, command = _hook_script(tmp_path, mode)
    hooks = {event: [{"hooks": [{"type": "command", "command": command}]}]
             for event in ("Stop", "UserPromptSubmit", "SessionStart")}
    (agent_clis.home / ".codex").mkdir(exist_ok=True)
    (agent_clis.home / ".codex" / "hooks.json").write_text(json.dumps({"hooks": hooks}))
    # Untrusted user hooks do not run; trust is a TUI review (/hooks) or this flag.
    codex = agent_clis.codex("codex", "--dangerously-bypass-hook-trust")
    events = _continued_by_stop_hook(codex, base)
    names = [e["hook_event_name"] for e in events]
    assert "UserPromptSubmit" in names and names.count("Stop") == 2, names
    assert {e["session_id"] for e in events} == {codex.requests()[0].session_id}


def test_codex_hooks_trusted_through_its_app_server(agent_clis: AgentClis,
                                                    tmp_path: Path) -> None:
    """Without the bypass flag a user hook runs only once trusted; trusting it the way
    Codex's /hooks review does (app-server hooks/list + config/batchWrite) is enough."""
    base, command = _hook_script(tmp_path)
    hooks = {"Stop": [{"hooks": [{"type": "command", "command": command}]}]}
    home = agent_clis.home
    (home / ".codex").mkdir(exist_ok=True)
    (home / ".codex" / "hooks.json").write_text(json.dumps({"hooks": hooks}))
    cwd = tmp_path / "proj-codex"
    cwd.mkdir()
    write_codex_config(home, cwd, agent_clis.model)
    before = codex_hooks(home, cwd)
    assert [(h["eventName"], h["trustStatus"]) for h in before] == [("stop", "untrusted")]
    assert before[0]["key"] == f"{home / '.codex' / 'hooks.json'}:stop:0:0"
    after = trust_codex_hooks(home, cwd)
    assert [h["trustStatus"] for h in after] == ["trusted"]
    config = (home / ".codex" / "config.toml").read_text()
    assert f'trusted_hash = "{before[0]["currentHash"]}"' in config
    codex = agent_clis.codex(cwd=cwd)  # rewrites config.toml: the trust must survive that
    assert "trusted_hash" in (home / ".codex" / "config.toml").read_text()
    codex.run_turn("harness: one turn")
    events = (base / "events.jsonl").read_text().splitlines()
    assert [json.loads(e)["hook_event_name"] for e in events] == ["Stop"]


# --- user-level MCP servers: the model's tool call reaches the server ---------------

ECHO_MCP = PROGRAMS / "echo_mcp.py"


def _mcp_round_trip(agent: AgentCli, call: ToolCall, log: Path) -> None:
    agent.model.script(call, Text("The echo tool answered."))
    first = agent.run_turn("harness: call the echo tool", requests=2)
    # Codex offers it as a tool; Claude Code defers MCP tools: only their names are in
    # the request (the model may fetch schemas with ToolSearch, or call by name at once).
    offered = "mcp__echo__echo" in first.tool_names
    assert offered if agent.kind == "codex" else "mcp__echo__echo" in first.text()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["name"], c["arguments"]) for c in calls] == [("echo", {"text": "ping 'x' $Y"})]
    second = agent.model.main_requests()[1]
    assert any("echo:ping 'x' $Y" in result for result in second.tool_results())
    assert "The echo tool answered." in agent.screen()


def test_claude_calls_a_user_mcp_server_tool(agent_clis: AgentClis, tmp_path: Path) -> None:
    """~/.claude.json `mcpServers` (user scope); tools are named mcp__SERVER__TOOL and need
    an allow rule (or a `Yes` in the pane)."""
    log = tmp_path / "mcp.jsonl"
    server = {"type": "stdio", "command": sys.executable, "args": [str(ECHO_MCP), str(log)],
              "env": {}}
    claude = agent_clis.claude(state={"mcpServers": {"echo": server}},
                               settings={"permissions": {"allow": ["mcp__echo"]}})
    _mcp_round_trip(claude, ToolCall("mcp__echo__echo", {"text": "ping 'x' $Y"}), log)


def test_codex_calls_a_user_mcp_server_tool(agent_clis: AgentClis, tmp_path: Path) -> None:
    """`[mcp_servers.NAME]` in ~/.codex/config.toml; Codex offers the server's tools as a
    Responses `namespace` tool `mcp__NAME`, and the model calls `NAME`'s tool by its bare
    name with `namespace` set."""
    log = tmp_path / "mcp.jsonl"
    config = (f"[mcp_servers.echo]\ncommand = {json.dumps(sys.executable)}\n"
              f"args = [{json.dumps(str(ECHO_MCP))}, {json.dumps(str(log))}]\n")
    codex = agent_clis.codex(config=config)
    _mcp_round_trip(codex, ToolCall("echo", {"text": "ping 'x' $Y"}, namespace="mcp__echo"),
                    log)


# --- Claude Code's asyncRewake: a background hook wakes an idle agent ---------------

WAITING_HOOK = r'''
import json, os, sys, time
event = json.load(sys.stdin)
base = sys.argv[1]
with open(os.path.join(base, "events.jsonl"), "a") as fh:
    fh.write(json.dumps(event) + "\n")
pending = os.path.join(base, "pending.txt")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if os.path.exists(pending):
        text = open(pending).read()
        os.unlink(pending)
        sys.stderr.write(text)
        sys.exit(2)
    time.sleep(0.05)
'''


def test_claude_async_rewake_hook_wakes_an_idle_agent(agent_clis: AgentClis,
                                                      tmp_path: Path) -> None:
    """A Stop hook with `asyncRewake: true` runs in the background after the turn; the
    agent sits idle at its prompt; when the hook exits 2 its stderr wakes the model with
    no keystroke. The text reaches the model whole in the next request."""
    script = tmp_path / "waiting_hook.py"
    script.write_text(WAITING_HOOK)
    hook = {"type": "command", "command": f"{sys.executable} {script} {tmp_path}",
            "asyncRewake": True}
    claude = agent_clis.claude(settings={"hooks": {"Stop": [{"hooks": [hook]}]}})
    claude.model.script(Text("First answer."), Text("Woken, thanks."))
    claude.run_turn("harness: one turn, then wait")
    assert len(claude.model.main_requests()) == 1
    time.sleep(1.0)
    assert claude.idle() and len(claude.model.main_requests()) == 1  # the hook still waits
    message = "[from tester @ now] woken by asyncRewake: whole, 'quoted' $X ; 9f8e"
    (tmp_path / "pending.txt").write_text(message)
    woken = claude.model.wait_main(2, timeout=30)[1]
    assert message in woken.text()
    screen = claude.wait_idle()
    assert "Woken, thanks." in screen
    # It comes as a system reminder framed "NOT USER INPUT", summed up on screen as
    # "Stop hook feedback" (rewakeSummary / rewakeMessage change the wording).
    assert "NOT USER INPUT" in woken.user_texts()[-1]


# --- `codex queue`: an official channel into a running Codex, no keystrokes ---------

def test_codex_queue_hands_messages_over_after_the_turn(codex: AgentCli) -> None:
    """`codex queue --thread SESSION --message TEXT` (~0.2 s) during a slow turn: the
    answer streams to its end, then each message becomes a turn of its own, in order,
    whole. To an idle Codex it starts a turn at once."""
    codex.model.script(Text("First."), Text(ANSWER, seconds=2.0, chunks=10),
                       Text("a"), Text("b"), Text("c"))
    session = codex.run_turn("harness: one turn").session_id
    assert session
    codex.submit("harness: a slow turn")
    codex.model.wait_main(2)
    env = {**os.environ, "HOME": str(codex.home), "CODEX_HOME": str(codex.home / ".codex")}
    messages = [f"[from tester @ now] queued {i}: 'q' $X ; done" for i in range(3)]
    for message in messages:
        out = subprocess.run([str(cli_path("codex")), "queue", "--thread", session,
                              "--message", message], capture_output=True, text=True,
                             env=env, cwd=codex.cwd, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
    assert not codex.model.main_requests()[1].done  # all queued while the answer streamed
    later = codex.model.wait_main(5, timeout=30)[2:]
    assert [r.user_texts()[-1] for r in later] == messages
    assert all("zebra-quartz" in r.text() for r in later)  # the slow answer was not cut
    assert all(r.session_id == session for r in later)
    codex.wait_idle()


# --- two real agents on one fake model, each with its own script ----------------------

def test_claude_messages_codex_through_notify_pane(agent_clis: AgentClis) -> None:
    """Claude Code's model runs `notify-pane` with its Bash tool; the message lands in the
    Codex pane and reaches Codex's model whole, tagged with Claude's address. Each agent
    takes its turns from its own queue (`AgentCli.script`)."""
    claude = agent_clis.claude()
    codex = agent_clis.codex()
    agent_clis.spawner.register()
    body = "hello from claude: 'quoted' $HOME ; and a second clause 4d5e"
    command = f"notify-pane {codex.address} {shlex.quote(body)}"
    claude.script(ToolCall("Bash", {"command": command, "description": "Message codex"}),
                  Text("Sent."))
    codex.script(Text("Thanks, Claude."))
    claude.run_turn("harness: message the codex agent", requests=2)
    assert claude.requests()[1].tool_results() == [f"→ {codex.address} (testhost[dev:1]): {body}"]
    got = codex.wait_requests(1)[0].user_texts()[-1]
    assert body in got and f"[from {claude.address}" in got, got
    assert "Thanks, Claude." in codex.wait_idle()
    assert [r.agent for r in agent_clis.model.main_requests()] == ["claude", "claude", "codex"]


# --- permission questions: the PermissionRequest hook fires before one is answered ----

def _question_answered(agent: AgentCli, base: Path, question: str) -> list[str]:
    """The model asks for a tool call that needs a person's Yes: the question is drawn,
    the hooks have seen PermissionRequest, Enter (Yes) lets the turn finish."""
    agent.submit("harness: run the risky command")
    agent.wait_requests(1)
    agent.wait_screen(question)
    assert not agent.idle()
    names = [json.loads(line)["hook_event_name"]
             for line in (base / "events.jsonl").read_text().splitlines()]
    assert names[-2:] == ["PreToolUse", "PermissionRequest"], names
    agent.answer("Enter")
    agent.wait_requests(2)
    agent.wait_idle()
    return names


def test_claude_permission_question_fires_permission_request(agent_clis: AgentClis,
                                                             tmp_path: Path) -> None:
    """Bash outside `permissions.allow` (the list is replaced, not merged): it asks first."""
    base, command = _hook_script(tmp_path)
    hooks = {event: [{"hooks": [{"type": "command", "command": command}]}]
             for event in ("PreToolUse", "PermissionRequest")}
    claude = agent_clis.claude(settings={"hooks": hooks, "permissions": {"allow": []}})
    target = claude.cwd / "made-after-yes"
    claude.script(ToolCall("Bash", {"command": f"touch {target}", "description": "Create"}),
                  Text("Created."))
    _question_answered(claude, base, "Do you want to proceed?")
    assert target.exists()
    assert "Created." in claude.screen()


def test_codex_permission_question_fires_permission_request(agent_clis: AgentClis,
                                                            tmp_path: Path) -> None:
    """`-a on-request -s workspace-write`: an escalated command asks first."""
    base, command = _hook_script(tmp_path)
    hooks = {event: [{"hooks": [{"type": "command", "command": command}]}]
             for event in ("PreToolUse", "PermissionRequest")}
    (agent_clis.home / ".codex").mkdir(exist_ok=True)
    (agent_clis.home / ".codex" / "hooks.json").write_text(json.dumps({"hooks": hooks}))
    codex = agent_clis.codex("codex", "--dangerously-bypass-hook-trust", "-a", "on-request",
                             "-s", "workspace-write")
    target = tmp_path / "made-after-yes"
    codex.script(ToolCall("exec_command", {"cmd": f"touch {target}",
                                           "sandbox_permissions": "require_escalated",
                                           "justification": "Create a file?"}),
                 Text("Created."))
    _question_answered(codex, base, "Would you like to run the following command?")
    assert target.exists()
    assert "Created." in codex.screen()


def test_respawn_starts_a_new_session_in_the_same_pane(agent_clis: AgentClis) -> None:
    """`AgentCli.respawn()`: the CLI dies and a fresh one takes the same pane."""
    claude = agent_clis.claude()
    pane = claude.pane.pane_id
    first = claude.run_turn("harness: before").session_id
    claude.respawn()
    assert claude.pane.display("#{pane_id}") == pane
    second = claude.run_turn("harness: after").session_id
    assert first and second and first != second


@pytest.mark.parametrize("kind", ["claude", "codex"])
def test_long_multiline_prompt_reaches_the_model_whole(agent_clis: AgentClis,
                                                       kind: str) -> None:
    """`submit()` of a 20-line, ~4 KB prompt (drawn collapsed as a paste)."""
    agent = agent_clis.claude() if kind == "claude" else agent_clis.codex()
    prompt = "\n".join(f"line {i}: " + "x" * 200 + f" 'q' $V{i}" for i in range(20))
    request = agent.run_turn(prompt)
    assert prompt in request.user_texts()[-1]


NOTIFY = r'''
import sys
with open(sys.argv[1], "a") as fh:
    fh.write(sys.argv[-1].replace("\n", " ") + "\n")
'''


def test_codex_notify_program_gets_agent_turn_complete(agent_clis: AgentClis,
                                                       tmp_path: Path) -> None:
    """`notify = [argv…]` in config.toml: run at each turn end with a JSON argument."""
    script = tmp_path / "notify.py"
    script.write_text(NOTIFY)
    log = tmp_path / "notify.jsonl"
    config = f"notify = {json.dumps([sys.executable, str(script), str(log)])}\n"
    codex = agent_clis.codex(config=config)
    codex.script(Text("Answer one."))
    first = codex.run_turn("harness: one turn")
    events = retry_until(lambda: log.exists() and log.read_text().splitlines(), timeout=10)
    event = json.loads(events[0])
    assert event["type"] == "agent-turn-complete"
    assert event["last-assistant-message"] == "Answer one."
    assert event["thread-id"] == first.session_id
    assert event["input-messages"] == ["harness: one turn"]
