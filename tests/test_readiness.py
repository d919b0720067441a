"""Readiness on real programs: every refusal (exit 3, one line), FORCE_SEND=1 overriding it,
and the negatives that matter most: an idle agent or Python prompt is never refused."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import SENDER, Receiver, Spawner, notify, retry_until

from agent_mesh.delivery.pane import Pane, pane_state
from agent_mesh.delivery.rule import refusal
from agent_mesh.errors import PaneDead
from agent_mesh.procs import foreground
from agent_mesh.tmux import Tmux

# each test runs over /proc and over psutil (the process tree off Linux)
pytestmark = pytest.mark.usefixtures("procs_backend")

TAG = re.compile(r"\[from " + SENDER + r" @ [0-9TZ:-]+ \u2713testhost\] ")
FORCE = {"FORCE_SEND": "1"}


def reason_now(receiver: Receiver) -> str | None:
    return refusal(pane_state(Tmux(), receiver.pane.pane_id))


def assert_refused(receiver: Receiver, fragment: str, body: str = "hello",
                   env: dict[str, str] | None = None) -> str:
    """notify-pane exits 3 with one line naming the reason; returns that line.

    Waits first until the program has drawn the state under test (keys are async)."""
    retry_until(lambda: fragment in (reason_now(receiver) or ""), timeout=10)
    res = notify(receiver.address, body, env=env)
    err = res.stderr.decode()
    assert res.returncode == 3, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"notify-pane: refusing to deliver to '{receiver.address}': "), err
    assert fragment in err, err
    assert res.stdout == b""
    return err


def forced(receiver: Receiver, body: str = "hello") -> None:
    """FORCE_SEND=1 delivers regardless (exit 0)."""
    res = notify(receiver.address, body, env=FORCE)
    assert res.returncode == 0, res.stderr


def type_keys(receiver: Receiver, *keys: str, literal: bool = False) -> None:
    receiver.pane.send_keys(*keys, literal=literal)


def opt_in_shell(receiver: Receiver) -> None:
    receiver.pane.server.run("set-option", "-w", "-t", receiver.pane.pane_id,
                             "@agent-accept", "shell")


# --- agent TUI ----------------------------------------------------------------


@pytest.mark.parametrize(
    "opts",
    [(), ("--placeholder-style", "grey"), ("--prompt", "›"), ("--prompt", "›",
                                                             "--placeholder-style", "grey")],
    ids=["claude-dim", "claude-grey", "codex-dim", "codex-grey"],
)
def test_idle_agent_with_faint_placeholder_is_never_refused(
    spawn: Spawner, opts: tuple[str, ...]
) -> None:
    tui = spawn.agent_tui("agent", *opts)
    screen = tui.pane.capture(escapes=True)
    sgr = re.search(r"\x1b\[([0-9;]*)m(?=Try \"fix)", screen)  # only visible with -e
    assert sgr, screen
    params = sgr.group(1).split(";")
    assert ("2" in params) if "grey" not in opts else (params[:2] == ["38", "5"]), params
    assert reason_now(tui) is None
    res = notify(tui.address, "first")
    assert res.returncode == 0, res.stderr
    tui.wait_lines(1)
    res = notify(tui.address, "second")  # right after: the box is empty again
    assert res.returncode == 0, res.stderr
    assert [line[-6:] for line in tui.wait_lines(2)] == [" first", "second"]


def test_agent_tui_draft_refused_and_forced(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    type_keys(tui, "half-typed thought", literal=True)
    assert_refused(tui, "mid-prompt")
    forced(tui)
    (line,) = tui.wait_lines(1)
    assert line.startswith("half-typed thought[from tester @ ") and line.endswith("] hello")


@pytest.mark.parametrize("home_key", ["Home", "C-a"])
def test_agent_tui_draft_with_cursor_at_start_refused_and_forced(
    spawn: Spawner, home_key: str
) -> None:
    tui = spawn.agent_tui()
    type_keys(tui, "draft", literal=True)
    retry_until(lambda: "mid-prompt" in (reason_now(tui) or ""))  # drawn before Home
    type_keys(tui, home_key)
    retry_until(lambda: tui.pane.display("#{cursor_x}") == "2")
    assert_refused(tui, "mid-prompt")
    forced(tui)
    (line,) = tui.wait_lines(1)
    assert TAG.match(line) and line.endswith("] hellodraft"), line


def test_agent_tui_multiline_draft_refused_and_forced(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    # Typed fast, so the Enter counts as a newline (agent TUI behaviour).
    type_keys(tui, "first line", literal=True)
    type_keys(tui, "Enter")
    type_keys(tui, "second", literal=True)
    assert_refused(tui, "mid-prompt")
    forced(tui)
    (line,) = tui.wait_lines(1)
    assert line.startswith("first line\nsecond[from tester @ "), line


def test_agent_tui_draft_on_an_empty_continuation_row_is_refused(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    type_keys(tui, "only line", literal=True)
    type_keys(tui, "Enter")  # newline, cursor now on an empty row below the draft
    retry_until(lambda: tui.pane.display("#{cursor_y}") != "2" and tui.pane.capture())
    assert_refused(tui, "mid-prompt")


# --- copy mode and dead panes ---------------------------------------------------


def test_copy_mode_refused_and_forced_leaves_it_and_submits(spawn: Spawner) -> None:
    tui = spawn.agent_tui()
    tui.pane.server.run("copy-mode", "-t", tui.pane.pane_id)
    assert_refused(tui, "copy-mode")
    forced(tui)
    (line,) = tui.wait_lines(1)
    assert TAG.match(line) and line.endswith("] hello")
    assert tui.pane.display("#{pane_in_mode}") == "0"


def test_dead_pane_refused_even_with_force(spawn: Spawner) -> None:
    """FORCE_SEND cannot help a dead pane, and must not try: tmux 3.3a's server crashes
    (taking every session with it) on paste-buffer into a dead pane."""
    spawn.agent_tui("keep")  # the session must outlive the dead pane's window
    spawn.server.run("set-option", "-g", "remain-on-exit", "on")
    pane = spawn.window("gone", ["sh", "-c", "exit 0"])
    retry_until(lambda: pane.display("#{pane_dead}") == "1")
    spawn.register()
    dead = Receiver(pane, "testhost-dev-gone", spawn.tmp / "none")
    assert "FORCE_SEND=1 to override" not in assert_refused(dead, "dead")
    assert "FORCE_SEND cannot" in assert_refused(dead, "dead", env=FORCE)
    assert spawn.server.run("list-sessions", check=False).returncode == 0


def test_paste_checks_for_death_inside_tmux(spawn: Spawner) -> None:
    """The pane can die between the readiness check and the paste: the paste itself
    is guarded inside tmux's command queue, so the server survives that race too."""
    spawn.agent_tui("keep")
    spawn.server.run("set-option", "-g", "remain-on-exit", "on")
    pane = spawn.window("gone", ["sh", "-c", "exit 0"])
    retry_until(lambda: pane.display("#{pane_dead}") == "1")
    with pytest.raises(PaneDead):
        Pane(Tmux(), pane.pane_id).paste("hello", 0.05)
    assert spawn.server.run("list-sessions", check=False).returncode == 0
    assert spawn.server.run("list-buffers").stdout == ""


