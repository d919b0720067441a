"""Mesh keys on real hosts (issue 18; network-namespace lab, each host its own sshd, user,
HOME and tmux), over both transports.

h1 and h2 reach every other host with their mesh keys; h3 reaches h2 with its mesh key
and h1 with its login key (a mixed mesh). h2 grants no peer force or spawn but h3 spawn;
h1 and h3 keep the lab's grant of both to every peer.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=3)

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)
HOSTS = ("h1", "h2", "h3")
TRUSTS = {"h1": ("h2", "h3"), "h2": ("h1", "h3"), "h3": ("h2",)}


class Mesh:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.python = str(lab.venv / "bin" / "python")
        self.transport = "openssh"
        self.keys_before: dict[str, bytes] = {}

    def host(self, name: str) -> LabHost:
        return self.lab.hosts[name]

    def received(self, name: str, window: str = "py") -> list[str]:
        path = self.host(name).home / f"{window}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def received_log(self, name: str, address: str) -> list[dict[str, object]]:
        path = self.host(name).home / ".agents" / "log" / "received" / f"{address}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def start_receiver(self, name: str, window: str = "py") -> None:
        host = self.host(name)
        out = host.tmux("new-window", "-d", "-t", "main:", "-n", window, self.python, "-q",
                        "-c", RECEIVER, str(host.home / f"{window}.jsonl"), ";",
                        "set-option", "-w", "-t", f"main:{window}", "@agent-accept", "python3")
        assert out.returncode == 0, out.stderr
        retry_until(lambda: ">>>" in self.screen(name, window))

    def screen(self, name: str, window: str) -> str:
        return self.host(name).tmux("capture-pane", "-p", "-t", f"main:{window}").stdout.decode()

    def run(self, name: str, *argv: str, env: dict[str, str] | None = None,
            input: bytes | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[bytes]:
        env = {"AGENT_MESH_TRANSPORT": self.transport, **(env or {})}
        return self.host(name).run(list(argv), env=env, input=input, timeout=timeout)

    def popen(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        h = self.host(name)
        env = h.env({"AGENT_MESH_TRANSPORT": self.transport})
        full = ["ip", "netns", "exec", h.ns, "setpriv", f"--reuid={h.uid}", f"--regid={h.gid}",
                "--init-groups", "env", "-i", "--", *(f"{k}={v}" for k, v in env.items()),
                *argv]
        return subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=h.home)

    def mesh_ssh(self, src: str, dst: str, *args: str, command: tuple[str, ...] = ()
                 ) -> subprocess.CompletedProcess[bytes]:
        """ssh from src to dst with src's mesh key alone (no ~/.ssh/config, no login key)."""
        h, peer = self.host(src), self.host(dst)
        return h.run(["ssh", "-F", "/dev/null", "-i", str(h.home / ".agents/mesh_ed25519"),
                      "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o",
                      f"UserKnownHostsFile={h.home}/.ssh/known_hosts", "-o",
                      "ConnectTimeout=5", "-l", peer.user, *args, peer.ip, *command], timeout=30)


@pytest.fixture(scope="module")
def lab_mesh(lab: Lab) -> Mesh:
    """The shared lab (conftest), with mesh keys installed as the module docstring says."""
    m = Mesh(lab)
    for name in HOSTS:
        m.keys_before[name] = (m.host(name).home / ".ssh/authorized_keys").read_bytes()
        m.start_receiver(name)
        out = m.run(name, "agent-mesh", "trust", "init")
        assert out.returncode == 0, out.stderr
    for name, peers in TRUSTS.items():
        for peer in peers:
            out = m.run(name, "agent-mesh", "trust", "add", peer)
            assert out.returncode == 0, out.stderr
            assert "restrict,command=" in out.stdout.decode(), out.stdout
    h2 = m.host("h2")
    (h2.home / ".agents/config.toml").write_text("[peers.h3]\nspawn = true\n")
    for name in HOSTS:
        assert m.run(name, "agent-discover").returncode == 0
    for name in HOSTS:
        assert m.run(name, "agent-mesh", "sync").returncode == 0
    return m


@pytest.fixture(params=["openssh", "paramiko"])
def mesh(lab_mesh: Mesh, request: pytest.FixtureRequest) -> Iterator[Mesh]:
    lab_mesh.transport = request.param
    try:
        yield lab_mesh
    finally:
        lab_mesh.transport = "openssh"


