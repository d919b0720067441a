"""`agent-mesh setup`: turn an installed package into a working mesh host, for this user.

The package can be installed three ways (install.sh's venv, `pipx install`, `pip
install` into any venv); all three end with this module, so the files the tmux
hooks, the timer and a peer's SSH command run are found at fixed places:

  ~/.local/bin/<command>                   links to this installation's commands
                                           (kept as they are when pipx put them there)
  ~/.local/share/agent-mesh/hooks/tmux-event  the launcher every tmux hook runs
  ~/.local/share/agent-mesh/tmux.conf      the snippet, to `tmux source-file` live
  ~/.local/share/agent-mesh/rpc            what a peer's request runs (python -I -S)
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
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable

from agent_mesh import paths
from agent_mesh.errors import SetupError
from agent_mesh.fsutil import atomic_write, make_dirs

BLOCK_BEGIN = "# >>> agent-mesh >>>"
BLOCK_END = "# <<< agent-mesh <<<"
BLOCK_HEADER = (
    "# Managed by `agent-mesh setup`: re-running it replaces this block and\n"
    "# `agent-mesh setup --uninstall` removes it. Your own lines belong outside it.\n"
)
RC_MARKER = "# agent-mesh: ~/.local/bin on PATH"
CRON_MARKER = "# agent-mesh resync"
# Every tmux hook line runs the launcher with its event name; this is in each of them.
HOOK_MARK = "agent-mesh/hooks/tmux-event"
HOOK_EVENTS = ("session-created", "session-closed", "window-linked", "window-unlinked",
               "window-renamed", "session-renamed")
TIMER_UNIT = "agent-resync.timer"
SERVICE_UNIT = "agent-resync.service"
COMMANDS = ("notify-pane", "agent-mesh", "agent-register-hook", "agent-discover",
            "agent-self-identify")
FIX = "agent-mesh setup (safe to re-run; from a checkout: ./install.sh)"
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class Report:
    """Collects what setup did, one line per step; `emit(kind, text)` shows each as it
    happens (kind: "say", "warn" or "error"). Errors do not stop the other steps."""

    def __init__(self, emit: Callable[[str, str], None] | None = None) -> None:
        self.emit = emit or (lambda kind, text: None)
        self.lines: list[tuple[str, str]] = []
        self.problems = 0

    def _add(self, kind: str, text: str) -> None:
        self.lines.append((kind, text))
        self.emit(kind, text)

    def say(self, text: str) -> None:
        self._add("say", text)

    def warn(self, text: str) -> None:
        self._add("warn", text)

    def problem(self, text: str) -> None:
        self.problems += 1
        self._add("error", text)


# --- small helpers ----------------------------------------------------------------


def data_file(name: str) -> str:
    """A file shipped in the package (agent_mesh/ops/data/), wherever it is installed."""
    return os.path.join(DATA, name)


def tilde(path: str) -> str:
    """~/x for messages."""
    home = paths.home().rstrip("/")
    if home and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home):]
    return path


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _write_keeping(path: str, text: str) -> None:
    """Replace a user's file atomically, keeping what it is: a symlink into a dotfiles
    repo stays one (the target is rewritten), and so do its permission bits."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    atomic_write(real, text.encode("utf-8", "surrogateescape"), mode)
    os.chmod(real, mode)  # the umask may have masked bits off


def _install_copy(src: str, dst: str, mode: int) -> bool:
    """Copy a shipped file into place atomically (a hook may be running the old one);
    False when it was already identical."""
    with open(src, "rb") as fh:
        data = fh.read()
    try:
        with open(dst, "rb") as fh:
            if fh.read() == data and (os.stat(dst).st_mode & 0o7777) == mode:
                return False
    except OSError:
        pass
    atomic_write(dst, data, mode)
    os.chmod(dst, mode)
    return True


