"""Which pane am I, and reading the right pane (issue 21 items 4, 10, 25, 30).

A pane is its tmux server plus its pane id: a second server (`tmux -L work`) numbers
its panes from %0 again, so its %0 must never be taken for the default server's %0,
neither for the sender (whoami, ask's reply address, broadcast's skip) nor for reading
a pane (status, peek). Under `tmux run-shell` the sender is the job's own pane when
that is certain, else the host: never a guess from the current directory.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SELF_HOST, Receiver, Spawner, retry_until, run_cli

WORK = f"{SELF_HOST}-work-s-w"


def work_tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "work", *args], capture_output=True, text=True,
                          check=True).stdout


class Servers:
    """The default server's agent TUI at %0, and the socket of `tmux -L work`."""

    def __init__(self, agent: Receiver, socket: str) -> None:
        self.agent, self.socket = agent, socket


@pytest.fixture
def work(spawn: Spawner) -> Iterator[Servers]:
    """An agent TUI at %0 of the default server, and a bash at %0 of `tmux -L work`
    (window `w` of session `s`), both registered."""
    agent = spawn.agent_tui("agent")
    assert agent.pane.pane_id == "%0"
    try:
        out = work_tmux("-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40",
                        "-s", "s", "-n", "w", "-P", "-F", "#{pane_id} #{socket_path}",
                        "env", "PS1=$ ", "bash", "--norc", "--noprofile")
        pane, socket = out.split()
        assert pane == "%0"
        from agent_mesh.registry.local import rescan
        from agent_mesh.tmux import Tmux

        rescan(Tmux(socket_path=socket))
        retry_until(lambda: "$" in work_tmux("capture-pane", "-p", "-t", "%0"))
        yield Servers(agent, socket)
    finally:
        subprocess.run(["tmux", "-L", "work", "kill-server"], capture_output=True, check=False)


def in_work_pane(socket: str) -> dict[str, str]:
    """The environment tmux gives a program in the work server's %0."""
    return {"TMUX": f"{socket},1,0", "TMUX_PANE": "%0"}


# --- item 4: the sender's pane is (server, pane id) ------------------------------------


