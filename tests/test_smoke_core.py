"""First end-to-end checks of the core on a private tmux server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import SELF_HOST, TmuxServer, retry_until, run_cli


def test_hook_registers_windows_and_notify_delivers(
    tmux_server: TmuxServer, tmp_path: Path
) -> None:
    log = tmp_path / "got.jsonl"
    code = (
        "import json, readline, sys\n"
        "while True:\n"
        "    line = input('>>> ')\n"
        f"    open({str(log)!r}, 'a').write(json.dumps(line) + '\\n')\n"
    )
    pane = tmux_server.start("dev", "py", [sys.executable, "-q", "-c", code])
    tmux_server.run("set-option", "-w", "-t", pane.pane_id, "@agent-accept", "python3")
    tmux_server.install_hooks()
    tmux_server.new_window("dev", "build")
    local = Path.home() / ".agents" / "local.toml"
    retry_until(lambda: local.exists() and "dev-build" in local.read_text())
    pane.wait_for(">>>")
    res = run_cli("notify-pane", f"{SELF_HOST}-dev-py", "tests green; $(rm -rf ~) -x")
    assert res.returncode == 0, res.stderr
    got = retry_until(lambda: log.exists() and log.read_text())
    line = json.loads(got.splitlines()[0])
    assert line.endswith("] tests green; $(rm -rf ~) -x")
    assert line.startswith(f"[from {SELF_HOST} @ ")
