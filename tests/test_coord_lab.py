"""Coordinating across real hosts (issue 17), on the network-namespace lab: each host its
own sshd, user and tmux server with ten registered bash windows (c0..c9), and every
command run as the agent of one of those windows ($TMUX, $TMUX_PANE).

- 3 hosts x 10 concurrent claims of one task: exactly one winner, ten runs in a row;
- a lock's authority partitioned: exit 4 within 5 s naming it, and no second holder;
- a lock whose holder's window (on another host) closed ends once the authority knows;
- entries posted on 3 hosts within a second come back merged in time order; a host
  that does not answer is named and its last entries seen are shown marked;
- a peer's entries claiming another host, and a request speaking for another host's
  agent, are dropped or refused.
Needs root; skips with the reason otherwise."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=3)

WINDOWS = [f"c{i}" for i in range(10)]
RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)


class Mesh:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.panes: dict[tuple[str, str], str] = {}
        self.sockets: dict[str, str] = {}

    def host(self, name: str) -> LabHost:
        return self.lab.hosts[name]

    def env(self, host: str, window: str | None) -> dict[str, str]:
        if window is None:
            return {}
        return {"TMUX": f"{self.sockets[host]},1,0", "TMUX_PANE": self.panes[(host, window)]}

    def run(self, host: str, window: str | None, *argv: str, timeout: float = 30
            ) -> subprocess.CompletedProcess[bytes]:
        return self.host(host).run(["agent-mesh", *argv], env=self.env(host, window),
                                   timeout=timeout)

    def popen(self, host: str, window: str | None, *argv: str) -> subprocess.Popen[bytes]:
        h = self.host(host)
        env = h.env(self.env(host, window))
        full = ["ip", "netns", "exec", h.ns, "setpriv", f"--reuid={h.uid}", f"--regid={h.gid}",
                "--init-groups", "env", "-i", "--", *(f"{k}={v}" for k, v in env.items()),
                "agent-mesh", *argv]
        return subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=h.home)

    def json(self, host: str, *argv: str) -> dict[str, object]:
        out = self.run(host, None, *argv, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def ok(out: subprocess.CompletedProcess[bytes]) -> str:
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


@pytest.fixture(scope="module")
def mesh(lab: Lab) -> Iterator[Mesh]:
    """The module's lab (conftest) with ten bash windows per host, registered."""
    m = Mesh(lab)
    for name, host in lab.hosts.items():
        for window in WINDOWS:
            out = host.tmux("new-window", "-d", "-t", "main:", "-n", window, "bash",
                            "--norc", "--noprofile")
            assert out.returncode == 0, out.stderr
        if name == "h3":  # a subscriber of a board on h1
            python = str(lab.venv / "bin" / "python")
            host.tmux("new-window", "-d", "-t", "main:", "-n", "inbox", python, "-q", "-c",
                      RECEIVER, str(host.home / "inbox.jsonl"))
            host.tmux("set-option", "-w", "-t", "main:inbox", "@agent-accept", "python")
            retry_until(lambda h=host: h.tmux("capture-pane", "-p", "-t", "main:inbox")
                        .stdout.decode().rstrip().endswith(">>>"))
        m.sockets[name] = host.tmux("display-message", "-p",
                                    "#{socket_path}").stdout.decode().strip()
        panes = host.tmux("list-panes", "-a", "-F", "#{window_name} #{pane_id}")
        for line in panes.stdout.decode().splitlines():
            window, pane = line.split()
            m.panes[(name, window)] = pane
        assert host.run(["agent-discover"]).returncode == 0
    for host in lab.hosts.values():
        host.run(["agent-mesh", "sync"])
    yield m


