"""`agent-mesh mcp` across real hosts (tests/lab network namespaces, own sshd and user
each): an MCP client on h2 peeks at a hostile pane on h1 and gets it stripped, and its
`send` lands in h1's pane with h2 as the sender; clients on h2 and h3 race for a task
and a lock on h1. Needs root; skips otherwise."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import PROGRAMS, retry_until
from lab.netlab import Lab, lab_available

pytestmark = pytest.mark.lab

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)
HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]0;title\x07ok\u202eevil\x9b31m"


def test_a_peers_pane_through_mcp_is_stripped_and_send_crosses_hosts() -> None:
    reason = lab_available()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(n_hosts=2)
    try:
        lab.start()
        h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
        python = str(lab.venv / "bin" / "python")
        log = h1.home / "py.jsonl"
        h1.tmux("new-window", "-d", "-t", "main:", "-n", "py", python, "-q", "-c", RECEIVER,
                str(log))
        h1.tmux("set-option", "-w", "-t", "main:py", "@agent-accept", "python")
        hostile = f"import sys, time\nsys.stdout.write({HOSTILE!r})\nsys.stdout.flush()\n" \
                  "time.sleep(600)\n"
        h1.tmux("new-window", "-d", "-t", "main:", "-n", "evil", python, "-c", hostile)
        retry_until(lambda: ">>>" in h1.tmux("capture-pane", "-p", "-t", "main:py")
                    .stdout.decode())
        for host in (h1, h2):
            host.run(["agent-discover"], check=True)
        for host in (h1, h2):
            host.run(["agent-mesh", "sync"])
        client = h2.home / "mcp_client.py"
        shutil.copy(PROGRAMS / "mcp_client.py", client)
        (h2.home / "go").write_text("")
        for path in (client, h2.home / "go"):
            os.chown(path, h2.uid, h2.gid)
        calls = [["peek", {"address": "h1-main-evil", "lines": 5}],
                 ["send", {"to": "h1-main-py", "text": "across hosts"}],
                 ["list_agents", {"pattern": "host:h1"}]]
        out = h2.home / "out.json"
        res = h2.run([python, str(client), str(lab.venv / "bin" / "agent-mesh"), str(out),
                      str(h2.home / "go"), json.dumps(calls)], timeout=90)
        assert res.returncode == 0, res.stderr.decode()
        peek, send, listed = json.loads(Path(out).read_text())
        assert not peek["error"] and "okevil" in peek["text"], peek
        assert not any(c in peek["text"] for c in "\x1b\x07\x9b\u202e"), repr(peek["text"])
        assert not send["error"], send
        assert not listed["error"] and "h1-main-py" in listed["text"], listed
        got = retry_until(lambda: log.exists() and log.read_text().splitlines(), timeout=15)
        line = json.loads(got[0])
        assert line.startswith("[from h2 @ ") and line.endswith("] across hosts"), line
    finally:
        lab.stop()


@pytest.mark.lab(hosts=3)
def test_mcp_clients_on_two_hosts_race_for_a_task_and_a_lock_on_a_third() -> None:
    """The coordination tools across hosts: clients on h2 and h3 claim task 1 of
    main@h1 and lock h1:/srv/shared at once; exactly one wins each, and the other's tool
    error names the winner (outside tmux, the holder is the client's host)."""
    reason = lab_available()
    if reason is not None:
        pytest.skip(reason)
    import threading

    lab = Lab(n_hosts=3)
    try:
        lab.start()
        h1 = lab.hosts["h1"]
        h1.run(["agent-mesh", "task", "add", "the one task"], check=True)
        python = str(lab.venv / "bin" / "python")
        calls = [["task_claim", {"id": 1, "board": "main@h1"}],
                 ["lock", {"path": "h1:/srv/shared", "intent": "race"}],
                 ["tasks", {"board": "main@h1"}]]
        runs: dict[str, object] = {}
        threads = []
        for name in ("h2", "h3"):
            host = lab.hosts[name]
            client = host.home / "mcp_client.py"
            shutil.copy(PROGRAMS / "mcp_client.py", client)
            os.chown(client, host.uid, host.gid)
            argv = [python, str(client), str(lab.venv / "bin" / "agent-mesh"),
                    str(host.home / "out.json"), str(host.home / "go"), json.dumps(calls)]
            threads.append(threading.Thread(
                target=lambda h=host, a=argv: runs.__setitem__(h.name, h.run(a, timeout=90))))
            threads[-1].start()
        time.sleep(1.0)  # both clients up and waiting for their go file
        for name in ("h2", "h3"):
            (lab.hosts[name].home / "go").write_text("")
        for thread in threads:
            thread.join(120)
        results = {}
        for name in ("h2", "h3"):
            res = runs[name]
            assert getattr(res, "returncode", None) == 0, res
            results[name] = json.loads((lab.hosts[name].home / "out.json").read_text())
        for i, what in ((0, "is claimed by"), (1, "is locked by")):
            winners = [n for n, r in results.items() if not r[i]["error"]]
            assert len(winners) == 1, results
            (loser,) = {"h2", "h3"} - set(winners)
            assert f"{what} {winners[0]}" in results[loser][i]["text"], results
        claimed = next(n for n, r in results.items() if not r[0]["error"])
        assert f"claimed  {claimed}" in results["h2"][2]["text"], results
    finally:
        lab.stop()
