"""The per-peer rpc server (issue 20), on real namespace hosts: once a control master
is up, a warm message goes through a Unix socket forwarded by that master to a server
the master started on the peer: no `ssh` process here, no Python start there. It lives
exactly as long as the master, answers only what `agent-mesh rpc` answers, and a
request it never greeted goes the usual way.

Sender h2, recipient a python prompt on h1. Needs root (tests/lab); skips otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=2)
SERVER = b"/rpc\x00--serve\x00"  # the server's argv (the session holding it says "rpc --serve")
HOLDER = b"ProxyCommand=false"  # the `ssh` session that holds a server, on the sender

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)


@pytest.fixture(scope="module")
def lab(lab: Lab) -> Lab:
    h1 = lab.hosts["h1"]
    out = h1.tmux("new-window", "-d", "-t", "main:", "-n", "py", str(lab.venv / "bin" /
                  "python"), "-q", "-c", RECEIVER, str(h1.home / "got.jsonl"), ";",
                  "set-option", "-w", "-t", "main:py", "@agent-accept", "python3")
    assert out.returncode == 0, out.stderr
    retry_until(lambda: ">>>" in h1.tmux("capture-pane", "-p", "-t", "main:py")
                .stdout.decode(), timeout=15)
    for host in lab.hosts.values():
        host.run(["agent-discover"], check=True)
    return lab


def _received(lab: Lab) -> list[str]:
    path = lab.hosts["h1"].home / "got.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _send(lab: Lab, text: str, wrap: list[str] | None = None) -> None:
    before = len(_received(lab))
    out = lab.hosts["h2"].run([*(wrap or []), "notify-pane", "h1-main-py", text])
    assert out.returncode == 0, out.stderr
    retry_until(lambda: len(_received(lab)) > before, timeout=10)
    assert _received(lab)[-1].endswith("] " + text)
    time.sleep(0.3)  # the settle: the next message meets an idle prompt


def _procs(host: LabHost, marker: bytes) -> list[int]:
    """Processes of host's user whose command line holds marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != host.uid:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


def _forward(lab: Lab) -> Path:
    (found,) = [p for p in (lab.hosts["h2"].home / ".agents" / "cm").iterdir()
                if p.name.startswith(".h1-") and p.name.endswith(".rpc")]
    return found


def _server_up(lab: Lab) -> Path:
    """Send until the server and its forward are up; the forward's path. The first
    message may open the master; a request that reuses it starts the server."""
    _send(lab, "warm up")
    _send(lab, "warm up again")
    retry_until(lambda: _procs(lab.hosts["h1"], SERVER), timeout=20)
    retry_until(lambda: [p for p in (lab.hosts["h2"].home / ".agents" / "cm").iterdir()
                         if p.name.endswith(".rpc")], timeout=20)
    return _forward(lab)


def test_a_warm_message_starts_no_ssh_and_no_python_on_the_peer(lab: Lab) -> None:
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    forward = _server_up(lab)
    trace = h2.home / "execve.txt"
    servers = _procs(h1, SERVER)
    _send(lab, "through the server", wrap=["strace", "-f", "-qq", "-e", "trace=execve",
                                           "-o", str(trace)])
    started = [line.split('"')[1] for line in trace.read_text().splitlines()
               if "execve(" in line and "= 0" in line]
    assert not [p for p in started if p.endswith("/ssh")], started
    assert _procs(h1, SERVER) == servers  # the same server answered; none started
    # Private at both ends: only the user can reach the forward or the server's socket.
    assert forward.stat().st_mode & 0o777 == 0o600
    assert forward.parent.stat().st_mode & 0o777 == 0o700
    (sock,) = [p for p in (h1.home / ".agents" / "cm").iterdir() if p.name.endswith(".sock")]
    assert sock.parent.stat().st_mode & 0o777 == 0o700


