"""`agent-mesh doctor` on a healthy and on a broken setup, checked by check name.

Everything runs against the test's private HOME and tmux server (conftest). The
resync timer is made deterministic with stand-ins for `systemctl` and `crontab`
on PATH; unreachable peers are loopback ports only, reached through a throwaway
~/.ssh/config (OpenSSH reads its config from the passwd home, not $HOME, so a
small `ssh` wrapper passes `-F $HOME/.ssh/config`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SELF_HOST, TmuxServer
from lab.netlab import Lab

from agent_mesh import __version__
from agent_mesh.clock import now_iso
from agent_mesh.mesh import sync
from agent_mesh.model import Agent
from agent_mesh.ops import doctor
from agent_mesh.ops.doctor import Check
from agent_mesh.ops.setup import data_file
from agent_mesh.registry.local import rescan
from agent_mesh.tmux import Tmux

CRON_LINE = "*/5 * * * * $HOME/.local/bin/agent-discover >/dev/null 2>&1"


def by_name(checks: list[Check]) -> dict[str, Check]:
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    return {c.name: c for c in checks}


def fake_tool(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


_DAEMONS: list[subprocess.Popen[bytes]] = []


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A bin dir first on PATH: systemctl says the timer is inactive, crontab is empty."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    fake_tool(bindir, "systemctl", 'echo inactive; exit 3\n')
    fake_tool(bindir, "crontab", 'echo "no crontab for $USER" >&2; exit 1\n')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    yield bindir
    while _DAEMONS:
        daemon = _DAEMONS.pop()
        daemon.kill()
        daemon.wait()


def with_cron(bindir: Path, daemon: bool = True) -> None:
    """A crontab line running agent-discover and, unless told not to, a running
    process named `cron` (a `sleep` started through a symlink called cron)."""
    fake_tool(bindir, "crontab", f"cat <<'EOF'\n# m h dom mon dow command\n{CRON_LINE}\nEOF\n")
    if daemon:
        (bindir / "cron").symlink_to(shutil.which("sleep") or "/bin/sleep")
        _DAEMONS.append(subprocess.Popen([str(bindir / "cron"), "300"]))


def healthy_setup(server: TmuxServer, home: Path, bindir: Path) -> None:
    server.start()
    server.install_hooks()
    (home / ".agents" / "peers.conf").write_text(f"# one SSH alias per line\n{SELF_HOST}\n")
    rescan(Tmux())
    with_cron(bindir)


def test_healthy_setup_passes_every_check(tmux_server: TmuxServer, isolated_env: Path,
                                          tools: Path) -> None:
    healthy_setup(tmux_server, isolated_env, tools)
    checks = doctor.run_checks()
    named = by_name(checks)
    assert [c for c in checks if not c.ok] == []
    assert list(named) == ["tmux", "tmux-server", "tmux-hooks", "hook-launcher", "hook-command",
                           "path", "self.conf", "peers.conf", "local.toml", "registry.toml",
                           "hook-log", "inbox-parts", "timer"]
    assert named["tmux-hooks"].detail == "all 6 hooks live in the server"
    assert named["self.conf"].detail == f"this host is {SELF_HOST!r}"
    assert named["peers.conf"].detail.startswith("no peers")
    assert named["local.toml"].detail == "1 agent(s) on this host"
    assert named["registry.toml"].detail.startswith("1 agent(s), rebuilt ")
    assert named["timer"].detail == "crontab runs agent-discover (*/5 * * * *)"
    assert named["hook-launcher"].detail == "~/.local/share/agent-mesh/hooks/tmux-event"
    assert doctor.exit_code(checks) == 0
    lines = doctor.render(checks).splitlines()
    assert len(lines) == len(checks)
    assert all(line.startswith("ok   ") for line in lines), lines
    assert "ok   tmux-hooks: all 6 hooks live in the server" in lines


def _real_cron_runs() -> bool:
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() in ("cron", "crond"):
                return True
    return False


@pytest.mark.skipif(_real_cron_runs(), reason="a real cron daemon runs on this machine")
def test_a_crontab_line_without_a_cron_daemon_is_no_timer(tools: Path) -> None:
    with_cron(tools, daemon=False)
    check = doctor.check_timer()
    assert not check.ok
    assert "crontab runs agent-discover, but no cron daemon is running" in check.detail
    assert "start cron" in check.fix


@pytest.mark.skipif(_real_cron_runs(), reason="a real cron daemon runs on this machine")
@pytest.mark.parametrize("crontab_line", [True, False])
def test_no_systemd_and_no_cron_daemon_is_one_warning(tmux_server: TmuxServer,
                                                      isolated_env: Path, tools: Path,
                                                      crontab_line: bool) -> None:
    """Issue 21.21: a container (no systemd user manager, no cron daemon), set up as
    setup leaves it (with its crontab line, or without): exit 0, one warning saying
    what to run instead."""
    healthy_setup(tmux_server, isolated_env, tools)
    while _DAEMONS:  # no cron daemon after all
        daemon = _DAEMONS.pop()
        daemon.kill()
        daemon.wait()
    fake_tool(tools, "systemctl", "echo 'Failed to connect to bus: No medium found' >&2; "
              "exit 1\n")
    if not crontab_line:
        fake_tool(tools, "crontab", 'echo "no crontab for $USER" >&2; exit 1\n')
    checks = doctor.run_checks()
    assert doctor.exit_code(checks) == 0, doctor.render(checks)
    (warned,) = [c for c in checks if not c.ok]
    assert (warned.name, warned.status) == ("timer", "warn")
    assert "no systemd user manager, no cron daemon" in warned.detail
    assert "agent-discover" in warned.fix


def test_systemd_timer_counts_as_the_timer(tools: Path) -> None:
    fake_tool(tools, "systemctl", 'echo active\n')
    assert doctor.check_timer() == Check("timer", True,
                                         "systemd user timer agent-resync.timer is active")


def test_broken_setup_reports_each_failure_with_its_fix(tmux_server: TmuxServer,
                                                        isolated_env: Path, tools: Path) -> None:
    home = isolated_env
    tmux_server.start()  # a running server without the hooks loaded
    (home / ".tmux.conf").write_text(
        "set -g mouse on\n"
        "set-hook -g 'session-created[87]' 'run-shell -b "
        '"~/.local/share/agent-mesh/hooks/tmux-event session-created"\'\n'
    )
    (home / ".agents" / "registry.toml").write_text("[agents.x\nbroken = ")
    (home / ".agents" / "hook.log").write_text(
        f"{now_iso()} [42] rescan (session-created): 1 window(s) in 4.0 ms\n"
        f"{now_iso()} [43] error on ['rescan']: WireError: tmux list-windows failed\n"
    )
    checks = doctor.run_checks()
    named = by_name(checks)
    failed = {c.name for c in checks if c.status == "fail"}
    assert failed == {"tmux-hooks", "hook-launcher", "hook-command", "peers.conf", "local.toml",
                      "registry.toml", "timer"}, doctor.render(checks)

    hooks = named["tmux-hooks"]
    assert "not loaded in the running tmux server" in hooks.detail
    assert hooks.fix.startswith("tmux source-file ~/.tmux.conf")
    assert named["hook-launcher"].detail == "~/.local/share/agent-mesh/hooks/tmux-event is missing"
    assert "install.sh" in named["hook-launcher"].fix
    assert named["hook-command"].detail == "~/.local/bin/agent-register-hook is missing"
    assert named["peers.conf"].detail == "~/.agents/peers.conf is missing"
    assert "install.sh" in named["peers.conf"].fix
    assert named["local.toml"].detail.startswith("~/.agents/local.toml is missing")
    assert named["local.toml"].fix == "agent-discover"
    assert "registry.toml is not valid TOML" in named["registry.toml"].detail
    assert named["registry.toml"].fix.startswith("agent-discover")
    timer = named["timer"]
    assert "no crontab line runs agent-discover" in timer.detail
    assert "systemd user timer agent-resync.timer is inactive" in timer.detail
    assert timer.fix.startswith("agent-mesh setup")
    log = named["hook-log"]
    assert log.status == "warn" and "1 hook error(s) in the last 24 h" in log.detail
    assert "WireError: tmux list-windows failed" in log.detail

    assert doctor.exit_code(checks) == 1
    lines = doctor.render(checks).splitlines()
    assert len(lines) == len(checks)
    assert ("FAIL peers.conf: ~/.agents/peers.conf is missing -> fix: agent-mesh setup "
            in "\n".join(lines))
    assert any(line.startswith("warn hook-log: ") for line in lines)
    assert "ok   self.conf: this host is 'testhost'" in lines


def test_hooks_reload_from_the_installed_snippet(tmux_server: TmuxServer,
                                                 isolated_env: Path) -> None:
    tmux_server.start()
    snippet = Path(data_file("tmux.conf.snippet")).read_text()
    (isolated_env / ".tmux.conf").write_text(snippet)
    managed = isolated_env / ".local" / "share" / "agent-mesh" / "tmux.conf"
    managed.parent.mkdir(parents=True)
    managed.write_text(snippet)
    hooks = by_name(doctor.check_tmux())["tmux-hooks"]
    assert not hooks.ok
    assert hooks.fix.startswith("tmux source-file ~/.local/share/agent-mesh/tmux.conf (and keep "
                                "the agent-mesh block in ~/.tmux.conf after")


def test_hooks_without_tmux_conf_point_at_install(tmux_server: TmuxServer, tools: Path) -> None:
    tmux_server.start()
    hooks = by_name(doctor.check_tmux())["tmux-hooks"]
    assert not hooks.ok and "install.sh" in hooks.fix


def test_partly_cleared_hooks_are_named(tmux_server: TmuxServer) -> None:
    tmux_server.start()
    tmux_server.install_hooks()
    tmux_server.run("set-hook", "-gu", "session-renamed[87]")
    hooks = by_name(doctor.check_tmux())["tmux-hooks"]
    assert not hooks.ok
    assert hooks.detail == "only 5 of 6 hooks live (missing: session-renamed)"


def test_no_server_checks_tmux_conf(isolated_env: Path) -> None:
    named = by_name(doctor.check_tmux())
    assert named["tmux-server"].status == "warn"
    assert named["tmux-hooks"].status == "fail"
    (isolated_env / ".tmux.conf").write_text(
        Path(data_file("tmux.conf.snippet")).read_text())
    named = by_name(doctor.check_tmux())
    assert named["tmux-hooks"].ok
    assert "~/.tmux.conf loads them" in named["tmux-hooks"].detail


def test_stale_registry_is_a_warning(isolated_env: Path, tools: Path) -> None:
    rescan(Tmux())  # no server: an empty but valid slice and registry
    old = time.time() - 20 * 60
    os.utime(isolated_env / ".agents" / "registry.toml", (old, old))
    reg = by_name(doctor.check_registry_files(time.time()))["registry.toml"]
    assert reg.status == "warn" and reg.severity == "warn"
    assert "last rebuilt 20m ago: timer not running?" in reg.detail
    assert reg.fix.startswith("agent-discover")
    assert doctor.exit_code([reg]) == 0


def test_bad_alias_in_peers_conf(isolated_env: Path) -> None:
    (isolated_env / ".agents" / "peers.conf").write_text("good\n-oProxyCommand=x\n")
    check, peers = doctor.check_peers_conf()
    assert not check.ok and peers == []
    assert "invalid host alias '-oProxyCommand=x'" in check.detail
    assert "~/.agents/peers.conf" in check.detail


def test_tmux_missing_is_one_failure_per_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMUX_BIN", "/nonexistent/tmux")
    named = by_name(doctor.run_checks(include_peers=False))
    assert not named["tmux"].ok and "tmux not found" in named["tmux"].detail
    assert "install tmux" in named["tmux"].fix
    assert named["tmux-server"].detail == "cannot check: tmux is not installed"


def test_an_unexpected_error_is_a_failed_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> Check:
        raise RuntimeError("kaput")

    monkeypatch.setattr(doctor, "check_path", boom)
    named = by_name(doctor.run_checks(include_peers=False))
    assert named["path"] == Check("path", False, "doctor error: RuntimeError: kaput",
                                  "report this as an agent-mesh bug")


def test_json_shape(isolated_env: Path, tools: Path) -> None:
    checks = doctor.run_checks(include_peers=False)
    doc = json.loads(doctor.to_json(checks))
    assert set(doc) == {"ok", "version", "checks"}
    assert doc["ok"] is False and doc["version"] == __version__
    assert [c["name"] for c in doc["checks"]] == [c.name for c in checks]
    for entry in doc["checks"]:
        assert set(entry) == {"name", "ok", "status", "severity", "detail", "fix"}
        assert entry["status"] in ("ok", "fail", "warn")
    peers = next(c for c in doc["checks"] if c["name"] == "peers.conf")
    assert peers["ok"] is False and peers["status"] == "fail" and "install.sh" in peers["fix"]


def test_slice_freshness_is_read_from_the_stored_slices(isolated_env: Path) -> None:
    (isolated_env / ".agents" / "peers.conf").write_text("fresh\nstale\nnever\n")
    agent = Agent(address="stale-main-py", host="stale", target="main:1")
    sync.store_slice("fresh", {}, now_iso())
    two_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    sync.store_slice("stale", {"stale-main-py": agent}, two_hours_ago, stale=True,
                     error="stale: unreachable (Connection refused)")
    named = by_name(doctor.run_checks(include_peers=False))
    assert not any(name.startswith("peer:") for name in named)
    assert named["slice:fresh"].ok and named["slice:fresh"].detail.startswith("0 agent(s)")
    stale = named["slice:stale"]
    assert stale.status == "warn"
    assert stale.detail == ("stale: keeping 1 agent(s) fetched 2h ago; last error: "
                            "unreachable (Connection refused)")
    assert named["slice:never"].status == "warn"
    assert named["slice:never"].detail == "never fetched"


# --- unreachable peers: loopback only -------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP but never speaks SSH: a hung peer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def unknown_key_server() -> Iterator[int]:
    """A loopback SSH server whose host key is in no known_hosts file."""
    from agent_mesh.mesh.paramiko import import_paramiko

    paramiko = import_paramiko()
    key = paramiko.RSAKey.generate(2048)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    stop = threading.Event()
    transports: list[object] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            transport = paramiko.Transport(conn)  # runs in its own thread until closed
            transport.add_server_key(key)
            transports.append(transport)
            with contextlib.suppress(Exception):
                transport.start_server(server=paramiko.ServerInterface())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    for transport in transports:
        transport.close()  # type: ignore[attr-defined]
    listener.close()


@pytest.fixture
def ssh_config(isolated_env: Path, tools: Path) -> Path:
    """~/.ssh/config in the test's HOME, and an ssh that reads it."""
    real_ssh = shutil.which("ssh")
    if real_ssh is None:
        pytest.skip("needs the OpenSSH client (ssh -G)")
    fake_tool(tools, "ssh", f'exec {real_ssh} -F "$HOME/.ssh/config" "$@"\n')
    ssh = isolated_env / ".ssh"
    ssh.mkdir(mode=0o700)
    return ssh / "config"


