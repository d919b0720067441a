"""How agent-mesh rewrites the agent CLIs' own config files (review items 1, 2, 3, 6):
one writer in fsutil (new files 0600, an existing file's mode and symlink kept), edits
that never clobber the agent's own concurrent write, uninstall that leaves no empty
container of ours behind, and concurrent `setup --agents` runs serialised."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli


def setup_agents(*args: str) -> subprocess.CompletedProcess[bytes]:
    out = run_cli("agent-mesh", "setup", "--agents", *args)
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- item 2: one writer, one rule for modes ------------------------------------------------


def test_new_agent_configs_are_private_and_existing_ones_keep_mode_and_symlink(
        isolated_env: Path) -> None:
    """Before: the hooks step made settings.json and config.toml 0644 while the MCP step
    made them 0600, and the MCP step let the umask strip an existing file's bits."""
    (isolated_env / ".claude").mkdir()
    (isolated_env / ".codex").mkdir()
    old = os.umask(0o022)
    try:
        setup_agents()
    finally:
        os.umask(old)
    for made in (isolated_env / ".claude" / "settings.json", isolated_env / ".claude.json",
                 isolated_env / ".codex" / "config.toml", isolated_env / ".codex" / "hooks.json"):
        assert mode(made) == 0o600, (made, oct(mode(made)))
    setup_agents("--uninstall")
    # a user's file with its own mode, behind a symlink into a dotfiles repo
    dotfiles = isolated_env / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "claude.json"
    real.write_text('{"theme": "dark"}\n')
    real.chmod(0o660)
    (isolated_env / ".claude.json").unlink(missing_ok=True)
    (isolated_env / ".claude.json").symlink_to(real)
    old = os.umask(0o022)
    try:
        setup_agents()
    finally:
        os.umask(old)
    assert (isolated_env / ".claude.json").is_symlink()
    assert "agent-mesh" in json.loads(real.read_text())["mcpServers"]
    assert mode(real) == 0o660, oct(mode(real))


# --- item 1: compare-and-swap against the agent's own writes -------------------------------

# The agent CLI, as a real process: each time agent-mesh's temp file for the config
# appears (it is about to rename it into place), it rewrites the config itself, the way
# Claude Code does (read, change, write a temp file, rename), `times` times in all.
AGENT_WRITER = r"""
import json, os, sys, time
path, times, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
folder, name = os.path.split(path)
seen, done = set(), 0
open(ready, "w").close()
deadline = time.monotonic() + 20
while done < times and time.monotonic() < deadline:
    temps = [f for f in os.listdir(folder) if f.startswith("." + name + ".")
             and f.endswith(".tmp") and f not in seen]
    if not temps:
        time.sleep(0.001)
        continue
    seen.update(temps)
    done += 1
    with open(path) as fh:
        text = fh.read()
    if path.endswith(".json"):
        data = json.loads(text or "{}")
        data[f"agentWrite{done}"] = done
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = f"agent_write_{done} = {done}\n" + text
    with open(path + ".agent-tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".agent-tmp", path)
print(done)
"""


