"""`agent-mesh mcp`'s coordination tools: issue 17's commands (bulletin, decisions,
advisory locks, task boards) as tools, beside the messaging tools of cli/mcp_server.py.

Each tool calls the function its command calls (mesh/coord.py) and renders the outcome
with cli/coord_render.py's tables; the empty states and hints name tools, not commands.
The holder or poster is always coord.me(): this server's pane, never a name from the
client. A held lock or task (exit 3), a `wait` that ran out (exit 6) and an authority
that cannot be reached (exit 4) come back as tool errors with the core's one line.

- No tool forces: `unlock(force=true)` is refused unless the user opted agents in to
  overriding refusals (`override_refusals` under `[mcp]`, as for send).
- `lock(wait)` waits at most MAX_WAIT seconds, as wait_reply does, and lets the
  session's other calls run between its tries.

`add_tools` is called by mcp_server.build_server with the SDK loaded; the text bodies
need no SDK. No `from __future__ import annotations`: the SDK reads the annotations.
"""

from collections.abc import Callable
from typing import Annotated, Any

from agent_mesh.cli.mcp_tools import CONFIG_TABLE, MAX_WAIT, OVERRIDE_KEY, override_refusals
from agent_mesh.errors import Held, UsageError

LIMIT = 50  # bulletin entries a call returns by default (a model reads every one)
MAX_LIMIT = 1000
OPT_IN = (f"agents cannot force it unless the user sets {OVERRIDE_KEY} = true under "
          f"[{CONFIG_TABLE}] in ~/.agents/config.toml")

TOOL_DOCS = {
    "post": "Add an entry to the mesh's bulletin: something you DID (\"merged #42 into "
            "main\", \"fixed the CSV parser, PR 7\"), not something you intend. It is kept "
            "on this host with the time and your address; every agent reads it with "
            "bulletin. Optional tags to filter by.",
    "bulletin": "What happened, mesh-wide: every host's bulletin entries merged in time "
                "order (time, who, what). Read it when you start or come back to work. A "
                "host that does not answer is named, and its entries last seen are shown "
                "marked *.",
    "decide": "Record a decision that binds every agent (title and why), with an id "
              "d<N>@<host>; supersedes replaces an earlier one. Everyone sees it with "
              "decisions.",
    "decisions": "The decisions in force mesh-wide (not superseded), oldest first: id, "
                 "when, who, the decision and why. Check them before changing direction.",
    "lock": "Say \"I am changing this path, keep off\": an advisory lock on a path and "
            "everything below it, held by the host the path lives on. Take it before you "
            "edit shared files; unlock when done (it also ends at its ttl or when your "
            "window closes; taking it again renews it). Held by someone else: an error "
            "naming the holder, their intent and when it expires; wait (at most 50 s) "
            "retries until then.",
    "unlock": "Release your lock on a path. Only its holder may; force (releasing someone "
              "else's, logged on the bulletin) only works where the user allowed agents to "
              "override refusals.",
    "locks": "Every lock in force, mesh-wide: path (HOST:PATH), holder, since, expiry, "
             "intent. Check before editing files others may be changing.",
    "task_add": "Add a task to a shared task board (made on first use). A board lives on "
                "one host: NAME@HOST, default main on this host. role says who should take "
                "it; notify subscribes addresses to the board's claim and done messages.",
    "task_claim": "Claim a task from a board: by id, or next=true for the first open one "
                  "(of role, or for anyone). Exactly one claimer wins, mesh-wide; if someone "
                  "else has it you get an error naming them: take another.",
    "task_done": "Mark a task you claimed done, with an optional note of what came of it "
                 "(post it on the bulletin too).",
    "task_drop": "Give your claim on a task back (it is open again), or stale=true to "
                 "release the claims of holders whose window is gone.",
    "tasks": "A task board: each task's id, state (open, claimed, done), holder (marked "
             "gone when their window closed), role and title. Find work here.",
}