def test_the_server_answers_what_rpc_answers(lab: Lab) -> None:
    """Through the forward, a request of another version is refused like `agent-mesh rpc`
    refuses it, after the greeting that says the request arrived."""
    forward = _server_up(lab)
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)\n"
        "s.sendall(b'{\"op\": \"hello\", \"protocol\": 2, \"version\": \"0.0.0-other\"}\\n')\n"
        "data = b''\n"
        "while True:\n"
        "    piece = s.recv(65536)\n"
        "    if not piece: break\n"
        "    data += piece\n"
        "sys.stdout.buffer.write(data)\n"
    )
    out = lab.hosts["h2"].run([str(lab.venv / "bin" / "python"), "-c", code, str(forward)])
    assert out.returncode == 0, out.stderr
    greeting, reply = out.stdout.split(b"\n", 1)
    assert greeting.startswith(b"agent-mesh rpc 2 ")
    answer = json.loads(reply)
    assert answer["ok"] is False and "0.0.0-other" in answer["error"], answer
    assert "same version" in answer["error"]


def test_nothing_outlives_the_master(lab: Lab) -> None:
    """SIGKILL the master: its server on the peer and the session holding it here are
    gone within seconds, and the next message sets everything up again."""
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    _server_up(lab)
    assert _procs(h2, HOLDER)  # the session that holds the server
    masters = [pid for pid in _procs(h2, b"[mux]") if b"/h1-" in
               Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(masters) == 1, masters
    os.kill(masters[0], 9)
    retry_until(lambda: not _procs(h1, SERVER) and not _procs(h2, HOLDER), timeout=10)
    assert not [p for p in (h1.home / ".agents" / "cm").iterdir()
                if p.name.startswith(".rpc-")]  # the server removed its socket
    _send(lab, "after the master was killed")  # a new master: cold, no server yet
    _send(lab, "and again")  # reused: the server comes back
    retry_until(lambda: _procs(h1, SERVER), timeout=20)


def test_a_server_its_master_left_behind_is_retired_by_the_next(lab: Lab) -> None:
    """The master ends while h1 is cut off, and h1's sshd never hears of it (the
    connection is destroyed here, so no FIN follows the heal), as after a sender's crash
    behind a dead link: the server it held lives on. The next master's server takes the
    same slot (this user's master to h1) and retires it."""
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    _server_up(lab)
    (old,) = _procs(h1, SERVER)
    lab.partition("h1")
    try:
        masters = [pid for pid in _procs(h2, b"[mux]") if b"/h1-" in
                   Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(masters) == 1, masters
        os.kill(masters[0], 9)
        retry_until(lambda: not _procs(h2, HOLDER), timeout=10)
        subprocess.run(["ip", "netns", "exec", h2.ns, "ss", "-K", "dst", h1.ip,
                        "dport", "=", ":22"], check=True, capture_output=True)
    finally:
        lab.heal("h1")
    time.sleep(1)
    if old not in _procs(h1, SERVER):
        pytest.skip("h1 heard the connection end anyway (this kernel cannot `ss -K`)")
    _server_up(lab)
    retry_until(lambda: old not in _procs(h1, SERVER), timeout=5)
    assert len(_procs(h1, SERVER)) == 1
    _send(lab, "through the new server")


def test_a_cut_off_peer_fails_within_5_s_through_the_server(lab: Lab) -> None:
    h2 = lab.hosts["h2"]
    _server_up(lab)
    lab.partition("h1")
    try:
        started = time.monotonic()
        out = h2.run(["notify-pane", "h1-main-py", "into the void"])
        took = time.monotonic() - started
        assert out.returncode == 4, out.stderr
        assert took < 5, took
        assert b"h1" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        lab.heal("h1")
    _send(lab, "after the partition")


def test_setup_rewriting_the_launcher_retires_the_server(lab: Lab) -> None:
    """A reinstall rewrites the launcher: the running server steps aside unanswered and
    the message reaches the new installation the usual way."""
    h1 = lab.hosts["h1"]
    _server_up(lab)
    (old,) = _procs(h1, SERVER)
    launcher = h1.home / ".local" / "share" / "agent-mesh" / "rpc"
    text = launcher.read_text()
    launcher.unlink()
    lab.write_rpc_launcher(h1)
    assert launcher.read_text() == text
    _send(lab, "after a reinstall")
    retry_until(lambda: old not in _procs(h1, SERVER), timeout=10)
