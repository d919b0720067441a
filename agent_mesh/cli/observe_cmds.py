"""`agent-mesh status | peek | inbox | log`: see what the mesh's agents are doing.

Registered on the click group of cli/main.py by `register`. Rendering only; the
work is in mesh/observe.py (mesh-wide) and delivery/observe.py (this host).

click is imported only inside the commands: `quick_status`, which cli/entry.py
calls for a plain `agent-mesh status [PATTERN…] [--json]`, skips it (~30 ms, a
sixth of a 3-host status), so a status costs about one remote message; so does
`run_sync`, for a plain `agent-mesh sync`.
"""

from __future__ import annotations

import sys
import time

from agent_mesh import clock, errors
from agent_mesh.errors import UsageError, printable, printable_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc imports collections (~1.5 ms of a status)
    from collections.abc import Callable
    from typing import Any

    import click

_COLUMNS = ("ADDRESS", "HOST", "STATE", "SINCE", "PROGRAM", "ROLE", "DETAIL")
_STATE_SGR = {"idle": "32", "working": "36", "drafting": "33", "waiting": "35",
              "dead": "31", "gone": "31", "unreachable": "31"}


def _style(text: str, sgr: str | None) -> str:
    return f"\x1b[{sgr}m{text}\x1b[0m" if sgr else text


def _run_guarded(prog: str, func: Callable[[], Any]) -> None:
    """cli/group.py's guard, imported only here: quick_status skips click."""
    from agent_mesh.cli.group import run_guarded

    run_guarded(prog, func)


def quick_status(argv: list[str]) -> int | None:
    """`status [PATTERN…] [--json]` without click; None: let click handle argv (help,
    --watch, a mistake)."""
    if any(a.startswith("-") and a != "--json" for a in argv):
        return None
    from agent_mesh.cli.guard import guarded

    return guarded("agent-mesh status",
                   lambda: _print_status([a for a in argv if a != "--json"], "--json" in argv))


def run_sync() -> int:
    """`agent-mesh sync`, without click (cli/entry.py): one line per peer, exit 4 if
    any peer failed."""
    from agent_mesh import errors
    from agent_mesh.cli.guard import guarded
    from agent_mesh.mesh import sync

    def body() -> int:
        reports = sync.sync()
        if not reports:
            print("agent-mesh sync: no peers in ~/.agents/peers.conf; registry is this host")
        for report in reports:
            print(errors.printable(report.line()))
        return errors.WIRE if any(r.status != "ok" for r in reports) else 0

    return guarded("agent-mesh sync", body)


def _print_status(patterns: list[str], as_json: bool) -> None:
    from agent_mesh.mesh import observe

    rows, hosts = observe.mesh_status(patterns)
    if as_json:
        import json

        text = printable_json(json.dumps({"agents": rows, "hosts": hosts}, indent=2,
                                         ensure_ascii=False))
    else:
        text = render_status(rows, hosts, color=sys.stdout.isatty())
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _since(stamp: str) -> str:
    return clock.age(stamp) or "?"


def _cells(row: dict[str, Any]) -> list[str]:
    state = str(row.get("state", "?"))
    since = _since(str(row.get("since", "")))
    if row.get("stale"):
        since = f"{since} (last seen)"
    values = (row.get("address"), row.get("host"), state, since, row.get("program"),
              row.get("role"), row.get("detail"))
    limits = (40, 20, 12, 18, 16, 24, 70)
    return [printable(str(v or ""))[:lim] for v, lim in zip(values, limits, strict=True)]


