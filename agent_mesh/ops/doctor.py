"""`agent-mesh doctor`: is this host a working mesh member? One line per check.

A newcomer's first question after install is "is it working?", and the answer
spans tmux, the hook files, PATH, the config files, the resync timer and every
peer. Each check is a small function that returns `Check` values with the fix
for a failure; `run_checks` runs them all and turns anything unexpected into a
failed check, so the command never shows a traceback. Peers are probed in
daemon threads started first and bounded by one deadline, so a mesh with dead
hosts still answers in under five seconds (an abandoned probe never delays exit).
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import json
import os
import re
import shutil
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent_mesh import __version__, paths
from agent_mesh.clock import duration
from agent_mesh.errors import MeshError, UsageError, WireError, printable, report
from agent_mesh.ops.setup import FIX as INSTALL
from agent_mesh.ops.setup import HOOK_EVENTS, HOOK_MARK, TIMER_UNIT, run_helper
from agent_mesh.registry.view import agents_from, read_slice_file

# What `agent-mesh setup` installs (HOOK_MARK, HOOK_EVENTS, TIMER_UNIT, the paths in
# agent_mesh.paths) is defined once, in ops/setup.py and paths.py; checked here.
MIN_TMUX = (3, 2)  # run-shell -C and paste-buffer -p
COMMANDS = ("notify-pane", "agent-mesh", "agent-discover", "agent-self-identify")
STALE_AFTER = 15 * 60  # the timer runs every 5 minutes: three missed runs is a problem
PEER_BUDGET = 4.5  # seconds for all peer probes together (they run in parallel)
LOG_WINDOW = 24 * 3600  # hook.log errors older than this are history, not a problem
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \[\d+\] (.*)$")


@dataclass(frozen=True)
class Check:
    """One line of the report; `severity` says whether a failure breaks the exit status."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: str = "error"  # or "warn": shown, but the exit status stays 0

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "fail" if self.severity == "error" else "warn"


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def _warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix, severity="warn")


# --- small helpers -------------------------------------------------------------


def _tilde(path: Path | str) -> str:
    """A path as the user would type it (~/...), for short, copy-pasteable lines."""
    text, home = str(path), str(Path(paths.home()))
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def _ago(seconds: float) -> str:
    return f"{duration(seconds)} ago"


def _parse_stamp(stamp: str) -> float | None:
    """Epoch seconds of a `2026-01-01T00:00:00Z` stamp (UTC), or None if it is not one."""
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def _stamp_age(stamp: str, now: float) -> float | None:
    then = _parse_stamp(stamp)
    return None if then is None else now - then


