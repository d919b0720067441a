"""`agent-mesh rpc`: the fixed entrypoint a peer's SshTransport runs over SSH.

Reads one request on stdin (a JSON header line, then a file's bytes when the
header announces one: see wire.py), answers one JSON reply on stdout, always exit 0
(errors travel in the reply with the same exit codes as a local run). It runs
the very same delivery as a local notify-pane, against this host's own tmux
server and its own registry slice: the sender's view of pane ids may be stale.
No click here: this is on every remote message's path.
"""

from __future__ import annotations

import json
import os
import sys

from agent_mesh import __version__, paths, registry
from agent_mesh.errors import MeshError, UnknownAgent, UsageError
from agent_mesh.wire import CHUNK, MAX_HEADER, PROTOCOL, envelope_from_json

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
        return {"host": registry.self_alias()}
    if op == "deliver":
        return {"result": _deliver(request, stream)}
    if op == "exchange":
        return _exchange(request)
    raise UsageError(f"unknown request {op!r}")


def _deliver(request: dict[str, Any], stream: BinaryIO | None) -> dict[str, Any]:
    from agent_mesh.deliver import deliver_envelope

    envelope = envelope_from_json(request["envelope"])
    upload = request.get("file")
    if not upload:
        agent = registry.resolve(envelope.address, registry.load_agents(paths.local_slice()))
        result = deliver_envelope(envelope, agent)
    else:
        name, size = str(upload["name"]), upload["size"]
        if not isinstance(size, int) or size < 0 or stream is None:
            raise UsageError("bad file size in the request")
        tmp = receive_upload(stream, size)
        placed = False

        def place_file() -> tuple[str, int]:
            nonlocal placed
            shown = place_upload(tmp, envelope.sender, name, size)
            placed = True
            return shown

        try:
            agent = registry.resolve(envelope.address, registry.load_agents(paths.local_slice()))
            result = deliver_envelope(envelope, agent, place_file=place_file)
        finally:
            if not placed:  # refused or failed: the upload must not linger
                _discard_upload(tmp)
    return {
        "address": result.address, "target": result.target, "pane_id": result.pane_id,
        "bytes_sent": result.bytes_sent, "notes": result.notes,
    }


def receive_upload(stream: BinaryIO, size: int) -> str:
    """Stream the request's body into ~/.agent-inbox/.incoming/<random>.part (0600),
    CHUNK bytes at a time; returns its path relative to HOME for place_upload,
    which checks the size. A body cut short leaves a short file, refused there."""
    incoming = os.path.join(paths.inbox_dir(), ".incoming")
    for folder in (paths.inbox_dir(), incoming):
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
    name = f"{os.getpid()}-{os.urandom(10).hex()}.part"
    path = os.path.join(incoming, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        left = size
        while left > 0:
            data = stream.read(min(CHUNK, left))
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            left -= len(data)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return os.path.relpath(path, paths.home())


def _discard_upload(tmp: str) -> None:
    incoming = os.path.realpath(os.path.join(paths.inbox_dir(), ".incoming"))
    source = os.path.realpath(os.path.join(paths.home(), tmp))
    if os.path.dirname(source) == incoming and source.endswith(".part"):
        try:  # noqa: SIM105 - contextlib would cost the hot path an import
            os.unlink(source)
        except FileNotFoundError:
            pass


def place_upload(tmp: str, sender: str, name: str, size: int) -> tuple[str, int]:
    """Move a file the sender streamed (receive_upload) into ~/.agent-inbox/<sender>/<name>.

    The upload's name is checked to be ours (under ~/.agent-inbox/.incoming, no
    `..`), its size must match, and the final rename is atomic.
    """
    from agent_mesh.deliver import safe_component, sender_dir_name

    incoming = os.path.realpath(os.path.join(paths.inbox_dir(), ".incoming"))
    source = os.path.realpath(os.path.join(paths.home(), tmp))
    if os.path.dirname(source) != incoming or not source.endswith(".part"):
        raise UsageError(f"refusing upload path {tmp!r}")
    try:
        actual = os.stat(source).st_size
    except FileNotFoundError:
        raise UsageError("the uploaded file is missing") from None
    if actual != size:
        os.unlink(source)
        raise UsageError(f"upload truncated ({actual} of {size} bytes)")
    folder = sender_dir_name(sender)
    base = safe_component(os.path.basename(name), "file")
    target_dir = os.path.join(paths.inbox_dir(), folder)
    os.makedirs(target_dir, mode=0o700, exist_ok=True)
    os.chmod(target_dir, 0o700)
    os.replace(source, os.path.join(target_dir, base))
    return f"~/.agent-inbox/{folder}/{base}", size


def _exchange(request: dict[str, Any]) -> dict[str, Any]:
    """Store the sender's slice (if sent), answer with ours. Never pushes onward."""
    from agent_mesh import sync

    sender = str(request.get("from", ""))
    text = request.get("slice")
    if text is not None:
        sync.accept_pushed_slice(sender, str(text))
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
        request = json.loads(raw)
        if not isinstance(request, dict):
            raise UsageError("request is not a JSON object")
        reply = {"ok": True, **handle(request, stream)}
    except MeshError as exc:
        reply = {"ok": False, "code": exc.exit_code, "error": str(exc)}
        if isinstance(exc, UnknownAgent):
            reply["address"] = exc.address
    except json.JSONDecodeError as exc:
        reply = {"ok": False, "code": 1, "error": f"bad request: {exc}"}
    except Exception as exc:  # answer, never a traceback on the wire
        reply = {"ok": False, "code": 4, "error": f"peer error: {type(exc).__name__}: {exc}"}
    reply.update(protocol=PROTOCOL, version=__version__, host=registry.self_alias())
    sys.stdout.write(json.dumps(reply))
    sys.stdout.flush()
    # sshd ends the channel only when both stdout and stderr are closed: close
    # both now, so the sender has its answer before our interpreter's teardown.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    return 0
