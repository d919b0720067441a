"""procs.Source through psutil: the process tree where /proc is absent (macOS, the BSDs).

Imported only there (or with AGENT_MESH_PROCS=psutil): psutil and subprocess stay off
Linux's delivery hot path. psutil names no process group and no terminal foreground
group, so the group comes from os.getpgid and the foreground group (asked for once, for
the pane's process) from `ps -o tpgid=`, which macOS and Linux both answer. What psutil
cannot give at all: bash's readline keymap, which procs reads from /proc/PID/mem (see
procs.readline_vi_command), and a process's stdin (its controlling terminal stands in).
"""

from __future__ import annotations

import os
import subprocess

import psutil


class PsutilSource:
    """procs.Source over psutil; every read of a vanished or forbidden process is None,
    empty or '' as /proc's would be."""

    def stat(self, pid: int, tpgid: bool) -> tuple[int, int, int, str] | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                ppid, comm = proc.ppid(), proc.name()
            pgrp = os.getpgid(pid)
        except (psutil.Error, OSError):
            return None
        return ppid, pgrp, self._tpgid(pid) if tpgid else 0, comm

    @staticmethod
    def _tpgid(pid: int) -> int:
        """The foreground group of pid's terminal (-1 or 0 without one)."""
        try:
            out = subprocess.run(["ps", "-o", "tpgid=", "-p", str(pid)], capture_output=True,
                                 text=True, timeout=5, check=False).stdout
            return int(out.strip() or "-1")
        except (OSError, ValueError, subprocess.SubprocessError):
            return -1

    def cmdline(self, pid: int) -> bytes:
        try:
            argv = psutil.Process(pid).cmdline()
        except (psutil.Error, OSError):
            return b""
        return "".join(f"{arg}\0" for arg in argv).encode("utf-8", "surrogateescape")[:8192]

    def children(self, pid: int) -> list[int]:
        try:
            return [kid.pid for kid in psutil.Process(pid).children()]
        except (psutil.Error, OSError):
            return []

    def pids(self) -> list[int]:
        return psutil.pids()

    def exe(self, pid: int) -> str:
        try:
            return psutil.Process(pid).exe()
        except (psutil.Error, OSError):
            return ""

    def on_terminal(self, pid: int) -> bool:
        try:
            return psutil.Process(pid).terminal() is not None
        except psutil.AccessDenied:
            return True
        except (psutil.Error, OSError):
            return False

    def environ(self, pid: int) -> bytes | None:
        try:
            env = psutil.Process(pid).environ()
        except (psutil.Error, OSError):
            return None
        return "".join(f"{key}={value}\0" for key, value in env.items()).encode(
            "utf-8", "surrogateescape")
