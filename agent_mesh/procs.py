"""What runs in a pane's terminal, for the readiness check: read from /proc on Linux,
else (macOS, the BSDs) through psutil, imported only there.

Text typed into a pane reaches the terminal's foreground process group, not the
pane's own process and not just the group's leader: `git log` runs `less` in
git's group, `git commit` the editor, and the npm `codex` launcher is `node`
with the native binary as its child. So this reads the pane process's stat (its
field 8, tpgid, names the foreground group), then the group's leader and its
descendants that share the group, each with comm and argv. Walking down from the
leader costs a handful of small reads; only when the leader has gone (its
children live on) are all processes scanned. Without /proc and without psutil
`foreground` returns None and the caller uses tmux's `pane_current_command`.

The reads go through one small `Source`: `_ProcFS` here (stdlib only and cheap to
import: this is on the delivery hot path), `procs_psutil.PsutilSource` elsewhere.
AGENT_MESH_PROCS=psutil picks the latter on Linux too (the tests run both).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False


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
    descendants in the group, parents before children), and the group's descendants
    outside it (`script`'s inner shell sits in a session of its own). Those are read
    only when asked for: most checks (an agent on screen) never need them."""

    __slots__ = ("_others", "_outside", "group", "pane", "tpgid")

    def __init__(self, pane: Proc | None, tpgid: int, group: tuple[Proc, ...],
                 others: tuple[Proc, ...] = (), outside: tuple[int, ...] = ()) -> None:
        self.pane = pane
        self.tpgid = tpgid
        self.group = group
        self._others: tuple[Proc, ...] | None = None if outside else others
        self._outside = outside  # children of the group outside it, not read yet

    @property
    def others(self) -> tuple[Proc, ...]:
        if self._others is None:
            self._others = _descendants(self._outside, 16)
        return self._others

    def __repr__(self) -> str:
        return (f"Foreground(pane={self.pane!r}, tpgid={self.tpgid}, group={list(self.group)!r}, "
                f"others={list(self.others)!r})")


if TYPE_CHECKING:  # typing (with its re, enum, collections) costs the hot path an import
    from typing import Protocol

    class Source(Protocol):
        """Where process data comes from: the few reads this module is built on."""

        def stat(self, pid: int, tpgid: bool) -> tuple[int, int, int, str] | None:
            """(ppid, pgrp, tpgid, comm) of pid, or None if it is gone or unreadable. The
            terminal's foreground group costs extra off /proc: 0 there unless tpgid."""

        def cmdline(self, pid: int) -> bytes:
            """argv of pid, each ended by NUL (empty for kernel threads, zombies, or when
            unreadable; at most 8 KiB)."""

        def children(self, pid: int) -> list[int]:
            """The pids whose parent is pid."""

        def pids(self) -> list[int]:
            """Every pid on the machine."""

        def exe(self, pid: int) -> str:
            """Path of the file pid executes ('' if unreadable)."""

        def on_terminal(self, pid: int) -> bool:
            """Does pid read a terminal? Unreadable (another user's process) counts as yes."""

        def environ(self, pid: int) -> bytes | None:
            """pid's environment, entries ended by NUL (None if unreadable)."""


