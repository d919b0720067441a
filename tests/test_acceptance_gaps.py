"""Gaps found by the acceptance audit of issues 7 and 8, each on the real console scripts.

- issue 8.8: every usage error of a click command is one line and exit 1 (the errors
  table's "usage"), not click's four lines and exit 2 (the table's "unknown agent");
- issue 8.8: a queue file that is not one of ours never turns `agent-mesh queue` into
  an error;
- issue 8.17: building the package prints no setuptools warning;
- issue 8.12: `agent-register-hook` typed at a terminal says what it did;
- issue 7.1: a known agent is recognised on real processes when started from a shell,
  through `env`, or through an npm launcher (node with the agent as its child).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, Spawner, TmuxServer, notify, retry_until, run_cli

from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.pane import pane_state
from agent_mesh.tmux import Tmux

BAD_USAGE = [
    ["agent-mesh", "--bogus"],
    ["agent-mesh", "nosuch"],
    ["agent-mesh", "status", "--bogus"],
    ["agent-mesh", "peek"],
    ["agent-mesh", "peek", "x", "-n", "abc"],
    ["agent-mesh", "inbox", "--bogus"],
    ["agent-mesh", "log", "--bogus"],
    ["agent-mesh", "queue", "--bogus"],
    ["agent-mesh", "ask"],
    ["agent-mesh", "ask", "x", "hi", "--timeout", "-1"],
    ["agent-mesh", "spawn"],
    ["agent-mesh", "setup", "--bogus"],
    ["agent-mesh", "doctor", "--bogus"],
    ["agent-mesh", "sync", "--bogus"],
    ["agent-mesh", "list", "--bogus"],
    ["agent-mesh", "discover", "extra"],
    ["agent-mesh", "demo", "--bogus"],
    ["agent-mesh", "queue-run"],
    ["agent-discover", "--bogus"],
    ["agent-self-identify", "--bogus"],
    ["notify-pane", "--bogus"],
    ["notify-pane"],
]


@pytest.mark.parametrize("argv", BAD_USAGE, ids=" ".join)
def test_a_usage_error_is_one_line_and_exit_1(isolated_env: Path, argv: list[str]) -> None:
    out = run_cli(*argv)
    err = out.stderr.decode()
    assert out.returncode == 1, (out.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{argv[0]}") and "--help" in err, err
    assert out.stdout == b""


def test_bare_agent_mesh_shows_its_help(isolated_env: Path) -> None:
    out = run_cli("agent-mesh")
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    assert out.stdout.startswith(b"Usage: agent-mesh") and b"Commands:" in out.stdout


def test_foreign_queue_files_are_skipped_not_fatal(isolated_env: Path) -> None:
    from agent_mesh.model import Envelope

    envelope = Envelope(sender="tester", address="testhost-dev-x", body="kept",
                        timestamp="2026-01-01 00:00", msg_id="900d1d")
    folder = isolated_env / ".agents" / "queue" / "testhost-dev-x"
    folder.mkdir(parents=True)
    good = {"id": "900d1d", "address": "testhost-dev-x", "queued_at": time.time(),
            "expires_at": time.time() + 60, "reason": "busy", "envelope": envelope.to_json()}
    (folder / "00000000000000000009-900d1d.json").write_text(json.dumps(good))
    bad = {
        "00000000000000000001-a.json": '{"id":"a","queued_at":"soon","expires_at":"x",'
                                       '"envelope":{}}',
        "00000000000000000002-b.json": "[1, 2]",
        "00000000000000000003-c.json": '{"id":"c","queued_at":1,"expires_at":2,'
                                       '"envelope":"nope"}',
        "00000000000000000004-d.json": "{not json",
    }
    for name, text in bad.items():
        (folder / name).write_text(text)
    out = run_cli("agent-mesh", "queue", "--json")
    assert out.returncode == 0, out.stderr
    assert [row["id"] for row in json.loads(out.stdout)["pending"]] == ["900d1d"]
    out = run_cli("agent-mesh", "queue")
    assert out.returncode == 0 and b"900d1d" in out.stdout, out.stderr
    assert run_cli("agent-mesh", "queue", "--cancel", "900d1d").returncode == 0
    out = run_cli("agent-mesh", "queue")
    assert (out.returncode, out.stdout) == (0, b"no queued messages\n"), out.stderr


def test_building_the_package_prints_no_warning(tmp_path: Path) -> None:
    """pip builds with its own (recent) setuptools, as scripts/test's install does."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "agent_mesh", src / "agent_mesh",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
         str(src)], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    # pip's own notes about this machine's package index are not the project's
    noise = [line for line in (out.stdout + out.stderr).splitlines()
             if line.strip() and not line.startswith("WARNING: Location ")]
    assert noise == [], "\n".join(noise)
    (wheel,) = (tmp_path / "w").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("tmux-event", "tmux.conf.snippet", "agent-resync.service",
                 "agent-resync.timer"):
        assert f"agent_mesh/ops/data/{data}" in names


# --- issue 7.1: a known agent however it is started, on real processes ----------------

REPLAY = Path(__file__).resolve().parent / "programs" / "screen_replay.py"
NPM_LAUNCHER = """\
// What @openai/codex's bin/codex.js does: run the native binary as a child.
const { spawn } = require("child_process");
const child = spawn(process.argv[2], process.argv.slice(3), { stdio: "inherit" });
child.on("exit", (code) => process.exit(code === null ? 1 : code));
"""


