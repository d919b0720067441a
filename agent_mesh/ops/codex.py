"""Codex's half of `agent-mesh setup --agents` (ops/agentcli.py has the interface).

Codex keeps hooks in ~/.codex/hooks.json ($CODEX_HOME) and runs one it does not manage
only once trusted: the trust is `[hooks.state."<hooks.json>:<event>:<group>:<handler>"]
trusted_hash` in config.toml, the hash Codex computes for the handler (`codex_hook_hash`,
checked against `codex app-server`'s hooks/list in tests/test_agent_setup.py). Setup also
sets `[features] hooks = true` and `daemon_auto_start = false` where they are not set,
each marked with FEATURE_NOTE so that --uninstall takes out only what it added; the TOML
is edited with tomlkit, keeping the user's comments and order.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from agent_mesh import paths
from agent_mesh.ops.agentcli import AgentCLI, JsonHooks, Step, _load_json, ours
from agent_mesh.ops.setup_base import Report, edit_config, read_or_none, tilde
from agent_mesh.receivers import PACKAGES, traits

FEATURE_NOTE = "added by agent-mesh setup --agents"
# Codex 0.171 runs turns (and so hooks) in an app-server daemon shared by every TUI of the
# user, started with the first TUI's environment: its hooks would all name that TUI's
# pane. Off, each TUI runs its own turns and its hooks run inside its pane.
DAEMON_FLAG = "daemon_auto_start"


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

    def _load_toml(self, report: Report | None, removing: bool = False,
                   text: str | None = None, read: bool = True) -> object | None:
        """config.toml (or text) as a tomlkit document, or None (said in report): it does
        not parse (a problem when installing), or tomlkit is missing (install.sh's
        --uninstall after its venv is gone)."""
        try:
            import tomlkit
        except ImportError:
            if report is not None:
                report.warn(f"Codex: tomlkit is not installed: {tilde(self.config_toml())} "
                            "not changed")
            return None
        try:
            doc = tomlkit.parse((read_or_none(self.config_toml()) if read else text) or "")
            why = _not_a_table(doc)
        except Exception as exc:  # tomlkit's errors have no common base worth naming
            why = f"does not parse ({exc})"
        if not why:
            return doc
        if report is not None and removing:
            report.warn(f"Codex: {tilde(self.config_toml())} {why}; its trust entries for "
                        "agent-mesh's hooks stay")
        elif report is not None:
            report.problem(f"Codex: {tilde(self.config_toml())} {why}; hooks written but not "
                           "trusted: fix it, then re-run")
        return None

    def after(self, report: Report, data: dict[str, object],
              previous: dict[str, object]) -> None:
        notes = [Report()]

        def edit(text: str | None) -> str | None:
            """Run again on what Codex wrote, if it wrote config.toml meanwhile."""
            notes[0] = Report()
            return self._trusting(notes[0], text, data, previous)

        os.makedirs(self.cli.config_dir(), mode=0o700, exist_ok=True)
        written = edit_config(self.config_toml(), edit)
        _replay(notes[0], report)
        if written:
            report.say(f"Codex: trusted agent-mesh's hooks in {tilde(self.config_toml())}")

    def _trusting(self, report: Report, text: str | None, data: dict[str, object],
                  previous: dict[str, object]) -> str | None:
        """config.toml's text with the trust for data's handlers (and none for handlers
        of ours only previous had), and the feature flags; None: nothing to change."""
        doc = self._load_toml(report, text=text, read=False)
        if doc is None:
            return None
        import tomlkit

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
        if isinstance(features, tomlkit.items.InlineTable):
            self._unmarkable(report, features)
        else:
            self._add_flags(report, features)
        after = _tidy(tomlkit.dumps(doc), before)  # type: ignore[arg-type]
        return after if after != before else None

    def _unmarkable(self, report: Report, features: Any) -> None:
        """An inline `features = {…}` cannot hold the marker comment --uninstall goes by:
        nothing is added there (it could not be taken out again); the user adds it."""
        wanted = [f"{name} = {value}" for name, value, have in (
            ("hooks", "true", features.get("hooks", features.get("codex_hooks"))),
            (DAEMON_FLAG, "false", features.get(DAEMON_FLAG))) if have is None]
        if wanted:
            report.warn(f"Codex: {tilde(self.config_toml())} has an inline `features = {{…}}`, "
                        f"which setup does not edit: add {' and '.join(wanted)} to it yourself "
                        "(see README: Agent integration)")

    def _add_flags(self, report: Report, features: Any) -> None:
        """`hooks = true` and DAEMON_FLAG = false where unset, each marked FEATURE_NOTE
        (features: a tomlkit table, or its proxy of dotted `features.x` keys)."""
        import tomlkit

        flag = features.get("hooks", features.get("codex_hooks"))
        if flag is None:
            item = tomlkit.item(True)
            item.comment(FEATURE_NOTE)
            features["hooks"] = item
        elif flag is False:
            report.warn("Codex: [features] hooks = false in config.toml turns every hook off; "
                        "left as you set it (agent-mesh then reads Codex's screen only)")
        daemon = features.get(DAEMON_FLAG)
        if daemon is None:
            item = tomlkit.item(False)
            item.comment(FEATURE_NOTE)
            features[DAEMON_FLAG] = item
        elif daemon is True:
            report.warn(f"Codex: [features] {DAEMON_FLAG} = true: Codex's shared app-server "
                        "daemon runs every TUI's hooks from the first TUI's pane, so they cannot "
                        "tell panes apart and agent-mesh ignores them; left as you set it")

    def before_removal(self, report: Report, data: dict[str, object]) -> None:
        notes = [Report()]

        def edit(text: str | None) -> str | None:
            notes[0] = Report()
            return self._untrusting(notes[0], text, data)  # "": empty (agentcli: EMPTIED)

        edit_config(self.config_toml(), edit, remove_empty=True)
        _replay(notes[0], report)

    def _untrusting(self, report: Report, text: str | None,
                    data: dict[str, object]) -> str | None:
        """config.toml's text without the trust for data's handlers of ours, nor the
        feature flags setup added; None: nothing to change."""
        if text is None:
            return None
        doc = self._load_toml(report, removing=True, text=text, read=False)
        if doc is None:
            return None
        import tomlkit

        before = tomlkit.dumps(doc)  # type: ignore[arg-type]
        trust = codex_trust(os.path.abspath(self.path()), data)
        hooks = doc.get("hooks")  # type: ignore[attr-defined]
        state = hooks.get("state") if hooks is not None else None
        if state is not None and any(key in state for key in trust):
            for key in trust:
                if key in state:
                    del state[key]
            if not state:  # emptied by us (agentcli: EMPTIED)
                del hooks["state"]
            if not hooks:
                del doc["hooks"]  # type: ignore[attr-defined]
        features = doc.get("features")  # type: ignore[attr-defined]
        if features is not None:
            for flag in ("hooks", DAEMON_FLAG):
                _remove_marked(doc, flag)
            features = doc.get("features")  # type: ignore[attr-defined]
            trivia = getattr(features, "trivia", None)
            if not features and trivia is not None and FEATURE_NOTE in (trivia.comment or ""):
                del doc["features"]  # type: ignore[attr-defined]
        after = _tidy(tomlkit.dumps(doc), before)  # type: ignore[arg-type]
        return after if after != before else None

    def check(self) -> tuple[bool, str]:
        ok, line = super().check()
        if not ok:
            return ok, line
        data = _load_json(self.path()) or {}
        doc = self._load_toml(None)
        if doc is None:
            return False, f"{tilde(self.config_toml())} does not parse, or a table is not one"
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
        if features.get(DAEMON_FLAG) is not False:
            return False, (f"[features] {DAEMON_FLAG} is not false in config.toml: Codex's "
                           "shared daemon runs the hooks, which then cannot tell panes apart")
        return True, line + ", trusted"


def _not_a_table(doc: Any) -> str:
    """Where config.toml has another type for a table setup edits ('' if none): said in
    one line, the file left as it is (tomlkit's tables are dicts)."""
    hooks = doc.get("hooks")
    state = hooks.get("state") if isinstance(hooks, dict) else None
    named = [("hooks", hooks), ("hooks.state", state), ("features", doc.get("features"))]
    if isinstance(state, dict):
        named += [(f"hooks.state.{json.dumps(key)}", value) for key, value in state.items()]
    bad = [key for key, value in named if value is not None and not isinstance(value, dict)]
    return f"has `{bad[0]}` that must be a table" if bad else ""


def _replay(notes: Report, report: Report) -> None:
    """What the last try of an edit said, said once (an edit may run again)."""
    for kind, text in notes.lines:
        {"say": report.say, "warn": report.warn, "error": report.problem}[kind](text)


def _remove_marked(doc: object, flag: str) -> None:
    """Take `flag` out of [features] if setup added it (FEATURE_NOTE), wherever it is
    written: one table, or dotted `features.x = …` keys, which tomlkit splits into
    several tables (deleting through its proxy of them fails: each is edited alone)."""
    from tomlkit.items import Table

    for key, value in getattr(doc, "body", ()):
        if key is not None and key.key == "features" and isinstance(value, Table) \
                and flag in value:
            item = value.value.item(flag)
            if FEATURE_NOTE in (getattr(getattr(item, "trivia", None), "comment", "") or ""):
                del value[flag]
            return


def _tidy(text: str, was: str) -> str:
    """The blank lines tomlkit leaves at the end where a removed table was: the file
    ends as it ended before."""
    ending = was[len(was.rstrip("\n")):] or ""
    return text.rstrip("\n") + (ending or "\n") if text.strip() else ""


class Codex(AgentCLI):
    name = PACKAGES["@openai/codex"]
    label = traits(name).shown
    events = (("SessionStart", 10), ("UserPromptSubmit", 10), ("PostToolUse", 10),
              ("PermissionRequest", 10), ("Stop", 30), ("Interrupt", 3), ("SessionEnd", 3))

    def config_dir(self) -> str:
        return os.environ.get("CODEX_HOME") or os.path.join(paths.home(), ".codex")

    def hook_step(self) -> Step:
        return CodexHooks(self)


