"""`agent-mesh mcp`: the mesh as MCP tools, a stdio server on the official Python SDK.

An agent CLI (Claude Code, Codex, Gemini CLI, opencode) starts this inside its own tmux
pane and calls typed tools instead of composing `notify-pane` command lines. This is a
front end like notify-pane: every tool calls the core functions the CLI calls
(mesh.send, mesh.delegate, mesh.observe) and renders their outcome as plain text.

- Identity: the sender is the pane this process runs in, found as notify-pane finds
  it (registry/whoami.py), never a name the client passes; AGENT_NAME is ignored, so
  a reply routes back. A client that scrubs the environment (Codex drops $TMUX) is
  read through: $TMUX and $TMUX_PANE come from the nearest ancestor that has them.
  Outside tmux the host alias sends, and `whoami` says so.
- Same rules as the CLI: no tool can force a send (FORCE_SEND in this process's
  environment is ignored). A user lets agents override refusals, as FORCE_SEND=1
  would, with `override_refusals = true` under `[mcp]` in ~/.agents/config.toml.
  A refusal or any other failure is a tool error carrying errors.report's one line.
- Output: every string a tool returns is errors.printable (line breaks kept): what a
  peer sent or shows is never echoed raw.
- Bounded calls: `wait_reply` waits at most MAX_WAIT seconds (under the 60 s a client
  commonly allows a call); `ask` returns at once.

The SDK (~0.3-0.6 s of imports) is imported only here, and this module only by
`agent-mesh mcp`: never on the hook or delivery paths. While it loads, cli/mcp_stdio.py
answers the handshake from the SDK's own earlier answers, so a client lists the tools
in a few tens of milliseconds. No `from __future__ import
annotations` here: the SDK reads the tools' annotations, which name local objects.
"""

import os
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

from agent_mesh import __version__
from agent_mesh.errors import (
    AskTimeout,
    MeshError,
    NotReady,
    Outcome,
    UsageError,
    printable,
    report,
)

MAX_WAIT = 50.0  # seconds one wait_reply may block: clients cut calls at 60 s by default
DEFAULT_WAIT = 30.0
ASK_LIFETIME = 600.0  # how long an ask's reply is kept for wait_reply (as `agent-mesh ask`)
CONFIG_TABLE = "mcp"
OVERRIDE_KEY = "override_refusals"
NAME = "agent-mesh"

INSTRUCTIONS = """\
agent-mesh connects the CLI agents running in tmux panes, on this host and on mesh
peers over SSH. Call whoami to learn your own address, list_agents to see who is
there and what each is doing, send to type a message into another agent's pane
(it arrives tagged [from <your address> @ <time>]), ask + wait_reply for a question
whose answer you need, and reply to answer a question you were asked (its id is in
the question's tag: `reply: notify-pane <asker> --re <id>`). A refusal (the agent is
busy typing, shows a dialog, or is a shell) is an error with the reason: retry with
queue=true, or later. Never paste secrets: a message is typed into a terminal."""

_lock = threading.Lock()  # one core call at a time (the core's caches are per process)
_open_asks: set[str] = set()  # this session's asks whose reply wait_reply has not returned


def override_refusals() -> bool:
    """The user's opt-in: `[mcp] override_refusals = true` in ~/.agents/config.toml lets
    agents' sends override a refusal as FORCE_SEND=1 does (never a question on screen,
    a dead pane or a tmux mode). Read at every send, so an edit takes effect at once."""
    import tomllib

    from agent_mesh.limits import config_path

    path = config_path()
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh).get(CONFIG_TABLE, {})
    except FileNotFoundError:
        return False
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    value = table.get(OVERRIDE_KEY, False) if isinstance(table, dict) else False
    if not isinstance(value, bool):
        raise UsageError(f"{path}: {CONFIG_TABLE}.{OVERRIDE_KEY} must be true or false, "
                         f"not {value!r}")
    return value


def error_line(exc: BaseException, to: str = "") -> str:
    """errors.report's one line, with the hints that fit a tool: FORCE_SEND=1 is not
    available to an agent, queue=true and the user's opt-in are."""
    if isinstance(exc, NotReady):
        where = f" to '{exc.address or to}'" if exc.address or to else ""
        hint = ""
        if exc.overridable:
            hint = (f" (send with queue=true to have it typed in when the agent is ready; "
                    f"agents cannot force a send unless the user sets {OVERRIDE_KEY} = true "
                    f"under [{CONFIG_TABLE}] in ~/.agents/config.toml)")
        return printable(f"refusing to deliver{where}: {exc}{hint}")
    return report(exc)[0]


