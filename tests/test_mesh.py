"""The mesh across real hosts: network namespaces, each with its own sshd, user
(different uids), HOME, ~/.ssh and tmux server (tests/lab). Needs root; skips
with the reason otherwise.

h1..h3 run agent-mesh; h4 is a peer without agent-mesh installed. Every test
that goes through a transport runs twice: over OpenSSH with a control master
(the default) and over paramiko (the fallback), chosen per run with
AGENT_MESH_TRANSPORT.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=4, missing={"h4"})
REPO = Path(__file__).resolve().parent.parent

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)

ADVERSARIAL = [
    "tests green",
    "quotes ' \" and ; trailing;",
    "ends with a semicolon;",
    "escaped \\; and $(touch /tmp/pwned) and `id` and $HOME",
    "-rf leading dash",
    "--",
    "back\\slashes \\\\ \\n not a newline",
    "tab\there\tand\tthere",
    "unicode: héllo wörld ✓ 日本語 🚀",
]


class Mesh:
    """A started lab with a python receiver window on h1..h3, registered and synced."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.python = str(lab.venv / "bin" / "python")
        self.transport = "openssh"

    def host(self, name: str) -> LabHost:
        return self.lab.hosts[name]

    def log(self, name: str, window: str = "py") -> Path:
        return self.host(name).home / f"{window}.jsonl"

    def received(self, name: str, window: str = "py") -> list[str]:
        path = self.log(name, window)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def start_receiver(self, name: str, window: str = "py") -> None:
        host = self.host(name)
        out = host.tmux("new-window", "-d", "-t", "main:", "-n", window, self.python, "-q",
                        "-c", RECEIVER, str(self.log(name, window)), ";",
                        # not a known agent TUI: the window opts in
                        "set-option", "-w", "-t", f"main:{window}", "@agent-accept", "python3")
        assert out.returncode == 0, out.stderr
        retry_until(lambda: ">>>" in self.screen(name, window))

    def screen(self, name: str, window: str) -> str:
        return self.host(name).tmux("capture-pane", "-p", "-t", f"main:{window}").stdout.decode()

    def run(self, name: str, *argv: str, env: dict[str, str] | None = None,
            input: bytes | None = None, timeout: float = 30):  # type: ignore[no-untyped-def]
        env = {"AGENT_MESH_TRANSPORT": self.transport, **(env or {})}
        return self.host(name).run(list(argv), env=env, input=input, timeout=timeout)

    def disconnect(self, *names: str) -> None:
        """Close every OpenSSH master these hosts hold (as a reboot of the peer would)."""
        for name in names or tuple(self.lab.hosts):
            self.host(name).run(["agent-mesh", "disconnect"])

    def sync_all(self) -> None:
        for name in ("h1", "h2", "h3"):
            self.run(name, "agent-mesh", "sync")


@pytest.fixture(scope="module")
def lab_mesh(lab: Lab) -> Mesh:
    m = Mesh(lab)
    for name in ("h1", "h2", "h3"):
        m.start_receiver(name)
        assert m.run(name, "agent-discover").returncode == 0
    m.sync_all()
    return m


@pytest.fixture(params=["openssh", "paramiko"])
def mesh(lab_mesh: Mesh, request: pytest.FixtureRequest) -> Iterator[Mesh]:
    """The lab, with every command of the test using one transport."""
    lab_mesh.transport = request.param
    try:
        yield lab_mesh
    finally:
        lab_mesh.transport = "openssh"


def send(m: Mesh, src: str, address: str, *args: str, env: dict[str, str] | None = None
         ):  # type: ignore[no-untyped-def]
    return m.run(src, "notify-pane", address, *args, env=env)


def wait_received(m: Mesh, host: str, count: int, window: str = "py",
                  timeout: float = 10) -> list[str]:
    return retry_until(lambda: len(m.received(host, window)) >= count and
                       m.received(host, window), timeout)


