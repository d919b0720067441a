"""`agent-mesh setup` without install.sh: the Python way of installing, for real.

A fresh venv outside HOME, `pip install <checkout>` (not editable), then that venv's
`agent-mesh setup`, as a throwaway user (or HOME) with a private tmux server: the
tmux server started afterwards loads ~/.tmux.conf, its windows register through
the hooks, and `notify-pane` delivers, with no install.sh and no file copied by
hand. `agent-mesh setup --uninstall` then leaves the user's own lines and removes
ours. The same with `pipx install <checkout> && agent-mesh setup`, where the
command links are pipx's and so stay after an uninstall. Helpers (the throwaway
user, the fake systemctl and crontab) are test_install's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, retry_until
from test_install import (
    COMMANDS,
    CRON_MARKER,
    FAKE_CRONTAB,
    FAKE_SYSTEMCTL,
    REPO,
    Installer,
    _make_installer,
    _remove_installer,
    _usable_python,
    snippet_hooks,
)

from agent_mesh.ops import setup

USER_TMUX = "# my tmux settings\nset -g @mine 'kept'\n"
USER_TMUX_AFTER = "set -g history-limit 5000\n"
RECEIVER = """
import readline, sys
while True:
    line = input('>>> ')
    with open(sys.argv[1], 'a') as fh:
        fh.write(line + '\\n')