def _words(text: str) -> list[str]:
    """Tags, hosts, addresses given as one string: separated by commas or spaces."""
    return text.replace(",", " ").split()


def _notes(reports: list[dict[str, Any]], what: str) -> str:
    from agent_mesh.cli.coord_render import host_notes

    return "".join(f"\n{line}" for line in host_notes(reports, what))


def _notified(got: dict[str, Any]) -> str:
    return "".join(f"\nnotified {r['address']}: {r['outcome']}"
                   + (f": {r['detail']}" if r.get("detail") else "")
                   for r in got.get("notified") or [])


# --- bulletin and decisions ---------------------------------------------------------------


def post_text(text: str, tag: str) -> str:
    from agent_mesh.mesh import coord

    entry = coord.post(text, _words(tag))
    return f"posted {entry['id']} as {entry['who']}"


def bulletin_text(since: str, tag: str, host: str, limit: int) -> str:
    from agent_mesh.cli.coord_render import render_bulletin, since_epoch
    from agent_mesh.mesh import coord

    doc = coord.bulletin(since_epoch(since), _words(tag), _words(host) or None,
                         max(1, min(int(limit), MAX_LIMIT)))
    text = render_bulletin(doc)
    if not text:
        asked = ", ".join(r["host"] for r in doc["hosts"])
        what = " matching" if since or tag else ""
        text = f"no{what} entries on {asked}: post what you did with the post tool"
    return text + _notes(doc["hosts"], "entries")


def decide_text(title: str, because: str, supersedes: str) -> str:
    from agent_mesh.mesh import coord

    record = coord.decide(title, because, supersedes)
    extra = f" (supersedes {record['supersedes']})" if record.get("supersedes") else ""
    return f"recorded {record['id']}{extra}"


def decisions_text(include_superseded: bool) -> str:
    from agent_mesh.cli.coord_render import render_decisions
    from agent_mesh.mesh import coord

    doc = coord.decisions(include_superseded=include_superseded)
    text = (render_decisions(doc) if doc["entries"]
            else "no decisions in force: record one with decide(title, because)")
    return text + _notes(doc["hosts"], "decisions")


# --- locks ------------------------------------------------------------------------------


def lock_text(path: str, host: str, intent: str, ttl: str, wait: float,
              sleep: Callable[[float], None] | None = None) -> str:
    import time

    from agent_mesh.cli.coord_render import span
    from agent_mesh.clock import duration
    from agent_mesh.mesh import coord

    seconds = min(max(float(wait), 0.0), MAX_WAIT)
    got = coord.lock(path, host or None, intent, span(ttl or "2h", "ttl"), seconds, sleep)
    left = float(got["expires"]) - time.time()
    return (f"{got['host']}:{got['path']} is yours for {duration(left)}: unlock it "
            "when done")


def unlock_text(path: str, host: str, force: bool) -> str:
    """Forcing is the user's opt-in, as a send's is; without it, a held lock's error says
    so instead of the CLI's --force."""
    from agent_mesh.mesh import coord

    allowed = override_refusals()
    if force and not allowed:
        raise UsageError(f"force releases someone else's lock: {OPT_IN}; ask its holder "
                         "to unlock it (locks names them)")
    try:
        got = coord.unlock(path, host or None, force)
    except Held as exc:
        hint = ("(force=true overrides it, which is logged)" if allowed
                else f"({OPT_IN}; ask the holder)")
        raise Held(str(exc).replace("(--force to override, which is logged)", hint)) from None
    whose = f" (held by {got.get('who')}; logged)" if got.get("forced") else ""
    return f"released {got['host']}:{got['path']}{whose}"