class _ProcFS:
    """Linux's /proc: one small file per question."""

    def stat(self, pid: int, tpgid: bool) -> tuple[int, int, int, str] | None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            close = stat.rindex(b")")
            comm = stat[stat.index(b"(") + 1 : close].decode("utf-8", "replace")
            # After ") ": state ppid pgrp session tty_nr tpgid ...
            fields = stat[close + 2 :].split(b" ", 6)
            return int(fields[1]), int(fields[2]), int(fields[5]), comm
        except (OSError, ValueError, IndexError):
            return None

    def cmdline(self, pid: int) -> bytes:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return fh.read(8192)
        except OSError:
            return b""

    def children(self, pid: int) -> list[int]:
        """Children of every thread of pid (a child belongs to the thread that forked it)."""
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

    def pids(self) -> list[int]:
        try:
            return [int(name) for name in os.listdir("/proc") if name.isdigit()]
        except OSError:
            return []

    def exe(self, pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return ""

    def on_terminal(self, pid: int) -> bool:
        try:
            target = os.readlink(f"/proc/{pid}/fd/0")
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return target.startswith(("/dev/pts/", "/dev/tty"))

    def environ(self, pid: int) -> bytes | None:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                return fh.read()
        except OSError:
            return None


_PROCFS = _ProcFS()
_HAVE_PROC = os.path.isdir("/proc/self/task")
_sources: dict[str, Source | None] = {}


def _source() -> Source | None:
    """/proc where it exists, else psutil (None when it is not installed). Decided once
    per choice; AGENT_MESH_PROCS=psutil or =proc overrides (tests, diagnosis)."""
    choice = os.environ.get("AGENT_MESH_PROCS", "")
    if choice != "psutil" and (choice == "proc" or _HAVE_PROC):
        return _PROCFS
    if "psutil" not in _sources:
        try:
            from agent_mesh.procs_psutil import PsutilSource
        except ImportError:  # psutil not installed: tmux's view only
            _sources["psutil"] = None
        else:
            _sources["psutil"] = PsutilSource()
    return _sources["psutil"]


def _argv(src: Source, pid: int) -> tuple[str, ...]:
    raw = src.cmdline(pid)
    return tuple(part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")
                 if part) if raw else ()


def _read(src: Source, pid: int, argv: bool, tpgid: bool = False) -> Proc | None:
    stat = src.stat(pid, tpgid)
    if stat is None:
        return None
    return Proc(pid, stat[0], stat[1], stat[2], stat[3], _argv(src, pid) if argv else ())


def read_proc(pid: int, argv: bool = True) -> Proc | None:
    """The process `pid`, or None if it is gone or unreadable."""
    src = _source()
    return None if src is None else _read(src, pid, argv, tpgid=True)


def parent(pid: int) -> int:
    """The parent of `pid` (0 when it is gone or unreadable)."""
    src = _source()
    stat = src.stat(pid, False) if src is not None else None
    return 0 if stat is None else stat[0]


def read_argv(pid: int) -> tuple[str, ...]:
    """argv of `pid` (empty for kernel threads, zombies, or when unreadable)."""
    src = _source()
    return () if src is None else _argv(src, pid)


def exe_name(pid: int) -> str:
    """Basename of the file the process executes ('' if unreadable): a renamed symlink
    to bash still says bash here."""
    src = _source()
    return "" if src is None else os.path.basename(src.exe(pid))


def _scan_group(src: Source, pgrp: int) -> list[Proc]:
    """Every process in group `pgrp`, by a scan of all processes (the slow path)."""
    found: list[Proc] = []
    for pid in src.pids():
        proc = _read(src, pid, argv=False)
        if proc is not None and proc.pgrp == pgrp:
            proc.argv = _argv(src, pid)
            found.append(proc)
    found.sort(key=lambda p: p.pid)
    return found


def foreground(pane_pid: int) -> Foreground | None:
    """The pane process and its terminal's foreground group, or None when neither /proc
    nor psutil answers (the caller then trusts tmux's pane_current_command)."""
    src = _source() if pane_pid > 0 else None
    if src is None:
        return None
    pane = _read(src, pane_pid, argv=True, tpgid=True)
    if pane is None:
        return None
    tpgid = pane.tpgid
    if tpgid <= 0:
        return Foreground(pane, tpgid, ())
    leader = pane if tpgid == pane_pid else _read(src, tpgid, argv=True)
    if leader is None or leader.pgrp != tpgid:
        return Foreground(pane, tpgid, tuple(_scan_group(src, tpgid)))
    group = [leader]
    outside: list[int] = []
    queue = [leader.pid]
    while queue and len(group) < 64:
        for kid in src.children(queue.pop(0)):
            proc = _read(src, kid, argv=False)
            if proc is None:
                continue
            if proc.pgrp == tpgid:
                proc.argv = _argv(src, kid)
                group.append(proc)
                queue.append(kid)
            else:
                outside.append(kid)
    return Foreground(pane, tpgid, tuple(group), outside=tuple(outside))


def _descendants(pids: tuple[int, ...], limit: int) -> tuple[Proc, ...]:
    """pids and their descendants, breadth first, at most limit of them: enough to find a
    shell relayed below the foreground group (`sudo -s`: two down)."""
    src = _source()
    found: list[Proc] = []
    queue = list(pids)
    while src is not None and queue and len(found) < limit:
        pid = queue.pop(0)
        proc = _read(src, pid, argv=True)
        if proc is not None:
            found.append(proc)
            queue.extend(src.children(pid))
    return tuple(found)


def reads_terminal(pid: int) -> bool:
    """Is pid's stdin a terminal (off /proc: has it a controlling terminal)? Unreadable
    (another user's process) counts as yes."""
    src = _source()
    return src is not None and src.on_terminal(pid)


def tty_mode(path: str) -> str:
    """How the terminal at path reads input now: "raw" (a program takes each key itself:
    readline, an agent TUI, a REPL), "line" (the kernel collects a line: nobody reads keys,
    or a plain `read`, so typed text waits for whoever reads next, such as a shell once its
    job ends), "hidden" (a line with echo off: a password or other secret is being asked),
    or "" when it cannot be read. One open and one ioctl."""
    if not path:
        return ""
    try:
        import termios  # a C module: cheap, and POSIX (no /proc needed)

        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except (ImportError, OSError):
        return ""
    try:
        lflag = termios.tcgetattr(fd)[3]
    except termios.error:
        return ""
    finally:
        os.close(fd)
    if not lflag & termios.ICANON:
        return "raw"
    return "line" if lflag & termios.ECHO else "hidden"


def readline_vi_command(pid: int) -> bool | None:
    """Is the bash process pid in readline's vi command (normal) mode? None when it cannot
    be told: not a bash exporting readline's symbols, or its memory is not readable (Yama
    ptrace_scope >= 1 for a process that is not our descendant, another user's shell).

    Nothing outside bash shows the mode (the terminal settings and an empty line look
    the same in both), but bash exports readline's globals for loadable builtins, so the
    current keymap pointer `_rl_keymap` is compared with `&vi_movement_keymap`. Linux
    only (it reads /proc/PID/mem): psutil has no such read, so elsewhere None."""
    if _source() is not _PROCFS:
        return None
    try:
        symbols = _dynamic_symbols(f"/proc/{pid}/exe", (b"_rl_keymap", b"vi_movement_keymap"))
        if len(symbols) < 2:
            return None
        base = _load_base(pid)
        if base is None:
            return None
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(base + symbols[b"_rl_keymap"])
            raw = mem.read(8)
    except (OSError, ValueError, IndexError):
        return None
    if len(raw) != 8:
        return None
    return int.from_bytes(raw, "little") == base + symbols[b"vi_movement_keymap"]


def _load_base(pid: int) -> int | None:
    """Where the executable of pid is mapped (its first mapping at file offset 0)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip() == exe and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16)
    return None


def _dynamic_symbols(path: str, wanted: tuple[bytes, ...]) -> dict[bytes, int]:
    """Values of the wanted symbols in a 64-bit little-endian ELF file's .dynsym."""
    def num(data: bytes, at: int, size: int) -> int:
        return int.from_bytes(data[at : at + size], "little")

    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return {}
        shoff, shentsize, shnum = num(head, 40, 8), num(head, 58, 2), num(head, 60, 2)
        fh.seek(shoff)
        table = fh.read(shentsize * shnum)
        sections = [table[i * shentsize : (i + 1) * shentsize] for i in range(shnum)]
        found: dict[bytes, int] = {}
        for sec in sections:
            if num(sec, 4, 4) != 11:  # SHT_DYNSYM
                continue
            strtab = sections[num(sec, 40, 4)]
            fh.seek(num(strtab, 24, 8))
            names = fh.read(num(strtab, 32, 8))
            fh.seek(num(sec, 24, 8))
            syms = fh.read(num(sec, 32, 8))
            for at in range(0, len(syms) - 23, 24):
                start = num(syms, at, 4)
                name = names[start : names.find(b"\0", start)]
                if name in wanted:
                    found[name] = num(syms, at + 8, 8)
        return found


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
    src = _source()
    found: list[int] = []
    if src is None:
        return found
    for pid in src.pids():
        if pid == os.getpid():
            continue
        argv = src.cmdline(pid)
        if not any(mark in argv for mark in marks):
            continue
        environ = src.environ(pid)
        if environ is not None and env + b"\0" in environ + b"\0":
            found.append(pid)
    return found
