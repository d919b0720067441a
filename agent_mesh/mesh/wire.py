"""The wire format between peers: constants and JSON mapping, no heavy imports.

Shared by the transports (sender side) and `agent-mesh rpc` (peer side).

Protocol 2 (one request per `ssh` invocation of REMOTE_COMMAND, on its stdin):

    <header: one line of JSON, UTF-8, ending in "\n", at most MAX_HEADER bytes>
    <body: exactly header["file"]["size"] raw bytes, only when header["file"] is set>

The header carries `op`, `protocol`, `version` and the op's fields (`deliver`:
`envelope`, `file: {name, size}`; `exchange`: `from`, `slice`; `hello`; and the
status, peek, inbox, queue, cancel, reply, deliver_many and spawn ops). The body
is streamed in CHUNK pieces by the sender and into a 0600 `.part` file by the
peer, so neither side holds a file in memory; there is no second round trip
(protocol 1 sent the file over SFTP first). The reply is one JSON object on
stdout; then the peer closes stdout. Either side answers a version mismatch with
"install the same version on both". A request with `hold: true` (spawn) keeps the
sender's stdin open until the reply: the peer reads EOF there as "the sender is gone".
Numbers in a request are taken through `bounded`. Through a peer's rpc server
(issue 20) the same request and reply travel on one connection of a forwarded Unix
socket, after the server's GREETING line.
"""

from __future__ import annotations

from agent_mesh import __version__
from agent_mesh.errors import (
    BY_CODE,
    KINDS,
    WIRE,
    Cause,
    MeshError,
    NotReady,
    PaneGone,
    UnknownAgent,
    UsageError,
    WireError,
    printable,
    report,
)
from agent_mesh.model import DeliveryResult, Envelope, is_hex_id

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from typing import Any

PROTOCOL = 2
CHUNK = 64 * 1024
MAX_HEADER = 16 * 1024 * 1024  # a 1 MiB slice or a 100 KB body, JSON-escaped, fit easily
# Runs under the peer user's shell (sshd's `$SHELL -c`): plain words, `~/`, `[ ]`,
# `&&`, `||` and single quotes only, so it means the same in sh, bash, zsh, fish and
# csh. The launcher `agent-mesh setup` writes (ops/data/rpc: python -I -S, no console
# script, no `sh -c`) when it is there; else the console script, from ~/.local/bin or
# PATH. Exit 127 means "not installed".
RPC_LAUNCHER = "~/.local/share/agent-mesh/rpc"  # paths.rpc_launcher(), as the shell says it
REMOTE_COMMAND = (
    f"[ -x {RPC_LAUNCHER} ] && exec {RPC_LAUNCHER} || exec "
    "sh -c 'p=\"$HOME/.local/bin/agent-mesh\"; [ -x \"$p\" ] || p=\"$(command -v agent-mesh)\""
    " || exit 127; exec \"$p\" rpc'"
)


# What a peer's rpc server sends first on each connection (mesh/rpc.py serve): a sender
# that did not get it knows the request never arrived there.
GREETING = f"agent-mesh rpc {PROTOCOL} {__version__}\n".encode()


def serve_command(seconds: int, slot: str) -> str:
    """What starts a peer's rpc server through a control master (mesh/rpc.py serve):
    only from the launcher; seconds (idle) is a number and slot (which sender's master
    it serves: a newer server in the same slot retires the older) 16 hex digits."""
    if not valid_slot(slot):
        raise ValueError(f"bad server slot {slot!r}")
    return (f"[ -x {RPC_LAUNCHER} ] && exec {RPC_LAUNCHER} --serve {int(seconds)} {slot} "
            "|| exit 127")


def valid_slot(slot: str) -> bool:
    return len(slot) == 16 and is_hex_id(slot)


