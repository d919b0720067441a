"""notify-pane's core: resolve the address, build the envelope, pick the transport."""

from __future__ import annotations

import os

from agent_mesh.clock import now_iso
from agent_mesh.delivery import log
from agent_mesh.delivery.inbox import SourceFile
from agent_mesh.errors import UsageError
from agent_mesh.mesh.hosts import call_host, transport_for
from agent_mesh.model import Agent, DeliveryResult, Envelope
from agent_mesh.registry import naming, view
from agent_mesh.registry.view import load_agents
from agent_mesh.tmux import Tmux, fields_format, parse_records

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs ~1 ms of every message's start
    from collections.abc import Mapping


def sender_id(tmux: Tmux | None = None, agents: Mapping[str, Agent] | None = None) -> str:
    """Who is sending: AGENT_NAME, else the invoking pane's registry address, else
    `<host>[<session>]` inside tmux, else the host alias. `agents` is the registry
    when the caller has already read it.

    The invoking pane is TMUX_PANE, or under `tmux run-shell` (which sets TMUX but
    not TMUX_PANE) the pane found by invoking_pane().
    """
    name = os.environ.get("AGENT_NAME", "").strip()
    if name:
        return name
    host = naming.self_alias()
    if not os.environ.get("TMUX"):
        return host
    tmux = tmux or Tmux()
    pane = os.environ.get("TMUX_PANE", "") or invoking_pane(tmux)
    if not pane:  # run-shell in an ambiguous session: $TMUX still names the session
        parts = os.environ["TMUX"].split(",")
        pane = f"${parts[2]}" if len(parts) >= 3 and parts[2].isdigit() else ""
    if not pane:
        return host
    try:
        for agent in (load_agents() if agents is None else agents).values():
            if agent.pane_id == pane and agent.host == host:
                return agent.address
    except UsageError:
        pass
    try:
        out = tmux.run("display-message", "-p", "-t", pane, "#{session_name}")
        session = out.stdout.decode("utf-8", "replace").strip()
    except Exception:
        session = ""
    return f"{host}[{session}]" if session else host


_PANE_FIELDS = ("pane_id", "pane_pid", "session_id", "pane_current_path")


def invoking_pane(tmux: Tmux) -> str:
    """The pane that ran us when TMUX_PANE is missing (`tmux run-shell`), or "".

    A run-shell job is a child of the tmux server, not of the pane, and tmux's own
    idea of the current pane there is the session's active pane (measured on tmux
    3.3a), which may be another agent's. So, in order: a pane whose process is one
    of our ancestors (TMUX_PANE scrubbed by a wrapper); else, in the session named
    by $TMUX (the job's session), its only pane, or the only pane whose current
    directory is ours (the job runs in the invoking client's directory). Anything
    ambiguous gives "": a wrong sender would send replies to the wrong agent.
    """
    try:
        out = tmux.run("list-panes", "-a", "-F", fields_format(_PANE_FIELDS), check=False)
        panes = parse_records(out.stdout, _PANE_FIELDS) if out.returncode == 0 else []
    except Exception:
        return ""
    by_pid = {p["pane_pid"]: p["pane_id"] for p in panes}
    pid = os.getppid()
    for _ in range(64):
        if pid <= 1:
            break
        if str(pid) in by_pid:
            return by_pid[str(pid)]
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                pid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    parts = os.environ.get("TMUX", "").split(",")
    session = f"${parts[2]}" if len(parts) >= 3 and parts[2].isdigit() else ""
    mine = [p for p in panes if p["session_id"] == session]
    if len(mine) == 1:
        return mine[0]["pane_id"]
    try:
        here = os.getcwd()
    except OSError:
        return ""
    same_dir = [p for p in mine if p["pane_current_path"] == here]
    return same_dir[0]["pane_id"] if len(same_dir) == 1 else ""


def send(
    address: str,
    body: str,
    *,
    file_path: str | None = None,
    force: bool = False,
    skip_dismiss: bool = False,
    queue: bool = False,
    ttl: float = 0.0,
    re: str = "",
    ask: str = "",
    reply_to: str = "",
) -> DeliveryResult:
    """Deliver body (and optionally a file) to the agent at address.

    queue: hold it on the recipient's host while the pane is busy (outcome "queued");
    re: this is the reply to ask `re` — it may then go to a host alias, whose mailbox
    keeps it for an asker that is not a pane.
    """
    if queue and file_path is not None:
        raise UsageError("--queue does not take --file: send the file when the agent is ready")
    if re:
        from agent_mesh.delivery.mailbox import check_id

        check_id(re)
    file_data = SourceFile(file_path) if file_path is not None else None
    agents = view.load_agents()
    envelope = Envelope(
        sender=sender_id(agents=agents),
        address=address,
        body=body,
        timestamp=now_iso(),
        force=force,
        skip_dismiss=skip_dismiss,
        file_name=os.path.basename(file_path) if file_path else None,
        file_size=file_data.size if file_data is not None else None,
        msg_id=log.new_id(),
        queue=queue,
        ttl=ttl,
        re=re,
        ask=ask,
        reply_to=reply_to,
    )
    if re and address not in agents and _is_host_alias(address):
        reply = call_host(address, {"op": "reply", "envelope": envelope.to_json()})
        result = reply["result"]
        return DeliveryResult(address=address, host=address, target="mailbox", pane_id="",
                              bytes_sent=0, outcome=str(result.get("outcome", "mailbox")),
                              msg_id=envelope.msg_id)
    agent = view.resolve(address, agents)
    transport = transport_for(agent.host, naming.self_alias())
    with log.sending(envelope, agent):  # sent.jsonl: what went where, and how it ended
        return transport.deliver(envelope, agent, file_data)


def _is_host_alias(name: str) -> bool:
    """This host's alias or a peer's (a reply's route when the asker is not a pane)."""
    return name in naming.mesh_aliases()
