"""Setup's resync part: the 5-minute `agent-discover` run, as a systemd user timer, else
a crontab line ending in CRON_MARKER (the user's other crontab lines kept as they are).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys

from agent_mesh import paths
from agent_mesh.ops.setup_base import (
    CRON_MARKER,
    SERVICE_UNIT,
    TIMER_UNIT,
    Report,
    data_file,
    install_copy,
    run_helper,
    tilde,
    without_lines,
)

# --- the 5-minute resync: systemd user timer, else a crontab line ------------------------


def systemd_user_reason() -> str | None:
    """None when a systemd user manager answers, else why the timer cannot be used."""
    if not shutil.which("systemctl"):
        return "no systemctl (no systemd here)"
    if run_helper(["systemctl", "--user", "show-environment"], timeout=10)[0] != 0:
        return ("no systemd user manager reachable (systemctl --user show-environment "
                "failed)")
    return None


def install_timer(report: Report) -> None:
    units = paths.systemd_user_dir()
    for unit in (SERVICE_UNIT, TIMER_UNIT):
        install_copy(data_file(unit), os.path.join(units, unit), 0o644)
    code, out, err = run_helper(["systemctl", "--user", "daemon-reload"])
    if code == 0:
        code, out, err = run_helper(["systemctl", "--user", "enable", "--now", TIMER_UNIT])
    if code == 0:
        report.say(f"installed and enabled the systemd user timer {TIMER_UNIT} in "
                   f"{tilde(units)} (agent-discover every 5 minutes)")
    else:
        report.problem(f"enabling {TIMER_UNIT} failed: {' '.join((err or out).split())}; fix: "
                       f"look at systemctl --user status {TIMER_UNIT}, or re-run with --cron")


def remove_timer(report: Report, quiet: bool = False) -> None:
    units = paths.systemd_user_dir()
    files = [os.path.join(units, u) for u in (TIMER_UNIT, SERVICE_UNIT)]
    if not any(os.path.exists(f) for f in files):
        if not quiet:
            report.say("no systemd units to remove")
        return
    manager = systemd_user_reason() is None
    if manager:
        run_helper(["systemctl", "--user", "disable", "--now", TIMER_UNIT])
        run_helper(["systemctl", "--user", "stop", SERVICE_UNIT])
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if manager:
        run_helper(["systemctl", "--user", "daemon-reload"])
    report.say(f"disabled and removed {TIMER_UNIT} and {SERVICE_UNIT} from {tilde(units)}")


def _read_crontab() -> tuple[str | None, str]:
    """(the user's crontab, possibly empty; None when crontab -l failed, error)."""
    code, out, err = run_helper(["crontab", "-l"])
    if code == 0:
        return out, ""
    if "no crontab" in err.lower():
        return "", ""
    return None, " ".join(err.split())


def cron_line() -> str:
    """Literal $HOME and $PATH: cron's shell expands them. cron's PATH is /usr/bin:/bin,
    so tmux's directory is added when it lives elsewhere (Homebrew, /usr/local)."""
    line = f'"$HOME/.local/bin/agent-discover" >/dev/null 2>&1 {CRON_MARKER}'
    tmux = shutil.which("tmux")
    where = os.path.dirname(tmux) if tmux else ""
    if where not in ("", "/usr/bin", "/bin") and all(
            ch.isalnum() or ch in "._/+-" for ch in where):
        line = f'PATH="{where}:$PATH" {line}'
    return f"*/5 * * * * {line}\n"


def install_cron(report: Report) -> None:
    if not shutil.which("crontab"):
        report.say("no crontab command either: nothing will resync the registry every 5 "
                   "minutes; install cron (apt-get install cron) and re-run, or run "
                   "agent-discover periodically some other way")
        return
    current, err = _read_crontab()
    if current is None:
        report.problem(f"crontab -l failed: {err}; fix: make sure this user may use cron "
                       "(/etc/cron.allow, /etc/cron.deny) and re-run")
        return
    line = cron_line()
    new = without_lines(current, CRON_MARKER)
    if new and not new.endswith("\n"):
        new += "\n"
    new += line
    if new == current:
        report.say(f"the crontab line is already there: {line.strip()}")
    else:
        code, _, err = run_helper(["crontab", "-"], input=new)
        if code != 0:
            report.problem(f"crontab - failed: {' '.join(err.split())}; fix: add this line with "
                           f"crontab -e: {line.strip()}")
            return
        report.say("added a crontab line (agent-discover every 5 minutes; your other lines "
                   f"kept): {line.strip()}")
    if sys.platform.startswith("linux") and shutil.which("pgrep") and all(
            run_helper(["pgrep", "-x", name])[0] != 0 for name in ("cron", "crond")):
        report.warn("no cron daemon seems to be running, so the line will not fire until one "
                    "does (e.g. sudo service cron start)")


def remove_cron(report: Report, quiet: bool = False) -> None:
    if not shutil.which("crontab"):
        return
    fix = f"remove the line ending in '{CRON_MARKER}' with crontab -e"
    current, err = _read_crontab()
    if current is None:
        report.problem(f"crontab -l failed: {err}; fix: {fix}")
        return
    if CRON_MARKER not in current:
        if not quiet:
            report.say("no agent-mesh crontab line to remove")
        return
    new = without_lines(current, CRON_MARKER)
    if new.strip():
        code, _, err = run_helper(["crontab", "-"], input=new)
    else:
        code, _, err = run_helper(["crontab", "-r"])
    if code != 0:
        report.problem(f"crontab failed: {' '.join(err.split())}; fix: {fix}")
        return
    report.say("removed the agent-mesh crontab line (your other lines kept)")


def setup_resync(report: Report, cron: bool) -> None:
    env = os.environ.get("AGENT_MESH_NO_SYSTEMD", "")
    if cron or env not in ("", "0"):
        reason = "--cron" if cron else f"AGENT_MESH_NO_SYSTEMD={env}"
        remove_timer(report, quiet=True)  # an earlier setup may have enabled the timer
    else:
        reason = systemd_user_reason() or ""
        if not reason:
            install_timer(report)
            remove_cron(report, quiet=True)  # an earlier setup may have taken the cron path
            return
    report.say(f"{reason}: using a crontab line instead of the systemd timer")
    install_cron(report)
