"""Over real SSH (the network-namespace lab): a failure on a peer reads exactly as
the same failure on that host itself, with the same exit code and flags."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import retry_until

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab.netlab import Lab

pytestmark = pytest.mark.lab(hosts=2)


def notify(lab: Lab, host: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = lab.hosts[host].run(["notify-pane", *args], env=env)
    assert out.stdout == b"", out.stdout
    return out.returncode, out.stderr.decode()


def test_a_remote_dead_pane_reads_as_the_local_one(lab: Lab) -> None:
    h2 = lab.hosts["h2"]
    h2.tmux("set-option", "-g", "remain-on-exit", "on")
    assert h2.tmux("new-window", "-d", "-t", "main:", "-n", "dead", "sh", "-c", "exit 0"
                   ).returncode == 0
    retry_until(lambda: h2.tmux("display", "-p", "-t", "main:dead", "#{pane_dead}"
                                ).stdout.strip() == b"1")
    assert h2.run(["agent-discover"]).returncode == 0
    assert lab.hosts["h1"].run(["agent-mesh", "sync"]).returncode == 0
    for env in ({}, {"FORCE_SEND": "1"}):
        local = notify(lab, "h2", "h2-main-dead", "hi", env=env)
        remote = notify(lab, "h1", "h2-main-dead", "hi", env=env)
        assert remote == local, (remote, local)
        code, line = remote
        assert code == 3 and line.count("\n") == 1
        assert "FORCE_SEND cannot deliver to it" in line
        assert "FORCE_SEND=1 to override" not in line  # the flag crossed the wire
