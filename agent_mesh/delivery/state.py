"""What a pane is, read once, and what it is doing: the values delivery passes around.

`PaneState` is one read of a pane (delivery/pane.Pane.state: tmux's flags, cursor and
screen with its SGR escapes, and the foreground process group from /proc);
`PaneStatus` is what the classifier (delivery/classify.py) makes of it, and the
delivery rule (delivery/rule.py) turns that into a refusal or None. Here too: the
refusal texts the rule and the paste share.
"""

from __future__ import annotations

from agent_mesh.model import Frozen
from agent_mesh.procs import Foreground
from agent_mesh.screen import Cell, parse_screen

__all__ = ["DEAD_REASON", "NO_BRACKETED_PASTE", "NO_INPUT_BOX", "PaneState", "PaneStatus"]


class PaneState(Frozen):
    """What tmux says about a pane, its visible screen with SGR escapes, and (on Linux)
    the processes in its terminal's foreground group."""

    FIELDS = (
        "pane_id", "dead", "in_mode", "mode", "cursor_x", "cursor_y", "cursor_visible",
        "alternate_on", "current_command", "pane_pid", "width", "accept", "screen", "foreground",
        "procs", "target", "socket", "bracketed", "window_id", "tty_mode", "allow",
    )
    __slots__ = (*FIELDS, "_rows", "_turn")  # _turn: delivery/turns.py hook_for keeps it
    pane_id: str
    dead: bool
    in_mode: bool
    mode: str
    cursor_x: int
    cursor_y: int
    cursor_visible: bool
    alternate_on: bool
    current_command: str
    pane_pid: int
    width: int
    accept: str
    screen: str
    foreground: str
    procs: Foreground | None
    target: str
    socket: str
    bracketed: str
    window_id: str
    tty_mode: str
    allow: str  # the window's (else session's) @agent-allow, read in the same tmux call
    _rows: list[list[Cell]]  # the screen parsed, once it is asked for (rows)
    _turn: object  # the pane's hook record as of this read (delivery/turns.py hook_for)

    def __init__(self, pane_id: str, dead: bool = False, in_mode: bool = False, mode: str = "",
                 cursor_x: int = 0, cursor_y: int = 0, cursor_visible: bool = True,
                 alternate_on: bool = False, current_command: str = "", pane_pid: int = 0,
                 width: int = 0, accept: str = "", screen: str = "",
                 foreground: str = "", procs: Foreground | None = None, target: str = "",
                 socket: str = "", bracketed: str = "", window_id: str = "",
                 tty_mode: str = "", allow: str = "") -> None:
        self._set(pane_id=pane_id, dead=dead, in_mode=in_mode, mode=mode, cursor_x=cursor_x,
                  cursor_y=cursor_y, cursor_visible=cursor_visible, alternate_on=alternate_on,
                  current_command=current_command, pane_pid=pane_pid, width=width,
                  accept=accept, screen=screen, foreground=foreground, procs=procs,
                  target=target, socket=socket, bracketed=bracketed, window_id=window_id,
                  tty_mode=tty_mode, allow=allow)

    @property
    def accept_words(self) -> frozenset[str]:
        return frozenset(self.accept.replace(",", " ").split())

    @property
    def rows(self) -> list[list[Cell]]:
        """The screen as rows of cells (screen.parse_screen), parsed on first use and
        kept: the classifier, the rule and the dialog check all read the same screen,
        and parsing it is most of their time. Read-only, like the state."""
        try:
            return self._rows
        except AttributeError:
            rows = parse_screen(self.screen)
            object.__setattr__(self, "_rows", rows)
            return rows


class PaneStatus(Frozen):
    """What a pane is doing. kind: idle, working, drafting, waiting, shell, running, dead.
    program: the agent or program in the foreground; detail: one line (the question
    asked, the draft seen, what shows it is busy). agent: a known agent TUI. under: for
    a pane in a tmux mode (`waiting` until someone leaves it), the status of what runs
    under the mode; None otherwise."""

    FIELDS = ("kind", "program", "detail", "agent", "under")
    __slots__ = FIELDS
    kind: str
    program: str
    detail: str
    agent: str
    under: PaneStatus | None

    def __init__(self, kind: str, program: str = "", detail: str = "", agent: str = "",
                 under: PaneStatus | None = None) -> None:
        self._set(kind=kind, program=program, detail=detail, agent=agent, under=under)


NO_INPUT_BOX = "no input box on screen"
DEAD_REASON = "its pane is dead (the program exited; respawn it with tmux respawn-pane)"
NO_BRACKETED_PASTE = (
    "{program} has not enabled bracketed paste, so each line of a multi-line message would "
    "be submitted on its own; send it as one line"
)
