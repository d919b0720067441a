"""The notify-pane and agent-mesh launchers that ~/.local/bin links to (issue 20):
`python -I -S` with the package's folders, and the console script when they are gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_mesh import paths
from agent_mesh.ops.setup import command_launcher_text, notify_launcher_text


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_launcher_runs_notify_pane_without_site(tmp_path: Path) -> None:
    text = notify_launcher_text(sys.executable, paths.package_paths(), "/nonexistent")
    assert text is not None and text.startswith(f"#!{sys.executable} -IS\n")
    launcher = _write(tmp_path / "notify-pane", text)
    out = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                         check=False)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.startswith("notify-pane (agent-mesh) ")
    # the same interpreter flags as the hook: isolated, no site (so no `re` either)
    probe = text.replace("from agent_mesh.cli.notify import main",
                         "import agent_mesh; print(sys.flags.isolated, sys.flags.no_site, "
                         "'re' in sys.modules, 'site' in sys.modules); sys.exit(0)")
    out = subprocess.run([str(_write(tmp_path / "probe", probe))], capture_output=True,
                         text=True, check=False)
    assert out.stdout.split() == ["1", "1", "False", "False"], out.stderr


def test_package_gone_runs_the_console_script(tmp_path: Path) -> None:
    script = _write(tmp_path / "console", "#!/bin/sh\necho \"console: $*\"\n")
    text = notify_launcher_text(sys.executable, [str(tmp_path / "gone")], str(script))
    assert text is not None
    launcher = _write(tmp_path / "notify-pane", text)
    out = subprocess.run([str(launcher), "agent", "two words", "--x"], capture_output=True,
                         text=True, check=False)
    assert (out.returncode, out.stdout) == (0, "console: agent two words --x\n")

    os.unlink(script)  # and that gone too: one line, "not installed"
    out = subprocess.run([str(launcher), "agent", "hi"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 127
    assert out.stderr.count("\n") == 1 and "not installed" in out.stderr


def test_no_launcher_for_an_interpreter_no_shebang_can_start() -> None:
    assert notify_launcher_text("python3", [], "/x") is None
    assert notify_launcher_text("/opt/my python/bin/python", [], "/x") is None
    assert notify_launcher_text("/" + "p" * 200, [], "/x") is None


def test_agent_mesh_launcher_runs_its_commands_without_site(tmp_path: Path) -> None:
    """agent-mesh's launcher (issue 20: a status without site or `re`): the quick paths
    and the click group both answer, and the package gone runs the console script."""
    text = command_launcher_text("agent-mesh", sys.executable, paths.package_paths(),
                                 "/nonexistent")
    assert text is not None and text.startswith(f"#!{sys.executable} -IS\n")
    launcher = _write(tmp_path / "agent-mesh", text)
    for argv, head in ((["rpc", "--help"], "usage: agent-mesh rpc"),
                       (["--help"], "Usage: agent-mesh")):
        out = subprocess.run([str(launcher), *argv], capture_output=True, text=True,
                             check=False)
        assert (out.returncode, out.stderr) == (0, ""), argv
        assert out.stdout.startswith(head), out.stdout
    probe = text.replace("from agent_mesh.cli.entry import main",
                         "import agent_mesh; print(sys.flags.isolated, sys.flags.no_site, "
                         "'re' in sys.modules, 'site' in sys.modules); sys.exit(0)")
    out = subprocess.run([str(_write(tmp_path / "probe", probe))], capture_output=True,
                         text=True, check=False)
    assert out.stdout.split() == ["1", "1", "False", "False"], out.stderr

    script = _write(tmp_path / "console", "#!/bin/sh\necho \"console: $*\"\n")
    text = command_launcher_text("agent-mesh", sys.executable, [str(tmp_path / "gone")],
                                 str(script))
    assert text is not None
    out = subprocess.run([str(_write(tmp_path / "gone-mesh", text)), "status", "--json"],
                         capture_output=True, text=True, check=False)
    assert (out.returncode, out.stdout) == (0, "console: status --json\n")


def _exit_now(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, check=False)


def test_exit_now_flushes_and_keeps_the_code() -> None:
    """The launcher ends with exit_now: no teardown, but what was printed arrives."""
    root = paths.package_paths()[0]
    out = _exit_now(f"import sys; sys.path.append({root!r}); "
                    "from agent_mesh.cli.guard import exit_now; "
                    "print('out', end=''); print('err', end='', file=sys.stderr); exit_now(4)")
    assert (out.returncode, out.stdout, out.stderr) == (4, "out", "err")


def test_exit_now_runs_exit_functions_when_there_are_some() -> None:
    """The OpenSSH transport registers an atexit function: it runs before the exit."""
    root = paths.package_paths()[0]
    out = _exit_now(f"import sys, atexit; sys.path.append({root!r}); "
                    "from agent_mesh.cli.guard import exit_now; "
                    "atexit.register(lambda: print('at exit')); exit_now(3)")
    assert (out.returncode, out.stdout) == (3, "at exit\n"), out.stderr


@pytest.mark.parametrize(("argv", "collecting"), [
    (["rpc", "--help"], "False"), (["push", "--help"], "False"),
    (["agent-event", "--help"], "False"),
    (["queue-run", "--help"], "True"), (["status", "--help"], "True"),
    (["lock", "--help"], "True")])
def test_the_collector_stays_off_only_for_the_short_lived_commands(
        argv: list[str], collecting: str) -> None:
    """agent-mesh's launcher turns the collector off; cli/entry.py turns it back on for
    everything but status, sync, push, rpc and agent-event (an MCP server or a waiter lives long;
    `status --help` is click's)."""
    code = (f"import atexit, gc, sys; gc.disable(); sys.path += {paths.package_paths()!r}; "
            f"sys.argv = ['agent-mesh', *{argv!r}]; "
            "atexit.register(lambda: sys.stderr.write(f'gc {gc.isenabled()}')); "
            "from agent_mesh.cli.entry import main; main()")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and out.stderr.endswith(f"gc {collecting}"), out.stderr
