"""`agent-mesh agent-event [--agent NAME] EVENT`: what Claude Code's and Codex's hooks run.

The agent CLI runs it at its lifecycle events with the event's JSON on stdin, inside
the agent's tmux pane (TMUX and TMUX_PANE inherited). It records what the event proves
about the pane (delivery/turns.py), and at the end of a turn (Stop) hands over the
messages queued for the pane (delivery/handover.py): their text goes to stderr and
the exit status is 2, which both CLIs take as "continue the turn with this text".

It never breaks the agent: every other outcome, an error included, exits 0 with
nothing on stdout or stderr; errors and handovers go to ~/.agents/agent-event.log.
Stdlib only, like the tmux hook (cli/hook.py): hooks/agent-event starts it with
`python -I -S`, so a hook costs a Python start and a few small file operations.
"""

from __future__ import annotations

import json
import os
import sys
import time

USAGE = "usage: agent-mesh agent-event [--agent claude|codex] EVENT < HOOK-INPUT.json"
HELP = f"""{USAGE}

What the hooks `agent-mesh setup --agents` installs into Claude Code and Codex run
(internal). Records the pane's state from the event (turn started or ended, a
question open, session started or ended) in ~/.agents/turns/, and at a turn's end
(Stop) hands the messages queued for the pane over as the agent's next input: they
are written to stderr and the exit status is 2. Anything else exits 0, silently;
errors go to ~/.agents/agent-event.log."""

_MAX_INPUT = 4 * 1024 * 1024


def log_path() -> str:
    from agent_mesh.paths import agents_dir

    return os.path.join(agents_dir(), "agent-event.log")


def log(line: str) -> None:
    """One line in agent-event.log (rotated at ~1 MB); never raises."""
    from agent_mesh.fsutil import log_line

    log_line(log_path(), line)


def _payload() -> dict[str, object]:
    """The hook's JSON input ({} when there is none or it is not JSON)."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return {}
        data = sys.stdin.buffer.read(_MAX_INPUT)
        value = json.loads(data.decode("utf-8", "replace")) if data.strip() else {}
    except (OSError, ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


def _where() -> tuple[str, str, str] | None:
    """(socket, server pid, pane id) of the pane the agent runs in, or None."""
    parts = os.environ.get("TMUX", "").split(",")
    if len(parts) < 2 or not parts[0] or not parts[1].isdigit():
        return None
    pane = os.environ.get("TMUX_PANE", "")
    if not (pane.startswith("%") and pane[1:].isdigit()):
        from agent_mesh.registry.whoami import invoking_pane

        here = invoking_pane()
        if here is None:
            return None
        pane = here[1]
    return parts[0], parts[1], pane


def _app_server(pid: int) -> bool:
    """Is the agent process Codex's shared app-server daemon? It runs the hooks of every
    TUI with the environment of the TUI that started it, so TMUX_PANE names that pane."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"app-server" in fh.read()
    except OSError:
        return False


class Outcome:
    """What the hook answers: an exit status and the text for stderr."""

    __slots__ = ("code", "logged", "text")

    def __init__(self, code: int = 0, text: str = "", logged: str = "") -> None:
        self.code = code
        self.text = text
        self.logged = logged


def run(args: list[str], payload: dict[str, object]) -> Outcome:
    """Record one event (and at a Stop hand over the pane's queue)."""
    agent = ""
    if args[:1] == ["--agent"] and len(args) >= 2:
        agent, args = args[1], args[2:]
    if len(args) != 1 or not args[0].isalnum():
        return Outcome(logged=f"ignored {args!r}: {USAGE}")
    event = args[0]
    where = _where()
    if where is None:
        return Outcome(logged=f"{event}: not inside a tmux pane; nothing recorded")
    socket, server_pid, pane = where
    from agent_mesh.delivery import turns

    path = turns.record_path(socket, pane)
    if not path:
        return Outcome(logged=f"{event}: tmux socket {socket} is gone; nothing recorded")
    state, detail = turns.event_state(event, payload)
    parent = os.environ.get("AGENT_MESH_HOOK_PARENT", "")  # tests: the stand-in agent's pid
    proc = turns.agent_process(int(parent) if parent.isdigit() else os.getppid(),
                               int(server_pid))
    record: dict[str, object] = {
        "v": 1, "pane": pane, "socket": socket, "server_pid": server_pid,
        "agent": agent, "event": event, "time": time.time(),
        "session_id": str(payload.get("session_id") or ""),
        "proc": [proc[0], proc[1]], "comm": proc[2],
    }
    if _app_server(proc[0]):
        return Outcome(logged=f"{event}: run by Codex's app-server daemon, not from its pane "
                              "(its TMUX_PANE may be another TUI's): ignored; agent-mesh setup "
                              "--agents sets [features] daemon_auto_start = false")
    _touch_last(agent, event)
    if event == "Stop" and not payload.get("stop_hook_active"):
        handed = _hand_over(socket, server_pid, pane, record)
        if handed is not None:
            return handed
    _write_state(path, record, state, detail)
    if state in (turns.IDLE,) and _queued():
        return Outcome(logged=_start_waiters(socket, server_pid, pane))
    return Outcome()


