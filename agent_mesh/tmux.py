"""The one place that runs tmux.

Every tmux call goes through `Tmux.run`, which passes arguments as an argv list
(never a shell string) and message text only on stdin. It spawns with
`os.posix_spawnp` instead of `subprocess`: importing subprocess costs ~10 ms, a
third of the hook's whole budget.

tmux window and session names may hold any byte, tabs and newlines included, so
no separator is safe in `-F` output. Every field is emitted length-prefixed
(`#{n:field}:#{field}`), and one tuple of field names builds both the format and
its parser so they cannot drift.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent_mesh.errors import WireError

_READ_CHUNK = 65536


@dataclass(frozen=True)
class TmuxResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def error_line(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip() or f"exit {self.returncode}"
        return text.splitlines()[-1]


class Tmux:
    """A tmux server, found the way tmux itself finds it.

    With no socket given, tmux resolves the server from $TMUX (inside tmux) or
    $TMUX_TMPDIR, as a user expects. $TMUX_SOCKET (the bash tool's variable)
    selects an explicit socket path.
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
        argv = self.argv(args)
        try:
            result = _spawn(argv, input, timeout)
        except FileNotFoundError as exc:
            raise WireError(f"tmux not found ({self.binary}): install tmux") from exc
        except TimeoutError as exc:
            raise WireError(f"tmux did not answer within {timeout:g}s: {args[0]}") from exc
        if check and result.returncode != 0:
            raise WireError(f"tmux {args[0]} failed: {result.error_line}")
        return result


def fields_format(fields: Sequence[str]) -> str:
    """`#{n:f}:#{f}` for each field: a byte length, a colon, then the raw value."""
    return "".join(f"#{{n:{f}}}:#{{{f}}}" for f in fields)


def parse_records(out: bytes, fields: Sequence[str]) -> list[dict[str, str]]:
    """Parse newline-terminated records of length-prefixed fields (see fields_format)."""
    records: list[dict[str, str]] = []
    pos, end = 0, len(out)
    while pos < end:
        record: dict[str, str] = {}
        for name in fields:
            colon = out.index(b":", pos)
            size = int(out[pos:colon])
            start = colon + 1
            record[name] = out[start : start + size].decode("utf-8", "replace")
            pos = start + size
        if out[pos : pos + 1] != b"\n":
            raise WireError("tmux returned a malformed record")
        pos += 1
        records.append(record)
    return records


def _spawn(argv: list[str], input: bytes | None, timeout: float) -> TmuxResult:
    """posix_spawn argv, feed input, collect stdout/stderr, bounded by timeout."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [
        (os.POSIX_SPAWN_DUP2, in_r, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)

    pending = memoryview(input or b"")
    if not pending:
        os.close(in_w)
        in_w = -1
    else:
        os.set_blocking(in_w, False)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_readers = {out_r, err_r}
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in open_readers:
        poller.register(fd, select.POLLIN)
    if in_w >= 0:
        poller.register(in_w, select.POLLOUT)
    try:
        while open_readers or in_w >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError
            for fd, _event in poller.poll(remaining * 1000):
                if fd == in_w:
                    try:
                        written = os.write(in_w, pending[:_READ_CHUNK])
                    except BrokenPipeError:
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
