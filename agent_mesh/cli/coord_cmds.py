"""`agent-mesh post | bulletin | decide | decisions | lock | unlock | locks | task | tasks`:
coordinating without a broker. Rendering only; the work is in mesh/coord.py (reaching
each object's authority, merging) and agent_mesh/coord (the authority's files).

Registered on the click group of cli/main.py by `register`; what they print is
cli/coord_render.py's.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from agent_mesh.cli.coord_render import (
    echo,
    host_notes,
    print_json,
    read_stdin,
    render_decisions,
    render_locks,
    render_tasks,
    show_bulletin,
    span,
)
from agent_mesh.errors import UsageError, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click

CONTEXT = {"help_option_names": ["-h", "--help"]}

EXIT_CODES = ("Exit codes: 0 done, 1 usage, 2 no such lock/task/board, 3 held by someone "
              "else (the line names them), 4 the authority host cannot be reached")


def register(group: click.Group) -> None:
    """Add the coordination commands to the agent-mesh group."""
    import click

    from agent_mesh.cli.group import run_guarded

    @group.command("post", context_settings=CONTEXT,
                   epilog="Exit codes: 0 posted, 1 usage (empty, over the size cap, bad tag).")
    @click.argument("text")
    @click.option("--tag", "tags", multiple=True, help="A label to filter by (repeatable).")
    def post_cmd(text: str, tags: tuple[str, ...]) -> None:
        """Add an entry to the bulletin: something you did (actions, not intentions:
        "merged #42 into main", not "will look at #42"). It is kept on this host with
        the time and your address; `agent-mesh bulletin` shows every host's. TEXT `-`
        reads it from stdin."""

        def body() -> None:
            from agent_mesh.mesh import coord

            entry = coord.post(read_stdin() if text == "-" else text, list(tags))
            echo(f"agent-mesh post: posted {entry['id']} as {printable(entry['who'])}")

        run_guarded("agent-mesh post", body)

    @group.command("bulletin", context_settings=CONTEXT,
                   epilog="Exit codes: 0 (a host that did not answer is named on stderr), "
                   "1 usage.")
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
            show_bulletin(since, list(tags), list(hosts), follow, as_json, limit)

        try:
            run_guarded("agent-mesh bulletin", body)
        except SystemExit as exc:
            if exc.code != 130 or not follow:  # Ctrl-C ends a follow: not an error
                raise

    @group.command("decide", context_settings=CONTEXT,
                   epilog="Exit codes: 0 recorded, 1 usage (no such decision to supersede), "
                   "4 the superseded decision's host cannot be reached.")
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
            echo(f"agent-mesh decide: recorded {record['id']}{extra}")

        run_guarded("agent-mesh decide", body)

    @group.command("decisions", context_settings=CONTEXT,
                   epilog="Exit codes: 0 (a host that did not answer is named on stderr, its "
                   "decisions last seen here marked *), 1 usage.")
    @click.option("--json", "as_json", is_flag=True, help="Decisions and hosts as JSON.")
    @click.option("--all", "show_all", is_flag=True, help="Superseded decisions too.")
    def decisions_cmd(as_json: bool, show_all: bool) -> None:
        """The decisions in force mesh-wide (each host's, not superseded), oldest first."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.decisions(include_superseded=show_all)
            if as_json:
                print_json(doc)
                return
            echo(render_decisions(doc))
            for line in host_notes(doc["hosts"], "decisions"):
                echo(line, err=True)

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

            got = coord.lock(path, host, intent, span(ttl, "--ttl"),
                             span(wait, "--wait") if wait else 0.0)
            if as_json:
                print_json(got)
                return
            left = float(got["expires"]) - time.time()
            from agent_mesh.clock import duration

            echo(printable(f"agent-mesh lock: {got['host']}:{got['path']} is yours for "
                                 f"{duration(left)}"))

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
            echo(printable(f"agent-mesh unlock: released {got['host']}:{got['path']}"
                                 f"{whose}"))

        run_guarded("agent-mesh unlock", body)

    @group.command("locks", context_settings=CONTEXT,
                   epilog="Exit codes: 0, 1 usage, 4 a host did not answer (named on stderr).")
    @click.option("--json", "as_json", is_flag=True, help="Locks and hosts as JSON.")
    @click.option("--host", "hosts", multiple=True, help="Only the locks this host holds.")
    def locks_cmd(as_json: bool, hosts: tuple[str, ...]) -> None:
        """Every lock in force, mesh-wide: path, holder, intent, since, expiry."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.locks(list(hosts) or None)
            if as_json:
                print_json(doc)
                return
            echo(render_locks(doc))
            for line in host_notes(doc["hosts"], "locks"):
                echo(line, err=True)
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
            echo(printable(f"agent-mesh task: added {got['task']['id']} on "
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
                print_json(got)
                return
            task = got["task"]
            echo(printable(f"agent-mesh task: claimed {task['id']} on {got['board']}: "
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
            echo(printable(f"agent-mesh task: {got['task']['id']} on {got['board']} "
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
                echo(f"agent-mesh task: released stale claims on {got['board']}: {ids}")
            else:
                echo(f"agent-mesh task: dropped {got['task']['id']} on {got['board']}; "
                           "it is open again")

        run_guarded("agent-mesh task drop", body)

    @task_group.command("notify", context_settings=CONTEXT, epilog=EXIT_CODES + ".")
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
            echo(printable(f"agent-mesh task: {got['board']} notifies {subs}"))

        run_guarded("agent-mesh task notify", body)

    @group.command("tasks", context_settings=CONTEXT,
                   epilog="Exit codes: 0, 1 usage, 4 the board's host cannot be reached.")
    @click.option("--board", default=None, help=board_help)
    @click.option("--json", "as_json", is_flag=True, help="Print the board as JSON.")
    def tasks_cmd(board: str | None, as_json: bool) -> None:
        """The task board: each task's id, state, holder (marked gone when its window
        is), role and title."""

        def body() -> None:
            from agent_mesh.mesh import coord

            doc = coord.tasks(board)
            if as_json:
                print_json(doc)
                return
            text, hint = render_tasks(doc)
            echo(text)
            if hint:
                echo(hint, err=True)

        run_guarded("agent-mesh tasks", body)


def _notified(got: dict[str, Any]) -> None:
    for row in got.get("notified") or []:
        detail = f": {row['detail']}" if row.get("detail") else ""
        echo(printable(f"  notified {row['address']}: {row['outcome']}{detail}"))