# --- shells ---------------------------------------------------------------------


def test_shell_at_its_prompt_refused_unless_window_opts_in(spawn: Spawner) -> None:
    sh = spawn.bash()
    assert_refused(sh, "interactive shell")
    forced(sh, "forced")
    opt_in_shell(sh)
    res = notify(sh.address, "opted in")
    assert res.returncode == 0, res.stderr
    lines = sh.wait_lines(2)
    assert lines[0].endswith("] forced") and lines[1].endswith("] opted in"), lines


def test_shell_draft_refused_and_forced(spawn: Spawner) -> None:
    sh = spawn.bash()
    opt_in_shell(sh)  # so the draft is the only reason left
    type_keys(sh, "echo draft", literal=True)
    assert_refused(sh, "mid-prompt")
    forced(sh)
    (line,) = sh.wait_lines(1)
    assert line.startswith("echo draft[from tester @ ") and line.endswith("] hello"), line


@pytest.mark.parametrize("home_key", ["Home", "C-a"])
def test_shell_draft_with_cursor_at_start_refused_and_forced(
    spawn: Spawner, home_key: str
) -> None:
    sh = spawn.bash()
    opt_in_shell(sh)
    type_keys(sh, "echo draft", literal=True)
    retry_until(lambda: "echo draft" in sh.pane.capture())
    type_keys(sh, home_key)
    retry_until(lambda: sh.pane.display("#{cursor_x}") == "2")
    assert_refused(sh, "mid-prompt")
    forced(sh, "x")
    (line,) = sh.wait_lines(1)
    assert TAG.match(line) and line.endswith("] xecho draft"), line


