"""The tmux wrapper: length-prefixed records, spawning, stdin, timeouts, errors.

Names may hold any byte, so the parser must take values by byte count; the
spawner must move a megabyte both ways without deadlocking and must turn every
way of failing into one WireError line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Spawner, TmuxServer, unique

from agent_mesh.errors import WireError
from agent_mesh.tmux import Tmux, TmuxResult, fields_format, parse_records

FIELDS = ("a", "b", "c")


def encode(records: list[tuple[str, ...]]) -> bytes:
    """What tmux prints for fields_format(FIELDS): `<bytes>:<value>` per field, then LF."""
    out = b""
    for record in records:
        for value in record:
            raw = value.encode("utf-8")
            out += str(len(raw)).encode() + b":" + raw
        out += b"\n"
    return out


def test_format_is_length_prefixed() -> None:
    assert fields_format(("window_name", "@agent-role")) == (
        "#{n:window_name}:#{window_name}#{n:@agent-role}:#{@agent-role}"
    )


@pytest.mark.parametrize(
    "record",
    [
        ("", "", ""),
        ("a:b", "12:34", ":"),
        ("line\nbreak", "\n", "ends\n"),
        ("123", "0", "4:abcd"),
        ("tab\there", "esc\x1b[201~", "pipe|and;semi"),
        ("ünïcødé", "日本語", "🙂🙂"),
        ("9" * 300, "x" * 70000, "\n\n\n"),
    ],
)
def test_parse_takes_values_by_byte_count(record: tuple[str, str, str]) -> None:
    data = encode([record, ("next", "record", "ok")])
    assert parse_records(data, FIELDS) == [
        dict(zip(FIELDS, record, strict=True)),
        {"a": "next", "b": "record", "c": "ok"},
    ]


def test_parse_empty_output_is_no_records() -> None:
    assert parse_records(b"", FIELDS) == []


@pytest.mark.parametrize(
    "data",
    [
        b"1:a1:b1:c",  # no newline
        b"1:a1:b9:c\n",  # runs past the end
        b"x:a1:b1:c\n",  # not a length
        b"-1:a1:b1:c\n",
        b"1:a1:b\n",  # too few fields
        b"1:a1:b1:cX\n",  # trailing junk
    ],
)
def test_parse_rejects_malformed_output(data: bytes) -> None:
    with pytest.raises(WireError, match="malformed record"):
        parse_records(data, FIELDS)


def test_parse_real_tmux_names(tmux_server: TmuxServer) -> None:
    """Window names with `:`, newlines and digits come back exactly from real tmux."""
    tmux_server.start("wrap", "first")
    names = ["12:34", "a\nb:5:", "7", "x\ty\x1bz|w", "ünï 🙂", ""]
    for name in names:
        tmux_server.new_window("wrap", name)
    fields = ("window_index", "window_name", "pane_id")
    out = Tmux().run("list-windows", "-t", "=wrap", "-F", fields_format(fields)).stdout
    records = parse_records(out, fields)
    assert [r["window_name"] for r in records] == ["first", *names]
    assert all(r["pane_id"].startswith("%") for r in records)


def test_load_buffer_takes_a_megabyte_on_stdin(tmux_server: TmuxServer) -> None:
    tmux_server.start("buf")
    body = (bytes(range(32, 127)) * 11100)[:1_000_000] + b"\nend;"
    name = unique("amtest-")
    tmux = Tmux()
    tmux.run("load-buffer", "-b", name, "-", input=body)
    assert tmux.run("show-buffer", "-b", name).stdout == body
    tmux.run("delete-buffer", "-b", name)


def test_spawn_moves_a_megabyte_both_ways_without_deadlock() -> None:
    """cat echoes while we still write: both pipes must be serviced together."""
    data = os.urandom(1_000_000)
    result = Tmux(binary="cat").run(input=data, timeout=30)
    assert result == TmuxResult(0, data, b"")


def test_program_that_ignores_stdin_does_not_break_the_write() -> None:
    result = Tmux(binary="true").run(input=b"x" * 2_000_000, timeout=30)
    assert result.returncode == 0


def test_timeout_kills_and_raises_wire_error() -> None:
    started = time.monotonic()
    with pytest.raises(WireError, match=r"did not answer within 0\.3s"):
        Tmux(binary="sleep").run("30", timeout=0.3)
    assert time.monotonic() - started < 15


def test_start_returns_while_tmux_runs_and_result_is_runs() -> None:
    """Tmux.start (a delivery loads its rules meanwhile): the call is under way when it
    returns, and result() is what run() gives, its timeout counted from the start."""
    started = time.monotonic()
    call = Tmux(binary="sh").start("-c", "sleep 0.3; echo out; echo err >&2; exit 3")
    assert time.monotonic() - started < 0.25
    assert call.result(check=False) == TmuxResult(3, b"out\n", b"err\n")
    with pytest.raises(WireError, match="tmux -c failed: err"):
        call.result()
    call = Tmux(binary="sleep").start("30", timeout=0.3)
    time.sleep(0.4)
    with pytest.raises(WireError, match=r"did not answer within 0\.3s"):
        call.result()
    assert time.monotonic() - started < 15


def test_missing_binary_is_a_clear_wire_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WireError, match="tmux not found") as info:
        Tmux(binary="/nonexistent/tmux").run("list-sessions")
    assert info.value.exit_code == 4
    monkeypatch.setenv("TMUX_BIN", "no-such-tmux-binary")
    with pytest.raises(WireError, match="no-such-tmux-binary"):
        Tmux().run("list-sessions")


def test_unexecutable_binary_is_a_wire_error(tmp_path: Path) -> None:
    fake = tmp_path / "tmux"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    with pytest.raises(WireError, match="cannot run tmux"):
        Tmux(binary=str(fake)).run("list-sessions")


def test_failure_carries_tmux_error_line(tmux_server: TmuxServer) -> None:
    tmux_server.start("err")
    with pytest.raises(WireError, match="tmux has-session failed: can't find session"):
        Tmux().run("has-session", "-t", "=nosuchsession")
    result = Tmux().run("has-session", "-t", "=nosuchsession", check=False)
    assert result.returncode == 1 and b"can't find" in result.stderr


def test_child_gets_default_sigpipe() -> None:
    """Python ignores SIGPIPE; tmux (and a pipeline it runs) must not inherit that."""
    status = Tmux(binary="grep").run("^SigIgn", "/proc/self/status").stdout.decode()
    ignored = int(status.split()[1], 16)
    assert not ignored & (1 << (13 - 1))


def test_socket_path_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Tmux(socket_path="/s").argv(["ls"]) == ["tmux", "-S", "/s", "ls"]
    monkeypatch.setenv("TMUX_SOCKET", "/env-socket")
    assert Tmux().argv(["ls"]) == ["tmux", "-S", "/env-socket", "ls"]


def test_wrapper_imports_stay_lean() -> None:
    """The hook imports this module: no subprocess, dataclasses or enum behind it."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules); "
        "import agent_mesh.tmux; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True, cwd="/").stdout
    loaded = set(out.split())
    assert not loaded & {"subprocess", "dataclasses", "enum", "re", "typing", "signal"}, loaded


def test_a_foreground_program_changing_mid_read_never_looks_like_a_gone_pane(
    spawn: Spawner,
) -> None:
    """tmux reads pane_current_command from the OS at each use, so `#{n:…}` and the value
    can disagree while programs start and end (bash 4 bytes, sleep 5): such a torn record
    is read again, never taken for a pane that is gone (exit 2) or a broken registry."""
    from agent_mesh.delivery.pane import pane_state
    from agent_mesh.registry.scan import scan_windows

    sh = spawn.bash()
    sh.pane.send_keys("while :; do sleep 0; done", literal=True)
    sh.pane.send_keys("Enter")
    seen = set()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not {"bash", "sleep"} <= seen:
        seen.add(pane_state(Tmux(), sh.pane.pane_id).current_command)
    assert {"bash", "sleep"} <= seen, seen  # the race is really there
    for _ in range(300):
        assert pane_state(Tmux(), sh.pane.pane_id).pane_id == sh.pane.pane_id
        assert scan_windows(Tmux())
    sh.pane.send_keys("C-c")
