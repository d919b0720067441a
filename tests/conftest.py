"""Shared fixtures: every test gets its own HOME and its own private tmux server.

The autouse `isolated_env` fixture points HOME, TMUX_TMPDIR and ~/.agents at a
temp dir and unsets TMUX/TMUX_PANE, so a test run from inside tmux never talks
to the developer's real server. Socket paths are kept short (Unix sockets are
limited to ~108 bytes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from lab.netlab import Lab, lab_available

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
BIN = Path(sys.executable).parent
SELF_HOST = "testhost"

T = TypeVar("T")

_CLEAR = ("TMUX", "TMUX_PANE", "AGENT_NAME", "FORCE_SEND", "SKIP_DISMISS", "AGENT_MESH_HOME",
          "TMUX_SOCKET", "AGENT_ROLE", "AGENT_SCOPE", "AGENT_MESH_SETTLE", "AGENT_MESH_TRANSPORT",
          "AGENT_MESH_CONTROL_PERSIST", "AGENT_MESH_RECEIVERS", "AGENT_MESH_MAX_FILE",
          "AGENT_MESH_SYNC_DEADLINE", "AGENT_MESH_AGENT_COMMAND")


def retry_until(fn: Callable[[], T], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Call fn until it returns something truthy; its last value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private HOME (with self.conf = testhost) and TMUX_TMPDIR for each test."""
    base = Path(tempfile.mkdtemp(prefix="am", dir="/tmp"))
    home = base / "h"
    home.mkdir()
    (home / ".agents").mkdir()
    (home / ".agents" / "self.conf").write_text(f"{SELF_HOST}\n")
    for name in _CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMUX_TMPDIR", str(base))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))  # ssh control sockets stay in base too
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    # The prompt_toolkit stand-in (tests/programs/agent_tui.py) counts as a known agent
    # TUI in tests, as a user adds theirs (agent_mesh/receivers.py).
    monkeypatch.setenv("AGENT_MESH_RECEIVERS", "agent_tui raw_receiver")
    yield home
    subprocess.run(["tmux", "kill-server"], capture_output=True, check=False)
    remove_when_unused(base)


@pytest.fixture(params=["proc", "psutil"])
def procs_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test over /proc and again over psutil (the process tree off Linux), against
    the same panes: AGENT_MESH_PROCS picks the source, here and in every CLI the test runs.
    Use it module-wide with `pytestmark = pytest.mark.usefixtures("procs_backend")`."""
    if request.param == "psutil":
        pytest.importorskip("psutil", reason="psutil not installed (pip install -e '.[test]')")
    elif not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc here")
    monkeypatch.setenv("AGENT_MESH_PROCS", request.param)
    return str(request.param)


# --- the network-namespace lab (tests/lab/netlab.py) --------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that builds the lab must say so with the `lab` marker (so `-m "not lab"`
    leaves out every slow, root-only test): fail it loudly otherwise."""
    if "lab" in getattr(item, "fixturenames", ()) and item.get_closest_marker("lab") is None:
        pytest.fail(f"{item.nodeid} uses the lab fixture without the `lab` marker "
                    "(add `pytestmark = pytest.mark.lab(...)`)", pytrace=False)


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The module's network-namespace lab, started once, stopped after its last test, or
    a skip saying why it cannot run here (not root, a tool missing). Its shape comes from
    the module's marker, `pytestmark = pytest.mark.lab(hosts=3, missing={"h3"})`, or the
    tests' own (hosts default 2; `missing` hosts get no agent-mesh install)."""
    # the module's marker, or (a module mixing lab and other tests) the first lab test's
    item = getattr(request, "_pyfuncitem", None)
    marker = (item or request.node).get_closest_marker("lab")
    if marker is None:
        pytest.fail(f"{request.node.nodeid}: the lab fixture needs a `lab` marker", pytrace=False)
    reason = lab_available()
    if reason is not None:
        pytest.skip(reason)
    built = Lab(n_hosts=int(marker.kwargs.get("hosts", 2)),
                missing_agent_mesh=set(marker.kwargs.get("missing", ())))
    try:
        built.start()
        yield built
    finally:
        built.stop()