def test_the_installed_line_is_restricted_to_agent_mesh(lab_mesh: Mesh) -> None:
    text = (lab_mesh.host("h2").home / ".ssh/authorized_keys").read_text()
    ours = [line for line in text.splitlines() if "agent-mesh:" in line]
    assert len(ours) == 2, ours  # h1's and h3's
    launcher = lab_mesh.host("h2").home / ".local/share/agent-mesh/rpc"
    assert f'restrict,command="{launcher} --peer h1" ssh-ed25519 ' in text
    assert any(line.endswith(" agent-mesh:h1") for line in ours)
    key = lab_mesh.host("h1").home / ".agents/mesh_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600


def test_a_mesh_key_opens_no_shell_command_pty_or_forward(lab_mesh: Mesh) -> None:
    m = lab_mesh
    h2 = m.host("h2")
    out = m.mesh_ssh("h1", "h2", command=("id",))  # the command is replaced by the forced one
    assert b"uid=" not in out.stdout and out.returncode != 0, out
    assert b"agent-mesh requests only" in out.stderr, out.stderr
    out = m.mesh_ssh("h1", "h2", "-t", "-t", command=("bash", "-i"))
    assert b"uid=" not in out.stdout and out.returncode != 0
    assert b"PTY allocation request failed" in out.stderr or b"requests only" in out.stderr
    out = m.mesh_ssh("h1", "h2", "-W", f"{h2.ip}:22")
    assert out.returncode != 0 and b"SSH-2.0" not in out.stdout
    assert b"prohibited" in out.stderr, out.stderr
    # -L: a port, and h2's tmux socket (which would be a shell): nothing comes through
    sock = h2.tmux_tmpdir / f"tmux-{h2.uid}" / "default"
    script = (
        f"ssh -F /dev/null -i ~/.agents/mesh_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
        f"-o UserKnownHostsFile=~/.ssh/known_hosts -l {h2.user} -N "
        f"-L 127.0.0.1:2222:{h2.ip}:22 -L $HOME/t.sock:{sock} {h2.ip} 2>$HOME/fwd.err & "
        "pid=$!; sleep 2; "
        "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1',2222),3); "
        "s.settimeout(3); print(repr(s.recv(64)))\"; "
        "python3 -c \"import socket,os; s=socket.socket(socket.AF_UNIX); "
        "s.connect(os.path.expanduser('~/t.sock')); s.settimeout(3); print(repr(s.recv(64)))\"; "
        "kill $pid; cat $HOME/fwd.err")
    out = m.host("h1").run(["bash", "-c", script], timeout=30)
    assert b"SSH-2.0" not in out.stdout and out.stdout.count(b"b''") == 2, out
    assert b"prohibited" in out.stdout, out


def test_messages_and_files_go_over_mesh_keys_with_a_verified_host(mesh: Mesh) -> None:
    before = len(mesh.received("h2"))
    out = mesh.run("h1", "notify-pane", "h2-main-py", f"hello over {mesh.transport}")
    assert out.returncode == 0, out.stderr
    want = f"hello over {mesh.transport}"
    got = retry_until(lambda: [g for g in mesh.received("h2")[before:] if want in g],
                      timeout=15)
    assert re.match(r"\[from h1 @ \S+ \u2713h1\] hello over ", got[0]), got
    record = mesh.received_log("h2", "h2-main-py")[-1]
    assert record["verified"] is True and record["host"] == "h1", record
    src = mesh.host("h1").home / "notes.txt"
    src.write_text("file over a mesh key\n")
    out = mesh.run("h1", "notify-pane", "h2-main-py", "--file", str(src), "see file")
    assert out.returncode == 0, out.stderr
    inbox = mesh.host("h2").home / ".agent-inbox"
    retry_until(lambda: any(p.read_text() == "file over a mesh key\n"
                            for p in inbox.rglob("notes*.txt")), timeout=15)
    retry_until(lambda: any("see file" in g for g in mesh.received("h2")), timeout=15)
    peers_log = (mesh.host("h2").home / ".agents/log/peers.jsonl").read_text().splitlines()
    last = json.loads(peers_log[-1])
    assert (last["op"], last["host"], last["verified"]) == ("deliver", "h1", True), last


