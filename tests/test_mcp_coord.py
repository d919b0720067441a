"""`agent-mesh mcp`'s coordination tools (issue 17's commands as tools) over real stdio.

The server is a real child process driven by the SDK's client (as in test_mcp.py); the
callers are real registered panes of the test's private tmux server, whose $TMUX and
$TMUX_PANE the server gets as an agent CLI in that pane would pass them. So the poster
or holder of each entry, lock and claim is the calling pane's address.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SELF_HOST, Spawner, TmuxServer
from test_doctor import closed_port, ssh_config, tools  # noqa: F401 (fixtures)
from test_mcp import HOSTILE, clean, pane_env, raw_start, session
from test_mcp import call as sdk_call

pytest.importorskip("mcp")

from mcp import ClientSession

COORD_TOOLS = {
    "post": ["text", "tag"], "bulletin": ["since", "tag", "host", "limit"],
    "decide": ["title", "because", "supersedes"], "decisions": ["all"],
    "lock": ["path", "host", "intent", "ttl", "wait"], "unlock": ["path", "host", "force"],
    "locks": ["host"], "task_add": ["title", "board", "role", "notify"],
    "task_claim": ["id", "next", "role", "board"], "task_done": ["id", "note", "board"],
    "task_drop": ["id", "stale", "board"], "tasks": ["board"],
}
OPT_IN = "override_refusals = true under [mcp] in ~/.agents/config.toml"


async def call(s: ClientSession, tool: str, **args: Any) -> tuple[bool, str]:
    """(is_error, text), the SDK's `Error executing tool NAME: ` taken off an error."""
    err, text = await sdk_call(s, tool, **args)
    return err, text.removeprefix(f"Error executing tool {tool}: ") if err else text


def test_the_coordination_tools_are_listed_with_descriptions() -> None:
    async def body() -> None:
        async with session() as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
        for name, args in COORD_TOOLS.items():
            assert list(tools[name].input_schema.get("properties", {})) == args, name
            assert len(tools[name].description or "") > 60, name
        required = {n: sorted(tools[n].input_schema.get("required", [])) for n in COORD_TOOLS}
        assert required["post"] == ["text"] and required["lock"] == ["path"]
        assert required["decide"] == ["because", "title"] and required["task_done"] == ["id"]
        assert required["task_claim"] == [] and required["tasks"] == []
        wait = tools["lock"].input_schema["properties"]["wait"]
        assert "at most 50" in wait["description"], wait  # as wait_reply: under 60 s

    anyio.run(body)
    from agent_mesh.cli.mcp_coord import MAX_WAIT

    assert MAX_WAIT <= 50


def test_a_claim_whose_window_closed_shows_gone_and_stale_releases_it(
    spawn: Spawner, tmux_server: TmuxServer
) -> None:
    alice, bob = spawn.agent_tui("alice"), spawn.agent_tui("bob")

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as a:
            assert not (await call(a, "task_add", title="long job"))[0]
            err, text = await call(a, "task_claim", id=1)
            assert not err, text
        tmux_server.run("kill-window", "-t", alice.pane.window_id)
        spawn.register()  # what the hook does
        async with session(pane_env(spawn, bob.pane.pane_id)) as b:
            err, text = await call(b, "tasks")
            assert not err and f"{alice.address} (" in text and " gone" in text, text
            assert text.endswith("claims marked gone: their window closed; "
                                 f'task_drop(stale=true, board="main@{SELF_HOST}") opens them '
                                 "again"), text
            err, text = await call(b, "task_claim", id=1)
            assert err and f"claimed by {alice.address}" in text, text
            err, text = await call(b, "task_drop", stale=True)
            assert not err and text == f"released stale claims on main@{SELF_HOST}: 1", text
            err, text = await call(b, "task_claim", id=1)
            assert not err, text

    anyio.run(body)


# --- bulletin and decisions ---------------------------------------------------------------


