"""The registry on real tmux: several servers, addresses that never move, stale
entries refused, private files, swept temporaries, and the error messages a
newcomer meets (issues 7.3, 7.5, 8.7, 8.9, 8.11, 8.12, 8.17)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, SELF_HOST, Spawner, TmuxServer, notify, retry_until, run_cli

SLOW = 30.0


def agents_dir() -> Path:
    return Path.home() / ".agents"


def read_agents(name: str = "local.toml") -> dict[str, dict[str, str]]:
    try:
        return tomllib.loads((agents_dir() / name).read_text()).get("agents", {})
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return {}


def tmux(*args: str, socket: str | None = None) -> str:
    base = ["tmux", *(["-L", socket] if socket else [])]
    return subprocess.run([*base, *args], capture_output=True, text=True, check=True).stdout


def hook_log() -> str:
    path = agents_dir() / "hook.log"
    return path.read_text(errors="replace") if path.exists() else ""


def socket_path(socket: str | None = None) -> str:
    return tmux("display-message", "-p", "#{socket_path}", socket=socket).strip()


# --- several tmux servers (7.3) -------------------------------------------------


@pytest.fixture
def other_server() -> Iterator[None]:
    """Kill `tmux -L other` after the test, passed or failed: a server left running
    outlives the test's temp dir (issue 8.17)."""
    yield
    subprocess.run(["tmux", "-L", "other", "kill-server"], capture_output=True, check=False)


def _start_other(spawn: Spawner) -> None:
    """A second server, `tmux -L other`, with the hooks loaded, session work, window y."""
    tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40", "-s", "work",
         "-n", "y", "env", "PS1=$ ", f"HISTFILE={spawn.tmp / 'other.history'}",
         "PROMPT_COMMAND=history -a", "bash", "--norc", "--noprofile", socket="other")
    tmux("set-option", "-w", "-t", "=work:y", "@agent-accept", "shell", socket="other")
    tmux("source-file", str(REPO / "agent_mesh/ops/data/tmux.conf.snippet"), socket="other")


def test_a_second_server_rewrites_only_its_own_entries(spawn: Spawner,
                                                       other_server: None) -> None:
    sh = spawn.bash("sh")
    spawn.server.new_window("dev", "x")
    spawn.server.install_hooks()
    spawn.server.new_window("dev", "z")
    retry_until(lambda: len(read_agents()) == 3, timeout=SLOW)
    default = dict(read_agents())
    _start_other(spawn)
    tmux("new-window", "-d", "-t", "=work:", "-n", "y2", socket="other")  # fires its hooks
    other = f"{SELF_HOST}-other-work-y"
    retry_until(lambda: {other, f"{other}2"} <= set(read_agents()), timeout=SLOW)
    tables = read_agents()
    assert {a: t for a, t in tables.items() if a in default} == default  # untouched
    assert len(tables) == 5
    assert tables[other]["socket"] == socket_path("other")
    assert {tables[a]["socket"] for a in default} == {socket_path()}
    assert read_agents("registry.toml") == tables
    # delivery goes to that server's pane, not the default server's pane of that id
    out = notify(other, "echo to-other")
    assert out.returncode == 0, out.stderr
    log = spawn.tmp / "other.history"
    retry_until(lambda: log.exists() and "[from tester" in log.read_text(), timeout=15)
    assert sh.lines() == []
    # closing that server removes only its entries (the next discover: its socket is dead)
    tmux("kill-server", socket="other")
    out = run_cli("agent-discover")
    assert out.returncode == 0, out.stderr
    assert read_agents() == default


def test_same_names_on_two_servers_never_collide(spawn: Spawner, other_server: None) -> None:
    spawn.server.start("work", "y")
    _start_other(spawn)
    assert run_cli("agent-discover").returncode == 0
    out = subprocess.run(["tmux", "-L", "other", "new-window", "-d", "-t", "=work:"],
                         check=True)
    assert out.returncode == 0
    env = {"TMUX": f"{socket_path('other')},1,0"}
    assert run_cli("agent-register-hook", "rescan", env=env).returncode == 0
    tables = read_agents()
    assert tables[f"{SELF_HOST}-work-y"]["socket"] == socket_path()
    assert tables[f"{SELF_HOST}-other-work-y"]["socket"] == socket_path("other")
    assert len(tables) == 3


# --- addresses never move (7.5) -------------------------------------------------


