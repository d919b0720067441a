"""Attacks that used to run a message as a command, on real programs in real tmux panes.

Each case sends a message that would do harm if typed in (a `touch` of a marker
file), checks notify-pane exits 3 with one line naming the foreground program,
then lets the program finish and checks that nothing ran.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AGENT_TUI, Pane, Receiver, Spawner, notify, retry_until
from pytest_mock import MockerFixture

from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.pane import pane_state
from agent_mesh.delivery.rule import refusal
from agent_mesh.tmux import Tmux

# each test runs over /proc and over psutil (the process tree off Linux)
pytestmark = pytest.mark.usefixtures("procs_backend")

FORCE = {"FORCE_SEND": "1"}


def reason_now(pane: Pane) -> str:
    return refusal(pane_state(Tmux(), pane.pane_id)) or ""


def refused(address: str, body: str, fragment: str, env: dict[str, str] | None = None) -> str:
    res = notify(address, body, env=env)
    err = res.stderr.decode()
    assert res.returncode == 3, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"notify-pane: refusing to deliver to '{address}': "), err
    assert fragment in err, err
    return err


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (scripts/test installs it as root)")


def bash_ran(sh: Receiver, marker: str) -> None:
    """Make bash run a last command and wait for it: anything typed before it ran first."""
    # bash (opted in) is back at its empty prompt
    retry_until(lambda: reason_now(sh.pane) == "" and "$" in sh.pane.capture(), timeout=15)
    sh.pane.send_keys(f"echo {marker}", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: f"echo {marker}" in sh.lines(), timeout=15)


# --- a shell's foreground job ------------------------------------------------------


def test_text_for_a_shell_running_sleep_is_refused_and_never_runs(
    spawn: Spawner, tmp_path: Path
) -> None:
    sh = spawn.bash()
    sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    marker = tmp_path / "ran"
    sh.pane.send_keys("sleep 2", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: "foreground program is sleep" in reason_now(sh.pane))
    err = refused(sh.address, f"done; touch {marker}", "its foreground program is sleep")
    assert "bash would run the text as a command once sleep ends" in err, err
    assert "@agent-accept" not in err, err  # issue 21.17: no opt-in would make sleep a receiver
    bash_ran(sh, "after-sleep")
    assert not marker.exists()
    assert not any("touch" in line for line in sh.lines())


def test_a_command_window_suggests_only_an_opt_in_that_works(
    spawn: Spawner, tmp_path: Path
) -> None:
    """issue 21.17: `bash -c "prog; exec bash"`. While sleep runs, bash waits under it:
    no opt-in can make that safe, so none is suggested, and bash, any and sleep all
    still refuse. Under a program that reads its own keys (python3's prompt) the
    suggested opt-in is printed, and it works."""
    marker = tmp_path / "ran"
    shell = "exec env PS1='$ ' bash --norc --noprofile"
    pane = spawn.window("cmd", ["bash", "-c", f"sleep 6; {shell}"])
    retry_until(lambda: "foreground program is sleep" in reason_now(pane))
    spawn.register()
    address = "testhost-dev-cmd"
    err = refused(address, f"; touch {marker}", "its foreground program is sleep")
    assert "@agent-accept" not in err, err
    for word in ("bash", "any", "sleep"):
        pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", word)
        refused(address, f"; touch {marker}", "no opt-in covers that")
        refused(address, f"; touch {marker}", "FORCE_SEND cannot deliver there", env=FORCE)
    retry_until(lambda: pane.capture().rstrip().endswith("$"), timeout=15)
    pane.send_keys("echo after-sleep", literal=True)
    pane.send_keys("Enter")
    retry_until(lambda: "\nafter-sleep" in pane.capture(), timeout=10)
    assert not marker.exists()

    repl = spawn.window("py", ["bash", "-c", f"{sys.executable} -q; {shell}"])
    repl.wait_for(">>>", timeout=15)
    spawn.register()
    err = refused("testhost-dev-py", "1 + 1", "its foreground program is python")
    command = err.split("should take messages: ")[1].split(" (FORCE_SEND=1")[0]
    subprocess.run(shlex.split(command), check=True)  # the exact opt-in it printed
    res = notify("testhost-dev-py", "1 + 1")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: "SyntaxError" in repl.capture(), timeout=10)  # python read it


def test_python_repl_multiline_is_refused_and_never_runs_line_two(
    spawn: Spawner, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    pane = spawn.window("repl", [sys.executable, "-q"])
    pane.wait_for(">>>", timeout=15)
    spawn.register()
    address = "testhost-dev-repl"
    body = f'hi\nimport os; os.system("touch {marker}")'
    err = refused(address, body, "its foreground program is python")
    command = err.split("should take messages: ")[1].split(" (FORCE_SEND=1")[0]
    assert command.startswith("tmux set -w -t dev:0 @agent-accept python"), command
    subprocess.run(shlex.split(command), check=True)  # the exact opt-in it printed
    refused(address, body, "has not enabled bracketed paste")
    # FORCE_SEND sends it as one line, never line by line.
    res = notify(address, body, env=FORCE)
    assert res.returncode == 0, res.stderr
    assert b"sent as one line" in res.stderr + res.stdout
    retry_until(lambda: "SyntaxError" in pane.capture(), timeout=10)
    res = notify(address, "single line is fine once opted in")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: "single line is fine" in pane.capture(), timeout=10)
    assert not marker.exists()


# --- shells however started ------------------------------------------------------


def test_ssh_in_the_foreground_is_refused(spawn: Spawner, tmp_path: Path) -> None:
    need("ssh")
    marker = tmp_path / "ran"
    # ssh waits on its proxy for the server's banner: a real ssh owns the terminal.
    argv = ["ssh", "-F", "/dev/null", "-o", "ProxyCommand=sleep 60", "-t", "peer", "bash", "-i"]
    pane = spawn.window("remote", argv)
    retry_until(lambda: "foreground program is ssh" in reason_now(pane))
    spawn.register()
    refused("testhost-dev-remote", f"ok; touch {marker}", "its foreground program is ssh")


def test_script_wrapping_a_shell_is_refused(spawn: Spawner, tmp_path: Path) -> None:
    need("script")
    marker = tmp_path / "ran"
    sh = spawn.bash()
    sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    sh.pane.send_keys("script -q -c 'bash --norc --noprofile' /dev/null", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: "foreground program is script" in reason_now(sh.pane))
    sh.pane.wait_for("bash-", timeout=10)  # the inner shell's own prompt
    refused(sh.address, f"ok; touch {marker}", "its foreground program is script")
    sh.pane.send_keys("exit", literal=True)
    sh.pane.send_keys("Enter")
    bash_ran(sh, "after-script")
    assert not marker.exists()


@pytest.mark.parametrize("copy", ["rbash", "bash-5.2", "mysh"])
def test_renamed_and_restricted_shells_are_refused(
    spawn: Spawner, tmp_path: Path, copy: str
) -> None:
    marker = tmp_path / "ran"
    if copy == "rbash":
        need("rbash")
        program = shutil.which("rbash") or "rbash"
    else:
        program = str(tmp_path / copy)
        shutil.copy2(shutil.which("bash") or "/bin/bash", program)
    pane = spawn.window("sh", ["env", "PS1=$ ", program, "--norc", "--noprofile"])
    pane.wait_for("$", timeout=15)
    spawn.register()
    fragment = "not a known agent" if copy == "mysh" else f"interactive shell ({copy})"
    refused("testhost-dev-sh", f"ok; touch {marker}", fragment)
    pane.send_keys("echo done-here", literal=True)
    pane.send_keys("Enter")
    retry_until(lambda: "\ndone-here" in pane.capture())
    assert not marker.exists()


# --- git's pager and editor ------------------------------------------------------


def _git_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    need("git")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid"}
    run = {"cwd": repo, "check": True, "capture_output": True, "env": {**_base_env(), **env}}
    subprocess.run(["git", "init", "-q"], **run)  # type: ignore[call-overload]
    (repo / "a.txt").write_text("one\n")
    subprocess.run(["git", "add", "a.txt"], **run)  # type: ignore[call-overload]
    message = "first\n\n" + "".join(f"line {n}\n" for n in range(100))  # taller than the pane
    subprocess.run(["git", "commit", "-q", "-m", message], **run)  # type: ignore[call-overload]
    return repo, env


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PAGER", "EDITOR"))}


def _git_pane(spawn: Spawner, repo: Path, env: dict[str, str], command: str) -> Receiver:
    sh = spawn.bash()
    sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    sh.pane.send_keys(f"cd {repo} && unset PAGER GIT_PAGER; export {exports}", literal=True)
    sh.pane.send_keys("Enter")
    sh.pane.send_keys(command, literal=True)
    sh.pane.send_keys("Enter")
    return sh


def test_git_log_pager_is_refused_and_runs_nothing(spawn: Spawner, tmp_path: Path) -> None:
    need("less")
    repo, env = _git_repo(tmp_path)
    marker = tmp_path / "ran"
    sh = _git_pane(spawn, repo, {**env, "GIT_PAGER": "less"}, "git log")
    retry_until(lambda: "foreground program is less" in reason_now(sh.pane))
    status = classify(pane_state(Tmux(), sh.pane.pane_id))
    assert status.kind == "running" and status.program == "less", status
    err = refused(sh.address, f"x\n\n!touch {marker}",
                  "its foreground program is less (run by git)")
    assert "not an agent input" in err
    sh.pane.send_keys("q")
    bash_ran(sh, "after-log")
    assert not marker.exists()


@pytest.mark.parametrize("how", ["git commit", "vimdiff"])
def test_editor_under_git_or_vimdiff_is_refused(spawn: Spawner, tmp_path: Path, how: str) -> None:
    need("vim")
    repo, env = _git_repo(tmp_path)
    (repo / "a.txt").write_text("two\n")
    (repo / "b.txt").write_text("three\n")
    editor = "vim -u NONE -N -n"
    if how == "git commit":
        command = "git commit -a"
        env = {**env, "GIT_EDITOR": editor}
        expect = "its foreground program is vim (run by git)"
    else:
        need("vimdiff")
        command = "vimdiff -u NONE -N -n a.txt b.txt"
        expect = "its foreground program is vimdiff"
    sh = _git_pane(spawn, repo, env, command)
    retry_until(lambda: "foreground program is vim" in reason_now(sh.pane))
    refused(sh.address, "review done", expect)
    sh.pane.send_keys("Escape")
    sh.pane.send_keys(":qa!", literal=True)
    sh.pane.send_keys("Enter")
    bash_ran(sh, "after-edit")
    log = subprocess.run(["git", "log", "--format=%B"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    assert "review done" not in log and "review done" not in (repo / "a.txt").read_text()


# --- a password prompt --------------------------------------------------------------


def test_password_prompt_is_refused_even_with_force(spawn: Spawner) -> None:
    code = 'import getpass; print("got", repr(getpass.getpass("[sudo] password for x: ")))'
    pane = spawn.window("pw", [sys.executable, "-c", code])
    pane.wait_for("password for x:", timeout=15)
    spawn.register()
    address = "testhost-dev-pw"
    refused(address, "hi; touch x", "waiting for an answer: a password prompt ([sudo] password")
    pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", "any")
    err = refused(address, "hi; touch x", "waiting for an answer: a password prompt")
    assert "FORCE_SEND=1 to override" not in err
    err = refused(address, "hi; touch x", "waiting for an answer", env=FORCE)
    assert "FORCE_SEND does not type into dialogs" in err
    assert "got" not in pane.capture()


# --- the stand-in agent stays deliverable --------------------------------------------


def test_known_agent_is_found_in_its_process_group(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    state = pane_state(Tmux(), tui.pane.pane_id)
    status = classify(state)
    assert (status.kind, status.agent) == ("idle", "agent_tui"), status
    assert state.procs is not None and state.procs.group[0].pid == int(
        tui.pane.display("#{pane_pid}"))
    assert state.target == "dev:0"


# --- real agent screens replayed in a real pane -------------------------------------

REPLAY = Path(__file__).resolve().parent / "programs" / "screen_replay.py"


def replay(spawn: Spawner, tmp_path: Path, agent: str, screen: str,
           after: str = "", on_any: bool = False) -> tuple[str, Path, Pane]:
    """Run the replayer under the agent's name (a link named `claude`, `codex`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    link = bindir / agent
    if not link.exists():
        link.symlink_to(REPLAY)
    log = tmp_path / f"{agent}-keys.log"
    extra = [after, *(["any"] if on_any else [])] if after else []
    pane = spawn.window(agent, [str(link), str(log), screen, *extra])
    # `python3 …/bin/claude`: recognised from the script the interpreter runs
    retry_until(lambda: classify(pane_state(Tmux(), pane.pane_id)).agent == agent)
    pane.wait_for(screen_marker(screen), timeout=10)
    spawn.register()
    return f"testhost-dev-{agent}", log, pane


def screen_marker(screen: str) -> str:
    return "Status   Config" if "/" in screen else ("Ask Codex" if "codex" in screen
                                                  else "Claude Code")


def keys(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_permission_question_is_never_typed_into_even_with_force(
    spawn: Spawner, tmp_path: Path
) -> None:
    address, log, _ = replay(spawn, tmp_path, "claude", "claude-code-permission-dialog")
    refused(address, "1", "waiting for an answer: Do you want to proceed?")
    err = refused(address, "1", "waiting for an answer", env=FORCE)
    assert "FORCE_SEND does not type into dialogs" in err
    refused(address, "1", "waiting for an answer", env={"SKIP_DISMISS": "1"})
    assert keys(log) == []  # not even an Escape


def test_codex_mid_turn_is_refused(spawn: Spawner, tmp_path: Path) -> None:
    address, log, _ = replay(spawn, tmp_path, "codex", "codex-working")
    refused(address, "hello", "working: Codex is mid-turn")
    assert keys(log) == []


def test_claude_mid_turn_gets_the_message_it_keeps_for_later(
    spawn: Spawner, tmp_path: Path
) -> None:
    address, log, _ = replay(spawn, tmp_path, "claude", "claude-code-working")
    res = notify(address, "later please")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: keys(log) and keys(log)[-1] == "0d", timeout=10)  # Enter, last
    assert b"later please".hex() in "".join(keys(log))
    assert keys(log)[0].startswith("1b5b3230307e")  # one bracketed paste


def test_a_dialog_opening_during_the_settle_never_gets_the_enter(
    spawn: Spawner, tmp_path: Path
) -> None:
    """Claude Code mid-turn opens a permission question just as a message is pasted:
    the paste stays in its input, the Enter (which would approve) is never sent."""
    address, log, _ = replay(spawn, tmp_path, "claude", "claude-code-working",
                             after="claude-code-permission-dialog", on_any=True)
    res = notify(address, "later please")
    assert res.returncode == 0, res.stderr
    assert b"pasted but not submitted" in res.stderr, res.stderr
    time.sleep(0.6)
    sent = "".join(keys(log))
    assert b"later please".hex() in sent and "0d" not in keys(log)


def _config_dialog(tmp_path: Path) -> str:
    """A Claude Code /config dialog (Escape closes it, harmlessly)."""
    base = tmp_path / "claude-config"
    rows = [" ▐▛███▜▌   Claude Code v2.1.197", "", "─" * 100,
            " Status   Config   Usage   Stats", "", " Auto-compact   true",
            " Theme          Dark mode", "", " Esc to close"]
    base.with_suffix(".ansi").write_text("\n".join(rows) + "\n")
    base.with_suffix(".json").write_text(json.dumps({"cursor_x": 0, "cursor_y": 8}))
    return str(base)


def test_a_harmless_dialog_is_closed_with_escape_only(spawn: Spawner, tmp_path: Path) -> None:
    address, log, _ = replay(spawn, tmp_path, "claude", _config_dialog(tmp_path),
                                after="claude-code-idle")
    refused(address, "hi", "SKIP_DISMISS=1 keeps it", env={"SKIP_DISMISS": "1"})
    assert keys(log) == []
    res = notify(address, "hi")
    assert res.returncode == 0, res.stderr
    assert b"dismissed the /config dialog first" in res.stderr + res.stdout
    retry_until(lambda: keys(log) and keys(log)[-1] == "0d", timeout=10)
    assert keys(log)[0] == "1b"  # Escape, then the paste, then Enter: never Enter first
    assert keys(log).count("0d") == 1


def _bash_job(spawn: Spawner, tmp_path: Path, name: str, argv: list[str]) -> Pane:
    """A window whose bash runs argv as its foreground job (as `claude` typed at a prompt)."""
    pane = spawn.window(name, ["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
    pane.wait_for("$", timeout=15)
    pane.send_keys(shlex.join(argv), literal=True)
    pane.send_keys("Enter")
    return pane


def test_a_known_agent_started_from_bash_is_delivered_to(spawn: Spawner, tmp_path: Path) -> None:
    """issue 21.1: a shell waits under the agent, and its TUI is on screen (raw terminal,
    input box): delivered, as before. Only a name with no TUI is refused."""
    log = tmp_path / "tui.jsonl"
    pane = _bash_job(spawn, tmp_path, "tui", [sys.executable, str(AGENT_TUI), str(log)])
    pane.wait_for("? for shortcuts", timeout=15)
    spawn.register()
    state = pane_state(Tmux(), pane.pane_id)
    assert state.tty_mode == "raw"
    assert classify(state).agent == "agent_tui"
    res = notify("testhost-dev-tui", "hello from a job")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: log.exists() and "hello from a job" in log.read_text(), timeout=10)


def test_a_dialog_is_closed_under_bash_only_when_the_tui_is_on_screen(
    spawn: Spawner, tmp_path: Path
) -> None:
    """Escape closes Claude Code's /config dialog when the TUI reads its keys (raw
    terminal), also as a job of bash; a `sleep` named `claude` showing the same lines
    gets no Escape and nothing else (issue 21.1)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(REPLAY)
    log = tmp_path / "keys.log"
    screen = _config_dialog(tmp_path)
    pane = _bash_job(spawn, tmp_path, "claude",
                     [str(bindir / "claude"), str(log), screen, "claude-code-idle"])
    pane.wait_for("Status   Config", timeout=15)
    spawn.register()
    res = notify("testhost-dev-claude", "hi")
    assert res.returncode == 0, res.stderr
    assert b"dismissed the /config dialog first" in res.stderr + res.stdout
    retry_until(lambda: keys(log) and keys(log)[-1] == "0d", timeout=10)
    assert keys(log)[0] == "1b"

    fake = bindir / "fake" / "claude"
    fake.parent.mkdir()
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", fake)
    marker = tmp_path / "ran"
    # the dialog's lines printed by cat, then the copy of sleep named claude
    sh = _bash_job(spawn, tmp_path, "fake", ["cat", str(Path(screen).with_suffix(".ansi"))])
    sh.send_keys(f"{fake} 4", literal=True)
    sh.send_keys("Enter")
    retry_until(lambda: sh.display("#{pane_current_command}") == "claude", timeout=10)
    spawn.register()
    err = refused("testhost-dev-fake", f"; touch {marker}", "a job of bash", env=FORCE)
    assert "dismissed" not in err
    retry_until(lambda: sh.display("#{pane_current_command}") == "bash", timeout=15)
    sh.send_keys("echo after-fake", literal=True)
    sh.send_keys("Enter")
    retry_until(lambda: "\nafter-fake" in sh.capture(), timeout=10)
    assert not marker.exists()


def test_hidden_input_at_a_bash_prompt_is_a_question(spawn: Spawner, tmp_path: Path) -> None:
    """issue 21.7: `read -s` at bash's own prompt: the terminal reads a line with echo
    off. status says waiting; refused with every opt-in and with FORCE_SEND."""
    sh = spawn.bash()
    sh.pane.send_keys("read -s -p 'Password: ' X; echo \"got:${#X}:\"", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: sh.pane.capture().rstrip().endswith("Password:"))
    state = pane_state(Tmux(), sh.pane.pane_id)
    assert (state.tty_mode, classify(state).kind) == ("hidden", "waiting")
    for word in ("shell", "any", "bash"):
        sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", word)
        refused(sh.address, "secret", "waiting for an answer", env=FORCE)
    sh.pane.send_keys("Enter")
    retry_until(lambda: "got:0:" in sh.pane.capture(), timeout=10)


def test_vi_mode_bash_is_refused_in_command_mode_only(spawn: Spawner, procs_backend: str) -> None:
    """issue 21.18: with `@agent-accept shell`, a bash in vi insert mode takes the
    message; in vi command (normal) mode it is refused, even with FORCE_SEND. Without
    /proc (psutil) bash's keymap cannot be read: readline's mode string is the sign."""
    sh = spawn.bash()
    sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    sh.pane.send_keys("set -o vi", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: "set -o vi" in sh.lines(), timeout=10)
    if procs_backend == "psutil":
        sh.pane.send_keys("bind 'set show-mode-in-prompt on'", literal=True)
        sh.pane.send_keys("Enter")
        retry_until(lambda: "(ins)$" in sh.pane.capture(), timeout=10)
    res = notify(sh.address, ": insert mode takes it")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: any("insert mode takes it" in line for line in sh.lines()), timeout=10)
    sh.pane.send_keys("x", literal=True)  # then Escape: the cursor steps back onto the x
    retry_until(lambda: "$ x" in sh.pane.capture())
    column = sh.pane.display("#{cursor_x}")
    sh.pane.send_keys("Escape")
    retry_until(lambda: sh.pane.display("#{cursor_x}") == str(int(column) - 1), timeout=10)
    sh.pane.send_keys("x", literal=True)  # command mode: deletes it, the line is empty
    retry_until(lambda: sh.pane.capture().rstrip().endswith("$"))
    before = sh.pane.capture()
    refused(sh.address, ": vi command mode", "vi command mode")
    refused(sh.address, ": vi command mode", "FORCE_SEND cannot deliver there", env=FORCE)
    assert sh.pane.capture() == before
    sh.pane.send_keys("i", literal=True)  # back to insert mode: delivered again
    res = notify(sh.address, ": insert again")
    assert res.returncode == 0, res.stderr
    retry_until(lambda: any("insert again" in line for line in sh.lines()), timeout=10)


def test_vi_mode_is_probed_only_where_the_text_could_reach_the_prompt(
        spawn: Spawner, mocker: MockerFixture) -> None:
    """issue 21.18, its cost: reading bash's keymap (an ELF parse and /proc/PID/mem, ~2 ms)
    is for a send that could reach the prompt, a forced one or to a window that accepts
    `shell`; an unforced send to a shell that is refused anyway does not pay it (spied
    at the procs edge)."""
    from agent_mesh.delivery import rule
    from agent_mesh.delivery.paste import claim_pane
    from agent_mesh.errors import NotReady

    sh = spawn.bash()
    probe = mocker.spy(rule, "readline_vi_command")
    with pytest.raises(NotReady, match="interactive shell"), claim_pane(Tmux(), sh.pane.pane_id):
        pass
    assert probe.call_count == 0
    with claim_pane(Tmux(), sh.pane.pane_id, force=True):
        assert probe.call_count == 1
    sh.pane.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    with claim_pane(Tmux(), sh.pane.pane_id):
        assert probe.call_count >= 2
    assert sh.lines() == []