def test_post_and_bulletin_and_decisions_as_the_calling_pane(spawn: Spawner) -> None:
    alice = spawn.agent_tui("alice")
    env = {**pane_env(spawn, alice.pane.pane_id), "AGENT_NAME": "spoofed"}

    async def body() -> None:
        async with session(env) as s:
            err, text = await call(s, "bulletin")
            assert not err and text == (f"no entries on {SELF_HOST}: post what you did with "
                                        "the post tool"), text
            err, text = await call(s, "post", text="merged #42 into main", tag="git, release")
            assert not err and text.startswith("posted ") and \
                text.endswith(f" as {alice.address}"), text
            err, text = await call(s, "post", text="fixed the parser")
            assert not err, text
            err, text = await call(s, "bulletin")
            assert not err and text.startswith("TIME (UTC)"), text
            rows = text.splitlines()[1:]
            assert len(rows) == 2 and all(alice.address in r for r in rows), text
            assert rows[0].endswith("merged #42 into main  #git #release")
            assert "spoofed" not in text
            err, text = await call(s, "bulletin", tag="git", since="1h", limit=5)
            assert not err and "merged #42" in text and "parser" not in text, text
            err, text = await call(s, "bulletin", limit=1)
            assert not err and "parser" in text and "merged" not in text, text
            err, text = await call(s, "bulletin", since="soon")
            assert err and "bad duration" in text, text
            err, text = await call(s, "post", text="x", tag="bad tag!")
            assert err and "bad tag" in text, text

            err, text = await call(s, "decisions")
            assert not err and text.startswith("no decisions in force: record one with "
                                               "decide("), text
            err, text = await call(s, "decide", title="ship on Fridays", because="users")
            assert not err and text == f"recorded d1@{SELF_HOST}", text
            err, text = await call(s, "decide", title="never ship on Fridays",
                                   because="outages", supersedes=f"d1@{SELF_HOST}")
            assert not err and text == f"recorded d2@{SELF_HOST} (supersedes d1@{SELF_HOST})"
            err, text = await call(s, "decisions")
            assert not err and "never ship on Fridays" in text and "\nd1@" not in text, text
            assert alice.address in text and "because outages" in text
            err, text = await call(s, "decisions", all=True)
            assert not err and "(superseded)" in text, text
            err, text = await call(s, "decide", title="x", because="y",
                                   supersedes=f"d9@{SELF_HOST}")
            assert err and f"no decision d9@{SELF_HOST}" in text, text

    anyio.run(body)


# --- locks ----------------------------------------------------------------------------------


def test_a_held_lock_is_a_tool_error_naming_holder_intent_and_expiry(
    spawn: Spawner, tmp_path: Path
) -> None:
    alice, bob = spawn.agent_tui("alice"), spawn.agent_tui("bob")
    repo = tmp_path / "repo"

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as a, \
                session(pane_env(spawn, bob.pane.pane_id)) as b:
            err, text = await call(a, "locks")
            assert not err and text.startswith(f"no locks held on {SELF_HOST}: the lock "
                                               "tool takes one"), text
            err, text = await call(a, "lock", path=str(repo), intent="refactor io", ttl="1h")
            assert not err and text.startswith(f"{SELF_HOST}:{repo} is yours for "), text
            err, text = await call(b, "lock", path=str(repo / "src"))
            assert err and text.startswith(f"{SELF_HOST}:{repo} is locked by {alice.address} "
                                           "(refactor io) since "), text
            assert "expires in 59m" in text or "expires in 1h" in text, text
            started = time.monotonic()
            err, text = await call(b, "lock", path=str(repo), wait=1)
            assert err and text.startswith("still held after 1s: ") and alice.address in text
            assert 0.9 < time.monotonic() - started < 6
            err, text = await call(b, "locks")
            assert not err and text.startswith("PATH") and alice.address in text, text
            assert "refactor io" in text
            # only the holder unlocks; force is the user's opt-in, not the agent's
            err, text = await call(b, "unlock", path=str(repo))
            assert err and OPT_IN in text and "--force" not in text, text
            err, text = await call(b, "unlock", path=str(repo), force=True)
            assert err and OPT_IN in text, text
            err, text = await call(b, "unlock", path=str(tmp_path / "nothing"))
            assert err and "no lock on" in text, text
            err, text = await call(b, "lock", path=str(repo), ttl="later")
            assert err and "ttl" in text, text

            # a waiting lock gets it once released, and the session's other calls run
            async def release() -> None:
                await anyio.sleep(1.0)
                err, text = await call(a, "unlock", path=str(repo))
                assert not err and text == f"released {SELF_HOST}:{repo}", text

            got: dict[str, tuple[bool, str]] = {}

            async def waiter() -> None:
                got["lock"] = await call(b, "lock", path=str(repo), wait=20, intent="next")

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.3)
                started = time.monotonic()
                err, text = await call(b, "tasks")  # not blocked by the waiting lock
                assert not err and time.monotonic() - started < 3 and "lock" not in got
                tg.start_soon(release)
            err, text = got["lock"]
            assert not err and text.startswith(f"{SELF_HOST}:{repo} is yours"), text
            err, text = await call(a, "locks")
            assert bob.address in text and "next" in text, text

    anyio.run(body)


