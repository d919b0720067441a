"""`tmux run-shell -b 'notify-pane …'` from a busy agent (the README's pattern).

A run-shell job is a child of the tmux server with TMUX set but no TMUX_PANE,
and whatever it prints makes tmux put the session's current pane into view
mode, which then refuses every message. With `-t "$TMUX_PANE"` and
`TMUX_PANE=#{pane_id}` in the command (tmux expands it to the job's target: the
invoking pane) the sender is that pane's address; without, the host unless the
pane is certain (tests/test_ident.py). The outcome goes to the status line and
notify.log.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SELF_HOST, Spawner, retry_until


def tag_sender(line: str) -> str:
    return line[len("[from ") : line.index(" @ ")]


def notify_log(home: Path) -> str:
    path = home / ".agents" / "notify.log"
    return path.read_text() if path.exists() else ""


def panes_in_a_mode(spawn: Spawner) -> list[str]:
    out = spawn.server.run("list-panes", "-a", "-F", "#{pane_id} #{pane_in_mode}").stdout
    return [line.split()[0] for line in out.splitlines() if line.endswith(" 1")]


def run_shell_from(pane_send: object, command: str, target: bool = False) -> None:
    """Type `tmux run-shell -b '<command>'` into a shell pane, as an agent's tool would;
    with target, `-t "$TMUX_PANE"` (the README's form)."""
    assert "'" not in command
    send = pane_send  # Pane.send_keys
    where = '-t "$TMUX_PANE" ' if target else ""
    send(f"tmux run-shell -b {where}'{command}'", literal=True)  # type: ignore[operator]
    send("Enter")  # type: ignore[operator]


def test_run_shell_sender_is_the_invoking_pane_and_nothing_is_printed(
    spawn: Spawner, isolated_env: Path
) -> None:
    tui = spawn.agent_tui("agent")  # window 0: the session's current pane
    worker = spawn.bash("worker")  # a background window, where the agent works
    run_shell_from(worker.pane.send_keys,
                   f'TMUX_PANE=#{{pane_id}} notify-pane {tui.address} "from the worker"',
                   target=True)
    (line,) = tui.wait_lines(1)
    assert tag_sender(line) == f"{SELF_HOST}-dev-worker" and line.endswith("] from the worker")
    log = retry_until(lambda: notify_log(isolated_env))
    assert f"→ {tui.address}" in log and log.count("\n") == 1
    assert panes_in_a_mode(spawn) == []  # no view mode: the next message still lands
    run_shell_from(worker.pane.send_keys, f'notify-pane {tui.address} "second"')
    assert len(tui.wait_lines(2)) == 2


def test_run_shell_failure_goes_to_the_log_not_to_view_mode(
    spawn: Spawner, isolated_env: Path
) -> None:
    tui = spawn.agent_tui("agent")
    worker = spawn.bash("worker")
    run_shell_from(worker.pane.send_keys, 'notify-pane nosuch "hi"')
    log = retry_until(lambda: notify_log(isolated_env))
    assert "notify-pane: unknown agent 'nosuch'" in log and log.count("\n") == 1
    assert panes_in_a_mode(spawn) == []
    assert tui.lines() == []


def test_sender_without_tmux_pane_is_found_from_the_process_tree(
    spawn: Spawner, tmp_path: Path
) -> None:
    """A wrapper that drops TMUX_PANE (but keeps TMUX): the pane is our ancestor."""
    spawn.agent_tui("agent")
    worker = spawn.bash("worker")
    out = tmp_path / "whoami.txt"
    worker.pane.send_keys(f"env -u TMUX_PANE notify-pane --whoami > {out}", literal=True)
    worker.pane.send_keys("Enter")
    assert retry_until(lambda: out.exists() and out.read_text()) == f"{SELF_HOST}-dev-worker\n"


def test_run_shell_with_an_unknown_pane_falls_back_to_the_host(
    spawn: Spawner, tmp_path: Path
) -> None:
    """Two panes of the session in the same directory: no guess, the host."""
    tui = spawn.agent_tui("agent")
    worker = spawn.bash("worker")
    here = tui.pane.display("#{pane_current_path}")
    worker.pane.send_keys(f"cd {here}", literal=True)
    worker.pane.send_keys("Enter")
    retry_until(lambda: worker.pane.display("#{pane_current_path}") == here)
    out = tmp_path / "whoami.json"
    run_shell_from(worker.pane.send_keys, f"notify-pane --whoami | python3 -c "
                   f'"import json,sys; json.dump(sys.stdin.read(), open(\\"{out}\\", \\"w\\"))"')
    assert json.loads(retry_until(lambda: out.exists() and out.read_text())) == f"{SELF_HOST}\n"