def test_registration_is_visible_on_every_host(mesh: Mesh) -> None:
    for name in ("h1", "h2", "h3"):
        listed = mesh.run(name, "notify-pane", "--list").stdout.decode().split()
        for owner in ("h1", "h2", "h3"):
            assert f"{owner}-main-py" in listed, (name, listed)


def test_remote_text_arrives_byte_exact(mesh: Mesh) -> None:
    before = len(mesh.received("h1"))
    bodies = [*ADVERSARIAL, "x" * 2000]
    for body in bodies:
        out = send(mesh, "h2", "h1-main-py", body)
        assert out.returncode == 0, out.stderr
        assert out.stderr == b""
    got = wait_received(mesh, "h1", before + len(bodies))[before:]
    for body, line in zip(bodies, got, strict=True):
        assert line.startswith("[from h2 @ ")
        assert line.split("] ", 1)[1] == body


def test_remote_100kb_body_arrives_whole_and_submitted_once(mesh: Mesh) -> None:
    before = len(mesh.received("h3"))
    body = "".join(f"{i:06d} lorem ipsum; $(x) `y` 'z' \"w\"\n"[:-1] + " " for i in range(2500))
    body = body[:100_000]
    out = mesh.run("h1", "notify-pane", "h3-main-py", "--stdin", input=body.encode(), timeout=60)
    assert out.returncode == 0, out.stderr
    got = wait_received(mesh, "h3", before + 1, timeout=30)
    assert len(got) == before + 1
    assert got[-1].split("] ", 1)[1] == body


def test_remote_control_characters_are_stripped_with_a_note(mesh: Mesh) -> None:
    before = len(mesh.received("h1"))
    out = send(mesh, "h3", "h1-main-py", "before\x1b[201~after\x07bell")
    assert out.returncode == 0, out.stderr
    assert b"control character" in out.stderr
    assert wait_received(mesh, "h1", before + 1)[-1].endswith("] before[201~afterbell")


def test_remote_file_drop_is_exact_and_announced(mesh: Mesh) -> None:
    h2 = mesh.host("h2")
    data = bytes(range(256)) * 400 + b"\n; $(rm -rf ~)\n"
    name = f"report-{mesh.transport}.bin"  # each transport's run drops its own file
    src = h2.home / name
    src.write_bytes(data)
    os.chown(src, h2.uid, h2.gid)
    before = len(mesh.received("h1"))
    out = send(mesh, "h2", "h1-main-py", "--file", str(src), "see attached")
    assert out.returncode == 0, out.stderr
    dropped = mesh.host("h1").home / ".agent-inbox" / "h2" / name
    assert dropped.read_bytes() == data
    assert dropped.stat().st_uid == mesh.host("h1").uid
    assert oct(dropped.parent.stat().st_mode & 0o777) == "0o700"
    notice = wait_received(mesh, "h1", before + 1)[-1]
    assert notice.endswith(
        f"] file dropped at ~/.agent-inbox/h2/{name} ({len(data)} bytes): see attached"
    )
    leftovers = list((mesh.host("h1").home / ".agent-inbox" / ".incoming").iterdir())
    assert leftovers == []


def test_remote_file_with_hostile_name_lands_inside_the_inbox(mesh: Mesh) -> None:
    h3 = mesh.host("h3")
    src = h3.home / "..evil\nname.txt"
    src.write_bytes(b"payload")
    os.chown(src, h3.uid, h3.gid)
    before = len(mesh.received("h1"))
    out = send(mesh, "h3", "h1-main-py", "--file", str(src))
    assert out.returncode == 0, out.stderr
    wait_received(mesh, "h1", before + 1)
    inbox = mesh.host("h1").home / ".agent-inbox" / "h3"
    names = [p.name for p in inbox.iterdir()]
    assert any(n.endswith("name.txt") and "/" not in n and "\n" not in n for n in names)


