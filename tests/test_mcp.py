"""`agent-mesh mcp` driven over real stdio by the official SDK's client.

The server runs as a real child process; the recipients are real programs in panes of
the test's private tmux server. A call "from a pane" gives the server that pane's
$TMUX/$TMUX_PANE (as the agent CLI running in it would), or runs the client itself in
a pane (tests/programs/mcp_client.py), once with the environment scrubbed as Codex
scrubs it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import BIN, PROGRAMS, SELF_HOST, Spawner, retry_until

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters, stdio_client

TOOLS = {
    "whoami": [], "list_agents": ["pattern"], "send": ["to", "text", "file", "queue", "ttl"],
    "ask": ["to", "text"], "wait_reply": ["id", "timeout"], "reply": ["id", "text"],
    "peek": ["address", "lines"], "inbox": ["address"], "queue": [],
    # the coordination tools: test_mcp_coord.py
    "post": ["text", "tag"], "bulletin": ["since", "tag", "host", "limit"],
    "decide": ["title", "because", "supersedes"], "decisions": ["all"],
    "lock": ["path", "host", "intent", "ttl", "wait"], "unlock": ["path", "host", "force"],
    "locks": ["host"], "task_add": ["title", "board", "role", "notify"],
    "task_claim": ["id", "next", "role", "board"], "task_done": ["id", "note", "board"],
    "task_drop": ["id", "stale", "board"], "tasks": ["board"],
}
HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]0;title\x07ok\u202eevil\x9b31m"


@asynccontextmanager
async def session(env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    full = dict(os.environ)
    full.update(env or {})
    params = StdioServerParameters(command=str(BIN / "agent-mesh"), args=["mcp"], env=full)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        yield s


async def call(s: ClientSession, tool: str, **args: Any) -> tuple[bool, str]:
    res = await s.call_tool(tool, args)
    return bool(res.is_error), "".join(getattr(c, "text", "") for c in res.content)


def pane_env(spawn: Spawner, pane_id: str) -> dict[str, str]:
    """$TMUX and $TMUX_PANE as tmux gives them to a program in that pane."""
    socket, pid, session_id = spawn.server.run(
        "display-message", "-p", "-t", pane_id, "#{socket_path} #{pid} #{session_id}"
    ).stdout.split()
    return {"TMUX": f"{socket},{pid},{session_id.lstrip('$')}", "TMUX_PANE": pane_id}


def clean(text: str) -> bool:
    """Nothing a terminal would obey: no ESC, no C1, no bidi control."""
    return not any(c in text for c in "\x1b\x07\x9b\u202e")


# --- tools and their errors ------------------------------------------------------------


def test_tools_are_listed_with_their_argument_names_and_descriptions() -> None:
    async def body() -> None:
        async with session() as s:
            tools = (await s.list_tools()).tools
        assert {t.name: list(t.input_schema.get("properties", {})) for t in tools} == TOOLS
        for t in tools:
            assert t.description and len(t.description) > 40, t.name
        required = {t.name: sorted(t.input_schema.get("required", [])) for t in tools}
        assert required["send"] == ["to"] and required["ask"] == ["text", "to"]
        assert required["wait_reply"] == ["id"] and required["reply"] == ["id", "text"]

    anyio.run(body)


def test_outside_tmux_whoami_says_so_and_send_goes_as_the_host(spawn: Spawner) -> None:
    tui = spawn.agent_tui("peer")

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "whoami")
            assert not err and text.startswith("not in tmux") and SELF_HOST in text
            err, text = await call(s, "send", to=tui.address, text="line one\nline two")
            assert not err and text.startswith("delivered message"), text

    anyio.run(body)
    (line,) = tui.wait_lines(1)
    assert line.startswith(f"[from {SELF_HOST} @ ") and line.endswith("] line one\nline two")


def test_from_a_pane_the_sender_is_the_panes_address_never_agent_name(spawn: Spawner) -> None:
    tui = spawn.agent_tui("peer")
    caller = spawn.agent_tui("caller")
    env = {**pane_env(spawn, caller.pane.pane_id), "AGENT_NAME": "spoofed"}

    async def body() -> None:
        async with session(env) as s:
            err, text = await call(s, "whoami")
            assert not err and text.startswith(f"{caller.address}: tmux pane "), text
            err, text = await call(s, "send", to=tui.address, text="from the pane")
            assert not err, text

    anyio.run(body)
    (line,) = tui.wait_lines(1)
    assert line.startswith(f"[from {caller.address} @ ") and line.endswith("] from the pane")


def test_from_an_unregistered_pane_whoami_says_so(spawn: Spawner) -> None:
    spawn.agent_tui("peer")
    spawn.server.run("new-session", "-d", "-s", "scratch", "bash", "--norc", "--noprofile")
    pane = spawn.server.run("display-message", "-p", "-t", "scratch:", "#{pane_id}").stdout
    env = pane_env(spawn, pane.strip())

    async def body() -> None:
        async with session(env) as s:
            err, text = await call(s, "whoami")
            assert not err and text.startswith(f"{SELF_HOST}[scratch]: tmux pane "), text
            assert "not registered" in text

    anyio.run(body)


def test_unknown_agent_bad_arguments_and_bad_ids_are_tool_errors(spawn: Spawner) -> None:
    spawn.agent_tui("peer")

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "send", to="nobody", text="hi")
            assert err and "unknown agent 'nobody'" in text
            err, text = await call(s, "send", to=f"{SELF_HOST}-dev-peer")
            assert err and "nothing to send" in text
            err, text = await call(s, "send", to=f"{SELF_HOST}-dev-peer", text="x", ttl="soon")
            assert err and "bad duration" in text
            err, text = await call(s, "send", to=f"{SELF_HOST}-dev-*", text="x", file="/etc/hosts")
            assert err and "one agent" in text
            err, text = await call(s, "wait_reply", id="nothex!")
            assert err and "bad reply id" in text
            err, text = await call(s, "wait_reply", id="0123456789abcdef", timeout=0.1)
            assert err and "no ask 0123456789abcdef was made here" in text
            err, text = await call(s, "reply", id="0123456789abcdef", text="x")
            assert err and "no question with id 0123456789abcdef" in text
            err, text = await call(s, "peek", address="nobody")
            assert err and "unknown agent" in text
            err, text = await call(s, "ask", to="nobody", text="?")
            assert err and "unknown agent" in text
            err, text = await call(s, "send", to="x")  # missing argument types: the SDK's own
            assert err

    anyio.run(body)


def test_send_a_file_queue_and_the_queue_tool(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui("peer")
    report = tmp_path / "report.txt"
    report.write_text("the report\n")

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "send", to=tui.address, text="see file", file=str(report))
            assert not err and "file report.txt" in text, text
            tui.wait_lines(1)
            tui.pane.send_keys("typing a draft", literal=True)  # busy: a draft in its box
            retry_until(lambda: "typing a draft" in tui.pane.capture())
            err, text = await call(s, "send", to=tui.address, text="later", queue=True,
                                   ttl="10m")
            assert not err and text.startswith("queued for"), text
            err, text = await call(s, "queue")
            assert not err and "later" in text and tui.address in text, text

    anyio.run(body)
    inbox = Path(os.environ["HOME"]) / ".agent-inbox" / SELF_HOST / "report.txt"
    assert inbox.read_text() == "the report\n"
    assert "report.txt" in tui.lines()[0]


def test_list_agents_with_state_and_patterns(spawn: Spawner) -> None:
    spawn.agent_tui("alpha")
    spawn.bash("sh")

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "list_agents")
            assert not err and "STATE" in text and f"{SELF_HOST}-dev-alpha" in text
            assert "idle" in text and "shell" in text, text
            err, text = await call(s, "list_agents", pattern="*-alpha")
            assert not err and "alpha" in text and "-sh " not in text
            err, text = await call(s, "list_agents", pattern=f"host:{SELF_HOST}")
            assert not err and "alpha" in text and "sh" in text
            err, text = await call(s, "list_agents", pattern="role:nothing-like-it")
            assert not err and text == "no agent matches role:nothing-like-it"

    anyio.run(body)


def test_broadcast_to_a_pattern_skips_the_caller(spawn: Spawner) -> None:
    a, b = spawn.agent_tui("wa"), spawn.agent_tui("wb")
    env = pane_env(spawn, a.pane.pane_id)

    async def body() -> None:
        async with session(env) as s:
            err, text = await call(s, "send", to=f"{SELF_HOST}-dev-w*", text="all hands")
            assert not err and "1 of 1 got" in text, text

    anyio.run(body)
    (line,) = b.wait_lines(1)
    assert line.startswith(f"[from {a.address} @ ") and line.endswith("] all hands")
    time.sleep(0.3)
    assert a.lines() == []


# --- refusals and the opt-in -----------------------------------------------------------


def test_a_refusal_is_a_tool_error_with_the_reason_and_force_is_not_taken(
    spawn: Spawner,
) -> None:
    sh = spawn.bash("sh")

    async def body() -> None:
        async with session({"FORCE_SEND": "1"}) as s:  # the environment cannot force
            err, text = await call(s, "send", to=sh.address, text="rm -rf /")
            assert err and f"refusing to deliver to '{sh.address}'" in text, text
            assert "interactive shell" in text and "@agent-accept" in text, text
            assert "override_refusals = true under [mcp]" in text and "FORCE_SEND" not in text

    anyio.run(body)
    time.sleep(0.3)
    assert sh.lines() == []


def test_the_users_opt_in_lets_agents_override_a_refusal(
    spawn: Spawner, isolated_env: Path
) -> None:
    sh = spawn.bash("sh")
    (isolated_env / ".agents" / "config.toml").write_text("[mcp]\noverride_refusals = true\n")

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "whoami")
            assert "override refusals" in text
            err, text = await call(s, "send", to=sh.address, text="forced")
            assert not err, text

    anyio.run(body)
    (line,) = sh.wait_lines(1)
    assert line.endswith("] forced")


def test_a_bad_opt_in_value_is_a_tool_error_naming_the_file(
    spawn: Spawner, isolated_env: Path
) -> None:
    tui = spawn.agent_tui("peer")
    (isolated_env / ".agents" / "config.toml").write_text('[mcp]\noverride_refusals = "yes"\n')

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "send", to=tui.address, text="x")
            assert err and "config.toml: mcp.override_refusals must be true or false" in text

    anyio.run(body)


# --- ask, reply, wait_reply ------------------------------------------------------------


def reply_from_pane(spawn: Spawner, pane_id: str, asker: str, ask_id: str, text: str
                    ) -> subprocess.CompletedProcess[bytes]:
    """The asked agent's `notify-pane ASKER --re ID …`, run in its pane's environment."""
    env = {**os.environ, **pane_env(spawn, pane_id)}
    return subprocess.run([str(BIN / "notify-pane"), asker, "--re", ask_id, text], env=env,
                          capture_output=True, timeout=30, check=False)


def test_ask_returns_at_once_and_wait_reply_returns_the_answer_stripped(
    spawn: Spawner,
) -> None:
    peer = spawn.agent_tui("peer")
    caller = spawn.agent_tui("caller")

    async def body() -> None:
        async with session(pane_env(spawn, caller.pane.pane_id)) as s:
            started = time.monotonic()
            err, text = await call(s, "ask", to=peer.address, text="what is 6*7?")
            assert not err and time.monotonic() - started < 10, text
            ask_id = text.split("\n", 1)[0]
            (question,) = peer.wait_lines(1)
            assert f"notify-pane {caller.address} --re {ask_id}" in question
            err, text = await call(s, "wait_reply", id=ask_id, timeout=0.2)
            assert not err and text.startswith(f"no reply yet to {ask_id}"), text
            res = reply_from_pane(spawn, peer.pane.pane_id, caller.address, ask_id,
                                  f"42 {HOSTILE}\nsecond line")
            assert res.returncode == 0, res.stderr
            note = f'note: the reply to ask {ask_id} has come: wait_reply(id="{ask_id}")'
            err, text = await call(s, "whoami")  # any other call hears of it
            assert not err and note in text, text
            err, text = await call(s, "wait_reply", id=ask_id, timeout=20)
            assert not err and text.startswith(f"reply from {peer.address} to {ask_id}:\n42 ")
            assert clean(text) and text.endswith("second line") and "okevil" in text, text
            err, text = await call(s, "wait_reply", id=ask_id, timeout=1)
            assert err and "has ended (answered" in text
            err, text = await call(s, "whoami")
            assert "note:" not in text

    anyio.run(body)
    assert caller.lines() == []  # kept for wait_reply, never typed into the asking pane


def test_wait_reply_is_bounded(spawn: Spawner) -> None:
    peer = spawn.agent_tui("peer")

    async def body() -> None:
        async with session() as s:
            _, text = await call(s, "ask", to=peer.address, text="slow?")
            ask_id = text.split("\n", 1)[0]
            started = time.monotonic()
            err, text = await call(s, "wait_reply", id=ask_id, timeout=1)
            assert not err and 0.9 < time.monotonic() - started < 5, text

    anyio.run(body)
    from agent_mesh.cli.mcp_tools import MAX_WAIT

    assert MAX_WAIT <= 55  # under the 60 s clients commonly allow a call


def test_the_reply_tool_answers_a_question_this_pane_was_asked(spawn: Spawner) -> None:
    """The asked agent is the MCP client: `reply(id, text)` finds the asker itself."""
    asker = spawn.agent_tui("asker")
    asked = spawn.agent_tui("asked")
    out = Path(os.environ["HOME"]) / "ask.out"
    env = {**os.environ, **pane_env(spawn, asker.pane.pane_id)}
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "ask", asked.address, "ping?",
                             "--timeout", "30s"], env=env, stdout=out.open("wb"),
                            stderr=subprocess.PIPE)
    try:
        (question,) = asked.wait_lines(1)
        ask_id = question.split("--re ", 1)[1].split()[0]

        async def body() -> None:
            async with session(pane_env(spawn, asked.pane.pane_id)) as s:
                err, text = await call(s, "reply", id=ask_id, text="pong")
                assert not err and f"reply to {ask_id} kept for {asker.address}" in text, text
                err, text = await call(s, "reply", id="abcdef0123456789", text="x")
                assert err and "no question with id" in text

        anyio.run(body)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        assert out.read_text() == "pong\n"
    finally:
        proc.kill()


# --- peek and inbox: a peer's output arrives stripped ------------------------------------


def test_peek_and_inbox_strip_a_peers_hostile_output(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui("peer")
    script = tmp_path / "hostile.py"
    script.write_text(f"import sys, time\nsys.stdout.write({HOSTILE!r} + '\\n')\n"
                      "sys.stdout.flush()\ntime.sleep(600)\n")
    pane = spawn.window("evil", [sys.executable, str(script)])
    retry_until(lambda: "ok" in pane.capture())
    spawn.register()
    hostile_sender = {"AGENT_NAME": f"bad{HOSTILE}"}
    res = subprocess.run([str(BIN / "notify-pane"), tui.address, f"body {HOSTILE}"],
                         env={**os.environ, **hostile_sender}, capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    tui.wait_lines(1)

    async def body() -> None:
        async with session() as s:
            err, text = await call(s, "peek", address=f"{SELF_HOST}-dev-evil", lines=5)
            assert not err and "okevil" in text and clean(text), repr(text)
            err, text = await call(s, "inbox", address=tui.address)
            assert not err and "body" in text and clean(text), repr(text)
            err, text = await call(s, "peek", address=tui.address, lines=3)
            assert not err and clean(text)

    anyio.run(body)


# --- the client itself in a pane (as an agent CLI runs it) ---------------------------


@pytest.mark.parametrize("scrub", [False, True], ids=["pane-env", "scrubbed-like-codex"])
def test_a_client_in_a_pane_sends_as_that_pane(spawn: Spawner, tmp_path: Path,
                                               scrub: bool) -> None:
    peer = spawn.agent_tui("peer")
    out, go = tmp_path / "out.json", tmp_path / "go"
    calls = [["whoami", {}], ["send", {"to": peer.address, "text": "hello from mcp"}]]
    argv = [sys.executable, str(PROGRAMS / "mcp_client.py"), str(BIN / "agent-mesh"), str(out),
            str(go), json.dumps(calls)] + (["--scrub"] if scrub else [])
    spawn.window("client", argv)
    spawn.register()
    go.touch()
    retry_until(out.exists, timeout=30)
    results = json.loads(out.read_text())
    me = f"{SELF_HOST}-dev-client"
    assert [r["error"] for r in results] == [False, False], results
    assert results[0]["text"].startswith(f"{me}: tmux pane "), results
    (line,) = peer.wait_lines(1)
    assert line.startswith(f"[from {me} @ ") and line.endswith("] hello from mcp")


# --- start-up: the handshake from the cache, the SDK off the hot paths -------------------


def raw_start(env: dict[str, str] | None = None, protocol: str = "2025-06-18"
              ) -> tuple[float, dict[str, Any], dict[str, Any], subprocess.Popen[bytes]]:
    """Start the server, initialize, list the tools: (seconds, both answers, process)."""
    started = time.monotonic()
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "mcp"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    assert proc.stdin is not None and proc.stdout is not None

    def send(msg: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(msg).encode() + b"\n")
        proc.stdin.flush()

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
          "params": {"protocolVersion": protocol, "capabilities": {},
                     "clientInfo": {"name": "test", "version": "1"}}})
    init = json.loads(proc.stdout.readline())
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": "two", "method": "tools/list", "params": {}})
    tools = json.loads(proc.stdout.readline())
    return time.monotonic() - started, init, tools, proc


def test_the_handshake_comes_from_the_cache_while_the_sdk_loads(
    spawn: Spawner, isolated_env: Path
) -> None:
    tui = spawn.agent_tui("peer")
    cache = isolated_env / ".agents" / "cache" / "mcp-handshake.json"
    _, init1, tools1, proc = raw_start()  # a miss: the SDK answers, and fills the cache
    proc.communicate(timeout=30)
    assert init1["id"] == 1 and tools1["id"] == "two"
    (entry,) = json.loads(cache.read_text()).values()
    assert entry == {"initialize": init1["result"], "tools": tools1["result"]}
    warm = []
    for _ in range(3):
        seconds, init2, tools2, proc = raw_start()
        proc.communicate(timeout=30)
        assert init2 == init1 and tools2 == tools1
        warm.append(seconds)
    assert min(warm) < 1.0, warm  # bench/run.py holds it to 300 ms on a quiet machine
    # a hit still serves the whole session: every call is the SDK's
    seconds, _, _, proc = raw_start()
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "send", "arguments": {"to": tui.address, "text": "warm start"}}}).encode()
        + b"\n")
    proc.stdin.flush()
    assert proc.stdout is not None
    answer = json.loads(proc.stdout.readline())
    proc.stdin.close()
    proc.wait(timeout=30)
    assert answer["id"] == 3 and not answer["result"].get("isError"), answer
    assert tui.wait_lines(1)[0].endswith("] warm start")
    # another protocol version is another key; a broken cache is a miss, then rewritten
    _, init3, _, proc = raw_start(protocol="2025-03-26")
    proc.communicate(timeout=30)
    assert init3["result"]["protocolVersion"] == "2025-03-26"
    assert len(json.loads(cache.read_text())) == 2
    cache.write_text("{not json")
    _, init4, tools4, proc = raw_start()
    proc.communicate(timeout=30)
    assert init4 == init1 and tools4 == tools1 and len(json.loads(cache.read_text())) == 1


def test_the_sdk_stays_off_the_hook_and_delivery_paths() -> None:
    code = ("import sys\n"
            "import agent_mesh.cli.notify, agent_mesh.cli.hook, agent_mesh.cli.entry\n"
            "import agent_mesh.mesh.send, agent_mesh.delivery.receive, agent_mesh.mesh.rpc\n"
            "print(' '.join(m for m in ('mcp', 'mcp_types', 'pydantic', 'tomlkit', 'anyio')\n"
            "               if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_an_ask_whose_lifetime_ran_out_ends_and_a_late_reply_is_typed_in(
    spawn: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core behind ask/wait_reply: past its lifetime the ask ends (AskTimeout), and
    the asked agent's late reply is typed into the asking pane instead."""
    from agent_mesh.errors import AskTimeout
    from agent_mesh.mesh import delegate

    peer, caller = spawn.agent_tui("peer"), spawn.agent_tui("caller")
    for name, value in pane_env(spawn, caller.pane.pane_id).items():
        monkeypatch.setenv(name, value)
    asked = delegate.start_ask(peer.address, "quick?", lifetime=1.0)
    assert asked["route"] == caller.address and asked["outcome"] == "delivered"
    assert delegate.wait_reply(asked["id"], 0.2) is None
    with pytest.raises(AskTimeout, match=r"no reply from .* within the ask.s 1 s"):
        delegate.wait_reply(asked["id"], 5)
    res = reply_from_pane(spawn, peer.pane.pane_id, caller.address, asked["id"], "late")
    assert res.returncode == 0, res.stderr
    (line,) = caller.wait_lines(1)
    assert line.startswith(f"[from {peer.address} @ ") and line.endswith("] late")


def test_a_malformed_cache_entry_is_a_miss_never_a_lost_answer(isolated_env: Path) -> None:
    """An entry of the right key but the wrong shape (hand-edited, another writer) must
    not swallow the SDK's answer to initialize, nor be served as the answer."""
    cache = isolated_env / ".agents" / "cache" / "mcp-handshake.json"
    _, init1, tools1, proc = raw_start()
    proc.communicate(timeout=30)
    (key,) = json.loads(cache.read_text())
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "two", "method": "tools/list", "params": {}},
    ]
    for bad in (["initialize", "tools"], {"initialize": "x", "tools": tools1["result"]},
                {"initialize": init1["result"], "tools": ["whoami"]}):
        cache.write_text(json.dumps({key: bad}))
        proc = subprocess.Popen([str(BIN / "agent-mesh"), "mcp"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        proc.stdin.flush()
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(answers) < 2 and time.monotonic() < deadline:  # no answer: no line
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
            answers.append(json.loads(line))
        proc.stdin.close()
        proc.wait(timeout=30)
        assert [a["id"] for a in answers] == [1, "two"], (bad, answers)
        assert answers[0]["result"] == init1["result"], bad
        assert answers[1]["result"] == tools1["result"], bad
