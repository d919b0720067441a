"""`agent-mesh setup --agents`: wire agent-mesh into each agent CLI's own user config.

One `AgentCLI` per agent CLI agent-mesh integrates with (Claude Code, Codex), each with
a list of `Step`s. A step installs, removes and checks one thing in that CLI's config;
today there is one, `hooks` (the lifecycle hooks that run `agent-mesh agent-event`,
cli/agent_event.py). Another feature adds its own step to every CLI with
`add_step(factory)` (the MCP server registration does), and `setup --agents` and
`doctor` run it with the rest: nothing here needs to change.

Every step is idempotent and touches only its own entries: agent-mesh's hook handlers
are found by their command (the launcher path, HOOK_MARK) and only those are added,
updated or removed; the user's own entries, their order, and (in TOML, through tomlkit)
their comments stay as they were. JSON keeps its key order. A config that does not
parse is reported and left alone.

Where things go:
- Claude Code: `hooks` in ~/.claude/settings.json ($CLAUDE_CONFIG_DIR/settings.json).
- Codex: ~/.codex/hooks.json ($CODEX_HOME), and in ~/.codex/config.toml the trust Codex
  requires for hooks it does not manage (`[hooks.state."<hooks.json>:<event>:<group>:
  <handler>"] trusted_hash`, the hash Codex computes, see `codex_hook_hash`) and
  `[features] hooks = true` where no `hooks` flag is set.
Agent CLIs without such hooks (aider, and any other) stay keystroke-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable

from agent_mesh import paths
from agent_mesh.ops.setup import (
    Report,
    _install_copy,
    _read,
    _write_keeping,
    data_file,
    run_helper,
    tilde,
)

HOOK_MARK = "agent-mesh/hooks/agent-event"
FEATURE_NOTE = "added by agent-mesh setup --agents"


def launcher() -> str:
    """The sh launcher every agent hook runs (hooks/agent-event), next to tmux-event."""
    return os.path.join(paths.share_dir(), "hooks", "agent-event")


def hook_command(agent: str, event: str) -> str:
    return f"{shlex.quote(launcher())} --agent {agent} {event}"


def ours(handler: object) -> bool:
    return isinstance(handler, dict) and HOOK_MARK in str(handler.get("command") or "")


# --- the interface ---------------------------------------------------------------------


class Step:
    """One thing installed into one agent CLI's config."""

    name = "step"

    def __init__(self, cli: AgentCLI) -> None:
        self.cli = cli

    def install(self, report: Report) -> None:
        raise NotImplementedError

    def uninstall(self, report: Report) -> None:
        raise NotImplementedError

    def check(self) -> tuple[bool, str]:
        """(installed and current?, one line saying what is there)."""
        raise NotImplementedError


StepFactory = Callable[["AgentCLI"], "Step | None"]
_EXTRA: list[StepFactory] = []


def add_step(factory: StepFactory) -> None:
    """Register another per-CLI step (factory(cli) -> Step, or None where it does not
    apply); setup --agents, --uninstall and doctor then run it for every CLI."""
    if factory not in _EXTRA:
        _EXTRA.append(factory)


class AgentCLI:
    """An agent CLI agent-mesh integrates with: where its config is, its version."""

    name = ""      # the --agent word the hooks pass, and the executable's name
    label = ""     # as people call it
    events: tuple[tuple[str, int], ...] = ()  # (hook event, timeout in seconds)

    def config_dir(self) -> str:
        raise NotImplementedError

    def present(self) -> bool:
        """On this host: its executable on PATH, or its config folder exists."""
        return bool(shutil.which(self.name)) or os.path.isdir(self.config_dir())

    def version(self) -> str:
        exe = shutil.which(self.name)
        if not exe:
            return "not on PATH"
        code, out, err = run_helper([exe, "--version"], timeout=15)
        words = (out or err).strip().splitlines()
        return words[0].strip() if code == 0 and words else f"unknown ({exe} --version failed)"

    def steps(self) -> list[Step]:
        steps: list[Step] = [self.hook_step()]
        for factory in _EXTRA:
            step = factory(self)
            if step is not None:
                steps.append(step)
        return steps

    def hook_step(self) -> Step:
        raise NotImplementedError

    def last_fired(self) -> float | None:
        """When one of this CLI's hooks last ran agent-event (turns/.last-NAME)."""
        from agent_mesh.delivery.turns import turns_dir

        try:
            return os.stat(os.path.join(turns_dir(), f".last-{self.name}")).st_mtime
        except OSError:
            return None


