"""How much this host keeps for others: the caps on the queue (and the mailbox), in one place.

A peer (or a runaway script) can ask this host to hold messages; without caps ten
8 MB messages with a TTL of 1e12 s fill ~/.agents and keep a waiter busy forever.
Each cap has a default here and can be changed in `~/.agents/config.toml`:

    [limits]
    queue_message_bytes = 1048576

`limit(name)` is the whole API; it reads the file (config.py) only when a cap is checked
(never on a plain delivery), and a bad value is a one-line usage error naming the file.
"""

from __future__ import annotations

from agent_mesh.config import config_path, table
from agent_mesh.errors import UsageError

__all__ = ["DEFAULTS", "config_path", "limit"]

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


def limit(name: str) -> int:
    """The cap `name`: `[limits] name` in ~/.agents/config.toml, else its default."""
    default = DEFAULTS[name]
    path = config_path()
    value = table("limits").get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{path}: limits.{name} must be a positive whole number, "
                         f"not {value!r}")
    return value
