"""Questions, tmux modes and unfinished statements on real programs (issue 21 items 7, 9, 16).

- ssh's host-key question (a real sshd on loopback) and other yes/no questions are
  `waiting`: refused even with FORCE_SEND=1 or `@agent-accept any`, and never get a key.
- A pane in copy mode over a shell shows as `waiting` in status, is refused by the shell's
  own rule, and FORCE_SEND does not leave the mode to type into the shell.
- A REPL's continuation prompt (sqlite3 `...>`, node and python `...`, psql `-#`, mysql `->`)
  is a draft: a message is never glued onto the unfinished statement.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROGRAMS, SELF_HOST, Receiver, Spawner, notify, retry_until, run_cli

from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.pane import pane_state
from agent_mesh.delivery.rule import refusal
from agent_mesh.delivery.state import PaneState, PaneStatus
from agent_mesh.tmux import Tmux

FORCE = {"FORCE_SEND": "1"}
OVERRIDE = "(FORCE_SEND=1 to override)"
SSH_QUESTION = "continue connecting (yes/no/[fingerprint])?"


def status_now(receiver: Receiver) -> PaneStatus:
    return classify(pane_state(Tmux(), receiver.pane.pane_id))


def reason_now(receiver: Receiver) -> str:
    return refusal(pane_state(Tmux(), receiver.pane.pane_id)) or ""


def refused(receiver: Receiver, fragment: str, env: dict[str, str] | None = None,
            body: str = "hello") -> str:
    """notify-pane exits 3 with one line containing fragment; returns the line."""
    res = notify(receiver.address, body, env=env)
    err = res.stderr.decode()
    assert res.returncode == 3, err
    assert err.count("\n") == 1 and fragment in err, err
    return err


def joined_screen(receiver: Receiver) -> str:
    """The screen with wrapped lines joined (capture-pane -J), trailing blanks dropped."""
    out = receiver.pane.server.run("capture-pane", "-p", "-J", "-t", receiver.pane.pane_id)
    return out.stdout.rstrip()


def opened(spawn: Spawner, name: str, argv: list[str], accept: str, ready: str) -> Receiver:
    """A window running argv directly (no shell under it), opted in with @agent-accept."""
    pane = spawn.window(name, argv)
    spawn.server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", accept)
    pane.wait_for(ready, timeout=15)
    spawn.register()
    return Receiver(pane, f"{SELF_HOST}-{spawn.session}-{name}", spawn.tmp / f"{name}.jsonl")


# --- item 7: ssh's host-key question and other yes/no questions ---------------------


@pytest.fixture
def loopback_sshd(tmp_path: Path) -> Iterator[int]:
    """A real sshd on 127.0.0.1 with a fresh host key: its port. ssh asks about the
    unknown key before any authentication, so no account is needed."""
    sshd, keygen = "/usr/sbin/sshd", shutil.which("ssh-keygen")
    if not (os.path.exists(sshd) and keygen and shutil.which("ssh")):
        pytest.skip("needs openssh-server and openssh-client")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation directory)")
    key = tmp_path / "host_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {key}\nPidFile {tmp_path}/sshd.pid\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([sshd, "-D", "-f", str(config), "-E", str(tmp_path / "sshd.log")],
                            stdin=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        retry_until(listening, timeout=10)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ssh_argv(port: int) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=ask",
            "-p", str(port), "127.0.0.1"]


@pytest.mark.parametrize("how", ["own-program", "narrow-pane", "job-of-bash"])
def test_ssh_host_key_question_is_never_typed_into(
    spawn: Spawner, loopback_sshd: int, how: str
) -> None:
    """Real ssh against a real sshd. `@agent-accept any` covers ssh (the pane's own
    program) or bash runs it as a job; either way, with and without FORCE_SEND, the
    question is refused and nothing reaches it. In a 60-column pane the question wraps."""
    if how == "job-of-bash":
        ssh = spawn.bash("ssh")
        spawn.server.run("set-option", "-w", "-t", ssh.pane.pane_id, "@agent-accept", "any")
        ssh.pane.send_keys(" ".join(ssh_argv(loopback_sshd)), "Enter")
    else:
        ssh = opened(spawn, "ssh", ssh_argv(loopback_sshd), "any", "(yes/no/")
    if how == "narrow-pane":
        spawn.server.run("resize-window", "-t", ssh.pane.window_id, "-x", "60")
        retry_until(lambda: ssh.pane.display("#{pane_width}") == "60")
    retry_until(lambda: joined_screen(ssh).endswith(SSH_QUESTION))
    assert how != "narrow-pane" or SSH_QUESTION not in ssh.pane.capture()  # it did wrap

    status = retry_until(lambda: (s := status_now(ssh)).kind == "waiting" and s)
    assert status.program == "ssh" and SSH_QUESTION in status.detail, status
    for env in (None, FORCE):
        line = refused(ssh, "waiting for an answer", env=env, body="yes")
        assert SSH_QUESTION in line and OVERRIDE not in line, line
    # Nothing was typed: the next key lands right after the question.
    ssh.pane.send_keys("no", literal=True)
    retry_until(lambda: joined_screen(ssh).endswith(f"{SSH_QUESTION} no"))


@pytest.mark.parametrize("question", ["Continue? ", "Delete 3 files? [y/N] ",
                                      "Overwrite it (yes/no/all)? "])
def test_yes_no_question_of_an_opted_in_program_is_refused_even_forced(
    spawn: Spawner, question: str
) -> None:
    """A program that takes messages (opted in) asks a question on the cursor row: a
    message would be its answer. Also with a word already typed after the question."""
    code = f"import json, sys; open(sys.argv[1], 'a').write(json.dumps(input({question!r})))"
    log = spawn.tmp / "asked.json"
    asked = opened(spawn, "asked", [sys.executable, "-c", code, str(log)], "any",
                   question.strip())
    for typed in ("", "y"):
        if typed:
            asked.pane.send_keys(typed, literal=True)
            asked.pane.wait_for(f"{question.strip()} {typed}")
        retry_until(lambda: "waiting for an answer" in reason_now(asked))
        for env in (None, FORCE):
            refused(asked, "waiting for an answer", env=env)
    asked.pane.send_keys("es", "Enter")  # the question gets only what the user typed
    assert json.loads(retry_until(lambda: log.exists() and log.read_text())) == "yes"


def test_a_question_mark_in_a_repl_draft_is_a_draft_not_a_question(spawn: Spawner) -> None:
    """`>>> why?` is a prompt holding a draft (FORCE_SEND may type after it), and so is
    the same text on a continuation row: neither is a question."""
    repl = spawn.python_repl()
    repl.pane.send_keys("why?", literal=True)
    retry_until(lambda: "mid-prompt" in reason_now(repl))
    assert status_now(repl).kind == "drafting"
    repl.pane.send_keys("C-u", "if True:", "Enter", "    why?")
    repl.pane.wait_for("...     why?")
    assert status_now(repl).kind == "drafting"


# --- item 9: copy mode over a shell ---------------------------------------------------


def test_copy_mode_over_a_shell_keeps_the_shell_rule_even_forced(spawn: Spawner) -> None:
    sh = spawn.bash("sh")
    marker = spawn.tmp / "ran"
    spawn.server.run("copy-mode", "-t", sh.pane.pane_id)
    retry_until(lambda: sh.pane.display("#{pane_in_mode}") == "1")

    rows = json.loads(run_cli("agent-mesh", "status", "--json").stdout)["agents"]
    (row,) = [r for r in rows if r["address"] == sh.address]
    assert row["state"] == "waiting" and row["program"] == "bash", row
    assert "copy-mode" in row["detail"] and "shell" in row["detail"], row

    for env in (None, FORCE):
        line = refused(sh, "copy-mode", env=env, body=f"; touch {marker}")
        assert "interactive shell" in line and "FORCE_SEND does not leave" in line, line
        assert "tmux copy-mode -q -t dev:0" in line and OVERRIDE not in line, line
    assert sh.pane.display("#{pane_in_mode}") == "1"  # the user's mode was left alone

    # Leave the mode as the user would and run one command: it is the only one bash ran.
    spawn.server.run("copy-mode", "-q", "-t", sh.pane.pane_id)
    sh.pane.send_keys("echo after", "Enter")
    assert sh.wait_lines(1) == ["echo after"]
    assert not marker.exists()


def test_copy_mode_over_an_opted_in_shell_is_left_by_force_only(spawn: Spawner) -> None:
    """Where the program under the mode takes messages (here a shell opted in with
    @agent-accept shell), only the mode is in the way: FORCE_SEND leaves it and delivers."""
    sh = spawn.bash("sh")
    spawn.server.run("set-option", "-w", "-t", sh.pane.pane_id, "@agent-accept", "shell")
    spawn.server.run("copy-mode", "-t", sh.pane.pane_id)
    retry_until(lambda: sh.pane.display("#{pane_in_mode}") == "1")
    line = refused(sh, "copy-mode")
    assert line.endswith(f"{OVERRIDE}\n") and "interactive shell" not in line, line
    res = notify(sh.address, "true", env=FORCE)
    assert res.returncode == 0, res.stderr
    assert sh.pane.display("#{pane_in_mode}") == "0"
    (ran,) = sh.wait_lines(1)
    assert ran.endswith("] true"), ran


# --- item 16: continuation prompts ------------------------------------------------


def continuation_refused(receiver: Receiver) -> None:
    retry_until(lambda: "continuation" in reason_now(receiver))
    assert status_now(receiver).kind == "drafting"
    refused(receiver, "it looks mid-prompt (a continuation prompt")


@pytest.mark.parametrize(
    ("row", "more"),
    [("   ...> ", True), ("... ", True), ("   ...: ", True), ("    -> ", True),
     ("    '> ", True), ("mydb-# ", True), ("mydb(# ", True), ("my_db'> ", True),
     ("sqlite> ", False), (">>> ", False), ("> ", False), ("postgres=# ", False),
     ("mysql> ", False), ("In [1]: ", False), ("user@host:~$ ", False),
     ("root@host:/# ", False), ("[user@host dir]# ", False), ("Loading... ", False)],
)
def test_continuation_prompts_on_screen(row: str, more: bool) -> None:
    """The prompts themselves (no program): main prompts and shells' PS1 are not drafts."""
    screen = f"earlier output\n{row}"
    status = classify(PaneState(pane_id="%1", cursor_x=len(row), cursor_y=1, width=80,
                                screen=screen, current_command="node", accept="any"))
    assert (status.kind == "drafting") is more, status