# --- JSON hook configs (Claude Code's settings.json, Codex's hooks.json) ---------------


def _load_json(path: str) -> dict[str, object] | None:
    """The file's object ({} when missing); None when it is not a JSON object."""
    text = _read(path)
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _dump_json(data: dict[str, object]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def merge_hooks(data: dict[str, object], agent: str, events: tuple[tuple[str, int], ...],
                matcher: bool) -> bool:
    """Put agent-mesh's handler for each event into data["hooks"] (a group of its own,
    appended after the user's groups); True when anything changed. Handlers of ours
    that are not exactly what is wanted (an event no longer hooked, an old launcher
    path, a duplicate) are removed, and a group only they filled with them."""
    hooks = data.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError('its "hooks" is not an object')
    before = json.dumps(hooks)
    wanted = dict(events)
    present: set[str] = set()
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list) or not any(ours(h) for h in handlers):
                kept.append(group)
                continue
            left = []
            for handler in handlers:
                exact = event in wanted and handler == _handler(agent, event, wanted[event])
                if not ours(handler) or (exact and event not in present):
                    left.append(handler)
                    if ours(handler):
                        present.add(event)
            if left:
                group["hooks"] = left
                kept.append(group)
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    for event, timeout in events:
        if event not in present:
            groups = hooks.get(event)
            hooks[event] = [*(groups if isinstance(groups, list) else []),
                            _group(agent, event, timeout, matcher)]
    return json.dumps(hooks) != before


def remove_hooks(data: dict[str, object]) -> bool:
    """Take every agent-mesh handler out of data["hooks"]; True when anything changed."""
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return False
    changed = False
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(handlers, list) and any(ours(h) for h in handlers):
                changed = True
                group["hooks"] = [h for h in handlers if not ours(h)]
                if not group["hooks"]:
                    continue
            kept.append(group)
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    if changed and not hooks:
        del data["hooks"]
    return changed


def _handler(agent: str, event: str, timeout: int) -> dict[str, object]:
    return {"type": "command", "command": hook_command(agent, event), "timeout": timeout}


def _group(agent: str, event: str, timeout: int, matcher: bool) -> dict[str, object]:
    group: dict[str, object] = {"hooks": [_handler(agent, event, timeout)]}
    return {"matcher": "", **group} if matcher else group


def installed_events(data: dict[str, object]) -> list[str]:
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return []
    return [event for event, groups in hooks.items() if isinstance(groups, list) and any(
        isinstance(g, dict) and isinstance(g.get("hooks"), list)
        and any(ours(h) for h in g["hooks"]) for g in groups)]