def parse_tmux_version(text: str) -> tuple[int, int] | None:
    """(3, 3) from `tmux 3.3a` or `tmux next-3.4`; None for `tmux master`."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


# --- tmux ----------------------------------------------------------------------


def _tmux_conf_has_hooks() -> Path | None:
    """The tmux config file that installs our hooks, if any (what a new server loads)."""
    home = Path(paths.home())
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    for path in (Path(paths.tmux_conf()), Path(xdg) / "tmux" / "tmux.conf"):
        try:
            if HOOK_MARK in path.read_text(encoding="utf-8", errors="replace"):
                return path
        except OSError:
            continue
    return None


def check_tmux() -> list[Check]:
    """tmux itself, the server this shell would talk to, and our hooks in it."""
    from agent_mesh.tmux import Tmux

    tmux = Tmux()
    names = ("tmux", "tmux-server", "tmux-hooks")
    try:
        version_text = tmux.run("-V", check=False, timeout=5).stdout.decode().strip()
    except WireError as exc:
        fix = "install tmux 3.2 or newer (apt install tmux / dnf install tmux / brew install tmux)"
        return [_fail("tmux", str(exc).split(":")[0], fix)] + [
            _fail(n, "cannot check: tmux is not installed", "install tmux first") for n in names[1:]
        ]
    version = parse_tmux_version(version_text)
    where = shutil.which(tmux.binary) or tmux.binary
    if version is None:
        checks = [_ok("tmux", f"{version_text or 'unknown version'} at {where} (assumed new)")]
    elif version < MIN_TMUX:
        checks = [_fail("tmux", f"{version_text} at {where} is too old (3.2+ needed for "
                        "run-shell -C and paste-buffer -p)", "install tmux 3.2 or newer")]
    else:
        checks = [_ok("tmux", f"{version_text} at {where}")]
    try:
        return checks + _check_server(tmux)
    except WireError as exc:  # a server that hangs, or a socket we may not use
        return [*checks,
                _fail("tmux-server", str(exc), "check that `tmux list-sessions` answers"),
                _fail("tmux-hooks", "cannot check: the tmux server did not answer",
                      "fix the tmux server first")]


def _check_server(tmux: Any) -> list[Check]:
    conf = _tmux_conf_has_hooks()
    listing = tmux.run("list-sessions", "-F", "#{pid} #{version} #{socket_path}",
                       check=False, timeout=5)
    if listing.returncode != 0:
        err = listing.stderr.decode("utf-8", "replace")
        if "no server running" in err or "error connecting to" in err:
            server = _warn("tmux-server", "no tmux server running",
                           "start tmux; agents register when their session opens")
            if conf is not None:
                return [server, _ok("tmux-hooks", f"no server yet; {_tilde(conf)} loads them "
                                    "when it starts")]
            return [server, _fail("tmux-hooks", "~/.tmux.conf has no agent-mesh hooks", INSTALL)]
        return [_fail("tmux-server", f"tmux list-sessions failed: {listing.error_line}",
                      "check that tmux works: tmux list-sessions"),
                _fail("tmux-hooks", "cannot check: the tmux server did not answer",
                      "fix the tmux server first")]
    rows = listing.stdout.decode("utf-8", "replace").splitlines()
    pid, server_version, socket_path = ([*rows[0].split(" ", 2), "", ""][:3] if rows
                                        else ("?", "?", "?"))
    server = _ok("tmux-server", f"running at {socket_path} (pid {pid}, tmux {server_version}, "
                 f"{len(rows)} session(s))")
    live: set[str] = set()
    for scope in ("-g", "-gw"):  # window-renamed is a window hook in tmux 3.2+
        out = tmux.run("show-hooks", scope, check=False, timeout=5)
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            if HOOK_MARK in line:
                live.add(line.split("[", 1)[0].split(" ", 1)[0])
    missing = [e for e in HOOK_EVENTS if e not in live]
    if not missing:
        return [server, _ok("tmux-hooks", f"all {len(HOOK_EVENTS)} hooks live in the server")]
    managed = Path(paths.managed_tmux_conf())
    if conf is not None:
        fix = (f"tmux source-file {_tilde(managed if managed.exists() else conf)} (and keep "
               f"the agent-mesh block in {_tilde(conf)} after any plain `set-hook -g` lines, "
               "which clear a whole hook array)")
    else:
        fix = f"{INSTALL}; it adds them to ~/.tmux.conf and reloads tmux"
    if len(missing) == len(HOOK_EVENTS):
        detail = "not loaded in the running tmux server: new windows are not registered"
    else:
        detail = (f"only {len(HOOK_EVENTS) - len(missing)} of {len(HOOK_EVENTS)} hooks live "
                  f"(missing: {', '.join(missing)})")
    return [server, _fail("tmux-hooks", detail, fix)]


# --- files and commands --------------------------------------------------------


def hook_launcher_path() -> Path:
    return Path(paths.hook_launcher())


def hook_command_path() -> Path:
    """Where hooks/tmux-event looks for agent-register-hook ($AGENT_MESH_BIN overrides)."""
    return Path(os.environ.get("AGENT_MESH_BIN") or paths.local_bin()) / "agent-register-hook"


def _executable(name: str, path: Path) -> Check:
    if not path.exists():
        what = "a dangling link" if path.is_symlink() else "missing"
        return _fail(name, f"{_tilde(path)} is {what}", INSTALL)
    if not os.access(path, os.X_OK):
        return _fail(name, f"{_tilde(path)} is not executable", f"chmod +x {_tilde(path)}")
    return _ok(name, _tilde(path))


def check_hook_files() -> list[Check]:
    """The two files every tmux hook runs: the sh launcher and the Python entrypoint."""
    return [_executable("hook-launcher", hook_launcher_path()),
            _executable("hook-command", hook_command_path())]


def check_path() -> Check:
    found = {c: shutil.which(c) for c in COMMANDS}
    missing = [c for c, where in found.items() if not where]
    if not missing:
        dirs = sorted({_tilde(os.path.dirname(str(w))) for w in found.values()})
        return _ok("path", f"{', '.join(COMMANDS)} in {', '.join(dirs)}")
    local_bin = Path(paths.local_bin())
    if all((local_bin / c).exists() for c in missing):
        fix = ('add ~/.local/bin to PATH: export PATH="$HOME/.local/bin:$PATH" '
               "(agent-mesh setup adds it to your shell rc; open a new shell)")
    else:
        fix = INSTALL
    return _fail("path", f"not on PATH: {', '.join(missing)}", fix)


def check_self_conf() -> Check:
    from agent_mesh.registry.naming import host_name, valid_alias

    path = Path(paths.self_conf())
    fix = ("echo ALIAS > ~/.agents/self.conf, where ALIAS is the name your peers use for "
           "this host (their ~/.ssh/config Host and peers.conf)")
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except FileNotFoundError:
        node = host_name()
        return _fail("self.conf", f"{_tilde(path)} is missing (this host falls back to its "
                     f"host name {node!r})", fix)
    except (OSError, UnicodeDecodeError) as exc:
        return _fail("self.conf", f"cannot read {_tilde(path)}: {exc}", fix)
    alias = "".join(first[0].split()) if first else ""
    if not alias:
        return _fail("self.conf", f"{_tilde(path)} is empty", fix)
    if not valid_alias(alias):
        return _fail("self.conf", f"invalid alias {alias!r} in {_tilde(path)}", fix)
    return _ok("self.conf", f"this host is {alias!r}")


def check_peers_conf() -> tuple[Check, list[str]]:
    """peers.conf exists and every alias in it is valid; returns the peers too."""
    from agent_mesh.registry.naming import read_peers

    path = Path(paths.peers_conf())
    if not path.exists():
        return _fail("peers.conf", f"{_tilde(path)} is missing",
                     f"{INSTALL}, or create it: one SSH alias (a Host from ~/.ssh/config) "
                     "per line"), []
    try:
        peers = read_peers()
    except UsageError as exc:
        return _fail("peers.conf", _tilde(str(exc)),
                     "fix that line: an alias is an SSH Host name (letters, digits, . _ - @ :)"
                     ), []
    except (OSError, UnicodeDecodeError) as exc:
        return _fail("peers.conf", f"cannot read {_tilde(path)}: {exc}",
                     f"chmod u+r {_tilde(path)}"), []
    if not peers:
        return _ok("peers.conf", "no peers: this host only (add SSH aliases to join a mesh)"), []
    return _ok("peers.conf", f"{len(peers)} peer(s): {', '.join(peers)}"), peers


def _read_toml(name: str, path: Path) -> tuple[Check | None, dict[str, object]]:
    """Parse a registry file; a failed Check (missing/corrupt) or the document."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _fail(name, f"{_tilde(path)} is missing (no tmux hook or agent-discover has "
                     "written it yet)", "agent-discover"), {}
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(name, f"cannot read {_tilde(path)}: {exc}", "agent-discover"), {}
    try:
        return None, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return _fail(name, f"{_tilde(path)} is not valid TOML ({exc})",
                     "agent-discover (rebuilds it from tmux)"), {}