class ToolFailure(Exception):
    """A tool's failure as the one line the client shows (the SDK's ToolError is made
    from it at the edge, so this module's helpers need no SDK import)."""


def _guarded(func: Callable[[], str], to: str = "", lock: bool = True) -> str:
    """Run a tool body: its text made printable; any failure one line (ToolFailure)."""
    try:
        if lock:
            with _lock:
                text = func()
        else:
            text = func()
    except ToolFailure:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        raise ToolFailure(error_line(exc, to)) from None
    if lock:  # not wait_reply's own answer
        text += _replies_waiting()
    return printable(text, lines=True)


def _replies_waiting() -> str:
    """A note per ask of this session whose reply has come and waits for wait_reply: an
    agent that went on with other work hears of it with its next call."""
    from agent_mesh.delivery.mailbox import has_reply

    try:
        ready = [i for i in sorted(_open_asks) if has_reply(i)]
    except Exception:
        return ""
    return "".join(f'\nnote: the reply to ask {i} has come: wait_reply(id="{i}") returns it'
                   for i in ready)


# --- identity ------------------------------------------------------------------------


def settle_environment() -> None:
    """Identity and policy from the pane, not from the client or its environment:
    $TMUX/$TMUX_PANE (and the SSH agent, agent-mesh's settings) read through a
    scrubbing client from the nearest ancestor in tmux; AGENT_NAME, FORCE_SEND and
    SKIP_DISMISS dropped (a tool's sender is its pane; forcing is the user's opt-in)."""
    for name in ("AGENT_NAME", "FORCE_SEND", "SKIP_DISMISS"):
        os.environ.pop(name, None)
    if not os.environ.get("TMUX"):  # a scrubbing client: read them where it ran
        from agent_mesh.ops.mcp_clients import PASS_ENV
        from agent_mesh.registry.whoami import ancestors_tmux_env

        found = ancestors_tmux_env(tuple(PASS_ENV))
        os.environ.update({k: v for k, v in found.items() if k not in os.environ})


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
    _open_asks.add(asked["id"])
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
        _open_asks.discard(ask_id)
        raise
    if got is not None:
        _open_asks.discard(ask_id)
    if got is None:
        return (f"no reply yet to {ask_id} after {timeout:g} s; the ask stays open: call "
                f"wait_reply again")
    return f"reply from {got['from'] or got['to']} to {ask_id}:\n{got['reply']}"


def reply_text(ask_id: str, text: str) -> str:
    """The asker is found in this pane's received log: the question's own record."""
    from agent_mesh.delivery import log
    from agent_mesh.delivery.mailbox import check_id
    from agent_mesh.mesh.delegate import reply_origin
    from agent_mesh.mesh.observe import own_agents
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


# --- the server ----------------------------------------------------------------------

TOOL_DOCS = {
    "whoami": "Your own address in the mesh (the tmux pane this server runs in), which is "
              "the sender of everything you send; says so when you are not in tmux.",
    "list_agents": "The agents of the mesh, one row each: address, host, state (idle, "
                   "working, drafting, waiting, shell, running, dead, gone, unreachable), "
                   "since when, program, role, detail. Use it to find whom to send to.",
    "send": "Type a message into another agent's tmux pane and submit it; it arrives tagged "
            "[from <your address> @ <time>]. Use for news and requests that need no answer "
            "(ask for one that does). Refused when the agent is not ready (mid-prompt, a "
            "dialog, a shell): the error says why; queue=true has its host deliver it as "
            "soon as the agent is ready instead.",
    "ask": "Send a question that asks for a reply, and return its id at once (the message "
           "tells the agent how to reply). Then call wait_reply(id) to get the answer.",
    "wait_reply": "Wait up to `timeout` seconds (at most 50) for the reply to a question "
                  "sent with ask. Returns the reply, or says none came yet: then call it "
                  "again. Errors once the ask has ended.",
    "reply": "Answer a question another agent asked you: its tag reads `reply: notify-pane "
             "<asker> --re <id>`; pass that id and your answer. The answer goes to the "
             "asker, wherever it is.",
    "peek": "The last lines of an agent's screen (read-only, control sequences removed): "
            "see what it is doing or what it answered.",
    "inbox": "What an agent received: each message and file with its id, sender, time and "
             "outcome (delivered, refused and why). Default: your own.",
    "queue": "Messages waiting for a busy agent, on every host of the mesh (each is typed "
             "in by its host as soon as the agent is ready).",
}