class JsonHooks(Step):
    """agent-mesh's hooks in a JSON config file of the CLI (`{"hooks": {EVENT: [group]}}`)."""

    name = "hooks"
    matcher = False  # write `"matcher": ""` into each group

    def path(self) -> str:
        raise NotImplementedError

    def install(self, report: Report) -> None:
        path = self.path()
        data = _load_json(path)
        if data is None:
            report.problem(f"{self.cli.label}: {tilde(path)} is not a JSON object; left as it "
                           "is (fix it, then re-run agent-mesh setup --agents)")
            return
        install_launcher(report)
        previous = json.loads(json.dumps(data))
        try:
            changed = merge_hooks(data, self.cli.name, self.cli.events, self.matcher)
        except ValueError as exc:
            report.problem(f"{self.cli.label}: {tilde(path)}: {exc}; left as it is")
            return
        if changed:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            _write_keeping(path, _dump_json(data))
            report.say(f"{self.cli.label}: hooks for {len(self.cli.events)} events in "
                       f"{tilde(path)}")
        else:
            report.say(f"{self.cli.label}: hooks already in {tilde(path)}")
        self.after(report, data, previous)

    def after(self, report: Report, data: dict[str, object],
              previous: dict[str, object]) -> None:
        """What else the CLI needs once the hooks are written (Codex: trust); previous:
        the file as it was."""

    def uninstall(self, report: Report) -> None:
        path = self.path()
        data = _load_json(path)
        if data is None:
            report.warn(f"{self.cli.label}: {tilde(path)} is not a JSON object; not changed")
            return
        self.before_removal(report, data)
        if remove_hooks(data):
            if data or os.path.basename(path) != "hooks.json":
                _write_keeping(path, _dump_json(data))
            else:
                os.unlink(path)  # a hooks.json with nothing but ours: setup made it
            report.say(f"{self.cli.label}: removed agent-mesh's hooks from {tilde(path)}")

    def before_removal(self, report: Report, data: dict[str, object]) -> None:
        """Codex: drop the trust entries of the handlers about to go."""

    def check(self) -> tuple[bool, str]:
        path = self.path()
        data = _load_json(path)
        if data is None:
            return False, f"{tilde(path)} is not a JSON object"
        have = installed_events(data)
        want = [event for event, _t in self.cli.events]
        missing = [e for e in want if e not in have]
        if not have:
            return False, f"no agent-mesh hooks in {tilde(path)}"
        if missing:
            return False, f"hooks missing in {tilde(path)}: {', '.join(missing)}"
        return True, f"hooks for {len(want)} events in {tilde(path)}"


def install_launcher(report: Report) -> None:
    """hooks/agent-event, and hook.launch so it starts Python without `site`."""
    target = launcher()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if _install_copy(data_file("agent-event"), target, 0o755):
        report.say(f"installed {tilde(target)}")
    try:
        from agent_mesh.cli.hook import remember_launch

        remember_launch()
    except Exception as exc:  # the launcher falls back to the console script
        report.warn(f"could not record the fast hook start (hook.launch): {exc}")


# --- Claude Code -----------------------------------------------------------------------


class ClaudeHooks(JsonHooks):
    matcher = True

    def path(self) -> str:
        return os.path.join(self.cli.config_dir(), "settings.json")


class ClaudeCode(AgentCLI):
    name = "claude"
    label = "Claude Code"
    events = (("SessionStart", 10), ("UserPromptSubmit", 10), ("PostToolUse", 10),
              ("PermissionRequest", 10), ("Notification", 10), ("Elicitation", 10),
              ("ElicitationResult", 10), ("Stop", 30), ("StopFailure", 10),
              ("SessionEnd", 10))

    def config_dir(self) -> str:
        return os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(paths.home(), ".claude")

    def hook_step(self) -> Step:
        return ClaudeHooks(self)


# --- Codex ---------------------------------------------------------------------------------

# Codex's own labels for its events in trust keys and hashes.
CODEX_LABELS = {"SessionStart": "session_start", "SessionEnd": "session_end",
                "UserPromptSubmit": "user_prompt_submit", "PostToolUse": "post_tool_use",
                "PermissionRequest": "permission_request", "Stop": "stop",
                "Interrupt": "interrupt", "PreToolUse": "pre_tool_use"}
_NO_MATCHER = frozenset({"UserPromptSubmit", "Stop"})  # Codex ignores a matcher there


