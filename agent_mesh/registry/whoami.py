"""Which pane am I: the one answer behind the sender id, an ask's reply address, the
sender a broadcast skips, and `agent-mesh inbox` without an address.

A pane is its tmux server's socket plus its pane id: pane ids are numbered per server,
so `%0` of `tmux -L work` is not the default server's `%0`. Inside tmux, $TMUX holds
`socket_path,server_pid,session_id` and $TMUX_PANE the pane id.

A `tmux run-shell` job (and a hook, an `if-shell`) is a child of the server: $TMUX names
its target's session but there is no $TMUX_PANE, and nothing in the job says which
pane ran it (tmux's own current pane there is the session's active pane, measured on
tmux 3.3a). So the pane is known only when it is certain: a pane whose process is one
of our ancestors ($TMUX_PANE scrubbed by a wrapper), or the only pane of that session.
Otherwise it is unknown, never guessed (from the current directory, say): a wrong
sender has replies typed into another agent. `TMUX_PANE=#{pane_id}` in the run-shell
command (tmux expands it to the job's target pane) names it exactly.
"""

from __future__ import annotations

import os

from agent_mesh.model import Agent
from agent_mesh.procs import parent
from agent_mesh.registry.naming import self_alias, server_part
from agent_mesh.tmux import Tmux, fields_format, parse_records

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs ~1 ms of every message's start
    from collections.abc import Mapping

_PANE_FIELDS = ("pane_id", "pane_pid", "session_id")


def invoking_pane() -> tuple[str, str] | None:
    """(tmux socket path, pane id) of the pane this process runs in, or None: outside
    tmux, or a run-shell job whose pane cannot be known for certain."""
    parts = os.environ.get("TMUX", "").split(",")
    socket = parts[0]
    if not socket:
        return None
    pane = os.environ.get("TMUX_PANE", "")
    if pane.startswith("%") and pane[1:].isdigit():
        return socket, pane
    session = f"${parts[2]}" if len(parts) >= 3 and parts[2].isdigit() else ""
    found = _pane_without_tmux_pane(Tmux(socket_path=socket), session)
    return (socket, found) if found else None


def ancestors_tmux_env(names: tuple[str, ...] = ("TMUX", "TMUX_PANE")) -> dict[str, str]:
    """`names` ($TMUX and $TMUX_PANE by default) as the nearest ancestor process that has
    $TMUX was started with ({} when none has): a program that starts its helpers with a
    scrubbed environment (Codex's MCP servers get neither) still runs in its pane."""
    pid = os.getppid()
    for _ in range(64):
        if pid <= 1:
            break
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(item.partition(b"=")[::2] for item in fh.read().split(b"\0") if item)
            with open(f"/proc/{pid}/stat", "rb") as fh:
                parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if env.get(b"TMUX"):
            return {k: env[k.encode()].decode("utf-8", "surrogateescape") for k in names
                    if env.get(k.encode())}
        pid = parent
    return {}


def _pane_without_tmux_pane(tmux: Tmux, session: str) -> str:
    """The pane whose process is our ancestor; else the session's only pane; else ""."""
    try:
        out = tmux.run("list-panes", "-a", "-F", fields_format(_PANE_FIELDS), check=False)
        panes = parse_records(out.stdout, _PANE_FIELDS) if out.returncode == 0 else []
    except Exception:  # no server, a broken tmux: unknown, not a failure
        return ""
    by_pid = {p["pane_pid"]: p["pane_id"] for p in panes}
    pid = os.getppid()
    for _ in range(64):
        if pid <= 1:
            break
        if str(pid) in by_pid:
            return by_pid[str(pid)]
        pid = parent(pid)
    mine = {p["pane_id"] for p in panes if session and p["session_id"] == session}
    return mine.pop() if len(mine) == 1 else ""


def on_server(entry_socket: str, socket: str) -> bool:
    """Is a registry entry with entry_socket on the server at socket? An entry from
    before sockets were recorded counts as the default server's."""
    if entry_socket:
        return entry_socket == socket or os.path.realpath(entry_socket) == os.path.realpath(socket)
    return not server_part(socket)


def own_agent(agents: Mapping[str, Agent],
              here: tuple[str, str] | None = None) -> Agent | None:
    """This host's registry entry for the invoking pane (or `here`), else None."""
    here = here or invoking_pane()
    if here is None:
        return None
    socket, pane = here
    me = self_alias()
    for agent in agents.values():
        if agent.pane_id == pane and agent.host == me and on_server(agent.socket, socket):
            return agent
    return None


def own_address(agents: Mapping[str, Agent]) -> str:
    """The invoking pane's address; '' outside a registered pane."""
    agent = own_agent(agents)
    return agent.address if agent is not None else ""
