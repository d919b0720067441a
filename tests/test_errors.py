"""One error table, one renderer: every failure is one printable line with the
same exit code and flags whether it happened here or on a peer."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, SELF_HOST, Receiver, Spawner, TmuxServer, notify, retry_until, run_cli

from agent_mesh import __version__, errors
from agent_mesh.errors import (
    MeshError,
    NotReady,
    PaneDead,
    PaneGone,
    SliceRejected,
    UnknownAgent,
    UsageError,
    WireError,
    printable,
    report,
)
from agent_mesh.mesh.paramiko import ParamikoTransport
from agent_mesh.mesh.wire import PROTOCOL, error_from_reply, error_to_reply
from agent_mesh.model import Agent, Envelope

# --- the table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("bad"), 1),
        (UnknownAgent("x"), 2),
        (PaneGone("its pane %9 no longer exists"), 2),  # the registry is out of date
        (NotReady("busy"), 3),
        (PaneDead("dead"), 3),
        (WireError("tmux failed"), 4),
        (SliceRejected("bad slice"), 4),
        (KeyboardInterrupt(), 130),
        (PermissionError(13, "Permission denied", "/x/.agents/local.toml"), 1),
        (KeyError("result"), 1),
    ],
)
def test_every_error_has_one_line_and_its_code(exc: BaseException, code: int) -> None:
    line, got = report(exc)
    assert got == code and "\n" not in line and line


def test_every_error_type_lives_in_errors() -> None:
    from agent_mesh.delivery import pane
    from agent_mesh.mesh import sync

    assert pane.PaneGone is PaneGone and pane.PaneDead is PaneDead
    assert sync.SliceRejected is SliceRejected
    assert all(issubclass(cls, MeshError) for cls in errors.KINDS.values())


def test_not_ready_says_how_to_override_only_when_it_can() -> None:
    assert report(NotReady("mid-prompt", address="a"))[0] == (
        "refusing to deliver to 'a': mid-prompt (FORCE_SEND=1 to override)")
    assert report(PaneDead("dead; FORCE_SEND cannot deliver to it", address="a"))[0] == (
        "refusing to deliver to 'a': dead; FORCE_SEND cannot deliver to it")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain", "plain"),
        ("clear\x1b[2Jscreen", "clearscreen"),
        ("colour \x1b[38;5;196mred\x1b[0m", "colour red"),
        ("clip\x1b]52;c;ZXZpbA==\x07board", "clipboard"),  # OSC 52, BEL-terminated
        ("link \x1b]8;;http://x\x1b\\text\x1b]8;;\x1b\\", "link text"),  # ST-terminated
        ("dcs\x1bPq#0;2;0;0;0\x1b\\end", "dcsend"),
        ("c1\x9b31mcsi\x9d0;title\x07", "c1csi"),
        ("two\nlines\tand\rcr", "two lines and cr"),
        ("bell\x07 del\x7f nul\x00 c1\x85", "bell? del? nul? c1?"),
        ("esc at end\x1b", "esc at end"),
        ("ünïcode ✓", "ünïcode ✓"),
    ],
)
def test_printable_drops_escape_sequences_whole(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_screens_keep_lines_and_only_colours_when_asked() -> None:
    screen = "a\u202eb\u200f\u061c\n\x1b[1;31mred\x1b[0m\x1b]52;c;eA==\x07\u009b2J\nnbsp\u00a0x"
    assert printable(screen, lines=True) == "ab\nred\nnbsp x"
    assert printable(screen, lines=True, sgr=True) == "ab\n\x1b[1;31mred\x1b[0m\nnbsp x"
    assert printable("\u009b31mx", sgr=True) == "x"  # C1 CSI is never kept


def test_printable_json_escapes_what_a_terminal_would_obey() -> None:
    import json

    from agent_mesh.errors import printable_json

    value = {"role": "r\u009b2J\u202eo\u2066\x7fle ü", "n": 1}
    text = printable_json(json.dumps(value, ensure_ascii=False, indent=2))
    assert text.isascii() is False and "ü" in text  # other text stays readable
    assert not any(c in text for c in "\u009b\u202e\u2066\x7f")
    assert json.loads(text) == value


# --- over the wire ----------------------------------------------------------------


def rpc(request: dict[str, object]) -> dict[str, object]:
    """Run the real `agent-mesh rpc` (what SSH runs on a peer) against this host."""
    out = run_cli("agent-mesh", "rpc", input=json.dumps(request).encode())
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    reply = json.loads(out.stdout)
    assert isinstance(reply, dict)
    return reply


def deliver_request(address: str, force: bool = False) -> dict[str, object]:
    envelope = {"sender": "tester", "address": address, "body": "hi", "timestamp": "now",
                "force": force, "skip_dismiss": False, "file_name": None, "file_size": None}
    return {"protocol": PROTOCOL, "version": __version__, "op": "deliver",
            "envelope": envelope, "file": None}


def remote_line(address: str, force: bool = False) -> tuple[str, int]:
    """What notify-pane prints for the same delivery made from another host."""
    raw = json.dumps(rpc(deliver_request(address, force))).encode()
    with pytest.raises(MeshError) as caught:
        ParamikoTransport("peer")._decode_reply(raw, 0)
    exc = caught.value
    if isinstance(exc, NotReady):
        exc.address = address  # as notify-pane's main does
    line, code = report(exc)
    return f"notify-pane: {line}\n", code


def test_a_dead_pane_reads_the_same_locally_and_from_a_peer(spawn: Spawner) -> None:
    spawn.agent_tui("keep")
    spawn.server.run("set-option", "-g", "remain-on-exit", "on")
    pane = spawn.window("gone", ["sh", "-c", "exit 0"])
    retry_until(lambda: pane.display("#{pane_dead}") == "1")
    spawn.register()
    address = f"{SELF_HOST}-dev-gone"
    for force in (False, True):
        local = notify(address, "hi", env={"FORCE_SEND": "1"} if force else {})
        line, code = remote_line(address, force)
        assert (local.returncode, local.stderr.decode(), code) == (3, line, 3)
        assert "FORCE_SEND cannot deliver to it" in line
        assert "FORCE_SEND=1 to override" not in line  # the flag survived the wire


def test_a_busy_pane_reads_the_same_locally_and_from_a_peer(spawn: Spawner) -> None:
    tui = spawn.agent_tui("busy")
    spawn.server.run("copy-mode", "-t", tui.pane.pane_id)
    local = notify(tui.address, "hi")
    line, code = remote_line(tui.address)
    assert (local.returncode, local.stderr.decode(), code) == (3, line, 3)
    assert line.endswith("(FORCE_SEND=1 to override)\n")


def test_unknown_agent_and_gone_pane_keep_exit_2_from_a_peer(spawn: Spawner) -> None:
    spawn.agent_tui("keep")
    gone = spawn.agent_tui("gone")
    spawn.server.run("kill-window", "-t", gone.pane.window_id)
    line, code = remote_line(gone.address)
    assert code == 2 and "no longer exists" in line and "(on peer)" in line
    line, code = remote_line("testhost-nosuch")
    assert code == 2 and "unknown agent 'testhost-nosuch'" in line


@pytest.mark.parametrize(
    "reply",
    [
        {"ok": False, "code": "four", "error": "x"},
        {"ok": False, "code": None},
        {"ok": False, "code": 99, "error": "from the future"},
        {"ok": False, "code": True, "error": "a bool is no code"},
    ],
)
def test_a_malformed_error_reply_is_a_wire_failure(reply: dict[str, object]) -> None:
    exc = error_from_reply("peer", reply)
    assert isinstance(exc, WireError) and report(exc)[1] == 4
    assert report(exc)[0].startswith("peer: malformed reply")


@pytest.mark.parametrize(
    "reply",
    [
        {"ok": True},
        {"ok": True, "result": None},
        {"ok": True, "result": {"address": "a", "target": "dev:0", "pane_id": "%1"}},
        {"ok": True, "result": {"address": "a", "target": "t", "pane_id": "%1",
                                "bytes_sent": "lots"}},
    ],
)
def test_a_malformed_deliver_reply_is_exit_4_not_a_key_error(
    reply: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the edge: the peer's answer itself."""
    monkeypatch.setattr(ParamikoTransport, "request",
                        lambda self, header, stream=None, timeout=0: reply)
    envelope = Envelope(sender="s", address="a", body="hi", timestamp="now", force=False,
                        skip_dismiss=False, file_name=None, file_size=None)
    agent = Agent(address="a", host="peer", target="dev:0", pane_id="%1")
    with pytest.raises(WireError) as caught:
        ParamikoTransport("peer").deliver(envelope, agent)
    assert report(caught.value)[1] == 4
    assert "malformed reply" in str(caught.value)


