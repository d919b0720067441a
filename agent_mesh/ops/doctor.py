"""`agent-mesh doctor`: is this host a working mesh member? One line per check.

A newcomer's first question after install is "is it working?", and the answer
spans tmux, the hook files, PATH, the config files, the resync timer and every
peer. Each check is a small function that returns `Check` values (ops/checks.py)
with the fix for a failure: this host's in ops/host_checks.py, the peers' in
ops/peer_checks.py. `run_checks` runs them all and turns anything unexpected into
a failed check, so the command never shows a traceback. Peers are probed first,
in parallel, and collected last within one deadline, so a mesh with dead hosts
still answers in under five seconds (an abandoned probe never delays exit).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent_mesh import __version__, paths
from agent_mesh.errors import printable
from agent_mesh.ops.checks import Check, fail, ok, warn
from agent_mesh.ops.host_checks import (
    check_hook_files,
    check_hook_log,
    check_inbox_parts,
    check_path,
    check_peers_conf,
    check_registry_files,
    check_self_conf,
    check_timer,
    check_tmux,
)
from agent_mesh.ops.peer_checks import PeerProbes, check_slice, check_trust

__all__ = ["Check", "check_inbox_parts", "check_peers_conf", "check_registry_files",
           "check_timer", "check_tmux", "exit_code", "render", "run_checks", "summary",
           "to_json"]


def check_agents() -> list[Check]:
    """Per agent CLI on this host (Claude Code, Codex): agent-mesh's hooks installed and
    trusted, its version, when a hook last fired (ops/agents.py). Without them delivery
    reads the screen only, as before: a warning, not a failure."""
    from agent_mesh.ops import agents, mcp_clients

    mcp_clients.plug_in()  # the MCP server's entry, shown with each CLI's hooks
    return [ok(name, detail) if good else warn(name, detail, "agent-mesh setup --agents")
            for name, good, detail in agents.describe()]


def check_mcp_registration() -> list[Check]:
    """`agent-mesh mcp` in the agent CLIs check_agents does not cover (Gemini CLI)."""
    from agent_mesh.ops import mcp_clients

    return mcp_clients.checks()


def _guard(name: str, func: Callable[[], Any]) -> list[Check]:
    """Run one check function; an unexpected exception becomes a failed check."""
    try:
        result = func()
    except Exception as exc:
        return [fail(name, f"doctor error: {type(exc).__name__}: {exc}",
                      "report this as an agent-mesh bug")]
    return result if isinstance(result, list) else [result]


def run_checks(*, include_peers: bool = True) -> list[Check]:
    """Every check, in report order; peers are probed in parallel, bounded by PEER_BUDGET."""
    now = time.time()
    try:
        from agent_mesh.registry.naming import read_peers

        peers = read_peers() if Path(paths.peers_conf()).exists() else []
    except Exception:
        peers = []  # the peers.conf check reports why
    probes = PeerProbes(peers) if include_peers and peers else None

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
    checks += _guard("agents", check_agents)
    checks += _guard("mcp", check_mcp_registration)
    probed = probes.results() if probes is not None else {}
    for alias in peers:
        if alias in probed:
            checks.append(probed[alias])
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