def run_helper(argv: list[str], input: str | None = None, timeout: float = 30
               ) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a helper command (systemctl, crontab); never
    raises: 127 when it is missing, 124 when it does not answer in time."""
    try:
        if input is None:
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, errors="replace", timeout=timeout, check=False)
        else:
            out = subprocess.run(argv, input=input, capture_output=True, text=True,
                                 errors="replace", timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]} not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within {timeout:g}s"
    except OSError as exc:
        return 126, "", f"cannot run {argv[0]}: {exc.strerror or exc}"
    return out.returncode, out.stdout, out.stderr


def _without_lines(text: str, marker: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if marker not in line)


# --- where this installation's commands are ------------------------------------------


def commands_dir() -> str:
    """The directory holding this installation's console scripts: from the package's
    RECORD (right for venvs, pipx and `pip install --user`), else next to sys.executable."""
    from importlib import metadata

    try:
        dist = metadata.distribution("agent-mesh")
        for file in dist.files or ():
            if file.name == "agent-register-hook":
                found = os.path.normpath(os.path.abspath(str(dist.locate_file(file))))
                if os.access(found, os.X_OK):
                    return os.path.dirname(found)
    except metadata.PackageNotFoundError:
        pass
    here = os.path.dirname(sys.executable)
    if os.access(os.path.join(here, "agent-register-hook"), os.X_OK):
        return here
    raise SetupError("cannot find this installation's agent-register-hook command (is "
                     "agent-mesh installed with pip?); fix: pip install <agent-mesh checkout>, "
                     "then run its agent-mesh setup")


def command_names() -> list[str]:
    """The console scripts the package declares (pyproject's [project.scripts])."""
    from importlib import metadata

    try:
        names = [ep.name for ep in metadata.distribution("agent-mesh").entry_points
                 if ep.group == "console_scripts"]
    except metadata.PackageNotFoundError:
        names = []
    return sorted(set(names), key=lambda n: (n not in COMMANDS, n)) or list(COMMANDS)


# --- ~/.tmux.conf block ----------------------------------------------------------------


def rewrite_block(text: str, block: str | None) -> str:
    """text with our block replaced by `block` (removed when None; appended when
    absent). SetupError when the markers are unbalanced: nothing is guessed then."""
    out: list[str] = []
    inside = done = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare == BLOCK_BEGIN:
            if inside or done:
                raise _unbalanced()
            inside = done = True
            if block is not None:
                out.append(block)
            continue
        if bare == BLOCK_END:
            if not inside:
                raise _unbalanced()
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise _unbalanced()
    if not done and block is not None:
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(block)
    return "".join(out)


def _unbalanced() -> SetupError:
    return SetupError(f"{tilde(paths.tmux_conf())} has unbalanced '{BLOCK_BEGIN}' / "
                      f"'{BLOCK_END}' lines; fix: delete the agent-mesh lines there by hand "
                      "and re-run")


def tmux_block() -> str:
    """Our block for ~/.tmux.conf: markers around the shipped snippet."""
    snippet = _read(data_file("tmux.conf.snippet")) or ""
    if not snippet.endswith("\n"):
        snippet += "\n"
    return f"{BLOCK_BEGIN}\n{BLOCK_HEADER}{snippet}{BLOCK_END}\n"


def check_tmux_conf() -> None:
    """Before anything is installed: a ~/.tmux.conf whose block cannot be replaced."""
    try:
        text = _read(paths.tmux_conf())
    except OSError as exc:
        raise SetupError(f"cannot read {tilde(paths.tmux_conf())}: {exc.strerror}; fix: make "
                         "it a readable file and re-run") from None
    if text is not None:
        rewrite_block(text, None)


def install_tmux_block(report: Report) -> None:
    path = paths.tmux_conf()
    text = _read(path)
    block = tmux_block()
    if text is None:
        _write_keeping(path, block)
        atomic_write(paths.setup_made_tmux_conf(), b"")
        report.say(f"created {tilde(path)} with the agent-mesh block")
        return
    new = rewrite_block(text, block)
    if new == text:
        report.say(f"the agent-mesh block in {tilde(path)} is up to date")
    else:
        _write_keeping(path, new)
        report.say(f"updated the agent-mesh block in {tilde(path)} (your other lines kept)")


def remove_tmux_block(report: Report) -> None:
    path = paths.tmux_conf()
    text = _read(path)
    if text is None or BLOCK_BEGIN not in text.splitlines():
        report.say(f"no agent-mesh block in {tilde(path)}")
        return
    try:
        new = rewrite_block(text, None)
    except SetupError as exc:
        report.problem(str(exc))
        return
    if not new and os.path.exists(paths.setup_made_tmux_conf()) and not os.path.islink(path):
        os.unlink(path)  # setup created it and it holds nothing else: not left 0 bytes
        report.say(f"removed {tilde(path)} (setup created it, and it held only the block)")
        return
    _write_keeping(path, new)
    report.say(f"removed the agent-mesh block from {tilde(path)} (your other lines kept)")


# --- the running tmux server -----------------------------------------------------------


def _tmux_server_up() -> bool | None:
    """True when a tmux server answers, False when none runs, None without tmux."""
    if not shutil.which("tmux"):
        return None
    return run_helper(["tmux", "list-sessions"], timeout=10)[0] == 0


def load_hooks_live(report: Report) -> None:
    up = _tmux_server_up()
    if up is None:
        report.warn("tmux is not installed: install it (apt-get install tmux, brew install "
                    "tmux); the hooks load from ~/.tmux.conf when it starts")
        return
    if not up:
        report.say(f"no tmux server running: the hooks load from {tilde(paths.tmux_conf())} "
                   "when tmux starts")
        return
    conf = paths.managed_tmux_conf()
    code, _, err = run_helper(["tmux", "source-file", conf], timeout=10)
    if code == 0:
        report.say("loaded the hooks into the running tmux server")
        return
    version = run_helper(["tmux", "-V"], timeout=5)[1].strip() or "unknown"
    report.problem(f"tmux source-file {conf} failed: {' '.join(err.split())}; fix: agent-mesh "
                   f"needs tmux >= 3.2 (this is {version}); upgrade tmux, then run: "
                   f"tmux source-file {tilde(conf)}")


def tmux_sockets() -> list[str]:
    """Every tmux server socket of this user that may hold our hooks: each socket in
    the directory tmux makes them in ($TMUX_TMPDIR or /tmp, then tmux-UID: `-L NAME`
    servers live there beside `default`), the current server's ($TMUX), and each
    server a registry entry was taken from (`-S PATH` servers live anywhere)."""
    from agent_mesh.registry.toml import parse_slice, read_text

    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    directory = os.path.join(base, f"tmux-{os.getuid()}")
    found: list[str] = []
    with contextlib.suppress(OSError):
        found += sorted(os.path.join(directory, name) for name in os.listdir(directory))
    inside = os.environ.get("TMUX", "")
    if inside:
        found.append(inside.split(",")[0])
    with contextlib.suppress(OSError):
        parsed = parse_slice(read_text(paths.local_slice()))
        if parsed is not None:
            found += sorted({str(t.get("socket", "")) for t in parsed[0].values()} - {""})
    sockets: list[str] = []
    seen: set[tuple[int, int]] = set()
    for path in found:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid() \
                and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            sockets.append(path)
    return sockets


def live_hook_names(socket: str | None = None) -> list[str]:
    """Every global hook entry whose command runs our launcher, as `event[index]`
    (session hooks show with -g, window and pane hooks with -gw / -gp), in the
    server at `socket` (tmux's default when None)."""
    names: list[str] = []
    server = ["-S", socket] if socket else []
    for scope in ("-g", "-gw", "-gp"):
        _, out, _ = run_helper(["tmux", *server, "show-hooks", scope], timeout=10)
        for line in out.splitlines():
            name = line.split(" ", 1)[0]
            event = name.split("[", 1)[0]
            if HOOK_MARK in line and event and all(c.isalpha() or c == "-" for c in event) \
                    and name not in names:
                names.append(name)
    return names


def remove_live_hooks(report: Report) -> None:
    """From every running server of this user, not only the default one: a server
    left with the hooks runs the removed launcher at its next window event."""
    if not shutil.which("tmux"):
        report.say("tmux is not installed: no live hooks to remove")
        return
    removed, servers = 0, []
    for socket in tmux_sockets():
        if run_helper(["tmux", "-S", socket, "list-sessions"], timeout=10)[0] != 0:
            continue  # a stale socket, or a server on its way out
        servers.append(os.path.basename(socket))
        for name in live_hook_names(socket):
            if run_helper(["tmux", "-S", socket, "set-hook", "-gu", name], timeout=10)[0] == 0:
                removed += 1
            else:
                report.problem(f"tmux -S {socket} set-hook -gu {name} failed; fix: run it by "
                               "hand, or restart that tmux server")
    if not servers:
        report.say("no tmux server running: no live hooks to remove")
        return
    report.say(f"removed {removed} agent-mesh hook(s) from the running tmux server(s): "
               f"{', '.join(servers)}")


# --- files: the launcher, the snippet, the command links -------------------------------


def install_files(report: Report) -> None:
    launcher, conf = paths.hook_launcher(), paths.managed_tmux_conf()
    changed = _install_copy(data_file("tmux-event"), launcher, 0o755)
    changed = _install_copy(data_file("tmux.conf.snippet"), conf, 0o644) or changed
    state = "installed" if changed else "kept"
    report.say(f"{state} the tmux hook {tilde(launcher)} and {tilde(conf)}")
    install_rpc_launcher(report)


SHEBANG_MAX = 127  # bytes of a #! line every kernel reads whole (Linux < 5.1: 127)


def rpc_launcher_text(python: str, folders: list[str]) -> str | None:
    """The rpc launcher for this interpreter and these folders (a Python file, its
    folders as a repr, nothing a shell reads); None when python cannot go into a #!
    line (relative, whitespace, too long): the peers' requests then start the
    console script, as before."""
    line = f"#!{python} -IS"
    if (not python.startswith("/") or any(ch.isspace() for ch in python)
            or len(line.encode()) > SHEBANG_MAX):
        return None
    with open(data_file("rpc"), encoding="utf-8") as fh:
        template = fh.read()
    return template.replace("@PYTHON@", python, 1).replace("@PATHS@", repr(folders), 1)


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
    if _read(path) == text and (os.stat(path).st_mode & 0o7777) == 0o755:
        report.say(f"kept the peers' entry point {tilde(path)}")
        return
    atomic_write(path, text.encode("utf-8"), 0o755)
    os.chmod(path, 0o755)
    report.say(f"installed the peers' entry point {tilde(path)}")


def _recorded_links() -> list[str]:
    text = _read(paths.setup_links()) or ""
    return [line for line in text.splitlines() if line.startswith("/")]


def plan_links(bindir: str, names: Iterable[str]) -> list[tuple[str, str]]:
    """(link, target) for each command not yet reachable from ~/.local/bin; SetupError
    when a file that is not a link is in the way (nothing is changed then)."""
    local = paths.local_bin()
    if os.path.realpath(bindir) == os.path.realpath(local):
        return []
    plan = []
    for name in names:
        link, target = os.path.join(local, name), os.path.join(bindir, name)
        if os.path.islink(link):
            if os.readlink(link) == target or (
                    os.path.exists(link) and os.path.samefile(link, target)):
                continue
        elif os.path.lexists(link):
            raise SetupError(f"{link} exists and is not a symlink (another install, e.g. pip "
                             f"install --user?); fix: remove it (pip uninstall agent-mesh, or "
                             f"rm {link}) and re-run")
        plan.append((link, target))
    return plan


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
                 paths.setup_made_tmux_conf(), paths.rpc_launcher()):
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
    text = _read(rc)
    if text is not None and RC_MARKER in text:
        report.say(f"{tilde(local)} is not on PATH in this shell but {tilde(rc)} already adds "
                   "it (open a new shell)")
        return True
    line = 'export PATH="$HOME/.local/bin:$PATH"  ' + RC_MARKER + "\n"
    text = text or ""
    if text and not text.endswith("\n"):
        text += "\n"
    _write_keeping(rc, text + line)
    report.say(f'added {tilde(local)} to PATH in {tilde(rc)} (open a new shell, or: export '
               f'PATH="$HOME/.local/bin:$PATH")')
    return True


