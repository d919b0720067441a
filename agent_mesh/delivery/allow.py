"""Per-window allow lists (issue 18): who may message a window at all.

`tmux set -w @agent-allow 'hub-* role:orchestrator host:laptop'` (or the same as a
session option) lists, space-separated, who may deliver there:

- `GLOB`        the sender's address (fnmatch: `*`, `?`, `[…]`);
- `role:GLOB`   the sender's role, as the merged registry lists its address (an agent of
                a verified host counts only from that host);
- `host:GLOB`   the sending host, only where this host verified it (a mesh key, or this
                host itself): a claimed host never matches.

No option, or an empty one: everyone in the mesh, as before. A sender no word matches
is refused (exit 3) with one line naming the list. A reply to an ask of the window is
not checked here: mailbox.check_reply already holds it to the asked agent.
"""

from __future__ import annotations

from agent_mesh.errors import Refused, printable
from agent_mesh.model import Agent, Envelope

OPTION = "@agent-allow"


def allow_list(agent: Agent) -> str:
    """The window's (else its session's, else global) @agent-allow, in one tmux call."""
    from agent_mesh.tmux import Tmux

    out = Tmux(socket_path=agent.socket or None).run(
        "display-message", "-p", "-t", agent.pane_id or agent.target, f"#{{{OPTION}}}",
        check=False)
    return out.stdout.decode("utf-8", "replace").strip() if out.returncode == 0 else ""


def matches(rule: str, envelope: Envelope) -> bool:
    """Does one word of an allow list take this sender?"""
    from fnmatch import fnmatchcase

    if rule.startswith("host:"):
        return bool(envelope.verified) and fnmatchcase(envelope.verified, rule[5:])
    if rule.startswith("role:"):
        from agent_mesh.registry.view import load_agents

        sender = load_agents().get(envelope.sender)
        if sender is None or (envelope.verified and sender.host != envelope.verified):
            return False
        return bool(sender.role) and fnmatchcase(sender.role, rule[5:])
    return fnmatchcase(envelope.sender, rule)


def check(envelope: Envelope, agent: Agent, rules: str | None = None) -> None:
    """Refused unless the window's allow list (rules, else read from tmux) takes the sender."""
    text = allow_list(agent) if rules is None else rules
    words = text.split()
    if not words or any(matches(word, envelope) for word in words):
        return
    who = envelope.sender + (f" (host {envelope.verified}, verified)" if envelope.verified
                             else " (host not verified)")
    raise Refused(printable(f"{who} may not message {agent.address}: not in its "
                            f"{OPTION} '{text}'"))
