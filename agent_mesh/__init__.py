"""agent-mesh: message CLI agents in tmux panes, locally and across hosts over SSH.

Imported by every entrypoint (including the tmux hook), so it imports nothing.
"""

__version__ = "0.1.0"
