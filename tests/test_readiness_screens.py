"""The screen heuristics on layouts we cannot run here: real Claude Code and Codex
screens (as described in the notes), ipython, zsh, wrapped drafts. Fast and exact:
each case is a captured-screen string, a cursor position and the expected verdict."""

from __future__ import annotations

import pytest

from agent_mesh.delivery.rule import refusal
from agent_mesh.delivery.state import PaneState
from agent_mesh.screen import parse_screen

DIM, GREY, OFF = "\x1b[2m", "\x1b[38;5;244m", "\x1b[0m"
RULE = "─" * 60
NB = "\u00a0"


def state(screen: str, x: int, y: int, program: str = "claude", width: int = 80,
          accept: str = "") -> PaneState:
    # no /proc here (procs None): an agent is known by its name and its TUI, which reads
    # its own keys (a raw terminal)
    return PaneState(pane_id="%1", cursor_x=x, cursor_y=y, current_command=program,
                     screen=screen, foreground=program, width=width, accept=accept,
                     tty_mode="raw")


def verdict(screen: str, x: int, y: int, **kw: object) -> str | None:
    return refusal(state(screen, x, y, **kw))  # type: ignore[arg-type]


CLAUDE_IDLE = "\n".join([
    "> earlier question about the parser",
    "● Done. The parser now handles tabs.",
    "",
    RULE,
    f"❯{NB}{DIM}Try \"write a test for parser.py\"{OFF}",
    RULE,
    f"  {DIM}? for shortcuts{OFF}",
])
CODEX_IDLE = "\n".join([
    "› earlier prompt",
    "• Ran the tests: 12 passed",
    "",
    f"› {GREY}Ask Codex to do anything{OFF}",
    "",
    f"  {DIM}⏎ send   ⇧⏎ newline   ⌃T transcript   ⌃C quit{OFF}",
])


@pytest.mark.parametrize(
    ("screen", "x", "y"),
    [(CLAUDE_IDLE, 2, 4), (CODEX_IDLE, 2, 3), (CLAUDE_IDLE, 0, 6), (CODEX_IDLE, 0, 5)],
    ids=["claude", "codex", "claude-cursor-parked-below", "codex-cursor-parked-below"],
)
def test_idle_agents_with_placeholders_are_ready(screen: str, x: int, y: int) -> None:
    assert verdict(screen, x, y) is None


def test_claude_box_with_rounded_frame() -> None:
    idle = "\n".join(["╭" + "─" * 40 + "╮", f"│ > {DIM}Try \"edit\"{OFF}" + " " * 30 + "│",
                      "╰" + "─" * 40 + "╯"])
    assert verdict(idle, 4, 1) is None
    draft = idle.replace(f'{DIM}Try "edit"{OFF}', "fix it    ")
    assert "mid-prompt" in (verdict(draft, 10, 1) or "")
    assert "mid-prompt" in (verdict(draft, 4, 1) or "")  # Home pressed


@pytest.mark.parametrize(
    ("rows", "x", "y"),
    [
        ([RULE, f"❯{NB}draft", RULE], 7, 1),
        ([RULE, f"❯{NB}draft", RULE], 2, 1),  # Home: cursor right after the glyph
        ([RULE, f"❯{NB}first", "  second", RULE], 8, 2),
        ([RULE, f"❯{NB}first", "  ", RULE], 2, 2),  # cursor on an empty continuation row
        ([RULE, f"❯{NB}", "  second", RULE], 8, 2),  # first row empty, text below
        (["› draft for codex", "", f"  {DIM}⏎ send{OFF}"], 17, 0),
        (["› draft for codex", "", f"  {DIM}⏎ send{OFF}"], 0, 2),  # cursor parked below
        ([RULE, f"❯{NB}{DIM}Try {OFF}draft", RULE], 12, 1),  # draft after a faint prefix
    ],
    ids=["end", "home", "multi", "empty-row", "second-row-only", "codex", "codex-parked",
         "mixed-faint"],
)
def test_agent_drafts_are_refused(rows: list[str], x: int, y: int) -> None:
    assert "mid-prompt" in (verdict("\n".join(rows), x, y) or "")


@pytest.mark.parametrize(
    ("row", "x", "ready"),
    [
        ("In [3]: ", 8, True),
        ("In [3]: x = 1", 13, False),
        ("In [3]: x = 1", 8, False),  # Home
        ("   ...: ", 8, False),  # continuation
        (">>> ", 4, True),
        (">>> print(1)", 12, False),
        ("... ", 4, False),
    ],
)
def test_python_and_ipython_prompts(row: str, x: int, ready: bool) -> None:
    screen = "Python 3.11\n" + row
    for program in ("python3", "ipython", "python3.11"):
        result = verdict(screen, x, 1, program=program, accept=program)  # opted in
        assert (result is None) == ready, (program, result)
        assert "not a known agent" in (verdict(screen, x, 1, program=program) or "")


