"""A `python3 -q`-style receiver: `input()` with GNU readline at a `>>> ` prompt.

    py_receiver.py LOG

Each submitted line is appended to LOG as `json.dumps(line)` plus a newline.
CPython turns readline's bracketed paste off, so pasted text arrives as typed
keys: a newline submits, a tab completes. The tests only send it what a real
Python prompt can represent (one line, no tabs).
"""

from __future__ import annotations

import json
import readline  # noqa: F401  (line editing, as in the real REPL)
import sys


def main() -> int:
    log = sys.argv[1]
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            return 0
        except KeyboardInterrupt:
            print()
            continue
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    sys.exit(main())
