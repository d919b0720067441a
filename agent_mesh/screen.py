"""Terminal text: the one parser of escape sequences, and what is built on it.

`sequence_end` finds where an escape sequence (CSI, OSC/DCS/... strings, `ESC x`,
their C1 forms) ends and whether it sets colours (SGR). errors.printable drops or
keeps those sequences for text shown on a terminal; `parse_screen` turns a
`capture-pane -e` screen into rows of cells, each knowing whether it is drawn faint.
A leaf at the bottom layer, imported by errors.py on every path: stdlib only, and
unicodedata only when a screen with non-ASCII text is parsed.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every path an import
    from collections.abc import Iterator

__all__ = ["ESCAPE", "SGR", "TEXT", "Cell", "parse_screen", "plain", "sequence_end", "tokens"]

_ESC = "\x1b"
_STRING_INTRO = "]PX^_"  # OSC, DCS, SOS, PM, APC: run until BEL or ST
_C1_CSI, _C1_STRING = "\x9b", "\x9d\x90\x98\x9e\x9f"
INTRO = _ESC + _C1_CSI + _C1_STRING  # a character that starts an escape sequence
_STRING_END, _ST = "\x07\x9c", "\x1b\\"  # BEL or C1 ST; ESC \\
_SGR_PARAMS = "0123456789;:"


def sequence_end(text: str, i: int) -> tuple[int, str | None]:
    """For an escape sequence starting at text[i] (a character in INTRO): the index just
    past it, and its parameters when it is a colour sequence (`ESC [ 1;31 m`), else None.

    CSI runs to one final byte; string sequences to BEL or ST; `ESC ( B` and kin take
    intermediates, then a final; any other `ESC x` is two characters. A sequence cut
    off by the end of the text ends there."""
    n = len(text)
    ch = text[i]
    i += 1
    if ch == _ESC:
        if i >= n:
            return n, None
        kind = text[i]
        i += 1
    else:
        kind = "[" if ch == _C1_CSI else "]"
    if kind == "[":  # parameters and intermediates up to one final byte
        start = i
        while i < n and not "\x40" <= text[i] <= "\x7e":
            i += 1
        if i < n and text[i] == "m" and ch == _ESC and not text[start:i].strip(_SGR_PARAMS):
            return i + 1, text[start:i]
        return min(i + 1, n), None
    if kind in _STRING_INTRO:
        while i < n and text[i] not in _STRING_END and text[i:i + 2] != _ST:
            i += 1
        return min(i + (2 if text[i:i + 2] == _ST else 1), n), None
    if "\x20" <= kind <= "\x2f":
        while i < n and "\x20" <= text[i] <= "\x2f":
            i += 1
        return min(i + 1, n), None
    return i, None


TEXT, SGR, ESCAPE = 0, 1, 2  # what a run of `tokens` is


def tokens(text: str) -> Iterator[tuple[str, int]]:
    """text as runs of plain characters (TEXT) and whole escape sequences: colour ones
    (SGR, parameters at run[2:-1]) and any other (ESCAPE). The one reader of escapes."""
    start = i = 0
    n = len(text)
    while i < n:
        if text[i] in INTRO:
            if i > start:
                yield text[start:i], TEXT
            end, params = sequence_end(text, i)
            yield text[i:end], ESCAPE if params is None else SGR
            start = i = end
        else:
            i += 1
    if start < n:
        yield text[start:], TEXT


# --- a screen as cells ---------------------------------------------------------------

class Cell:
    """A screen cell: its character and whether it is drawn faint. A slotted class, not a
    namedtuple: errors imports this module, and `collections` would cost every hot path."""

    __slots__ = ("char", "faint")

    def __init__(self, char: str, faint: bool) -> None:
        self.char = char
        self.faint = faint

    def __repr__(self) -> str:
        return f"Cell({self.char!r}, {self.faint})"


def parse_screen(screen: str) -> list[list[Cell]]:
    """Rows of cells from `capture-pane -e`, tracking whether each is drawn faint.

    Faint means SGR 2, bright black (90), or a grey 256-colour / true-colour
    foreground: what TUIs use for placeholders and suggestions. A wide character
    takes two cells, the second one empty.
    """
    rows: list[list[Cell]] = []
    for line in screen.split("\n"):
        cells: list[Cell] = []
        faint_attr = grey_fg = False
        for run, kind in tokens(line):
            if kind == SGR:
                faint_attr, grey_fg = _apply_sgr(run[2:-1], faint_attr, grey_fg)
                continue
            if kind == ESCAPE:
                continue
            faint = faint_attr or grey_fg
            if run.isascii():  # no wide characters: the common case, at C speed
                cells.extend([Cell(ch, faint) for ch in run])
                continue
            from unicodedata import east_asian_width  # only here, and only for non-ASCII

            for ch in run:
                cells.append(Cell(ch, faint))
                if east_asian_width(ch) in ("W", "F"):
                    cells.append(Cell("", faint))  # the wide char's second column
        rows.append(cells)
    return rows


def plain(cells: list[Cell]) -> str:
    """A row's characters, faint or not."""
    return "".join(c.char for c in cells)


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
