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
    """Exit with code, without the interpreter's teardown when nothing waits for it.

    Tearing down the ~40 modules of a local delivery costs ~1.5 ms of its ~20 (issue
    20). Skipped only while no exit function can be registered (`atexit` was never
    imported: the OpenSSH transport registers one) and no thread can still run
    (`threading` was never imported); stdout and stderr are flushed first, and if that
    fails the normal exit reports it as before."""
    if "atexit" not in sys.modules and "threading" not in sys.modules:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
