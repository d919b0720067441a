"""Message text: what a paste may carry, decided in one place for the sender's
preview and for the delivery itself (so the preview shows what arrives).

Text that is not valid Unicode is refused. Characters that could escape the
bracketed paste, act as a key, or make the text read otherwise than it is are
removed and counted (the sender is told how many): ESC and the other C0 controls
but tab and newline, DEL, C1, and the bidirectional controls (U+202A-202E,
U+2066-2069, U+200E/F, U+061C: a right-to-left override makes `txt.exe` show as
`exe.txt`). CRLF and lone CR become LF. On the hot path: it imports only errors.
"""

from __future__ import annotations

from agent_mesh.errors import BIDI, UsageError

_REMOVED = dict.fromkeys(
    [*(i for i in range(0x20) if chr(i) not in "\t\n"), *range(0x7F, 0xA0),
     *map(ord, sorted(BIDI))])


def require_unicode(body: str) -> None:
    """Refuse text that is not valid Unicode (undecodable argv bytes) as a usage error."""
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError("message is not valid UTF-8; refusing to guess what was meant") from exc


def sanitize(body: str) -> tuple[str, int]:
    """(the text as it will be pasted, how many characters were removed)."""
    require_unicode(body)
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    kept = text.translate(_REMOVED)
    return kept, len(text) - len(kept)


_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:%@/+,=")


def shell_quote(word: str) -> str:
    """One word as a POSIX shell reads it back, for a command shown to be copied (an
    opt-in, a corrected command line): quoted unless it is plainly safe, and with
    non-printables dropped so the shown command is what a paste runs. (shlex imports re.)"""
    word = "".join(ch for ch in word if ch.isprintable())
    if word and all(ch in _SHELL_SAFE for ch in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"
