"""Is it safe to type into this pane right now, and what is it doing?

`classify(state)` says what a pane shows: an agent `idle`, `working`, `drafting`
or `waiting` for an answer, a `shell` at its prompt, a `running` program, or
`dead`. `refusal(state)` turns that into the delivery rule: a one-line reason to
refuse (exit 3), or None. Only a known agent (receivers.AGENTS, recognised from
the terminal's foreground process group in /proc, else tmux's view) with an
empty input is delivered to, unless the window opts in with `@agent-accept`
(`<program>`, `any`, or `shell`). The screen is read with its attributes: an
idle agent's input box often shows faint placeholder text, which is not a
draft, while a real draft may sit either side of the cursor (Home pressed) or
continue on the rows below the prompt glyph.
"""

from __future__ import annotations

import os
import unicodedata
from collections import namedtuple

from agent_mesh.model import Frozen
from agent_mesh.procs import Foreground, Proc, readline_vi_command, reads_terminal
from agent_mesh.receivers import (
    AGENTS,
    NOT_AN_INPUT,
    RELAYS,
    SHELLS,
    WRAPPERS,
    agent_of,
    extra_agents,
    interactive_shell,
    names_of,
    program_name,
    shell_of,
    stem,
)

__all__ = ["PaneState", "PaneStatus", "classify", "refusal", "unforceable"]

# Prompt ends: a shell's `$ # %`, REPLs' `> >>>`, agent TUIs' `❯ › »`.
_PROMPT_GLYPHS = frozenset("$#%>❯›»")
_TUI_GLYPHS = frozenset("❯›»>")
_SPACES = frozenset(" \u00a0\t")
_RULE_CHARS = frozenset("─━═-")
# Characters that frame an input box rather than belong to a draft.
_FRAME = frozenset("│┃║|╭╮╰╯┌┐└┘")


# A screen cell: (character, drawn faint?). A namedtuple, not a class: a screen
# has thousands of them and a tuple is the cheapest object to build.
Cell = namedtuple("Cell", ("char", "faint"))


class PaneState(Frozen):
    """What tmux says about a pane, its visible screen with SGR escapes, and (on Linux)
    the processes in its terminal's foreground group."""

    FIELDS = (
        "pane_id", "dead", "in_mode", "mode", "cursor_x", "cursor_y", "cursor_visible",
        "alternate_on", "current_command", "pane_pid", "width", "accept", "screen", "foreground",
        "procs", "target", "socket", "bracketed", "window_id", "tty_mode",
    )
    __slots__ = FIELDS
    pane_id: str
    dead: bool
    in_mode: bool
    mode: str
    cursor_x: int
    cursor_y: int
    cursor_visible: bool
    alternate_on: bool
    current_command: str
    pane_pid: int
    width: int
    accept: str
    screen: str
    foreground: str
    procs: Foreground | None
    target: str
    socket: str
    bracketed: str
    window_id: str
    tty_mode: str

    def __init__(self, pane_id: str, dead: bool = False, in_mode: bool = False, mode: str = "",
                 cursor_x: int = 0, cursor_y: int = 0, cursor_visible: bool = True,
                 alternate_on: bool = False, current_command: str = "", pane_pid: int = 0,
                 width: int = 0, accept: str = "", screen: str = "",
                 foreground: str = "", procs: Foreground | None = None, target: str = "",
                 socket: str = "", bracketed: str = "", window_id: str = "",
                 tty_mode: str = "") -> None:
        self._set(pane_id=pane_id, dead=dead, in_mode=in_mode, mode=mode, cursor_x=cursor_x,
                  cursor_y=cursor_y, cursor_visible=cursor_visible, alternate_on=alternate_on,
                  current_command=current_command, pane_pid=pane_pid, width=width,
                  accept=accept, screen=screen, foreground=foreground, procs=procs,
                  target=target, socket=socket, bracketed=bracketed, window_id=window_id,
                  tty_mode=tty_mode)

    @property
    def accept_words(self) -> frozenset[str]:
        return frozenset(self.accept.replace(",", " ").split())