def test_remote_refusal_when_recipient_is_mid_prompt(mesh: Mesh) -> None:
    h1 = mesh.host("h1")
    retry_until(lambda: mesh.screen("h1", "py").rstrip().endswith(">>>"))  # idle prompt
    h1.tmux("send-keys", "-t", "main:py", "-l", "half typed draft")
    retry_until(lambda: "half typed draft" in mesh.screen("h1", "py"))
    before = len(mesh.received("h1"))
    out = send(mesh, "h2", "h1-main-py", "not now")
    assert out.returncode == 3, out.stderr
    assert b"mid-prompt" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    forced = send(mesh, "h2", "h1-main-py", "now anyway", env={"FORCE_SEND": "1"})
    assert forced.returncode == 0, forced.stderr
    got = wait_received(mesh, "h1", before + 1)
    assert got[-1].startswith("half typed draft[from h2 @ ")


def test_remote_unknown_address_suggests_close_matches(mesh: Mesh) -> None:
    out = send(mesh, "h2", "h1-main-pyy", "hello")
    assert out.returncode == 2
    assert b"h1-main-py" in out.stderr


def test_partitioned_host_fails_fast_and_keeps_its_entries(mesh: Mesh) -> None:
    assert b"h3: ok" in mesh.run("h1", "agent-mesh", "sync").stdout  # a master is up
    mesh.lab.partition("h3")
    try:
        started = time.monotonic()
        out = send(mesh, "h1", "h3-main-py", "are you there?")
        elapsed = time.monotonic() - started
        assert out.returncode == 4, out.stderr
        assert elapsed <= 5.0, elapsed
        assert b"h3" in out.stderr and b"unreachable" in out.stderr
        # the rest of the mesh keeps working
        before = len(mesh.received("h2"))
        assert send(mesh, "h1", "h2-main-py", "still here").returncode == 0
        wait_received(mesh, "h2", before + 1)
        report = mesh.run("h1", "agent-mesh", "sync")
        assert b"h3: unreachable" in report.stdout, report.stdout
        assert b"h2: ok" in report.stdout
        listed = mesh.run("h1", "notify-pane", "--list").stdout.decode().split()
        assert "h3-main-py" in listed
        doc = json.loads(mesh.run("h1", "notify-pane", "--list", "--json").stdout)
        h3_entries = [a for a in doc if a["host"] == "h3"]
        assert h3_entries and all(a["stale"] for a in h3_entries)
        assert all(a["last_seen"] for a in h3_entries)
    finally:
        mesh.lab.heal("h3")
    report = mesh.run("h1", "agent-mesh", "sync")
    assert b"h3: ok" in report.stdout, report.stdout
    doc = json.loads(mesh.run("h1", "notify-pane", "--list", "--json").stdout)
    assert not any(a["stale"] for a in doc if a["host"] == "h3")


def test_unknown_host_key_is_refused_and_nothing_is_sent(mesh: Mesh) -> None:
    known = mesh.host("h1").home / ".ssh" / "known_hosts"
    saved = known.read_bytes()
    mesh.lab.forget_host_key("h1", "h2")
    mesh.disconnect("h1")  # a master authenticated before stays trusted until it closes
    try:
        before = len(mesh.received("h2"))
        out = send(mesh, "h1", "h2-main-py", "should not arrive")
        assert out.returncode == 4
        assert b"h2" in out.stderr and b"host key" in out.stderr and b"unknown" in out.stderr
        time.sleep(0.5)
        assert len(mesh.received("h2")) == before
        assert known.read_bytes() != saved  # nothing was added back behind our back
    finally:
        known.write_bytes(saved)


def test_a_cert_authority_line_is_never_silently_ignored(lab_mesh: Mesh) -> None:
    """known_hosts trusts h2 only through @cert-authority: paramiko cannot check host
    certificates, so it refuses and says so (OpenSSH checks them itself)."""
    mesh = lab_mesh
    mesh.transport = "paramiko"
    known = mesh.host("h1").home / ".ssh" / "known_hosts"
    saved = known.read_bytes()
    mesh.lab.forget_host_key("h1", "h2")
    ca = mesh.host("h1").home / ".ssh" / "id_ed25519.pub"  # any key will do as the CA's
    with known.open("a") as fh:
        fh.write(f"@cert-authority * {' '.join(ca.read_text().split()[:2])}\n")
    try:
        out = send(mesh, "h1", "h2-main-py", "should not arrive")
        assert out.returncode == 4, out.stderr
        assert b"@cert-authority" in out.stderr and b"openssh transport" in out.stderr
        assert len(out.stderr.splitlines()) == 1
    finally:
        known.write_bytes(saved)
        mesh.transport = "openssh"


