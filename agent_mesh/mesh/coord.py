"""Coordinating across the mesh: reaching each object's one authority, merging the logs.

The client side of the rpc op `coord` (answered by agent_mesh/coord/serve.py):
- post and decide append to this host's own logs; bulletin and decisions ask every host
  in parallel (as status does) and merge by time. A host that does not answer is named,
  and its last entries seen here are shown marked as such. Entries a host sends that are
  not its own (another host, another host's agent) are dropped and counted.
- lock, unlock and locks go to the host where the path lives (`HOST:PATH`); a task board
  to its host (`NAME@HOST`). An authority that cannot be reached is a WireError (exit 4)
  naming it: never a guess, never a second holder.

Every function returns plain JSON-ready data: the CLI renders it, an MCP tool returns it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agent_mesh.coord import board as board_store
from agent_mesh.coord import bulletin as logs
from agent_mesh.coord.files import clean_name, clean_tags, coord_file, load, save
from agent_mesh.coord.holders import belongs_to
from agent_mesh.errors import Held, MeshError, UsageError, WaitTimeout, WireError, printable
from agent_mesh.mesh.host import connect, hosts
from agent_mesh.registry import naming, view, whoami

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from agent_mesh.delivery.mailbox import Origin
    from agent_mesh.mesh.transport import Host

# An authority gets this long to answer a lock or a claim, and a host a read: the
# acceptance is "exit 4 within 5 s" with the authority partitioned.
WRITE_TIMEOUT = 4.0
READ_TIMEOUT = 4.5
BOARD_ENV = "AGENT_MESH_BOARD"
DEFAULT_BOARD = "main"
SEEN_MAX = 2000  # entries of each peer remembered for when it does not answer
WAIT_POLL = (0.2, 2.0)


# --- who asks -------------------------------------------------------------------------


def me() -> dict[str, str]:
    """This process as a holder: its registered pane's address (whoami), else this host."""
    host = naming.self_alias()
    try:
        agent = whoami.own_agent(view.load_agents())
    except UsageError:
        agent = None
    if agent is None:
        return {"who": host, "host": host, "pane": ""}
    return {"who": agent.address, "host": host, "pane": agent.pane_id}


def _request(host: str, request: dict[str, Any], timeout: float,
             origin: Origin | None = None) -> dict[str, Any]:
    """One `coord` request to host (LocalHost answers this one in-process)."""
    with connect(host, origin) as peer:
        return peer.request({"op": "coord", **request}, timeout=timeout)


def _each(aliases: list[str], fn: Callable[[Host], dict[str, Any]]
          ) -> dict[str, dict[str, Any] | MeshError]:
    """fn(host) for every host in parallel (mesh/group.py); a host's MeshError is its
    answer."""
    return hosts(aliases).each(fn)


def _call(host: str, what: str, request: dict[str, Any],
          timeout: float = WRITE_TIMEOUT) -> dict[str, Any]:
    """One `coord` request to the authority `host`; unreachable: exit 4 naming it."""
    from agent_mesh.mesh.origin import LocalOrigin

    asker = request.get("who") or {}
    origin = LocalOrigin(naming.self_alias(), str(asker.get("who", "")))
    try:
        return _request(host, request, timeout, origin)
    except WireError as exc:
        if exc.answered:
            raise
        reason = str(exc).removeprefix(f"{host}: ")
        raise WireError(f"{host} holds {what} and cannot be reached ({reason}); "
                        "nothing was changed") from None


def _aliases() -> set[str]:
    """Every host alias known here (peers.conf and the registry's hosts): whose address is
    whose, when aliases prefix each other."""
    try:
        known = {agent.host for agent in view.load_agents().values()}
    except UsageError:
        known = set()
    return {*naming.mesh_aliases(strict=False), *known}


def _hosts(only: list[str] | None = None) -> list[str]:
    hosts = naming.mesh_aliases(strict=False)
    if only:
        unknown = [h for h in only if h not in hosts]
        if unknown:
            raise UsageError(f"unknown host {printable(unknown[0])[:40]!r}: the mesh is "
                             f"{', '.join(hosts)} (~/.agents/peers.conf)")
        hosts = [h for h in hosts if h in only]
    return hosts


# --- bulletin and decisions -------------------------------------------------------------


