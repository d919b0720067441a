"""notify-pane as a command: every exit code with its one-line error, the sender id,
--whoami, --list, and what the hot path may import."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    BIN,
    SELF_HOST,
    SENDER,
    Receiver,
    Spawner,
    TmuxServer,
    notify,
    retry_until,
    run_cli,
)


def one_line_failure(res: subprocess.CompletedProcess[bytes], code: int) -> str:
    """The exit code is `code` and stderr is exactly one line, no traceback, no stdout."""
    err = res.stderr.decode()
    assert res.returncode == code, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("notify-pane: ") and "Traceback" not in err, err
    assert res.stdout == b""
    return err


@pytest.fixture
def tui(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


# --- exit 1: usage ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "usage: notify-pane"),
        (["testhost-dev-agent"], "no message given"),
        (["testhost-dev-agent", ""], "no message given"),
        (["--bogus"], "unknown option '--bogus'"),
        (["-x", "hello"], "unknown option '-x'"),
        (["testhost-dev-agent", "--file"], "--file needs a path"),
        (["testhost-dev-agent", "-f"], "--file needs a path"),
        (["testhost-dev-agent", "--file", "/nonexistent/report.txt"], "cannot read"),
        (["testhost-dev-agent", "--file", "/tmp", "hi"], "is a directory"),
        (["--list", "extra"], "unexpected argument 'extra'"),
    ],
)
def test_usage_errors_exit_1(argv: list[str], fragment: str) -> None:
    assert fragment in one_line_failure(notify(*argv), 1)


def test_help_and_version_exit_0() -> None:
    res = notify("--help")
    assert res.returncode == 0 and b"exit codes:" in res.stdout and res.stderr == b""
    assert notify("--version").returncode == 0


def test_invalid_utf8_body_exit_1(tui: Receiver) -> None:
    res = subprocess.run([str(BIN / "notify-pane"), tui.address, b"caf\xe9"],
                         capture_output=True, env={**os.environ, "AGENT_NAME": SENDER},
                         check=False)
    assert "not valid UTF-8" in one_line_failure(res, 1)


def test_corrupt_registry_exit_1() -> None:
    (Path.home() / ".agents" / "registry.toml").write_text("[agents\n")
    assert "not valid TOML" in one_line_failure(notify("anyone", "hi"), 1)


# --- exit 2: unknown agent, pane gone ---------------------------------------


def test_unknown_agent_suggests_close_matches(tui: Receiver) -> None:
    err = one_line_failure(notify("testhost-dev-agnet", "hi"), 2)
    assert "unknown agent 'testhost-dev-agnet'" in err and "testhost-dev-agent" in err
    err = one_line_failure(notify("agent", "hi"), 2)
    assert "did you mean testhost-dev-agent" in err


def test_unknown_agent_without_registry_and_odd_address() -> None:
    err = one_line_failure(notify("no\nsuch\x1b[31m", "hi"), 2)
    assert "unknown agent" in err


def test_pane_gone_exit_2(spawn: Spawner) -> None:
    spawn.agent_tui("keep")
    gone = spawn.agent_tui("gone")
    spawn.server.run("kill-window", "-t", gone.pane.window_id)  # registry now stale
    err = one_line_failure(notify(gone.address, "hi"), 2)
    assert "no longer exists" in err and "agent-discover" in err


# --- exit 4: tmux failures --------------------------------------------------


def test_tmux_server_gone_exit_4(tui: Receiver) -> None:
    tui.pane.server.run("kill-server")
    err = one_line_failure(notify(tui.address, "hi"), 4)
    assert "tmux" in err


@pytest.mark.parametrize("script", ["exit 1", "echo 'fatal: bus error' >&2; exit 3",
                                    "kill -SEGV $$"])
def test_failing_tmux_binary_exit_4(tui: Receiver, tmp_path: Path, script: str) -> None:
    fake = tmp_path / "tmux"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    one_line_failure(notify(tui.address, "hi", env={"TMUX_BIN": str(fake)}), 4)


def test_missing_tmux_binary_exit_4(tui: Receiver) -> None:
    err = one_line_failure(notify(tui.address, "hi", env={"TMUX_BIN": "/nonexistent/tmux"}), 4)
    assert "tmux not found" in err


# --- sender id ----------------------------------------------------------------


def tag_sender(line: str) -> str:
    return line[len("[from ") : line.index(" @ ")]


def test_sender_is_agent_name_else_host_alias(tui: Receiver) -> None:
    assert run_cli("notify-pane", "--whoami").stdout == f"{SELF_HOST}\n".encode()
    assert run_cli("notify-pane", "--whoami", env={"AGENT_NAME": "ci-bot"}).stdout == b"ci-bot\n"
    assert run_cli("notify-pane", tui.address, "one").returncode == 0
    assert run_cli("notify-pane", tui.address, "two", env={"AGENT_NAME": "ci-bot"}).returncode == 0
    assert [tag_sender(line) for line in tui.wait_lines(2)] == [SELF_HOST, "ci-bot"]


def test_sender_inside_a_pane_is_that_panes_address(spawn: Spawner, tmp_path: Path) -> None:
    """Run from a registered window's shell: TMUX and TMUX_PANE say who is sending."""
    tui = spawn.agent_tui()
    sh = spawn.bash("worker")
    out = tmp_path / "whoami.txt"
    sh.pane.send_keys(f"notify-pane --whoami > {out}; notify-pane {tui.address} 'done here'",
                      literal=True)
    sh.pane.send_keys("Enter")
    (line,) = tui.wait_lines(1)
    assert tag_sender(line) == "testhost-dev-worker" and line.endswith("] done here")
    assert out.read_text() == "testhost-dev-worker\n"
    # AGENT_NAME still wins inside a pane.
    sh.pane.send_keys(f"AGENT_NAME=named notify-pane --whoami > {out}", literal=True)
    sh.pane.send_keys("Enter")
    retry_until(lambda: out.read_text() == "named\n")


