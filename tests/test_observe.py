"""Seeing the mesh on one host, on a real tmux server: status, peek, the delivery log
on both ends, inbox, log, and the read-only rpc ops (tests/test_observe_lab.py covers
several hosts)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, SELF_HOST, Spawner, notify, retry_until, run_cli
from pytest_mock import MockerFixture

from agent_mesh import __version__
from agent_mesh.delivery import log


def status_json(*patterns: str) -> dict[str, Any]:
    out = run_cli("agent-mesh", "status", "--json", *patterns)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def states(*patterns: str) -> dict[str, str]:
    return {r["address"]: r["state"] for r in status_json(*patterns)["agents"]}


def addr(name: str) -> str:
    return f"{SELF_HOST}-dev-{name}"


@pytest.fixture
def zoo(spawn: Spawner) -> Spawner:
    """idle agent, agent with a draft, shell, running `sleep`, dead pane, closed window."""
    spawn.agent_tui("idle")
    draft = spawn.agent_tui("draft")
    draft.pane.send_keys("half a thought", literal=True)
    draft.pane.wait_for("half a thought")
    spawn.bash("shell")
    busy = spawn.bash("busy")
    busy.pane.send_keys("sleep 300", "Enter")
    spawn.server.run("set-option", "-g", "remain-on-exit", "on")
    dead = spawn.window("dead", ["sh", "-c", "echo bye; exit 0"])
    retry_until(lambda: dead.display("#{pane_dead}") == "1")
    spawn.bash("closed")
    spawn.register()
    spawn.server.run("kill-window", "-t", f"={spawn.session}:closed")  # registry now stale
    retry_until(lambda: "sleep" in busy.pane.display("#{pane_current_command}"))
    return spawn


def test_status_shows_each_state(zoo: Spawner) -> None:
    got = states()
    assert got == {
        addr("idle"): "idle", addr("draft"): "drafting", addr("shell"): "shell",
        addr("busy"): "running", addr("dead"): "dead", addr("closed"): "gone",
    }
    rows = {r["address"]: r for r in status_json()["agents"]}
    assert rows[addr("busy")]["program"] == "sleep"
    assert "half a thought" in rows[addr("draft")]["detail"]
    assert all(r["host"] == SELF_HOST and r["since"].endswith("Z") for r in rows.values())
    hosts = status_json()["hosts"]
    assert hosts == [{"host": SELF_HOST, "ok": True, "error": "", "elapsed_ms": hosts[0][
        "elapsed_ms"]}]


def test_status_table_one_row_per_agent(zoo: Spawner) -> None:
    out = run_cli("agent-mesh", "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["ADDRESS", "HOST", "STATE", "SINCE", "PROGRAM", "ROLE", "DETAIL"]
    assert len(lines) == 7
    row = next(line for line in lines if line.startswith(addr("busy")))
    assert row.split()[1:3] == [SELF_HOST, "running"]
    assert b"\x1b" not in out.stdout  # not a terminal: no colours


def _tmux_calls(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """TMUX_BIN for a tmux that logs one line per call, and that log."""
    calls = tmp_path / "tmux-calls"
    wrapper = tmp_path / "tmux"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{shutil.which("tmux")}" "$@"\n')
    wrapper.chmod(0o755)
    return {"TMUX_BIN": str(wrapper)}, calls


def test_status_reads_the_tmux_server_in_one_call(spawn: Spawner, tmp_path: Path) -> None:
    """list-panes and every live pane's state go in one tmux command list (issue 20)."""
    spawn.agent_tui("one")
    spawn.bash("two")
    spawn.register()
    env, calls = _tmux_calls(tmp_path)
    out = run_cli("agent-mesh", "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert {r["state"] for r in json.loads(out.stdout)["agents"]} == {"idle", "shell"}
    (call,) = calls.read_text().splitlines()
    assert "list-panes" in call and call.count("capture-pane") == 2


def test_a_closed_window_costs_status_one_more_call(zoo: Spawner, tmp_path: Path) -> None:
    """A pane closed since it was registered cuts the command list short: the live panes
    after it are read in one more call (not one each), the closed one shows as before."""
    env, calls = _tmux_calls(tmp_path)
    out = run_cli("agent-mesh", "status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    rows = {r["address"]: r for r in json.loads(out.stdout)["agents"]}
    assert rows[addr("closed")]["state"] == "gone"
    assert rows[addr("closed")]["detail"] == "its window is closed (registry entry only)"
    assert {a: r["state"] for a, r in rows.items()} == states()
    assert len(calls.read_text().splitlines()) <= 2


def test_status_patterns(zoo: Spawner) -> None:
    assert set(states("*-idle", "*-dead")) == {addr("idle"), addr("dead")}
    assert set(states(f"host:{SELF_HOST}")) == set(states())
    assert states("host:elsewhere") == {}
    roles = {r["role"] for r in status_json()["agents"]}
    some = sorted(roles)[0]
    picked = status_json(f"role:{some.upper()}")["agents"]
    assert picked and all(r["role"] == some for r in picked)


def test_since_is_kept_while_the_state_holds_and_moves_when_it_changes(spawn: Spawner) -> None:
    tui = spawn.agent_tui("a")
    first = {r["address"]: r for r in status_json()["agents"]}[tui.address]
    cache = Path(os.environ["HOME"]) / ".agents" / "state.cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    time.sleep(1.1)  # `since` has one-second resolution
    again = {r["address"]: r for r in status_json()["agents"]}[tui.address]
    assert (again["state"], again["since"]) == ("idle", first["since"])
    tui.pane.send_keys("typing", literal=True)
    tui.pane.wait_for("typing")
    changed = {r["address"]: r for r in status_json()["agents"]}[tui.address]
    assert changed["state"] == "drafting" and changed["since"] > first["since"]


def test_watch_redraws(zoo: Spawner) -> None:
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "status", "--watch", "0.2", "*-idle"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        heads = 0
        while heads < 2:
            line = proc.stdout.readline().decode()
            assert line, proc.stderr.read() if proc.stderr else ""
            heads += line.startswith("agent-mesh status  every 0.2s")
    finally:
        proc.kill()
        proc.wait()


# --- peek ---------------------------------------------------------------------------


def test_peek_last_lines_with_scrollback(spawn: Spawner) -> None:
    sh = spawn.bash("sh")
    sh.pane.send_keys("for i in $(seq 1 120); do echo line-$i; done", "Enter")
    sh.pane.wait_for("line-120")
    out = run_cli("agent-mesh", "peek", sh.address, "-n", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["line-119", "line-120", "$"]
    deep = run_cli("agent-mesh", "peek", sh.address, "-n", "100").stdout.decode().splitlines()
    assert deep[0] == "line-22" and len(deep) == 100  # reaches into the scrollback


def test_peek_strips_escapes_unless_ansi(spawn: Spawner) -> None:
    sh = spawn.bash("sh")
    sh.pane.send_keys("printf '\\033[31mred\\033[0m plain\\n'", "Enter")
    sh.pane.wait_for("red plain")
    plain = run_cli("agent-mesh", "peek", sh.address, "-n", "2").stdout
    assert b"red plain" in plain and b"\x1b" not in plain
    coloured = run_cli("agent-mesh", "peek", sh.address, "-n", "2", "--ansi").stdout
    assert b"\x1b[31mred" in coloured


def test_peek_exit_codes(spawn: Spawner) -> None:
    gone = spawn.agent_tui("gone")
    spawn.agent_tui("keep")
    out = run_cli("agent-mesh", "peek", "testhost-dev-nope")
    assert out.returncode == 2 and b"unknown agent" in out.stderr
    spawn.server.run("kill-window", "-t", gone.pane.window_id)
    out = run_cli("agent-mesh", "peek", gone.address)
    assert out.returncode == 2 and b"no longer exists" in out.stderr
    assert len(out.stderr.splitlines()) == 1


# --- the delivery log and inbox ---------------------------------------------------------


def _log_dir() -> Path:
    return Path(os.environ["HOME"]) / ".agents" / "log"


def test_both_ends_log_a_delivered_message_with_one_id(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    assert notify(tui.address, "tests green").returncode == 0
    tui.wait_lines(1)
    (sent,) = log.read(str(_log_dir() / "sent.jsonl"))
    (got,) = log.read(str(_log_dir() / "received" / f"{tui.address}.jsonl"))
    assert len(sent["id"]) == 6 and sent["id"] == got["id"]
    assert (sent["to"], sent["outcome"], sent["body"], sent["kind"]) == (
        tui.address, "delivered", "tests green", "message")
    assert (got["from"], got["outcome"], got["body"]) == ("tester", "delivered", "tests green")
    for path in (_log_dir() / "sent.jsonl", _log_dir() / "received" / f"{tui.address}.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refusal_and_file_are_logged_and_shown_by_inbox_and_log(spawn: Spawner,
                                                                tmp_path: Path) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "report.txt"
    src.write_text("data")
    assert notify(tui.address, "--file", str(src), "see attached").returncode == 0
    tui.wait_lines(1)
    time.sleep(0.4)  # the settle: the next check must meet an empty box
    tui.pane.send_keys("my draft", literal=True)
    tui.pane.wait_for("my draft")
    assert notify(tui.address, "not now").returncode == 3
    inbox = json.loads(run_cli("agent-mesh", "inbox", tui.address, "--json").stdout)
    assert [r["outcome"] for r in inbox] == ["delivered", "refused"]
    assert inbox[0]["file"] == "~/.agent-inbox/tester/report.txt" and inbox[0]["present"]
    assert "mid-prompt" in inbox[1]["reason"]
    table = run_cli("agent-mesh", "inbox", tui.address).stdout.decode()
    assert "file ~/.agent-inbox/tester/report.txt (4 bytes): see attached" in table
    assert "refused: it looks mid-prompt" in table
    sent = run_cli("agent-mesh", "log").stdout.decode().splitlines()
    assert sent[0].split() == ["TIME", "ID", "TO", "OUTCOME", "WHAT"]
    assert "delivered" in sent[1] and "refused" in sent[2]
    records = json.loads(run_cli("agent-mesh", "log", "--json").stdout)
    assert [r["id"] for r in records] == [r["id"] for r in inbox]
    # every agent of this host when no AGENT is given (not inside a pane)
    assert json.loads(run_cli("agent-mesh", "inbox", "--json").stdout) == inbox


def test_unknown_agent_is_logged_by_nobody_and_failure_by_the_sender(spawn: Spawner) -> None:
    gone = spawn.agent_tui("gone")
    spawn.agent_tui("keep")
    spawn.server.run("kill-window", "-t", gone.pane.window_id)
    assert notify(gone.address, "hello?").returncode == 2
    assert notify("testhost-dev-nobody", "hello?").returncode == 2
    (sent,) = log.read(str(_log_dir() / "sent.jsonl"))
    assert (sent["to"], sent["outcome"], sent["code"]) == (gone.address, "unknown", 2)


def test_inbox_follow_prints_new_records(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "inbox", tui.address, "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[:2] == [b"TIME", b"ID"]
        assert notify(tui.address, "followed").returncode == 0
        line = proc.stdout.readline().decode()
        assert "delivered" in line and "followed" in line
    finally:
        proc.kill()
        proc.wait()


def test_log_rotates_and_never_fails_delivery(spawn: Spawner,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(_log_dir() / "sent.jsonl")
    monkeypatch.setattr(log, "MAX_BYTES", 300)
    for i in range(10):
        log.append(path, {"id": f"{i:06x}", "body": "x" * 50})
    assert os.path.exists(path + ".1")
    assert os.path.getsize(path) <= 300 and os.path.getsize(path + ".1") <= 400
    ids = [r["id"] for r in log.read(path)]
    assert ids == sorted(ids) and ids[-1] == f"{9:06x}" and len(ids) < 10
    # a log that cannot be written (here: its folder is a file) costs nothing
    tui = spawn.agent_tui()
    for name in os.listdir(_log_dir()):
        os.rename(_log_dir() / name, Path(os.environ["HOME"]) / name)
    _log_dir().rmdir()
    _log_dir().write_text("not a folder")
    assert notify(tui.address, "still delivered").returncode == 0
    tui.wait_lines(1)


SLOW_TMUX = """#!/bin/sh
# tmux, but a load-buffer call (the paste) returns only after a pause, when it is done:
# its sender can be killed once tmux has the message and before it knows the outcome.
tmux "$@"; rc=$?
case " $* " in *" load-buffer "*)
  : >"$PASTED"
  while kill -0 "$PPID" 2>/dev/null; do sleep 0.02; done;;  # until the sender is killed
esac
exit $rc
"""


def test_a_sender_killed_mid_paste_still_has_its_sent_line(spawn: Spawner,
                                                          tmp_path: Path) -> None:
    """Issue 21.22: the sent line is written before the paste and completed after it.
    Senders of a large message are killed (SIGKILL) once tmux has pasted it (their tmux
    client is slowed down by a wrapper, TMUX_BIN, to hold them there): each message
    arrives and is in sent.jsonl, as "interrupted"; a sender that lives logs one line
    and then completes it."""
    tui = spawn.agent_tui()
    wrapper = tmp_path / "slow-tmux"
    wrapper.write_text(SLOW_TMUX)
    wrapper.chmod(0o755)
    pasted = tmp_path / "pasted"
    env = {**os.environ, "AGENT_NAME": "tester", "TMUX_BIN": str(wrapper),
           "PASTED": str(pasted)}
    tags = [f"big-{i:02d}" for i in range(3)]
    for tag in tags:
        pasted.unlink(missing_ok=True)
        proc = subprocess.Popen([str(BIN / "notify-pane"), tui.address, "--stdin"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        assert proc.stdin is not None
        proc.stdin.write(f"{tag} {'x' * 100_000}".encode())  # one large line
        proc.stdin.close()
        retry_until(pasted.exists, timeout=30)
        proc.kill()
        assert proc.wait() == -9
        retry_until(lambda t=tag: any(t in line for line in tui.lines()), timeout=30)
    records = log.read(str(_log_dir() / "sent.jsonl"))
    assert [(str(r["body"])[:6], r["outcome"]) for r in records] == [
        (tag, "interrupted") for tag in tags]
    assert all("pid" not in r and r["bytes"] == 100_007 for r in records)
    assert notify(tui.address, "after them").returncode == 0
    last = log.read(str(_log_dir() / "sent.jsonl"))[-1]
    assert (last["body"], last["outcome"]) == ("after them", "delivered")
    lines = (_log_dir() / "sent.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"id": last["id"], "update": True, "outcome": "delivered"}


def test_records_are_json_whatever_the_body(tmp_path: Path) -> None:
    body = 'quotes " \\ tab\t nl\n esc \x1b bell \x07 del \x7f ✓ \u2028 \udcff'
    path = str(tmp_path / "l.jsonl")
    log.append(path, {"body": body, "n": 3, "ok": True, "none": None})
    (record,) = log.read(path)
    assert record == {"body": body.replace("\udcff", "?"), "n": 3, "ok": True, "none": None}


def test_log_module_stays_light() -> None:
    code = ("import sys; before = set(sys.modules); import agent_mesh.delivery.log; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert not {"json", "re", "typing", "subprocess", "pathlib"} & set(out), out


# --- rpc ops ------------------------------------------------------------------------


def rpc(request: dict[str, Any]) -> dict[str, Any]:
    from agent_mesh.mesh.wire import PROTOCOL

    header = {"protocol": PROTOCOL, "version": __version__, **request}
    out = run_cli("agent-mesh", "rpc", input=json.dumps(header).encode() + b"\n")
    assert out.returncode == 0
    return json.loads(out.stdout)


def test_rpc_status_peek_inbox(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    assert notify(tui.address, "over rpc").returncode == 0
    tui.wait_lines(1)
    reply = rpc({"op": "status"})
    assert reply["ok"] and [r["state"] for r in reply["agents"]] == ["idle"]
    reply = rpc({"op": "peek", "address": tui.address, "lines": 5})
    assert reply["ok"] and "? for shortcuts" in reply["text"]
    reply = rpc({"op": "inbox", "address": tui.address})
    assert reply["ok"] and reply["records"][-1]["body"] == "over rpc"
    reply = rpc({"op": "peek", "address": "testhost-dev-nope"})
    assert (reply["ok"], reply["code"]) == (False, 2)
    reply = rpc({"op": "peek"})
    assert (reply["ok"], reply["code"]) == (False, 1)
    reply = rpc({"op": "status", "version": "0.0.0-other"})
    assert (reply["ok"], reply["code"]) == (False, 1) and "same version" in reply["error"]


def test_rpc_ops_never_type_into_a_pane(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    before = tui.pane.capture()
    for request in ({"op": "status"}, {"op": "peek", "address": tui.address},
                    {"op": "inbox", "address": tui.address}):
        assert rpc(request)["ok"]
    time.sleep(0.3)
    assert tui.pane.capture() == before and tui.lines() == []


def test_status_options_fall_back_to_click(spawn: Spawner) -> None:
    spawn.agent_tui()
    out = run_cli("agent-mesh", "status", "--help")
    assert out.returncode == 0 and b"role:GLOB" in out.stdout
    out = run_cli("agent-mesh", "status", "--bogus")
    assert out.returncode == 1 and b"No such option" in out.stderr


def test_a_peer_speaks_only_for_its_own_queued_messages(mocker: MockerFixture) -> None:
    """Review of the merge (issue 21.12, 21.26): `agent-mesh log` follows a queued message
    to its recipient's host; an answer from another host claiming the same id (or an id
    of an agent it does not hold) must not change what the log says. The peers' inbox
    replies are injected at the wire edge (host.connect: a Host that answers them)."""
    from agent_mesh.delivery import log
    from agent_mesh.mesh import host, observe
    from agent_mesh.mesh.transport import Host

    log.append(log.sent_path(), {"id": "aa11", "to": "h2-dev-a", "host": "h2",
                                 "outcome": "queued", "time": "2026-12-02T10:00:00Z"})
    log.append(log.sent_path(), {"id": "bb22", "to": "h3-dev-b", "host": "h3",
                                 "outcome": "queued", "time": "2026-12-02T10:00:01Z"})

    def inbox(host: str, request: dict[str, object], timeout: float) -> dict[str, object]:
        if host == "h2":  # the real end of h2's message, and a forged end of h3's
            return {"records": [{"id": "aa11", "outcome": "delivered"},
                                {"id": "bb22", "outcome": "delivered"}]}
        return {"records": []}

    class Peer(Host):
        def __init__(self, alias: str) -> None:
            self.host = alias

        def request(self, header: dict[str, object], stream: object = None,
                    timeout: float = 0.0) -> dict[str, object]:
            return inbox(self.host, header, timeout)

    mocker.patch.object(host, "connect", side_effect=lambda alias, *args: Peer(alias))
    outcomes = {r["id"]: r["outcome"] for r in observe.sent_records()}
    assert outcomes == {"aa11": "queued → delivered", "bb22": "queued"}
