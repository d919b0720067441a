#!/usr/bin/env bash
# agent-mesh installer, for this user only (no root needed). Safe to re-run
# after `git pull`: every step replaces what an earlier run put there and keeps
# everything else. See `./install.sh --help`.
#
# Portable bash (macOS bash 3.2 too): no mapfile, no ${v,,}, no readlink -f, no
# GNU-only flags. Never reads standard input, never prompts, never evals
# anything it reads from the environment or from files.
set -euo pipefail

prog="agent-mesh install"
problems=0
tmp=""

say() { printf '%s: %s\n' "$prog" "$*"; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
# A failure that should not stop the remaining steps: reported, and the exit
# status at the end is non-zero.
problem() { printf '%s: error: %s\n' "$prog" "$*" >&2; problems=$((problems + 1)); }

usage() {
  cat <<'EOF'
Usage: ./install.sh [--uninstall | --help]

Installs agent-mesh for the current user, from this checkout:
  ~/.local/share/agent-mesh/venv      a private virtual environment with the package
  ~/.local/bin/{notify-pane,agent-mesh,agent-register-hook,agent-discover,agent-self-identify}
                                      symlinks to its commands (PATH line added to your
                                      shell rc once, if ~/.local/bin is not on PATH)
  ~/.agents/self.conf, peers.conf     seeded only if absent
  ~/.tmux.conf                        one managed block of tmux hooks (between
                                      "# >>> agent-mesh >>>" and "# <<< agent-mesh <<<"),
                                      also loaded into a running tmux server
  agent-resync.timer                  systemd user timer running agent-discover every
                                      5 minutes, or a crontab line where there is no
                                      systemd user manager (macOS, containers)
then runs a first discovery. Re-run it after `git pull` to upgrade.

  --uninstall   remove all of the above (the venv, the symlinks, the tmux block and
                live hooks, the PATH line, the timer or crontab line); keeps
                ~/.agents and ~/.agent-inbox (your data) and your own config lines
  -h, --help    show this help

Environment:
  AGENT_MESH_PYTHON=/path/to/python3   the Python (>= 3.11) to build the venv with
                                       (default: python3 on PATH, else python3.1x)
  AGENT_MESH_NO_SYSTEMD=1              use the crontab line even where systemd runs
EOF
}

mode=install
for arg in "$@"; do
  case "$arg" in
    --uninstall) mode=uninstall ;;
    -h | --help) usage; exit 0 ;;
    *) printf '%s: unknown argument: %s (see ./install.sh --help)\n' "$prog" "$arg" >&2; exit 2 ;;
  esac
done
[ "$mode" = uninstall ] && prog="agent-mesh uninstall"

