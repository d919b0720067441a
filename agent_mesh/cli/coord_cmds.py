"""`agent-mesh post | bulletin | decide | decisions | lock | unlock | locks | task | tasks`:
coordinating without a broker. Rendering only; the work is in mesh/coord.py (reaching
each object's authority, merging) and agent_mesh/coord (the authority's files).

Registered on the click group of cli/main.py by `register`. click is imported only
inside it: `quick_bulletin`, which cli/entry.py calls for a plain `agent-mesh bulletin`,
skips it (a sixth of reading 10,000 entries), as `quick_status` does for status.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from agent_mesh import errors
from agent_mesh.errors import UsageError, printable, printable_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click

CONTEXT = {"help_option_names": ["-h", "--help"]}

EXIT_CODES = ("Exit codes: 0 done, 1 usage, 2 no such lock/task/board, 3 held by someone "
              "else (the line names them), 4 the authority host cannot be reached")


def _echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _json(doc: Any) -> None:
    _echo(printable_json(json.dumps(doc, indent=2, ensure_ascii=False)))


def _since(text: str | None) -> float:
    """`2h`, `90m`, `30s`, `1d` ago, or an ISO stamp (`2026-12-07T05:00:00Z`): epoch secs."""
    if not text:
        return 0.0
    from agent_mesh.clock import STAMP_FORMAT, is_stamp

    if is_stamp(text):
        import calendar

        return float(calendar.timegm(time.strptime(text, STAMP_FORMAT)))
    from agent_mesh.mesh.delegate import parse_duration

    return time.time() - parse_duration(text)


def _duration(text: str, what: str) -> float:
    from agent_mesh.mesh.delegate import parse_duration

    try:
        return parse_duration(text)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _stdin() -> str:
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("stdin is not valid UTF-8; refusing to guess what was meant") from None


def _stamp(seconds: object) -> str:
    value = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def _hosts_notes(reports: list[dict[str, Any]], what: str) -> list[str]:
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


def _entry_cells(entry: dict[str, Any]) -> list[str]:
    mark = "*" if entry.get("cached") else ""
    tags = " ".join(f"#{t}" for t in entry.get("tags") or [])
    text = str(entry.get("text", ""))
    return [_stamp(entry.get("time")) + mark, str(entry.get("who", "")),
            f"{text}  {tags}" if tags else text]


def render_bulletin(doc: dict[str, Any]) -> str:
    """The entries as a table (TIME, WHO, WHAT), every cell made printable: the same
    columns as group.table, written out directly since a bulletin may hold 10,000."""
    rows = [["TIME (UTC)", "WHO", "WHAT"], *(_entry_cells(e) for e in doc["entries"])]
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
                     _stamp(d.get("time")), str(d.get("who", "")),
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


def _bulletin(since: str | None, tags: list[str], hosts: list[str], follow: bool,
              as_json: bool, limit: int) -> None:
    from agent_mesh.mesh import coord

    start = _since(since)
    doc = coord.bulletin(start, tags, hosts or None, limit)
    if as_json and not follow:
        _json(doc)
        return
    seen = {(e.get("host"), e.get("id")) for e in doc["entries"]}
    if as_json:
        for entry in doc["entries"]:
            _echo(printable_json(json.dumps(entry, ensure_ascii=False)))
    elif doc["entries"]:
        _echo(render_bulletin(doc))
    else:
        asked = ", ".join(r["host"] for r in doc["hosts"])
        what = " matching" if since or tags else ""
        _echo(f"no{what} entries on {asked}: post what you did with "
              'agent-mesh post "text" --tag T')
    for line in _hosts_notes(doc["hosts"], "entries"):
        _echo(line, err=True)
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
                _echo(printable_json(json.dumps(entry, ensure_ascii=False)))
            else:
                _echo(render_bulletin({"entries": [entry]}).split("\n", 1)[1])


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
    try:
        _bulletin(options["--since"][0] if options["--since"] else None, options["--tag"],
                  options["--host"], False, as_json,
                  int(options["-n"][0]) if options["-n"] else 200)
    except (Exception, KeyboardInterrupt) as exc:  # the one renderer, as run_guarded
        line, code = errors.report(exc)
        _echo(f"agent-mesh bulletin: {line}", err=True)
        return code
    return 0


def register(group: click.Group) -> None:
    """Add the coordination commands to the agent-mesh group."""
    import click

    from agent_mesh.cli.group import run_guarded

    @group.command("post", context_settings=CONTEXT)
    @click.argument("text")
    @click.option("--tag", "tags", multiple=True, help="A label to filter by (repeatable).")
    def post_cmd(text: str, tags: tuple[str, ...]) -> None:
        """Add an entry to the bulletin: something you did (actions, not intentions:
        "merged #42 into main", not "will look at #42"). It is kept on this host with
        the time and your address; `agent-mesh bulletin` shows every host's. TEXT `-`
        reads it from stdin."""

        def body() -> None:
            from agent_mesh.mesh import coord

            entry = coord.post(_stdin() if text == "-" else text, list(tags))
            _echo(f"agent-mesh post: posted {entry['id']} as {printable(entry['who'])}")

        run_guarded("agent-mesh post", body)

    @group.command("bulletin", context_settings=CONTEXT)
    @click.option("--since", default=None, metavar="AGE|STAMP",
                  help="Only entries from this long ago (90m, 2h, 1d) or this UTC stamp.")
    @click.option("--tag", "tags", multiple=True, help="Only entries with this tag.")
    @click.option("--host", "hosts", multiple=True, help="Only this host's entries.")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new entries.")
    @click.option("--json", "as_json", is_flag=True,
                  help="Entries and hosts as JSON (one entry per line with --follow).")
    @click.option("-n", "--limit", default=200, show_default=True,
                  type=click.IntRange(1, 100000), help="How many of the latest entries.")
    def bulletin_cmd(since: str | None, tags: tuple[str, ...], hosts: tuple[str, ...],
                     follow: bool, as_json: bool, limit: int) -> None:
        """What happened, mesh-wide: every host's bulletin merged in time order. A host
        that does not answer is named, and the entries last seen from it are shown
        marked *."""

        def body() -> None:
            _bulletin(since, list(tags), list(hosts), follow, as_json, limit)

        try:
            run_guarded("agent-mesh bulletin", body)
        except SystemExit as exc:
            if exc.code != 130 or not follow:  # Ctrl-C ends a follow: not an error
                raise

    @group.command("decide", context_settings=CONTEXT)
    @click.argument("title")
    @click.option("--because", required=True, help="Why: what everyone should know.")
    @click.option("--supersedes", default="", metavar="ID",
                  help="The decision this one replaces (d3@host).")
    def decide_cmd(title: str, because: str, supersedes: str) -> None:
        """Record a decision that binds everyone, with an id (d<N>@<host>). It is kept on
        this host; `agent-mesh decisions` lists those in force on every host."""

        def body() -> None:
            from agent_mesh.mesh import coord

            record = coord.decide(title, because, supersedes)
            extra = f" (supersedes {record['supersedes']})" if record.get("supersedes") else ""
            _echo(f"agent-mesh decide: recorded {record['id']}{extra}")

        run_guarded("agent-mesh decide", body)

    @group.command("decisions", context_settings=CONTEXT)
    @click.option("--json", "as_json", is_flag=True, help="Decisions and hosts as JSON.")
    @click.option("--all", "show_all", is_flag=True, help="Superseded decisions too.")
    def decisions_cmd(as_json: bool, show_all: bool) -> None:
        """The decisions in force mesh-wide (each host's, not superseded), oldest first."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.decisions(include_superseded=show_all)
            if as_json:
                _json(doc)
                return
            _echo(render_decisions(doc))
            for line in _hosts_notes(doc["hosts"], "decisions"):
                _echo(line, err=True)

        run_guarded("agent-mesh decisions", body)

    @group.command("lock", context_settings=CONTEXT, epilog=EXIT_CODES + ", 6 --wait ran out.")
    @click.argument("path")
    @click.option("--host", default=None, help="The host the path lives on (or HOST:PATH).")
    @click.option("--intent", default="", help='What you are doing there, e.g. "refactor io".')
    @click.option("--ttl", default="2h", show_default=True,
                  help="It ends by itself after this long (30s, 10m, 2h).")
    @click.option("--wait", default=None, metavar="DURATION",
                  help="Wait this long for a held path (exit 6 if still held).")
    @click.option("--json", "as_json", is_flag=True, help="Print the lock as JSON.")
    def lock_cmd(path: str, host: str | None, intent: str, ttl: str, wait: str | None,
                 as_json: bool) -> None:
        """Say "I am changing PATH, keep off": an advisory lock on PATH and everything
        below it, held by the host the path lives on. It ends at --ttl, when your window
        closes, or with `agent-mesh unlock`. Taking it again renews it."""

        def body() -> None:
            from agent_mesh.mesh import coord

            got = coord.lock(path, host, intent, _duration(ttl, "--ttl"),
                             _duration(wait, "--wait") if wait else 0.0)
            if as_json:
                _json(got)
                return
            left = float(got["expires"]) - time.time()
            from agent_mesh.clock import duration

            _echo(printable(f"agent-mesh lock: {got['host']}:{got['path']} is yours for "
                                 f"{duration(left + 0.5)}"))

        run_guarded("agent-mesh lock", body)

    @group.command("unlock", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
    @click.argument("path")
    @click.option("--host", default=None, help="The host the path lives on (or HOST:PATH).")
    @click.option("--force", is_flag=True,
                  help="Release someone else's lock (logged on that host's bulletin).")
    def unlock_cmd(path: str, host: str | None, force: bool) -> None:
        """Release your lock on PATH (only its holder may, unless --force)."""

        def body() -> None:
            from agent_mesh.mesh import coord

            got = coord.unlock(path, host, force)
            whose = f" (held by {got.get('who')}; logged)" if got.get("forced") else ""
            _echo(printable(f"agent-mesh unlock: released {got['host']}:{got['path']}"
                                 f"{whose}"))

        run_guarded("agent-mesh unlock", body)

    @group.command("locks", context_settings=CONTEXT)
    @click.option("--json", "as_json", is_flag=True, help="Locks and hosts as JSON.")
    @click.option("--host", "hosts", multiple=True, help="Only the locks this host holds.")
    def locks_cmd(as_json: bool, hosts: tuple[str, ...]) -> None:
        """Every lock in force, mesh-wide: path, holder, intent, since, expiry."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.locks(list(hosts) or None)
            if as_json:
                _json(doc)
                return
            _echo(render_locks(doc))
            for line in _hosts_notes(doc["hosts"], "locks"):
                _echo(line, err=True)
            if any(not r["ok"] for r in doc["hosts"]):
                sys.exit(4)

        run_guarded("agent-mesh locks", body)

    board_help = "The board, NAME@HOST (default: $AGENT_MESH_BOARD, else main@this host)."

    @group.group("task", cls=type(group), context_settings=CONTEXT)
    def task_group() -> None:
        """A shared task board: add tasks, claim one (exactly one claimer wins), finish
        or drop it. A board lives on one host (NAME@HOST); `agent-mesh tasks` shows it."""

    @task_group.command("add", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
    @click.argument("title")
    @click.option("--board", default=None, help=board_help)
    @click.option("--role", default="", help="Who should take it (claim --next --role R).")
    @click.option("--notify", multiple=True, metavar="ADDRESS",
                  help="Subscribe ADDRESS to the board: it is messaged on each claim and done.")
    def task_add(title: str, board: str | None, role: str, notify: tuple[str, ...]) -> None:
        """Add a task to the board (the board is made on first use)."""

        def body() -> None:
            from agent_mesh.mesh import coord

            got = coord.task_add(title, board, role, list(notify))
            _echo(printable(f"agent-mesh task: added {got['task']['id']} on "
                                 f"{got['board']}"))

        run_guarded("agent-mesh task add", body)

    @task_group.command("claim", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
    @click.argument("task_id", required=False)
    @click.option("--next", "take_next", is_flag=True, help="The first open task.")
    @click.option("--role", default="", help="With --next: a task for this role (or none).")
    @click.option("--board", default=None, help=board_help)
    @click.option("--json", "as_json", is_flag=True, help="Print the claimed task as JSON.")
    def task_claim(task_id: str | None, take_next: bool, role: str, board: str | None,
                   as_json: bool) -> None:
        """Claim task ID (or --next). Of any number of claimers on any hosts exactly one
        wins; the others get exit 3 with the winner's address."""

        def body() -> None:
            from agent_mesh.mesh import coord

            if (task_id is None) == (not take_next):
                raise UsageError("give a task ID or --next (not both)")
            got = coord.task_claim(task_id, board, role)
            if as_json:
                _json(got)
                return
            task = got["task"]
            _echo(printable(f"agent-mesh task: claimed {task['id']} on {got['board']}: "
                                 f"{task.get('title', '')}"))
            _notified(got)

        run_guarded("agent-mesh task claim", body)

    @task_group.command("done", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
    @click.argument("task_id")
    @click.option("--note", default="", help="What came of it.")
    @click.option("--board", default=None, help=board_help)
    def task_done(task_id: str, note: str, board: str | None) -> None:
        """Mark task ID done (yours, or one nobody claimed)."""

        def body() -> None:
            from agent_mesh.mesh import coord

            got = coord.task_done(task_id, board, note)
            _echo(printable(f"agent-mesh task: {got['task']['id']} on {got['board']} "
                                 "is done"))
            _notified(got)

        run_guarded("agent-mesh task done", body)

    @task_group.command("drop", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
    @click.argument("task_id", required=False)
    @click.option("--stale", is_flag=True,
                  help="Release every claim whose holder's window is gone.")
    @click.option("--board", default=None, help=board_help)
    def task_drop(task_id: str | None, stale: bool, board: str | None) -> None:
        """Give your claim on task ID back (it is open again), or with --stale release
        the claims of holders whose window is gone."""

        def body() -> None:
            from agent_mesh.mesh import coord

            if (task_id is None) == (not stale):
                raise UsageError("give a task ID or --stale (not both)")
            got = coord.task_drop(task_id, board, stale)
            if stale:
                ids = ", ".join(str(t["id"]) for t in got["dropped"]) or "none"
                _echo(f"agent-mesh task: released stale claims on {got['board']}: {ids}")
            else:
                _echo(f"agent-mesh task: dropped {got['task']['id']} on {got['board']}; "
                           "it is open again")

        run_guarded("agent-mesh task drop", body)

    @task_group.command("notify", context_settings=CONTEXT)
    @click.argument("addresses", nargs=-1)
    @click.option("--off", is_flag=True, help="Unsubscribe them instead.")
    @click.option("--board", default=None, help=board_help)
    def task_notify(addresses: tuple[str, ...], off: bool, board: str | None) -> None:
        """Subscribe ADDRESSES (default: this pane's agent) to the board: each claim and
        done messages them through the normal delivery path (queued while they are busy)."""

        def body() -> None:
            from agent_mesh.mesh import coord

            wanted = list(addresses)
            if not wanted:
                who = coord.me()
                if not who["pane"]:
                    raise UsageError("not in a registered pane: name the ADDRESSES to notify")
                wanted = [who["who"]]
            got = coord.task_subscribe(wanted, board, off)
            subs = ", ".join(got["subscribers"]) or "nobody"
            _echo(printable(f"agent-mesh task: {got['board']} notifies {subs}"))

        run_guarded("agent-mesh task notify", body)

    @group.command("tasks", context_settings=CONTEXT)
    @click.option("--board", default=None, help=board_help)
    @click.option("--json", "as_json", is_flag=True, help="Print the board as JSON.")
    def tasks_cmd(board: str | None, as_json: bool) -> None:
        """The task board: each task's id, state, holder (marked gone when its window
        is), role and title."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.tasks(board)
            if as_json:
                _json(doc)
                return
            text, hint = render_tasks(doc)
            _echo(text)
            if hint:
                _echo(hint, err=True)

        run_guarded("agent-mesh tasks", body)


def _notified(got: dict[str, Any]) -> None:
    for row in got.get("notified") or []:
        detail = f": {row['detail']}" if row.get("detail") else ""
        _echo(printable(f"  notified {row['address']}: {row['outcome']}{detail}"))