def test_unreachable_peers_fail_fast_with_the_cause(ssh_config: Path, isolated_env: Path,
                                                    silent_listener: int,
                                                    unknown_key_server: int) -> None:
    ssh_config.write_text(
        f"Host deadpeer\n    HostName 127.0.0.1\n    Port {closed_port()}\n\n"
        f"Host hungpeer\n    HostName 127.0.0.1\n    Port {silent_listener}\n\n"
        f"Host keypeer\n    HostName 127.0.0.1\n    Port {unknown_key_server}\n"
    )
    (isolated_env / ".agents" / "peers.conf").write_text("deadpeer\nhungpeer\nkeypeer\n")
    started = time.monotonic()
    checks = doctor.run_checks()
    elapsed = time.monotonic() - started
    assert elapsed < 7.5, elapsed  # PEER_BUDGET (4.5 s), plus slack for a loaded machine
    named = by_name(checks)

    dead = named["peer:deadpeer"]
    assert not dead.ok and dead.severity == "error"
    assert dead.detail.startswith("unreachable (") and "refused" in dead.detail
    assert dead.fix == "check that deadpeer is up and `ssh deadpeer true` works"
    hung = named["peer:hungpeer"]
    assert not hung.ok, hung  # no SSH banner, or no answer at all within the budget
    assert ("no SSH handshake" in hung.detail and "Host hungpeer" in hung.fix) or (
        hung.detail.startswith("no answer within") and "ssh hungpeer true" in hung.fix), hung
    key = named["peer:keypeer"]
    assert not key.ok, key
    assert key.detail == "host key for 127.0.0.1 is unknown; nothing was sent"
    assert key.fix == "check the key's fingerprint, then accept it once: ssh keypeer true"
    for alias in ("deadpeer", "hungpeer", "keypeer"):
        assert named[f"slice:{alias}"].detail == "never fetched"
    assert doctor.exit_code(checks) == 1
    text = doctor.render(checks)
    assert "FAIL peer:deadpeer: unreachable (" in text


