"""install.sh, for real: a venv, pip from PyPI, then the venv's `agent-mesh setup` (tmux
hooks, crontab, links, PATH line), into a throwaway HOME.

One HOME is shared by the whole module (a venv and pip install cost seconds):
the `installed` fixture installs twice into it (idempotence), `uninstalled`
then removes everything, and the systemd test installs and uninstalls once more.
Tests run in file order.

Who runs install.sh: as root (CI), a throwaway Unix user made with useradd, so
its real crontab is the user's own and root's is never touched; otherwise (a
developer's machine, or no useradd) the current user, with a fake `crontab`
first on PATH that keeps the table in a file, so the real crontab is never
touched either. `systemctl` is always a fake first on PATH: it answers like a
container with no user manager, unless the test creates its `systemd-up` file
(then it succeeds and logs its arguments), so no real user manager is used.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import retry_until

from agent_mesh import __version__
from agent_mesh.mesh.wire import REMOTE_COMMAND

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"
COMMANDS = ("notify-pane", "agent-mesh", "agent-register-hook", "agent-discover",
            "agent-self-identify")
BEGIN = "# >>> agent-mesh >>>"
END = "# <<< agent-mesh <<<"
RC_MARKER = "# agent-mesh: ~/.local/bin on PATH"
CRON_MARKER = "# agent-mesh resync"
PASS_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_TRUSTED_HOST",
            "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
            "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")

USER_TMUX_BEFORE = "# my own tmux settings\nset -g @user-before 'kept'\n"
USER_TMUX_AFTER = "set -g @user-after 'kept too'\n"
USER_RC = "# my bashrc\nalias ll='ls -l'\n"
USER_CRON = "17 3 * * * /bin/true # my own job\n"

FAKE_SYSTEMCTL = """#!/bin/sh
printf '%s\\n' "$*" >>'{dir}/systemctl.log'
[ -e '{dir}/systemd-up' ] && exit 0
echo 'Failed to connect to bus: No medium found' >&2
exit 1
"""

FAKE_CRONTAB = """#!/bin/sh
# a user crontab kept in a file, like crontab(1) does in /var/spool/cron
table='{dir}/crontab.table'
case "$1" in
  -l) if [ -f "$table" ]; then cat "$table"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -r) rm -f "$table" ;;
  -) cat >"$table" ;;
  *) echo "fake crontab: unsupported: $*" >&2; exit 2 ;;
esac
"""

FAKE_OLD_PYTHON = """#!/bin/sh
# answers install.sh's version probes like a Python 3.9
case "$*" in
  *'>= (3, 11)'*) exit 1 ;;
  *) echo 3.9.6 ;;
