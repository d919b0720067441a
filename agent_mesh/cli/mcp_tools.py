"""What each tool of `agent-mesh mcp` does, as plain functions returning text: the
core calls the CLI makes (mesh.send, mesh.delegate, mesh.observe) and the rendering of
their outcome. cli/mcp_server.py wraps them as the SDK's tools (names, arguments,
descriptions, the guard that turns a failure into a tool error); its own module so the
server module holds the protocol side only. No SDK import here.
"""

import os

from agent_mesh.errors import AskTimeout, Outcome, ToolFailure, UsageError, printable

MAX_WAIT = 50.0  # seconds one wait_reply may block: clients cut calls at 60 s by default
ASK_LIFETIME = 600.0  # how long an ask's reply is kept for wait_reply (as `agent-mesh ask`)
CONFIG_TABLE = "mcp"
OVERRIDE_KEY = "override_refusals"

OPEN_ASKS: set[str] = set()  # this session's asks whose reply wait_reply has not returned


def override_refusals() -> bool:
    """The user's opt-in: `[mcp] override_refusals = true` in ~/.agents/config.toml lets
    agents' sends override a refusal as FORCE_SEND=1 does (never a question on screen,
    a dead pane or a tmux mode). Read at every send, so an edit takes effect at once."""
    from agent_mesh.config import config_path, table

    value = table(CONFIG_TABLE).get(OVERRIDE_KEY, False)
    if not isinstance(value, bool):
        raise UsageError(f"{config_path()}: {CONFIG_TABLE}.{OVERRIDE_KEY} must be true or false, "
                         f"not {value!r}")
    return value


def replies_waiting() -> str:
    """A note per ask of this session whose reply has come and waits for wait_reply: an
    agent that went on with other work hears of it with its next call."""
    from agent_mesh.delivery.mailbox import has_reply

    try:
        ready = [i for i in sorted(OPEN_ASKS) if has_reply(i)]
    except Exception:
        return ""
    return "".join(f'\nnote: the reply to ask {i} has come: wait_reply(id="{i}") returns it'
                   for i in ready)


def whoami_text() -> str:
    from agent_mesh.mesh.send import sender_id
    from agent_mesh.registry import naming, view, whoami

    host = naming.self_alias()
    here = whoami.invoking_pane()
    forced = " Sends override refusals (the user's [mcp] opt-in)." if override_refusals() else ""
    if here is None:
        return (f"not in tmux (no pane found for this process): you send as the host "
                f"{host}; replies to your asks are kept for wait_reply, and nobody can "
                f"type a message to you.{forced}")
    agents = view.load_agents()
    me = sender_id(agents)
    agent = whoami.own_agent(agents, here)
    if agent is None:
        return (f"{me}: tmux pane {here[1]} on {host}, not registered (a scratch session?): "
                f"you can send, but others cannot address you; replies to your asks are "
                f"kept for wait_reply.{forced}")
    role = f", role {agent.role}" if agent.role else ""
    return (f"{me}: tmux pane {here[1]} ({agent.target}) on {host}{role}. Messages to you "
            f"arrive in this pane tagged [from <sender> @ <time>].{forced}")


# --- the tools' bodies (plain functions: tests call them through the SDK) -------------


def list_text(pattern: str) -> str:
    from agent_mesh.cli.observe_cmds import render_status
    from agent_mesh.mesh import observe

    rows, hosts = observe.mesh_status([pattern] if pattern else [])
    if not rows and all(h["ok"] for h in hosts):
        return f"no agent matches {pattern}" if pattern else "no agents registered yet"
    return render_status(rows, hosts, color=False)


def send_text(to: str, text: str, file: str, queue: bool, ttl: str) -> str:
    from agent_mesh.registry.select import is_pattern

    if not to:
        raise UsageError("`to` needs an address or a pattern (see list_agents)")
    if not text and not file:
        raise UsageError("nothing to send: give text, a file, or both")
    seconds = 0.0
    if ttl:
        from agent_mesh.mesh.delegate import parse_duration

        seconds, queue = parse_duration(ttl), True
    force = override_refusals()
    if is_pattern(to):
        return _broadcast(to, text, file, queue, seconds, force)
    from agent_mesh.mesh.send import send

    path = os.path.abspath(os.path.expanduser(file)) if file else None
    result = send(to, text, file_path=path, force=force, queue=queue, ttl=seconds)
    where = f"{result.address} ({result.host}[{result.target}])"
    notes = "".join(f"\nnote: {n}" for n in result.notes)
    if result.outcome == Outcome.QUEUED:
        return (f"queued for {where} as message {result.msg_id}: its host types it in as "
                f"soon as the agent is ready (see the queue tool){notes}")
    what = f"file {os.path.basename(path)} and message" if path else "message"
    return f"delivered {what} {result.msg_id} to {where}{notes}"


