"""Trust and sync between peers, on the network-namespace lab (needs root).

The three lab hosts go by aliases that prefix each other, as real meshes do:
h1 is `h1`, h2 is `peer`, h3 is `peer-2`. Peers speak only for themselves, a
push is a hint the receiver verifies by pulling, each exchange has a wall-clock
deadline, and nothing a peer sends reaches a terminal raw.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

ALIASES = {"h1": "h1", "h2": "peer", "h3": "peer-2"}
RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)
ESC_ROLE = "\x1b[2Jcleared"
OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"


class Peers:
    """A started lab whose hosts use prefixing aliases, with a receiver on each."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.python = str(lab.venv / "bin" / "python")

    def host(self, name: str) -> LabHost:
        return self.lab.hosts[name]

    def run(self, name: str, *argv: str, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
        return self.host(name).run(list(argv), env=env, timeout=timeout)

    def write(self, name: str, rel: str, text: str, mode: int = 0o644) -> Path:
        """Write a file in a host's HOME, owned by its user."""
        host = self.host(name)
        path = host.home / rel
        path.write_text(text)
        path.chmod(mode)
        os.chown(path, host.uid, host.gid)
        return path

    def log(self, name: str, window: str) -> Path:
        return self.host(name).home / f"{window}.jsonl"

    def received(self, name: str, window: str = "py") -> list[str]:
        path = self.log(name, window)
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def start_receiver(self, name: str, target: str, window: str) -> None:
        host = self.host(name)
        out = host.tmux("new-window", "-d", "-t", target, "-n", window, self.python, "-q",
                        "-c", RECEIVER, str(self.log(name, window)))
        assert out.returncode == 0, out.stderr
        retry_until(lambda: ">>>" in host.tmux("capture-pane", "-p", "-t",
                                                f"{target.rstrip(':')}:{window}").stdout.decode())

    def registry(self, name: str) -> dict[str, dict[str, object]]:
        doc = json.loads(self.run(name, "notify-pane", "--list", "--json").stdout)
        return {a["address"]: a for a in doc}

    def rescan(self, name: str) -> None:
        """Rebuild a host's local.toml from its tmux without syncing (no push, no pull)."""
        code = ("from agent_mesh.registry import local; from agent_mesh.tmux import Tmux; "
                "local.rescan(Tmux())")
        out = self.run(name, self.python, "-c", code)
        assert out.returncode == 0, out.stderr

    def assemble(self, name: str) -> None:
        """Rewrite a host's registry.toml from the slices it has, contacting nobody."""
        out = self.run(name, self.python, "-c",
                       "from agent_mesh.registry import view; view.assemble()")
        assert out.returncode == 0, out.stderr

    def replace_agent_mesh(self, name: str, script: str) -> None:
        """What the peer's rpc runs (REMOTE_COMMAND's ~/.local/bin/agent-mesh, once the
        launcher setup writes is gone) becomes script."""
        path = self.host(name).home / ".local" / "bin" / "agent-mesh"
        path.unlink()
        (self.host(name).home / ".local" / "share" / "agent-mesh" / "rpc").unlink()
        self.write(name, ".local/bin/agent-mesh", script, 0o755)

    def restore_agent_mesh(self, name: str) -> None:
        host = self.host(name)
        path = host.home / ".local" / "bin" / "agent-mesh"
        path.unlink(missing_ok=True)
        path.symlink_to(self.lab.venv / "bin" / "agent-mesh")
        os.lchown(path, host.uid, host.gid)
        self.lab.write_rpc_launcher(host)


@pytest.fixture(scope="module")
def peers(lab: Lab) -> Peers:
    p = Peers(lab)
    config = "".join(
        f"\nHost {alias}\n    HostName {h.ip}\n    User {h.user}\n"
        "    IdentityFile ~/.ssh/id_ed25519\n    IdentitiesOnly yes\n"
        "    UserKnownHostsFile ~/.ssh/known_hosts\n    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n    ConnectTimeout 3\n"
        for name, alias in ALIASES.items() if alias != name
        for h in [lab.hosts[name]]
    )
    for name, alias in ALIASES.items():
        ssh_config = p.host(name).home / ".ssh" / "config"
        p.write(name, ".ssh/config", ssh_config.read_text() + config, 0o600)
        p.write(name, ".agents/self.conf", f"{alias}\n")
        p.write(name, ".agents/peers.conf", "".join(f"{a}\n" for a in ALIASES.values()))
        p.start_receiver(name, "main:", "py")
        assert p.run(name, "agent-discover").returncode == 0
    for name in ALIASES:
        assert p.run(name, "agent-mesh", "sync").returncode == 0
    return p


@pytest.mark.lab(hosts=3)
def test_an_address_belongs_to_the_longest_alias(peers: Peers) -> None:
    """`peer` serving `peer-2-prod-deploy` while `peer-2` is down: never delivered to peer."""
    h2 = peers.host("h2")
    assert h2.tmux("new-session", "-d", "-s", "2-prod", "-x", "120", "-y", "30").returncode == 0
    peers.start_receiver("h2", "2-prod:", "deploy")
    peers.rescan("h2")
    local = (h2.home / ".agents" / "local.toml").read_text()
    assert "peer-2-prod-deploy" in local  # peer really has a window by that name
    peers.lab.partition("h3")
    try:
        report = peers.run("h1", "agent-mesh", "sync")
        out = report.stdout.decode()
        assert "peer-2: unreachable" in out, out
        assert "peer: ok" in out and "peer-2-prod-deploy belongs to peer-2" in out, out
        assert "peer-2-prod-deploy" not in peers.registry("h1")
        before = len(peers.received("h2", "deploy"))
        sent = peers.run("h1", "notify-pane", "peer-2-prod-deploy", "deploy now")
        assert sent.returncode == 2, sent
        # A registry that still lists it on peer (e.g. written before this rule) is not
        # trusted either: resolve gives the address to the longest alias, peer-2.
        slices = peers.host("h1").home / ".agents" / "slices"
        stored = (slices / "peer.toml").read_text()
        peers.write("h1", ".agents/slices/peer.toml", stored + (
            '\n[agents.peer-2-prod-deploy]\nhost = "peer"\ntarget = "2-prod:1"\n'))
        peers.assemble("h1")
        assert peers.registry("h1")["peer-2-prod-deploy"]["host"] == "peer"
        sent = peers.run("h1", "notify-pane", "peer-2-prod-deploy", "deploy now")
        assert sent.returncode == 2, sent
        assert b"belongs to host peer-2" in sent.stderr, sent.stderr
        time.sleep(0.5)  # a wrong delivery would have landed by now
        assert len(peers.received("h2", "deploy")) == before
    finally:
        peers.lab.heal("h3")
        h2.tmux("kill-session", "-t", "2-prod")
        peers.rescan("h2")
    assert peers.run("h1", "agent-mesh", "sync").returncode == 0


@pytest.mark.lab(hosts=3)
def test_foreign_entries_are_dropped_with_a_note_and_the_rest_kept(peers: Peers) -> None:
    h3 = peers.host("h3")
    slice_path = h3.home / ".agents" / "local.toml"
    good = slice_path.read_text()
    try:
        peers.write("h3", ".agents/local.toml", good + (
            '\n[agents.h1-main-py]\nhost = "peer-2"\ntarget = "main:1"\n'
            '\n[agents.peer-2-main-other]\nhost = "h1"\ntarget = "main:1"\n'))
        out = peers.run("h2", "agent-mesh", "sync").stdout.decode()
        assert f"peer-2: ok, {good.count('[agents.')} agent(s)" in out, out  # its own, all
        assert "dropped 2 entries not its own" in out, out
        assert "h1-main-py is not an address of peer-2" in out, out
        assert "peer-2-main-other claims host 'h1'" in out, out
        listed = peers.registry("h2")
        assert listed["h1-main-py"]["host"] == "h1"
        assert "peer-2-main-other" not in listed and "peer-2-main-py" in listed
    finally:
        peers.write("h3", ".agents/local.toml", good)
    assert "peer-2: ok" in peers.run("h2", "agent-mesh", "sync").stdout.decode()


@pytest.mark.lab(hosts=3)
def test_a_push_is_a_hint_the_receiver_verifies_by_pulling(peers: Peers) -> None:
    """Any member can send {"op":"exchange","from":"peer",...}: nothing it says is stored."""
    forged = ('[agents.peer-main-py]\nhost = "peer"\ntarget = "main:9"\npane_id = "%99"\n'
              'role = "SPOOFED"\n')
    log = peers.host("h3").home / ".agents" / "push.log"
    log_before = log.read_text() if log.exists() else ""
    code = ("import sys; from agent_mesh.mesh.paramiko import ParamikoTransport\n"
            "t = ParamikoTransport('peer-2')\n"
            "req = {'op': 'exchange', 'from': 'peer', 'slice': sys.stdin.read()}\n"
            "print(t.call(req)['host'])\n")
    out = peers.host("h1").run([peers.python, "-c", code], input=forged.encode())
    assert out.returncode == 0 and out.stdout.split() == [b"peer-2"], out
    # peer-2 pulled peer's real slice over its own connection to peer
    retry_until(lambda: "pull peer: ok" in log.read_text()[len(log_before):], timeout=10)
    entry = peers.registry("h3")["peer-main-py"]
    assert entry["role"] != "SPOOFED" and entry["pane_id"] != "%99", entry
    stored = (peers.host("h3").home / ".agents" / "slices" / "peer.toml").read_text()
    assert "SPOOFED" not in stored


@pytest.mark.lab(hosts=3)
def test_a_push_of_what_was_verified_needs_no_pull(peers: Peers) -> None:
    """The timer's syncs push unchanged slices: only a change costs the receiver a pull."""
    assert peers.run("h1", "agent-mesh", "sync").returncode == 0  # h1 verified peer just now
    text = (peers.host("h2").home / ".agents" / "local.toml").read_text()
    code = ("import sys; from agent_mesh.mesh import sync\n"
            "print(sync.schedule_pull('peer', sys.stdin.read()))\n")
    same = peers.host("h1").run([peers.python, "-c", code], input=text.encode())
    assert same.stdout.split() == [b"False"], same
    changed = text + '\n[agents.peer-main-new]\nhost = "peer"\ntarget = "main:5"\n'
    other = peers.host("h1").run([peers.python, "-c", code], input=changed.encode())
    assert other.stdout.split() == [b"True"], other


@pytest.mark.lab(hosts=3)
def test_a_real_push_still_reaches_the_peers_within_seconds(peers: Peers) -> None:
    h2 = peers.host("h2")
    assert h2.tmux("new-window", "-d", "-t", "main:", "-n", "pushed").returncode == 0
    peers.rescan("h2")
    started = time.monotonic()
    assert peers.run("h2", "agent-mesh", "push").returncode == 0
    retry_until(lambda: all("peer-main-pushed" in peers.registry(n) for n in ("h1", "h3")),
                timeout=10)
    print(f"pushed window visible on h1 and peer-2 after {time.monotonic() - started:.2f}s")
    h2.tmux("kill-window", "-t", "main:pushed")
    peers.rescan("h2")
    assert peers.run("h2", "agent-mesh", "push").returncode == 0
    retry_until(lambda: "peer-main-pushed" not in peers.registry("h1"), timeout=10)


TRICKLE = "#!/bin/sh\nwhile :; do printf ' ' || exit 0; sleep 2; done\n"


@pytest.mark.lab(hosts=3)
def test_a_trickling_peer_is_cut_at_the_deadline(peers: Peers) -> None:
    """One byte every 2 s: sync ends at the deadline, the healthy peer's change lands."""
    h2 = peers.host("h2")
    peers.replace_agent_mesh("h3", TRICKLE)
    stuck: subprocess.Popen[bytes] | None = None
    try:
        assert h2.tmux("new-window", "-d", "-t", "main:", "-n", "fresh").returncode == 0
        peers.rescan("h2")
        started = time.monotonic()
        report = peers.run("h1", "agent-mesh", "sync", timeout=60)
        elapsed = time.monotonic() - started
        out = report.stdout.decode()
        print(f"sync with a trickling peer took {elapsed:.1f}s")
        assert 9 <= elapsed <= 14, (elapsed, out)  # the default deadline, 10 s
        assert report.returncode == 4, out
        assert re.search(r"peer-2: unreachable: no (complete )?answer within 10 ?s", out), out
        assert "peer: ok" in out, out
        assert "peer-main-fresh" in peers.registry("h1")
        assert all(a["stale"] for a in peers.registry("h1").values() if a["host"] == "peer-2")

        # A push that is stuck (here: stopped mid-round) holds push.lock; a newer push
        # does not wait on it once its round has outlived the holder's deadline.
        h1 = peers.host("h1")
        argv = ["ip", "netns", "exec", h1.ns, "setpriv", f"--reuid={h1.uid}",
                f"--regid={h1.gid}", "--init-groups", "env", "-i", "--",
                *(f"{k}={v}" for k, v in h1.env({"AGENT_MESH_SYNC_DEADLINE": "3"}).items()),
                "agent-mesh", "push"]  # every exec in the chain keeps the pid
        stuck = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 cwd=h1.home)
        lock = h1.home / ".agents" / "push.lock"
        retry_until(lambda: lock.exists() and lock.read_text().startswith(f"{stuck.pid} "),
                    timeout=10)
        os.kill(stuck.pid, signal.SIGSTOP)
        assert h2.tmux("new-window", "-d", "-t", "main:", "-n", "fresher").returncode == 0
        peers.rescan("h2")
        quick = {"AGENT_MESH_SYNC_DEADLINE": "2"}

        def pushed() -> bool:
            started = time.monotonic()
            peers.run("h1", "agent-mesh", "push", env=quick)
            assert time.monotonic() - started < 5  # never waits on the stuck holder
            return "peer-main-fresher" in peers.registry("h1")

        started = time.monotonic()
        retry_until(pushed, timeout=20, interval=0.5)
        print(f"newer push superseded the stuck one after {time.monotonic() - started:.1f}s")
        assert stuck.poll() is None  # still stopped, still holding push.lock
    finally:
        if stuck is not None:
            stuck.kill()
            stuck.wait()
        peers.restore_agent_mesh("h3")
        for window in ("fresh", "fresher"):
            h2.tmux("kill-window", "-t", f"main:{window}")
        peers.rescan("h2")
    assert peers.run("h1", "agent-mesh", "sync").returncode == 0