esac
"""


def snippet_hooks() -> list[str]:
    """The hook names tmux.conf.snippet sets, e.g. `session-created[87]` (read now: the
    snippet may change its form)."""
    names = []
    for line in (REPO / "agent_mesh/ops/data/tmux.conf.snippet").read_text().splitlines():
        match = re.match(r"""\s*set-hook\s+-g\s+['"]?([a-z-]+(?:\[\d+\])?)""", line)
        if match:
            names.append(match.group(1))
    assert names, "tmux.conf.snippet sets no hooks?"
    return names


@dataclass
class Installer:
    """Runs install.sh, tmux and crontab as the test user, with a controlled environment."""

    base: Path
    home: Path
    shims: Path
    tmux_dir: Path
    user: str | None = None  # a throwaway Unix user (when root), else the current user
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    real_crontab: bool = False
    notes: list[str] = field(default_factory=list)
    script: Path = INSTALL  # a copy the throwaway user can read, when there is one

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        dirs = [str(self.shims)]
        for tool in ("tmux", "crontab"):
            found = shutil.which(tool)
            if found and os.path.dirname(found) not in dirs:
                dirs.append(os.path.dirname(found))
        dirs += [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d not in dirs]
        env = {"HOME": str(self.home), "PATH": os.pathsep.join(dirs), "SHELL": "/bin/bash",
               "TMUX_TMPDIR": str(self.tmux_dir), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "TMPDIR": str(self.base / "tmp")}
        if self.user:
            env.update(USER=self.user, LOGNAME=self.user)
        env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
        env.update(extra or {})
        return env

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user:
            kwargs = {"user": self.uid, "group": self.gid, "extra_groups": []}
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(list(argv), env=self.env(env), capture_output=True, text=True,
                              cwd=self.base, timeout=timeout, check=False, **stdin,
                              **kwargs)  # type: ignore[call-overload]

    def install(self, *args: str, env: dict[str, str] | None = None,
                closed_stdin: bool = False) -> subprocess.CompletedProcess[str]:
        """install.sh with stdin on /dev/null (or closed), from a cwd that is not the repo."""
        if closed_stdin:
            return self.run("/bin/sh", "-c", 'exec 0<&-; exec bash "$@"', "sh",
                            str(self.script), *args, env=env, timeout=600)
        return self.run("bash", str(self.script), *args, env=env, timeout=600)

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("tmux", *args)

    def crontab(self) -> str | None:
        """The user's crontab, None when there is none."""
        result = self.run("crontab", "-l")
        return result.stdout if result.returncode == 0 else None

    def set_crontab(self, text: str) -> None:
        result = self.run("crontab", "-", input=text)
        assert result.returncode == 0, result.stderr

    def write(self, relative: str, text: str) -> Path:
        """A file in HOME, owned by the test user."""
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if self.user:
            for part in [path, *path.parents]:
                if part == self.home:
                    break
                os.chown(part, self.uid, self.gid)
        return path



def _usable_python(installer: Installer) -> str | None:
    """A Python >= 3.11 with venv + ensurepip that the test user can run."""
    candidates = ["/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or "",
                  os.path.realpath(sys.executable)]
    probe = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    for candidate in dict.fromkeys(c for c in candidates if c):
        if os.access(candidate, os.X_OK) and \
                installer.run(candidate, "-I", "-c", probe).returncode == 0:
            return candidate
    return None


def _ensure_crontab_command(installer: Installer) -> None:
    if shutil.which("crontab"):
        return
    if shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "cron"]):
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=300, check=False)
    if not shutil.which("crontab"):
        installer.notes.append("no crontab (add `cron` to scripts/test's apt list)")


def _make_installer() -> Installer:
    base = Path(tempfile.mkdtemp(prefix="aminst", dir="/tmp"))
    base.chmod(0o755)
    home, shims, tmux_dir = base / "home", base / "shims", base / "tmux"
    for d in (home, shims, tmux_dir, base / "tmp"):
        d.mkdir()
    installer = Installer(base, home, shims, tmux_dir)
    if os.geteuid() == 0 and shutil.which("useradd"):
        name = f"am{uuid.uuid4().hex[:8]}"
        made = subprocess.run(["useradd", "-M", "-U", "-d", str(home), "-s", "/bin/bash", name],
                              capture_output=True, text=True, check=False)
        if made.returncode == 0:
            entry = pwd.getpwnam(name)
            installer.user, installer.uid, installer.gid = name, entry.pw_uid, entry.pw_gid
            _ensure_crontab_command(installer)
            installer.real_crontab = bool(shutil.which("crontab"))
        else:
            installer.notes.append(f"useradd failed ({made.stderr.strip()}): fake crontab")
    if not installer.real_crontab:
        # Never the real crontab of the user running the tests.
        (shims / "crontab").write_text(FAKE_CRONTAB.format(dir=shims))
    (shims / "systemctl").write_text(FAKE_SYSTEMCTL.format(dir=shims))
    for shim in shims.iterdir():
        shim.chmod(0o755)
    if installer.user:
        # A fresh clone may sit in a 0700 directory (mktemp -d) the test user cannot
        # enter: it installs from its own copy of the checkout, as a user would.
        source = base / "src"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "tests", "bench"))
        installer.script = source / "install.sh"
        for path in [base, *base.rglob("*")]:
            os.chown(path, installer.uid, installer.gid, follow_symlinks=False)
    return installer


def _remove_installer(installer: Installer) -> None:
    installer.tmux("kill-server")
    if installer.user:
        if installer.real_crontab:
            installer.run("crontab", "-r")
        subprocess.run(["userdel", "-f", installer.user], capture_output=True, check=False)
    shutil.rmtree(installer.base, ignore_errors=True)


@dataclass
class Installed:
    env: Installer
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    alias: str
    seeded_peers: str
    tampered: Path
    seeded_modes: tuple[int, int, int]  # ~/.agents, self.conf, peers.conf after the install


