"""Smoke test of the namespace lab: real sshd between hosts, own tmux servers, partitions."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab.netlab import Lab

pytestmark = pytest.mark.lab(hosts=3, missing={"h3"})


def test_start_timings(lab: Lab) -> None:
    """How long the lab's start took, step by step (shown with -s)."""
    print(f"\nlab start {lab.timings}")
    assert lab.timings, "start() recorded no steps"


def ssh(
    lab: Lab, src: str, dst: str, *cmd: str, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    """ssh from one lab host's user to another's, through the real sshd."""
    return lab.hosts[src].run(["ssh", dst, *cmd], timeout=timeout)


def test_ssh_between_hosts(lab: Lab) -> None:
    cp = ssh(lab, "h1", "h2", "id", "-u")
    assert cp.returncode == 0, cp.stderr
    assert int(cp.stdout) == lab.hosts["h2"].uid
    cp = ssh(lab, "h3", "h1", "true")
    assert cp.returncode == 0, cp.stderr
    # ssh sessions reach the host's lab tmux server through sshd's SetEnv.
    cp = ssh(lab, "h1", "h2", "tmux list-sessions -F '#{session_name}'")
    assert cp.stdout.split() == [b"main"], cp.stderr


def test_users_and_agents_files(lab: Lab) -> None:
    uids = {h.uid for h in lab.hosts.values()}
    assert len(uids) == 3
    h1 = lab.hosts["h1"]
    assert (h1.home / ".agents/self.conf").read_text().strip() == "h1"
    assert (h1.home / ".agents/peers.conf").read_text().split() == ["h1", "h2", "h3"]
    assert h1.run(["id", "-u"]).stdout.strip() == str(h1.uid).encode()


def test_own_tmux_servers(lab: Lab) -> None:
    pids = set()
    for h in lab.hosts.values():
        cp = h.tmux("list-sessions", "-F", "#{session_name}")
        assert cp.stdout.split() == [b"main"], cp.stderr
        cp = h.tmux("display", "-p", "-t", "main", "#{pid} #{socket_path}")
        pid, sock = cp.stdout.decode().split()
        assert sock.startswith(str(h.tmux_tmpdir))
        pids.add(pid)
    assert len(pids) == 3


def test_partition_and_heal(lab: Lab) -> None:
    lab.partition("h2")
    try:
        t = time.monotonic()
        cp = ssh(lab, "h1", "h2", "true")
        elapsed = time.monotonic() - t
        assert cp.returncode != 0
        print(f"\npartitioned ssh failed after {elapsed:.2f}s: {cp.stderr.decode().strip()}")
        assert elapsed < 6, elapsed
        assert ssh(lab, "h1", "h3", "true").returncode == 0
    finally:
        lab.heal("h2")
    cp = ssh(lab, "h1", "h2", "true")
    assert cp.returncode == 0, cp.stderr


def test_forget_host_key(lab: Lab) -> None:
    lab.forget_host_key("h1", "h3")
    cp = ssh(lab, "h1", "h3", "true")
    assert cp.returncode != 0
    assert b"Host key verification failed" in cp.stderr, cp.stderr
    assert ssh(lab, "h2", "h3", "true").returncode == 0


def test_replace_host_key(lab: Lab) -> None:
    lab.replace_host_key("h2")
    cp = ssh(lab, "h3", "h2", "true")
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in cp.stderr, cp.stderr
    assert cp.returncode != 0


def test_console_scripts_linked(lab: Lab) -> None:
    bin1 = lab.hosts["h1"].home / ".local/bin"
    linked = sorted(p.name for p in bin1.iterdir())
    assert linked, "no console scripts linked"
    # notify-pane and agent-mesh go through their small launchers (python -I -S, issue 20),
    # the rest to the venv
    share = lab.hosts["h1"].home / ".local/share/agent-mesh"
    assert all((bin1 / n).resolve().is_relative_to(lab.venv)
               or (bin1 / n).resolve() == (share / n).resolve() for n in linked), linked
    # Lab users can run the venv's interpreter and import the installed package and its deps.
    cp = lab.hosts["h1"].run(["python", "-c", "import agent_mesh, click, paramiko"])
    assert cp.returncode == 0, cp.stderr
    assert not any((lab.hosts["h3"].home / ".local/bin").iterdir())
    cp = lab.hosts["h3"].run(["sh", "-c", f"command -v {linked[0]}"])
    assert cp.returncode != 0, cp.stdout