def test_sqlite3_continuation_prompt_is_a_draft(spawn: Spawner) -> None:
    if not shutil.which("sqlite3"):
        pytest.skip("needs sqlite3")
    db = spawn.tmp / "t.db"
    lite = opened(spawn, "lite", ["sqlite3", str(db)], "sqlite3", "sqlite>")
    assert reason_now(lite) == ""  # its main prompt takes messages
    lite.pane.send_keys("CREATE TABLE t(x)", "Enter")
    lite.pane.wait_for("...>")
    continuation_refused(lite)
    lite.pane.send_keys("; ", "Enter")  # (an argument ending in `;` is a tmux separator)

    def schema() -> str:
        return subprocess.run(["sqlite3", str(db), ".schema"], capture_output=True,
                              text=True).stdout.strip()

    assert retry_until(schema) == "CREATE TABLE t(x);"  # that statement and nothing else


def test_node_continuation_prompt_is_a_draft(spawn: Spawner) -> None:
    if not shutil.which("node"):
        pytest.skip("needs node")
    node = opened(spawn, "node", ["node"], "node", "for more information")
    retry_until(lambda: reason_now(node) == "")
    node.pane.send_keys("function f() {", "Enter")
    node.pane.wait_for("...")
    continuation_refused(node)


def test_python_continuation_prompt_is_a_draft(spawn: Spawner) -> None:
    repl = spawn.python_repl()
    repl.pane.send_keys("def f():", "Enter")
    repl.pane.wait_for("...")
    continuation_refused(repl)


