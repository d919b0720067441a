"""`agent-mesh demo` end to end: real tmux, real notify-pane, nothing left behind.

The demo makes its own temp HOME and tmux server; these tests check that it
never touches the caller's (the conftest's private HOME and TMUX_TMPDIR stand
in for the user's) and that no process of its tmux server outlives it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import retry_until

from agent_mesh.ops import demo

RUN = "from agent_mesh.ops.demo import run_demo; import sys; sys.exit(run_demo())"


def demo_dir(output: str) -> Path:
    match = re.search(r"TMUX_TMPDIR=(/\S+?)\)", output)
    assert match, output
    return Path(match.group(1))


def processes_using(base: Path) -> list[int]:
    """Live processes whose environment points into base (the demo's server and agents)."""
    needle = f"TMUX_TMPDIR={base}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry))
    return found


def caller_untouched(home: Path) -> None:
    assert not (home / ".agent-inbox").exists()
    assert sorted(p.name for p in (home / ".agents").iterdir()) == ["self.conf"]
    server = subprocess.run(["tmux", "has-session"], capture_output=True, check=False)
    assert server.returncode != 0  # the caller's tmux (TMUX_TMPDIR) never started


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_demo_end_to_end_as_a_user_runs_it(isolated_env: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True,
                          timeout=180, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""
    lines = out.splitlines()
    assert lines[0].startswith("demo: ")
    assert any(line.startswith("demo: starting a private tmux server") for line in lines)

    bob = out.split("demo: bob's pane shows:\n", 1)[1].split("\ndemo: ", 1)[0]
    assert "  | bob got: [from alice @ " in bob
    assert "] hi bob, can you review my patch?" in bob
    alice = out.split("demo: alice's pane shows:\n", 1)[1].split("\ndemo: ", 1)[0]
    assert "  | alice got: [from bob @ " in alice
    assert "file dropped at ~/.agent-inbox/bob/review.txt (26 bytes): review attached" in alice
    base = demo_dir(out)
    assert f"demo: the file landed in {base}/home/.agent-inbox/bob/review.txt" in out
    assert "'LGTM, two nits in parse()'" in out

    assert not base.exists()
    retry_until(lambda: not processes_using(base), timeout=10)
    caller_untouched(isolated_env)


def test_demo_keep_leaves_it_running_and_says_how_to_attach(isolated_env: Path) -> None:
    lines: list[str] = []
    code = demo.run_demo(lines.append, keep=True)
    base = demo_dir("\n".join(lines))
    env = {**os.environ, "TMUX_TMPDIR": str(base)}
    try:
        assert code == 0, lines
        assert f"demo: kept it running; look with: TMUX_TMPDIR={base} tmux attach -t demo" in lines
        windows = subprocess.run(["tmux", "list-windows", "-t", "demo", "-F", "#{window_name}"],
                                 capture_output=True, text=True, env=env, check=False)
        assert windows.stdout.split() == ["alice", "bob"]
        if Path("/proc/self/environ").exists():
            assert processes_using(base)  # the leak detector the other tests rely on works
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)
    caller_untouched(isolated_env)


def test_missing_tmux_is_a_one_line_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        path = real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        made.append(path)
        return str(path)

    monkeypatch.setattr(demo.tempfile, "mkdtemp", recording_mkdtemp)
    monkeypatch.setenv("TMUX_BIN", "/nonexistent/tmux")
    lines: list[str] = []
    assert demo.run_demo(lines.append) == 1
    failures = [line for line in lines if "FAILED" in line]
    assert failures == ["demo: FAILED: tmux is not installed (install tmux 3.2 or newer: "
                        "apt install tmux / brew install tmux)"]
    assert made and not any(os.path.exists(p) for p in made)


def test_a_failed_step_still_tears_everything_down(monkeypatch: pytest.MonkeyPatch,
                                                   isolated_env: Path) -> None:
    def refuse(self: demo._Demo, addresses: dict[str, str]) -> None:
        raise demo.DemoFailed("notify-pane: refusing to deliver (simulated)")

    monkeypatch.setattr(demo._Demo, "deliver", refuse)
    lines: list[str] = []
    assert demo.run_demo(lines.append) == 1
    assert "demo: FAILED: notify-pane: refusing to deliver (simulated)" in lines
    base = demo_dir("\n".join(lines))
    assert not base.exists()
    if Path("/proc/self/environ").exists():
        retry_until(lambda: not processes_using(base), timeout=10)
    caller_untouched(isolated_env)
