"""The real Claude Code and Codex CLIs in tmux panes, each talking to a fake model server.

Why: issues 15 (hooks) and 16 (MCP) must be proven against the real agent TUIs, not
stand-ins. scripts/install-agent-clis puts pinned releases under .cache/agent-clis/;
tests/fake_model.py plays the model. This module writes each CLI's config into the
test's isolated HOME (every first-run dialog answered, no update checks or telemetry),
starts the CLI in a window of the test's private tmux server (session `dev`, as the
`spawn` fixture does, so `spawn.register()` makes it an addressable agent), and gives
helpers to wait for the prompt, submit a prompt and wait for the turn to end.

Fixtures: `fake_model`, `agent_clis` (an `AgentClis` launcher), and the shortcuts
`claude` and `codex` (one started, idle CLI each). Tests skip, saying why, when a CLI is
not installed. See tests/AGENT_CLIS.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fake_model import FakeModel, Request, Turn

if TYPE_CHECKING:  # conftest imports this module's fixtures: no import cycle at run time
    from conftest import Pane, Spawner

REPO = Path(__file__).resolve().parent.parent

CLAUDE_VERSION = os.environ.get("AGENT_CLIS_CLAUDE", "2.1.332")
CODEX_VERSION = os.environ.get("AGENT_CLIS_CODEX", "0.171.0")
CACHE = REPO / ".cache" / "agent-clis" / f"claude-{CLAUDE_VERSION}-codex-{CODEX_VERSION}"


def _find_bin() -> Path:
    """AGENT_CLIS_BIN, else this checkout's cache, else another worktree's of the same repo
    (parallel worktrees share one 800 MB install instead of one each)."""
    if os.environ.get("AGENT_CLIS_BIN"):
        return Path(os.environ["AGENT_CLIS_BIN"])
    rel = CACHE.relative_to(REPO) / "node_modules" / ".bin"
    if (CACHE / ".installed").exists():
        return REPO / rel
    try:
        out = subprocess.run(["git", "-C", str(REPO), "worktree", "list", "--porcelain"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            other = Path(line[len("worktree "):])
            if (other / CACHE.relative_to(REPO) / ".installed").exists():
                return other / rel
    return REPO / rel


CLIS_BIN = _find_bin()
INSTALLER = REPO / "scripts" / "install-agent-clis"

# Any key: the fake server does not check it. Claude Code remembers approved keys by
# their last 20 characters (customApiKeyResponses in ~/.claude.json).
CLAUDE_KEY = "sk-ant-api03-fake-agent-mesh-tests-0123456789abcdefghijklmnop"
CODEX_KEY_ENV = "FAKE_MODEL_API_KEY"
CODEX_MODEL = "fake-model"

# Claude Code: no updater, no telemetry/error reports/feedback surveys, no traffic
# other than model calls (everything it still sends goes to ANTHROPIC_BASE_URL).
CLAUDE_ENV = {
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}
# The footers of an open question (permission prompt, option list), per CLI.
QUESTION_MARKERS = {
    "claude": ("Esc to cancel",),
    "codex": ("Press enter to confirm", "esc to cancel"),
}
# Tools Claude Code may run without asking (permission rules in settings.json);
# `mcp__agent-mesh` allows every tool of that MCP server.
CLAUDE_ALLOW = ["Bash", "Read", "Write", "Edit", "mcp__agent-mesh"]


def cli_path(name: str) -> Path | None:
    """The installed CLI `claude` or `codex`, or None."""
    path = CLIS_BIN / name
    return path if path.exists() and os.access(path, os.X_OK) else None


def skip_reason(name: str) -> str | None:
    """Why tests driving CLI `name` cannot run here, or None when they can."""
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    if cli_path(name) is None:
        return (f"{name} is not installed under {CLIS_BIN} (scripts/install-agent-clis "
                "installs it from the npm registry; it needs npm and registry access)")
    return None


def require(name: str) -> Path:
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    path = cli_path(name)
    assert path is not None
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge extra into base (dicts merge, everything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_claude_config(home: Path, cwd: Path, settings: dict[str, Any] | None = None,
                        state: dict[str, Any] | None = None) -> None:
    """~/.claude.json (onboarding done, key approved, folder trusted, no auto-update) and
    ~/.claude/settings.json (permission rules; `settings` is merged in, e.g. hooks)."""
    claude_json = home / ".claude.json"
    current = json.loads(claude_json.read_text()) if claude_json.exists() else {}
    _merge(current, {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": CLAUDE_VERSION,
        "theme": "dark",
        "autoUpdates": False,
        "customApiKeyResponses": {"approved": [CLAUDE_KEY[-20:]], "rejected": []},
        "projects": {str(cwd): {"hasTrustDialogAccepted": True,
                                "hasCompletedProjectOnboarding": True,
                                "allowedTools": []}},
    })
    _merge(current, state or {})
    claude_json.write_text(json.dumps(current, indent=2))
    settings_path = home / ".claude" / "settings.json"
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    # Manual permission mode: 2.1.332 defaults to auto mode, whose per-tool safety check
    # runs on Anthropic's side and cannot get through a local base URL (a tool outside
    # `allow` then stops the turn); in manual mode it asks in the pane instead.
    _merge(current, {"permissions": {"allow": list(CLAUDE_ALLOW),
                                     "disableAutoMode": "disable"}})
    _merge(current, settings or {})
    settings_path.write_text(json.dumps(current, indent=2))


def codex_config_text(model: FakeModel, cwd: Path) -> str:
    """The parts of ~/.codex/config.toml a test run needs: the fake model provider,
    no approvals or sandbox, the project trusted, no update check or analytics."""
    return f"""\
