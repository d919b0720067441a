"""agent-discover, agent-self-identify, agent-mesh list, and --help everywhere.

Run as a user would (the installed console scripts) against a private tmux
server; self-identify is also run from inside a pane, where only $TMUX_PANE
says which window it is.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import BIN, REPO, SELF_HOST, TmuxServer, retry_until, run_cli


def read_agents(name: str = "local.toml") -> dict[str, dict[str, str]]:
    return tomllib.loads((Path.home() / ".agents" / name).read_text()).get("agents", {})


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


# --- agent-discover -------------------------------------------------------------


@pytest.mark.parametrize("argv", [["agent-discover"], ["agent-mesh", "discover"]])
def test_discover_is_authoritative(tmux_server: TmuxServer, argv: list[str]) -> None:
    tmux_server.start("live", "a")
    tmux_server.new_window("live", "b")
    (Path.home() / ".agents" / "local.toml").write_text(
        '[agents.testhost-gone-w]\nhost = "testhost"\ntarget = "gone:0"\nsession = "gone"\n'
    )
    out = run_cli(*argv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "agent-discover: 1 session(s), 2 window(s) on testhost\n"
    assert set(read_agents()) == {f"{SELF_HOST}-live-a", f"{SELF_HOST}-live-b"}
    assert set(read_agents("registry.toml")) == set(read_agents())


def test_discover_with_no_server_empties_the_slice(isolated_env: Path) -> None:
    out = run_cli("agent-discover")
    assert out.returncode == 0, out.stderr
    assert b"0 session(s), 0 window(s)" in out.stdout
    assert read_agents() == {}


def test_discover_reports_tmux_failure_as_exit_4(isolated_env: Path) -> None:
    out = run_cli("agent-discover", env={"TMUX_BIN": "/nonexistent/tmux"})
    assert out.returncode == 4
    assert out.stderr.decode().startswith("agent-discover: tmux not found")
    assert out.stderr.count(b"\n") == 1


# --- agent-self-identify --------------------------------------------------------


def test_self_identify_with_target(tmux_server: TmuxServer) -> None:
    tmux_server.start("crew", "lead")
    pane = tmux_server.new_window("crew", "rev")
    out = run_cli("agent-self-identify", "--role", "Reviewer; $(no)", "--scope", "PR 7",
                  "-t", "crew:rev")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().startswith(f"agent-self-identify: {SELF_HOST}-crew-rev (crew:1)")
    assert tmux("show-options", "-wv", "-t", pane.window_id, "@agent-role") == "Reviewer; $(no)\n"
    assert tmux("show-options", "-wv", "-t", pane.window_id, "@agent-scope") == "PR 7\n"
    for name in ("local.toml", "registry.toml"):
        table = read_agents(name)[f"{SELF_HOST}-crew-rev"]
        assert (table["role"], table["scope"]) == ("Reviewer; $(no)", "PR 7")
    # Only what is given changes; an empty value removes the label again.
    out = run_cli("agent-self-identify", "--scope", "PR 8", "-t", pane.pane_id)
    assert out.returncode == 0, out.stderr
    assert read_agents()[f"{SELF_HOST}-crew-rev"]["role"] == "Reviewer; $(no)"
    assert read_agents()[f"{SELF_HOST}-crew-rev"]["scope"] == "PR 8"
    assert run_cli("agent-self-identify", "--role", "", "-t", "crew:rev").returncode == 0
    assert read_agents()[f"{SELF_HOST}-crew-rev"]["role"] == "Shell agent in crew:rev"
    assert tmux("show-options", "-wqv", "-t", pane.window_id, "@agent-role") == ""


def test_self_identify_from_inside_a_pane(tmux_server: TmuxServer, tmp_path: Path) -> None:
    tmux_server.start("crew", "lead")
    pane = tmux_server.new_window("crew", "worker")
    done = tmp_path / "done"
    command = (f"{BIN / 'agent-self-identify'} --role 'Builder' --scope \"$PWD\"; "
               f"echo $? > {shlex.quote(str(done))}")
    pane.send_keys(command, "Enter")
    retry_until(lambda: done.exists() and done.read_text().strip(), timeout=30)
    assert done.read_text().strip() == "0"
    table = read_agents()[f"{SELF_HOST}-crew-worker"]
    assert table["role"] == "Builder" and table["scope"].startswith("/")
    assert tmux("show-options", "-wv", "-t", pane.window_id, "@agent-role") == "Builder\n"
    lead = read_agents()[f"{SELF_HOST}-crew-lead"]
    assert lead["role"] == "Shell agent in crew:lead"


def test_self_identify_env_defaults(tmux_server: TmuxServer) -> None:
    pane = tmux_server.start("crew", "lead")
    out = run_cli("agent-self-identify", env={"TMUX_PANE": pane.pane_id,
                                              "AGENT_ROLE": "from env"})
    assert out.returncode == 0, out.stderr
    assert read_agents()[f"{SELF_HOST}-crew-lead"]["role"] == "from env"


def test_self_identify_errors(tmux_server: TmuxServer) -> None:
    out = run_cli("agent-self-identify", "--role", "x")
    assert out.returncode == 1
    assert out.stderr == b"agent-self-identify: not inside tmux: pass -t <session:window>\n"
    tmux_server.start("crew")
    out = run_cli("agent-self-identify", "--role", "x", "-t", "nosuch:9")
    assert out.returncode == 1
    assert out.stderr.startswith(b"agent-self-identify: no tmux window 'nosuch:9'")


def test_self_identify_in_scratch_session_says_so(tmux_server: TmuxServer) -> None:
    tmux_server.start("scratch")
    out = run_cli("agent-self-identify", "--role", "x", "-t", "scratch:")
    assert out.returncode == 0, out.stderr
    assert b"not registered" in out.stdout


# --- agent-mesh list ------------------------------------------------------------


def test_list_table_and_json(tmux_server: TmuxServer) -> None:
    tmux_server.start("dev", "editor")
    tmux_server.new_window("dev", "esc\x1b[2Jname\nnext", ["sleep", "300"])
    assert run_cli("agent-discover").returncode == 0
    out = run_cli("agent-mesh", "list")
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    lines = text.splitlines()
    assert lines[0].split() == ["ADDRESS", "HOST", "ROLE", "SCOPE", "COMMAND", "AGE"]
    assert len(lines) == 3
    assert lines[1].startswith(f"{SELF_HOST}-dev-editor ")
    assert "\x1b" not in text and "[2J" not in text  # escape sequences dropped whole
    out = run_cli("agent-mesh", "list", "--json")
    assert out.returncode == 0, out.stderr
    agents = json.loads(out.stdout)
    by_address = {a["address"]: a for a in agents}
    odd = by_address[f"{SELF_HOST}-dev-esc-2jname-next"]
    assert odd["window"] == "esc\x1b[2Jname\nnext" and odd["command"] == "sleep"
    assert odd["pane_id"].startswith("%") and odd["stale"] is False
    assert set(odd) >= {"address", "host", "target", "session", "window", "role", "scope",
                        "pane_id", "command", "updated", "session_id", "window_id"}


def test_list_empty_and_corrupt_registry(isolated_env: Path) -> None:
    out = run_cli("agent-mesh", "list")
    assert (out.returncode, out.stdout) == (
        0, b"agent-mesh list: no agents yet: start tmux (windows register automatically)\n")
    assert json.loads(run_cli("agent-mesh", "list", "--json").stdout) == []
    (isolated_env / ".agents" / "registry.toml").write_text("[[[")
    out = run_cli("agent-mesh", "list")
    assert out.returncode == 1
    assert b"is not valid TOML" in out.stderr and b"agent-discover" in out.stderr
    assert out.stderr.count(b"\n") == 1


# --- help -------------------------------------------------------------------


def _every_command() -> list[list[str]]:
    """Every console script in pyproject.toml, and every agent-mesh subcommand
    (the click ones and the two internal ones that skip click)."""
    from agent_mesh.cli import delegate_cmds  # noqa: F401 - registers ask, queue, spawn
    from agent_mesh.cli.main import mesh

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    subcommands = [*mesh.commands, "rpc", "push", "queue-run"]
    return [[name] for name in scripts] + [["agent-mesh", sub] for sub in subcommands]


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("argv", _every_command(), ids=" ".join)
def test_every_command_answers_help_with_usage(isolated_env: Path, argv: list[str],
                                               flag: str) -> None:
    """Usage text on stdout, exit 0, nothing else done (rpc must not read stdin)."""
    out = run_cli(*argv, flag, input=b'{"op": "hello"}')
    text = out.stdout.decode()
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    assert "usage" in text.lower() and not text.lstrip().startswith("{"), text


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["notify-pane", "--help"], "notify-pane"),
        (["agent-discover", "--help"], "Authoritative"),
        (["agent-self-identify", "--help"], "--role"),
        (["agent-mesh", "list", "--help"], "--json"),
        (["agent-mesh", "discover", "--help"], "live tmux"),
        (["agent-register-hook", "--help"], "on <session>"),
        (["agent-mesh", "rpc", "--help"], "JSON request on stdin"),
        (["agent-mesh", "push", "--help"], "peers.conf"),
    ],
)
def test_help_says_what_the_command_does(isolated_env: Path, argv: list[str],
                                         expect: str) -> None:
    out = run_cli(*argv)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout.decode()


def test_command_list_never_cuts_a_summary(isolated_env: Path) -> None:
    out = run_cli("agent-mesh", "--help", env={"COLUMNS": "80"})
    text = out.stdout.decode()
    commands = text.split("Commands:", 1)[1]
    assert out.returncode == 0 and "..." not in commands, text
    for name in ("demo", "discover", "doctor", "list", "sync"):
        assert f"  {name} " in commands
    assert "every peer." in " ".join(commands.split())  # doctor's whole first sentence


def test_version(isolated_env: Path) -> None:
    out = run_cli("agent-mesh", "--version")
    assert out.returncode == 0 and b"0.1.0" in out.stdout