def test_sender_inside_an_unregistered_pane_is_host_and_session(
    spawn: Spawner, tmp_path: Path
) -> None:
    spawn.agent_tui()
    out = tmp_path / "whoami.txt"
    spawn.server.run("new-session", "-d", "-s", "scratch", "bash", "--norc", "--noprofile")
    spawn.server.run("send-keys", "-t", "scratch:", "-l", f"notify-pane --whoami > {out}")
    spawn.server.run("send-keys", "-t", "scratch:", "Enter")
    retry_until(lambda: out.exists() and out.read_text() == f"{SELF_HOST}[scratch]\n")


# --- --list -------------------------------------------------------------------


def test_list_plain_and_json(spawn: Spawner) -> None:
    spawn.agent_tui("agent")
    spawn.py_receiver("py")
    res = notify("--list")
    assert res.returncode == 0 and res.stderr == b""
    assert res.stdout.decode().splitlines() == ["testhost-dev-agent", "testhost-dev-py"]
    res = notify("--list", "--json")
    assert res.returncode == 0 and res.stderr == b""
    entries = json.loads(res.stdout)
    assert [e["address"] for e in entries] == ["testhost-dev-agent", "testhost-dev-py"]
    assert {e["host"] for e in entries} == {SELF_HOST}
    assert all(e["pane_id"].startswith("%") and e["target"].startswith("dev:") for e in entries)


def test_list_with_no_registry_is_empty_and_says_how_to_start() -> None:
    """Scripts reading stdout get nothing; a person reads how agents appear."""
    res = notify("--list")
    assert (res.returncode, res.stdout) == (0, b"")
    assert res.stderr == (b"notify-pane: no agents yet: start tmux "
                          b"(windows register automatically)\n")
    assert json.loads(notify("--list", "--json").stdout) == []


# --- the hot path ---------------------------------------------------------------


