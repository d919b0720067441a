#!/usr/bin/env bash
# Baseline for the benchmark: registry sync done the bash tool's way, written for
# this benchmark: sequential rsync pull of each peer's slice, concatenate, then
# sequential rsync push of the assembled registry back to each peer.
set -euo pipefail
self=$(head -1 "$HOME/.agents/self.conf" | sed 's/[[:space:]]//g')
mapfile -t peers < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$HOME/.agents/peers.conf" | grep -v '^$' | grep -vx "$self")
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
cp -f "$HOME/.agents/local.toml" "$stage/00-$self.toml" 2>/dev/null || : > "$stage/00-$self.toml"
for p in "${peers[@]}"; do
  rsync -aq --timeout=5 "$p:~/.agents/local.toml" "$stage/$p.toml" 2>/dev/null || : > "$stage/$p.toml"
done
{ printf '# assembled %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"; for f in "$stage"/*.toml; do awk NF "$f"; done; } > "$HOME/.agents/registry.baseline.toml"
for p in "${peers[@]}"; do
  rsync -aq --timeout=5 "$HOME/.agents/registry.baseline.toml" "$p:~/.agents/registry.baseline.toml" 2>/dev/null || true
done
