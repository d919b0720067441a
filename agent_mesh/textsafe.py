"""Text that came from a peer or a message, made safe to print to a terminal.

A peer's slice, a reply or a message body may hold escape sequences: `ESC[2J`
clears the sender's screen, OSC 52 writes its clipboard, bidi overrides make a
line read differently from what it is. Everything such text passes through on
its way to stdout/stderr goes through `printable`. No `re` import: notify-pane's
success line is on the hot path.
"""

from __future__ import annotations

_ESC = "\x1b"
_BEL = "\x07"
# ESC P (DCS), ESC X (SOS), ESC ] (OSC), ESC ^ (PM), ESC _ (APC): strings ended by ST/BEL
_STRING_INTRO = frozenset("PX]^_")
_C1_STRING = frozenset("\x90\x98\x9d\x9e\x9f")
_C1_CSI = "\x9b"
_C1_ST = "\x9c"
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _strippable(ch: str) -> bool:
    code = ord(ch)
    return (code < 0x20 and ch != "\t") or 0x7F <= code <= 0x9F or ch in _BIDI


def printable(text: str) -> str:
    """text without CSI/OSC/DCS sequences (whole), C0 controls but tab, DEL, C1
    controls and bidi overrides; a sequence left unterminated is dropped to the end."""
    if text.isprintable():  # the usual case: nothing to strip (tab is not "printable")
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == _ESC and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "[":
                i = _skip_csi(text, i + 2)
            elif nxt in _STRING_INTRO:
                i = _skip_string(text, i + 2)
            else:  # ESC, intermediates 0x20-0x2F, one final byte (ESC c, ESC ( B, ESC 7)
                i += 1
                while i < n and 0x20 <= ord(text[i]) <= 0x2F:
                    i += 1
                if i < n and 0x30 <= ord(text[i]) <= 0x7E:
                    i += 1
            continue
        if ch == _C1_CSI:
            i = _skip_csi(text, i + 1)
            continue
        if ch in _C1_STRING:
            i = _skip_string(text, i + 1)
            continue
        if not _strippable(ch):
            out.append(ch)
        i += 1
    return "".join(out)


def _skip_csi(text: str, i: int) -> int:
    """Past a CSI's parameter (0x30-0x3F) and intermediate (0x20-0x2F) bytes and its final."""
    n = len(text)
    while i < n and 0x20 <= ord(text[i]) <= 0x3F:
        i += 1
    if i < n and 0x40 <= ord(text[i]) <= 0x7E:
        i += 1
    return i


def _skip_string(text: str, i: int) -> int:
    """Past a control string's body and its terminator (BEL, ESC \\ or C1 ST)."""
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in (_BEL, _C1_ST):
            return i + 1
        if ch == _ESC:
            # ESC \ ends it; any other ESC starts a new sequence, stripped in turn
            return i + 2 if i + 1 < n and text[i + 1] == "\\" else i
        i += 1
    return n


def one_line(text: str) -> str:
    """printable, with line breaks shown as spaces first (a report stays one line)."""
    return printable(" ".join(text.splitlines()))
