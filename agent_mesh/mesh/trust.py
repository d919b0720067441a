"""Mesh keys (issue 18): a dedicated key per host that can do nothing but agent-mesh.

`trust init` makes ~/.agents/mesh_ed25519 (0600). `trust add ALIAS` installs its public
half on ALIAS as

    restrict,command="<ALIAS's rpc launcher> --peer <me>" ssh-ed25519 AAAA… agent-mesh:<me>

over the user's own SSH access (once, visibly): the peer's own agent-mesh writes the
line (`trust authorize`, atomic and locked), since only it knows where its launcher
lives. `trust remove ALIAS` has the peer take exactly that line out again (`trust
revoke`), restoring its authorized_keys byte for byte. ~/.agents/mesh-key.peers lists
the peers reached with the key: both transports then offer only that key
(IdentitiesOnly) and keep every other ~/.ssh/config setting.

On the peer, sshd runs the forced command whatever the client asked for; `rpc --peer X`
(mesh/rpc.py) answers only agent-mesh requests and knows the caller is X. `restrict`
forbids forwarding, so the per-peer rpc server (a forwarded Unix socket, mesh/openssh.py)
is not used over a mesh key: OpenSSH offers no way to allow only one socket
(`permitopen` covers TCP only, and re-enabling forwarding would open the peer's tmux
socket to the key). Each request runs the launcher through the control master instead.

The lookups on the message path are in mesh/meshkey.py; the rest is `trust`'s.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import UsageError, WireError
from agent_mesh.mesh.meshkey import key_path, peers_path, trusted_peers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

COMMENT_PREFIX = "agent-mesh:"
# What the peer runs for `trust authorize` / `trust revoke` over the user's login access:
# its own agent-mesh, found as wire.REMOTE_COMMAND finds it; the data goes on stdin.
_PEER_AGENT_MESH = ('p="$HOME/.local/bin/agent-mesh"; [ -x "$p" ] || p="$(command -v agent-mesh)"'
                    ' || exit 127; exec "$p" trust {verb}')


def _set_trusted(alias: str, on: bool) -> None:
    from agent_mesh.fsutil import atomic_write, locked

    with locked(os.path.join(paths.locks_dir(), "mesh-key.peers.lock")):
        peers = [p for p in trusted_peers() if p != alias] + ([alias] if on else [])
        atomic_write(peers_path(), "".join(f"{p}\n" for p in peers).encode(), 0o644)


# --- this host's key -----------------------------------------------------------------


def public_key() -> str:
    """`ssh-ed25519 AAAA…` of the mesh key (without its comment)."""
    try:
        with open(key_path() + ".pub", encoding="utf-8") as fh:
            words = fh.read().split()
    except FileNotFoundError:
        raise UsageError("no mesh key yet: run `agent-mesh trust init` first") from None
    if len(words) < 2 or words[0] != "ssh-ed25519":
        raise UsageError(f"{key_path()}.pub is not an ed25519 public key")
    return f"{words[0]} {words[1]}"


def init() -> tuple[str, bool]:
    """Create the mesh key if there is none; (its path, whether it was made now)."""
    import subprocess

    from agent_mesh.fsutil import make_dirs
    from agent_mesh.registry.naming import self_alias

    path = key_path()
    if os.path.exists(path):
        os.chmod(path, 0o600)
        public_key()  # a broken .pub is reported now
        return path, False
    make_dirs(paths.agents_dir())
    try:
        out = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                              f"{COMMENT_PREFIX}{self_alias()}", "-f", path],
                             capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError("ssh-keygen not found (install the OpenSSH client)") from None
    if out.returncode != 0:
        raise UsageError(f"ssh-keygen failed: {out.stderr.decode('utf-8', 'replace').strip()}")
    os.chmod(path, 0o600)
    return path, True


# --- the authorized_keys line (built and edited on the peer) -------------------------


def check_alias(alias: str) -> str:
    from agent_mesh.registry.naming import valid_alias

    if not valid_alias(alias):
        raise UsageError(f"invalid host alias {alias!r}")
    return alias


def forced_command(caller: str) -> str:
    """What this host runs for a request that comes with caller's mesh key: the rpc
    launcher `agent-mesh setup` writes (python -I -S: the fast path), else agent-mesh."""
    launcher = paths.rpc_launcher()
    if os.access(launcher, os.X_OK):
        program = launcher
    else:
        import shutil

        found = os.path.join(paths.home(), ".local", "bin", "agent-mesh")
        if not os.access(found, os.X_OK):
            found = shutil.which("agent-mesh") or ""
        if not found:
            raise UsageError("agent-mesh is not installed here (run install.sh)")
        program = f"{found} rpc"
    if any(ch in program for ch in "\"\\ \t\n$`'"):
        raise UsageError(f"{program!r}: a path with spaces or quotes cannot go in a forced command")
    return f"{program} --peer {check_alias(caller)}"


def authorized_line(key: str, caller: str) -> str:
    words = key.split()
    if len(words) != 2 or words[0] != "ssh-ed25519" or not all(
            ch.isalnum() or ch in "+/=" for ch in words[1]):
        raise UsageError("not an ed25519 public key")
    return (f'restrict,command="{forced_command(caller)}" {words[0]} {words[1]} '
            f"{COMMENT_PREFIX}{check_alias(caller)}")


def authorized_keys() -> str:
    """This host's authorized_keys (the real file behind a symlink)."""
    return os.path.realpath(os.path.join(paths.home(), ".ssh", "authorized_keys"))


NEWLINE_MARK = b" +nl"  # on our line when we added the newline the file lacked before it


