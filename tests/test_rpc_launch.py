"""How a peer's side of a request starts (issue 20): REMOTE_COMMAND, run by a real
bash as sshd runs it (`$SHELL -c COMMAND`), execs the launcher `agent-mesh setup`
writes, `python -I -S` with no `sh -c`, console script, `site` or `json` (whose `re`
and `enum` cost milliseconds), and still answers exit 127 ("not installed") when
there is nothing to run. Seen with strace, the real processes, no mocks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, REPO

from agent_mesh import __version__
from agent_mesh.mesh.wire import PROTOCOL, REMOTE_COMMAND, decode_reply, dumps, loads
from agent_mesh.ops import setup

HELLO = dumps({"op": "hello", "protocol": PROTOCOL, "version": __version__}).encode() + b"\n"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".agents").mkdir(parents=True)
    (home / ".agents" / "self.conf").write_text("peer\n")
    return home


def _install_launcher(home: Path) -> subprocess.CompletedProcess[str]:
    """What `agent-mesh setup` does for the launcher, as that user (HOME)."""
    code = ("from agent_mesh.ops import setup; r = setup.Report(); "
            "setup.install_rpc_launcher(r); print(r.lines)")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, check=False)


def _as_sshd(home: Path, path: str, trace: Path | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    """REMOTE_COMMAND as sshd starts it: the user's shell with -c, in HOME."""
    argv = ["bash", "-c", REMOTE_COMMAND]
    if trace is not None:
        argv = ["strace", "-f", "-qq", "-e", "trace=execve,openat", "-e", "signal=none",
                "-o", str(trace), *argv]
    env = {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8"}
    return subprocess.run(argv, input=HELLO, env=env, cwd=home, capture_output=True,
                          timeout=30, check=False)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_request_starts_python_lean_without_sh_or_the_console_script(tmp_path: Path) -> None:
    home = _home(tmp_path)
    made = _install_launcher(home)
    assert made.returncode == 0, made.stderr
    launcher = home / ".local" / "share" / "agent-mesh" / "rpc"
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert launcher.read_text().splitlines()[0] == f"#!{sys.executable} -IS"

    trace = tmp_path / "trace"
    out = _as_sshd(home, f"{BIN}:/usr/bin:/bin", trace)
    assert out.returncode == 0, out.stderr
    assert decode_reply("peer", out.stdout, 0)["host"] == "peer"
    lines = trace.read_text().splitlines()
    started = [line.split('"')[1] for line in lines if "execve(" in line and "= 0" in line]
    assert started == ["/usr/bin/bash", str(launcher)], started  # no sh, no console script
    opened = [line.split('"')[1] for line in lines if "openat(" in line and "= -1" not in line]
    for module in ("/site.py", "/json/", "/re/", "/enum.py", "bin/agent-mesh"):
        assert not [path for path in opened if module in path], (module, opened)


def test_without_the_launcher_the_console_script_answers(tmp_path: Path) -> None:
    """A host set up before the launcher existed, or by hand: as before."""
    home = _home(tmp_path)
    out = _as_sshd(home, f"{BIN}:/usr/bin:/bin")
    assert out.returncode == 0, out.stderr
    assert decode_reply("peer", out.stdout, 0)["host"] == "peer"


def test_nothing_to_run_is_exit_127(tmp_path: Path) -> None:
    """No launcher and no agent-mesh; a launcher whose package is gone; one whose
    interpreter is gone: each is exit 127 with nothing on stdout, "not installed"."""
    home = _home(tmp_path)
    out = _as_sshd(home, "/usr/bin:/bin")
    assert (out.returncode, out.stdout) == (127, b"")

    gone = tmp_path / "no-package-here"
    gone.mkdir()
    text = setup.rpc_launcher_text(sys.executable, [str(gone)])
    assert text is not None
    launcher = home / ".local" / "share" / "agent-mesh" / "rpc"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(text)
    launcher.chmod(0o755)
    out = _as_sshd(home, "/usr/bin:/bin")
    assert (out.returncode, out.stdout) == (127, b""), out.stderr

    launcher.write_text(text.replace(sys.executable, str(gone / "python"), 1))
    out = _as_sshd(home, "/usr/bin:/bin")
    assert (out.returncode, out.stdout) == (127, b""), out.stderr
    with pytest.raises(Exception, match="not installed there"):
        decode_reply("peer", out.stdout, out.returncode)


def test_an_interpreter_a_shebang_cannot_name_gets_no_launcher(tmp_path: Path) -> None:
    """Whitespace or a #! line too long: no launcher (requests start the console script)."""
    assert setup.rpc_launcher_text("/opt/my python/bin/python", [str(REPO)]) is None
    assert setup.rpc_launcher_text("/o" + "x" * 130 + "/python", [str(REPO)]) is None
    assert setup.rpc_launcher_text("python3", [str(REPO)]) is None
    text = setup.rpc_launcher_text("/usr/bin/python3", ["/a'b\"c\n"])
    assert text is not None and "sys.path += ['/a\\'b\"c\\n']" in text


def test_the_codec_reads_and_writes_what_json_does() -> None:
    import json

    value = {"a": [1, 2.5, None, True, False, "x\u00e9\n\"\\\x1b😀"], "b": {"c": -3e-7}}
    assert dumps(value) == json.dumps(value)
    assert loads(json.dumps(value).encode()) == value
    assert loads(" \n" + json.dumps(value) + "\n") == value
    for bad in (b"", b"{", b"[1,]", b"{} x", b"\xff", b"{'a': 1}"):
        with pytest.raises(ValueError):
            loads(bad)
    with pytest.raises(TypeError):
        dumps({"a": object()})