class PaneStatus(Frozen):
    """What a pane is doing. kind: idle, working, drafting, waiting, shell, running, dead.
    program: the agent or program in the foreground; detail: one line (the question
    asked, the draft seen, what shows it is busy). agent: a known agent TUI. under: for
    a pane in a tmux mode (`waiting` until someone leaves it), the status of what runs
    under the mode; None otherwise."""

    FIELDS = ("kind", "program", "detail", "agent", "under")
    __slots__ = FIELDS
    kind: str
    program: str
    detail: str
    agent: str
    under: PaneStatus | None

    def __init__(self, kind: str, program: str = "", detail: str = "", agent: str = "",
                 under: PaneStatus | None = None) -> None:
        self._set(kind=kind, program=program, detail=detail, agent=agent, under=under)


NO_INPUT_BOX = "no input box on screen"
DEAD_REASON = "its pane is dead (the program exited; respawn it with tmux respawn-pane)"
NO_BRACKETED_PASTE = (
    "{program} has not enabled bracketed paste, so each line of a multi-line message would "
    "be submitted on its own; send it as one line"
)


# --- who is in the foreground -----------------------------------------------


class _Who:
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


def _who(state: PaneState) -> _Who:
    fg = state.procs
    who = _Who(fg)
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


def _tui_seen(state: PaneState, rows: list[list[Cell]]) -> bool:
    """Is an agent TUI on screen, not just a process with an agent's name? It reads its
    own keys (the terminal is raw) and shows an input row, a prompt at the cursor, a
    question or a known dialog. A `sleep` copied to `forge`, or `forge test`, is not."""
    if state.tty_mode != "raw":
        return False
    row = rows[state.cursor_y] if 0 <= state.cursor_y < len(rows) else []
    return (_input_row(rows) >= 0 or _prompt_end(row[: state.cursor_x]) >= 0
            or bool(find_question(rows)) or bool(detect_modal(state.screen)))


def _hidden_input(state: PaneState, rows: list[list[Cell]]) -> str:
    """The terminal collects a line with echo off: a password or other secret is asked
    (`read -s`, sudo, ssh, getpass), whatever the screen shows."""
    row = _plain(rows[state.cursor_y]).strip() if 0 <= state.cursor_y < len(rows) else ""
    shown = f" ({row[:60]})" if row else ""
    return f"hidden input: a prompt with echo off, such as a password{shown}"


# --- the classifier ---------------------------------------------------------


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
    who = _who(state)
    rows = parse_screen(state.screen)
    if state.tty_mode == "hidden":
        question = _cursor_question(rows, state.cursor_y) or _hidden_input(state, rows)
        return PaneStatus("waiting", who.shell or who.program, question)
    if who.agent:
        name = AGENTS.get(who.agent, who.agent)
        if who.blocker:
            return PaneStatus("running", who.blocker, f"{name} opened {who.blocker}")
        if (not who.under and state.procs is not None) or _tui_seen(state, rows):
            return _agent_status(state, rows, who.agent, name)
        # a shell waits under it (or, without /proc, nothing says none does) and no agent
        # TUI is on screen: a shell job like any other
    at_prompt = who.shell and who.interactive and state.tty_mode != "line"
    question = "" if at_prompt else _cursor_question(rows, state.cursor_y, state.cursor_x,
                                                      state.width)
    if question:
        return PaneStatus("waiting", who.program, question)
    if who.shell and who.interactive:
        draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width,
                           line_editor=True)
        if draft:
            return PaneStatus("drafting", who.shell, draft)
        return PaneStatus("shell", who.shell, "at its prompt")
    if _opted_in(state, who):  # the window accepts this program: read its prompt
        draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width,
                           line_editor=_line_editor(stem(who.program.split(".")[0])))
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
    question = find_question(rows)
    if agent == "aider":
        question = question or _aider_question(rows, state.cursor_y)
    if question:
        return PaneStatus("waiting", name, question, agent)
    if agent == "aider":
        row = rows[state.cursor_y] if 0 <= state.cursor_y < len(rows) else []
        if not state.cursor_visible or _prompt_end(row[: state.cursor_x]) < 0:
            return PaneStatus("working", name, "its answer is streaming (no prompt on screen)",
                              agent)
    if agent in ("claude", "claude-code", "codex") and _input_row(rows) < 0:
        modal = detect_modal(state.screen)
        if modal:
            return PaneStatus("idle", name, f"the {modal} dialog is open", agent)
    draft = find_draft(rows, state.cursor_x, state.cursor_y, width=state.width)
    if not draft and agent != "aider":
        draft = _box_draft(rows)
    if draft:
        return PaneStatus("drafting", name, draft, agent)
    busy = _busy_sign(rows, agent)
    if busy:
        return PaneStatus("working", name, busy, agent)
    if agent in ("claude", "claude-code", "codex") and _input_row(rows) < 0:
        return PaneStatus("working", name, NO_INPUT_BOX, agent)
    return PaneStatus("idle", name, "input empty", agent)


