"""Who may receive a message: the one list of known agent TUIs, and of shells.

A program is recognised by what the kernel says it runs, not by one name a copy
or a wrapper escapes: its comm, its argv[0], and, for interpreters and package
launchers (`node …/bin/codex.js`, `python -m aider`, `npx @openai/codex`), the
script, module or package they run. To add an agent, add its command name to
AGENTS (and its npm/PyPI package to PACKAGES if it is usually run through one).
AGENT_MESH_RECEIVERS (names separated by spaces or commas) adds more at run time.

Every known agent here enables bracketed paste, so a multi-line message arrives
as one paste and is submitted once.
"""

from __future__ import annotations

import os

from agent_mesh.procs import Proc, exe_name

# command name -> name shown to people
AGENTS: dict[str, str] = {
    "claude": "Claude Code",
    "claude-code": "Claude Code",
    "codex": "Codex",
    "aider": "aider",
    "gemini": "Gemini CLI",
    "opencode": "opencode",
    "goose": "goose",
    "cursor-agent": "Cursor Agent",
    "amp": "Amp",
    "crush": "Crush",
    "qwen": "Qwen Code",
    "copilot": "GitHub Copilot CLI",
    "auggie": "Auggie",
    "droid": "Factory Droid",
    "kimi": "Kimi CLI",
    "plandex": "Plandex",
    "openhands": "OpenHands",
    "cline": "Cline",
    "kilocode": "Kilo Code",
    "forge": "Forge",
    "llm": "llm chat",
}
# Agents whose command only starts a chat with this subcommand (`llm chat`).
_SUBCOMMAND = {"llm": "chat"}
# npm / PyPI package -> command name
PACKAGES: dict[str, str] = {
    "@anthropic-ai/claude-code": "claude",
    "@openai/codex": "codex",
    "aider-chat": "aider",
    "@google/gemini-cli": "gemini",
    "opencode-ai": "opencode",
    "@qwen-code/qwen-code": "qwen",
    "@sourcegraph/amp": "amp",
    "@charmland/crush": "crush",
    "@github/copilot": "copilot",
    "@augmentcode/auggie": "auggie",
}
# Programs that run another program named by their first non-option argument.
LAUNCHERS = frozenset({
    "node", "nodejs", "bun", "deno", "env", "npx", "npm", "pnpm", "pnpx", "yarn", "uv", "uvx",
    "pipx", "tsx", "ts-node", "python", "pypy", "exec",
})
_LAUNCHER_WORDS = frozenset({"exec", "run", "x", "dlx", "tool"})

SHELLS = frozenset({
    "bash", "zsh", "fish", "sh", "dash", "ksh", "mksh", "oksh", "tcsh", "csh", "ash", "rbash",
    "yash", "busybox", "pwsh", "nu", "elvish",
})
# Full-screen programs that read the terminal but are never a message input.
NOT_AN_INPUT = frozenset({
    "vi", "vim", "nvim", "view", "vimdiff", "ex", "nano", "pico", "emacs", "micro", "helix", "hx",
    "kak", "joe", "mcedit", "less", "more", "most", "pager", "man", "top", "htop", "btop",
    "watch", "tig", "lazygit", "mc", "ranger", "nnn", "fzf",
})
# Programs that connect the terminal to a shell this host cannot see (a remote one, or
# one inside a nested terminal): `@agent-accept any` does not cover them, only their name.
RELAYS = frozenset({
    "ssh", "mosh", "mosh-client", "telnet", "rlogin", "screen", "tmux", "docker", "podman",
    "kubectl",
})
# Programs that only wrap another one: the refusal names what they run.
WRAPPERS = frozenset({
    "git", "env", "sudo", "doas", "script", "time", "nice", "nohup", "timeout", "stdbuf",
    "xargs", "make", "npx", "npm", "watch",
})


