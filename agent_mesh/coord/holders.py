"""Who holds a lock or a claim, and whether their window still exists.

A holder is the agent that asked (registry/whoami.py: the registered pane it runs in),
or, outside any registered pane, the host itself. A lock or claim ends when its holder's
window closes, so the authority asks: is this holder gone?

- A holder on this host: this host's slice says so for certain (the tmux hooks rewrite
  it as windows open and close). Same address but another pane also counts as gone.
- A holder on a peer: the last good copy of that peer's slice, but only when it was
  fetched after the lock was taken and is not stale; otherwise nobody can tell, and the
  lock waits for its TTL rather than being guessed away.
- A host holder (no window): never gone, it ends at its TTL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from agent_mesh import paths
from agent_mesh.clock import parse_stamp
from agent_mesh.errors import UsageError
from agent_mesh.model import Agent
from agent_mesh.registry import naming, view

LIVE, GONE, UNKNOWN = "live", "gone", "unknown"


def belongs_to(who: str, host: str, aliases: Iterable[str] | None = None) -> bool:
    """May `host` speak for `who`? Itself, or one of its agents' addresses, as a slice's
    entries are judged (view.not_its_own: `peer` may not speak for `peer-2-main-x`).
    `aliases`: every host alias of the mesh, when the caller has them already."""
    if who == host:
        return True
    if not who.startswith(naming.host_part(host) + "-"):
        return False
    known = set(naming.mesh_aliases(strict=False) if aliases is None else aliases)
    return not view.not_its_own(host, who, host, known | {host})


class Liveness:
    """Answers `state(holder)` for many holders with each registry file read once."""

    def __init__(self) -> None:
        self.me = naming.self_alias()
        self._own: dict[str, Agent] | None = None
        self._peers: dict[str, tuple[float, dict[str, Agent]] | None] = {}

    def own(self) -> dict[str, Agent]:
        if self._own is None:
            try:
                self._own = {a: ag for a, ag in view.load_agents().items() if ag.host == self.me}
            except UsageError:
                self._own = {}
        return self._own

    def peer(self, host: str) -> tuple[float, dict[str, Agent]] | None:
        """(when its slice was fetched, its agents), or None when stale or unknown."""
        if host not in self._peers:
            self._peers[host] = None
            if naming.valid_alias(host):
                try:
                    meta, agents = view.read_slice_file(
                        os.path.join(paths.slices_dir(), f"{host}.toml"))
                    fetched = parse_stamp(str(meta.get("fetched", "")))
                    if fetched is not None and not meta.get("stale"):
                        self._peers[host] = (fetched, agents)
                except UsageError:
                    pass
        return self._peers[host]

    def state(self, holder: dict[str, Any]) -> str:
        who, host = str(holder.get("who", "")), str(holder.get("host", ""))
        pane, since = str(holder.get("pane", "")), float(holder.get("since", 0) or 0)
        if not who or who == host or not pane:
            return UNKNOWN
        if host == self.me:
            agents = self.own()
        else:
            known = self.peer(host)
            if known is None or known[0] < since:
                return UNKNOWN
            agents = known[1]
        agent = agents.get(who)
        return LIVE if agent is not None and agent.pane_id == pane else GONE