@pytest.mark.parametrize(
    ("style", "opening", "prompt"),
    [("psql", "SELECT 1", "postgres-#"), ("psql", "SELECT 'a", "postgres'#"),
     ("mysql", "SELECT 1", "    ->"), ("mysql", "SELECT 'a", "    '>")],
)
def test_psql_and_mysql_continuation_prompts_are_drafts(
    spawn: Spawner, style: str, opening: str, prompt: str
) -> None:
    """No database server here: tests/programs/sql_prompt.py draws the clients' prompts."""
    log = spawn.tmp / "sql.jsonl"
    sql = opened(spawn, "sql", [sys.executable, str(PROGRAMS / "sql_prompt.py"), str(log), style],
                 "sql_prompt.py", "=#" if style == "psql" else "mysql>")
    assert reason_now(sql) == ""
    sql.pane.send_keys(opening, "Enter")
    sql.pane.wait_for(prompt)
    continuation_refused(sql)
    closing = "'; " if "'" in opening else "; "  # tmux reads a final `;` as a separator
    sql.pane.send_keys(closing, "Enter")
    # The program creates its log before writing to it: wait for the line, not the file.
    retry_until(lambda: log.exists() and log.read_text().endswith("\n"))
    assert [json.loads(x) for x in log.read_text().splitlines()] == [f"{opening}\n{closing}"]
