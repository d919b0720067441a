"""`agent-mesh demo`: two stand-in agents message each other on a private tmux server.

The first thing a newcomer runs, so it needs nothing but tmux and this package,
and it must never touch the user's own state: it runs under a temporary HOME
(its own ~/.agents and ~/.agent-inbox) and a temporary TMUX_TMPDIR (its own tmux
server), uses the real installed commands (agent-discover, notify-pane) exactly
as a user would, shows what each pane displays, and removes everything unless
asked to keep it for a look.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent_mesh.errors import DemoFailed
from agent_mesh.ops.host_checks import MIN_TMUX, parse_tmux_version
from agent_mesh.procs import alive

SESSION = "demo"
AGENTS = ("alice", "bob")
STEP_TIMEOUT = 30.0  # per command; generous for a loaded machine
WAIT_TIMEOUT = 20.0  # for a pane to show something

# A stand-in for an agent CLI: a readline prompt that echoes what it receives.
AGENT_SCRIPT = """\
import sys
try:
    import readline  # noqa: F401  (line editing, as agent CLIs have)
except ImportError:
    pass
name = sys.argv[1]
print(f"I am {name}, a stand-in for an agent CLI: I print every line I receive.")
while True:
    try:
        line = input(f"{name}> ")
    except EOFError:
        break
    except KeyboardInterrupt:
        print()
        continue
    print(f"{name} got: {line}")