case "${HOME:-}" in
  /*) [ -d "$HOME" ] || die "HOME=$HOME is not a directory; fix: run as a user with a home directory" ;;
  *) die "HOME is unset or not an absolute path; fix: run as a normal user with HOME set" ;;
esac
# The checkout this script is in, from any cwd, through symlinks to the script.
self=$0
hops=0
while [ -L "$self" ] && [ "$hops" -lt 40 ]; do
  hops=$((hops + 1))
  link=$(readlink "$self")
  case "$link" in
    /*) self=$link ;;
    *) self="$(dirname "$self")/$link" ;;
  esac
done
cd "$(dirname "$self")" || die "cannot enter the directory of $self"
repo=$(pwd -P)

root="$HOME/.local/share/agent-mesh"
venv="$root/venv"
bindir="$HOME/.local/bin"
agents="${AGENT_MESH_HOME:-$HOME/.agents}"
unitdir="$HOME/.config/systemd/user"
tmux_conf="$HOME/.tmux.conf"
block_begin='# >>> agent-mesh >>>'
block_end='# <<< agent-mesh <<<'
rc_marker='# agent-mesh: ~/.local/bin on PATH'
cron_marker='# agent-mesh resync'

cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agent-mesh-install.XXXXXX") ||
  die "cannot create a temporary directory; fix: check that \$TMPDIR (or /tmp) is writable"

# ~/x for messages (a literal ~ on purpose).
# shellcheck disable=SC2088
tilde() {
  case "$1" in
    "$HOME"/*) printf '~/%s' "${1#"$HOME"/}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# Replace FILE's content with NEW's, keeping FILE itself (a symlink into a
# dotfiles repo stays one, permissions stay). Status 1 when nothing changed.
replace_content() {
  if [ -f "$1" ] && cmp -s "$2" "$1"; then
    return 1
  fi
  cat "$2" >"$1"
}

# Copy SRC over DST atomically (a hook may be running the old copy) with MODE.
install_copy() {
  cp "$1" "$2.new.$$"
  chmod "$3" "$2.new.$$"
  mv -f "$2.new.$$" "$2"
}

# FILE without the lines containing MARKER, on stdout.
without_lines() {
  AM_MARK="$2" awk 'index($0, ENVIRON["AM_MARK"]) == 0' "$1"
}

# FILE with its agent-mesh block replaced by BLOCKFILE's lines (or removed, when
# BLOCKFILE is empty), on stdout; a missing block is appended. Status 3 when the
# markers are unbalanced (nothing is guessed then).
rewrite_block() {
  AM_BEGIN="$block_begin" AM_END="$block_end" AM_BLOCK="$2" awk '
    BEGIN { b = ENVIRON["AM_BEGIN"]; e = ENVIRON["AM_END"]; f = ENVIRON["AM_BLOCK"] }
    function emit(   line) { while ((getline line < f) > 0) print line; close(f) }
    $0 == b { if (inside || done) { bad = 1; exit 3 }
              inside = 1; done = 1; if (f != "") emit(); next }
    $0 == e { if (!inside) { bad = 1; exit 3 } inside = 0; next }
    inside { next }
    { print }
    END {
      if (bad || inside) exit 3
      if (!done && f != "") emit()
    }' "$1"
}

# --- checks -------------------------------------------------------------------

python_fix="install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3; macOS: brew install python@3.12) and re-run, or name it: AGENT_MESH_PYTHON=/path/to/python3.12 ./install.sh"

py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }
py_recent() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; }

# Sets py and pyver, or exits with what to do.
find_python() {
  local cand p v first="" firstver=""
  if [ -n "${AGENT_MESH_PYTHON:-}" ]; then
    case "$AGENT_MESH_PYTHON" in
      */*) p=$AGENT_MESH_PYTHON ;;
      *) p=$(command -v "$AGENT_MESH_PYTHON" 2>/dev/null) || p="" ;;
    esac
    if [ -z "$p" ] || [ ! -f "$p" ] || [ ! -x "$p" ]; then
      die "AGENT_MESH_PYTHON=$AGENT_MESH_PYTHON is not an executable file; fix: $python_fix"
    fi
    v=$(py_version "$p") || die "AGENT_MESH_PYTHON=$AGENT_MESH_PYTHON does not run as Python; fix: $python_fix"
    py_recent "$p" || die "$p is Python $v but agent-mesh needs Python >= 3.11; fix: $python_fix"
    py=$p
    pyver=$v
    return 0
  fi
  for cand in python3 python3.14 python3.13 python3.12 python3.11; do
    p=$(command -v "$cand" 2>/dev/null) || continue
    v=$(py_version "$p") || continue
    if py_recent "$p"; then
      py=$p
      pyver=$v
      if [ -n "$first" ]; then
        say "python3 ($first) is Python $firstver, too old: using $p (Python $v)"
      fi
      return 0
    fi
    if [ -z "$first" ]; then
      first=$p
      firstver=$v
    fi
  done
  if [ -n "$first" ]; then
    die "python3 ($first) is Python $firstver but agent-mesh needs Python >= 3.11; fix: $python_fix"
  fi
  die "no python3 on PATH; fix: $python_fix"
}

check_repo() {
  local f
  for f in pyproject.toml agent_mesh/__init__.py hooks/tmux-event tmux.conf.snippet \
    systemd/agent-resync.service systemd/agent-resync.timer; do
    [ -f "$repo/$f" ] || die "$repo/$f is missing: run install.sh from a complete agent-mesh checkout (git clone, then ./install.sh)"
  done
}

