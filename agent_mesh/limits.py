"""How much this host keeps for others: the caps on the queue (and the mailbox), in one place.

A peer (or a runaway script) can ask this host to hold messages; without caps ten
8 MB messages with a TTL of 1e12 s fill ~/.agents and keep a waiter busy forever.
Each cap has a default here and can be changed in `~/.agents/config.toml`:

    [limits]
    queue_message_bytes = 1048576

`limit(name)` is the whole API; it reads the file only when a cap is checked (never on
a plain delivery), once per process while the file is unchanged, and a bad value is a
one-line usage error naming the file.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import UsageError

DEFAULTS: dict[str, int] = {
    "queue_message_bytes": 1024 * 1024,  # one queued message's text
    "queue_per_sender": 100,  # messages one sender may have waiting on this host
    "queue_total_bytes": 64 * 1024 * 1024,  # everything in ~/.agents/queue, records' size
    "queue_total_messages": 1000,  # messages in ~/.agents/queue, from every sender together
    "queue_ttl_max": 24 * 3600,  # seconds a queued message may wait (--ttl)
    "mailbox_reply_bytes": 1024 * 1024,  # one reply's text
    "mailbox_per_sender": 20,  # replies kept from one asked agent
    "mailbox_total_bytes": 16 * 1024 * 1024,  # everything in ~/.agents/mailbox
    "coord_text_bytes": 8192,  # one bulletin entry, decision, intent, task title or note
    "coord_log_bytes": 4 * 1024 * 1024,  # the bulletin and decision logs rotate past this
    "coord_locks": 10000,  # locks held on this host at once
    "coord_tasks": 10000,  # tasks on one board
    "coord_boards": 100,  # boards on this host
}


def config_path() -> str:
    return os.path.join(paths.agents_dir(), "config.toml")


_cache: tuple[tuple[int, int, int] | None, dict[str, object]] = (None, {})


def _table(path: str) -> dict[str, object]:
    """The [limits] table of path ({} when there is none), parsed once per process while
    the file stays the same (inode, mtime, size): a queued message looks up five caps."""
    global _cache
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: {exc}") from None
    key = (info.st_ino, info.st_mtime_ns, info.st_size)
    if _cache[0] == key:
        return _cache[1]
    import tomllib

    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh).get("limits", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    _cache = (key, table if isinstance(table, dict) else {})
    return _cache[1]


def limit(name: str) -> int:
    """The cap `name`: `[limits] name` in ~/.agents/config.toml, else its default."""
    default = DEFAULTS[name]
    path = config_path()
    value = _table(path).get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{path}: limits.{name} must be a positive whole number, "
                         f"not {value!r}")
    return value
