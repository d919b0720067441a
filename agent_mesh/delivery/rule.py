"""The delivery rule: may a message be typed into this pane now?

`refusal(state)` (or `decide` on a status already classified) gives a one-line reason
to refuse (exit 3), or None. Only a known agent with an empty input is delivered to,
unless the window opts in with `@agent-accept` (`<program>`, `any`, or `shell`).
`unforceable` says what even FORCE_SEND may not do: text a shell would read unseen.
"""

from __future__ import annotations

import os

from agent_mesh.delivery.classify import classify
from agent_mesh.delivery.foreground import Who, foreground_of, opted_in, typeahead
from agent_mesh.delivery.prompts import find_draft, line_editor
from agent_mesh.delivery.state import (
    DEAD_REASON,
    NO_BRACKETED_PASTE,
    NO_INPUT_BOX,
    PaneState,
    PaneStatus,
)
from agent_mesh.procs import readline_vi_command
from agent_mesh.receivers import NOT_AN_INPUT, program_name, stem, traits
from agent_mesh.screen import plain
from agent_mesh.text import shell_quote

__all__ = ["beneath_refusal", "bracketed_paste", "decide", "lasting", "opt_in_command",
           "refusal", "unforceable"]


def refusal(state: PaneState, multiline: bool = False) -> str | None:
    """Why the pane must not be typed into now, or None when it is ready."""
    return decide(state, classify(state), multiline)


def decide(state: PaneState, status: PaneStatus, multiline: bool = False) -> str | None:
    """The delivery rule on top of classify()."""
    kind = status.kind
    if kind == "dead":
        return DEAD_REASON
    if kind == "waiting":
        return _mode_refusal(state, status) if status.under else (
            f"waiting for an answer: {status.detail}")
    program = status.program
    if status.agent:
        if kind == "drafting":
            return f"it looks mid-prompt ({status.detail})"
        if kind == "working" and status.detail == NO_INPUT_BOX:
            # a splash, a confirm screen, a menu not recognised: Enter would answer it
            return (f"{program} shows no input box ({status.detail}); the text and its "
                    "Enter would go to whatever is on screen")
        if kind == "working" and not traits(status.agent).keeps_mid_turn:
            return (f"working: {program} is mid-turn ({status.detail}); a message now would "
                    "cut its turn short")
        return None
    words = state.accept_words
    base = stem(program.split(".")[0])
    who = foreground_of(state)
    if kind in ("shell", "drafting") and who.shell:
        if "shell" not in words:
            return (f"it is an interactive shell ({program}) at its prompt, where a message "
                    "would run as a command; to accept that (every message then runs as a "
                    f"command there): {opt_in_command(state, 'shell')}")
        if kind == "drafting":
            return f"it looks mid-prompt ({status.detail})"
        vi_mode = _unforceable(state, who, status, True)
        if vi_mode:
            return vi_mode
        return NO_BRACKETED_PASTE.format(program=program) if multiline else None
    if program in NOT_AN_INPUT or base in NOT_AN_INPUT or who.blocker:
        blocker = who.blocker or program
        lead = program_name(who.leader) if who.leader is not None else ""
        via = f" (run by {lead})" if lead and lead != blocker else ""
        return f"its foreground program is {blocker}{via}, not an agent input"
    if not opted_in(state, who):
        return _unforceable(state, who, status, False) or _not_opted_in(state, who, program)
    draft = find_draft(state.rows, state.cursor_x, state.cursor_y,
                       width=state.width, line_editor=line_editor(base))
    if draft:
        return f"it looks mid-prompt ({draft})"
    if multiline and state.bracketed != "1":
        return NO_BRACKETED_PASTE.format(program=program)
    return None


def unforceable(state: PaneState, status: PaneStatus, force: bool = False) -> str | None:
    """Why the pane must not be typed into even with FORCE_SEND (besides dead panes and
    questions), or None: the text would go to a shell, unseen and at a moment nobody
    chose: typeahead for a shell waiting under its job, a shell behind a relay such as
    `script`, or a bash in vi command mode, which would take it as editing commands.
    That last costs a look into bash's memory, taken only where the text could reach
    the shell's prompt: a forced send, or a window that accepts `shell`."""
    if status.kind in ("dead", "waiting") or status.agent:
        return None
    return _unforceable(state, foreground_of(state), status, force or "shell" in state.accept_words)


