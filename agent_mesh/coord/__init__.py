"""Coordination without a broker: what this host is the authority for.

One authority per object, so no consensus is ever needed:
- the bulletin and the decisions: each host appends only to its own logs (bulletin.py);
- a lock on a path: held by the host where the path lives (locks.py);
- a task board: lives on one host, `NAME@HOST` (board.py).

This package is the authority's side only: local files under ~/.agents/coord, written
atomically under flock, and the rpc ops a peer calls (serve.py, registered in
mesh/handlers.py). It sits below the mesh (it never calls another host); reaching the
authorities and merging their answers is mesh/coord.py's job, as mesh/observe.py is for
status.
"""