"""


class _Demo:
    """The private world of one demo run: temp dir, environment, tmux server."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.tmux = shutil.which(os.environ.get("TMUX_BIN") or "tmux") or ""
        self.bin = Path(sys.executable).parent
        base = "/tmp" if os.path.isdir("/tmp") else None  # short: socket paths are limited
        self.base = Path(tempfile.mkdtemp(prefix="agent-mesh-demo-", dir=base))
        self.home = self.base / "home"
        self.home.mkdir()
        (self.home / ".agents").mkdir()
        self.env = self._environment()
        self.pids: list[int] = []

    def _environment(self) -> dict[str, str]:
        """The user's environment pointed at the temp dir; nothing leads back to theirs."""
        env = dict(os.environ)
        for name in ("TMUX", "TMUX_PANE", "TMUX_SOCKET", "AGENT_MESH_HOME", "AGENT_MESH_BIN",
                     "AGENT_NAME", "FORCE_SEND", "SKIP_DISMISS", "AGENT_ROLE", "AGENT_SCOPE"):
            env.pop(name, None)
        env["HOME"] = str(self.home)
        env["TMUX_TMPDIR"] = str(self.base)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    # --- commands ---------------------------------------------------------------

    def command(self, name: str) -> str:
        """An installed console script: next to this Python, else on PATH."""
        path = self.bin / name
        if path.exists():
            return str(path)
        found = shutil.which(name)
        if not found:
            raise DemoFailed(f"{name} is not installed next to {sys.executable} nor on PATH; "
                             "run ./install.sh (or pip install .)")
        return found

    def run(self, argv: list[str], what: str, extra: dict[str, str] | None = None,
            cwd: Path | None = None) -> str:
        """Run one command in the demo's world; its stdout, or DemoFailed with its error."""
        try:
            done = subprocess.run(argv, env={**self.env, **(extra or {})}, cwd=cwd or self.home,
                                  capture_output=True, timeout=STEP_TIMEOUT, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{what}: no answer within {STEP_TIMEOUT:g}s") from None
        except OSError as exc:
            raise DemoFailed(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else f"exit {done.returncode}"
            raise DemoFailed(f"{what}: {reason}")
        return done.stdout.decode("utf-8", "replace")

    def tmux_run(self, *args: str) -> str:
        verb = next((a for a in args if not a.startswith("-")), "")
        return self.run([self.tmux, *args], f"tmux {verb}")

    def screen(self, window: str) -> str:
        text = self.tmux_run("capture-pane", "-p", "-J", "-t", f"={SESSION}:{window}")
        return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines()).rstrip("\n")

    def wait_screen(self, window: str, want: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while True:
            text = self.screen(window)
            if want(text):
                return text
            if time.monotonic() >= deadline:
                last = text.splitlines()[-1:] or ["(empty)"]
                raise DemoFailed(f"{what} did not appear in {window}'s pane within "
                                 f"{WAIT_TIMEOUT:g}s (it shows: {last[0][:80]!r})")
            time.sleep(0.1)

    def show(self, window: str) -> None:
        self.out(f"demo: {window}'s pane shows:")
        for line in self.screen(window).splitlines():
            self.out(f"  | {line}")

    # --- the steps --------------------------------------------------------------

    def check_tmux(self) -> None:
        if not self.tmux:
            raise DemoFailed("tmux is not installed (install tmux 3.2 or newer: apt install "
                             "tmux / brew install tmux)")
        version_text = self.run([self.tmux, "-V"], "tmux -V").strip()
        version = parse_tmux_version(version_text)
        if version is not None and version < MIN_TMUX:
            raise DemoFailed(f"{version_text} is too old; agent-mesh needs tmux 3.2 or newer")

    def start_agents(self) -> None:
        self.out(f"demo: starting a private tmux server (TMUX_TMPDIR={self.base}) with "
                 f"windows {' and '.join(AGENTS)} ...")
        first, *rest = AGENTS
        agent = [sys.executable, "-I", "-q", "-c", AGENT_SCRIPT]
        # -f /dev/null: none of the user's tmux config; remain-on-exit keeps a crashed
        # agent's last words on screen for the failure message.
        self.tmux_run("-u", "-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-n", first,
                      "-x", "120", "-y", "16", *agent, first, ";",
                      "set-option", "-g", "remain-on-exit", "on", ";",
                      # The stand-in is not a known agent TUI: its windows opt in.
                      "set-option", "-g", "-w", "@agent-accept", "python3")
        for name in rest:
            self.tmux_run("new-window", "-d", "-t", f"={SESSION}:", "-n", name, *agent, name)
        pids = self.tmux_run("list-panes", "-s", "-t", f"={SESSION}", "-F", "#{pid} #{pane_pid}")
        self.pids = sorted({int(p) for p in pids.split() if p.isdigit()})
        for name in AGENTS:
            self.wait_screen(name, _ends_with(f"{name}>"), f"the {name}> prompt")

    def register(self) -> dict[str, str]:
        """agent-discover, as the timer or a user runs it; then the addresses it gave."""
        self.out("demo: registering them: agent-discover")
        for line in self.run([self.command("agent-discover")], "agent-discover").splitlines():
            self.out(f"  | {line}")
        listing = self.run([self.command("notify-pane"), "--list", "--json"],
                           "notify-pane --list")
        addresses = {a["window"]: a["address"] for a in json.loads(listing)
                     if a.get("session") == SESSION}
        missing = [n for n in AGENTS if n not in addresses]
        if missing:
            raise DemoFailed(f"agent-discover did not register {', '.join(missing)}")
        self.out("demo: notify-pane --list now shows:")
        for name in AGENTS:
            self.out(f"  | {addresses[name]}")
        return addresses

    def send(self, sender: str, argv: list[str], shown: str) -> None:
        self.out(f"demo: {sender} runs: AGENT_NAME={sender} notify-pane {shown}")
        out = self.run([self.command("notify-pane"), *argv], "notify-pane",
                       extra={"AGENT_NAME": sender})
        for line in out.splitlines():
            self.out(f"  | {line}")

    def deliver(self, addresses: dict[str, str]) -> None:
        text = "hi bob, can you review my patch?"
        self.send("alice", [addresses["bob"], text], f'{addresses["bob"]} "{text}"')
        self.wait_screen("bob", lambda s: "bob got: [from alice @ " in s, "alice's message")
        note = self.home / "review.txt"
        note.write_text("LGTM, two nits in parse()\n", encoding="utf-8")
        argv = [addresses["alice"], "--file", note.name, "review attached"]
        self.send("bob", argv, f'{addresses["alice"]} --file {note.name} "review attached"')
        self.wait_screen("alice", lambda s: "alice got: [from bob @ " in s and
                         "file dropped at" in s, "bob's file note")

    def report(self) -> None:
        for name in reversed(AGENTS):
            self.show(name)
        landed = self.home / ".agent-inbox" / "bob" / "review.txt"
        if not landed.is_file():
            raise DemoFailed(f"the file is not where the note says: {landed}")
        content = landed.read_text(encoding="utf-8", errors="replace").strip()
        self.out(f"demo: the file landed in {landed} (alice's ~/.agent-inbox/bob/review.txt): "
                 f"{content!r}")

    # --- teardown ---------------------------------------------------------------

    def teardown(self) -> None:
        """Stop the private server and its agents, then remove the temp dir."""
        if self.tmux:
            with contextlib.suppress(DemoFailed):
                self.tmux_run("kill-server")
        deadline = time.monotonic() + 5.0
        while [p for p in self.pids if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids:  # only the server and agents this demo started
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)

    def keep_hint(self) -> None:
        attach = f"TMUX_TMPDIR={self.base} tmux attach -t {SESSION}"
        if os.environ.get("TMUX"):
            attach = "TMUX= " + attach  # from inside tmux, attach without nesting warnings
        self.out(f"demo: kept it running; look with: {attach}")
        self.out(f"demo: clean up with: TMUX_TMPDIR={self.base} tmux kill-server; "
                 f"rm -rf {self.base}")


def _ends_with(prompt: str) -> Callable[[str], bool]:
    """A screen test: the agent sits at its prompt."""
    return lambda screen: screen.rstrip().endswith(prompt)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    if not alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def run_demo(out: Callable[[str], None] = print, keep: bool = False) -> int:
    """Run the whole demo; 0 on success, else 1 after a one-line `demo: FAILED: reason`."""
    try:
        demo = _Demo(out)
    except OSError as exc:
        out(f"demo: FAILED: cannot create a temporary directory: {exc}")
        return 1
    code = 1
    try:
        out("demo: two stand-in agents message each other on a private tmux server and a "
            "temporary HOME; your own tmux and ~/.agents are not touched")
        demo.check_tmux()
        demo.start_agents()
        addresses = demo.register()
        demo.deliver(addresses)
        demo.report()
        code = 0
    except DemoFailed as exc:
        out(f"demo: FAILED: {exc}")
    except KeyboardInterrupt:
        out("demo: interrupted")
        code = 130
    except Exception as exc:  # never a traceback for a newcomer
        out(f"demo: FAILED: unexpected {type(exc).__name__}: {exc}")
    finally:
        if keep and demo.pids:
            demo.keep_hint()
        else:
            out("demo: stopping the private tmux server and removing its temp dir")
            demo.teardown()
    if code == 0:
        out('demo: done. For real agents: run them in tmux windows, then agent-discover, '
            'notify-pane --list and notify-pane ADDRESS "message"')
    return code
