"""The delivery path under pressure: one lock per real pane, whole messages or nothing.

Real tmux, real receiving programs (tests/programs), real notify-pane processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import BIN, PROGRAMS, SELF_HOST, SENDER, Spawner, notify, retry_until
from pytest_mock import MockerFixture

from agent_mesh.delivery.pane import pane_state
from agent_mesh.delivery.rule import refusal
from agent_mesh.tmux import Tmux


def _socket_path(spawn: Spawner) -> str:
    return spawn.server.run("display-message", "-p", "#{socket_path}").stdout.strip()


def test_senders_inside_and_outside_tmux_share_one_lock_per_pane(spawn: Spawner) -> None:
    """2×20 concurrent senders, half with $TMUX set (as from another pane of the same
    server), half without (a cron job, `agent-mesh rpc` over SSH): 40 separate
    submissions, none glued to another, none refused as a draft."""
    tui = spawn.agent_tui()
    socket = _socket_path(spawn)
    inside = {**os.environ, "AGENT_NAME": SENDER, "TMUX": f"{socket},{os.getpid()},0"}
    outside = {k: v for k, v in os.environ.items() if k != "TMUX"} | {"AGENT_NAME": SENDER}
    procs = []
    for n in range(20):
        for env, where in ((inside, "inside"), (outside, "outside")):
            procs.append(subprocess.Popen(
                [str(BIN / "notify-pane"), tui.address, f"{where}-{n}"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))
    outcomes = [(p.wait(timeout=240), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert [o for o in outcomes if o != (0, b"")] == []
    retry_until(lambda: sum(line.count("[from ") for line in tui.lines()) >= 40, timeout=30)
    lines = tui.lines()
    bodies = sorted(line.split("] ", 1)[1] for line in lines)
    expected = sorted(f"{where}-{n}" for n in range(20) for where in ("inside", "outside"))
    assert bodies == expected, [line for line in lines if line.count("[from") != 1]
    assert refusal(pane_state(Tmux(), tui.pane.pane_id)) is None


# --- whole messages or nothing -------------------------------------------------

RAW_RECEIVER = PROGRAMS / "raw_receiver.py"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _read_bytes(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 10**12  # gone: it read everything
    return int(text.split("rchar:")[1].split()[0])


def test_sender_killed_while_tmux_loads_the_buffer_submits_nothing(
    spawn: Spawner, tmp_path: Path
) -> None:
    """10 MB on --stdin, the sender killed while its tmux client is still loading the
    buffer: the orphaned client finishes with a short buffer, which must be neither
    pasted nor submitted (it was: 2.6 MB pasted and submitted)."""
    log = tmp_path / "raw.jsonl"
    pane = spawn.window("raw", [sys.executable, str(RAW_RECEIVER), str(log)])
    pane.wait_for("raw>", timeout=15)
    spawn.register()
    address = f"{SELF_HOST}-{spawn.session}-raw"
    body = ("0123456789abcdef" * 64 + "\n") * (10 * 1024 * 1024 // 1025)
    sender = subprocess.Popen(
        [str(BIN / "notify-pane"), address, "--stdin"],
        env={**os.environ, "AGENT_NAME": SENDER},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert sender.stdin is not None
    sender.stdin.write(body.encode())
    sender.stdin.close()
    client = retry_until(
        lambda: [c for c in _children(sender.pid) if b"load-buffer" in _cmdline(c)],
        timeout=30, interval=0.001,
    )[0]
    # Kill once the client has read a good part of the text, but not all of it.
    retry_until(lambda: _read_bytes(client) > 2_000_000, timeout=30, interval=0.001)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait(timeout=10)
    # The orphaned tmux client finishes on its own; then give any Enter time to land.
    retry_until(lambda: not Path(f"/proc/{client}").exists(), timeout=30)
    marker = notify(address, "after")
    assert marker.returncode == 0, marker.stderr

    def received() -> list[str]:
        rows = log.read_text().splitlines() if log.exists() else []
        return [json.loads(row) for row in rows]

    retry_until(lambda: any(line.endswith("] after") for line in received()), timeout=30)
    lines = received()
    assert len(lines) in (1, 2), [len(line) for line in lines]
    assert lines[-1].endswith("] after")
    if len(lines) == 2:  # the kill came after tmux had the whole text: all of it, once
        assert lines[0].split("] ", 1)[1] == body
    assert spawn.server.run("list-buffers").stdout == ""


def test_text_reaches_tmux_byte_counted(spawn: Spawner) -> None:
    """Multi-byte text: the size check counts bytes as tmux does, so it still lands."""
    tui = spawn.agent_tui()
    res = notify(tui.address, "héllo — 你好 🚀")
    assert res.returncode == 0, res.stderr
    (line,) = tui.wait_lines(1)
    assert line.endswith("] héllo — 你好 🚀")
    assert spawn.server.run("list-buffers").stdout == ""


# --- the claim: lock, wait, check; then the caller places and pastes ------------


def test_claim_checks_the_pane_before_the_caller_does_anything(spawn: Spawner) -> None:
    import pytest

    from agent_mesh.delivery.paste import claim_pane
    from agent_mesh.errors import NotReady

    sh = spawn.bash()
    entered = []
    with pytest.raises(NotReady), claim_pane(Tmux(), sh.pane.pane_id):
        entered.append(True)
    assert entered == []
    tui = spawn.agent_tui()
    with claim_pane(Tmux(), tui.pane.pane_id) as pane:
        assert pane.pane_id == tui.pane.pane_id
        pane.paste("claimed and pasted")
    assert tui.wait_lines(1) == ["claimed and pasted"]


def test_state_runs_meanwhile_during_the_tmux_call_and_leaves_no_client(spawn: Spawner) -> None:
    """Pane.state(meanwhile): what a delivery does while tmux reads the pane (it loads
    its rules then). The state reads as without it; a failing meanwhile still collects tmux."""
    import pytest

    from agent_mesh.delivery.pane import Pane

    tui = spawn.agent_tui()
    pane = Pane(Tmux(), tui.pane.pane_id)
    ran = []
    state = pane.state(meanwhile=lambda: ran.append(True))
    assert ran == [True]
    again = pane.state()
    assert (state.pane_id, state.target, state.tty_mode) == (
        again.pane_id, again.target, again.tty_mode)

    def fails() -> None:
        raise RuntimeError("meanwhile failed")

    with pytest.raises(RuntimeError, match="meanwhile failed"):
        pane.state(meanwhile=fails)
    with pytest.raises(ChildProcessError):  # the tmux client was waited for
        os.waitpid(-1, os.WNOHANG)


def test_file_is_taken_back_when_the_paste_fails(spawn: Spawner, tmp_path: Path,
                                                mocker: MockerFixture) -> None:
    """tmux fails at the very last step (fault injected at the tmux edge): the
    announcement never went out, so the file it would have announced is removed."""
    import pytest

    from agent_mesh.delivery import paste
    from agent_mesh.delivery.inbox import SourceFile
    from agent_mesh.delivery.pane import Pane
    from agent_mesh.errors import WireError
    from agent_mesh.model import Envelope
    from agent_mesh.registry.view import load_agents

    tui = spawn.agent_tui()
    src = tmp_path / "report.md"
    src.write_text("content")
    mocker.patch.object(Pane, "paste", side_effect=WireError("tmux went away"))
    envelope = Envelope(sender=SENDER, address=tui.address, body="see", timestamp="t",
                        file_name="report.md", file_size=7)
    source = SourceFile(str(src))
    with pytest.raises(WireError):
        paste.deliver_envelope(envelope, load_agents()[tui.address], source)
    source.close()
    inbox = Path.home() / ".agent-inbox"
    assert [p for p in inbox.rglob("*") if p.is_file()] == []
