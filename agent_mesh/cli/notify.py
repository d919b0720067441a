"""`notify-pane`: the bash tool's command, argument for argument.

Parsed by hand rather than with click: its grammar is positional (everything
after the address is message text, even `-rf` or `--`), and it is the hot path,
where click's import alone (~30 ms) would cost more than the delivery itself.
"""

from __future__ import annotations

import os
import sys

from agent_mesh import __version__
from agent_mesh.errors import MeshError, NotReady, UsageError

USAGE = """\
usage: notify-pane <agent> "<message>"
       notify-pane <agent> --file PATH ["<message>"]
       notify-pane <agent> --stdin            (message read from standard input)
       notify-pane --list [--json]
       notify-pane --whoami

Send a [from <sender> @ <time>]-tagged message into a registered agent's tmux
pane, on this host or a mesh peer, and submit it. With --file the file is first
copied to the recipient's ~/.agent-inbox/<sender>/<name> and the message says so.
Everything after the agent (or after --file PATH) is message text, verbatim.

environment:
  AGENT_NAME      sender identity (default: this pane's address, else host[session])
  FORCE_SEND=1    deliver even if the recipient looks mid-prompt or not ready
  SKIP_DISMISS=1  do not press Escape on a recognised Claude Code dialog first

exit codes:
  0 delivered   1 usage or unreadable file   2 unknown agent
  3 recipient not ready (mid-prompt, shell prompt, copy mode, dead pane)
  4 tmux or network failure
"""


def _flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


def _preview(body: str) -> str:
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

        print(sender_id())
        return 0
    if argv[0].startswith("-"):
        raise UsageError(f"unknown option {argv[0]!r} (see notify-pane --help)")

    address, rest = argv[0], argv[1:]
    file_path: str | None = None
    if rest[:1] in (["-f"], ["--file"]):
        if len(rest) < 2 or not rest[1]:
            raise UsageError("--file needs a path")
        file_path, rest = rest[1], rest[2:]
    if rest == ["--stdin"]:
        body = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    else:
        body = " ".join(rest)
    if not body and file_path is None:
        raise UsageError("no message given (see notify-pane --help)")

    from agent_mesh.mesh.send import send

    result = send(
        address,
        body,
        file_path=file_path,
        force=_flag("FORCE_SEND"),
        skip_dismiss=_flag("SKIP_DISMISS"),
    )
    from agent_mesh.textsafe import one_line  # the peer's reply and the body: never raw

    for note in result.notes:
        print(f"notify-pane: note: {one_line(note)}", file=sys.stderr)
    shown = _preview(body) if body else f"file {os.path.basename(file_path or '')}"
    print(one_line(f"→ {address} ({result.host}[{result.target}]): {shown}"))
    return 0


def _list(as_json: bool, extra: list[str]) -> int:
    if extra:
        raise UsageError(f"unexpected argument {extra[0]!r} after --list")
    from agent_mesh.registry.view import load_agents

    agents = load_agents()
    if as_json:
        import json
        print(json.dumps([ag.as_dict() for ag in agents.values()], indent=2, ensure_ascii=False))
    else:
        for address in agents:
            print(address)
    return 0


def _one_line(text: str) -> str:
    """Failures are one line: names and paths echoed back may hold newlines or escapes."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in " ".join(text.split("\n"))
    )


def _fail(message: str) -> None:
    print(f"notify-pane: {_one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return run(args)
    except NotReady as exc:
        address = args[0] if args else "?"
        hint = " (FORCE_SEND=1 to override)" if getattr(exc, "overridable", True) else ""
        _fail(f"refusing to deliver to '{address}': {exc}{hint}")
        return exc.exit_code
    except MeshError as exc:
        _fail(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # a bug must still be one line, not a traceback
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