@pytest.mark.lab(hosts=3)
def test_nothing_from_a_peer_reaches_the_terminal_raw(peers: Peers) -> None:
    """ESC[2J and OSC 52 (clipboard write) in a slice and in a delivery reply."""
    h2 = peers.host("h2")
    slice_path = h2.home / ".agents" / "local.toml"
    good = slice_path.read_text()
    version = peers.run("h1", peers.python, "-c", "import agent_mesh; "
                        "print(agent_mesh.__version__)").stdout.decode().strip()
    from agent_mesh.mesh.wire import PROTOCOL

    reply = {"ok": True, "protocol": PROTOCOL, "version": version, "host": "peer",
             "result": {"address": "peer-main-py", "target": f"main:1{ESC_ROLE}{OSC52}",
                        "pane_id": "%1", "bytes_sent": 5, "notes": [f"look {OSC52}here"]}}
    try:
        def esc(text: str) -> str:
            return json.dumps(text)[1:-1]  # TOML basic strings take JSON's \u001b escapes

        peers.write("h2", ".agents/local.toml", good + (
            f'\n[agents.peer-main-evil]\nhost = "peer"\ntarget = "{esc("main:7" + OSC52)}"\n'
            f'role = "{esc(ESC_ROLE)}"\nscope = "{esc(OSC52 + "scope")}"\n'
            f'command = "{esc(chr(0x202e) + "sh")}"\n'
            f'\n[agents.peer-x]\nhost = "{esc(ESC_ROLE)}"\ntarget = "main:1"\n'))
        outputs = []
        for argv in (["agent-mesh", "sync"], ["agent-mesh", "list"], ["agent-discover"],
                     ["notify-pane", "--list"]):
            out = peers.run("h1", *argv)
            outputs.append((argv, out.stdout + out.stderr))
        assert "peer-main-evil" in peers.registry("h1")
        assert b"peer-main-evil" in outputs[1][1]
        peers.replace_agent_mesh("h2", "#!/bin/sh\ncat >/dev/null\nprintf '%s' '"
                                 + json.dumps(reply) + "'\n")
        sent = peers.run("h1", "notify-pane", "peer-main-py", f"hi {OSC52} and {ESC_ROLE}")
        assert sent.returncode == 0, sent
        assert b"look here" in sent.stderr and b"main:1cleared" in sent.stdout, sent
        outputs.append((["notify-pane"], sent.stdout + sent.stderr))
        for argv, data in outputs:
            assert b"\x1b" not in data and b"\x07" not in data, (argv, data)
            assert "\u202e".encode() not in data, (argv, data)
    finally:
        peers.restore_agent_mesh("h2")
        peers.write("h2", ".agents/local.toml", good)
    assert peers.run("h1", "agent-mesh", "sync").returncode == 0


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, tab\there", "plain text, tab here"),
        ("a\x1b[2Jb\x1b[1;31mc", "abc"),
        ("x\x1b]52;c;cm0gLXJmIH4K\x07y", "xy"),  # OSC 52 clipboard write, BEL-terminated
        ("x\x1b]0;title\x1b\\y", "xy"),  # ST-terminated
        ("x\x1b]52;c;unterminated", "x"),
        ("a\x1b]52;c;zz\x1b[31mred", "a"),  # unterminated: dropped to the end
        ("\x9b2Jc1\x9d52;c;x\x9cok", "c1ok"),  # C1 CSI and OSC
        ("bell\x07 nul\x00 del\x7f line\nbreak", "bell? nul? del? line break"),
        ("\u202eevil\u2066", "evil"),  # bidi controls dropped, not obeyed
        ("zero\u200bwidth", "zero\\u200bwidth"),  # other format characters: shown
        ("\x1b(B\x1b7\x1bcq", "q"),
        ("trailing escape\x1b", "trailing escape"),
    ],
)
def test_printable_strips_sequences_whole(raw: str, shown: str) -> None:
    from agent_mesh.errors import printable

    assert printable(raw) == shown
    assert printable("two\nlines\x1b[2J") == "two lines"