# Before anything is installed: a ~/.tmux.conf whose block cannot be replaced.
check_tmux_conf() {
  local status=0
  if [ -e "$tmux_conf" ]; then
    rewrite_block "$tmux_conf" "" >/dev/null 2>&1 || status=$?
    case "$status" in
      0) ;;
      3) die "$(tilde "$tmux_conf") has unbalanced '$block_begin' / '$block_end' lines; fix: delete the agent-mesh lines there by hand and re-run" ;;
      *) die "cannot read $(tilde "$tmux_conf"); fix: make it a readable file and re-run" ;;
    esac
  fi
}

# --- install steps ------------------------------------------------------------

setup_venv() {
  local want have=""
  "$py" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
    die "$py (Python $pyver) cannot create virtual environments (no venv/ensurepip); fix: apt-get install python3-venv (or python${pyver%.*}-venv) and re-run"
  want=${pyver%.*}
  if [ -x "$venv/bin/python" ] &&
    have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) &&
    [ "$have" = "$want" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    say "kept the virtual environment $(tilde "$venv") (Python $have)"
    return 0
  fi
  if [ -e "$venv" ]; then
    rm -rf "$venv"
  fi
  mkdir -p "$root"
  if ! "$py" -m venv "$venv" >"$tmp/venv.log" 2>&1; then
    tail -n 20 "$tmp/venv.log" >&2
    die "$py -m venv $venv failed (above); fix: apt-get install python3-venv, or use another Python with AGENT_MESH_PYTHON=..."
  fi
  say "created the virtual environment $(tilde "$venv") with $py (Python $pyver)"
}

pip_run() {
  # PIP_USER=0: a `user = true` in the user's pip.conf would refuse a venv.
  PIP_USER=0 "$venv/bin/python" -m pip --disable-pip-version-check --no-input "$@" >>"$tmp/pip.log" 2>&1
}

pip_failed() {
  tail -n 25 "$tmp/pip.log" >&2
  die "pip could not install $1 (above); fix: check that this host reaches PyPI (behind a proxy: export HTTPS_PROXY=...; a mirror: export PIP_INDEX_URL=...) and re-run ./install.sh"
}

install_package() {
  local deps version
  # Read the dependencies and console scripts from pyproject.toml (tomllib is
  # in every Python >= 3.11).
  "$py" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
with open(sys.argv[2], "w") as out:
    out.writelines(dep + "\n" for dep in project.get("dependencies", []))
with open(sys.argv[3], "w") as out:
    out.writelines(name + "\n" for name in project.get("scripts", {}))
' "$repo/pyproject.toml" "$tmp/requirements.txt" "$tmp/scripts.txt" ||
    die "cannot read $repo/pyproject.toml; fix: restore it (git checkout pyproject.toml) and re-run"
  # Build from a clean copy of the checkout: an in-tree build would leave
  # build/ and *.egg-info in the repo, and a stale build/lib would ship modules
  # deleted since.
  "$py" -c '
import shutil, sys
src, dst = sys.argv[1], sys.argv[2]
top = {"build", "dist", "tests", "bench", "venv"}
def ignore(where, names):
    return [n for n in names
            if n.startswith(".") or n == "__pycache__" or n.endswith((".egg-info", ".pyc"))
            or (where == src and n in top)]
shutil.copytree(src, dst, ignore=ignore, symlinks=True)
' "$repo" "$tmp/src" || die "cannot copy $repo to $tmp/src; fix: check free space in \$TMPDIR"
  : >"$tmp/pip.log"
  if [ -s "$tmp/requirements.txt" ]; then
    pip_run install -q -r "$tmp/requirements.txt" || pip_failed "the dependencies"
  fi
  # --force-reinstall: the same version number after a `git pull` still gets
  # the new code; --no-deps: the dependencies are settled above.
  pip_run install -q --force-reinstall --no-deps "$tmp/src" || pip_failed "agent-mesh"
  version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("agent-mesh"))') ||
    die "agent-mesh is not importable in $venv after pip install; fix: rm -rf $root and re-run"
  deps=$(awk 'NF { printf "%s%s", sep, $0; sep = ", " }' "$tmp/requirements.txt")
  say "installed agent-mesh $version into $(tilde "$venv") (dependencies: ${deps:-none})"
}