def _ours(line: bytes, caller: str) -> bool:
    """Is this line caller's mesh key line (with or without our newline mark)? caller '':
    any host's."""
    text = line.rstrip(b"\r\n").removesuffix(NEWLINE_MARK)
    if not text.startswith(b"restrict,command="):
        return False
    if not caller:
        return f" {COMMENT_PREFIX}".encode() in text
    return text.endswith(f" {COMMENT_PREFIX}{caller}".encode())


def _edit(change: Callable[[bytes], bytes | None]) -> bool:
    """Rewrite authorized_keys with change(old) under a lock, atomically, keeping its mode;
    change returns None for "nothing to do". Whether it changed."""
    from agent_mesh.fsutil import atomic_write, locked, make_dirs

    path = authorized_keys()
    with locked(os.path.join(paths.locks_dir(), "authorized_keys.lock")):
        try:
            with open(path, "rb") as fh:
                old = fh.read()
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            old, mode = b"", 0o600
            make_dirs(os.path.dirname(path))
            os.chmod(os.path.dirname(path), 0o700)
        new = change(old)
        if new is None:
            return False
        atomic_write(path, new, mode)
        return True


def authorize(caller: str, key: str) -> tuple[str, bool]:
    """On the peer: install caller's mesh key line (replacing an older one of caller's);
    (the line, whether the file changed)."""
    line = authorized_line(key, caller).encode()

    def change(old: bytes) -> bytes | None:
        lines = old.splitlines(keepends=True)
        for i, existing in enumerate(lines):
            if _ours(existing, caller):  # once: the same line stays, an older one is replaced
                bare = existing.rstrip(b"\r\n")
                mark = NEWLINE_MARK if bare.endswith(NEWLINE_MARK) else b""
                if bare == line + mark:
                    return None
                lines[i] = line + mark + existing[len(bare):]
                return b"".join(lines)
        # A file without a final newline gets one of ours, marked so revoke takes it too.
        joiner = b"\n" if old and not old.endswith(b"\n") else b""
        return old + joiner + line + (NEWLINE_MARK if joiner else b"") + b"\n"

    return line.decode(), _edit(change)


def revoke(caller: str) -> bool:
    """On the peer: remove caller's mesh key line, and the newline it added, if any."""
    check_alias(caller)

    def change(old: bytes) -> bytes | None:
        lines = old.splitlines(keepends=True)
        for i, ln in enumerate(lines):
            if not _ours(ln, caller):
                continue
            rest = lines[i + 1:]
            if ln.rstrip(b"\r\n").endswith(NEWLINE_MARK):  # we added the newline before it
                if not rest and i and lines[i - 1].endswith(b"\n"):
                    lines[i - 1] = lines[i - 1][:-1]
                elif rest and _ours(rest[0], "") and not rest[0].rstrip(b"\r\n").endswith(
                        NEWLINE_MARK):  # the next line, another host's, carries it on
                    bare = rest[0].rstrip(b"\r\n")
                    rest[0] = bare + NEWLINE_MARK + rest[0][len(bare):]
            return b"".join(lines[:i] + rest)
        return None

    return _edit(change)


def installed_for(caller: str) -> bool:
    try:
        with open(authorized_keys(), "rb") as fh:
            return any(_ours(ln, caller) for ln in fh)
    except FileNotFoundError:
        return False


# --- from this host, over the user's login access -------------------------------------


def _login_ssh(alias: str, verb: str, data: str) -> str:
    """Run the peer's `agent-mesh trust VERB` over the user's own ssh (a prompt may show:
    this is the one visible use of the login access); its stdout."""
    import subprocess

    from agent_mesh.mesh.sshclient import ssh_client

    ssh = ssh_client()
    if ssh is None:
        raise WireError("no ssh client on PATH: print the line with --print and add it by hand")
    try:
        out = subprocess.run([ssh, "-T", "-o", "ControlPath=none", "--", alias,
                              _PEER_AGENT_MESH.format(verb=verb)],
                             input=data.encode(), capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise WireError(f"{alias}: no answer within 120 s") from None
    err = out.stderr.decode("utf-8", "replace").strip()
    if out.returncode == 127:
        raise WireError(f"{alias}: agent-mesh is not installed there (run install.sh on it)")
    if out.returncode != 0:
        last = err.splitlines()[-1] if err else f"ssh exited with status {out.returncode}"
        raise WireError(f"{alias}: {last}")
    return out.stdout.decode("utf-8", "replace").strip()


def add(alias: str, self_host: str) -> str:
    """Install this host's mesh key on alias; the line the peer wrote."""
    check_alias(alias)
    line = _login_ssh(alias, "authorize", f"{self_host}\n{public_key()}\n")
    _set_trusted(alias, True)
    from agent_mesh.mesh import openssh

    openssh.disconnect([alias])  # a master opened with the login key must not serve on
    return line


def print_line(self_host: str) -> str:
    """The line for a peer whose authorized_keys the user edits by hand (its launcher at
    the usual place); from now on this host uses the key for that peer."""
    launcher = "~/.local/share/agent-mesh/rpc"
    words = public_key().split()
    return (f'restrict,command="{launcher} --peer {check_alias(self_host)}" '
            f"{words[0]} {words[1]} {COMMENT_PREFIX}{self_host}")


def mark_trusted(alias: str) -> None:
    _set_trusted(check_alias(alias), True)


def remove(alias: str, self_host: str) -> bool:
    """Have alias remove our line (over the login access); stop using the key for it."""
    check_alias(alias)
    out = _login_ssh(alias, "revoke", f"{self_host}\n")
    _set_trusted(alias, False)
    from agent_mesh.mesh import openssh

    openssh.disconnect([alias])
    return out == "removed"
