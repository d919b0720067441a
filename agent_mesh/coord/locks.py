"""Advisory locks on this host's paths: this host is their only authority.

One table, ~/.agents/coord/locks.json, changed only under its flock, so of any number
of requesters (local or over rpc) exactly one gets a free path. A lock covers its path
and everything below it, so `/repo` and `/repo/src` conflict both ways. A lock ends at
its expiry, or when its holder's window closes (holders.py): every look at the table
drops those first, and the tmux hook and the timer sweep it (`sweep`).
"""

from __future__ import annotations

from typing import Any

from agent_mesh.coord import files
from agent_mesh.coord.files import clean_path, clean_text, coord_file, covers, load, lock_for
from agent_mesh.coord.holders import GONE, Liveness
from agent_mesh.errors import NoMatch, UsageError, printable
from agent_mesh.limits import config_path, limit

DEFAULT_TTL = 2 * 3600.0
MAX_TTL = 7 * 86400.0


def locks_path() -> str:
    return coord_file("locks.json")


def same_holder(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("who") == b.get("who") and a.get("host") == b.get("host")


def _prune(locks: list[dict[str, Any]], now: float,
           alive: Liveness) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, ended): a lock ends at its expiry or once its holder's window is gone."""
    kept, ended = [], []
    for lock in locks:
        if not isinstance(lock, dict):
            continue
        if float(lock.get("expires", 0) or 0) <= now:
            ended.append({**lock, "ended": "expired"})
        elif alive.state(lock) == GONE:
            ended.append({**lock, "ended": "holder's window closed"})
        else:
            kept.append(lock)
    return kept, ended


def _table() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    raw = load(locks_path()).get("locks")
    return _prune(raw if isinstance(raw, list) else [], files.now(), Liveness())


def acquire(holder: dict[str, Any], path: str, intent: str = "",
            ttl: float = DEFAULT_TTL) -> dict[str, Any]:
    """Take the lock on path for holder (`who`, `host`, `pane`). {"acquired": True, "lock"}
    or, when another holder's lock covers it or lies below it, {"acquired": False, "lock":
    theirs}. The same holder asking again renews its lock (intent, expiry)."""
    path = clean_path(path)
    intent = clean_text(intent, "--intent", required=False)
    if not 0 < ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be more than 0 and at most {MAX_TTL / 86400:g} days")
    with lock_for(locks_path()):
        locks, ended = _table()
        now = files.now()
        for lock in locks:
            if not same_holder(lock, holder) and (covers(lock["path"], path)
                                                  or covers(path, lock["path"])):
                if ended:
                    _save(locks)
                return {"acquired": False, "lock": lock}
        mine = next((lk for lk in locks if lk.get("path") == path
                     and same_holder(lk, holder)), None)
        if mine is None:
            if len(locks) >= limit("coord_locks"):
                raise UsageError(f"{len(locks)} locks held on this host already "
                                 f"(limits.coord_locks in {config_path()})")
            mine = {"path": path, "who": holder.get("who", ""), "host": holder.get("host", ""),
                    "pane": holder.get("pane", ""), "since": now}
            locks.append(mine)
        mine.update(intent=intent, expires=round(now + ttl, 3))
        _save(locks)
        return {"acquired": True, "lock": mine}


def release(holder: dict[str, Any], path: str, force: bool = False) -> dict[str, Any]:
    """Release the lock on exactly path. {"released": lock}, or {"released": None, "lock":
    theirs} when another holder has it and not `force`; NoMatch (exit 2) when none."""
    path = clean_path(path)
    with lock_for(locks_path()):
        locks, _ended = _table()
        lock = next((lk for lk in locks if lk.get("path") == path), None)
        if lock is None:
            _save(locks)
            raise NoMatch(f"no lock on {printable(path)} (agent-mesh locks lists them)")
        if not same_holder(lock, holder) and not force:
            return {"released": None, "lock": lock}
        locks.remove(lock)
        _save(locks)
    return {"released": lock, "forced": not same_holder(lock, holder)}


def held() -> list[dict[str, Any]]:
    """The locks in force on this host, ended ones dropped (and the table saved so)."""
    with lock_for(locks_path()):
        locks, ended = _table()
        if ended:
            _save(locks)
    return locks


def sweep() -> list[dict[str, Any]]:
    """Drop expired locks and those whose holder's window closed (the tmux hook, the
    timer); the ended locks. Nothing to do, and nothing read, without a table."""
    try:
        with open(locks_path(), "rb") as fh:
            if len(fh.read(64)) < 16:
                return []
    except OSError:
        return []
    with lock_for(locks_path()):
        locks, ended = _table()
        if ended:
            _save(locks)
    return ended


def _save(locks: list[dict[str, Any]]) -> None:
    files.save(locks_path(), {"locks": locks})
