"""Seeing the mesh across real hosts (tests/lab network namespaces, own sshd, user and
tmux server each): status from one host shows every host's agents in the right state,
a partitioned host as unreachable; peek reads a remote pane; inbox and log show what
was received and sent on both ends. Needs root; skips with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import retry_until
from lab.netlab import Lab, LabHost

REPLAY = Path(__file__).resolve().parent / "programs" / "screen_replay.py"
SCREENS = Path(__file__).resolve().parent / "fixtures" / "screens"

pytestmark = pytest.mark.lab(hosts=3)

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)


class Observed:
    """A 3-host lab: h1 has one window per state, h2 and h3 an idle receiver each."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.python = str(lab.venv / "bin" / "python")

    def host(self, name: str) -> LabHost:
        return self.lab.hosts[name]

    def run(self, name: str, *argv: str, timeout: float = 30):  # type: ignore[no-untyped-def]
        return self.host(name).run(list(argv), timeout=timeout)

    def window(self, name: str, window: str, *argv: str) -> None:
        out = self.host(name).tmux("new-window", "-d", "-t", "main:", "-n", window, *argv)
        assert out.returncode == 0, out.stderr

    def receiver(self, name: str, window: str) -> None:
        self.window(name, window, self.python, "-q", "-c", RECEIVER,
                    str(self.host(name).home / f"{window}.jsonl"))
        # a python prompt is not a known agent: the window opts in, as a user would
        self.host(name).tmux("set-option", "-w", "-t", f"main:{window}", "@agent-accept",
                             "python")
        retry_until(lambda: self.screen(name, window).rstrip().endswith(">>>"))

    def screen(self, name: str, window: str) -> str:
        return self.host(name).tmux("capture-pane", "-p", "-t", f"main:{window}").stdout.decode()

    def received(self, name: str, window: str) -> list[str]:
        path = self.host(name).home / f"{window}.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def status(self, name: str, *patterns: str) -> dict[str, Any]:
        out = self.run(name, "agent-mesh", "status", "--json", *patterns)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture(scope="module")
def obs(lab: Lab) -> Observed:
    o = Observed(lab)
    h1 = o.host("h1")
    bash = ["bash", "--norc", "--noprofile"]
    o.receiver("h1", "agent")
    o.receiver("h1", "draft")
    h1.tmux("send-keys", "-t", "main:draft", "-l", "half a thought")
    retry_until(lambda: "half a thought" in o.screen("h1", "draft"))
    # a real Claude Code permission question, replayed under the name `claude`
    replay = h1.home / "claude"
    shutil.copy(REPLAY, replay)
    for suffix in (".ansi", ".json"):
        shutil.copy(SCREENS / f"claude-code-permission-dialog{suffix}",
                    h1.home / f"dialog{suffix}")
    for path in (replay, h1.home / "dialog.ansi", h1.home / "dialog.json"):
        os.chown(path, h1.uid, h1.gid)
    o.window("h1", "dialog", "python3", str(replay), str(h1.home / "dialog.log"),
             str(h1.home / "dialog"))
    o.window("h1", "shell", *bash)
    o.window("h1", "busy", *bash)
    h1.tmux("send-keys", "-t", "main:busy", "sleep 600", "Enter")
    h1.tmux("set-option", "-g", "remain-on-exit", "on")
    o.window("h1", "dead", "sh", "-c", "exit 0")
    o.window("h1", "closed", *bash)
    o.window("h1", "log", *bash)
    h1.tmux("send-keys", "-t", "main:log", "for i in $(seq 1 80); do echo row-$i; done",
            "Enter")
    retry_until(lambda: "row-80" in o.screen("h1", "log"))
    for name in ("h2", "h3"):
        o.receiver(name, "py")
    for name in ("h1", "h2", "h3"):
        assert o.run(name, "agent-discover").returncode == 0
    assert h1.tmux("kill-window", "-t", "main:closed").returncode == 0  # registry stale
    for name in ("h1", "h2", "h3"):
        o.run(name, "agent-mesh", "sync")
    retry_until(lambda: "sleep" in h1.tmux(
        "display-message", "-p", "-t", "main:busy", "#{pane_current_command}").stdout.decode())
    return o