def codex_hook_hash(event: str, handler: dict[str, object], matcher: str | None) -> str:
    """The hash Codex 0.171 keeps as a trusted hook's `trusted_hash`: sha256 of the
    compact, key-sorted JSON of {event_name, matcher (if any), hooks: [the handler as
    Codex normalises it: type, command, timeout (default 600; SessionEnd and Interrupt
    clamped to 1..3), async]} (codex-rs hooks discovery, `command_hook_hash`; checked
    against `codex app-server`'s hooks/list in tests/test_agent_setup.py)."""
    timeout = handler.get("timeout")
    seconds = int(timeout) if isinstance(timeout, int) and not isinstance(timeout, bool) else None
    if event in ("SessionEnd", "Interrupt"):
        seconds = min(max(seconds or 1, 1), 3)
    else:
        seconds = max(seconds if seconds is not None else 600, 1)
    normal: dict[str, object] = {"type": "command", "command": handler.get("command"),
                                 "timeout": seconds, "async": bool(handler.get("async"))}
    if handler.get("statusMessage") is not None:
        normal["statusMessage"] = handler["statusMessage"]
    identity: dict[str, object] = {"event_name": CODEX_LABELS[event], "hooks": [normal]}
    if matcher is not None and event not in _NO_MATCHER:
        identity["matcher"] = matcher
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def codex_trust(path: str, data: dict[str, object]) -> dict[str, str]:
    """{trust key: hash} for each agent-mesh handler in a hooks.json's data."""
    hooks = data.get("hooks")
    out: dict[str, str] = {}
    if not isinstance(hooks, dict):
        return out
    for event, groups in hooks.items():
        if event not in CODEX_LABELS or not isinstance(groups, list):
            continue
        for gi, group in enumerate(groups):
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list):
                continue
            for hi, handler in enumerate(handlers):
                if ours(handler):
                    matcher = group.get("matcher")
                    key = f"{path}:{CODEX_LABELS[event]}:{gi}:{hi}"
                    out[key] = codex_hook_hash(event, handler,
                                               None if matcher is None else str(matcher))
    return out


class CodexHooks(JsonHooks):
    def path(self) -> str:
        return os.path.join(self.cli.config_dir(), "hooks.json")

    def config_toml(self) -> str:
        return os.path.join(self.cli.config_dir(), "config.toml")

    def _load_toml(self, report: Report | None) -> object | None:
        import tomlkit

        text = _read(self.config_toml()) or ""
        try:
            return tomlkit.parse(text)
        except Exception as exc:  # tomlkit's errors have no common base worth naming
            if report is not None:
                report.problem(f"Codex: {tilde(self.config_toml())} does not parse ({exc}); "
                               "hooks written but not trusted: fix it, then re-run")
            return None

    def after(self, report: Report, data: dict[str, object],
              previous: dict[str, object]) -> None:
        import tomlkit

        doc = self._load_toml(report)
        if doc is None:
            return
        before = tomlkit.dumps(doc)  # type: ignore[arg-type]
        trust = codex_trust(os.path.abspath(self.path()), data)
        hooks = doc.get("hooks")  # type: ignore[attr-defined]
        if hooks is None:
            hooks = tomlkit.table(is_super_table=True)
            doc["hooks"] = hooks  # type: ignore[index]
        state = hooks.get("state")
        if state is None:
            state = tomlkit.table(is_super_table=True)
            hooks["state"] = state
        for key in codex_trust(os.path.abspath(self.path()), previous):
            if key not in trust and key in state:  # a handler of ours that moved or went
                del state[key]
        for key, value in trust.items():
            entry = state.get(key)
            if entry is None:
                entry = tomlkit.table()
                state[key] = entry
            entry["trusted_hash"] = value
        features = doc.get("features")  # type: ignore[attr-defined]
        if features is None:
            features = tomlkit.table()
            features.comment(FEATURE_NOTE)  # so that --uninstall knows it may remove it
            doc["features"] = features  # type: ignore[index]
        flag = features.get("hooks", features.get("codex_hooks"))
        if flag is None:
            item = tomlkit.item(True)
            item.comment(FEATURE_NOTE)
            features["hooks"] = item
        elif flag is False:
            report.warn("Codex: [features] hooks = false in config.toml turns every hook off; "
                        "left as you set it (agent-mesh then reads Codex's screen only)")
        after = _tidy(tomlkit.dumps(doc), before)  # type: ignore[arg-type]
        if after != before:
            os.makedirs(self.cli.config_dir(), mode=0o700, exist_ok=True)
            _write_keeping(self.config_toml(), after)
            report.say(f"Codex: trusted agent-mesh's hooks in {tilde(self.config_toml())}")

    def before_removal(self, report: Report, data: dict[str, object]) -> None:
        import tomlkit

        doc = self._load_toml(None)
        if doc is None:
            report.warn(f"Codex: {tilde(self.config_toml())} does not parse; its trust "
                        "entries for agent-mesh's hooks stay")
            return
        before = tomlkit.dumps(doc)  # type: ignore[arg-type]
        trust = codex_trust(os.path.abspath(self.path()), data)
        hooks = doc.get("hooks")  # type: ignore[attr-defined]
        state = hooks.get("state") if hooks is not None else None
        if state is not None:
            for key in trust:
                if key in state:
                    del state[key]
            if not state:
                del hooks["state"]
            if not hooks:
                del doc["hooks"]  # type: ignore[attr-defined]
        features = doc.get("features")  # type: ignore[attr-defined]
        if features is not None and "hooks" in features and \
                FEATURE_NOTE in (features.item("hooks").trivia.comment or ""):
            del features["hooks"]
            if not features and FEATURE_NOTE in (features.trivia.comment or ""):
                del doc["features"]  # type: ignore[attr-defined]
        after = _tidy(tomlkit.dumps(doc), before)  # type: ignore[arg-type]
        if after != before:
            _write_keeping(self.config_toml(), after)

    def check(self) -> tuple[bool, str]:
        ok, line = super().check()
        if not ok:
            return ok, line
        data = _load_json(self.path()) or {}
        doc = self._load_toml(None)
        if doc is None:
            return False, f"{tilde(self.config_toml())} does not parse"
        hooks = doc.get("hooks") or {}  # type: ignore[attr-defined]
        state = hooks.get("state") or {}
        trust = codex_trust(os.path.abspath(self.path()), data)
        untrusted = [k for k, v in trust.items()
                     if (state.get(k) or {}).get("trusted_hash") != v]
        if untrusted:
            return False, (f"{len(untrusted)} of agent-mesh's hooks are not trusted in "
                           f"{tilde(self.config_toml())}: Codex skips them")
        features = doc.get("features") or {}  # type: ignore[attr-defined]
        if features.get("hooks", features.get("codex_hooks")) is False:
            return False, "[features] hooks = false in config.toml: Codex runs no hook"
        return True, line + ", trusted"


