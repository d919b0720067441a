"""This host's bulletin and decisions: two append-only logs that only this host writes.

A bulletin entry is something that happened (time, host, the posting agent's address,
text, tags): actions, not intentions. A decision binds everyone: a title, why, and
optionally the id of the decision it supersedes (which may be another host's). A read of
the whole mesh merges every host's logs (mesh/coord.py); each host answers for its own.
"""

from __future__ import annotations

import os
from typing import Any

from agent_mesh.coord.files import (
    append,
    clean_tags,
    clean_text,
    coord_file,
    load,
    lock_for,
    now,
    read_log,
    save,
)
from agent_mesh.errors import UsageError, printable
from agent_mesh.registry import naming

READ_MAX = 100_000


def bulletin_path() -> str:
    return coord_file("bulletin.jsonl")


def decisions_path() -> str:
    return coord_file("decisions.jsonl")


def post(who: str, text: str, tags: list[str] | None = None) -> dict[str, Any]:
    """Append one entry to this host's bulletin; the entry as kept."""
    entry: dict[str, Any] = {"id": os.urandom(4).hex(), "time": now(),
                             "host": naming.self_alias(), "who": who,
                             "text": clean_text(text, "the entry")}
    tags = clean_tags(tags)
    if tags:
        entry["tags"] = tags
    append(bulletin_path(), entry)
    return entry


def check_decision_id(value: object) -> str:
    """`d<N>@<host>`, as decide gives them."""
    text = str(value)
    head, _, host = text.partition("@")
    if not (head[:1] == "d" and head[1:].isdigit() and naming.valid_alias(host)):
        raise UsageError(f"bad decision id {printable(text)[:60]!r}: ids look like d3@host "
                         "(agent-mesh decisions lists them)")
    return text


def decide(who: str, title: str, because: str, supersedes: str = "") -> dict[str, Any]:
    """Record one decision in this host's log, with the next id `d<N>@<this host>`."""
    me = naming.self_alias()
    record: dict[str, Any] = {"time": now(), "host": me, "who": who,
                              "title": clean_text(title, "the title"),
                              "because": clean_text(because, "--because")}
    if supersedes:
        record["supersedes"] = check_decision_id(supersedes)
    seq = coord_file("decisions.seq")
    with lock_for(decisions_path()):
        n = int(load(seq).get("next", 1) or 1)
        record = {"id": f"d{n}@{me}", **record}
        append(decisions_path(), record, rotate=False)
        save(seq, {"next": n + 1})
    return record


def read(kind: str, since: float = 0.0, tags: list[str] | None = None,
         limit: int = 0) -> list[dict[str, Any]]:
    """This host's entries of `kind` (bulletin or decisions) from `since` (epoch seconds),
    with any of `tags` if given; the last `limit` if > 0."""
    if kind == "bulletin":
        path = bulletin_path()
    elif kind == "decisions":
        path = decisions_path()
    else:
        raise UsageError(f"unknown log {printable(kind)[:40]!r}")
    wanted = set(clean_tags(tags)) if tags else set()
    records = read_log(path)
    if since or wanted:
        records = [r for r in records if _time(r) >= since
                   and (not wanted or wanted & set(r.get("tags") or ()))]
    if limit > 0:
        records = records[-limit:]
    return records


def _time(record: dict[str, Any]) -> float:
    value = record.get("time")
    return float(value) if isinstance(value, (int, float)) else 0.0

