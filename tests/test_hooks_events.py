"""The tmux hooks on real private tmux servers: every event keeps the registry live.

Hooks run in the background (`run-shell -b`), so every check is a retry_until
on "local.toml and registry.toml hold exactly the live windows", compared with
what tmux itself lists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, SELF_HOST, TmuxServer, retry_until, run_cli, unique

from agent_mesh.registry.naming import is_scratch_session
from agent_mesh.tmux import fields_format, parse_records

_LIVE = ("session_id", "session_name", "window_id", "window_index", "window_name", "pane_id")
HOOK_EVENTS = (
    "session-created", "session-closed", "window-linked", "window-unlinked", "window-renamed",
    "session-renamed",
)


def agents_dir() -> Path:
    return Path.home() / ".agents"


def read_agents(name: str = "local.toml") -> dict[str, dict[str, str]] | None:
    """The `[agents.*]` tables of a registry file; None while missing or unparsable."""
    try:
        return tomllib.loads((agents_dir() / name).read_text()).get("agents", {})
    except (FileNotFoundError, tomllib.TOMLDecodeError, KeyError):
        return None


def live(server: TmuxServer) -> set[tuple[str, ...]]:
    """(session_id, window_id, session, window, target, pane_id) of every live window."""
    out = subprocess.run(["tmux", "list-windows", "-a", "-F", fields_format(_LIVE)],
                         capture_output=True, check=False).stdout
    return {
        (r["session_id"], r["window_id"], r["session_name"], r["window_name"],
         f"{r['session_name']}:{r['window_index']}", r["pane_id"])
        for r in parse_records(out, _LIVE)
        if not is_scratch_session(r["session_name"])
    }


def registered(name: str = "local.toml") -> set[tuple[str, ...]] | None:
    tables = read_agents(name)
    if tables is None:
        return None
    return {(t["session_id"], t["window_id"], t["session"], t["window"], t["target"],
             t["pane_id"]) for t in tables.values()}


def in_step(server: TmuxServer) -> bool:
    """Both files hold exactly the live windows (one table each)."""
    want = live(server)
    return registered() == want and registered("registry.toml") == want


SLOW = 30.0  # seconds: generous, hooks are background processes on a loaded machine


def wait_in_step(server: TmuxServer, timeout: float = SLOW) -> None:
    retry_until(lambda: in_step(server), timeout=timeout)


def hook_log() -> str:
    path = agents_dir() / "hook.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_logged(text: str, timeout: float = SLOW) -> None:
    retry_until(lambda: text in hook_log(), timeout=timeout)


@pytest.fixture
def hooked(tmux_server: TmuxServer) -> TmuxServer:
    """A server with session `main` (shell window), the snippet's hooks loaded, and
    the registry in step (installing hooks fires no event by itself)."""
    tmux_server.start("main", "shell")
    tmux_server.install_hooks()
    assert _run_event("setup").returncode == 0
    wait_in_step(tmux_server)
    return tmux_server


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


# --- every event --------------------------------------------------------------


def test_every_event_keeps_both_files_live(hooked: TmuxServer) -> None:
    tmux("new-session", "-d", "-s", "second", "-n", "one")
    wait_logged("(session-created)")
    wait_in_step(hooked)
    tmux("new-window", "-d", "-t", "=second:", "-n", "two")
    wait_logged("(window-linked)")
    wait_in_step(hooked)
    tmux("rename-window", "-t", "=second:two", "deux")
    wait_logged("(window-renamed)")
    wait_in_step(hooked)
    assert any(t["window"] == "deux" for t in read_agents().values())  # type: ignore[union-attr]
    tmux("link-window", "-d", "-s", "=second:deux", "-t", "=main:")
    wait_in_step(hooked)
    linked = [t for t in read_agents().values() if t["window"] == "deux"]  # type: ignore[union-attr]
    assert {t["session"] for t in linked} == {"main", "second"}
    assert len({t["window_id"] for t in linked}) == 1
    tmux("unlink-window", "-t", "=main:deux")
    wait_logged("(window-unlinked)")
    wait_in_step(hooked)
    tmux("kill-window", "-t", "=second:one")
    wait_in_step(hooked)
    tmux("rename-session", "-t", "=second", "renamed")
    wait_logged("(session-renamed)")
    wait_in_step(hooked)
    assert f"{SELF_HOST}-renamed-deux" in read_agents()  # type: ignore[operator]
    tmux("kill-session", "-t", "=renamed")
    wait_logged("(session-closed)")
    wait_in_step(hooked)
    assert {t["session"] for t in read_agents().values()} == {"main"}  # type: ignore[union-attr]


def test_closing_the_last_session_empties_the_slice(hooked: TmuxServer) -> None:
    tmux("new-window", "-d", "-t", "=main:", "-n", "w")
    retry_until(lambda: len(read_agents() or {}) == 2, timeout=SLOW)
    tmux("kill-session", "-t", "=main")
    retry_until(lambda: read_agents() == {} and read_agents("registry.toml") == {}, timeout=SLOW)


def test_automatic_rename_is_followed(hooked: TmuxServer) -> None:
    pane = hooked.new_window("main", "placeholder")
    tmux("set-option", "-w", "-t", pane.window_id, "automatic-rename", "on")
    pane.send_keys("exec sleep 300", "Enter")
    retry_until(lambda: pane.display("#{window_name}") == "sleep", timeout=SLOW)
    wait_in_step(hooked)
    table = read_agents()[f"{SELF_HOST}-main-sleep"]  # type: ignore[index]
    assert table["command"] == "sleep" and table["pane_id"] == pane.pane_id


def test_snippet_has_every_event_at_index_87(hooked: TmuxServer) -> None:
    hooks = tmux("show-hooks", "-g") + tmux("show-hooks", "-gw")
    for event in HOOK_EVENTS:
        lines = [line for line in hooks.splitlines() if line.startswith(f"{event}[87] ")]
        assert len(lines) == 1, (event, hooks)
        assert lines[0].endswith(f'tmux-event {event}"')
        assert "#{" not in lines[0]  # no format, so no name can reach the shell


def test_resourcing_is_idempotent_and_keeps_user_hooks(tmux_server: TmuxServer,
                                                       tmp_path: Path) -> None:
    tmux_server.start("main")
    marker = tmp_path / "user-hook-ran"
    tmux("set-hook", "-g", "session-created", f"run-shell 'echo x >> {marker}'")
    tmux("set-hook", "-g", "window-renamed[3]", "display-message user3")
    tmux_server.install_hooks()
    first = tmux("show-hooks", "-g") + tmux("show-hooks", "-gw")
    tmux("source-file", str(REPO / "agent_mesh/ops/data/tmux.conf.snippet"))
    tmux("source-file", str(REPO / "agent_mesh/ops/data/tmux.conf.snippet"))
    again = tmux("show-hooks", "-g") + tmux("show-hooks", "-gw")
    assert first == again
    assert f"session-created[0] run-shell 'echo x >> {marker}'" in again.replace('"', "'")
    assert "window-renamed[3] display-message user3" in again
    tmux("new-session", "-d", "-s", "fresh")
    retry_until(lambda: marker.exists(), timeout=SLOW)  # the user's hook still runs...
    retry_until(lambda: any(t["session"] == "fresh" for t in (read_agents() or {}).values()),
                timeout=SLOW)


# --- many hooks at once -------------------------------------------------------


def _watch_files(stop: threading.Event, errors: list[str], reads: list[int]) -> None:
    """Parse both files in a loop: a reader must never see a partial write."""
    while not stop.is_set():
        for name in ("local.toml", "registry.toml"):
            try:
                tomllib.loads((agents_dir() / name).read_text())
                reads.append(1)
            except FileNotFoundError:
                pass
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                errors.append(f"{name}: {exc}")


def _assert_thirty_more(server: TmuxServer, before: int) -> None:
    retry_until(lambda: len(live(server)) == before + 30, timeout=SLOW)
    wait_in_step(server, timeout=60)
    text = (agents_dir() / "local.toml").read_text()
    assert text.count("\n[agents.") == before + 30  # no duplicate table either
    assert len(read_agents() or {}) == before + 30
    retry_until(lambda: not [p for p in agents_dir().iterdir() if p.name.endswith(".tmp")],
                timeout=SLOW)


def test_thirty_windows_in_one_command_list(hooked: TmuxServer) -> None:
    hooked.new_window("main", "pre")
    wait_in_step(hooked)
    before = len(live(hooked))
    argv = ["tmux"]
    for i in range(30):
        argv += [*([";"] if i else []), "new-window", "-d", "-t", "=main:", "-n", "sleep",
                 "sleep", "600"]
    stop, errors, reads = threading.Event(), [], []
    watcher = threading.Thread(target=_watch_files, args=(stop, errors, reads))
    watcher.start()
    try:
        subprocess.run(argv, check=True, capture_output=True)
        _assert_thirty_more(hooked, before)
    finally:
        stop.set()
        watcher.join()
    assert errors == [] and len(reads) > 10
    names = sorted(a for a in read_agents() or {} if "-main-sleep" in a)
    expected = [f"{SELF_HOST}-main-sleep"] + [f"{SELF_HOST}-main-sleep-{n}" for n in range(2, 31)]
    assert names == sorted(expected)


def test_thirty_parallel_clients(hooked: TmuxServer) -> None:
    wait_in_step(hooked)
    before = len(live(hooked))
    procs = [
        subprocess.Popen(["tmux", "new-window", "-d", "-t", "=main:", "-n", f"par{i}",
                          "sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(30)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 30
    _assert_thirty_more(hooked, before)
    assert {f"{SELF_HOST}-main-par{i}" for i in range(30)} <= set(read_agents() or {})


# --- names --------------------------------------------------------------------


def test_duplicate_slugs_are_distinct_and_stable(hooked: TmuxServer) -> None:
    first = hooked.new_window("main", "build")
    second = hooked.new_window("main", "Build")
    wait_in_step(hooked)
    tables = read_agents() or {}
    assert tables[f"{SELF_HOST}-main-build"]["pane_id"] == first.pane_id
    assert tables[f"{SELF_HOST}-main-build-2"]["pane_id"] == second.pane_id
    hooked.new_window("main", "other")
    tmux("rename-window", "-t", "=main:shell", "zzz")
    wait_in_step(hooked)
    assert run_cli("agent-discover").returncode == 0
    tables = read_agents() or {}
    assert tables[f"{SELF_HOST}-main-build"]["pane_id"] == first.pane_id
    assert tables[f"{SELF_HOST}-main-build-2"]["pane_id"] == second.pane_id


ODD_WINDOW_NAMES = [
    "a|b", "tab\there", "new\nline", "esc\x1b[31mred", 'dq"uote', "back\\slash",
    "ünïcødé 🙂", "", "L" * 200, "$(touch /tmp/never)", "-leading", "semi;colon",
]


def test_odd_window_and_session_names_are_stored_exactly(hooked: TmuxServer) -> None:
    marker = f"/tmp/pwned-{unique('')}"
    evil = f"evil$(touch {marker})"
    quotes = "a'b\"c"
    panes = {name: hooked.new_window("main", name) for name in ODD_WINDOW_NAMES}
    tmux("new-session", "-d", "-s", evil, "-n", f"w`touch {marker}`")
    tmux("new-session", "-d", "-s", quotes, "-n", "$HOME")
    # tmux stores control characters in session names vis-escaped (`\\t`): the
    # registry must hold exactly what tmux reports (in_step compares them).
    tmux("new-session", "-d", "-s", "ses\tsion\nx\x1b ünï|\\")
    wait_in_step(hooked)
    tables = read_agents() or {}
    by_pane = {t["pane_id"]: (address, t) for address, t in tables.items()}
    for name, pane in panes.items():
        address, table = by_pane[pane.pane_id]
        assert table["window"] == name and table["session"] == "main"
        part = address.removeprefix(f"{SELF_HOST}-main-")
        assert 0 < len(part) <= 40 and "--" not in part
        if name == "":
            index = pane.display("#{window_index}")
            assert part == f"win{index}" and table["target"] == f"main:{index}"
    assert {(t["session"], t["window"]) for t in tables.values()} >= {
        (evil, f"w`touch {marker}`"), (quotes, "$HOME"),
    }
    assert "ses\\tsion\\nx\\033 ünï|\\\\" in {t["session"] for t in tables.values()}
    assert not Path(marker).exists()
    text = (agents_dir() / "registry.toml").read_text()
    assert "\x1b" not in text and "\t" not in text.replace("\n", "")


# --- the on/off interface ------------------------------------------------------


def _seed_other_session(server: TmuxServer) -> None:
    """Register everything, then hand-mark session `keep` so a rewrite would show."""
    assert run_cli("agent-discover").returncode == 0
    path = agents_dir() / "local.toml"
    text = path.read_text()
    marked = text.replace('session = "keep"', 'session = "keep"\nrole = "hand-set"')
    marked = marked.replace('role = "Shell agent in keep:k', 'xrole = "Shell agent in keep:k')
    path.write_text(marked)


def _tables_of(session: str) -> dict[str, dict[str, str]]:
    return {a: t for a, t in (read_agents() or {}).items() if t["session"] == session}


@pytest.mark.parametrize("by_id", [False, True])
def test_on_and_off_rewrite_only_that_session(tmux_server: TmuxServer, by_id: bool) -> None:
    tmux_server.start("keep", "k")
    tmux_server.start("work", "w1")
    tmux_server.new_window("work", "w2")
    _seed_other_session(tmux_server)
    kept = _tables_of("keep")
    assert all(t["role"] == "hand-set" for t in kept.values())
    tmux("rename-window", "-t", "=work:w1", "renamed")
    tmux("kill-window", "-t", "=work:w2")
    tmux("new-window", "-d", "-t", "=keep:", "-n", "not-yet")
    name = tmux("display-message", "-p", "-t", "=work:", "#{session_id}").strip() if by_id \
        else "work"
    out = run_cli("agent-register-hook", "on", name)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert _tables_of("keep") == kept  # untouched, hand edit and missing window included
    assert [t["window"] for t in _tables_of("work").values()] == ["renamed"]
    assert registered("registry.toml") == registered()
    out = run_cli("agent-register-hook", "off", name)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert _tables_of("work") == {}
    assert _tables_of("keep") == kept
    assert registered("registry.toml") == registered()


def test_on_with_corrupt_slice_rebuilds_everything(tmux_server: TmuxServer) -> None:
    tmux_server.start("a")
    tmux_server.start("b")
    (agents_dir() / "local.toml").write_text("[agents.x]\nhost = 'unterminated\n")
    assert run_cli("agent-register-hook", "on", "a").returncode == 0
    assert {t["session"] for t in (read_agents() or {}).values()} == {"a", "b"}


def test_scratch_sessions_are_skipped(hooked: TmuxServer) -> None:
    scratch = ["scratch", "tmp", "temp", "test", "test-run", "_private"]
    kept = ["testing", "tmpl", "my_test"]
    for name in scratch + kept:
        tmux("new-session", "-d", "-s", name)
    wait_in_step(hooked)
    assert {t["session"] for t in (read_agents() or {}).values()} == {"main", *kept}
    assert run_cli("agent-register-hook", "on", "scratch").returncode == 0
    assert {t["session"] for t in (read_agents() or {}).values()} == {"main", *kept}


# --- roles, scopes and fields -------------------------------------------------


def _named_program(tmp_path: Path, name: str) -> str:
    """A copy of sleep under another name: its pane_current_command is `name`."""
    path = tmp_path / name
    path.symlink_to(subprocess.run(["sh", "-c", "command -v sleep"], capture_output=True,
                                   text=True, check=True).stdout.strip())
    return str(path)


def test_role_and_scope_precedence_and_inference(tmux_server: TmuxServer,
                                                 tmp_path: Path) -> None:
    tmux_server.start("crew", "lead")
    codex = tmux_server.new_window("crew", "cx", [_named_program(tmp_path, "codex"), "300"])
    claude = tmux_server.new_window("crew", "cl", [_named_program(tmp_path, "claude"), "300"])
    other = tmux_server.new_window("crew", "tool", ["sleep", "300"])
    tmux_server.start("solo", "sh")
    tmux("set-option", "-t", "crew", "@agent-role", "session role")
    tmux("set-option", "-t", "crew", "@agent-scope", "session scope")
    tmux("set-option", "-w", "-t", codex.window_id, "@agent-role", "window role")
    tmux_server.install_hooks()
    tmux("rename-window", "-t", "=solo:sh", "shell")  # any event: a full rescan
    retry_until(lambda: len(read_agents() or {}) == 5, timeout=SLOW)
    tables = {t["pane_id"]: t for t in (read_agents() or {}).values()}
    assert (tables[codex.pane_id]["role"], tables[codex.pane_id]["scope"]) == (
        "window role", "session scope")
    assert (tables[claude.pane_id]["role"], tables[claude.pane_id]["scope"]) == (
        "session role", "session scope")
    assert tables[other.pane_id]["role"] == "session role"
    tmux("set-option", "-u", "-t", "crew", "@agent-role")
    tmux("set-option", "-u", "-t", "crew", "@agent-scope")
    assert run_cli("agent-discover").returncode == 0
    tables = {t["pane_id"]: t for t in (read_agents() or {}).values()}
    assert tables[codex.pane_id]["role"] == "window role"
    assert tables[codex.pane_id]["command"] == "codex"
    assert tables[claude.pane_id]["role"] == "Claude Code agent in crew:cl"
    assert tables[other.pane_id]["role"] == "sleep agent in crew:tool"
    solo = next(t for t in tables.values() if t["session"] == "solo")
    assert solo["role"] == "Shell agent in solo:shell"
    assert solo["scope"] == "" and tables[codex.pane_id]["scope"] == ""  # empty unless set
    # A global (`set -g`) value is the weakest label: it beats only inference.
    tmux("set-option", "-g", "@agent-role", "everyone")
    tmux("set-option", "-t", "crew", "@agent-role", "session role")
    assert run_cli("agent-discover").returncode == 0
    tables = {t["pane_id"]: t for t in (read_agents() or {}).values()}
    assert tables[codex.pane_id]["role"] == "window role"
    assert tables[claude.pane_id]["role"] == "session role"
    assert next(t for t in tables.values() if t["session"] == "solo")["role"] == "everyone"


def test_fields_match_tmux(hooked: TmuxServer) -> None:
    pane = hooked.new_window("main", "fields", ["sleep", "300"])
    wait_in_step(hooked)
    table = (read_agents() or {})[f"{SELF_HOST}-main-fields"]
    assert table["host"] == SELF_HOST
    assert table["pane_id"] == pane.pane_id
    assert table["window_id"] == pane.window_id
    assert table["session_id"] == pane.display("#{session_id}")
    assert table["target"] == f"main:{pane.display('#{window_index}')}"
    assert table["command"] == "sleep"
    assert (registry_table := (read_agents("registry.toml") or {})[f"{SELF_HOST}-main-fields"])
    assert registry_table == table


def test_updated_kept_when_nothing_changed(tmux_server: TmuxServer) -> None:
    tmux_server.start("main", "a")
    tmux_server.new_window("main", "b")
    assert run_cli("agent-discover").returncode == 0
    path = agents_dir() / "local.toml"
    old = "2001-02-03T04:05:06Z"
    text = path.read_text()
    stamped = "\n".join(
        f'updated = "{old}"' if line.startswith("updated = ") else line
        for line in text.split("\n")
    )
    path.write_text(stamped)
    assert run_cli("agent-register-hook", "rescan").returncode == 0
    assert {t["updated"] for t in (read_agents() or {}).values()} == {old}
    tmux("rename-window", "-t", "=main:b", "c")
    assert run_cli("agent-register-hook", "rescan").returncode == 0
    stamps = {t["window"]: t["updated"] for t in (read_agents() or {}).values()}
    assert stamps["a"] == old and stamps["c"] != old
    assert stamps == {t["window"]: t["updated"]
                      for t in (read_agents("registry.toml") or {}).values()}


def test_corrupt_local_toml_is_rebuilt_by_next_hook(hooked: TmuxServer) -> None:
    path = agents_dir() / "local.toml"
    for garbage in ("[[[ not toml", "[agents.x]\nhost = 1\n[agents.x]\nhost = 2\n",
                    "\xff\xfe binary"):
        path.write_text(garbage, errors="surrogateescape")
        hooked.new_window("main", unique("w"))
        wait_in_step(hooked)


# --- failing quietly ------------------------------------------------------------


def _run_event(event: str = "window-linked", env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[bytes]:
    script = Path.home() / ".local" / "share" / "agent-mesh" / "hooks" / "tmux-event"
    return subprocess.run([str(script), event], capture_output=True, timeout=30,
                          env={**os.environ, **(env or {})}, check=False)


def test_broken_agents_dir_exits_zero_and_logs_one_line(hooked: TmuxServer) -> None:
    wait_in_step(hooked)
    local = agents_dir() / "local.toml"
    local.unlink()
    local.mkdir()
    before = hook_log().count("\n")
    for run in (lambda: _run_event(), lambda: run_cli("agent-register-hook", "rescan")):
        out = run()
        assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    lines = hook_log().splitlines()[before:]
    errors = [line for line in lines if "error on" in line]
    assert len(errors) == 2 and all("Is a directory" in line for line in errors), lines
    assert len(lines) == 2  # one line per run: no traceback in the log either


def _python_ok_for_nobody(python: str) -> bool:
    check = "import sys; sys.exit(sys.version_info < (3, 11))"
    try:
        return subprocess.run([python, "-I", "-S", "-c", check], user=65534, cwd="/",
                              capture_output=True, timeout=30, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the hook as another user")
def test_unwritable_agents_dir_exits_zero_and_logs_one_line(hooked: TmuxServer) -> None:
    wait_in_step(hooked)
    home = Path.home()
    for path in (home.parent, home, home / ".agents"):
        path.chmod(0o755)
    log = agents_dir() / "hook.log"
    log.touch()
    log.chmod(0o666)
    before = hook_log().count("\n")
    # The venv may live where `nobody` can't reach (/root); run the hook's lean
    # path (as tmux-event does) with a system python 3.11+ instead.
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                   if _python_ok_for_nobody(p)), None)
    if python is None:
        pytest.skip("no python 3.11+ that user nobody can run")
    # A fresh clone may sit in a 0700 directory (mktemp -d): give nobody a copy.
    readable = Path(tempfile.mkdtemp(prefix="amnobody", dir="/tmp"))
    try:
        readable.chmod(0o755)
        shutil.copytree(REPO / "agent_mesh", readable / "agent_mesh",
                        ignore=shutil.ignore_patterns("__pycache__"))
        code = (f"import sys; sys.path.insert(0, {str(readable)!r})\n"
                "from agent_mesh.cli.hook import main\nmain(['rescan', 'unwritable'])")
        out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True,
                             timeout=30, check=False, user=65534, env={**os.environ})
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    lines = hook_log().splitlines()[before:]
    assert len(lines) == 1 and "Permission denied" in lines[0], lines


def test_no_tmux_server_writes_an_empty_slice(isolated_env: Path) -> None:
    (agents_dir() / "local.toml").write_text(
        '[agents.testhost-gone-w]\nhost = "testhost"\ntarget = "gone:0"\n')
    out = run_cli("agent-register-hook", "rescan")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert read_agents() == {} and read_agents("registry.toml") == {}
    assert "rescan (manual): 0 window(s)" in hook_log()


def test_missing_console_script_is_logged_not_shown(hooked: TmuxServer) -> None:
    (Path.home() / ".local" / "bin" / "agent-register-hook").unlink()
    (agents_dir() / "hook.launch").unlink(missing_ok=True)
    out = _run_event()
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert "agent-register-hook not found" in hook_log()


@pytest.mark.parametrize(
    "args",
    [[], ["on"], ["off"], ["bogus"], ["on", "a", "b"], ["$(touch /tmp/never-am)"], [""],
     ["rescan", "x", "y"], ["on", ""], ["off", "no such session"]],
)
def test_hook_accepts_odd_args_silently(isolated_env: Path, args: list[str]) -> None:
    out = run_cli("agent-register-hook", *args)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert not Path("/tmp/never-am").exists()
    assert hook_log().count("\n") == 1


# --- the fast launcher --------------------------------------------------------


def test_launcher_records_and_uses_the_lean_path(hooked: TmuxServer) -> None:
    hooked.new_window("main", "one")
    launch = agents_dir() / "hook.launch"
    retry_until(lambda: launch.exists(), timeout=SLOW)
    py, root = launch.read_text().splitlines()
    assert Path(py).exists() and (Path(root) / "agent_mesh" / "cli" / "hook.py").exists()
    hooked.new_window("main", "two")
    wait_in_step(hooked)
    out = _run_event("window-linked")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
    assert hook_log().splitlines()[-1].endswith("[no-site]")


def test_launcher_falls_back_when_the_record_is_stale(hooked: TmuxServer) -> None:
    launch = agents_dir() / "hook.launch"
    launch.write_text("/nonexistent/python\n/nowhere\n")
    assert _run_event().returncode == 0
    assert launch.read_text().splitlines()[0] != "/nonexistent/python"
    assert not hook_log().splitlines()[-1].endswith("[no-site]")
    launch.write_text(f"{sys.executable}\n/nowhere\n")  # python fine, package gone
    assert _run_event().returncode == 0
    assert "/nowhere" not in launch.read_text()
    assert "rescan (window-linked)" in hook_log().splitlines()[-1]
    os.utime(launch, (1, 1))  # older than the console script: a reinstall happened
    assert _run_event().returncode == 0
    assert not hook_log().splitlines()[-1].endswith("[no-site]")
    assert launch.stat().st_mtime > 1
    assert _run_event().returncode == 0
    assert hook_log().splitlines()[-1].endswith("[no-site]")


def test_hook_path_imports_stay_lean(tmux_server: TmuxServer) -> None:
    """No subprocess/re/click (nor tomllib, dataclasses, pathlib...) on the hook path."""
    tmux_server.start("main")
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules)\n"
        "from agent_mesh.cli import hook\nhook.main(['rescan'])\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True, env=dict(os.environ)).stdout
    loaded = set(out.split())
    heavy = {"subprocess", "re", "click", "tomllib", "tomlkit", "dataclasses", "pathlib",
             "typing", "socket", "enum", "contextlib", "json", "psutil"}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert "rescan (manual): 1 window(s)" in hook_log()