def render_status(rows: list[dict[str, Any]], hosts: list[dict[str, Any]],
                  changed: set[tuple[str, str]] | None = None, color: bool = False) -> str:
    """The status table; cells in `changed` ((address, column)) are highlighted."""
    table = [list(_COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    lines = []
    for n, cells in enumerate(table):
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            text = cell.ljust(width) if i < len(cells) - 1 else cell
            if color and n and i == 2:
                text = _style(text, _STATE_SGR.get(cell))
            if color and n and changed and (rows[n - 1].get("address"), _COLUMNS[i]) in changed:
                text = _style(text, "7")  # reverse video
            out.append(text)
        lines.append("  ".join(out).rstrip())
    for host in hosts:
        if not host["ok"]:
            error = str(host["error"])
            why = error if error.startswith("unreachable") else f"unreachable: {error}"
            lines.append(printable(f"{host['host']}: {why}")[:200])
        if host.get("dropped"):
            lines.append(printable(f"{host['host']}: dropped {host['dropped']} rows that are "
                                   "not its own agents'"))
    return "\n".join(lines)


def _changes(old: dict[str, list[str]], rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    changed = set()
    for row in rows:
        address = str(row.get("address"))
        before = old.get(address)
        now = _cells(row)
        for i, column in enumerate(_COLUMNS):
            if column == "SINCE":
                continue  # ages tick every redraw
            if before is None or before[i] != now[i]:
                changed.add((address, column))
    return changed


def status_cmd(patterns: tuple[str, ...], as_json: bool, watch: float | None) -> None:
    import click

    from agent_mesh.mesh import observe

    def once() -> None:
        _print_status(list(patterns), as_json)

    def loop(interval: float) -> None:
        previous: dict[str, list[str]] = {}
        tty = sys.stdout.isatty()
        while True:
            rows, hosts = observe.mesh_status(list(patterns))
            changed = _changes(previous, rows) if previous else set()
            previous = {str(r.get("address")): _cells(r) for r in rows}
            stamp = time.strftime("%H:%M:%S")
            body = render_status(rows, hosts, changed, color=tty)
            head = f"agent-mesh status  every {interval:g}s  {stamp}  (Ctrl-C to stop)"
            if tty:
                click.echo("\x1b[H\x1b[2J" + head + "\n\n" + body, nl=True)
            else:
                click.echo(head + "\n" + body + "\n")
            time.sleep(interval)

    if watch is None:
        _run_guarded("agent-mesh status", once)
        return
    if watch <= 0:
        raise click.BadParameter("must be > 0", param_hint="--watch")
    try:
        _run_guarded("agent-mesh status", lambda: loop(watch))
    except SystemExit as exc:
        if exc.code != errors.INTERRUPTED:  # Ctrl-C ends a watch: not an error
            raise


def _what(record: dict[str, Any]) -> str:
    body = str(record.get("body", ""))
    first = body.split("\n", 1)[0][:80] + ("…" if "\n" in body or len(body) > 80 else "")
    if record.get("file"):
        missing = " (gone)" if record.get("present") is False else ""
        size = f" ({record['size']} bytes)" if record.get("size") is not None else ""
        text = f"file {record['file']}{size}{missing}"
        return f"{text}: {first}" if body else text
    return first


def _outcome(record: dict[str, Any]) -> str:
    outcome = str(record.get("outcome", "?"))
    reason = str(record.get("reason", ""))
    return f"{outcome}: {reason[:40]}…" if len(reason) > 40 else (
        f"{outcome}: {reason}" if reason else outcome)


def render_records(records: list[dict[str, Any]], sent: bool) -> str:
    head = ["TIME", "ID", "TO" if sent else "FROM", "OUTCOME", "WHAT"]
    table = [head]
    for r in records:
        peer = r.get("to") if sent else r.get("from")
        table.append([printable(str(x or "")) for x in
                      (str(r.get("time", "")).replace("T", " ").rstrip("Z"), r.get("id"), peer,
                       _outcome(r), _what(r))])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) if i < len(head) - 1 else c
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in table
    )


def _record_key(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, sort_keys=True)


def inbox_cmd(agent: str | None, as_json: bool, follow: bool, limit: int) -> None:
    import json

    import click

    from agent_mesh.mesh import observe

    def fetch() -> list[dict[str, Any]]:
        return observe.inbox(agent, limit) if agent else observe.local_inbox_all(limit)

    def show(records: list[dict[str, Any]], header: bool) -> None:
        if as_json:
            for record in records:
                click.echo(printable_json(json.dumps(record, ensure_ascii=False)))
            return
        text = render_records(records, sent=False)
        click.echo(text if header else "\n".join(text.split("\n")[1:]))

    def body() -> None:
        records = fetch()
        if as_json and not follow:
            click.echo(printable_json(json.dumps(records, indent=2, ensure_ascii=False)))
            return
        show(records, header=True)
        if not follow:
            return
        seen = {_record_key(r) for r in records}
        remote = agent is not None and not _is_local(agent)
        while True:
            time.sleep(2.0 if remote else 0.5)
            new = [r for r in fetch() if _record_key(r) not in seen]
            seen.update(_record_key(r) for r in new)
            if new:
                show(new, header=False)

    _run_guarded("agent-mesh inbox", body)


def _is_local(address: str) -> bool:
    from agent_mesh.registry import naming, view

    return view.resolve(address).host == naming.self_alias()


def register(group: click.Group) -> None:
    """Add status, peek, inbox and log to the agent-mesh group."""
    import click

    @group.command("status", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("patterns", nargs=-1)
    @click.option("--json", "as_json", is_flag=True, help="Print agents and hosts as JSON.")
    @click.option("--watch", type=float, is_flag=False, flag_value=2.0, default=None,
                  metavar="[SECONDS]", help="Redraw every SECONDS (default 2), highlighting "
                  "changes.")
    def status(patterns: tuple[str, ...], as_json: bool, watch: float | None) -> None:
        """What every agent in the mesh is doing: one row per agent with its state
        (idle, working, drafting, waiting, shell, running, dead, gone, unreachable),
        since when, its program, role and a one-line detail. One request per peer
        host, in parallel. PATTERN: an address glob (`worker-*`), `role:GLOB` or
        `host:GLOB`; rows matching any are shown."""
        status_cmd(patterns, as_json, watch)

    @group.command("peek", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("agent")
    @click.option("-n", "--lines", default=40, show_default=True,
                  type=click.IntRange(1, 10000), help="How many lines.")
    @click.option("--ansi", is_flag=True, help="Keep colours and attributes (raw escapes).")
    def peek(agent: str, lines: int, ansi: bool) -> None:
        """The last lines of any agent's pane in the mesh (screen plus scrollback),
        control sequences stripped unless --ansi. Read-only. Exit 2 unknown agent or
        pane gone, 4 tmux or network failure."""

        def body() -> None:
            from agent_mesh.mesh import observe

            text = observe.peek(agent, lines, ansi)
            sys.stdout.write(text)
            sys.stdout.flush()

        _run_guarded("agent-mesh peek", body)

    @group.command("inbox", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("agent", required=False)
    @click.option("--json", "as_json", is_flag=True,
                  help="Print the records as JSON (one per line with --follow).")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new records.")
    @click.option("-n", "--limit", default=50, show_default=True,
                  type=click.IntRange(1, 1000), help="How many of the latest records.")
    def inbox(agent: str | None, as_json: bool, follow: bool, limit: int) -> None:
        """What an agent received: each message and file with its id, sender, time and
        outcome (delivered, refused and why, failed), and whether a dropped file is
        still there. AGENT may be on any host (asked through that host); without it,
        this pane's agent, else every agent of this host."""
        if agent is None:
            agent = _own_address()
        inbox_cmd(agent, as_json, follow, limit)

    @group.command("log", context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
    @click.option("-n", "--limit", default=50, show_default=True,
                  type=click.IntRange(1, 100000), help="How many of the latest records.")
    def log_cmd(as_json: bool, limit: int) -> None:
        """What this host sent: each message and file with its id, recipient and outcome
        (delivered, refused and why, failed), from ~/.agents/log/sent.jsonl."""
        import json

        def body() -> None:
            from agent_mesh.mesh import observe

            records = observe.sent_records(limit)
            if as_json:
                click.echo(printable_json(json.dumps(records, indent=2, ensure_ascii=False)))
            elif records:
                click.echo(render_records(records, sent=True))
            else:
                click.echo("nothing sent from this host yet")

        _run_guarded("agent-mesh log", body)


def _own_address() -> str | None:
    """This pane's registered address when run inside one, else None (all local agents)."""
    from agent_mesh.registry import view, whoami

    try:
        return whoami.own_address(view.load_agents()) or None
    except UsageError:
        return None