def test_closing_a_window_never_renames_its_sibling(tmux_server: TmuxServer) -> None:
    tmux_server.start("main")
    tmux("new-session", "-d", "-s", "dup", "-n", "w")
    tmux("new-window", "-d", "-t", "=dup:1", "-n", "w")
    tmux_server.install_hooks()
    assert run_cli("agent-discover").returncode == 0
    tables = read_agents()
    second = tables[f"{SELF_HOST}-dup-w-2"]
    tmux("kill-window", "-t", "=dup:0")
    retry_until(lambda: f"{SELF_HOST}-dup-w" not in read_agents(), timeout=SLOW)
    tables = read_agents()
    assert tables[f"{SELF_HOST}-dup-w-2"]["window_id"] == second["window_id"]
    assert run_cli("agent-discover").returncode == 0
    assert read_agents()[f"{SELF_HOST}-dup-w-2"]["window_id"] == second["window_id"]
    assert f"{SELF_HOST}-dup-w" not in read_agents()


def test_a_collision_never_steals_the_holders_address(tmux_server: TmuxServer) -> None:
    tmux_server.start("a-b", "c")
    assert run_cli("agent-discover").returncode == 0
    holder = read_agents()[f"{SELF_HOST}-a-b-c"]["window_id"]
    tmux("new-session", "-d", "-s", "a", "-n", "b-c")
    assert run_cli("agent-discover").returncode == 0
    tables = read_agents()
    assert tables[f"{SELF_HOST}-a-b-c"]["window_id"] == holder
    assert tables[f"{SELF_HOST}-a-b-c-2"]["session"] == "a"
    out = run_cli("agent-register-hook", "on", "a")
    assert out.returncode == 0
    assert read_agents()[f"{SELF_HOST}-a-b-c"]["window_id"] == holder


def test_a_moved_pane_is_refused_as_out_of_date(spawn: Spawner) -> None:
    spawn.bash("sh")
    target = spawn.bash("w")
    tmux("join-pane", "-d", "-s", target.pane.pane_id, "-t", "=dev:0")  # now in window @0
    out = notify(target.address, "hello")
    assert out.returncode == 2, out
    err = out.stderr.decode()
    assert "the registry is out of date" in err and f"agent-discover on {SELF_HOST}" in err
    assert err.count("\n") == 1
    tmux("kill-pane", "-t", target.pane.pane_id)
    out = notify(target.address, "hello")
    assert out.returncode == 2 and b"out of date" in out.stderr
    assert target.lines() == []


# --- the last session's close (8.17) ---------------------------------------------


def test_a_server_with_no_session_left_empties_its_entries(tmux_server: TmuxServer) -> None:
    """What the last session's close hook often meets: the server is still up but has
    no session, and `list-windows -a` answers `no current target`."""
    tmux_server.start("main")
    assert run_cli("agent-discover").returncode == 0
    assert read_agents()
    tmux("set-option", "-g", "exit-empty", "off")
    tmux("kill-session", "-t", "=main")
    env = {"TMUX": f"{socket_path()},1,0"}
    out = run_cli("agent-register-hook", "rescan", "session-closed", env=env)
    assert out.returncode == 0
    assert read_agents() == {} and read_agents("registry.toml") == {}, hook_log()
    assert "error" not in hook_log()


def test_the_last_close_hook_runs_before_tmux_exits(tmux_server: TmuxServer) -> None:
    text = (REPO / "agent_mesh/ops/data/tmux.conf.snippet").read_text()
    line = next(x for x in text.splitlines() if x.startswith("set-hook -g 'session-closed"))
    assert "run-shell -b" not in line  # a -b job may never start once the server exits
    for _ in range(5):
        tmux_server.start("main")
        tmux_server.install_hooks()
        tmux("new-window", "-d", "-t", "=main:", "-n", "w")
        retry_until(lambda: len(read_agents()) == 2, timeout=SLOW)
        tmux("kill-session", "-t", "=main")
        retry_until(lambda: read_agents() == {}, timeout=SLOW)
        retry_until(lambda: "no server running" in tmux_server.run(  # that server has exited
            "list-sessions", check=False).stderr, timeout=SLOW)
    assert "error" not in hook_log(), hook_log()  # no close hook failed on an exiting server


# --- private files, swept temporaries (8.7, 8.9) ---------------------------------


