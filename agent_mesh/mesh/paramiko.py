"""SSH transport on paramiko (the fallback where there is no OpenSSH client, or
chosen): one connection per peer, one command per request.

A request (a message envelope, a slice exchange) goes as JSON on the stdin of a
fixed remote command that runs `agent-mesh rpc` on the peer; nothing the user
typed is ever placed in the remote shell string. A file travels on the
same channel right after the request's header line (wire.py), and the peer's
rpc streams it to a temporary name and renames it into place.

The peer's address, user, port, keys, ProxyJump and timeouts come from the
user's ~/.ssh/config, resolved exactly by `ssh -G <alias>` where the OpenSSH
client exists (paramiko's own parser misses Include, Match and ProxyJump).
Unknown host keys are rejected, never added; nothing ever prompts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from agent_mesh.errors import Cause, UsageError, WireError
from agent_mesh.mesh.transport import REQUEST_TIMEOUT, FileBody, Host
from agent_mesh.mesh.wire import REMOTE_COMMAND, decode_reply, encode_header

DEFAULT_CONNECT_TIMEOUT = 4.0
MAX_REPLY = 16 * 1024 * 1024


@dataclass
class SshTarget:
    """Where an alias really points, after ~/.ssh/config."""

    alias: str
    hostname: str
    port: int = 22
    user: str = ""
    identity_files: list[str] = field(default_factory=list)
    known_hosts: list[str] = field(default_factory=list)
    proxy_jump: str = ""
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


def resolve_alias(alias: str, extra_args: list[str] | None = None) -> SshTarget:
    """Resolve alias with `ssh -G` (exact OpenSSH semantics), else paramiko's parser."""
    if alias.startswith("-") or not alias:
        raise UsageError(f"invalid host alias {alias!r}")
    ssh = shutil.which("ssh")
    if ssh:
        out = subprocess.run(
            [ssh, "-G", *(extra_args or []), "--", alias],
            capture_output=True, timeout=10, check=False,
        )
        if out.returncode == 0:
            return _target_from_options(alias, _parse_ssh_g(out.stdout.decode("utf-8", "replace")))
    return _resolve_with_paramiko(alias)


def _resolve_destination(destination: str) -> SshTarget:
    """An alias, or a ProxyJump hop written `[user@]host[:port]` (ssh -G takes it as a URI)."""
    if ":" in destination and not destination.startswith("ssh://"):
        target = resolve_alias(f"ssh://{destination}")
        target.alias = destination
        return target
    return resolve_alias(destination)


def _parse_ssh_g(text: str) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), []).append(value.strip())
    return options


def _target_from_options(alias: str, opts: dict[str, list[str]]) -> SshTarget:
    def first(key: str, default: str = "") -> str:
        return opts.get(key, [default])[0]

    timeout = first("connecttimeout", "none")
    known: list[str] = []
    for entry in opts.get("userknownhostsfile", []) + opts.get("globalknownhostsfile", []):
        known.extend(os.path.expanduser(p) for p in entry.split())
    jump = first("proxyjump", "none")
    return SshTarget(
        alias=alias,
        hostname=first("hostname", alias).removeprefix("[").removesuffix("]"),
        port=int(first("port", "22")),
        user=first("user", os.environ.get("USER", "")),
        identity_files=[os.path.expanduser(p) for p in opts.get("identityfile", [])],
        known_hosts=known,
        proxy_jump="" if jump == "none" else jump,
        connect_timeout=float(timeout) if timeout.isdigit() else DEFAULT_CONNECT_TIMEOUT,
    )


def _resolve_with_paramiko(alias: str) -> SshTarget:
    paramiko = import_paramiko()
    config_path = os.path.expanduser("~/.ssh/config")
    opts: dict[str, Any] = {}
    if os.path.exists(config_path):
        opts = paramiko.SSHConfig.from_path(config_path).lookup(alias)
    timeout = str(opts.get("connecttimeout", ""))
    return SshTarget(
        alias=alias,
        hostname=str(opts.get("hostname", alias)),
        port=int(opts.get("port", 22)),
        user=str(opts.get("user", os.environ.get("USER", ""))),
        identity_files=[os.path.expanduser(p) for p in opts.get("identityfile", [])]
        or [os.path.expanduser(f"~/.ssh/{n}") for n in ("id_ed25519", "id_ecdsa", "id_rsa")],
        known_hosts=[os.path.expanduser("~/.ssh/known_hosts")],
        proxy_jump=str(opts.get("proxyjump", "")),
        connect_timeout=float(timeout) if timeout.isdigit() else DEFAULT_CONNECT_TIMEOUT,
    )


