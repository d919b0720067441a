"""Files between real hosts (network-namespace lab, own sshd and user per host): an
upload is private while in flight, never replaces an earlier file, and stale parts
are swept by the next delivery. Needs root; skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=2)

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)


@pytest.fixture(scope="module")
def lab(lab: Lab) -> Lab:
    """The shared lab (conftest), with a python receiver on h1 that both hosts know."""
    h1 = lab.hosts["h1"]
    out = h1.tmux("new-window", "-d", "-t", "main:", "-n", "py",
                  str(lab.venv / "bin" / "python"), "-q", "-c", RECEIVER,
                  str(h1.home / "py.jsonl"))
    assert out.returncode == 0, out.stderr
    # a python prompt is not a known agent: the window opts in, as a user would
    h1.tmux("set-option", "-w", "-t", "main:py", "@agent-accept", "python")
    retry_until(lambda: ">>>" in _screen(h1))
    for name in ("h1", "h2"):
        assert lab.hosts[name].run(["agent-discover"]).returncode == 0
    for name in ("h1", "h2"):
        lab.hosts[name].run(["agent-mesh", "sync"])
    return lab


def _screen(h: LabHost) -> str:
    return h.tmux("capture-pane", "-p", "-t", "main:py").stdout.decode()


def _received(h: LabHost) -> list[str]:
    log = h.home / "py.jsonl"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _source(h: LabHost, name: str, data: bytes) -> Path:
    src = h.home / name
    src.write_bytes(data)
    os.chown(src, h.uid, h.gid)
    return src


def test_remote_file_of_the_same_name_is_kept_beside_the_first(lab: Lab) -> None:
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    before = len(_received(h1))
    for text in (b"first\n", b"second\n"):
        src = _source(h2, "report.md", text)
        out = h2.run(["notify-pane", "h1-main-py", "--file", str(src), "see"])
        assert out.returncode == 0, out.stderr
    got = retry_until(lambda: len(_received(h1)) >= before + 2 and _received(h1))[before:]
    assert got[0].endswith("] file dropped at ~/.agent-inbox/h2/report.md (6 bytes): see")
    assert got[1].endswith("] file dropped at ~/.agent-inbox/h2/report-2.md (7 bytes): see")
    folder = h1.home / ".agent-inbox" / "h2"
    assert (folder / "report.md").read_bytes() == b"first\n"
    assert (folder / "report-2.md").read_bytes() == b"second\n"
    assert stat.S_IMODE((folder / "report-2.md").stat().st_mode) == 0o600


def test_upload_in_flight_is_private_and_a_stale_part_is_swept(lab: Lab) -> None:
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    incoming = h1.home / ".agent-inbox" / ".incoming"
    for folder in (incoming.parent, incoming):
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chown(folder, h1.uid, h1.gid)
    stale = incoming / "1-killed-sender.part"
    stale.write_bytes(b"x" * 1000)
    os.chown(stale, h1.uid, h1.gid)
    stale.chmod(0o644)
    then = time.time() - 2 * 3600
    os.utime(stale, (then, then))
    size = 64 * 1024 * 1024
    src = _source(h2, "big.bin", os.urandom(1024) * (size // 1024))
    before = len(_received(h1))
    outcome: list[int] = []
    sender = threading.Thread(target=lambda: outcome.append(
        h2.run(["notify-pane", "h1-main-py", "--file", str(src)], timeout=120).returncode))
    sender.start()
    modes: list[int] = []

    def part_seen() -> bool:
        for part in incoming.glob("*.part"):
            try:
                info = part.stat()
            except FileNotFoundError:
                continue
            if part != stale and info.st_size > 0:
                modes.append(stat.S_IMODE(info.st_mode))
        return bool(modes) or not sender.is_alive()

    retry_until(part_seen, timeout=60, interval=0.005)
    sender.join(timeout=120)
    assert outcome == [0]
    assert modes and set(modes) == {0o600}, [oct(m) for m in modes]
    retry_until(lambda: len(_received(h1)) >= before + 1)
    assert (h1.home / ".agent-inbox" / "h2" / "big.bin").stat().st_size == size
    assert not stale.exists()
    assert list(incoming.iterdir()) == []


def _peak_rss_kb(uid: int, needle: bytes, seen: dict[int, int]) -> None:
    """Record the peak RSS (VmHWM) of uid's processes whose argv holds needle."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            if needle not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                seen[int(entry)] = max(seen.get(int(entry), 0), int(line.split()[1]))


def test_a_large_remote_file_is_streamed_in_bounded_memory(lab: Lab) -> None:
    """Issue 8.2, over SSH: 200 MB from h2 to h1; neither the sender nor the peer's
    `agent-mesh rpc` ever holds the file in memory."""
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    size = 200 * 1024 * 1024
    src = h2.home / "huge.bin"
    with open(src, "wb") as fh:
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            fh.write(block)
    os.chown(src, h2.uid, h2.gid)
    before = len(_received(h1))
    sender_peak: dict[int, int] = {}
    rpc_peak: dict[int, int] = {}
    outcome: list[int] = []
    env = {"AGENT_MESH_MAX_FILE": str(size * 2)}
    sender = threading.Thread(target=lambda: outcome.append(h2.run(
        ["notify-pane", "h1-main-py", "--file", str(src), "huge"], timeout=300,
        env=env).returncode))
    sender.start()
    while sender.is_alive():
        _peak_rss_kb(h2.uid, b"notify-pane", sender_peak)
        _peak_rss_kb(h1.uid, b"rpc", rpc_peak)
        time.sleep(0.02)
    sender.join()
    src.unlink()
    assert outcome == [0]
    got = retry_until(lambda: len(_received(h1)) > before and _received(h1))[-1]
    assert got.endswith(f"({size} bytes): huge"), got
    dropped = h1.home / ".agent-inbox" / "h2" / "huge.bin"
    assert dropped.stat().st_size == size
    dropped.unlink()
    print(f"peak RSS: sender {max(sender_peak.values(), default=0)} kB, "
          f"rpc {max(rpc_peak.values(), default=0)} kB")
    assert sender_peak and max(sender_peak.values()) < 100 * 1024, sender_peak
    assert max(rpc_peak.values(), default=0) < 100 * 1024, rpc_peak