@pytest.mark.lab(hosts=3)
def test_rpc_delivers_to_the_entrys_own_tmux_server(peers: Peers) -> None:
    """A window on peer's second server (`tmux -L other`) is reached over rpc in that
    server's pane, never in the pane of that id on peer's default server (issue 7.3)."""
    h2 = peers.host("h2")
    log = peers.log("h2", "other")
    other = ("-L", "other")
    out = h2.tmux(*other, "-f", "/dev/null", "new-session", "-d", "-s", "work", "-n", "y",
                  "-x", "120", "-y", "30", peers.python, "-q", "-c", RECEIVER, str(log))
    assert out.returncode == 0, out.stderr
    try:
        h2.tmux(*other, "set-option", "-w", "-t", "work:y", "@agent-accept", "python")
        retry_until(lambda: ">>>" in h2.tmux(*other, "capture-pane", "-p", "-t",
                                              "work:y").stdout.decode())
        socket = h2.tmux(*other, "display-message", "-p", "#{socket_path}").stdout.decode()
        out = peers.run("h2", "agent-register-hook", "rescan",
                        env={"TMUX": f"{socket.strip()},1,0"})
        assert out.returncode == 0, out
        assert peers.run("h1", "agent-mesh", "sync").returncode == 0
        listed = peers.registry("h1")
        assert listed["peer-other-work-y"]["host"] == "peer", listed
        assert "peer-main-py" in listed  # the default server's entries are still there
        before = len(peers.received("h2", "py"))
        sent = peers.run("h1", "notify-pane", "peer-other-work-y", "to the other server")
        assert sent.returncode == 0, sent
        retry_until(lambda: any(x.endswith("] to the other server")
                                for x in peers.received("h2", "other")), timeout=10)
        assert len(peers.received("h2", "py")) == before
        default = h2.tmux("capture-pane", "-p", "-t", "%0").stdout.decode()
        assert "to the other server" not in default
    finally:
        h2.tmux(*other, "kill-server")
        assert peers.run("h2", "agent-discover").returncode == 0
    assert peers.run("h1", "agent-mesh", "sync").returncode == 0
    assert "peer-other-work-y" not in peers.registry("h1")
