"""A stand-in for an agent TUI (Claude Code / Codex style) for delivery tests.

    agent_tui.py LOG [--prompt GLYPH] [--placeholder-style dim|grey] [--paste-window S]
                     [--start-delay S]

Layout, as measured on the real TUIs (see the notes on tmux facts):

    ● ready                                  transcript (earlier messages above)
    ────────────────────────────────────
    ❯ Try "fix the failing test"             glyph + U+00A0, faint placeholder when empty
    ────────────────────────────────────
      ? for shortcuts                        faint hint

A multi-line draft continues on rows indented two spaces. Bracketed paste is on
(prompt_toolkit enables it). The behaviour that matters for delivery is modelled
too: an Enter that arrives within --paste-window seconds (default 0.15) of any
other input, typed or pasted, is inserted as a newline instead of submitting, as
ink/ratatui TUIs do when they take fast input for a paste. Arrival time is taken
when the bytes are read from the terminal, not when the key is handled, so a slow
render of a large paste does not turn a late Enter into an early one.

On submit the text is appended to LOG as `json.dumps(text)` plus a newline, the
box is cleared and a short echo goes to the transcript.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input.vt100 import Vt100Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.layout.screen import Char
from prompt_toolkit.styles import Style

# prompt_toolkit draws U+00A0 as an underlined plain space; the real TUI draws
# the NBSP itself after its glyph, and readiness checks must see that byte.
Char.display_mappings.pop("\xa0", None)

# Keys the terminal sends on its own (cursor position reports and the like):
# not user input, so they must not count as "input just before the Enter".
_NOT_USER_INPUT = frozenset({Keys.CPRResponse, Keys.Ignore})


class StampedInput(Vt100Input):
    """Vt100 input that stamps each key with its read time and the previous key's."""

    def __init__(self, stdin: Any) -> None:
        super().__init__(stdin)
        self.last_input = 0.0

    def _stamp(self, keys: list[KeyPress]) -> list[KeyPress]:
        now = time.monotonic()
        for key in keys:
            key.arrived = now  # type: ignore[attr-defined]
            key.previous = self.last_input  # type: ignore[attr-defined]
            if key.key not in _NOT_USER_INPUT:
                self.last_input = now
        return keys

    def read_keys(self) -> list[KeyPress]:
        return self._stamp(super().read_keys())

    def flush_keys(self) -> list[KeyPress]:
        return self._stamp(super().flush_keys())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("--prompt", default="❯")
    parser.add_argument("--placeholder-style", choices=("dim", "grey"), default="dim")
    parser.add_argument("--paste-window", type=float, default=0.15)
    parser.add_argument("--start-delay", type=float, default=0.0)  # a slow start: no TUI yet
    opts = parser.parse_args()
    time.sleep(opts.start_delay)

    def rule() -> str:
        return "─" * max(10, shutil.get_terminal_size().columns - 1)

    kb = KeyBindings()

    @kb.add("enter", eager=True)
    def _enter(event: KeyPressEvent) -> None:
        key = event.key_sequence[-1]
        arrived = getattr(key, "arrived", time.monotonic())
        previous = getattr(key, "previous", 0.0)
        if arrived - previous < opts.paste_window:
            event.current_buffer.insert_text("\n")  # taken as part of a paste
        else:
            event.current_buffer.validate_and_handle()

    @kb.add("c-c")
    def _clear(event: KeyPressEvent) -> None:
        event.current_buffer.reset()

    @kb.add("c-d")
    def _quit(event: KeyPressEvent) -> None:
        if not event.current_buffer.text:
            event.app.exit(exception=EOFError)

    def message() -> StyleAndTextTuples:
        return [("class:rule", rule()), ("", "\n"), ("class:glyph", opts.prompt), ("", "\u00a0")]

    def toolbar() -> StyleAndTextTuples:
        return [("class:rule", rule()), ("", "\n"), ("class:hint", "  ? for shortcuts")]

    placeholder_style = "dim" if opts.placeholder_style == "dim" else "fg:#8a8a8a"
    style = Style.from_dict(
        {
            "placeholder": placeholder_style,
            "hint": placeholder_style,
            "rule": "fg:#5f5f87",
            "glyph": "bold",
            "bottom-toolbar": "noreverse",
            "bottom-toolbar.text": "noreverse",
        }
    )
    session: PromptSession[str] = PromptSession(
        message=message,
        multiline=True,
        prompt_continuation=lambda width, line_number, wrap_count: "  ",
        placeholder=[("class:placeholder", 'Try "fix the failing test"')],
        bottom_toolbar=toolbar,
        style=style,
        key_bindings=kb,
        input=StampedInput(sys.stdin),
        erase_when_done=True,
        enable_open_in_editor=True,  # C-x C-e: $EDITOR, as Claude Code's Ctrl-G
    )
    print("● ready", flush=True)
    while True:
        try:
            text = session.prompt()
        except EOFError:
            return 0
        except KeyboardInterrupt:
            continue
        with open(opts.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(text) + "\n")
        first = text.split("\n", 1)[0][:60]
        print(f"> {first}\n● received {len(text)} chars", flush=True)


if __name__ == "__main__":
    sys.exit(main())
