"""What this host answers over rpc beyond deliver and exchange (mesh/rpc.py dispatches
here through OPS): delivering to several agents, keeping a reply, the queue, spawning a
window, and the read-only status, peek and inbox. Each answers from this host alone and
calls no other host, so the clients (mesh/delegate.py, mesh/observe.py) reach it through
mesh/host.py without an import loop.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.errors import (
    MeshError,
    NotReady,
    Outcome,
    PaneGone,
    UsageError,
    WireError,
    bounded,
    printable,
)
from agent_mesh.mesh.wire import request_envelope
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.registry import naming, view
from agent_mesh.tmux import literal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a peer's rpc an import
    from collections.abc import Callable
    from typing import Any

    from agent_mesh.delivery.mailbox import Origin

DEFAULT_SPAWN_WAIT = 60.0
MAX_SPAWN_WAIT = 600.0
SETTLED_SECONDS = 0.6
MAX_INBOX = 1000


def handle_deliver_many(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """rpc: deliver several envelopes to agents of this host, one result each (a reply
    among them is checked against its sender's `origin`, as a single one is)."""
    from agent_mesh.delivery.receive import receive

    local = view.load_agents(paths.local_slice())
    results = []
    for raw in request.get("envelopes", []):
        address = str(raw.get("address", "?")) if isinstance(raw, dict) else "?"
        try:
            envelope = Envelope.from_json(raw)
            result = receive(envelope, view.resolve(envelope.address, local), origin=origin)
            outcome, detail = result.outcome, f"{result.host}[{result.target}]"
        except MeshError as exc:
            outcome, detail = Outcome.of_error(exc), str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            outcome, detail = Outcome.INVALID, f"bad envelope: {exc}"
        # `code` always: a previous version reads it, and not the word, for the exit code
        results.append({"address": address, "code": outcome.code, "outcome": outcome.word,
                        "detail": detail})
    return {"results": results}


def handle_reply(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """rpc: a reply addressed to this host (its asker is a script here): kept for the
    waiting ask if `origin` is the asked agent's host (mailbox.check_reply)."""
    from agent_mesh.delivery import mailbox

    envelope = request_envelope(request)
    here = naming.self_alias()
    mailbox.keep_for_asker(envelope, origin, here)
    kept = DeliveryResult(address=envelope.address, host=here, target="mailbox", pane_id="",
                          bytes_sent=0, outcome=Outcome.MAILBOX, msg_id=envelope.msg_id)
    return {"result": kept.to_json()}


def handle_queue(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: this host's pending messages (ids, recipients, previews; no file paths)."""
    from agent_mesh.delivery import queue

    rows = []
    for record in queue.pending():
        env = record.get("envelope") or {}
        body = str(env.get("body", "")) if isinstance(env, dict) else ""
        rows.append({"id": record.get("id", ""), "address": record.get("address", ""),
                     "from": env.get("sender", "") if isinstance(env, dict) else "",
                     "queued_at": record.get("queued_at", 0),
                     "expires_at": record.get("expires_at", 0),
                     "reason": f"held: {record['held']}" if record.get("held")
                     else record.get("reason", ""),
                     "state": record.get("state", "waiting"), "preview": body[:80]})
    return {"pending": rows}


def handle_cancel(request: dict[str, Any]) -> dict[str, Any]:
    from agent_mesh.delivery import queue

    record = queue.cancel(str(request.get("id", "")))
    return {"cancelled": bool(record), "address": (record or {}).get("address", "")}


def handle_spawn(request: dict[str, Any],
                 requester_gone: Callable[[], bool] | None = None) -> dict[str, Any]:
    """rpc: new window in this host's tmux (argv executed directly, never through a
    shell), labelled, registered, and waited on until it is ready for input.

    Names and argv reach tmux as literal data (tmux.literal, tmux.literal_format). A
    spawn that fails, or whose requester goes away mid-wait (requester_gone: the rpc
    sender closed its end), removes the window it made: a retry must not find a
    leftover twin."""
    from agent_mesh.tmux import Tmux

    argv = request.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) \
            or not argv[0]:
        raise UsageError("spawn needs a command (a list of words)")
    session = str(request.get("session") or "agents")
    name = str(request.get("name") or os.path.basename(argv[0]))
    role, accept = str(request.get("role") or ""), str(request.get("accept") or "")
    wait = bounded(request.get("wait"), "wait", DEFAULT_SPAWN_WAIT, MAX_SPAWN_WAIT)
    _check_session_name(session)
    _check_program(argv, accept)
    tmux = Tmux()
    pane_id, window_id = _new_window(tmux, session, name, argv)
    options = {"@agent-role": role, "@agent-accept": accept}
    try:
        return _wait_ready(tmux, session, argv[0], pane_id, window_id, options, wait,
                           requester_gone)
    except BaseException:
        _remove_window(tmux, window_id, session)
        raise


def _check_session_name(session: str) -> None:
    """Refuse, before anything starts, a session name tmux would change (`:` and `.`
    become `_`, controls are escaped) or the registry never lists (scratch)."""
    if any(ch in ":." or not ch.isprintable() for ch in session):
        raise UsageError(f"bad --session {printable(session)!r}: tmux does not keep `:`, `.` "
                         "or control characters in a session name")
    if naming.is_scratch_session(session):
        raise UsageError(f"--session {printable(session)}: {naming.SCRATCH_RULE}; "
                         "use another session, e.g. --session agents")


def _check_program(argv: list[str], accept: str) -> None:
    """Refuse at once to start what no message could reach (not after the whole wait):
    a program that is not a known agent and not accepted, or a shell not accepted as one."""
    from agent_mesh.procs import Proc
    from agent_mesh.receivers import agent_of, extra_agents, is_shell, program_name

    words = set(accept.replace(",", " ").split())
    proc = Proc(0, 0, 0, 0, os.path.basename(argv[0])[:15], tuple(argv))
    if agent_of(proc, extra_agents()):
        return
    if is_shell(argv[0]):
        if "shell" not in words:
            raise NotReady(f"{printable(argv[0])} is a shell: a message there would run as a "
                           "command; to accept that, spawn with --accept shell",
                           overridable=False)
        return
    if not words:
        prog = printable(program_name(proc))
        raise NotReady(f"{prog} is not a known agent, so messages to it would be refused; "
                       f"if it should take messages, spawn with --accept {prog}",
                       overridable=False)


def _new_window(tmux: Any, session: str, name: str, argv: list[str]) -> tuple[str, str]:
    """Start argv in a new window named name in session (made if missing); its pane and
    window ids. Every word goes through tmux.literal: tmux parses a client's argv as
    commands, and formats in -s/-n."""
    from agent_mesh.tmux import fields_format, literal_format, parse_head, parse_records

    made = ("pane_id", "window_id", "session_name", "window_name")
    fmt = fields_format(made)
    # several words: tmux execs them, no shell in between
    command = [literal(word) for word in ("env", "--", *argv)]
    listed = tmux.run("list-sessions", "-F", fields_format(("session_id", "session_name")),
                      check=False)
    found = [s["session_id"] for s in parse_records(listed.stdout, ("session_id", "session_name"))
             if s["session_name"] == session] if listed.returncode == 0 else []
    if found:
        out = tmux.run("new-window", "-d", "-t", f"{found[0]}:", "-n", literal_format(name),
                       "-P", "-F", fmt, *command)
    else:
        out = tmux.run("new-session", "-d", "-s", literal_format(session), "-n",
                       literal_format(name), "-x", "200", "-y", "50", "-P", "-F", fmt, *command)
    got, _rest = parse_head(out.stdout, made)
    if (got["session_name"], got["window_name"]) != (session, name):
        _remove_window(tmux, got["window_id"], got["session_name"])
        raise UsageError(f"tmux would name it {printable(got['window_name'])!r} in session "
                         f"{printable(got['session_name'])!r}, not {printable(name)!r} in "
                         f"{printable(session)!r}: choose another --name")
    return got["pane_id"], got["window_id"]


def _wait_ready(tmux: Any, session: str, program: str, pane_id: str, window_id: str,
                options: dict[str, str], wait: float,
                requester_gone: Callable[[], bool] | None) -> dict[str, Any]:
    """Label and register the new window, and wait until it has been ready for a
    moment; the reply."""
    from agent_mesh.delivery.pane import pane_state
    from agent_mesh.delivery.rule import refusal
    from agent_mesh.registry import local

    gone = WireError(f"{printable(program)} exited at once (is it installed on this host?)")
    try:
        for option, value in options.items():
            if value:
                tmux.run("set-option", "-w", "-t", pane_id, option, literal(value))
        tables, _count = local.register_session(tmux, session)
    except WireError:
        if _pane_gone(tmux, pane_id):  # not "no such window: %3", which says nothing
            raise gone from None
        raise
    address = next((a for a, t in tables.items() if t.get("window_id") == window_id), "")
    if not address:
        if _pane_gone(tmux, pane_id):
            raise gone
        raise WireError(f"the new window {window_id} did not register (see agent-discover)")
    # Ready means idle for a moment on end: a TUI draws its input box before it reads
    # its terminal, and a task pasted into that gap is lost.
    deadline = time.monotonic() + wait
    reason: str | None = "not checked"
    idle_since = 0.0
    while time.monotonic() < deadline:
        if requester_gone is not None and requester_gone():
            raise WireError(f"the requester went away before {address} was ready: "
                            "its window is removed")
        try:
            state = pane_state(tmux, pane_id)
        except PaneGone:  # it exited between the registration and this look
            raise gone from None
        reason = refusal(state)
        if state.dead:
            raise WireError(f"{printable(program)} exited at once in {address}")
        if reason is not None:
            idle_since = 0.0
        elif not idle_since:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= SETTLED_SECONDS:
            break
        time.sleep(0.1)
    return {"address": address, "pane_id": pane_id, "ready": reason is None,
            "detail": reason or ""}


def _remove_window(tmux: Any, window_id: str, session: str) -> None:
    """Best effort: the failed spawn's window (and its session, if that was its only
    window) goes, and so does its registry entry."""
    from agent_mesh.registry import local

    try:
        tmux.run("kill-window", "-t", window_id, check=False)
        local.register_session(tmux, session)
    except Exception:  # the original failure is what the requester must hear
        pass


def _pane_gone(tmux: Any, pane_id: str) -> bool:
    """tmux answers a missing pane with empty fields and exit 0."""
    out = tmux.run("display-message", "-p", "-t", pane_id, "#{pane_id}", check=False)
    return not out.stdout.decode().strip().startswith("%")


def handle_status(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: every agent of this host, its state read from its pane."""
    from agent_mesh.delivery.observe import local_status

    return {"agents": local_status(list(own_agents().values()))}


def handle_peek(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: the last lines of one agent's pane here, controls stripped unless ansi."""
    from agent_mesh.delivery.observe import MAX_PEEK_LINES, peek

    agent = _own_agent(request, "peek")
    lines = int(bounded(request.get("lines"), "lines", 40, MAX_PEEK_LINES))
    return {"text": peek(agent, lines, bool(request.get("ansi")))}


def handle_inbox(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: what one agent here received."""
    agent = _own_agent(request, "inbox")
    limit = int(bounded(request.get("limit"), "limit", 200, MAX_INBOX))
    return {"records": inbox_records(agent.address, limit)}


def _own_agent(request: dict[str, Any], op: str) -> Agent:
    address = request.get("address")
    if not isinstance(address, str) or not address:
        raise UsageError(f"{op} needs an address")
    return view.resolve(address, own_agents())


def own_agents() -> dict[str, Agent]:
    """This host's agents: its slice's entries, read from the merged registry's marshal
    cache (every slice write re-assembles it) rather than parsing local.toml (~15 ms)."""
    me = naming.self_alias()
    return {a: ag for a, ag in view.load_agents().items() if ag.host == me}


def inbox_records(address: str, limit: int = 200) -> list[dict[str, Any]]:
    """What an agent here received (newest last), each file record marked present or not."""
    records = log.read(log.received_path(address), max(1, min(limit, MAX_INBOX)))
    for record in records:
        shown = record.get("file")
        if isinstance(shown, str) and shown.startswith("~/"):
            record["present"] = os.path.exists(os.path.join(paths.home(), shown[2:]))
    return records


def handle_coord(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """rpc: the bulletin, decisions, locks and boards this host is the authority for."""
    from agent_mesh.coord.serve import handle

    return handle(request, origin)


# The ops that may carry a reply learn who really sent the request (mesh/origin.py).
REPLY_OPS: dict[str, Callable[[dict[str, Any], Origin], dict[str, Any]]] = {
    "deliver_many": handle_deliver_many,
    "reply": handle_reply,
    "coord": handle_coord,  # who asks matters too: a lock or a claim is theirs
}
OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "queue": handle_queue,
    "cancel": handle_cancel,
    "spawn": handle_spawn,
    "status": handle_status,
    "peek": handle_peek,
    "inbox": handle_inbox,
}