def test_whoami_in_a_second_servers_pane_names_its_own_window(work: Servers,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "whoami.txt"
    work_tmux("send-keys", "-t", "%0", "-l", f"notify-pane --whoami > {out}")
    work_tmux("send-keys", "-t", "%0", "Enter")
    assert retry_until(lambda: out.exists() and out.read_text()) == f"{WORK}\n"


def test_an_ask_from_a_second_server_carries_its_own_reply_address(work: Servers) -> None:
    agent = work.agent
    out = run_cli("agent-mesh", "ask", agent.address, "which port?", "--timeout", "1s",
                  env=in_work_pane(work.socket))
    assert out.returncode == 6, out.stderr
    (line,) = agent.wait_lines(1)
    assert f"reply: notify-pane {WORK} --re " in line, line


def test_a_broadcast_from_a_second_server_skips_exactly_the_sender(work: Servers) -> None:
    agent = work.agent
    out = run_cli("notify-pane", f"{SELF_HOST}-*", "hello all", env=in_work_pane(work.socket))
    text = out.stdout.decode()
    assert out.returncode == 0, (text, out.stderr)
    assert WORK not in text and f"→ {agent.address}: delivered" in text
    assert agent.wait_lines(1)[0].endswith("] hello all")


# --- item 10: under run-shell, the job's own pane or the host ----------------------------


def run_shell_in(pane_send: object, command: str, target: bool = False) -> None:
    assert "'" not in command
    where = '-t "$TMUX_PANE" ' if target else ""
    pane_send(f"tmux run-shell -b {where}'{command}'", literal=True)  # type: ignore[operator]
    pane_send("Enter")  # type: ignore[operator]


def test_run_shell_sender_is_never_guessed_from_the_directory(spawn: Spawner,
                                                              tmp_path: Path) -> None:
    """`(cd <B's directory> && tmux run-shell -b 'notify-pane --whoami')` from window A
    (as an agent's tool runs it): nothing says which pane ran the job, so the sender
    is the host, not window B."""
    a = spawn.bash("a")
    b = spawn.bash("b")
    b_dir = tmp_path / "B"
    b_dir.mkdir()
    b.pane.send_keys(f"cd {b_dir}", literal=True)
    b.pane.send_keys("Enter")
    retry_until(lambda: b.pane.display("#{pane_current_path}") == str(b_dir))
    out = tmp_path / "whoami.txt"
    a.pane.send_keys(f"(cd {b_dir} && tmux run-shell -b 'notify-pane --whoami > {out}')",
                     literal=True)
    a.pane.send_keys("Enter")
    assert retry_until(lambda: out.exists() and out.read_text()) == f"{SELF_HOST}\n"


def test_run_shell_with_the_target_pane_given_names_it(spawn: Spawner, tmp_path: Path) -> None:
    """tmux expands `#{pane_id}` in the job to its target, here `-t "$TMUX_PANE"`: the
    pane that ran it (without -t, tmux 3.3a's target is the session's active pane)."""
    spawn.bash("a")  # the session's active window
    b = spawn.bash("b")
    out = tmp_path / "whoami.txt"
    run_shell_in(b.pane.send_keys, f"TMUX_PANE=#{{pane_id}} notify-pane --whoami > {out}",
                 target=True)
    assert retry_until(lambda: out.exists() and out.read_text()) == f"{b.address}\n"


def test_run_shell_in_a_one_pane_session_names_that_pane(spawn: Spawner, tmp_path: Path
                                                         ) -> None:
    """The job's session ($TMUX) has one pane: the job's target can only be it."""
    a = spawn.bash("a")
    out = tmp_path / "whoami.txt"
    run_shell_in(a.pane.send_keys, f"notify-pane --whoami > {out}")
    assert retry_until(lambda: out.exists() and out.read_text()) == f"{a.address}\n"


# --- item 25: status and peek read the entry's own server -------------------------------


def echo_in_work_pane() -> None:
    work_tmux("send-keys", "-t", "%0", "-l", "echo work-$((6*7))")
    work_tmux("send-keys", "-t", "%0", "Enter")
    retry_until(lambda: "work-42" in work_tmux("capture-pane", "-p", "-t", "%0"))


def test_status_reads_each_agents_own_server(work: Servers) -> None:
    out = run_cli("agent-mesh", "status", "--json")
    assert out.returncode == 0, out.stderr
    states = {r["address"]: r["state"] for r in json.loads(out.stdout)["agents"]}
    assert states == {work.agent.address: "idle", WORK: "shell"}


def test_peek_reads_the_entrys_own_server(work: Servers) -> None:
    echo_in_work_pane()
    peeked = run_cli("agent-mesh", "peek", WORK, "-n", "5")
    assert peeked.returncode == 0 and b"work-42" in peeked.stdout, peeked
    peeked = run_cli("agent-mesh", "peek", work.agent.address)
    assert peeked.returncode == 0 and b"work-42" not in peeked.stdout
    assert b"? for shortcuts" in peeked.stdout


# --- item 30: nothing from a pane reaches the terminal raw ------------------------------

RAW = (b"\xc2\x9b", b"\xe2\x80\xae", b"\xe2\x81\xa6", b"\xe2\x81\xa9")


def test_peek_strips_bidi_controls_that_a_pane_shows(spawn: Spawner) -> None:
    sh = spawn.bash("sh")
    sh.pane.send_keys("printf 'see \\u202etxt.exe\\u2069 done\\n'", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: "done" in sh.pane.capture().split("printf", 1)[-1])
    for ansi in ([], ["--ansi"]):
        out = run_cli("agent-mesh", "peek", sh.address, *ansi)
        assert out.returncode == 0, out.stderr
        assert not any(raw in out.stdout for raw in RAW), out.stdout
        assert "see txt.exe done" in out.stdout.decode()


def test_status_json_escapes_c1_and_bidi_instead_of_writing_them(spawn: Spawner) -> None:
    agent = spawn.agent_tui("agent")
    spawn.server.run("set-option", "-w", "-t", agent.pane.pane_id, "@agent-role",
                     "r\u009b2J\u202eole")
    spawn.register()
    out = run_cli("agent-mesh", "status", "--json")
    assert out.returncode == 0, out.stderr
    assert not any(raw in out.stdout for raw in RAW), out.stdout
    (row,) = json.loads(out.stdout)["agents"]
    assert row["role"] == "r\u009b2J\u202eole"  # the value intact for a script
    table = run_cli("agent-mesh", "status")
    assert not any(raw in table.stdout for raw in RAW), table.stdout