def check_registry_files(now: float) -> list[Check]:
    """local.toml (this host) and registry.toml (the merged view notify-pane reads)."""
    checks: list[Check] = []
    failed, doc = _read_toml("local.toml", Path(paths.local_slice()))
    checks.append(failed or _ok("local.toml", f"{len(agents_from(doc))} agent(s) "
                                "on this host"))
    path = Path(paths.registry_file())
    failed, doc = _read_toml("registry.toml", path)
    if failed:
        return [*checks, failed]
    agents = agents_from(doc)
    stale = sum(1 for a in agents.values() if a.stale)
    age = now - path.stat().st_mtime
    detail = f"{len(agents)} agent(s)" + (f" ({stale} stale)" if stale else "")
    if age > STALE_AFTER:
        checks.append(_warn("registry.toml", f"{detail}, last rebuilt {_ago(age)}: timer not "
                            "running?", "agent-discover (and see the timer check)"))
    else:
        checks.append(_ok("registry.toml", f"{detail}, rebuilt {_ago(age)}"))
    return checks


def _hook_log_errors(text: str, mtime: float) -> list[tuple[float, str]]:
    """(time, line) of each error in the log's text: failed hook runs, missing
    commands, and tracebacks the launcher's fast path left (dated by the last stamp)."""
    errors: list[tuple[float, str]] = []
    when = mtime
    for line in text.splitlines():
        match = _STAMP.match(line)
        if match:
            when = _parse_stamp(match.group(1)) or when
            message = match.group(2)
            if message.startswith(("error ", "cannot ")) or " not found at " in line:
                errors.append((when, line))
        elif line.startswith("Traceback") or re.match(r"\w+(Error|Exception): ", line):
            errors.append((when, line))
    return errors


