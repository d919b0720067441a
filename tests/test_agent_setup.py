"""`agent-mesh setup --agents` (issue 15.1): agent-mesh's hooks go into Claude Code's and
Codex's own user config, idempotently, never touching the user's entries, comments or
order; `--uninstall` takes exactly them out again; Codex's trust hashes are the ones
Codex itself computes; doctor reports each CLI; another per-CLI step plugs in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

CODEX_TOML = """\
# my codex config
model = "gpt-5"   # keep this comment

[features]
# none yet
web_search = true

[hooks.state."/elsewhere/hooks.json:stop:0:0"]
trusted_hash = "sha256:mine"
"""

CLAUDE_JSON = {
    "theme": "dark",
    "hooks": {"Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "echo mine"}]}],
              "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                            "command": "guard"}]}]},
    "zeta": 1,
}


@pytest.fixture
def configs(isolated_env: Path) -> tuple[Path, Path, Path]:
    claude = isolated_env / ".claude" / "settings.json"
    claude.parent.mkdir()
    claude.write_text(json.dumps(CLAUDE_JSON, indent=2) + "\n")
    codex = isolated_env / ".codex"
    codex.mkdir()
    (codex / "config.toml").write_text(CODEX_TOML)
    user_hooks = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "mine"}]}]}}
    (codex / "hooks.json").write_text(json.dumps(user_hooks, indent=2) + "\n")
    return claude, codex / "config.toml", codex / "hooks.json"


def setup(*args: str) -> subprocess.CompletedProcess[bytes]:
    out = run_cli("agent-mesh", "setup", "--agents", *args)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out


def test_install_is_idempotent_and_keeps_the_users_entries(
        configs: tuple[Path, Path, Path]) -> None:
    claude, toml, hooks_json = configs
    first = setup().stdout.decode()
    assert "Claude Code: hooks for" in first and "Codex: trusted" in first
    after_once = [p.read_bytes() for p in configs]
    again = setup().stdout.decode()
    assert "already" in again and [p.read_bytes() for p in configs] == after_once
    data = json.loads(claude.read_text())
    assert list(data) == ["theme", "hooks", "zeta"]
    stop = data["hooks"]["Stop"]
    assert stop[0] == CLAUDE_JSON["hooks"]["Stop"][0]  # theirs first, untouched
    assert "agent-mesh/hooks/agent-event --agent claude Stop" in stop[1]["hooks"][0]["command"]
    assert data["hooks"]["PreToolUse"] == CLAUDE_JSON["hooks"]["PreToolUse"]
    text = toml.read_text()
    assert text.startswith(CODEX_TOML.split("[hooks.state")[0].rstrip("\n").split("web_search")[0])
    assert '# keep this comment' in text and "web_search = true" in text
    assert 'trusted_hash = "sha256:mine"' in text
    codex_hooks = json.loads(hooks_json.read_text())["hooks"]
    assert codex_hooks["Stop"][0]["hooks"][0]["command"] == "mine"
    assert f'"{hooks_json}:stop:1:0"' in text  # ours is the second Stop group


def test_uninstall_gives_back_the_files_as_they_were(configs: tuple[Path, Path, Path]) -> None:
    before = [p.read_text() for p in configs]
    setup()
    out = setup("--uninstall").stdout.decode()
    assert "removed" in out
    claude, toml, hooks_json = configs
    assert json.loads(claude.read_text()) == CLAUDE_JSON
    assert toml.read_text() == before[1]
    assert json.loads(hooks_json.read_text()) == json.loads(before[2])
    assert not (Path.home() / ".local/share/agent-mesh/hooks/agent-event").exists()
    setup("--uninstall")  # idempotent too


def test_a_config_that_does_not_parse_is_left_alone(configs: tuple[Path, Path, Path]) -> None:
    claude, _toml, _hooks = configs
    claude.write_text("{ not json")
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 1 and b"not a JSON object" in out.stderr
    assert claude.read_text() == "{ not json"
    assert b"Traceback" not in out.stderr


def test_an_extra_per_cli_step_plugs_in(configs: tuple[Path, Path, Path]) -> None:
    from agent_mesh.ops import agentcli, agents
    from agent_mesh.ops import setup as ops_setup

    done: list[str] = []

    class Mark(agents.Step):
        name = "mark"

        def install(self, report: ops_setup.Report) -> None:
            done.append(f"+{self.cli.name}")

        def uninstall(self, report: ops_setup.Report) -> None:
            done.append(f"-{self.cli.name}")

        def check(self) -> tuple[bool, str]:
            return True, "marked"

    def factory(cli: agents.AgentCLI) -> agents.Step:
        return Mark(cli)

    agents.add_step(factory)
    try:
        report = ops_setup.Report()
        agents.install(report)
        agents.uninstall(report)
        rows = agents.describe()
    finally:
        agentcli._EXTRA.remove(factory)
    assert done == ["+claude", "+codex", "-claude", "-codex"]
    assert ("agent:codex:mark", True, "Codex: marked") in rows


def test_doctor_shows_each_agent_cli(configs: tuple[Path, Path, Path]) -> None:
    out = run_cli("agent-mesh", "doctor", "--no-peers", "--json")
    rows = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert rows["agent:claude:hooks"]["status"] == "warn"
    setup()
    out = run_cli("agent-mesh", "doctor", "--no-peers", "--json")
    rows = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert rows["agent:claude:hooks"]["status"] == "ok", rows["agent:claude:hooks"]
    assert "trusted" in rows["agent:codex:hooks"]["detail"]
    assert "a hook last fired never" in rows["agent:codex:hooks"]["detail"]


def codex_binary() -> str | None:
    from agent_clis import cli_path

    found = (os.environ.get("AGENT_MESH_TEST_CODEX") or str(cli_path("codex") or "")
             or shutil.which("codex"))
    return found if found and os.access(found, os.X_OK) else None


@pytest.mark.skipif(codex_binary() is None, reason="the codex CLI is not installed here "
                    "(scripts/install-agent-clis, or AGENT_MESH_TEST_CODEX=path)")
def test_codex_itself_trusts_the_hooks(configs: tuple[Path, Path, Path]) -> None:
    setup()
    lines = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"clientInfo": {"name": "t", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "hooks/list", "params": {}}]
    proc = subprocess.Popen([str(codex_binary()), "app-server"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in lines))
    proc.stdin.flush()
    try:
        for line in proc.stdout:
            reply = json.loads(line)
            if reply.get("id") == 2:
                break
    finally:
        proc.kill()
        proc.wait()
    hooks = [h for entry in reply["result"]["data"] for h in entry["hooks"]]
    ours = [h for h in hooks if "agent-mesh/hooks/agent-event" in (h["command"] or "")]
    assert len(ours) == 7
    assert {h["trustStatus"] for h in ours} == {"trusted"}, ours
    mine = [h for h in hooks if h["command"] == "mine"]
    assert mine and mine[0]["trustStatus"] == "untrusted"  # theirs: not ours to trust


@pytest.mark.parametrize("features", ['features = { web_search = true }\n',
                                      'features.web_search = true\n'])
def test_codex_features_setup_cannot_mark_are_left_alone_and_uninstall_restores(
        configs: tuple[Path, Path, Path], features: str) -> None:
    """An inline `features = {…}` cannot carry the marker comment that lets --uninstall
    take agent-mesh's flags out again: setup must not add them there (it says what to
    add by hand). Either way --uninstall gives the file back as it was."""
    import tomllib

    _claude, toml, _hooks = configs
    before = 'model = "o3"\n' + features
    toml.write_text(before)
    out = setup()
    data = tomllib.loads(toml.read_text())
    if features.startswith("features = {"):
        assert b"daemon_auto_start = false" in out.stderr, out  # what to add by hand
        assert data["features"] == {"web_search": True}, data
    else:
        assert data["features"] == {"web_search": True, "hooks": True,
                                    "daemon_auto_start": False}, data
    setup("--uninstall")
    assert toml.read_text() == before


def test_a_config_that_is_not_utf8_is_reported_and_the_other_steps_run(
        configs: tuple[Path, Path, Path], isolated_env: Path) -> None:
    claude_json = isolated_env / ".claude.json"
    claude_json.write_bytes(b'{"name": "caf\xe9"}\n')
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 1, out
    assert claude_json.read_bytes() == b'{"name": "caf\xe9"}\n'
    lines = [line for line in out.stderr.decode().splitlines() if "error" in line]
    assert len(lines) == 1 and "~/.claude.json" in lines[0] and "stopped" not in lines[0], lines
    _claude, _toml, hooks_json = configs
    assert "agent-event --agent codex" in hooks_json.read_text()  # the later steps ran


def test_the_plain_uninstall_takes_the_mcp_entries_out_too(
        configs: tuple[Path, Path, Path], isolated_env: Path) -> None:
    """`agent-mesh setup --uninstall` (and install.sh --uninstall, which runs it) removes
    the agent CLIs' hooks, so it must remove the MCP server entries setup --agents wrote
    beside them: left, every Claude Code and Codex start tries a command that is gone."""
    _claude, toml, _hooks = configs
    setup()
    claude_json = isolated_env / ".claude.json"
    assert "agent-mesh" in json.loads(claude_json.read_text())["mcpServers"]
    out = run_cli("agent-mesh", "setup", "--uninstall")
    assert out.returncode == 0, out
    assert not claude_json.exists()  # it held only our entry (ops/agentcli.py: EMPTIED)
    assert "mcp_servers" not in toml.read_text()


def test_an_event_entry_that_is_not_a_list_is_refused_not_replaced(
        configs: tuple[Path, Path, Path]) -> None:
    claude, _toml, _hooks = configs
    odd = {"hooks": {"Stop": {"hooks": [{"type": "command", "command": "mine"}]}}}
    claude.write_text(json.dumps(odd))
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 1 and b"Stop" in out.stderr, out
    assert json.loads(claude.read_text()) == odd


@pytest.mark.parametrize("shape", ["hooks = 1\n", "features = 3\n", "hooks = { state = 2 }\n",
                                   '[hooks]\nstate = "x"\n'])
def test_a_codex_table_that_is_not_a_table_is_reported_in_one_line(
        configs: tuple[Path, Path, Path], shape: str) -> None:
    """hooks, hooks.state or features of some other type: one line naming the file and
    the key, what was there kept (the MCP step still adds its own [mcp_servers] table),
    no `unexpected error`."""
    _claude, toml, _hooks = configs
    toml.write_text(shape)
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 1, out
    lines = [line for line in out.stderr.decode().splitlines() if "config.toml" in line]
    assert len(lines) == 1 and "must be a table" in lines[0], out.stderr
    assert "unexpected error" not in out.stderr.decode() and b"Traceback" not in out.stderr
    assert toml.read_text().startswith(shape) and "trusted_hash" not in toml.read_text()
