"""The one answer to "what is this pane doing", for delivery and for status.

`classify(state)` says what a pane shows: an agent `idle`, `working`, `drafting` or
`waiting` for an answer, a `shell` at its prompt, a `running` program, or `dead`. A
known agent (receivers.TRAITS, recognised from the foreground group) is read with its
row's signs (busy, dialogs, line prompt); anything else by its prompt, its question,
and whether the window opted it in.
"""

from __future__ import annotations

from agent_mesh.delivery.foreground import foreground_of, opted_in
from agent_mesh.delivery.prompts import (
    box_draft,
    cursor_question,
    cursor_row_question,
    find_draft,
    find_question,
    input_row,
    line_editor,
    modal_in,
    nonblank,
    prompt_end,
)
from agent_mesh.delivery.state import NO_INPUT_BOX, PaneState, PaneStatus
from agent_mesh.receivers import Traits, program_name, stem, traits
from agent_mesh.screen import Cell, plain

__all__ = ["classify"]


def classify(state: PaneState) -> PaneStatus:
    """The one answer to "what is this pane doing", for delivery and for status.

    A pane in a tmux mode (copy mode, a chooser) is `waiting`: someone is at it and the
    mode would take the keys. What runs under the mode is read all the same (tmux
    captures the pane's own screen and cursor, not the mode's view) and kept in
    `under`, so the rules of that program still apply once the mode is left."""
    status = _program_status(state)
    if not state.in_mode or status.kind in ("dead", "waiting"):
        return status
    mode = state.mode or "a tmux mode"
    return PaneStatus("waiting", status.program,
                      f"in {mode} (press q there to leave it); under it: {status.kind}, "
                      f"{status.detail}", status.agent, under=status)


def _program_status(state: PaneState) -> PaneStatus:
    """What the pane's program is doing, whatever tmux mode is over it."""
    if state.dead:
        return PaneStatus("dead", state.current_command, "the program exited")
    who = foreground_of(state)
    rows = state.rows
    if state.tty_mode == "hidden":
        question = cursor_question(rows, state.cursor_y) or _hidden_input(state, rows)
        return PaneStatus("waiting", who.shell or who.program, question)
    if who.agent:
        name = traits(who.agent).shown
        if who.blocker:
            return PaneStatus("running", who.blocker, f"{name} opened {who.blocker}")
        if (not who.under and state.procs is not None) or _tui_seen(state, rows):
            return _agent_status(state, rows, who.agent, name)
        # a shell waits under it (or, without /proc, nothing says none does) and no agent
        # TUI is on screen: a shell job like any other
    at_prompt = who.shell and who.interactive and state.tty_mode != "line"
    question = "" if at_prompt else cursor_question(rows, state.cursor_y, state.cursor_x,
                                                      state.width)
    if question:
        return PaneStatus("waiting", who.program, question)
    if who.shell and who.interactive:
        draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width,
                           line_editor=True)
        if draft:
            return PaneStatus("drafting", who.shell, draft)
        return PaneStatus("shell", who.shell, "at its prompt")
    if opted_in(state, who):  # the window accepts this program: read its prompt
        draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width,
                           line_editor=line_editor(stem(who.program.split(".")[0])))
        if draft:
            return PaneStatus("drafting", who.program, draft)
        return PaneStatus("idle", who.program, "input empty (opted in with @agent-accept)")
    if who.relay:
        detail = f"it runs an interactive {who.relay}"
    elif who.under:
        detail = f"a job of {who.under}"
    elif who.leader is not None and who.named is not who.leader:
        detail = f"run by {program_name(who.leader)}"
    else:
        detail = "the pane's own program"
    return PaneStatus("running", who.program, detail)