def test_changed_host_key_is_refused(mesh: Mesh) -> None:
    saved = {n: (mesh.host(n).home / ".ssh" / "known_hosts").read_bytes() for n in ("h1", "h2")}
    mesh.lab.replace_host_key("h3")
    mesh.disconnect("h1")  # as a reinstall of h3 would have ended h1's connection
    try:
        out = send(mesh, "h1", "h3-main-py", "mitm?")
        assert out.returncode == 4
        assert b"CHANGED" in out.stderr
    finally:
        fresh = mesh.lab.host_key_line("h3")
        for name, data in saved.items():
            lines = [ln for ln in data.decode().splitlines()
                     if not ln.startswith(mesh.host("h3").ip + " ")]
            path = mesh.host(name).home / ".ssh" / "known_hosts"
            path.write_text("\n".join([*lines, fresh]) + "\n")
    assert send(mesh, "h1", "h3-main-py", "trusted again").returncode == 0


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        ("[agents.h3-x\nbroken", b"invalid TOML"),
        ('[agents."h3-$(rm -rf ~)"]\nhost = "h3"\ntarget = "main:1"\n', b"not a valid address"),
        ("# padding\n" * 200_000, b"larger than"),
    ],
)
def test_hostile_slice_is_rejected_and_last_good_kept(mesh: Mesh, hostile: str,
                                                      reason: bytes) -> None:
    h3 = mesh.host("h3")
    slice_path = h3.home / ".agents" / "local.toml"
    good = slice_path.read_bytes()
    try:
        slice_path.write_text(hostile)
        report = mesh.run("h2", "agent-mesh", "sync")
        assert b"h3: rejected" in report.stdout and reason in report.stdout, report.stdout
        doc = json.loads(mesh.run("h2", "notify-pane", "--list", "--json").stdout)
        kept = [a for a in doc if a["host"] == "h3"]
        assert kept and all(a["stale"] for a in kept)
        assert all(a["address"].startswith("h3-") for a in kept)
        assert mesh.run("h2", "notify-pane", "h1-main-py", "h1 unaffected").returncode == 0
    finally:
        slice_path.write_bytes(good)
        os.chown(slice_path, h3.uid, h3.gid)
    assert b"h3: ok" in mesh.run("h2", "agent-mesh", "sync").stdout


def test_peer_without_agent_mesh_is_a_clear_wire_failure(mesh: Mesh) -> None:
    report = mesh.run("h1", "agent-mesh", "sync")
    assert b"h4: unreachable: agent-mesh is not installed there" in report.stdout, report.stdout
    # an address that says it lives on h4 (e.g. left from an old install)
    slices = mesh.host("h1").home / ".agents" / "slices"
    (slices / "h4.toml").write_text(
        '[slice.meta]\nhost = "h4"\nfetched = "2026-01-01T00:00:00Z"\nstale = true\n\n'
        '[agents.h4-main-py]\nhost = "h4"\ntarget = "main:1"\npane_id = "%1"\n'
    )
    mesh.run("h1", "agent-discover")
    out = send(mesh, "h1", "h4-main-py", "anyone?")
    assert out.returncode == 4
    assert b"h4" in out.stderr and b"not installed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_two_host_smoke_like_the_bash_tools_ci(mesh: Mesh) -> None:
    """Register a window on each of two hosts, sync, list, deliver text and a file."""
    w = f"smoke{mesh.transport[0]}"  # a fresh window for each transport's run
    for name in ("h1", "h2"):
        mesh.start_receiver(name, w)
        assert mesh.run(name, "agent-discover").returncode == 0
    for name in ("h1", "h2"):
        assert mesh.run(name, "agent-mesh", "sync").returncode in (0, 4)  # h4 has no agent-mesh
    for name in ("h1", "h2"):
        listed = mesh.run(name, "notify-pane", "--list").stdout.decode().split()
        assert {f"h1-main-{w}", f"h2-main-{w}"} <= set(listed)
    assert send(mesh, "h1", f"h2-main-{w}", "ping from alpha").returncode == 0
    assert wait_received(mesh, "h2", 1, w)[-1].endswith("] ping from alpha")
    h2 = mesh.host("h2")
    payload = b"smoke file\n" * 100
    smoke = f"{w}.txt"
    (h2.home / smoke).write_bytes(payload)
    os.chown(h2.home / smoke, h2.uid, h2.gid)
    assert send(mesh, "h2", f"h1-main-{w}", "--file", smoke).returncode == 0
    assert (mesh.host("h1").home / ".agent-inbox" / "h2" / smoke).read_bytes() == payload
    assert f"file dropped at ~/.agent-inbox/h2/{smoke}" in wait_received(mesh, "h1", 1, w)[-1]


