"""A lab of real hosts for cross-host tests, built from Linux network namespaces.

Each lab host is a network namespace with its own address, its own sshd, its own Unix user
(distinct uid, HOME, ~/.ssh with keys, aliases and known_hosts for every lab host) and its
own tmux server. Hosts are joined by one bridge living in a private "switch" namespace, so
the lab never touches the root namespace's network and concurrent labs cannot collide.

Everything a lab creates carries its unique prefix (``am`` + 4 hex digits): namespaces
``<prefix>-sw`` / ``<prefix>-hN``, users ``<prefix>hN``, the directory
``/var/tmp/agent-mesh-lab/<prefix>``. A registry record names the owning process, so a later
run can clean up after a crashed one without touching anything else.

Needs root, ``ip``, ``sshd``, ``ssh``, ``ssh-keygen``, ``tmux``, ``useradd``, ``setpriv`` and
Debian's ``/usr/bin/python3`` with ``venv``; ``lab_available()`` says what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
LAB_ROOT = Path("/var/tmp/agent-mesh-lab")
REGISTRY = LAB_ROOT / "registry"
VENVS = LAB_ROOT / "venvs"
SYSTEM_PYTHON = "/usr/bin/python3"
SSHD = "/usr/sbin/sshd"
SUBNET = "10.231"
FIRST_HOST_OCTET = 11
PREFIX_RE = re.compile(r"^am[0-9a-f]{4}$")
KEEP_VENVS = 3
REQUIRED_TOOLS = ("ip", "ssh", "ssh-keygen", "tmux", "useradd", "userdel", "setpriv")


class LabUnavailable(Exception):
    """The lab cannot run here; the message is the reason to skip with."""


def _sh(
    argv: list[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a root-side command, raising with its stderr so failures explain themselves."""
    cp = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env, cwd=cwd)
    if check and cp.returncode != 0:
        raise RuntimeError(
            f"lab command failed ({cp.returncode}): {' '.join(argv)}\n"
            f"{cp.stderr.decode(errors='replace')}{cp.stdout.decode(errors='replace')}"
        )
    return cp


def _keygen(path: str, comment: str) -> None:
    """A new passphrase-less ed25519 key pair at path (and path.pub)."""
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def _write(path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    path.write_text(text)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, *owner)


# ---------------------------------------------------------------- availability