install_files() {
  mkdir -p "$root/hooks"
  install_copy "$repo/hooks/tmux-event" "$root/hooks/tmux-event" 755
  install_copy "$repo/tmux.conf.snippet" "$root/tmux.conf" 644
  say "installed the tmux hook $(tilde "$root/hooks/tmux-event") and $(tilde "$root/tmux.conf")"
}

link_commands() {
  local name link target current linked="" replaced=""
  if [ ! -s "$tmp/scripts.txt" ]; then
    printf '%s\n' notify-pane agent-mesh agent-register-hook agent-discover \
      agent-self-identify >"$tmp/scripts.txt"
  fi
  mkdir -p "$bindir" || die "cannot create $bindir; fix: make it a writable directory and re-run"
  while IFS= read -r name; do
    case "$name" in
      '') continue ;;
      *[!A-Za-z0-9._-]* | .*) die "odd console script name in pyproject.toml: $name" ;;
    esac
    target="$venv/bin/$name"
    link="$bindir/$name"
    [ -x "$target" ] || die "$target is missing after pip install; fix: rm -rf $root and re-run"
    if [ -L "$link" ]; then
      current=$(readlink "$link") || current=""
      if [ "$current" != "$target" ]; then
        rm -f "$link"
        ln -s "$target" "$link"
        replaced="$replaced $name (was -> $current)"
      fi
    elif [ -e "$link" ]; then
      die "$link exists and is not a symlink (an older install, e.g. pip install --user?); fix: remove it (pip uninstall agent-mesh, or rm $link) and re-run"
    else
      ln -s "$target" "$link"
    fi
    linked="$linked $name"
  done <"$tmp/scripts.txt"
  say "linked into $(tilde "$bindir") (-> $(tilde "$venv/bin")):$linked"
  if [ -n "$replaced" ]; then
    say "replaced symlinks that pointed elsewhere:$replaced"
  fi
}

path_line() {
  local rc line
  path_added=""
  case ":$PATH:" in
    *":$bindir:"* | *":$bindir/:"*)
      say "$(tilde "$bindir") is on PATH"
      return 0 ;;
  esac
  case "${SHELL:-}" in
    */zsh) rc="$HOME/.zshrc" ;;
    */bash)
      # macOS terminals start login shells, which read ~/.bash_profile only.
      if [ "$(uname -s)" = Darwin ]; then
        rc="$HOME/.bash_profile"
      else
        rc="$HOME/.bashrc"
      fi ;;
    */fish)
      say "$(tilde "$bindir") is not on PATH; for fish, run once: fish_add_path ~/.local/bin"
      path_added=fish
      return 0 ;;
    *) rc="$HOME/.profile" ;;
  esac
  # Literal $HOME and $PATH: the rc file expands them.
  # shellcheck disable=SC2016
  line='export PATH="$HOME/.local/bin:$PATH"  '"$rc_marker"
  path_added=$rc
  if [ -f "$rc" ] && grep -qF -- "$rc_marker" "$rc"; then
    say "$(tilde "$bindir") is not on PATH in this shell but $(tilde "$rc") already adds it (open a new shell)"
    return 0
  fi
  if [ -s "$rc" ] && [ -n "$(tail -c 1 "$rc")" ]; then
    printf '\n' >>"$rc"  # the file did not end with a newline
  fi
  printf '%s\n' "$line" >>"$rc"
  say "added $(tilde "$bindir") to PATH in $(tilde "$rc") (open a new shell, or: export PATH=\"\$HOME/.local/bin:\$PATH\")"
}

