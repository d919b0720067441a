"""`notify-pane`: the bash tool's command, argument for argument.

Parsed by hand rather than with click: its grammar is positional (everything
after the address is message text, even `-rf` or `--`), and it is the hot path,
where click's import alone (~30 ms) would cost more than the delivery itself.
"""

from __future__ import annotations

import os
import stat
import sys

from agent_mesh import __version__
from agent_mesh.cli.guard import guarded
from agent_mesh.errors import NotReady, Outcome, UsageError, printable, printable_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the hot path an import
    from agent_mesh.model import Agent

USAGE = """\
usage: notify-pane [--queue [--ttl DURATION]] <agent> "<message>"
       notify-pane <pattern>|--all "<message>"   (worker-*, role:NAME, host:ALIAS)
       notify-pane <asker> --re ID "<reply>"
       notify-pane <agent> --file PATH ["<message>"]
       notify-pane <agent> --stdin            (message read from standard input; one
                                              final newline is dropped)
       notify-pane --list [--json]
       notify-pane --whoami

Send a [from <sender> @ <time>]-tagged message into a registered agent's tmux
pane, on this host or a mesh peer, and submit it. With --file the file is first
copied to the recipient's ~/.agent-inbox/<sender>/<name> and the message says so.
Everything after the agent (or after --file PATH) is message text, verbatim; an
option of the first line right after the agent is a usage error, and `--` right
after the agent sends what follows as text (notify-pane X -- --queue is text).

--queue: if the agent is busy, its host keeps the message and delivers it, in
order, into that same pane as soon as it is ready (exit 5); --ttl drops it,
logged, after DURATION (default 1h). A shell or a program that is no agent is
refused at once (exit 3), and with FORCE_SEND=1 it goes now or not at all.
A pattern delivers to every matching agent but the sender, one line each.
--re ID marks the reply to `agent-mesh ask` question ID.

environment:
  AGENT_NAME      sender identity (default: this pane's address, else host[session])
  FORCE_SEND=1    deliver even if the recipient looks mid-prompt or not ready
  SKIP_DISMISS=1  do not press Escape on a recognised Claude Code dialog first
  AGENT_MESH_MAX_FILE  largest --file accepted, bytes or with K/M/G (default 1G)

exit codes:
  0 delivered   1 usage or unreadable file
  2 unknown agent (or its pane is gone: the registry is out of date)
  3 recipient not ready (mid-prompt, mid-turn, a dialog, shell prompt, not an
    agent, copy mode, dead pane); FORCE_SEND=1 overrides all but a question,
    a dead pane and a tmux mode over a pane that would refuse anyway
  4 tmux or network failure
  5 queued with --queue: the agent was busy; its host delivers it when ready
  a pattern exits with the worst of its recipients' codes

Under `tmux run-shell` (no terminal) the outcome is shown with tmux
display-message and logged to ~/.agents/notify.log instead of printed, so tmux
does not put the pane into view mode.
"""


def _flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


def _preview(body: str) -> str:
    """The first line of the body as it will be pasted (control characters removed)."""
    from agent_mesh.text import sanitize

    body = sanitize(body)[0]
    first = body.split("\n", 1)[0]
    if len(first) > 120 or "\n" in body:
        return f"{first[:120]}… ({len(body.encode('utf-8'))} bytes)"
    return first


