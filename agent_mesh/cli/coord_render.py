"""What the coordination commands print: tables, empty states that say what to do, and
the notes about hosts that did not answer; plus `quick_bulletin`, the plain `agent-mesh
bulletin` without click (cli/entry.py calls it: click is a sixth of reading 10,000
entries), as `quick_status` is for status.

No click here: cli/coord_cmds.py holds the click commands, and an `agent-mesh mcp` tool
renders the same data (mesh/coord.py's functions) with the same functions.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from agent_mesh.errors import UsageError, printable, printable_json


def echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def print_json(doc: Any) -> None:
    echo(printable_json(json.dumps(doc, indent=2, ensure_ascii=False)))


def since_epoch(text: str | None) -> float:
    """`2h`, `90m`, `30s`, `1d` ago, or an ISO stamp (`2026-12-07T05:00:00Z`): epoch secs."""
    if not text:
        return 0.0
    from agent_mesh.clock import is_stamp, parse_stamp

    if is_stamp(text):
        then = parse_stamp(text)
        if then is not None:
            return then
    from agent_mesh.mesh.delegate import parse_duration

    return time.time() - parse_duration(text)


def span(text: str, what: str) -> float:
    """A duration option (`--ttl 2h`) in seconds; a bad one names the option."""
    from agent_mesh.mesh.delegate import parse_duration

    try:
        return parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from None


def read_stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("stdin is not valid UTF-8; refusing to guess what was meant") from None


def stamp(seconds: object) -> str:
    value = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def host_notes(reports: list[dict[str, Any]], what: str) -> list[str]:
    lines = []
    for report in reports:
        host = report["host"]
        if not report.get("ok"):
            cached = report.get("cached")
            shown = (f"; its last {cached} {what} seen here are shown, marked *" if cached
                     else "")
            lines.append(f"{host}: unreachable ({report.get('error', '')}){shown}")
        if report.get("dropped"):
            lines.append(f"{host}: dropped {report['dropped']} {what} that are not its own")
    return [printable(x)[:300] for x in lines]


def entry_cells(entry: dict[str, Any]) -> list[str]:
    mark = "*" if entry.get("cached") else ""
    tags = " ".join(f"#{t}" for t in entry.get("tags") or [])
    text = str(entry.get("text", ""))
    return [stamp(entry.get("time")) + mark, str(entry.get("who", "")),
            f"{text}  {tags}" if tags else text]


def render_bulletin(doc: dict[str, Any]) -> str:
    """The entries as a table (TIME, WHO, WHAT), every cell made printable: the same
    columns as group.table, written out directly since a bulletin may hold 10,000."""
    rows = [["TIME (UTC)", "WHO", "WHAT"], *(entry_cells(e) for e in doc["entries"])]
    if len(rows) == 1:
        return ""
    cells = [[c if c.isprintable() else printable(c) for c in row] for row in rows]
    first = max(len(r[0]) for r in cells)
    second = max(len(r[1]) for r in cells)
    return "\n".join(f"{a.ljust(first)}  {b.ljust(second)}  {c}" for a, b, c in cells)


def render_decisions(doc: dict[str, Any]) -> str:
    """Decisions as a table, or the empty state that says how to record one."""
    from agent_mesh.cli.group import table

    if not doc["entries"]:
        return 'no decisions in force: record one with agent-mesh decide "title" --because "why"'
    rows = [["ID", "WHEN (UTC)", "WHO", "DECISION"]]
    for d in doc["entries"]:
        note = " (superseded)" if d.get("superseded") else ""
        rep = f" [replaces {d['supersedes']}]" if d.get("supersedes") else ""
        rows.append([str(d.get("id")) + ("*" if d.get("cached") else ""),
                     stamp(d.get("time")), str(d.get("who", "")),
                     f"{d.get('title')}{note}{rep}: because {d.get('because')}"])
    return table(rows)


def render_locks(doc: dict[str, Any]) -> str:
    """Locks as a table, or the empty state that says how to take one."""
    from agent_mesh.cli.group import table
    from agent_mesh.clock import duration

    if not doc["locks"]:
        asked = ", ".join(r["host"] for r in doc["hosts"] if r["ok"]) or "no host"
        return f'no locks held on {asked}: agent-mesh lock PATH --intent "..." takes one'
    now = time.time()
    rows = [["PATH", "HOLDER", "SINCE", "EXPIRES", "INTENT"]]
    for lk in doc["locks"]:
        rows.append([f"{lk['authority']}:{lk.get('path')}", str(lk.get("who")),
                     duration(now - float(lk.get("since", now))) + " ago",
                     "in " + duration(float(lk.get("expires", now)) - now),
                     str(lk.get("intent") or "")])
    return table(rows)


def render_tasks(doc: dict[str, Any]) -> tuple[str, str]:
    """(the board as a table or its empty state, a hint about gone holders or '')."""
    from agent_mesh.cli.group import table
    from agent_mesh.clock import duration

    where = doc.get("board", "?")
    if not doc.get("tasks"):
        made = "has no tasks yet" if doc.get("exists") else "does not exist yet"
        host = str(where).partition("@")[2]
        others = ", ".join(f"{b}@{host}" for b in doc.get("others") or [])
        return printable(f'board {where} {made}: agent-mesh task add "title" --board {where} '
                         "adds one; agents take them with agent-mesh task claim --next"
                         + (f" (boards there: {others})" if others else "")), ""
    now = time.time()
    rows = [["ID", "STATE", "HOLDER", "ROLE", "TITLE"]]
    for t in doc["tasks"]:
        holder = ""
        if t.get("state") == "claimed":
            h = t.get("holder") or {}
            holder = f"{h.get('who')} ({duration(now - float(h.get('since', now)))})"
            if t.get("holder_state") == "gone":
                holder += " gone"
        elif t.get("state") == "done":
            holder = str(t.get("finished_by") or "")
        title = str(t.get("title", ""))
        if t.get("note"):
            title += f" — {t['note']}"
        rows.append([str(t.get("id")), str(t.get("state")), holder, str(t.get("role") or ""),
                     title])
    hint = ""
    if any(t.get("holder_state") == "gone" for t in doc["tasks"]):
        hint = printable(f"claims marked gone: their window closed; agent-mesh task drop "
                         f"--stale --board {where} opens them again")
    return table(rows), hint


def show_bulletin(since: str | None, tags: list[str], hosts: list[str], follow: bool,
              as_json: bool, limit: int) -> None:
    from agent_mesh.mesh import coord

    start = since_epoch(since)
    doc = coord.bulletin(start, tags, hosts or None, limit)
    if as_json and not follow:
        print_json(doc)
        return
    seen = {(e.get("host"), e.get("id")) for e in doc["entries"]}
    if as_json:
        for entry in doc["entries"]:
            echo(printable_json(json.dumps(entry, ensure_ascii=False)))
    elif doc["entries"]:
        echo(render_bulletin(doc))
    else:
        asked = ", ".join(r["host"] for r in doc["hosts"])
        what = " matching" if since or tags else ""
        echo(f"no{what} entries on {asked}: post what you did with "
              'agent-mesh post "text" --tag T')
    for line in host_notes(doc["hosts"], "entries"):
        echo(line, err=True)
    if not follow:
        return
    last = max([float(e.get("time", 0)) for e in doc["entries"]] + [start])
    while True:
        time.sleep(1.0)
        new = [e for e in coord.bulletin(last - 5, tags, hosts or None)["entries"]
               if (e.get("host"), e.get("id")) not in seen and not e.get("cached")]
        for entry in new:
            seen.add((entry.get("host"), entry.get("id")))
            last = max(last, float(entry.get("time", 0)))
            if as_json:
                echo(printable_json(json.dumps(entry, ensure_ascii=False)))
            else:
                echo(render_bulletin({"entries": [entry]}).split("\n", 1)[1])


def quick_bulletin(argv: list[str]) -> int | None:
    """`bulletin [--json] [-n N] [--since X] [--tag T] [--host H]` without click; None:
    let click handle argv (help, --follow, anything else)."""
    options: dict[str, list[str]] = {"--since": [], "--tag": [], "--host": [], "-n": []}
    as_json = False
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word == "--json":
            as_json = True
        elif word in options and rest and not rest[0].startswith("-"):
            options[word].append(rest.pop(0))
        else:
            return None
    if len(options["--since"]) > 1 or len(options["-n"]) > 1 or not all(
            n.isdigit() and 1 <= int(n) <= 100000 for n in options["-n"]):
        return None
    from agent_mesh.cli.guard import guarded

    return guarded("agent-mesh bulletin", lambda: show_bulletin(
        options["--since"][0] if options["--since"] else None, options["--tag"],
        options["--host"], False, as_json, int(options["-n"][0]) if options["-n"] else 200))