def check_hook_log(now: float) -> Check:
    path = Path(paths.hook_log())
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - 65536))
            text = fh.read().decode("utf-8", "replace")
            mtime = os.fstat(fh.fileno()).st_mtime
    except FileNotFoundError:
        return _ok("hook-log", "no hook has run yet")
    except OSError as exc:
        return _warn("hook-log", f"cannot read {_tilde(path)}: {exc}", f"chmod u+r {_tilde(path)}")
    recent = [(t, line) for t, line in _hook_log_errors(text, mtime) if now - t <= LOG_WINDOW]
    if not recent:
        return _ok("hook-log", "no hook errors in the last 24 h")
    when, last = recent[-1]
    fix = INSTALL if " not found at " in last else (
        f"read {_tilde(path)}; after fixing the cause, agent-discover rebuilds the registry")
    return _warn("hook-log", f"{len(recent)} hook error(s) in the last 24 h, latest "
                 f"{_ago(now - when)}: {last[:160]}", fix)


def check_inbox_parts() -> Check:
    """Upload parts left in ~/.agent-inbox/.incoming by a sender killed mid-copy.

    The next delivery to this host sweeps them (delivery.inbox); until then they hold
    disk space, so say how many and how much.
    """
    from agent_mesh.delivery.inbox import STALE_PART_SECONDS, incoming_dir, stale_parts

    parts = stale_parts()
    where = _tilde(incoming_dir())
    if not parts:
        return _ok("inbox-parts", f"no leftover upload parts in {where}")
    size = 0
    for part in parts:
        with contextlib.suppress(OSError):
            size += os.stat(part).st_size
    return _warn("inbox-parts",
                 f"{len(parts)} upload part(s) older than {duration(STALE_PART_SECONDS)} in "
                 f"{where} ({size} bytes), left by senders that were interrupted",
                 f"the next delivery to this host removes them, or: rm {where}/*.part")


def check_timer() -> Check:
    """The 5-minute resync: a systemd user timer, else a crontab line running agent-discover."""
    code, out, err = run_helper(["systemctl", "--user", "is-active", TIMER_UNIT], timeout=3.0)
    err_lines = err.strip().splitlines()
    state = out.strip() or (err_lines[-1] if err_lines else "?")
    if code == 0 and state == "active":
        return _ok("timer", f"systemd user timer {TIMER_UNIT} is active")
    if code == 127:
        systemd = "no systemctl"
    elif "bus" in state.lower() or "XDG_RUNTIME_DIR" in state:
        systemd = "no systemd user manager"
    else:
        systemd = f"systemd user timer {TIMER_UNIT} is {state}"
    code, out, err = run_helper(["crontab", "-l"], timeout=3.0)
    lines = [ln for ln in out.splitlines() if "agent-discover" in ln and
             not ln.lstrip().startswith("#")]
    daemon = ""  # a running cron daemon: scan /proc/*/comm as pgrep does
    with contextlib.suppress(OSError):
        for pid in (name for name in os.listdir("/proc") if name.isdigit()):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/comm", "rb") as fh:
                if fh.read().strip() in (b"cron", b"crond", b"fcron", b"cronie"):
                    daemon = pid
                    break
    if code == 0 and lines and daemon:
        return _ok("timer", f"crontab runs agent-discover ({' '.join(lines[0].split()[:5])})")
    if not daemon and systemd in ("no systemctl", "no systemd user manager"):
        # a container: nothing here can run a timer, and no fix is to be had from setup
        return _warn("timer", f"nothing runs the 5-minute resync on this host ({systemd}, "
                     "no cron daemon): windows still register through the tmux hooks, but "
                     "closed windows and peers' agents go stale between tmux events",
                     "run agent-discover every few minutes some other way (e.g. "
                     "while sleep 300; do agent-discover; done), or start a cron daemon")
    if code == 0 and lines:  # a crontab line is only a timer while a cron daemon runs
        return _fail("timer", f"crontab runs agent-discover, but no cron daemon is running "
                     f"({systemd}): closed windows and peers' agents go stale",
                     "start cron (sudo service cron start, or systemctl enable --now cron), "
                     "or use the systemd user timer: " + INSTALL)
    cron = ("no crontab command" if code == 127 else
            "no crontab line runs agent-discover" if code in (0, 1) else
            f"crontab -l: {err.strip()[:80]}")
    fix = INSTALL + "; it installs the systemd user timer, or a crontab line where there is none"
    if state == "failed":
        fix = f"systemctl --user restart {TIMER_UNIT}; journalctl --user -u agent-resync"
    return _fail("timer", f"no resync timer ({systemd}; {cron}): closed windows and peers' "
                 "agents go stale", fix)


