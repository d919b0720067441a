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
pipes are driven with poll, so a 100 MB file streams in 64 KB pieces.
"""

from __future__ import annotations

import os
import sys

from agent_mesh import paths
from agent_mesh.errors import UsageError, WireError
from agent_mesh.mesh.transport import REQUEST_TIMEOUT, FileBody, Transport, config_value
from agent_mesh.mesh.wire import (
    GREETING,
    REMOTE_COMMAND,
    decode_reply,
    encode_header,
    serve_command,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from collections.abc import Iterator
    from typing import Any

CONNECT_TIMEOUT = 4
ALIVE_INTERVAL = 1  # seconds of silence before a keepalive ...
ALIVE_COUNT = 2  # ... and how many may go unanswered: a dead link is noticed in ~3 s
DEFAULT_PERSIST = "600"
MAX_REPLY = 16 * 1024 * 1024
MAX_STDERR = 64 * 1024
# A Unix socket path holds at most 104 bytes with its NUL (macOS; Linux 108). ssh binds
# "<ControlPath>.<16 random chars>" first.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103  # without the NUL
NAME_MAX = 24  # of the alias in a socket's name; then "-" and 8 hex digits
CONTROL_NAME = NAME_MAX + 9 + 17
SIGPIPE = 13  # the same on Linux, macOS and the BSDs; `signal` would import enum
GREETING_WAIT = 3.5  # s: a master notices a dead peer in ~3 s; the request must fail by 5 s
SERVER_RETRY = 600  # s: after a server could not be set up, wait this long to try again
_UNREAPED: list[int] = []


def ssh_client() -> str | None:
    """The `ssh` on PATH (shutil.which costs imports on the message path)."""
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        candidate = os.path.join(folder or ".", "ssh")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def control_persist() -> str | None:
    """How long an idle master stays up, as ControlPersist takes it; None: no reuse."""
    value = os.environ.get("AGENT_MESH_CONTROL_PERSIST", "").strip().lower()
    where = "AGENT_MESH_CONTROL_PERSIST"
    if not value:
        value = (config_value("control_persist") or DEFAULT_PERSIST).strip().lower()
        where = "control_persist in ~/.agents/config.toml"
    if value in ("no", "off", "false", "0"):
        return None
    digits = value[:-1] if value[-1:] in ("s", "m", "h") else value
    if not digits.isdigit():
        raise UsageError(f"{where}: {value!r} is not a duration (seconds, e.g. 600, or no)")
    return value


def _private_dir(folder: str) -> bool:
    """folder exists, is ours, is no symlink and only we can enter it (0700)."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return False
    if info.st_mode & 0o170000 != 0o040000 or info.st_uid != os.getuid():
        return False
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return True


def control_dir() -> str | None:
    """Where the master sockets live: ~/.agents/cm, or a shorter private directory
    when HOME is too long for a socket path; None when there is no such place."""
    candidates = [os.path.join(paths.agents_dir(), "cm")]
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        candidates.append(os.path.join(runtime, "agent-mesh-cm"))
    candidates.append(f"/tmp/agent-mesh-cm-{os.getuid()}")
    for folder in candidates:
        if len(folder.encode()) + 1 + CONTROL_NAME > SOCKET_PATH_MAX:
            continue
        if any(ch in folder for ch in " \t\"'\\%"):
            continue  # ssh would read these as separators, quotes or %-tokens
        if _private_dir(folder):
            return folder
    return None


def socket_name(alias: str) -> str:
    """The master socket's file name for alias: readable, short, and ours to compute
    (no `ssh -G` needed to know whether a master is there)."""
    import zlib

    readable = "".join(ch if ch.isalnum() or ch in "._-@" else "_" for ch in alias)[:NAME_MAX]
    return f"{readable}-{zlib.crc32(alias.encode()):08x}"


def ssh_options(connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
    """The options of every request (command-line -o beats ~/.ssh/config)."""
    return [
        "-T", "-x", "-a",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
        "-o", "ClearAllForwardings=yes",
        "-o", "LogLevel=ERROR",
    ]


def _listening(path: str) -> bool:
    """Whether a master answers on path; a socket nobody listens on (its master was
    killed) is removed, or ssh would try it, fall back, and never start a new one.
    _socket, not socket: the latter imports enum and selectors."""
    import _socket

    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        try:  # noqa: SIM105 - contextlib would cost an import
            os.unlink(path)
        except OSError:
            pass
        return False
    except OSError:
        return True  # not ours to judge: ssh will say what is wrong
    finally:
        probe.close()
    return True


def _reap() -> None:
    """Collect clients left running after their reply was read (no zombies pile up)."""
    for pid in list(_UNREAPED):  # sync's threads call this concurrently
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # another thread reaped it
        if done:
            try:  # noqa: SIM105 - contextlib would cost an import
                _UNREAPED.remove(pid)
            except ValueError:
                pass


class _Run:
    """One `ssh` child: its stdout, stderr and (if waited for) exit status."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.status: int | None = None


def _spawn(argv: list[str]) -> tuple[int, int, int, int]:
    """Start argv with three pipes; returns (pid, stdin, stdout, stderr) of ours."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0], argv, os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                          (os.POSIX_SPAWN_DUP2, err_w, 2)],
            setsigdef=(SIGPIPE,),
        )
    except OSError:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    return pid, in_w, out_r, err_r


