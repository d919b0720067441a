"""Who is where: naming, the tmux scan, this host's slice and the merged view."""
