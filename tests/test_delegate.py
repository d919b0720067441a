"""Delegating on one host: queued delivery, ask and reply, broadcast and spawn, with real
programs in a private tmux server (the cross-host cases are in test_delegate_lab.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (
    AGENT_TUI,
    BIN,
    SELF_HOST,
    Receiver,
    Spawner,
    notify,
    retry_until,
    run_cli,
)


def queue_dir() -> Path:
    return Path.home() / ".agents" / "queue"


def queue_log() -> list[dict[str, object]]:
    path = Path.home() / ".agents" / "queue.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def waiters() -> list[int]:
    """pids of running queue waiters (detach.start_helper of queue.run_waiter) of this
    test's HOME."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        waiter = any(a.endswith(b".queue:run_waiter") for a in argv)
        if waiter and f"HOME={Path.home()}".encode() in env:
            found.append(int(pid))
    return found


def draft(agent: Receiver, text: str) -> None:
    agent.pane.send_keys(text, literal=True)
    agent.pane.wait_for(text)


def clear_draft(agent: Receiver, text: str) -> None:
    agent.pane.send_keys(*["BSpace"] * len(text))
    retry_until(lambda: text not in agent.pane.capture())


@pytest.fixture
def tui(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


# --- queued delivery ----------------------------------------------------------------


def test_queued_message_waits_for_the_draft_then_lands_in_order(tui: Receiver) -> None:
    draft(tui, "half-typed thought")
    first = notify("--queue", tui.address, "first queued")
    assert first.returncode == 5, first.stderr
    assert b"queued as" in first.stdout
    second = notify("--queue", "--ttl", "5m", tui.address, "second queued")
    assert second.returncode == 5, second.stderr
    time.sleep(0.5)
    assert tui.lines() == [], "nothing may be typed over a user's draft"
    clear_draft(tui, "half-typed thought")
    cleared = time.monotonic()
    got = tui.wait_lines(2, timeout=10)
    assert time.monotonic() - cleared < 5
    assert [line.split("] ", 1)[1] for line in got] == ["first queued", "second queued"]
    retry_until(lambda: not waiters(), timeout=5)  # the waiter exits with an empty queue


def test_queue_delivers_at_once_when_ready(tui: Receiver) -> None:
    out = notify("--queue", tui.address, "ready now")
    assert out.returncode == 0, out.stderr
    assert tui.wait_lines(1)[0].endswith("] ready now")


def test_queued_message_survives_a_killed_waiter(tui: Receiver) -> None:
    draft(tui, "busy typing")
    assert notify("--queue", tui.address, "after the kill").returncode == 5
    pids = retry_until(waiters)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    retry_until(lambda: not waiters())
    clear_draft(tui, "busy typing")
    time.sleep(0.5)
    assert tui.lines() == []  # nobody is waiting any more
    # the timer's run (agent-discover) resumes it
    assert run_cli("agent-discover").returncode == 0
    assert tui.wait_lines(1, timeout=10)[0].endswith("] after the kill")


def test_expired_message_is_logged_and_never_delivered(tui: Receiver) -> None:
    draft(tui, "long draft")
    assert notify("--ttl", "1s", tui.address, "too late").returncode == 5
    retry_until(lambda: any(r["outcome"] == "expired" for r in queue_log()), timeout=10)
    clear_draft(tui, "long draft")
    time.sleep(1.0)
    assert tui.lines() == []


def test_queue_lists_and_cancels(tui: Receiver) -> None:
    draft(tui, "wait")
    out = notify("--queue", tui.address, "cancel me")
    msg_id = re.search(rb"queued as ([0-9a-f]+)", out.stdout).group(1).decode()  # type: ignore[union-attr]
    listed = run_cli("agent-mesh", "queue", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["pending"]
    assert [(r["id"], r["address"], r["preview"]) for r in rows] == [
        (msg_id, tui.address, "cancel me")]
    assert run_cli("agent-mesh", "queue", "--cancel", msg_id).returncode == 0
    assert json.loads(run_cli("agent-mesh", "queue", "--json").stdout)["pending"] == []
    assert run_cli("agent-mesh", "queue", "--cancel", msg_id).returncode == 2
    clear_draft(tui, "wait")
    time.sleep(0.5)
    assert tui.lines() == []


def test_queue_table_has_a_header_and_shows_expired(tui: Receiver) -> None:
    """Issue 21.21: `agent-mesh queue` has a header, and a message past its time (its
    waiter gone, so nobody dropped it yet) reads `expired`, not `expires in 0s`."""
    draft(tui, "busy")
    assert notify("--ttl", "2s", tui.address, "short-lived").returncode == 5
    assert notify("--queue", tui.address, "long-lived").returncode == 5
    for pid in retry_until(waiters):
        os.kill(pid, signal.SIGKILL)
    retry_until(lambda: not waiters())
    # past the first one's ttl (nothing runs that would drop it)
    out = retry_until(lambda: (r := run_cli("agent-mesh", "queue")).returncode == 0
                      and b" expired " in r.stdout and r, timeout=10)
    head, *rows = out.stdout.decode().splitlines()
    assert head.split() == ["ID", "TO", "FROM", "EXPIRES", "WHY", "QUEUED", "MESSAGE"]
    assert len(rows) == 2, rows
    assert " expired " in rows[0] and rows[0].endswith("short-lived"), rows
    assert " in 1h " in rows[1] and rows[1].endswith("long-lived"), rows
    assert "expires in 0s" not in out.stdout.decode()


def test_queue_refuses_bad_ttl_and_file() -> None:
    assert notify("--ttl", "soon", "x", "hi").returncode == 1
    assert notify("--queue", "x", "--file", "/etc/hostname", "hi").returncode == 1


# --- ask and reply -------------------------------------------------------------------


def _ask(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    return subprocess.Popen([str(BIN / "agent-mesh"), "ask", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ask_from_a_script_returns_the_reply_and_types_it_nowhere(tui: Receiver) -> None:
    asker = _ask(tui.address, "--timeout", "30s", "--json", "which test fails?")
    question = tui.wait_lines(1, timeout=15)[0]
    match = re.search(r"reply: notify-pane (\S+) --re ([0-9a-f]+) ", question)
    assert match, question
    route, ask_id = match.groups()
    assert route == SELF_HOST  # a script is not a pane: its mailbox
    assert question.endswith("] which test fails?")
    reply = notify(route, "--re", ask_id, "test_x; see log", env={"AGENT_NAME": "worker"})
    assert reply.returncode == 0, reply.stderr
    out, err = asker.communicate(timeout=15)
    assert asker.returncode == 0, err
    exchange = json.loads(out)
    assert exchange["reply"] == "test_x; see log" and exchange["from"] == "worker"
    assert exchange["id"] == ask_id and exchange["question"] == "which test fails?"
    assert len(tui.lines()) == 1  # the reply was typed nowhere


def test_ask_times_out_with_exit_6(tui: Receiver) -> None:
    asker = _ask(tui.address, "--timeout", "1s", "anyone?")
    _, err = asker.communicate(timeout=20)
    assert asker.returncode == 6, err
    assert b"no reply from" in err and err.count(b"\n") == 1


def in_pane(agent: Receiver) -> dict[str, str]:
    """The environment of a command run in agent's pane (as its own tool calls are)."""
    socket = agent.pane.display("#{socket_path}")
    return {"TMUX": f"{socket},1,0", "TMUX_PANE": agent.pane.pane_id}


def asked(agent: Receiver, before: int = 0) -> tuple[str, str]:
    """(route, id) from the reply instruction in the question agent received."""
    question = agent.wait_lines(before + 1, timeout=15)[before]
    match = re.search(r"reply: notify-pane (\S+) --re ([0-9a-f]+) ", question)
    assert match, question
    return match.group(1), match.group(2)


def mailbox_files() -> list[Path]:
    return sorted((Path.home() / ".agents" / "mailbox").glob("*.json"))


def test_a_reply_only_from_the_asked_pane_and_to_the_asker(spawn: Spawner) -> None:
    """Issue 21.13: a valid id from another pane, or sent to another address, is refused
    (exit 3, one line) and not stored; the asked agent's reply is taken once and
    deleted; the id has 64 bits."""
    worker = spawn.agent_tui("worker")
    other = spawn.agent_tui("other")
    asker = _ask(worker.address, "--timeout", "30s", "--json", "which test fails?")
    route, ask_id = asked(worker)
    assert route == SELF_HOST and len(ask_id) == 16
    forged = notify(route, "--re", ask_id, "forged answer", env=in_pane(other))
    assert forged.returncode == 3, forged.stderr
    assert forged.stderr.count(b"\n") == 1
    assert f"must come from {worker.address}".encode() in forged.stderr
    misrouted = notify(other.address, "--re", ask_id, "misrouted", env=in_pane(worker))
    assert misrouted.returncode == 3, misrouted.stderr
    assert f"goes to its asker {route}".encode() in misrouted.stderr
    assert mailbox_files() == []  # refused replies are not stored
    real = notify(route, "--re", ask_id, "test_x; see log", env=in_pane(worker))
    assert real.returncode == 0, real.stderr
    assert b"kept for the waiting ask" in real.stdout
    out, err = asker.communicate(timeout=15)
    assert asker.returncode == 0, err
    assert json.loads(out)["reply"] == "test_x; see log"
    assert mailbox_files() == []  # consumed: deleted
    time.sleep(0.3)
    assert other.lines() == [] and len(worker.lines()) == 1


def test_a_late_reply_to_a_script_says_the_ask_ended(tui: Receiver) -> None:
    """Issue 21.31: after the ask timed out, a reply is refused saying so (nothing
    would read it), and is not stored."""
    asker = _ask(tui.address, "--timeout", "1s", "anyone?")
    route, ask_id = asked(tui)
    _, err = asker.communicate(timeout=20)
    assert asker.returncode == 6, err
    late = notify(route, "--re", ask_id, "sorry, late", env=in_pane(tui))
    assert late.returncode == 3, late.stdout
    assert b"its ask ended (timed out" in late.stderr and b"kept" not in late.stdout
    assert mailbox_files() == []


def test_a_late_reply_to_a_pane_asker_is_typed_there_saying_the_ask_ended(
        spawn: Spawner) -> None:
    """Issue 21.31: the asking pane gets a late reply typed, and the replier is told the
    ask had ended (not that it was kept for the asker)."""
    orch = spawn.agent_tui("orch")
    worker = spawn.agent_tui("worker")
    env = {k: v for k, v in os.environ.items() if k != "AGENT_NAME"}
    asker = subprocess.run([str(BIN / "agent-mesh"), "ask", worker.address, "--timeout", "1s",
                            "status?"], env={**env, **in_pane(orch)}, capture_output=True,
                           timeout=30)
    assert asker.returncode == 6, asker.stderr
    route, ask_id = asked(worker)
    assert route == orch.address
    out = notify(route, "--re", ask_id, "late answer", env=in_pane(worker))
    assert out.returncode == 0, out.stderr
    assert b"its ask ended (timed out" in out.stderr and b"kept for" not in out.stdout
    assert orch.wait_lines(1)[0].endswith(f", re {ask_id}] late answer")
    assert mailbox_files() == []


def test_a_reply_to_no_ask_is_refused(spawn: Spawner) -> None:
    orch = spawn.agent_tui("orch")
    out = notify(orch.address, "--re", "3f9a", "answer to nothing")
    assert out.returncode == 2, out.stderr
    assert b"no such ask" in out.stderr
    time.sleep(0.3)
    assert orch.lines() == [] and mailbox_files() == []


def test_the_mailbox_is_bounded(tui: Receiver) -> None:
    """Issue 21.27: a reply over the size cap, and replies past the per-sender and total
    caps of ~/.agents/config.toml, are refused with the key that raises them; what a
    stopped ask could not read yet is kept, and taken (then deleted) once it runs."""
    config = Path.home() / ".agents" / "config.toml"
    config.write_text("[limits]\nmailbox_reply_bytes = 1024\nmailbox_per_sender = 2\n"
                      "mailbox_total_bytes = 3072\n")
    asker = _ask(tui.address, "--timeout", "60s", "--json", "q")
    route, ask_id = asked(tui)
    os.kill(asker.pid, signal.SIGSTOP)  # waiting, but not reading: replies pile up
    try:
        env = in_pane(tui)
        big = notify(route, "--re", ask_id, "--stdin", input=b"x" * 2000, env=env)
        assert big.returncode == 1, big.stderr
        assert b"over this host's cap of 1024 (raise limits.mailbox_reply_bytes in " \
            in big.stderr
        assert mailbox_files() == []
        for n in range(2):
            kept = notify(route, "--re", ask_id, "--stdin", input=b"%d" % n * 1000, env=env)
            assert kept.returncode == 0, kept.stderr
        third = notify(route, "--re", ask_id, "one more", env=env)
        assert third.returncode == 3, third.stderr
        assert b"holds 2 replies from" in third.stderr
        assert b"mailbox_per_sender" in third.stderr
        config.write_text("[limits]\nmailbox_total_bytes = 3072\n")
        full = notify(route, "--re", ask_id, "--stdin", input=b"z" * 1000, env=env)
        assert full.returncode == 3, full.stderr
        assert b"raise limits.mailbox_total_bytes" in full.stderr
        assert len(mailbox_files()) == 2
    finally:
        os.kill(asker.pid, signal.SIGCONT)
    out, err = asker.communicate(timeout=15)
    assert asker.returncode == 0, err
    assert json.loads(out)["reply"] == "0" * 1000  # the first kept, read once
    assert mailbox_files() == []  # the ask ended: nothing would read the other


def test_bad_reply_id_is_a_usage_error(tui: Receiver) -> None:
    assert notify(tui.address, "--re", "not-hex!", "x").returncode == 1


# --- broadcast ----------------------------------------------------------------------


def test_broadcast_by_role_reaches_exactly_the_matching_agents(spawn: Spawner) -> None:
    a = spawn.agent_tui("rev-a")
    b = spawn.agent_tui("rev-b")
    c = spawn.agent_tui("builder")
    for agent in (a, b):
        agent.pane.server.run("set-option", "-w", "-t", agent.pane.pane_id,
                              "@agent-role", "reviewer")
    spawn.register()
    out = notify("role:reviewer", "please review #12")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert sorted(lines[:2]) == sorted([f"→ {a.address}: delivered", f"→ {b.address}: delivered"])
    for agent in (a, b):
        assert agent.wait_lines(1)[0].endswith(", to role:reviewer] please review #12")
    time.sleep(0.5)
    assert c.lines() == []


def test_broadcast_never_includes_the_sender_and_exits_with_the_worst(spawn: Spawner) -> None:
    me = spawn.agent_tui("w-me")
    busy = spawn.agent_tui("w-busy")
    other = spawn.agent_tui("w-other")
    draft(busy, "typing")
    socket = me.pane.display("#{socket_path}")
    env = {"TMUX": f"{socket},1,0", "TMUX_PANE": me.pane.pane_id}
    out = notify(f"{SELF_HOST}-dev-w-*", "hello all", env=env)
    assert out.returncode == 3, out.stdout
    text = out.stdout.decode()
    assert me.address not in text
    assert f"→ {other.address}: delivered" in text
    assert f"✗ {busy.address}: refused" in text
    assert other.wait_lines(1)[0].endswith("] hello all")
    assert me.lines() == []


def test_broadcast_with_no_match_exits_2_and_reply_cannot_fan_out(tui: Receiver) -> None:
    assert notify("role:nobody", "x").returncode == 2
    assert notify("--all", "--re", "abcd", "x").returncode == 1


# --- spawn --------------------------------------------------------------------------


def test_spawn_starts_registers_and_delivers_the_task(spawn: Spawner, tmp_path: Path) -> None:
    spawn.agent_tui("first")  # a running server, as on a user's host
    log = tmp_path / "spawned.jsonl"
    out = run_cli("agent-mesh", "spawn", SELF_HOST, "--session", "work", "--name", "helper",
                  "--role", "worker", "--accept", "any", "--task", "write the tests", "--",
                  sys.executable, str(AGENT_TUI), str(log), timeout=90)
    assert out.returncode == 0, out.stderr
    address = out.stdout.decode().split()[0]
    assert address == f"{SELF_HOST}-work-helper"
    listed = json.loads(run_cli("notify-pane", "--list", "--json").stdout)
    entry = next(a for a in listed if a["address"] == address)
    assert entry["role"] == "worker"
    assert b"task delivered" in out.stderr or b"task queued" in out.stderr, out.stderr
    try:
        got = retry_until(lambda: log.exists() and log.read_text().splitlines(), timeout=30)
    except AssertionError:
        screen = spawn.server.run("capture-pane", "-p", "-t", "=work:helper").stdout
        raise AssertionError(f"task never submitted; {out.stderr!r}; screen:\n{screen}") from None
    assert json.loads(got[0]).endswith("] write the tests")


def test_spawn_never_runs_the_command_through_a_shell(spawn: Spawner, tmp_path: Path) -> None:
    spawn.agent_tui("first")
    marker = tmp_path / "pwned"
    out = run_cli("agent-mesh", "spawn", SELF_HOST, "--wait", "2s", "--accept", "any", "--",
                  f"true; touch {marker}", timeout=60)
    assert out.returncode != 0
    time.sleep(0.3)
    assert not marker.exists()


def test_a_queued_message_never_jumps_the_queue(tui: Receiver) -> None:
    """Queued messages wait in order; a later --queue send to a pane that is ready again
    goes behind them, not before (found in review)."""
    draft(tui, "typing")
    assert notify("--queue", tui.address, "first").returncode == 5
    pids = retry_until(waiters)
    for pid in pids:  # no waiter: the first stays queued while the pane becomes ready
        os.kill(pid, signal.SIGKILL)
    clear_draft(tui, "typing")
    out = notify("--queue", tui.address, "second")
    assert out.returncode == 5, out.stdout
    got = tui.wait_lines(2, timeout=10)
    assert [line.split("] ", 1)[1] for line in got] == ["first", "second"]


def test_a_forged_reply_route_is_refused(tui: Receiver) -> None:
    """reply_to and the ask id are shown to the agent as a command to run: only an
    address and a hex id get through (found in review)."""
    from agent_mesh.delivery.receive import receive
    from agent_mesh.errors import UsageError
    from agent_mesh.model import Envelope
    from agent_mesh.registry.view import load_agents

    agent = load_agents()[tui.address]
    for fields in ({"ask": "3f9a", "reply_to": 'x"; rm -rf ~; echo "'},
                   {"ask": "$(id)", "reply_to": "h1"}, {"re": "zz top"}):
        envelope = Envelope(sender="peer", address=tui.address, body="hi",
                            timestamp="now", **fields)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            receive(envelope, agent)
    time.sleep(0.3)
    assert tui.lines() == []


# --- issue 21.3, 21.14, 21.29: spawn hands tmux data, refuses early, leaves nothing ------


def _argv_recorder(record: Path, log: Path) -> list[str]:
    """python -c CODE: writes its own argv to record, then becomes the agent TUI."""
    code = ("import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:])); "
            f"os.execv(sys.executable, [sys.executable, {str(AGENT_TUI)!r}, {str(log)!r}])")
    return [sys.executable, "-c", code, str(record)]


def _windows(spawn: Spawner) -> list[str]:
    out = spawn.server.run("list-windows", "-a", "-F", "#{session_name}\t#{window_name}",
                           check=False).stdout
    return out.splitlines()


def test_spawn_hands_names_and_argv_to_tmux_as_data(
    spawn: Spawner, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cleanup = request.addfinalizer
    spawn.agent_tui("first")
    # a session name may hold no `.`, and the test's temporary path can (scripts/test's
    # base folder does): the session-name case's marker goes in a folder without one
    bare = Path(tempfile.mkdtemp(prefix="amspawn", dir="/tmp"))
    cleanup(lambda: shutil.rmtree(bare, ignore_errors=True))
    assert "." not in str(bare)
    marks = [tmp_path / f"mark{i}" for i in range(3)] + [bare / "mark3"]
    words = ["semi;", "run-shell", f"touch {marks[0]}", ";", f"#(touch {marks[1]})", "x\\;",
             "#{pane_id}"]
    cases = (("dev", f"#(touch {marks[2]})nm;"),  # a new window of a running session
             (f"s#(touch {marks[3]});", "nm;"))  # a new session
    for n, (session, name) in enumerate(cases):
        record = tmp_path / f"argv{n}.json"
        out = run_cli("agent-mesh", "spawn", SELF_HOST, "--session", session, "--name", name,
                      "--role", "r;", "--accept", "any", "--",
                      *_argv_recorder(record, tmp_path / f"log{n}"), *words, timeout=90)
        assert out.returncode == 0, out.stderr
        assert json.loads(record.read_text()) == words
        assert f"{session}\t{name}" in _windows(spawn)
        address = out.stdout.decode().split()[0]
        listed = json.loads(run_cli("notify-pane", "--list", "--json").stdout)
        assert {a["address"]: a["role"] for a in listed}[address] == "r;"
    time.sleep(0.3)
    assert not any(m.exists() for m in marks)


def test_spawn_of_an_unknown_program_is_refused_at_once(spawn: Spawner) -> None:
    spawn.agent_tui("first")
    before = _windows(spawn)
    for argv, accept in ((["sleep", "3600"], "sleep"), (["bash", "--norc"], "shell")):
        started = time.monotonic()
        out = run_cli("agent-mesh", "spawn", SELF_HOST, "--", *argv, timeout=20)
        err = out.stderr.decode()
        assert out.returncode == 3 and err.count("\n") == 1, err
        assert f"spawn with --accept {accept}" in err, err
        assert time.monotonic() - started < 10
    assert _windows(spawn) == before


@pytest.mark.parametrize("session", ["a:b", "a.b", "tmp", "test-x"])
def test_a_failed_spawn_leaves_nothing_running(spawn: Spawner, session: str) -> None:
    spawn.agent_tui("first")
    before = _windows(spawn)
    tag = f"{os.getpid()}{time.monotonic_ns() % 10**6}"
    out = run_cli("agent-mesh", "spawn", SELF_HOST, "--session", session, "--accept", "any",
                  "--", "sleep", f"{tag}", timeout=30)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1, err
    assert "--session" in err, err
    time.sleep(0.3)
    assert _windows(spawn) == before
    assert subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True).returncode == 1


def test_a_spawn_cut_off_mid_wait_removes_its_window(spawn: Spawner) -> None:
    spawn.agent_tui("first")
    before = _windows(spawn)
    # a password prompt: never ready, so the spawn waits its whole --wait
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "spawn", SELF_HOST, "--name", "asks",
                             "--accept", "any", "--wait", "60s", "--", sys.executable, "-c",
                             "import getpass; getpass.getpass('Password: ')"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        retry_until(lambda: any(w.endswith("\tasks") for w in _windows(spawn)), timeout=15)
        time.sleep(0.5)  # into the wait
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130
    retry_until(lambda: _windows(spawn) == before, timeout=5)


def test_numbers_from_a_peer_are_bounded(spawn: Spawner) -> None:
    """A peer's wait, lines, limit and ttl: clamped to the documented maxima, and NaN,
    infinities and negatives refused as usage errors (exit 1), never held for 1e300 s."""
    from agent_mesh import __version__
    from agent_mesh.mesh.wire import PROTOCOL

    tui = spawn.agent_tui("first")

    def rpc(request: dict[str, object]) -> dict[str, object]:
        raw = json.dumps({**request, "protocol": PROTOCOL, "version": __version__}).encode()
        out = run_cli("agent-mesh", "rpc", input=raw + b"\n", timeout=30)
        return json.loads(out.stdout)

    for bad in (float("nan"), float("inf"), -1, "10", True):
        for request in ({"op": "peek", "address": tui.address, "lines": bad},
                        {"op": "inbox", "address": tui.address, "limit": bad},
                        {"op": "spawn", "argv": ["sleep", "9"], "accept": "any", "wait": bad},
                        {"op": "deliver", "envelope": {
                            "sender": "p", "address": tui.address, "body": "x",
                            "timestamp": "now", "queue": True, "ttl": bad}}):
            if request["op"] == "deliver" and bad in ("10", True):
                continue  # a ttl is coerced as before; only non-finite or negative is bad
            reply = rpc(request)
            assert reply["ok"] is False and reply["code"] == 1, (request, reply)
    reply = rpc({"op": "spawn", "argv": [sys.executable, str(AGENT_TUI), "/dev/null"],
                 "wait": 1e300, "name": "long"})  # clamped (to 600 s), not refused
    assert reply["ok"] and reply["ready"], reply
    assert tui.lines() == []


def test_an_ask_from_a_window_with_a_unicode_name_routes_its_reply(spawn: Spawner) -> None:
    """Review of the merge: addresses keep letters of any script (issue 21.20), and the
    reply route in a question is checked with the same alphabet, so an agent in window
    `ünï` can ask (the route check once knew ASCII only: exit 1, 'bad reply address')."""
    worker = spawn.agent_tui("worker")
    asker = spawn.agent_tui("ünï")
    assert "ünï" in asker.address
    proc = subprocess.Popen([str(BIN / "agent-mesh"), "ask", "--timeout", "3s",
                             worker.address, "which test fails?"],
                            env={**os.environ, **in_pane(asker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 6, err  # delivered, then no reply within 3 s
    route, _ = asked(worker)
    assert route == asker.address


def test_a_glob_of_unicode_letters_is_a_pattern() -> None:
    from agent_mesh.registry.select import is_pattern

    assert is_pattern("vm-ü*") and is_pattern("h1-*-ünï")
    assert not is_pattern("vm-ü*; rm") and not is_pattern("vm-ü")
