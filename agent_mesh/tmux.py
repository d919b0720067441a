"""The one place that runs tmux.

Every tmux call goes through `Tmux.run`, which passes arguments as an argv list
(never a shell string) and message text only on stdin. It spawns with
`os.posix_spawnp` (agent_mesh/pipes.py) instead of `subprocess`: importing subprocess
costs ~10 ms, a third of the hook's whole budget. For the same reason this module imports
nothing beyond os, select, pipes and the builtin `_signal` (the tmux hook imports it).

tmux window and session names may hold any byte, tabs and newlines included, so
no separator is safe in `-F` output. Every field is emitted length-prefixed
(`#{n:field}:#{field}`), and one tuple of field names builds both the format and
its parser so they cannot drift.
"""

from __future__ import annotations

import os
import select
import time

# `signal` imports enum (~2 ms on a slow host); the builtin `_signal` has the numbers.
from _signal import SIGKILL

from agent_mesh.errors import TornRecord, WireError
from agent_mesh.pipes import spawn_piped

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_READ_CHUNK = 65536


class TmuxResult:
    """What one tmux client call returned (a plain class: dataclasses cost an import)."""

    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"TmuxResult({self.returncode!r}, {self.stdout!r}, {self.stderr!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TmuxResult):
            return NotImplemented
        return (self.returncode, self.stdout, self.stderr) == (
            other.returncode,
            other.stdout,
            other.stderr,
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def error_line(self) -> str:
        """The last line tmux wrote to stderr (what went wrong), else the exit status."""
        text = self.stderr.decode("utf-8", "replace").strip() or f"exit {self.returncode}"
        return text.splitlines()[-1]


class Tmux:
    """A tmux server, found the way tmux itself finds it.

    With no socket given, tmux resolves the server from $TMUX (inside tmux) or
    $TMUX_TMPDIR, as a user expects. $TMUX_SOCKET (the bash tool's variable)
    selects an explicit socket path; $TMUX_BIN another tmux binary.
    """

    def __init__(self, socket_path: str | None = None, binary: str | None = None) -> None:
        self.binary = binary or os.environ.get("TMUX_BIN") or "tmux"
        self.socket_path = socket_path or os.environ.get("TMUX_SOCKET") or None

    def argv(self, args: Sequence[str]) -> list[str]:
        base = [self.binary]
        if self.socket_path:
            base += ["-S", self.socket_path]
        return base + list(args)

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float = 10.0,
        check: bool = True,
    ) -> TmuxResult:
        """Run one tmux client command list; raise WireError on failure if check."""
        return self.start(*args, input=input, timeout=timeout).result(check)

    def start(self, *args: str, input: bytes | None = None, timeout: float = 10.0) -> TmuxCall:
        """`run`, started: tmux runs while the caller goes on, and `result()` then
        returns what `run` would have (the timeout counts from the start)."""
        return TmuxCall(self, args, input, timeout)


class TmuxCall:
    """One tmux client command list under way (Tmux.start); `result` collects it once."""

    __slots__ = ("_binary", "_deadline", "_fds", "_input", "_pid", "_result", "_timeout",
                 "_what")

    def __init__(self, tmux: Tmux, args: Sequence[str], input: bytes | None,
                 timeout: float) -> None:
        self._binary = tmux.binary
        self._what = args[0] if args else "(no command)"
        self._input = input
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._result: TmuxResult | None = None
        try:
            self._pid, *fds = spawn_piped(tmux.argv(args), search_path=True)
        except FileNotFoundError as exc:
            raise WireError(
                f"tmux not found ({self._binary!r} is not on PATH): install tmux "
                "or point $TMUX_BIN at it"
            ) from exc
        except OSError as exc:
            raise self._cannot_run(exc) from exc
        if not input:  # tmux sees the end of its input at once, as before
            os.close(fds[0])
            fds[0] = -1
        self._fds = fds

    def result(self, check: bool = True) -> TmuxResult:
        """What tmux returned; WireError when it did not answer in time, or (if check)
        exited non-zero."""
        if self._result is None:
            in_w, out_r, err_r = self._fds
            try:
                self._result = _collect(self._pid, in_w, out_r, err_r, self._input,
                                        self._deadline)
            except TimeoutError as exc:
                raise WireError(
                    f"tmux did not answer within {self._timeout:g}s: {self._what}"
                ) from exc
            except OSError as exc:
                raise self._cannot_run(exc) from exc
        if check and self._result.returncode != 0:
            raise WireError(f"tmux {self._what} failed: {self._result.error_line}")
        return self._result

    def _cannot_run(self, exc: OSError) -> WireError:
        return WireError(f"cannot run tmux ({self._binary!r}): {exc.strerror or exc}")


