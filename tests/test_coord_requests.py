"""A peer's coordination requests with hostile numbers and shapes (review item 5): the
authority answers each with a one-line usage error (exit 1 on the asking side), never
a traceback. Driven through the real `agent-mesh rpc`, what SSH runs on a peer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SELF_HOST, run_cli

from agent_mesh import __version__
from agent_mesh.mesh.wire import PROTOCOL


def rpc(raw: bytes) -> tuple[dict[str, Any], bytes]:
    out = run_cli("agent-mesh", "rpc", input=raw + b"\n")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def coord(body: str) -> bytes:
    """A coord request whose fields are written as raw JSON text (Infinity, NaN, 1e999)."""
    return (f'{{"protocol": {json.dumps(PROTOCOL)}, "version": {json.dumps(__version__)}, '
            f'"op": "coord", {body}}}').encode()


WHO = json.dumps({"who": SELF_HOST, "host": SELF_HOST, "pane": ""})


@pytest.mark.parametrize("body", [
    '"action": "read", "kind": "bulletin", "limit": Infinity',
    '"action": "read", "kind": "bulletin", "limit": -Infinity',
    '"action": "read", "kind": "bulletin", "limit": NaN',
    '"action": "read", "kind": "bulletin", "limit": 1e999',
    '"action": "read", "kind": "bulletin", "limit": "ten"',
    '"action": "read", "kind": "bulletin", "since": NaN',
    '"action": "read", "kind": "bulletin", "tags": [[1], {"a": 1}]',
    f'"action": "lock", "who": {WHO}, "path": "/tmp/x", "ttl": NaN',
    f'"action": "lock", "who": {WHO}, "path": "/tmp/x", "ttl": Infinity',
    f'"action": "subscribe", "who": {WHO}, "board": "main", "addresses": [[1]], "off": true',
    f'"action": "subscribe", "who": {WHO}, "board": "main", "addresses": [{{"a": 1}}], '
    '"off": true',
    f'"action": "subscribe", "who": {WHO}, "board": "main", "addresses": [[1]]',
    f'"action": "add", "who": {WHO}, "board": "main", "title": "t", "notify": [[1]]',
    f'"action": "claim", "who": {WHO}, "board": "main", "id": [1]',
    f'"action": "done", "who": {WHO}, "board": "main", "id": {{"a": 1}}',
    f'"action": "drop", "who": {WHO}, "board": "main", "id": Infinity',
])
def test_a_hostile_number_or_shape_is_a_one_line_usage_error(body: str) -> None:
    made, _err = rpc(coord(f'"action": "add", "who": {WHO}, "board": "main", "title": "t"'))
    assert made.get("ok") is not False, made  # so that the board's own checks are reached
    reply, err = rpc(coord(body))
    assert reply.get("ok") is False and reply.get("code") == 1, reply
    assert "\n" not in str(reply.get("error")) and "Traceback" not in str(reply), reply
    assert b"Traceback" not in err, err


def test_a_huge_limit_is_clamped_not_refused() -> None:
    out = run_cli("agent-mesh", "post", "hello")
    assert out.returncode == 0, out.stderr
    reply, _err = rpc(coord('"action": "read", "kind": "bulletin", "limit": 1e300'))
    assert reply.get("ok") is not False, reply
    assert [e["text"] for e in reply["entries"]] == ["hello"]