def locks_text(host: str) -> str:
    """A host that did not answer makes it an error (its locks are unknown), as `locks`
    exits 4; the error carries what the others hold."""
    from agent_mesh.cli.coord_render import render_locks
    from agent_mesh.cli.mcp_tools import ToolFailure
    from agent_mesh.errors import printable
    from agent_mesh.mesh import coord

    doc = coord.locks(_words(host) or None)
    if doc["locks"]:
        text = render_locks(doc)
    else:
        asked = ", ".join(r["host"] for r in doc["hosts"] if r["ok"]) or "no host"
        text = f"no locks held on {asked}: the lock tool takes one"
    text += _notes(doc["hosts"], "locks")
    if any(not r["ok"] for r in doc["hosts"]):
        raise ToolFailure(printable(text, lines=True))
    return text


# --- task boards --------------------------------------------------------------------------


def task_add_text(title: str, board: str, role: str, notify: str) -> str:
    from agent_mesh.mesh import coord

    got = coord.task_add(title, board or None, role, _words(notify))
    return f"added task {got['task']['id']} on {got['board']}"


def task_claim_text(task_id: int, take_next: bool, role: str, board: str) -> str:
    from agent_mesh.mesh import coord

    if bool(task_id) == take_next:
        raise UsageError("give a task id or next=true (not both)")
    got = coord.task_claim(str(task_id) if task_id else None, board or None, role)
    task = got["task"]
    return (f"claimed task {task['id']} on {got['board']}: {task.get('title', '')}"
            + _notified(got))


def task_done_text(task_id: int, note: str, board: str) -> str:
    from agent_mesh.mesh import coord

    got = coord.task_done(str(task_id), board or None, note)
    return f"task {got['task']['id']} on {got['board']} is done" + _notified(got)


def task_drop_text(task_id: int, stale: bool, board: str) -> str:
    from agent_mesh.mesh import coord

    if bool(task_id) == stale:
        raise UsageError("give a task id or stale=true (not both)")
    got = coord.task_drop(str(task_id) if task_id else None, board or None, stale)
    if stale:
        ids = ", ".join(str(t["id"]) for t in got["dropped"]) or "none"
        return f"released stale claims on {got['board']}: {ids}"
    return f"dropped task {got['task']['id']} on {got['board']}; it is open again"


def tasks_text(board: str) -> str:
    from agent_mesh.cli.coord_render import render_tasks
    from agent_mesh.mesh import coord

    doc = coord.tasks(board or None)
    where = doc.get("board", "?")
    if not doc.get("tasks"):
        made = "has no tasks yet" if doc.get("exists") else "does not exist yet"
        others = ", ".join(f"{b}@{str(where).partition('@')[2]}" for b in doc.get("others")
                           or [])
        return (f"board {where} {made}: task_add(title, board=\"{where}\") adds one; agents "
                "take them with task_claim(next=true)"
                + (f" (boards there: {others})" if others else ""))
    text, hint = render_tasks(doc)
    if hint:
        text += (f"\nclaims marked gone: their window closed; task_drop(stale=true, "
                 f"board=\"{where}\") opens them again")
    return text


# --- the tools ----------------------------------------------------------------------------


