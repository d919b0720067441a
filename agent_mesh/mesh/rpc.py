"""`agent-mesh rpc`: the fixed entrypoint a peer's transport runs over SSH.

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
from agent_mesh.errors import Cause, UsageError
from agent_mesh.mesh.wire import (
    GREETING,
    MAX_HEADER,
    PROTOCOL,
    dumps,
    error_to_reply,
    loads,
    request_envelope,
)
from agent_mesh.registry import naming, view
from agent_mesh.registry.naming import self_alias

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from agent_mesh.delivery.mailbox import Origin


def handle(request: dict[str, Any], stream: BinaryIO | None = None,
           origin: Origin | None = None) -> dict[str, Any]:
    """Answer one request. `origin` is who sent it (mesh/origin.py); None: the caller
    of this `agent-mesh rpc` process, known from its SSH connection."""
    if request.get("protocol") != PROTOCOL or request.get("version") != __version__:
        raise UsageError(
            f"agent-mesh {request.get('version', '?')} on the sender, {__version__} here: "
            "install the same version on both", cause=Cause.VERSION_MISMATCH,
        )
    return dispatch(request, stream, origin)


def dispatch(request: dict[str, Any], stream: BinaryIO | None = None,
             origin: Origin | None = None) -> dict[str, Any]:
    """Answer one request of this very installation (LocalHost calls this directly)."""
    op = request.get("op")
    if op == "hello":
        return {"host": self_alias()}
    if op == "deliver":
        return {"result": _deliver(request, stream, origin)}
    if op == "exchange":
        return _exchange(request)
    from agent_mesh.mesh.handlers import OPS, REPLY_OPS, handle_spawn

    if isinstance(op, str) and op in REPLY_OPS:  # may carry a reply: who sent it matters
        return REPLY_OPS[op](request, _origin(origin))
    if op == "spawn" and stream is not None and request.get("hold"):
        return handle_spawn(request, _closed(stream))
    if isinstance(op, str) and op in OPS:
        return OPS[op](request)
    raise UsageError(f"unknown request {op!r}")


def _closed(stream: BinaryIO) -> Callable[[], bool]:
    """Has the sender closed its end? A sender that sets `hold` keeps its stdin open
    until our reply, so EOF means it is gone (killed, or its connection dropped)."""
    import select

    fd = stream.fileno()

    def closed() -> bool:
        if not select.select([fd], [], [], 0)[0]:
            return False
        return not os.read(fd, 1)

    return closed


def _origin(origin: Origin | None) -> Origin:
    if origin is not None:
        return origin
    from agent_mesh.mesh.origin import connection_origin

    return connection_origin()


def _deliver(request: dict[str, Any], stream: BinaryIO | None,
             origin: Origin | None) -> dict[str, Any]:
    from agent_mesh.delivery.inbox import discard_upload, receive_upload
    from agent_mesh.delivery.receive import receive

    envelope = request_envelope(request)
    upload = request.get("file")
    file = None
    if upload:
        size = upload.get("size") if isinstance(upload, dict) else None
        if not isinstance(size, int) or size < 0 or stream is None:
            raise UsageError("bad file size in the request")
        file = receive_upload(stream, size)  # the body follows the header: read it first
    try:
        agent = view.resolve(envelope.address, view.load_agents(paths.local_slice()))
        result = receive(envelope, agent, file, _origin(origin) if envelope.re else None)
    finally:
        if file is not None:  # refused or failed: the upload must not linger
            discard_upload(file.tmp)
    return result.to_json()


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


def answer(stream: BinaryIO) -> bytes:
    """Read one request from stream (header line, then any file's bytes); the reply."""
    reply: dict[str, Any]
    try:
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
    return dumps(reply).encode()


def main() -> int:
    """One request on stdin, its reply on stdout (`agent-mesh rpc`, the launcher)."""
    reply = answer(sys.stdin.buffer)
    view = memoryview(reply)
    while view:
        view = view[os.write(1, view):]
    # sshd ends the channel only when both stdout and stderr are closed: close
    # both now, so the sender has its answer before our interpreter's teardown.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    return 0


def launch(argv: list[str]) -> None:
    """What ~/.local/share/agent-mesh/rpc runs: one request, or `--serve SECONDS`."""
    if argv[:1] == ["--serve"] and len(argv) == 2 and argv[1].isdigit():
        serve(int(argv[1]))
    elif argv:
        sys.stderr.write("usage: rpc [--serve SECONDS] < REQUEST\n")
        sys.exit(1)
    else:
        main()
    os._exit(0)  # the reply is flushed; skip interpreter teardown on the hot path


# --- the per-peer server (issue 20) -------------------------------------------------------
# A sender whose control master is up starts `rpc --serve` as a session of that master and
# forwards a Unix socket of its own 0700 control directory to the one this prints: a
# message then needs neither an `ssh` process there nor a Python start here. It serves until
# its session ends (the master exited: stdout, a pipe to sshd, reports an error), after
# SECONDS without a request, or once its launcher is rewritten or removed (setup ran: a
# newer installation answers). Each connection is one request, answered in a forked child
# exactly as `agent-mesh rpc` answers it; the child first sends wire.GREETING, so a sender
# that gets no greeting knows its request never arrived and may send it another way.


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def serve(idle: int) -> None:
    """Listen in this host's private control directory; print the socket's path."""
    import _socket
    import select
    import time

    from agent_mesh.mesh.sshclient import control_dir

    folder = control_dir()
    if folder is None or not 0 < idle <= 86400:
        sys.exit(1)
    _preload()
    path = os.path.join(folder, f".rpc-{os.urandom(6).hex()}.sock")  # hidden: no master
    launcher = _identity(paths.rpc_launcher())
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    umask = os.umask(0o077)  # the socket 0600 from the start (its folder is 0700 anyway)
    try:
        listener.bind(path)
    finally:
        os.umask(umask)  # requests run with the session's own, as `agent-mesh rpc` does
    try:
        listener.listen(64)
        os.write(1, path.encode() + b"\n")
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(1, 0)  # POLLERR / POLLHUP: the session, hence the master, is gone
        last = time.monotonic()
        while True:
            _reap_children()
            left = idle - (time.monotonic() - last)
            if left <= 0:
                return
            events = poller.poll(min(left, 5.0) * 1000)
            if any(fd == 1 for fd, _ in events):
                return
            if not events:
                continue
            fd, _ = listener._accept()  # type: ignore[attr-defined]  # the fd, no socket module
            last = time.monotonic()
            if _identity(paths.rpc_launcher()) != launcher:
                os.close(fd)  # no greeting: the sender asks a fresh process instead
                return
            if os.fork() == 0:
                listener.close()
                try:
                    _serve_one(fd)
                finally:
                    os._exit(0)
            os.close(fd)
    finally:
        listener.close()
        try:  # noqa: SIM105 - contextlib would cost an import
            os.unlink(path)
        except OSError:
            pass


def _preload() -> None:
    """Import, once, what requests use (modules only, no data): every forked child then
    starts with them loaded instead of importing them for each message."""
    from agent_mesh.delivery import inbox, receive  # noqa: F401
    from agent_mesh.mesh import handlers, sync  # noqa: F401
    from agent_mesh.model import Envelope  # noqa: F401


def _serve_one(fd: int) -> None:
    """One connection, in a forked child: greeting, request, reply, close."""
    import _socket

    conn = _socket.socket(fileno=fd)
    conn.sendall(GREETING)
    with os.fdopen(os.dup(fd), "rb") as stream:
        reply = answer(stream)
    conn.sendall(reply)
    conn.shutdown(_socket.SHUT_WR)
    conn.close()


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