def test_agents_dir_and_files_are_private_whoever_creates_them(
    tmux_server: TmuxServer, isolated_env: Path
) -> None:
    os.umask(0o022)
    for path in sorted(agents_dir().iterdir()):
        path.unlink()
    agents_dir().rmdir()
    tmux_server.start("main")
    tmux_server.install_hooks()
    tmux("new-window", "-d", "-t", "=main:", "-n", "w")  # the hook creates ~/.agents
    retry_until(lambda: len(read_agents()) == 2, timeout=SLOW)
    assert run_cli("agent-discover").returncode == 0
    (agents_dir() / "peers.conf").write_text("nosuchpeer\n")
    run_cli("agent-mesh", "sync", env={"AGENT_MESH_SSH_TIMEOUT": "1"}, timeout=120)
    assert stat.S_IMODE(agents_dir().stat().st_mode) == 0o700
    loose = [
        f"{p.relative_to(agents_dir())} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in agents_dir().rglob("*")
        if p.name != "peers.conf" and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert loose == []
    for name in ("local.toml", "registry.toml", "hook.log"):
        assert stat.S_IMODE((agents_dir() / name).stat().st_mode) == 0o600, name


def test_log_queue_and_locks_are_private_whatever_the_umask(spawn: Spawner) -> None:
    """Issue 21.19: ~/.agents/log, queue and locks are 0700 and queue.log 0600 under
    umask 022, as the README promises (each is made by the one helper, fsutil.make_dirs,
    or opened by fsutil.append_private)."""
    old = os.umask(0o022)
    try:
        tui = spawn.agent_tui()
        tui.pane.send_keys("a draft", literal=True)
        tui.pane.wait_for("a draft")
        assert notify("--queue", tui.address, "queued").returncode == 5
        tui.pane.send_keys(*["BSpace"] * len("a draft"))
        retry_until(lambda: "a draft" not in tui.pane.capture())
        assert tui.wait_lines(1)[0].endswith("] queued")
        retry_until(lambda: (agents_dir() / "queue.log").exists())
        assert notify(tui.address, "direct").returncode == 0
        tui.wait_lines(2)
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE((agents_dir() / name).stat().st_mode)
             for name in ("log", "log/received", "queue", "locks", "queue.log",
                          "log/sent.jsonl")}
    assert modes == {"log": 0o700, "log/received": 0o700, "queue": 0o700, "locks": 0o700,
                     "queue.log": 0o600, "log/sent.jsonl": 0o600}
    loose = [f"{p.relative_to(agents_dir())} {stat.S_IMODE(p.stat().st_mode):o}"
             for p in agents_dir().rglob("*")
             if p.name not in ("peers.conf", "self.conf") and stat.S_IMODE(p.stat().st_mode)
             & 0o077]
    assert loose == []


def test_stale_temporaries_are_swept_at_the_next_write(tmux_server: TmuxServer) -> None:
    tmux_server.start("main")
    old = agents_dir() / ".registry.toml.4242.123456789.tmp"
    young = agents_dir() / ".local.toml.4343.987654321.tmp"
    foreign = agents_dir() / ".notes.tmp"
    for path in (old, young, foreign):
        path.write_text("half")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    os.utime(foreign, (long_ago, long_ago))
    assert run_cli("agent-register-hook", "rescan").returncode == 0
    assert not old.exists()
    assert young.exists() and foreign.exists()  # a live writer's; not ours by name


# --- what a newcomer reads (8.11, 8.12) --------------------------------------------


def test_a_scratch_session_address_says_why(spawn: Spawner) -> None:
    spawn.bash("sh")
    tmux("new-session", "-d", "-s", "test", "-n", "w")
    spawn.register()
    out = notify(f"{SELF_HOST}-test-w", "hi")
    assert out.returncode == 2
    err = out.stderr.decode()
    assert "sessions named scratch/tmp/temp/test/test-*/_* are not registered" in err
    assert "tmux rename-session -t test work" in err and err.count("\n") == 1


def test_addresses_match_case_insensitively(spawn: Spawner) -> None:
    receiver = spawn.agent_tui("cat")
    out = notify(receiver.address.upper(), "upper")
    assert out.returncode == 0, out.stderr
    receiver.wait_lines(1)


def test_self_identify_refuses_a_missing_window(tmux_server: TmuxServer) -> None:
    tmux_server.start("dev", "zero")
    out = run_cli("agent-self-identify", "-t", "dev:99", "--role", "x")
    assert out.returncode == 1, out
    assert out.stderr.decode().count("\n") == 1 and b"dev:99" in out.stderr
    shown = subprocess.run(["tmux", "show-options", "-wv", "-t", "=dev:0", "@agent-role"],
                           capture_output=True, text=True, check=False).stdout
    assert shown == ""  # window 0 was not labelled instead
    out = run_cli("agent-self-identify", "-t", "dev:0", "--role", "x")
    assert out.returncode == 0, out.stderr


def test_hook_on_a_missing_session_says_so(tmux_server: TmuxServer) -> None:
    tmux_server.start("dev")
    out = run_cli("agent-register-hook", "on", "nosuch")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert "on 'nosuch': no such session on this tmux server" in hook_log()
