"""The sender's reading of a peer's reply: versions, missing installs, errors."""

from __future__ import annotations

import json

import pytest

from agent_mesh import __version__
from agent_mesh.errors import NotReady, UnknownAgent, WireError
from agent_mesh.mesh.ssh import SshTransport
from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND


def reply(**fields: object) -> bytes:
    return json.dumps({"protocol": PROTOCOL, "version": __version__, **fields}).encode()


def test_a_peer_with_another_version_is_a_wire_failure_naming_both() -> None:
    with pytest.raises(WireError, match=r"peer: agent-mesh 9\.9\.9 there, .* here"):
        SshTransport("peer")._decode_reply(reply(ok=True, version="9.9.9"), 0)


def test_exit_127_means_agent_mesh_is_not_installed() -> None:
    with pytest.raises(WireError, match="peer: agent-mesh is not installed there"):
        SshTransport("peer")._decode_reply(b"", 127)


def test_garbage_from_the_peer_is_named_not_parsed() -> None:
    with pytest.raises(WireError, match=r"did not answer .*Traceback"):
        SshTransport("peer")._decode_reply(b"oops\nTraceback (most recent call last)", 1)


@pytest.mark.parametrize(("code", "kind"), [(2, UnknownAgent), (3, NotReady), (4, WireError)])
def test_peer_errors_keep_their_exit_codes(code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught:
        SshTransport("peer")._decode_reply(reply(ok=False, code=code, error="why", address="a"), 0)
    assert caught.value.exit_code == code  # type: ignore[attr-defined]


def test_remote_command_is_constant_and_quotes_nothing_from_the_user() -> None:
    assert "'" in REMOTE_COMMAND and "rpc" in REMOTE_COMMAND
    assert "{" not in REMOTE_COMMAND and "%" not in REMOTE_COMMAND
