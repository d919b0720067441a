"""Issue 15 on real tmux: `agent-mesh agent-event EVENT` as the agent CLIs run it (in the
agent's pane, TMUX and TMUX_PANE inherited, the event's JSON on stdin), the delivery rule
that prefers a fresh hook state to the screen, and the Stop hook's handover of the queue.

The agent here is the prompt_toolkit stand-in (tests/programs/agent_tui.py); the hook is
run as the CLIs run it, with AGENT_MESH_HOOK_PARENT naming the stand-in as the agent
process (the real CLIs are its parent; tests/test_agent_clis.py runs those)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, Receiver, Spawner, notify, retry_until, run_cli


@pytest.fixture
def tui(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


def pane_pid(agent: Receiver) -> int:
    return int(agent.pane.display("#{pane_pid}"))


def hook(agent: Receiver, event: str, payload: dict[str, object] | None = None,
         cli: str = "claude", parent: int | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the hook for agent's pane as its CLI would."""
    tmux_env = agent.pane.display("#{socket_path},#{pid},#{session_id}").replace("$", "")
    data = {"session_id": "s-1", "hook_event_name": event, "cwd": "/tmp", **(payload or {})}
    full = {"TMUX": tmux_env, "TMUX_PANE": agent.pane.pane_id,
            "AGENT_MESH_HOOK_PARENT": str(parent or pane_pid(agent)), **(env or {})}
    return run_cli("agent-mesh", "agent-event", "--agent", cli, event,
                   input=json.dumps(data).encode(), env=full)


def status_of(agent: Receiver) -> dict[str, str]:
    out = run_cli("agent-mesh", "status", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["agents"]
    return next(r for r in rows if r["address"] == agent.address)  # type: ignore[no-any-return]


def queued(out: subprocess.CompletedProcess[bytes]) -> str:
    assert out.returncode == 5, (out.returncode, out.stdout, out.stderr)
    return re.search(rb"queued as ([0-9a-f]+)", out.stdout).group(1).decode()  # type: ignore[union-attr]


def queue_files() -> list[Path]:
    root = Path.home() / ".agents" / "queue"
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))


def received(address: str) -> list[dict[str, object]]:
    path = Path.home() / ".agents" / "log" / "received" / f"{address}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def submitted(agent: Receiver) -> list[str]:
    return agent.lines() if agent.log.exists() else []


# --- the recorder ------------------------------------------------------------------------