def test_new_window_reaches_the_peers_within_seconds_without_a_sync(mesh: Mesh) -> None:
    """The hook pushes the changed slice in the background; no timer tick needed."""
    h1 = mesh.host("h1")
    share = h1.home / ".local" / "share" / "agent-mesh" / "hooks"
    share.mkdir(parents=True, exist_ok=True)
    launcher = share / "tmux-event"
    launcher.write_bytes((REPO / "agent_mesh/ops/data/tmux-event").read_bytes())
    launcher.chmod(0o755)
    for path in (h1.home / ".local", h1.home / ".local" / "share",
                 share.parent, share, launcher):
        os.chown(path, h1.uid, h1.gid)
    snippet = h1.home / "agent-mesh.tmux.conf"
    snippet.write_bytes((REPO / "agent_mesh/ops/data/tmux.conf.snippet").read_bytes())
    assert h1.tmux("source-file", str(snippet)).returncode == 0
    started = time.monotonic()
    assert h1.tmux("new-window", "-d", "-t", "main:", "-n", "pushed").returncode == 0

    def on_peers() -> bool:
        return all("h1-main-pushed" in mesh.run(name, "notify-pane", "--list").stdout.decode()
                   for name in ("h2", "h3"))

    retry_until(on_peers, timeout=10)
    print(f"new window visible on h2 and h3 after {time.monotonic() - started:.2f}s")
    assert h1.tmux("kill-window", "-t", "main:pushed").returncode == 0
    retry_until(lambda: not on_peers() and "h1-main-pushed" not in
                mesh.run("h2", "notify-pane", "--list").stdout.decode(), timeout=10)


def _connections_from(host: LabHost, ip: str) -> int:
    """How many SSH connections host's sshd has accepted from ip (LogLevel VERBOSE)."""
    log = host.hostdir / "sshd.log"
    return log.read_text().count(f"Connection from {ip} ") if log.exists() else 0


HELLO = ("import sys\nfrom agent_mesh.mesh.remote import remote_transport\n"
         "t = remote_transport(sys.argv[1])\n"
         "print(t.request({'op': 'hello'})['host'])\n"
         "jump = getattr(t, '_jump', None)\n"
         "print(t.name, jump.host if jump else '-')\n")