def remove_path_line(report: Report) -> None:
    home = paths.home()
    found = []
    for name in (".bashrc", ".bash_profile", ".zshrc", ".profile"):
        rc = os.path.join(home, name)
        text = _read(rc)
        if text is not None and RC_MARKER in text:
            _write_keeping(rc, _without_lines(text, RC_MARKER))
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
    text = _read(self_conf)
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


# --- the 5-minute resync: systemd user timer, else a crontab line ------------------------


def systemd_user_reason() -> str | None:
    """None when a systemd user manager answers, else why the timer cannot be used."""
    if not shutil.which("systemctl"):
        return "no systemctl (no systemd here)"
    if run_helper(["systemctl", "--user", "show-environment"], timeout=10)[0] != 0:
        return ("no systemd user manager reachable (systemctl --user show-environment "
                "failed)")
    return None


def install_timer(report: Report) -> None:
    units = paths.systemd_user_dir()
    for unit in (SERVICE_UNIT, TIMER_UNIT):
        _install_copy(data_file(unit), os.path.join(units, unit), 0o644)
    code, out, err = run_helper(["systemctl", "--user", "daemon-reload"])
    if code == 0:
        code, out, err = run_helper(["systemctl", "--user", "enable", "--now", TIMER_UNIT])
    if code == 0:
        report.say(f"installed and enabled the systemd user timer {TIMER_UNIT} in "
                   f"{tilde(units)} (agent-discover every 5 minutes)")
    else:
        report.problem(f"enabling {TIMER_UNIT} failed: {' '.join((err or out).split())}; fix: "
                       f"look at systemctl --user status {TIMER_UNIT}, or re-run with --cron")