def add_tools(tool: Callable[[Callable[..., str]], Any],
              guarded: Callable[[Callable[[], str]], str],
              sleep: Callable[[float], None]) -> None:
    """Register the coordination tools on the server through mcp_server's `tool` (names
    and arguments are a stable interface, as the messaging tools' are)."""
    from pydantic import Field

    Board = Annotated[str, Field(description="The board, NAME@HOST (NAME alone: on this "
                                 "host); empty: $AGENT_MESH_BOARD, else main on this host")]
    Path = Annotated[str, Field(description="The path: absolute, or HOST:PATH for a path on "
                                "another host, or relative to where the agent CLI started")]
    Host = Annotated[str, Field(description="The host the path lives on (empty: the HOST: "
                                "prefix of path, else this host)")]
    TaskId = Annotated[int, Field(description="The task's id, as tasks shows it")]

    @tool
    def post(
        text: Annotated[str, Field(description="What you did, one or a few lines")],
        tag: Annotated[str, Field(description="Optional tags (letters, digits, . _ -), "
                                  "separated by commas or spaces")] = "",
    ) -> str:
        return guarded(lambda: post_text(text, tag))

    @tool
    def bulletin(
        since: Annotated[str, Field(description="Only entries from this long ago (90m, 2h, "
                                    "1d) or since a UTC stamp; empty: all")] = "",
        tag: Annotated[str, Field(description="Only entries with one of these tags")] = "",
        host: Annotated[str, Field(description="Only these hosts' entries (comma-separated); "
                                   "empty: every host")] = "",
        limit: Annotated[int, Field(description=f"How many of the latest entries (at most "
                                    f"{MAX_LIMIT})")] = LIMIT,
    ) -> str:
        return guarded(lambda: bulletin_text(since, tag, host, limit))

    @tool
    def decide(
        title: Annotated[str, Field(description="The decision, short")],
        because: Annotated[str, Field(description="Why: what everyone should know")],
        supersedes: Annotated[str, Field(description="Optional id of the decision this one "
                                         "replaces (d3@host)")] = "",
    ) -> str:
        return guarded(lambda: decide_text(title, because, supersedes))

    @tool
    def decisions(
        all: Annotated[bool, Field(description="Superseded decisions too")] = False,
    ) -> str:
        return guarded(lambda: decisions_text(all))

    @tool
    def lock(
        path: Path,
        host: Host = "",
        intent: Annotated[str, Field(description="What you are doing there, e.g. "
                                     "\"refactor io\"")] = "",
        ttl: Annotated[str, Field(description="It ends by itself after this long (30s, 10m, "
                                  "2h; at most 7d)")] = "2h",
        wait: Annotated[float, Field(description="Seconds to wait while someone else holds "
                                     f"it, at most {MAX_WAIT:g} (0: answer at once)")] = 0.0,
    ) -> str:
        return guarded(lambda: lock_text(path, host, intent, ttl, wait, sleep))

    @tool
    def unlock(
        path: Path,
        host: Host = "",
        force: Annotated[bool, Field(description="Release someone else's lock (logged); "
                                     "refused unless the user allowed agents to override "
                                     "refusals")] = False,
    ) -> str:
        return guarded(lambda: unlock_text(path, host, force))

    @tool
    def locks(
        host: Annotated[str, Field(description="Only the locks these hosts hold "
                                   "(comma-separated); empty: every host")] = "",
    ) -> str:
        return guarded(lambda: locks_text(host))

    @tool
    def task_add(
        title: Annotated[str, Field(description="What is to be done")],
        board: Board = "",
        role: Annotated[str, Field(description="Who should take it (task_claim with next and "
                                   "this role finds it); empty: anyone")] = "",
        notify: Annotated[str, Field(description="Addresses to subscribe to the board "
                                     "(comma-separated): messaged on each claim and "
                                     "done")] = "",
    ) -> str:
        return guarded(lambda: task_add_text(title, board, role, notify))

    @tool
    def task_claim(
        id: Annotated[int, Field(description="The task's id, as tasks shows it; 0 with "
                                 "next=true")] = 0,
        next: Annotated[bool, Field(description="Claim the first open task instead")] = False,
        role: Annotated[str, Field(description="With next: a task for this role (or for "
                                   "anyone)")] = "",
        board: Board = "",
    ) -> str:
        return guarded(lambda: task_claim_text(id, next, role, board))

    @tool
    def task_done(
        id: TaskId,
        note: Annotated[str, Field(description="What came of it (a PR, a commit)")] = "",
        board: Board = "",
    ) -> str:
        return guarded(lambda: task_done_text(id, note, board))

    @tool
    def task_drop(
        id: Annotated[int, Field(description="The task's id; 0 with stale=true")] = 0,
        stale: Annotated[bool, Field(description="Release every claim whose holder's window "
                                     "is gone instead")] = False,
        board: Board = "",
    ) -> str:
        return guarded(lambda: task_drop_text(id, stale, board))

    @tool
    def tasks(board: Board = "") -> str:
        return guarded(lambda: tasks_text(board))
