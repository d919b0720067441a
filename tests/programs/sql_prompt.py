"""A stand-in for the psql and mysql clients' prompts (no database server here).

    sql_prompt.py LOG psql|mysql

Reads lines through readline (raw mode, as the real clients do) with the client's prompt:
psql `postgres=# `, then `postgres-# ` (or `postgres'# ` inside a quote) while the
statement has no `;`; mysql `mysql> `, then `    -> ` (or `    '> `). Each finished
statement is appended to LOG as one JSON string, so a test sees what would have run.
"""

from __future__ import annotations

import json
import readline  # noqa: F401 - line editing, raw mode, as the real clients
import sys


def prompts(style: str) -> tuple[str, str, str]:
    """(main prompt, continuation prompt, continuation inside a quote)."""
    if style == "psql":
        return "postgres=# ", "postgres-# ", "postgres'# "
    return "mysql> ", "    -> ", "    '> "


def main() -> None:
    log, style = sys.argv[1], sys.argv[2]
    first, more, quoted = prompts(style)
    pending: list[str] = []
    while True:
        text = "\n".join(pending)
        prompt = first if not pending else quoted if text.count("'") % 2 else more
        try:
            line = input(prompt)
        except EOFError:
            return
        pending.append(line)
        statement = "\n".join(pending)
        if statement.rstrip().endswith(";") and not statement.count("'") % 2:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(statement) + "\n")
            pending = []


if __name__ == "__main__":
    main()
