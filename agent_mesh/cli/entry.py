"""The `agent-mesh` console script.

Machine-facing subcommands skip click (~30 ms of imports): `rpc` is on every
remote message's path and `push` is started by every tmux hook when there are
peers. Everything else is the click group in cli.py.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    command = sys.argv[1:2]
    if command == ["rpc"]:
        from agent_mesh.mesh import rpc

        rpc.main()
        os._exit(0)  # the reply is flushed; skip interpreter teardown on the hot path
    if command == ["push"]:
        from agent_mesh.mesh import sync

        for report in sync.push_pending():
            print(report.line())
        sys.exit(0)
    if command == ["queue-run"] and len(sys.argv) == 3 and sys.argv[2] not in ("-h", "--help"):
        _queue_run(sys.argv[2])
        sys.exit(0)
    from agent_mesh.cli.main import mesh_main

    mesh_main()


def _queue_run(address: str) -> None:
    """The waiter a queued message starts on its recipient's host (detached, no tty)."""
    import json
    import time

    from agent_mesh import paths
    from agent_mesh.delivery import queue
    from agent_mesh.delivery.paste import deliver_envelope
    from agent_mesh.model import DeliveryResult, Envelope
    from agent_mesh.registry import view as registry

    def deliver(envelope: Envelope) -> DeliveryResult:
        agent = registry.resolve(address, registry.load_agents(paths.local_slice()))
        return deliver_envelope(envelope.replace(queue=False), agent)

    def log(record: dict[str, object], outcome: str, detail: str) -> None:
        line = {"time": time.time(), "id": record.get("id"), "address": address,
                "outcome": outcome, "detail": detail}
        try:
            with open(os.path.join(paths.agents_dir(), "queue.log"), "a",
                      encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError:
            pass  # a full disk must not stop deliveries

    queue.run_waiter(address, deliver, log)
