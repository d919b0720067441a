"""The wire format between peers: constants and JSON mapping, no heavy imports.

Shared by the SSH transport (sender side) and `agent-mesh rpc` (peer side).
"""

from __future__ import annotations

from agent_mesh.errors import MeshError, NotReady, UnknownAgent, UsageError, WireError
from agent_mesh.model import Envelope

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from typing import Any

PROTOCOL = 1
# Runs under the peer user's login shell: plain words and single quotes only, so it
# means the same in sh, bash, zsh, fish and csh. Exit 127 means "not installed".
REMOTE_COMMAND = (
    "sh -c 'p=\"$HOME/.local/bin/agent-mesh\"; [ -x \"$p\" ] || p=\"$(command -v agent-mesh)\""
    " || exit 127; exec \"$p\" rpc'"
)


def envelope_to_json(envelope: Envelope) -> dict[str, Any]:
    return {
        "sender": envelope.sender, "address": envelope.address, "body": envelope.body,
        "timestamp": envelope.timestamp, "force": envelope.force,
        "skip_dismiss": envelope.skip_dismiss, "file_name": envelope.file_name,
        "file_size": envelope.file_size, "id": envelope.id,
    }


def envelope_from_json(data: dict[str, Any]) -> Envelope:
    return Envelope(
        sender=str(data["sender"]), address=str(data["address"]), body=str(data["body"]),
        timestamp=str(data["timestamp"]), force=bool(data.get("force")),
        skip_dismiss=bool(data.get("skip_dismiss")), file_name=data.get("file_name"),
        file_size=data.get("file_size"), id=str(data.get("id") or ""),
    )


_CODES: dict[int, type[MeshError]] = {1: UsageError, 3: NotReady, 4: WireError}


def error_from_reply(host: str, reply: dict[str, Any]) -> MeshError:
    code = int(reply.get("code", 4))
    message = str(reply.get("error", "unknown error"))
    if code == 2:
        err = UnknownAgent(str(reply.get("address", "?")))
        err.args = (f"{message} (on {host})",)
        return err
    if code == 3:
        return NotReady(message)
    return _CODES.get(code, WireError)(f"{host}: {message}")
