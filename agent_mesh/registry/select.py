"""Choosing agents by pattern: address globs, `role:NAME`, `host:ALIAS`, `--all`.

One grammar for every command that acts on a group (broadcast, status, queue).
notify-pane asks is_pattern() on every message, so fnmatch (and re) load only to match.
Matching ignores case, as addresses are lowercase slugs but users type names.
"""

from __future__ import annotations

from agent_mesh.model import Agent
from agent_mesh.registry.naming import address_char

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs ~1 ms of every message's start
    from collections.abc import Iterable, Mapping

ALL = "--all"


def is_pattern(text: str) -> bool:
    """Does this address argument name a group rather than one agent? A glob is made of
    address characters and `*?[]!` only, so a mistyped name is never taken for one."""
    if text == ALL or text.startswith(("role:", "host:")):
        return True
    return any(c in text for c in "*?[") and all(c in "*?[]!" or address_char(c) for c in text)


def matches(agent: Agent, pattern: str) -> bool:
    return matches_fields(agent.address, agent.role, agent.host, pattern)


def matches_fields(address: str, role: str, host: str, pattern: str) -> bool:
    """The grammar itself, for anything with an address, role and host (a status row)."""
    from fnmatch import fnmatchcase  # imports re: not on a single message's path

    if pattern in (ALL, "*"):
        return True
    if pattern.startswith("role:"):
        return fnmatchcase(role.lower(), pattern[5:].lower())
    if pattern.startswith("host:"):
        return fnmatchcase(host.lower(), pattern[5:].lower())
    return fnmatchcase(address.lower(), pattern.lower())


def select(agents: Mapping[str, Agent], patterns: Iterable[str]) -> list[Agent]:
    """Agents matching any of patterns, in address order."""
    wanted = list(patterns)
    return [agents[a] for a in sorted(agents) if any(matches(agents[a], p) for p in wanted)]