def test_the_users_opt_in_lets_agents_force_an_unlock(
    spawn: Spawner, tmp_path: Path, isolated_env: Path
) -> None:
    alice, bob = spawn.agent_tui("alice"), spawn.agent_tui("bob")
    path = str(tmp_path / "x")
    (isolated_env / ".agents" / "config.toml").write_text("[mcp]\noverride_refusals = true\n")

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as a, \
                session(pane_env(spawn, bob.pane.pane_id)) as b:
            err, text = await call(a, "lock", path=path, intent="migrate")
            assert not err, text
            err, text = await call(b, "unlock", path=path)
            assert err and "force=true overrides it, which is logged" in text, text
            err, text = await call(b, "unlock", path=path, force=True)
            assert not err and text == (f"released {SELF_HOST}:{path} (held by "
                                        f"{alice.address}; logged)"), text
            err, text = await call(b, "bulletin", tag="lock")
            assert not err and alice.address in text and bob.address in text, text

    anyio.run(body)


# --- task boards ------------------------------------------------------------------------------


def test_a_board_from_add_to_done_through_tools(spawn: Spawner) -> None:
    alice, bob = spawn.agent_tui("alice"), spawn.agent_tui("bob")
    watcher = spawn.py_receiver("watcher")

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as a, \
                session(pane_env(spawn, bob.pane.pane_id)) as b:
            err, text = await call(a, "tasks")
            assert not err and text.startswith(f"board main@{SELF_HOST} does not exist yet: "
                                               "task_add(title"), text
            err, text = await call(a, "task_add", title="write docs", role="writer",
                                   notify=watcher.address)
            assert not err and text == f"added task 1 on main@{SELF_HOST}", text
            err, text = await call(a, "task_add", title="fix the parser")
            assert not err, text
            err, text = await call(a, "task_claim", next=True, role="coder")
            assert not err and text.startswith(f"claimed task 2 on main@{SELF_HOST}: fix the "
                                               "parser"), text
            err, text = await call(b, "task_claim", id=1)
            assert not err and f"notified {watcher.address}" in text, text
            err, text = await call(a, "task_claim", next=True)
            assert err and "nothing open" in text, text
            err, text = await call(a, "task_claim")
            assert err and "give a task id or next=true" in text, text
            err, text = await call(a, "task_done", id=1)
            assert err and f"claimed by {bob.address}, not you" in text, text
            err, text = await call(a, "task_done", id=2, note="see PR 7")
            done = f"task 2 on main@{SELF_HOST} is done\nnotified "
            assert not err and text.startswith(done), text
            err, text = await call(b, "task_drop", id=1)
            assert not err and "it is open again" in text, text
            err, text = await call(b, "task_drop", id=1)
            assert err and "not claimed by you" in text, text
            err, text = await call(b, "task_claim", id=9)
            assert err and "no task 9" in text, text
            err, text = await call(b, "tasks")
            assert not err and text.startswith("ID"), text
            assert "fix the parser — see PR 7" in text and alice.address in text, text
            err, text = await call(b, "tasks", board="other")
            assert not err and f"(boards there: main@{SELF_HOST})" in text, text
            err, text = await call(b, "task_drop", stale=True)
            assert not err and text == f"released stale claims on main@{SELF_HOST}: none"

    anyio.run(body)
    lines = watcher.wait_lines(3)
    assert f"task 2 claimed by {alice.address}: fix the parser" in lines[0], lines
    assert f"task 1 claimed by {bob.address}: write docs" in lines[1], lines
    assert "task 2 done by" in lines[2] and "(note: see PR 7)" in lines[2], lines