def _busy_sign(rows: list[list[Cell]], agent: str) -> str:
    """What shows an agent is mid-turn, or ''."""
    bottom = [_plain(rows[i]) for i in _nonblank(rows)[-8:]]
    low = [line.lower() for line in bottom]
    for phrase in ("esc to interrupt", "tab to queue message", "esc to cancel"):
        if any(phrase in line for line in low):
            return f"its screen says {phrase!r}"
    if agent in ("claude", "claude-code"):
        for line in bottom:  # the spinner: `✻ Creating… (3s · ↓ 13 tokens)`
            if "… (" in line and "s ·" in line:
                return f"its spinner is on: {line.strip()[:60]!r}"
    if agent == "codex":
        return _codex_busy(rows)
    return ""


def _codex_busy(rows: list[list[Cell]]) -> str:
    """Codex 0.169 shows no busy sign while it streams: a turn is over once its
    `Worked for …` line is drawn (or an interruption `■`). Mid-turn the last thing
    above the input is the answer itself."""
    box = _input_row(rows)
    if box < 0:
        return ""
    for y in range(box - 1, -1, -1):
        text = _plain(rows[y]).strip()
        if not text:
            continue
        if "Worked for" in text or text.startswith("■"):
            return ""
        break
    users = [y for y in range(box) if _plain(rows[y]).startswith("› ")]
    if not users:
        banner = any("OpenAI Codex" in _plain(rows[y]) for y in range(box))
        return "" if banner else "no finished turn on screen"
    last = users[-1]
    if any(_plain(rows[y]).strip().startswith("■") for y in range(last + 1, box)):
        return ""
    return "no `Worked for` line after its last turn yet: the answer is still streaming"


def _input_row(rows: list[list[Cell]]) -> int:
    """The agent's input row: the last `❯ `/`› `/`> ` row that is not a numbered option.
    The glyph may be drawn grey (Claude Code greys it while it works)."""
    for y in range(len(rows) - 1, -1, -1):
        start = _glyph_end(rows[y])
        if start >= 0 and not _option_number(_plain(rows[y][start:]).strip()):
            return y
    return -1


def _glyph_end(cells: list[Cell]) -> int:
    """For a row like `❯ text` (glyph faint or not), the index after the glyph, else -1."""
    for idx, cell in enumerate(cells):
        if cell.char in _SPACES or cell.char in _FRAME or cell.char == "":
            continue
        if cell.char in _TUI_GLYPHS:
            nxt = cells[idx + 1].char if idx + 1 < len(cells) else " "
            if nxt in _SPACES:
                return idx + 1
        return -1
    return -1


def _box_draft(rows: list[list[Cell]]) -> str:
    """Non-faint text in the agent's input box (its row and two-space continuations)."""
    y = _input_row(rows)
    if y < 0:
        return ""
    typed = _draft_text(rows[y][_glyph_end(rows[y]) :])
    if typed:
        return f"a draft in the input box: {typed[:40]!r}"
    for below in rows[y + 1 : y + 12]:
        if _is_rule(below) or not _plain(below).startswith("  "):
            break
        more = _draft_text(below)
        if more:
            return f"a draft in the input box: {more[:40]!r}"
    return ""


# --- questions and dialogs -----------------------------------------------------

# Yes/no answers offered: `[Y/n]`, `(yes/no)`, ssh's `(yes/no/[fingerprint])?`.
_CUES = ("(y/n)", "[y/n]", "(yes/no)", "[yes/no]", "(y)es/(n)o", "[y/n/", "(y/n/", "[y/n]?",
         "(yes/no/", "[yes/no/")
_POINTERS = "❯›>▶►●•*→ \u00a0│"