host_alias() {
  local a=""
  a=$(hostname -s 2>/dev/null) || a=""
  if [ -z "$a" ]; then
    a=$(uname -n 2>/dev/null) || a=""
  fi
  a=${a%%.*}
  case "$a" in
    '' | -* | *[!A-Za-z0-9._@:-]*)
      die "cannot derive this host's alias from its hostname ('$a'); fix: mkdir -p ~/.agents && echo myhost > ~/.agents/self.conf, then re-run" ;;
  esac
  printf '%s\n' "$a"
}

seed_config() {
  local alias=""
  if [ ! -d "$agents" ]; then
    mkdir -p "$agents"
    chmod 700 "$agents"
  fi
  if [ -f "$agents/self.conf" ]; then
    alias=$(awk 'NR == 1 { gsub(/[[:space:]]/, ""); print }' "$agents/self.conf")
    say "kept $(tilde "$agents/self.conf") (this host's alias: ${alias:-<empty: hostname used>})"
  else
    alias=$(host_alias)
    printf '%s\n' "$alias" >"$agents/self.conf"
    say "wrote $(tilde "$agents/self.conf"): this host's alias is $alias (edit it to match the SSH alias other hosts use for this one)"
  fi
  if [ -z "$alias" ]; then
    alias=$(host_alias)
  fi
  if [ -f "$agents/peers.conf" ]; then
    say "kept $(tilde "$agents/peers.conf")"
  else
    {
      printf '%s\n' \
        "# agent-mesh peers: the hosts whose agents this host can message." \
        "# One SSH alias per line, as you would type it after \`ssh\` (a Host in" \
        "# ~/.ssh/config, or a hostname); key-based login must work without a prompt," \
        "# and agent-mesh must be installed there too. Lines starting with # are" \
        "# comments. This host's own alias is skipped, so the same file can be copied" \
        "# to every host of the mesh. After editing: agent-mesh sync, then agent-mesh doctor."
      printf '%s\n' "$alias"
    } >"$agents/peers.conf"
    say "wrote $(tilde "$agents/peers.conf") (only this host, $alias, so far: add one SSH alias per line to join a mesh)"
  fi
}

tmux_block() {
  local status=0
  {
    printf '%s\n' "$block_begin" \
      "# Managed by agent-mesh install.sh: re-running it replaces this block and" \
      "# ./install.sh --uninstall removes it. Your own lines belong outside it."
    cat "$repo/tmux.conf.snippet"
    printf '%s\n' "$block_end"
  } >"$tmp/block"
  if [ -f "$tmux_conf" ]; then
    rewrite_block "$tmux_conf" "$tmp/block" >"$tmp/tmux.conf" || status=$?
    case "$status" in
      0) ;;
      3) die "$(tilde "$tmux_conf") has unbalanced '$block_begin' / '$block_end' lines; fix: delete the agent-mesh lines there by hand and re-run" ;;
      *) die "cannot read $(tilde "$tmux_conf"); fix: make it a readable file and re-run" ;;
    esac
    if replace_content "$tmux_conf" "$tmp/tmux.conf"; then
      say "updated the agent-mesh block in $(tilde "$tmux_conf") (your other lines kept)"
    else
      say "the agent-mesh block in $(tilde "$tmux_conf") is up to date"
    fi
  else
    cat "$tmp/block" >"$tmux_conf"
    say "created $(tilde "$tmux_conf") with the agent-mesh block"
  fi
}

tmux_live() {
  local out
  if ! command -v tmux >/dev/null 2>&1; then
    warn "tmux is not installed: install it (apt-get install tmux, brew install tmux); the hooks load from ~/.tmux.conf when it starts"
    return 0
  fi
  if ! tmux list-sessions >/dev/null 2>&1; then
    say "no tmux server running: the hooks load from $(tilde "$tmux_conf") when tmux starts"
    return 0
  fi
  if out=$(tmux source-file "$root/tmux.conf" 2>&1); then
    say "loaded the hooks into the running tmux server"
  else
    problem "tmux source-file $root/tmux.conf failed: $out; fix: agent-mesh needs tmux >= 3.2 (this is $(tmux -V 2>/dev/null || echo unknown)); upgrade tmux, then run: tmux source-file ~/.local/share/agent-mesh/tmux.conf"
  fi
}

