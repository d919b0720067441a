"""`agent-mesh setup`: turn an installed package into a working mesh host, for this user.

The package can be installed three ways (install.sh's venv, `pipx install`, `pip
install` into any venv); all three end with this module, so the files the tmux
hooks, the timer and a peer's SSH command run are found at fixed places:

  ~/.local/bin/<command>                   links to this installation's commands
                                           (kept as they are when pipx put them there)
  ~/.local/share/agent-mesh/hooks/tmux-event  the launcher every tmux hook runs
  ~/.local/share/agent-mesh/tmux.conf      the snippet, to `tmux source-file` live
  ~/.local/share/agent-mesh/rpc            what a peer's request runs (python -I -S)
  ~/.local/share/agent-mesh/notify-pane    what ~/.local/bin/notify-pane and agent-mesh
  ~/.local/share/agent-mesh/agent-mesh     link to (python -I -S, LAUNCHED)
  ~/.tmux.conf                             one block between BLOCK_BEGIN and BLOCK_END
                                           (created-tmux.conf in the share folder says
                                           setup created the file itself)
  ~/.config/systemd/user/agent-resync.*    or a crontab line ending in CRON_MARKER
  a PATH line ending in RC_MARKER          when ~/.local/bin is not on PATH
  ~/.agents/self.conf, peers.conf          seeded only when absent (user data)

`uninstall` removes each of these except the user data, and only what is ours
(marked lines, our links, our unit files). The constants here are what doctor
checks. Files the user also edits (~/.tmux.conf, shell rc files, the crontab) are
edited line-wise: the user's own lines stay byte for byte; none of them is TOML.
No function prints: each reports through a `Report`, which the CLI renders.

This module is the procedure (files, links, PATH, config, and the order of the steps
in `install` and `uninstall`); what the steps share is in ops/setup_base.py, the tmux
part in ops/setup_tmux.py, the timer in ops/setup_resync.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable

from agent_mesh import paths
from agent_mesh.fsutil import atomic_write, make_dirs, write_keeping
from agent_mesh.ops.setup_base import (
    BLOCK_BEGIN,
    BLOCK_END,
    FIX,
    HOOK_EVENTS,
    HOOK_MARK,
    RC_MARKER,
    TIMER_UNIT,
    Report,
    SetupError,
    command_names,
    commands_dir,
    data_file,
    install_copy,
    read_or_none,
    run_helper,
    tilde,
    without_lines,
)
from agent_mesh.ops.setup_resync import (
    remove_cron,
    remove_timer,
    setup_resync,
)
from agent_mesh.ops.setup_tmux import (
    check_tmux_conf,
    install_tmux_block,
    load_hooks_live,
    remove_live_hooks,
    remove_tmux_block,
    rewrite_block,
    tmux_block,
)

# What the CLI, doctor and the tests name as `setup.X`, wherever the part lives.
__all__ = ["BLOCK_BEGIN", "BLOCK_END", "FIX", "HOOK_EVENTS", "HOOK_MARK", "LAUNCHED",
           "TIMER_UNIT", "Report", "SetupError", "check_tmux_conf", "command_launcher_text",
           "data_file", "install", "install_rpc_launcher", "notify_launcher_text",
           "rewrite_block", "rpc_launcher_text", "run_helper", "tmux_block", "uninstall"]

# --- files: the launcher, the snippet, the command links -------------------------------


def install_files(report: Report) -> None:
    launcher, conf = paths.hook_launcher(), paths.managed_tmux_conf()
    changed = install_copy(data_file("tmux-event"), launcher, 0o755)
    changed = install_copy(data_file("tmux.conf.snippet"), conf, 0o644) or changed
    state = "installed" if changed else "kept"
    report.say(f"{state} the tmux hook {tilde(launcher)} and {tilde(conf)}")
    install_rpc_launcher(report)


SHEBANG_MAX = 127  # bytes of a #! line every kernel reads whole (Linux < 5.1: 127)


def rpc_launcher_text(python: str, folders: list[str]) -> str | None:
    """The rpc launcher for this interpreter and these folders (a Python file, its
    folders as a repr, nothing a shell reads); None when python cannot go into a #!
    line (relative, whitespace, too long): the peers' requests then start the
    console script, as before."""
    return _launcher_text("rpc", python, folders)


# The commands ~/.local/bin links to a `python -I -S` launcher of setup's instead of
# their console script (issue 20): notify-pane (a local delivery), agent-mesh (status,
# and the hooks' push, the timer's sync, a peer's rpc without its launcher).
LAUNCHED = ("notify-pane", "agent-mesh")


def notify_launcher_text(python: str, folders: list[str], script: str) -> str | None:
    """The notify-pane launcher (~/.local/bin/notify-pane links to it), which runs
    the console script `script` when the package is gone; None as above."""
    return command_launcher_text("notify-pane", python, folders, script)


def command_launcher_text(name: str, python: str, folders: list[str],
                          script: str) -> str | None:
    """The launcher of command `name` (one of LAUNCHED), which runs the console script
    `script` when the package is gone; None as above."""
    text = _launcher_text(name, python, folders)
    return None if text is None else text.replace("@SCRIPT@", repr(script), 1)


def _launcher_text(name: str, python: str, folders: list[str]) -> str | None:
    line = f"#!{python} -IS"
    if (not python.startswith("/") or any(ch.isspace() for ch in python)
            or len(line.encode()) > SHEBANG_MAX):
        return None
    with open(data_file(name), encoding="utf-8") as fh:
        template = fh.read()
    return template.replace("@PYTHON@", python, 1).replace("@PATHS@", repr(folders), 1)


def link_target(bindir: str, name: str) -> str:
    """Where ~/.local/bin/NAME points: setup's launcher for a LAUNCHED command when
    this interpreter can start one (install_launchers writes it), else the console
    script."""
    script = os.path.join(bindir, name)
    if name not in LAUNCHED or command_launcher_text(name, sys.executable, [], script) is None:
        return script
    return paths.command_launcher(name)


def install_launchers(report: Report, bindir: str, plan: list[tuple[str, str]]) -> None:
    """~/.local/share/agent-mesh/<command> for each LAUNCHED command: it starts Python
    as the hook does, without the console script's `import re` or `site` (issue 20).
    Only while ~/.local/bin/<command> is (or is about to be) our link to it."""
    for name in LAUNCHED:
        path = paths.command_launcher(name)
        text = command_launcher_text(name, sys.executable, paths.package_paths(),
                                     os.path.join(bindir, name))
        link = os.path.join(paths.local_bin(), name)
        used = any(target == path for _, target in plan) or (
            os.path.islink(link) and os.readlink(link) == path)
        if text is None or not used:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        if read_or_none(path) == text and (os.stat(path).st_mode & 0o7777) == 0o755:
            continue
        atomic_write(path, text.encode("utf-8"), 0o755)
        os.chmod(path, 0o755)
        report.say(f"installed the {name} launcher {tilde(path)}")


def install_rpc_launcher(report: Report) -> None:
    """~/.local/share/agent-mesh/rpc: a peer's request starts Python as the hook does,
    without the console script, `site` or `sh -c` (issue 20)."""
    path = paths.rpc_launcher()
    text = rpc_launcher_text(sys.executable, paths.package_paths())
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # one for another interpreter would start the wrong install
        report.warn(f"{sys.executable!r} cannot start a script (#!), so requests from peers "
                    "start the agent-mesh command instead (slower)")
        return
    if read_or_none(path) == text and (os.stat(path).st_mode & 0o7777) == 0o755:
        report.say(f"kept the peers' entry point {tilde(path)}")
        return
    atomic_write(path, text.encode("utf-8"), 0o755)
    os.chmod(path, 0o755)
    report.say(f"installed the peers' entry point {tilde(path)}")


def _recorded_links() -> list[str]:
    text = read_or_none(paths.setup_links()) or ""
    return [line for line in text.splitlines() if line.startswith("/")]


def plan_links(bindir: str, names: Iterable[str]) -> list[tuple[str, str]]:
    """(link, target) for each command not yet reachable from ~/.local/bin; SetupError
    when a file that is not a link is in the way (nothing is changed then)."""
    local = paths.local_bin()
    if os.path.realpath(bindir) == os.path.realpath(local):
        return []
    recorded = _recorded_links()
    plan = []
    for name in names:
        link, script = os.path.join(local, name), os.path.join(bindir, name)
        target = link_target(bindir, name)
        if os.path.islink(link):
            if _points_at(link, target):
                continue
            if target != script and _points_at(link, script) and os.readlink(link) not in recorded:
                continue  # another installer's link to this console script (pipx): keep it
        elif os.path.lexists(link):
            raise SetupError(f"{link} exists and is not a symlink (another install, e.g. pip "
                             f"install --user?); fix: remove it (pip uninstall agent-mesh, or "
                             f"rm {link}) and re-run")
        plan.append((link, target))
    return plan


def _points_at(link: str, target: str) -> bool:
    return os.readlink(link) == target or (
        os.path.exists(link) and os.path.exists(target) and os.path.samefile(link, target))


def link_commands(report: Report, bindir: str, plan: list[tuple[str, str]]) -> None:
    """Point ~/.local/bin at this installation, where the hooks, the timer and a peer's
    SSH command look for the commands."""
    local = paths.local_bin()
    if os.path.realpath(bindir) == os.path.realpath(local):
        report.say(f"the commands are in {tilde(local)}")
        return
    recorded = _recorded_links()
    replaced = []
    os.makedirs(local, exist_ok=True)
    for link, target in plan:
        if os.path.islink(link):
            replaced.append(f"{os.path.basename(link)} (was -> {os.readlink(link)})")
        tmp = f"{link}.new.{os.getpid()}"
        os.symlink(target, tmp)
        os.replace(tmp, link)
        if target not in recorded:
            recorded.append(target)
    if plan:
        atomic_write(paths.setup_links(), "".join(f"{t}\n" for t in recorded).encode())
        names = " ".join(os.path.basename(link) for link, _ in plan)
        report.say(f"linked into {tilde(local)} (-> {tilde(bindir)}): {names}")
    else:
        report.say(f"the commands in {tilde(local)} already point at {tilde(bindir)}")
    if replaced:
        report.say(f"replaced symlinks that pointed elsewhere: {', '.join(replaced)}")


def remove_links(report: Report) -> None:
    """Only the links setup made, and only while they still point where it made them."""
    local = paths.local_bin()
    removed = []
    for target in _recorded_links():
        link = os.path.join(local, os.path.basename(target))
        if os.path.islink(link) and os.readlink(link) == target:
            os.unlink(link)
            removed.append(os.path.basename(link))
    if removed:
        report.say(f"removed the command links from {tilde(local)}: {' '.join(removed)}")
    else:
        report.say(f"no command links of ours in {tilde(local)}")


def remove_files(report: Report) -> None:
    share = paths.share_dir()
    gone = []
    for path in (paths.hook_launcher(), paths.managed_tmux_conf(), paths.setup_links(),
                 paths.setup_made_tmux_conf(), paths.rpc_launcher(),
                 *(paths.command_launcher(name) for name in LAUNCHED)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            gone.append(path)
    for directory in (os.path.dirname(paths.hook_launcher()), share):
        with contextlib.suppress(OSError):  # missing, or holds install.sh's venv
            os.rmdir(directory)
    if gone:
        report.say(f"removed the tmux hook launcher and snippet from {tilde(share)}")
    else:
        report.say(f"nothing of setup's at {tilde(share)}")


# --- PATH line -----------------------------------------------------------------------------


def _rc_file() -> str | None:
    """The shell rc file a new terminal reads; None for fish (its own mechanism)."""
    shell = os.environ.get("SHELL", "")
    home = paths.home()
    if shell.endswith("/zsh"):
        return os.path.join(home, ".zshrc")
    if shell.endswith("/bash"):
        # macOS terminals start login shells, which read ~/.bash_profile only.
        name = ".bash_profile" if sys.platform == "darwin" else ".bashrc"
        return os.path.join(home, name)
    if shell.endswith("/fish"):
        return None
    return os.path.join(home, ".profile")


def _on_path(directory: str) -> bool:
    want = directory.rstrip("/")
    return any(d.rstrip("/") == want for d in os.environ.get("PATH", "").split(os.pathsep))


def add_path_line(report: Report) -> bool:
    """True when the user must open a new shell to get ~/.local/bin on PATH."""
    local = paths.local_bin()
    if _on_path(local):
        report.say(f"{tilde(local)} is on PATH")
        return False
    rc = _rc_file()
    if rc is None:
        report.say(f"{tilde(local)} is not on PATH; for fish, run once: fish_add_path "
                   "~/.local/bin")
        return True
    text = read_or_none(rc)
    if text is not None and RC_MARKER in text:
        report.say(f"{tilde(local)} is not on PATH in this shell but {tilde(rc)} already adds "
                   "it (open a new shell)")
        return True
    line = 'export PATH="$HOME/.local/bin:$PATH"  ' + RC_MARKER + "\n"
    text = text or ""
    if text and not text.endswith("\n"):
        text += "\n"
    write_keeping(rc, text + line, 0o644)
    report.say(f'added {tilde(local)} to PATH in {tilde(rc)} (open a new shell, or: export '
               f'PATH="$HOME/.local/bin:$PATH")')
    return True


def remove_path_line(report: Report) -> None:
    home = paths.home()
    found = []
    for name in (".bashrc", ".bash_profile", ".zshrc", ".profile"):
        rc = os.path.join(home, name)
        text = read_or_none(rc)
        if text is not None and RC_MARKER in text:
            write_keeping(rc, without_lines(text, RC_MARKER), 0o644)
            found.append(tilde(rc))
    if found:
        report.say(f"removed the PATH line from {' '.join(found)}")
    else:
        report.say("no agent-mesh PATH line in your shell rc files")


# --- config seeding ---------------------------------------------------------------------

PEERS_HEADER = """\
# agent-mesh peers: the hosts whose agents this host can message.
# One SSH alias per line, as you would type it after `ssh` (a Host in
# ~/.ssh/config, or a hostname); key-based login must work without a prompt,
# and agent-mesh must be installed there too. Lines starting with # are
# comments. This host's own alias is skipped, so the same file can be copied
# to every host of the mesh. After editing: agent-mesh sync, then agent-mesh doctor.
"""


def host_alias() -> str:
    """This host's short name, as `hostname -s` gives it."""
    from agent_mesh.registry.naming import host_name, valid_alias

    alias = host_name()
    if not (alias.isascii() and valid_alias(alias)):
        raise SetupError(f"cannot derive this host's alias from its hostname ({alias!r}); fix: "
                         "mkdir -p ~/.agents && echo myhost > ~/.agents/self.conf, then re-run")
    return alias


