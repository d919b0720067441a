"""What this host's agents are doing, and what their panes show: read-only.

`local_status` answers for every agent of this host's slice in one `list-panes`
call plus one state read per live pane (in parallel threads: each is a tmux
client process, so they overlap), and `peek` reads a pane's last lines. Nothing
here types into a pane.

`since`, when the state last changed, is as good as can be known without a
daemon: a small per-host cache (~/.agents/state.json, 0600, atomic) remembers
each agent's state at the previous status call. A state that is unchanged keeps
its old `since`. A new or changed state is dated by the window's last output
(tmux `#{window_activity}`): the state is read from the screen, which has not
changed since then; but never earlier than the previous call that saw the old
state. An agent never seen before is dated by its last output alone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from agent_mesh import paths
from agent_mesh.delivery.paste import PaneGone, detect_modal, pane_state
from agent_mesh.delivery.state import SHELLS, refusal
from agent_mesh.errors import MeshError, WireError
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Agent
from agent_mesh.tmux import Tmux, fields_format, parse_records

KINDS = ("idle", "working", "drafting", "waiting", "shell", "running", "dead", "gone",
         "unreachable")
MAX_PEEK_LINES = 10000
_PANE_FIELDS = ("pane_id", "window_activity", "pane_dead")
_THREADS = 8


# --- ADAPTER: replaced at merge by the one state classifier (delivery/state.py) --------
# Crude on purpose (dead / not ready / ready from refusal()); keep it this small.


def pane_status(tmux: Tmux, agent: Agent) -> dict[str, str]:
    """{"state", "program", "detail"} of the agent's pane (a kind from KINDS)."""
    try:
        st = pane_state(tmux, agent.pane_id or agent.target)
    except PaneGone:
        return {"state": "gone", "program": "", "detail": "its pane no longer exists"}
    program = os.path.basename(st.foreground or st.current_command)
    if st.dead:
        return {"state": "dead", "program": program, "detail": "the program exited"}
    root = _comm(st.pane_pid)
    if root in SHELLS and program and program.split(".")[0] not in SHELLS:
        return {"state": "running", "program": program, "detail": f"{root} is running {program}"}
    reason = refusal(st)
    modal = detect_modal(st.screen)
    if modal:
        return {"state": "waiting", "program": program, "detail": f"the {modal} dialog is open"}
    if reason is None:
        return {"state": "idle", "program": program, "detail": ""}
    if "mid-prompt" in reason:
        return {"state": "drafting", "program": program, "detail": reason}
    if "interactive shell" in reason:
        return {"state": "shell", "program": program, "detail": "at its prompt"}
    return {"state": "waiting", "program": program, "detail": reason}


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


# --- end of ADAPTER ------------------------------------------------------------------


