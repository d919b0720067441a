"""Task boards that live on this host (`NAME@<this host>`): this host is their authority.

A board is one JSON table, ~/.agents/coord/boards/NAME.json, changed only under its
flock: a claim reads the task, finds it open and marks it claimed in one critical
section, so of any number of claimers on any hosts (each request ends up here) exactly
one wins; the others are told who did. A claim whose holder's window is gone stays
(shown as gone) until `task drop --stale` releases it: work may be half done.
"""

from __future__ import annotations

import os
from typing import Any

from agent_mesh.coord.files import (
    clean_name,
    clean_text,
    coord_file,
    load,
    lock_for,
    now,
    save,
)
from agent_mesh.coord.holders import GONE, Liveness
from agent_mesh.errors import NoMatch, UsageError, printable
from agent_mesh.limits import config_path, limit
from agent_mesh.registry import naming

OPEN, CLAIMED, DONE = "open", "claimed", "done"
SUBSCRIBERS_MAX = 64


def board_path(name: str) -> str:
    return os.path.join(coord_file("boards"), f"{clean_name(name, 'board name')}.json")


def boards() -> list[str]:
    """The names of the boards on this host."""
    try:
        names = os.listdir(coord_file("boards"))
    except OSError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))


def task_id(value: object) -> int:
    text = str(value).lstrip("#")
    if not text.isdigit() or len(text) > 9:
        raise UsageError(f"bad task id {printable(str(value))[:40]!r}: ids are numbers "
                         "(agent-mesh tasks lists them)")
    return int(text)