def _broadcast(pattern: str, text: str, file: str, queue: bool, ttl: float,
               force: bool) -> str:
    """One line per recipient; a tool error when none got it (as notify-pane's)."""
    if file:
        raise UsageError("a file goes to one agent, not to a pattern")
    from agent_mesh import clock
    from agent_mesh.delivery import log
    from agent_mesh.mesh import delegate
    from agent_mesh.mesh.send import sender_id
    from agent_mesh.model import Envelope

    envelope = Envelope(sender=sender_id(), address=pattern, body=text,
                        timestamp=clock.now_iso(), force=force, msg_id=log.new_id(),
                        queue=queue, ttl=ttl, fanout=pattern)
    rows = delegate.broadcast([pattern], envelope)
    lines = [f"{r.address}: {r.outcome}" + (f": {r.line}" if r.code else "") for r in rows]
    got = sum(r.code in (0, 5) for r in rows)
    lines.append(f"{pattern}: {got} of {len(rows)} got message {envelope.msg_id}")
    if not got:
        raise ToolFailure(printable("\n".join(lines), lines=True))
    return "\n".join(lines)


def ask_text(to: str, text: str) -> str:
    from agent_mesh.mesh import delegate

    if not text:
        raise UsageError("ask needs the question's text")
    asked = delegate.start_ask(to, text, ASK_LIFETIME)
    OPEN_ASKS.add(asked["id"])
    how = ("delivered" if asked["outcome"] == "delivered"
           else "queued: typed in as soon as the agent is ready")
    return (f"{asked['id']}\nasked {asked['to']} (question {how}); call "
            f"wait_reply(id=\"{asked['id']}\") for the answer. The reply is kept for "
            f"wait_reply for {ASK_LIFETIME / 60:g} min.")


def wait_text(ask_id: str, timeout: float) -> str:
    from agent_mesh.mesh import delegate

    timeout = min(max(float(timeout), 0.0), MAX_WAIT)
    try:
        got = delegate.wait_reply(ask_id, timeout)
    except AskTimeout:
        OPEN_ASKS.discard(ask_id)
        raise
    if got is not None:
        OPEN_ASKS.discard(ask_id)
    if got is None:
        return (f"no reply yet to {ask_id} after {timeout:g} s; the ask stays open: call "
                f"wait_reply again")
    return f"reply from {got['from'] or got['to']} to {ask_id}:\n{got['reply']}"


def reply_text(ask_id: str, text: str) -> str:
    """The asker is found in this pane's received log: the question's own record."""
    from agent_mesh.delivery import log
    from agent_mesh.delivery.mailbox import check_id
    from agent_mesh.mesh.delegate import reply_origin
    from agent_mesh.mesh.handlers import own_agents
    from agent_mesh.mesh.send import send
    from agent_mesh.registry import view, whoami

    check_id(ask_id)
    if not text:
        raise UsageError("reply needs the answer's text")
    me = whoami.own_address(view.load_agents())
    asker = ""
    for address in [me] if me else list(own_agents()):
        for record in reversed(log.read(log.received_path(address), 1000)):
            if record.get("ask") == ask_id and record.get("reply_to"):
                asker = str(record["reply_to"])
                break
        if asker:
            break
    if not asker:
        where = f"to {me}" if me else "to an agent of this host"
        raise UsageError(f"no question with id {ask_id} was delivered {where} (check the id "
                         "in the question's tag: `--re ID`)")
    result = send(asker, text, re=ask_id, origin=reply_origin())
    if result.outcome == Outcome.MAILBOX:
        return f"reply to {ask_id} kept for {asker}, who is waiting for it"
    return f"reply to {ask_id} delivered to {result.address} ({result.host}[{result.target}])"


def peek_text(address: str, lines: int) -> str:
    from agent_mesh.mesh import observe

    text = observe.peek(address, max(1, min(int(lines), 2000)), False)
    return text or f"{address}: its pane is empty"


def inbox_text(address: str) -> str:
    from agent_mesh.cli.observe_cmds import render_records
    from agent_mesh.mesh import observe
    from agent_mesh.registry import view, whoami

    address = address or whoami.own_address(view.load_agents())
    records = observe.inbox(address, 50) if address else observe.local_inbox_all(50)
    if not records:
        return f"nothing received by {address or 'the agents of this host'} yet"
    return render_records(records, sent=False)


def queue_text() -> str:
    import time

    from agent_mesh.cli.delegate_cmds import _queue_rows
    from agent_mesh.cli.group import table
    from agent_mesh.mesh import delegate

    rows, failed = delegate.queue_list()
    out = [table(_queue_rows(rows, time.time()))] if rows else ["no queued messages"]
    out += [f"{host}: unreachable: {exc}" for host, exc in failed.items()]
    return "\n".join(out)
