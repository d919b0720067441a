"""The readiness decision for every real screen of Claude Code, Codex and aider in
tests/fixtures/screens/ (captured from the real programs; see README there), and the
receiver recognition rules, without a tmux server."""

from __future__ import annotations

import os

import pytest
from screen_fixtures import load, names

from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.prompts import detect_modal
from agent_mesh.delivery.rule import refusal
from agent_mesh.delivery.state import PaneState
from agent_mesh.procs import Proc, foreground, read_proc
from agent_mesh.receivers import agent_of, is_shell, shell_of

# screen -> (kind, fragment of the refusal, or None when it is delivered to)
EXPECTED: dict[str, tuple[str, str | None]] = {
    "claude-code-idle": ("idle", None),
    "claude-code-idle-after-answer": ("idle", None),
    "claude-code-drafting": ("drafting", "mid-prompt"),
    "claude-code-drafting-cursor-home": ("drafting", "mid-prompt"),
    "claude-code-drafting-multiline": ("drafting", "mid-prompt"),
    # Claude Code keeps a message submitted mid-turn until the turn ends.
    "claude-code-working": ("working", None),
    "claude-code-working-with-draft": ("drafting", "mid-prompt"),
    "claude-code-permission-dialog": ("waiting", "waiting for an answer: Do you want to proceed?"),
    "codex-idle": ("idle", None),
    "codex-idle-after-answer": ("idle", None),
    "codex-drafting": ("drafting", "mid-prompt"),
    "codex-drafting-cursor-home": ("drafting", "mid-prompt"),
    "codex-drafting-multiline": ("drafting", "mid-prompt"),
    # Codex submits on Enter at once and drops the answer it was streaming.
    "codex-working": ("working", "would cut its turn short"),
    "codex-working-with-draft": ("drafting", "mid-prompt"),
    "aider-idle": ("idle", None),
    "aider-idle-after-answer": ("idle", None),
    "aider-after-400": ("idle", None),
    "aider-drafting": ("drafting", "mid-prompt"),
    "aider-drafting-cursor-home": ("drafting", "mid-prompt"),
    "aider-drafting-multiline": ("drafting", "mid-prompt"),
    "aider-drafting-wrapped": ("drafting", "mid-prompt"),
    "aider-idle-after-answer-with-typeahead": ("drafting", "mid-prompt"),
    # aider reads keys typed mid-answer at its next prompt, glued to any type-ahead.
    "aider-working": ("working", "would cut its turn short"),
    "aider-working-with-draft": ("working", "would cut its turn short"),
}


def test_every_fixture_has_an_expected_decision() -> None:
    assert sorted(EXPECTED) == names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decision_for_each_real_screen(name: str) -> None:
    kind, fragment = EXPECTED[name]
    state = load(name)
    status = classify(state)
    assert status.kind == kind, (status.kind, status.detail)
    assert status.agent, "the agent is recognised from its process group"
    reason = refusal(state)
    if fragment is None:
        assert reason is None, reason
    else:
        assert reason is not None and fragment in reason, reason
    # an opt-in never turns a refused agent state into a delivery
    assert (refusal(load(name, accept="any")) is None) == (fragment is None)


def test_a_multiline_message_to_a_known_agent_is_fine() -> None:
    assert refusal(load("claude-code-idle"), multiline=True) is None


def test_codex_is_recognised_through_its_npm_launcher() -> None:
    state = load("codex-idle")
    assert [p.comm for p in state.procs.group] == ["node", "codex"]  # type: ignore[union-attr]
    assert classify(state).program == "Codex"


def test_a_permission_question_is_never_dismissed() -> None:
    state = load("claude-code-permission-dialog")
    assert detect_modal(state.screen) == ""


def _proc(comm: str, *argv: str) -> Proc:
    return Proc(0, 1, 1, 1, comm, tuple(argv))


