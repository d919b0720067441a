"""Mesh keys, verified hosts, allow lists and peer rights (issue 18), on this host: the
authorized_keys edits, the tag's mark, the rules. The lab tests (test_trust_lab.py) run
them between real hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Receiver, Spawner, notify, retry_until

from agent_mesh import __version__
from agent_mesh.errors import Refused, WireError
from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND
from agent_mesh.model import Envelope

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTestsOnly0123456789abcdefABCDEF"


def _launcher(home: Path) -> Path:
    launcher = home / ".local/share/agent-mesh/rpc"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    return launcher


@pytest.mark.parametrize("before", [b"", b"ssh-ed25519 AAAA me@laptop\n",
                                    b"ssh-rsa AAAA old\n# comment\nssh-ed25519 BBBB x",
                                    b"one\r\ntwo\r\n"])
def test_authorize_then_revoke_restores_authorized_keys_byte_for_byte(
        isolated_env: Path, before: bytes) -> None:
    from agent_mesh.mesh import trust

    launcher = _launcher(isolated_env)
    ssh = isolated_env / ".ssh"
    ssh.mkdir(mode=0o700)
    keys = ssh / "authorized_keys"
    keys.write_bytes(before)
    keys.chmod(0o600)
    line, changed = trust.authorize("hub", KEY)
    assert changed and line == f'restrict,command="{launcher} --peer hub" {KEY} agent-mesh:hub'
    assert trust.authorize("hub", KEY) == (line, False)  # once
    assert trust.installed_for("hub")
    text = keys.read_bytes()
    assert text.startswith(before) and line.encode() in text
    assert keys.stat().st_mode & 0o777 == 0o600
    trust.authorize("lap", KEY)
    assert trust.revoke("hub") and not trust.revoke("hub")
    assert trust.revoke("lap")
    assert keys.read_bytes() == before
    trust.authorize("hub", KEY)
    trust.authorize("lap", KEY)
    assert trust.revoke("lap") and trust.revoke("hub")  # the other order
    assert keys.read_bytes() == before


def test_authorize_refuses_what_is_not_an_ed25519_key_or_alias(isolated_env: Path) -> None:
    from agent_mesh.errors import UsageError
    from agent_mesh.mesh import trust

    _launcher(isolated_env)
    for caller, key in (("hub", "ssh-rsa AAAA"), ("hub", 'ssh-ed25519 AA"AA'),
                        ("hub\" x", KEY), ("-x", KEY)):
        with pytest.raises(UsageError):
            trust.authorize(caller, key)
    assert not (isolated_env / ".ssh" / "authorized_keys").exists()


def test_trust_init_makes_a_private_ed25519_key(isolated_env: Path) -> None:
    from agent_mesh.mesh import meshkey, trust

    path, made = trust.init()
    assert made and Path(path).stat().st_mode & 0o777 == 0o600
    assert trust.public_key().startswith("ssh-ed25519 ")
    assert trust.init() == (path, False)
    assert meshkey.mesh_key_for("peer") is None
    trust.mark_trusted("peer")
    assert meshkey.mesh_key_for("peer") == path
    line = trust.print_line("testhost")
    assert line.startswith('restrict,command="~/.local/share/agent-mesh/rpc --peer testhost" ')


def test_only_the_receiving_host_writes_a_check_mark() -> None:
    env = Envelope(sender="evil \u2713hub", address="a", body="b \u2713hub",
                   timestamp="2026-12-07T06:00:00Z\u2713hub", fanout="x\u2713")
    assert "\u2713" not in env.tag()
    assert env.replace(verified="lap").tag() == (
        "[from evil ?hub @ 2026-12-07T06:00:00Z?hub \u2713lap, to x?]")
    forged = {**env.to_json(), "verified": "hub"}
    assert Envelope.from_json(forged).verified == ""
    assert Envelope.from_json(forged, trusted=True).verified == "hub"


def test_allow_words() -> None:
    from agent_mesh.delivery import allow
    from agent_mesh.model import Agent

    agent = Agent("h2-main-py", "h2", "main:1")
    claimed = Envelope(sender="hub-main-orch", address="h2-main-py", body="x", timestamp="t")
    verified = claimed.replace(verified="laptop")
    assert allow.matches("hub-*", claimed) and not allow.matches("hub-x*", claimed)
    assert not allow.matches("host:hub", claimed)  # only a verified host counts
    assert allow.matches("host:lap*", verified) and not allow.matches("host:hub", verified)
    allow.check(claimed, agent, "")
    allow.check(verified, agent, "nobody host:laptop")
    with pytest.raises(Refused) as refused:
        allow.check(claimed, agent, "nobody host:laptop")
    assert str(refused.value) == ("hub-main-orch (host not verified) may not message "
                                  "h2-main-py: not in its @agent-allow 'nobody host:laptop'")


def test_peer_rights_defaults_and_tables(isolated_env: Path) -> None:
    from agent_mesh.mesh import rights

    assert rights.right("hub", "deliver") == (True, "deliver is on for peers by default")
    assert rights.right("hub", "spawn") == (False, "spawn is off for peers by default")
    (isolated_env / ".agents" / "config.toml").write_text(
        "[peers]\npeek = false\nforce = true\n[peers.hub]\nforce = false\nspawn = true\n")
    assert rights.right("hub", "peek") == (False, "[peers] peek = false")
    assert rights.right("hub", "spawn") == (True, "[peers.hub] spawn = true")
    assert rights.right("lap", "force") == (True, "[peers] force = true")
    assert rights.right("", "spawn")[0] is False  # not verified: [peers] alone
    forced = {"envelope": {"force": True}}
    with pytest.raises(Refused, match=r"peer hub may not force here: \[peers.hub\] force = false"):
        rights.check("deliver", forced, "hub")
    rights.check("deliver", forced, "lap")
    with pytest.raises(Refused, match="may not peek here"):
        rights.check("peek", {}, "lap")


def test_the_forced_command_answers_requests_only(isolated_env: Path) -> None:
    hello = {"op": "hello", "protocol": PROTOCOL, "version": __version__}
    code = "from agent_mesh.cli.entry import main; main()"
    for asked in (None, "id", "bash -i", REMOTE_COMMAND + " ; id"):
        env = {k: v for k, v in os.environ.items() if k != "SSH_ORIGINAL_COMMAND"}
        if asked is not None:
            env["SSH_ORIGINAL_COMMAND"] = asked
        out = subprocess.run([sys.executable, "-c", code, "rpc", "--peer", "hub"],
                             input=json.dumps(hello).encode() + b"\n", capture_output=True,
                             env=env, check=False, timeout=30)
        assert out.returncode == 1 and out.stdout == b"", (asked, out)
        assert b"this key (hub's mesh key) runs agent-mesh requests only" in out.stderr
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": REMOTE_COMMAND,
           "SSH_CONNECTION": "10.0.0.9 5555 10.0.0.1 22"}
    out = subprocess.run([sys.executable, "-c", code, "rpc", "--peer", "hub"],
                         input=json.dumps(hello).encode() + b"\n", capture_output=True,
                         env=env, check=False, timeout=30)
    reply = json.loads(out.stdout)
    assert reply["ok"] and reply["caller"] == "hub" and reply["mesh_key"] is True, reply
    log = isolated_env / ".agents" / "log" / "peers.jsonl"
    request = {"op": "exchange", "from": "lap", "slice": None, "protocol": PROTOCOL,
               "version": __version__, "sender_host": "hub"}
    out = subprocess.run([sys.executable, "-c", code, "rpc", "--peer", "hub"],
                         input=json.dumps(request).encode() + b"\n", capture_output=True,
                         env=env, check=False, timeout=30)
    reply = json.loads(out.stdout)
    assert reply["code"] == 4 and "exchange from claims host lap" in reply["error"], reply
    record = json.loads(log.read_text().splitlines()[-1])
    assert (record["op"], record["host"], record["verified"], record["outcome"]) == (
        "exchange", "hub", True, "exit 4")


@pytest.fixture
def tui(spawn: Spawner) -> Receiver:
    return spawn.agent_tui()


def test_a_local_allow_list_refuses_with_the_rule(tui: Receiver) -> None:
    tui.pane.server.run("set-option", "-w", "-t", tui.pane.pane_id, "@agent-allow",
                        "orch-* host:testhost")
    assert notify(tui.address, "from this host").returncode == 0
    tui.pane.server.run("set-option", "-w", "-t", tui.pane.pane_id, "@agent-allow", "orch-*")
    out = notify(tui.address, "not listed")
    assert out.returncode == 3, out
    assert out.stderr.decode().strip() == (
        f"notify-pane: tester (host testhost, verified) may not message {tui.address}: not "
        "in its @agent-allow 'orch-*'")
    lines = tui.wait_lines(1)
    assert len(lines) == 1 and lines[0].endswith("\u2713testhost] from this host")
    log = Path.home() / ".agents" / "log" / "received" / f"{tui.address}.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[0]["verified"] is True and records[0]["host"] == "testhost"
    retry_until(lambda: any(r.get("outcome") == "refused" and "@agent-allow" in
                            str(r.get("reason")) for r in
                            (json.loads(x) for x in log.read_text().splitlines())))


def test_wire_error_type_is_rebuilt(isolated_env: Path) -> None:
    from agent_mesh.mesh.wire import error_from_reply, error_to_reply

    err = error_from_reply("h", error_to_reply(Refused("no")))
    assert isinstance(err, Refused) and err.exit_code == 3
    assert isinstance(error_from_reply("h", error_to_reply(WireError("x"))), WireError)


def test_a_login_key_peer_gets_the_all_peers_rights(isolated_env: Path) -> None:
    """No forced command: the caller is a peer (SSH_CONNECTION) of no verified host, so
    only [peers] applies, and spawn is off by default; the peers log says so."""
    code = "from agent_mesh.cli.entry import main; main()"
    request = {"op": "spawn", "argv": ["sleep", "9"], "protocol": PROTOCOL,
               "version": __version__}
    env = {k: v for k, v in os.environ.items() if k != "SSH_ORIGINAL_COMMAND"}
    env["SSH_CONNECTION"] = "10.0.0.9 5555 10.0.0.1 22"
    out = subprocess.run([sys.executable, "-c", code, "rpc"],
                         input=json.dumps(request).encode() + b"\n", capture_output=True,
                         env=env, check=False, timeout=30)
    reply = json.loads(out.stdout)
    assert reply["code"] == 3 and reply["error"] == (
        "a peer without a mesh key (host not verified) may not spawn here: spawn is off for "
        "peers by default"), reply
    log = isolated_env / ".agents" / "log" / "peers.jsonl"
    record = json.loads(log.read_text().splitlines()[-1])
    assert (record["op"], record["verified"], record["from"]) == ("spawn", False, "10.0.0.9")


def test_a_queued_message_is_refused_by_the_allow_list_not_queued(tui: Receiver) -> None:
    tui.pane.server.run("set-option", "-w", "-t", tui.pane.pane_id, "@agent-allow", "orch-*")
    tui.pane.send_keys("a draft", literal=True)
    retry_until(lambda: "a draft" in tui.pane.capture())
    out = notify("--queue", tui.address, "would wait")
    assert out.returncode == 3 and b"@agent-allow 'orch-*'" in out.stderr, out
    assert not list((Path.home() / ".agents" / "queue").rglob("*.json"))
    log = Path.home() / ".agents" / "log" / "received" / f"{tui.address}.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["outcome"] for r in records] == ["refused"], records
    out = notify("--queue", tui.address, "from orch", env={"AGENT_NAME": "orch-1"})
    assert out.returncode == 5, out  # allowed, and queued behind the draft
