"""Host, LocalHost and Group (issue 19): one contract for every host, one local path,
one fan-out with one answer per host."""

from __future__ import annotations

import threading
import time

import pytest

from agent_mesh.errors import MeshError, UsageError, WireError
from agent_mesh.mesh.group import Group
from agent_mesh.mesh.host import LocalHost, connect
from agent_mesh.mesh.openssh import OpenSshTransport
from agent_mesh.mesh.paramiko import ParamikoTransport
from agent_mesh.mesh.transport import Host
from agent_mesh.registry import naming


@pytest.mark.parametrize("cls", [LocalHost, OpenSshTransport, ParamikoTransport])
def test_every_host_fulfils_the_whole_contract(cls: type[Host]) -> None:
    """No host inherits the base's `request` (which raises): deliver and exchange,
    built on it, then work for every one of them."""
    assert cls.request is not Host.request
    for name in ("deliver", "exchange", "close", "__enter__", "__exit__"):
        assert callable(getattr(cls, name))


def test_this_host_is_answered_in_process() -> None:
    """connect(self) is the LocalHost: the handlers answer directly, no wire version."""
    with connect(naming.self_alias()) as host:
        assert isinstance(host, LocalHost)
        assert host.request({"op": "hello"})["host"] == naming.self_alias()
        with pytest.raises(UsageError, match="unknown request"):
            host.request({"op": "no-such-op"})


class Fake(Host):
    """A host whose answer is a function of its alias (fault injection at the edge)."""

    def __init__(self, alias: str, answer: object) -> None:
        self.host = alias
        self.answer = answer
        self.closed = threading.Event()

    def request(self, header: dict[str, object], stream: object = None,
                timeout: float = 0.0) -> dict[str, object]:
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer == "hang":
            self.closed.wait(10)
            raise WireError(f"{self.host}: closed")
        return {"host": self.host, "answer": self.answer}

    def close(self) -> None:
        self.closed.set()


def test_each_gives_one_answer_per_host_in_order() -> None:
    made: dict[str, Fake] = {}
    answers = {"a": 1, "b": WireError("b: down"), "c": ValueError("bug"), "d": 4}

    def make(alias: str) -> Fake:
        made[alias] = Fake(alias, answers[alias])
        return made[alias]

    got = Group(["a", "b", "c", "a", "d"], make).each(lambda h: h.request({}))
    assert list(got) == ["a", "b", "c", "d"]  # each host once, in order
    assert got["a"] == {"host": "a", "answer": 1} and got["d"]["answer"] == 4
    assert isinstance(got["b"], WireError) and str(got["b"]) == "b: down"
    assert isinstance(got["c"], WireError) and "ValueError: bug" in str(got["c"])
    assert all(h.closed.is_set() for h in made.values())  # every host closed after


def test_without_a_deadline_the_first_host_runs_in_this_thread() -> None:
    where: dict[str, str] = {}

    def fn(host: Host) -> str:
        where[host.host] = threading.current_thread().name
        return host.host

    Group(["me", "peer"], lambda a: Fake(a, 0)).each(fn)
    assert where["me"] == threading.current_thread().name
    assert where["peer"] != where["me"]


def test_a_late_host_gets_a_wire_error_and_its_connection_closed() -> None:
    made: dict[str, Fake] = {}

    def make(alias: str) -> Fake:
        made[alias] = Fake(alias, "hang" if alias == "slow" else 1)
        return made[alias]

    started = time.monotonic()
    running = Group(["fast", "slow"], make).start(lambda h: h.request({}))
    got = running.wait(0.3, why="a hint")
    assert time.monotonic() - started < 2
    assert got["fast"] == {"host": "fast", "answer": 1}
    late = got["slow"]
    assert isinstance(late, MeshError)
    assert str(late) == "slow: no complete answer within 0.3s (a hint)"
    assert running.late == {"slow"}
    assert made["slow"].closed.wait(2)  # closed from this thread: its read returns
