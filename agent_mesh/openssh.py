"""OpenSSH transport: the user's own `ssh` client, one invocation per request,
through a control master that stays up between requests.

Why: `import paramiko` alone costs ~150 ms and a fresh SSH handshake ~240 ms,
while a request over an open master costs ~10 ms plus the peer's rpc. OpenSSH
also reads ~/.ssh/config and known_hosts exactly as the user's `ssh` does
(Include, Match, HostKeyAlias, certificates, @revoked, FIDO keys, the agent).

Every request runs REMOTE_COMMAND (`agent-mesh rpc`) with the request on stdin
(a JSON header line, then a file's bytes; wire.py), with BatchMode (never a
prompt), StrictHostKeyChecking=yes (never add a host key), a connect timeout
and keepalives (a partition is noticed within ~4 s), and `ControlMaster=auto`:
the first request to a peer starts a master in the background, which serves
every later `ssh` to that peer through a socket in a 0700 directory
(~/.agents/cm/<%C hash>) until it has been idle ControlPersist seconds (600 by
default; AGENT_MESH_CONTROL_PERSIST or `control_persist` in
~/.agents/config.toml, `no` turns reuse off). A master that went stale (peer
rebooted, network changed) is closed and the request retried once.

No subprocess, no paramiko: the client is started with posix_spawn and its
pipes are driven with poll, so a 100 MB file streams in 64 KB pieces.
"""

from __future__ import annotations

import os
import sys

from agent_mesh import paths
from agent_mesh.errors import UsageError, WireError
from agent_mesh.transport import REQUEST_TIMEOUT, FileBody, Transport, _config_value
from agent_mesh.wire import REMOTE_COMMAND, decode_reply, encode_header

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from collections.abc import Iterator
    from typing import Any

CONNECT_TIMEOUT = 4
ALIVE_INTERVAL = 1  # seconds of silence before a keepalive ...
ALIVE_COUNT = 3  # ... and how many may go unanswered: a dead link is noticed in ~3-4 s
DEFAULT_PERSIST = "600"
MAX_REPLY = 16 * 1024 * 1024
MAX_STDERR = 64 * 1024
# A Unix socket path holds at most 104 bytes with its NUL (macOS; Linux 108). ssh binds
# "<ControlPath>.<16 random chars>" first, and %C is 40 hex characters.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103  # without the NUL
CONTROL_NAME = 40 + 17
SIGPIPE = 13  # the same on Linux, macOS and the BSDs; `signal` would import enum
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
        value = (_config_value("control_persist") or DEFAULT_PERSIST).strip().lower()
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


def ssh_options(persist: str | None = "") -> list[str]:
    """The options of every request (command-line -o beats ~/.ssh/config)."""
    if persist == "":
        persist = control_persist()
    options = [
        "-T", "-x", "-a",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL}",
        "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
        "-o", "ClearAllForwardings=yes",
        "-o", "LogLevel=ERROR",
    ]
    folder = control_dir() if persist is not None else None
    if folder is None:
        return [*options, "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    return [*options, "-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C",
            "-o", f"ControlPersist={persist}"]


def _reap() -> None:
    """Collect clients left running after their reply was read (no zombies pile up)."""
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _UNREAPED.remove(pid)


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
            need_status: bool = False) -> _Run:
    """Run ssh argv feeding it pieces on stdin while reading stdout and stderr.

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


_STALE_MUX = ("mux_client", "control socket", "controlsocket", "read from master",
              "master hello", "mux protocol", "master refused", "muxclient")


def stale_master(err: str) -> bool:
    """ssh's own words for a control master that cannot serve this request."""
    low = err.lower()
    return any(word in low for word in _STALE_MUX)


def describe_failure(err: str, status: int | None, timeout: int = CONNECT_TIMEOUT) -> str:
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
        return f"unreachable (no SSH handshake within {timeout} s: {last})"
    if "timed out" in low or "timeout" in low or "not responding" in low:
        return f"unreachable (no answer within {timeout} s: {last})"
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
        self.options = ssh_options(persist)

    def _fail(self, cause: str) -> WireError:
        return WireError(f"{self.host}: {cause.replace('ALIAS', self.host)}")

    def argv(self, *flags: str, command: str | None = None) -> list[str]:
        return [self.ssh, *self.options, *flags, "--", self.host,
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
        argv = self.argv(command=REMOTE_COMMAND)
        for attempt in (1, 2):
            try:
                run = run_ssh(argv, pieces(), deadline)
            except TimeoutError:
                raise self._fail(f"no answer within {timeout:g} s") from None
            except OSError as exc:
                raise self._fail(f"could not run {self.ssh}: {exc.strerror or exc}") from None
            err = run.err.decode("utf-8", "replace")
            if run.out.strip() or attempt == 2 or not stale_master(err):
                break
            if time.monotonic() - started > 2:
                break  # a master that died of keepalives: the peer is gone, say so
            self.drop_master()  # stale: replaced by the retry, unnoticed by the user
        if not run.out.strip() and run.status == 255:
            raise self._fail(describe_failure(err, run.status))
        return decode_reply(self.host, bytes(run.out), run.status or 0)

    # --- the control master ------------------------------------------------------

    def control(self, command: str, timeout: float = 5.0) -> _Run:
        """`ssh -O command` against this peer's master (check, exit)."""
        import time

        return run_ssh(self.argv("-O", command), iter(()), time.monotonic() + timeout,
                       need_status=True)

    def master_up(self) -> bool:
        if "ControlMaster=auto" not in self.options:
            return False
        try:
            return self.control("check").status == 0
        except (TimeoutError, OSError):
            return False

    def drop_master(self) -> None:
        """Close a master that cannot serve us, and remove its socket if it lingers."""
        try:  # noqa: SIM105 - contextlib would cost an import
            self.control("exit")
        except (TimeoutError, OSError):
            pass
        path = self.socket_path()
        if path:
            try:  # noqa: SIM105 - contextlib would cost an import
                os.unlink(path)
            except OSError:
                pass

    def socket_path(self) -> str | None:
        """The master's socket for this alias, as ssh expands ControlPath (`ssh -G`)."""
        import time

        try:
            run = run_ssh(self.argv("-G"), iter(()), time.monotonic() + 5, need_status=True)
        except (TimeoutError, OSError):
            return None
        for line in run.out.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "controlpath" and value not in ("", "none"):
                return value
        return None

    def close(self) -> None:
        _reap()


def disconnect(aliases: list[str] | None = None) -> list[str]:
    """Close masters (`ssh -O exit`): aliases', else every one in the control
    directory. Returns one line per master closed."""
    import time

    ssh = ssh_client()
    folder = control_dir()
    if ssh is None or folder is None:
        return []
    closed: list[str] = []
    if aliases:
        for alias in aliases:
            transport = OpenSshTransport(alias)
            if transport.master_up():
                transport.control("exit")
                closed.append(alias)
        return closed
    base = [ssh, *ssh_options(None)[:-4]]
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        argv = [*base, "-o", f"ControlPath={path}", "-O", "exit", "--", "agent-mesh-master"]
        try:
            run = run_ssh(argv, iter(()), time.monotonic() + 5, need_status=True)
        except (TimeoutError, OSError):
            continue
        if run.status == 0:
            closed.append(name)
        else:  # nothing listens: a leftover socket
            try:  # noqa: SIM105
                os.unlink(path)
            except OSError:
                pass
    return closed