# --- peers ---------------------------------------------------------------------


def _peer_failure(alias: str, message: str) -> Check:
    """A WireError from SshTransport, with the fix for its cause."""
    detail = message.removeprefix(f"{alias}: ")
    name = f"peer:{alias}"
    if "is unknown" in detail and "host key" in detail:
        detail = detail.split(". Check and add it", 1)[0]  # the fix says it
        fix = f"check the key's fingerprint, then accept it once: ssh {alias} true"
    elif "no SSH handshake" in detail:
        fix = f"check HostName and Port of `Host {alias}` in ~/.ssh/config, and that sshd runs"
    elif "CHANGED" in detail:
        fix = (f"if {alias} was reinstalled, verify its new key, then ssh-keygen -R HOST "
               f"and ssh {alias} true")
    elif "authentication failed" in detail:
        fix = f"ssh-copy-id {alias} (then check: ssh {alias} true)"
    elif "unknown host name" in detail:
        fix = f"add a `Host {alias}` block with its HostName to ~/.ssh/config"
    elif "not installed" in detail:
        detail = detail.split(" (run install.sh", 1)[0]
        fix = f"run ./install.sh on {alias}"
    elif "same version" in detail:
        fix = "git pull && ./install.sh on both hosts"
    elif "did not answer" in detail:
        fix = f"run agent-mesh doctor on {alias}"
    else:
        fix = f"check that {alias} is up and `ssh {alias} true` works"
    return _fail(name, detail, fix)


def _check_peer_openssh(alias: str, budget: float) -> Check:
    """`hello` through the user's ssh and its control master; says whether one was up."""
    from agent_mesh.mesh.openssh import OpenSshTransport

    name = f"peer:{alias}"
    started = time.monotonic()
    try:
        transport = OpenSshTransport(alias)
        was_up = transport.master_up()
        asked = time.monotonic()
        reply = transport.request({"op": "hello"}, timeout=max(0.5, budget - (asked - started)))
        answered = time.monotonic()
        now_up = was_up or transport.master_up()
    except MeshError as exc:
        return _peer_failure(alias, report(exc)[0])
    _HELLO[alias] = reply
    theirs = str(reply.get("host", ""))
    if theirs != alias:
        return _fail(name, f"reachable, but it calls itself {theirs!r} in its "
                     f"~/.agents/self.conf, so its slice is rejected here",
                     f"on {alias}: echo {alias} > ~/.agents/self.conf")
    master = ("master was up" if was_up else "master started" if now_up else
              "no master (connection reuse is off)")
    return _ok(name, f"reachable via openssh ({master}), host key known, agent-mesh "
               f"{reply.get('version', '?')} (same as here) answered in "
               f"{(answered - asked) * 1000:.0f} ms")


