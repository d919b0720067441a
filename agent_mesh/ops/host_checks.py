"""This host's checks for `agent-mesh doctor`: tmux and its live hooks, the hook files,
PATH, the config files, the registry files, the hook log, inbox upload parts and the
resync timer. Each returns `Check` values with the fix for a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from agent_mesh import paths
from agent_mesh.clock import duration, parse_stamp
from agent_mesh.errors import UsageError, WireError
from agent_mesh.ops.checks import Check, ago, fail, ok, tilde, warn
from agent_mesh.ops.setup_base import FIX as INSTALL
from agent_mesh.ops.setup_base import HOOK_EVENTS, HOOK_MARK, TIMER_UNIT, run_helper
from agent_mesh.registry.view import agents_from

# What `agent-mesh setup` installs (HOOK_MARK, HOOK_EVENTS, TIMER_UNIT, the paths in
# agent_mesh.paths) is defined once, in ops/setup_base.py and paths.py; checked here.
MIN_TMUX = (3, 2)  # run-shell -C and paste-buffer -p
COMMANDS = ("notify-pane", "agent-mesh", "agent-discover", "agent-self-identify")
STALE_AFTER = 15 * 60  # the timer runs every 5 minutes: three missed runs is a problem
LOG_WINDOW = 24 * 3600  # hook.log errors older than this are history, not a problem
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) \[\d+\] (.*)$")


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
        return [fail("tmux", str(exc).split(":")[0], fix)] + [
            fail(n, "cannot check: tmux is not installed", "install tmux first") for n in names[1:]
        ]
    version = parse_tmux_version(version_text)
    where = shutil.which(tmux.binary) or tmux.binary
    if version is None:
        checks = [ok("tmux", f"{version_text or 'unknown version'} at {where} (assumed new)")]
    elif version < MIN_TMUX:
        checks = [fail("tmux", f"{version_text} at {where} is too old (3.2+ needed for "
                        "run-shell -C and paste-buffer -p)", "install tmux 3.2 or newer")]
    else:
        checks = [ok("tmux", f"{version_text} at {where}")]
    try:
        return checks + _check_server(tmux)
    except WireError as exc:  # a server that hangs, or a socket we may not use
        return [*checks,
                fail("tmux-server", str(exc), "check that `tmux list-sessions` answers"),
                fail("tmux-hooks", "cannot check: the tmux server did not answer",
                      "fix the tmux server first")]


def _check_server(tmux: Any) -> list[Check]:
    conf = _tmux_conf_has_hooks()
    listing = tmux.run("list-sessions", "-F", "#{pid} #{version} #{socket_path}",
                       check=False, timeout=5)
    if listing.returncode != 0:
        err = listing.stderr.decode("utf-8", "replace")
        if "no server running" in err or "error connecting to" in err:
            server = warn("tmux-server", "no tmux server running",
                           "start tmux; agents register when their session opens")
            if conf is not None:
                return [server, ok("tmux-hooks", f"no server yet; {tilde(conf)} loads them "
                                    "when it starts")]
            return [server, fail("tmux-hooks", "~/.tmux.conf has no agent-mesh hooks", INSTALL)]
        return [fail("tmux-server", f"tmux list-sessions failed: {listing.error_line}",
                      "check that tmux works: tmux list-sessions"),
                fail("tmux-hooks", "cannot check: the tmux server did not answer",
                      "fix the tmux server first")]
    rows = listing.stdout.decode("utf-8", "replace").splitlines()
    pid, server_version, socket_path = ([*rows[0].split(" ", 2), "", ""][:3] if rows
                                        else ("?", "?", "?"))
    server = ok("tmux-server", f"running at {socket_path} (pid {pid}, tmux {server_version}, "
                 f"{len(rows)} session(s))")
    live: set[str] = set()
    for scope in ("-g", "-gw"):  # window-renamed is a window hook in tmux 3.2+
        out = tmux.run("show-hooks", scope, check=False, timeout=5)
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            if HOOK_MARK in line:
                live.add(line.split("[", 1)[0].split(" ", 1)[0])
    missing = [e for e in HOOK_EVENTS if e not in live]
    if not missing:
        return [server, ok("tmux-hooks", f"all {len(HOOK_EVENTS)} hooks live in the server")]
    managed = Path(paths.managed_tmux_conf())
    if conf is not None:
        fix = (f"tmux source-file {tilde(managed if managed.exists() else conf)} (and keep "
               f"the agent-mesh block in {tilde(conf)} after any plain `set-hook -g` lines, "
               "which clear a whole hook array)")
    else:
        fix = f"{INSTALL}; it adds them to ~/.tmux.conf and reloads tmux"
    if len(missing) == len(HOOK_EVENTS):
        detail = "not loaded in the running tmux server: new windows are not registered"
    else:
        detail = (f"only {len(HOOK_EVENTS) - len(missing)} of {len(HOOK_EVENTS)} hooks live "
                  f"(missing: {', '.join(missing)})")
    return [server, fail("tmux-hooks", detail, fix)]


# --- files and commands --------------------------------------------------------


def hook_launcher_path() -> Path:
    return Path(paths.hook_launcher())


def hook_command_path() -> Path:
    """Where hooks/tmux-event looks for agent-register-hook ($AGENT_MESH_BIN overrides)."""
    return Path(os.environ.get("AGENT_MESH_BIN") or paths.local_bin()) / "agent-register-hook"


def _executable(name: str, path: Path) -> Check:
    if not path.exists():
        what = "a dangling link" if path.is_symlink() else "missing"
        return fail(name, f"{tilde(path)} is {what}", INSTALL)
    if not os.access(path, os.X_OK):
        return fail(name, f"{tilde(path)} is not executable", f"chmod +x {tilde(path)}")
    return ok(name, tilde(path))


def check_hook_files() -> list[Check]:
    """The two files every tmux hook runs: the sh launcher and the Python entrypoint."""
    return [_executable("hook-launcher", hook_launcher_path()),
            _executable("hook-command", hook_command_path())]


def check_path() -> Check:
    found = {c: shutil.which(c) for c in COMMANDS}
    missing = [c for c, where in found.items() if not where]
    if not missing:
        dirs = sorted({tilde(os.path.dirname(str(w))) for w in found.values()})
        return ok("path", f"{', '.join(COMMANDS)} in {', '.join(dirs)}")
    local_bin = Path(paths.local_bin())
    if all((local_bin / c).exists() for c in missing):
        fix = ('add ~/.local/bin to PATH: export PATH="$HOME/.local/bin:$PATH" '
               "(agent-mesh setup adds it to your shell rc; open a new shell)")
    else:
        fix = INSTALL
    return fail("path", f"not on PATH: {', '.join(missing)}", fix)


def check_self_conf() -> Check:
    from agent_mesh.registry.naming import host_name, valid_alias

    path = Path(paths.self_conf())
    fix = ("echo ALIAS > ~/.agents/self.conf, where ALIAS is the name your peers use for "
           "this host (their ~/.ssh/config Host and peers.conf)")
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except FileNotFoundError:
        node = host_name()
        return fail("self.conf", f"{tilde(path)} is missing (this host falls back to its "
                     f"host name {node!r})", fix)
    except (OSError, UnicodeDecodeError) as exc:
        return fail("self.conf", f"cannot read {tilde(path)}: {exc}", fix)
    alias = "".join(first[0].split()) if first else ""
    if not alias:
        return fail("self.conf", f"{tilde(path)} is empty", fix)
    if not valid_alias(alias):
        return fail("self.conf", f"invalid alias {alias!r} in {tilde(path)}", fix)
    return ok("self.conf", f"this host is {alias!r}")


def check_peers_conf() -> tuple[Check, list[str]]:
    """peers.conf exists and every alias in it is valid; returns the peers too."""
    from agent_mesh.registry.naming import read_peers

    path = Path(paths.peers_conf())
    if not path.exists():
        return fail("peers.conf", f"{tilde(path)} is missing",
                     f"{INSTALL}, or create it: one SSH alias (a Host from ~/.ssh/config) "
                     "per line"), []
    try:
        peers = read_peers()
    except UsageError as exc:
        return fail("peers.conf", tilde(str(exc)),
                     "fix that line: an alias is an SSH Host name (letters, digits, . _ - @ :)"
                     ), []
    except (OSError, UnicodeDecodeError) as exc:
        return fail("peers.conf", f"cannot read {tilde(path)}: {exc}",
                     f"chmod u+r {tilde(path)}"), []
    if not peers:
        return ok("peers.conf", "no peers: this host only (add SSH aliases to join a mesh)"), []
    return ok("peers.conf", f"{len(peers)} peer(s): {', '.join(peers)}"), peers


def _read_toml(name: str, path: Path) -> tuple[Check | None, dict[str, object]]:
    """Parse a registry file; a failed Check (missing/corrupt) or the document."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail(name, f"{tilde(path)} is missing (no tmux hook or agent-discover has "
                     "written it yet)", "agent-discover"), {}
    except (OSError, UnicodeDecodeError) as exc:
        return fail(name, f"cannot read {tilde(path)}: {exc}", "agent-discover"), {}
    try:
        return None, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return fail(name, f"{tilde(path)} is not valid TOML ({exc})",
                     "agent-discover (rebuilds it from tmux)"), {}