def processes_using(path: Path) -> list[int]:
    """Pids (other than ours) whose environment names path: the hooks tmux ran
    for this test's server (HOME, TMUX point under it) and what they spawned."""
    needle = b"=" + str(path).encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def remove_when_unused(base: Path, timeout: float = 10.0) -> None:
    """Remove a test's temp dir once nothing runs in it any more.

    Killing the server fires its session-closed/window-unlinked hooks, which run
    on after kill-server returns; a hook still writing when the tree is removed
    recreates ~/.agents (atomic_write makes parents), leaving /tmp/am* behind.
    """
    try:
        retry_until(lambda: not processes_using(base), timeout=timeout, interval=0.02)
    except AssertionError:  # something of ours hangs: it must not outlive the test
        for pid in processes_using(base):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Pane:
    """A pane running a real program on the test's tmux server."""

    server: TmuxServer
    pane_id: str
    window_id: str

    def capture(self, escapes: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", self.pane_id] + (["-e"] if escapes else [])
        return self.server.run(*args).stdout

    def send_keys(self, *keys: str, literal: bool = False) -> None:
        args = ["send-keys", "-t", self.pane_id] + (["-l", "--"] if literal else []) + list(keys)
        self.server.run(*args)

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        return retry_until(lambda: text in self.capture() and self.capture(), timeout)

    def display(self, fmt: str) -> str:
        return self.server.run("display-message", "-p", "-t", self.pane_id, fmt).stdout.strip()


class TmuxServer:
    """The test's private tmux server (default socket under the test's TMUX_TMPDIR)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, check: bool = True, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check,
                              input=input)

    def start(self, session: str = "main", window: str = "shell",
              argv: list[str] | None = None) -> Pane:
        args = ["-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40",
                "-s", session, "-n", window, "-P", "-F", "#{pane_id} #{window_id}"]
        out = self.run(*args, *(argv or ["bash", "--norc", "--noprofile"])).stdout.split()
        return Pane(self, out[0], out[1])

    def new_window(self, session: str, name: str, argv: list[str] | None = None,
                   detached: bool = True) -> Pane:
        args = ["new-window", "-t", f"={session}:", "-n", name, "-P", "-F",
                "#{pane_id} #{window_id}"] + (["-d"] if detached else [])
        out = self.run(*args, *(argv or ["bash", "--norc", "--noprofile"])).stdout.split()
        return Pane(self, out[0], out[1])

    def install_hooks(self) -> None:
        """Install hooks/ as install.sh does and load tmux.conf.snippet into the server."""
        share = self.home / ".local" / "share" / "agent-mesh" / "hooks"
        share.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "agent_mesh/ops/data/tmux-event", share / "tmux-event")
        local_bin = self.home / ".local" / "bin"
        local_bin.mkdir(parents=True, exist_ok=True)
        link = local_bin / "agent-register-hook"
        if not link.exists():
            link.symlink_to(BIN / "agent-register-hook")
        self.run("source-file", str(REPO / "agent_mesh/ops/data/tmux.conf.snippet"))


@pytest.fixture
def tmux_server(isolated_env: Path) -> Iterator[TmuxServer]:
    server = TmuxServer(isolated_env)
    yield server
    server.run("kill-server", check=False)


def run_cli(*argv: str, input: bytes | None = None, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """Run one of the installed console scripts as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], input=input, capture_output=True,
                          env=full_env, timeout=timeout, check=False)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


# --- delivery harness: real receiving programs in registered windows ---------
# (used by tests/test_delivery*.py, test_readiness*.py, test_notify_cli*.py)

AGENT_TUI = PROGRAMS / "agent_tui.py"
PY_RECEIVER = PROGRAMS / "py_receiver.py"
SENDER = "tester"


@dataclass
class Receiver:
    """A registered window running a real program, and the log its submitted input lands in.

    The agent TUI and the python receiver log `json.dumps(line)` per submit; bash
    appends each command line to its HISTFILE (`history -a` in PROMPT_COMMAND).
    """

    pane: Pane
    address: str
    log: Path
    json_log: bool = True

    def lines(self) -> list[str]:
        import json

        try:
            text = self.log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = text.splitlines()
        return [json.loads(row) for row in rows] if self.json_log else rows

    def wait_lines(self, count: int, timeout: float = 15.0) -> list[str]:
        retry_until(lambda: len(self.lines()) >= count, timeout)
        return self.lines()


class Spawner:
    """Starts receiving programs as windows of session `dev` and registers them."""

    session = "dev"

    def __init__(self, server: TmuxServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.started = False

    def window(self, name: str, argv: list[str]) -> Pane:
        if not self.started:
            self.started = True
            return self.server.start(self.session, name, argv)
        return self.server.new_window(self.session, name, argv)

    def register(self) -> None:
        from agent_mesh.registry.local import rescan
        from agent_mesh.tmux import Tmux

        rescan(Tmux())

    def _receiver(self, name: str, argv: list[str], ready: str, log: Path,
                  json_log: bool = True, accept: str = "") -> Receiver:
        pane = self.window(name, argv)
        if accept:  # not a known agent: the window opts in, as a user would
            self.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", accept)
        pane.wait_for(ready, timeout=15)
        self.register()
        return Receiver(pane, f"{SELF_HOST}-{self.session}-{name}", log, json_log)

    def agent_tui(self, name: str = "agent", *opts: str) -> Receiver:
        log = self.tmp / f"{name}.jsonl"
        argv = [sys.executable, str(AGENT_TUI), str(log), *opts]
        return self._receiver(name, argv, "? for shortcuts", log)

    def py_receiver(self, name: str = "py") -> Receiver:
        log = self.tmp / f"{name}.jsonl"
        return self._receiver(name, [sys.executable, str(PY_RECEIVER), str(log)], ">>>", log,
                              accept="python3")

    def python_repl(self, name: str = "repl") -> Receiver:
        return self._receiver(name, [sys.executable, "-q"], ">>>", self.tmp / "none",
                              accept="python3")

    def bash(self, name: str = "sh") -> Receiver:
        log = self.tmp / f"{name}.history"
        argv = ["env", "PS1=$ ", "PS2=> ", f"HISTFILE={log}", "PROMPT_COMMAND=history -a",
                "bash", "--norc", "--noprofile"]
        return self._receiver(name, argv, "$", log, json_log=False)


@pytest.fixture
def spawn(tmux_server: TmuxServer, tmp_path: Path) -> Spawner:
    return Spawner(tmux_server, tmp_path)


def notify(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run notify-pane as the sender `tester` (AGENT_NAME), as an agent would."""
    return run_cli("notify-pane", *args, input=input, env={"AGENT_NAME": SENDER, **(env or {})},
                   timeout=timeout)


# --- real agent CLIs (Claude Code, Codex) against a fake model: tests/agent_clis.py ---
from agent_clis import agent_clis, claude, codex, fake_model  # noqa: E402, F401
