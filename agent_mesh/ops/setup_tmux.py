"""Setup's tmux part: the block in ~/.tmux.conf (between BLOCK_BEGIN and BLOCK_END,
the user's own lines kept byte for byte) and the hooks live in every running server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat

from agent_mesh import paths
from agent_mesh.fsutil import atomic_write, write_keeping
from agent_mesh.ops.setup_base import (
    BLOCK_BEGIN,
    BLOCK_END,
    BLOCK_HEADER,
    HOOK_MARK,
    Report,
    SetupError,
    data_file,
    read_or_none,
    run_helper,
    tilde,
)

# --- ~/.tmux.conf block ----------------------------------------------------------------


def rewrite_block(text: str, block: str | None) -> str:
    """text with our block replaced by `block` (removed when None; appended when
    absent). SetupError when the markers are unbalanced: nothing is guessed then."""
    out: list[str] = []
    inside = done = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare == BLOCK_BEGIN:
            if inside or done:
                raise _unbalanced()
            inside = done = True
            if block is not None:
                out.append(block)
            continue
        if bare == BLOCK_END:
            if not inside:
                raise _unbalanced()
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise _unbalanced()
    if not done and block is not None:
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(block)
    return "".join(out)


def _unbalanced() -> SetupError:
    return SetupError(f"{tilde(paths.tmux_conf())} has unbalanced '{BLOCK_BEGIN}' / "
                      f"'{BLOCK_END}' lines; fix: delete the agent-mesh lines there by hand "
                      "and re-run")


def tmux_block() -> str:
    """Our block for ~/.tmux.conf: markers around the shipped snippet."""
    snippet = read_or_none(data_file("tmux.conf.snippet")) or ""
    if not snippet.endswith("\n"):
        snippet += "\n"
    return f"{BLOCK_BEGIN}\n{BLOCK_HEADER}{snippet}{BLOCK_END}\n"


def check_tmux_conf() -> None:
    """Before anything is installed: a ~/.tmux.conf whose block cannot be replaced."""
    try:
        text = read_or_none(paths.tmux_conf())
    except OSError as exc:
        raise SetupError(f"cannot read {tilde(paths.tmux_conf())}: {exc.strerror}; fix: make "
                         "it a readable file and re-run") from None
    if text is not None:
        rewrite_block(text, None)


def install_tmux_block(report: Report) -> None:
    path = paths.tmux_conf()
    text = read_or_none(path)
    block = tmux_block()
    if text is None:
        write_keeping(path, block, 0o644)
        atomic_write(paths.setup_made_tmux_conf(), b"")
        report.say(f"created {tilde(path)} with the agent-mesh block")
        return
    new = rewrite_block(text, block)
    if new == text:
        report.say(f"the agent-mesh block in {tilde(path)} is up to date")
    else:
        write_keeping(path, new, 0o644)
        report.say(f"updated the agent-mesh block in {tilde(path)} (your other lines kept)")


def remove_tmux_block(report: Report) -> None:
    path = paths.tmux_conf()
    text = read_or_none(path)
    if text is None or BLOCK_BEGIN not in text.splitlines():
        report.say(f"no agent-mesh block in {tilde(path)}")
        return
    try:
        new = rewrite_block(text, None)
    except SetupError as exc:
        report.problem(str(exc))
        return
    if not new and os.path.exists(paths.setup_made_tmux_conf()) and not os.path.islink(path):
        os.unlink(path)  # setup created it and it holds nothing else: not left 0 bytes
        report.say(f"removed {tilde(path)} (setup created it, and it held only the block)")
        return
    write_keeping(path, new, 0o644)
    report.say(f"removed the agent-mesh block from {tilde(path)} (your other lines kept)")


# --- the running tmux server -----------------------------------------------------------


def _tmux_server_up() -> bool | None:
    """True when a tmux server answers, False when none runs, None without tmux."""
    if not shutil.which("tmux"):
        return None
    return run_helper(["tmux", "list-sessions"], timeout=10)[0] == 0


def load_hooks_live(report: Report) -> None:
    up = _tmux_server_up()
    if up is None:
        report.warn("tmux is not installed: install it (apt-get install tmux, brew install "
                    "tmux); the hooks load from ~/.tmux.conf when it starts")
        return
    if not up:
        report.say(f"no tmux server running: the hooks load from {tilde(paths.tmux_conf())} "
                   "when tmux starts")
        return
    conf = paths.managed_tmux_conf()
    code, _, err = run_helper(["tmux", "source-file", conf], timeout=10)
    if code == 0:
        report.say("loaded the hooks into the running tmux server")
        return
    version = run_helper(["tmux", "-V"], timeout=5)[1].strip() or "unknown"
    report.problem(f"tmux source-file {conf} failed: {' '.join(err.split())}; fix: agent-mesh "
                   f"needs tmux >= 3.2 (this is {version}); upgrade tmux, then run: "
                   f"tmux source-file {tilde(conf)}")


def tmux_sockets() -> list[str]:
    """Every tmux server socket of this user that may hold our hooks: each socket in
    the directory tmux makes them in ($TMUX_TMPDIR or /tmp, then tmux-UID: `-L NAME`
    servers live there beside `default`), the current server's ($TMUX), and each
    server a registry entry was taken from (`-S PATH` servers live anywhere)."""
    from agent_mesh.registry.toml import parse_slice, read_text

    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    directory = os.path.join(base, f"tmux-{os.getuid()}")
    found: list[str] = []
    with contextlib.suppress(OSError):
        found += sorted(os.path.join(directory, name) for name in os.listdir(directory))
    inside = os.environ.get("TMUX", "")
    if inside:
        found.append(inside.split(",")[0])
    with contextlib.suppress(OSError):
        parsed = parse_slice(read_text(paths.local_slice()))
        if parsed is not None:
            found += sorted({str(t.get("socket", "")) for t in parsed[0].values()} - {""})
    sockets: list[str] = []
    seen: set[tuple[int, int]] = set()
    for path in found:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid() \
                and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            sockets.append(path)
    return sockets


def live_hook_names(socket: str | None = None) -> list[str]:
    """Every global hook entry whose command runs our launcher, as `event[index]`
    (session hooks show with -g, window and pane hooks with -gw / -gp), in the
    server at `socket` (tmux's default when None)."""
    names: list[str] = []
    server = ["-S", socket] if socket else []
    for scope in ("-g", "-gw", "-gp"):
        _, out, _ = run_helper(["tmux", *server, "show-hooks", scope], timeout=10)
        for line in out.splitlines():
            name = line.split(" ", 1)[0]
            event = name.split("[", 1)[0]
            if HOOK_MARK in line and event and all(c.isalpha() or c == "-" for c in event) \
                    and name not in names:
                names.append(name)
    return names


def remove_live_hooks(report: Report) -> None:
    """From every running server of this user, not only the default one: a server
    left with the hooks runs the removed launcher at its next window event."""
    if not shutil.which("tmux"):
        report.say("tmux is not installed: no live hooks to remove")
        return
    removed, servers = 0, []
    for socket in tmux_sockets():
        if run_helper(["tmux", "-S", socket, "list-sessions"], timeout=10)[0] != 0:
            continue  # a stale socket, or a server on its way out
        servers.append(os.path.basename(socket))
        for name in live_hook_names(socket):
            if run_helper(["tmux", "-S", socket, "set-hook", "-gu", name], timeout=10)[0] == 0:
                removed += 1
            else:
                report.problem(f"tmux -S {socket} set-hook -gu {name} failed; fix: run it by "
                               "hand, or restart that tmux server")
    if not servers:
        report.say("no tmux server running: no live hooks to remove")
        return
    report.say(f"removed {removed} agent-mesh hook(s) from the running tmux server(s): "
               f"{', '.join(servers)}")
