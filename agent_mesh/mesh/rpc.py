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
from agent_mesh.fsutil import atomic_write, unlink_quietly
from agent_mesh.mesh.wire import (
    GREETING,
    MAX_HEADER,
    PROTOCOL,
    REMOTE_COMMAND,
    dumps,
    error_to_reply,
    loads,
    request_envelope,
    valid_slot,
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
    verified, remote = _caller(origin)
    if op == "hello":  # who answers, and whom it takes the caller for (doctor)
        return {"host": self_alias(), "caller": verified if remote else "",
                "mesh_key": bool(remote and verified)}
    if remote:  # a peer: what it claims must be what its key says, and it needs the right
        from agent_mesh.mesh import rights

        if verified:
            _check_claims(request, verified)
        rights.check(str(op), request, verified)
    if op == "deliver":
        return {"result": _deliver(request, stream, origin, verified)}
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


# Set by launch(): the host whose mesh key sshd matched (`rpc --peer HOST`, the forced
# command of `trust add`), or '' for a login key or a process of this host.
PEER = ""


def _origin(origin: Origin | None) -> Origin:
    if origin is not None:
        return origin
    from agent_mesh.mesh.origin import connection_origin

    return connection_origin(PEER)


def _caller(origin: Origin | None) -> tuple[str, bool]:
    """(the calling host as verified here or '', whether it is another host), without
    mesh/origin.py's imports for a plain request."""
    if origin is not None:
        return origin.verified_host(), origin.remote()
    if PEER:
        return PEER, True
    if "SSH_CONNECTION" in os.environ:
        return "", True  # a login key: any host holding it could be calling
    return self_alias(), False


def _check_claims(request: dict[str, Any], peer: str) -> None:
    """A request that came with peer's mesh key must not speak for another host: its
    sending host, an exchange's `from`, or a sender that names another host's agent
    (or that host) are refused (exit 4, a forgery is no delivery problem)."""
    from agent_mesh.errors import WireError

    claims = [("sending host", request.get("sender_host")), ("exchange from",
                                                          request.get("from"))]
    envelopes = request.get("envelopes") if request.get("op") == "deliver_many" else [
        request.get("envelope")]
    senders = [str(env.get("sender")) for env in envelopes or [] if isinstance(env, dict)]
    if senders:
        hosts = {self_alias(), *naming.mesh_aliases(strict=False)}
        for sender in senders:
            claims.append(("sender", _claimed_host(sender, peer, hosts)))
    for what, claimed in claims:
        if claimed and claimed != peer:
            raise WireError(f"refused: the request's {what} claims host {claimed}, but it came "
                            f"with {peer}'s mesh key (a peer speaks only for itself)")


def _claimed_host(sender: str, peer: str, hosts: set[str]) -> str:
    """The host a sender's name speaks for: `HOST`, `HOST[session]`, or an address under
    HOST (the longest alias it starts with: `peer-2-main` is peer-2's) or another host's
    registered agent; '' for a free name (AGENT_NAME) that names no host."""
    name = sender.split("[", 1)[0] if sender.endswith("]") else sender
    if name in hosts or name == peer:
        return name
    owners = [h for h in hosts | {peer} if sender.startswith(h + "-")]
    if owners:
        return max(owners, key=len)
    agent = view.load_agents().get(sender)  # a registered address without a host prefix
    return str(agent.host) if agent is not None else ""


def _deliver(request: dict[str, Any], stream: BinaryIO | None,
             origin: Origin | None, verified: str) -> dict[str, Any]:
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
        result = receive(envelope, agent, file, _origin(origin) if envelope.re else None,
                         verified=verified)
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
    request: Any = {}
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
    _log_peer(request if isinstance(request, dict) else {}, reply)
    return dumps(reply).encode()


def _log_peer(request: dict[str, Any], reply: dict[str, Any]) -> None:
    """Every operation of another host, with the host as verified here (issue 18):
    ~/.agents/log/peers.jsonl (delivery/log.py's writer: never fails the request)."""
    verified, remote = _caller(None)
    if not remote:
        return
    from agent_mesh.clock import now_iso
    from agent_mesh.delivery import log

    record: dict[str, object] = {
        "time": now_iso(), "op": str(request.get("op")),
        "host": verified, "verified": bool(verified),
        "claimed": str(request.get("sender_host") or ""),
        "outcome": "ok" if reply.get("ok") else f"exit {reply.get('code')}",
    }
    if not verified:
        record["from"] = os.environ.get("SSH_CONNECTION", "").split(" ", 1)[0]
    if not reply.get("ok"):
        record["reason"] = str(reply.get("error", ""))[:300]
    log.append(os.path.join(log.log_dir(), "peers.jsonl"), record)


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
    """What ~/.local/share/agent-mesh/rpc runs: one request, or `--serve SECONDS`;
    `--peer HOST` is a mesh key's forced command (mesh/trust.py): what the client asked
    for is in SSH_ORIGINAL_COMMAND, and only a request is answered."""
    global PEER
    if argv[:1] == ["--peer"] and len(argv) == 2 and naming.valid_alias(argv[1]):
        PEER = argv[1]
        asked = os.environ.get("SSH_ORIGINAL_COMMAND")
        if asked != REMOTE_COMMAND:
            what = "a login shell" if asked is None else "this command"
            sys.stderr.write(f"agent-mesh: refused {what}: this key ({PEER}'s mesh key) runs "
                             "agent-mesh requests only\n")
            sys.exit(1)
        argv = []
    if argv[:1] == ["--serve"] and len(argv) == 3 and argv[1].isdigit() \
            and valid_slot(argv[2]):
        serve(int(argv[1]), argv[2])
    elif argv:
        sys.stderr.write("usage: rpc [--serve SECONDS SLOT | --peer HOST] < REQUEST\n")
        sys.exit(1)
    else:
        main()
    os._exit(0)  # the reply is flushed; skip interpreter teardown on the hot path


# --- the per-peer server (issue 20) -------------------------------------------------------
# A sender whose control master is up starts `rpc --serve` as a session of that master and
# forwards a Unix socket of its own 0700 control directory to the one this prints: a
# message then needs neither an `ssh` process there nor a Python start here. It serves until
# its session ends (the master exited: stdout, a pipe to sshd, reports an error), after
# SECONDS without a request, once its launcher is rewritten or removed (setup ran: a
# newer installation answers), or once a newer server took its SLOT. A slot is one sender's
# master to this host (the sender hashes its host, user and control socket): when a partition
# or a reboot ends a master without this host's sshd noticing, the server it held would
# live on; the next master's server takes the slot and retires it. Each connection is one
# request, answered in a forked child exactly as `agent-mesh rpc` answers it; the child first
# sends wire.GREETING, so a sender that gets no greeting knows its request never arrived and
# may send it another way.


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def serve(idle: int, slot: str) -> None:
    """Listen in this host's private control directory; print the socket's path."""
    import _socket
    import gc
    import select
    import time

    from agent_mesh.mesh.sshclient import control_dir

    folder = control_dir()
    if folder is None or not 0 < idle <= 86400:
        sys.exit(1)
    gc.enable()  # the launcher turned it off for one request; this process lives on
    _preload()
    path = os.path.join(folder, f".rpc-{slot}.sock")  # hidden: no master
    pidfile = os.path.join(folder, f".rpc-{slot}.pid")
    _retire(pidfile, slot)
    launcher = _identity(paths.rpc_launcher())
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    unlink_quietly(path)
    umask = os.umask(0o077)  # the socket 0600 from the start (its folder is 0700 anyway)
    try:
        listener.bind(path)
    finally:
        os.umask(umask)  # requests run with the session's own, as `agent-mesh rpc` does
    mine = _inode(path)
    try:
        atomic_write(pidfile, str(os.getpid()).encode(), 0o600)
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
            events = poller.poll(min(left, 2.0) * 1000)
            if any(fd == 1 for fd, _ in events):
                return
            if not events:
                if _inode(path) != mine:
                    return  # a newer server took the slot (and was to signal us)
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
        if _inode(path) == mine:  # never a newer server's socket
            unlink_quietly(path)
            unlink_quietly(pidfile)


def _inode(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _retire(pidfile: str, slot: str) -> None:
    """Stop the server that held slot before (its master is gone, or it would have
    greeted the sender, who then would not have started us)."""
    import signal

    from agent_mesh.procs import read_argv

    try:
        with open(pidfile, "rb") as fh:
            pid = int(fh.read(20))
    except (OSError, ValueError):
        return
    argv = read_argv(pid) if pid > 1 and pid != os.getpid() else ()
    if "--serve" in argv and argv[-1:] == (slot,):
        try:  # noqa: SIM105 - contextlib would cost an import
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def _preload() -> None:
    """Import, once, what requests use (modules only, no data): every forked child then
    starts with them loaded instead of importing them for each message."""
    import _json  # noqa: F401 - every request's header and reply (mesh/wire.py)
    import tomllib  # noqa: F401 - the peer rights in config.toml

    from agent_mesh.delivery import allow, inbox, observe, receive, turns  # noqa: F401
    from agent_mesh.mesh import handlers, rights, sync  # noqa: F401
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
