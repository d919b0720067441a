"""The README tells the truth: its quick start replays, its exit codes match the code.

The quick start is a newcomer transcript (issue 8: "true when replayed"). Every
```console block in the README's "Quick start" section is replayed in this test's
fresh HOME and private tmux server, after `agent-mesh setup` (what install.sh runs;
systemctl and crontab are stand-ins so nothing outside HOME changes). `$ ` lines
are commands, the lines under them their output (stdout and stderr together). A
line `…` stands for lines left out; otherwise shown lines must be consecutive.
Before comparing, what varies between runs is replaced by placeholders: ISO and
log timestamps, the host alias, short ids, ages, /tmp paths; runs of spaces are
one space (column widths follow the longest cell).

Commands that only read (`--list`, status, peek, log, doctor) are retried until
they match, since windows register through tmux hooks and Enter follows a paste
after a settle: the transcript is what a person typing sees a moment later.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, REPO, SELF_HOST

from agent_mesh import errors
from agent_mesh.cli.notify import USAGE

README = REPO / "README.md"
README_HOST = "vm"  # the host alias of the machine the README's transcript was taken on
GAP = "…"
READ_ONLY = ("notify-pane --list", "agent-mesh status", "agent-mesh peek", "agent-mesh log",
             "agent-mesh inbox", "agent-mesh doctor", "echo ")
RETRY_SECONDS = 15.0

FAKE_SYSTEMCTL = "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n"
FAKE_CRONTAB = """#!/bin/sh
table="$(dirname "$0")/crontab.table"
case "$1" in
  -l) if [ -f "$table" ]; then cat "$table"; else echo "no crontab for you" >&2; exit 1; fi ;;
  -) cat >"$table" ;;
  -r) rm -f "$table" ;;
esac
"""


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else len(text)]


def transcript() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of the quick start's console blocks."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", section("Quick start"), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


_ISO = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\dZ?")
_TMP = re.compile(r"/tmp/[^\s)'\"]+")
_ID = re.compile(r"\b[0-9a-f]{6}\b")
_AGE = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s|m|h|d)\b")
_PID = re.compile(r"\bpid \d+\b")


def normal(line: str, host: str) -> str:
    line = _ISO.sub("<ts>", line)
    line = _TMP.sub("<tmp>", line)
    line = re.sub(r"\u2713[\w.-]+", "\u2713<host>", line)  # a verified host: the demo's own
    line = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w.])", "<host>", line)
    line = _PID.sub("pid <n>", line)
    line = _ID.sub("<id>", line)
    line = _AGE.sub("<age>", line)
    return " ".join(line.split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Expected lines appear in actual in order; consecutive unless a `…` line is between
    them (a leading `…` skips lines before, a trailing one lines after; without a
    trailing `…` the output ends where the shown lines end)."""
    if not expected:
        return not actual
    chunks: list[list[str]] = [[]]
    for line in expected:
        if line.strip() == GAP:
            chunks.append([])
        else:
            chunks[-1].append(line)
    anchored_start = expected[0].strip() != GAP
    anchored_end = expected[-1].strip() != GAP
    pos = 0
    for k, chunk in enumerate(chunks):
        if not chunk:
            continue
        first = k == 0 and anchored_start
        last = k == len(chunks) - 1 and anchored_end
        starts = [pos] if first else range(pos, len(actual) - len(chunk) + 1)
        for at in starts:
            if actual[at: at + len(chunk)] == chunk and (not last
                                                         or at + len(chunk) == len(actual)):
                pos = at + len(chunk)
                break
        else:
            return False
    return True


def replay_env(home: Path) -> dict[str, str]:
    shims = home.parent / "shims"
    shims.mkdir(exist_ok=True)
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("crontab", FAKE_CRONTAB)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AGENT_MESH_RECEIVERS", "TMUX", "TMUX_PANE", "AGENT_NAME")}
    env.update(PATH=f"{home}/.local/bin:{shims}:/usr/local/bin:/usr/bin:/bin",
               SHELL="/bin/bash", COLUMNS="200")
    return env