async def claim(got: dict[str, tuple[bool, str]], who: str, s: ClientSession,
                ident: int) -> None:
    got[who] = await call(s, "task_claim", id=ident)


def test_a_claim_race_between_two_clients_has_exactly_one_winner(spawn: Spawner) -> None:
    alice, bob = spawn.agent_tui("alice"), spawn.agent_tui("bob")
    names = {alice.address: "a", bob.address: "b"}

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as a, \
                session(pane_env(spawn, bob.pane.pane_id)) as b:
            for n in range(1, 4):
                err, text = await call(a, "task_add", title=f"the one task {n}")
                assert not err, text
                got: dict[str, tuple[bool, str]] = {}

                async with anyio.create_task_group() as tg:
                    tg.start_soon(claim, got, "a", a, n)
                    tg.start_soon(claim, got, "b", b, n)
                winners = [w for w, (err, _) in got.items() if not err]
                assert len(winners) == 1, got
                (loser,) = set(got) - set(winners)
                err, text = got[loser]
                winner = next(addr for addr, w in names.items() if w == winners[0])
                assert text == f"task {n} on main@{SELF_HOST} is claimed by {winner}", got

    anyio.run(body)


# --- hostile input and the authority out of reach ---------------------------------------------


def test_hostile_text_comes_back_stripped(spawn: Spawner, tmp_path: Path,
                                          isolated_env: Path) -> None:
    alice = spawn.agent_tui("alice")
    raw = {"id": "feedbeef", "time": time.time(), "host": SELF_HOST, "who": f"x{HOSTILE}",
           "text": f"raw {HOSTILE}", "tags": []}  # as if written around the core
    (isolated_env / ".agents" / "coord").mkdir(mode=0o700, exist_ok=True)
    with (isolated_env / ".agents" / "coord" / "bulletin.jsonl").open("a") as fh:
        fh.write(json.dumps(raw) + "\n")

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as s:
            for tool, args in [("post", {"text": f"did {HOSTILE}\nsecond line"}),
                               ("decide", {"title": f"t {HOSTILE}", "because": HOSTILE}),
                               ("task_add", {"title": f"task {HOSTILE}"}),
                               ("lock", {"path": str(tmp_path / "p"), "intent": HOSTILE})]:
                err, text = await call(s, tool, **args)
                assert not err and clean(text), (tool, text)
            for tool in ("bulletin", "decisions", "tasks", "locks"):
                err, text = await call(s, tool)
                assert not err and clean(text) and "okevil" in text, (tool, repr(text))
            err, text = await call(s, "bulletin")
            assert "raw " in text and "did " in text, text
            err, text = await call(s, "lock", path=f"{tmp_path}/\x1b[2Jbad")
            assert err and clean(text) and "bad path" in text, text
            err, text = await call(s, "tasks", board=f"x{HOSTILE}")
            assert err and clean(text) and "bad board name" in text, text

    anyio.run(body)


