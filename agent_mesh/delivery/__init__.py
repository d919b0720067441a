"""Typing into a pane safely: pane state, the paste itself, and the inbox."""