def _option_number(text: str) -> int:
    """1 for `1. Yes` / `1) Yes` / `❯ 1. Yes`, else 0."""
    text = text.lstrip(_POINTERS)
    digits = ""
    for ch in text:
        if ch.isdigit() and len(digits) < 2:
            digits += ch
            continue
        break
    rest = text[len(digits):]
    if digits and rest[:1] in (".", ")") and rest[1:2] == " " and rest[2:3].strip():
        return int(digits)
    return 0


def find_question(rows: list[list[Cell]]) -> str:
    """A dialog that needs an answer near the bottom of the screen, as one line, or ''.

    Numbered choices (1., 2., ...) with no input row below them, or a yes/no cue
    in the last rows. An answer text that merely contains a numbered list sits
    above the agent's input row and does not count.
    """
    lines = _nonblank(rows)[-16:]
    plain = {y: _plain(rows[y]).strip() for y in lines}
    box = _input_row(rows)
    first = -1
    for k, y in enumerate(lines):
        if (_option_number(plain[y]) == 1 and y > box
                and any(_option_number(plain[z]) == 2 for z in lines[k + 1 : k + 4])):
            first = y
    if first >= 0:
        above = [y for y in lines if y < first][-6:]
        for y in reversed(above):
            if plain[y].endswith("?") or plain[y].endswith(":"):
                return plain[y][:100]
        option = plain[first].lstrip(_POINTERS)
        return f"a choice of numbered options ({option[:60]}, ...)"
    for y in lines[-4:]:
        low = plain[y].lower()
        if y > box and any(cue in low for cue in _CUES):
            return plain[y][:100]
    return ""


def _aider_question(rows: list[list[Cell]], cursor_y: int) -> str:
    """aider asks on the cursor row: `Add file to the chat? (Y)es/(N)o [Yes]: `."""
    if not (0 <= cursor_y < len(rows)):
        return ""
    text = _plain(rows[cursor_y]).strip()
    return text[:100] if ("? (" in text or text.endswith("]:")) and "[" in text else ""


def _cursor_question(rows: list[list[Cell]], cursor_y: int, cursor_x: int = -1,
                     width: int = 0) -> str:
    """A program other than an agent asking on the cursor's line: `[sudo] password for x:`,
    `Enter passphrase for key …:`, `Do you want to continue? [Y/n]`, ssh's
    `… continue connecting (yes/no/[fingerprint])?`, any `…? ` the cursor waits after
    (perhaps with a word typed). The line is read with the rows it wrapped from: ssh's
    question wraps in a pane narrower than 70 columns. A prompt and its draft (`>>> why?`)
    are not a question, and neither is a shell at its own prompt (not asked here).
    cursor_x -1: the cursor is taken to be at the end of the row."""
    if not (0 <= cursor_y < len(rows)):
        return ""
    if cursor_x < 0:
        cursor_x = len(rows[cursor_y])
    line, cx = _logical_line(rows, cursor_x, cursor_y, width)
    text = _plain(line).strip()
    low = text.lower()
    if low.endswith(":") and ("password" in low or "passphrase" in low or "pin" in low.split()):
        return f"a password prompt ({text[:60]})"
    if any(cue in low for cue in _CUES):
        return text[-100:]
    before = _plain(line[:cx]).rstrip()
    head, mark, typed = before.rpartition("?")
    if (mark and head.strip() and not typed.strip().count(" ") and not _plain(line[cx:]).strip()
            and _prompt_end(line[: len(head)]) < 0 and not _continuation(before)):
        return before[-100:]
    return ""


# --- dialogs that are harmless to close ---


