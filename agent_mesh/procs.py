"""What runs in a pane's terminal, read from /proc (Linux), for the readiness check.

Text typed into a pane reaches the terminal's foreground process group, not the
pane's own process and not just the group's leader: `git log` runs `less` in
git's group, `git commit` the editor, and the npm `codex` launcher is `node`
with the native binary as its child. So this reads the pane process's stat (its
field 8, tpgid, names the foreground group), then the group's leader and its
descendants that share the group, each with comm and argv. Walking down from the
leader costs a handful of small reads; only when the leader has gone (its
children live on) is the whole of /proc scanned. Elsewhere `foreground` returns
None and the caller uses tmux's `pane_current_command`.

Stdlib only and cheap to import: this is on the delivery hot path.
"""

from __future__ import annotations

import os
import sys


class Proc:
    """One process: pid, parent, process group, comm and argv."""

    __slots__ = ("argv", "comm", "pgrp", "pid", "ppid", "tpgid")

    def __init__(self, pid: int, ppid: int, pgrp: int, tpgid: int, comm: str,
                 argv: tuple[str, ...] = ()) -> None:
        self.pid = pid
        self.ppid = ppid
        self.pgrp = pgrp
        self.tpgid = tpgid
        self.comm = comm
        self.argv = argv

    def __repr__(self) -> str:
        return f"Proc({self.pid}, {self.comm!r}, pgrp={self.pgrp}, argv={list(self.argv)!r})"


class Foreground:
    """The pane's process and its terminal's foreground group (leader first, then its
    descendants in the group, parents before children)."""

    __slots__ = ("group", "pane", "tpgid")

    def __init__(self, pane: Proc | None, tpgid: int, group: tuple[Proc, ...]) -> None:
        self.pane = pane
        self.tpgid = tpgid
        self.group = group

    def __repr__(self) -> str:
        return f"Foreground(pane={self.pane!r}, tpgid={self.tpgid}, group={list(self.group)!r})"


def read_proc(pid: int, argv: bool = True) -> Proc | None:
    """The process `pid` from /proc, or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        close = stat.rindex(b")")
        comm = stat[stat.index(b"(") + 1 : close].decode("utf-8", "replace")
        # After ") ": state ppid pgrp session tty_nr tpgid ...
        fields = stat[close + 2 :].split(b" ", 6)
        ppid, pgrp, tpgid = int(fields[1]), int(fields[2]), int(fields[5])
    except (OSError, ValueError, IndexError):
        return None
    return Proc(pid, ppid, pgrp, tpgid, comm, read_argv(pid) if argv else ())


def read_argv(pid: int) -> tuple[str, ...]:
    """argv of `pid` (empty for kernel threads, zombies, or when unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read(8192)
    except OSError:
        return ()
    return tuple(part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")
                 if part) if raw else ()


def exe_name(pid: int) -> str:
    """Basename of the file the process executes ('' if unreadable): a renamed symlink
    to bash still says bash here."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (a child belongs to the thread that forked it)."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                kids.extend(int(k) for k in fh.read().split())
        except (OSError, ValueError):
            continue
    return kids


def _scan_group(pgrp: int) -> list[Proc]:
    """Every process in group `pgrp`, by a scan of all of /proc (the slow path)."""
    found: list[Proc] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if name.isdigit():
            proc = read_proc(int(name), argv=False)
            if proc is not None and proc.pgrp == pgrp:
                proc.argv = read_argv(proc.pid)
                found.append(proc)
    found.sort(key=lambda p: p.pid)
    return found


def foreground(pane_pid: int) -> Foreground | None:
    """The pane process and its terminal's foreground group, or None off Linux or when
    /proc does not answer (the caller then trusts tmux's pane_current_command)."""
    if pane_pid <= 0 or not sys.platform.startswith("linux"):
        return None
    pane = read_proc(pane_pid)
    if pane is None:
        return None
    tpgid = pane.tpgid
    if tpgid <= 0:
        return Foreground(pane, tpgid, ())
    leader = pane if tpgid == pane_pid else read_proc(tpgid)
    if leader is None or leader.pgrp != tpgid:
        return Foreground(pane, tpgid, tuple(_scan_group(tpgid)))
    group = [leader]
    queue = [leader.pid]
    while queue and len(group) < 64:
        for kid in _children(queue.pop(0)):
            proc = read_proc(kid)
            if proc is not None and proc.pgrp == tpgid:
                group.append(proc)
                queue.append(kid)
    return Foreground(pane, tpgid, tuple(group))


def alive(pid: int) -> bool:
    """Does process pid exist (a zombie still does; someone else's counts)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(marks: tuple[bytes, ...], env: bytes) -> list[int]:
    """Pids (other than ours) whose argv holds one of marks and whose environment holds
    the entry env (b"HOME=/home/me"): this user's hooks, say, not another HOME's."""
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read(8192)
            if not any(mark in argv for mark in marks):
                continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                if env + b"\0" in fh.read() + b"\0":
                    found.append(int(name))
        except OSError:
            continue
    return found


def spawn_detached(argv: list[str], log_path: str | None = None) -> None:
    """Start argv (argv[0] a path) in a new session, stdin from /dev/null and its
    output appended to log_path (discarded without one): the caller returns at once
    and nothing waits on it."""
    devnull = os.open(os.devnull, os.O_RDWR)
    out = devnull
    try:
        if log_path is not None:
            out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.posix_spawn(
            argv[0], argv, os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                          (os.POSIX_SPAWN_DUP2, out, 2)],
            setsid=True,
        )
    finally:
        os.close(devnull)
        if out != devnull:
            os.close(out)
