"""`Group`: several hosts reached at once, one result per host (fabric's Group).

The one place agent-mesh fans out over hosts in threads (tests/test_architecture.py
holds every other module to that): broadcast, status, sync, doctor and the queue,
ask and inbox views all ask their hosts through `Group.each` or `Group.start`.
A host's answer is whatever the function returned for it, or the MeshError it
raised (anything else becomes a WireError naming the host: one broken host never
hides the others' answers). With a deadline, a host that has not answered by then
gets a WireError, its connection is closed (a blocked read returns) and its thread,
a daemon, is abandoned: its late answer is thrown away.

Plain threads of `_thread`, the C module under threading: concurrent.futures costs
~10 ms of imports (logging), and threading ~2.5 ms (functools, collections), a tenth of
a 3-host status's own work. Each host's thread holds a lock until it has answered; a
wait is an acquire of that lock with the time left. Like threading's daemon threads,
they never hold up the process's exit.
"""

from __future__ import annotations

import time

from agent_mesh.errors import MeshError, WireError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every mesh command's path
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    from agent_mesh.mesh.transport import Host

    T = TypeVar("T")


class Running:
    """A fan-out under way (Group.start): collect it with `wait`."""

    def __init__(self, group: Group, fn: Callable[[Host], Any], here: bool) -> None:
        import _thread

        self.started = time.monotonic()
        self._answers: dict[str, Any] = {}
        self._hosts: dict[str, Host] = {}
        self._aliases = group.aliases
        self._connect = group.connect
        self._fn = fn
        self.late: set[str] = set()  # hosts that missed the deadline (after `wait`)
        first = 1 if here else 0
        self._busy: dict[str, Any] = {}  # alias -> its thread's lock, held until it answered
        for alias in self._aliases[first:]:
            busy = self._busy[alias] = _thread.allocate_lock()
            busy.acquire()
            started = _thread.allocate_lock()
            started.acquire()
            _thread.start_new_thread(self._run, (alias, busy, started))
            # As threading's start() does: the thread runs until it waits (its request
            # sent, or on its way), before this one starts the next or its own host.
            started.acquire()
        if here and self._aliases:
            self._one(self._aliases[0])

    def _run(self, alias: str, busy: Any, started: Any) -> None:
        started.release()
        try:
            self._one(alias)
        finally:
            busy.release()

    def _one(self, alias: str) -> None:
        answer: Any
        try:
            host = self._hosts[alias] = self._connect(alias)
            try:
                answer = self._fn(host)
            finally:
                host.close()
        except MeshError as exc:
            answer = exc
        except Exception as exc:  # one broken host must not hide the others' answers
            answer = WireError(f"{alias}: {type(exc).__name__}: {exc}")
        self._answers[alias] = answer

    def wait(self, deadline: float | None = None, why: str = "") -> dict[str, Any]:
        """Every host's answer, in the group's order; with a deadline (seconds since
        the start), a host still busy then answers a WireError (`why`: its hint)."""
        done: set[str] = set()
        for alias, busy in self._busy.items():
            left = -1 if deadline is None else max(0.0, self.started + deadline
                                                   - time.monotonic())
            if busy.acquire(True, left):
                busy.release()
                done.add(alias)
        answers: dict[str, Any] = {}
        self.late = set()
        for alias in self._aliases:
            if alias not in self._busy or alias in done:
                answers[alias] = self._answers[alias]
                continue
            self.late.add(alias)
            late = self._hosts.get(alias)
            if late is not None:
                try:  # noqa: SIM105 - unblock its read; answer ignored (no contextlib)
                    late.close()
                except Exception:
                    pass
            hint = f" ({why})" if why else ""
            answers[alias] = WireError(f"{alias}: no complete answer within {deadline:g}s{hint}")
        return answers


class Group:
    """Hosts by alias (each once, in order), and how to reach one (`connect`)."""

    def __init__(self, aliases: Iterable[str], connect: Callable[[str], Host]) -> None:
        self.aliases = list(dict.fromkeys(aliases))
        self.connect = connect

    def each(self, fn: Callable[[Host], T], deadline: float | None = None,
             why: str = "") -> dict[str, T | MeshError]:
        """fn(host) for every host in parallel, each host closed after; the answers.
        Without a deadline the first host runs in this thread (it is often this one,
        answered in-process: no thread to start)."""
        return self.start(fn, here=deadline is None).wait(deadline, why)

    def start(self, fn: Callable[[Host], T], here: bool = False) -> Running:
        """Start fn(host) for every host (here: the first in this thread, now) and
        return at once: do other work, then `wait`."""
        return Running(self, fn, here)