@pytest.mark.parametrize(
    ("row", "x", "ready"),
    [
        ("user@host:~/src$ ", 17, True),
        ("user@host:~/src$ ls -la", 23, False),
        ("user@host:~/src$ echo cost $ ", 29, False),  # draft ending in a prompt glyph
        ("user@host:~/src$ echo a >", 25, False),
        ("[user@host src]# ", 17, True),
        ("host% ", 6, True),
        ("~/src> ", 7, True),  # fish
        ("~/src ❯ ", 8, True),  # starship
        ("host% " + " " * 60 + "[main] 10:32", 6, True),  # zsh RPROMPT
        ("host% echo" + " " * 56 + "[main] 10:32", 6, False),  # zsh RPROMPT, Home
        ("> ", 2, False),  # PS2
    ],
)
def test_shell_prompts_opted_in(row: str, x: int, ready: bool) -> None:
    result = verdict("$ ls\nfile\n" + row, x, 2, program="bash", accept="shell")
    assert (result is None) == ready, result


def test_shell_refused_without_opt_in() -> None:
    assert "interactive shell" in (verdict("$ ", 2, 0, program="zsh") or "")


def test_wrapped_draft_with_cursor_on_the_second_row() -> None:
    width = 40
    first = "$ echo " + "x" * (width - 7)
    screen = f"{first}\nyyy"
    assert "mid-prompt" in (verdict(screen, 3, 1, program="bash", accept="shell",
                                    width=width) or "")
    py = ">>> " + "a" * (width - 4) + "\nbbb"
    assert "mid-prompt" in (verdict(py, 3, 1, program="python3", width=width,
                                    accept="python3") or "")


def test_a_full_width_output_line_above_an_empty_prompt_is_not_a_draft() -> None:
    width = 20
    screen = "x" * width + "\n>>> "
    assert verdict(screen, 4, 1, program="python3", width=width, accept="any") is None


@pytest.mark.parametrize("program", ["vim", "vim.basic", "nvim", "less", "man", "htop"])
def test_full_screen_programs_are_not_inputs(program: str) -> None:
    assert "not an agent input" in (verdict("~\n~\n", 0, 0, program=program) or "")


def test_flags_win_over_the_screen() -> None:
    assert "dead" in (refusal(PaneState(pane_id="%1", dead=True)) or "")
    moded = PaneState(pane_id="%1", in_mode=True, mode="copy-mode")
    assert "copy-mode" in (refusal(moded) or "")


def test_sgr_parsing_marks_faint_and_grey_only() -> None:
    rows = parse_screen(
        "a\x1b[2mb\x1b[22mc\x1b[90md\x1b[39me\x1b[38;5;245mf\x1b[38;5;196mg"
        "\x1b[38;2;128;128;128mh\x1b[38;2;255;0;0mi\x1b[0m\x1b]8;;http://x\x1b\\j"
    )
    assert [(c.char, c.faint) for c in rows[0]] == [
        ("a", False), ("b", True), ("c", False), ("d", True), ("e", False), ("f", True),
        ("g", False), ("h", True), ("i", False), ("j", False),
    ]


def test_quoted_output_above_an_idle_prompt_is_not_an_input_box() -> None:
    screen = "> quoted reply line\n> another\n>>> "
    assert verdict(screen, 4, 2, program="python3", accept="python3") is None
    assert verdict("> quoted\n$ ", 2, 1, program="bash", accept="shell") is None


def test_modal_detection_needs_the_dialog_not_just_its_words() -> None:
    """Escape interrupts a working agent: only a real dialog (no input box) counts."""
    from agent_mesh.delivery.prompts import detect_modal

    dialog = "\n".join(["", " Status   Config   Usage   Stats", "", "  Theme  dark", "",
                        "  Esc to exit"])
    assert detect_modal(dialog) == "/config"
    rule = "─" * 40
    transcript_then_box = f"{dialog}\n{rule}\n❯\u00a0\n{rule}\n  ? for shortcuts"
    assert detect_modal(transcript_then_box) == ""
    help_in_output = "Help\n/compact  summarise\n" + "─" * 40 + "\n> \n" + "─" * 40
    assert detect_modal(help_in_output) == ""
    assert detect_modal("Help\n/compact  summarise the conversation\n  Esc to cancel") == "/help"