def lab_available() -> str | None:
    """Return None when a lab can be built here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, useradd, sshd)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if not os.access(SSHD, os.X_OK):
        missing.append(SSHD + " (apt-get install openssh-server)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        missing.append(SYSTEM_PYTHON)
    if missing:
        return "lab needs missing tools: " + ", ".join(missing)
    cp = _sh([SYSTEM_PYTHON, "-c", "import venv, ensurepip"], check=False)
    if cp.returncode != 0:
        return f"{SYSTEM_PYTHON} lacks venv/ensurepip (apt-get install python3-venv)"
    probe = f"amprobe{os.getpid()}"
    try:
        for argv in (
            ["ip", "netns", "add", probe],
            ["ip", "-n", probe, "link", "add", "b0", "type", "bridge"],
            ["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
        ):
            cp = _sh(argv, check=False, timeout=10)
            if cp.returncode != 0:
                return (
                    f"network namespaces not usable here: {' '.join(argv)}: "
                    f"{cp.stderr.decode(errors='replace').strip()}"
                )
    finally:
        _sh(["ip", "netns", "del", probe], check=False, timeout=10)
    return None


# ---------------------------------------------------------------- venv


def _tree_hash() -> str:
    """Hash what a non-editable install copies, plus the interpreter, to key the venv cache."""
    h = hashlib.sha256()
    h.update(_sh([SYSTEM_PYTHON, "-VV"]).stdout)
    for rel in _install_files():
        h.update(str(rel).encode() + b"\0" + (REPO / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _install_files() -> list[Path]:
    files = [
        p
        for p in REPO.iterdir()
        if p.is_file()
        and (
            p.name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")
            or p.name.startswith(("README", "LICENSE"))
        )
    ]
    pkg = REPO / "agent_mesh"
    if pkg.is_dir():
        files += [
            p
            for p in pkg.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
        ]
    return sorted(p.relative_to(REPO) for p in files)


def _console_scripts() -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return sorted(data.get("project", {}).get("scripts", {}))


def _prune_venvs(keep: Path) -> None:
    """Drop cached venvs beyond the newest few, skipping any a running lab holds."""
    marked = sorted(
        (p for p in VENVS.glob("*/.lab-complete")), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for marker in marked[KEEP_VENVS:]:
        venv = marker.parent
        if venv == keep:
            continue
        with open(venv.with_suffix(".lock"), "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            # The (empty) lock file stays: unlinking it would race with a waiting opener.
            shutil.rmtree(venv, ignore_errors=True)


def ensure_venv() -> tuple[Path, IO[str]]:
    """Build (or reuse) a world-readable venv with the repo installed non-editable.

    Lab users cannot read /root's pyenv pythons or the checkout, so the package is installed
    into a venv made from Debian's python under /var/tmp. The venv is keyed by a hash of the
    installed sources and reused while they are unchanged. Returns the venv and an open lock
    file holding a shared lock, so a concurrent run never prunes a venv in use.
    """
    VENVS.mkdir(parents=True, exist_ok=True)
    for d in (LAB_ROOT, VENVS):
        d.chmod(0o755)
    venv = VENVS / _tree_hash()
    lock = open(venv.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the lab's lifetime
    marker = venv / ".lab-complete"
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)  # a complete venv only needs a shared hold
        if not marker.exists():
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                shutil.rmtree(venv, ignore_errors=True)
                _build_venv(venv)
                marker.write_text(time.strftime("%F %T\n"))
            fcntl.flock(lock, fcntl.LOCK_SH)
        os.utime(marker)
        _prune_venvs(keep=venv)
    except BaseException:
        lock.close()
        raise
    return venv, lock


def _build_venv(venv: Path) -> None:
    _sh([SYSTEM_PYTHON, "-m", "venv", str(venv)], timeout=120)
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=VENVS))
    try:
        # Build from a copy: pip builds in-tree and would leave build/ and *.egg-info behind.
        for rel in _install_files():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, stage / rel)
        cp = _sh(
            [str(venv / "bin" / "pip"), "install", "--no-input", "-q", str(stage)],
            check=False,
            timeout=600,
        )
        if cp.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(
                "lab venv: pip install of the repo failed:\n"
                + cp.stderr.decode(errors="replace")[-4000:]
            )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for root, dirs, files in os.walk(venv):
        for n in dirs + files:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.path.isdir(p) else 0))


# ---------------------------------------------------------------- process helpers


def _start_time(pid: int) -> str | None:
    """The kernel start time of a pid, to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _ns_pids(ns: str) -> list[int]:
    cp = _sh(["ip", "netns", "pids", ns], check=False, timeout=10)
    return [int(x) for x in cp.stdout.split()]


def _uid_pids(uids: set[int]) -> list[int]:
    """Live processes with any of `uids` as real/effective/saved/fs uid.

    Zombies are skipped: they are already dead, and this machine's pid 1 reaps
    reparented daemons (tmux servers) only after a while.
    """
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").split()[:1] in (["Z"], ["X"]):
            continue
        if uids & {int(x) for x in fields.get("Uid", "").split()}:
            out.append(int(d))
    return out


