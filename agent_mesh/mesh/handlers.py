"""What this host answers over rpc beyond deliver and exchange (mesh/rpc.py dispatches
here through OPS): delivering to several agents, keeping a reply, the queue, spawning a
window, and the read-only status, peek and inbox. Each answers from this host alone and
calls no other host, so the clients (mesh/delegate.py, mesh/observe.py) reach it through
mesh/hosts.py without an import loop.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.errors import MeshError, PaneGone, UsageError, WireError
from agent_mesh.model import Agent, Envelope
from agent_mesh.registry import naming, view

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a peer's rpc an import
    from collections.abc import Callable
    from typing import Any

    from agent_mesh.delivery.mailbox import Origin

DEFAULT_SPAWN_WAIT = 60.0
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
            code = 5 if result.outcome == "queued" else 0
            row = {"address": address, "code": code, "outcome": result.outcome,
                   "detail": f"{result.host}[{result.target}]"}
        except MeshError as exc:
            row = {"address": address, "code": exc.exit_code, "outcome": "refused"
                   if exc.exit_code == 3 else "failed", "detail": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            row = {"address": address, "code": 1, "outcome": "failed",
                   "detail": f"bad envelope: {exc}"}
        results.append(row)
    return {"results": results}


def handle_reply(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """rpc: a reply addressed to this host (its asker is a script here): kept for the
    waiting ask if `origin` is the asked agent's host (mailbox.check_reply)."""
    from agent_mesh.delivery import mailbox

    envelope = Envelope.from_json(request["envelope"])
    mailbox.keep_for_asker(envelope, origin, naming.self_alias())
    return {"result": {"address": envelope.address, "target": "mailbox", "pane_id": "",
                       "bytes_sent": 0, "notes": [], "outcome": "mailbox",
                       "msg_id": envelope.msg_id}}


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
                     "reason": record.get("reason", ""), "preview": body[:80]})
    return {"pending": rows}


def handle_cancel(request: dict[str, Any]) -> dict[str, Any]:
    from agent_mesh.delivery import queue

    record = queue.cancel(str(request.get("id", "")))
    return {"cancelled": bool(record), "address": (record or {}).get("address", "")}


def handle_spawn(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: new window in this host's tmux (argv executed directly, never through a
    shell), labelled, registered, and waited on until it is ready for input."""
    from agent_mesh.delivery.paste import pane_state
    from agent_mesh.delivery.state import refusal
    from agent_mesh.registry import local
    from agent_mesh.tmux import Tmux

    argv = [str(a) for a in request.get("argv") or []]
    session = str(request.get("session") or "agents")
    name = str(request.get("name") or os.path.basename(argv[0] if argv else "agent"))
    role, accept = str(request.get("role") or ""), str(request.get("accept") or "")
    wait = min(float(request.get("wait") or DEFAULT_SPAWN_WAIT), 600.0)
    if not argv or not argv[0]:
        raise UsageError("spawn needs a command")
    tmux = Tmux()
    fmt = "#{pane_id} #{window_id}"
    command = ["env", "--", *argv]  # several words: tmux execs them, no shell in between
    exists = tmux.run("has-session", "-t", f"={session}", check=False).returncode == 0
    if exists:
        out = tmux.run("new-window", "-d", "-t", f"={session}:", "-n", name, "-P", "-F", fmt,
                       *command)
    else:
        out = tmux.run("new-session", "-d", "-s", session, "-n", name, "-x", "200", "-y", "50",
                       "-P", "-F", fmt, *command)
    pane_id, window_id = out.stdout.decode().split()[:2]
    gone = WireError(f"{argv[0]} exited at once (is it installed on this host?)")
    try:
        for option, value in (("@agent-role", role), ("@agent-accept", accept)):
            if value:
                tmux.run("set-option", "-w", "-t", pane_id, option, value)
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
        try:
            state = pane_state(tmux, pane_id)
        except PaneGone:  # it exited between the registration and this look
            raise gone from None
        reason = refusal(state)
        if state.dead:
            raise WireError(f"{argv[0]} exited at once in {address}")
        if reason is not None:
            idle_since = 0.0
        elif not idle_since:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= SETTLED_SECONDS:
            break
        time.sleep(0.1)
    return {"address": address, "pane_id": pane_id, "ready": reason is None,
            "detail": reason or ""}


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
    from agent_mesh.delivery.observe import peek

    agent = _own_agent(request, "peek")
    return {"text": peek(agent, _int(request.get("lines"), 40), bool(request.get("ansi")))}


def handle_inbox(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: what one agent here received."""
    agent = _own_agent(request, "inbox")
    return {"records": inbox_records(agent.address, _int(request.get("limit"), 200))}


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


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def inbox_records(address: str, limit: int = 200) -> list[dict[str, Any]]:
    """What an agent here received (newest last), each file record marked present or not."""
    records = log.read(log.received_path(address), max(1, min(limit, MAX_INBOX)))
    for record in records:
        shown = record.get("file")
        if isinstance(shown, str) and shown.startswith("~/"):
            record["present"] = os.path.exists(os.path.join(paths.home(), shown[2:]))
    return records


# The ops that may carry a reply learn who really sent the request (mesh/origin.py).
REPLY_OPS: dict[str, Callable[[dict[str, Any], Origin], dict[str, Any]]] = {
    "deliver_many": handle_deliver_many,
    "reply": handle_reply,
}
OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "queue": handle_queue,
    "cancel": handle_cancel,
    "spawn": handle_spawn,
    "status": handle_status,
    "peek": handle_peek,
    "inbox": handle_inbox,
}