def test_three_hosts_times_ten_claimers_one_winner_ten_runs_in_a_row(mesh: Mesh) -> None:
    for name in ("h2", "h3"):  # the masters up, as in steady use
        ok(mesh.run(name, None, "tasks", "--board", "race@h1"))
    claimers = [(host, window) for host in ("h1", "h2", "h3") for window in WINDOWS]
    for run in range(10):
        added = ok(mesh.run("h1", None, "task", "add", f"race {run}", "--board", "race"))
        task = added.split("added ")[1].split()[0]
        procs = {(h, w): mesh.popen(h, w, "task", "claim", task, "--board", "race@h1")
                 for h, w in claimers}
        outs = {k: p.communicate(timeout=120) for k, p in procs.items()}
        codes = {k: p.returncode for k, p in procs.items()}
        winners = [k for k, c in codes.items() if c == 0]
        assert len(winners) == 1, (run, codes, {k: o[1] for k, o in outs.items() if codes[k]})
        (win_host, win_window), = winners
        address = f"{win_host}-main-{win_window}"
        for key, (_out, err) in outs.items():
            if key != winners[0]:
                assert codes[key] == 3, (key, err)
                assert address.encode() in err, (key, err)
        board = mesh.json("h1", "tasks", "--board", "race")
        row = next(t for t in board["tasks"] if str(t["id"]) == task)  # type: ignore[union-attr]
        assert row["state"] == "claimed" and row["holder"]["who"] == address


def test_a_claim_on_h1_notifies_a_subscriber_on_h3(mesh: Mesh) -> None:
    ok(mesh.run("h1", "c5", "task", "add", "tell me", "--board", "news",
                "--notify", "h3-main-inbox"))
    out = ok(mesh.run("h2", "c5", "task", "claim", "--next", "--board", "news@h1"))
    assert "notified h3-main-inbox: delivered" in out, out
    log = mesh.host("h3").home / "inbox.jsonl"
    retry_until(lambda: log.exists() and log.read_text().strip(), timeout=10)
    [line] = [json.loads(x) for x in log.read_text().splitlines()]
    assert "[board news@h1] task 1 claimed by h2-main-c5: tell me" in line
    assert line.startswith("[from h2-main-c5 @ ")  # the normal delivery path, from the claimer


def test_partitioned_authority_exit_4_within_5s_and_no_second_holder(mesh: Mesh) -> None:
    ok(mesh.run("h2", "c0", "lock", "h1:/srv/data", "--intent", "migrate", "--ttl", "10m"))
    held = mesh.run("h3", "c0", "lock", "h1:/srv/data/sub")
    assert held.returncode == 3 and b"h2-main-c0" in held.stderr and b"migrate" in held.stderr
    ok(mesh.run("h3", None, "locks"))  # masters up: the worst case is a hung one
    mesh.lab.partition("h1")
    try:
        for target in ("h1:/srv/data", "h1:/srv/other"):
            started = time.monotonic()
            out = mesh.run("h3", "c1", "lock", target, "--ttl", "10m")
            elapsed = time.monotonic() - started
            assert out.returncode == 4, out.stderr
            assert elapsed < 5, elapsed
            line = out.stderr.decode()
            assert "h1 holds" in line and "cannot be reached" in line, line
            assert line.count("\n") == 1
        out = mesh.run("h3", "c1", "unlock", "h1:/srv/data", "--force")
        assert out.returncode == 4
        listed = mesh.run("h3", None, "locks")
        assert listed.returncode == 4 and b"h1: unreachable" in listed.stderr
    finally:
        mesh.lab.heal("h1")
    doc = retry_until(lambda: mesh.run("h3", None, "locks", "--host", "h1", "--json"),
                      timeout=20, interval=0.5)
    rows = [(lk["path"], lk["who"]) for lk in json.loads(doc.stdout)["locks"]]
    assert rows == [("/srv/data", "h2-main-c0")]
    ok(mesh.run("h2", "c0", "unlock", "h1:/srv/data"))


def test_a_remote_holders_closed_window_ends_its_lock(mesh: Mesh) -> None:
    ok(mesh.run("h2", "c9", "lock", "h1:/srv/gone", "--ttl", "1h"))
    assert mesh.run("h3", "c2", "lock", "h1:/srv/gone").returncode == 3
    time.sleep(1.1)  # h1's copy of h2's slice is fetched after the lock was taken
    h2 = mesh.host("h2")
    assert h2.tmux("kill-window", "-t", "main:c9").returncode == 0
    assert h2.run(["agent-discover"]).returncode == 0  # what h2's hook does, then it pushes
    mesh.host("h1").run(["agent-mesh", "sync"])
    ok(mesh.run("h3", "c2", "lock", "h1:/srv/gone"))


