"""Start a child with three pipes: the one spawn that tmux.py and the ssh client share.

`os.posix_spawn`, not `subprocess` (~10 ms of imports on the hook's and notify-pane's paths),
and the builtin `_signal`, not `signal` (which imports enum). The child gets the default
SIGPIPE and SIGXFSZ that Python ignores, as subprocess gives it.
"""

from __future__ import annotations

import os
from _signal import SIGPIPE, SIGXFSZ


def spawn_piped(argv: list[str], search_path: bool = False) -> tuple[int, int, int, int]:
    """Start argv (looked up on PATH with search_path) with its stdin, stdout and stderr on
    pipes; returns (pid, stdin, stdout, stderr): the ends that are ours."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    spawn = os.posix_spawnp if search_path else os.posix_spawn
    try:
        pid = spawn(
            argv[0], argv, os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                          (os.POSIX_SPAWN_DUP2, err_w, 2)],
            setsigdef=(SIGPIPE, SIGXFSZ),
        )
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return pid, in_w, out_r, err_r
