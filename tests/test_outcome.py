"""Outcome and DeliveryResult keep one form end to end (paste, receive, rpc, wire, logs,
CLI), and a previous version's JSON still reads the same; errors carry a machine cause."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent_mesh import errors
from agent_mesh.errors import (
    Cause,
    MeshError,
    NotReady,
    Outcome,
    PaneDead,
    PaneGone,
    UnknownAgent,
    UsageError,
    WireError,
)
from agent_mesh.mesh.wire import error_from_reply, error_to_reply, result_from_reply
from agent_mesh.model import DeliveryResult

PKG = Path(__file__).resolve().parent.parent / "agent_mesh"


# --- Outcome ------------------------------------------------------------------------


def test_every_outcome_carries_the_exit_code_of_the_table() -> None:
    codes = {o.word if o.code != errors.USAGE else "usage": o.code for o in Outcome.MEMBERS}
    assert codes == {"delivered": 0, "mailbox": 0, "queued": 5, "refused": 3, "unknown": 2,
                     "failed": 4, "usage": 1}
    assert [o for o in Outcome.MEMBERS if o.ok] == [Outcome.DELIVERED, Outcome.MAILBOX,
                                                   Outcome.QUEUED]
    assert [o for o in Outcome.MEMBERS if o.done] == [Outcome.DELIVERED, Outcome.MAILBOX]


@pytest.mark.parametrize("outcome", Outcome.MEMBERS)
def test_an_outcome_round_trips_through_json(outcome: Outcome) -> None:
    assert Outcome.from_json(outcome.to_json()) is outcome
    assert str(outcome) == outcome.word


def test_a_previous_versions_words_read_as_members() -> None:
    assert Outcome.parse("queued") is Outcome.QUEUED
    assert Outcome.parse("failed") is Outcome.FAILED  # no code: a wire failure
    assert Outcome.parse("failed", 1) is Outcome.INVALID
    assert Outcome.from_json({"outcome": "refused", "code": 3}) is Outcome.REFUSED
    # a broadcast row of a previous version: "failed" for an unknown agent, with its code
    assert Outcome.parse("failed", 2).code == 2
    assert Outcome.from_json({}, default=Outcome.DELIVERED) is Outcome.DELIVERED


def test_a_newer_peers_word_keeps_its_code_or_counts_as_a_wire_failure() -> None:
    assert Outcome.parse("deferred", 7) == Outcome("deferred", 7)
    assert Outcome.parse("deferred").code == errors.WIRE
    assert Outcome.of_code(errors.ASK_TIMEOUT) == Outcome("failed", errors.ASK_TIMEOUT)


@pytest.mark.parametrize(("exc", "outcome"), [
    (NotReady("busy"), Outcome.REFUSED),
    (PaneDead("dead"), Outcome.REFUSED),
    (UnknownAgent("x"), Outcome.UNKNOWN),
    (PaneGone("gone"), Outcome.UNKNOWN),
    (WireError("down"), Outcome.FAILED),
    (UsageError("bad"), Outcome.INVALID),
    (KeyError("x"), Outcome.FAILED),  # no MeshError: failed on the way, as rpc answers it
])
def test_a_failure_names_its_outcome(exc: BaseException, outcome: Outcome) -> None:
    assert Outcome.of_error(exc) is outcome
    if isinstance(exc, MeshError):
        assert Outcome.of_error(exc).code == errors.report(exc)[1]


def test_outcomes_are_immutable_values() -> None:
    with pytest.raises(AttributeError):
        Outcome.DELIVERED.code = 5  # type: ignore[misc]
    assert {Outcome("queued", 5): 1}[Outcome.QUEUED] == 1


# --- DeliveryResult -------------------------------------------------------------------


def _result(outcome: Outcome = Outcome.QUEUED) -> DeliveryResult:
    return DeliveryResult(address="h-dev-a", host="h", target="dev:1", pane_id="%3",
                          bytes_sent=12, notes=["queued: busy"], outcome=outcome, msg_id="ab12cd")


@pytest.mark.parametrize("outcome", [Outcome.DELIVERED, Outcome.QUEUED, Outcome.MAILBOX])
def test_a_result_round_trips_through_json_and_the_wire(outcome: Outcome) -> None:
    from agent_mesh.mesh.wire import dumps, loads

    result = _result(outcome)
    assert DeliveryResult.from_json(loads(dumps(result.to_json()))) == result
    # the sender names the host by the alias it reached, not by the peer's word
    assert result_from_reply("peer", {"ok": True, "result": result.to_json()}) == \
        result.replace(host="peer")


def test_a_previous_versions_result_reads_the_same() -> None:
    """What rpc answered before: no host, outcome a word (or none at all)."""
    old = {"address": "h-dev-a", "target": "dev:1", "pane_id": "%3", "bytes_sent": 12,
           "notes": ["n"], "outcome": "queued", "msg_id": "ab12cd"}
    assert result_from_reply("h", {"ok": True, "result": old}) == _result().replace(notes=["n"])
    del old["outcome"]
    assert result_from_reply("h", {"ok": True, "result": old}).outcome is Outcome.DELIVERED
    # and what we send keeps every field a previous version reads
    assert set(old) | {"outcome"} <= set(_result().to_json())


def test_a_peers_result_is_made_printable_and_checked() -> None:
    raw = _result().to_json() | {"target": "dev\x1b[2J:1", "notes": ["a\x07b"]}
    read = DeliveryResult.from_json(raw, host="h")
    assert read.target == "dev:1" and read.notes == ["a?b"]
    with pytest.raises(TypeError):
        DeliveryResult.from_json(_result().to_json() | {"notes": "not a list"})
    with pytest.raises(WireError, match="malformed reply"):
        result_from_reply("h", {"ok": True, "result": _result().to_json() | {"bytes_sent": "x"}})


# --- causes ------------------------------------------------------------------------


def test_a_cause_crosses_the_wire_and_a_previous_peer_sends_none() -> None:
    sent = error_to_reply(WireError("far: gone", cause=Cause.NOT_INSTALLED))
    assert sent["cause"] == Cause.NOT_INSTALLED
    assert error_from_reply("peer", sent).cause == Cause.NOT_INSTALLED
    del sent["cause"]
    assert error_from_reply("peer", sent).cause == ""
    assert "cause" not in error_to_reply(WireError("no cause"))
    assert error_from_reply("peer", {**sent, "cause": "x\x1b[2J"}).cause == ""


@pytest.mark.parametrize(("stderr", "cause"), [
    ("No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\n"
     "Host key verification failed.\n", Cause.HOST_KEY_UNKNOWN),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", Cause.HOST_KEY_CHANGED),
    ("u@10.0.0.2: Permission denied (publickey).\n", Cause.AUTH_FAILED),
    ("ssh: Could not resolve hostname nowhere: Name or service not known\n", Cause.UNKNOWN_HOST),
    ("Connection timed out during banner exchange\n", Cause.NO_HANDSHAKE),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused\n", Cause.UNREACHABLE),
    ("Connection reset by peer\n", Cause.CONNECTION_LOST),
    ("something else\n", Cause.SSH_FAILED),
])
def test_an_ssh_failure_has_its_cause(stderr: str, cause: str) -> None:
    from agent_mesh.mesh.openssh import ssh_failure

    assert ssh_failure(stderr, 255)[0] == cause


@pytest.mark.parametrize(("cause", "fix"), [
    (Cause.HOST_KEY_UNKNOWN, "check the key's fingerprint"),
    (Cause.NO_HANDSHAKE, "check HostName and Port"),
    (Cause.HOST_KEY_CHANGED, "ssh-keygen -R"),
    (Cause.AUTH_FAILED, "ssh-copy-id peer"),
    (Cause.UNKNOWN_HOST, "add a `Host peer` block"),
    (Cause.NOT_INSTALLED, "run ./install.sh on peer"),
    (Cause.VERSION_MISMATCH, "git pull"),
    (Cause.NO_ANSWER, "run agent-mesh doctor on peer"),
    ("", "check that peer is up"),
])
def test_doctor_reads_the_cause_not_the_words(cause: str, fix: str) -> None:
    from agent_mesh.ops.peer_checks import _peer_failure

    check = _peer_failure("peer", WireError("peer: words that match no phrase", cause=cause))
    assert not check.ok and fix in check.fix, check


# --- one home each -----------------------------------------------------------------


def test_every_error_type_is_defined_in_errors() -> None:
    """No module but errors.py defines an exception class (private control-flow signals,
    `_Name`, that never leave their module, aside)."""
    names = {"Exception", "BaseException", *(n for n in dir(errors)
                                               if isinstance(getattr(errors, n), type)
                                               and issubclass(getattr(errors, n), BaseException))}
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                         for b in node.bases}
                if bases & names:
                    found.append(f"{path.relative_to(PKG)}: {node.name}")
    assert not found, found


def test_stamps_and_ids_have_one_home() -> None:
    """The stamp format is clock.STAMP_FORMAT's, the hex id alphabet model.is_hex_id's."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(PKG))
        if "%Y-%m-%dT%H:%M:%SZ" in text and rel != "clock.py":
            bad.append(f"{rel}: stamp format")
        if '"0123456789abcdef"' in text and rel != "model.py":
            bad.append(f"{rel}: hex alphabet")
        if '"._-' in text and rel != "registry/naming.py":
            bad.append(f"{rel}: address alphabet")
    assert not bad, bad
