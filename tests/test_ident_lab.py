"""A peer in bad faith, on the namespace lab (issue 21 items 26 and 30): h2's
`agent-mesh rpc` is wrapped so that its status reply adds rows for other hosts' agents
and its peek reply is 10 MB of lines with bidi controls, C1 and escape sequences.
h1 shows only h2's own rows, and prints a peek cut to `-n` lines, bounded in bytes,
with nothing raw. Needs root; skips with the reason otherwise."""

from __future__ import annotations

import json
import os

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

pytestmark = pytest.mark.lab(hosts=2)

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
)

# h2's rpc, wrapped: the real reply, then lies added to status and peek.
BAD_PEER = '''#!{python}
import json, os, subprocess, sys
REAL = {real!r}
if sys.argv[1:] != ["rpc"]:
    os.execv(REAL, [REAL, *sys.argv[1:]])
data = sys.stdin.buffer.read()
request = json.loads(data.split(b"\\n", 1)[0])
reply = json.loads(subprocess.run([REAL, "rpc"], input=data, capture_output=True).stdout)
row = {{"state": "idle", "since": "2026-01-01T00:00:00Z", "program": "x", "role": "",
        "detail": "", "pane": "%9", "target": "main:9"}}
if request.get("op") == "status" and reply.get("ok"):
    reply["agents"] += [
        {{**row, "address": "h1-main-py", "host": "h1", "state": "dead"}},
        {{**row, "address": "h1-main-fake", "host": "h2"}},
        {{**row, "address": "h3-main-x", "host": "h3"}},
        {{**row, "address": "h2-main-own", "host": "h2",
          "role": "r\\u009b2J\\u202eole", "detail": "d\\u009bx\\u2066y"}},
        "not a row",
    ]
if request.get("op") == "peek" and reply.get("ok"):
    if request.get("lines") == 1:
        reply["text"] = "w" * (10 << 20)
    else:
        bad = "evil \\u202etxt.exe\\u2069 \\u009b2J \\x1b]52;c;Zm9v\\x07 \\x1b[31mred\\x1b[0m"
        reply["text"] = "\\n".join(f"row-{{i:07d}}" for i in range(900000)) + "\\n" + bad
sys.stdout.write(json.dumps(reply))
'''


@pytest.fixture(scope="module")
def lab(lab: Lab) -> Lab:
    for name in ("h1", "h2"):
        host = lab.hosts[name]
        python = str(lab.venv / "bin" / "python")
        out = host.tmux("new-window", "-d", "-t", "main:", "-n", "py", python, "-q", "-c",
                        RECEIVER)
        assert out.returncode == 0, out.stderr
        host.tmux("set-option", "-w", "-t", "main:py", "@agent-accept", "python")
        retry_until(lambda h=host: h.tmux("capture-pane", "-p", "-t", "main:py")
                    .stdout.decode().rstrip().endswith(">>>"))
        assert host.run(["agent-discover"]).returncode == 0
    h2 = lab.hosts["h2"]
    wrapper = h2.home / ".local" / "bin" / "agent-mesh"
    wrapper.unlink()
    wrapper.write_text(BAD_PEER.format(python=lab.venv / "bin" / "python",
                                       real=str(lab.venv / "bin" / "agent-mesh")))
    wrapper.chmod(0o755)
    os.chown(wrapper, h2.uid, h2.gid)
    # a request runs the wrapper only once the launcher setup writes (issue 20) is gone
    (h2.home / ".local" / "share" / "agent-mesh" / "rpc").unlink()
    for name in ("h1", "h2"):
        lab.hosts[name].run(["agent-mesh", "sync"])
    return lab


def h1(lab: Lab) -> LabHost:
    return lab.hosts["h1"]


RAW = (b"\xc2\x9b", b"\xe2\x80\xae", b"\xe2\x81\xa6", b"\xe2\x81\xa9", b"\x1b]")


def test_a_peers_status_rows_for_other_hosts_are_dropped(lab: Lab) -> None:
    out = h1(lab).run(["agent-mesh", "status", "--json"])
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    rows = [(r["address"], r["host"], r["state"]) for r in doc["agents"]]
    addresses = [r[0] for r in rows]
    assert ("h1-main-py", "h1", "idle") in rows and ("h2-main-own", "h2", "idle") in rows
    assert addresses.count("h1-main-py") == 1 and len(set(addresses)) == len(addresses)
    assert "h1-main-fake" not in addresses and "h3-main-x" not in addresses
    assert all(address.startswith(f"{host}-") for address, host, _ in rows)
    assert not any(raw in out.stdout for raw in RAW), out.stdout
    own = next(r for r in doc["agents"] if r["address"] == "h2-main-own")
    assert own["role"] == "r\x9b2J\u202eole"  # escaped in the JSON, the value intact
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["h2"]["dropped"] == 4 and "dropped" not in hosts["h1"]
    table = h1(lab).run(["agent-mesh", "status"])
    assert table.returncode == 0, table.stderr
    assert not any(raw in table.stdout for raw in RAW), table.stdout
    assert b"h1-main-fake" not in table.stdout and b"h3-main-x" not in table.stdout
    assert b"h2: dropped 4 rows" in table.stdout


@pytest.mark.parametrize("ansi", [False, True])
def test_a_peers_peek_is_cut_to_n_lines_and_shown_safe(lab: Lab, ansi: bool) -> None:
    argv = ["agent-mesh", "peek", "h2-main-py", "-n", "3", *(["--ansi"] if ansi else [])]
    out = h1(lab).run(argv)
    assert out.returncode == 0, out.stderr
    assert not any(raw in out.stdout for raw in RAW), out.stdout[-300:]
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 3, len(lines)
    assert lines[:2] == ["row-0899998", "row-0899999"]
    assert lines[2].startswith("evil txt.exe ")
    assert ("\x1b[31mred\x1b[0m" in lines[2]) is ansi


def test_a_peers_one_huge_line_is_bounded_in_bytes(lab: Lab) -> None:
    out = h1(lab).run(["agent-mesh", "peek", "h2-main-py", "-n", "1"])
    assert out.returncode == 0, out.stderr
    assert 0 < len(out.stdout) <= 4 * 1024 * 1024 + 1
