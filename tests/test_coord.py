"""Coordinating on one host (issue 17): bulletin, decisions, advisory locks, task boards.

Agents are real registered tmux windows; each command runs as the agent of its pane
($TMUX and $TMUX_PANE, as inside that window), so holders are told apart by address.
Cross-host behaviour (authorities on other hosts, partitions, forged entries, claims
from three hosts) is in test_coord_lab.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, SELF_HOST, Pane, TmuxServer, retry_until, run_cli

from agent_mesh.registry.local import rescan
from agent_mesh.tmux import Tmux


class Agents:
    """Bash windows of session `dev`, registered, and commands run as each of them."""

    def __init__(self, server: TmuxServer) -> None:
        self.server = server
        self.panes: dict[str, Pane] = {}
        self.socket = ""

    def add(self, *names: str) -> None:
        for name in names:
            if self.server.run("has-session", "-t", "=dev", check=False).returncode:
                self.panes[name] = self.server.start("dev", name)
            else:
                self.panes[name] = self.server.new_window("dev", name)
        self.socket = self.server.run("display-message", "-p", "#{socket_path}").stdout.strip()
        rescan(Tmux())

    def address(self, name: str) -> str:
        return f"{SELF_HOST}-dev-{name}"

    def env(self, name: str) -> dict[str, str]:
        return {"TMUX": f"{self.socket},1,0", "TMUX_PANE": self.panes[name].pane_id}

    def run(self, name: str | None, *argv: str, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        return run_cli("agent-mesh", *argv, env=self.env(name) if name else None, input=input)

    def popen(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        import os

        env = {**os.environ, **self.env(name)}
        return subprocess.Popen([str(BIN / "agent-mesh"), *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def agents(tmux_server: TmuxServer) -> Agents:
    return Agents(tmux_server)


def ok(out: subprocess.CompletedProcess[bytes]) -> str:
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def locks_file(home: Path) -> list[dict[str, object]]:
    path = home / ".agents" / "coord" / "locks.json"
    return json.loads(path.read_text())["locks"] if path.exists() else []


# --- locks ----------------------------------------------------------------------------


def test_a_held_lock_names_its_holder_and_covers_what_is_below(agents: Agents,
                                                               tmp_path: Path) -> None:
    agents.add("alice", "bob")
    repo = tmp_path / "repo"
    ok(agents.run("alice", "lock", str(repo), "--intent", "refactor io", "--ttl", "1h"))
    for wanted in (repo / "src" / "io.py", repo, tmp_path):  # below it, itself, above it
        out = agents.run("bob", "lock", str(wanted))
        assert out.returncode == 3, out.stderr
        line = out.stderr.decode()
        assert line.count("\n") == 1 and agents.address("alice") in line
        assert "refactor io" in line and "since" in line and "expires in 1h" in line
    ok(agents.run("alice", "lock", str(repo / "src")))  # the holder's own: no conflict
    ok(agents.run("alice", "unlock", str(repo / "src")))
    ok(agents.run("bob", "lock", str(tmp_path / "elsewhere")))
    ok(agents.run("bob", "lock", f"{repo}2"))  # a sibling that shares a prefix is not below
    ok(agents.run("bob", "unlock", f"{repo}2"))
    table = ok(agents.run(None, "locks"))
    assert "refactor io" in table and agents.address("bob") in table
    doc = json.loads(ok(agents.run(None, "locks", "--json")))
    assert {(lk["path"], lk["who"]) for lk in doc["locks"]} == {
        (str(repo), agents.address("alice")), (str(tmp_path / "elsewhere"),
                                               agents.address("bob"))}


def test_lock_and_locks_write_the_same_lease_the_same_way(agents: Agents,
                                                         tmp_path: Path) -> None:
    """Review item 7: `lock` said `2h` and `locks` `in 1h` for the same fresh lease (one
    rounded, one cut); both write it with clock.duration now."""
    agents.add("alice")
    said = ok(agents.run("alice", "lock", str(tmp_path / "a"), "--ttl", "2h"))
    assert said.rstrip().endswith("is yours for 2h"), said
    time.sleep(1.2)  # a second later the lease has 1h59m58s left: still 2h, rounded
    [row] = [line for line in ok(agents.run(None, "locks")).splitlines() if "/a" in line]
    assert " in 2h " in f"{row} ", row
    from agent_mesh.clock import duration

    assert [duration(s) for s in (7199.4, 7169, 3599, 119.5, 61, 0.4, -5, 90000)] == [
        "2h", "1h59m", "1h", "2m", "1m1s", "0s", "0s", "1d1h"]


def test_a_lock_ends_at_its_ttl_and_another_agent_takes_it(agents: Agents,
                                                          tmp_path: Path) -> None:
    agents.add("alice", "bob")
    path = str(tmp_path / "repo")
    taken = time.monotonic()
    ok(agents.run("alice", "lock", path, "--ttl", "2s"))
    got = []

    def bob_gets_it() -> bool:
        out = agents.run("bob", "lock", path, "--ttl", "1m")
        got.append((time.monotonic() - taken, out.returncode))
        return out.returncode == 0

    retry_until(bob_gets_it, timeout=10)
    at, _ = got[-1]
    assert all(code == 3 for _, code in got[:-1]), got
    assert 2.0 <= at < 2.0 + 4.0, got  # not before its expiry, and soon after it
    doc = json.loads(ok(agents.run(None, "locks", "--json")))
    assert [(lk["path"], lk["who"]) for lk in doc["locks"]] == [(path, agents.address("bob"))]


def test_the_lock_of_a_closed_window_is_released_at_the_next_hook(
        agents: Agents, tmux_server: TmuxServer, isolated_env: Path, tmp_path: Path) -> None:
    agents.add("alice", "bob", "keep")
    tmux_server.install_hooks()
    ok(agents.run("alice", "lock", str(tmp_path / "a"), "--ttl", "1h"))
    ok(agents.run("bob", "lock", str(tmp_path / "b"), "--ttl", "1h"))
    assert agents.run("bob", "lock", str(tmp_path / "a")).returncode == 3
    tmux_server.run("kill-window", "-t", agents.panes["alice"].window_id)
    retry_until(lambda: [lk["who"] for lk in locks_file(isolated_env)]
                == [agents.address("bob")], timeout=10)
    log = (isolated_env / ".agents" / "hook.log").read_text()
    assert "released 1 lock(s)" in log
    ok(agents.run("bob", "lock", str(tmp_path / "a")))


def test_only_the_holder_unlocks_unless_forced_and_force_is_logged(
        agents: Agents, tmp_path: Path) -> None:
    agents.add("alice", "bob")
    path = str(tmp_path / "x")
    ok(agents.run("alice", "lock", path, "--intent", "migrate"))
    out = agents.run("bob", "unlock", path)
    assert out.returncode == 3 and b"--force" in out.stderr
    assert agents.run("bob", "unlock", str(tmp_path / "nothing")).returncode == 2
    assert "held by" in ok(agents.run("bob", "unlock", path, "--force"))
    doc = json.loads(ok(agents.run(None, "bulletin", "--json", "--tag", "lock")))
    [entry] = doc["entries"]
    assert entry["who"] == SELF_HOST and path in entry["text"]
    assert agents.address("alice") in entry["text"] and agents.address("bob") in entry["text"]


def test_wait_gets_the_lock_when_it_is_released_or_exits_6(agents: Agents,
                                                           tmp_path: Path) -> None:
    agents.add("alice", "bob")
    path = str(tmp_path / "w")
    ok(agents.run("alice", "lock", path))
    started = time.monotonic()
    out = agents.run("bob", "lock", path, "--wait", "1s")
    assert out.returncode == 6 and b"still held after 1s" in out.stderr, out.stderr
    assert 0.9 < time.monotonic() - started < 5
    waiter = agents.popen("bob", "lock", path, "--wait", "20s")
    time.sleep(0.5)
    ok(agents.run("alice", "unlock", path))
    assert waiter.wait(timeout=10) == 0, waiter.stderr.read() if waiter.stderr else ""


# --- the task board ---------------------------------------------------------------------


def test_concurrent_claims_have_exactly_one_winner(agents: Agents) -> None:
    names = [f"c{i}" for i in range(8)]
    agents.add(*names)
    ok(agents.run(None, "task", "add", "the one task"))
    procs = {n: agents.popen(n, "task", "claim", "1") for n in names}
    codes = {n: p.wait(timeout=60) for n, p in procs.items()}
    winners = [n for n, c in codes.items() if c == 0]
    assert len(winners) == 1, codes
    for name, proc in procs.items():
        if name not in winners:
            assert codes[name] == 3
            assert proc.stderr is not None
            assert agents.address(winners[0]).encode() in proc.stderr.read()


def test_a_board_from_add_to_done(agents: Agents) -> None:
    agents.add("alice", "bob")
    empty = ok(agents.run(None, "tasks"))
    assert "does not exist yet" in empty and "task add" in empty
    ok(agents.run(None, "task", "add", "write docs", "--role", "writer"))
    ok(agents.run(None, "task", "add", "fix the parser"))
    # --next --role: the first open task of that role or of none
    assert "claimed 2" in ok(agents.run("alice", "task", "claim", "--next", "--role", "coder"))
    assert "claimed 1" in ok(agents.run("bob", "task", "claim", "--next"))
    out = agents.run("alice", "task", "claim", "--next")
    assert out.returncode == 3 and b"nothing open" in out.stderr
    out = agents.run("alice", "task", "done", "1")
    assert out.returncode == 3 and agents.address("bob").encode() in out.stderr
    ok(agents.run("alice", "task", "done", "2", "--note", "see PR 7"))
    ok(agents.run("bob", "task", "drop", "1"))
    assert agents.run("bob", "task", "drop", "1").returncode == 3
    other = ok(agents.run(None, "tasks", "--board", "other"))
    assert "does not exist yet" in other and "(boards there: main@testhost)" in other
    doc = json.loads(ok(agents.run(None, "tasks", "--json")))
    states = {t["id"]: (t["state"], t.get("note")) for t in doc["tasks"]}
    assert states == {1: ("open", None), 2: ("done", "see PR 7")}
    assert agents.run(None, "task", "claim", "9").returncode == 2
    assert agents.run(None, "task", "claim").returncode == 1


def test_a_claim_whose_window_is_gone_is_shown_so_and_drop_stale_releases_it(
        agents: Agents, tmux_server: TmuxServer) -> None:
    agents.add("alice", "bob")
    ok(agents.run(None, "task", "add", "long job"))
    ok(agents.run("alice", "task", "claim", "1"))
    tmux_server.run("kill-window", "-t", agents.panes["alice"].window_id)
    rescan(Tmux())  # what the hook does
    out = agents.run(None, "tasks")
    assert "gone" in ok(out) and b"drop --stale" in out.stderr
    assert agents.run("bob", "task", "claim", "1").returncode == 3  # not taken silently
    assert "released stale claims on main@testhost: 1" in ok(
        agents.run("bob", "task", "drop", "--stale"))
    ok(agents.run("bob", "task", "claim", "1"))


def test_notify_messages_the_subscribers_through_the_delivery_path(spawn, agents: Agents
                                                                   ) -> None:  # type: ignore[no-untyped-def]
    watcher = spawn.py_receiver("watcher")
    agents.add("alice")
    ok(agents.run(None, "task", "add", "ship it", "--notify", watcher.address))
    out = ok(agents.run("alice", "task", "claim", "1"))
    assert f"notified {watcher.address}" in out
    lines = watcher.wait_lines(1)
    assert "[board main@testhost] task 1 claimed by testhost-dev-alice: ship it" in lines[0]


# --- bulletin and decisions ---------------------------------------------------------------


def test_posts_and_decisions(agents: Agents, isolated_env: Path) -> None:
    agents.add("alice")
    empty = ok(agents.run(None, "bulletin"))
    assert "no entries on testhost" in empty and "agent-mesh post" in empty
    assert "no decisions in force" in ok(agents.run(None, "decisions"))
    ok(agents.run("alice", "post", "merged #42", "--tag", "git"))
    ok(agents.run(None, "post", "rebooted the build box"))
    doc = json.loads(ok(agents.run(None, "bulletin", "--json")))
    assert [(e["who"], e["text"]) for e in doc["entries"]] == [
        (agents.address("alice"), "merged #42"), (SELF_HOST, "rebooted the build box")]
    assert [e["text"] for e in json.loads(ok(agents.run(None, "bulletin", "--json", "--tag",
                                                        "git")))["entries"]] == ["merged #42"]
    assert "no matching entries" in ok(agents.run(None, "bulletin", "--since", "1s", "--tag",
                                                  "nope"))
    assert "d1@testhost" in ok(agents.run("alice", "decide", "tabs", "--because", "taste"))
    ok(agents.run(None, "decide", "spaces", "--because", "pep 8", "--supersedes", "d1@testhost"))
    assert agents.run(None, "decide", "x", "--because", "y", "--supersedes",
                      "d9@testhost").returncode == 1
    table = ok(agents.run(None, "decisions"))
    assert "spaces" in table and "tabs" not in table
    assert "tabs (superseded)" in ok(agents.run(None, "decisions", "--all"))
    folder = isolated_env / ".agents" / "coord"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [folder, *folder.rglob("*")]}
    assert modes["coord"] == "0o700" and modes["bulletin.jsonl"] == "0o600", modes
    assert set(modes.values()) <= {"0o700", "0o600"}, modes


def test_concurrent_posts_are_all_kept(agents: Agents) -> None:
    agents.add("a", "b")
    procs = [agents.popen("a" if i % 2 else "b", "post", f"entry {i}") for i in range(16)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 16
    doc = json.loads(ok(agents.run(None, "bulletin", "--json")))
    assert sorted(e["text"] for e in doc["entries"]) == sorted(f"entry {i}" for i in range(16))


def test_hostile_input_is_refused_or_sanitised(agents: Agents, isolated_env: Path) -> None:
    agents.add("alice")
    out = agents.run("alice", "post", "-", input=b"x" * (1024 * 1024))
    assert out.returncode == 1 and b"1048576 bytes; at most 8192" in out.stderr
    assert out.stderr.count(b"\n") == 1
    ok(agents.run("alice", "post", "evil\x1b]52;c;aGk=\x07 text\r\nnext\u202eline\x9b2J"))
    [entry] = json.loads(ok(agents.run(None, "bulletin", "--json")))["entries"]
    assert "\x1b" not in entry["text"] and "\u202e" not in entry["text"]
    assert "\x9b" not in entry["text"] and "\r" not in entry["text"]
    assert entry["text"].startswith("evil") and "next" in entry["text"]
    shown = ok(agents.run(None, "bulletin"))
    assert "\x1b" not in shown and "\x07" not in shown
    for argv in (["lock", "/tmp/a\nb"], ["lock", "/tmp/\x1b[2Jx"], ["post", "x", "--tag", "a b"],
                 ["task", "add", "t", "--board", "../etc@testhost"],
                 ["task", "add", "t", "--board", "main@nohost"], ["post", "  \n "],
                 ["lock", "/tmp/x", "--ttl", "forever"], ["lock", "/tmp/x", "--ttl", "30d"],
                 ["task", "add", "x" * 9000], ["bulletin", "--since", "yesterday"],
                 ["decide", "y" * 9000, "--because", "big"]):
        out = agents.run("alice", *argv)
        assert out.returncode == 1, (argv, out)
        assert out.stderr.count(b"\n") == 1 and b"Traceback" not in out.stderr, (argv, out)
    assert not (isolated_env / ".agents" / "coord" / "boards").exists() or not list(
        (isolated_env / ".agents" / "coord" / "boards").glob("*.json"))
    out = agents.run("alice", "post", "-", input=b"bad \xff utf-8")
    assert out.returncode == 1 and b"not valid UTF-8" in out.stderr
    # what was refused left nothing behind; what was kept is all there
    assert len(json.loads(ok(agents.run(None, "bulletin", "--json")))["entries"]) == 1
    assert "no decisions" in ok(agents.run(None, "decisions"))


def test_every_command_has_help() -> None:
    for argv in (["post"], ["bulletin"], ["decide"], ["decisions"], ["lock"], ["unlock"],
                 ["locks"], ["task"], ["task", "add"], ["task", "claim"], ["task", "done"],
                 ["task", "drop"], ["task", "notify"], ["tasks"]):
        out = run_cli("agent-mesh", *argv, "--help")
        assert out.returncode == 0 and b"Usage: agent-mesh" in out.stdout, argv
    top = ok(run_cli("agent-mesh", "--help"))
    for name in ("post", "bulletin", "decide", "decisions", "lock", "unlock", "locks", "task",
                 "tasks"):
        assert f"  {name} " in top


def test_a_lock_path_that_would_show_as_another_is_refused(agents: Agents) -> None:
    """A bidi override (or any character `locks` cannot show as it is) in a path made a
    lock on `/tmp/\u202eevil` that every listing showed as `/tmp/evil`: refused."""
    agents.add("alice")
    for path in ("/tmp/\u202eevil", "/tmp/a\u200bb", "/tmp/nb\u00a0sp"):
        out = agents.run("alice", "lock", path)
        assert out.returncode == 1 and out.stderr.count(b"\n") == 1, (path, out)
    ok(agents.run("alice", "lock", "/tmp/ünï code"))  # printable Unicode is fine