def test_shell_continuation_prompt_refused_and_forced(spawn: Spawner) -> None:
    sh = spawn.bash()
    opt_in_shell(sh)
    type_keys(sh, "for i in 1; do", literal=True)
    type_keys(sh, "Enter")
    retry_until(lambda: sh.pane.capture().rstrip().endswith(">"))
    assert_refused(sh, "mid-prompt")
    forced(sh, "x")
    retry_until(lambda: sh.pane.capture().rstrip().endswith("] x\n>"))  # Enter came
    type_keys(sh, "done", literal=True)
    type_keys(sh, "Enter")
    (line,) = sh.wait_lines(1)
    assert line.startswith("for i in 1; do [from tester @ ") and line.endswith("] x; done"), line


# --- Python -----------------------------------------------------------------------


def test_idle_python_prompts_are_not_refused(spawn: Spawner) -> None:
    repl = spawn.python_repl()
    py = spawn.py_receiver()
    assert reason_now(repl) is None
    assert reason_now(py) is None


def test_python_draft_refused_and_forced(spawn: Spawner) -> None:
    py = spawn.py_receiver()
    type_keys(py, "x = 1", literal=True)
    assert_refused(py, "mid-prompt")
    forced(py)
    (line,) = py.wait_lines(1)
    assert line.startswith("x = 1[from tester @ ") and line.endswith("] hello"), line


def test_python_continuation_refused_and_forced(spawn: Spawner) -> None:
    repl = spawn.python_repl()
    type_keys(repl, "for i in range(2):", literal=True)
    type_keys(repl, "Enter")
    retry_until(lambda: "..." in repl.pane.capture())
    assert_refused(repl, "mid-prompt")
    forced(repl, "x")
    retry_until(lambda: "] x" in repl.pane.capture())


# --- programs that are not an input -----------------------------------------------


@pytest.mark.parametrize("argv", [["vim", "-u", "NONE", "-N", "-n"], ["less", "/etc/hostname"]],
                         ids=["vim", "less"])
def test_pager_and_editor_refused_and_forced(spawn: Spawner, argv: list[str]) -> None:
    pane = spawn.window("viewer", argv)
    retry_until(lambda: pane.display("#{alternate_on}") == "1")
    spawn.register()
    viewer = Receiver(pane, "testhost-dev-viewer", spawn.tmp / "none")
    assert_refused(viewer, "not an agent input")
    forced(viewer, "hi")


def foreground_program(pane_pid: int) -> str:
    """The foreground group leader's name, as the readiness check reads it ('' unknown)."""
    fg = foreground(pane_pid)
    return fg.group[0].comm if fg is not None and fg.group else ""


def test_foreground_program_is_the_foreground_job(
    spawn: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's view of the foreground job (/proc, or psutil without it); with
    neither, tmux's view is used."""
    sh = spawn.bash()
    pid = int(sh.pane.display("#{pane_pid}"))
    assert foreground_program(pid) == "bash"
    type_keys(sh, "sleep 30", literal=True)
    type_keys(sh, "Enter")
    retry_until(lambda: foreground_program(pid) == "sleep")
    assert pane_state(Tmux(), sh.pane.pane_id).current_command == "sleep"
    assert foreground_program(999_999_999) == ""
    from agent_mesh import procs

    monkeypatch.setenv("AGENT_MESH_PROCS", "psutil")  # as off Linux, with psutil missing
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setitem(sys.modules, "agent_mesh.procs_psutil", None)
    monkeypatch.setattr(procs, "_sources", {})
    assert foreground_program(pid) == ""
    type_keys(sh, "C-c")


def test_real_ipython_prompts(spawn: Spawner) -> None:
    """ipython draws `In [1]: ` and `   ...: ` (prompt_toolkit, coloured prompts)."""
    pytest.importorskip("IPython")
    ipython = [sys.executable, "-m", "IPython", "--no-banner", "--HistoryManager.enabled=False"]
    pane = spawn.window("ipy", ipython)
    pane.wait_for("In [1]:", timeout=20)
    spawn.register()
    repl = Receiver(pane, "testhost-dev-ipy", spawn.tmp / "none")
    assert "@agent-accept IPython" in assert_refused(repl, "not a known agent")
    pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", "IPython")
    assert reason_now(repl) is None
    type_keys(repl, "x = 1", literal=True)
    assert_refused(repl, "a draft after the prompt")
    type_keys(repl, "Home")
    assert_refused(repl, "text right of the cursor")
    type_keys(repl, "C-c")
    retry_until(lambda: reason_now(repl) is None)
    type_keys(repl, "for i in range(2):", literal=True)
    type_keys(repl, "Enter")
    assert_refused(repl, "continuation")
