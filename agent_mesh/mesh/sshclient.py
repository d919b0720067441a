"""The `ssh` client as a process: found on PATH, where its control sockets live and how
long a master persists, started with posix_spawn, its three pipes driven with poll,
and its failure read from stderr as one line.

Cut from openssh.py (the transport: masters, the peer's server, requests) because this
is the part that knows processes and pipes, not SSH semantics: `run_ssh` feeds a
request in pieces (a 100 MB file streams in 64 KB pieces) and returns the reply as
soon as stdout closes, leaving the client to be reaped later (`reap`).
"""

from __future__ import annotations

import os
import sys

from agent_mesh import paths
from agent_mesh.config import value as config_value
from agent_mesh.errors import Cause, UsageError, WireError
from agent_mesh.pipes import spawn_piped
from agent_mesh.registry.naming import ADDRESS_PUNCT

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from collections.abc import Iterator

CONNECT_TIMEOUT = 4
ALIVE_INTERVAL = 1  # seconds of silence before a keepalive ...
ALIVE_COUNT = 2  # ... and how many may go unanswered: a dead link is noticed in ~3 s
MAX_REPLY = 16 * 1024 * 1024
MAX_STDERR = 64 * 1024
_UNREAPED: list[int] = []
DEFAULT_PERSIST = "600"
# A Unix socket path holds at most 104 bytes with its NUL (macOS; Linux 108). ssh binds
# "<ControlPath>.<16 random chars>" first.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103  # without the NUL
NAME_MAX = 24  # of the alias in a socket's name; then "-" and 8 hex digits
CONTROL_NAME = NAME_MAX + 9 + 17

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

    keep = ADDRESS_PUNCT + "@"
    readable = "".join(ch if ch.isalnum() or ch in keep else "_" for ch in alias)[:NAME_MAX]
    return f"{readable}-{zlib.crc32(alias.encode()):08x}"


def persist_seconds(value: str) -> int:
    """A ControlPersist value (600, 10m, 1h) in seconds: the server idles out with it."""
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], 1)
    digits = value[:-1] if value[-1:] in ("s", "m", "h") else value
    return int(digits) * scale if digits.isdigit() else 0


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


def listening(path: str) -> bool:
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


def reap() -> None:
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


class SshRun:
    """One `ssh` child: its stdout, stderr and (if waited for) exit status."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.status: int | None = None


def run_ssh(argv: list[str], pieces: Iterator[bytes], deadline: float,
            need_status: bool = False, hold: bool = False) -> SshRun:
    """Run ssh argv feeding it pieces on stdin while reading stdout and stderr;
    with hold, stdin stays open until the reply (the peer sees EOF if we die).

    Returns once stdout is closed: with a reply that is enough (the client exits
    after the peer's interpreter teardown; it is reaped later); without one, or
    with need_status, the exit status is waited for.
    """
    import select
    import time

    reap()
    pid, stdin, stdout, stderr = spawn_piped(argv)
    run = SshRun()
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


UNREACHABLE = ("timed out", "not responding", "no route to host", "network is unreachable",
                "connection refused", "could not resolve")


def ssh_failure(err: str, status: int | None) -> tuple[str, str]:
    """Why ssh failed, from its stderr: its errors.Cause (what doctor maps to a fix)
    and one line for people."""
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
        return Cause.HOST_KEY_REVOKED, (
            f"host key {where}is REVOKED (marked @revoked in known_hosts); nothing was "
            "sent. Do not trust this host until its key is replaced")
    if "remote host identification has changed" in low or "has changed and you have" in low:
        return Cause.HOST_KEY_CHANGED, (
            f"host key {where}CHANGED (possible man-in-the-middle); nothing was sent. "
            "Verify it, then fix ~/.ssh/known_hosts")
    if "host key verification failed" in low or ("no " in low and "host key is known" in low):
        return Cause.HOST_KEY_UNKNOWN, (
            f"host key {where}is unknown; nothing was sent. Check and add it once: "
            "ssh ALIAS true")
    if "permission denied" in low:
        return Cause.AUTH_FAILED, f"authentication failed ({last})"
    if "could not resolve hostname" in low or "name or service not known" in low:
        return Cause.UNKNOWN_HOST, f"unknown host name ({last})"
    if "banner exchange" in low:
        return Cause.NO_HANDSHAKE, f"unreachable (no SSH handshake: {last})"
    if "not responding" in low or "timed out" in low or "timeout" in low:
        return Cause.UNREACHABLE, f"unreachable ({last})"
    if "connection refused" in low:
        return Cause.UNREACHABLE, f"unreachable (connection refused: {last})"
    if "no route to host" in low or "network is unreachable" in low:
        return Cause.UNREACHABLE, f"unreachable ({last})"
    if "connection closed" in low or "connection reset" in low or "broken pipe" in low:
        return Cause.CONNECTION_LOST, f"connection lost ({last})"
    return Cause.SSH_FAILED, f"ssh failed ({last})"