# Status 0 when a systemd user manager answers.
systemd_user() {
  command -v systemctl >/dev/null 2>&1 && systemctl --user show-environment >/dev/null 2>&1
}

install_timer() {
  local out
  mkdir -p "$unitdir"
  install_copy "$repo/systemd/agent-resync.service" "$unitdir/agent-resync.service" 644
  install_copy "$repo/systemd/agent-resync.timer" "$unitdir/agent-resync.timer" 644
  if out=$(systemctl --user daemon-reload 2>&1 && systemctl --user enable --now agent-resync.timer 2>&1); then
    say "installed and enabled the systemd user timer agent-resync.timer in $(tilde "$unitdir") (agent-discover every 5 minutes)"
  else
    problem "enabling agent-resync.timer failed: $out; fix: look at systemctl --user status agent-resync.timer, or re-run with AGENT_MESH_NO_SYSTEMD=1 to use cron"
  fi
}

# Status 0 with the user's crontab (possibly empty) in $tmp/cron.cur.
read_crontab() {
  if crontab -l >"$tmp/cron.cur" 2>"$tmp/cron.err"; then
    return 0
  fi
  if grep -qi 'no crontab' "$tmp/cron.err"; then
    : >"$tmp/cron.cur"
    return 0
  fi
  return 1
}

# Literal $HOME and $PATH in the line: cron's shell expands them.
# shellcheck disable=SC2016
cron_line() {
  local dir="" line
  # cron's PATH is /usr/bin:/bin: add tmux's directory when it lives elsewhere
  # (Homebrew, /usr/local), or agent-discover would not find tmux.
  if command -v tmux >/dev/null 2>&1; then
    dir=$(dirname "$(command -v tmux)")
  fi
  line='"$HOME/.local/bin/agent-discover" >/dev/null 2>&1 '"$cron_marker"
  case "$dir" in
    '' | /usr/bin | /bin) ;;
    *[!A-Za-z0-9._/+-]*) warn "tmux lives in $dir, which cron's PATH lacks and a crontab line cannot safely name; agent-discover from cron may not find tmux" ;;
    *) line='PATH="'"$dir"':$PATH" '"$line" ;;
  esac
  printf '*/5 * * * * %s\n' "$line"
}

install_cron() {
  local line
  if ! command -v crontab >/dev/null 2>&1; then
    say "no crontab command either: nothing will resync the registry every 5 minutes; install cron (apt-get install cron) and re-run, or run $bindir/agent-discover periodically some other way"
    return 0
  fi
  if ! read_crontab; then
    problem "crontab -l failed: $(cat "$tmp/cron.err"); fix: make sure this user may use cron (/etc/cron.allow, /etc/cron.deny) and re-run"
    return 0
  fi
  line=$(cron_line)
  without_lines "$tmp/cron.cur" "$cron_marker" >"$tmp/cron.new"
  printf '%s\n' "$line" >>"$tmp/cron.new"
  if cmp -s "$tmp/cron.cur" "$tmp/cron.new"; then
    say "the crontab line is already there: $line"
  elif crontab - <"$tmp/cron.new" 2>"$tmp/cron.err"; then
    say "added a crontab line (agent-discover every 5 minutes; your other lines kept): $line"
  else
    problem "crontab - failed: $(cat "$tmp/cron.err"); fix: add this line with crontab -e: $line"
    return 0
  fi
  if [ "$(uname -s)" = Linux ] && command -v pgrep >/dev/null 2>&1 &&
    ! pgrep -x cron >/dev/null 2>&1 && ! pgrep -x crond >/dev/null 2>&1; then
    warn "no cron daemon seems to be running, so the line will not fire until one does (e.g. sudo service cron start)"
  fi
}