"""


@dataclass
class Host:
    env: Installer
    src: Path  # the checkout copy pip installs from (pip may build in it)
    python: str

    def pip_venv(self, where: Path, *packages: str) -> subprocess.CompletedProcess[str]:
        made = self.env.run(self.python, "-m", "venv", str(where), timeout=300)
        assert made.returncode == 0, made.stderr
        return self.env.run(str(where / "bin" / "python"), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", *packages,
                            env={"PIP_USER": "0"}, timeout=600)

    def local(self, name: str) -> str:
        return str(self.env.home / ".local" / "bin" / name)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    env = _make_installer()
    python = _usable_python(env)
    if python is None:
        _remove_installer(env)
        pytest.skip("no Python >= 3.11 with venv/ensurepip that the test user can run")
    src = env.base / "src"
    if not src.exists():  # _make_installer copies the checkout only for a throwaway user
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "tests", "bench"))
    yield Host(env, src, python)
    _remove_installer(env)


def _alias(env: Installer) -> str:
    return (env.home / ".agents" / "self.conf").read_text().split()[0]


def _registered(env: Installer, address: str) -> bool:
    try:
        return f"[agents.{address}]" in (env.home / ".agents" / "local.toml").read_text()
    except FileNotFoundError:
        return False


def _our_hooks(env: Installer) -> list[str]:
    return [name for name in snippet_hooks()
            if "agent-mesh" in env.tmux("show-hooks", "-g", name).stdout]


def test_pip_install_then_setup_gives_a_working_host(host: Host) -> None:
    env = host.env
    env.write(".tmux.conf", USER_TMUX)
    env.set_crontab("")
    venv = env.base / "venv"
    installed = host.pip_venv(venv, str(host.src))
    if installed.returncode != 0:
        pytest.skip(f"pip install failed (no package index?): {installed.stderr[-300:]}")
    site = next(venv.glob("lib/python3*/site-packages"))
    assert not list(site.glob("__editable__*"))  # a real install, nothing points back
    assert (site / "agent_mesh" / "ops" / "data" / "tmux-event").is_file()

    setup = env.run(str(venv / "bin" / "agent-mesh"), "setup", timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "agent-mesh setup: done" in setup.stdout
    assert "no tmux server running" in setup.stdout
    share = env.home / ".local/share/agent-mesh"
    for name in COMMANDS:
        assert os.readlink(host.local(name)) == str(
            share / name if name in ("notify-pane", "agent-mesh") else venv / "bin" / name)
    # notify-pane and agent-mesh start as the hook does (issue 20): -I -S, the package
    # from its folders
    for name in ("notify-pane", "agent-mesh"):
        assert (share / name).read_text().startswith(f"#!{venv / 'bin' / 'python'} -IS\n")
    assert (env.home / ".local/share/agent-mesh/hooks/tmux-event").stat().st_mode & 0o111
    text = (env.home / ".tmux.conf").read_text()
    assert text.startswith(USER_TMUX)
    with (env.home / ".tmux.conf").open("a") as fh:
        fh.write(USER_TMUX_AFTER)

    # A tmux server started now loads ~/.tmux.conf: its hooks register the windows.
    alias = _alias(env)
    started = env.tmux("new-session", "-d", "-s", "main", "-n", "lead")
    assert started.returncode == 0, started.stderr
    assert sorted(_our_hooks(env)) == sorted(snippet_hooks())
    log = env.base / "got.txt"
    made = env.tmux("new-window", "-d", "-t", "main:", "-n", "worker",
                    str(venv / "bin" / "python"), "-q", "-c", RECEIVER, str(log))
    assert made.returncode == 0, made.stderr
    # a python prompt is not a known agent: the window opts in, as a user would
    env.tmux("set-option", "-w", "-t", "main:worker", "@agent-accept", "python3")
    retry_until(lambda: _registered(env, f"{alias}-main-worker"), timeout=15)
    retry_until(lambda: ">>>" in env.tmux("capture-pane", "-p", "-t", "main:worker").stdout,
                timeout=15)
    hook_log = (env.home / ".agents" / "hook.log").read_text()
    assert "not found" not in hook_log and "error" not in hook_log, hook_log

    sent = env.run(host.local("notify-pane"), f"{alias}-main-worker", "hello from setup",
                   env={"AGENT_NAME": "tester"})
    assert sent.returncode == 0, sent.stdout + sent.stderr
    retry_until(lambda: log.exists() and "hello from setup" in log.read_text(), timeout=15)
    assert "[from tester" in log.read_text()

    # The hook's fast path (hook.launch, python -I -S) works from a pip install too.
    launch = env.home / ".agents" / "hook.launch"
    retry_until(launch.exists, timeout=15)
    assert launch.read_text().splitlines()[0] == str(venv / "bin" / "python")
    assert env.tmux("new-window", "-d", "-t", "main:", "-n", "lean").returncode == 0
    retry_until(lambda: _registered(env, f"{alias}-main-lean"), timeout=15)
    retry_until(lambda: (env.home / ".agents" / "hook.log").read_text().rstrip()
                .endswith("[no-site]"), timeout=15)

    again = env.run(str(venv / "bin" / "agent-mesh"), "setup", "--no-discover")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the agent-mesh block in ~/.tmux.conf is up to date" in again.stdout
    assert "loaded the hooks into the running tmux server" in again.stdout
    assert (env.home / ".tmux.conf").read_text().count("# >>> agent-mesh >>>") == 1

    removed = env.run(host.local("agent-mesh"), "setup", "--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert (env.home / ".tmux.conf").read_text() == USER_TMUX + USER_TMUX_AFTER
    assert _our_hooks(env) == []
    for name in COMMANDS:
        assert not os.path.lexists(host.local(name)), name
    assert not (env.home / ".local/share/agent-mesh").exists()
    assert CRON_MARKER not in (env.crontab() or "")
    assert (env.home / ".agents" / "self.conf").exists()  # the user's data stays
    assert (venv / "bin" / "agent-mesh").exists()  # pip uninstall is the user's business
    env.tmux("kill-server")


def test_pipx_install_then_setup(host: Host) -> None:
    env = host.env
    tools = env.base / "tools"
    got = host.pip_venv(tools, "pipx")
    if got.returncode != 0:
        pytest.skip(f"cannot pip install pipx: {got.stderr[-300:]}")
    pipx = env.run(str(tools / "bin" / "pipx"), "install", str(host.src), timeout=600)
    assert pipx.returncode == 0, pipx.stdout + pipx.stderr
    links = {name: os.readlink(host.local(name)) for name in COMMANDS}

    setup = env.run(host.local("agent-mesh"), "setup", timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "the commands in ~/.local/bin already point at" in setup.stdout
    started = env.tmux("new-session", "-d", "-s", "pipx", "-n", "lead")
    assert started.returncode == 0, started.stderr
    assert env.tmux("new-window", "-d", "-t", "pipx:", "-n", "worker").returncode == 0
    retry_until(lambda: _registered(env, f"{_alias(env)}-pipx-worker"), timeout=15)

    removed = env.run(host.local("agent-mesh"), "setup", "--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "# >>> agent-mesh" not in (env.home / ".tmux.conf").read_text()
    assert _our_hooks(env) == []
    # pipx's links were not setup's to remove.
    assert {name: os.readlink(host.local(name)) for name in COMMANDS} == links


# --- fast: the dev venv's agent-mesh setup in a private HOME (no pip) -----------------


def _fast_setup(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """agent-mesh setup with a fake crontab and systemctl first on PATH (never the real
    ones) and no first discovery."""
    shims = home.parent / "shims"
    if not shims.exists():
        shims.mkdir()
        (shims / "crontab").write_text(FAKE_CRONTAB.format(dir=shims))
        (shims / "systemctl").write_text(FAKE_SYSTEMCTL.format(dir=shims))
        for shim in shims.iterdir():
            shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
           "SHELL": "/bin/bash"}
    return subprocess.run([str(BIN / "agent-mesh"), "setup", "--no-discover", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def test_rewrite_block_keeps_every_user_byte() -> None:
    block = setup.tmux_block()
    for user in ("", "set -g @a 1\n", "set -g @a 1", "a\r\nb\r\n", "# no newline at end"):
        added = setup.rewrite_block(user, block)
        assert added.count(setup.BLOCK_BEGIN) == 1
        assert setup.rewrite_block(added, block) == added  # idempotent
        assert setup.rewrite_block(added, None) == (
            user if user.endswith("\n") or not user else user + "\n")
    middle = f"a\n{block}b\n"
    assert setup.rewrite_block(middle, None) == "a\nb\n"
    assert setup.rewrite_block(middle, block) == middle  # stays where the user moved it
    for broken in (f"{setup.BLOCK_BEGIN}\nx\n", f"x\n{setup.BLOCK_END}\n",
                   f"{block}{block}"):
        with pytest.raises(setup.SetupError, match="unbalanced"):
            setup.rewrite_block(broken, block)


def test_unbalanced_block_is_one_line_and_changes_nothing(isolated_env: Path) -> None:
    conf = isolated_env / ".tmux.conf"
    broken = f"set -g @mine 1\n{setup.BLOCK_BEGIN}\nset -g @half 1\n"
    conf.write_text(broken)
    result = _fast_setup(isolated_env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unbalanced" in result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr
    assert conf.read_text() == broken
    assert not (isolated_env / ".local").exists()


def test_symlinked_dotfiles_stay_symlinks(isolated_env: Path) -> None:
    dotfiles = isolated_env / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "tmux.conf").write_text(USER_TMUX)
    (dotfiles / "tmux.conf").chmod(0o600)
    (isolated_env / ".tmux.conf").symlink_to(dotfiles / "tmux.conf")
    result = _fast_setup(isolated_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (isolated_env / ".tmux.conf").is_symlink()
    assert setup.BLOCK_BEGIN in (dotfiles / "tmux.conf").read_text()
    assert (dotfiles / "tmux.conf").stat().st_mode & 0o777 == 0o600
    result = _fast_setup(isolated_env, "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (isolated_env / ".tmux.conf").is_symlink()
    assert (dotfiles / "tmux.conf").read_text() == USER_TMUX


def test_a_file_in_the_way_of_a_link_stops_setup_first(isolated_env: Path) -> None:
    local_bin = isolated_env / ".local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "notify-pane").write_text("#!/bin/sh\n# someone else's\n")
    result = _fast_setup(isolated_env)
    assert result.returncode == 1
    assert "notify-pane exists and is not a symlink" in result.stderr
    assert not (isolated_env / ".tmux.conf").exists()
    assert not (isolated_env / ".local" / "share").exists()


def _show_our_hooks(*server: str) -> str:
    shown = "".join(subprocess.run(["tmux", *server, "show-hooks", scope], capture_output=True,
                                   text=True, check=False).stdout
                    for scope in ("-g", "-gw", "-gp"))
    return "\n".join(line for line in shown.splitlines() if setup.HOOK_MARK in line)


def test_uninstall_removes_the_live_hooks_of_every_tmux_server(isolated_env: Path) -> None:
    """Issue 21.15: a `tmux -L work` server (it read ~/.tmux.conf when it started) loses
    its hooks too; left there, they would run the removed launcher at its next window
    event and put the pane into view mode."""
    installed = _fast_setup(isolated_env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        for server in ([], ["-L", "work"]):  # both read ~/.tmux.conf, as a user's would
            started = subprocess.run(["tmux", *server, "new-session", "-d", "-s", "s"],
                                     capture_output=True, text=True, check=False)
            assert started.returncode == 0, started.stderr
            assert len(_show_our_hooks(*server).splitlines()) == len(snippet_hooks())
        removed = _fast_setup(isolated_env, "--uninstall")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert _show_our_hooks() == ""
        assert _show_our_hooks("-L", "work") == ""
        assert "default, work" in removed.stdout
        # a window event on that server now runs nothing: its pane stays out of view mode
        pane = subprocess.run(["tmux", "-L", "work", "new-window", "-d", "-P", "-F",
                               "#{pane_id}", "-t", "s:"], capture_output=True, text=True,
                              check=True).stdout.strip()
        shown = subprocess.run(["tmux", "-L", "work", "display", "-p", "-t", pane,
                                "#{pane_in_mode}"], capture_output=True, text=True,
                               check=True).stdout.strip()
        assert shown == "0"
    finally:
        subprocess.run(["tmux", "-L", "work", "kill-server"], capture_output=True, check=False)


def test_uninstall_removes_the_tmux_conf_setup_created_and_only_that(
        isolated_env: Path) -> None:
    """Issue 21.19: no 0-byte ~/.tmux.conf is left where setup created one; a user's own
    empty file, or one the user added lines to, stays."""
    conf = isolated_env / ".tmux.conf"
    for before, after in ((None, None), ("", ""), (None, USER_TMUX_AFTER)):
        if before is not None:
            conf.write_text(before)
        assert _fast_setup(isolated_env).returncode == 0
        assert setup.BLOCK_BEGIN in conf.read_text()
        if after:  # the user's own line after setup made the file
            with conf.open("a") as fh:
                fh.write(after)
        removed = _fast_setup(isolated_env, "--uninstall")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert (conf.read_text() if conf.exists() else None) == after, (before, after)
        conf.unlink(missing_ok=True)
        assert not (isolated_env / ".local/share/agent-mesh").exists()
