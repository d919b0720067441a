"""`Host`: a connection to one mesh host, as fabric's Connection is (a context manager).

Every host fulfils one contract: `request` (one rpc request, its reply), `deliver`,
`exchange` and `close`. Three implementations: `LocalHost` (mesh/host.py) answers
in-process by calling the handlers directly; `OpenSshTransport` (the default for a
peer, mesh/openssh.py) runs the user's own `ssh` client through a reused control
master; `ParamikoTransport` (mesh/paramiko.py) is the fallback where there is no
OpenSSH client. Both remote ones send one request (a JSON header line, then a
file's raw bytes) to `agent-mesh rpc` on the peer, which runs the same delivery;
see wire.py. mesh/host.py's `connect` chooses between them.
"""

from __future__ import annotations

from agent_mesh.errors import UsageError
from agent_mesh.model import Agent, DeliveryResult, Envelope

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every message's path
    from collections.abc import Iterator
    from typing import Any

    from agent_mesh.delivery.inbox import SourceFile

TRANSPORTS = ("openssh", "paramiko")
REQUEST_TIMEOUT = 60.0


class FileBody:
    """What a remote transport streams after the header: a file opened for sending
    (delivery.inbox.SourceFile, read in CHUNK pieces, never whole in memory) or bytes.

    The size is fixed when the file is opened: that is what the header announces
    and the peer checks; a file that shrinks meanwhile fails the request.
    """

    def __init__(self, source: SourceFile | bytes, name: str) -> None:
        self.source = source
        self.name = name
        self.size = len(source) if isinstance(source, bytes) else source.size

    def chunks(self) -> Iterator[bytes]:
        """The announced size exactly, from the start (a retry may read it again)."""
        from agent_mesh.mesh.wire import CHUNK  # a peer's path: LocalHost never needs wire

        if isinstance(self.source, bytes):
            for start in range(0, len(self.source), CHUNK):
                yield self.source[start:start + CHUNK]
            return
        self.source.fh.seek(0)
        left = self.size
        for data in self.source.chunks(CHUNK):
            left -= len(data)
            yield data
        if left > 0:
            raise UsageError(f"{self.name} shrank while it was being sent")


def as_body(file_data: SourceFile | bytes | FileBody | None, name: str | None) -> FileBody | None:
    if file_data is None or isinstance(file_data, FileBody):
        return file_data
    return FileBody(file_data, name or "file")


class Host:
    """One host of the mesh: the whole contract (a plain base class: typing.Protocol
    costs an import on the hot path). `host` is its alias; use it in a `with` block,
    or call `close`."""

    host: str
    name = "local"

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def deliver(
        self, envelope: Envelope, agent: Agent, file_data: SourceFile | bytes | None = None
    ) -> DeliveryResult:
        """Deliver envelope to agent's pane, dropping file_data into the inbox first."""
        from agent_mesh.mesh.wire import result_from_reply

        body = as_body(file_data, envelope.file_name)
        header: dict[str, Any] = {"op": "deliver", "envelope": envelope.to_json()}
        if body is not None:
            header["file"] = {"name": envelope.file_name or body.name, "size": body.size}
        return result_from_reply(self.host, self.request(header, body))

    def exchange(self, self_alias: str, slice_text: str | None,
                 timeout: float = REQUEST_TIMEOUT) -> tuple[str, float]:
        """Push our slice (if given) and fetch theirs in one request; (text, ms)."""
        import time

        started = time.monotonic()
        reply = self.request({"op": "exchange", "from": self_alias, "slice": slice_text},
                             timeout=timeout)
        return str(reply.get("slice", "")), (time.monotonic() - started) * 1000

    def request(self, header: dict[str, Any], stream: FileBody | None = None,
                timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """One request to the peer's `agent-mesh rpc`: header, then stream's bytes; the reply.

        Raises the error type the peer reported (same exit codes as local), or
        WireError naming the host for transport problems.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release any connection (nothing to do locally)."""


