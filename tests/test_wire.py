"""The sender's reading of a peer's reply: versions, missing installs, errors."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from agent_mesh import __version__
from agent_mesh.errors import NotReady, UnknownAgent, WireError
from agent_mesh.mesh.paramiko import ParamikoTransport
from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND


def reply(**fields: object) -> bytes:
    return json.dumps({"protocol": PROTOCOL, "version": __version__, **fields}).encode()


def test_a_peer_with_another_version_is_a_wire_failure_naming_both() -> None:
    with pytest.raises(WireError, match=r"peer: agent-mesh 9\.9\.9 there, .* here"):
        ParamikoTransport("peer")._decode_reply(reply(ok=True, version="9.9.9"), 0)


def test_exit_127_means_agent_mesh_is_not_installed() -> None:
    with pytest.raises(WireError, match="peer: agent-mesh is not installed there"):
        ParamikoTransport("peer")._decode_reply(b"", 127)


def test_garbage_from_the_peer_is_named_not_parsed() -> None:
    with pytest.raises(WireError, match=r"did not answer .*Traceback"):
        ParamikoTransport("peer")._decode_reply(b"oops\nTraceback (most recent call last)", 1)


@pytest.mark.parametrize(("code", "kind"), [(2, UnknownAgent), (3, NotReady), (4, WireError)])
def test_peer_errors_keep_their_exit_codes(code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught:
        ParamikoTransport("peer")._decode_reply(
            reply(ok=False, code=code, error="why", address="a"), 0)
    assert caught.value.exit_code == code  # type: ignore[attr-defined]


def test_remote_command_is_constant_and_quotes_nothing_from_the_user() -> None:
    assert "'" in REMOTE_COMMAND and "rpc" in REMOTE_COMMAND
    assert "{" not in REMOTE_COMMAND and "%" not in REMOTE_COMMAND


# --- protocol 2: header line, then the body --------------------------------------


def test_the_header_is_one_json_line_with_protocol_and_version() -> None:
    from agent_mesh.mesh.wire import encode_header

    line = encode_header({"op": "hello", "body": "two\nlines"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"op": "hello", "body": "two\nlines", "protocol": PROTOCOL,
                                "version": __version__, "sender_host": "testhost"}


def test_a_file_body_streams_in_chunks_and_a_shrunk_file_fails(tmp_path: Path) -> None:
    from agent_mesh.delivery.inbox import SourceFile
    from agent_mesh.errors import UsageError
    from agent_mesh.mesh.transport import FileBody
    from agent_mesh.mesh.wire import CHUNK

    path = tmp_path / "big.bin"
    path.write_bytes(b"a" * (CHUNK * 2 + 5))
    body = FileBody(SourceFile(str(path)), "big.bin")
    assert [len(c) for c in body.chunks()] == [CHUNK, CHUNK, 5]
    assert b"".join(body.chunks()) == path.read_bytes()  # re-readable for a retry
    path.write_bytes(b"short")
    with pytest.raises(UsageError, match="shrank"):
        list(body.chunks())
    assert b"".join(FileBody(b"xyz", "x").chunks()) == b"xyz"
    with pytest.raises(UsageError, match="not a regular file"):
        SourceFile(str(tmp_path))


def test_rpc_streams_the_body_into_a_private_part_file(isolated_env: Path) -> None:
    import io

    from agent_mesh.delivery.inbox import place_upload, receive_upload
    from agent_mesh.errors import UsageError

    data = bytes(range(256)) * 1000
    stream = io.BytesIO(data + b"trailing bytes are not read")
    upload = receive_upload(stream, len(data))
    part = isolated_env / upload.tmp
    assert part.parent == isolated_env / ".agent-inbox" / ".incoming"
    assert upload.tmp.endswith(".part")
    assert part.read_bytes() == data and oct(part.stat().st_mode & 0o777) == "0o600"
    assert oct(part.parent.stat().st_mode & 0o777) == "0o700"
    dropped = place_upload(upload.tmp, "h2", "report.bin", len(data))
    assert (dropped.shown, dropped.size) == ("~/.agent-inbox/h2/report.bin", len(data))
    short = receive_upload(io.BytesIO(b"cut"), 10)
    with pytest.raises(UsageError, match=r"truncated \(3 of 10 bytes\)"):
        place_upload(short.tmp, "h2", "x", 10)
    assert list((isolated_env / ".agent-inbox" / ".incoming").iterdir()) == []


def test_rpc_refuses_a_request_of_the_old_protocol(isolated_env: Path) -> None:
    import subprocess
    import sys

    request = json.dumps({"op": "hello", "protocol": 1, "version": __version__}).encode()
    agent_mesh = str(Path(sys.executable).parent / "agent-mesh")
    out = subprocess.run([agent_mesh, "rpc"], input=request,
                         capture_output=True, check=False)
    reply = json.loads(out.stdout)
    assert reply["ok"] is False and reply["protocol"] == PROTOCOL and reply["code"] == 1


# --- choosing the transport, and OpenSSH's words ----------------------------------


def test_transport_choice_env_then_config_then_openssh(isolated_env: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_mesh.errors import UsageError
    from agent_mesh.mesh.remote import chosen_transport

    monkeypatch.delenv("AGENT_MESH_TRANSPORT", raising=False)
    assert chosen_transport() == "openssh"  # an ssh client is on PATH here
    config = isolated_env / ".agents" / "config.toml"
    config.write_text('transport = "paramiko"\n')
    assert chosen_transport() == "paramiko"
    monkeypatch.setenv("AGENT_MESH_TRANSPORT", "openssh")
    assert chosen_transport() == "openssh"
    monkeypatch.setenv("AGENT_MESH_TRANSPORT", "telnet")
    with pytest.raises(UsageError, match="unknown transport 'telnet'"):
        chosen_transport()
    monkeypatch.delenv("AGENT_MESH_TRANSPORT")
    config.unlink()
    with monkeypatch.context() as patched:
        patched.setenv("PATH", "/nonexistent")
        assert chosen_transport() == "paramiko"


def test_control_persist_default_env_config_and_off(isolated_env: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_mesh.errors import UsageError
    from agent_mesh.mesh.openssh import control_persist

    monkeypatch.delenv("AGENT_MESH_CONTROL_PERSIST", raising=False)
    assert control_persist() == "600"
    (isolated_env / ".agents" / "config.toml").write_text("control_persist = 30\n")
    assert control_persist() == "30"
    monkeypatch.setenv("AGENT_MESH_CONTROL_PERSIST", "no")
    assert control_persist() is None
    monkeypatch.setenv("AGENT_MESH_CONTROL_PERSIST", "5m")
    assert control_persist() == "5m"
    monkeypatch.setenv("AGENT_MESH_CONTROL_PERSIST", "soon")
    with pytest.raises(UsageError, match="not a duration"):
        control_persist()


def test_control_sockets_live_in_a_private_short_directory(
        isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent_mesh.mesh.openssh import OpenSshTransport, control_dir, socket_name

    monkeypatch.delenv("AGENT_MESH_CONTROL_PERSIST", raising=False)
    folder = control_dir()
    assert folder == str(isolated_env / ".agents" / "cm")
    assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    assert socket_name("h2") == socket_name("h2") != socket_name("h3")
    assert socket_name("user@very-long-host-name.example.org:2222").startswith(
        "user@very-long-host-name")
    transport = OpenSshTransport("h2")
    assert transport.socket is not None and len(transport.socket) + 17 <= 107
    argv = transport.argv(command="true")
    assert argv[-3:] == ["--", "h2", "true"]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto",
                   "ControlPersist=600", f"ControlPath={transport.socket}"):
        assert option in argv
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setenv("HOME", str(deep))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    fallback = Path(f"/tmp/agent-mesh-cm-{os.getuid()}")
    made = not fallback.exists()
    try:
        assert control_dir() == str(fallback)  # HOME too long for a socket
    finally:
        if made:  # issue 21.19: the tests leave no empty folder in /tmp
            with contextlib.suppress(OSError):
                fallback.rmdir()
    monkeypatch.setenv("AGENT_MESH_CONTROL_PERSIST", "no")
    assert "ControlPath=none" in OpenSshTransport("h2").argv()


@pytest.mark.parametrize(("stderr", "expected"), [
    ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
     "checking.\r\nHost key verification failed.\r\n",
     "host key for 127.0.0.1 is unknown; nothing was sent. Check and add it once: ssh peer true"),
    ("@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
     "Host key for 10.0.0.3 has changed and you have requested strict checking.\n"
     "Host key verification failed.\n", "host key for 10.0.0.3 CHANGED"),
    ("@@@@@\n@       WARNING: REVOKED HOST KEY DETECTED!               @\n"
     "The ED25519 host key for 10.0.0.2 is marked as revoked.\n"
     "Host key verification failed.\n", "host key for 10.0.0.2 is REVOKED"),
    ("u@10.0.0.2: Permission denied (publickey).\n", "authentication failed ("),
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out\n", "unreachable (ssh: connect"),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused\n",
     "unreachable (connection refused"),
    ("ssh: Could not resolve hostname nowhere: Name or service not known\n",
     "unknown host name ("),
    ("Connection timed out during banner exchange\n", "unreachable (no SSH handshake"),
])
def test_ssh_failures_are_named(stderr: str, expected: str) -> None:
    from agent_mesh.mesh.openssh import ssh_failure

    text = ssh_failure(stderr, 255)[1].replace("ALIAS", "peer")
    assert text.startswith(expected), text
    assert "\n" not in text