def _unforceable(state: PaneState, who: Who, status: PaneStatus, vi_probe: bool) -> str | None:
    program = status.program
    if status.kind in ("shell", "drafting") and who.shell:
        if vi_probe and _vi_command_mode(state, who):
            return (f"{program} is in vi command mode, where the text would be taken as "
                    "editing commands (`v` opens an editor); press i there first")
        return None
    if who.relay:
        return (f"its foreground program is {program}, which passes what is typed to an "
                f"interactive shell ({who.relay}) that would run it as a command; no opt-in "
                "covers that")
    if typeahead(state, who):
        shell = who.under or "a shell"
        return (f"its foreground program is {program}, {_job_of(who)}, and nothing "
                f"reads the keys now: {shell} would run the text as a command once "
                f"{program} ends; no opt-in covers that")
    return None


def _job_of(who: Who) -> str:
    return f"a job of {who.under}" if who.under else "perhaps a shell's job (/proc unreadable)"


def _not_opted_in(state: PaneState, who: Who, program: str) -> str:
    """Why a program that is no known agent is refused, suggesting an opt-in only when
    that opt-in would make it a receiver."""
    job = f" (a job of {who.under})" if who.under else ""
    what = (f"named like {traits(who.agent).shown} but showing no agent screen "
            "(an input box or prompt)") if who.agent else "not a known agent"
    name = _opt_name(who)
    if not opted_in(state, who, frozenset((name,))):
        return f"its foreground program is {program}{job}, {what}; no opt-in covers it"
    return (f"its foreground program is {program}{job}, {what}; if {program} "
            f"should take messages: {opt_in_command(state, name)}")


def _vi_command_mode(state: PaneState, who: Who) -> bool:
    """A shell at its prompt in readline's vi command mode, where pasted text is read as
    commands: bash's own keymap (procs.readline_vi_command), else readline's mode string
    `(cmd)` before the prompt (show-mode-in-prompt). Unknown counts as no."""
    rows = state.rows
    row = plain(rows[state.cursor_y]).lstrip() if 0 <= state.cursor_y < len(rows) else ""
    if row.startswith("(cmd)"):
        return True
    leader = who.leader
    if leader is None or leader.pid <= 0 or stem(who.shell) != "bash":
        return False
    return readline_vi_command(leader.pid) is True


def _mode_refusal(state: PaneState, status: PaneStatus) -> str:
    """A pane in a tmux mode: the mode would take the keys. FORCE_SEND may leave the mode
    only to deliver where the program under it takes the message anyway; a shell under
    copy mode stays refused (see beneath_refusal)."""
    mode = state.mode or "a tmux mode"
    beneath = beneath_refusal(state, status)
    if beneath is None:
        return f"its pane is in {mode}, which would swallow the text (press q there)"
    leave = f"tmux copy-mode -q -t {shell_quote(state.target or state.pane_id)}"
    return (f"its pane is in {mode}; under the mode: {beneath}; FORCE_SEND does not leave "
            f"a mode to type there (leave it first: {leave})")


def beneath_refusal(state: PaneState, status: PaneStatus) -> str | None:
    """For a pane in a tmux mode: why the program under the mode must not get the message
    (a shell, a draft, a busy agent...), or None when it would take it. Such a refusal
    is final while the mode lasts: someone is at that pane, and FORCE_SEND leaving their
    mode to type into a shell would run the text (issue 21.9)."""
    if status.under is None:
        return None
    return decide(state, status.under)


def bracketed_paste(state: PaneState, status: PaneStatus) -> bool:
    """Will a paste arrive as one paste? Known agents enable mode 2004; for others only
    tmux can say (#{bracketed_paste}, tmux 3.4+), else no."""
    return bool(status.agent) or state.bracketed == "1"


def lasting(state: PaneState, status: PaneStatus) -> bool:
    """Will a refusal here stand until someone changes the pane? True for a shell and a
    shell's job, and for a program that is neither a known agent nor opted in: a queued
    message would wait there for nothing (a question they show is answered into a shell
    or a program that takes no messages either). Not for a known agent in the foreground
    that shows no agent screen yet (its editor or pager open, its TUI still starting at
    a shell's prompt): it becomes ready by itself, and every later check still guards
    the shell under it."""
    if status.agent or status.kind == "dead":
        return False
    who = foreground_of(state)
    if who.agent:
        return False
    if who.shell:
        return "shell" not in state.accept_words
    return not opted_in(state, who)


def _opt_name(who: Who) -> str:
    named = who.named
    if named is None:
        return who.program
    name = program_name(named)
    return name if name and name != named.comm else named.comm


def opt_in_command(state: PaneState, name: str) -> str:
    """The exact command that opts the pane's window in, with its real target."""
    target = state.target or state.pane_id
    server = ""
    if state.socket and os.path.basename(state.socket) != "default":
        server = f" -S {shell_quote(state.socket)}"
    return f"tmux{server} set -w -t {shell_quote(target)} @agent-accept {shell_quote(name)}"
