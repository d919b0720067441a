"""Who is in a pane's foreground, reduced to what the delivery rules need.

From the terminal's foreground process group (procs.Foreground, read from /proc; else
tmux's `pane_current_command`): the known agent among it (receivers), the shell that
leads it and whether it reads commands from the terminal, a pager or editor in it, and
a shell waiting under it that would read what is typed next. `opted_in` and
`typeahead` answer the two questions that turn on it: does the window's
`@agent-accept` take this program, and would typed text wait for a shell instead.
"""

from __future__ import annotations

import os

from agent_mesh.delivery.state import PaneState
from agent_mesh.procs import Foreground, Proc, reads_terminal
from agent_mesh.receivers import (
    NOT_AN_INPUT,
    RELAYS,
    WRAPPERS,
    agent_of,
    extra_agents,
    interactive_shell,
    names_of,
    program_name,
    shell_of,
    stem,
)

__all__ = ["Who", "foreground_of", "opted_in", "typeahead"]


class Who:
    """The foreground, reduced to what the rules need."""

    __slots__ = (
        "_fg",
        "_relay",
        "agent",
        "agent_proc",
        "blocker",
        "interactive",
        "leader",
        "named",
        "parent_shell",
        "program",
        "shell",
        "under",
    )

    def __init__(self, fg: Foreground | None = None) -> None:
        self._fg = fg
        self._relay: str | None = None
        self.agent = ""  # known agent's command name
        self.agent_proc: Proc | None = None
        self.shell = ""  # the leader is this shell, and it reads the terminal itself
        self.interactive = False  # ...reading commands from the terminal
        self.program = ""  # name shown in messages
        self.named: Proc | None = None  # the process that name belongs to
        self.blocker = ""  # a pager/editor in the group
        self.parent_shell = ""  # the pane's own shell, when the job is something else
        self.under = ""  # a shell waiting under the foreground: it reads what is typed next
        self.leader: Proc | None = None  # the foreground group's leader

    @property
    def relay(self) -> str:
        """An interactive shell the foreground passes keys to (`script`, `sudo -s`: a shell
        on a terminal of its own), or ''. Read on first use: an agent on screen never
        needs it."""
        if self._relay is None:
            self._relay = ""
            if self._fg is not None and not self.shell:
                for proc in self._fg.others:
                    inner = shell_of(proc)
                    if inner and interactive_shell(proc) and reads_terminal(proc.pid):
                        self._relay = inner
                        break
        return self._relay


def foreground_of(state: PaneState) -> Who:
    fg = state.procs
    who = Who(fg)
    extra = extra_agents()
    if fg is not None and fg.group:
        group = list(fg.group)
    else:
        name = state.foreground or state.current_command
        group = [Proc(0, 0, 0, 0, os.path.basename(name), (name,) if name else ())]
    leader = who.leader = group[0]
    for proc in group:
        base = stem(proc.comm.split(".")[0])  # vim.basic, nvim.appimage
        if not who.blocker and (proc.comm in NOT_AN_INPUT or base in NOT_AN_INPUT):
            who.blocker = proc.comm
        if not who.agent:
            hit = agent_of(proc, extra)
            if hit:
                who.agent, who.agent_proc = hit, proc
    named = leader
    leader_shell = shell_of(leader)
    if leader_shell and len(group) > 1 and not interactive_shell(leader):
        # a shell running a command in the foreground (a script, `bash -c "prog; exec
        # bash"`): it reads the terminal again once the command ends
        who.under = leader_shell
        named = group[-1]
    else:
        who.shell = leader_shell
        who.interactive = bool(leader_shell) and interactive_shell(leader)
        if stem(leader.comm) in WRAPPERS and len(group) > 1:
            named = group[-1]
    who.named = named
    who.program = program_name(named) or state.current_command or "an unknown program"
    pane = fg.pane if fg is not None else None
    if pane is not None and pane.pid != leader.pid:
        who.parent_shell = shell_of(pane)
        who.under = who.parent_shell or who.under
    return who


def opted_in(state: PaneState, who: Who, words: frozenset[str] | None = None) -> bool:
    """Does the window's @agent-accept (or the given words) take this program? Never a
    shell, pager or editor, and never a shell's typeahead: while a shell waits under the
    program, only a program that reads its own keys (raw terminal) and passes none to
    another shell. `any` leaves out remote and nested terminals (ssh, tmux, ...)."""
    if who.shell or who.blocker or who.program in NOT_AN_INPUT or who.relay:
        return False
    if typeahead(state, who):
        return False
    words = state.accept_words if words is None else words
    names = names_of(who.named) if who.named is not None else {who.program}
    wanted = words | {stem(w) for w in words}
    if wanted & names:
        return True
    return "any" in words and not names & RELAYS


def typeahead(state: PaneState, who: Who) -> bool:
    """Would typed text wait for a shell rather than go to the program? So while a shell
    waits under a program that does not read its own keys (raw terminal). Without /proc
    (state.procs None: macOS, the BSDs) nothing shows whether a shell waits under the
    foreground, so a terminal in line mode (nobody reads keys) counts as that."""
    if who.under:
        return state.tty_mode != "raw"
    return state.procs is None and state.tty_mode == "line"
