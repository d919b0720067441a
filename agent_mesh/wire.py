"""The wire format between peers: constants and JSON mapping, no heavy imports.

Shared by the transports (sender side) and `agent-mesh rpc` (peer side).

Protocol 2 (one request per `ssh` invocation of REMOTE_COMMAND, on its stdin):

    <header: one line of JSON, UTF-8, ending in "\n", at most MAX_HEADER bytes>
    <body: exactly header["file"]["size"] raw bytes, only when header["file"] is set>

The header carries `op`, `protocol`, `version` and the op's fields (`deliver`:
`envelope`, `file: {name, size}`; `exchange`: `from`, `slice`; `hello`). The
body is streamed in CHUNK pieces by the sender and into a 0600 `.part` file by
the peer, so neither side holds a file in memory; there is no second round trip
(protocol 1 sent the file over SFTP first). The reply is one JSON object on
stdout; then the peer closes stdout. A protocol-1 peer fails to parse a request
with a body, and either side answers a version mismatch with "install the same
version on both".
"""

from __future__ import annotations

from agent_mesh.errors import MeshError, NotReady, UnknownAgent, UsageError, WireError
from agent_mesh.model import Envelope

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from typing import Any

PROTOCOL = 2
CHUNK = 64 * 1024
MAX_HEADER = 16 * 1024 * 1024  # a 1 MiB slice or a 100 KB body, JSON-escaped, fit easily
# Runs under the peer user's login shell: plain words and single quotes only, so it
# means the same in sh, bash, zsh, fish and csh. Exit 127 means "not installed".
REMOTE_COMMAND = (
    "sh -c 'p=\"$HOME/.local/bin/agent-mesh\"; [ -x \"$p\" ] || p=\"$(command -v agent-mesh)\""
    " || exit 127; exec \"$p\" rpc'"
)


def encode_header(header: dict[str, Any]) -> bytes:
    """The request's first line: header plus protocol and version, newline-terminated."""
    import json

    from agent_mesh import __version__

    return json.dumps({**header, "protocol": PROTOCOL, "version": __version__}).encode() + b"\n"


def envelope_to_json(envelope: Envelope) -> dict[str, Any]:
    return {
        "sender": envelope.sender, "address": envelope.address, "body": envelope.body,
        "timestamp": envelope.timestamp, "force": envelope.force,
        "skip_dismiss": envelope.skip_dismiss, "file_name": envelope.file_name,
        "file_size": envelope.file_size,
    }


def envelope_from_json(data: dict[str, Any]) -> Envelope:
    return Envelope(
        sender=str(data["sender"]), address=str(data["address"]), body=str(data["body"]),
        timestamp=str(data["timestamp"]), force=bool(data.get("force")),
        skip_dismiss=bool(data.get("skip_dismiss")), file_name=data.get("file_name"),
        file_size=data.get("file_size"),
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


def decode_reply(host: str, raw: bytes, status: int) -> dict[str, Any]:
    """The peer's reply (the same for both transports), or the error it stands for.

    status is the remote command's exit status (only needed when raw is empty):
    127 means agent-mesh is not installed there.
    """
    import json

    from agent_mesh import __version__

    if status == 127 and not raw.strip():
        raise WireError(f"{host}: agent-mesh is not installed there (run install.sh on that host)")
    try:
        reply = json.loads(raw)
        assert isinstance(reply, dict)
    except Exception:
        lines = raw.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise WireError(f"{host}: agent-mesh there did not answer (exit {status}: {last})"
                        ) from None
    theirs = str(reply.get("version", "?"))
    if reply.get("protocol") != PROTOCOL or theirs != __version__:
        raise WireError(
            f"{host}: agent-mesh {theirs} there, {__version__} here: "
            "install the same version on both"
        )
    if reply.get("ok"):
        return reply
    raise error_from_reply(host, reply)
