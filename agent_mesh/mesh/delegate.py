"""Delegation across the mesh: broadcast, ask and reply, the queue view, and spawn.

Everything here is built from one primitive, `call_host(host, request)`: the same
rpc request answered in-process for this host and by `agent-mesh rpc` over SSH for
a peer, so a local and a remote agent behave alike. Requests to several hosts go
out in parallel, one per host. Nothing here keeps running once its command returns:
queued messages are sent by the recipient host's short-lived waiter (delivery.queue).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent_mesh import __version__
from agent_mesh.delivery import mailbox
from agent_mesh.errors import AskTimeout, MeshError, NoMatch, UsageError, WireError
from agent_mesh.mesh.wire import PROTOCOL
from agent_mesh.model import Agent, Envelope
from agent_mesh.registry import naming, view
from agent_mesh.registry.select import select

DEFAULT_ASK_TIMEOUT = 600.0
DEFAULT_SPAWN_WAIT = 60.0
DEFAULT_AGENT_COMMAND = ("claude",)
POLL_SECONDS = 0.1
SETTLED_SECONDS = 0.6


# --- the one primitive -----------------------------------------------------------


def call_host(host: str, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one rpc request to host (in-process when it is this host); its reply."""
    if host == naming.self_alias():
        from agent_mesh.mesh import rpc

        return rpc.handle({**request, "protocol": PROTOCOL, "version": __version__})
    from agent_mesh.mesh.transport import remote_transport

    transport = remote_transport(host)
    try:
        return transport.request(request, timeout=timeout)
    finally:
        transport.close()


def mesh_hosts() -> list[str]:
    """This host and every peer in peers.conf."""
    from agent_mesh.mesh.sync import read_peers

    return [naming.self_alias(), *read_peers()]


def each_host(
    hosts: Iterable[str], request: Callable[[str], dict[str, Any]]
) -> dict[str, dict[str, Any] | MeshError]:
    """request(host) for every host in parallel; a host's MeshError is its answer."""
    from concurrent.futures import ThreadPoolExecutor

    def one(host: str) -> tuple[str, dict[str, Any] | MeshError]:
        try:
            return host, request(host)
        except MeshError as exc:
            return host, exc
        except Exception as exc:  # one broken host must not hide the others' answers
            return host, WireError(f"{host}: {type(exc).__name__}: {exc}")

    hosts = list(dict.fromkeys(hosts))
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return dict(pool.map(one, hosts))


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `1d` as seconds; UsageError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], 0)
    number = raw[:-1] if scale else raw
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        value = -1
    if not value > 0:
        raise UsageError(f"bad duration {text!r}: use e.g. 90s, 10m, 2h")
    return value


def own_address(agents: Mapping[str, Agent]) -> str:
    """The registry address of the pane this command runs in ('' outside a registered pane)."""
    pane = os.environ.get("TMUX_PANE", "")
    if not pane or not os.environ.get("TMUX"):
        return ""
    me = naming.self_alias()
    for agent in agents.values():
        if agent.pane_id == pane and agent.host == me:
            return agent.address
    return ""


def new_msg_id() -> str:
    return os.urandom(3).hex()


# --- broadcast ---------------------------------------------------------------------


class Outcome:
    """What happened for one recipient of a broadcast."""

    __slots__ = ("address", "code", "host", "line", "outcome")

    def __init__(self, address: str, host: str, code: int, outcome: str, line: str) -> None:
        self.address, self.host, self.code = address, host, code
        self.outcome, self.line = outcome, line

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "host": self.host, "code": self.code,
                "outcome": self.outcome, "detail": self.line}


# Which exit code wins when recipients differ: a wire failure is worst, then an
# unknown/gone agent, then a refusal, then queued; all delivered is 0.
_SEVERITY = {0: 0, 5: 1, 3: 2, 2: 3, 1: 4, 4: 5}


def worst(codes: Iterable[int]) -> int:
    return max(codes, key=lambda c: _SEVERITY.get(c, 6), default=0)


def broadcast(patterns: list[str], envelope: Envelope) -> list[Outcome]:
    """Deliver envelope to every agent matching patterns (never the sender), one request
    per host in parallel; one Outcome per recipient."""
    if envelope.re:
        raise UsageError("a reply goes to its one asker: it cannot fan out to a pattern")
    agents = view.load_agents()
    me = own_address(agents)
    targets = [a for a in select(agents, patterns) if a.address != me]
    if not targets:
        raise NoMatch(f"no agent matches {' '.join(patterns)} (try agent-mesh list)")
    by_host: dict[str, list[Agent]] = {}
    for agent in targets:
        by_host.setdefault(agent.host, []).append(agent)

    def send_host(host: str) -> dict[str, Any]:
        envelopes = [envelope.replace(address=a.address).to_json() for a in by_host[host]]
        return call_host(host, {"op": "deliver_many", "envelopes": envelopes})

    answers = each_host(by_host, send_host)
    outcomes: list[Outcome] = []
    for host, agents_there in by_host.items():
        answer = answers[host]
        if isinstance(answer, MeshError):
            for agent in agents_there:
                outcomes.append(Outcome(agent.address, host, answer.exit_code, "failed",
                                        str(answer)))
            continue
        for row in answer.get("results", []):
            outcomes.append(Outcome(str(row.get("address", "?")), host, int(row.get("code", 4)),
                                    str(row.get("outcome", "")), str(row.get("detail", ""))))
    return outcomes