def check_peer(alias: str, budget: float = PEER_BUDGET) -> Check:
    """Connect (host key checked, never added) and ask the peer's agent-mesh `hello`,
    over the transport notify-pane would use (openssh, else paramiko)."""
    from agent_mesh.mesh.remote import chosen_transport

    name = f"peer:{alias}"
    try:
        kind = chosen_transport()
    except MeshError as exc:
        return _fail(name, str(exc), "set AGENT_MESH_TRANSPORT or `transport` in "
                     "~/.agents/config.toml to openssh or paramiko")
    if kind == "openssh":
        return _check_peer_openssh(alias, budget)
    from agent_mesh.mesh.ssh import SshTransport, import_paramiko

    import_paramiko()  # ~150 ms once per process: not part of the peer's latency
    transport = SshTransport(alias)
    started = time.monotonic()
    try:
        transport.connect()
        connected = time.monotonic()
        reply = transport.call({"op": "hello"},
                               timeout=max(0.5, budget - (connected - started)))
        answered = time.monotonic()
    except MeshError as exc:
        return _peer_failure(alias, report(exc)[0])
    finally:
        transport.close()
    latency = (connected - started) * 1000
    rpc_ms = (answered - connected) * 1000
    _HELLO[alias] = reply
    theirs = str(reply.get("host", ""))
    if theirs != alias:
        return _fail(name, f"reachable, but it calls itself {theirs!r} in its "
                     f"~/.agents/self.conf, so its slice is rejected here",
                     f"on {alias}: echo {alias} > ~/.agents/self.conf")
    return _ok(name, f"reachable via paramiko, host key known, connect {latency:.0f} ms, "
               "agent-mesh "
               f"{reply.get('version', '?')} (same as here) answered in {rpc_ms:.0f} ms")


_HELLO: dict[str, dict[str, Any]] = {}  # each peer's answer to `hello`, for check_trust


def check_trust(alias: str) -> Check:
    """Does this host reach alias with a restricted mesh key (issue 18)? The peer's own
    answer says so: its rpc ran as the key's forced command, and took us for whom."""
    from agent_mesh.mesh.meshkey import key_path, mesh_key_for
    from agent_mesh.registry.naming import self_alias

    name = f"trust:{alias}"
    reply = _HELLO.get(alias)
    me = self_alias()
    if reply is not None and reply.get("mesh_key"):
        caller = str(reply.get("caller", ""))
        if caller != me:
            return _fail(name, f"the mesh key reaches {alias}, but it takes this host for "
                         f"{caller!r}", f"agent-mesh trust remove {alias}; "
                         f"agent-mesh trust add {alias}")
        return _ok(name, f"reached with a restricted mesh key (verified there as {me})")
    fix = (f"agent-mesh trust add {alias}" if Path(key_path()).exists() else
           f"agent-mesh trust init && agent-mesh trust add {alias}")
    if reply is None:
        return _warn(name, "not checked (the peer did not answer)", fix)
    if mesh_key_for(alias):
        return _warn(name, f"{alias} was reached with a login key although this host has "
                     f"a mesh key for it: the key's line is missing there", fix)
    return _warn(name, "reached with an unrestricted login key: a compromised host here "
                 f"is a shell on {alias}, and {alias} cannot verify who sends", fix)


def _probe(alias: str, results: dict[str, Check]) -> None:
    try:
        results[alias] = check_peer(alias)
    except Exception as exc:  # a bug must still be one line of the report
        results[alias] = _fail(f"peer:{alias}", f"doctor error: {type(exc).__name__}: {exc}",
                               "report this as an agent-mesh bug")


def check_slice(alias: str, now: float) -> Check:
    """How fresh our last good copy of the peer's agents is."""
    name = f"slice:{alias}"
    path = Path(paths.slices_dir()) / f"{alias}.toml"
    if not path.exists():
        return _warn(name, "never fetched", "agent-mesh sync (once the peer check passes)")
    try:
        meta, agents = read_slice_file(path)
    except UsageError:
        return _warn(name, f"{_tilde(path)} is not valid TOML", "agent-mesh sync (rewrites it)")
    fetched = str(meta.get("fetched", ""))
    age = _stamp_age(fetched, now)
    when = _ago(age) if age is not None else "never"
    if meta.get("stale"):
        error = str(meta.get("error", "")).removeprefix(f"{alias}: ")
        return _warn(name, f"stale: keeping {len(agents)} agent(s) fetched {when}"
                     + (f"; last error: {error[:120]}" if error else ""),
                     "agent-mesh sync (once the peer check passes)")
    if age is None or age > STALE_AFTER:
        return _warn(name, f"{len(agents)} agent(s), fetched {when}: timer not running?",
                     "agent-discover (and see the timer check)")
    return _ok(name, f"{len(agents)} agent(s), fetched {when}")


