"""Replies kept for askers: `~/.agents/mailbox/` and the asks waiting on this host.

`agent-mesh ask` records its question in `~/.agents/asks/<id>.json` (with its pid) and
waits for `~/.agents/mailbox/<id>.*.json`. A reply (`notify-pane ASKER --re ID …`) is
always stored here first, on the asker's host; it is typed into a pane only when the
asker is a pane and no `ask` process is waiting for it. A reply to an asker that is not
a pane (a script, a cron job) is never typed anywhere.
"""

from __future__ import annotations

import json
import os
import time

from agent_mesh import paths
from agent_mesh.errors import UsageError
from agent_mesh.fsutil import atomic_write
from agent_mesh.model import Envelope
from agent_mesh.procs import alive

_ID_CHARS = frozenset("0123456789abcdef")


def _dir(name: str) -> str:
    return os.path.join(paths.agents_dir(), name)


def check_id(ask_id: str) -> str:
    if not (4 <= len(ask_id) <= 32 and set(ask_id) <= _ID_CHARS):
        raise UsageError(f"bad reply id {ask_id!r}: expected the hex id from the question's tag")
    return ask_id


def new_ask_id() -> str:
    """A short id (4 hex digits) not used by any ask or reply kept on this host."""
    for length in (4, 4, 4, 6, 8):
        candidate = os.urandom(length // 2).hex()
        if not os.path.exists(os.path.join(_dir("asks"), f"{candidate}.json")) and not any(
            n.startswith(candidate + ".") for n in _listdir(_dir("mailbox"))
        ):
            return candidate
    return os.urandom(8).hex()


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def record_ask(ask_id: str, to: str, question: str, timeout: float) -> None:
    record = {"id": ask_id, "to": to, "question": question, "pid": os.getpid(),
              "asked_at": time.time(), "timeout": timeout}
    atomic_write(os.path.join(_dir("asks"), f"{ask_id}.json"), json.dumps(record).encode(),
                 mode=0o600)


def forget_ask(ask_id: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost the hot path an import
        os.unlink(os.path.join(_dir("asks"), f"{check_id(ask_id)}.json"))
    except FileNotFoundError:
        pass


def asker_waiting(ask_id: str) -> bool:
    """Is an `agent-mesh ask` on this host still waiting for this id?"""
    try:
        with open(os.path.join(_dir("asks"), f"{check_id(ask_id)}.json"), encoding="utf-8") as fh:
            pid = int(json.load(fh).get("pid", 0))
    except (OSError, ValueError, AttributeError, UsageError):
        return False
    return alive(pid)


def store_reply(envelope: Envelope) -> str:
    """Keep a reply for its asker (atomic, 0600); returns the file written."""
    ask_id = check_id(envelope.re)
    record = {"id": ask_id, "from": envelope.sender, "at": envelope.timestamp,
              "received_at": time.time(), "body": envelope.body, "msg_id": envelope.msg_id}
    path = os.path.join(_dir("mailbox"), f"{ask_id}.{time.time_ns():020d}.json")
    atomic_write(path, json.dumps(record).encode(), mode=0o600)
    return path


def replies(ask_id: str) -> list[dict[str, object]]:
    """Every reply kept for ask_id, oldest first."""
    out = []
    folder = _dir("mailbox")
    for name in _listdir(folder):
        if name.startswith(f"{check_id(ask_id)}.") and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    record = json.load(fh)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                out.append(record)
    return out
