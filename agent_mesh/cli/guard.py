"""The one guard every entry point runs its body in (notify-pane, each agent-mesh
command, push, sync, quick status): a failure becomes `prog: <one line>` and the exit
code from errors.report, never a traceback. No click: notify-pane and the quick paths
skip it (cli/group.py's run_guarded is this guard for click commands).
"""

from __future__ import annotations

import os
import sys

from agent_mesh.errors import report

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs notify-pane an import
    from collections.abc import Callable
    from typing import NoReturn


def guarded(prog: str, body: Callable[[], int | None],
            say: Callable[[str], None] | None = None) -> int:
    """body's exit code (None counts as 0); or, when it raises an Exception or is
    interrupted, the failure's code after `say`ing its line (default: to stderr).
    SystemExit and the like pass through."""
    try:
        return body() or 0
    except (Exception, KeyboardInterrupt) as exc:
        line, code = report(exc)
        if say is None:
            print(f"{prog}: {line}", file=sys.stderr)
        else:
            say(f"{prog}: {line}")
        return code


def exit_now(code: int) -> NoReturn:
    """Exit with code, without the interpreter's teardown (~1.5 ms of a local delivery's
    ~20, ~2.5 ms of a status's CPU: issue 20). The exit functions run first (the OpenSSH
    transport's starts a peer's rpc server helper), then stdout and stderr are flushed
    (one that fails, a closed pipe, takes the normal exit with its usual message and
    status). Not while a thread may still run (`threading` imported): that exit waits."""
    if "threading" in sys.modules:
        sys.exit(code)
    if "atexit" in sys.modules:
        import atexit

        atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        sys.exit(code)
    os._exit(code)