def test_each_event_records_the_panes_state_and_status_prefers_it(tui: Receiver) -> None:
    assert status_of(tui)["state"] == "idle"
    assert hook(tui, "UserPromptSubmit", {"prompt": "go"}).returncode == 0
    row = status_of(tui)
    assert row["state"] == "working" and "by its hooks" in row["detail"], row
    assert hook(tui, "PermissionRequest", {"tool_name": "Bash"}).returncode == 0
    row = status_of(tui)
    assert row["state"] == "waiting" and "Bash" in row["detail"], row
    assert hook(tui, "PostToolUse").returncode == 0
    assert status_of(tui)["state"] == "working"
    out = hook(tui, "Stop", {"stop_hook_active": False})
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert status_of(tui)["state"] == "idle"
    hook(tui, "SessionEnd", {"reason": "exit"})
    assert status_of(tui)["state"] == "idle"  # the screen again
    records = list((Path.home() / ".agents" / "turns").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["state"] == "ended"
    assert (Path.home() / ".agents" / "turns" / ".last-claude").exists()


def test_a_claude_code_turn_no_hook_ended_lapses_once_its_screen_is_idle(tui: Receiver) -> None:
    """Escape fires no hook in Claude Code: `working` 30 s after the last event, with an
    idle screen, counts as idle again; Codex's (it has an Interrupt hook) does not."""
    hook(tui, "UserPromptSubmit")
    record = next((Path.home() / ".agents" / "turns").glob("*.json"))
    data = json.loads(record.read_text())
    data["time"] -= 31
    record.write_text(json.dumps(data))
    assert status_of(tui)["state"] == "idle"
    assert notify(tui.address, "after an interrupted turn").returncode == 0
    data.update(agent="codex", state="working", event="UserPromptSubmit")
    record.write_text(json.dumps(data))
    assert status_of(tui)["state"] == "working"


def test_a_question_its_hooks_saw_open_never_lapses_on_the_screen(tui: Receiver) -> None:
    """A Claude Code `waiting` (PermissionRequest) 31 s old, with an idle-looking screen,
    still queues: the screen may misread a question, and a message must never answer one."""
    hook(tui, "PermissionRequest")
    record = next((Path.home() / ".agents" / "turns").glob("*.json"))
    data = json.loads(record.read_text())
    assert data["state"] == "waiting"
    data["time"] -= 31
    record.write_text(json.dumps(data))
    assert status_of(tui)["state"] == "waiting"
    out = notify(tui.address, "must not answer a question")
    assert out.returncode == 5, out.stderr
    assert "must not answer a question" not in tui.pane.capture()


def test_a_record_of_an_agent_that_exited_is_ignored(tui: Receiver) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        hook(tui, "UserPromptSubmit", parent=sleeper.pid)
        assert status_of(tui)["state"] == "working"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert status_of(tui)["state"] == "idle"  # its agent is gone: the screen decides


def test_the_hook_never_breaks_the_agent(tui: Receiver) -> None:
    for args, stdin in ((["agent-event", "Stop"], b"not json"), (["agent-event"], b""),
                        (["agent-event", "--agent", "claude", "Bad;Event"], b"{}")):
        out = run_cli("agent-mesh", *args, input=stdin, env={"TMUX": "", "TMUX_PANE": ""})
        assert (out.returncode, out.stdout, out.stderr) == (0, b"", b""), args
    out = hook(tui, "Stop", env={"HOME": "/nonexistent/x"})
    assert (out.returncode, out.stdout) == (0, b"")


# --- the rule: mid-turn by hooks -> queued, never typed ------------------------------------


def test_a_message_mid_turn_is_queued_and_handed_over_whole_at_the_stop(tui: Receiver) -> None:
    hook(tui, "UserPromptSubmit", {"prompt": "work"})
    body = "line one; $(not run)\n  line two — ünï\n\nlast"
    msg = queued(notify(tui.address, body))  # no --queue: mid-turn by its hooks
    time.sleep(0.5)
    assert submitted(tui) == [] and "line one" not in tui.pane.capture()
    out = hook(tui, "Stop", {"stop_hook_active": False})
    assert out.returncode == 2, out
    text = out.stderr.decode()
    assert re.fullmatch(r"\[from tester @ [0-9T:Z-]+\] " + re.escape(body), text), text
    assert queue_files() == []
    assert [r["outcome"] for r in received(tui.address) if r.get("id") == msg] == \
        ["queued", "delivered"]
    assert status_of(tui)["state"] == "working"  # it goes on with the messages
    again = hook(tui, "Stop", {"stop_hook_active": True})
    assert (again.returncode, again.stderr) == (0, b"")  # never twice
    time.sleep(0.3)
    assert submitted(tui) == []  # nothing was typed, ever


def test_ten_messages_in_one_turn_go_over_once_each_in_order(tui: Receiver) -> None:
    hook(tui, "UserPromptSubmit")
    ids = [queued(notify(tui.address, f"message {n}")) for n in range(10)]
    out = hook(tui, "Stop")
    assert out.returncode == 2
    parts = out.stderr.decode().split("\n\n")
    assert [p.split("] ", 1)[1] for p in parts] == [f"message {n}" for n in range(10)]
    delivered = [r["id"] for r in received(tui.address) if r.get("outcome") == "delivered"]
    assert delivered == ids
    assert hook(tui, "Stop").returncode == 0


def test_a_file_sent_mid_turn_is_dropped_and_announced_at_the_stop(tui: Receiver,
                                                                   tmp_path: Path) -> None:
    hook(tui, "UserPromptSubmit")
    src = tmp_path / "report.md"
    src.write_text("# report\n")
    queued(notify(tui.address, "--file", str(src), "see this"))
    dropped = Path.home() / ".agent-inbox" / "tester" / "report.md"
    assert dropped.read_text() == "# report\n"
    out = hook(tui, "Stop")
    assert out.returncode == 2
    assert "file dropped at ~/.agent-inbox/tester/report.md (9 bytes): see this" in \
        out.stderr.decode()


def test_a_hook_killed_mid_handover_leaves_the_messages_queued(tui: Receiver) -> None:
    hook(tui, "UserPromptSubmit")
    ids = [queued(notify(tui.address, f"keep {n}")) for n in range(3)]
    out = hook(tui, "Stop", env={"AGENT_MESH_FAULT": "handover-kill-after-write"})
    assert out.returncode == -signal.SIGKILL
    assert len(queue_files()) == 3
    assert not [r for r in received(tui.address) if r.get("outcome") == "delivered"]
    out = hook(tui, "Stop")
    assert out.returncode == 2 and out.stderr.decode().count("] keep ") == 3
    delivered = [r["id"] for r in received(tui.address) if r.get("outcome") == "delivered"]
    assert delivered == ids and queue_files() == []


def test_an_id_already_delivered_is_not_handed_over_again(tui: Receiver) -> None:
    hook(tui, "UserPromptSubmit")
    msg = queued(notify(tui.address, "once"))
    record = json.loads(queue_files()[0].read_text())
    from agent_mesh.delivery import log
    from agent_mesh.model import Envelope

    log.received_event(Envelope.from_json(record["envelope"]), tui.address, "delivered", "x")
    out = hook(tui, "Stop")
    assert (out.returncode, out.stderr) == (0, b"")
    assert queue_files() == []
    assert [r["outcome"] for r in received(tui.address) if r.get("id") == msg] == \
        ["queued", "delivered"]


def test_a_question_open_by_the_hooks_gets_no_keystroke(tui: Receiver) -> None:
    hook(tui, "PermissionRequest", {"tool_name": "Bash"})
    queued(notify(tui.address, "not into the question"))
    forced = notify(tui.address, "forced", env={"FORCE_SEND": "1"})
    assert forced.returncode == 3 and b"permission" in forced.stderr, forced
    time.sleep(0.5)
    assert submitted(tui) == [] and "question" not in tui.pane.capture()
    out = hook(tui, "Stop")
    assert out.returncode == 2 and "not into the question" in out.stderr.decode()


def test_an_idle_agent_by_its_hooks_is_delivered_to_by_paste(tui: Receiver) -> None:
    hook(tui, "SessionStart", {"source": "startup"})
    assert notify(tui.address, "straight in").returncode == 0
    retry_until(lambda: submitted(tui) and submitted(tui)[-1].endswith("straight in"))


def test_without_hooks_nothing_changes(tui: Receiver) -> None:
    assert notify(tui.address, "as today").returncode == 0
    retry_until(lambda: submitted(tui) and submitted(tui)[-1].endswith("as today"))
    assert not (Path.home() / ".agents" / "turns").exists()


def test_messages_queued_for_an_agent_that_exits_reach_the_next_agent_in_the_pane(
        spawn: Spawner) -> None:
    shell = spawn.bash("host")
    log = spawn.tmp / "next.jsonl"
    from conftest import AGENT_TUI

    shell.pane.send_keys(f"{BIN}/python {AGENT_TUI} {spawn.tmp / 'first.jsonl'}", "Enter")
    shell.pane.wait_for("? for shortcuts", timeout=15)
    agent = Receiver(shell.pane, shell.address, spawn.tmp / "first.jsonl", True)
    first = int(retry_until(lambda: subprocess.run(
        ["pgrep", "-f", "-n", "first.jsonl"], capture_output=True, text=True).stdout.strip()))
    hook(agent, "UserPromptSubmit", parent=first)
    msg = queued(notify(agent.address, "for whoever comes next"))
    os.kill(first, signal.SIGKILL)
    shell.pane.wait_for("$ ")
    out = run_cli("agent-mesh", "queue", "--json")
    assert msg in out.stdout.decode()  # still queued, visible
    time.sleep(1.0)
    assert "for whoever" not in shell.pane.capture()  # never typed into the shell
    shell.pane.send_keys(f"{BIN}/python {AGENT_TUI} {log}", "Enter")
    retry_until(lambda: log.exists() and "for whoever comes next" in log.read_text(),
                timeout=20)
    assert [r["outcome"] for r in received(agent.address) if r.get("id") == msg] == \
        ["queued", "delivered"]


def test_the_hook_imports_nothing_heavy(tui: Receiver) -> None:
    """agent-event starts like the tmux hook: no click, tomlkit, paramiko, nor the
    delivery rule when nothing is queued."""
    tmux_env = tui.pane.display("#{socket_path},#{pid},#{session_id}").replace("$", "")
    res = subprocess.run(
        [str(BIN / "python"), "-X", "importtime", "-c",
         "import sys; from agent_mesh.cli.agent_event import main; "
         "sys.exit(main(['--agent', 'claude', 'Stop']))"],
        input=b'{"hook_event_name": "Stop"}', capture_output=True, check=False,
        env={**os.environ, "TMUX": tmux_env, "TMUX_PANE": tui.pane.pane_id})
    assert res.returncode == 0, res.stderr[-500:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in
                res.stderr.decode().splitlines() if line.startswith("import time:")}
    assert not {"click", "tomlkit", "paramiko", "subprocess"} & imported


def test_a_stop_while_the_pane_lock_is_busy_still_ends_the_turn(tui: Receiver) -> None:
    """The Stop hook cannot take the pane's lock in time (a delivery holds it): the
    messages stay queued, but the turn's end is still recorded, or a Codex pane (whose
    `working` never lapses) would count as mid-turn until its next prompt."""
    from agent_mesh.delivery import handover

    hook(tui, "UserPromptSubmit", cli="codex")
    msg = queued(notify(tui.address, "after the busy stop"))
    socket = tui.pane.display("#{socket_path}")
    with handover.pane_lock(socket, tui.pane.pane_id):
        out = hook(tui, "Stop", cli="codex")
        assert (out.returncode, out.stderr) == (0, b"")
        record = json.loads(next((Path.home() / ".agents" / "turns").glob("*.json")).read_text())
        assert record["state"] == "idle", record
    retry_until(lambda: [r["id"] for r in received(tui.address)
                         if r.get("outcome") == "delivered"] == [msg], timeout=20)
    (line,) = tui.wait_lines(1)
    assert line.endswith("] after the busy stop")


def test_a_turn_its_hooks_start_while_delivery_waits_for_the_pane_is_not_typed_into(
        tui: Receiver) -> None:
    """Delivery re-reads the pane while the previous message lands (paste._poll_ready):
    a turn that started meanwhile by the agent's hooks must stop it there (queued), as
    at the first look, never go on to type into the turn."""
    from agent_mesh.delivery import paste
    from agent_mesh.delivery.pane import Pane
    from agent_mesh.errors import MidTurn
    from agent_mesh.tmux import Tmux

    hook(tui, "UserPromptSubmit")
    pane = Pane(Tmux(socket_path=tui.pane.display("#{socket_path}")), tui.pane.pane_id)
    with pytest.raises(MidTurn):
        paste._poll_ready(pane, False)


def test_the_launcher_exits_0_silently_when_the_package_is_gone(tmp_path: Path) -> None:
    """hook.launch naming an interpreter whose agent-mesh was uninstalled (pip uninstall
    without setup --uninstall): the hook must still exit 0 with nothing on stderr, not a
    traceback at every event of the agent."""
    import sys

    from agent_mesh.ops.setup_base import data_file

    home = tmp_path / "agents"
    home.mkdir()
    (home / "hook.launch").write_text(f"{sys.executable}\n{tmp_path / 'gone'}\n")
    env = {**os.environ, "AGENT_MESH_HOME": str(home), "AGENT_MESH_BIN": str(tmp_path / "bin")}
    out = subprocess.run(["sh", data_file("agent-event"), "--agent", "claude", "Stop"],
                         input=b"{}", capture_output=True, env=env, timeout=30, check=False)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b""), out