def import_paramiko() -> Any:
    """Import paramiko, ~40 ms faster: its optional `invoke` import serves only
    `Match exec` in ssh_config, which `ssh -G` already evaluated for us."""
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    import logging

    import paramiko

    # paramiko logs handshake failures with tracebacks from its own thread; we
    # report every failure ourselves, as one line.
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return paramiko


def _marked_keys(files: list[str], marker: str) -> set[tuple[str, str]]:
    """(type, base64) of every key on a `marker` line (`@revoked`, `@cert-authority`)
    of these known_hosts files: paramiko skips those lines; OpenSSH refuses a revoked
    key whatever names it is listed under, and checks host certificates against CAs."""
    keys: set[tuple[str, str]] = set()
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 4 and parts[0] == marker:
                        keys.add((parts[2], parts[3]))
        except OSError:
            continue
    return keys


_CA_HINT = (
    "known_hosts trusts it through an @cert-authority line, which the paramiko transport "
    "cannot check: use the openssh transport (AGENT_MESH_TRANSPORT=openssh, or transport = "
    "\"openssh\" in ~/.agents/config.toml)"
)


class _QuickAckSocket:
    """A socket that ACKs every read at once (Linux TCP_QUICKACK before each recv).

    After auth, sshd sends two small packets back to back; with Nagle on its
    side and delayed ACKs on ours, the first channel open then stalls ~40 ms
    (measured: 45 ms -> 2 ms). paramiko only calls recv/send/settimeout/close.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ParamikoTransport(Host):
    """A lazily opened connection to one peer, reused for every request to it."""

    name = "paramiko"

    def __init__(self, alias: str, via: str | None = None) -> None:
        """alias: an ssh destination (a Host alias, or user@host[:port] for a jump hop);
        via: the ProxyJump chain to reach it, overriding its own (for chained jumps)."""
        self.host = alias
        self._via = via
        self._client: Any = None
        self._jump: ParamikoTransport | None = None
        self._hop = False  # a jump host on the way to another peer

    # --- connection ---------------------------------------------------------

    def _fail(self, text: str, cause: str = "") -> WireError:
        return WireError(f"{self.host}: {text}", cause=cause)

    def connect(self) -> Any:
        if self._client is not None:
            return self._client
        target = _resolve_destination(self.host)
        if self._via is not None:
            target.proxy_jump = self._via
        paramiko = import_paramiko()
        sock = self._open_socket(target)
        client = paramiko.SSHClient()
        for path in target.known_hosts:
            if os.path.exists(path):
                try:
                    client.get_host_keys().load(path)
                except Exception:  # a malformed line must not disable the rest
                    continue
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        from agent_mesh.mesh.meshkey import mesh_key_for

        # never for a jump hop: a mesh key may not forward (its `restrict`)
        mesh_key = None if self._hop else mesh_key_for(self.host)
        # A peer reached with the mesh key (issue 18): that key first, then the config's
        # own IdentityFile (a peer not yet given the key: doctor tells), no agent's keys,
        # as OpenSSH does with -i and IdentitiesOnly.
        keys = [mesh_key] if mesh_key else []
        keys += [p for p in target.identity_files if os.path.exists(p) and p not in keys]
        t = target.connect_timeout
        try:
            client.connect(
                target.hostname, port=target.port, username=target.user or None, sock=sock,
                key_filename=keys or None, allow_agent=mesh_key is None, look_for_keys=False,
                timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t,
            )
        except paramiko.BadHostKeyException:
            sock.close()
            raise self._fail(
                f"host key for {target.hostname} CHANGED (possible man-in-the-middle); "
                "nothing was sent. Verify it, then fix ~/.ssh/known_hosts", Cause.HOST_KEY_CHANGED
            ) from None
        except paramiko.AuthenticationException:
            sock.close()
            raise self._fail(
                f"authentication failed as {target.user or '?'} (keys tried: agent"
                f"{', ' if keys else ''}{', '.join(keys)})", Cause.AUTH_FAILED
            ) from None
        except paramiko.SSHException as exc:
            sock.close()
            if "banner" in str(exc) or "No existing session" in str(exc):
                raise self._fail(
                    f"unreachable (no SSH handshake from {target.hostname}:{target.port} "
                    f"within {t:g}s)", Cause.NO_HANDSHAKE
                ) from None
            if "known_hosts" in str(exc):
                raise self._fail(
                    f"host key for {target.hostname} is unknown; nothing was sent. "
                    + (_CA_HINT if _marked_keys(target.known_hosts, "@cert-authority") else
                       f"Check and add it once: ssh {self.host} true"), Cause.HOST_KEY_UNKNOWN
                ) from None
            raise self._fail(f"ssh failed: {exc}") from None
        except (OSError, EOFError) as exc:
            sock.close()
            raise self._fail(f"unreachable ({exc or type(exc).__name__})") from None
        revoked = _marked_keys(target.known_hosts, "@revoked")
        key = client.get_transport().get_remote_server_key()
        if (key.get_name(), key.get_base64()) in revoked:
            client.close()
            raise self._fail(
                f"host key for {target.hostname} is REVOKED (marked @revoked in known_hosts); "
                "nothing was sent. Do not trust this host until its key is replaced",
                Cause.HOST_KEY_REVOKED,
            )
        self._client = client
        return client

    def _open_socket(self, target: SshTarget) -> Any:
        """TCP (NODELAY: ~45 ms to ~3 ms per exec) or a channel through the jump host."""
        if target.proxy_jump:
            # ProxyJump a,b,c: reach the last hop through the ones before it
            *before, jump_alias = target.proxy_jump.split(",")
            self._jump = ParamikoTransport(jump_alias, via=",".join(before) if before else None)
            self._jump._hop = True
            jump_client = self._jump.connect()
            try:
                return jump_client.get_transport().open_channel(
                    "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                    timeout=target.connect_timeout,
                )
            except Exception as exc:
                raise self._fail(f"unreachable through {jump_alias} ({exc})") from None
        try:
            sock = socket.create_connection(
                (target.hostname, target.port), timeout=target.connect_timeout
            )
        except TimeoutError:
            raise self._fail(
                f"unreachable (no answer from {target.hostname}:{target.port} "
                f"within {target.connect_timeout:g}s)"
            ) from None
        except socket.gaierror as exc:
            raise self._fail(f"unknown host name {target.hostname!r} ({exc.strerror})",
                             Cause.UNKNOWN_HOST) from None
        except OSError as exc:
            raise self._fail(f"unreachable ({exc.strerror or exc})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _QuickAckSocket(sock) if hasattr(socket, "TCP_QUICKACK") else sock

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    # --- requests -------------------------------------------------------------

    def request(self, header: dict[str, Any], stream: FileBody | None = None,
                timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """Send one request (header line, then stream's bytes) to `agent-mesh rpc` on
        the peer over one channel; return its reply.

        Raises the error type the peer reported (same exit codes as local), or
        WireError for transport problems and a missing/different agent-mesh.
        """
        client = self.connect()
        payload = encode_header(header)
        try:
            channel = client.get_transport().open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(REMOTE_COMMAND)
            channel.sendall(payload)
            if stream is not None:
                try:
                    for chunk in stream.chunks():
                        channel.sendall(chunk)
                except (OSError, EOFError):
                    pass  # the peer answered without reading it all (a refusal): read why
            if not channel.closed and not header.get("hold"):  # hold: EOF says we are gone
                channel.shutdown_write()
            chunks: list[bytes] = []
            size = 0
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if size > MAX_REPLY:
                    raise self._fail("reply too large")
            # A complete reply is enough; waiting for the exit status costs the
            # peer's interpreter teardown. Only an empty reply needs the status.
            status = channel.recv_exit_status() if not chunks else 0
            channel.close()
        except (WireError, UsageError):
            raise
        except (OSError, EOFError, TimeoutError) as exc:
            self.close()
            raise self._fail(f"connection lost ({exc or type(exc).__name__})") from None
        except Exception as exc:
            self.close()
            raise self._fail(f"ssh failed: {exc}") from None
        return self._decode_reply(b"".join(chunks), status)

    def call(self, request: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """A request without a body (kept for callers of protocol 1's name)."""
        return self.request(request, timeout=timeout)

    def _decode_reply(self, raw: bytes, status: int) -> dict[str, Any]:
        return decode_reply(self.host, raw, status)
