"""Registering `agent-mesh mcp` with Claude Code, Codex and Gemini CLI: only our entry
is written or removed, the user's own settings stay byte for byte where the format
allows (Codex's TOML with its comments), and doctor reports where it stands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from agent_mesh.ops import doctor, mcp_clients
from agent_mesh.ops.setup import Report

CODEX_TOML = """\
# my codex settings
model = "o3"  # the one I like

[mcp_servers.other]
command = "other-server"  # keep this comment
args = ["--x"]

[profiles.fast]
model = "o4-mini"
"""


def test_claude_code_user_servers_keep_every_other_key(isolated_env: Path) -> None:
    path = isolated_env / ".claude.json"
    user = {"numStartups": 7, "mcpServers": {"mine": {"command": "x"}}, "projects": {"/p": {}}}
    path.write_text(json.dumps(user, indent=2))
    path.chmod(0o600)
    report = Report()
    mcp_clients.install(report)
    data = json.loads(path.read_text())
    assert list(data) == ["numStartups", "mcpServers", "projects"]
    assert data["mcpServers"]["mine"] == {"command": "x"}
    ours = data["mcpServers"]["agent-mesh"]
    assert ours["type"] == "stdio" and ours["args"] == ["mcp"]
    assert ours["command"].endswith("/agent-mesh") and Path(ours["command"]).exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert any("Claude Code: MCP server agent-mesh added" in t for _, t in report.lines)
    mcp_clients.install(report)
    assert "unchanged" in report.lines[-1][1]
    mcp_clients.uninstall(report)
    assert json.loads(path.read_text()) == user


def test_codex_config_keeps_comments_and_order(isolated_env: Path) -> None:
    codex = isolated_env / ".codex"
    codex.mkdir()
    (codex / "config.toml").write_text(CODEX_TOML)
    mcp_clients.install(Report(), ["codex"])
    text = (codex / "config.toml").read_text()
    assert text.startswith(CODEX_TOML.split("[profiles.fast]")[0])
    assert "[mcp_servers.agent-mesh]" in text
    assert text.index("[mcp_servers.agent-mesh]") < text.index("[profiles.fast]")
    import tomllib

    entry = tomllib.loads(text)["mcp_servers"]["agent-mesh"]
    assert entry["args"] == ["mcp"] and entry["tool_timeout_sec"] >= 60
    assert {"TMUX", "TMUX_PANE", "SSH_AUTH_SOCK", "AGENT_MESH_HOME"} <= set(entry["env_vars"])
    mcp_clients.uninstall(Report(), ["codex"])
    assert (codex / "config.toml").read_text() == CODEX_TOML


def test_codex_home_and_a_fresh_file(isolated_env: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home = isolated_env / "codex-home"
    home.mkdir()
    monkeypatch.setenv("CODEX_HOME", str(home))
    mcp_clients.install(Report(), ["codex"])
    assert (home / "config.toml").read_text().startswith("[mcp_servers.agent-mesh]\n")
    assert (home / "config.toml").stat().st_mode & 0o777 == 0o600
    mcp_clients.uninstall(Report(), ["codex"])
    assert not (home / "config.toml").exists()  # it held nothing else


def test_gemini_settings_and_an_unparsable_file_is_left_alone(isolated_env: Path) -> None:
    gemini = isolated_env / ".gemini"
    gemini.mkdir()
    settings = gemini / "settings.json"
    settings.write_text('{"theme": "dark"}\n')
    report = Report()
    mcp_clients.install(report)
    data = json.loads(settings.read_text())
    assert data["theme"] == "dark" and data["mcpServers"]["agent-mesh"]["args"] == ["mcp"]
    if not shutil.which("claude"):  # not installed here: nothing written for it
        assert not (isolated_env / ".claude.json").exists()
    commented = '{\n  // my comment\n  "theme": "dark"\n}\n'
    settings.write_text(commented)
    report = Report()
    mcp_clients.install(report)
    assert report.problems == 1 and "not plain JSON" in report.lines[-1][1]
    assert settings.read_text() == commented


def test_doctor_reports_missing_ok_and_stale(isolated_env: Path) -> None:
    (isolated_env / ".gemini").mkdir()

    def mine() -> list[doctor.Check]:
        return [c for c in doctor.check_mcp_registration() if c.name == "mcp:gemini"]

    (check,) = mine()
    assert check.status == "warn" and check.fix == mcp_clients.FIX
    mcp_clients.install(Report())
    (check,) = mine()
    assert check.ok, check
    settings = isolated_env / ".gemini" / "settings.json"
    data = json.loads(settings.read_text())
    data["mcpServers"]["agent-mesh"]["command"] = "/old/venv/bin/agent-mesh"
    settings.write_text(json.dumps(data))
    (check,) = mine()
    assert check.status == "warn" and "/old/venv/bin/agent-mesh" in check.detail


def test_the_register_command(isolated_env: Path) -> None:
    (isolated_env / ".codex").mkdir()
    res = run_cli("agent-mesh", "mcp", "status")
    assert res.returncode == 1 and b"Codex: missing" in res.stdout
    res = run_cli("agent-mesh", "mcp", "register")
    assert res.returncode == 0 and b"Codex: MCP server agent-mesh added" in res.stdout, res
    res = run_cli("agent-mesh", "mcp", "status")
    assert res.returncode == 0 and b"Codex: ok" in res.stdout
    res = run_cli("agent-mesh", "mcp", "unregister")
    assert res.returncode == 0 and b"Codex: removed" in res.stdout
    res = run_cli("agent-mesh", "mcp", "register", "vim")
    assert res.returncode == 1 and b"unknown agent CLI 'vim'" in res.stderr


def test_setup_agents_registers_it_with_each_cli_and_uninstall_takes_it_out(
    isolated_env: Path,
) -> None:
    """ops/agents.py runs the MCP step for Claude Code and Codex with their hooks; Gemini
    CLI (no hooks there) gets its entry from mcp_clients.others(); doctor shows each."""
    pytest.importorskip("agent_mesh.ops.agents", reason="setup --agents (issue 15) not here")
    (isolated_env / ".claude").mkdir()
    (isolated_env / ".codex").mkdir()
    (isolated_env / ".gemini").mkdir()
    out = run_cli("agent-mesh", "setup", "--agents")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout.decode()
    for label in ("Claude Code", "Codex", "Gemini CLI"):
        assert f"{label}: MCP server agent-mesh added" in text, text
    assert "agent-mesh" in json.loads((isolated_env / ".claude.json").read_text())["mcpServers"]
    assert "[mcp_servers.agent-mesh]" in (isolated_env / ".codex" / "config.toml").read_text()
    checks = {c.name: c for c in doctor.run_checks(include_peers=False)}
    assert checks["agent:claude:mcp"].ok and checks["agent:codex:mcp"].ok, checks
    assert checks["mcp:gemini"].ok
    out = run_cli("agent-mesh", "setup", "--agents", "--uninstall")
    assert out.returncode == 0, out.stdout + out.stderr
    for made in (".claude.json", ".codex/config.toml", ".gemini/settings.json"):
        assert not (isolated_env / made).exists()  # held only ours: removed (EMPTIED)


def test_codex_servers_split_around_another_table(isolated_env: Path) -> None:
    """[mcp_servers.x] tables with another table between them (tomlkit's out-of-order
    proxy): registered and unregistered like the others, never a crash."""
    import tomllib

    codex = isolated_env / ".codex"
    codex.mkdir()
    split = ('[mcp_servers.a]\ncommand = "x"\n\n[features]\nweb_search = true\n\n'
             '[mcp_servers.b]\ncommand = "y"\n')
    (codex / "config.toml").write_text(split)
    report = Report()
    mcp_clients.install(report, ["codex"])
    assert report.problems == 0, report.lines
    servers = tomllib.loads((codex / "config.toml").read_text())["mcp_servers"]
    assert list(servers) == ["a", "agent-mesh", "b"] and servers["agent-mesh"]["args"] == ["mcp"]
    mcp_clients.uninstall(report, ["codex"])
    assert report.problems == 0, report.lines
    assert tomllib.loads((codex / "config.toml").read_text()) == tomllib.loads(split)