def test_a_peers_escapes_never_reach_the_terminal() -> None:
    exc = error_from_reply("peer", {"ok": False, "code": 4,
                                    "error": "x\x1b]52;c;ZXZpbA==\x07\x1b[2Jy"})
    assert report(exc) == ("peer: xy", 4)


def test_rpc_answers_kind_and_flags() -> None:
    assert error_to_reply(PaneDead("dead")) == {
        "ok": False, "code": 3, "error": "dead", "kind": "PaneDead", "overridable": False}
    assert error_to_reply(KeyError("x"))["code"] == 4


# --- a read-only ~/.agents --------------------------------------------------------


def run_with_readonly_agents(home: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    agents = home / ".agents"
    exe = str(BIN / argv[0])
    if os.geteuid() == 0:  # root ignores modes: a read-only bind mount in a private namespace
        script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift '
                  '&& exec "$@"')
        cmd = ["unshare", "--mount", "sh", "-c", script, "sh", str(agents), exe, *argv[1:]]
    else:
        agents.chmod(0o555)
        cmd = [exe, *argv[1:]]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    finally:
        agents.chmod(0o755)


@pytest.mark.parametrize("argv", [["agent-discover"], ["agent-mesh", "sync"],
                                  ["agent-mesh", "discover"]])
def test_read_only_agents_dir_is_one_line(tmux_server: TmuxServer, isolated_env: Path,
                                          argv: list[str]) -> None:
    tmux_server.start("dev", "editor")
    out = run_with_readonly_agents(isolated_env, *argv)
    err = out.stderr.decode()
    assert out.returncode == 1, (out.stdout, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "Read-only file system" in err or "Permission denied" in err, err


# --- empty states ------------------------------------------------------------------


def test_no_agents_yet_says_how_to_get_some(isolated_env: Path) -> None:
    hint = b"no agents yet: start tmux (windows register automatically)"
    out = run_cli("notify-pane", "--list")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"notify-pane: " + hint + b"\n")
    out = run_cli("agent-mesh", "list")
    assert (out.returncode, out.stdout) == (0, b"agent-mesh list: " + hint + b"\n")


def test_receiver_listing_still_plain(tui_receiver: Receiver) -> None:
    out = run_cli("notify-pane", "--list")
    assert out.stdout.decode().split() == [tui_receiver.address] and out.stderr == b""


@pytest.fixture
def tui_receiver(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


def test_doctor_lines_go_through_the_same_printable() -> None:
    from agent_mesh.ops.doctor import Check, render

    line = render([Check("peer:x", False, "said \x1b]52;c;ZXZpbA==\x07\x1b[2Jhi", "fix\nit")])
    assert line == "FAIL peer:x: said hi -> fix: fix it"


def test_the_hook_logs_failures_through_report(isolated_env: Path) -> None:
    from agent_mesh.cli import hook

    (isolated_env / ".agents" / "local.toml").mkdir()
    assert hook.main(["rescan", "x\x1b[2J"]) == 0
    (line,) = (isolated_env / ".agents" / "hook.log").read_text().splitlines()
    assert line.endswith(": Is a directory (exit 1)") and "\x1b" not in line, line