def test_an_unreachable_authority_is_a_tool_error_naming_it(
    spawn: Spawner, isolated_env: Path, ssh_config: Path  # noqa: F811
) -> None:
    alice = spawn.agent_tui("alice")
    ssh_config.write_text(f"Host deadpeer\n    HostName 127.0.0.1\n    Port {closed_port()}\n")
    (isolated_env / ".agents" / "peers.conf").write_text(f"{SELF_HOST}\ndeadpeer\n")

    async def body() -> None:
        async with session(pane_env(spawn, alice.pane.pane_id)) as s:
            for tool, args in [("task_claim", {"id": 1, "board": "main@deadpeer"}),
                               ("task_add", {"title": "t", "board": "main@deadpeer"}),
                               ("lock", {"path": "deadpeer:/srv/app"}),
                               ("unlock", {"path": "/srv/app", "host": "deadpeer"})]:
                started = time.monotonic()
                err, text = await call(s, tool, **args)
                assert err and text.startswith("deadpeer holds ") and \
                    "cannot be reached" in text and "nothing was changed" in text, (tool, text)
                assert time.monotonic() - started < 8, tool
            err, text = await call(s, "lock", path="/srv/app", intent="mine")
            assert not err, text
            err, text = await call(s, "locks")  # deadpeer's locks are unknown: an error
            assert err and f"{SELF_HOST}:/srv/app" in text and "deadpeer: unreachable" in text
            err, text = await call(s, "bulletin")  # a read names the host, as the CLI does
            assert not err and "deadpeer: unreachable" in text, text

    anyio.run(body)


# --- the handshake cache follows the tool list ---------------------------------------------


def test_the_handshake_key_changes_with_the_tool_list(tmp_path: Path) -> None:
    from agent_mesh.cli import mcp_coord, mcp_server
    from agent_mesh.cli.mcp_stdio import handshake_key, tools_signature

    files = [mcp_server.__file__, mcp_coord.__file__]
    params = {"protocolVersion": "2025-06-18", "capabilities": {}}
    now = handshake_key(params, tools_signature(files, mcp_server.TOOL_DOCS))
    fewer = {k: v for k, v in mcp_server.TOOL_DOCS.items() if k not in mcp_coord.TOOL_DOCS}
    assert handshake_key(params, tools_signature(files, fewer)) != now
    reworded = {**mcp_server.TOOL_DOCS, "post": "something else"}
    assert handshake_key(params, tools_signature(files, reworded)) != now
    copy = tmp_path / "mcp_coord.py"
    copy.write_text(Path(mcp_coord.__file__).read_text())
    assert handshake_key(params, tools_signature([files[0], str(copy)],
                                                 mcp_server.TOOL_DOCS)) != now
    assert handshake_key(params, tools_signature(files, dict(mcp_server.TOOL_DOCS))) == now


def test_a_cached_tool_list_without_the_new_tools_is_not_served(isolated_env: Path) -> None:
    """A cache filled by a server with fewer tools (the same versions otherwise) is a miss:
    the client sees every tool."""
    from agent_mesh.cli import mcp_coord, mcp_server
    from agent_mesh.cli.mcp_stdio import handshake_key, tools_signature

    files = [mcp_server.__file__, mcp_coord.__file__]
    fewer = {k: v for k, v in mcp_server.TOOL_DOCS.items() if k not in mcp_coord.TOOL_DOCS}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}}
    _, init, listed, proc = raw_start()
    proc.communicate(timeout=30)
    cache = isolated_env / ".agents" / "cache" / "mcp-handshake.json"
    ((key, entry),) = json.loads(cache.read_text()).items()
    assert key == handshake_key(params, tools_signature(files, mcp_server.TOOL_DOCS))
    assert len(entry["tools"]["tools"]) == len(mcp_server.TOOL_DOCS) == 21
    # what the nine-tool server left behind, keyed as it would have been
    old = {"initialize": init["result"],
           "tools": {"tools": [t for t in listed["result"]["tools"] if t["name"] in fewer]}}
    cache.write_text(json.dumps({handshake_key(params, tools_signature(files, fewer)): old}))
    _, _, tools2, proc = raw_start()
    proc.communicate(timeout=30)
    assert len(tools2["result"]["tools"]) == 21
    assert os.path.exists(cache) and len(json.loads(cache.read_text())) == 2