def _tidy(text: str, was: str) -> str:
    """The blank lines tomlkit leaves at the end where a removed table was: the file
    ends as it ended before."""
    ending = was[len(was.rstrip("\n")):] or ""
    return text.rstrip("\n") + (ending or "\n") if text.strip() else ""


class Codex(AgentCLI):
    name = "codex"
    label = "Codex"
    events = (("SessionStart", 10), ("UserPromptSubmit", 10), ("PostToolUse", 10),
              ("PermissionRequest", 10), ("Stop", 30), ("Interrupt", 3), ("SessionEnd", 3))

    def config_dir(self) -> str:
        return os.environ.get("CODEX_HOME") or os.path.join(paths.home(), ".codex")

    def hook_step(self) -> Step:
        return CodexHooks(self)


CLIS: tuple[type[AgentCLI], ...] = (ClaudeCode, Codex)


def clis() -> list[AgentCLI]:
    return [cls() for cls in CLIS]


# --- what setup --agents and doctor run ---------------------------------------------------


def install(report: Report) -> None:
    """Every step for every agent CLI on this host; the others are named and skipped."""
    for cli in clis():
        if not cli.present():
            report.say(f"{cli.label}: not installed here ({cli.name} not on PATH, no "
                       f"{tilde(cli.config_dir())}); skipped")
            continue
        for step in cli.steps():
            step.install(report)


def uninstall(report: Report) -> None:
    """Remove every step's entries from every agent CLI's config (present or not)."""
    for cli in clis():
        for step in cli.steps():
            step.uninstall(report)
    target = launcher()
    if os.path.exists(target):
        os.unlink(target)
        report.say(f"removed {tilde(target)}")


def describe(now: float | None = None) -> list[tuple[str, bool, str]]:
    """(check name, ok, detail) per agent CLI on this host: steps installed and
    current, its version, when a hook last fired."""
    now = time.time() if now is None else now
    rows = []
    for cli in clis():
        if not cli.present():
            continue
        version = cli.version()
        fired = cli.last_fired()
        when = "never" if fired is None else f"{_ago(now - fired)} ago"
        for step in cli.steps():
            ok, line = step.check()
            rows.append((f"agent:{cli.name}:{step.name}", ok,
                         f"{cli.label} {version}: {line}; a hook last fired {when}"
                         if step.name == "hooks" else f"{cli.label}: {line}"))
    return rows


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