def _write_state(path: str, record: dict[str, object], state: str, detail: str) -> None:
    """The new record; an event that proves nothing keeps the state it had."""
    from agent_mesh.delivery import turns

    before = turns.read(path) or {}
    same_agent = before.get("proc") == record["proc"]
    if not state:
        state = str(before.get("state") or "") if same_agent else ""
        detail = str(before.get("detail") or "") if same_agent else detail
    record["state"] = state
    record["detail"] = detail
    changed = not same_agent or before.get("state") != state
    record["since"] = record["time"] if changed else before.get("since", record["time"])
    turns.write(path, record)


def _touch_last(agent: str, event: str) -> None:
    """turns/.last-AGENT: when this CLI's hooks last fired (for doctor)."""
    from agent_mesh.delivery.turns import turns_dir

    if not agent.isalnum():
        return
    try:
        folder = turns_dir()
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(folder, f".last-{agent}"),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, event.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _queued() -> bool:
    from agent_mesh.paths import agents_dir

    root = os.path.join(agents_dir(), "queue")
    try:
        return any(n[:1] != "." and os.listdir(os.path.join(root, n)) for n in os.listdir(root))
    except OSError:
        return False


def _hand_over(socket: str, server_pid: str, pane: str,
               record: dict[str, object]) -> Outcome | None:
    """At a turn's end, under the pane's delivery lock: the queued messages of this
    pane as the continuation (exit 2), or None when none went over (none queued, the
    lock busy, stderr unwritable): the turn's end is then recorded as any other."""
    if not _queued():
        return None
    from agent_mesh.delivery import handover, turns

    path = turns.record_path(socket, pane)
    try:
        lock = handover.pane_lock(socket, pane)
        lock.__enter__()
    except Exception as exc:  # busy (a delivery holds it) or unusable: its turn still
        log(f"Stop: {pane}'s delivery lock: {exc}; its queued messages stay queued and go "
            "by paste")  # ended (recorded idle), and the waiters paste under the checks
        return None
    try:
        prepared = handover.prepare(handover.for_pane(socket, server_pid, pane))
        if prepared is None:
            return None
        text = prepared.text
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):  # exit 0: the CLI ignores what got out; idle
            log(f"Stop: could not write the continuation; {len(prepared.records)} "
                "message(s) stay queued")
            return None
        if os.environ.get("AGENT_MESH_FAULT") == "handover-kill-after-write":  # tests
            os.kill(os.getpid(), 9)
        detail = f"handed over at its turn's end by its Stop hook ({pane})"
        try:  # the text is out: only exit 2 gets it to the agent, whatever fails now
            handover.commit(prepared, detail)
            _write_state(path, record, turns.WORKING,
                         f"it goes on with {len(prepared.records)} handed-over message(s)")
        except Exception as exc:
            log(f"Stop: handed over, but its bookkeeping failed: {type(exc).__name__}: {exc}")
    finally:
        lock.__exit__(None, None, None)
    return Outcome(code=2, logged=f"Stop: handed over {', '.join(prepared.ids)} "
                                  f"({len(text.encode())} bytes) to {pane}")


def _start_waiters(socket: str, server_pid: str, pane: str) -> str:
    """An agent that became idle (or a new one in the pane) with messages queued for
    its pane: start their waiters, which deliver by paste under the normal checks."""
    from agent_mesh.delivery import handover, queue

    mine = handover.for_pane(socket, server_pid, pane)
    started = [a for a in dict.fromkeys(str(r.get("address")) for r in mine)
               if queue.start_waiter(a)]
    return f"idle with {len(mine)} queued message(s): started {len(started)} waiter(s)" \
        if mine else ""


def main(argv: list[str] | None = None) -> int:
    """Run one hook call; exit 0 unless handing over messages (2)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(HELP)
        return 0
    started = time.monotonic()
    umask = os.umask(0o077)
    try:
        if os.environ.get("AGENT_MESH_HOOK_LAUNCH") == "1":
            try:
                from agent_mesh.cli.hook import remember_launch

                remember_launch()
            except Exception as exc:
                log(f"cannot write hook.launch: {type(exc).__name__}: {exc}")
        outcome = run(args, _payload())
    except BaseException as exc:  # never break the agent
        try:
            from agent_mesh.errors import report

            line, _code = report(exc)
        except Exception:
            line = f"{type(exc).__name__}: {exc}"
        log(f"error on {args!r}: {line}")
        return 0
    finally:
        os.umask(umask)
    if outcome.logged:
        log(f"{outcome.logged} in {(time.monotonic() - started) * 1000:.1f} ms")
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
