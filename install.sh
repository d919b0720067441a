#!/usr/bin/env bash
# agent-mesh installer, for this user only (no root needed). Safe to re-run
# after `git pull`. It finds a Python >= 3.11, builds a private venv, pip-installs
# this checkout into it and runs that venv's `agent-mesh setup`, which does the
# rest (the same command a `pipx install` user runs). See `./install.sh --help`.
#
# Portable bash (macOS bash 3.2 too): no mapfile, no ${v,,}, no readlink -f, no
# GNU-only flags. Never reads standard input, never prompts, never evals
# anything it reads from the environment or from files.
set -euo pipefail

prog="agent-mesh install"
problems=0
tmp=""

say() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
# A failure that should not stop the remaining steps: reported, and the exit
# status at the end is non-zero.
problem() { printf '%s: error: %s\n' "$prog" "$*" >&2; problems=$((problems + 1)); }

usage() {
  cat <<'EOF'
Usage: ./install.sh [--uninstall | --help]

Installs agent-mesh for the current user, from this checkout, into
  ~/.local/share/agent-mesh/venv      a private virtual environment (pip install of
                                      this checkout, not editable)
then runs its `agent-mesh setup` (what `pipx install <checkout> && agent-mesh setup`
also does), which wires it in:
  ~/.local/bin/{notify-pane,agent-mesh,agent-register-hook,agent-discover,agent-self-identify}
                                      symlinks to its commands (PATH line added to your
                                      shell rc once, if ~/.local/bin is not on PATH)
  ~/.agents/self.conf, peers.conf     seeded only if absent
  ~/.tmux.conf                        one managed block of tmux hooks (between
                                      "# >>> agent-mesh >>>" and "# <<< agent-mesh <<<"),
                                      also loaded into a running tmux server; they run
                                      ~/.local/share/agent-mesh/hooks/tmux-event
  agent-resync.timer                  systemd user timer running agent-discover every
                                      5 minutes, or a crontab line where there is no
                                      systemd user manager (macOS, containers)
and a first discovery. Re-run it after `git pull` to upgrade.

  --uninstall   run `agent-mesh setup --uninstall` (removes the symlinks, the tmux
                block and live hooks, the PATH line, the timer or crontab line), then
                remove the venv; keeps ~/.agents and ~/.agent-inbox (your data) and
                your own config lines
  -h, --help    show this help

Environment:
  AGENT_MESH_PYTHON=/path/to/python3   the Python (>= 3.11) to build the venv with
                                       (default: python3 on PATH, else python3.1x)
  AGENT_MESH_NO_SYSTEMD=1              use the crontab line even where systemd runs
                                       (same as agent-mesh setup --cron)
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
  for f in pyproject.toml agent_mesh/__init__.py agent_mesh/ops/setup.py \
    agent_mesh/ops/data/tmux-event agent_mesh/ops/data/tmux.conf.snippet; do
    [ -f "$repo/$f" ] || die "$repo/$f is missing: run install.sh from a complete agent-mesh checkout (git clone, then ./install.sh)"
  done
}

# This checkout's code, run by $py without a venv (agent_mesh.ops.setup and
# agent_mesh.cli.setup_cmd are stdlib only): the check before anything is
# installed, and an uninstall whose venv is gone.
checkout_python() {
  "$py" -I -c 'import sys
sys.path.insert(0, sys.argv[1])
sys.argv[1:2] = []
'"$1" "$repo" "${@:2}"
}

# Before anything is installed: a ~/.tmux.conf whose block cannot be replaced.
check_tmux_conf() {
  local out status=0
  out=$(checkout_python '
from agent_mesh.ops.setup import SetupError, check_tmux_conf
try:
    check_tmux_conf()
except SetupError as exc:
    print(exc)
    sys.exit(3)' 2>&1) || status=$?
  case "$status" in
    0) ;;
    3) die "$out" ;;
    *) die "cannot check ~/.tmux.conf with $py: $(printf '%s\n' "$out" | tail -n 1)" ;;
  esac
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
  # Read the dependencies from pyproject.toml (tomllib is in every Python >= 3.11).
  "$py" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    project = tomllib.load(fh)["project"]
with open(sys.argv[2], "w") as out:
    out.writelines(dep + "\n" for dep in project.get("dependencies", []))
' "$repo/pyproject.toml" "$tmp/requirements.txt" ||
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

# The rest is the package's own `agent-mesh setup`.
run_setup() {
  local status=0
  case "${AGENT_MESH_NO_SYSTEMD:-}" in
    '' | 0) "$venv/bin/agent-mesh" setup </dev/null || status=$? ;;
    *) "$venv/bin/agent-mesh" setup --cron </dev/null || status=$? ;;
  esac
  if [ "$status" != 0 ]; then
    problem "agent-mesh setup exited with $status (above); once that is fixed, re-run ./install.sh (or: $(tilde "$venv/bin/agent-mesh") setup)"
  fi
}

do_install() {
  check_repo
  find_python
  check_tmux_conf
  setup_venv
  install_package
  run_setup
  if [ "$problems" -gt 0 ]; then
    say "finished with $problems problem(s) (see the errors above)"
    exit 1
  fi
  say "done"
}

# --- uninstall ----------------------------------------------------------------

# The symlinks an older install.sh made into the venv (agent-mesh setup removes
# the ones it made itself).
remove_venv_links() {
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
    say "removed the symlinks into the venv from $(tilde "$bindir"):$removed"
  fi
}

do_uninstall() {
  local status=0
  if [ -x "$venv/bin/agent-mesh" ]; then
    "$venv/bin/agent-mesh" setup --uninstall </dev/null || status=$?
  else
    # No venv (removed already, or broken): the same command from this checkout.
    find_python
    checkout_python '
from agent_mesh.cli.setup_cmd import main
sys.exit(main(sys.argv[1:]))' --uninstall </dev/null || status=$?
  fi
  if [ "$status" != 0 ]; then
    problem "agent-mesh setup --uninstall exited with $status (above)"
  fi
  remove_venv_links
  if [ -e "$root" ]; then
    rm -rf "$root"
    say "removed $(tilde "$root") (the virtual environment)"
  else
    say "nothing at $(tilde "$root")"
  fi
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