def _kill_all(find: Any, grace: float = 2.0) -> None:
    """SIGTERM what find() returns, then SIGKILL survivors; find is re-run each round."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        pids = [p for p in find() if p != os.getpid()]
        if not pids:
            return
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and [p for p in find() if p != os.getpid()]:
            time.sleep(0.05)


def _teardown(prefix: str, labdir: Path | None) -> list[str]:
    """Remove every namespace, user and file of lab `prefix`; return the errors met."""
    assert PREFIX_RE.match(prefix), prefix
    errors: list[str] = []
    nss = [
        n
        for n in _sh(["ip", "netns", "list"], check=False).stdout.decode().split()
        if n.startswith(prefix + "-")
    ]
    users = [p for p in pwd.getpwall() if re.fullmatch(re.escape(prefix) + r"h\d+", p.pw_name)]
    uids = {p.pw_uid for p in users}
    # Everything running inside the lab's namespaces or as its users was started by the lab.
    _kill_all(lambda: [p for ns in nss for p in _ns_pids(ns)])
    if uids:
        _kill_all(lambda: _uid_pids(uids))
    for p in users:
        # -f: a zombie of the user's (not yet reaped by pid 1) would make userdel refuse.
        cp = _sh(["userdel", "-f", "-r", p.pw_name], check=False)
        if cp.returncode not in (0, 12) and p.pw_name in {q.pw_name for q in pwd.getpwall()}:
            errors.append(f"userdel {p.pw_name}: {cp.stderr.decode(errors='replace').strip()}")
    for ns in nss:
        cp = _sh(["ip", "netns", "del", ns], check=False)
        if cp.returncode != 0:
            errors.append(f"ip netns del {ns}: {cp.stderr.decode(errors='replace').strip()}")
    if labdir is not None and labdir.name == prefix:
        shutil.rmtree(labdir, ignore_errors=True)
        if labdir.exists():
            errors.append(f"could not remove {labdir}")
    if not errors:
        (REGISTRY / f"{prefix}.json").unlink(missing_ok=True)
    return errors


def cleanup_stale_labs() -> list[str]:
    """Tear down labs whose recorded owner process is gone; return their prefixes.

    Only prefixes with a registry record are touched, and only names built from them.
    """
    cleaned = []
    for rec in sorted(REGISTRY.glob("am*.json")) if REGISTRY.is_dir() else []:
        prefix = rec.stem
        if not PREFIX_RE.match(prefix):
            continue
        try:
            data = json.loads(rec.read_text())
        except (OSError, ValueError):
            continue
        pid, started = int(data.get("pid", 0)), data.get("pid_start")
        if pid > 0 and _start_time(pid) == started:
            continue  # owner alive
        labdir = Path(data["labdir"]) if data.get("labdir") else None
        errors = _teardown(prefix, labdir)
        if errors:
            warnings.warn(f"stale lab {prefix}: " + "; ".join(errors), stacklevel=2)
        cleaned.append(prefix)
    return cleaned


# ---------------------------------------------------------------- lab


@dataclass
class LabHost:
    """One lab host: a namespace with its own address, user, sshd and tmux server."""

    name: str
    ns: str
    ip: str
    user: str
    uid: int
    home: Path
    tmux_tmpdir: Path
    gid: int = 0
    hostdir: Path = field(default=Path(), repr=False)
    venv: Path = field(default=Path(), repr=False)
    has_agent_mesh: bool = True
    sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean login-like environment; no TMUX/TMUX_PANE so nothing looks 'inside tmux'."""
        path = [str(self.home / ".local/bin")]
        if self.has_agent_mesh:
            path.append(str(self.venv / "bin"))
        path += ["/usr/local/bin", "/usr/bin", "/bin"]
        e = {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/bash",
            "PATH": ":".join(path),
            "LANG": "C.UTF-8",
            "TMUX_TMPDIR": str(self.tmux_tmpdir),
            # where ssh control sockets go when ~/.agents/cm is too long a path: inside
            # the lab, removed with it (else /tmp/agent-mesh-cm-<uid> would stay behind)
            "XDG_RUNTIME_DIR": str(self.tmux_tmpdir),
        }
        e.update(extra or {})
        return e

    def run(
        self,
        argv: list[str],
        input: bytes | None = None,
        timeout: float = 30,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run argv as this host's user inside its namespace; env adds to env()."""
        full = [
            "ip",
            "netns",
            "exec",
            self.ns,
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "env",
            "-i",
            "--",
            *(f"{k}={v}" for k, v in self.env(env).items()),
            *argv,
        ]
        cp = subprocess.run(full, input=input, capture_output=True, timeout=timeout, cwd=self.home)
        if check and cp.returncode != 0:
            raise RuntimeError(
                f"{self.name}$ {' '.join(argv)} -> {cp.returncode}\n"
                f"{cp.stderr.decode(errors='replace')}"
            )
        return cp

    def tmux(
        self, *args: str, input: bytes | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        """A tmux command against this host's own server."""
        return self.run(["tmux", *args], input=input, check=check)


class Lab:
    """N lab hosts h1..hN; use as a context manager or start()/stop()."""

    def __init__(
        self,
        n_hosts: int = 3,
        workdir: Path | None = None,
        missing_agent_mesh: Iterable[str] = frozenset(),
    ) -> None:
        if not 1 <= n_hosts <= 200:
            raise ValueError("n_hosts must be 1..200")
        self.n_hosts = n_hosts
        self.workdir = Path(workdir) if workdir else LAB_ROOT
        self.missing_agent_mesh = set(missing_agent_mesh)
        self.hosts: dict[str, LabHost] = {}
        self.venv = Path()
        self.prefix = ""
        self.labdir = Path()
        self.switch_ns = ""
        self.timings: dict[str, float] = {}
        self._venv_lock: IO[str] | None = None
        self._started = False

    # -- lifecycle

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Lab:
        """Build the lab; on any failure, tear down what was built and re-raise."""
        reason = lab_available()
        if reason:
            raise LabUnavailable(reason)
        t0 = time.monotonic()
        cleanup_stale_labs()
        self._started = True
        atexit.register(self.stop)
        try:
            self._lap("stale-cleanup", t0)
            self._claim_prefix()
            t = time.monotonic()
            self.venv, self._venv_lock = ensure_venv()
            self._lap("venv", t)
            t = time.monotonic()
            self._build_network()
            self._lap("network", t)
            t = time.monotonic()
            self._build_users()
            self._lap("users+keys", t)
            t = time.monotonic()
            for h in self.hosts.values():
                self._start_sshd(h)
            for h in self.hosts.values():
                self._wait_sshd(h)
            self._lap("sshd", t)
            t = time.monotonic()
            for h in self.hosts.values():
                h.tmux("new-session", "-d", "-s", "main", "-x", "200", "-y", "50", check=True)
            self._lap("tmux", t)
        except BaseException:
            self.stop()
            raise
        self._lap("start", t0)
        return self

    def stop(self) -> None:
        """Tear everything down; idempotent, and only ever touches this lab's prefix."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        t0 = time.monotonic()
        errors: list[str] = []
        for h in self.hosts.values():
            if h.uid >= 0:
                with contextlib.suppress(Exception):
                    h.run(["tmux", "kill-server"], timeout=5)
            self._stop_sshd(h)
        if self.prefix:
            errors = _teardown(self.prefix, self.labdir)
        if self._venv_lock is not None:
            self._venv_lock.close()
            self._venv_lock = None
        self._lap("stop", t0)
        if errors:
            warnings.warn("lab teardown: " + "; ".join(errors), stacklevel=2)

    def _lap(self, what: str, since: float) -> None:
        self.timings[what] = round(time.monotonic() - since, 3)

    def _claim_prefix(self) -> None:
        """Pick an unused prefix and record our ownership before creating anything."""
        REGISTRY.mkdir(parents=True, exist_ok=True)
        LAB_ROOT.chmod(0o755)
        taken = set(_sh(["ip", "netns", "list"], check=False).stdout.decode().split())
        users = {p.pw_name for p in pwd.getpwall()}
        for _ in range(100):
            prefix = "am" + secrets.token_hex(2)
            rec = REGISTRY / f"{prefix}.json"
            if (
                any(n.startswith(prefix + "-") for n in taken)
                or any(u.startswith(prefix) for u in users)
                or (self.workdir / prefix).exists()
            ):
                continue
            try:
                fd = os.open(rec, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            self.prefix = prefix
            self.labdir = self.workdir / prefix
            with os.fdopen(fd, "w") as f:
                json.dump(
                    {
                        "prefix": prefix,
                        "pid": os.getpid(),
                        "pid_start": _start_time(os.getpid()),
                        "labdir": str(self.labdir),
                        "created": time.time(),
                    },
                    f,
                )
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.labdir.mkdir(mode=0o755)
            self.labdir.chmod(0o755)
            return
        raise RuntimeError("no free lab prefix")

    # -- network

    def _build_network(self) -> None:
        third = int(self.prefix[2:], 16) % 256
        self.switch_ns = sw = f"{self.prefix}-sw"
        _sh(["ip", "netns", "add", sw])
        _sh(["ip", "-n", sw, "link", "set", "lo", "up"])
        _sh(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        _sh(["ip", "-n", sw, "link", "set", "br0", "up"])
        for k in range(1, self.n_hosts + 1):
            name = f"h{k}"
            ns = f"{self.prefix}-{name}"
            ip = f"{SUBNET}.{third}.{FIRST_HOST_OCTET + k - 1}"
            _sh(["ip", "netns", "add", ns])
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            _sh(
                [
                    "ip",
                    "-n",
                    sw,
                    "link",
                    "add",
                    self._port(name),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    ns,
                ]
            )
            _sh(["ip", "-n", sw, "link", "set", self._port(name), "master", "br0", "up"])
            _sh(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
            hostdir = self.labdir / name
            hostdir.mkdir(mode=0o755)
            self.hosts[name] = LabHost(
                name=name,
                ns=ns,
                ip=ip,
                user=f"{self.prefix}{name}",
                uid=-1,
                home=hostdir / "home",
                tmux_tmpdir=hostdir / "tmux",
                hostdir=hostdir,
                venv=self.venv,
                has_agent_mesh=name not in self.missing_agent_mesh,
            )

    def _port(self, name: str) -> str:
        """The bridge-side veth of a host (inside the switch namespace, ≤ 15 chars)."""
        return f"{self.prefix}{name}"

    def partition(self, name: str) -> None:
        """Cut a host off the lab network (its bridge port goes down)."""
        _sh(["ip", "-n", self.switch_ns, "link", "set", self._port(name), "down"])

    def heal(self, name: str) -> None:
        """Reconnect a partitioned host."""
        _sh(["ip", "-n", self.switch_ns, "link", "set", self._port(name), "up"])

    # -- users and keys

    def _build_users(self) -> None:
        for h in self.hosts.values():
            _sh(
                [
                    "useradd",
                    "--create-home",
                    "--home-dir",
                    str(h.home),
                    "--shell",
                    "/bin/bash",
                    "--user-group",
                    "--password",
                    "*",
                    h.user,
                ]
            )
            pw = pwd.getpwnam(h.user)
            h.uid, h.gid = pw.pw_uid, pw.pw_gid
            h.home.chmod(0o755)
            h.tmux_tmpdir.mkdir(mode=0o700)
            os.chown(h.tmux_tmpdir, h.uid, h.gid)
            ssh = h.home / ".ssh"
            ssh.mkdir(mode=0o700)
            _keygen(str(ssh / "id_ed25519"), f"{h.user}@{h.name}")
            _keygen(str(h.hostdir / "ssh_host_ed25519_key"), f"host-{h.name}")
        uids = [h.uid for h in self.hosts.values()]
        assert len(set(uids)) == len(uids), f"lab uids not distinct: {uids}"
        pubkeys = "".join((h.home / ".ssh/id_ed25519.pub").read_text() for h in self.hosts.values())
        config = "".join(
            f"Host {h.name}\n    HostName {h.ip}\n    User {h.user}\n"
            "    IdentityFile ~/.ssh/id_ed25519\n    IdentitiesOnly yes\n"
            "    UserKnownHostsFile ~/.ssh/known_hosts\n    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n    ConnectTimeout 3\n\n"
            for h in self.hosts.values()
        )
        known = "".join(self._known_hosts_line(h) for h in self.hosts.values())
        peers = "".join(f"{n}\n" for n in self.hosts)
        scripts = _console_scripts()
        for h in self.hosts.values():
            own = (h.uid, h.gid)
            ssh = h.home / ".ssh"
            _write(ssh / "authorized_keys", pubkeys, 0o600, own)
            _write(ssh / "config", config, 0o600, own)
            _write(ssh / "known_hosts", known, 0o644, own)
            for p in ssh.iterdir():
                os.chown(p, *own)
            os.chown(ssh, *own)
            agents = h.home / ".agents"
            agents.mkdir()
            _write(agents / "self.conf", f"{h.name}\n", 0o644, own)
            _write(agents / "peers.conf", peers, 0o644, own)
            # Force and spawn are off for peers by default (issue 18): the lab's hosts
            # grant them, as every host did before; tests/test_trust_lab.py takes it back.
            _write(agents / "config.toml", "[peers]\nforce = true\nspawn = true\n", 0o644, own)
            os.chown(agents, *own)
            local_bin = h.home / ".local" / "bin"
            local_bin.mkdir(parents=True)
            for d in (h.home / ".local", local_bin):
                os.chown(d, *own)
            if h.has_agent_mesh:
                for s in scripts:
                    if (self.venv / "bin" / s).exists():
                        (local_bin / s).symlink_to(self.venv / "bin" / s)
                        os.lchown(local_bin / s, *own)
                self.write_rpc_launcher(h)
                from agent_mesh.ops.setup import LAUNCHED

                for name in LAUNCHED:
                    self.write_command_launcher(h, name)

    def write_command_launcher(self, h: LabHost, name: str) -> None:
        """~/.local/bin/NAME -> ~/.local/share/agent-mesh/NAME for notify-pane and
        agent-mesh, as `agent-mesh setup` links them (python -I -S launchers; issue 20)."""
        from agent_mesh.ops.setup import command_launcher_text

        site = next((self.venv / "lib").glob("python3*/site-packages"))
        text = command_launcher_text(name, str(self.venv / "bin" / "python"), [str(site)],
                                     str(self.venv / "bin" / name))
        assert text is not None
        launcher = h.home / ".local" / "share" / "agent-mesh" / name
        _write(launcher, text, 0o755, (h.uid, h.gid))
        link = h.home / ".local" / "bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(launcher)
        os.lchown(link, h.uid, h.gid)

    def write_rpc_launcher(self, h: LabHost) -> None:
        """~/.local/share/agent-mesh/rpc, as `agent-mesh setup` writes it for the venv."""
        from agent_mesh.ops.setup import rpc_launcher_text

        site = next((self.venv / "lib").glob("python3*/site-packages"))
        text = rpc_launcher_text(str(self.venv / "bin" / "python"), [str(site)])
        assert text is not None
        share = h.home / ".local" / "share" / "agent-mesh"
        share.mkdir(parents=True, exist_ok=True)
        for d in (h.home / ".local" / "share", share):
            os.chown(d, h.uid, h.gid)
        _write(share / "rpc", text, 0o755, (h.uid, h.gid))

    def _known_hosts_line(self, h: LabHost) -> str:
        kt, key = (h.hostdir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{h.ip} {kt} {key}\n"

    def _host(self, name_or_user: str) -> LabHost:
        for h in self.hosts.values():
            if name_or_user in (h.name, h.user):
                return h
        raise KeyError(name_or_user)

    def forget_host_key(self, of_user: str, host: str) -> None:
        """Remove `host`'s key from the known_hosts of `of_user` (a host name or user name)."""
        kh = self._host(of_user).home / ".ssh/known_hosts"
        ip = self._host(host).ip
        lines = kh.read_text().splitlines(keepends=True)
        kh.write_text("".join(x for x in lines if x.split(" ", 1)[0].split(",")[0] != ip))

    def replace_host_key(self, host: str) -> None:
        """Give `host` a new sshd key and restart its sshd; known_hosts are left stale."""
        h = self._host(host)
        self._stop_sshd(h)
        for suffix in ("", ".pub"):
            (h.hostdir / f"ssh_host_ed25519_key{suffix}").unlink(missing_ok=True)
        _keygen(str(h.hostdir / "ssh_host_ed25519_key"), f"host-{h.name}")
        self._start_sshd(h)
        self._wait_sshd(h)

    def host_key_line(self, host: str) -> str:
        """The current known_hosts line for `host` (e.g. to re-trust it after a replace)."""
        return self._known_hosts_line(self._host(host))

    def kill_ssh_sessions(self, host: str) -> int:
        """SIGKILL every SSH connection `host`'s sshd serves (not the listener), as a
        reboot or a dropped NAT entry would end them; returns how many."""
        h = self._host(host)
        killed = 0
        for pid in _ns_pids(h.ns):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"sshd: ") and b"[listener]" not in title and b"-D" not in title:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
        return killed

    def restart_sshd(self, host: str) -> None:
        """Stop and start `host`'s sshd listener (connections it serves survive)."""
        h = self._host(host)
        self._stop_sshd(h)
        self._start_sshd(h)
        self._wait_sshd(h)

    # -- sshd

    def _start_sshd(self, h: LabHost) -> None:
        conf = h.hostdir / "sshd_config"
        _write(
            conf,
            "\n".join(
                [
                    f"ListenAddress {h.ip}",
                    "Port 22",
                    f"HostKey {h.hostdir}/ssh_host_ed25519_key",
                    f"PidFile {h.hostdir}/sshd.pid",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "AuthorizedKeysFile .ssh/authorized_keys",
                    "StrictModes yes",
                    "PermitRootLogin no",
                    f"AllowUsers {h.user}",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "UseDNS no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    # ssh sessions must reach this host's lab tmux server, not /tmp/tmux-UID.
                    f"SetEnv TMUX_TMPDIR={h.tmux_tmpdir}",
                    "LogLevel VERBOSE",
                    "",
                ]
            ),
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        (h.hostdir / "sshd.pid").unlink(missing_ok=True)
        h.sshd = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                h.ns,
                SSHD,
                "-D",
                "-f",
                str(conf),
                "-E",
                str(h.hostdir / "sshd.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_sshd(self, h: LabHost, timeout: float = 10) -> None:
        """sshd writes its pid file only after binding its listen socket."""
        deadline = time.monotonic() + timeout
        assert h.sshd is not None
        while not (h.hostdir / "sshd.pid").exists():
            if h.sshd.poll() is not None or time.monotonic() > deadline:
                log = h.hostdir / "sshd.log"
                raise RuntimeError(
                    f"sshd on {h.name} did not start:\n" + (log.read_text() if log.exists() else "")
                )
            time.sleep(0.01)

    def _stop_sshd(self, h: LabHost) -> None:
        if h.sshd is None:
            return
        if h.sshd.poll() is None:
            h.sshd.terminate()
            try:
                h.sshd.wait(5)
            except subprocess.TimeoutExpired:
                h.sshd.kill()
                h.sshd.wait(5)
        h.sshd = None
