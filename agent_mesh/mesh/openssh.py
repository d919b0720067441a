"""OpenSSH transport: the user's own `ssh` client, one invocation per request,
through a control master that stays up between requests.

Why: `import paramiko` alone costs ~150 ms and a fresh SSH handshake ~240 ms,
while a request over an open master costs ~10 ms plus the peer's rpc. OpenSSH
also reads ~/.ssh/config and known_hosts exactly as the user's `ssh` does
(Include, Match, HostKeyAlias, certificates, @revoked, FIDO keys, the agent).

Every request runs REMOTE_COMMAND (`agent-mesh rpc`) with the request on stdin
(a JSON header line, then a file's bytes; wire.py), with BatchMode (never a
prompt), StrictHostKeyChecking=yes (never add a host key), a connect timeout
and keepalives (a partition is noticed within ~3 s), and `ControlMaster=auto`:
the first request to a peer starts a master in the background, which serves
every later `ssh` to that peer through a socket in a 0700 directory
(~/.agents/cm/<alias>-<crc>) until it has been idle ControlPersist seconds (600
by default; AGENT_MESH_CONTROL_PERSIST or `control_persist` in
~/.agents/config.toml, `no` turns reuse off).

While a master's socket exists, requests go through it with ControlMaster=no
and a 1 s ConnectTimeout: if the master cannot serve (ssh then falls back to a
direct connection by itself), the fallback fails or succeeds fast instead of
adding a full connect timeout to a partitioned peer's keepalive timeout. A
master that failed at once is stale (the peer rebooted, the network changed):
it is closed and the request retried once with a fresh one, unnoticed. One
that failed after seconds died of unanswered keepalives: that peer is gone,
and the request fails (exit 4) within ~3 s.

Once a request has reused a master, a detached helper (start_server_main) starts the peer's
rpc server as a session of that master (`ProxyCommand=false`: through the master
or not at all, so it ends with it) and has the master forward
~/.agents/cm/.<socket name>.rpc to the server's socket (mesh/rpc.py serve). A
request then goes through that socket: no `ssh` process, no Python start on the
peer. A request the server did not greet never arrived and goes the usual way;
one it greeted is never sent twice.

No subprocess, no paramiko: the client is started with posix_spawn and its
pipes are driven with poll (mesh/sshclient.py), so a 100 MB file streams in 64 KB pieces.
"""

from __future__ import annotations

import os

from agent_mesh.errors import UsageError, WireError
from agent_mesh.fsutil import unlink_quietly
from agent_mesh.mesh.sshclient import (
    CONNECT_TIMEOUT,
    MAX_REPLY,
    UNREACHABLE,
    SshRun,
    control_dir,
    control_persist,
    listening,
    persist_seconds,
    reap,
    run_ssh,
    socket_name,
    ssh_client,
    ssh_failure,
    ssh_options,
)
from agent_mesh.mesh.transport import REQUEST_TIMEOUT, FileBody, Host
from agent_mesh.mesh.wire import (
    GREETING,
    REMOTE_COMMAND,
    decode_reply,
    encode_header,
    serve_command,
)
from agent_mesh.pipes import spawn_piped

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from collections.abc import Iterator
    from typing import Any

GREETING_WAIT = 3.5  # s: a master notices a dead peer in ~3 s; the request must fail by 5 s
SERVER_RETRY = 600  # s: after a server could not be set up, wait this long to try again