# --- the report ------------------------------------------------------------------


def _guard(name: str, func: Callable[[], Any]) -> list[Check]:
    """Run one check function; an unexpected exception becomes a failed check."""
    try:
        result = func()
    except Exception as exc:
        return [_fail(name, f"doctor error: {type(exc).__name__}: {exc}",
                      "report this as an agent-mesh bug")]
    return result if isinstance(result, list) else [result]


def run_checks(*, include_peers: bool = True) -> list[Check]:
    """Every check, in report order; peers are probed in parallel, bounded by PEER_BUDGET."""
    now = time.time()
    started = time.monotonic()
    try:
        from agent_mesh.registry.naming import read_peers

        peers = read_peers() if Path(paths.peers_conf()).exists() else []
    except Exception:
        peers = []  # the peers.conf check reports why
    results: dict[str, Check] = {}
    threads: dict[str, threading.Thread] = {}
    if include_peers and peers:
        from agent_mesh.mesh.ssh import import_paramiko

        import_paramiko()  # silences paramiko's thread tracebacks before any thread runs
        for alias in peers:
            threads[alias] = threading.Thread(target=_probe, args=(alias, results),
                                              daemon=True, name=f"doctor-{alias}")
            threads[alias].start()

    checks: list[Check] = []
    checks += _guard("tmux", check_tmux)
    checks += _guard("hook-launcher", check_hook_files)
    checks += _guard("path", check_path)
    checks += _guard("self.conf", check_self_conf)
    checks += _guard("peers.conf", lambda: check_peers_conf()[0])
    checks += _guard("registry.toml", lambda: check_registry_files(now))
    checks += _guard("hook-log", lambda: check_hook_log(now))
    checks += _guard("inbox-parts", check_inbox_parts)
    checks += _guard("timer", check_timer)
    for alias in peers:
        if include_peers:
            threads[alias].join(max(0.0, PEER_BUDGET - (time.monotonic() - started)))
            checks.append(results.get(alias) or _fail(
                f"peer:{alias}", f"no answer within {PEER_BUDGET:g} s",
                f"check that {alias} is up and `ssh {alias} true` answers quickly"))
            checks += _guard(f"trust:{alias}", functools.partial(check_trust, alias))
        checks += _guard(f"slice:{alias}", functools.partial(check_slice, alias, now))
    return checks


def render(checks: list[Check]) -> str:
    """One line per check: `ok   name: detail`, `FAIL name: detail -> fix: ...`, `warn ...`."""
    tags = {"ok": "ok  ", "fail": "FAIL", "warn": "warn"}
    lines = []
    for check in checks:
        line = f"{tags[check.status]} {check.name}: {check.detail}"
        if not check.ok and check.fix:
            line += f" -> fix: {check.fix}"
        lines.append(printable(line))
    return "\n".join(lines)


def summary(checks: list[Check]) -> str:
    """A closing line for the human report (optional for the CLI)."""
    failed = sum(1 for c in checks if c.status == "fail")
    warned = sum(1 for c in checks if c.status == "warn")
    if not failed and not warned:
        return f"doctor: all {len(checks)} checks passed (agent-mesh {__version__})"
    return f"doctor: {failed} failure(s), {warned} warning(s) in {len(checks)} checks"


def to_json(checks: list[Check]) -> str:
    """`{"ok", "version", "checks": [{name, ok, status, severity, detail, fix}]}`."""
    return json.dumps({
        "ok": exit_code(checks) == 0,
        "version": __version__,
        "checks": [{**asdict(c), "status": c.status} for c in checks],
    }, indent=2, ensure_ascii=False)


def exit_code(checks: list[Check]) -> int:
    """0 unless an error-severity check failed (warnings never fail the run)."""
    return 1 if any(c.status == "fail" for c in checks) else 0
