"""The rpc op `coord`: what a peer (or this host, in-process) asks of this host as the
authority for its logs, its paths' locks and its boards.

One op with an `action`, so mesh/handlers.py registers it with one line. A request that
changes a lock or a claim names its requester (`who`: the agent's address or its host,
its `host` and `pane`); the requester's host must be the host the request really came
from (mesh/origin.py: this process, or the SSH connection's address), and the agent one
of that host's: a peer speaks only for itself, as with slices.
"""

from __future__ import annotations

from typing import Any

from agent_mesh.errors import UsageError, bounded, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_mesh.delivery.mailbox import Origin


def requester(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    """The verified holder a request speaks for: {"who", "host", "pane"}."""
    from agent_mesh.coord.holders import belongs_to

    raw = request.get("who")
    if not isinstance(raw, dict):
        raise UsageError("the request does not say who asks")
    who, host, pane = (str(raw.get(k, "")) for k in ("who", "host", "pane"))
    why = origin.why_not_host(host)
    if why is not None:
        raise UsageError(f"refused: the request claims to come from {printable(host)[:40]} but "
                         f"{why}")
    if not who or not belongs_to(who, host) or len(who) > 200:
        raise UsageError(f"refused: {printable(who)[:60]!r} is not an agent of "
                         f"{printable(host)[:40]}")
    if pane and not (pane.startswith("%") and pane[1:].isdigit()):
        raise UsageError(f"bad pane id {printable(pane)[:20]!r}")
    return {"who": who, "host": host, "pane": pane}


# The largest numbers a peer's request may carry, clamped (errors.bounded refuses NaN,
# infinities, negatives and non-numbers): epoch seconds well past any real clock, a count
# of entries past any log's size, a ttl past locks.MAX_TTL so that acquire still says so.
_MAXIMA = {"since": 1e11, "limit": 1e9, "ttl": 1e9}


def _number(request: dict[str, Any], key: str, default: float) -> float:
    return bounded(request.get(key), key, default, _MAXIMA[key])


def _strings(value: object, what: str) -> list[str]:
    """A list of strings a peer sent (None or missing: empty); anything else, or a member
    that is no string (a list or an object is not even hashable), is a usage error."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"bad {what} {printable(repr(value))[:40]}: a list of addresses")
    return value


def handle(request: dict[str, Any], origin: Origin) -> dict[str, Any]:
    from agent_mesh.coord import board, bulletin, locks
    from agent_mesh.registry import naming

    action = request.get("action")
    if action == "read":
        tags = request.get("tags")
        return {"entries": bulletin.read(str(request.get("kind", "")),
                                         _number(request, "since", 0.0),
                                         tags if isinstance(tags, list) else None,
                                         int(_number(request, "limit", 0)))}
    if action == "locks":
        return {"locks": locks.held()}
    if action == "show":
        return board.show(str(request.get("board", "")))
    if action == "boards":
        return {"boards": board.boards()}
    who = requester(request, origin)
    if action == "lock":
        return locks.acquire(who, str(request.get("path", "")), str(request.get("intent", "")),
                             _number(request, "ttl", locks.DEFAULT_TTL))
    if action == "unlock":
        force = request.get("force") is True
        done = locks.release(who, str(request.get("path", "")), force)
        if done.get("forced"):
            lock = done["released"]
            bulletin.post(naming.self_alias(),
                          f"force-unlocked {lock['path']} held by {lock.get('who', '?')} "
                          f"({lock.get('intent') or 'no intent'}) at the request of {who['who']}",
                          ["lock"])
        return done
    name = str(request.get("board", ""))
    if action == "add":
        return board.add(name, who["who"], str(request.get("title", "")),
                         str(request.get("role", "")),
                         _strings(request.get("notify"), "notify") or None)
    if action == "claim":
        ident = request.get("id")
        return board.claim(name, who, ident, str(request.get("role", "")))
    if action == "done":
        return board.finish(name, who, request.get("id"), str(request.get("note", "")))
    if action == "drop":
        return board.drop(name, who, request.get("id"))
    if action == "drop_stale":
        return board.drop_stale(name)
    if action == "subscribe":
        return board.subscribe(name, _strings(request.get("addresses"), "addresses"),
                               request.get("off") is True)
    raise UsageError(f"unknown coord action {printable(str(action))[:40]!r}")