# Claude Code dialogs that would eat a message into their own search box; the
# bash tool dismisses them with Escape first (SKIP_DISMISS=1 opts out).
def detect_modal(screen: str) -> str:
    """Which Claude Code dialog is open, or "".

    Escape also interrupts a working agent, so this must not misfire on text that
    merely mentions these words: a dialog replaces the input box, so nothing is
    recognised while an input prompt row is visible, and the markers must be in
    the bottom 20 non-blank rows, where the dialogs are drawn.
    """
    plain = _strip_sgr(screen)
    if find_question(parse_screen(screen)):
        return ""  # a question is never dismissed: Escape there is an answer too
    lines = [line.strip() for line in plain.splitlines() if line.strip()][-20:]
    if any(_is_prompt_row(line) for line in lines[-8:]):
        return ""
    joined = "\n".join(lines)
    if all(word in joined for word in ("Status", "Config", "Usage", "Stats")) and any(
        line.split()[:4] == ["Status", "Config", "Usage", "Stats"] for line in lines if line
    ):
        return "/config"
    if "Help" in lines and any(line.startswith("/") and " " in line for line in lines):
        return "/help"
    if "Permissions" in lines and any(
        line.split()[:1] in (["Allow"], ["Deny"], ["Ask"]) for line in lines if line
    ):
        return "/permissions"
    return ""


def _is_prompt_row(line: str) -> bool:
    """`❯ …`, `› …`, `> …` (or the glyph alone): an agent's input box row."""
    row = line.lstrip("│ ")
    return row[:1] in ("❯", "›", ">") and (len(row) == 1 or row[1] in " \u00a0")