def post(text: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Append an entry to this host's bulletin: something that was done."""
    return logs.post(me()["who"], text, tags)


def _seen_path(host: str, kind: str) -> str:
    return os.path.join(coord_file("seen"), f"{host}.{kind}.json")


def _valid(entry: Any, host: str, kind: str, aliases: set[str]) -> bool:
    """Is this one of `host`'s own well-formed entries? (A peer speaks only for itself.)"""
    if type(entry) is not dict:
        return False
    who, when = entry.get("who"), entry.get("time")
    if entry.get("host") != host or not isinstance(who, str) \
            or not belongs_to(who, host, aliases):
        return False
    if not isinstance(when, (int, float)) or not isinstance(entry.get("id"), str):
        return False
    if not _tags_ok(entry.get("tags")):
        return False
    if kind == "decisions":
        return isinstance(entry.get("title"), str) and isinstance(entry.get("because"), str)
    return isinstance(entry.get("text"), str)


def _tags_ok(tags: Any) -> bool:
    """Absent, or tags as `post` keeps them (clean_tags): what is shown is what was sent."""
    if tags is None:
        return True
    try:
        return type(tags) is list and clean_tags(tags) == tags
    except UsageError:
        return False


def _remember(host: str, kind: str, entries: list[dict[str, Any]]) -> None:
    """Keep a peer's latest entries for when it does not answer (best effort)."""
    path = _seen_path(host, kind)
    try:
        old = load(path).get("entries")
        merged = {e["id"]: e for e in (old if isinstance(old, list) else [])
                  if isinstance(e, dict) and isinstance(e.get("id"), str)}
        before = len(merged)
        merged.update((e["id"], e) for e in entries)
        if len(merged) == before and old:
            return
        keep = sorted(merged.values(), key=lambda e: e["time"])[-SEEN_MAX:]
        save(path, {"host": host, "saved": time.time(), "entries": keep})
    except (OSError, MeshError):
        pass


def _recall(host: str, kind: str, aliases: set[str]) -> list[dict[str, Any]]:
    try:
        old = load(_seen_path(host, kind)).get("entries")
    except MeshError:
        return []
    return [dict(e, cached=True) for e in (old if isinstance(old, list) else [])
            if _valid(e, host, kind, aliases)]


def read(kind: str, since: float = 0.0, tags: list[str] | None = None,
         hosts: list[str] | None = None, limit: int = 0) -> dict[str, Any]:
    """Every host's `kind` entries (bulletin or decisions) merged in time order, and one
    report per host (ok, error, dropped, cached). JSON-ready."""
    tags = clean_tags(tags)
    me_host = naming.self_alias()
    request = {"action": "read", "kind": kind, "since": since, "tags": tags, "limit": limit}

    def ask(host: Host) -> dict[str, Any]:
        if host.host == me_host:  # this host's own log, without a request
            return {"entries": logs.read(kind, since, tags, limit)}
        return host.request({"op": "coord", **request}, timeout=READ_TIMEOUT)

    merged: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    aliases = _aliases()
    for host, answer in _each(_hosts(hosts), ask).items():
        report: dict[str, Any] = {"host": host, "ok": True}
        got = answer.get("entries") if isinstance(answer, dict) else None
        if host == me_host and isinstance(got, list):
            merged.extend(got)
        elif isinstance(got, list):
            kept = [e for e in got if _valid(e, host, kind, aliases)]
            if len(kept) < len(got):
                report["dropped"] = len(got) - len(kept)
            merged.extend(kept)
            _remember(host, kind, kept)
        else:
            error = str(answer).removeprefix(f"{host}: ") if isinstance(answer, MeshError) \
                else "bad reply"
            old = [e for e in _recall(host, kind, aliases) if e["time"] >= since
                   and (not tags or set(tags) & set(e.get("tags") or ()))]
            report.update(ok=False, error=error, cached=len(old))
            merged.extend(old)
        reports.append(report)
    merged.sort(key=lambda e: (e.get("time", 0), e.get("host", ""), e.get("id", "")))
    if limit > 0:
        merged = merged[-limit:]
    return {"entries": merged, "hosts": reports}


def bulletin(since: float = 0.0, tags: list[str] | None = None,
             hosts: list[str] | None = None, limit: int = 0) -> dict[str, Any]:
    return read("bulletin", since, tags, hosts, limit)


def decide(title: str, because: str, supersedes: str = "") -> dict[str, Any]:
    """Record a decision on this host; superseding checks that the decision exists, on its
    own host (exit 4 naming it when that host cannot be reached)."""
    if supersedes:
        logs.check_decision_id(supersedes)
        host = supersedes.partition("@")[2]
        found = _decisions_of(host)
        if not any(d.get("id") == supersedes for d in found):
            raise UsageError(f"no decision {printable(supersedes)} on {host} "
                             "(agent-mesh decisions lists them)")
    return logs.decide(me()["who"], title, because, supersedes)


def _decisions_of(host: str) -> list[dict[str, Any]]:
    if host == naming.self_alias():
        return logs.read("decisions")
    if host not in naming.mesh_aliases(strict=False):
        raise UsageError(f"{host} is not in this mesh (~/.agents/peers.conf)")
    got = _call(host, "that decision", {"action": "read", "kind": "decisions"},
                READ_TIMEOUT).get("entries")
    aliases = _aliases()
    return [d for d in got if _valid(d, host, "decisions", aliases)] \
        if isinstance(got, list) else []


def decisions(include_superseded: bool = False) -> dict[str, Any]:
    """The decisions in force mesh-wide (not superseded by any other), oldest first."""
    doc = read("decisions")
    gone = {d.get("supersedes") for d in doc["entries"] if d.get("supersedes")}
    for entry in doc["entries"]:
        if entry.get("id") in gone:
            entry["superseded"] = True
    if not include_superseded:
        doc["entries"] = [d for d in doc["entries"] if not d.get("superseded")]
    return doc


# --- locks --------------------------------------------------------------------------------


def where(target: str, host: str | None = None) -> tuple[str, str]:
    """(authority host, absolute path) of `HOST:PATH` or PATH (--host, else this host)."""
    hosts = naming.mesh_aliases(strict=False)
    head, colon, rest = target.partition(":")
    if colon and head in hosts and host is None:
        host, target = head, rest
    host = host or naming.self_alias()
    if host not in hosts:
        raise UsageError(f"unknown host {printable(host)[:40]!r}: the mesh is "
                         f"{', '.join(hosts)} (~/.agents/peers.conf)")
    if not target.startswith("/"):
        if host != naming.self_alias():
            raise UsageError(f"give the absolute path on {host}: {printable(target)[:80]!r} "
                             "is relative")
        target = os.path.abspath(target)
    return host, target


def _held_line(lock: dict[str, Any], host: str) -> str:
    from agent_mesh.clock import duration

    now = time.time()
    intent = lock.get("intent") or "no intent given"
    return (f"{host}:{lock.get('path')} is locked by {lock.get('who')} ({intent}) since "
            f"{duration(now - float(lock.get('since', now)))} ago, expires in "
            f"{duration(float(lock.get('expires', now)) - now)}")


def lock(target: str, host: str | None = None, intent: str = "", ttl: float = 7200.0,
         wait: float = 0.0, sleep: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Take the lock on HOST:PATH. Held (exit 3) names the holder; with `wait`, retries
    until then and WaitTimeout (exit 6). Renews it when it is already ours. `sleep`: the
    pause between tries (an MCP tool lets its other calls run meanwhile)."""
    host, path = where(target, host)
    request = {"action": "lock", "who": me(), "path": path, "intent": intent, "ttl": ttl}
    deadline = time.monotonic() + wait
    pause = WAIT_POLL[0]
    while True:
        answer = _call(host, f"the locks of its paths ({path})", request)
        theirs = answer.get("lock") or {}
        if answer.get("acquired"):
            return {"host": host, **theirs}
        line = _held_line(theirs, host)
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"still held after {wait:g}s: {line}") if wait else Held(line)
        (sleep or time.sleep)(min(pause, left))
        pause = min(pause * 1.5, WAIT_POLL[1])


def unlock(target: str, host: str | None = None, force: bool = False) -> dict[str, Any]:
    """Release the lock on HOST:PATH: the holder's, or anyone's with force (then logged on
    the authority's bulletin)."""
    host, path = where(target, host)
    answer = _call(host, f"the locks of its paths ({path})",
                   {"action": "unlock", "who": me(), "path": path, "force": force})
    if answer.get("released") is None:
        raise Held(_held_line(answer.get("lock") or {}, host)
                   + "; only its holder unlocks it (--force to override, which is logged)")
    return {"host": host, "forced": bool(answer.get("forced")), **answer["released"]}


def locks(hosts: list[str] | None = None) -> dict[str, Any]:
    """Every lock in force, mesh-wide, and one report per host."""
    me_host = naming.self_alias()

    def ask(host: Host) -> dict[str, Any]:
        if host.host == me_host:
            from agent_mesh.coord import locks as store

            return {"locks": store.held()}
        return host.request({"op": "coord", "action": "locks"}, timeout=READ_TIMEOUT)

    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    for host, answer in _each(_hosts(hosts), ask).items():
        got = answer.get("locks") if isinstance(answer, dict) else None
        if isinstance(got, list):
            rows.extend({**lk, "authority": host} for lk in got if isinstance(lk, dict))
            reports.append({"host": host, "ok": True})
        else:
            error = str(answer).removeprefix(f"{host}: ")
            reports.append({"host": host, "ok": False, "error": error})
    rows.sort(key=lambda r: (r["authority"], str(r.get("path", ""))))
    return {"locks": rows, "hosts": reports}


# --- task boards ------------------------------------------------------------------------


def board_of(spec: str | None = None) -> tuple[str, str]:
    """(name, host) of `NAME@HOST`, `NAME` (this host), or $AGENT_MESH_BOARD, else
    main@<this host>."""
    spec = spec or os.environ.get(BOARD_ENV, "").strip() or DEFAULT_BOARD
    name, at, host = spec.partition("@")
    host = host if at else naming.self_alias()
    clean_name(name, "board name")
    if host not in naming.mesh_aliases(strict=False):
        raise UsageError(f"board {printable(spec)[:60]!r}: {printable(host)[:40]} is not in "
                         "this mesh (~/.agents/peers.conf)")
    return name, host


def _board_call(spec: str | None, request: dict[str, Any],
                timeout: float = WRITE_TIMEOUT) -> dict[str, Any]:
    name, host = board_of(spec)
    return _call(host, f"the board {name}@{host}", {**request, "board": name}, timeout)


def _holder_name(task: dict[str, Any]) -> str:
    holder = task.get("holder") or {}
    return str(holder.get("who") or "?")


def task_add(title: str, board: str | None = None, role: str = "",
             notify: list[str] | None = None) -> dict[str, Any]:
    return _board_call(board, {"action": "add", "who": me(), "title": title, "role": role,
                               "notify": notify or []})


def task_claim(ident: str | None = None, board: str | None = None,
               role: str = "") -> dict[str, Any]:
    """Claim task ident (None: the next open one, of `role` or none). Exactly one claimer
    wins; the others get Held (exit 3) naming the winner."""
    asker = me()
    request: dict[str, Any] = {"action": "claim", "who": asker, "role": role}
    if ident is not None:
        request["id"] = board_store.task_id(ident)
    answer = _board_call(board, request)
    task, where_ = answer.get("task"), answer.get("board", "?")
    if not answer.get("won"):
        if not task:
            raise Held(f"nothing open on {where_}{' for role ' + role if role else ''} "
                       f"(agent-mesh tasks --board {where_} shows it)")
        if task.get("state") == board_store.DONE:
            raise Held(f"task {task.get('id')} on {where_} is done already "
                       f"(by {task.get('finished_by') or '?'})")
        raise Held(f"task {task.get('id')} on {where_} is claimed by {_holder_name(task)}")
    answer["notified"] = _notify(answer, "claimed", asker["who"])
    return answer


def task_done(ident: str, board: str | None = None, note: str = "") -> dict[str, Any]:
    asker = me()
    answer = _board_call(board, {"action": "done", "who": asker,
                                 "id": board_store.task_id(ident), "note": note})
    if not answer.get("ok"):
        task = answer.get("task") or {}
        raise Held(f"task {task.get('id')} on {answer.get('board')} is claimed by "
                   f"{_holder_name(task)}, not you")
    answer["notified"] = _notify(answer, "done", asker["who"])
    return answer


def task_drop(ident: str | None = None, board: str | None = None,
              stale: bool = False) -> dict[str, Any]:
    """Give a claimed task back; with stale, release every claim whose holder is gone."""
    if stale:
        return _board_call(board, {"action": "drop_stale", "who": me()})
    if ident is None:
        raise UsageError("task drop needs an ID, or --stale")
    answer = _board_call(board, {"action": "drop", "who": me(),
                                 "id": board_store.task_id(ident)})
    if not answer.get("ok"):
        task = answer.get("task") or {}
        state = task.get("state")
        whose = f"claimed by {_holder_name(task)}" if state == board_store.CLAIMED else state
        raise Held(f"task {task.get('id')} on {answer.get('board')} is {whose}, not "
                   "claimed by you")
    return answer


def tasks(board: str | None = None) -> dict[str, Any]:
    return _board_call(board, {"action": "show"}, READ_TIMEOUT)


def task_subscribe(addresses: list[str], board: str | None = None,
                   off: bool = False) -> dict[str, Any]:
    return _board_call(board, {"action": "subscribe", "who": me(), "addresses": addresses,
                               "off": off})


def _notify(answer: dict[str, Any], what: str, actor: str) -> list[dict[str, Any]]:
    """Message the board's subscribers (not the actor) through the normal delivery path,
    queued when one is busy; one outcome each. A failure here never undoes the claim."""
    got = answer.get("subscribers")
    # the authority may be a peer: only addresses, as many as a board keeps, never the actor
    subs = [s for s in (got if isinstance(got, list) else [])[:board_store.SUBSCRIBERS_MAX]
            if isinstance(s, str) and naming.is_valid_address(s) and s != actor]
    if not subs:
        return []
    from agent_mesh.mesh.send import send

    task = answer.get("task") or {}
    text = (f"[board {answer.get('board')}] task {task.get('id')} {what} by {actor}: "
            f"{task.get('title', '')}")
    if what == "done" and task.get("note"):
        text += f" (note: {task['note']})"

    outcomes: list[dict[str, Any]] = []
    for address in subs:  # a few, one after another: a board caps them (board.py)
        try:
            result = send(address, text, queue=True)
            outcomes.append({"address": address, "outcome": str(result.outcome)})
        except MeshError as exc:
            outcomes.append({"address": address, "outcome": "failed", "detail": str(exc)})
    return outcomes
