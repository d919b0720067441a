"""The queue's promises (issue 21 items 5, 6, 8, 11, 12, 27), on real tmux with real programs:
a queued message belongs to its pane, is delivered only under the normal rules, never twice,
is refused where it would wait for nothing, is bounded, and the log says what became of it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AGENT_TUI, BIN, Receiver, Spawner, notify, retry_until, run_cli
from test_delegate import clear_draft, draft, queue_dir, queue_log, waiters


@pytest.fixture
def tui(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


def queued_id(out: subprocess.CompletedProcess[bytes]) -> str:
    assert out.returncode == 5, (out.stdout, out.stderr)
    return re.search(rb"queued as ([0-9a-f]+)", out.stdout).group(1).decode()  # type: ignore[union-attr]


def queue_files() -> list[Path]:
    return sorted(p for p in queue_dir().rglob("*") if p.is_file() and not p.name.startswith("."))


def listed() -> list[dict[str, object]]:
    out = run_cli("agent-mesh", "queue", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["pending"]  # type: ignore[no-any-return]


def received(address: str) -> list[dict[str, object]]:
    path = Path.home() / ".agents" / "log" / "received" / f"{address}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- 5: a queued message belongs to the pane and window it was queued for ---------------


def test_a_queued_message_is_never_typed_into_a_new_window_of_the_same_name(
        spawn: Spawner) -> None:
    spawn.bash("keep")  # the session outlives the window
    old = spawn.agent_tui("qt")
    draft(old, "busy")
    msg_id = queued_id(notify("--queue", old.address, "for the old qt only"))
    spawn.server.run("kill-window", "-t", old.pane.window_id)
    log = spawn.tmp / "new-qt.jsonl"
    new = spawn._receiver("qt", [sys.executable, str(Path(__file__).parent / "programs" /
                                                     "agent_tui.py"), str(log)],
                          "? for shortcuts", log)
    assert new.address == old.address  # the same address, another agent
    assert run_cli("agent-discover").returncode == 0  # what the timer runs: resumes the queue
    time.sleep(2.0)  # the resumed waiter would have typed by now
    assert new.lines() == [], "the message went to a window it was not queued for"
    rows = retry_until(lambda: [r for r in listed() if r["id"] == msg_id
                                and r.get("state") == "held"], timeout=10)
    assert "is gone" in str(rows[0]["reason"])
    # a message queued for the new window is not stuck behind the held one
    assert notify("--queue", new.address, "for the new qt").returncode == 0
    assert new.wait_lines(1)[0].endswith("] for the new qt")
    assert [r["id"] for r in listed()] == [msg_id]  # still kept, still shown
    assert run_cli("agent-mesh", "queue", "--cancel", msg_id).returncode == 0


def test_a_queued_message_follows_its_pane_when_the_window_is_renamed(tui: Receiver) -> None:
    draft(tui, "typing")
    queued_id(notify("--queue", tui.address, "still yours"))
    tui.pane.server.run("rename-window", "-t", tui.pane.window_id, "renamed")
    clear_draft(tui, "typing")
    assert tui.wait_lines(1, timeout=10)[0].endswith("] still yours")


# --- 6: FORCE_SEND + --queue -------------------------------------------------------------


PASSWORD = "import getpass; getpass.getpass('[sudo] password for x: ')"


def test_a_forced_queued_send_to_a_question_is_refused_not_deferred(
        spawn: Spawner, tmp_path: Path) -> None:
    sh = spawn.bash("sudo")
    sh.pane.send_keys(f'{sys.executable} -c "{PASSWORD}"', "Enter")
    sh.pane.wait_for("password for x:")
    marker = tmp_path / "pwned"
    out = notify("--queue", sh.address, f"; touch {marker}", env={"FORCE_SEND": "1"})
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert b"waiting for an answer" in out.stderr
    assert queue_files() == []
    sh.pane.send_keys("C-c")
    retry_until(lambda: sh.pane.capture().rstrip().endswith("$"))
    time.sleep(2.0)  # a waiter would have typed by now
    assert not marker.exists()
    assert sh.lines() == [f'{sys.executable} -c "{PASSWORD}"']


def test_a_queued_record_asking_for_force_is_delivered_only_under_the_normal_rules(
        spawn: Spawner, tmp_path: Path) -> None:
    """A record with force set (an older agent-mesh wrote it, or a peer's envelope) is
    still refused by a shell: the waiter never carries FORCE_SEND."""
    from agent_mesh.delivery import queue
    from agent_mesh.registry.view import load_agents

    sh = spawn.bash("sh")
    marker = tmp_path / "pwned"
    agent = load_agents()[sh.address]
    now = time.time()
    record = {"id": "f0f0f0", "address": sh.address, "queued_at": now, "expires_at": now + 60,
              "reason": "test", "bytes": 10, "pane": queue.bind(agent),
              "envelope": {"sender": "peer", "address": sh.address, "body": f"; touch {marker}",
                           "timestamp": "now", "force": True, "queue": True, "msg_id": "f0f0f0"}}
    folder = queue_dir() / sh.address
    folder.mkdir(parents=True)
    (folder / f"{time.time_ns():020d}-f0f0f0.json").write_text(json.dumps(record))
    waiter = subprocess.Popen([str(BIN / "agent-mesh"), "queue-run", sh.address])
    try:
        time.sleep(2.5)
        assert waiter.poll() is None  # still waiting for a pane that may become ready
    finally:
        waiter.kill()
        waiter.wait()
    assert not marker.exists() and sh.lines() == []


# --- 8: never delivered twice ------------------------------------------------------------


def test_a_waiter_killed_between_paste_and_dequeue_does_not_deliver_twice(
        tui: Receiver) -> None:
    draft(tui, "typing")
    msg_id = queued_id(notify("--queue", tui.address, "exactly once",
                              env={"AGENT_MESH_FAULT": "queue-kill-after-paste"}))
    clear_draft(tui, "typing")
    assert tui.wait_lines(1, timeout=10)[0].endswith("] exactly once")
    retry_until(lambda: not waiters())  # it killed itself (kill -9) before the dequeue
    assert [p.suffix for p in queue_files()] == [".sending"]
    assert run_cli("agent-discover").returncode == 0  # the timer's run resumes the queue
    retry_until(lambda: queue_files() == [], timeout=10)
    time.sleep(1.0)
    assert len(tui.lines()) == 1
    assert [r["outcome"] for r in queue_log() if r["id"] == msg_id][-1] == "delivered"


def test_a_waiter_killed_mid_paste_holds_the_message_rather_than_typing_it_again(
        tui: Receiver) -> None:
    """Killed after the record is marked, before the paste is known to have landed: the
    outcome is unknown, so the message is held and shown, never typed a second time."""
    draft(tui, "typing")
    msg_id = queued_id(notify("--queue", tui.address, "maybe",
                              env={"AGENT_MESH_FAULT": "queue-kill-before-paste"}))
    clear_draft(tui, "typing")
    retry_until(lambda: [p.suffix for p in queue_files()] == [".sending"], timeout=10)
    retry_until(lambda: not waiters())
    assert run_cli("agent-discover").returncode == 0
    rows = retry_until(lambda: [r for r in listed() if r.get("state") == "held"], timeout=10)
    assert rows[0]["id"] == msg_id and "may or may not" in str(rows[0]["reason"])
    time.sleep(1.0)
    assert tui.lines() == []


# --- 11: refused at once where it would wait for nothing; waiters back off -------------


def test_queue_and_ask_to_a_shell_are_refused_at_once(spawn: Spawner) -> None:
    sh = spawn.bash("sh")
    out = notify("--queue", sh.address, "hello")
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert b"not queued: it will not become ready by itself" in out.stderr
    assert f"refusing to deliver to '{sh.address}'".encode() in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    asked = subprocess.run([str(BIN / "agent-mesh"), "ask", sh.address, "are you there?",
                            "--timeout", "1m"], env=env, capture_output=True, timeout=30)
    assert asked.returncode == 3, asked.stderr
    assert time.monotonic() - started < 10
    assert queue_files() == [] and sh.lines() == []


def test_queue_to_a_program_that_is_no_agent_is_refused_at_once(spawn: Spawner) -> None:
    pane = spawn.window("cat", ["cat"])
    spawn.register()
    retry_until(lambda: "cat" in pane.display("#{pane_current_command}"))
    out = notify("--queue", "testhost-dev-cat", "hello")
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert b"not a known agent" in out.stderr and queue_files() == []


def test_queue_to_an_agent_with_its_editor_open_waits_for_the_editor(spawn: Spawner) -> None:
    """The agent opened $EDITOR (Claude Code's Ctrl-G; the stand-in's C-x C-e): refused
    now, but the agent is back once the editor closes, so the message is queued, not
    refused at once as if it would wait for nothing."""
    log = spawn.tmp / "ed.jsonl"
    tui = spawn._receiver("ed", ["env", "EDITOR=vi", "VISUAL=vi", sys.executable,
                                 str(AGENT_TUI), str(log)], "? for shortcuts", log)
    tui.pane.send_keys("C-x", "C-e")
    retry_until(lambda: tui.pane.capture().split("\n")[1:3] == ["~", "~"], timeout=10)
    queued_id(notify("--queue", "--ttl", "60s", tui.address, "after the editor"))
    assert tui.lines() == []
    tui.pane.send_keys(":q!", literal=True)
    tui.pane.send_keys("Enter")
    # the stand-in submits what the editor left (nothing) as it closes: prompt_toolkit's
    # edit-and-execute
    got = retry_until(lambda: [line for line in tui.lines() if line], timeout=30)
    assert len(got) == 1 and got[0].endswith("] after the editor"), got


def test_queue_to_an_agent_typed_at_a_shell_waits_for_its_tui(spawn: Spawner) -> None:
    """`claude` just typed at a bash prompt, its TUI not up yet (the terminal not raw):
    it becomes ready by itself, so the message is queued and delivered once it is."""
    sh = spawn.bash("slow")
    log = spawn.tmp / "slow.jsonl"
    sh.pane.send_keys(f"{sys.executable} {AGENT_TUI} {log} --start-delay 4", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: sh.pane.display("#{pane_current_command}").startswith("python"),
                timeout=10)
    queued_id(notify("--queue", "--ttl", "60s", sh.address, "once you are up"))
    retry_until(lambda: "? for shortcuts" in sh.pane.capture(), timeout=20)
    tui = Receiver(sh.pane, sh.address, log)
    got = tui.wait_lines(1, timeout=30)
    assert len(got) == 1 and got[0].endswith("] once you are up"), got


def test_a_waiter_logs_one_line_per_state_and_backs_off(tui: Receiver) -> None:
    draft(tui, "a long thought")
    msg_id = queued_id(notify("--queue", tui.address, "when you are done"))
    time.sleep(4.0)
    lines = [r for r in received(tui.address) if r["id"] == msg_id]
    assert [r["outcome"] for r in lines] == ["queued"], lines
    assert len([r for r in queue_log() if r["id"] == msg_id]) <= 2  # queued, waiting
    clear_draft(tui, "a long thought")
    assert tui.wait_lines(1, timeout=10)[0].endswith("] when you are done")
    assert [r["outcome"] for r in received(tui.address) if r["id"] == msg_id][-1] == "delivered"


# --- 12: the log says what became of a queued message ------------------------------------


def test_log_says_queued_then_delivered_expired_or_cancelled(tui: Receiver) -> None:
    draft(tui, "typing")
    expired = queued_id(notify("--ttl", "1s", tui.address, "too late"))
    cancelled = queued_id(notify("--queue", tui.address, "never mind"))
    delivered = queued_id(notify("--queue", tui.address, "on time"))
    retry_until(lambda: any(r["id"] == expired and r["outcome"] == "expired"
                            for r in queue_log()), timeout=10)
    assert run_cli("agent-mesh", "queue", "--cancel", cancelled).returncode == 0
    clear_draft(tui, "typing")
    assert tui.wait_lines(1, timeout=10)[0].endswith("] on time")
    out = run_cli("agent-mesh", "log", "--json")
    assert out.returncode == 0, out.stderr
    outcomes = {r["id"]: r["outcome"] for r in json.loads(out.stdout)}
    assert outcomes[expired] == "queued → expired"
    assert outcomes[cancelled] == "queued → cancelled"
    assert outcomes[delivered] == "queued → delivered"
    table = run_cli("agent-mesh", "log").stdout.decode()
    assert f"{cancelled}  " in table and "queued → cancelled" in table
    inbox = [r["outcome"] for r in received(tui.address) if r["id"] == expired]
    assert inbox == ["queued", "expired"]


# --- 27: caps on what the queue keeps ------------------------------------------------------


def limits(**values: int) -> None:
    text = "[limits]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    (Path.home() / ".agents" / "config.toml").write_text(text)


def test_queue_caps_refuse_with_one_line(tui: Receiver) -> None:
    limits(queue_message_bytes=100, queue_per_sender=2, queue_ttl_max=60)
    draft(tui, "typing")
    big = notify("--queue", tui.address, "x" * 101)
    assert big.returncode == 1 and b"too large to queue (101 bytes" in big.stderr
    long = notify("--ttl", "2m", tui.address, "hi")
    assert long.returncode == 1 and b"over this host's maximum of 60 s" in long.stderr
    for n in range(2):
        queued_id(notify("--queue", tui.address, f"m{n}"))
    third = notify("--queue", tui.address, "m2")
    assert third.returncode == 3, third.stderr
    assert b"already has 2 messages queued" in third.stderr
    assert len(third.stderr.strip().splitlines()) == 1
    limits(queue_total_bytes=10)
    other = notify("--queue", tui.address, "from someone else", env={"AGENT_NAME": "other"})
    assert other.returncode == 3 and b"queue is full" in other.stderr
    (Path.home() / ".agents" / "config.toml").write_text("[limits]\nqueue_per_sender = -1\n")
    bad = notify("--queue", tui.address, "hi")
    assert bad.returncode == 1 and b"must be a positive whole number" in bad.stderr
    assert len(listed()) == 2
    for pid in waiters():
        os.kill(pid, signal.SIGKILL)


def test_the_timer_ends_held_messages_whose_time_ran_out(tui: Receiver) -> None:
    """Held messages have no waiter: agent-discover (the 5-minute timer) drops expired ones."""
    spawn_dir = queue_dir() / tui.address
    spawn_dir.mkdir(parents=True)
    record = {"id": "e1e1e1", "address": tui.address, "queued_at": 1.0, "expires_at": 2.0,
              "reason": "busy", "held": "its pane %9 (window @9) is gone",
              "envelope": {"sender": "tester", "address": tui.address, "body": "old news",
                           "timestamp": "then", "msg_id": "e1e1e1", "queue": True}}
    (spawn_dir / "00000000000000000001-e1e1e1.held").write_text(json.dumps(record))
    assert [r["state"] for r in listed()] == ["held"]
    assert run_cli("agent-discover").returncode == 0
    assert queue_files() == [] and listed() == []
    assert [r["outcome"] for r in queue_log() if r["id"] == "e1e1e1"] == ["expired"]
    assert [r["outcome"] for r in received(tui.address) if r["id"] == "e1e1e1"] == ["expired"]
    time.sleep(0.5)
    assert tui.lines() == []


def test_a_record_the_waiter_cannot_read_is_failed_not_a_crash(tui: Receiver) -> None:
    from agent_mesh.delivery import queue
    from agent_mesh.registry.view import load_agents

    folder = queue_dir() / tui.address
    folder.mkdir(parents=True)
    now = time.time()
    record = {"id": "bad001", "address": tui.address, "queued_at": now, "expires_at": now + 60,
              "pane": queue.bind(load_agents()[tui.address]), "envelope": {"body": "no sender"}}
    (folder / f"{time.time_ns():020d}-bad001.json").write_text(json.dumps(record))
    waiter = subprocess.run([str(BIN / "agent-mesh"), "queue-run", tui.address],
                            capture_output=True, timeout=30)
    assert (waiter.returncode, waiter.stderr) == (0, b"")
    assert [r["outcome"] for r in queue_log() if r["id"] == "bad001"] == ["failed"]
    assert queue_files() == [] and tui.lines() == []


def peer_rpc(request: dict[str, object]) -> dict[str, object]:
    """One request to `agent-mesh rpc` on stdin, as a peer (or a bad one) sends it."""
    from agent_mesh import __version__
    from agent_mesh.mesh.wire import PROTOCOL

    raw = json.dumps({**request, "protocol": PROTOCOL, "version": __version__}).encode()
    out = run_cli("agent-mesh", "rpc", input=raw + b"\n", timeout=30)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def peer_queues(address: str, sender: str = "peer", body: str = "",
                msg_id: str | None = None) -> dict[str, object]:
    envelope: dict[str, object] = {"sender": sender, "address": address, "body": body,
                                   "timestamp": "now", "queue": True}
    if msg_id is not None:
        envelope["msg_id"] = msg_id
    return peer_rpc({"op": "deliver", "envelope": envelope})


def test_a_peer_message_id_is_an_id_not_a_path(tui: Receiver) -> None:
    """A msg_id from a peer names nothing on disk: one that is not 1-32 lowercase hex
    digits is refused (exit 1) before it is stored; before, `a/b` made a subfolder the
    caps, the TTL and the waiter never looked into."""
    draft(tui, "typing")
    for bad in ("a/b", "../../x", "ABCDEF", "goodid", "0" * 33, ".hidden", "f" * 6 + "\n"):
        reply = peer_queues(tui.address, body="hi", msg_id=bad)
        assert (reply["ok"], reply.get("code")) == (False, 1), (bad, reply)
        assert "message id" in str(reply["error"]), reply
    assert [p for p in queue_dir().rglob("*") if not p.name.startswith(".")] == []
    good = "0123456789abcdef" * 2
    reply = peer_queues(tui.address, body="hi", msg_id=good)
    assert reply["ok"] and reply["result"]["outcome"] == "queued", reply  # type: ignore[index]
    assert [r["id"] for r in listed()] == [good]
    assert [good in p.name for p in queue_files()] == [False]  # the queue names its files
    assert run_cli("agent-mesh", "queue", "--cancel", good).returncode == 0
    assert tui.lines() == []


def test_the_queue_counts_each_record_on_disk_and_every_message(tui: Receiver) -> None:
    """Empty messages from as many senders as a peer likes to claim: the total count
    (`queue_total_messages`) and the records' own size on disk bound them all."""
    limits(queue_total_messages=3)
    draft(tui, "typing")
    for n in range(3):
        reply = peer_queues(tui.address, sender=f"claimed{n}")
        assert reply["ok"] and reply["result"]["outcome"] == "queued", reply  # type: ignore[index]
    reply = peer_queues(tui.address, sender="claimed3")
    assert (reply["ok"], reply.get("code")) == (False, 3), reply
    assert "3 messages" in str(reply["error"]), reply
    assert len(listed()) == 3
    cap = 3000
    limits(queue_total_bytes=cap)
    codes = [peer_queues(tui.address, sender=f"more{n}").get("code") for n in range(10)]
    assert 3 in codes, codes  # empty bodies, but each record takes room on disk
    assert sum(p.stat().st_size for p in queue_files()) <= cap
    reply = peer_queues(tui.address, sender="last")
    assert "queue is full" in str(reply["error"]), reply
    for pid in waiters():
        os.kill(pid, signal.SIGKILL)
    assert tui.lines() == []


def test_a_queued_message_reads_the_limits_once(tui: Receiver, tmp_path: Path) -> None:
    """The [limits] table is parsed once per process, and the request checked once: a
    queued message used to open and parse config.toml six times."""
    limits(queue_per_sender=50)
    draft(tui, "typing")
    from agent_mesh import __version__
    from agent_mesh.mesh.wire import PROTOCOL

    trace = tmp_path / "trace"
    request = {"op": "deliver", "protocol": PROTOCOL, "version": __version__,
               "envelope": {"sender": "p", "address": tui.address, "body": "hi",
                            "timestamp": "now", "queue": True, "msg_id": "abc123"}}
    out = subprocess.run(["strace", "-e", "trace=%file", "-o", str(trace),
                          str(BIN / "agent-mesh"), "rpc"],
                         input=json.dumps(request).encode() + b"\n",
                         capture_output=True, timeout=30)
    assert json.loads(out.stdout)["result"]["outcome"] == "queued", out.stdout
    touches = [line for line in trace.read_text().splitlines() if "config.toml" in line]
    opens = [line for line in touches if "open" in line]
    assert len(opens) == 1, touches
    assert len(touches) <= 6, touches  # a stat per cap looked up, each looked up once
    for pid in waiters():
        os.kill(pid, signal.SIGKILL)