def stem(name: str) -> str:
    """`bash-5.2` -> `bash`, `python3.11` -> `python`, `codex.js` -> `codex`, `-bash` -> `bash`:
    a name without its path, login dash, extension and version suffix."""
    name = os.path.basename(name).lstrip("-")
    for ext in (".js", ".mjs", ".cjs", ".ts", ".py", ".exe", ".sh", ".AppImage", ".appimage"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    end = len(name)
    while end > 0 and (name[end - 1].isdigit() or name[end - 1] in ".-_"):
        end -= 1
    return name[:end] if end else name


def extra_agents() -> frozenset[str]:
    """AGENT_MESH_RECEIVERS: more program names to treat as agent TUIs."""
    raw = os.environ.get("AGENT_MESH_RECEIVERS", "")
    return frozenset(stem(n) for n in raw.replace(",", " ").split() if n)


def _agent_name(word: str, extra: frozenset[str]) -> str:
    if word in AGENTS or word in extra:
        return word
    base = stem(word)
    if base in AGENTS or base in extra:
        return base
    return ""


# Interpreter options whose next word is inline code, or the option's value.
_INLINE_CODE = frozenset({"-c", "-e", "--eval", "-p", "--print"})
_OPTION_ARGS = frozenset({"-W", "-X", "-r", "--require", "--import", "--loader"})


def _launched(argv: tuple[str, ...]) -> str:
    """The script, module or package a launcher runs: `python -m aider` -> `aider`,
    `node /x/node_modules/@openai/codex/bin/codex.js` -> that path, `npx @openai/codex`
    -> `@openai/codex`."""
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg == "-m" and args:
            return args[0]
        if arg in _INLINE_CODE:  # `python -c CODE log`: no script; later words are its args
            return ""
        if arg in _OPTION_ARGS and args:  # `python -W error x.py`: skip the option's value
            args.pop(0)
            continue
        if arg.startswith("-") or ("=" in arg and not arg.startswith(("/", "."))):
            continue  # an option, or env's NAME=value
        if arg in _LAUNCHER_WORDS:
            continue
        return arg
    return ""


def _from_path(path: str, extra: frozenset[str]) -> str:
    """An agent named by a script path or package: its file stem, or a package in it."""
    found = _agent_name(path, extra)
    if found:
        return found
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    for i, part in enumerate(parts):
        if part in PACKAGES:
            return PACKAGES[part]
        if part.startswith("@") and i + 1 < len(parts):
            scoped = f"{part}/{parts[i + 1]}"
            if scoped in PACKAGES:
                return PACKAGES[scoped]
        if i and parts[i - 1] == "node_modules":
            hit = _agent_name(part, extra)
            if hit:
                return hit
    base = path.split("@", 1)[0] if not path.startswith("@") else path  # `pkg@1.2`
    return PACKAGES.get(base, "")


def agent_of(proc: Proc, extra: frozenset[str] = frozenset()) -> str:
    """The known agent this process runs (its command name), or ''."""
    for word in (proc.comm, os.path.basename(proc.argv[0]) if proc.argv else ""):
        if not word:
            continue
        hit = _agent_name(word, extra)
        if hit and (hit not in _SUBCOMMAND or _SUBCOMMAND[hit] in proc.argv[1:3]):
            return hit
    names = {stem(proc.comm), stem(proc.argv[0]) if proc.argv else ""}
    argv = proc.argv
    for _ in range(3):  # `node /usr/bin/npx @openai/codex`: a launcher running a launcher
        if not (names & LAUNCHERS and argv):
            return ""
        target = _launched(argv)
        if not target:
            return ""
        if stem(target) not in LAUNCHERS:
            return _from_path(target, extra)
        argv = argv[argv.index(target) :]
        names = {stem(target)}
    return ""


def is_shell(name: str) -> bool:
    """A shell's name, also as a login shell (`-bash`) or a renamed copy (`bash-5.2`)."""
    base = os.path.basename(name).lstrip("-")
    return base in SHELLS or stem(base) in SHELLS


def shell_of(proc: Proc) -> str:
    """The shell this process is ('' if none): by comm, argv[0], `busybox sh`, or the
    file it executes (a renamed link to bash)."""
    for word in (proc.comm, proc.argv[0] if proc.argv else ""):
        if word and is_shell(word):
            base = stem(word)
            if base == "busybox":
                return "busybox sh" if len(proc.argv) > 1 and is_shell(proc.argv[1]) else ""
            return os.path.basename(word).lstrip("-")
    exe = exe_name(proc.pid) if proc.pid > 0 else ""
    return exe if exe and is_shell(exe) and stem(exe) != "busybox" else ""


def interactive_shell(proc: Proc) -> bool:
    """A shell reading commands from the terminal: no script and no -c among its args."""
    return all(arg != "-c" and arg.startswith("-") for arg in proc.argv[1:])


def program_name(proc: Proc) -> str:
    """What to call a process in a message: its launched script for interpreters."""
    base = stem(proc.comm) if proc.comm else ""
    if base in LAUNCHERS and proc.argv:
        target = _launched(proc.argv)
        if target:
            return os.path.basename(target)
    return proc.comm or (os.path.basename(proc.argv[0]) if proc.argv else "")


def names_of(proc: Proc) -> set[str]:
    """Every name an opt-in (`@agent-accept NAME`) may use for this process."""
    names = {proc.comm, stem(proc.comm), program_name(proc), stem(program_name(proc))}
    if proc.argv:
        names.update((os.path.basename(proc.argv[0]), stem(proc.argv[0])))
    names.discard("")
    return names