def test_bulletin_merges_three_hosts_in_time_order(mesh: Mesh) -> None:
    started = time.time()
    for i, name in enumerate(("h1", "h2", "h3", "h1", "h3", "h2")):
        ok(mesh.run(name, "c3", "post", f"step {i}", "--tag", "order"))
    doc = mesh.json("h2", "bulletin", "--tag", "order")
    entries = doc["entries"]
    assert [e["text"] for e in entries] == [f"step {i}" for i in range(6)]  # type: ignore[index]
    assert [e["host"] for e in entries] == ["h1", "h2", "h3", "h1", "h3", "h2"]  # type: ignore[index]
    assert [e["who"] for e in entries] == [f"{e['host']}-main-c3" for e in entries]  # type: ignore[index]
    times = [e["time"] for e in entries]  # type: ignore[index]
    assert times == sorted(times) and times[0] >= started - 1
    table = ok(mesh.run("h3", None, "bulletin", "--tag", "order"))
    assert table.index("step 0") < table.index("step 5")
    # h3 unreachable: named, and what h1 last saw from it is shown, marked
    assert len(mesh.json("h1", "bulletin")["entries"]) >= 6  # type: ignore[arg-type]
    mesh.lab.partition("h3")
    try:
        out = mesh.run("h1", None, "bulletin", "--tag", "order")
    finally:
        mesh.lab.heal("h3")
    text = ok(out)
    assert "step 2" in text and "step 4" in text
    assert "*" in text.split("step 2")[0].splitlines()[-1]
    assert b"h3: unreachable" in out.stderr and b"its last 2 entries seen here" in out.stderr


def test_entries_and_requests_for_another_host_are_dropped_or_refused(mesh: Mesh) -> None:
    h2 = mesh.host("h2")
    ok(mesh.run("h2", "c4", "post", "a real one"))  # the log exists, h2's own
    log = h2.home / ".agents" / "coord" / "bulletin.jsonl"
    forged = [
        {"id": "f1", "time": time.time(), "host": "h1", "who": "h1", "text": "forged h1"},
        {"id": "f2", "time": time.time(), "host": "h2", "who": "h3-main-c0",
         "text": "forged agent"},
        {"id": "f3", "time": time.time(), "host": "h2", "who": "h2", "text": 7},
        {"id": "f4", "time": time.time(), "host": "h2", "who": "h2", "text": "honest h2"},
        {"id": "f5", "time": time.time(), "host": "h2", "who": "h2", "text": "forged tags",
         "tags": 5},
        {"id": "f6", "time": time.time(), "host": "h2", "who": "h2", "text": "forged tag",
         "tags": ["ok", "\x1b[2Jx"]},
    ]
    with open(log, "a") as fh:
        fh.write("not json\n" + "".join(json.dumps(e) + "\n" for e in forged))
    doc = mesh.json("h3", "bulletin", "--host", "h2")
    texts = [e["text"] for e in doc["entries"]]  # type: ignore[index]
    assert "honest h2" in texts and "a real one" in texts
    assert not [t for t in texts if "forged" in str(t) or t == 7]
    assert doc["hosts"][0]["dropped"] == 5  # type: ignore[index]
    out = mesh.run("h3", None, "bulletin", "--host", "h2")
    assert out.returncode == 0 and b"honest h2" in out.stdout, out
    assert b"h2: dropped 5 entries that are not its own" in out.stderr
    # h2 speaking for h3's agent: h1 checks where the request came from
    code = ("import sys; from agent_mesh.mesh.host import connect\n"
            "from agent_mesh.errors import report\n"
            "try:\n"
            "    connect('h1').request({'op': 'coord', 'action': 'lock', 'path': '/srv/forged',\n"
            "                          'who': {'who': sys.argv[1], 'host': sys.argv[2],\n"
            "                                  'pane': '%1'}})\n"
            "    print('accepted')\n"
            "except Exception as exc:\n"
            "    print(report(exc)[0])\n")
    python = str(mesh.lab.venv / "bin" / "python")
    for who, host in (("h3-main-c0", "h3"), ("h3-main-c0", "h2")):
        out = h2.run([python, "-c", code, who, host])
        assert out.stdout.startswith(b"h1: refused: "), out
    rows = mesh.json("h1", "locks", "--host", "h1")["locks"]
    assert all(lk["path"] != "/srv/forged" for lk in rows)  # type: ignore[union-attr]