class OpenSshTransport(Host):
    """Requests to one peer through the user's `ssh` and a shared control master."""

    name = "openssh"

    def __init__(self, alias: str, persist: str | None = "") -> None:
        if not alias or alias.startswith("-"):
            raise UsageError(f"invalid host alias {alias!r}")
        self.host = alias
        ssh = ssh_client()
        if ssh is None:
            raise WireError(f"{alias}: no ssh client on PATH (AGENT_MESH_TRANSPORT=paramiko "
                            "uses the built-in one)")
        self.ssh = ssh
        self.persist = control_persist() if persist == "" else persist
        folder = control_dir() if self.persist is not None else None
        self.socket = os.path.join(folder, socket_name(alias)) if folder else None
        # The mesh key for this peer (issue 18: `agent-mesh trust add`), offered alone.
        from agent_mesh.mesh.meshkey import mesh_key_for

        self.key = mesh_key_for(alias)
        # The local end of the forward to the peer's rpc server (hidden: not a master).
        # A mesh key's `restrict` forbids forwarding: no server, a launcher per request.
        self.forward = (os.path.join(folder, f".{socket_name(alias)}.rpc")
                        if folder and self.key is None else None)
        # Seconds a new connection may take: less after a master died holding a request
        # (a peer cut off must still fail within ~5 s in all).
        self.connect_timeout = CONNECT_TIMEOUT

    def _fail(self, text: str, cause: str = "") -> WireError:
        return WireError(f"{self.host}: {text.replace('ALIAS', self.host)}", cause=cause)

    def argv(self, *flags: str, command: str | None = None, master: str = "auto") -> list[str]:
        """ssh argv for this peer; master: auto (start one if none), no (use one only)."""
        if self.socket is None:
            mux = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        elif master == "no":
            mux = ["-o", "ControlMaster=no", "-o", f"ControlPath={self.socket}"]
        else:
            mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.socket}",
                   "-o", f"ControlPersist={self.persist}"]
        timeout = 1 if master == "no" else self.connect_timeout
        # -i and IdentitiesOnly: only the mesh key (and the config's own IdentityFile,
        # should the peer not take it: doctor tells); every other setting is the user's.
        key = ["-i", self.key, "-o", "IdentitiesOnly=yes"] if self.key else []
        return [self.ssh, *ssh_options(timeout), *mux, *key, *flags, "--", self.host,
                *([command] if command else [])]

    def request(self, header: dict[str, Any], stream: FileBody | None = None,
                timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        import time

        payload = encode_header(header)

        def pieces() -> Iterator[bytes]:
            yield payload
            if stream is not None:
                yield from stream.chunks()

        started = time.monotonic()
        deadline = started + timeout
        if self.forward is not None and os.path.exists(self.forward):
            served = self._via_server(payload, stream, deadline)
            if served is not None:
                return decode_reply(self.host, served, 0)
        reuse = self.socket is not None and listening(self.socket)
        while True:
            argv = self.argv(command=REMOTE_COMMAND, master="no" if reuse else "auto")
            try:
                run = run_ssh(argv, pieces(), deadline, hold=bool(header.get("hold")))
            except TimeoutError:
                raise self._fail(f"no answer within {timeout:g} s") from None
            except OSError as exc:
                raise self._fail(f"could not run {self.ssh}: {exc.strerror or exc}") from None
            err = run.err.decode("utf-8", "replace")
            if not reuse or run.out.strip() or run.status != 255:
                break
            # The master could not serve and ssh's own 1 s fallback connection failed.
            self.drop_master()
            low = err.lower()
            if any(word in low for word in UNREACHABLE) or time.monotonic() - started > 2:
                # The master died of unanswered keepalives and the peer does not
                # answer a new connection either: it is gone; a retry would only wait.
                if not err.strip():
                    err = f"Timeout, {self.host} not responding to keepalives"
                break
            # Failed at once, the peer reachable: a stale master (peer rebooted,
            # network changed). Retry once with a fresh one, unnoticed by the user.
            reuse = False
        if not run.out.strip() and run.status == 255:
            if not err.strip():
                err = "connection to the peer lost (its control master closed)"
            cause, text = ssh_failure(err, run.status)
            raise self._fail(text, cause)
        if run.out.strip() and reuse:  # a peer in use again, not a one-off: worth a server
            self._start_server()
        return decode_reply(self.host, bytes(run.out), run.status or 0)

    # --- the peer's rpc server, through a forwarded socket (issue 20) -------------

    def _via_server(self, payload: bytes, stream: FileBody | None,
                    deadline: float) -> bytes | None:
        """The request through the forward to the peer's rpc server: its raw reply, or
        None when the request never reached it (no server there any more, a stale
        forward): the caller sends it the usual way. A server that greeted us has the
        request: any failure after that is the request's (exit 4), never a resend."""
        import _socket
        import time

        assert self.forward is not None
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            try:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                conn.connect(self.forward)
            except (FileNotFoundError, ConnectionRefusedError):
                unlink_quietly(self.forward)  # its master is gone
                return None
            except OSError:
                return None
            started = time.monotonic()
            greeting = b""
            try:
                conn.settimeout(min(GREETING_WAIT, max(0.1, deadline - started)))
                while not greeting.endswith(b"\n") and len(greeting) < 200:
                    piece = conn.recv(200 - len(greeting))
                    if not piece:
                        break
                    greeting += piece
            except TimeoutError:
                raise self._fail("unreachable (no answer through the control master within "
                                 f"{GREETING_WAIT:g} s)") from None
            except OSError:
                greeting = b""
            if greeting != GREETING:
                waited = time.monotonic() - started
                if not greeting and waited > 1.0:
                    # Closed after a second or more: the master died holding our channel,
                    # of unanswered keepalives (the peer is gone) or of a reset that a TCP
                    # retransmission only now drew (the peer is back after a reboot or a
                    # partition). The request never reached the server (it goes after the
                    # greeting): one new connection, in what is left of ~4.5 s, tells which.
                    self.connect_timeout = max(1, int(4.5 - waited))
                    return None
                self._start_server(anew=True)  # gone, refused or another version
                return None
            return self._exchange_with(conn, payload, stream, deadline)
        finally:
            conn.close()

    def _exchange_with(self, conn: Any, payload: bytes, stream: FileBody | None,
                       deadline: float) -> bytes:
        import time

        reply = bytearray()
        try:
            try:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                conn.sendall(payload)
                if stream is not None:
                    for piece in stream.chunks():
                        conn.settimeout(max(0.1, deadline - time.monotonic()))
                        conn.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered before reading it all: its reply says why
            while True:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                piece = conn.recv(65536)
                if not piece:
                    break
                reply += piece
                if len(reply) > MAX_REPLY:
                    raise WireError("reply too large")
        except TimeoutError:
            raise self._fail("no answer in time (through the control master)") from None
        except OSError as exc:
            raise self._fail(f"connection lost ({exc.strerror or exc})") from None
        if not reply.strip():
            raise self._fail("connection lost (the control master closed)")
        return bytes(reply)

    def _start_server(self, anew: bool = False) -> None:
        """Have a detached helper start the peer's rpc server on this master, unless a
        forward is there (anew: one that did not greet us) or a recent attempt failed;
        the request does not wait for it."""
        if self.forward is None or self.persist is None or (
                not anew and os.path.exists(self.forward)):
            return
        try:
            if time_since(self.forward + ".failed") < SERVER_RETRY:
                return
        except OSError:
            pass
        if not _WANT_SERVER:
            import atexit

            atexit.register(_spawn_helper)
        if self.host not in _WANT_SERVER:
            _WANT_SERVER.append(self.host)

    def setup_server(self) -> bool | None:
        """Start the peer's rpc server as a session of the running master (so it ends
        with it) and forward our socket to it; True once a greeting came through,
        None when there was nothing to do (no master, a server that greets)."""
        import time

        assert self.forward is not None and self.socket is not None
        if not listening(self.socket) or self._greets():
            return None
        unlink_quietly(self.forward)  # the master's old listener, if any, is left unreachable
        holder = self.argv("-o", "ProxyCommand=false",  # through the master, or not at all
                           command=serve_command(persist_seconds(self.persist or "0"),
                                                 self.server_slot()),
                           master="no")
        pid, stdin, stdout, stderr = spawn_piped(holder)
        os.close(stdin)
        os.close(stderr)
        path = b""
        try:
            import select

            poller = select.poll()
            poller.register(stdout, select.POLLIN)
            end = time.monotonic() + 10
            while not path.endswith(b"\n") and len(path) < 4096:
                if not poller.poll(max(0, end - time.monotonic()) * 1000):
                    break
                piece = os.read(stdout, 4096)
                if not piece:
                    break
                path += piece
        finally:
            os.close(stdout)
        remote = path.decode("utf-8", "replace").strip()
        forward = [self.ssh, "-o", "ControlMaster=no", "-o", f"ControlPath={self.socket}",
                   "-O", "forward", "-L", f"{self.forward}:{remote}", "--", self.host]
        ok = (remote.startswith("/") and "\n" not in remote and ":" not in remote
              and run_ssh(forward, iter(()), time.monotonic() + 10,
                          need_status=True).status == 0
              and self._greets())
        if not ok:
            try:  # noqa: SIM105
                os.kill(pid, 15)
            except OSError:
                pass
            unlink_quietly(self.forward)
        return ok

    def server_slot(self) -> str:
        """The peer's server slot our master's server takes: one per sending machine, user
        and alias, so the next master's server retires one a partition left behind."""
        import hashlib

        try:
            with open("/etc/machine-id", "rb") as fh:
                machine = fh.read(64)
        except OSError:
            machine = b""
        ident = b"\0".join([machine, os.uname().nodename.encode(), str(os.getuid()).encode(),
                             os.fsencode(self.socket or "")])
        return hashlib.blake2b(ident, digest_size=8).hexdigest()

    def _greets(self) -> bool:
        """Does a server answer with our greeting through the forward?"""
        import _socket

        assert self.forward is not None
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        conn.settimeout(5)
        try:
            conn.connect(self.forward)
            got = b""
            while not got.endswith(b"\n") and len(got) < 200:
                piece = conn.recv(200)
                if not piece:
                    break
                got += piece
            return got == GREETING
        except OSError:
            return False
        finally:
            conn.close()

    # --- the control master ------------------------------------------------------

    def control(self, command: str, timeout: float = 5.0) -> SshRun:
        """`ssh -O command` against this peer's master (check, exit)."""
        import time

        return run_ssh(self.argv("-O", command, master="no"), iter(()),
                       time.monotonic() + timeout, need_status=True)

    def master_up(self) -> bool:
        if self.socket is None or not listening(self.socket):
            return False
        try:
            return self.control("check").status == 0
        except (TimeoutError, OSError):
            return False

    def drop_master(self) -> None:
        """Close a master that cannot serve us, and remove its socket if it lingers."""
        if self.socket is None or not os.path.exists(self.socket):
            return
        try:  # noqa: SIM105 - contextlib would cost an import
            self.control("exit", timeout=2.0)
        except (TimeoutError, OSError):
            pass
        try:  # noqa: SIM105
            os.unlink(self.socket)
        except OSError:
            pass

    def close(self) -> None:
        reap()


def time_since(path: str) -> float:
    """Seconds since path was last modified (OSError when it is not there)."""
    import time

    return time.time() - os.stat(path).st_mtime


_WANT_SERVER: list[str] = []  # peers whose server the helper should start at our exit


def _spawn_helper() -> None:
    """At exit (atexit), one detached helper for every peer that wants a server: set up
    one after another once we are done, they never slow down our own requests (a sync
    to 15 peers would otherwise start 15 helpers among its own connections)."""
    from agent_mesh.detach import start_helper

    try:  # noqa: SIM105 - a message never fails for want of a faster path
        start_helper(f"{__name__}:start_server_main", *_WANT_SERVER)
    except OSError:
        pass


def start_server_main(*aliases: str) -> None:
    """The detached helper: set each server up once per master, under a lock; one that
    cannot be (no launcher there, forwarding refused) leaves a marker file that holds
    further attempts off for SERVER_RETRY seconds."""
    from agent_mesh.fsutil import locked

    for alias in aliases:
        transport = OpenSshTransport(alias)
        if transport.forward is None:
            continue
        try:
            with locked(transport.forward + ".lock", timeout=0):
                done = transport.setup_server()
                if done:
                    unlink_quietly(transport.forward + ".failed")
                elif done is False:
                    fd = os.open(transport.forward + ".failed", os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                    os.utime(transport.forward + ".failed")
        except TimeoutError:
            pass  # another helper is at it
        finally:
            reap()


def disconnect(aliases: list[str] | None = None) -> list[str]:
    """Close masters (`ssh -O exit`): those of aliases, else every one in the
    control directory. Returns the aliases (socket names) of those closed."""
    folder = control_dir()
    if ssh_client() is None or folder is None:
        return []
    if aliases:
        names = {socket_name(alias): alias for alias in aliases}
    else:
        names = {name: name.rsplit("-", 1)[0] for name in sorted(os.listdir(folder))
                 if not name.startswith(".")}
    closed: list[str] = []
    for name, alias in names.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        transport = OpenSshTransport(alias)
        transport.socket = path
        try:
            run = transport.control("exit")
        except (TimeoutError, OSError):
            continue
        unlink_quietly(os.path.join(folder, f".{name}.rpc"))  # its forward went with it
        if run.status == 0:
            closed.append(alias)
        else:  # nothing listens: a leftover socket
            try:  # noqa: SIM105
                os.unlink(path)
            except OSError:
                pass
    return closed