def test_proxyjump_from_ssh_config_is_honoured(mesh: Mesh) -> None:
    """An alias reached through a jump host (ProxyJump h2): OpenSSH acts on it itself;
    the paramiko transport resolves it with ssh -G and tunnels through the hop."""
    h1, h2, h3 = mesh.host("h1"), mesh.host("h2"), mesh.host("h3")
    config = h1.home / ".ssh" / "config"
    saved = config.read_bytes()
    try:
        with config.open("a") as fh:
            fh.write(f"\nHost h3-via-h2\n    HostName {h3.ip}\n    User {h3.user}\n"
                     "    ProxyJump h2\n    IdentityFile ~/.ssh/id_ed25519\n")
        before = _connections_from(h3, h2.ip)
        out = mesh.run("h1", mesh.python, "-c", HELLO, "h3-via-h2")
        assert out.returncode == 0, out.stderr
        reached, kind, hop = out.stdout.decode().split()
        assert (reached, kind) == ("h3", mesh.transport)
        assert hop == ("h2" if kind == "paramiko" else "-")
        assert _connections_from(h3, h2.ip) == before + 1  # h3 saw it come from h2
        # a chain, with a hop given as user@host:port as ProxyJump allows
        with config.open("a") as fh:
            fh.write(f"\nHost h3-via-chain\n    HostName {h3.ip}\n    User {h3.user}\n"
                     f"    ProxyJump h1,{h2.user}@{h2.ip}:22\n")
        out = mesh.run("h1", mesh.python, "-c", HELLO, "h3-via-chain")
        assert out.returncode == 0, out.stderr
        reached, kind, last_hop = out.stdout.decode().split()
        assert reached == "h3" and _connections_from(h3, h2.ip) == before + 2
        if kind == "paramiko":
            assert h2.ip in last_hop and last_hop.startswith(h2.user)
    finally:
        config.write_bytes(saved)
        mesh.disconnect("h1")


def test_version_mismatch_is_refused_by_the_peer(mesh: Mesh) -> None:
    """A peer running another agent-mesh version answers with a clear error."""
    request = json.dumps({"op": "hello", "protocol": 1, "version": "0.0.0-other"}).encode()
    out = mesh.run("h1", "agent-mesh", "rpc", input=request)
    reply = json.loads(out.stdout)
    assert out.returncode == 0 and reply["ok"] is False and reply["code"] == 1
    assert "0.0.0-other" in reply["error"] and "same version" in reply["error"]


OLD_PEER = """#!/bin/sh
# agent-mesh 0.0.9 as a peer: protocol 1 read the whole stdin as one JSON object
exec python3 -c '
import json, sys
raw = sys.stdin.buffer.read()
try:
    json.loads(raw)
    reply = {"ok": False, "code": 1, "error": "agent-mesh 0.1.0 on the sender, 0.0.9 here"}
except ValueError as exc:
    reply = {"ok": False, "code": 1, "error": "bad request: %s" % exc}
reply.update(protocol=1, version="0.0.9", host="h4")
print(json.dumps(reply))
'
"""


def test_a_peer_on_another_version_is_a_clear_wire_failure(mesh: Mesh) -> None:
    """h4 runs an older agent-mesh (protocol 1): a message and a file both fail with
    exit 4 naming both versions, and nothing is half-delivered."""
    h4 = mesh.host("h4")
    fake = h4.home / ".local" / "bin" / "agent-mesh"
    fake.write_text(OLD_PEER)
    fake.chmod(0o755)
    os.chown(fake, h4.uid, h4.gid)
    slices = mesh.host("h1").home / ".agents" / "slices"
    try:
        (slices / "h4.toml").write_text(
            '[slice.meta]\nhost = "h4"\nfetched = "2026-01-01T00:00:00Z"\nstale = true\n\n'
            '[agents.h4-main-py]\nhost = "h4"\ntarget = "main:1"\npane_id = "%1"\n'
        )
        mesh.run("h1", "agent-discover")
        src = mesh.host("h1").home / "old.bin"
        src.write_bytes(b"x" * 100_000)
        for extra in ([], ["--file", str(src)]):
            out = send(mesh, "h1", "h4-main-py", *extra, "hello old peer")
            assert out.returncode == 4, out.stderr
            assert b"h4" in out.stderr and b"agent-mesh 0.0.9 (protocol 1) there" in out.stderr, \
                out.stderr
            assert b"install the same version on both" in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1
    finally:
        fake.unlink()


