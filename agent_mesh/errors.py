"""One exception type per exit code, so the core raises and only the CLI exits.

Exit codes are those of the bash tool: 0 delivered, 1 usage, 2 unknown agent,
3 recipient not ready, 4 tmux/wire failure.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit code."""

    exit_code = 1


class UsageError(MeshError):
    """Bad arguments, unreadable file, invalid configuration."""

    exit_code = 1


class UnknownAgent(MeshError):
    """The address is not in the registry; carries close matches for the hint."""

    exit_code = 2

    def __init__(self, address: str, suggestions: list[str] | None = None) -> None:
        self.address = address
        self.suggestions = suggestions or []
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown agent '{address}'{hint} (try --list)")


class NotReady(MeshError):
    """The recipient pane must not be typed into right now (FORCE_SEND=1 overrides)."""

    exit_code = 3


class WireError(MeshError):
    """tmux or the network failed between us and the recipient."""

    exit_code = 4


class NoMatch(MeshError):
    """A pattern or id matched nothing in the mesh (exit 2, like an unknown agent)."""

    exit_code = 2


class AskTimeout(MeshError):
    """`agent-mesh ask` waited its whole timeout and no reply came (exit 6)."""

    exit_code = 6