def test_a_bookkeeping_failure_after_the_handover_still_hands_it_over(tui: Receiver) -> None:
    """Once the whole text is on stderr, only exit 2 gets it to the agent: a record that
    cannot be removed afterwards (here: immutable) must not turn the handover into an
    exit 0, which would drop the text while the received log says `delivered`."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr to make a queue record immutable")
    hook(tui, "UserPromptSubmit")
    ids = [queued(notify(tui.address, f"kept {n}")) for n in range(2)]
    stuck = queue_files()[-1]
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        out = hook(tui, "Stop")
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert out.returncode == 2 and out.stderr.decode().count("] kept ") == 2, out
    again = hook(tui, "Stop")  # the record left behind is known delivered: not twice
    assert (again.returncode, again.stderr) == (0, b""), again
    delivered = [r["id"] for r in received(tui.address) if r.get("outcome") == "delivered"]
    assert delivered == ids and queue_files() == []


def test_a_handover_is_capped_at_whole_messages_and_says_how_many_wait(tui: Receiver) -> None:
    """Review item 4: the continuation had no size cap (a queued message may be 1 MB;
    Claude Code shows a hook's text past 10,000 characters only as a preview)."""
    from agent_mesh.delivery.handover import MAX_CHARS

    hook(tui, "UserPromptSubmit")
    bodies = [f"m{n} " + "x" * 3000 for n in range(5)]
    ids = [queued(notify(tui.address, body)) for body in bodies]
    out = hook(tui, "Stop")
    assert out.returncode == 2, out
    text = out.stderr.decode()
    assert len(text) <= MAX_CHARS, len(text)
    *parts, last = text.split("\n\n")
    assert [p.split("] ", 1)[1] for p in parts] == bodies[:2]  # whole, in order
    assert "3 more queued message(s)" in last and "\n" not in last, last
    assert len(queue_files()) == 3
    delivered = [r["id"] for r in received(tui.address) if r.get("outcome") == "delivered"]
    assert delivered == ids[:2]
    assert hook(tui, "Stop", {"stop_hook_active": True}).returncode == 0
    hook(tui, "UserPromptSubmit")  # (the continuation ended; a next turn of the agent)
    out = hook(tui, "Stop")
    assert out.returncode == 2 and "1 more queued message(s)" in out.stderr.decode()
    hook(tui, "UserPromptSubmit")
    out = hook(tui, "Stop")
    assert out.returncode == 2 and out.stderr.decode().endswith(bodies[4])
    delivered = [r["id"] for r in received(tui.address) if r.get("outcome") == "delivered"]
    assert delivered == ids and queue_files() == []


def test_a_message_bigger_than_a_handover_waits_whole_for_the_paste(tui: Receiver) -> None:
    from agent_mesh.delivery.handover import MAX_CHARS

    hook(tui, "UserPromptSubmit")
    big = "b" * (MAX_CHARS + 100)
    queued(notify(tui.address, big))
    out = hook(tui, "Stop")
    assert (out.returncode, out.stderr) == (0, b"")  # not cut, not handed over
    retry_until(lambda: submitted(tui) and submitted(tui)[-1].endswith(big), timeout=30)