def agent_writer(path: Path, times: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    import sys
    import time

    ready = tmp_path / f"ready-{path.name}"
    proc = subprocess.Popen([sys.executable, "-c", AGENT_WRITER, str(path), str(times),
                             str(ready)], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    return proc


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection at the edge: each fsync takes 0.3 s, as on a busy disk, so the
    agent's write lands between agent-mesh reading the config and renaming its own."""
    import time

    real = os.fsync

    def slow(fd: int) -> None:
        time.sleep(0.3)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow)


@pytest.mark.parametrize("client", ["claude", "codex", "gemini"])
def test_the_agents_concurrent_write_is_never_lost(client: str, isolated_env: Path,
                                                   tmp_path: Path, slow_disk: None) -> None:
    from agent_mesh.ops import mcp_clients
    from agent_mesh.ops.setup_base import Report

    target = {"claude": isolated_env / ".claude.json",
              "codex": isolated_env / ".codex" / "config.toml",
              "gemini": isolated_env / ".gemini" / "settings.json"}[client]
    target.parent.mkdir(exist_ok=True)
    target.write_text('{"numStartups": 1}\n' if target.suffix == ".json"
                      else 'model = "o3"\n')
    writer = agent_writer(target, 2, tmp_path)
    report = Report()
    mcp_clients.install(report, [client])
    assert writer.wait(timeout=20) == 0 and writer.stdout is not None
    wrote = int(writer.stdout.read())  # during our edit: twice (our retry is its cue)
    assert report.problems == 0, report.lines
    text = target.read_text()
    for n in range(1, wrote + 1):  # each of the agent's writes is there, and our entry
        assert f"agentWrite{n}" in text or f"agent_write_{n}" in text, text
    assert wrote == 2, text
    assert "agent-mesh" in text and ("numStartups" in text or "model" in text), text
    mcp_clients.uninstall(Report(), [client])
    assert "agent-mesh" not in target.read_text()


def test_a_config_the_agent_keeps_rewriting_is_left_to_it(isolated_env: Path, tmp_path: Path,
                                                          slow_disk: None) -> None:
    from agent_mesh.fsutil import EDIT_TRIES
    from agent_mesh.ops import mcp_clients
    from agent_mesh.ops.setup_base import Report

    target = isolated_env / ".claude.json"
    target.write_text('{"numStartups": 1}\n')
    writer = agent_writer(target, EDIT_TRIES, tmp_path)
    report = Report()
    mcp_clients.install(report, ["claude"])
    assert writer.wait(timeout=30) == 0
    data = json.loads(target.read_text())
    assert "mcpServers" not in data and data[f"agentWrite{EDIT_TRIES}"] == EDIT_TRIES
    [(_kind, line)] = [x for x in report.lines if x[0] == "error"]
    assert "kept changing" in line and "\n" not in line, line


def test_the_hooks_step_keeps_the_agents_concurrent_write(isolated_env: Path, tmp_path: Path,
                                                          slow_disk: None) -> None:
    from agent_mesh.ops.agentcli import ClaudeCode
    from agent_mesh.ops.setup_base import Report

    settings = isolated_env / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text('{"theme": "dark"}\n')
    writer = agent_writer(settings, 1, tmp_path)
    report = Report()
    ClaudeCode().hook_step().install(report)
    assert writer.wait(timeout=20) == 0
    data = json.loads(settings.read_text())
    assert data["agentWrite1"] == 1 and data["theme"] == "dark" and "Stop" in data["hooks"]
    assert report.problems == 0, report.lines


# --- item 6: one setup --agents at a time --------------------------------------------------

HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_a_second_setup_agents_waits_for_the_first(isolated_env: Path) -> None:
    """A real process holds the setup lock (as a running `setup --agents` does): another
    run waits, and goes on once it is released; concurrent runs leave one set of hooks."""
    import sys
    import time

    (isolated_env / ".claude").mkdir()
    lock = isolated_env / ".agents" / "locks" / "setup-agents.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    from conftest import BIN

    waiting = subprocess.Popen([str(BIN / "agent-mesh"), "setup", "--agents"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    settings = isolated_env / ".claude" / "settings.json"
    assert waiting.poll() is None and not settings.exists(), "ran while the lock was held"
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=10)
    assert waiting.wait(timeout=60) == 0, waiting.stderr
    assert "agent-event --agent claude Stop" in settings.read_text()
    runs = [subprocess.Popen([str(BIN / "agent-mesh"), "setup", "--agents", *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for extra in ([], ["--uninstall"], [], [])]
    assert [r.wait(timeout=120) for r in runs] == [0, 0, 0, 0]
    setup_agents()  # whatever order they ran in, one more run leaves exactly one set
    stops = json.loads(settings.read_text())["hooks"]["Stop"]
    assert sum("agent-mesh/hooks/agent-event" in json.dumps(g) for g in stops) == 1, stops


# --- item 3: uninstall leaves no empty container of ours ------------------------------------


def test_uninstall_leaves_no_empty_container_it_emptied(isolated_env: Path) -> None:
    (isolated_env / ".claude").mkdir()
    (isolated_env / ".codex").mkdir()
    made = [isolated_env / ".claude" / "settings.json", isolated_env / ".claude.json",
            isolated_env / ".codex" / "config.toml", isolated_env / ".codex" / "hooks.json"]
    setup_agents()
    assert all(p.exists() for p in made)
    setup_agents("--uninstall")
    left = {str(p): p.read_text() for p in made if p.exists()}
    assert left == {}, left  # was: {}, {"mcpServers": {}}, an empty config.toml


def test_uninstall_keeps_what_holds_anything_else(isolated_env: Path) -> None:
    settings = isolated_env / ".claude" / "settings.json"
    settings.parent.mkdir()
    mine = {"theme": "dark", "hooks": {"PreToolUse": []}}
    settings.write_text(json.dumps(mine, indent=2) + "\n")
    claude_json = isolated_env / ".claude.json"
    servers = {"mcpServers": {"mine": {"command": "x"}}}
    claude_json.write_text(json.dumps(servers, indent=2) + "\n")
    codex = isolated_env / ".codex"
    codex.mkdir()
    (codex / "config.toml").write_text("# just a comment\n")
    setup_agents()
    setup_agents("--uninstall")
    assert json.loads(settings.read_text()) == mine  # their own empty list stays
    assert json.loads(claude_json.read_text()) == servers
    assert (codex / "config.toml").read_text() == "# just a comment\n"
    assert not (codex / "hooks.json").exists()