class _Board:
    """One board, read and written under its flock (`with _Board(name) as b:`)."""

    def __init__(self, name: str, create: bool = False) -> None:
        self.name = clean_name(name, "board name")
        self.path = board_path(self.name)
        self.create = create
        self.lock = lock_for(self.path)
        self.doc: dict[str, Any] = {}

    def __enter__(self) -> _Board:
        self.lock.__enter__()
        try:
            self.doc = load(self.path)
            if not self.doc:
                if not self.create:
                    raise NoMatch(f"no board {self.where()} yet: agent-mesh task add \"title\" "
                                  f"--board {self.where()} makes it")
                if len(boards()) >= limit("coord_boards"):
                    raise UsageError(f"{len(boards())} boards on this host already "
                                     f"(limits.coord_boards in {config_path()})")
                self.doc = {"name": self.name, "next": 1, "tasks": [], "subscribers": []}
        except BaseException:
            self.lock.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__()

    def where(self) -> str:
        return f"{self.name}@{naming.self_alias()}"

    def tasks(self) -> list[dict[str, Any]]:
        tasks = self.doc.get("tasks")
        return [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []

    def task(self, ident: object) -> dict[str, Any]:
        n = task_id(ident)
        for task in self.tasks():
            if task.get("id") == n:
                return task
        raise NoMatch(f"no task {n} on {self.where()} (agent-mesh tasks --board "
                      f"{self.where()} lists them)")

    def subscribers(self) -> list[str]:
        subs = self.doc.get("subscribers")
        return [s for s in subs if isinstance(s, str)] if isinstance(subs, list) else []

    def save(self) -> None:
        save(self.path, self.doc)


def _holder(holder: dict[str, Any]) -> dict[str, Any]:
    return {"who": str(holder.get("who", "")), "host": str(holder.get("host", "")),
            "pane": str(holder.get("pane", "")), "since": now()}


def _mine(task: dict[str, Any], holder: dict[str, Any]) -> bool:
    theirs = task.get("holder") or {}
    return theirs.get("who") == holder.get("who") and theirs.get("host") == holder.get("host")


def add(name: str, who: str, title: str, role: str = "",
        notify: list[str] | None = None) -> dict[str, Any]:
    """Add a task (the board is made on first use); notify: addresses to subscribe."""
    title = clean_text(title, "the title")
    role = clean_text(role, "--role", required=False)[:80]
    with _Board(name, create=True) as board:
        tasks = board.tasks()
        if len(tasks) >= limit("coord_tasks"):
            raise UsageError(f"{board.where()} has {len(tasks)} tasks already "
                             f"(limits.coord_tasks in {config_path()})")
        n = int(board.doc.get("next", 1) or 1)
        task: dict[str, Any] = {"id": n, "title": title, "state": OPEN, "added": now(),
                                "by": who}
        if role:
            task["role"] = role
        board.doc["tasks"] = [*tasks, task]
        board.doc["next"] = n + 1
        if notify:
            _subscribe(board, notify)
        board.save()
        return {"task": task, "board": board.where()}


def claim(name: str, holder: dict[str, Any], ident: object | None = None,
          role: str = "") -> dict[str, Any]:
    """Claim task `ident`, or the first open one (with `role`: of that role or none).
    {"won": True, "task", "subscribers"}; {"won": False, "task": theirs} when it is taken;
    {"won": False, "task": None} when nothing is open."""
    with _Board(name) as board:
        if ident is not None:
            task = board.task(ident)
        else:
            found = [t for t in board.tasks() if t.get("state") == OPEN
                     and (not role or t.get("role", "") in ("", role))]
            if not found:
                return {"won": False, "task": None, "board": board.where()}
            task = found[0]
        if task.get("state") == CLAIMED and _mine(task, holder):
            return {"won": True, "task": task, "again": True, "board": board.where(),
                    "subscribers": []}
        if task.get("state") != OPEN:
            return {"won": False, "task": task, "board": board.where()}
        task.update(state=CLAIMED, holder=_holder(holder))
        board.save()
        return {"won": True, "task": task, "board": board.where(),
                "subscribers": board.subscribers()}


def finish(name: str, holder: dict[str, Any], ident: object, note: str = "") -> dict[str, Any]:
    """Mark a task done: the holder's claim, or an unclaimed task. {"ok": False, "task"}
    when another holder has it."""
    note = clean_text(note, "--note", required=False)
    with _Board(name) as board:
        task = board.task(ident)
        if task.get("state") == CLAIMED and not _mine(task, holder):
            return {"ok": False, "task": task, "board": board.where()}
        if task.get("state") == DONE:
            return {"ok": True, "task": task, "again": True, "board": board.where(),
                    "subscribers": []}
        task.update(state=DONE, done=now(), finished_by=holder.get("who", ""))
        if note:
            task["note"] = note
        board.save()
        return {"ok": True, "task": task, "board": board.where(),
                "subscribers": board.subscribers()}


def drop(name: str, holder: dict[str, Any], ident: object) -> dict[str, Any]:
    """Give a claimed task back (open again). {"ok": False, "task"} when it is not ours."""
    with _Board(name) as board:
        task = board.task(ident)
        if task.get("state") != CLAIMED or not _mine(task, holder):
            return {"ok": False, "task": task, "board": board.where()}
        task["state"] = OPEN
        task.pop("holder", None)
        board.save()
        return {"ok": True, "task": task, "board": board.where()}


def drop_stale(name: str) -> dict[str, Any]:
    """Open again every task whose holder's window is gone; those tasks."""
    alive = Liveness()
    with _Board(name) as board:
        dropped = []
        for task in board.tasks():
            if task.get("state") == CLAIMED and alive.state(task.get("holder") or {}) == GONE:
                dropped.append({**task})
                task["state"] = OPEN
                task.pop("holder", None)
        if dropped:
            board.save()
        return {"dropped": dropped, "board": board.where()}


def show(name: str) -> dict[str, Any]:
    """The board's tasks, each claim's holder marked `gone` when its window is; a board
    not made yet is empty (`exists` False)."""
    alive = Liveness()
    try:
        with _Board(name) as board:
            tasks = board.tasks()
            subscribers = board.subscribers()
            where = board.where()
    except NoMatch:
        return {"board": f"{clean_name(name, 'board name')}@{naming.self_alias()}",
                "exists": False, "tasks": [], "subscribers": [], "others": boards()}
    for task in tasks:
        if task.get("state") == CLAIMED:
            task["holder_state"] = alive.state(task.get("holder") or {})
    return {"board": where, "exists": True, "tasks": tasks, "subscribers": subscribers}


def subscribe(name: str, addresses: list[str], off: bool = False) -> dict[str, Any]:
    """Add (or with off, remove) subscribers: they are messaged on every claim and done."""
    with _Board(name, create=not off) as board:
        if off:
            gone = set(addresses)
            board.doc["subscribers"] = [s for s in board.subscribers() if s not in gone]
        else:
            _subscribe(board, addresses)
        board.save()
        return {"board": board.where(), "subscribers": board.subscribers()}


def _subscribe(board: _Board, addresses: list[str]) -> None:
    subs = board.subscribers()
    for address in addresses:
        if not isinstance(address, str) or not naming.is_valid_address(address):
            raise UsageError(f"bad address {printable(str(address))[:60]!r} for --notify")
        if address not in subs:
            subs.append(address)
    if len(subs) > SUBSCRIBERS_MAX:
        raise UsageError(f"at most {SUBSCRIBERS_MAX} subscribers on a board")
    board.doc["subscribers"] = subs