def run(argv: list[str]) -> int:
    """Parse argv, call the core, print the outcome; returns the exit code."""
    if not argv:
        raise UsageError('usage: notify-pane <agent> "<message>" (see notify-pane --help)')
    if argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        print(f"notify-pane (agent-mesh) {__version__}")
        return 0
    if argv[0] == "--list":
        return _list(as_json=argv[1:] == ["--json"], extra=[a for a in argv[1:] if a != "--json"])
    if argv[0] == "--whoami":
        from agent_mesh.mesh.send import sender_id

        print(printable(sender_id()))
        return 0
    queue, ttl = False, 0.0
    while argv and argv[0] in ("--queue", "--ttl"):
        if argv[0] == "--queue":
            queue, argv = True, argv[1:]
            continue
        if len(argv) < 2:
            raise UsageError("--ttl needs a duration (e.g. 10m)")
        from agent_mesh.mesh.delegate import parse_duration

        ttl, queue, argv = parse_duration(argv[1]), True, argv[2:]
    if not argv:
        raise UsageError("no agent given (see notify-pane --help)")
    if argv[0].startswith("-") and argv[0] != "--all":
        raise UsageError(f"unknown option {argv[0]!r} (see notify-pane --help)")

    address, rest = argv[0], argv[1:]
    # `--` right after the address: what follows is text (a lone `--` is the text itself)
    text_only = len(rest) > 1 and rest[0] == "--"
    if text_only:
        rest = rest[1:]
    else:
        _refuse_misplaced_option(address, rest)
    file_path: str | None = None
    re = ""
    # `--re ID` then `--file PATH`, each at most once: whatever follows is message text
    for flags in (("--re",), ("-f", "--file")):
        if rest[:1] and rest[0] in flags and not text_only:
            if len(rest) < 2 or not rest[1]:
                raise UsageError("--re needs a reply id" if flags == ("--re",)
                                 else "--file needs a path")
            if flags == ("--re",):
                re = rest[1]
            else:
                file_path = rest[1]
            rest = rest[2:]
    if rest == ["--stdin"] and not text_only:
        body = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        # `echo hi |` ends its line: one final newline ends the text, it is no second line
        body = body[:-2] if body.endswith("\r\n") else body.removesuffix("\n")
    else:
        body = " ".join(rest)
    if not body and file_path is None:
        raise UsageError("no message given (see notify-pane --help)")

    shown = _preview(body) if body else f"file {os.path.basename(file_path or '')}"
    from agent_mesh.registry.select import is_pattern

    if is_pattern(address):
        return _broadcast(address, body, shown, file_path, queue, ttl, re)

    from agent_mesh.mesh.send import send

    origin = None
    if re:  # who sends this reply, as this host can tell (never AGENT_NAME)
        from agent_mesh.mesh.delegate import reply_origin

        origin = reply_origin()
    result = send(
        address,
        body,
        file_path=file_path,
        force=_flag("FORCE_SEND"),
        skip_dismiss=_flag("SKIP_DISMISS"),
        queue=queue,
        ttl=ttl,
        re=re,
        origin=origin,
    )

    for note in result.notes:
        _say(f"notify-pane: note: {printable(note)}", err=True)
    where = f"{address} ({result.host}[{result.target}])"
    mark = _MARKS.get(result.outcome, "✗")
    if result.outcome == Outcome.QUEUED:
        _say(printable(f"{mark} {where}: queued as {result.msg_id}, delivered when it is "
                       f"ready: {shown}"))
    elif result.outcome == Outcome.MAILBOX:
        _say(printable(f"{mark} {address}: reply {re} kept for the waiting ask: {shown}"))
    else:
        _say(printable(f"{mark} {where}: {shown}"))
    return result.outcome.code


# How each outcome is marked on its line; a failure is "✗".
_MARKS = {Outcome.DELIVERED: "→", Outcome.MAILBOX: "→", Outcome.QUEUED: "⏸"}


# Options that belong before the agent (or stand alone): right after it they are a
# mistake, not text (`notify-pane X --queue hi` would otherwise send "--queue hi").
_LEADING = ("--queue", "--ttl", "--all", "--list", "--json", "--whoami", "--help", "-h",
            "--version")


def _refuse_misplaced_option(address: str, rest: list[str]) -> None:
    """A usage error showing the right order when the word after the address is one of
    notify-pane's options that does not go there."""
    word = rest[0] if rest else ""
    if word not in _LEADING and not (word == "--stdin" and len(rest) > 1):
        return
    from agent_mesh.text import shell_quote

    def cmd(*words: str) -> str:
        return " ".join(["notify-pane", *(shell_quote(w) for w in words)])

    lead = f"{word} goes before the agent"
    if word == "--queue":
        right = cmd("--queue", address, *rest[1:])
    elif word == "--ttl":
        right = cmd("--ttl", *(rest[1:2] or ["DURATION"]), address, *rest[2:])
    elif word == "--stdin":
        lead, right = "--stdin takes no message text", f"{cmd(address, '--stdin')} < FILE"
    elif word == "--all":
        lead, right = "--all takes the agent's place", cmd("--all", *rest[1:])
    else:
        lead = f"{word} takes no agent"
        right = cmd(word) if word != "--json" else cmd("--list", "--json")
    raise UsageError(f"{lead}: {right}; to send it as text: {cmd(address, '--', *rest)}")


def _broadcast(pattern: str, body: str, shown: str, file_path: str | None, queue: bool,
               ttl: float, re: str) -> int:
    """One result line per recipient; the exit code is the worst of them."""
    if file_path is not None:
        raise UsageError("--file goes to one agent, not to a pattern")
    from agent_mesh import clock
    from agent_mesh.delivery import log
    from agent_mesh.mesh import delegate
    from agent_mesh.mesh.send import sender_id
    from agent_mesh.model import Envelope

    envelope = Envelope(sender=sender_id(), address=pattern, body=body,
                        timestamp=clock.now_iso(), force=_flag("FORCE_SEND"),
                        skip_dismiss=_flag("SKIP_DISMISS"), msg_id=log.new_id(),
                        queue=queue, ttl=ttl, re=re, fanout=pattern)
    outcomes = delegate.broadcast([pattern], envelope)
    for row in outcomes:
        detail = f": {row.line}" if not row.outcome.done else ""
        _say(printable(f"{_MARKS.get(row.outcome, '✗')} {row.address}: {row.outcome}{detail}"))
    _say(printable(f"{pattern}: {sum(r.outcome.done for r in outcomes)} of {len(outcomes)} "
                   f"delivered: {shown}"))
    return delegate.worst(r.code for r in outcomes)


