"""What a peer may ask this host for (issue 18), from ~/.agents/config.toml:

    [peers]            # every peer
    peek = false
    [peers.laptop]     # one peer (its mesh-key alias), over the table above
    force = true
    spawn = true

Rights: deliver (messages, files, replies, cancelling its queued messages), sync (slice
exchange), status (status and the queue list), peek, inbox: on by default; force
(typing into a shell or pager, FORCE_SEND) and spawn: off by default. A request over
a login key (no mesh key: the host is only claimed) gets the `[peers]` table alone.
A refused operation is exit 3 with the rule that refused it. Processes of this host
(a local notify-pane, an rpc run without SSH) are not peers: nothing here applies.
"""

from __future__ import annotations

from agent_mesh.config import config_path, table
from agent_mesh.errors import Refused

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULTS = {"deliver": True, "sync": True, "status": True, "peek": True, "inbox": True,
            "force": False, "spawn": False}
# Which right each rpc operation needs (hello needs none: it only says who answers).
OP_RIGHT = {"deliver": "deliver", "deliver_many": "deliver", "reply": "deliver",
            "cancel": "deliver", "exchange": "sync", "status": "status", "queue": "status",
            "peek": "peek", "inbox": "inbox", "spawn": "spawn"}


def _tables() -> dict[str, Any]:
    """config.toml's [peers]: its rights (true/false) and its peers' tables of them."""
    return {name: value for name, value in table("peers").items()
            if isinstance(value, bool) or (isinstance(value, dict) and all(
                isinstance(v, bool) for v in value.values()))}


def right(host: str, name: str) -> tuple[bool, str]:
    """(allowed, the rule that says so) for peer host ('' : not verified)."""
    tables = _tables()
    own = tables.get(host) if host else None
    if isinstance(own, dict) and isinstance(own.get(name), bool):
        return own[name], f"[peers.{host}] {name} = {str(own[name]).lower()}"
    if isinstance(tables.get(name), bool):
        return tables[name], f"[peers] {name} = {str(tables[name]).lower()}"
    default = DEFAULTS[name]
    return default, f"{name} is {'on' if default else 'off'} for peers by default"


def check(op: str, request: dict[str, Any], host: str) -> None:
    """Refused (exit 3, naming the rule) unless peer host may use op as asked."""
    needed = [OP_RIGHT[op]] if op in OP_RIGHT else []
    envelopes = request.get("envelopes") if op == "deliver_many" else [request.get("envelope")]
    if op in ("deliver", "deliver_many") and isinstance(envelopes, list) and any(
            isinstance(env, dict) and env.get("force") for env in envelopes):
        needed.append("force")
    for name in needed:
        allowed, rule = right(host, name)
        if not allowed:
            who = f"peer {host}" if host else "a peer without a mesh key (host not verified)"
            fix = (f"; to allow it, set {name} = true under [peers.{host}] in {config_path()}"
                   if host else "")
            raise Refused(f"{who} may not {name} here: {rule}{fix}")