def live_panes(tmux: Tmux) -> dict[str, dict[str, str]]:
    """Every pane of this host's tmux server ({} when no server runs), in one call."""
    result = tmux.run("list-panes", "-a", "-F", fields_format(_PANE_FIELDS), check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace")
        if "no server running" in err or "error connecting to" in err:
            return {}
        raise WireError(f"tmux list-panes failed: {result.error_line}")
    return {r["pane_id"]: r for r in parse_records(result.stdout, _PANE_FIELDS)}


def local_status(agents: list[Agent], tmux: Tmux | None = None) -> list[dict[str, Any]]:
    """One row per agent of this host: address, host, state, since, program, role, detail."""
    tmux = tmux or Tmux()
    panes = live_panes(tmux)
    found: dict[str, dict[str, str]] = {}
    todo = [a for a in agents if a.pane_id in panes]

    def work() -> None:
        while todo:
            try:
                agent = todo.pop()
            except IndexError:
                return
            try:
                found[agent.address] = pane_status(tmux, agent)
            except MeshError as exc:
                found[agent.address] = {"state": "gone" if exc.exit_code == 2 else "unknown",
                                        "program": "", "detail": str(exc)}

    threads = [threading.Thread(target=work) for _ in range(min(_THREADS, len(todo) - 1))]
    for thread in threads:
        thread.start()
    work()
    for thread in threads:
        thread.join()
    now = time.time()
    rows: list[dict[str, Any]] = []
    for agent in agents:
        status = found.get(agent.address) or {
            "state": "gone", "program": "", "detail": "its window is closed (registry entry only)"
        }
        activity = panes.get(agent.pane_id, {}).get("window_activity", "")
        rows.append({
            "address": agent.address, "host": agent.host, "state": status["state"],
            "since": 0.0, "program": status["program"] or agent.command, "role": agent.role,
            "detail": status["detail"], "pane": agent.pane_id, "target": agent.target,
            "activity": float(activity) if activity.isdigit() else 0.0,
        })
    _date_states(rows, now)
    for row in rows:
        row["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["since"]))
        del row["activity"]
    return rows


# --- since: the per-host state cache ---------------------------------------------------


def state_cache() -> str:
    return os.path.join(paths.agents_dir(), "state.json")


def _date_states(rows: list[dict[str, Any]], now: float) -> None:
    """Set each row's `since` (epoch) from the cache and tmux activity; update the cache."""
    try:
        with open(state_cache(), encoding="utf-8") as fh:
            cache = json.load(fh)
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    fresh: dict[str, list[Any]] = {}
    for row in rows:
        key = f"{row['address']} {row['pane']}"
        prev = cache.get(key)
        if not (isinstance(prev, list) and len(prev) == 3
                and all(isinstance(v, (int, float)) for v in prev[1:])):
            prev = None  # a cache from elsewhere or hand-edited: start afresh
        if prev is not None and prev[0] == row["state"]:
            since = float(prev[1])
        else:
            since = row["activity"] or now
            if prev is not None:
                since = max(since, float(prev[2]))
        row["since"] = min(since, now)
        fresh[key] = [row["state"], row["since"], now]
    try:
        with locked(state_cache() + ".lock", timeout=1.0):
            atomic_write(state_cache(), json.dumps(fresh).encode(), mode=0o600)
    except (OSError, TimeoutError):
        pass  # without the cache, `since` falls back to the last output


# --- peek ---------------------------------------------------------------------------


def peek(agent: Agent, lines: int = 40, ansi: bool = False, tmux: Tmux | None = None) -> str:
    """The last `lines` lines of the agent's pane (screen plus scrollback).

    Without ansi, tmux gives plain cell text and anything control-like left is
    dropped, so the output is safe for a terminal; with ansi, SGR colours are kept.
    """
    tmux = tmux or Tmux()
    lines = max(1, min(int(lines), MAX_PEEK_LINES))
    target = agent.pane_id or agent.target
    args = ["capture-pane", "-p", "-S", f"-{lines}", "-t", target]
    if ansi:
        args.insert(2, "-e")
    result = tmux.run(*args, check=False)
    if result.returncode != 0:
        if b"can't find" in result.stderr or b"no server running" in result.stderr:
            raise PaneGone(f"its pane {target} no longer exists (run agent-discover there)")
        raise WireError(f"tmux capture-pane failed: {result.error_line}")
    rows = result.stdout.decode("utf-8", "replace").split("\n")
    while rows and not rows[-1].strip():
        rows.pop()
    rows = rows[-lines:]
    if not ansi:
        rows = [strip_controls(row) for row in rows]
    return "\n".join(rows) + ("\n" if rows else "")


def strip_controls(text: str) -> str:
    """Drop escape sequences, C0 (but tab), DEL and C1 from one line."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\x1b":
            j = i + 1
            if j < n and text[j] == "[":
                j += 1
                while j < n and not ("@" <= text[j] <= "~"):
                    j += 1
            i = j + 1
            continue
        code = ord(ch)
        if ch == "\t" or not (code < 0x20 or 0x7F <= code <= 0x9F):
            out.append(ch)
        i += 1
    return "".join(out)
