"""Seeing the mesh: status, peek and inbox across hosts, one request per host.

The client side of the rpc ops status, peek and inbox (answered by mesh/handlers.py):
every host is asked in parallel through a mesh/host.py Group, this one in-process. Patterns
are registry/select.py's grammar. Nothing here types into a pane.
"""

from __future__ import annotations

import time

from agent_mesh.errors import MeshError, Outcome
from agent_mesh.mesh.host import READ_TIMEOUT, connect
from agent_mesh.mesh.host import hosts as group
from agent_mesh.mesh.transport import Host
from agent_mesh.model import Agent
from agent_mesh.registry import naming, select, view

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import
    from typing import Any

# This host's side (delivery/observe.py, mesh/handlers.py, the delivery log) is imported
# where it is used: a status imports it as it answers for this host in-process, once
# the peers' requests are on their way, so the import overlaps their answers.


def _hosts_wanted(patterns: list[str]) -> list[str] | None:
    """Only these hosts need asking when every pattern names hosts; None: all of them."""
    if not patterns or not all(p.startswith("host:") for p in patterns):
        return None
    return [p[5:] for p in patterns]


def mesh_status(patterns: list[str] | None = None) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """(rows, hosts): every agent's row, and per host ok/error/elapsed_ms.

    Every host that has agents in the registry is asked in parallel (this one
    in-process). A host that does not answer keeps its agents from the last good
    slice, in state `unreachable`.
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
        hosts = [h for h in hosts if any(select.matches_fields("", "", h, f"host:{g}")
                                         for g in wanted)]
    elapsed: dict[str, float] = {}

    def ask(host: Host) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return host.request({"op": "status"}, timeout=READ_TIMEOUT)
        finally:
            elapsed[host.host] = (time.monotonic() - started) * 1000

    answers = group(hosts).each(ask)
    aliases = {*naming.mesh_aliases(strict=False), *hosts}
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    for host in hosts:
        answer = answers[host]
        got = None if isinstance(answer, MeshError) else answer.get("agents")
        error = str(answer).removeprefix(f"{host}: ") if isinstance(answer, MeshError) else ""
        if not isinstance(got, list):
            error = error or "bad status reply"
            got = None
        report: dict[str, Any] = {"host": host, "ok": got is not None, "error": error,
                                  "elapsed_ms": round(elapsed.get(host, 0.0), 1)}
        if got is None:
            got = [_unreachable_row(a, error) for a in known.values() if a.host == host]
        else:
            got, dropped = _its_own(host, got, aliases)
            if dropped:
                report["dropped"] = dropped
        reports.append(report)
        rows.extend(r for r in got if _row_matches(r, patterns))
    return rows, reports


def _its_own(host: str, got: list[Any], aliases: set[str]) -> tuple[list[dict[str, Any]], int]:
    """A host's status rows for its own agents only (as sync keeps a slice's own
    entries), and how many were dropped: a peer speaks only for itself."""
    kept = [r for r in got if isinstance(r, dict) and isinstance(r.get("address"), str)
            and naming.is_valid_address(r["address"])
            and not view.not_its_own(host, r["address"], r.get("host"), aliases)]
    return kept, len(got) - len(kept)


def _row_matches(row: dict[str, Any], patterns: list[str]) -> bool:
    """A status row against PATTERNs (none: every row), by select.py's one grammar."""
    return not patterns or any(
        select.matches_fields(str(row.get("address", "")), str(row.get("role", "")),
                              str(row.get("host", "")), p) for p in patterns)


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
    from agent_mesh.delivery import observe as local

    agent, here = _where(address)
    if here:
        from agent_mesh.mesh.handlers import own_agents

        return local.peek(view.resolve(address, own_agents()), lines, ansi)
    reply = _ask(agent.host, {"op": "peek", "address": address, "lines": lines,
                              "ansi": ansi})
    # the peer cut and stripped it already; a peer is not trusted with our terminal either
    return local.last_lines(str(reply.get("text", "")), lines, ansi)


def inbox(address: str, limit: int = 200) -> list[dict[str, Any]]:
    agent, here = _where(address)
    if here:
        from agent_mesh.mesh.handlers import inbox_records

        return inbox_records(address, limit)
    reply = _ask(agent.host, {"op": "inbox", "address": address, "limit": limit})
    return [r for r in reply.get("records", []) if isinstance(r, dict)]


def _ask(alias: str, request: dict[str, Any]) -> dict[str, Any]:
    """One read request to a peer, within the read deadline."""
    with connect(alias) as host:
        return host.request(request, timeout=READ_TIMEOUT)


def local_inbox_all(limit: int = 200) -> list[dict[str, Any]]:
    """Every agent of this host's received records, merged by time."""
    from agent_mesh.mesh.handlers import inbox_records, own_agents

    records: list[dict[str, Any]] = []
    for address in own_agents():
        records += inbox_records(address, limit)
    records.sort(key=lambda r: str(r.get("time", "")))
    return records[-limit:]


def sent_records(limit: int = 200) -> list[dict[str, Any]]:
    """sent.jsonl, with what became of each queued message: its outcome reads
    `queued → delivered` (or expired, cancelled, held) from the recipient agent's
    received log, read here for this host's agents and with one `inbox` request per
    agent (in parallel per host, within the read deadline) for a peer's; a host that
    does not answer leaves `queued`."""
    from agent_mesh.delivery import log

    records = log.read(log.sent_path(), limit)
    waiting: dict[str, set[str]] = {}
    for record in records:
        if record.get("outcome") == Outcome.QUEUED.word and record.get("to") and record.get("host"):
            waiting.setdefault(str(record["host"]), set()).add(str(record["to"]))
    if not waiting:
        return records

    def ends_on(host: Host) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for address in sorted(waiting[host.host]):
            reply = host.request({"op": "inbox", "address": address, "limit": 1000},
                                 timeout=READ_TIMEOUT)
            lines = [r for r in reply.get("records", []) if isinstance(r, dict)]
            for line in lines:
                if line.get("outcome") in log.QUEUE_ENDS and line.get("id"):
                    found[f"{address}\n{line['id']}"] = line
        return found

    # keyed by host, agent and id: a host speaks only for its own agents' messages
    ends: dict[tuple[str, str], Any] = {}
    for host, answer in group(waiting).each(ends_on).items():
        if isinstance(answer, dict):
            ends.update(((host, key), line) for key, line in answer.items())
    for record in records:
        key = (str(record.get("host")), f"{record.get('to')}\n{record.get('id')}")
        end = ends.get(key) if record.get("outcome") == Outcome.QUEUED.word else None
        if end is not None:
            record["outcome"] = f"queued → {end['outcome']}"
            record["reason"] = str(end.get("reason", "") or "")
    return records