@pytest.mark.parametrize(
    ("comm", "argv", "agent"),
    [
        ("claude", ("claude",), "claude"),
        ("node", ("node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"), "claude"),
        ("node", ("node", "/home/u/.npm/lib/node_modules/@openai/codex/bin/codex.js"), "codex"),
        ("codex", ("/x/codex-x86_64-unknown-linux-musl",), "codex"),
        ("python3", ("python3", "-m", "aider", "--model", "x"), "aider"),
        ("aider", ("/v/bin/python3", "/v/bin/aider", "--model", "x"), "aider"),
        ("node", ("node", "/usr/bin/npx", "@openai/codex"), "codex"),
        ("npm exec @google", ("npm exec @google/gemini-cli",), ""),
        ("node", ("node", "/usr/local/bin/gemini"), "gemini"),
        ("bun", ("bun", "x", "opencode-ai"), "opencode"),
        ("uvx", ("uvx", "--from", "aider-chat", "aider"), "aider"),
        ("llm", ("llm", "chat", "-m", "x"), "llm"),
        ("llm", ("llm", "prompt", "hi"), ""),
        ("less", ("less", "/home/u/codex/README"), ""),
        ("python3", ("python3", "-q"), ""),
        ("bash", ("bash", "--norc"), ""),
    ],
)
def test_agents_are_recognised_however_started(comm: str, argv: tuple[str, ...],
                                               agent: str) -> None:
    assert agent_of(_proc(comm, *argv)) == agent


def test_extra_receivers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = _proc("python3", "python3", "/t/agent_tui.py", "log")
    monkeypatch.delenv("AGENT_MESH_RECEIVERS", raising=False)
    assert agent_of(proc) == ""
    monkeypatch.setenv("AGENT_MESH_RECEIVERS", "other, agent_tui")
    from agent_mesh.receivers import extra_agents

    assert agent_of(proc, extra_agents()) == "agent_tui"


@pytest.mark.parametrize(
    ("name", "shell"),
    [("bash", True), ("rbash", True), ("bash-5.2", True), ("-bash", True), ("zsh5", True),
     ("/bin/dash", True), ("busybox", True), ("sleep", False), ("shuf", False),
     ("ssh", False), ("bashful", False), ("python3", False)],
)
def test_shell_names(name: str, shell: bool) -> None:
    assert is_shell(name) is shell


def test_busybox_is_a_shell_only_as_sh() -> None:
    assert shell_of(_proc("busybox", "busybox", "sh")) == "busybox sh"
    assert shell_of(_proc("busybox", "busybox", "vi", "x")) == ""


def test_store_role_inference_uses_the_one_shell_list() -> None:
    from agent_mesh.registry.naming import infer_role

    assert infer_role("bash-5.2", "s", "w").startswith("Shell agent")
    assert infer_role("rbash", "s", "w").startswith("Shell agent")


@pytest.mark.usefixtures("procs_backend")
def test_procs_reads_this_process() -> None:
    import subprocess
    import sys

    from conftest import retry_until

    from agent_mesh.procs import exe_name, parent, running

    me = read_proc(os.getpid())
    assert me is not None and me.pid == os.getpid() and me.argv
    assert me.ppid == os.getppid() == parent(os.getpid()) and me.pgrp == os.getpgrp()
    assert exe_name(os.getpid()).startswith("python")
    assert foreground(-1) is None
    assert foreground(999_999_999) is None
    assert parent(999_999_999) == 0
    mark = f"procs-mark-{os.getpid()}"
    kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", mark],
                           env={**os.environ, "PROCS_TEST": mark})
    try:
        # Popen returns once the exec began, a moment before the kernel shows the new argv
        retry_until(lambda: running((mark.encode(),), f"PROCS_TEST={mark}".encode())
                    == [kid.pid], timeout=5)
        assert running((mark.encode(),), b"PROCS_TEST=other") == []
    finally:
        kid.kill()
        kid.wait()