def request_envelope(request: dict[str, Any]) -> Envelope:
    """The envelope a deliver or reply request carries; malformed is a usage error."""
    try:
        return Envelope.from_json(request["envelope"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"bad envelope: {exc}") from None


def error_to_reply(exc: BaseException) -> dict[str, Any]:
    """What `agent-mesh rpc` answers for a failure: enough for the sender to rebuild
    the same error (type, exit code, message, flags) with error_from_reply."""
    if isinstance(exc, MeshError):
        reply: dict[str, Any] = {"ok": False, "code": exc.exit_code, "error": str(exc),
                                 "kind": type(exc).__name__}
        if isinstance(exc, NotReady):
            reply["overridable"] = exc.overridable
        if isinstance(exc, UnknownAgent):
            reply["address"] = exc.address
        if exc.cause:  # a field a previous version does not read: it ignores it
            reply["cause"] = exc.cause
        return reply
    # A bug or a local file error there: the sender's request was fine.
    return {"ok": False, "code": WIRE, "error": f"peer error: {report(exc)[0]}"}


def error_from_reply(host: str, reply: dict[str, Any]) -> MeshError:
    """The peer's failure as the same error type, with the same flags (and `answered`
    set: the peer got the request and said why); anything malformed is a wire failure
    (exit 4), never a crash."""
    err = _rebuilt(host, reply)
    err.answered = True
    cause = reply.get("cause")
    if isinstance(cause, str) and cause.isascii() and cause.isprintable():
        err.cause = cause[:40]
    return err


def _rebuilt(host: str, reply: dict[str, Any]) -> MeshError:
    code = reply.get("code")
    message = printable(str(reply.get("error", "no error message")))
    kind = KINDS.get(str(reply.get("kind", "")))
    if kind is None and isinstance(code, int) and not isinstance(code, bool):
        kind = BY_CODE.get(code)
    if kind is None:
        return WireError(f"{host}: malformed reply from agent-mesh there (code {code!r}: "
                         f"{message[:200]})")
    if issubclass(kind, UnknownAgent):
        err = UnknownAgent(printable(str(reply.get("address", "?"))))
        err.args = (f"{message} (on {host})",)
        return err
    if issubclass(kind, NotReady):
        flag = reply.get("overridable")
        return kind(message, overridable=flag if isinstance(flag, bool) else None)
    if issubclass(kind, PaneGone):
        return kind(f"{message} (on {host})")
    return kind(f"{host}: {message}")


def result_from_reply(host: str, reply: dict[str, Any]) -> DeliveryResult:
    """A successful deliver reply as a DeliveryResult; malformed is a wire failure."""
    try:
        return DeliveryResult.from_json(reply["result"], host=host)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"{host}: malformed reply from agent-mesh there "
                        f"({type(exc).__name__}: {printable(str(exc))[:80]})") from None


# --- JSON without `json` ---------------------------------------------------------------
# `import json` imports re, enum, functools and collections: ~5 ms of every remote
# message's start, on the sender and again on the peer (issue 20). The C codec the
# json package itself uses, _json, does the same work without them.


class _Scanning:
    """What _json.make_scanner reads from json.JSONDecoder: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity, as json.loads reads them


def _unencodable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """json.dumps(obj) with its defaults (ASCII, `, ` and `: `), the same text."""
    import _json

    encode = _json.make_encoder({}, _unencodable, _json.encode_basestring_ascii, None,
                                ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))


def loads(raw: bytes | str) -> Any:
    """json.loads(raw) of one JSON document; ValueError when it is not one."""
    import _json

    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeError: ValueError
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _json.make_scanner(_Scanning())(text, start)  # type: ignore[arg-type]
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"Extra data: char {end}")
    return value


def encode_header(header: dict[str, Any]) -> bytes:
    """The request's first line: header plus protocol and version, newline-terminated."""
    from agent_mesh.registry.naming import self_alias

    # sender_host: the host this request speaks for; a mesh key's rpc checks it (issue 18)
    return dumps({**header, "protocol": PROTOCOL, "version": __version__,
                  "sender_host": self_alias()}).encode() + b"\n"


def decode_reply(host: str, raw: bytes, status: int) -> dict[str, Any]:
    """The peer's reply (the same for both transports), or the error it stands for.

    status is the remote command's exit status (only needed when raw is empty):
    127 means agent-mesh is not installed there.
    """
    if status == 127 and not raw.strip():
        raise WireError(f"{host}: agent-mesh is not installed there "
                        "(run install.sh or agent-mesh setup on that host)",
                        cause=Cause.NOT_INSTALLED)
    try:
        reply = loads(raw)
        assert isinstance(reply, dict)
    except Exception:
        lines = raw.decode("utf-8", "replace").strip().splitlines()
        last = printable(lines[-1]) if lines else "no output"
        raise WireError(f"{host}: agent-mesh there did not answer (exit {status}: {last})",
                        cause=Cause.NO_ANSWER) from None
    theirs = printable(str(reply.get("version", "?")))
    if reply.get("protocol") != PROTOCOL or theirs != __version__:
        protocol = printable(str(reply.get("protocol", "?")))
        same = protocol == str(PROTOCOL)
        mine = __version__ if same else f"{__version__} (protocol {PROTOCOL})"
        there = theirs if same else f"{theirs} (protocol {protocol})"
        raise WireError(
            f"{host}: agent-mesh {there} there, {mine} here: install the same version on both",
            cause=Cause.VERSION_MISMATCH,
        )
    if reply.get("ok"):
        return reply
    raise error_from_reply(host, reply)