def remove_timer(report: Report, quiet: bool = False) -> None:
    units = paths.systemd_user_dir()
    files = [os.path.join(units, u) for u in (TIMER_UNIT, SERVICE_UNIT)]
    if not any(os.path.exists(f) for f in files):
        if not quiet:
            report.say("no systemd units to remove")
        return
    manager = systemd_user_reason() is None
    if manager:
        run_helper(["systemctl", "--user", "disable", "--now", TIMER_UNIT])
        run_helper(["systemctl", "--user", "stop", SERVICE_UNIT])
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if manager:
        run_helper(["systemctl", "--user", "daemon-reload"])
    report.say(f"disabled and removed {TIMER_UNIT} and {SERVICE_UNIT} from {tilde(units)}")


def _read_crontab() -> tuple[str | None, str]:
    """(the user's crontab, possibly empty; None when crontab -l failed, error)."""
    code, out, err = run_helper(["crontab", "-l"])
    if code == 0:
        return out, ""
    if "no crontab" in err.lower():
        return "", ""
    return None, " ".join(err.split())


def cron_line() -> str:
    """Literal $HOME and $PATH: cron's shell expands them. cron's PATH is /usr/bin:/bin,
    so tmux's directory is added when it lives elsewhere (Homebrew, /usr/local)."""
    line = f'"$HOME/.local/bin/agent-discover" >/dev/null 2>&1 {CRON_MARKER}'
    tmux = shutil.which("tmux")
    where = os.path.dirname(tmux) if tmux else ""
    if where not in ("", "/usr/bin", "/bin") and all(
            ch.isalnum() or ch in "._/+-" for ch in where):
        line = f'PATH="{where}:$PATH" {line}'
    return f"*/5 * * * * {line}\n"