def test_refused_remote_file_drop_leaves_nothing_behind(mesh: Mesh) -> None:
    """Refused on the peer: neither the file nor its SFTP upload stays there."""
    h1, h2 = mesh.host("h1"), mesh.host("h2")
    retry_until(lambda: mesh.screen("h1", "py").rstrip().endswith(">>>"))
    h1.tmux("send-keys", "-t", "main:py", "-l", "busy typing")
    retry_until(lambda: "busy typing" in mesh.screen("h1", "py"))
    try:
        src = h2.home / "refused.txt"
        src.write_bytes(b"later")
        os.chown(src, h2.uid, h2.gid)
        out = send(mesh, "h2", "h1-main-py", "--file", str(src))
        assert out.returncode == 3, out.stderr
        inbox = h1.home / ".agent-inbox"
        assert not (inbox / "h2" / "refused.txt").exists()
        assert list((inbox / ".incoming").iterdir()) == []
    finally:
        h1.tmux("send-keys", "-t", "main:py", "C-u")
        retry_until(lambda: mesh.screen("h1", "py").rstrip().endswith(">>>"))


def test_revoked_host_key_is_refused(mesh: Mesh) -> None:
    """A `@revoked` line in known_hosts: OpenSSH refuses, and so does our paramiko
    transport (paramiko itself skips those lines; paramiko.py reads them)."""
    known = mesh.host("h1").home / ".ssh" / "known_hosts"
    saved = known.read_bytes()
    key = mesh.lab.host_key_line("h2").split(" ", 1)[1]
    known.write_text(saved.decode() + f"@revoked * {key}")
    mesh.disconnect("h1")
    try:
        before = len(mesh.received("h2"))
        out = send(mesh, "h1", "h2-main-py", "revoked?")
        assert out.returncode == 4, out.stderr
        assert b"h2" in out.stderr and b"REVOKED" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        time.sleep(0.5)
        assert len(mesh.received("h2")) == before
    finally:
        known.write_bytes(saved)


def test_include_match_and_hostkeyalias_reach_a_peer(lab_mesh: Mesh) -> None:
    """~/.ssh/config that only OpenSSH reads right: h2 is defined by a `Match host`
    block in an Included file, its key known under a HostKeyAlias only."""
    m = lab_mesh
    h1, h2 = m.host("h1"), m.host("h2")
    ssh = h1.home / ".ssh"
    saved = {name: (ssh / name).read_bytes() for name in ("config", "known_hosts")}
    blocks = saved["config"].decode().split("\n\n")
    others = [b for b in blocks if not b.startswith("Host h2\n")]
    try:
        (ssh / "config.d").mkdir(mode=0o700, exist_ok=True)
        (ssh / "config.d" / "mesh.conf").write_text(
            f"Match host h2\n    HostName {h2.ip}\n    User {h2.user}\n"
            "    HostKeyAlias mesh-peer-h2\n    IdentityFile ~/.ssh/id_ed25519\n"
            "    IdentitiesOnly yes\n"
        )
        for path in (ssh / "config.d", ssh / "config.d" / "mesh.conf"):
            os.chown(path, h1.uid, h1.gid)
        (ssh / "config").write_text("Include ~/.ssh/config.d/*.conf\n\n" + "\n\n".join(others))
        key = m.lab.host_key_line("h2").split(" ", 1)[1]
        lines = [ln for ln in saved["known_hosts"].decode().splitlines()
                 if not ln.startswith(h2.ip + " ")]
        (ssh / "known_hosts").write_text("\n".join([*lines, f"mesh-peer-h2 {key}"]))
        m.disconnect("h1")
        before = len(m.received("h2"))
        out = send(m, "h1", "h2-main-py", "through Include, Match and HostKeyAlias")
        assert out.returncode == 0, out.stderr
        assert wait_received(m, "h2", before + 1)[-1].endswith("] through Include, Match "
                                                               "and HostKeyAlias")
    finally:
        for name, data in saved.items():
            (ssh / name).write_bytes(data)
        m.disconnect("h1")


def _master_pids(host: LabHost) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != host.uid:
                continue
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ssh: ") and b"[mux]" in title:
            pids.append(int(entry))
    return pids