def run_ssh(argv: list[str], pieces: Iterator[bytes], deadline: float,
            need_status: bool = False, hold: bool = False) -> _Run:
    """Run ssh argv feeding it pieces on stdin while reading stdout and stderr;
    with hold, stdin stays open until the reply (the peer sees EOF if we die).

    Returns once stdout is closed: with a reply that is enough (the client exits
    after the peer's interpreter teardown; it is reaped later); without one, or
    with need_status, the exit status is waited for.
    """
    import select
    import time

    _reap()
    pid, stdin, stdout, stderr = _spawn(argv)
    run = _Run()
    poller = select.poll()
    os.set_blocking(stdin, False)
    poller.register(stdin, select.POLLOUT)
    poller.register(stdout, select.POLLIN)
    poller.register(stderr, select.POLLIN)
    open_fds = {stdin, stdout, stderr}
    pending = memoryview(b"")

    def close(fd: int) -> None:
        poller.unregister(fd)
        os.close(fd)
        open_fds.discard(fd)

    try:
        while stdout in open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for fd, events in poller.poll(left * 1000):
                if fd == stdin:
                    if events & (select.POLLERR | select.POLLHUP):
                        close(stdin)  # ssh is gone or stopped reading: its output says why
                        continue
                    if not pending:
                        piece = next(pieces, None)
                        if piece is None:
                            if hold:  # open until we return: EOF would say we are gone
                                poller.unregister(stdin)
                            else:
                                close(stdin)  # EOF: the request is complete
                            continue
                        pending = memoryview(piece)
                    try:
                        pending = pending[os.write(stdin, pending):]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        close(stdin)
                    continue
                data = os.read(fd, 65536)
                if not data:
                    close(fd)
                elif fd == stdout:
                    run.out += data
                    if len(run.out) > MAX_REPLY:
                        raise WireError("reply too large")
                elif len(run.err) < MAX_STDERR:
                    run.err += data
        if run.out.strip() and not need_status:
            _UNREAPED.append(pid)
            return run
        # No reply: the exit status and ssh's complaint on stderr say why.
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                run.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise TimeoutError
            for fd, _ in poller.poll(50):
                data = os.read(fd, 65536)
                if not data:
                    close(fd)
                elif fd == stderr and len(run.err) < MAX_STDERR:
                    run.err += data
        if stderr in open_fds:  # what the client wrote before it exited
            for _fd, _ in poller.poll(100):
                data = os.read(stderr, 65536)
                run.err += data[:MAX_STDERR]
                break
        return run
    except BaseException:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    finally:
        for fd in list(open_fds):
            os.close(fd)


_UNREACHABLE = ("timed out", "not responding", "no route to host", "network is unreachable",
                "connection refused", "could not resolve")


def describe_failure(err: str, status: int | None) -> str:
    """One line for why ssh failed, from its stderr (the phrases doctor maps to fixes)."""
    low = err.lower()
    lines = [ln.strip() for ln in err.splitlines() if ln.strip() and not ln.startswith("@")]
    last = lines[-1] if lines else f"ssh exited with status {status}"
    host = ""
    for line in lines:  # "Host key for X has changed" / "No ED25519 host key is known for X"
        for marker in ("host key is known for ", "Host key for ", "host key for "):
            if marker in line:
                host = line.split(marker, 1)[1].split()[0].rstrip(".")
                if host.startswith("["):  # [host]:port
                    host = host[1:].split("]", 1)[0]
    where = f"for {host} " if host else ""
    if "revoked" in low:
        return (f"host key {where}is REVOKED (marked @revoked in known_hosts); nothing was "
                "sent. Do not trust this host until its key is replaced")
    if "remote host identification has changed" in low or "has changed and you have" in low:
        return (f"host key {where}CHANGED (possible man-in-the-middle); nothing was sent. "
                "Verify it, then fix ~/.ssh/known_hosts")
    if "host key verification failed" in low or ("no " in low and "host key is known" in low):
        return (f"host key {where}is unknown; nothing was sent. Check and add it once: "
                "ssh ALIAS true")
    if "permission denied" in low:
        return f"authentication failed ({last})"
    if "could not resolve hostname" in low or "name or service not known" in low:
        return f"unknown host name ({last})"
    if "banner exchange" in low:
        return f"unreachable (no SSH handshake: {last})"
    if "not responding" in low:
        return f"unreachable ({last})"
    if "timed out" in low or "timeout" in low:
        return f"unreachable ({last})"
    if "connection refused" in low:
        return f"unreachable (connection refused: {last})"
    if "no route to host" in low or "network is unreachable" in low:
        return f"unreachable ({last})"
    if "connection closed" in low or "connection reset" in low or "broken pipe" in low:
        return f"connection lost ({last})"
    return f"ssh failed ({last})"


