"""`agent-mesh mcp` across real hosts (tests/lab network namespaces, own sshd and user
each): an MCP client on h2 peeks at a hostile pane on h1 and gets it stripped, and its
`send` lands in h1's pane with h2 as the sender. Needs root; skips otherwise."""

from __future__ import annotations

import json
import os
import shutil
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
