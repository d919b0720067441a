"""`agent-mesh setup [--uninstall] [--cron] [--no-discover]`: render ops.setup.

Stdlib only (no click), so install.sh can still run `--uninstall` from the
checkout with any Python 3.11 after its venv is gone:
`python -c '...; from agent_mesh.cli.setup_cmd import main; main([...])'`.
The click group in cli/main.py registers the same command for `agent-mesh setup`.
"""

from __future__ import annotations

import sys

from agent_mesh.errors import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_mesh.ops.setup import Report

PROG = "agent-mesh setup"
USAGE = ("usage: agent-mesh setup [--uninstall] [--cron] [--no-discover]\n"
         "       agent-mesh setup --agents [--uninstall]")
NEXT_STEPS = """\
Next:
{path}  - see it work on a private tmux server:   agent-mesh demo
  - check this host's setup:                 agent-mesh doctor
  - join a mesh: add one SSH alias per line to ~/.agents/peers.conf (install
    agent-mesh on each of those hosts too), then run:  agent-mesh sync
  - message an agent:  notify-pane --list, then notify-pane <address> 'text'"""
NEW_SHELL = ("  - open a new shell so ~/.local/bin is on PATH "
             '(or: export PATH="$HOME/.local/bin:$PATH")\n')


def _emit(kind: str, text: str) -> None:
    line = printable(text)  # paths may hold ESC
    if kind == "say":
        print(f"{PROG}: {line}", flush=True)
    else:
        tag = "warning" if kind == "warn" else "error"
        print(f"{PROG}: {tag}: {line}", file=sys.stderr, flush=True)


def run(*, uninstall: bool = False, cron: bool = False, discover: bool = True) -> int:
    """Carry out setup or its undo; 0 when every step worked, 1 otherwise."""
    from agent_mesh.errors import MeshError
    from agent_mesh.ops import setup

    report = setup.Report(_emit)
    new_shell = False
    try:
        if uninstall:
            setup.uninstall(report)
            _uninstall_agents(report)
        else:
            new_shell = setup.install(report, cron=cron, discover=discover)
    except MeshError as exc:
        _emit("error", str(exc))
        return exc.exit_code
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _emit("error", f"{exc.strerror or exc}:{where}; fix: check that your home directory "
              "is writable, then re-run")
        return 1
    if report.problems:
        print(f"{PROG}: finished with {report.problems} problem(s) (see the errors above)")
        return 1
    print(f"{PROG}: done")
    if not uninstall:
        print()
        print(NEXT_STEPS.format(path=NEW_SHELL if new_shell else ""))
    return 0


def _uninstall_agents(report: Report) -> None:
    """The agent CLIs' hooks go with the rest (they would run a removed launcher); a
    failure there is a warning: the rest of the uninstall went through."""
    try:
        _remove_from_agent_clis(report)
    except Exception as exc:
        _emit("warn", f"agent CLI hooks not removed ({type(exc).__name__}: {exc}); "
              "run agent-mesh setup --agents --uninstall")


def _remove_from_agent_clis(report: Report) -> None:
    """Everything setup --agents put into the agent CLIs' configs: hooks and the MCP
    server's entries (a CLI left with either would run a command that is gone)."""
    from agent_mesh.ops import agents, mcp_clients

    mcp_clients.plug_in()
    with agents.setup_lock():
        agents.uninstall(report)
        mcp_clients.uninstall(report, mcp_clients.others())


def run_agents(*, uninstall: bool = False) -> int:
    """`setup --agents`: agent-mesh's hooks (and any other per-CLI step) into, or out of,
    each agent CLI's own config (ops/agents.py); 0 when every step worked."""
    from agent_mesh.ops import agents, mcp_clients, setup

    mcp_clients.plug_in()  # the MCP server's entry: one more step per agent CLI
    report = setup.Report(_emit)
    try:
        if uninstall:
            _remove_from_agent_clis(report)
        else:
            with agents.setup_lock():
                agents.install(report)
                mcp_clients.install(report, mcp_clients.others(), installed_only=True)
            from agent_mesh.cli.hook import remember_launch

            remember_launch()  # hooks/agent-event then starts Python without `site`
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _emit("error", f"{exc.strerror or exc}:{where}; nothing else was changed")
        return 1
    except Exception as exc:  # a config shaped in a way no step expected: one line
        _emit("error", f"{type(exc).__name__}: {exc}; stopped there")
        return 1
    if report.problems:
        print(f"{PROG}: finished with {report.problems} problem(s) (see the errors above)")
        return 1
    print(f"{PROG}: done")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The same command without click, for install.sh's fallback."""
    args = sys.argv[1:] if argv is None else argv
    known = {"--uninstall", "--cron", "--no-discover", "--agents"}
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    unknown = [a for a in args if a not in known]
    if unknown:
        print(f"{PROG}: unknown argument: {unknown[0]} ({USAGE})", file=sys.stderr)
        return 1
    if "--agents" in args:
        return run_agents(uninstall="--uninstall" in args)
    return run(uninstall="--uninstall" in args, cron="--cron" in args,
               discover="--no-discover" not in args)
