"""`agent-mesh rpc`: the fixed entrypoint a peer's SshTransport runs over SSH.

Reads one request on stdin (a JSON header line, then a file's bytes when the
header announces one: see wire.py), answers one JSON reply on stdout, always exit 0
(errors travel in the reply with the same exit codes as a local run). It runs
the very same delivery as a local notify-pane, against this host's own tmux
server and its own registry slice: the sender's view of pane ids may be stale.
No click here: this is on every remote message's path.
"""

from __future__ import annotations

import os
import sys

from agent_mesh import __version__, paths
from agent_mesh.errors import UsageError
from agent_mesh.mesh.wire import MAX_HEADER, PROTOCOL, dumps, error_to_reply, loads
from agent_mesh.registry import naming, view
from agent_mesh.registry.naming import self_alias

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from typing import Any, BinaryIO


def handle(request: dict[str, Any], stream: BinaryIO | None = None) -> dict[str, Any]:
    if request.get("protocol") != PROTOCOL or request.get("version") != __version__:
        raise UsageError(
            f"agent-mesh {request.get('version', '?')} on the sender, {__version__} here: "
            "install the same version on both"
        )
    op = request.get("op")
    if op == "hello":
        return {"host": self_alias()}
    if op == "deliver":
        return {"result": _deliver(request, stream)}
    if op == "exchange":
        return _exchange(request)
    from agent_mesh.mesh.handlers import OPS

    if isinstance(op, str) and op in OPS:
        return OPS[op](request)
    raise UsageError(f"unknown request {op!r}")


def _deliver(request: dict[str, Any], stream: BinaryIO | None) -> dict[str, Any]:
    from agent_mesh.delivery.inbox import discard_upload, receive_upload
    from agent_mesh.delivery.receive import receive
    from agent_mesh.model import Envelope

    envelope = Envelope.from_json(request["envelope"])
    upload = request.get("file")
    file = None
    if upload:
        size = upload.get("size") if isinstance(upload, dict) else None
        if not isinstance(size, int) or size < 0 or stream is None:
            raise UsageError("bad file size in the request")
        file = receive_upload(stream, size)  # the body follows the header: read it first
    try:
        agent = view.resolve(envelope.address, view.load_agents(paths.local_slice()))
        result = receive(envelope, agent, file)
    finally:
        if file is not None:  # refused or failed: the upload must not linger
            discard_upload(file.tmp)
    return {
        "address": result.address, "target": result.target, "pane_id": result.pane_id,
        "bytes_sent": result.bytes_sent, "notes": result.notes, "outcome": result.outcome,
        "msg_id": result.msg_id,
    }


def _exchange(request: dict[str, Any]) -> dict[str, Any]:
    """Answer with our slice. A pushed slice is only a hint that the sender
    changed: its text is never stored (any member could claim to be another);
    a detached pull fetches the sender's slice over our own SSH connection."""
    from agent_mesh.mesh import sync

    sender = str(request.get("from", ""))
    pushed = request.get("slice")
    if pushed is not None:
        sync.schedule_pull(sender, str(pushed))
    try:
        with open(paths.local_slice(), encoding="utf-8") as fh:
            ours = fh.read()
    except FileNotFoundError:
        ours = ""
    return {"slice": ours}


def main() -> int:
    reply: dict[str, Any]
    try:
        stream = sys.stdin.buffer
        raw = stream.readline(MAX_HEADER + 1)
        if len(raw) > MAX_HEADER:
            raise UsageError("request header too large")
        try:
            request = loads(raw)
        except ValueError as exc:
            raise UsageError(f"bad request: {exc}") from None
        if not isinstance(request, dict):
            raise UsageError("request is not a JSON object")
        reply = {"ok": True, **handle(request, stream)}
    except Exception as exc:  # answer, never a traceback on the wire
        reply = error_to_reply(exc)
    reply.update(protocol=PROTOCOL, version=__version__, host=naming.self_alias())
    sys.stdout.write(dumps(reply))
    sys.stdout.flush()
    # sshd ends the channel only when both stdout and stderr are closed: close
    # both now, so the sender has its answer before our interpreter's teardown.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    return 0
