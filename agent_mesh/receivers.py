"""Who may receive a message: the one list of known agent TUIs, and of shells.

A program is recognised by what the kernel says it runs, not by one name a copy
or a wrapper escapes: its comm, its argv[0], and, for interpreters and package
launchers (`node …/bin/codex.js`, `python -m aider`, `npx @openai/codex`), the
script, module or package they run. To add an agent, add its row to TRAITS: its
names, packages, busy and dialog signs, and how it takes a message mid-turn; no other
module names an agent (tests/test_architecture.py checks).
AGENT_MESH_RECEIVERS (names separated by spaces or commas) adds more at run time.

Every known agent here enables bracketed paste, so a multi-line message arrives
as one paste and is submitted once.
"""

from __future__ import annotations

import os

from agent_mesh.procs import Proc, exe_name


class Traits:
    """What delivery knows of one agent TUI: one row of TRAITS.

    names: its command names (the first is the one spawned); shown: its name for people;
    packages: the npm/PyPI packages a launcher runs it from (`npx @openai/codex`);
    subcommand: the word its command needs to start a chat (`llm chat`); busy: the sign
    it shows mid-turn besides the common phrases (`esc to interrupt`...): "spinner"
    (`✻ Creating… (3s · …)`) or "turn-end" (no `Worked for` line after the last turn);
    input_box: it always shows an input box when it takes input, so a screen without one
    is a dialog, a splash or a menu; line_prompt: a line-mode prompt (asks on the cursor
    row, shows no prompt while it streams, has no input box); keeps_mid_turn: a message
    submitted mid-turn is kept until the turn ends; hooks: it runs agent-mesh's hooks;
    interrupt_hook: those include one when a turn is interrupted (else a turn its hooks
    never ended lapses once its screen is idle: delivery/turns.py).
    """

    __slots__ = ("busy", "hooks", "input_box", "interrupt_hook", "keeps_mid_turn",
                 "line_prompt", "names", "packages", "shown", "subcommand")

    def __init__(self, names: tuple[str, ...], shown: str, *, packages: tuple[str, ...] = (),
                 subcommand: str = "", busy: str = "", input_box: bool = False,
                 line_prompt: bool = False, keeps_mid_turn: bool = False,
                 hooks: bool = False, interrupt_hook: bool = False) -> None:
        self.names, self.shown, self.packages, self.subcommand = names, shown, packages, subcommand
        self.busy, self.input_box, self.line_prompt = busy, input_box, line_prompt
        self.keeps_mid_turn, self.hooks, self.interrupt_hook = keeps_mid_turn, hooks, interrupt_hook


# Every known agent, one row each. Claude Code keeps a message submitted mid-turn and
# sends it when the turn ends (observed on 2.1.197); Codex submits at once and drops its
# streamed answer, aider would glue it to type-ahead: those are refused while working.
# (Codex's Tab queues a message mid-turn, but Tab is not used: it could not be checked
# against the real program here, and Tab when the turn has just ended, or with a file
# popup open, does something else.)
TRAITS: tuple[Traits, ...] = (
    Traits(("claude", "claude-code"), "Claude Code", packages=("@anthropic-ai/claude-code",),
           busy="spinner", input_box=True, keeps_mid_turn=True, hooks=True),
    Traits(("codex",), "Codex", packages=("@openai/codex",), busy="turn-end", input_box=True,
           hooks=True, interrupt_hook=True),
    Traits(("aider",), "aider", packages=("aider-chat",), line_prompt=True),
    Traits(("gemini",), "Gemini CLI", packages=("@google/gemini-cli",)),
    Traits(("opencode",), "opencode", packages=("opencode-ai",)),
    Traits(("goose",), "goose"),
    Traits(("cursor-agent",), "Cursor Agent"),
    Traits(("amp",), "Amp", packages=("@sourcegraph/amp",)),
    Traits(("crush",), "Crush", packages=("@charmland/crush",)),
    Traits(("qwen",), "Qwen Code", packages=("@qwen-code/qwen-code",)),
    Traits(("copilot",), "GitHub Copilot CLI", packages=("@github/copilot",)),
    Traits(("auggie",), "Auggie", packages=("@augmentcode/auggie",)),
    Traits(("droid",), "Factory Droid"),
    Traits(("kimi",), "Kimi CLI"),
    Traits(("plandex",), "Plandex"),
    Traits(("openhands",), "OpenHands"),
    Traits(("cline",), "Cline"),
    Traits(("kilocode",), "Kilo Code"),
    Traits(("forge",), "Forge"),
    Traits(("llm",), "llm chat", subcommand="chat"),
)
# What `agent-mesh spawn` starts when no command is given.
DEFAULT_COMMAND = TRAITS[0].names[0]

_BY_NAME: dict[str, Traits] = {name: row for row in TRAITS for name in row.names}
# command name -> name shown to people
AGENTS: dict[str, str] = {name: row.shown for name, row in _BY_NAME.items()}
# Agents whose command only starts a chat with this subcommand (`llm chat`).
_SUBCOMMAND = {name: row.subcommand for name, row in _BY_NAME.items() if row.subcommand}
# npm / PyPI package -> command name
PACKAGES: dict[str, str] = {pkg: row.names[0] for row in TRAITS for pkg in row.packages}


def traits(agent: str) -> Traits:
    """The row of a known agent's command name; a plain row for one added at run time
    (AGENT_MESH_RECEIVERS) or unknown."""
    return _BY_NAME.get(agent) or Traits((agent,), agent)


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