def _host_alias() -> str:
    out = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or socket.gethostname().split(".")[0]


@pytest.fixture(scope="module")
def installer() -> Iterator[Installer]:
    installer = _make_installer()
    python = _usable_python(installer)
    if python is None:
        _remove_installer(installer)
        pytest.skip("no Python >= 3.11 with venv/ensurepip that the test user can run")
    (installer.shims / "python3").symlink_to(python)
    yield installer
    _remove_installer(installer)


@pytest.fixture(scope="module")
def installed(installer: Installer) -> Installed:
    """Install into a HOME holding the user's own config; then, with custom self.conf,
    peers.conf, a new user line after the tmux block and a running tmux server,
    install again with AGENT_MESH_NO_SYSTEMD=1."""
    env = installer
    env.write(".tmux.conf", USER_TMUX_BEFORE)
    env.write(".bashrc", USER_RC)
    env.write(".agent-inbox/alice/report.txt", "a file someone sent\n")
    env.set_crontab(USER_CRON)

    first = env.install()
    assert first.returncode == 0, first.stdout + first.stderr

    alias = (env.home / ".agents" / "self.conf").read_text().strip()
    seeded_peers = (env.home / ".agents" / "peers.conf").read_text()
    seeded_modes = tuple(stat.S_IMODE((env.home / ".agents" / name).stat().st_mode)
                         for name in ("", "self.conf", "peers.conf"))
    env.write(".agents/self.conf", "custom-alias\n")
    env.write(".agents/peers.conf", "# my peers\nbuildbox\n")
    with (env.home / ".tmux.conf").open("a") as fh:
        fh.write(USER_TMUX_AFTER)
    started = env.tmux("-f", "/dev/null", "new-session", "-d", "-s", "main", "-n", "lead")
    assert started.returncode == 0, started.stderr
    # A stale file in the installed package: a re-run must reinstall the code
    # even though the version number is the same.
    init = next((env.home / ".local/share/agent-mesh/venv/lib").glob(
        "python3*/site-packages/agent_mesh/__init__.py"))
    with init.open("a") as fh:
        fh.write("\nTAMPERED = True\n")

    second = env.install(env={"AGENT_MESH_NO_SYSTEMD": "1"}, closed_stdin=True)
    assert second.returncode == 0, second.stdout + second.stderr
    return Installed(env, first, second, alias, seeded_peers, init, seeded_modes)  # type: ignore[arg-type]


# --- the Python check (no install happens) ----------------------------------


def _quick(tmp_path: Path, env: dict[str, str], *args: str, script: Path = INSTALL
           ) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env}
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run([bash, str(script), *args], env=full, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)


