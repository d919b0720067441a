"""`Check`: one line of `agent-mesh doctor`'s report, and the small helpers every
check uses (ok/fail/warn, a path as the user types it, how long ago a stamp was).

Its own module so that this host's checks (ops/host_checks.py) and the peers'
(ops/peer_checks.py) share them, and ops/doctor.py only runs and renders them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent_mesh import paths
from agent_mesh.clock import duration, parse_stamp


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


def ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix, severity="warn")


def tilde(path: Path | str) -> str:
    """A path as the user would type it (~/...), for short, copy-pasteable lines."""
    text, home = str(path), str(Path(paths.home()))
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home):]
    return text


def ago(seconds: float) -> str:
    return f"{duration(seconds)} ago"


def stamp_age(stamp: str, now: float) -> float | None:
    then = parse_stamp(stamp)
    return None if then is None else now - then
