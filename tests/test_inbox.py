"""Files sent with --file: never overwritten, never confused between senders, streamed,
refused when not a regular file, and cleaned up when a sender dies (issue 8, items 1-4).

Real tmux and real notify-pane processes; a tmpfs stands in for a full disk (root only).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import BIN, SENDER, Spawner, notify

from agent_mesh.delivery import inbox as inbox_mod
from agent_mesh.delivery.inbox import place_upload, sender_dir_name, stale_parts


def inbox() -> Path:
    return Path.home() / ".agent-inbox"


def body_of(line: str) -> str:
    return line.split("] ", 1)[1]


# --- item 1: nothing overwritten, one folder per sender ------------------------


def test_second_file_of_the_same_name_is_kept_beside_the_first(
    spawn: Spawner, tmp_path: Path
) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "report.md"
    for n, text in enumerate(["first\n", "second\n", "third\n"], start=1):
        src.write_text(text)
        res = notify(tui.address, "--file", str(src), f"v{n}")
        assert res.returncode == 0, res.stderr
    lines = tui.wait_lines(3)
    names = ["report.md", "report-2.md", "report-3.md"]
    for line, name, text in zip(lines, names, ["first\n", "second\n", "third\n"], strict=True):
        shown = body_of(line).split(" (")[0].removeprefix("file dropped at ")
        assert shown == f"~/.agent-inbox/{SENDER}/{name}"
        assert (inbox() / SENDER / name).read_text() == text  # what it names is what arrived


def test_senders_whose_names_look_alike_never_share_a_folder(
    spawn: Spawner, tmp_path: Path
) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "notes.txt"
    for n, sender in enumerate(["alice bob", "alice_bob", "alice[bob]", "alice%20bob"]):
        src.write_text(sender)
        res = notify(tui.address, "--file", str(src), env={"AGENT_NAME": sender})
        assert res.returncode == 0, res.stderr
        (line,) = tui.wait_lines(n + 1)[n:]
        folder = sender_dir_name(sender)
        assert f"~/.agent-inbox/{folder}/notes.txt " in line
        assert (inbox() / folder / "notes.txt").read_text() == sender
    assert len(list(inbox().iterdir())) == 5  # four folders and .incoming


def test_sender_folder_names_are_reversible_and_plain_names_stay_as_they_are() -> None:
    from urllib.parse import unquote

    assert sender_dir_name("alice_bob") == "alice_bob"
    assert sender_dir_name("vm-dev-cat.2") == "vm-dev-cat.2"
    for name in ["alice bob", "alice%20bob", "host[sess]", "..", ".hidden", "a/b", "你好", "x\ny"]:
        folder = sender_dir_name(name)
        assert unquote(folder) == name
        assert "/" not in folder and not folder.startswith(".")


# --- item 2: regular files only, streamed, capped ----------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_file_that_is_not_a_regular_file_is_refused_at_once(
    spawn: Spawner, tmp_path: Path, kind: str
) -> None:
    tui = spawn.agent_tui()
    path = {"fifo": tmp_path / "pipe", "dev-zero": Path("/dev/zero"), "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    started = time.monotonic()
    res = notify(tui.address, "--file", str(path), "x", timeout=10)
    err = res.stderr.decode()
    assert res.returncode == 1 and err.count("\n") == 1, err
    assert "not a regular file" in err, err
    assert time.monotonic() - started < 5
    time.sleep(0.3)
    assert tui.lines() == []
    assert not (inbox() / SENDER).exists()


def test_size_cap_is_configurable_and_says_how_to_raise_it(
    spawn: Spawner, tmp_path: Path
) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 3000)
    res = notify(tui.address, "--file", str(src), env={"AGENT_MESH_MAX_FILE": "2K"})
    err = res.stderr.decode()
    assert res.returncode == 1 and err.count("\n") == 1, err
    assert "3000 bytes is over the limit of 2048 bytes" in err and "AGENT_MESH_MAX_FILE" in err
    res = notify(tui.address, "--file", str(src), env={"AGENT_MESH_MAX_FILE": "4K"})
    assert res.returncode == 0, res.stderr
    res = notify(tui.address, "--file", str(src), env={"AGENT_MESH_MAX_FILE": "lots"})
    assert res.returncode == 1 and b"AGENT_MESH_MAX_FILE" in res.stderr


def _max_rss_kib(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    """(exit code, peak RSS of argv's process tree in KiB), measured by a fresh parent."""
    probe = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_600_mb_file_is_copied_in_bounded_memory(spawn: Spawner, tmp_path: Path) -> None:
    tui = spawn.agent_tui()
    src = tmp_path / "big.bin"
    size = 600 * 1024 * 1024
    with open(src, "wb") as fh:
        fh.truncate(size)  # sparse: cheap to make, still 600 MB to read and copy
        fh.seek(size - 5)
        fh.write(b"tail!")
    env = {**os.environ, "AGENT_NAME": SENDER}
    rc, rss = _max_rss_kib([str(BIN / "notify-pane"), tui.address, "--file", str(src)], env)
    assert rc == 0
    assert rss < 100 * 1024, f"peak RSS {rss // 1024} MiB for a 600 MiB file"
    dropped = inbox() / SENDER / "big.bin"
    assert dropped.stat().st_size == size
    with open(dropped, "rb") as fh:
        fh.seek(size - 5)
        assert fh.read() == b"tail!"
    (line,) = tui.wait_lines(1)
    assert line.endswith(f"big.bin ({size} bytes)")
    dropped.unlink()


# --- item 3: parts are private and swept ----------------------------------------


def _part(name: str, age: float, mode: int = 0o644) -> Path:
    incoming = inbox() / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / name
    path.write_bytes(b"partial upload")
    path.chmod(mode)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_parts_older_than_an_hour_are_listed_and_removed_at_the_next_delivery(
    spawn: Spawner,
) -> None:
    tui = spawn.agent_tui()
    old = _part("111-dead.part", age=2 * 3600)
    young = _part("222-uploading.part", age=60)
    assert stale_parts() == [str(old)]
    res = notify(tui.address, "hello")
    assert res.returncode == 0, res.stderr
    assert not old.exists() and young.exists()
    assert stale_parts() == []


def test_uploaded_part_is_published_private_under_a_free_name() -> None:
    part = _part("333-up.part", age=0)
    dropped = place_upload(".agent-inbox/.incoming/333-up.part", "peer", "r.txt", 14)
    assert (dropped.shown, dropped.size) == ("~/.agent-inbox/peer/r.txt", 14)
    placed = inbox() / "peer" / "r.txt"
    assert stat.S_IMODE(placed.stat().st_mode) == 0o600 and not part.exists()
    _part("444-up.part", age=0)
    dropped = place_upload(".agent-inbox/.incoming/444-up.part", "peer", "r.txt", 14)
    assert dropped.shown == "~/.agent-inbox/peer/r-2.txt"


def test_local_copy_goes_through_a_private_part() -> None:
    part, fd = inbox_mod.new_part()
    os.close(fd)
    assert stat.S_IMODE(os.stat(part).st_mode) == 0o600
    assert stat.S_IMODE((inbox() / ".incoming").stat().st_mode) == 0o700


# --- item 4: delivered means delivered; failures before the paste leave nothing --------


@pytest.fixture
def tiny_fs() -> Iterator[Callable[[Path], Path]]:
    """Mount 64 KiB tmpfs filesystems (root only) and fill them on request."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a 64 KiB tmpfs, which needs root")
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> None:
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk_after_the_paste_still_reports_delivered(
    spawn: Spawner, tiny_fs: Callable[[Path], Path]
) -> None:
    """The deadline record written after the paste fails (ENOSPC): exit 0, once; a
    second message right after is still a separate submission."""
    tui = spawn.agent_tui()
    _fill(tiny_fs(Path.home() / ".agents" / "locks"))
    first = notify(tui.address, "one")
    assert first.returncode == 0, first.stderr
    second = notify(tui.address, "two")
    assert second.returncode == 0, second.stderr
    tui.wait_lines(2)
    time.sleep(0.3)
    assert [body_of(line) for line in tui.lines()] == ["one", "two"]


def test_full_inbox_refuses_before_the_paste_and_leaves_nothing(
    spawn: Spawner, tmp_path: Path, tiny_fs: Callable[[Path], Path]
) -> None:
    tui = spawn.agent_tui()
    tiny_fs(inbox())
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(200_000))
    res = notify(tui.address, "--file", str(src), "see attached")
    err = res.stderr.decode()
    assert res.returncode == 4 and err.count("\n") == 1, err
    assert "could not drop the file into ~/.agent-inbox" in err
    time.sleep(0.5)
    assert tui.lines() == []
    leftovers = [p for p in inbox().rglob("*") if p.is_file()]
    assert leftovers == []