def test_status_across_hosts_with_a_partitioned_one(obs: Observed) -> None:
    obs.lab.partition("h3")
    try:
        started = time.monotonic()
        doc = obs.status("h2")
        elapsed = time.monotonic() - started
    finally:
        obs.lab.heal("h3")
    rows = {r["address"]: r for r in doc["agents"]}
    want = {
        "h1-main-agent": "idle", "h1-main-draft": "drafting", "h1-main-shell": "shell",
        "h1-main-busy": "running", "h1-main-dead": "dead", "h1-main-closed": "gone",
        "h1-main-log": "shell", "h1-main-dialog": "waiting",
    }
    assert {a: rows[a]["state"] for a in want if a in rows} == want, rows
    assert rows["h1-main-busy"]["program"] == "sleep"
    assert rows["h2-main-py"]["state"] == "idle"
    h3 = rows["h3-main-py"]
    assert h3["state"] == "unreachable" and h3.get("stale") and "unreachable" in h3["detail"]
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts["h1"]["ok"] and hosts["h2"]["ok"] and not hosts["h3"]["ok"]
    assert elapsed < 8, elapsed  # the dead host costs its connect timeout once, in parallel
    healed = {r["address"]: r["state"] for r in obs.status("h2", "host:h3")["agents"]}
    assert healed["h3-main-py"] == "idle"


def test_status_patterns_ask_only_the_hosts_named(obs: Observed) -> None:
    doc = obs.status("h2", "host:h1")
    assert [h["host"] for h in doc["hosts"]] == ["h1"]
    assert {r["host"] for r in doc["agents"]} == {"h1"}
    doc = obs.status("h3", "*-py", "h1-main-a*")
    assert sorted(r["address"] for r in doc["agents"]) == ["h1-main-agent", "h2-main-py",
                                                           "h3-main-py"]


def test_peek_reads_a_remote_pane(obs: Observed) -> None:
    out = obs.run("h3", "agent-mesh", "peek", "h1-main-log", "-n", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[:3] == ["row-78", "row-79", "row-80"] and lines[3].endswith("$")
    deep = obs.run("h3", "agent-mesh", "peek", "h1-main-log", "-n", "200").stdout.decode()
    assert "row-1\n" in deep
    out = obs.run("h3", "agent-mesh", "peek", "h1-main-closed")
    assert out.returncode == 2 and b"no longer exists" in out.stderr
    out = obs.run("h3", "agent-mesh", "peek", "h1-main-nope")
    assert out.returncode == 2


def test_inbox_shows_a_remote_agents_message_and_file(obs: Observed) -> None:
    h2 = obs.host("h2")
    src = h2.home / "notes.txt"
    src.write_bytes(b"twelve bytes")
    os.chown(src, h2.uid, h2.gid)
    before = len(obs.received("h1", "agent"))
    assert obs.run("h2", "notify-pane", "h1-main-agent", "hello from h2").returncode == 0
    retry_until(lambda: len(obs.received("h1", "agent")) > before)
    time.sleep(0.4)  # the settle, so the file's message meets an empty prompt
    out = obs.run("h2", "notify-pane", "h1-main-agent", "--file", str(src), "the notes")
    assert out.returncode == 0, out.stderr
    retry_until(lambda: len(obs.received("h1", "agent")) > before + 1)
    refused = obs.run("h2", "notify-pane", "h1-main-draft", "busy?")
    assert refused.returncode == 3
    # asked from a third host, answered by h1 from its own log
    records = json.loads(obs.run("h3", "agent-mesh", "inbox", "h1-main-agent",
                                 "--json").stdout)
    message, dropped = records[-2:]
    assert (message["from"], message["body"], message["outcome"]) == ("h2", "hello from h2",
                                                                      "delivered")
    assert dropped["file"] == "~/.agent-inbox/h2/notes.txt" and dropped["present"] is True
    assert dropped["size"] == 12 and dropped["body"] == "the notes"
    draft = json.loads(obs.run("h3", "agent-mesh", "inbox", "h1-main-draft", "--json").stdout)
    assert draft[-1]["outcome"] == "refused" and "mid-prompt" in draft[-1]["reason"]
    table = obs.run("h3", "agent-mesh", "inbox", "h1-main-agent").stdout.decode()
    assert "file ~/.agent-inbox/h2/notes.txt (12 bytes): the notes" in table
    # the sender's side: same ids, same outcomes
    sent = json.loads(obs.run("h2", "agent-mesh", "log", "--json").stdout)
    assert [(r["id"], r["outcome"]) for r in sent[-3:]] == [
        (message["id"], "delivered"), (dropped["id"], "delivered"), (draft[-1]["id"], "refused")]
    assert oct(os_mode(obs.host("h1").home / ".agents" / "log" / "received" /
                       "h1-main-agent.jsonl")) == "0o600"


def os_mode(path: os.PathLike[str]) -> int:
    return os.stat(path).st_mode & 0o777