def test_local_delivery_imports_no_heavy_modules(tui: Receiver) -> None:
    """No click, subprocess, paramiko, tomlkit, nor dataclasses, pathlib, typing, json, re
    or (once the registry cache is warm) tomllib on the way: each costs milliseconds."""
    assert notify(tui.address, "warm the registry cache").returncode == 0
    tui.wait_lines(1)
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys; from agent_mesh.cli.notify import main; sys.exit(main())",
         tui.address, "timed"],
        capture_output=True, env={**os.environ, "AGENT_NAME": SENDER}, check=False,
    )
    assert res.returncode == 0, res.stderr[-500:]
    imported = {line.split("|")[-1].strip() for line in res.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "agent_mesh.delivery.paste" in imported
    heavy = {"click", "subprocess", "psutil", "paramiko", "tomlkit", "dataclasses", "pathlib",
             "typing", "tomllib", "json", "re"}
    assert not heavy & {name.split(".")[0] for name in imported}, sorted(
        heavy & {name.split(".")[0] for name in imported})
    # a peer's path only (issue 20): the transports, the wire format, the thread group
    remote = {"agent_mesh.mesh.wire", "agent_mesh.mesh.remote", "agent_mesh.mesh.group"}
    assert not remote & imported, sorted(remote & imported)
    tui.wait_lines(2)


def test_a_peers_half_reads_the_local_slice_without_tomllib(tui: Receiver) -> None:
    """The peer's half of a remote message (`agent-mesh rpc`, a deliver request) reads
    local.toml, which we write, without importing tomllib: ~7-12 ms of a cold remote
    message (issue 20's cold target is `ssh ALIAS true` + 40 ms)."""
    from agent_mesh.mesh.wire import encode_header
    from agent_mesh.model import Envelope

    envelope = Envelope(sender=SENDER, address=tui.address, body="from a peer's rpc",
                        timestamp="2026-12-07T08:00:00Z", msg_id="abcdef12")
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys; from agent_mesh.mesh.rpc import launch; launch([])"],
        input=encode_header({"op": "deliver", "envelope": envelope.to_json()}),
        capture_output=True, check=False,
    )
    assert res.returncode == 0, res.stderr[-500:]
    assert json.loads(res.stdout)["ok"] is True, res.stdout
    imported = {line.split("|")[-1].strip() for line in res.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "agent_mesh.delivery.paste" in imported
    assert "tomllib" not in imported
    assert tui.wait_lines(1)[0].endswith("] from a peer's rpc")


def test_body_from_stdin(tui: Receiver) -> None:
    body = "from a pipe\nwith two lines; and $(no expansion)"
    res = notify(tui.address, "--stdin", input=body.encode())
    assert res.returncode == 0, res.stderr
    (line,) = tui.wait_lines(1)
    assert line.endswith("] " + body)


# --- input edges (issue 21.20) -------------------------------------------------------


def test_one_final_newline_from_stdin_is_one_line(spawn: Spawner) -> None:
    """`echo hi | notify-pane X --stdin` to a prompt without bracketed paste (a multi-line
    message is refused there): one line, `hi`; a second line still counts."""
    py = spawn.py_receiver()
    res = notify(py.address, "--stdin", input=b"hi\n")
    assert res.returncode == 0, res.stderr
    assert py.wait_lines(1)[0].endswith("] hi")
    assert notify(py.address, "--stdin", input=b"hi\r\n").returncode == 0
    assert py.wait_lines(2)[1].endswith("] hi")
    refused = notify(py.address, "--stdin", input=b"one\ntwo\n")
    assert refused.returncode == 3 and b"bracketed paste" in refused.stderr, refused.stderr


def test_bidi_controls_are_removed_and_counted(tui: Receiver) -> None:
    body = "report\u202etxt.exe \u2066a\u2069 \u200eb\u200f \u061cc \u202a\u202b\u202c\u202d"
    res = notify(tui.address, body)
    assert res.returncode == 0, res.stderr
    assert tui.wait_lines(1)[0].endswith("] reporttxt.exe a b c ")
    assert res.stderr == (b"notify-pane: note: removed 10 control character(s) from the "
                          b"message\n")
    assert "\u202e" not in res.stdout.decode()


def test_the_preview_is_what_is_delivered(tui: Receiver) -> None:
    """C1 characters: the preview showed `xy` (CSI read as an escape sequence) while
    `x31my` arrived."""
    res = notify(tui.address, "x\x9b31my\x85z")
    assert res.returncode == 0, res.stderr
    assert tui.wait_lines(1)[0].endswith("] x31myz")
    assert res.stdout.decode().endswith(": x31myz\n"), res.stdout


def test_a_unicode_window_name_keeps_its_letters(spawn: Spawner) -> None:
    """A window named `Ünï💥` is `…-ünï` (it was `…-n`), typed in any case or form."""
    tui = spawn.agent_tui("Ünï💥")
    address = f"{SELF_HOST}-dev-ünï"
    listed = notify("--list").stdout.decode().split()
    assert address in listed, listed
    tui.address = address
    assert notify(address, "exact").returncode == 0
    assert notify(address.upper(), "upper case").returncode == 0
    decomposed = f"{SELF_HOST}-dev-u\u0308ni\u0308"  # as NFD input methods type it
    assert notify(decomposed, "decomposed").returncode == 0
    got = [line.split("] ", 1)[1] for line in tui.wait_lines(3)]
    assert got == ["exact", "upper case", "decomposed"]


# --- newcomer friction (issue 21.21) -------------------------------------------------


def test_list_right_after_new_window_waits_for_its_hook(tmux_server: TmuxServer) -> None:
    """`tmux new-window` returns before its hook has registered the window: --list
    waits for the running hook instead of saying "start tmux"."""
    tmux_server.start("dev", "first")
    tmux_server.install_hooks()  # loaded after the session: nothing registered yet
    tmux_server.new_window("dev", "second")
    res = notify("--list")
    assert res.returncode == 0, res.stderr
    assert f"{SELF_HOST}-dev-second" in res.stdout.decode().split(), (res.stdout, res.stderr)


def test_an_empty_list_while_tmux_runs_never_says_start_tmux(tmux_server: TmuxServer) -> None:
    tmux_server.start("tmp", "w")  # a scratch session: never registered
    for res in (notify("--list"), run_cli("agent-mesh", "list")):
        out = (res.stdout + res.stderr).decode()
        assert res.returncode == 0 and "start tmux" not in out, out
        assert "though tmux runs" in out and "agent-discover" in out, out
        assert "scratch/tmp/temp/test" in out and out.count("\n") == 1, out


def test_unknown_agent_hints_name_what_exists(spawn: Spawner) -> None:
    """`peek nosuch` is not told to use `--list` (peek has none); a closed session's
    address gets the agents like it, not every agent of the host."""
    spawn.agent_tui("agent")
    spawn.bash("sh")
    spawn.server.run("new-session", "-d", "-s", "work2", "-n", "api")
    spawn.server.run("new-session", "-d", "-s", "work", "-n", "api")
    spawn.register()
    spawn.server.run("kill-session", "-t", "=work")
    spawn.register()
    peek = run_cli("agent-mesh", "peek", "nosuch")
    assert peek.returncode == 2 and b"(try --list)" not in peek.stderr, peek.stderr
    assert b"(every address: notify-pane --list)" in peek.stderr, peek.stderr
    err = one_line_failure(notify(f"{SELF_HOST}-work-api", "hello"), 2)
    assert f"did you mean {SELF_HOST}-work2-api?" in err, err
    err = one_line_failure(notify(f"{SELF_HOST}-gone-x", "hello"), 2)
    assert "did you mean" not in err, err


def test_an_option_after_the_agent_is_a_usage_error(tui: Receiver) -> None:
    """`notify-pane ADDR --queue hello` sent "--queue hello" as the text; now it is
    exit 1 with the right order, and `--` sends it as text."""
    err = one_line_failure(notify(tui.address, "--queue", "hello"), 1)
    assert f"notify-pane --queue {tui.address} hello" in err, err
    assert f"notify-pane {tui.address} -- --queue hello" in err, err
    err = one_line_failure(notify(tui.address, "--ttl", "5m", "hi"), 1)
    assert f"notify-pane --ttl 5m {tui.address} hi" in err, err
    for word in ("--list", "--whoami", "--all", "--help"):
        one_line_failure(notify(tui.address, word, "x"), 1)
    assert notify(tui.address, "--", "--queue", "hello").returncode == 0
    assert notify(tui.address, "--", "--").returncode == 0
    assert notify(tui.address, "-x", "--queue").returncode == 0  # not an option of ours
    got = [line.split("] ", 1)[1] for line in tui.wait_lines(3)]
    assert got == ["--queue hello", "--", "-x --queue"]


def test_after_the_file_everything_is_message_text(tui: Receiver, tmp_path: Path) -> None:
    """`--file PATH` is taken once; a later `-f` is text (found in review)."""
    attached = tmp_path / "a.log"
    attached.write_text("log\n")
    res = notify(tui.address, "--file", str(attached), "-f", "flag", "broke")
    assert res.returncode == 0, res.stderr
    (line,) = tui.wait_lines(1)
    assert "a.log" in line and line.endswith(": -f flag broke")