def test_sync_status_peek_queue_and_inbox_over_mesh_keys(mesh: Mesh) -> None:
    out = mesh.run("h1", "agent-mesh", "sync")
    assert out.returncode == 0, out.stdout + out.stderr
    out = mesh.run("h1", "agent-mesh", "status", "--json")
    assert out.returncode == 0, out.stderr
    assert "h2-main-py" in out.stdout.decode() and "h3-main-py" in out.stdout.decode()
    out = mesh.run("h1", "agent-mesh", "peek", "h2-main-py")
    assert out.returncode == 0 and b">>>" in out.stdout, out
    out = mesh.run("h1", "agent-mesh", "inbox", "h2-main-py")
    assert out.returncode == 0, out.stderr
    out = mesh.run("h1", "agent-mesh", "queue", "--json")
    assert out.returncode == 0, out.stderr
    # a queued message: h3's pane has a draft, the message waits there, then lands
    h3 = mesh.host("h3")
    h3.tmux("send-keys", "-t", "main:py", "-l", "a draft")
    retry_until(lambda: "a draft" in mesh.screen("h3", "py"))
    before = len(mesh.received("h3"))
    out = mesh.run("h1", "notify-pane", "--queue", "h3-main-py", "queued via key")
    assert out.returncode == 5, out.stderr
    h3.tmux("send-keys", "-t", "main:py", "C-u")
    got = retry_until(lambda: mesh.received("h3")[before:], timeout=15)
    assert got[-1].endswith("\u2713h1] queued via key"), got


def _ask(mesh: Mesh, target: str, window_host: str) -> tuple[subprocess.Popen[bytes], str,
                                                             str]:
    before = len(mesh.received(window_host))
    asker = mesh.popen("h1", "agent-mesh", "ask", target, "--timeout", "40s", "--json",
                       "ready?")
    question = retry_until(lambda: mesh.received(window_host)[before:], timeout=20)[0]
    route, ask_id = re.search(r"reply: notify-pane (\S+) --re ([0-9a-f]+) ", question).groups()  # type: ignore[union-attr]
    return asker, route, ask_id


def test_ask_and_reply_over_mesh_keys_and_a_reply_from_another_host_is_refused(
        mesh: Mesh) -> None:
    from agent_mesh import __version__
    from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND

    # h1 asks h3's agent; h2, with its mesh key to h1, answers in its place: refused
    asker, route, ask_id = _ask(mesh, "h3-main-py", "h3")
    envelope = {"sender": "h2-main-py", "address": route, "body": "forged",
                "timestamp": "2026-12-02T10:00:00Z", "re": ask_id}
    request = {"op": "reply", "envelope": envelope, "protocol": PROTOCOL,
               "version": __version__, "sender_host": "h2"}
    h2 = mesh.host("h2")
    out = h2.run(["ssh", "-i", str(h2.home / ".agents/mesh_ed25519"), "-o",
                  "IdentitiesOnly=yes", "h1", REMOTE_COMMAND],
                 input=json.dumps(request).encode() + b"\n")
    answer = json.loads(out.stdout)
    assert answer["ok"] is False and answer["code"] == 3, answer
    assert "came with h2's mesh key" in answer["error"], answer
    reply = mesh.run("h3", "notify-pane", route, "--re", ask_id, "from h3",
                     env={"AGENT_NAME": "h3-main-py"})
    assert reply.returncode == 0, reply.stderr
    out_b, err = asker.communicate(timeout=40)
    assert asker.returncode == 0, err
    assert json.loads(out_b)["reply"] == "from h3"
    # h1 asks h2's agent, which answers over its mesh key
    asker, route, ask_id = _ask(mesh, "h2-main-py", "h2")
    reply = mesh.run("h2", "notify-pane", route, "--re", ask_id, "yes",
                     env={"AGENT_NAME": "h2-main-py"})
    assert reply.returncode == 0, reply.stderr
    out_b, err = asker.communicate(timeout=40)
    assert asker.returncode == 0, err
    assert json.loads(out_b)["reply"] == "yes"


def test_a_forged_sender_host_is_refused(mesh: Mesh) -> None:
    from agent_mesh import __version__
    from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND

    out = mesh.run("h1", "notify-pane", "h2-main-py", "from h3, honest",
                   env={"AGENT_NAME": "h3-main-py"})
    assert out.returncode == 4, out
    assert b"claims host h3, but it came with h1's mesh key" in out.stderr, out.stderr
    # a raw request whose header speaks for h3, over h1's mesh key
    envelope = {"sender": "x", "address": "h2-main-py", "body": "hi",
                "timestamp": "2026-12-02T10:00:00Z"}
    request = {"op": "deliver", "envelope": envelope, "protocol": PROTOCOL,
               "version": __version__, "sender_host": "h3"}
    h1 = mesh.host("h1")
    out = h1.run(["ssh", "-i", str(h1.home / ".agents/mesh_ed25519"), "-o",
                  "IdentitiesOnly=yes", "h2", REMOTE_COMMAND],
                 input=json.dumps(request).encode() + b"\n")
    answer = json.loads(out.stdout)
    assert answer["code"] == 4 and "sending host claims host h3" in answer["error"], answer