def test_stale_master_is_replaced_without_the_user_noticing(lab_mesh: Mesh) -> None:
    m = lab_mesh
    cm = m.host("h2").home / ".agents" / "cm"

    def message(text: str) -> None:
        before = len(m.received("h1"))
        started = time.monotonic()
        out = send(m, "h2", "h1-main-py", text)
        assert out.returncode == 0, out.stderr
        assert out.stderr == b""
        assert time.monotonic() - started < 3
        assert wait_received(m, "h1", before + 1)[-1].endswith("] " + text)

    message("warm up")
    assert [p.name for p in cm.iterdir() if p.name.startswith("h1-")], "no master socket"
    # the peer rebooted: its connections vanished without a FIN reaching the master
    m.lab.partition("h1")
    assert m.lab.kill_ssh_sessions("h1") > 0
    m.lab.heal("h1")
    message("after the peer lost its connections")
    # the peer's sshd restarted and its connections were closed
    m.lab.restart_sshd("h1")
    m.lab.kill_ssh_sessions("h1")
    message("after an sshd restart")
    # our own master was killed: its socket file is left behind
    pids = _master_pids(m.host("h2"))
    assert pids
    for pid in pids:
        os.kill(pid, 9)
    message("after the master was killed")
    out = m.run("h2", "agent-mesh", "disconnect", "h1")  # and a new master serves h1
    assert out.stdout == b"agent-mesh disconnect: closed the master to h1\n", out


def test_disconnect_closes_masters_and_reuse_can_be_turned_off(lab_mesh: Mesh) -> None:
    m = lab_mesh
    assert send(m, "h2", "h1-main-py", "open a master").returncode == 0
    doc = json.loads(m.run("h2", m.python, "-c", "from agent_mesh.ops.doctor import run_checks, "
                           "to_json; print(to_json(run_checks()))").stdout)
    peer = next(c for c in doc["checks"] if c["name"] == "peer:h1")
    assert "reachable via openssh (master was up)" in peer["detail"], peer
    out = m.run("h2", "agent-mesh", "disconnect", "h1")
    assert out.stdout == b"agent-mesh disconnect: closed the master to h1\n", out
    out = m.run("h2", "agent-mesh", "disconnect", "h1")
    assert out.stdout == b"agent-mesh disconnect: no master was open\n", out
    cm = m.host("h2").home / ".agents" / "cm"
    out = send(m, "h2", "h1-main-py", "no reuse", env={"AGENT_MESH_CONTROL_PERSIST": "no"})
    assert out.returncode == 0, out.stderr
    assert not [p for p in cm.iterdir() if p.name.startswith("h1-")]
    assert m.run("h2", "agent-mesh", "sync").returncode in (0, 4)  # h4: not installed
    assert len([p for p in cm.iterdir() if p.name.startswith(("h1-", "h3-"))]) == 2
    out = m.run("h2", "agent-mesh", "disconnect")
    assert b"closed the master to h1" in out.stdout and b"closed the master to h3" in out.stdout


def test_openssh_path_imports_neither_paramiko_nor_subprocess(lab_mesh: Mesh) -> None:
    """A remote message over OpenSSH starts `ssh` with posix_spawn: no paramiko
    (~150 ms), no subprocess, click, dataclasses, pathlib, typing or tomllib, and
    no json (with its re and enum) or collections (issue 20)."""
    m = lab_mesh
    assert send(m, "h2", "h1-main-py", "warm the registry cache").returncode == 0
    out = m.run("h2", m.python, "-X", "importtime", "-c",
                "import sys; from agent_mesh.cli.notify import main; sys.exit(main())",
                "h1-main-py", "lean")
    assert out.returncode == 0, out.stderr[-800:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "agent_mesh.mesh.openssh" in imported
    heavy = {"paramiko", "cryptography", "subprocess", "click", "dataclasses", "pathlib",
             "typing", "tomllib", "shutil", "json", "re", "enum", "collections"}
    assert not heavy & {name.split(".")[0] for name in imported}, sorted(
        heavy & {name.split(".")[0] for name in imported})