def _strip_sgr(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\x1b" and i + 1 < n and text[i + 1] == "[":
            j = i + 2
            while j < n and not ("@" <= text[j] <= "~"):
                j += 1
            i = j + 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


# --- the delivery rule ----------------------------------------------------------


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
        if kind == "working" and not _queues_mid_turn(status.agent):
            return (f"working: {program} is mid-turn ({status.detail}); a message now would "
                    "cut its turn short")
        return None
    words = state.accept_words
    base = stem(program.split(".")[0])
    who = _who(state)
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
    if not _opted_in(state, who):
        return _unforceable(state, who, status, False) or _not_opted_in(state, who, program)
    draft = find_draft(parse_screen(state.screen), state.cursor_x, state.cursor_y,
                       width=state.width, line_editor=_line_editor(base))
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
    return _unforceable(state, _who(state), status, force or "shell" in state.accept_words)


def _unforceable(state: PaneState, who: _Who, status: PaneStatus, vi_probe: bool) -> str | None:
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
    if _typeahead(state, who):
        shell = who.under or "a shell"
        return (f"its foreground program is {program}, {_job_of(who)}, and nothing "
                f"reads the keys now: {shell} would run the text as a command once "
                f"{program} ends; no opt-in covers that")
    return None


def _typeahead(state: PaneState, who: _Who) -> bool:
    """Would typed text wait for a shell rather than go to the program? So while a shell
    waits under a program that does not read its own keys (raw terminal). Without /proc
    (state.procs None: macOS, the BSDs) nothing shows whether a shell waits under the
    foreground, so a terminal in line mode (nobody reads keys) counts as that."""
    if who.under:
        return state.tty_mode != "raw"
    return state.procs is None and state.tty_mode == "line"


def _job_of(who: _Who) -> str:
    return f"a job of {who.under}" if who.under else "perhaps a shell's job (/proc unreadable)"


def _not_opted_in(state: PaneState, who: _Who, program: str) -> str:
    """Why a program that is no known agent is refused, suggesting an opt-in only when
    that opt-in would make it a receiver."""
    job = f" (a job of {who.under})" if who.under else ""
    what = (f"named like {AGENTS.get(who.agent, who.agent)} but showing no agent screen "
            "(an input box or prompt)") if who.agent else "not a known agent"
    name = _opt_name(who)
    if not _opted_in(state, who, frozenset((name,))):
        return f"its foreground program is {program}{job}, {what}; no opt-in covers it"
    return (f"its foreground program is {program}{job}, {what}; if {program} "
            f"should take messages: {opt_in_command(state, name)}")


def _opted_in(state: PaneState, who: _Who, words: frozenset[str] | None = None) -> bool:
    """Does the window's @agent-accept (or the given words) take this program? Never a
    shell, pager or editor, and never a shell's typeahead: while a shell waits under the
    program, only a program that reads its own keys (raw terminal) and passes none to
    another shell. `any` leaves out remote and nested terminals (ssh, tmux, ...)."""
    if who.shell or who.blocker or who.program in NOT_AN_INPUT or who.relay:
        return False
    if _typeahead(state, who):
        return False
    words = state.accept_words if words is None else words
    names = names_of(who.named) if who.named is not None else {who.program}
    wanted = words | {stem(w) for w in words}
    if wanted & names:
        return True
    return "any" in words and not names & RELAYS


def _vi_command_mode(state: PaneState, who: _Who) -> bool:
    """A shell at its prompt in readline's vi command mode, where pasted text is read as
    commands: bash's own keymap (procs.readline_vi_command), else readline's mode string
    `(cmd)` before the prompt (show-mode-in-prompt). Unknown counts as no."""
    rows = parse_screen(state.screen)
    row = _plain(rows[state.cursor_y]).lstrip() if 0 <= state.cursor_y < len(rows) else ""
    if row.startswith("(cmd)"):
        return True
    leader = who.leader
    if leader is None or leader.pid <= 0 or stem(who.shell) != "bash":
        return False
    return readline_vi_command(leader.pid) is True


def _queues_mid_turn(agent: str) -> bool:
    """Claude Code keeps a message submitted mid-turn and sends it when the turn ends
    (observed on 2.1.197); Codex submits at once and drops its streamed answer, aider
    would glue it to type-ahead: those are refused while working. Codex's Tab queues a
    message mid-turn, but Tab is not used: it could not be checked against the real
    program here, and Tab when the turn has just ended, or with a file popup open,
    does something else."""
    return agent in ("claude", "claude-code")


def _mode_refusal(state: PaneState, status: PaneStatus) -> str:
    """A pane in a tmux mode: the mode would take the keys. FORCE_SEND may leave the mode
    only to deliver where the program under it takes the message anyway; a shell under
    copy mode stays refused (see beneath_refusal)."""
    mode = state.mode or "a tmux mode"
    beneath = beneath_refusal(state, status)
    if beneath is None:
        return f"its pane is in {mode}, which would swallow the text (press q there)"
    leave = f"tmux copy-mode -q -t {_quote(state.target or state.pane_id)}"
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
    who = _who(state)
    if who.agent:
        return False
    if who.shell:
        return "shell" not in state.accept_words
    return not _opted_in(state, who)


def _opt_name(who: _Who) -> str:
    named = who.named
    if named is None:
        return who.program
    name = program_name(named)
    return name if name and name != named.comm else named.comm


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:%@/+,=")


def _quote(word: str) -> str:
    word = "".join(ch for ch in word if ch.isprintable())
    if word and all(ch in _SAFE for ch in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def opt_in_command(state: PaneState, name: str) -> str:
    """The exact command that opts the pane's window in, with its real target."""
    target = state.target or state.pane_id
    server = ""
    if state.socket and os.path.basename(state.socket) != "default":
        server = f" -S {_quote(state.socket)}"
    return f"tmux{server} set -w -t {_quote(target)} @agent-accept {_quote(name)}"


def _line_editor(program: str) -> bool:
    """Shells and REPLs: readline-style prompts with PS2/`...` continuations and wrapping."""
    program = program.lower()
    return program in SHELLS or program.startswith(_REPLS)


_REPLS = ("python", "ipython", "bpython", "ptpython", "pypy")


def _plain(cells: list[Cell]) -> str:
    return "".join(c.char for c in cells)


def _nonblank(rows: list[list[Cell]]) -> list[int]:
    return [y for y, row in enumerate(rows) if any(c.char.strip() for c in row)]


# --- screen parsing ---------------------------------------------------------


def parse_screen(screen: str) -> list[list[Cell]]:
    """Rows of cells from `capture-pane -e`, tracking whether each is drawn faint.

    Faint means SGR 2, bright black (90), or a grey 256-colour / true-colour
    foreground: what TUIs use for placeholders and suggestions.
    """
    rows: list[list[Cell]] = []
    for line in screen.split("\n"):
        cells: list[Cell] = []
        faint_attr = grey_fg = False
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch == "\x1b" and i + 1 < n and line[i + 1] == "[":
                j = i + 2
                while j < n and not ("@" <= line[j] <= "~"):
                    j += 1
                if j < n and line[j] == "m":
                    faint_attr, grey_fg = _apply_sgr(line[i + 2 : j], faint_attr, grey_fg)
                i = j + 1
                continue
            if ch == "\x1b":  # other escapes (e.g. OSC 8 links): skip to the terminator
                j = line.find("\x1b\\", i + 1)
                i = n if j < 0 else j + 2
                continue
            cells.append(Cell(ch, faint_attr or grey_fg))
            if unicodedata.east_asian_width(ch) in ("W", "F"):
                cells.append(Cell("", faint_attr or grey_fg))  # the wide char's second column
            i += 1
        rows.append(cells)
    return rows


def _apply_sgr(params: str, faint: bool, grey: bool) -> tuple[bool, bool]:
    codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")] or [0]
    k = 0
    while k < len(codes):
        code = codes[k]
        if code == 0:
            faint = grey = False
        elif code == 2:
            faint = True
        elif code == 22:
            faint = False
        elif code == 39 or 30 <= code <= 37 or 91 <= code <= 97:
            grey = False
        elif code == 90:
            grey = True
        elif code == 38 and k + 2 < len(codes) and codes[k + 1] == 5:
            grey = _grey_256(codes[k + 2])
            k += 2
        elif code == 38 and k + 4 < len(codes) and codes[k + 1] == 2:
            grey = _grey_rgb(codes[k + 2], codes[k + 3], codes[k + 4])
            k += 4
        k += 1
    return faint, grey


def _grey_256(n: int) -> bool:
    return n in (8, 59, 102, 145) or 236 <= n <= 250


def _grey_rgb(r: int, g: int, b: int) -> bool:
    return max(r, g, b) - min(r, g, b) <= 24 and 60 <= max(r, g, b) <= 190


def _text(cells: list[Cell], include_faint: bool = False) -> str:
    return "".join(c.char for c in cells if include_faint or not c.faint)


def _is_rule(cells: list[Cell]) -> bool:
    text = _text(cells, include_faint=True).strip()
    return len(text) >= 8 and all(ch in _RULE_CHARS for ch in text)


def _prompt_end(cells: list[Cell]) -> int:
    """Index just past the first prompt marker (plus its one space) in a row, or -1.

    A marker is a glyph followed by a space (`$ `, `>>> `, `% `, `❯ `) or by the
    end of the row, or ipython's `]: ` / `...: `. The first one wins: prompts end
    at their first marker far more often than a PS1 holds one in the middle, and
    taking the last would hide a draft that itself ends in `> ` or `$ `.
    """
    for idx, cell in enumerate(cells):
        ch = cell.char
        if cell.faint:
            continue
        marker = ch in _PROMPT_GLYPHS or (ch == ":" and idx > 0 and cells[idx - 1].char in "].")
        if not marker:
            continue
        if idx + 1 >= len(cells):
            return idx + 1
        if cells[idx + 1].char in _SPACES:
            return idx + 2
    return -1


def _draft_text(cells: list[Cell]) -> str:
    return "".join(c.char for c in cells if not c.faint and c.char not in _FRAME).strip(" \u00a0\t")


def _text_after_cursor(cells: list[Cell], column: int, width: int) -> str:
    """Non-faint text right of the cursor, except a right-aligned status (zsh RPROMPT,
    a TUI's hint) that starts well away from the cursor and touches the right edge."""
    lead = 0
    while lead < len(cells) and (cells[lead].char in _SPACES or cells[lead].char == ""):
        lead += 1
    if lead >= 4 and width and column + len(cells) >= width - 2:
        return ""
    return _draft_text(cells)


def _tui_prompt_row(cells: list[Cell]) -> int:
    """For a row like `❯ draft` or `│ > draft │`, the index after the glyph, else -1."""
    for idx, cell in enumerate(cells):
        if cell.char in _SPACES or cell.char in _FRAME or cell.char == "":
            continue
        if cell.char in _TUI_GLYPHS and not cell.faint:
            nxt = cells[idx + 1].char if idx + 1 < len(cells) else " "
            if nxt in _SPACES:
                return idx + 1
        return -1
    return -1


def _logical_line(
    rows: list[list[Cell]], cursor_x: int, cursor_y: int, width: int
) -> tuple[list[Cell], int]:
    """The cursor row joined with the rows it wrapped from, and the cursor's index in it.

    A line editor wraps a long line at the pane width; a row above that is filled to
    the last column continues onto the next one.
    """
    start = cursor_y
    while width and start > 0 and _fills_row(rows[start - 1], width):
        start -= 1
    line: list[Cell] = []
    for y in range(start, cursor_y):
        line.extend(rows[y][:width])
    offset = len(line)
    line.extend(rows[cursor_y])
    return line, offset + cursor_x


def _fills_row(cells: list[Cell], width: int) -> bool:
    return len(cells) >= width and cells[width - 1].char not in _SPACES


def find_draft(
    rows: list[list[Cell]],
    cursor_x: int,
    cursor_y: int,
    width: int = 0,
    line_editor: bool = False,
) -> str:
    """Describe a draft the user is typing, or '' if the input is empty.

    Looks, in order, for a continuation prompt (a REPL's, or a shell's PS2), a prompt on the
    cursor's line with text either side of the cursor, and an agent input box (a
    `❯`/`›` row and its two-space continuation rows) around or, when the cursor
    is parked elsewhere, near the bottom of the screen.
    """
    if not (0 <= cursor_y < len(rows)):
        return ""
    row = rows[cursor_y]
    lead = _text(row, include_faint=True)
    shell_ps2 = line_editor and (lead.startswith("> ") or lead.strip() == ">")
    if shell_ps2 or _continuation(lead):
        return "a continuation prompt: the command or statement above is unfinished"
    line, cx = row, cursor_x
    if line_editor and _prompt_end(row[:cursor_x]) < 0:
        line, cx = _logical_line(rows, cursor_x, cursor_y, width)
    end = _prompt_end(line[:cx])
    after = _text_after_cursor(line[cx:], cursor_x, width)
    if after:
        return f"text right of the cursor: {after[:40]!r}"
    if end >= 0:
        typed = _draft_text(line[end:cx])
        if typed:
            return f"a draft after the prompt: {typed[:40]!r}"
        return _input_box_draft(rows, cursor_y) if _tui_prompt_row(row) >= 0 else ""
    # Agent TUIs: the prompt row above the cursor, inside the input box...
    for y in range(cursor_y - 1, max(-1, cursor_y - 12), -1):
        if _is_rule(rows[y]):
            break
        if _tui_prompt_row(rows[y]) >= 0:
            return _input_box_draft(rows, y)
    # ...or, when the TUI parks its cursor elsewhere, the last glyph row on screen.
    for y in range(len(rows) - 1, max(-1, len(rows) - 16), -1):
        start = _tui_prompt_row(rows[y])
        if start >= 0 and rows[y][start - 1].char in "❯›»":
            return _input_box_draft(rows, y)
    return ""


# mysql/MariaDB `    -> ` (and `'> ` `"> ` `` `> `` `/*> ` inside a quote or comment).
_MYSQL_MORE = ("->", "'>", '">', "`>", "/*>")
# psql's PROMPT2 `db-# ` / `db-> `: the `=` of `db=# ` becomes `-`, or the open quote,
# parenthesis, comment (`*`) or dollar quote.
_PSQL_MORE = frozenset("-'\"(*$")


def _continuation(text: str) -> bool:
    """Does this cursor row start with a REPL's continuation prompt, the sign of an
    unfinished statement that a message would be glued onto (issue 21.16)? Python's
    and node's `... `, IPython's `   ...: `, sqlite3's `   ...> `, mysql's `    -> `,
    psql's `db-# `. (A shell's PS2 `> ` is node's main prompt: see find_draft.)"""
    word = text.lstrip(" \u00a0").split(" ", 1)[0]
    if word in ("...", "...>", "...:") or word in _MYSQL_MORE:
        return True
    name = word[:-2]
    return (len(word) >= 3 and word[-1] in "#>" and word[-2] in _PSQL_MORE
            and all(ch.isalnum() or ch in "_-." for ch in name) and name[:1].isalpha())


def _input_box_draft(rows: list[list[Cell]], y: int) -> str:
    """Text after the glyph on row y, or on its continuation rows down to the rule."""
    typed = _draft_text(rows[y][_tui_prompt_row(rows[y]) :])
    if typed:
        return f"a draft in the input box: {typed[:40]!r}"
    for below in rows[y + 1 : y + 12]:
        if _is_rule(below) or not _text(below, include_faint=True).startswith("  "):
            break
        more = _draft_text(below)
        if more:
            return f"a draft in the input box: {more[:40]!r}"
    return ""