REPORT = ("import sys; from agent_mesh.ops import doctor; checks = doctor.run_checks(); "
          "print(doctor.render(checks)); sys.exit(doctor.exit_code(checks))")


def test_the_report_is_all_a_process_prints(ssh_config: Path, isolated_env: Path,
                                            silent_listener: int) -> None:
    """As the CLI runs it: paramiko's handshake traceback must not reach stderr."""
    ssh_config.write_text(f"Host hungpeer\n    HostName 127.0.0.1\n    Port {silent_listener}\n")
    (isolated_env / ".agents" / "peers.conf").write_text("hungpeer\n")
    done = subprocess.run([sys.executable, "-c", REPORT], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == ""
    assert "FAIL peer:hungpeer: " in done.stdout
    lines = done.stdout.splitlines()
    assert all(line[:5] in ("ok   ", "FAIL ", "warn ") for line in lines), lines


def test_no_peers_flag_skips_the_network(ssh_config: Path, isolated_env: Path) -> None:
    ssh_config.write_text(f"Host deadpeer\n    HostName 127.0.0.1\n    Port {closed_port()}\n")
    (isolated_env / ".agents" / "peers.conf").write_text("deadpeer\n")
    named = by_name(doctor.run_checks(include_peers=False))
    assert "peer:deadpeer" not in named and "slice:deadpeer" in named


# --- real peers: the namespace lab (root only) ------------------------------------

DOCTOR_JSON = ("from agent_mesh.ops.doctor import run_checks, to_json; "
               "print(to_json(run_checks()))")


@pytest.mark.lab(hosts=3, missing={"h3"})
def test_lab_peers_report_latency_version_and_missing_install(lab: Lab) -> None:
    h1 = lab.hosts["h1"]
    started = time.monotonic()
    out = h1.run([str(lab.venv / "bin" / "python"), "-c", DOCTOR_JSON], timeout=60)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    named = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    h2 = named["peer:h2"]
    assert h2["ok"], h2
    assert re.fullmatch(r"reachable via openssh \(master started\), host key known, "
                        r"agent-mesh " + re.escape(__version__)
                        + r" \(same as here\) answered in \d+ ms", h2["detail"]), h2
    again = h1.run([str(lab.venv / "bin" / "python"), "-c", DOCTOR_JSON], timeout=60)
    named_again = {c["name"]: c for c in json.loads(again.stdout)["checks"]}
    assert "(master was up)" in named_again["peer:h2"]["detail"], named_again["peer:h2"]
    fallback = h1.run([str(lab.venv / "bin" / "python"), "-c", DOCTOR_JSON], timeout=60,
                      env={"AGENT_MESH_TRANSPORT": "paramiko"})
    h2 = {c["name"]: c for c in json.loads(fallback.stdout)["checks"]}["peer:h2"]
    assert re.fullmatch(r"reachable via paramiko, host key known, connect \d+ ms, agent-mesh "
                        + re.escape(__version__) + r" \(same as here\) answered in \d+ ms",
                        h2["detail"]), h2
    h3 = named["peer:h3"]
    assert not h3["ok"] and h3["detail"] == "agent-mesh is not installed there", h3
    assert h3["fix"] == "run ./install.sh on h3"
    assert "peer:h1" not in named  # this host is not its own peer
    assert elapsed < 15, elapsed