def seed_config(report: Report) -> None:
    """self.conf and peers.conf, only when absent: after that they are the user's."""
    self_conf, peers_conf = paths.self_conf(), paths.peers_conf()
    make_dirs(paths.agents_dir())
    os.chmod(paths.agents_dir(), 0o700)  # private, whoever created it first
    text = read_or_none(self_conf)
    if text is not None:
        alias = "".join(text.split("\n", 1)[0].split())
        report.say(f"kept {tilde(self_conf)} (this host's alias: "
                   f"{alias or '<empty: hostname used>'})")
    else:
        alias = host_alias()
        atomic_write(self_conf, f"{alias}\n".encode(), mode=0o600)
        report.say(f"wrote {tilde(self_conf)}: this host's alias is {alias} (edit it to match "
                   "the SSH alias other hosts use for this one)")
    if os.path.exists(peers_conf):
        report.say(f"kept {tilde(peers_conf)}")
        return
    alias = alias or host_alias()
    atomic_write(peers_conf, f"{PEERS_HEADER}{alias}\n".encode(), mode=0o600)
    report.say(f"wrote {tilde(peers_conf)} (only this host, {alias}, so far: add one SSH "
               "alias per line to join a mesh)")


# --- first discovery ---------------------------------------------------------------------


def first_discovery(report: Report, bindir: str) -> None:
    """Register the windows of a running tmux server now, not at the next hook event."""
    code, out, err = run_helper([os.path.join(bindir, "agent-discover")], timeout=120)
    for line in out.splitlines():
        if line.strip():
            report.say(line)
    if code == 0:
        report.say("first discovery done")
    else:
        detail = " ".join(err.split())[:200]
        report.warn(f"the first discovery failed (exit {code}: {detail}); once that is "
                    "fixed, run: agent-discover")


