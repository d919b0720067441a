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
- Bounded calls: `wait_reply` waits at most mcp_tools.MAX_WAIT seconds (under the 60 s
  a client commonly allows a call); `ask` returns at once.

What each tool does is in cli/mcp_tools.py; this module is the protocol side: the
tools' names, arguments and descriptions, the guard, the process's identity. The
coordination tools (bulletin, decisions, locks, task boards) are cli/mcp_coord.py's.

The SDK (~0.3-0.6 s of imports) is imported only here, and this module only by
`agent-mesh mcp`: never on the hook or delivery paths. While it loads, cli/mcp_stdio.py
answers the handshake from the SDK's own earlier answers, so a client lists the tools
in a few tens of milliseconds. No `from __future__ import annotations` here: the SDK
reads the tools' annotations, which name local objects.
"""

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from agent_mesh import __version__
from agent_mesh.cli import mcp_coord
from agent_mesh.cli.mcp_tools import (
    CONFIG_TABLE,
    OVERRIDE_KEY,
    ToolFailure,
    ask_text,
    inbox_text,
    list_text,
    peek_text,
    queue_text,
    replies_waiting,
    reply_text,
    send_text,
    wait_text,
    whoami_text,
)
from agent_mesh.errors import MeshError, NotReady, printable, report

DEFAULT_WAIT = 30.0
NAME = "agent-mesh"

INSTRUCTIONS = """\
agent-mesh connects the CLI agents running in tmux panes, on this host and on mesh
peers over SSH. Call whoami to learn your own address, list_agents to see who is
there and what each is doing, send to type a message into another agent's pane
(it arrives tagged [from <your address> @ <time>]), ask + wait_reply for a question
whose answer you need, and reply to answer a question you were asked (its id is in
the question's tag: `reply: notify-pane <asker> --re <id>`). A refusal (the agent is
busy typing, shows a dialog, or is a shell) is an error with the reason: retry with
queue=true, or later. Never paste secrets: a message is typed into a terminal.
To work alongside the others: read bulletin and decisions when you start, post what you
did, take work from the task board (tasks, task_claim, task_done), and lock the paths you
change (lock, unlock; locks shows who holds what)."""

_lock = threading.Lock()  # one core call at a time (the core's caches are per process)


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
        text += replies_waiting()
    return printable(text, lines=True)


def _unlocked_sleep(seconds: float) -> None:
    """A waiting lock tool's pause between tries, inside _guarded: the session's other
    calls run meanwhile."""
    _lock.release()
    try:
        time.sleep(seconds)
    finally:
        _lock.acquire()


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
    **mcp_coord.TOOL_DOCS,
}


def build_server() -> Any:
    """The MCPServer with its tools: the nine messaging tools here, the coordination
    ones of mcp_coord (names and arguments are a stable interface)."""
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

    mcp_coord.add_tools(tool, _guarded, _unlocked_sleep)
    return server


HELP = """\
usage: agent-mesh mcp
       agent-mesh mcp register|unregister|status [claude|codex|gemini …]

Serve the mesh as MCP tools over stdio (whoami, list_agents, send, ask, wait_reply,
reply, peek, inbox, queue; post, bulletin, decide, decisions, lock, unlock, locks,
task_add, task_claim, task_done, task_drop, tasks) for an agent CLI that runs it inside
its tmux pane.
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
        mcp_stdio.serve(build_server, mcp_stdio.tools_signature(
            [__file__, mcp_coord.__file__], TOOL_DOCS))
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
