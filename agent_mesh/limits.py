"""Caps on what this host keeps for others (the reply mailbox, the queue): the numbers
and where they come from, in one place.

A peer can make this host store data (a reply, a queued message), so every store is
bounded. Each cap has a default here; `[limits]` in ~/.agents/config.toml overrides
it (`mailbox_bytes = "64M"`: a number, or with K/M/G). A store that would pass a cap
is refused with one line naming the key that raises it.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import UsageError

DEFAULTS = {
    "reply_bytes": 1 << 20,  # one reply's text
    "mailbox_per_sender": 20,  # replies kept from one asked agent
    "mailbox_bytes": 16 << 20,  # everything in ~/.agents/mailbox
}
_SCALE = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_cache: dict[str, dict[str, object]] = {}


def limit(name: str) -> int:
    """The cap `name` (a key of DEFAULTS): config.toml's `[limits]` value, else the default."""
    raw = _configured().get(name)
    if raw is None:
        return DEFAULTS[name]
    text = str(raw).strip().lower()
    scale = _SCALE.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    if isinstance(raw, bool) or not number.isdigit():
        raise UsageError(f"{_path()}: limits.{name} = {raw!r}: expected a whole number "
                         "(bytes may end in K, M or G)")
    return int(number) * scale


def where(name: str) -> str:
    """How to raise a cap, for a refusal line."""
    return f"limits.{name} in {_path()}"


def _path() -> str:
    return os.path.join(paths.agents_dir(), "config.toml")


def _configured() -> dict[str, object]:
    """config.toml's `[limits]` table, read once per process (only stores need it)."""
    path = _path()
    if path not in _cache:
        table: object = {}
        if os.path.exists(path):
            import tomllib

            try:
                with open(path, "rb") as fh:
                    table = tomllib.load(fh).get("limits", {})
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(f"{path}: {exc}") from None
        if not isinstance(table, dict):
            raise UsageError(f"{path}: [limits] must be a table")
        _cache[path] = table
    return _cache[path]
