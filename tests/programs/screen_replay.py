#!/usr/bin/env python3
"""Replays a captured agent screen in a real terminal and logs every byte it is sent.

    screen_replay.py LOG SCREEN [AFTER_ESCAPE [any]]

SCREEN and AFTER_ESCAPE are fixture stems (tests/fixtures/screens/<stem>.ansi and
.json, or a path without the suffix): the screen is drawn with its SGR attributes
and the cursor put where the real program had it; bracketed paste is turned on,
as the real agents do. Every byte read from the terminal is appended to LOG
(hex, one read per line). An Escape switches to AFTER_ESCAPE when given (a
dialog that Escape closes); with `any`, the first input of any kind does (a
dialog that opens while a message is being pasted). Link this file under an
agent's name (`claude`): the readiness check recognises the script an
interpreter runs.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import tty

SCREENS = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "fixtures", "screens")


def draw(stem: str) -> None:
    base = stem if os.sep in stem else os.path.join(SCREENS, stem)
    with open(f"{base}.ansi", encoding="utf-8") as fh:
        rows = fh.read().split("\n")
    with open(f"{base}.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    cursor_y = meta["cursor_y"]
    while len(rows) > cursor_y + 1 and not rows[-1].strip():
        rows.pop()  # blank rows below: the pane may be shorter than the capture
    height = os.get_terminal_size(sys.stdout.fileno()).lines
    drop = max(0, len(rows) - height)
    rows, cursor_y = rows[drop:], cursor_y - drop
    out = "\x1b[?2004h\x1b[H\x1b[2J" + "\r\n".join(rows) + "\x1b[0m"
    out += f"\x1b[{cursor_y + 1};{meta['cursor_x'] + 1}H"
    sys.stdout.write(out)
    sys.stdout.flush()


def main() -> int:
    log, screen = sys.argv[1], sys.argv[2]
    after = sys.argv[3] if len(sys.argv) > 3 else ""
    on_any = len(sys.argv) > 4 and sys.argv[4] == "any"
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        draw(screen)
        while True:
            data = os.read(fd, 65536)
            if not data:
                return 0
            with open(log, "a", encoding="ascii") as fh:
                fh.write(data.hex() + "\n")
            if after and (on_any or data == b"\x1b"):
                draw(after)
                after = ""
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
