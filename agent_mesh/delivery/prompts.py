"""What an input area on a screen shows: prompts, drafts, questions and dialogs.

Read from rows of cells (agent_mesh/screen.parse_screen), each knowing whether it is
drawn faint: an idle agent's input box often shows faint placeholder text, which is not
a draft, while a real draft may sit either side of the cursor (Home pressed) or continue
on the rows below the prompt glyph. Pure functions of a screen: delivery/classify.py
decides what they mean for a program.
"""

from __future__ import annotations

from agent_mesh.receivers import SHELLS
from agent_mesh.screen import Cell, parse_screen, plain

__all__ = ["box_draft", "cursor_question", "cursor_row_question", "detect_modal",
           "find_draft", "find_question", "input_row", "line_editor", "modal_in", "nonblank",
           "prompt_end"]

# Prompt ends: a shell's `$ # %`, REPLs' `> >>>`, agent TUIs' `❯ › »`.
_PROMPT_GLYPHS = frozenset("$#%>❯›»")
_TUI_GLYPHS = frozenset("❯›»>")
_SPACES = frozenset(" \u00a0\t")
_RULE_CHARS = frozenset("─━═-")
# Characters that frame an input box rather than belong to a draft.
_FRAME = frozenset("│┃║|╭╮╰╯┌┐└┘")
_REPLS = ("python", "ipython", "bpython", "ptpython", "pypy")


def line_editor(program: str) -> bool:
    """Shells and REPLs: readline-style prompts with PS2/`...` continuations and wrapping."""
    program = program.lower()
    return program in SHELLS or program.startswith(_REPLS)


def nonblank(rows: list[list[Cell]]) -> list[int]:
    return [y for y, row in enumerate(rows) if any(c.char.strip() for c in row)]


def _is_rule(cells: list[Cell]) -> bool:
    text = plain(cells).strip()
    return len(text) >= 8 and all(ch in _RULE_CHARS for ch in text)


def prompt_end(cells: list[Cell]) -> int:
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


def _glyph_end(cells: list[Cell], faint: bool = True) -> int:
    """For a row like `❯ text` or `│ > text │`, the index after the glyph, else -1.
    faint: a glyph drawn faint counts (Claude Code greys it while it works)."""
    for idx, cell in enumerate(cells):
        if cell.char in _SPACES or cell.char in _FRAME or cell.char == "":
            continue
        if cell.char in _TUI_GLYPHS and (faint or not cell.faint):
            nxt = cells[idx + 1].char if idx + 1 < len(cells) else " "
            if nxt in _SPACES:
                return idx + 1
        return -1
    return -1


def _tui_prompt_row(cells: list[Cell]) -> int:
    """For a row like `❯ draft` or `│ > draft │` with the glyph not faint, the index after
    the glyph, else -1."""
    return _glyph_end(cells, faint=False)


def logical_line(
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


# --- drafts ---------------------------------------------------------------------


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
    lead = plain(row)
    shell_ps2 = line_editor and (lead.startswith("> ") or lead.strip() == ">")
    if shell_ps2 or continuation(lead):
        return "a continuation prompt: the command or statement above is unfinished"
    line, cx = row, cursor_x
    if line_editor and prompt_end(row[:cursor_x]) < 0:
        line, cx = logical_line(rows, cursor_x, cursor_y, width)
    end = prompt_end(line[:cx])
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


def continuation(text: str) -> bool:
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


def input_row(rows: list[list[Cell]]) -> int:
    """The agent's input row: the last `❯ `/`› `/`> ` row that is not a numbered option.
    The glyph may be drawn grey (Claude Code greys it while it works)."""
    for y in range(len(rows) - 1, -1, -1):
        start = _glyph_end(rows[y])
        if start >= 0 and not _option_number(plain(rows[y][start:]).strip()):
            return y
    return -1


def box_draft(rows: list[list[Cell]]) -> str:
    """Non-faint text in the agent's input box (its row and two-space continuations)."""
    y = input_row(rows)
    return _box_text(rows, y, _glyph_end(rows[y])) if y >= 0 else ""


def _input_box_draft(rows: list[list[Cell]], y: int) -> str:
    """Text after the (not faint) glyph on row y, or on its continuation rows."""
    return _box_text(rows, y, _tui_prompt_row(rows[y]))


def _box_text(rows: list[list[Cell]], y: int, start: int) -> str:
    """Text from column `start` of row y, or on its continuation rows down to the rule."""
    typed = _draft_text(rows[y][start:])
    if typed:
        return f"a draft in the input box: {typed[:40]!r}"
    for below in rows[y + 1 : y + 12]:
        if _is_rule(below) or not plain(below).startswith("  "):
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
    lines = nonblank(rows)[-16:]
    texts = {y: plain(rows[y]).strip() for y in lines}
    box = input_row(rows)
    first = -1
    for k, y in enumerate(lines):
        if (_option_number(texts[y]) == 1 and y > box
                and any(_option_number(texts[z]) == 2 for z in lines[k + 1 : k + 4])):
            first = y
    if first >= 0:
        above = [y for y in lines if y < first][-6:]
        for y in reversed(above):
            if texts[y].endswith("?") or texts[y].endswith(":"):
                return texts[y][:100]
        option = texts[first].lstrip(_POINTERS)
        return f"a choice of numbered options ({option[:60]}, ...)"
    for y in lines[-4:]:
        low = texts[y].lower()
        if y > box and any(cue in low for cue in _CUES):
            return texts[y][:100]
    return ""


def cursor_row_question(rows: list[list[Cell]], cursor_y: int) -> str:
    """aider asks on the cursor row: `Add file to the chat? (Y)es/(N)o [Yes]: `."""
    if not (0 <= cursor_y < len(rows)):
        return ""
    text = plain(rows[cursor_y]).strip()
    return text[:100] if ("? (" in text or text.endswith("]:")) and "[" in text else ""


def cursor_question(rows: list[list[Cell]], cursor_y: int, cursor_x: int = -1,
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
    line, cx = logical_line(rows, cursor_x, cursor_y, width)
    text = plain(line).strip()
    low = text.lower()
    if low.endswith(":") and ("password" in low or "passphrase" in low or "pin" in low.split()):
        return f"a password prompt ({text[:60]})"
    if any(cue in low for cue in _CUES):
        return text[-100:]
    before = plain(line[:cx]).rstrip()
    head, mark, typed = before.rpartition("?")
    if (mark and head.strip() and not typed.strip().count(" ") and not plain(line[cx:]).strip()
            and prompt_end(line[: len(head)]) < 0 and not continuation(before)):
        return before[-100:]
    return ""


# Claude Code dialogs that would eat a message into their own search box; the
# bash tool dismisses them with Escape first (SKIP_DISMISS=1 opts out).
def detect_modal(screen: str) -> str:
    """Which Claude Code dialog is open, or "".

    Escape also interrupts a working agent, so this must not misfire on text that
    merely mentions these words: a dialog replaces the input box, so nothing is
    recognised while an input prompt row is visible, and the markers must be in
    the bottom 20 non-blank rows, where the dialogs are drawn.
    """
    return modal_in(parse_screen(screen))


def modal_in(rows: list[list[Cell]]) -> str:
    """detect_modal for a screen already parsed (PaneState.rows)."""
    if find_question(rows):
        return ""  # a question is never dismissed: Escape there is an answer too
    lines = [text for text in (plain(row).strip() for row in rows) if text][-20:]
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