def _keys(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("how", ["from a shell", "through env", "npm launcher"])
def test_an_agent_is_known_however_it_is_started(spawn: Spawner, tmp_path: Path,
                                                 how: str) -> None:
    agent, screen, marker = "claude", "claude-code-idle", "Claude Code"
    if how == "npm launcher":
        if shutil.which("node") is None:
            pytest.skip("node is not installed")
        agent, screen, marker = "codex", "codex-idle-after-answer", "Worked for"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    link = bindir / agent
    link.symlink_to(REPLAY)
    log = tmp_path / "keys.log"
    if how == "from a shell":
        pane = spawn.bash("w").pane  # bash owns the pane; the agent is its foreground job
        pane.send_keys(f"{link} {log} {screen}", literal=True)
        pane.send_keys("Enter")
    elif how == "through env":
        pane = spawn.window("w", ["env", "SOME=1", str(link), str(log), screen])
    else:
        js = tmp_path / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
        js.parent.mkdir(parents=True)
        js.write_text(NPM_LAUNCHER)
        pane = spawn.window("w", ["node", str(js), str(link), str(log), screen])
    pane.wait_for(marker, timeout=15)
    status = retry_until(lambda: (s := classify(pane_state(Tmux(), pane.pane_id))).agent
                         and s, timeout=10)
    assert (status.kind, status.agent) == ("idle", agent), status
    spawn.register()
    out = notify("testhost-dev-w", "hello there")
    assert out.returncode == 0, out.stderr
    retry_until(lambda: _keys(log) and _keys(log)[-1] == "0d", timeout=10)
    assert b"hello there".hex() in "".join(_keys(log))


# --- issue 7.2: dialogs other than the one real screen we have --------------------------
# Drawn after the real programs' dialogs (Codex's command approval, Claude Code's
# folder-trust prompt and its /model menu); the cursor sits on the selected choice.

DIALOGS = {
    "codex-approval": ("codex", [
        ">_ OpenAI Codex (v0.169.0)", "",
        "  Would you like to run the following command?", "",
        "  $ touch /tmp/x", "",
        "› 1. Yes, proceed (y)",
        "  2. Yes, and don't ask again for this command (a)",
        "  3. No, and tell Codex what to do differently (esc)", "",
        "  Press enter to confirm or esc to cancel"], (2, 6)),
    "claude-trust": ("claude", [
        " ▐▛███▜▌   Claude Code v2.1.197", "", "─" * 100,
        " Do you trust the files in this folder?", "",
        " /home/u/project", "",
        " ❯ 1. Yes, proceed",
        "   2. No, exit", "",
        " Enter to confirm · Esc to exit"], (3, 7)),
    "claude-model-menu": ("claude", [
        " ▐▛███▜▌   Claude Code v2.1.197", "", "─" * 100,
        " Select model", "",
        " ❯ 1. Default (recommended)  ✔",
        "   2. Opus",
        "   3. Haiku", "",
        " Enter to confirm · Esc to exit"], (3, 5)),
}


@pytest.mark.parametrize("dialog", sorted(DIALOGS))
def test_no_dialog_is_typed_into_even_with_force(spawn: Spawner, tmp_path: Path,
                                                 dialog: str) -> None:
    agent, rows, (x, y) = DIALOGS[dialog]
    base = tmp_path / dialog
    base.with_suffix(".ansi").write_text("\n".join(rows) + "\n")
    base.with_suffix(".json").write_text(json.dumps({"cursor_x": x, "cursor_y": y}))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / agent).symlink_to(REPLAY)
    log = tmp_path / "keys.log"
    pane = spawn.window("w", [str(bindir / agent), str(log), str(base)])
    pane.wait_for(rows[-1].strip(), timeout=15)
    retry_until(lambda: classify(pane_state(Tmux(), pane.pane_id)).agent == agent, timeout=10)
    spawn.register()
    for env in ({}, {"FORCE_SEND": "1"}, {"SKIP_DISMISS": "1"}):
        out = notify("testhost-dev-w", "1", env=env)
        err = out.stderr.decode()
        assert out.returncode == 3, (env, err)
        assert err.count("\n") == 1 and "waiting for an answer" in err, (env, err)
    assert _keys(log) == []  # not a key, not even an Escape


# --- issue 8.12: agent-register-hook typed by hand is not silent ------------------------


def test_hook_typed_at_a_terminal_says_what_it_did(tmux_server: TmuxServer) -> None:
    if shutil.which("script") is None:
        pytest.skip("script (bsdutils) is not installed")
    tmux_server.start("dev")
    hook = Path(sys.executable).parent / "agent-register-hook"
    for args, expect in (("on nosuch", "on 'nosuch': no such session on this tmux server"),
                         ("on dev", "on 'dev': 1 window(s)")):
        out = subprocess.run(["script", "-q", "-e", "-c", f"{hook} {args}", "/dev/null"],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out
        lines = [x for x in out.stdout.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"agent-register-hook: {expect}"), lines


# --- issue 8.8: one line that says what happened -----------------------------------------


@pytest.mark.parametrize("opts", [[], ["--role", "x"]], ids=["plain", "with a role"])
def test_spawn_of_a_missing_program_says_so(tmux_server: TmuxServer, opts: list[str]) -> None:
    tmux_server.start("agents")
    # accepted: a program agent-mesh does not know is refused before it starts (21.14)
    out = run_cli("agent-mesh", "spawn", "testhost", *opts, "--accept", "prog", "--",
                  "/nonexistent/prog")
    err = out.stderr.decode()
    assert out.returncode == 4 and err.count("\n") == 1, err
    assert "/nonexistent/prog exited at once (is it installed on this host?)" in err, err
