"""Delivery into real programs, checked byte for byte where the program logs what it got.

The agent TUI (tests/programs/agent_tui.py) models the measured agent-TUI
behaviour: an Enter within 150 ms of other input is a newline, not a submit.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path

from conftest import BIN, SENDER, Receiver, Spawner, notify, retry_until

from agent_mesh.delivery.inbox import place_local
from agent_mesh.delivery.pane import pane_state
from agent_mesh.delivery.rule import refusal
from agent_mesh.tmux import Tmux

TAG = re.compile(r"\[from " + SENDER + r" @ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \u2713testhost\] ")

LINES_100K = "".join(f"{n:05d} " + "abcdefghij" * 9 + "xyz\n" for n in range(1000))

# name -> (body as passed to notify-pane, what must arrive, control chars removed)
BODIES: dict[str, tuple[str, str, int]] = {
    "short": ("hi", "hi", 0),
    "2k": ("0123456789abcdef" * 128, "0123456789abcdef" * 128, 0),
    "quotes": ("he said \"run it\" and 'stop'", "he said \"run it\" and 'stop'", 0),
    "semicolons": ("a; b;c", "a; b;c", 0),
    "trailing-semicolon": ("done;", "done;", 0),
    "escaped-semicolon": ("keep \\; this \\;", "keep \\; this \\;", 0),
    "substitution": ("$(touch /tmp/pwned) `id` ${HOME}", "$(touch /tmp/pwned) `id` ${HOME}", 0),
    "backslashes": ("C:\\dir\\n \\\\srv\\ end\\", "C:\\dir\\n \\\\srv\\ end\\", 0),
    "leading-dash": ("-rf --help", "-rf --help", 0),
    "double-dash": ("--", "--", 0),
    "unicode": ("héllo — 你好世界 ✓ 🚀👍🏽 Ω", "héllo — 你好世界 ✓ 🚀👍🏽 Ω", 0),
    "paste-end-marker": ("before\x1b[201~after", "before[201~after", 1),
    "100k-one-line": ("0123456789" * 10_000, "0123456789" * 10_000, 0),
    "controls": ("bell\x07 bs\x08 vt\x0b ff\x0c del\x7f c1\x85\x9b.", "bell bs vt ff del c1.", 7),
}
# Only a box that takes bracketed paste can hold these (Python's readline submits on LF
# and completes on TAB, as the real REPL does).
TUI_ONLY: dict[str, tuple[str, str, int]] = {
    "multi-line": (
        "line one\nline two\n\n  indented\r\nlast",
        "line one\nline two\n\n  indented\nlast",
        0,
    ),
    "tabs": ("col1\tcol2\t\tcol3", "col1\tcol2\t\tcol3", 0),
    "100k": (LINES_100K, LINES_100K, 0),
}


def deliver_all(receiver: Receiver, bodies: dict[str, tuple[str, str, int]]) -> None:
    """Send each body in turn; each must land whole, tagged, and submitted exactly once."""
    for count, (name, (body, expected, removed)) in enumerate(bodies.items(), start=1):
        res = notify(receiver.address, body)
        assert res.returncode == 0, (name, res.stderr)
        lines = receiver.wait_lines(count)
        assert len(lines) == count, (name, lines[count - 1 :])
        got = lines[-1]
        assert TAG.match(got), (name, got[:80])
        assert got[TAG.match(got).end() :] == expected, name  # type: ignore[union-attr]
        notes = [line for line in res.stderr.decode().splitlines() if line]
        if removed:
            assert notes == [
                f"notify-pane: note: removed {removed} control character(s) from the message"
            ], name
        else:
            assert notes == [], (name, notes)
    assert_idle_after(receiver, len(bodies))


def assert_idle_after(receiver: Receiver, count: int) -> None:
    """Nothing submitted twice and no leftover draft: the pane is ready for the next one."""
    time.sleep(0.3)
    assert len(receiver.lines()) == count
    state = pane_state(Tmux(), receiver.pane.pane_id)
    assert refusal(state) is None, receiver.pane.capture()


def test_bodies_reach_agent_tui_byte_for_byte(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    deliver_all(tui, {**BODIES, **TUI_ONLY})


def test_bodies_reach_python_prompt_byte_for_byte(spawn: Spawner) -> None:
    py = spawn.py_receiver()
    deliver_all(py, BODIES)


def test_ten_concurrent_senders_each_land_whole_and_once(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    bodies = [f"sender {n}: " + f"{n}" * 300 + f"\nsecond line of {n} ;" for n in range(10)]
    procs = [
        subprocess.Popen(
            [str(BIN / "notify-pane"), tui.address, body],
            env={**os.environ, "AGENT_NAME": SENDER},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for body in bodies
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert outcomes == [(0, b"")] * 10
    lines = tui.wait_lines(10, timeout=30)
    got = sorted(line[TAG.match(line).end() :] for line in lines)  # type: ignore[union-attr]
    assert got == sorted(bodies)
    assert_idle_after(tui, 10)


def test_typed_text_then_enter_is_swallowed_but_notify_pane_submits(spawn: Spawner) -> None:
    """Why we paste and settle: the bash tool's `send-keys -l` + `send-keys Enter`
    lands as a draft with a trailing newline in an agent TUI, never submitted."""
    tui = spawn.agent_tui()
    text = "please review the parser change " * 6 + "and report back"  # ~200 chars
    assert 190 <= len(text) <= 210
    tui.pane.send_keys(text, literal=True)
    tui.pane.send_keys("Enter")
    retry_until(lambda: "report back" in tui.pane.capture())
    time.sleep(0.5)
    assert tui.lines() == []
    assert "a draft in the input box" in (refusal(pane_state(Tmux(), tui.pane.pane_id)) or "")
    tui.pane.send_keys("Enter")  # a lone Enter later submits: the first one was a newline
    assert tui.wait_lines(1) == [text + "\n"]

    res = notify(tui.address, text)
    assert res.returncode == 0, res.stderr
    lines = tui.wait_lines(2)
    assert TAG.match(lines[1]) and lines[1].endswith("] " + text)


# --- --file -----------------------------------------------------------------


def inbox() -> Path:
    return Path.home() / ".agent-inbox"


def test_file_drop_is_byte_exact_private_and_announced(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui()
    data = bytes(range(256)) * 40 + b"\xff\xfe not utf-8 \x00"
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    res = notify(tui.address, "--file", str(src), "see; attached")
    assert res.returncode == 0, res.stderr
    dropped = inbox() / SENDER / "report.bin"
    assert dropped.read_bytes() == data
    for folder in (inbox(), inbox() / SENDER):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in (inbox() / SENDER).iterdir()] == ["report.bin"]  # no temp files
    (line,) = tui.wait_lines(1)
    notice = f"file dropped at ~/.agent-inbox/{SENDER}/report.bin ({len(data)} bytes)"
    assert line[TAG.match(line).end() :] == f"{notice}: see; attached"  # type: ignore[union-attr]

    src.write_bytes(b"second version\n")
    res = notify(tui.address, "--file", str(src))
    assert res.returncode == 0, res.stderr
    lines = tui.wait_lines(2)
    assert dropped.read_bytes() == data  # the first drop is never replaced
    assert (inbox() / SENDER / "report-2.bin").read_bytes() == b"second version\n"
    assert lines[1].endswith(f"] file dropped at ~/.agent-inbox/{SENDER}/report-2.bin (15 bytes)")
    assert sorted(p.name for p in (inbox() / SENDER).iterdir()) == ["report-2.bin", "report.bin"]
    assert stat.S_IMODE((inbox() / SENDER / "report-2.bin").stat().st_mode) == 0o600


def test_file_drop_sanitizes_odd_basenames(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "evil\nname\x1b[31m\tx.txt"
    src.write_bytes(b"x")
    res = notify(tui.address, "--file", str(src), "odd")
    assert res.returncode == 0, res.stderr
    assert [p.name for p in (inbox() / SENDER).iterdir()] == ["evil_name_[31m_x.txt"]
    (line,) = tui.wait_lines(1)
    assert line.endswith("/evil_name_[31m_x.txt (1 bytes): odd")


def test_drop_file_never_leaves_the_inbox() -> None:
    """Names from a remote envelope can be anything; they must stay one component."""
    folder = inbox() / "%2E.%2F..%2Foutside"
    for name in ["../x", "../../etc/passwd", "..", ".", "a/..", "...hidden", "ok name.txt",
                 "tab\there\x7f\x85", "../x"]:
        dropped = place_local(b"data", "../../outside", name)
        shown, size = dropped.shown, dropped.size
        assert shown.startswith("~/.agent-inbox/%2E.%2F..%2Foutside/"), name
        assert (folder / shown.rsplit("/", 1)[1]).read_bytes() == b"data"
        assert size == 4
    assert sorted(p.name for p in folder.iterdir()) == [
        "file", "file-2", "file-3", "hidden", "ok name.txt", "passwd", "tab_here__", "x", "x-2"
    ]
    assert sorted(p.name for p in inbox().iterdir()) == ["%2E.%2F..%2Foutside", ".incoming"]
    assert list((inbox() / ".incoming").iterdir()) == []
    assert not (Path.home() / "outside").exists()


def test_file_drop_failure_is_one_line_exit_4(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui()
    inbox().write_text("not a directory")
    src = tmp_path / "a.txt"
    src.write_text("x")
    res = notify(tui.address, "--file", str(src))
    err = res.stderr.decode()
    assert res.returncode == 4 and err.count("\n") == 1, err
    assert err.startswith("notify-pane: could not drop the file into ~/.agent-inbox: "), err
    assert tui.lines() == []


def test_refused_file_drop_leaves_nothing_in_the_inbox(spawn: Spawner, tmp_path: Path) -> None:
    """The file goes into the inbox only once the pane is found ready."""
    repl = spawn.bash()
    src = tmp_path / "report.txt"
    src.write_bytes(b"not yet")
    res = notify(repl.address, "--file", str(src), "see attached")
    assert res.returncode == 3, res.stderr
    assert not (inbox() / SENDER / "report.txt").exists()