model = "{CODEX_MODEL}"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "{model.url}/v1"
wire_api = "responses"
env_key = "{CODEX_KEY_ENV}"
request_max_retries = 0
stream_max_retries = 0

[projects."{cwd}"]
trust_level = "trusted"

[analytics]
enabled = false

[features]
daemon_auto_start = false
"""


def write_codex_config(home: Path, cwd: Path, model: FakeModel, extra: str = "") -> None:
    """Merge the test settings and `extra` (TOML: hooks, mcp_servers, ...) into
    ~/.codex/config.toml, keeping what is there (hook trust, Codex's own notes)."""
    import tomlkit

    path = home / ".codex" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    for text in (codex_config_text(model, cwd), extra):
        if text:
            _merge_toml(doc, tomlkit.parse(text))
    path.write_text(tomlkit.dumps(doc))


def _merge_toml(base: Any, extra: Any) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_toml(base[key], value)
        else:
            base[key] = value


def codex_app_server_call(home: Path, cwd: Path, calls: list[tuple[str, dict[str, Any]]],
                          timeout: float = 30.0) -> list[dict[str, Any]]:
    """Run `codex app-server` (JSON-RPC over stdio) with HOME at `home`, make `calls`
    (method, params) in order after `initialize`; their `result`s. Raises on an error."""
    import selectors

    binary = require("codex")
    env = dict(os.environ, HOME=str(home), CODEX_HOME=str(home / ".codex"))
    proc = subprocess.Popen([str(binary), "app-server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            cwd=cwd)
    assert proc.stdin is not None and proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""

    def send(obj: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(obj).encode() + b"\n")
        proc.stdin.flush()

    def answer(ident: int) -> dict[str, Any]:
        nonlocal buf
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("id") == ident and "method" not in msg:
                    if "error" in msg:
                        raise AssertionError(f"codex app-server: {msg['error']}")
                    return dict(msg.get("result") or {})
            if time.monotonic() > deadline or not sel.select(deadline - time.monotonic()):
                raise AssertionError("codex app-server did not answer in time")
            chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                raise AssertionError("codex app-server exited")
            buf += chunk

    try:
        send({"id": 0, "method": "initialize",
              "params": {"clientInfo": {"name": "agent-mesh-tests", "version": "1"}}})
        answer(0)
        send({"method": "initialized"})
        results = []
        for ident, (method, params) in enumerate(calls, start=1):
            send({"id": ident, "method": method, "params": params})
            results.append(answer(ident))
        return results
    finally:
        proc.kill()
        proc.wait()


def codex_hooks(home: Path, cwd: Path) -> list[dict[str, Any]]:
    """Codex's own list of the hooks it sees for `cwd` (`hooks/list`): each with `key`,
    `eventName`, `command`, `currentHash`, `trustStatus` (untrusted|trusted|modified|managed)."""
    [listed] = codex_app_server_call(home, cwd, [("hooks/list", {"cwds": [str(cwd)]})])
    return [hook for entry in listed.get("data", []) for hook in entry.get("hooks", [])]


def trust_codex_hooks(home: Path, cwd: Path) -> list[dict[str, Any]]:
    """Trust every hook Codex lists for `cwd`, as its /hooks review does: Codex computes
    each `currentHash`, `config/batchWrite` stores it as
    `[hooks.state."<key>"] trusted_hash` in ~/.codex/config.toml. The hooks after."""
    hooks = codex_hooks(home, cwd)
    state = {h["key"]: {"trusted_hash": h["currentHash"]} for h in hooks
             if h.get("trustStatus") in ("untrusted", "modified")}
    if state:
        codex_app_server_call(home, cwd, [("config/batchWrite", {"edits": [
            {"keyPath": "hooks.state", "mergeStrategy": "upsert", "value": state}]})])
    return codex_hooks(home, cwd)


@dataclass
class AgentCli:
    """One real agent CLI running in a tmux pane, talking to `model`."""

    kind: str  # "claude" | "codex"
    pane: Pane
    model: FakeModel
    name: str  # the tmux window name
    cwd: Path
    home: Path
    spawner: Spawner = field(repr=False)
    argv: list[str] = field(default_factory=list, repr=False)  # what the pane runs

    def respawn(self, wait: bool = True) -> None:
        """Kill the CLI and start it afresh in the same pane (same pane and window ids,
        same config, a new session): "the agent died, a new one took its window"."""
        self.pane.server.run("respawn-pane", "-k", "-t", self.pane.pane_id, *self.argv)
        if wait:
            self.wait_idle(timeout=60)

    def kill(self) -> None:
        """Kill the CLI; with tmux defaults its pane (and window) goes away."""
        self.pane.server.run("kill-pane", "-t", self.pane.pane_id)

    @property
    def address(self) -> str:
        """The agent's agent-mesh address once `spawner.register()` ran."""
        from conftest import SELF_HOST

        return f"{SELF_HOST}-{self.spawner.session}-{self.name}"

    def screen(self) -> str:
        """The pane's text; AssertionError if the pane is gone (the CLI exited: run it by
        hand with the same config to see why, e.g. a config key this version refuses)."""
        out = self.pane.server.run("capture-pane", "-p", "-t", self.pane.pane_id, check=False)
        if out.returncode != 0:
            raise AssertionError(f"the {self.kind} pane {self.pane.pane_id} is gone: the CLI "
                                 f"exited ({out.stderr.strip()})")
        return out.stdout

    def wait_screen(self, text: str, timeout: float = 15.0) -> str:
        """Wait until `text` is on screen; the screen. The error shows the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not on the {self.kind} screen within "
                                     f"{timeout}s; screen:\n{screen}")
            time.sleep(0.05)

    def busy(self, screen: str | None = None) -> bool:
        """The TUI says a turn is running (both show `esc to interrupt` then)."""
        text = self.screen() if screen is None else screen
        return "esc to interrupt" in text

    def at_prompt(self, screen: str | None = None) -> bool:
        """The input box is drawn. Claude Code: a `❯` row right under a `─` rule (its
        history and its option lists also start rows with `❯`); Codex: a `›` row that is
        not a numbered option."""
        text = self.screen() if screen is None else screen
        lines = text.splitlines()
        for i, line in enumerate(lines):
            row = line.lstrip()
            if self.kind == "claude":
                above = lines[i - 1].strip() if i else ""
                if row.startswith("❯") and above and set(above) == {"─"}:
                    return True
            elif row.startswith("›") and not re.match(r"›\s*\d+\.\s", row):
                return True
        return False

    def question(self, screen: str | None = None) -> bool:
        """A question waits for a person (permission, choice): its footer is on screen."""
        text = self.screen() if screen is None else screen
        return any(marker in text for marker in QUESTION_MARKERS[self.kind])

    def idle(self) -> bool:
        """At the prompt, no turn running, no question open."""
        screen = self.screen()
        return self.at_prompt(screen) and not self.busy(screen) and not self.question(screen)

    def wait_idle(self, timeout: float = 30.0, stable: float = 0.5) -> str:
        """Wait until the prompt is drawn, no turn runs and the model server streams
        nothing, and that holds for `stable` seconds; the screen then."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        while True:
            now = time.monotonic()
            if self.idle() and self.model.idle(self.name):
                since = since or now
                if now - since >= stable:
                    return self.screen()
            else:
                since = None
            if now >= deadline:
                raise AssertionError(
                    f"{self.kind} not idle within {timeout}s "
                    f"(model idle: {self.model.idle(self.name)}, "
                    f"turns left: {self.model.pending()})"
                    f"; screen:\n{self.screen()}")
            time.sleep(0.1)

    def type_text(self, text: str) -> None:
        """Put text in the input box as a bracketed paste (no Enter)."""
        buf = f"agent-clis-{uuid.uuid4().hex[:8]}"
        self.pane.server.run("load-buffer", "-b", buf, "-", input=text)
        self.pane.server.run("paste-buffer", "-p", "-r", "-d", "-b", buf, "-t", self.pane.pane_id)

    def submit(self, text: str) -> None:
        """Paste text into the input box and press Enter once it is drawn."""
        self.type_text(text)
        probe = text.strip().splitlines()[0][:30] if text.strip() else ""
        if probe:
            from conftest import retry_until

            try:
                # A long or multi-line paste is drawn collapsed: Claude Code shows
                # `[Pasted text #1 +N lines]`, Codex `[Pasted Content N chars]`.
                retry_until(lambda: probe in (screen := self.screen())
                            or "[Pasted" in screen, timeout=10)
            except AssertionError:
                raise AssertionError(f"{probe!r} not drawn in {self.kind}'s input box; "
                                     f"screen:\n{self.screen()}") from None
        time.sleep(0.3)
        self.pane.send_keys("Enter")

    def answer(self, *keys: str, settle: float = 0.5) -> None:
        """Answer an open question with tmux keys (e.g. "Enter" for the first option).
        Waits `settle` first: Claude Code 2.1.332 drops an Enter that comes within
        ~100 ms of a permission dialog being drawn (200 ms and more were taken)."""
        time.sleep(settle)
        self.pane.send_keys(*keys)

    def run_turn(self, text: str, requests: int = 1, timeout: float = 60.0) -> Request:
        """Submit a prompt and wait for the turn to end: `requests` main requests (2 for a
        turn with one tool call) and the CLI idle again; the first request it caused."""
        before = len(self.requests())
        self.submit(text)
        seen = self.model.wait_main(before + requests, timeout=timeout, agent=self.name)
        self.wait_idle(timeout=timeout)
        return seen[before]

    def script(self, *turns: Turn) -> None:
        """Queue answers for this agent alone (other agents on the server don't take them)."""
        self.model.script(*turns, agent=self.name)

    def requests(self) -> list[Request]:
        """This agent's main requests so far."""
        return self.model.main_requests(agent=self.name)

    def wait_requests(self, count: int, timeout: float = 30.0) -> list[Request]:
        """Block until this agent made `count` main requests; all of them."""
        return self.model.wait_main(count, timeout=timeout, agent=self.name)


class AgentClis:
    """Starts real agent CLIs as windows of the `spawn` fixture's session."""

    def __init__(self, spawner: Spawner, model: FakeModel, home: Path, tmp: Path) -> None:
        self.spawner = spawner
        self.model = model
        self.home = home
        self.tmp = tmp

    def _cwd(self, name: str, cwd: Path | None) -> Path:
        path = cwd or self.tmp / f"proj-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start(self, kind: str, name: str, argv: list[str], env: dict[str, str],
               cwd: Path, wait: bool) -> AgentCli:
        # Temp files (Claude Code's per-uid dir, Codex's daemon sockets) go under the test's
        # own temp dir, removed with it, not into /tmp (kept short: socket paths).
        tmp = self.home.parent / "t"
        tmp.mkdir(mode=0o700, exist_ok=True)
        env = {"TMPDIR": str(tmp), "CLAUDE_CODE_TMPDIR": str(tmp), **env}
        full = ["env", "-C", str(cwd), *(f"{k}={v}" for k, v in env.items()), *argv]
        pane = self.spawner.window(name, full)
        agent = AgentCli(kind, pane, self.model, name, cwd, self.home, self.spawner, full)
        if wait:
            agent.wait_idle(timeout=60)
        return agent

    def claude(self, name: str = "claude", *args: str, settings: dict[str, Any] | None = None,
               state: dict[str, Any] | None = None, env: dict[str, str] | None = None,
               cwd: Path | None = None, wait: bool = True) -> AgentCli:
        """Claude Code with ANTHROPIC_BASE_URL at the fake model. `settings` merges into
        ~/.claude/settings.json (hooks, permissions), `state` into ~/.claude.json
        (e.g. mcpServers); `args` go to `claude`."""
        binary = require("claude")
        path = self._cwd(name, cwd)
        write_claude_config(self.home, path, settings, state)
        full_env = {"HOME": str(self.home), "ANTHROPIC_BASE_URL": self.model.url_for(name),
                    "ANTHROPIC_API_KEY": CLAUDE_KEY, **CLAUDE_ENV, **(env or {})}
        return self._start("claude", name, [str(binary), *args], full_env, path, wait)

    def codex(self, name: str = "codex", *args: str, config: str = "",
              env: dict[str, str] | None = None, cwd: Path | None = None,
              wait: bool = True) -> AgentCli:
        """Codex with a `fake` model provider at the fake model. `config` is TOML appended
        to ~/.codex/config.toml (hooks, mcp_servers); `args` go to `codex`."""
        binary = require("codex")
        path = self._cwd(name, cwd)
        write_codex_config(self.home, path, self.model, config)
        full_env = {"HOME": str(self.home), "CODEX_HOME": str(self.home / ".codex"),
                    CODEX_KEY_ENV: "sk-fake", **(env or {})}
        # config.toml is shared by every Codex of the test; the route to this agent's own
        # queue on the fake model goes on its command line.
        route = f'model_providers.fake.base_url="{self.model.url_for(name)}/v1"'
        argv = [str(binary), "-c", route, *args]
        return self._start("codex", name, argv, full_env, path, wait)


def cli_version(name: str) -> str:
    """`claude --version` / `codex --version` of the installed CLI ('' if missing)."""
    path = cli_path(name)
    if path is None:
        return ""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                         timeout=30, check=False)
    return out.stdout.strip()


# --- fixtures (re-exported by tests/conftest.py) ----------------------------------

@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


def stop_codex_daemons(home: Path, timeout: float = 3.0) -> list[int]:
    """End the app-server daemons a Codex under `home` started: the TUI launches one from
    `$CODEX_HOME/packages/app-server-daemon/` in a session of its own, so it outlives the
    pane and the tmux server. Only processes whose executable lies under `home` are touched.
    The pids found."""
    import signal

    prefix = str(home / ".codex" / "packages") + "/"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{name}/exe")
        except OSError:
            continue
        if exe.startswith(prefix):
            found.append(int(name))
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found):
        time.sleep(0.05)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return found


@pytest.fixture
def agent_clis(spawn: Spawner, fake_model: FakeModel, isolated_env: Path,
               tmp_path: Path) -> Iterator[AgentClis]:
    yield AgentClis(spawn, fake_model, isolated_env, tmp_path)
    spawn.server.run("kill-server", check=False)
    stop_codex_daemons(isolated_env)


@pytest.fixture
def claude(agent_clis: AgentClis) -> AgentCli:
    """A started Claude Code, idle at its prompt, in window `claude` of session `dev`."""
    return agent_clis.claude()


@pytest.fixture
def codex(agent_clis: AgentClis) -> AgentCli:
    """A started Codex, idle at its prompt, in window `codex` of session `dev`."""
    return agent_clis.codex()
