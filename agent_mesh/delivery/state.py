"""Is it safe to type into this pane right now?

`refusal(state)` returns a one-line reason to refuse (exit 3), or None. It reads
tmux's pane flags, the foreground process (from /proc, else tmux's view) and the
visible screen with its attributes: an idle agent's input box often shows faint
placeholder text, which is not a draft, while a real draft may sit either side
of the cursor (Home pressed) or continue on the rows below the prompt glyph.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections import namedtuple

from agent_mesh.model import Frozen

SHELLS = frozenset({"bash", "zsh", "fish", "sh", "dash", "ksh", "mksh", "tcsh", "csh", "ash"})
NOT_AN_INPUT = frozenset(
    {"vi", "vim", "nvim", "nano", "emacs", "less", "more", "most", "man", "top", "htop", "watch"}
)
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
    """What tmux says about a pane, plus its visible screen with SGR escapes."""

    FIELDS = (
        "pane_id", "dead", "in_mode", "mode", "cursor_x", "cursor_y", "cursor_visible",
        "alternate_on", "current_command", "pane_pid", "width", "accept", "screen", "foreground"
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

    def __init__(self, pane_id: str, dead: bool = False, in_mode: bool = False, mode: str = "",
                 cursor_x: int = 0, cursor_y: int = 0, cursor_visible: bool = True,
                 alternate_on: bool = False, current_command: str = "", pane_pid: int = 0,
                 width: int = 0, accept: str = "", screen: str = "",
                 foreground: str = "") -> None:
        self._set(pane_id=pane_id, dead=dead, in_mode=in_mode, mode=mode, cursor_x=cursor_x,
                  cursor_y=cursor_y, cursor_visible=cursor_visible, alternate_on=alternate_on,
                  current_command=current_command, pane_pid=pane_pid, width=width,
                  accept=accept, screen=screen, foreground=foreground)

    @property
    def accepts_shell(self) -> bool:
        return "shell" in self.accept.replace(",", " ").split()


def refusal(state: PaneState) -> str | None:
    """Why the pane must not be typed into now, or None when it is ready."""
    if state.dead:
        return DEAD_REASON
    if state.in_mode:
        mode = state.mode or "a tmux mode"
        return f"its pane is in {mode}, which would swallow the text (press q there)"
    program = os.path.basename(state.foreground or state.current_command)
    base = program.split(".")[0]  # vim.basic, nvim.appimage
    if base in NOT_AN_INPUT:
        return f"its foreground program is {program}, not an agent input"
    rows = parse_screen(state.screen)
    draft = find_draft(
        rows, state.cursor_x, state.cursor_y, width=state.width, line_editor=_line_editor(base)
    )
    if draft:
        return f"it looks mid-prompt ({draft})"
    if base in SHELLS and not state.accepts_shell:
        return (
            f"it is an interactive shell ({base}) at its prompt, where a message would run "
            "as a command; opt in with: tmux set -w -t <target> @agent-accept shell"
        )
    return None


DEAD_REASON = "its pane is dead (the program exited; respawn it with tmux respawn-pane)"


def _line_editor(program: str) -> bool:
    """Shells and REPLs: readline-style prompts with PS2/`...` continuations and wrapping."""
    return program in SHELLS or program.startswith(_REPLS)


_REPLS = ("python", "ipython", "bpython", "ptpython", "pypy")


def foreground_program(pane_pid: int) -> str:
    """Name of the process group leader in the pane's terminal foreground ('' if unknown).

    On Linux two small /proc reads (the pane process's tpgid, then that group
    leader's comm) give the kernel's answer without importing psutil, whose import
    alone costs more than a delivery. Elsewhere '' makes the caller use tmux's
    pane_current_command, which tmux computes the same way (tcgetpgrp on the pty
    master, which only tmux holds: psutil cannot ask a terminal that is not the
    caller's controlling one).
    """
    if pane_pid <= 0 or not sys.platform.startswith("linux"):
        return ""
    try:
        with open(f"/proc/{pane_pid}/stat", "rb") as fh:
            stat = fh.read()
        tpgid = int(stat[stat.rindex(b")") + 2 :].split()[5])  # field 8: tpgid
        if tpgid <= 0:
            return ""
        with open(f"/proc/{tpgid}/comm", "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError, IndexError):
        return ""


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

    Looks, in order, for a continuation prompt (line editors), a prompt on the
    cursor's line with text either side of the cursor, and an agent input box (a
    `❯`/`›` row and its two-space continuation rows) around or, when the cursor
    is parked elsewhere, near the bottom of the screen.
    """
    if not (0 <= cursor_y < len(rows)):
        return ""
    row = rows[cursor_y]
    lead = _text(row, include_faint=True)
    if line_editor:
        continuation = lead.startswith(("... ", "> ")) or lead.strip() in ("...", ">")
        if continuation or lead.lstrip().startswith("...:"):
            return "a continuation line of a multi-line command"
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
