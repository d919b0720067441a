"""What a peer may ask this host for (issue 18), from ~/.agents/config.toml:

    [peers]            # every peer
    peek = false
    [peers.laptop]     # one peer (its mesh-key alias), over the table above
    force = true
    spawn = true

Rights: deliver (messages, files, replies, cancelling its queued messages), sync (slice
exchange), status (status and the queue list), peek, inbox: on by default; force
(typing into a shell or pager, FORCE_SEND) and spawn: off by default. A request over
a login key (no mesh key: the host is only claimed) gets the `[peers]` table alone.
A refused operation is exit 3 with the rule that refused it. Processes of this host
(a local notify-pane, an rpc run without SSH) are not peers: nothing here applies.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import Refused, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULTS = {"deliver": True, "sync": True, "status": True, "peek": True, "inbox": True,
            "force": False, "spawn": False}
# Which right each rpc operation needs (hello needs none: it only says who answers).
OP_RIGHT = {"deliver": "deliver", "deliver_many": "deliver", "reply": "deliver",
            "cancel": "deliver", "exchange": "sync", "status": "status", "queue": "status",
            "peek": "peek", "inbox": "inbox", "spawn": "spawn"}


def config_path() -> str:
    return os.path.join(paths.agents_dir(), "config.toml")


def _tables() -> dict[str, Any]:
    """config.toml's [peers] tables. A peer's every request asks, and tomllib costs a fresh
    rpc process ~10-30 ms of imports: the tables are kept in a marshal cache next to it,
    valid while config.toml keeps its inode, mtime and size."""
    import marshal

    path = config_path()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
    cache = os.path.join(paths.agents_dir(), ".peers.cache")
    try:
        with open(cache, "rb") as fh:
            cached_stamp, cached = marshal.load(fh)
        if tuple(cached_stamp) == stamp and isinstance(cached, dict):
            return cached
    except (OSError, EOFError, ValueError, TypeError):
        pass
    tables = _parse(path)
    from agent_mesh.fsutil import atomic_write

    try:  # noqa: SIM105 - a cache that cannot be written is only slower
        atomic_write(cache, marshal.dumps((stamp, tables)), 0o600)
    except (OSError, ValueError):
        pass
    return tables


def _parse(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if b"peers" not in data:
        return {}  # the defaults
    import tomllib

    try:
        peers = tomllib.loads(data.decode("utf-8")).get("peers", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    if not isinstance(peers, dict):
        return {}
    return {name: (dict(value) if isinstance(value, dict) else value)
            for name, value in peers.items()
            if isinstance(value, bool) or (isinstance(value, dict) and all(
                isinstance(v, bool) for v in value.values()))}


def right(host: str, name: str) -> tuple[bool, str]:
    """(allowed, the rule that says so) for peer host ('' : not verified)."""
    tables = _tables()
    own = tables.get(host) if host else None
    if isinstance(own, dict) and isinstance(own.get(name), bool):
        return own[name], f"[peers.{host}] {name} = {str(own[name]).lower()}"
    if isinstance(tables.get(name), bool):
        return tables[name], f"[peers] {name} = {str(tables[name]).lower()}"
    default = DEFAULTS[name]
    return default, f"{name} is {'on' if default else 'off'} for peers by default"


def check(op: str, request: dict[str, Any], host: str) -> None:
    """Refused (exit 3, naming the rule) unless peer host may use op as asked."""
    needed = [OP_RIGHT[op]] if op in OP_RIGHT else []
    envelopes = request.get("envelopes") if op == "deliver_many" else [request.get("envelope")]
    if op in ("deliver", "deliver_many") and isinstance(envelopes, list) and any(
            isinstance(env, dict) and env.get("force") for env in envelopes):
        needed.append("force")
    for name in needed:
        allowed, rule = right(host, name)
        if not allowed:
            who = f"peer {host}" if host else "a peer without a mesh key (host not verified)"
            fix = (f"; to allow it, set {name} = true under [peers.{host}] in {config_path()}"
                   if host else "")
            raise Refused(f"{who} may not {name} here: {rule}{fix}")
