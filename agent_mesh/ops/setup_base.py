"""What every step of `agent-mesh setup` shares: the marks and names doctor checks
(ops/doctor.py reads them here), `SetupError`, the `Report` each step writes to, small
file helpers, and where this installation's commands are.

Cut from ops/setup.py, which keeps the procedure (files, links, PATH, config, the
order of the steps); ops/setup_tmux.py (the ~/.tmux.conf block and the live hooks) and
ops/setup_resync.py (the timer or crontab line) are the other parts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from agent_mesh import paths
from agent_mesh.errors import SetupError
from agent_mesh.fsutil import atomic_write, edit_keeping

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
# A new agent CLI config file we create (settings.json, hooks.json, config.toml,
# ~/.claude.json): private, as a config may hold tokens; an existing one keeps its mode.
CONFIG_MODE = 0o600
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


def read_or_none(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def edit_config(path: str, edit: Callable[[str | None], str | None],
                remove_empty: bool = False) -> bool:
    """Edit an agent CLI's config as text, compare-and-swap (fsutil.edit_keeping: the CLI
    may write it meanwhile, and its write is never lost: edit runs again on what it
    wrote). edit gets the text (None when missing; bytes that are not UTF-8 pass
    through as read) and returns the new text, or None for no change; with
    remove_empty, "" removes the file. A new file is CONFIG_MODE. True if written."""

    def on_bytes(raw: bytes | None) -> bytes | None:
        new = edit(None if raw is None else raw.decode("utf-8", "surrogateescape"))
        return None if new is None else new.encode("utf-8", "surrogateescape")

    return edit_keeping(path, on_bytes, CONFIG_MODE, remove_empty=remove_empty)


def install_copy(src: str, dst: str, mode: int) -> bool:
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


def without_lines(text: str, marker: str) -> str:
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
