"""Acceptance corpus for issue 21: every receiver that once ran a message or answered a
question, sent to with and without FORCE_SEND=1 and under each opt-in that could apply.

One test per kind of receiver. Its variants (opt-in x FORCE_SEND) run at once, one
window each on the test's tmux server, so a kind costs about one job's length. Each
window gets three messages that would run `touch` if a shell read them (`; touch …`,
one that closes an open quote first, and one with a newline). After the job has ended
(so bash would have run any typeahead) and bash has run a sentinel command, no marker
file may exist; a question must have received nothing, and a draft must be unchanged.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import SELF_HOST, Pane, Spawner, notify, retry_until
from pytest_mock import MockerFixture

JOB_SECONDS = 7  # the shell jobs: long enough for every variant's three messages

@dataclass
class Slot:
    """One window of a kind: its opt-in, whether FORCE_SEND is set, and what happened."""

    pane: Pane
    address: str
    history: Path
    marker: Path
    optin: str
    force: bool
    tmp: Path
    results: list[tuple[int, str]] = field(default_factory=list)
    before: str = ""

    def type(self, text: str) -> None:
        self.pane.send_keys(text, literal=True)
        self.pane.send_keys("Enter")

    def ran(self) -> list[str]:
        try:
            return self.history.read_text().splitlines()
        except FileNotFoundError:
            return []

    def command(self) -> str:
        return self.pane.display("#{pane_current_command}")


@dataclass
class Kind:
    """How to bring a window to the receiver's state, when it is there, and what to
    check afterwards (the default: the job ends, bash runs a sentinel, nothing else)."""

    optins: tuple[str, ...]
    start: Callable[[Slot], None]
    ready: Callable[[Slot], bool]
    still: Callable[[Slot], bool] = lambda slot: True
    finish: Callable[[Slot], None] = lambda slot: shell_back(slot)
    program: Callable[[Path, Path], list[str]] | None = None  # the window's own program
    forced_refused: bool = True  # FORCE_SEND is refused too (it does type into a draft)


def bash_argv(history: Path) -> list[str]:
    # EDITOR=true: readline's `v` (vi command mode) runs the line it was given at once
    return ["env", "PS1=$ ", "PS2=> ", f"HISTFILE={history}", "PROMPT_COMMAND=history -a",
            "EDITOR=true", "VISUAL=true", "bash", "--norc", "--noprofile"]


def shell_back(slot: Slot) -> None:
    """Wait for the job to end, then for bash to run a sentinel typed after it: by then
    bash has run whatever was typed ahead of it."""
    retry_until(lambda: slot.command() == "bash", timeout=30)
    sentinel = f"echo sentinel-{slot.marker.name}"
    retry_until(lambda: slot.pane.capture().rstrip().endswith("$"), timeout=15)
    slot.type(sentinel)
    retry_until(lambda: sentinel in slot.ran(), timeout=15)


def bin_copy(slot: Slot, name: str, source: str) -> Path:
    path = slot.tmp / "bin" / name
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        shutil.copy2(source, path)
    return path


# --- the kinds ------------------------------------------------------------------------


def _forge_start(slot: Slot) -> None:
    forge = bin_copy(slot, "forge", shutil.which("sleep") or "/bin/sleep")
    # what a /help dialog shows: the old rule pressed Escape on it, by name alone
    slot.type(f"printf 'Help\\n/x y\\n'; {forge} {JOB_SECONDS}")


def _goose_start(slot: Slot) -> None:
    goose = slot.tmp / "bin" / "goose"
    goose.parent.mkdir(exist_ok=True)
    if not goose.exists():  # `goose run …`: an agent's one-shot mode, busy and reading nothing
        goose.write_text(f"#!{sys.executable}\nimport sys, time\nprint('starting session')\n"
                         "sys.stdout.flush()\ntime.sleep(float(sys.argv[-1]))\n")
        goose.chmod(0o755)
    slot.type(f"{goose} run -t hello {JOB_SECONDS}")


def _job(*names: str) -> Callable[[Slot], bool]:
    return lambda slot: slot.command() in names


def _script_start(slot: Slot) -> None:
    slot.type("script -q /dev/null")


def _inner_prompt(slot: Slot) -> bool:
    """script's own shell ($SHELL -i, with the system's bashrc prompt) is at its prompt."""
    lines = [line.rstrip() for line in slot.pane.capture().splitlines() if line.strip()]
    return (slot.command() == "script" and len(lines) >= 2 and "script -q" not in lines[-1]
            and lines[-1].endswith(("$", "#")))


def _script_finish(slot: Slot) -> None:
    slot.type("exit")
    shell_back(slot)


def _read_start(slot: Slot) -> None:
    slot.type("read -s -p 'Password: ' X; echo \"got:${#X}:\"")


def _read_finish(slot: Slot) -> None:
    slot.pane.send_keys("Enter")  # the user answers: with nothing typed by us
    answered = retry_until(lambda: re.search(r"got:(\d+):", slot.pane.capture()), timeout=10)
    assert answered.group(1) == "0", slot.pane.capture()  # the secret read was empty
    shell_back(slot)


HOSTKEY = """import sys
sys.stdout.write("The authenticity of host 'peer (10.0.0.2)' can't be established.\\n"
                 "ED25519 key fingerprint is SHA256:6b8S0gq1Qm3xk2Yc2hOe4y0s3vNq5z7c9Xw.\\n"
                 "This key is not known by any other names.\\n"
                 "Are you sure you want to continue connecting (yes/no/[fingerprint])? ")