def install_cron(report: Report) -> None:
    if not shutil.which("crontab"):
        report.say("no crontab command either: nothing will resync the registry every 5 "
                   "minutes; install cron (apt-get install cron) and re-run, or run "
                   "agent-discover periodically some other way")
        return
    current, err = _read_crontab()
    if current is None:
        report.problem(f"crontab -l failed: {err}; fix: make sure this user may use cron "
                       "(/etc/cron.allow, /etc/cron.deny) and re-run")
        return
    line = cron_line()
    new = _without_lines(current, CRON_MARKER)
    if new and not new.endswith("\n"):
        new += "\n"
    new += line
    if new == current:
        report.say(f"the crontab line is already there: {line.strip()}")
    else:
        code, _, err = run_helper(["crontab", "-"], input=new)
        if code != 0:
            report.problem(f"crontab - failed: {' '.join(err.split())}; fix: add this line with "
                           f"crontab -e: {line.strip()}")
            return
        report.say("added a crontab line (agent-discover every 5 minutes; your other lines "
                   f"kept): {line.strip()}")
    if sys.platform.startswith("linux") and shutil.which("pgrep") and all(
            run_helper(["pgrep", "-x", name])[0] != 0 for name in ("cron", "crond")):
        report.warn("no cron daemon seems to be running, so the line will not fire until one "
                    "does (e.g. sudo service cron start)")


def remove_cron(report: Report, quiet: bool = False) -> None:
    if not shutil.which("crontab"):
        return
    fix = f"remove the line ending in '{CRON_MARKER}' with crontab -e"
    current, err = _read_crontab()
    if current is None:
        report.problem(f"crontab -l failed: {err}; fix: {fix}")
        return
    if CRON_MARKER not in current:
        if not quiet:
            report.say("no agent-mesh crontab line to remove")
        return
    new = _without_lines(current, CRON_MARKER)
    if new.strip():
        code, _, err = run_helper(["crontab", "-"], input=new)
    else:
        code, _, err = run_helper(["crontab", "-r"])
    if code != 0:
        report.problem(f"crontab failed: {' '.join(err.split())}; fix: {fix}")
        return
    report.say("removed the agent-mesh crontab line (your other lines kept)")


def setup_resync(report: Report, cron: bool) -> None:
    env = os.environ.get("AGENT_MESH_NO_SYSTEMD", "")
    if cron or env not in ("", "0"):
        reason = "--cron" if cron else f"AGENT_MESH_NO_SYSTEMD={env}"
        remove_timer(report, quiet=True)  # an earlier setup may have enabled the timer
    else:
        reason = systemd_user_reason() or ""
        if not reason:
            install_timer(report)
            remove_cron(report, quiet=True)  # an earlier setup may have taken the cron path
            return
    report.say(f"{reason}: using a crontab line instead of the systemd timer")
    install_cron(report)


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
