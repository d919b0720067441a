"""The interface behind `agent-mesh setup --agents` (ops/agents.py runs it).

One `AgentCLI` per agent CLI agent-mesh integrates with (Claude Code here, Codex in
ops/codex.py), each with a list of `Step`s. A step installs, removes and checks one
thing in that CLI's own config; today there is one, `hooks` (the lifecycle hooks that
run `agent-mesh agent-event`, cli/agent_event.py). Another feature adds its own step to
every CLI with `add_step(factory)` (the MCP server registration does), and setup and
doctor then run it with the rest.

Every step is idempotent and touches only its own entries: agent-mesh's hook handlers
are found by their command (the launcher path, HOOK_MARK) and only those are added,
updated or removed; the user's own entries, their order, and (in TOML, through tomlkit)
their comments stay as they were. JSON keeps its key order. A config that does not
parse is reported and left alone.

EMPTIED: removing ours also removes each container it leaves empty that holds nothing
else: a hook group, an event's list, "hooks", "mcpServers", [mcp_servers], [hooks.state],
[hooks], and a whole file left holding nothing (`{}`, or no TOML at all). The rule is the
simplest honest one: whether a container was empty before setup filled it is not
recorded, so one the user left empty goes too; to each CLI an empty one and a missing
one mean the same. A container that still holds anything, even a comment, stays.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Callable

from agent_mesh import paths
from agent_mesh.ops.setup_base import (
    Report,
    data_file,
    edit_config,
    install_copy,
    read_or_none,
    run_helper,
    tilde,
)
from agent_mesh.receivers import PACKAGES, traits

HOOK_MARK = "agent-mesh/hooks/agent-event"
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
    return _parse_json(read_or_none(path))


def _parse_json(text: str | None) -> dict[str, object] | None:
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
    odd = [event for event, groups in hooks.items() if not isinstance(groups, list)]
    if odd:  # the user's own entry, malformed: not ours to replace
        raise ValueError(f'its "hooks"."{odd[0]}" is not a list of groups')
    before = json.dumps(hooks)
    wanted = dict(events)
    present: set[str] = set()

    def keep(event: str, handler: object) -> bool:
        """The first exact handler of ours for a wanted event stays; the rest go."""
        if event in wanted and event not in present \
                and handler == _handler(agent, event, wanted[event]):
            present.add(event)
            return True
        return False

    _drop_ours(hooks, keep)
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
    changed = _drop_ours(hooks, lambda _event, _handler: False)
    if changed and not hooks:
        del data["hooks"]
    return changed


def _drop_ours(hooks: dict[str, object], keep: Callable[[str, object], bool]) -> bool:
    """The one walk of the hook groups: every handler of ours that keep(event, handler)
    refuses goes (asked in order), and so does a group or an event's list that this
    leaves empty (EMPTIED); the user's own groups and lists stay as they are. True
    when a handler went."""
    changed = False
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
            left = [h for h in handlers if not ours(h) or keep(event, h)]
            changed = changed or len(left) != len(handlers)
            if left:
                group["hooks"] = left
                kept.append(group)
        if kept or not groups:  # a user's own empty list stays
            hooks[event] = kept
        else:
            del hooks[event]
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
        if _load_json(path) is None:
            report.problem(f"{self.cli.label}: {tilde(path)} is not a JSON object; left as it "
                           "is (fix it, then re-run agent-mesh setup --agents)")
            return
        install_launcher(report)
        done: dict[str, object] = {}

        def edit(text: str | None) -> str | None:
            """Run again on what the CLI wrote, if it wrote the file meanwhile."""
            done.clear()
            data = _parse_json(text)
            if data is None:
                done["problem"] = "is not a JSON object; left as it is"
                return None
            previous = json.loads(json.dumps(data))
            try:
                changed = merge_hooks(data, self.cli.name, self.cli.events, self.matcher)
            except ValueError as exc:
                done["problem"] = f"{exc}; left as it is"
                return None
            done.update(data=data, previous=previous)
            return _dump_json(data) if changed else None

        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if edit_config(path, edit):
            report.say(f"{self.cli.label}: hooks for {len(self.cli.events)} events in "
                       f"{tilde(path)}")
        elif "problem" in done:
            report.problem(f"{self.cli.label}: {tilde(path)}: {done['problem']}")
            return
        else:
            report.say(f"{self.cli.label}: hooks already in {tilde(path)}")
        self.after(report, done["data"], done["previous"])  # type: ignore[arg-type]

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

        def edit(text: str | None) -> str | None:
            now = _parse_json(text)
            if now is None or not remove_hooks(now):
                return None
            return _dump_json(now) if now else ""  # "": nothing else in it (EMPTIED)

        if edit_config(path, edit, remove_empty=True):
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
    """hooks/agent-event (the CLI records hook.launch, so that it starts Python without
    `site`: cli/setup_cmd.run_agents)."""
    target = launcher()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if install_copy(data_file("agent-event"), target, 0o755):
        report.say(f"installed {tilde(target)}")


# --- Claude Code -----------------------------------------------------------------------


class ClaudeHooks(JsonHooks):
    matcher = True

    def path(self) -> str:
        return os.path.join(self.cli.config_dir(), "settings.json")


class ClaudeCode(AgentCLI):
    name = PACKAGES["@anthropic-ai/claude-code"]
    label = traits(name).shown
    events = (("SessionStart", 10), ("UserPromptSubmit", 10), ("PostToolUse", 10),
              ("PermissionRequest", 10), ("Notification", 10), ("Elicitation", 10),
              ("ElicitationResult", 10), ("Stop", 30), ("StopFailure", 10),
              ("SessionEnd", 10))

    def config_dir(self) -> str:
        return os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(paths.home(), ".claude")

    def hook_step(self) -> Step:
        return ClaudeHooks(self)