EMPTY = "no agents yet: start tmux (windows register automatically)"


def listed_agents() -> tuple[dict[str, Agent], str]:
    """The registered agents for a listing, and what to say when there are none. Right
    after `tmux new-window` its hook may still be writing: while tmux runs and the
    registry is empty, the running hooks are waited for (briefly), and the hint never
    says to start tmux."""
    from agent_mesh.registry.view import load_agents

    agents = load_agents()
    if agents:
        return agents, ""
    from agent_mesh.tmux import Tmux

    if Tmux().run("list-sessions", check=False).returncode != 0:
        return agents, EMPTY
    from agent_mesh.registry.local import wait_for_hooks
    from agent_mesh.registry.naming import SCRATCH_RULE

    wait_for_hooks()
    return load_agents(), (f"no agents yet, though tmux runs ({SCRATCH_RULE}); register its "
                           "windows now: agent-discover; if new windows never register: "
                           "agent-mesh doctor")


def _list(as_json: bool, extra: list[str]) -> int:
    if extra:
        raise UsageError(f"unexpected argument {extra[0]!r} after --list")
    agents, empty = listed_agents()
    if as_json:
        import json
        print(printable_json(json.dumps([ag.as_dict() for ag in agents.values()], indent=2,
                                        ensure_ascii=False)))
    elif not agents:  # a hint for people; scripts reading stdout still get nothing
        print(f"notify-pane: {empty}", file=sys.stderr)
    else:
        for address in agents:
            print(printable(address))
    return 0


def under_run_shell() -> bool:
    """Started by `tmux run-shell` (TMUX set, stdout tmux's socket)? TMUX_PANE is
    set there only by the command itself (`run-shell -t "$TMUX_PANE"
    'TMUX_PANE=#{pane_id} notify-pane …'`, README), so it does not tell.

    There, anything printed makes tmux put the session's current pane (often the
    sender's own) into view mode, and a pane in a mode refuses every message: the
    outcome goes to `tmux display-message` and ~/.agents/notify.log instead, and
    the exit status is 0 (tmux would show a non-zero one in view mode too).
    """
    if not os.environ.get("TMUX"):
        return False
    try:
        return stat.S_ISSOCK(os.fstat(1).st_mode)
    except OSError:
        return False


_QUIET: list[str] | None = None  # lines held back from tmux's view mode


def _say(line: str, err: bool = False) -> None:
    if _QUIET is not None:
        _QUIET.append(line)
    else:
        print(line, file=sys.stderr if err else sys.stdout)


def _log_and_display(lines: list[str]) -> None:
    """Under run-shell: one log line per outcome, and the first on the status line."""
    from agent_mesh.clock import now_iso

    stamp = now_iso()
    try:
        from agent_mesh.fsutil import append_private
        from agent_mesh.registry.toml import ensure_agents_dir

        path = os.path.join(ensure_agents_dir(), "notify.log")
        with os.fdopen(append_private(path), "a", encoding="utf-8", errors="replace") as fh:
            fh.writelines(f"{stamp} {printable(line)}\n" for line in lines)
    except Exception:
        pass
    try:
        from agent_mesh.tmux import Tmux

        # display-message expands formats: `#` doubled so a message's text stays text.
        text = printable(" | ".join(lines)).replace("#", "##")
        Tmux().run("display-message", "--", text[:500], check=False)
    except Exception:
        pass


def _address_in(args: list[str]) -> str:
    """The address word of argv, after any leading --queue / --ttl DURATION."""
    while args[:1] == ["--queue"] or (args[:1] == ["--ttl"] and len(args) > 1):
        args = args[1:] if args[0] == "--queue" else args[2:]
    return args[0] if args else ""


def main(argv: list[str] | None = None) -> int:
    global _QUIET
    args = sys.argv[1:] if argv is None else argv
    informational = ("-h", "--help", "--version", "--list", "--whoami")
    quiet = bool(args) and args[0] not in informational and under_run_shell()
    _QUIET = [] if quiet else None

    def body() -> int:
        try:
            return run(args)
        except NotReady as exc:  # the refusal names the address it was for
            if not exc.address and args:
                exc.address = _address_in(args)
            raise

    code = guarded("notify-pane", body, say=lambda line: _say(line, err=True))
    if _QUIET is not None:
        # tmux shows a job's non-zero exit status in view mode too: nobody waits
        # for a `run-shell -b` job's status, so it goes to the log line instead.
        if code:
            _QUIET[-1] += f" (exit {code})"
        _log_and_display(_QUIET)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