sys.stdout.flush()
line = sys.stdin.readline()  # as ssh reads it: a line, echo on
open(sys.argv[1], "w").write(line)
"""


def _hostkey_program(tmp: Path, log: Path) -> list[str]:
    script = tmp / "hostkey_prompt.py"
    if not script.exists():
        script.write_text(HOSTKEY)
    return [sys.executable, str(script), str(log)]


def _question_unanswered(slot: Slot) -> None:
    time.sleep(0.5)  # an Enter scheduled by tmux (the settle) would have landed by now
    assert not slot.history.exists(), slot.history.read_text()
    assert slot.pane.capture() == slot.before


def _copy_start(slot: Slot) -> None:
    retry_until(lambda: slot.pane.capture().rstrip().endswith("$"), timeout=15)
    slot.pane.server.run("copy-mode", "-t", slot.pane.pane_id)


def _copy_finish(slot: Slot) -> None:
    slot.pane.server.run("copy-mode", "-q", "-t", slot.pane.pane_id)
    shell_back(slot)


def _sqlite_start(slot: Slot) -> None:
    slot.type("sqlite3")
    retry_until(lambda: "sqlite>" in slot.pane.capture(), timeout=15)
    slot.type("SELECT 1")


def _python_start(slot: Slot) -> None:
    slot.type(f"{sys.executable} -q")
    retry_until(lambda: ">>>" in slot.pane.capture(), timeout=15)
    slot.type("if True:")


def _draft_kept(slot: Slot) -> None:
    time.sleep(0.5)  # an Enter scheduled by tmux (the settle) would have landed by now
    if not slot.force:  # FORCE_SEND types into a draft: documented, harmless here
        assert slot.pane.capture() == slot.before


def _vi_start(slot: Slot) -> None:
    """bash with `set -o vi` in vi command (normal) mode at an empty line, reached in a
    way that shows on screen: `x`, Escape (the cursor steps back onto the x), `x`
    (which deletes it in command mode)."""
    slot.type("set -o vi")
    retry_until(lambda: "set -o vi" in slot.ran(), timeout=10)
    slot.pane.send_keys("x", literal=True)
    retry_until(lambda: slot.pane.display("#{cursor_x}") == "3", timeout=10)
    slot.pane.send_keys("Escape")
    retry_until(lambda: slot.pane.display("#{cursor_x}") == "2", timeout=10)
    slot.pane.send_keys("x", literal=True)


def _vi_ready(slot: Slot) -> bool:
    return slot.pane.capture().rstrip().endswith("$")


def _vi_finish(slot: Slot) -> None:
    time.sleep(0.5)  # an Enter scheduled by tmux (the settle) would have landed by now
    assert slot.pane.capture() == slot.before
    slot.pane.send_keys("C-c")  # a new line, in insert mode
    shell_back(slot)
    assert slot.ran() == ["set -o vi", f"echo sentinel-{slot.marker.name}"], slot.ran()


KINDS: dict[str, Kind] = {
    # item 1: a known agent's name on a shell job
    "forge-named-sleep": Kind(("", "forge", "any"), _forge_start, _job("forge"),
                              still=_job("forge")),
    "goose-run": Kind(("", "goose", "any", "python3"), _goose_start,
                      lambda s: "starting session" in s.pane.capture() and s.command() != "bash",
                      still=lambda s: s.command() != "bash"),
    # item 2: an opt-in reaching a shell's job
    "sleep": Kind(("any", "sleep"), lambda s: s.type(f"sleep {JOB_SECONDS}"), _job("sleep"),
                  still=_job("sleep")),
    "python3-c": Kind(("python3", "any"),
                      lambda s: s.type(f"python3 -c 'import time; time.sleep({JOB_SECONDS})'"),
                      _job("python3"), still=_job("python3")),
    "script": Kind(("", "script", "any", "shell"), _script_start, _inner_prompt,
                   still=_inner_prompt, finish=_script_finish),
    # item 7: hidden input at a bash prompt; ssh's host-key question
    "read-s": Kind(("", "shell", "any"), _read_start,
                   lambda s: s.pane.capture().rstrip().endswith("Password:"),
                   finish=_read_finish),
    "ssh-hostkey": Kind(("", "any", "hostkey_prompt"), lambda s: None,
                        lambda s: "(yes/no/[fingerprint])?" in s.pane.capture(),
                        finish=_question_unanswered, program=_hostkey_program),
    # item 9: copy mode over bash
    "copy-mode": Kind(("", "any"), _copy_start,
                      lambda s: s.pane.display("#{pane_in_mode}") == "1", finish=_copy_finish),
    # item 16: continuation prompts
    "sqlite3-continuation": Kind(("sqlite3", "any"), _sqlite_start,
                                 lambda s: "...>" in s.pane.capture(), finish=_draft_kept,
                                 forced_refused=False),
    "python-continuation": Kind(("python3", "any"), _python_start,
                                lambda s: s.pane.capture().rstrip().endswith("..."),
                                finish=_draft_kept, forced_refused=False),
    # item 18: vi normal mode
    "vi-normal-mode": Kind(("", "shell", "any"), _vi_start, _vi_ready, finish=_vi_finish),
}

NEEDS = {"script": "script", "sqlite3-continuation": "sqlite3"}


def _messages(marker: Path) -> list[str]:
    return [f"; touch {marker}-1", f"'; touch {marker}-2; '", f"x\ntouch {marker}-3"]


def _send_all(slot: Slot) -> None:
    env = {"FORCE_SEND": "1"} if slot.force else None
    for body in _messages(slot.marker):
        res = notify(slot.address, body, env=env)
        slot.results.append((res.returncode, res.stderr.decode()))


@pytest.mark.parametrize(
    "name", list(KINDS))
def test_no_receiver_runs_a_message_or_answers_a_question(
    name: str, spawn: Spawner, tmp_path: Path
) -> None:
    if name in NEEDS and shutil.which(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed")
    kind = KINDS[name]
    slots: list[Slot] = []
    for optin in kind.optins:
        for force in (False, True):
            window = f"w{len(slots)}"
            history = tmp_path / f"{window}.log"
            argv = kind.program(tmp_path, history) if kind.program else bash_argv(history)
            pane = spawn.window(window, argv)
            if optin:
                pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", optin)
            slots.append(Slot(pane, f"{SELF_HOST}-dev-{window}", history,
                              tmp_path / f"marker-{window}", optin, force, tmp_path))
    for slot in slots:
        if not kind.program:
            retry_until(lambda s=slot: s.pane.capture().rstrip().endswith("$"), timeout=15)
        kind.start(slot)
    for slot in slots:
        retry_until(lambda s=slot: kind.ready(s), timeout=20)
        slot.before = slot.pane.capture()
    spawn.register()
    with ThreadPoolExecutor(len(slots)) as pool:
        list(pool.map(_send_all, slots))
    # the job was still there for every message: what bash runs next is what it read
    assert all(kind.still(slot) for slot in slots), [s.command() for s in slots]
    for slot in slots:
        kind.finish(slot)
    for slot in slots:
        where = f"{name} with @agent-accept {slot.optin!r}, FORCE_SEND={int(slot.force)}"
        assert not list(tmp_path.glob(f"{slot.marker.name}-*")), (where, slot.results)
        if kind.forced_refused or not slot.force:
            assert all(code == 3 for code, _ in slot.results), (where, slot.results)


def test_a_queued_message_is_checked_again_under_the_same_rule(
    spawn: Spawner, tmp_path: Path
) -> None:
    """issue 21.2, queued: a message waits for a python prompt opted in with `any` (a
    draft is on it); the prompt then exits and bash runs `sleep`. The waiter must not
    deliver to the sleep (bash would run the text once it ends), nor to bash."""
    history = tmp_path / "sh.log"
    pane = spawn.window("sh", bash_argv(history))
    pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", "any")
    retry_until(lambda: pane.capture().rstrip().endswith("$"), timeout=15)
    pane.send_keys(f"{sys.executable} -q", literal=True)
    pane.send_keys("Enter")
    pane.wait_for(">>>", timeout=15)
    pane.send_keys("exit()", literal=True)  # a draft: not ready, so the message queues
    pane.wait_for(">>> exit()", timeout=10)
    spawn.register()
    marker = tmp_path / "marker"
    res = notify("--queue", "--ttl", "30s", f"{SELF_HOST}-dev-sh", f"; touch {marker}")
    assert res.returncode == 5, res.stderr
    pane.send_keys("Enter")  # python exits; bash then reads the sleep typed ahead of it
    pane.send_keys(f"sleep {JOB_SECONDS - 2}", literal=True)
    pane.send_keys("Enter")
    retry_until(lambda: pane.display("#{pane_current_command}") == "sleep", timeout=10)
    slot = Slot(pane, "", history, marker, "any", False, tmp_path)
    shell_back(slot)
    assert not list(tmp_path.glob("marker*"))
    assert slot.ran()[1:] == [f"sleep {JOB_SECONDS - 2}", f"echo sentinel-{marker.name}"]


@pytest.mark.parametrize("job, optins", [("forge", ("", "forge", "any")), ("sleep", ("sleep",))])
def test_without_proc_a_shell_job_is_refused_with_and_without_force(
    job: str, optins: tuple[str, ...], spawn: Spawner, tmp_path: Path, mocker: MockerFixture
) -> None:
    """issue 21.1 where /proc does not answer (macOS, the BSDs: procs.foreground gives None,
    injected here at that edge): only tmux's pane_current_command names the job, so nothing
    says a shell waits under it. A `sleep` copied to `forge` under bash must not count as
    an agent, and no opt-in or FORCE_SEND may type into bash's typeahead (the terminal is
    in line mode: nothing reads keys)."""
    from agent_mesh.delivery import pane as pane_mod
    from agent_mesh.delivery import paste
    from agent_mesh.errors import NotReady
    from agent_mesh.model import Envelope
    from agent_mesh.registry.view import load_agents

    slots: list[Slot] = []
    for optin in optins:
        for force in (False, True):
            window = f"w{len(slots)}"
            history = tmp_path / f"{window}.log"
            pane = spawn.window(window, bash_argv(history))
            if optin:
                pane.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", optin)
            slots.append(Slot(pane, f"{SELF_HOST}-dev-{window}", history,
                              tmp_path / f"marker-{window}", optin, force, tmp_path))
    for slot in slots:
        retry_until(lambda s=slot: s.pane.capture().rstrip().endswith("$"), timeout=15)
        program = bin_copy(slot, job, shutil.which("sleep") or "/bin/sleep")
        slot.type(f"{program} {JOB_SECONDS}")
    for slot in slots:
        retry_until(lambda s=slot: s.command() == job, timeout=20)
    spawn.register()
    agents = load_agents()
    mocker.patch.object(pane_mod, "foreground", return_value=None)
    for slot in slots:
        for body in _messages(slot.marker):
            envelope = Envelope(sender="tester", address=slot.address, body=body,
                                timestamp="t", force=slot.force)
            with pytest.raises(NotReady) as refused:
                paste.deliver_envelope(envelope, agents[slot.address])
            slot.results.append((3, str(refused.value)))
    assert all(slot.command() == job for slot in slots)  # refused while the job ran
    for slot in slots:
        shell_back(slot)
        where = f"{job} with @agent-accept {slot.optin!r}, FORCE_SEND={int(slot.force)}"
        assert not list(tmp_path.glob(f"{slot.marker.name}-*")), (where, slot.results)
        assert slot.ran() == [f"{tmp_path}/bin/{job} {JOB_SECONDS}",
                              f"echo sentinel-{slot.marker.name}"], (where, slot.ran())
        if slot.force:
            assert all("FORCE_SEND cannot deliver there" in why for _, why in slot.results), (
                where, slot.results)