# --- the two commands -----------------------------------------------------------------------


def install(report: Report, *, cron: bool = False, discover: bool = True) -> bool:
    """Every step, in an order where a failure leaves nothing half-wired; returns
    whether the user must open a new shell for PATH. Checks that would stop setup
    run before anything is changed."""
    check_tmux_conf()
    bindir = commands_dir()
    plan = plan_links(bindir, command_names())
    if not os.path.exists(paths.self_conf()):
        host_alias()  # a hostname that is no alias stops setup here, not halfway
    install_files(report)
    install_launchers(report, bindir, plan)
    link_commands(report, bindir, plan)
    new_shell = add_path_line(report)
    seed_config(report)
    install_tmux_block(report)
    load_hooks_live(report)
    setup_resync(report, cron)
    if discover:
        first_discovery(report, bindir)
    return new_shell


def uninstall(report: Report) -> None:
    """Remove what install added; keep ~/.agents and ~/.agent-inbox (the user's data)."""
    remove_timer(report)
    remove_cron(report)
    remove_live_hooks(report)
    remove_tmux_block(report)
    remove_links(report)
    remove_path_line(report)
    remove_files(report)
    report.say(f"kept {tilde(paths.agents_dir())} (your config and registry) and "
               f"{tilde(paths.inbox_dir())} (files you received); delete them by hand if you "
               "no longer want them")