remove_cron() {
  if ! command -v crontab >/dev/null 2>&1; then
    return 0
  fi
  if ! read_crontab; then
    problem "crontab -l failed: $(cat "$tmp/cron.err"); fix: remove the line ending in '$cron_marker' with crontab -e"
    return 0
  fi
  if ! grep -qF -- "$cron_marker" "$tmp/cron.cur"; then
    [ "$mode" = uninstall ] && say "no agent-mesh crontab line to remove"
    return 0
  fi
  without_lines "$tmp/cron.cur" "$cron_marker" >"$tmp/cron.new"
  if grep -q '[^[:space:]]' "$tmp/cron.new"; then
    crontab - <"$tmp/cron.new" 2>"$tmp/cron.err" ||
      { problem "crontab - failed: $(cat "$tmp/cron.err"); fix: remove the line ending in '$cron_marker' with crontab -e"; return 0; }
  else
    crontab -r 2>"$tmp/cron.err" ||
      { problem "crontab -r failed: $(cat "$tmp/cron.err"); fix: remove the line ending in '$cron_marker' with crontab -e"; return 0; }
  fi
  say "removed the agent-mesh crontab line (your other lines kept)"
}

remove_timer() {
  local units=""
  if [ -f "$unitdir/agent-resync.timer" ] || [ -f "$unitdir/agent-resync.service" ]; then
    units=yes
  fi
  if [ -z "$units" ]; then
    [ "$mode" = uninstall ] && say "no systemd units to remove"
    return 0
  fi
  if systemd_user; then
    systemctl --user disable --now agent-resync.timer >/dev/null 2>&1 || true
    systemctl --user stop agent-resync.service >/dev/null 2>&1 || true
  fi
  rm -f "$unitdir/agent-resync.timer" "$unitdir/agent-resync.service"
  if systemd_user; then
    systemctl --user daemon-reload >/dev/null 2>&1 || true
  fi
  say "disabled and removed agent-resync.timer and agent-resync.service from $(tilde "$unitdir")"
}

setup_resync() {
  local reason
  case "${AGENT_MESH_NO_SYSTEMD:-}" in
    '' | 0)
      if ! command -v systemctl >/dev/null 2>&1; then
        reason="no systemctl (no systemd here)"
      elif ! systemctl --user show-environment >/dev/null 2>&1; then
        reason="no systemd user manager reachable (systemctl --user show-environment failed)"
      else
        install_timer
        remove_cron  # an earlier install may have taken the cron path
        return 0
      fi ;;
    *)
      reason="AGENT_MESH_NO_SYSTEMD=$AGENT_MESH_NO_SYSTEMD"
      remove_timer ;;  # an earlier install may have enabled the timer
  esac
  say "$reason: using a crontab line instead of the systemd timer"
  install_cron
}

first_discovery() {
  local status
  if "$bindir/agent-discover" </dev/null; then
    say "first discovery done"
  else
    status=$?
    warn "the first discovery failed (exit $status, above); once that is fixed, run: agent-discover"
  fi
}

next_steps() {
  printf '\n'
  if [ "$problems" -gt 0 ]; then
    say "finished with $problems problem(s) (see the errors above)"
  else
    say "done"
  fi
  printf '%s\n' "Next:"
  if [ -n "$path_added" ]; then
    printf '%s\n' "  - open a new shell so ~/.local/bin is on PATH (or: export PATH=\"\$HOME/.local/bin:\$PATH\")"
  fi
  printf '%s\n' \
    "  - see it work on a private tmux server:   agent-mesh demo" \
    "  - check this host's setup:                 agent-mesh doctor" \
    "  - join a mesh: add one SSH alias per line to ~/.agents/peers.conf (install" \
    "    agent-mesh on each of those hosts too), then run:  agent-mesh sync" \
    "  - message an agent:  notify-pane --list, then notify-pane <address> 'text'"
}

do_install() {
  check_repo
  check_tmux_conf
  find_python
  setup_venv
  install_package
  install_files
  link_commands
  path_line
  seed_config
  tmux_block
  tmux_live
  setup_resync
  first_discovery
  next_steps
  if [ "$problems" -gt 0 ]; then
    exit 1
  fi
}