def test_force_and_spawn_need_the_peers_right(mesh: Mesh) -> None:
    out = mesh.run("h1", "notify-pane", "h2-main-py", "forced", env={"FORCE_SEND": "1"})
    assert out.returncode == 3, out
    err = out.stderr.decode()
    assert "peer h1 may not force here: force is off for peers by default" in err, err
    out = mesh.run("h1", "agent-mesh", "spawn", "h2", "--session", "work", "--name", "w",
                   "--accept", "any", "--", "sleep", "60")
    assert out.returncode == 3, out
    assert b"peer h1 may not spawn here: spawn is off for peers by default" in out.stderr
    # h3 has the right on h2; h1 has it on h3 (the lab's [peers] grant)
    name = f"w{mesh.transport}"
    out = mesh.run("h3", "agent-mesh", "spawn", "h2", "--session", "work", "--name", name,
                   "--accept", "any", "--", mesh.python, "-q")
    assert out.returncode == 0, out.stderr
    out = mesh.run("h1", "agent-mesh", "spawn", "h3", "--session", "work", "--name", name,
                   "--accept", "any", "--", mesh.python, "-q")
    assert out.returncode == 0, out.stderr


def test_agent_allow_is_honoured_for_local_and_remote_senders(mesh: Mesh) -> None:
    h2 = mesh.host("h2")
    h2.tmux("set-option", "-w", "-t", "main:py", "@agent-allow", "host:h1 tester")
    try:
        before = len(mesh.received("h2"))
        assert mesh.run("h1", "notify-pane", "h2-main-py", "from h1").returncode == 0
        out = mesh.run("h3", "notify-pane", "h2-main-py", "from h3")
        assert out.returncode == 3, out
        assert b"not in its @agent-allow 'host:h1 tester'" in out.stderr, out.stderr
        assert mesh.run("h2", "notify-pane", "h2-main-py", "local tester",
                        env={"AGENT_NAME": "tester"}).returncode == 0
        out = mesh.run("h2", "notify-pane", "h2-main-py", "local other",
                       env={"AGENT_NAME": "other"})
        assert out.returncode == 3 and b"@agent-allow" in out.stderr, out
        got = retry_until(lambda: len(mesh.received("h2")) >= before + 2 and
                          mesh.received("h2")[before:], timeout=15)
        assert [g.rsplit("] ", 1)[1] for g in got] == ["from h1", "local tester"]
    finally:
        h2.tmux("set-option", "-w", "-u", "-t", "main:py", "@agent-allow")
    # as a session option, by role
    h2.tmux("set-option", "-t", "main", "@agent-allow", "role:nobody")
    try:
        out = mesh.run("h1", "notify-pane", "h2-main-py", "refused by the session's list")
        assert out.returncode == 3 and b"'role:nobody'" in out.stderr, out
    finally:
        h2.tmux("set-option", "-u", "-t", "main", "@agent-allow")


def test_a_mixed_mesh_works_and_logs_unverified(mesh: Mesh) -> None:
    before = len(mesh.received("h1"))
    out = mesh.run("h3", "notify-pane", "h1-main-py", "over a login key")
    assert out.returncode == 0, out.stderr
    got = retry_until(lambda: mesh.received("h1")[before:], timeout=15)
    assert re.match(r"\[from h3 @ \S+\] over a login key$", got[0]), got
    record = mesh.received_log("h1", "h1-main-py")[-1]
    assert record["verified"] is False and record["host"] == "", record


def test_doctor_tells_mesh_keys_from_login_keys(lab_mesh: Mesh) -> None:
    out = lab_mesh.run("h3", "agent-mesh", "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["trust:h2"]["status"] == "ok", checks["trust:h2"]
    assert checks["trust:h1"]["status"] == "warn", checks["trust:h1"]
    assert checks["trust:h1"]["fix"] == "agent-mesh trust add h1"


def test_trust_remove_restores_authorized_keys_byte_for_byte(lab_mesh: Mesh) -> None:
    m = lab_mesh
    for name, peers in TRUSTS.items():
        for peer in peers:
            out = m.run(name, "agent-mesh", "trust", "remove", peer)
            assert out.returncode == 0, out.stderr
            assert b"removed our line" in out.stdout
    for name in HOSTS:
        assert (m.host(name).home / ".ssh/authorized_keys").read_bytes() == m.keys_before[name]
    before = len(m.received("h2"))
    assert m.run("h1", "notify-pane", "h2-main-py", "login key again").returncode == 0
    got = retry_until(lambda: m.received("h2")[before:], timeout=15)
    assert re.match(r"\[from h1 @ \S+\] login key again$", got[0]), got
