"""Seeing the mesh: status, peek and inbox across hosts, one request per host.

The rpc side (`handle`, dispatched by mesh/rpc.py for the ops status, peek and
inbox) answers from this host's own tmux server, slice and logs; the client side
asks every peer host in parallel threads through `remote_request`, the one place
that talks to a peer. Nothing here types into a pane.
"""

from __future__ import annotations

import os
import threading
import time

from agent_mesh import paths
from agent_mesh.delivery import log
from agent_mesh.delivery import observe as local
from agent_mesh.errors import MeshError, UsageError
from agent_mesh.model import Agent
from agent_mesh.registry import naming, view

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a peer's rpc an import
    from typing import Any

STATUS_TIMEOUT = 15.0
MAX_INBOX = 1000


# --- the one remote call (switch to the transport's generic request() at merge) ---------


def remote_request(host: str, request: dict[str, Any], timeout: float = STATUS_TIMEOUT
                   ) -> dict[str, Any]:
    """Send one rpc request to host's `agent-mesh rpc` and return its reply (raises
    the MeshError the peer reported, or WireError)."""
    from agent_mesh.mesh.transport import remote_transport

    transport = remote_transport(host)
    try:
        return transport.request(request, timeout=timeout)
    finally:
        transport.close()


# --- rpc side ---------------------------------------------------------------------------


def handle(op: str, request: dict[str, Any]) -> dict[str, Any]:
    """The rpc ops status / peek / inbox, answered from this host alone."""
    if op == "status":
        return {"agents": local.local_status(list(_own_agents().values()))}
    address = request.get("address")
    if not isinstance(address, str) or not address:
        raise UsageError(f"{op} needs an address")
    agent = view.resolve(address, _own_agents())
    if op == "peek":
        text = local.peek(agent, _int(request.get("lines"), 40), bool(request.get("ansi")))
        return {"text": text}
    if op == "inbox":
        return {"records": inbox_records(agent.address, _int(request.get("limit"), 200))}
    raise UsageError(f"unknown request {op!r}")


def _own_agents() -> dict[str, Agent]:
    """This host's agents: its slice's entries, read from the merged registry's marshal
    cache (every slice write re-assembles it) rather than parsing local.toml (~15 ms)."""
    me = naming.self_alias()
    return {a: ag for a, ag in view.load_agents().items() if ag.host == me}


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def inbox_records(address: str, limit: int = 200) -> list[dict[str, Any]]:
    """What an agent here received (newest last), each file record marked present or not."""
    records = log.read(log.received_path(address), max(1, min(limit, MAX_INBOX)))
    for record in records:
        shown = record.get("file")
        if isinstance(shown, str) and shown.startswith("~/"):
            record["present"] = os.path.exists(os.path.join(paths.home(), shown[2:]))
    return records


# --- client side ----------------------------------------------------------------------


def matches(row: dict[str, Any], patterns: list[str]) -> bool:
    """PATTERN: an address glob (`worker-*`), `role:GLOB` or `host:GLOB`; any may match."""
    if not patterns:
        return True
    import fnmatch

    for pattern in patterns:
        kind, _, glob = pattern.partition(":")
        if kind == "role" and glob:
            if fnmatch.fnmatchcase(str(row.get("role", "")).lower(), glob.lower()):
                return True
        elif kind == "host" and glob:
            if fnmatch.fnmatchcase(str(row.get("host", "")), glob):
                return True
        elif fnmatch.fnmatchcase(str(row.get("address", "")), pattern):
            return True
    return False


def _hosts_wanted(patterns: list[str]) -> list[str] | None:
    """Only these hosts need asking when every pattern names hosts; None: all of them."""
    if not patterns or not all(p.startswith("host:") for p in patterns):
        return None
    return [p[5:] for p in patterns]


def mesh_status(patterns: list[str] | None = None) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """(rows, hosts): every agent's row, and per host ok/error/elapsed_ms.

    This host is read directly; every other host that has agents in the registry
    is asked in parallel. A host that does not answer keeps
    its agents from the last good slice, in state `unreachable`.
    """
    patterns = list(patterns or [])
    me = naming.self_alias()
    known = view.load_agents()
    hosts = [me]  # a peer with no agents in the registry has no rows to show
    for agent in known.values():
        if agent.host not in hosts:
            hosts.append(agent.host)
    wanted = _hosts_wanted(patterns)
    if wanted is not None:
        import fnmatch

        hosts = [h for h in hosts if any(fnmatch.fnmatchcase(h, g) for g in wanted)]
    results: dict[str, tuple[list[dict[str, Any]] | None, str, float]] = {}

    def ask(host: str) -> None:
        started = time.monotonic()
        try:
            if host == me:
                rows = local.local_status(list(_own_agents().values()))
            else:
                rows = list(remote_request(host, {"op": "status"})["agents"])
            results[host] = (rows, "", (time.monotonic() - started) * 1000)
        except MeshError as exc:
            results[host] = (None, str(exc).removeprefix(f"{host}: "),
                             (time.monotonic() - started) * 1000)
        except Exception as exc:  # a peer's bad reply must not hide the others
            results[host] = (None, f"{type(exc).__name__}: {exc}",
                             (time.monotonic() - started) * 1000)

    threads = [threading.Thread(target=ask, args=(h,), daemon=True) for h in hosts if h != me]
    for thread in threads:
        thread.start()
    if me in hosts:
        ask(me)
    for thread in threads:
        thread.join()
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    for host in hosts:
        got, error, elapsed = results[host]
        reports.append({"host": host, "ok": got is not None, "error": error,
                        "elapsed_ms": round(elapsed, 1)})
        if got is None:
            got = [_unreachable_row(a, error) for a in known.values() if a.host == host]
        rows.extend(r for r in got if isinstance(r, dict) and matches(r, patterns))
    return rows, reports


def _unreachable_row(agent: Agent, error: str) -> dict[str, Any]:
    return {
        "address": agent.address, "host": agent.host, "state": "unreachable",
        "since": agent.last_seen or agent.updated, "program": agent.command,
        "role": agent.role, "detail": error, "pane": agent.pane_id, "target": agent.target,
        "stale": True,
    }


def _where(address: str) -> tuple[Agent, bool]:
    """The agent and whether it lives on this host (UnknownAgent, exit 2, otherwise)."""
    agent = view.resolve(address)
    return agent, agent.host == naming.self_alias()


def peek(address: str, lines: int = 40, ansi: bool = False) -> str:
    agent, here = _where(address)
    if here:
        return local.peek(view.resolve(address, _own_agents()), lines, ansi)
    reply = remote_request(agent.host, {"op": "peek", "address": address, "lines": lines,
                                        "ansi": ansi})
    text = str(reply.get("text", ""))
    if ansi:
        return text
    # the peer stripped them already; a peer is not trusted with our terminal either
    return "\n".join(local.strip_controls(row) for row in text.split("\n"))


def inbox(address: str, limit: int = 200) -> list[dict[str, Any]]:
    agent, here = _where(address)
    if here:
        return inbox_records(address, limit)
    reply = remote_request(agent.host, {"op": "inbox", "address": address, "limit": limit})
    return [r for r in reply.get("records", []) if isinstance(r, dict)]


def local_inbox_all(limit: int = 200) -> list[dict[str, Any]]:
    """Every agent of this host's received records, merged by time."""
    records: list[dict[str, Any]] = []
    for address in _own_agents():
        records += inbox_records(address, limit)
    records.sort(key=lambda r: str(r.get("time", "")))
    return records[-limit:]


def sent_records(limit: int = 200) -> list[dict[str, Any]]:
    return log.read(log.sent_path(), limit)