def run(command: str, env: dict[str, str], home: Path) -> tuple[int, list[str]]:
    result = subprocess.run(["bash", "-c", command], cwd=home, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    return result.returncode, (result.stdout + result.stderr).splitlines()


def test_the_quick_start_is_true_when_replayed(isolated_env: Path) -> None:
    home = isolated_env
    env = replay_env(home)
    setup = subprocess.run([str(BIN / "agent-mesh"), "setup"], env=env, cwd=home,
                           capture_output=True, text=True, timeout=120, check=False)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    alias = (home / ".agents" / "self.conf").read_text().split()[0]
    assert alias == SELF_HOST  # setup keeps a self.conf it finds
    steps = transcript()
    assert len(steps) >= 8, "the quick start lost its transcript"
    last_rc = 0
    for shown_command, shown in steps:
        command = re.sub(rf"(?<![\w.-]){README_HOST}(?![\w.])", alias, shown_command)
        expected = [normal(line, README_HOST) for line in shown]
        deadline = time.monotonic() + (RETRY_SECONDS if command.startswith(READ_ONLY) else 0)
        while True:
            if command.strip() == "echo $?":
                rc, lines = last_rc, [str(last_rc)]
            else:
                rc, lines = run(command, env, home)
            actual = [normal(line, alias) for line in lines]
            if matches(expected, actual) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        assert matches(expected, actual), (
            f"README quick start: `$ {command}` printed\n" + "\n".join(lines)
            + "\n--- the README shows ---\n" + "\n".join(shown))
        last_rc = rc


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    (["a", "b"], ["a", "b"], True),
    (["a", "b"], ["a", "b", "c"], False),
    (["a", GAP], ["a", "b", "c"], True),
    ([GAP, "c"], ["a", "b", "c"], True),
    (["a", GAP, "c"], ["a", "b", "c"], True),
    (["a", "c"], ["a", "b", "c"], False),
    ([], [], True),
    ([], ["x"], False),
])
def test_transcript_matching(expected: list[str], actual: list[str], ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_normalising_hides_what_varies_only() -> None:
    line = "2026-11-30 11:42:21  6b81ef  vm-dev-notes  delivered   [from vm @ 2026-11-30T11:42:24Z]"
    assert normal(line, "vm") == ("<ts> <id> <host>-dev-notes delivered [from <host> @ <ts>]")
    assert normal("vmx-dev 12s", "vm") == "vmx-dev <age>"


def test_exit_codes_agree_everywhere() -> None:
    """One table: README's, errors.py's docstring and notify-pane --help name the same codes."""
    table = section("Exit codes")
    readme_codes = {int(c) for c in re.findall(r"^\| (\d) \|", table, re.M)}
    doc_codes = {int(c) for c in re.findall(r"^    (\d)  ", errors.__doc__ or "", re.M)}
    assert readme_codes == doc_codes == set(range(7))
    assert {errors.DELIVERED, errors.USAGE, errors.UNKNOWN_AGENT, errors.NOT_READY,
            errors.WIRE, errors.QUEUED, errors.ASK_TIMEOUT} == readme_codes
    block = USAGE.split("exit codes:")[1].split("\n\n")[0]
    help_codes = {int(c) for c in re.findall(r"(?:^  |   )(\d) ", block, re.M)}
    assert help_codes == set(range(6))  # notify-pane never waits for a reply (6 is ask's)
    assert "AGENT_MESH_MAX_FILE" in USAGE and "5 queued" in USAGE


def read_settings(root: Path = REPO) -> set[str]:
    """AGENT_MESH_* names the code uses as values: string literals in the package (a
    comment or a docstring naming one does not count) and `$NAME` or `${NAME` in
    install.sh's shell code."""
    import ast

    names: set[str] = set()
    for path in (root / "agent_mesh").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.update(re.findall(r"^AGENT_MESH_[A-Z_]+$", node.value))
    code = "\n".join(line.split("#", 1)[0] for line in
                     (root / "install.sh").read_text().splitlines())
    names.update(re.findall(r"\$\{?(AGENT_MESH_[A-Z_]+)", code))
    return names


def test_documented_settings_exist() -> None:
    """Every AGENT_MESH_* variable the README names is read somewhere: by the package, or
    (AGENT_MESH_PYTHON) by install.sh."""
    named = set(re.findall(r"AGENT_MESH_[A-Z_]+", README.read_text()))
    assert {"AGENT_MESH_MAX_FILE", "AGENT_MESH_SETTLE", "AGENT_MESH_RECEIVERS",
            "AGENT_MESH_SYNC_DEADLINE"} <= named
    missing = named - read_settings()
    assert not missing, f"README names settings the code does not read: {missing}"


def test_a_setting_named_only_in_a_comment_is_not_read(tmp_path: Path) -> None:
    """The check above can fail: a name in a comment or a docstring is not a read."""
    (tmp_path / "agent_mesh").mkdir()
    (tmp_path / "agent_mesh" / "m.py").write_text(
        '"""Docs name AGENT_MESH_DOC."""\nimport os\n\n'
        '# AGENT_MESH_COMMENT is read below (it is not)\n'
        'LIMIT = os.environ.get("AGENT_MESH_READ", "")\n')
    (tmp_path / "install.sh").write_text(
        '#!/bin/sh\n# AGENT_MESH_SHCOMMENT picks nothing\n'
        'echo "AGENT_MESH_ECHOED"\np=${AGENT_MESH_SHREAD:-python3}  # AGENT_MESH_TRAILING\n')
    assert read_settings(tmp_path) == {"AGENT_MESH_READ", "AGENT_MESH_SHREAD"}