def build_server() -> Any:
    """The MCPServer with the nine tools (names and arguments are a stable interface)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import Field

    server = MCPServer(NAME, version=__version__, instructions=INSTRUCTIONS,
                       log_level="WARNING")

    def tool(func: Callable[..., str]) -> Callable[..., str]:
        def run(*args: Any, **kwargs: Any) -> str:
            try:
                return func(*args, **kwargs)
            except ToolFailure as exc:
                raise ToolError(str(exc)) from None

        import functools

        wrapped = functools.wraps(func)(run)
        server.add_tool(wrapped, name=func.__name__, description=TOOL_DOCS[func.__name__],
                        structured_output=False)
        return func

    Address = Annotated[str, Field(description="An agent's address, as list_agents shows it")]

    @tool
    def whoami() -> str:
        return _guarded(whoami_text)

    @tool
    def list_agents(
        pattern: Annotated[str, Field(description="Only agents matching it: an address glob "
                                      "(worker-*), role:GLOB or host:GLOB; empty for all")] = "",
    ) -> str:
        return _guarded(lambda: list_text(pattern))

    @tool
    def send(
        to: Annotated[str, Field(description="The recipient's address, or a pattern "
                                 "(worker-*, role:GLOB, host:GLOB, --all) for every match "
                                 "but you")],
        text: Annotated[str, Field(description="The message, typed in verbatim")] = "",
        file: Annotated[str, Field(description="Optional path of a file to copy into the "
                                   "recipient's ~/.agent-inbox first (one recipient only)")] = "",
        queue: Annotated[bool, Field(description="If the agent is busy, have its host type "
                                     "the message in as soon as it is ready")] = False,
        ttl: Annotated[str, Field(description="With queue: drop it after this long "
                                  "(90s, 10m, 2h; default 1h)")] = "",
    ) -> str:
        return _guarded(lambda: send_text(to, text, file, queue, ttl), to=to)

    @tool
    def ask(
        to: Address,
        text: Annotated[str, Field(description="The question")],
    ) -> str:
        return _guarded(lambda: ask_text(to, text), to=to)

    @tool
    def wait_reply(
        id: Annotated[str, Field(description="The id ask returned")],
        timeout: Annotated[float, Field(description="Seconds to wait, at most 50")] = DEFAULT_WAIT,
    ) -> str:
        return _guarded(lambda: wait_text(id, timeout), lock=False)

    @tool
    def reply(
        id: Annotated[str, Field(description="The question's id, from its tag (--re ID)")],
        text: Annotated[str, Field(description="Your answer")],
    ) -> str:
        return _guarded(lambda: reply_text(id, text))

    @tool
    def peek(
        address: Address,
        lines: Annotated[int, Field(description="How many lines, from the bottom")] = 40,
    ) -> str:
        return _guarded(lambda: peek_text(address, lines))

    @tool
    def inbox(
        address: Annotated[str, Field(description="Whose inbox; empty for your own")] = "",
    ) -> str:
        return _guarded(lambda: inbox_text(address))

    @tool
    def queue() -> str:
        return _guarded(queue_text)

    return server


HELP = """\
usage: agent-mesh mcp
       agent-mesh mcp register|unregister|status [claude|codex|gemini …]

Serve the mesh as MCP tools over stdio (whoami, list_agents, send, ask, wait_reply,
reply, peek, inbox, queue) for an agent CLI that runs it inside its tmux pane.
`agent-mesh mcp register` adds it to the user-level config of every installed agent
CLI (Claude Code, Codex, Gemini CLI); `unregister` removes only that entry. By hand,
for any MCP client: command `agent-mesh`, argument `mcp`. See README, "Agents as MCP
clients".
"""


def main(argv: list[str]) -> int:
    if argv[:1] and argv[0] in ("register", "unregister", "status"):
        from agent_mesh.cli import mcp_setup_cmd

        return mcp_setup_cmd.main(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(HELP, end="")
        return 0
    if argv:
        print(f"agent-mesh mcp: unexpected argument {printable(argv[0])!r} (see --help)",
              file=sys.stderr)
        return 1
    if sys.stdin.isatty():
        print("agent-mesh mcp: an MCP server speaks JSON-RPC on stdin; an agent CLI starts "
              "it (see agent-mesh mcp register)", file=sys.stderr)
        return 1
    settle_environment()
    from agent_mesh.cli import mcp_stdio

    try:
        mcp_stdio.serve(build_server, __file__)
    except ImportError as exc:
        print(f"agent-mesh mcp: the MCP SDK is missing ({exc}); install it: "
              "pip install 'mcp>=2.3,<3'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except MeshError as exc:
        print(f"agent-mesh mcp: {report(exc)[0]}", file=sys.stderr)
        return exc.exit_code
    return 0