class OpenSshTransport(Transport):
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

    def _fail(self, cause: str) -> WireError:
        return WireError(f"{self.host}: {cause.replace('ALIAS', self.host)}")

    def argv(self, *flags: str, command: str | None = None, master: str = "auto") -> list[str]:
        """ssh argv for this peer; master: auto (start one if none), no (use one only)."""
        if self.socket is None:
            mux = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        elif master == "no":
            mux = ["-o", "ControlMaster=no", "-o", f"ControlPath={self.socket}"]
        else:
            mux = ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.socket}",
                   "-o", f"ControlPersist={self.persist}"]
        timeout = 1 if master == "no" else CONNECT_TIMEOUT
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
        reuse = self.socket is not None and _listening(self.socket)
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
            if any(word in low for word in _UNREACHABLE) or time.monotonic() - started > 2:
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
            raise self._fail(describe_failure(err, run.status))
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
                _unlink(self.forward)  # its master is gone
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
                if not greeting and time.monotonic() - started > 1.0:
                    # Closed after seconds: the master died of unanswered keepalives.
                    raise self._fail(f"unreachable (Timeout, {self.host} not responding to "
                                     "keepalives)")
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
        if not _listening(self.socket) or self._greets():
            return None
        _unlink(self.forward)  # the master's old listener, if any, is left unreachable
        holder = self.argv("-o", "ProxyCommand=false",  # through the master, or not at all
                           command=serve_command(persist_seconds(self.persist or "0")),
                           master="no")
        pid, stdin, stdout, stderr = _spawn(holder)
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
            _unlink(self.forward)
        return ok

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

    def control(self, command: str, timeout: float = 5.0) -> _Run:
        """`ssh -O command` against this peer's master (check, exit)."""
        import time

        return run_ssh(self.argv("-O", command, master="no"), iter(()),
                       time.monotonic() + timeout, need_status=True)

    def master_up(self) -> bool:
        if self.socket is None or not _listening(self.socket):
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
        _reap()


def persist_seconds(value: str) -> int:
    """A ControlPersist value (600, 10m, 1h) in seconds: the server idles out with it."""
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], 1)
    digits = value[:-1] if value[-1:] in ("s", "m", "h") else value
    return int(digits) * scale if digits.isdigit() else 0


def time_since(path: str) -> float:
    """Seconds since path was last modified (OSError when it is not there)."""
    import time

    return time.time() - os.stat(path).st_mtime


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost an import
        os.unlink(path)
    except OSError:
        pass


_WANT_SERVER: list[str] = []  # peers whose server the helper should start at our exit


def _spawn_helper() -> None:
    """At exit (atexit), one detached helper for every peer that wants a server: set up
    one after another once we are done, they never slow down our own requests (a sync
    to 15 peers would otherwise start 15 helpers among its own connections)."""
    from agent_mesh.procs import spawn_detached

    code = ("import sys; from agent_mesh.mesh.openssh import start_server_main; "
            "start_server_main(sys.argv[1:])")
    try:  # noqa: SIM105 - a message never fails for want of a faster path
        spawn_detached([sys.executable, "-I", "-S", "-c",
                        f"import sys; sys.path[:0] = {paths.package_paths()!r}; " + code,
                        *_WANT_SERVER])
    except OSError:
        pass


def start_server_main(aliases: list[str]) -> None:
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
                    _unlink(transport.forward + ".failed")
                elif done is False:
                    fd = os.open(transport.forward + ".failed", os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                    os.utime(transport.forward + ".failed")
        except TimeoutError:
            pass  # another helper is at it
        finally:
            _reap()


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
        _unlink(os.path.join(folder, f".{name}.rpc"))  # its forward went with it
        if run.status == 0:
            closed.append(alias)
        else:  # nothing listens: a leftover socket
            try:  # noqa: SIM105
                os.unlink(path)
            except OSError:
                pass
    return closed
