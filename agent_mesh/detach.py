"""Starting a helper detached: the one way agent-mesh runs something in the background
(a queue's waiter, a push after a hook, a pull after a peer's hint, the setup of a
peer's rpc server).

A helper is a function named "module:function", called with string arguments in a
fresh interpreter: this very one (no executable lookup, no hidden subcommand), with
`-I` and this installation's paths first (no user environment: it runs this code,
not whatever PATH or PYTHONPATH finds). Not `-S`: a helper may need a dependency
(paramiko), and a hook that runs without `site` knows only the package's own path.
It runs in a new session, stdin from /dev/null and its output appended to a log (or
discarded): the caller returns at once and nothing waits on it. Stdlib only: a tmux
hook starts helpers.
"""

from __future__ import annotations

import os
import sys

from agent_mesh import paths

_CODE = "import sys; sys.path[:0] = {}; from agent_mesh.detach import run; run(sys.argv[1:])"


def start_helper(target: str, *args: str, log: str | None = None) -> None:
    """Run target ("package.module:function") with args, detached; output to log."""
    code = _CODE.format(repr(paths.package_paths()))
    spawn_detached([sys.executable, "-I", "-c", code, target, *args], log)


def run(argv: list[str]) -> None:
    """The helper's side: call argv[0]'s function with the other arguments."""
    module, _, function = argv[0].partition(":")
    getattr(__import__(module, fromlist=[function]), function)(*argv[1:])


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
