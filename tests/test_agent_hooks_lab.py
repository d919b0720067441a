"""Issue 15 across hosts (network-namespace lab): a message from another host to an agent
that is mid-turn by its own hooks is queued on the agent's host (exit 5 at the sender),
never typed, and handed over by that agent's Stop hook there."""

from __future__ import annotations

import json
import time

import pytest
from conftest import retry_until
from lab.netlab import Lab

pytestmark = pytest.mark.lab(hosts=2)

RECEIVER = (
    "import json, readline, sys\n"
    "while True:\n"
    "    line = input('>>> ')\n"
    "    with open(sys.argv[1], 'a') as fh:\n"
    "        fh.write(json.dumps(line) + '\\n')\n"
)


def test_a_remote_message_mid_turn_is_queued_there_and_handed_over(lab: Lab) -> None:
    h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
    python = str(lab.venv / "bin" / "python")
    log = h2.home / "agent.jsonl"
    out = h2.tmux("new-window", "-d", "-t", "main:", "-n", "agent", python, "-q", "-c",
                  RECEIVER, str(log))
    assert out.returncode == 0, out.stderr
    h2.tmux("set-option", "-w", "-t", "main:agent", "@agent-accept", "python3")
    for host in (h1, h2):
        assert host.run(["agent-discover"]).returncode == 0
    where = h2.tmux("display-message", "-p", "-t", "main:agent",
                    "#{socket_path},#{pid},#{session_id} #{pane_id} #{pane_pid}")
    tmux_env, pane, pid = where.stdout.decode().replace("$", "").split()
    env = {"TMUX": tmux_env, "TMUX_PANE": pane, "AGENT_MESH_HOOK_PARENT": pid}

    def hook(event: str) -> tuple[int, bytes]:
        run = h2.run(["sh", "-c", f"echo '{{\"hook_event_name\": \"{event}\"}}' | "
                                  f"agent-mesh agent-event --agent claude {event}"], env=env)
        return run.returncode, run.stderr

    assert hook("UserPromptSubmit") == (0, b"")
    sent = h1.run(["notify-pane", "h2-main-agent", "from another host, mid-turn 2f2f"])
    assert sent.returncode == 5, (sent.stdout, sent.stderr)
    listed = json.loads(h1.run(["agent-mesh", "queue", "--json"]).stdout)
    assert [r["address"] for r in listed["pending"]] == ["h2-main-agent"]
    time.sleep(1.0)
    assert not log.exists()  # never typed
    code, text = hook("Stop")
    assert code == 2 and text.decode().startswith("[from h1 @ ")
    assert text.decode().endswith("] from another host, mid-turn 2f2f")
    retry_until(lambda: not json.loads(
        h1.run(["agent-mesh", "queue", "--json"]).stdout)["pending"], timeout=10)
    assert hook("Stop") == (0, b"")
