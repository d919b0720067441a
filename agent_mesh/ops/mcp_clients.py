"""Registering `agent-mesh mcp` with the agent CLIs, each in its own user-level config.

    Claude Code  ~/.claude.json ($CLAUDE_CONFIG_DIR/.claude.json)  "mcpServers"."agent-mesh"
    Codex        ~/.codex/config.toml ($CODEX_HOME)               [mcp_servers.agent-mesh]
    Gemini CLI   ~/.gemini/settings.json                          "mcpServers"."agent-mesh"

One `McpClient` per CLI with the same four functions: `installed`, `status`, `register`,
`unregister`. `agent-mesh setup --agents` runs them as one more step (`McpStep`, added
with ops/agents.py's `add_step`) of each agent CLI it knows, and for the others itself
(`others()`: Gemini CLI); `agent-mesh mcp register|unregister|status` runs them alone;
doctor shows them with the rest of each CLI's setup. Only our own entry is ever
written or removed: the rest of each file stays as it was (the TOML with tomlkit,
comments and order included; the JSON files keep every other key, in order). A file
we cannot parse is reported, never overwritten.

Codex starts an MCP server with a scrubbed environment: its entry passes $TMUX,
$TMUX_PANE, $SSH_AUTH_SOCK and agent-mesh's settings through (`env_vars`), so the server
knows its pane and reaches peers (the server also reads them from its ancestors when a
hand-made entry lacks this).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

from agent_mesh import paths
from agent_mesh.errors import UsageError
from agent_mesh.ops.setup_base import edit_config
from agent_mesh.receivers import PACKAGES, traits

NAME = "agent-mesh"  # our entry's key in every client's config
# What Codex must pass through (it starts a server with HOME, PATH and a few more only):
# the pane, the SSH agent for peers, and agent-mesh's own settings (cli/mcp_server.py
# reads the same names from an ancestor when a hand-made entry lacks them).
PASS_ENV = ["TMUX", "TMUX_PANE", "SSH_AUTH_SOCK", "TMUX_SOCKET", "AGENT_MESH_HOME",
            "AGENT_MESH_RECEIVERS", "AGENT_MESH_SETTLE", "AGENT_MESH_TRANSPORT",
            "AGENT_MESH_CONTROL_PERSIST", "AGENT_MESH_MAX_FILE", "AGENT_MESH_SYNC_DEADLINE"]
FIX = "agent-mesh setup --agents"  # what registers it (doctor's fix line)
TOOL_TIMEOUT = 120  # seconds Codex allows a call (wait_reply blocks up to 50)


def server_command() -> list[str]:
    """How a client starts the server: this installation's agent-mesh, by absolute path
    (an agent CLI's PATH may lack ~/.local/bin)."""
    from agent_mesh.ops.setup import commands_dir

    try:
        return [os.path.join(commands_dir(), "agent-mesh"), "mcp"]
    except UsageError:
        found = shutil.which("agent-mesh")
        if not found:
            raise
        return [os.path.abspath(found), "mcp"]


def _home(*parts: str) -> str:
    return os.path.join(paths.home(), *parts)


def _read_text(path: str) -> str | None:
    """The file's text (None when missing); UsageError when it is not UTF-8."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    return _utf8(raw.decode("utf-8", "surrogateescape"), path)


def _utf8(text: str | None, path: str) -> str | None:
    """text as read (surrogateescape), or a UsageError when it is not UTF-8, so that the
    step says so in one line, leaves the file alone, and the other steps still run."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raw = text[:exc.start].encode("utf-8", "surrogateescape")
        raise UsageError(f"{setup_tilde(path)} is not UTF-8 text (byte {len(raw)}); left "
                         "as it is") from None
    return text


class McpClient:
    """One agent CLI's user-level MCP server list."""

    name = ""  # short name: claude, codex, gemini
    label = ""  # for people
    program = ""  # its command, to tell whether it is installed

    def config_path(self) -> str:
        raise NotImplementedError

    def config_dir(self) -> str:
        return os.path.dirname(self.config_path())

    def installed(self) -> bool:
        """Its command is on PATH, or its config file or folder exists."""
        return bool(shutil.which(self.program)) or os.path.exists(self.config_path()) or (
            self.config_dir() != paths.home() and os.path.isdir(self.config_dir()))

    def entry(self) -> dict[str, Any] | None:
        """Our entry as the file holds it (None when absent); UsageError when unreadable."""
        raise NotImplementedError

    def wanted(self, command: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def register(self, command: list[str]) -> str:
        """Add or refresh our entry: "added", "updated" or "unchanged"."""
        raise NotImplementedError

    def unregister(self) -> bool:
        """Remove our entry (only ours); whether there was one."""
        raise NotImplementedError

    def status(self, command: list[str]) -> tuple[str, str]:
        """("ok" | "missing" | "stale" | "unreadable", detail)."""
        try:
            found = self.entry()
        except UsageError as exc:
            return "unreadable", str(exc)
        where = setup_tilde(self.config_path())
        if found is None:
            return "missing", f"no {NAME} MCP server in {where}"
        have = [str(found.get("command", "")), *map(str, found.get("args", []) or [])]
        if have != command:
            return "stale", f"{where} starts {' '.join(have)!r}, not {' '.join(command)!r}"
        return "ok", f"registered in {where}"


def setup_tilde(path: str) -> str:
    from agent_mesh.ops.setup import tilde

    return tilde(path)


class _JsonClient(McpClient):
    """A JSON settings file with a top-level "mcpServers" object."""

    def _load(self) -> dict[str, Any]:
        return self._parse(_read_text(self.config_path()))

    def _parse(self, text: str | None) -> dict[str, Any]:
        text = _utf8(text, self.config_path())
        if text is None or not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{setup_tilde(self.config_path())} is not plain JSON ({exc}); "
                             f"add the {NAME} server by hand (README: Agents as MCP "
                             "clients)") from None
        if not isinstance(data, dict):
            raise UsageError(f"{setup_tilde(self.config_path())} holds no JSON object")
        return data

    def entry(self) -> dict[str, Any] | None:
        servers = self._load().get("mcpServers")
        found = servers.get(NAME) if isinstance(servers, dict) else None
        return found if isinstance(found, dict) else None

    def register(self, command: list[str]) -> str:
        wanted = self.wanted(command)
        how = ["unchanged"]

        def edit(text: str | None) -> str | None:
            data = self._parse(text)
            servers = data.get("mcpServers")
            if not isinstance(servers, dict):
                servers = data["mcpServers"] = {}
            before = servers.get(NAME)
            if before == wanted:
                how[0] = "unchanged"
                return None
            how[0] = "added" if before is None else "updated"
            servers[NAME] = wanted
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

        edit_config(self.config_path(), edit)
        return how[0]

    def unregister(self) -> bool:
        def edit(text: str | None) -> str | None:
            if text is None:
                return None
            data = self._parse(text)
            servers = data.get("mcpServers")
            if not isinstance(servers, dict) or NAME not in servers:
                return None
            del servers[NAME]
            if not servers:  # emptied by us, nothing else in it (ops/agentcli.py: EMPTIED)
                del data["mcpServers"]
            return json.dumps(data, indent=2, ensure_ascii=False) + "\n" if data else ""

        return edit_config(self.config_path(), edit, remove_empty=True)


class ClaudeCode(_JsonClient):
    """Claude Code 2.x: user-scope servers are the top-level "mcpServers" of ~/.claude.json
    (what `claude mcp add --scope user` writes); Claude Code passes its whole
    environment to a stdio server, so $TMUX_PANE arrives."""

    name = program = PACKAGES["@anthropic-ai/claude-code"]
    label = traits(name).shown

    def config_path(self) -> str:
        base = os.environ.get("CLAUDE_CONFIG_DIR")
        return os.path.join(base, ".claude.json") if base else _home(".claude.json")

    def config_dir(self) -> str:
        return os.environ.get("CLAUDE_CONFIG_DIR") or _home(".claude")

    def wanted(self, command: list[str]) -> dict[str, Any]:
        return {"type": "stdio", "command": command[0], "args": command[1:], "env": {}}


class GeminiCli(_JsonClient):
    """Gemini CLI: "mcpServers" of ~/.gemini/settings.json."""

    name = program = PACKAGES["@google/gemini-cli"]
    label = traits(name).shown

    def config_path(self) -> str:
        return _home(".gemini", "settings.json")

    def wanted(self, command: list[str]) -> dict[str, Any]:
        return {"command": command[0], "args": command[1:], "timeout": TOOL_TIMEOUT * 1000}


class Codex(McpClient):
    """Codex: [mcp_servers.agent-mesh] in $CODEX_HOME/config.toml (~/.codex), edited with
    tomlkit so the user's comments, order and formatting stay."""

    name = program = PACKAGES["@openai/codex"]
    label = traits(name).shown

    def config_path(self) -> str:
        return os.path.join(os.environ.get("CODEX_HOME") or _home(".codex"), "config.toml")

    def _doc(self, text: str | None = None, read: bool = True) -> Any:
        import tomlkit

        if read:
            text = _read_text(self.config_path())
        try:
            return tomlkit.parse(_utf8(text, self.config_path()) or "")
        except Exception as exc:  # tomlkit's ParseError and kin
            raise UsageError(f"{setup_tilde(self.config_path())} is not valid TOML ({exc}); "
                             "fix it first") from None

    def entry(self) -> dict[str, Any] | None:
        return self.entry_of(self._doc())

    def wanted(self, command: list[str]) -> dict[str, Any]:
        return {"command": command[0], "args": command[1:], "env_vars": list(PASS_ENV),
                "tool_timeout_sec": TOOL_TIMEOUT}

    def register(self, command: list[str]) -> str:
        import tomlkit

        wanted = self.wanted(command)
        how = ["unchanged"]

        def edit(text: str | None) -> str | None:
            doc = self._doc(text, read=False)
            before = self.entry_of(doc)
            if before == wanted:
                how[0] = "unchanged"
                return None
            how[0] = "added" if before is None else "updated"
            servers = doc.get("mcp_servers")
            if servers is None:
                servers = tomlkit.table(is_super_table=True)
                doc.add("mcp_servers", servers)
            table = tomlkit.table()
            for key, value in wanted.items():
                table.add(key, value)
            table.add(tomlkit.nl())  # a blank line before whatever table follows
            if NAME in servers or not hasattr(servers, "add"):  # or split around tables
                servers[NAME] = table
            else:
                servers.add(NAME, table)
            return str(tomlkit.dumps(doc))

        edit_config(self.config_path(), edit)
        return how[0]

    @staticmethod
    def entry_of(doc: Any) -> dict[str, Any] | None:
        servers = doc.get("mcp_servers")
        found = servers.get(NAME) if hasattr(servers, "get") else None
        return found.unwrap() if found is not None and hasattr(found, "unwrap") else None

    def unregister(self) -> bool:
        import tomlkit

        def edit(text: str | None) -> str | None:
            if text is None:
                return None
            doc = self._doc(text, read=False)
            servers = doc.get("mcp_servers")
            if servers is None or NAME not in servers:
                return None
            last = list(doc)[-1] == "mcp_servers" and list(servers)[-1] == NAME
            del servers[NAME]
            if not servers:  # the table held only ours: it goes too
                del doc["mcp_servers"]
            new = str(tomlkit.dumps(doc))
            if last:  # the blank line tomlkit put before the table it appended goes too
                new = new.rstrip("\n") + "\n" if new.strip() else ""
            return new  # "": nothing else was in the file (ops/agentcli.py: EMPTIED)

        return edit_config(self.config_path(), edit, remove_empty=True)


CLIENTS: dict[str, McpClient] = {c.name: c for c in (ClaudeCode(), Codex(), GeminiCli())}


# --- what `agent-mesh mcp register|unregister|status` and doctor call -------------------


def _each(names: list[str] | None, installed_only: bool) -> list[McpClient]:
    unknown = [n for n in names or [] if n not in CLIENTS]
    if unknown:
        raise UsageError(f"unknown agent CLI {unknown[0]!r}: one of {', '.join(CLIENTS)}")
    chosen = [CLIENTS[n] for n in names] if names else list(CLIENTS.values())
    return [c for c in chosen if not installed_only or c.installed()]


def install(report: Any, names: list[str] | None = None, *,
            installed_only: bool | None = None) -> None:
    """Register the server with every installed agent CLI (or those named, installed or
    not); report is ops.setup.Report (say/warn/problem)."""
    chosen = _each(names, names is None if installed_only is None else installed_only)
    if not chosen:
        if names is None:
            report.say("no agent CLI found (Claude Code, Codex, Gemini CLI): nothing to "
                       "register")
        return
    command = server_command()
    for client in chosen:
        register_one(report, client, command)


def register_one(report: Any, client: McpClient, command: list[str] | None = None) -> None:
    _sdk_check(report)
    how = _step(report, client, lambda: client.register(command or server_command()))
    if how is not None:
        report.say(f"{client.label}: MCP server {NAME} {how} in "
                   f"{setup_tilde(client.config_path())}")


def uninstall(report: Any, names: list[str] | None = None) -> None:
    """Remove our entry from every agent CLI's config (only ours)."""
    for client in _each(names, installed_only=False):
        unregister_one(report, client)


def unregister_one(report: Any, client: McpClient) -> None:
    if _step(report, client, client.unregister):
        report.say(f"{client.label}: removed MCP server {NAME} from "
                   f"{setup_tilde(client.config_path())}")


def _step(report: Any, client: McpClient, func: Callable[[], Any]) -> Any:
    """func's result; None (reported as a problem) when the config could not be used."""
    try:
        return func()
    except UsageError as exc:
        report.problem(f"{client.label}: {exc}")
    except OSError as exc:
        report.problem(f"{client.label}: {setup_tilde(exc.filename or client.config_path())}: "
                       f"{exc.strerror or exc}")
    return None


_warned: list[bool] = []


def _sdk_check(report: Any) -> None:
    """Once per process: the SDK must be importable for the registered server to start."""
    import importlib.util

    if not _warned and importlib.util.find_spec("mcp") is None:
        _warned.append(True)
        report.warn("the MCP SDK is not installed in this agent-mesh's environment: "
                    "`agent-mesh mcp` will not start (pip install 'mcp>=2.3,<3')")


def _command() -> list[str]:
    try:
        return server_command()
    except UsageError:
        return ["agent-mesh", "mcp"]


def status(names: list[str] | None = None) -> list[tuple[McpClient, str, str]]:
    """(client, state, detail) for every installed agent CLI (or those named)."""
    command = _command()
    return [(c, *c.status(command)) for c in _each(names, installed_only=True)]


def checks() -> list[Any]:
    """doctor's lines for the installed agent CLIs that ops/agents.py does not cover
    (`others()`): a warning, not a failure, when the server is not registered there (the
    shell commands still work); a failure for a config that does not parse."""
    from agent_mesh.ops.checks import fail, ok, warn

    out = []
    for client, state, detail in status(others()):
        name = f"mcp:{client.name}"
        if state == "ok":
            out.append(ok(name, detail))
        elif state == "unreadable":
            out.append(fail(name, detail, f"fix {client.config_path()}, then run {FIX}"))
        else:
            out.append(warn(name, detail, FIX))
    return out


# --- one step of `agent-mesh setup --agents` (ops/agents.py, issue 15) ------------------


class McpStep:
    """The MCP server's entry in one agent CLI's config, as a setup --agents step: the
    interface of ops/agents.py's `Step` (name, install, uninstall, check)."""

    name = "mcp"

    def __init__(self, cli: Any, client: McpClient) -> None:
        self.cli = cli
        self.client = client

    def install(self, report: Any) -> None:
        register_one(report, self.client)

    def uninstall(self, report: Any) -> None:
        unregister_one(report, self.client)

    def check(self) -> tuple[bool, str]:
        state, detail = self.client.status(_command())
        return state == "ok", detail


def setup_step(cli: Any) -> McpStep | None:
    """ops/agents.py's step factory: ours for a CLI we register with, else None."""
    client = CLIENTS.get(getattr(cli, "name", ""))
    return McpStep(cli, client) if client is not None else None


def _agents() -> Any:
    """ops/agents.py (setup --agents), or None where this installation has none."""
    import importlib

    try:
        return importlib.import_module("agent_mesh.ops.agents")
    except ImportError:
        return None


def plug_in() -> bool:
    """Add the MCP step to every agent CLI's `setup --agents` steps (idempotent); what
    setup --agents and doctor call first. False without ops/agents.py."""
    agents = _agents()
    if agents is None:
        return False
    agents.add_step(setup_step)
    return True


def others() -> list[str]:
    """The agent CLIs whose entry setup --agents and doctor handle here, not as a step of
    ops/agents.py (which has no hooks for them): Gemini CLI."""
    agents = _agents()
    known = {cli.name for cli in agents.clis()} if agents is not None else set()
    return [name for name in CLIENTS if name not in known]
