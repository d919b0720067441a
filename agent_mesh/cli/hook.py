"""The tmux-hook entrypoint (`agent-register-hook`).

tmux runs it from `run-shell -b` on session and window events, through
hooks/tmux-event. It must be fast (stdlib only, no click, no subprocess, no re:
see agent_mesh.registry.local) and must never fail loudly inside tmux: every outcome
goes to ~/.agents/hook.log as one line and the exit status is always 0.

    agent-register-hook on <session>     re-register one session (name or $id)
    agent-register-hook off <session>    drop one session's entries
    agent-register-hook rescan [EVENT]   rebuild this host's slice from live tmux

Python's `site` import alone costs more than the rest of the hook, so
hooks/tmux-event starts Python with `-I -S` and puts this package on sys.path
itself. It learns where the interpreter and the package are from
~/.agents/hook.launch, which this module writes when the launcher runs the
console script instead (first run, or after a reinstall) and sets
AGENT_MESH_HOOK_LAUNCH.
"""

from __future__ import annotations

import os
import sys
import time

from agent_mesh.errors import printable, report

USAGE = "usage: agent-register-hook on|off <session> | rescan [event]"
HELP = f"""{USAGE}

Keeps ~/.agents/local.toml (this host's tmux windows) and registry.toml current.
tmux runs it from the hooks in tmux.conf.snippet; it logs to ~/.agents/hook.log
and always exits 0.

  on <session>     re-register one session (by name or $id)
  off <session>    drop one session's entries
  rescan [event]   rebuild this host's whole slice from live tmux"""


def log(message: str) -> None:
    """Append one line to hook.log, rotating it at ~1 MB; never raises."""
    try:
        from agent_mesh.fsutil import log_line
        from agent_mesh.registry.toml import ensure_agents_dir

        log_line(os.path.join(ensure_agents_dir(), "hook.log"), message)
    except Exception:
        pass


def _slice_identity() -> tuple[int, int] | None:
    """local.toml's inode and mtime: the store rewrites it only when it changed."""
    from agent_mesh import paths

    try:
        st = os.stat(paths.local_slice())
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def push_to_peers() -> str:
    """Start a push (sync.push_main, detached) when there are peers: a new window is
    addressable mesh-wide within seconds, and the hook does not wait for SSH."""
    from agent_mesh import paths
    from agent_mesh.registry.naming import read_peers

    if not read_peers(strict=False):
        return ""
    from agent_mesh.detach import start_helper

    start_helper("agent_mesh.mesh.sync:push_main", log=os.path.join(paths.agents_dir(), "push.log"))
    return "; pushing to peers"


def run(args: list[str]) -> str:
    """Carry out one hook call; returns what to log."""
    before = _slice_identity()
    outcome = _apply(args)
    if _slice_identity() != before:  # windows came or went: a lock's holder may be gone
        outcome += push_to_peers() + sweep_locks()
    return outcome + resume_queues()


def sweep_locks() -> str:
    """End the locks whose holder's window just closed (the slice changed), and those
    whose TTL ran out meanwhile: one stat when this host holds none (the coord package's
    imports only when it holds some). Expiry alone is also seen by every read of the
    table and by the timer's sync."""
    from agent_mesh import paths

    try:
        if os.stat(os.path.join(paths.coord_dir(), "locks.json")).st_size < 16:
            return ""
    except OSError:
        return ""
    from agent_mesh.coord.locks import sweep

    try:
        ended = sweep()
    except Exception as exc:  # a damaged locks.json must not hide what the hook did
        return f"; locks not swept: {report(exc)[0]}"
    return f"; released {len(ended)} lock(s)" if ended else ""


def resume_queues() -> str:
    """Restart the waiter of any queue that still holds messages (after a reboot, a
    killed waiter, a tmux restart): a few listdirs when there is nothing to do."""
    from agent_mesh.paths import agents_dir

    root = os.path.join(agents_dir(), "queue")
    try:
        busy = any(n[:1] != "." and os.listdir(os.path.join(root, n)) for n in os.listdir(root))
    except OSError:
        return ""
    if not busy:
        return ""
    from agent_mesh.delivery import queue

    started = queue.resume()
    return f"; resumed {len(started)} queue(s)" if started else ""


def _apply(args: list[str]) -> str:
    from agent_mesh.registry import local
    from agent_mesh.registry.naming import SCRATCH_RULE, is_scratch_session
    from agent_mesh.tmux import Tmux

    action = args[0] if args else "rescan"
    if action == "on" and len(args) == 2:
        fresh, live = local.register_session(Tmux(), args[1])
        if not live:
            return f"on {args[1]!r}: no such session on this tmux server; nothing registered"
        if not fresh and is_scratch_session(args[1]):
            return f"on {args[1]!r}: {SCRATCH_RULE}"
        return f"on {args[1]!r}: {len(fresh)} window(s)"
    if action == "off" and len(args) == 2:
        removed = local.unregister_session(Tmux(), args[1])
        return f"off {args[1]!r}: removed {len(removed)}"
    if action == "rescan" and len(args) <= 2:
        tables = local.rescan(Tmux())
        event = args[1] if len(args) > 1 else "manual"
        return f"rescan ({event}): {len(tables)} window(s)"
    return f"ignored {args!r}: {USAGE}"


def remember_launch() -> None:
    """Record this interpreter and package root for hooks/tmux-event's fast path."""
    import agent_mesh
    from agent_mesh.fsutil import atomic_write

    root = os.path.dirname(os.path.dirname(os.path.abspath(agent_mesh.__file__)))
    text = f"{sys.executable}\n{root}\n"
    if text.count("\n") != 2 or not sys.executable:
        return  # a path with a newline can't go through `read`; stay on the slow path
    from agent_mesh.registry.toml import ensure_agents_dir

    path = os.path.join(ensure_agents_dir(), "hook.launch")
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                os.utime(path)  # newer than the console script again
                return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(path, text.encode("utf-8"), mode=0o600)


def main(argv: list[str] | None = None) -> int:
    """Run one hook call; log the outcome or the error; always exit 0."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(HELP)
        return 0
    started = time.monotonic()
    umask = os.umask(0o077)  # ~/.agents and everything in it is private, whoever creates it
    try:
        return _main(args, started)
    finally:
        os.umask(umask)  # as it was, for a caller that runs the hook in-process


def _main(args: list[str], started: float) -> int:
    if os.environ.get("AGENT_MESH_HOOK_LAUNCH") == "1":
        try:
            remember_launch()
        except Exception as exc:
            log(f"cannot write hook.launch: {type(exc).__name__}: {exc}")
    try:
        outcome = run(args)
        lean = " [no-site]" if sys.flags.no_site else ""
        log(f"{outcome} in {(time.monotonic() - started) * 1000:.1f} ms{lean}")
    except BaseException as exc:  # the hook must never fail loudly inside tmux
        line, code = report(exc)
        outcome = f"error on {args!r}: {line} (exit {code})"
        log(outcome)
    if _interactive():  # typed by hand (issue 8.12): say it there too; tmux never has a tty
        print(f"agent-register-hook: {printable(outcome)}", file=sys.stderr)
    return 0


def _interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
