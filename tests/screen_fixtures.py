"""Load the real agent screens in tests/fixtures/screens/ as PaneStates.

Each `<agent>-<state>.json` holds the cursor, size, alternate screen,
pane_current_command and the foreground process group as captured next to the
`.ansi` screen (`tmux capture-pane -p -e`)."""

from __future__ import annotations

import json
from pathlib import Path

from agent_mesh.delivery.state import PaneState
from agent_mesh.procs import Foreground, Proc

SCREENS = Path(__file__).resolve().parent / "fixtures" / "screens"


def names() -> list[str]:
    return sorted(p.stem for p in SCREENS.glob("*.ansi"))


def load(name: str, accept: str = "") -> PaneState:
    meta = json.loads((SCREENS / f"{name}.json").read_text(encoding="utf-8"))
    screen = (SCREENS / f"{name}.ansi").read_text(encoding="utf-8")
    group = []
    for i, member in enumerate(meta.get("foreground_group", [])):
        pid = int(member.get("pid", 100 + i))
        argv = tuple(member.get("cmdline", "").split()) if member.get("cmdline") else ()
        leader = pid if member.get("leader") else group[0].pid if group else pid
        group.append(Proc(-pid, int(member.get("ppid", 1)), -leader, -leader, member["comm"],
                          argv))
    pane = Proc(-1, 1, -1, group[0].pgrp if group else 0, meta.get("pane_pid_comm", ""))
    return PaneState(
        pane_id="%1",
        cursor_x=int(meta["cursor_x"]),
        cursor_y=int(meta["cursor_y"]),
        cursor_visible=bool(meta.get("cursor_visible", True)),
        alternate_on=bool(meta.get("alternate_screen", False)),
        current_command=meta.get("pane_current_command", ""),
        width=int(meta.get("width", 160)),
        screen=screen,
        foreground=group[0].comm if group else "",
        procs=Foreground(pane, group[0].pgrp if group else 0, tuple(group)),
        target="dev:1",
        accept=accept,
    )
