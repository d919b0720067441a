#!/usr/bin/env bash
# Baseline for the benchmark: registration done the bash tool's way (one or more
# tmux calls per window, text tools per field), written for this benchmark.
# Usage: register-hook.sh on <session>
set -euo pipefail
session="$2"
slice="$HOME/.agents/local.toml"
mkdir -p "$(dirname "$slice")"; touch "$slice"
host=$(if [ -r "$HOME/.agents/self.conf" ]; then head -1 "$HOME/.agents/self.conf" | sed 's/[[:space:]]//g'; else hostname -s; fi)
prefix="${host}-${session}-"
slug() { echo "$1" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9]\+/-/g; s/^-//; s/-$//' | head -c 40; }
quote() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
tmp=$(mktemp "$slice.XXXXXX")
awk -v p="$prefix" '/^\[agents\./ { k=$0; gsub(/[][]/,"",k); split(k,a,"."); drop=(index(a[2],p)==1); if (drop) next }
  /^\[/ && !/^\[agents\./ { drop=0 } drop { next } { print }' "$slice" > "$tmp"
if tmux has-session -t "$session" 2>/dev/null; then
  srole=$(tmux show-options -v -t "$session" @agent-role 2>/dev/null || true)
  sscope=$(tmux show-options -v -t "$session" @agent-scope 2>/dev/null || true)
  while IFS='|' read -r idx name; do
    s=$(slug "$name"); [ -n "$s" ] || s="win$idx"
    t="$session:$idx"
    wrole=$(tmux show-options -wv -t "$t" @agent-role 2>/dev/null || true)
    wscope=$(tmux show-options -wv -t "$t" @agent-scope 2>/dev/null || true)
    cmd=$(tmux display-message -p -t "$t" '#{pane_current_command}' 2>/dev/null || true)
    path=$(tmux display-message -p -t "$t" '#{pane_current_path}' 2>/dev/null || true)
    role="${wrole:-$srole}"; scope="${wscope:-$sscope}"
    [ -n "$role" ] || role="$cmd agent in $session:$name"
    [ -n "$scope" ] || scope="Window target $t; current path $path"
    { printf '[agents.%s%s]\n' "$prefix" "$s"
      printf 'host = %s\ntarget = %s\nsession = %s\nwindow = %s\nrole = %s\nscope = %s\n' \
        "$(quote "$host")" "$(quote "$t")" "$(quote "$session")" "$(quote "$name")" "$(quote "$role")" "$(quote "$scope")"
    } >> "$tmp"
  done < <(tmux list-windows -t "$session" -F '#{window_index}|#{window_name}')
fi
awk 'NF' "$tmp" > "$tmp.clean"; mv "$tmp.clean" "$slice"; rm -f "$tmp"