def _agent_status(state: PaneState, rows: list[list[Cell]], agent: str, name: str) -> PaneStatus:
    """A known agent's screen, read with its row of receivers.TRAITS."""
    row = traits(agent)
    question = find_question(rows)
    if row.line_prompt:
        question = question or cursor_row_question(rows, state.cursor_y)
    if question:
        return PaneStatus("waiting", name, question, agent)
    if row.line_prompt:
        line = rows[state.cursor_y] if 0 <= state.cursor_y < len(rows) else []
        if not state.cursor_visible or prompt_end(line[: state.cursor_x]) < 0:
            return PaneStatus("working", name, "its answer is streaming (no prompt on screen)",
                              agent)
    no_box = row.input_box and input_row(rows) < 0
    if no_box:
        modal = modal_in(rows)
        if modal:
            return PaneStatus("idle", name, f"the {modal} dialog is open", agent)
    draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width)
    if not draft and not row.line_prompt:
        draft = box_draft(rows)
    if draft:
        return PaneStatus("drafting", name, draft, agent)
    busy = _busy_sign(rows, row)
    if busy:
        return PaneStatus("working", name, busy, agent)
    if no_box:
        return PaneStatus("working", name, NO_INPUT_BOX, agent)
    return PaneStatus("idle", name, "input empty", agent)


def _busy_sign(rows: list[list[Cell]], row: Traits) -> str:
    """What shows an agent is mid-turn, or '': a phrase any agent shows, else its own sign
    (its row's `busy`)."""
    bottom = [plain(rows[i]) for i in nonblank(rows)[-8:]]
    low = [line.lower() for line in bottom]
    for phrase in ("esc to interrupt", "tab to queue message", "esc to cancel"):
        if any(phrase in line for line in low):
            return f"its screen says {phrase!r}"
    if row.busy == "spinner":
        for line in bottom:  # the spinner: `✻ Creating… (3s · ↓ 13 tokens)`
            if "… (" in line and "s ·" in line:
                return f"its spinner is on: {line.strip()[:60]!r}"
    if row.busy == "turn-end":
        return _turn_not_ended(rows)
    return ""


def _turn_not_ended(rows: list[list[Cell]]) -> str:
    """Codex 0.169 shows no busy sign while it streams: a turn is over once its
    `Worked for …` line is drawn (or an interruption `■`). Mid-turn the last thing
    above the input is the answer itself."""
    box = input_row(rows)
    if box < 0:
        return ""
    for y in range(box - 1, -1, -1):
        text = plain(rows[y]).strip()
        if not text:
            continue
        if "Worked for" in text or text.startswith("■"):
            return ""
        break
    users = [y for y in range(box) if plain(rows[y]).startswith("› ")]
    if not users:
        banner = any("OpenAI Codex" in plain(rows[y]) for y in range(box))
        return "" if banner else "no finished turn on screen"
    last = users[-1]
    if any(plain(rows[y]).strip().startswith("■") for y in range(last + 1, box)):
        return ""
    return "no `Worked for` line after its last turn yet: the answer is still streaming"


def _tui_seen(state: PaneState, rows: list[list[Cell]]) -> bool:
    """Is an agent TUI on screen, not just a process with an agent's name? It reads its
    own keys (the terminal is raw) and shows an input row, a prompt at the cursor, a
    question or a known dialog. A `sleep` copied to `forge`, or `forge test`, is not."""
    if state.tty_mode != "raw":
        return False
    row = rows[state.cursor_y] if 0 <= state.cursor_y < len(rows) else []
    return (input_row(rows) >= 0 or prompt_end(row[: state.cursor_x]) >= 0
            or bool(find_question(rows)) or bool(modal_in(rows)))


def _hidden_input(state: PaneState, rows: list[list[Cell]]) -> str:
    """The terminal collects a line with echo off: a password or other secret is asked
    (`read -s`, sudo, ssh, getpass), whatever the screen shows."""
    row = plain(rows[state.cursor_y]).strip() if 0 <= state.cursor_y < len(rows) else ""
    shown = f" ({row[:60]})" if row else ""
    return f"hidden input: a prompt with echo off, such as a password{shown}"
