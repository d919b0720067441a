"""The wire format between peers: constants and JSON mapping, no heavy imports.

Shared by the SSH transport (sender side) and `agent-mesh rpc` (peer side).
"""

from __future__ import annotations

from agent_mesh.errors import (
    BY_CODE,
    KINDS,
    WIRE,
    MeshError,
    NotReady,
    PaneGone,
    UnknownAgent,
    WireError,
    printable,
    report,
)
from agent_mesh.model import DeliveryResult

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs an import on every remote message's path
    from typing import Any

PROTOCOL = 1
# Runs under the peer user's login shell: plain words and single quotes only, so it
# means the same in sh, bash, zsh, fish and csh. Exit 127 means "not installed".
REMOTE_COMMAND = (
    "sh -c 'p=\"$HOME/.local/bin/agent-mesh\"; [ -x \"$p\" ] || p=\"$(command -v agent-mesh)\""
    " || exit 127; exec \"$p\" rpc'"
)


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
        return reply
    # A bug or a local file error there: the sender's request was fine.
    return {"ok": False, "code": WIRE, "error": f"peer error: {report(exc)[0]}"}


def error_from_reply(host: str, reply: dict[str, Any]) -> MeshError:
    """The peer's failure as the same error type, with the same flags; anything
    malformed is a wire failure (exit 4), never a crash."""
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
        result = reply["result"]
        return DeliveryResult(
            address=printable(str(result["address"])), host=host,
            target=printable(str(result["target"])), pane_id=printable(str(result["pane_id"])),
            bytes_sent=int(result["bytes_sent"]),
            notes=[printable(str(note)) for note in result.get("notes", [])],
            outcome=str(result.get("outcome", "delivered")), msg_id=str(result.get("msg_id", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"{host}: malformed reply from agent-mesh there "
                        f"({type(exc).__name__}: {printable(str(exc))[:80]})") from None