@pytest.mark.usefixtures("procs_backend")
def test_a_group_whose_leader_has_gone_is_found_by_a_scan() -> None:
    """The slow path of procs.foreground: the group's leader exited, its child lives on."""
    import subprocess
    import sys

    from conftest import retry_until

    from agent_mesh import procs

    code = ("import os, sys, time\nos.setpgid(0, 0)\nif os.fork() == 0:\n"
            "    time.sleep(30)\nelse:\n    print(os.getpid(), flush=True)\n")
    leader = subprocess.Popen([sys.executable, "-c", code, "orphan-mark"],
                              stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    pgrp = int(leader.stdout.readline())
    leader.wait()
    try:
        found = retry_until(lambda: procs._scan_group(procs._source(), pgrp), timeout=5)
        assert [p.pgrp for p in found] == [pgrp] and found[0].pid != pgrp
        assert found[0].argv[-1] == "orphan-mark" and found[0].ppid != pgrp
    finally:
        os.killpg(pgrp, 9)
        leader.stdout.close()


def test_linux_reads_no_psutil() -> None:
    """psutil is for where /proc is absent: the Linux path never imports it."""
    import subprocess
    import sys

    code = ("import os, sys; from agent_mesh import procs; procs.foreground(os.getpid()); "
            "procs.read_proc(os.getpid()); procs.running((b'x',), b'HOME=/'); "
            "print('psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items()
                                          if k != "AGENT_MESH_PROCS"})
    assert out.stdout.strip() == "False"


def _state(screen: str, x: int, y: int, *group: Proc, accept: str = "") -> PaneState:
    from agent_mesh.procs import Foreground

    return PaneState(pane_id="%1", cursor_x=x, cursor_y=y, width=80, screen=screen,
                     accept=accept, procs=Foreground(group[0], group[0].pgrp, group),
                     target="dev:1")


BASH = Proc(10, 1, 10, 10, "bash", ("bash", "--norc"))


def test_numbered_output_in_a_shell_is_not_a_question() -> None:
    screen = "$ cat todo\n1. fix the parser\n2. write tests\n$ "
    status = classify(_state(screen, 2, 3, BASH, accept="shell"))
    assert status.kind == "shell", status
    assert refusal(_state(screen, 2, 3, BASH, accept="shell")) is None


def test_a_shell_draft_that_mentions_a_password_is_a_draft() -> None:
    status = classify(_state("$ echo password:", 16, 0, BASH, accept="shell"))
    assert status.kind == "drafting", status


def test_a_job_asking_yes_no_is_waiting() -> None:
    apt = Proc(20, 10, 20, 20, "apt", ("apt", "install", "x"))
    state = _state("Need to get 1 MB.\nDo you want to continue? [Y/n] ", 31, 1, apt,
                   accept="any")
    assert classify(state).kind == "waiting"
    assert (refusal(state) or "").startswith("waiting for an answer: Do you want to continue?")


def test_the_opt_in_command_names_the_server_when_it_is_not_the_default() -> None:
    python = Proc(30, 1, 30, 30, "python3", ("python3", "-q"))
    state = _state(">>> ", 4, 0, python).replace(socket="/tmp/t/other sock",
                                                 target="my dev:2")
    reason = refusal(state) or ""  # type: ignore[arg-type]
    assert reason.endswith("tmux -S '/tmp/t/other sock' set -w -t 'my dev:2' "
                           "@agent-accept python3"), reason


@pytest.mark.parametrize("screen", ["", "Welcome to Claude Code\n\nPress Enter to continue…"])
def test_an_agent_showing_no_input_box_is_never_typed_into(screen: str) -> None:
    """A splash, a confirm screen or an unknown menu: Enter would answer it (found in review:
    Claude Code's mid-turn allowance let these through)."""
    claude = Proc(20, 1, 20, 20, "claude", ("claude",))
    state = _state(screen, 0, 0, claude)
    assert classify(state).kind in ("working", "drafting")
    assert refusal(state) is not None
    if not screen:
        assert "shows no input box" in (refusal(state) or "")