def handle_deliver_many(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: deliver several envelopes to agents of this host, one result each."""
    from agent_mesh import paths
    from agent_mesh.delivery.receive import receive

    local = view.load_agents(paths.local_slice())
    results = []
    for raw in request.get("envelopes", []):
        address = str(raw.get("address", "?")) if isinstance(raw, dict) else "?"
        try:
            envelope = Envelope.from_json(raw)
            result = receive(envelope, view.resolve(envelope.address, local))
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


# --- ask and reply -----------------------------------------------------------------


def ask(address: str, question: str, timeout: float = DEFAULT_ASK_TIMEOUT,
        send: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Deliver question with a reply instruction, then wait for the reply; the exchange.

    The reply goes to this pane's address when the asker is a registered pane, else
    to this host's alias (kept in the mailbox, typed nowhere). The question is sent
    queued: a busy recipient gets it as soon as it is ready.
    """
    from agent_mesh.mesh.send import send as default_send

    agents = view.load_agents()
    route = own_address(agents) or naming.self_alias()
    ask_id = mailbox.new_ask_id()
    mailbox.record_ask(ask_id, address, question, timeout)
    started = time.monotonic()
    try:
        result = (send or default_send)(address, question, ask=ask_id, reply_to=route,
                                        queue=True)
        deadline = started + timeout
        while True:
            found = mailbox.replies(ask_id)
            if found:
                reply = found[0]
                return {"id": ask_id, "to": address, "question": question,
                        "outcome": result.outcome, "reply": reply.get("body", ""),
                        "from": reply.get("from", ""), "at": reply.get("at", ""),
                        "waited": round(time.monotonic() - started, 3)}
            if time.monotonic() >= deadline:
                raise AskTimeout(
                    f"no reply from {address} within {timeout:g} s (id {ask_id}); "
                    f"a late reply is kept in ~/.agents/mailbox"
                )
            time.sleep(POLL_SECONDS)
    finally:
        mailbox.forget_ask(ask_id)


def handle_reply(request: dict[str, Any]) -> dict[str, Any]:
    """rpc: a reply addressed to this host (its asker is not a pane): keep it."""
    from agent_mesh.delivery.receive import store_for_asker

    result = store_for_asker(Envelope.from_json(request["envelope"]), naming.self_alias())
    return {"result": {"address": result.address, "target": result.target, "pane_id": "",
                       "bytes_sent": 0, "notes": [], "outcome": result.outcome,
                       "msg_id": result.msg_id}}


# --- the queue, mesh-wide ----------------------------------------------------------


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


def queue_list() -> tuple[list[dict[str, Any]], dict[str, MeshError]]:
    """Pending messages on every host; and the hosts that did not answer."""
    answers = each_host(mesh_hosts(), lambda h: call_host(h, {"op": "queue"}))
    rows: list[dict[str, Any]] = []
    failed: dict[str, MeshError] = {}
    for host, answer in answers.items():
        if isinstance(answer, MeshError):
            failed[host] = answer
            continue
        rows.extend({**row, "host": host} for row in answer.get("pending", []))
    rows.sort(key=lambda r: float(r.get("queued_at", 0)))
    return rows, failed


def queue_cancel(msg_id: str) -> str:
    """Cancel a queued message wherever it waits; returns the host, or raises."""
    answers = each_host(mesh_hosts(), lambda h: call_host(h, {"op": "cancel", "id": msg_id}))
    for host, answer in answers.items():
        if isinstance(answer, dict) and answer.get("cancelled"):
            return host
    raise NoMatch(f"no queued message has id {msg_id!r} (see agent-mesh queue)")


# --- spawn -------------------------------------------------------------------------


def default_agent_command() -> list[str]:
    """AGENT_MESH_AGENT_COMMAND (split on spaces), else `claude`."""
    raw = os.environ.get("AGENT_MESH_AGENT_COMMAND", "").split()
    return raw or list(DEFAULT_AGENT_COMMAND)


def spawn(host: str, argv: list[str], session: str, name: str, role: str, accept: str,
          wait: float = DEFAULT_SPAWN_WAIT) -> dict[str, Any]:
    """Start a window running argv on host, wait until its input is ready; its address."""
    request = {"op": "spawn", "argv": argv or default_agent_command(), "session": session,
               "name": name, "role": role, "accept": accept, "wait": wait}
    return call_host(host, request, timeout=wait + 30)


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
    for option, value in (("@agent-role", role), ("@agent-accept", accept)):
        if value:
            tmux.run("set-option", "-w", "-t", pane_id, option, value)
    tables, _count = local.register_session(tmux, session)
    address = next((a for a, t in tables.items() if t.get("window_id") == window_id), "")
    if not address:
        raise WireError(f"the new window {window_id} did not register (see agent-discover)")
    # Ready means idle for a moment on end: a TUI draws its input box before it reads
    # its terminal, and a task pasted into that gap is lost.
    deadline = time.monotonic() + wait
    reason: str | None = "not checked"
    idle_since = 0.0
    while time.monotonic() < deadline:
        state = pane_state(tmux, pane_id)
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


RPC_OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "deliver_many": handle_deliver_many,
    "reply": handle_reply,
    "queue": handle_queue,
    "cancel": handle_cancel,
    "spawn": handle_spawn,
}
