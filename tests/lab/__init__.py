"""Test lab: namespace hosts with their own sshd, user and tmux server, for cross-host tests."""

from .netlab import Lab, LabHost, LabUnavailable, cleanup_stale_labs, lab_available

__all__ = ["Lab", "LabHost", "LabUnavailable", "cleanup_stale_labs", "lab_available"]