def check_registry_files(now: float) -> list[Check]:
    """local.toml (this host) and registry.toml (the merged view notify-pane reads)."""
    checks: list[Check] = []
    failed, doc = _read_toml("local.toml", Path(paths.local_slice()))
    checks.append(failed or ok("local.toml", f"{len(agents_from(doc))} agent(s) "
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
        checks.append(warn("registry.toml", f"{detail}, last rebuilt {ago(age)}: timer not "
                            "running?", "agent-discover (and see the timer check)"))
    else:
        checks.append(ok("registry.toml", f"{detail}, rebuilt {ago(age)}"))
    return checks


def _hook_log_errors(text: str, mtime: float) -> list[tuple[float, str]]:
    """(time, line) of each error in the log's text: failed hook runs, missing
    commands, and tracebacks the launcher's fast path left (dated by the last stamp)."""
    errors: list[tuple[float, str]] = []
    when = mtime
    for line in text.splitlines():
        match = _STAMP.match(line)
        if match:
            when = parse_stamp(match.group(1)) or when
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
        return ok("hook-log", "no hook has run yet")
    except OSError as exc:
        return warn("hook-log", f"cannot read {tilde(path)}: {exc}", f"chmod u+r {tilde(path)}")
    recent = [(t, line) for t, line in _hook_log_errors(text, mtime) if now - t <= LOG_WINDOW]
    if not recent:
        return ok("hook-log", "no hook errors in the last 24 h")
    when, last = recent[-1]
    fix = INSTALL if " not found at " in last else (
        f"read {tilde(path)}; after fixing the cause, agent-discover rebuilds the registry")
    return warn("hook-log", f"{len(recent)} hook error(s) in the last 24 h, latest "
                 f"{ago(now - when)}: {last[:160]}", fix)


def check_inbox_parts() -> Check:
    """Upload parts left in ~/.agent-inbox/.incoming by a sender killed mid-copy.

    The next delivery to this host sweeps them (delivery.inbox); until then they hold
    disk space, so say how many and how much.
    """
    from agent_mesh.delivery.inbox import STALE_PART_SECONDS, incoming_dir, stale_parts

    parts = stale_parts()
    where = tilde(incoming_dir())
    if not parts:
        return ok("inbox-parts", f"no leftover upload parts in {where}")
    size = 0
    for part in parts:
        with contextlib.suppress(OSError):
            size += os.stat(part).st_size
    return warn("inbox-parts",
                 f"{len(parts)} upload part(s) older than {duration(STALE_PART_SECONDS)} in "
                 f"{where} ({size} bytes), left by senders that were interrupted",
                 f"the next delivery to this host removes them, or: rm {where}/*.part")


def check_timer() -> Check:
    """The 5-minute resync: a systemd user timer, else a crontab line running agent-discover."""
    code, out, err = run_helper(["systemctl", "--user", "is-active", TIMER_UNIT], timeout=3.0)
    err_lines = err.strip().splitlines()
    state = out.strip() or (err_lines[-1] if err_lines else "?")
    if code == 0 and state == "active":
        return ok("timer", f"systemd user timer {TIMER_UNIT} is active")
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
        return ok("timer", f"crontab runs agent-discover ({' '.join(lines[0].split()[:5])})")
    if not daemon and systemd in ("no systemctl", "no systemd user manager"):
        # a container: nothing here can run a timer, and no fix is to be had from setup
        return warn("timer", f"nothing runs the 5-minute resync on this host ({systemd}, "
                     "no cron daemon): windows still register through the tmux hooks, but "
                     "closed windows and peers' agents go stale between tmux events",
                     "run agent-discover every few minutes some other way (e.g. "
                     "while sleep 300; do agent-discover; done), or start a cron daemon")
    if code == 0 and lines:  # a crontab line is only a timer while a cron daemon runs
        return fail("timer", f"crontab runs agent-discover, but no cron daemon is running "
                     f"({systemd}): closed windows and peers' agents go stale",
                     "start cron (sudo service cron start, or systemctl enable --now cron), "
                     "or use the systemd user timer: " + INSTALL)
    cron = ("no crontab command" if code == 127 else
            "no crontab line runs agent-discover" if code in (0, 1) else
            f"crontab -l: {err.strip()[:80]}")
    fix = INSTALL + "; it installs the systemd user timer, or a crontab line where there is none"
    if state == "failed":
        fix = f"systemctl --user restart {TIMER_UNIT}; journalctl --user -u agent-resync"
    return fail("timer", f"no resync timer ({systemd}; {cron}): closed windows and peers' "
                 "agents go stale", fix)