def literal(word: str) -> str:
    """word as one argv word tmux takes literally: a word ending in `;` would end the
    command (the rest of argv then runs as tmux commands), so its last `;` becomes `\\;`,
    which tmux reads back as `;` (any backslashes before it stay as they are)."""
    return word[:-1] + "\\;" if word.endswith(";") else word


def literal_format(text: str) -> str:
    """text for an argument tmux expands as a format (new-session -s, new-window -n,
    rename-window): `#` doubled so `#(...)` runs nothing and `#{...}` stays text."""
    return literal(text.replace("#", "##"))


def fields_format(fields: Sequence[str]) -> str:
    """`#{n:f}:#{f}` for each field: a byte length, a colon, then the raw value."""
    return "".join(f"#{{n:{f}}}:#{{{f}}}" for f in fields)


def parse_records(out: bytes, fields: Sequence[str]) -> list[dict[str, str]]:
    """Parse newline-terminated records of length-prefixed fields (see fields_format).

    Values are taken by byte count, so `:`, newlines and digits inside them are
    just data; anything that does not add up raises WireError.
    """
    records: list[dict[str, str]] = []
    pos = 0
    while pos < len(out):
        record, pos = _parse_record(out, fields, pos)
        records.append(record)
    return records


def parse_head(out: bytes, fields: Sequence[str]) -> tuple[dict[str, str], bytes]:
    """The first record of out, and everything after it (e.g. a capture-pane that
    followed a display-message in the same tmux call)."""
    record, pos = _parse_record(out, fields, 0)
    return record, out[pos:]


def _parse_record(out: bytes, fields: Sequence[str], pos: int) -> tuple[dict[str, str], int]:
    end = len(out)
    start_of_record = pos
    record: dict[str, str] = {}
    try:
        for name in fields:
            colon = out.index(b":", pos)
            digits = out[pos:colon]
            if not digits.isdigit():
                raise ValueError(f"bad length {digits[:20]!r}")
            start = colon + 1
            stop = start + int(digits)
            if stop > end:
                raise ValueError("field runs past the end")
            record[name] = out[start:stop].decode("utf-8", "replace")
            pos = stop
        if out[pos : pos + 1] != b"\n":
            raise ValueError("record does not end in a newline")
    except ValueError as exc:
        raise TornRecord(
            f"tmux returned a malformed record at byte {max(pos, start_of_record)}: {exc}"
        ) from None
    return record, pos + 1


def _collect(pid: int, in_w: int, out_r: int, err_r: int, input: bytes | None,
             deadline: float) -> TmuxResult:
    """Feed input to the started child pid, collect its stdout/stderr and status, by the
    deadline (time.monotonic); our ends of its pipes are closed whatever happens."""
    pending = memoryview(input or b"")
    if not pending:
        if in_w >= 0:
            os.close(in_w)
        in_w = -1
    else:
        os.set_blocking(in_w, False)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_readers = {out_r, err_r}
    poller = select.poll()
    for fd in open_readers:
        poller.register(fd, select.POLLIN)
    if in_w >= 0:
        poller.register(in_w, select.POLLOUT)
    status = 0
    try:
        while open_readers or in_w >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError
            for fd, _event in poller.poll(int(remaining * 1000) + 1):
                if fd == in_w:
                    try:
                        written = os.write(in_w, pending[:_READ_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # tmux stopped reading: the rest is moot
                        written = len(pending)
                    pending = pending[written:]
                    if not pending:
                        poller.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                    continue
                data = os.read(fd, _READ_CHUNK)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_readers.discard(fd)
        _, status = os.waitpid(pid, 0)
    finally:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    return TmuxResult(code, b"".join(chunks[out_r]), b"".join(chunks[err_r]))
