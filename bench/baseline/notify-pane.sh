#!/usr/bin/env bash
# Baseline for the benchmark: same-host delivery done the bash tool's way (awk
# registry lookups, capture-pane + grep readiness check, `send-keys -l` then
# `send-keys Enter`), written for this benchmark. Usage: notify-pane.sh AGENT BODY
set -euo pipefail
registry="$HOME/.agents/registry.toml"
lookup() {
  awk -v want="$1" -v field="$2" '
    /^\[agents\./ { h=$0; gsub(/[][]/,"",h); split(h,a,"."); inb=(a[2]==want); next }
    /^\[/ { inb=0 }
    inb && $0 ~ "^[[:space:]]*" field "[[:space:]]*=" { sub(/^[^=]*=[[:space:]]*/,""); gsub(/^"|"$/,""); print; exit }' "$registry"
}
self_alias() { if [ -r "$HOME/.agents/self.conf" ]; then head -1 "$HOME/.agents/self.conf" | sed 's/[[:space:]]//g'; else hostname -s; fi; }
agent="$1"; shift; body="$*"
host=$(lookup "$agent" host); target=$(lookup "$agent" target)
[ -n "$host" ] && [ -n "$target" ] || { echo "unknown agent $agent" >&2; exit 2; }
sender="${AGENT_NAME:-}"
if [ -z "$sender" ]; then
  h=$(self_alias)
  if s=$(tmux display-message -p '#S' 2>/dev/null); then sender="$h[$s]"; else sender="$h"; fi
fi
tag="[from $sender @ $(date -u +%Y-%m-%dT%H:%M:%SZ)]"
pane=$(tmux capture-pane -p -J -t "$target" 2>/dev/null | tail -30 || true)
if [ "${FORCE_SEND:-}" != 1 ] && echo "$pane" | tail -3 | grep -qE '[❯>][[:space:]]*[^[:space:]]'; then
  echo "looks mid-prompt" >&2; exit 3
fi
if echo "$pane" | grep -qE 'Status[[:space:]]+Config[[:space:]]+Usage[[:space:]]+Stats'; then :; fi
if echo "$pane" | grep -qE '^[[:space:]]*Help[[:space:]]*$'; then :; fi
if echo "$pane" | grep -qE '^[[:space:]]*Permissions[[:space:]]*$'; then :; fi
tmux send-keys -t "$target" -l "$tag $body" || exit 4
tmux send-keys -t "$target" Enter || exit 4
echo "→ $agent ($host[$target]): $body"