# --- uninstall ----------------------------------------------------------------

remove_live_hooks() {
  local name n=0
  if ! command -v tmux >/dev/null 2>&1 || ! tmux list-sessions >/dev/null 2>&1; then
    say "no tmux server running: no live hooks to remove"
    return 0
  fi
  # Every global hook entry whose command runs our tmux-event, whatever its
  # form in tmux.conf.snippet (indexed `session-created[87]`, or a plain
  # set-hook -g, which tmux shows as index 0): exactly what the snippet set and
  # nothing else. Session hooks show with -g, window and pane hooks (e.g.
  # window-renamed) with -gw / -gp.
  {
    tmux show-hooks -g 2>/dev/null || true
    tmux show-hooks -gw 2>/dev/null || true
    tmux show-hooks -gp 2>/dev/null || true
  } | awk '
    index($0, "agent-mesh/hooks/tmux-event") && $1 ~ /^[a-z-]+(\[[0-9]+\])?$/ && !seen[$1]++ { print $1 }
  ' >"$tmp/hooks" || true
  while IFS= read -r name; do
    if tmux set-hook -gu "$name" 2>/dev/null; then
      n=$((n + 1))
    else
      problem "tmux set-hook -gu $name failed; fix: run it by hand, or restart tmux"
    fi
  done <"$tmp/hooks"
  say "removed $n agent-mesh hook(s) from the running tmux server"
}

remove_block() {
  local status=0
  if [ ! -f "$tmux_conf" ] || ! grep -qxF -- "$block_begin" "$tmux_conf"; then
    say "no agent-mesh block in $(tilde "$tmux_conf")"
    return 0
  fi
  rewrite_block "$tmux_conf" "" >"$tmp/tmux.conf" || status=$?
  if [ "$status" != 0 ]; then
    problem "cannot rewrite $(tilde "$tmux_conf") (unbalanced '$block_begin' / '$block_end' lines?); fix: delete the agent-mesh lines there by hand"
    return 0
  fi
  replace_content "$tmux_conf" "$tmp/tmux.conf" || true
  say "removed the agent-mesh block from $(tilde "$tmux_conf") (your other lines kept)"
}

remove_links() {
  local link target removed=""
  for link in "$bindir"/*; do
    [ -L "$link" ] || continue
    target=$(readlink "$link") || continue
    case "$target" in
      "$venv"/*)
        rm -f "$link"
        removed="$removed ${link##*/}" ;;
    esac
  done
  if [ -n "$removed" ]; then
    say "removed the symlinks from $(tilde "$bindir"):$removed"
  else
    say "no agent-mesh symlinks in $(tilde "$bindir")"
  fi
}

remove_path_line() {
  local rc found=""
  for rc in "$HOME/.bashrc" "$HOME/.bash_profile" "$HOME/.zshrc" "$HOME/.profile"; do
    if [ -f "$rc" ] && grep -qF -- "$rc_marker" "$rc"; then
      without_lines "$rc" "$rc_marker" >"$tmp/rc"
      replace_content "$rc" "$tmp/rc" || true
      found="$found $(tilde "$rc")"
    fi
  done
  if [ -n "$found" ]; then
    say "removed the PATH line from$found"
  else
    say "no agent-mesh PATH line in your shell rc files"
  fi
}

do_uninstall() {
  remove_timer
  remove_cron
  remove_live_hooks
  remove_block
  remove_links
  remove_path_line
  if [ -e "$root" ]; then
    rm -rf "$root"
    say "removed $(tilde "$root") (the virtual environment and the hook)"
  else
    say "nothing at $(tilde "$root")"
  fi
  say "kept $(tilde "$agents") (your config and registry) and ~/.agent-inbox (files you received); delete them by hand if you no longer want them"
  if [ "$problems" -gt 0 ]; then
    say "finished with $problems problem(s) (see the errors above)"
    exit 1
  fi
  say "done"
}

if [ "$mode" = uninstall ]; then
  do_uninstall
else
  do_install
fi
