#!/usr/bin/env bash
# Baseline for the benchmark: delivery done the bash tool's way, written for this
# benchmark: awk registry lookups; for a peer, one `ssh` per tmux call (capture,
# send-keys -l text, send-keys Enter) and `ssh mkdir` + `scp` for a file.
# Usage: notify-pane.sh AGENT [--file PATH] BODY...
set -euo pipefail
registry="$HOME/.agents/registry.toml"
lookup() {
  awk -v want="$1" -v field="$2" '
    /^\[agents\./ { h=$0; gsub(/[][]/,"",h); split(h,a,"."); inb=(a[2]==want); next }
    /^\[/ { inb=0 }
    inb && $0 ~ "^[[:space:]]*" field "[[:space:]]*=" { sub(/^[^=]*=[[:space:]]*/,""); gsub(/^"|"$/,""); print; exit }' "$registry"
}
self_alias() { if [ -r "$HOME/.agents/self.conf" ]; then head -1 "$HOME/.agents/self.conf" | sed 's/[[:space:]]//g'; else hostname -s; fi; }
is_self() { [ "$1" = "$(self_alias)" ]; }
run_tmux() {
  local host="$1"; shift
  if is_self "$host"; then tmux "$@"; else
    local cmd="tmux" a
    for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done
    ssh -o BatchMode=yes -o ConnectTimeout=5 "$host" "$cmd"
  fi
}
agent="$1"; shift
file=""
if [ "${1:-}" = "--file" ]; then file="$2"; shift 2; fi
body="$*"
host=$(lookup "$agent" host); target=$(lookup "$agent" target)
[ -n "$host" ] && [ -n "$target" ] || { echo "unknown agent $agent" >&2; exit 2; }
sender="${AGENT_NAME:-}"
if [ -z "$sender" ]; then
  h=$(self_alias)
  if s=$(tmux display-message -p '#S' 2>/dev/null); then sender="$h[$s]"; else sender="$h"; fi
fi
if [ -n "$file" ]; then
  dir=$(echo "$sender" | tr ' []' '_'); name=$(basename -- "$file")
  if is_self "$host"; then mkdir -p "$HOME/.agent-inbox/$dir"; cp -f "$file" "$HOME/.agent-inbox/$dir/$name"
  else
    ssh -o BatchMode=yes -o ConnectTimeout=5 "$host" "mkdir -p ~/.agent-inbox/$dir"
    scp -q -o BatchMode=yes -o ConnectTimeout=5 "$file" "$host:.agent-inbox/$dir/$name"
  fi
  note="file dropped at ~/.agent-inbox/$dir/$name ($(wc -c < "$file") bytes)"
  if [ -n "$body" ]; then body="$note: $body"; else body="$note"; fi
fi
tag="[from $sender @ $(date -u +%Y-%m-%dT%H:%M:%SZ)]"
pane=$(run_tmux "$host" capture-pane -p -J -t "$target" 2>/dev/null | tail -30 || true)
if [ "${FORCE_SEND:-}" != 1 ] && echo "$pane" | tail -3 | grep -qE '[❯>][[:space:]]*[^[:space:]]'; then
  echo "looks mid-prompt" >&2; exit 3
fi
if echo "$pane" | grep -qE 'Status[[:space:]]+Config[[:space:]]+Usage[[:space:]]+Stats'; then :; fi
if echo "$pane" | grep -qE '^[[:space:]]*Help[[:space:]]*$'; then :; fi
if echo "$pane" | grep -qE '^[[:space:]]*Permissions[[:space:]]*$'; then :; fi
run_tmux "$host" send-keys -t "$target" -l "$tag $body" || exit 4
run_tmux "$host" send-keys -t "$target" Enter || exit 4
echo "→ $agent ($host[$target]): $body"