def test_python_missing_is_a_clear_error(tmp_path: Path) -> None:
    result = _quick(tmp_path, {"AGENT_MESH_PYTHON": "/nonexistent/python3"})
    assert result.returncode == 1
    assert "AGENT_MESH_PYTHON=/nonexistent/python3 is not an executable" in result.stderr
    assert "Python 3.11 or newer" in result.stderr
    assert not (tmp_path / "home" / ".local").exists()

    # No python3 anywhere on PATH (only what install.sh needs before the check).
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("dirname", "mktemp", "rm"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    result = _quick(tmp_path, {"PATH": str(bare)})
    assert result.returncode == 1
    assert "no python3 on PATH; fix: install Python 3.11 or newer" in result.stderr


def test_python_too_old_is_a_clear_error(tmp_path: Path) -> None:
    old = tmp_path / "bin" / "python3"
    old.parent.mkdir()
    old.write_text(FAKE_OLD_PYTHON)
    old.chmod(0o755)
    result = _quick(tmp_path, {"AGENT_MESH_PYTHON": str(old)})
    assert result.returncode == 1
    assert f"{old} is Python 3.9.6 but agent-mesh needs Python >= 3.11" in result.stderr
    # The same Python found as plain `python3` on PATH.
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("dirname", "mktemp", "rm"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    (bare / "python3").symlink_to(old)
    result = _quick(tmp_path, {"PATH": str(bare)})
    assert result.returncode == 1
    assert "python3 (" in result.stderr and "is Python 3.9.6" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_runs_through_a_symlink_from_any_cwd(tmp_path: Path) -> None:
    link = tmp_path / "links" / "agent-mesh-install"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(INSTALL, link.parent))
    result = _quick(tmp_path, {"AGENT_MESH_PYTHON": "/nonexistent/python3"}, script=link)
    assert "is missing" not in result.stderr  # found its checkout
    assert "AGENT_MESH_PYTHON=/nonexistent/python3 is not an executable" in result.stderr


def test_broken_block_in_tmux_conf_stops_before_installing(tmp_path: Path) -> None:
    conf = tmp_path / "home" / ".tmux.conf"
    conf.parent.mkdir()
    broken = f"set -g @mine 1\n{BEGIN}\nset-hook -g session-created 'run-shell true'\n"
    conf.write_text(broken)
    result = _quick(tmp_path, {})
    assert result.returncode == 1
    assert "~/.tmux.conf has unbalanced" in result.stderr and "fix:" in result.stderr
    assert conf.read_text() == broken
    assert not (tmp_path / "home" / ".local").exists()


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    result = _quick(tmp_path, {}, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: ./install.sh [--uninstall | --help]")
    assert "--uninstall" in result.stdout and "AGENT_MESH_NO_SYSTEMD" in result.stdout
    result = _quick(tmp_path, {}, "--bogus")
    assert result.returncode == 2
    assert "unknown argument: --bogus" in result.stderr


# --- install, twice ------------------------------------------------------------


def test_every_step_reports_one_line(installed: Installed) -> None:
    for result in (installed.first, installed.second):
        lines = [ln for ln in result.stdout.splitlines()
                 if ln.startswith(("agent-mesh install:", "agent-mesh setup:"))]
        assert len(lines) >= 10, result.stdout
        assert "agent-mesh install: done" in result.stdout
        assert "agent-mesh doctor" in result.stdout and "agent-mesh demo" in result.stdout
        assert "peers.conf" in result.stdout and "agent-mesh sync" in result.stdout
    assert "created the virtual environment" in installed.first.stdout
    assert "kept the virtual environment" in installed.second.stdout
    assert "agent-discover:" in installed.second.stdout  # the first discovery ran


def test_venv_package_and_commands(installed: Installed) -> None:
    home = installed.env.home
    venv = home / ".local/share/agent-mesh/venv"
    assert (venv / "bin" / "python").exists()
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "version" in cfg
    site = next(venv.glob("lib/python3*/site-packages"))
    assert (site / "agent_mesh" / "__init__.py").is_file()
    # Non-editable: the code is a copy, nothing points back at the checkout.
    for pth in site.glob("*.pth"):
        assert str(REPO) not in pth.read_text(), pth
    assert not list(site.glob("__editable__*"))
    assert "TAMPERED" not in installed.tampered.read_text(), "a re-run did not reinstall"
    for name in COMMANDS:
        link = home / ".local/bin" / name
        assert link.is_symlink(), name
        if name in ("notify-pane", "agent-mesh"):  # setup's python -I -S launcher (issue 20)
            launcher = home / ".local/share/agent-mesh" / name
            assert os.readlink(link) == str(launcher)
            assert launcher.read_text().startswith(f"#!{venv / 'bin' / 'python'} -IS\n")
            continue
        assert os.readlink(link) == str(venv / "bin" / name)
        assert Path(os.path.realpath(link)).parent == Path(os.path.realpath(venv / "bin"))
    for name in ("notify-pane", "agent-mesh"):
        result = installed.env.run(str(home / ".local/bin" / name), "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout or "usage" in result.stdout


def test_hook_and_tmux_conf_files(installed: Installed) -> None:
    share = installed.env.home / ".local/share/agent-mesh"
    hook = share / "hooks" / "tmux-event"
    assert hook.read_bytes() == (REPO / "agent_mesh/ops/data/tmux-event").read_bytes()
    assert hook.stat().st_mode & stat.S_IXUSR and hook.stat().st_mode & stat.S_IXOTH
    snippet = REPO / "agent_mesh/ops/data/tmux.conf.snippet"
    assert (share / "tmux.conf").read_bytes() == snippet.read_bytes()
    # What a peer's request runs (issue 20): python -I -S from the venv, answering as rpc.
    launcher = share / "rpc"
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert launcher.read_text().splitlines()[0] == f"#!{share}/venv/bin/python -IS"
    hello = '{"op": "hello", "protocol": 2, "version": "' + __version__ + '"}\n'
    out = installed.env.run("bash", "-c", REMOTE_COMMAND, input=hello)
    assert out.returncode == 0 and '"ok": true' in out.stdout, out.stdout + out.stderr


def test_config_seeded_once_and_never_overwritten(installed: Installed) -> None:
    agents = installed.env.home / ".agents"
    assert installed.alias == _host_alias()
    assert f"wrote ~/.agents/self.conf: this host's alias is {installed.alias}" in \
        installed.first.stdout
    assert "wrote ~/.agents/peers.conf" in installed.first.stdout
    seeded = installed.seeded_peers.splitlines()
    assert seeded[-1] == installed.alias
    assert len(seeded) > 3 and all(line.startswith("#") for line in seeded[:-1])
    assert "one ssh alias per line" in installed.seeded_peers.lower()
    assert installed.seeded_modes == (0o700, 0o600, 0o600)  # private, whoever made them
    assert (agents / "self.conf").read_text() == "custom-alias\n"
    assert (agents / "peers.conf").read_text() == "# my peers\nbuildbox\n"
    assert "kept ~/.agents/self.conf (this host's alias: custom-alias)" in installed.second.stdout
    assert "kept ~/.agents/peers.conf" in installed.second.stdout


def test_tmux_conf_has_exactly_one_block_between_the_users_lines(installed: Installed) -> None:
    text = (installed.env.home / ".tmux.conf").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.startswith(USER_TMUX_BEFORE)
    assert text.endswith(END + "\n" + USER_TMUX_AFTER)
    block = text[text.index(BEGIN):text.index(END)]
    assert (REPO / "agent_mesh/ops/data/tmux.conf.snippet").read_text() in block
    assert "updated the agent-mesh block" not in installed.second.stdout
    assert "the agent-mesh block in ~/.tmux.conf is up to date" in installed.second.stdout


def test_path_line_added_once(installed: Installed) -> None:
    text = (installed.env.home / ".bashrc").read_text()
    assert text.startswith(USER_RC)
    lines = [ln for ln in text.splitlines() if RC_MARKER in ln]
    assert lines == ['export PATH="$HOME/.local/bin:$PATH"  ' + RC_MARKER]
    assert "added ~/.local/bin to PATH in ~/.bashrc" in installed.first.stdout
    assert "~/.bashrc already adds it" in installed.second.stdout


def test_running_tmux_server_gets_the_hooks_live(installed: Installed) -> None:
    env = installed.env
    assert "no tmux server running" in installed.first.stdout
    assert "loaded the hooks into the running tmux server" in installed.second.stdout
    for name in snippet_hooks():
        shown = env.tmux("show-hooks", "-g", name).stdout
        assert "/.local/share/agent-mesh/hooks/tmux-event" in shown, (name, shown)


def test_new_window_registers_through_the_installed_hook(installed: Installed) -> None:
    env = installed.env
    local = env.home / ".agents" / "local.toml"
    made = env.tmux("new-window", "-d", "-t", "main:", "-n", "worker")
    assert made.returncode == 0, made.stderr

    def registered() -> bool:
        try:
            return "[agents.custom-alias-main-worker]" in local.read_text()
        except FileNotFoundError:
            return False

    retry_until(registered, timeout=15)
    log = env.home / ".agents" / "hook.log"
    assert "not found" not in (log.read_text() if log.exists() else "")


def test_no_user_manager_means_cron_and_says_so(installed: Installed) -> None:
    assert ("no systemd user manager reachable (systemctl --user show-environment failed): "
            "using a crontab line instead of the systemd timer") in installed.first.stdout
    # install.sh maps AGENT_MESH_NO_SYSTEMD=1 onto `agent-mesh setup --cron`.
    assert "--cron: using a crontab line" in installed.second.stdout
    assert not (installed.env.home / ".config/systemd/user/agent-resync.timer").exists()


def test_one_crontab_line_after_two_installs(installed: Installed) -> None:
    table = installed.env.crontab()
    assert table is not None
    ours = [ln for ln in table.splitlines() if CRON_MARKER in ln]
    assert len(ours) == 1, table
    assert ours[0].startswith("*/5 * * * * ")
    assert '"$HOME/.local/bin/agent-discover" >/dev/null 2>&1 # agent-mesh resync' in ours[0]
    assert table.startswith(USER_CRON)
    assert "the crontab line is already there" in installed.second.stdout


# --- uninstall -------------------------------------------------------------------


@dataclass
class Uninstalled:
    env: Installer
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def uninstalled(installed: Installed) -> Uninstalled:
    first = installed.env.install("--uninstall")
    second = installed.env.install("--uninstall")
    return Uninstalled(installed.env, first, second)


def test_uninstall_removes_everything_it_added(uninstalled: Uninstalled) -> None:
    env, home = uninstalled.env, uninstalled.env.home
    assert uninstalled.first.returncode == 0, uninstalled.first.stdout + uninstalled.first.stderr
    assert not (home / ".local/share/agent-mesh").exists()
    for name in COMMANDS:
        assert not os.path.lexists(home / ".local/bin" / name), name
    assert (home / ".tmux.conf").read_text() == USER_TMUX_BEFORE + USER_TMUX_AFTER
    assert (home / ".bashrc").read_text() == USER_RC
    for name in snippet_hooks():
        assert "agent-mesh" not in env.tmux("show-hooks", "-g", name).stdout, name
    assert "removed the agent-mesh crontab line" in uninstalled.first.stdout


def test_uninstall_keeps_user_data(uninstalled: Uninstalled) -> None:
    home = uninstalled.env.home
    assert (home / ".agents" / "self.conf").read_text() == "custom-alias\n"
    assert (home / ".agents" / "peers.conf").read_text() == "# my peers\nbuildbox\n"
    assert (home / ".agent-inbox/alice/report.txt").read_text() == "a file someone sent\n"
    assert "kept ~/.agents" in uninstalled.first.stdout
    assert "~/.agent-inbox" in uninstalled.first.stdout


def test_uninstall_removes_only_our_crontab_line(uninstalled: Uninstalled) -> None:
    assert uninstalled.env.crontab() == USER_CRON


def test_second_uninstall_is_harmless(uninstalled: Uninstalled) -> None:
    second = uninstalled.second
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing at ~/.local/share/agent-mesh" in second.stdout
    assert "no agent-mesh block in ~/.tmux.conf" in second.stdout
    assert (uninstalled.env.home / ".tmux.conf").read_text() == \
        USER_TMUX_BEFORE + USER_TMUX_AFTER
    assert (uninstalled.env.home / ".bashrc").read_text() == USER_RC


# --- systemd user timer (a fake systemctl that answers) -----------------------------


def test_systemd_timer_when_a_user_manager_answers(uninstalled: Uninstalled) -> None:
    env = uninstalled.env
    log = env.shims / "systemctl.log"
    log.unlink(missing_ok=True)
    (env.shims / "systemd-up").touch()
    try:
        env.set_crontab(USER_CRON + "*/5 * * * * old-agent-discover # agent-mesh resync\n")
        result = env.install()
        assert result.returncode == 0, result.stdout + result.stderr
        units = env.home / ".config/systemd/user"
        for unit in ("agent-resync.service", "agent-resync.timer"):
            assert (units / unit).read_bytes() == (REPO / "agent_mesh/ops/data" / unit).read_bytes()
        calls = log.read_text().splitlines()
        assert "--user show-environment" in calls
        assert calls.index("--user daemon-reload") < calls.index(
            "--user enable --now agent-resync.timer")
        assert "enabled the systemd user timer agent-resync.timer" in result.stdout
        # The timer replaces an earlier install's crontab line.
        assert env.crontab() == USER_CRON

        removed = env.install("--uninstall")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert "--user disable --now agent-resync.timer" in log.read_text().splitlines()
        assert not (units / "agent-resync.timer").exists()
        assert not (units / "agent-resync.service").exists()
        assert not (env.home / ".local/share/agent-mesh").exists()
    finally:
        (env.shims / "systemd-up").unlink()


def test_unit_files() -> None:
    service = (REPO / "agent_mesh/ops/data" / "agent-resync.service").read_text()
    timer = (REPO / "agent_mesh/ops/data" / "agent-resync.timer").read_text()
    assert "Type=oneshot" in service
    assert "ExecStart=%h/.local/bin/agent-discover" in service
    for line in ("OnBootSec=1min", "OnUnitActiveSec=5min", "Persistent=true",
                 "WantedBy=timers.target"):
        assert line in timer.splitlines()
