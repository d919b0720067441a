"""The tmux-hook entrypoint (`agent-register-hook`).

tmux runs it from `run-shell -b` on session and window events. It must be fast
(stdlib only, no click, no subprocess module) and must never fail loudly inside
tmux: every outcome goes to ~/.agents/hook.log and the exit status is always 0.

    agent-register-hook on <session>     re-register one session (name or $id)
    agent-register-hook off <session>    drop one session's entries
    agent-register-hook rescan [EVENT]   rebuild this host's slice from live tmux
"""

from __future__ import annotations

import os
import sys
import time

from agent_mesh import paths

_LOG_MAX = 1_000_000


def log(message: str) -> None:
    """Append one line to hook.log, rotating it at ~1 MB; never raises."""
    try:
        path = paths.hook_log()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.stat().st_size > _LOG_MAX:
                os.replace(path, path.with_suffix(".log.1"))
        except FileNotFoundError:
            pass
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = " ".join(message.split())  # names may hold newlines; keep one line per event
        with open(path, "a", encoding="utf-8", errors="replace") as fh:
            fh.write(f"{stamp} [{os.getpid()}] {line}\n")
    except Exception:
        pass


def run(args: list[str]) -> str:
    """Carry out one hook call; returns what to log."""
    from agent_mesh import registry
    from agent_mesh.tmux import Tmux

    action = args[0] if args else "rescan"
    if action == "on" and len(args) >= 2:
        fresh = registry.register_session(Tmux(), args[1])
        return f"on {args[1]!r}: {len(fresh)} window(s)"
    if action == "off" and len(args) >= 2:
        removed = registry.unregister_session(args[1])
        return f"off {args[1]!r}: removed {len(removed)}"
    if action == "rescan":
        agents = registry.rescan(Tmux())
        event = args[1] if len(args) > 1 else "manual"
        return f"rescan ({event}): {len(agents)} window(s)"
    return f"ignored: usage is on|off <session> or rescan [event], got {args!r}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    try:
        outcome = run(args)
        log(f"{outcome} in {(time.monotonic() - started) * 1000:.1f} ms")
    except BaseException as exc:  # the hook must never fail loudly inside tmux
        log(f"error on {args!r}: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
