"""A fast receiver for large pastes: raw terminal, bracketed paste on, `raw> ` prompt.

    raw_receiver.py LOG

Reads the terminal in raw mode in 64 KiB reads (prompt_toolkit would take minutes
over a 10 MB paste). Inside a bracketed paste everything is text; outside, CR or
LF submits. Each submission is appended to LOG as `json.dumps(text)` + newline.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import tty

START, END = b"\x1b[200~", b"\x1b[201~"


def main() -> int:
    log = sys.argv[1]
    old = termios.tcgetattr(0)
    tty.setraw(0)
    os.write(1, b"\x1b[?2004hraw> ")
    buf, text, in_paste = bytearray(), bytearray(), False
    try:
        while True:
            data = os.read(0, 1 << 16)
            if not data:
                return 0
            buf += data
            i = 0
            while i < len(buf):
                if in_paste:
                    j = buf.find(END, i)
                    if j < 0:  # keep a tail that may be the start of the end marker
                        keep = max(i, len(buf) - len(END) + 1)
                        text += buf[i:keep]
                        i = keep
                        break
                    text += buf[i:j]
                    i, in_paste = j + len(END), False
                elif buf.startswith(START, i):
                    i, in_paste = i + len(START), True
                elif buf[i] == 0x1B and START.startswith(bytes(buf[i:])):
                    break  # maybe a marker cut in two: wait for the rest
                elif buf[i] in (10, 13):
                    with open(log, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(text.decode("utf-8", "replace")) + "\n")
                    text.clear()
                    os.write(1, b"\r\nraw> ")
                    i += 1
                elif buf[i] == 3:  # C-c
                    return 0
                else:
                    text.append(buf[i])
                    i += 1
            del buf[:i]
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, old)


if __name__ == "__main__":
    sys.exit(main())
