"""`agent-mesh doctor` reports upload parts a killed sender left in ~/.agent-inbox/.incoming
(issue 8 item 3); fresh parts (an upload in progress) are not reported."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import run_cli

from agent_mesh.delivery.inbox import incoming_dir, new_part
from agent_mesh.ops import doctor


def _part(age: float, size: int) -> Path:
    path, fd = new_part()
    os.write(fd, b"x" * size)
    os.close(fd)
    then = time.time() - age
    os.utime(path, (then, then))
    return Path(path)


def test_no_parts_is_ok() -> None:
    check = doctor.check_inbox_parts()
    assert check.ok and check.status == "ok", check
    assert "no leftover upload parts" in check.detail


def test_stale_parts_are_a_warning_with_count_size_and_fix() -> None:
    _part(7200, 1000)
    _part(4000, 24)
    fresh = _part(5, 99)  # an upload in progress: not a leftover
    check = doctor.check_inbox_parts()
    assert check.status == "warn", check
    assert "2 upload part(s)" in check.detail and "(1024 bytes)" in check.detail
    assert "~/.agent-inbox/.incoming" in check.detail
    assert "rm ~/.agent-inbox/.incoming/*.part" in check.fix
    assert fresh.exists() and Path(incoming_dir()).is_dir()


def test_doctor_command_shows_the_check_and_stays_green() -> None:
    _part(7200, 10)
    result = run_cli("agent-mesh", "doctor", "--no-peers")
    out = result.stdout.decode()
    line = next(x for x in out.splitlines() if "inbox-parts" in x)
    assert line.startswith("warn inbox-parts: 1 upload part(s) older than 1h"), line
    assert "Traceback" not in result.stderr.decode()
