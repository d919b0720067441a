"""Names: this host's alias, address slugs, roles, uniqueness, scratch sessions.

An address is `<host>-<session>-<window>` in slug form; a window of a tmux server
other than the default one gets that server's name after the host,
`<host>-<server>-<session>-<window>` (`tmux -L work` → `vm-work-dev-cat`), so it
never takes an address a default-server window would get. Duplicates get `-2`,
`-3`, ... and an address, once given, stays with its window (see scan.py).

The address alphabet lives here (`address_char`): letters and digits of any script
(with their combining marks: Devanagari vowel signs are part of a word), `.`, `_`
and `-`. Slugs are NFKC-normalised and lowercase, so an address is typed the way
its name reads and matched case-insensitively (`fold`).

The hook imports this module: os only (unicodedata only for a name that is not ASCII).
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import UsageError
from agent_mesh.receivers import AGENTS, is_shell

SLUG_MAX = 40
ADDRESS_MAX = 128
# The one home of the address alphabet: letters and digits (of any script, and
# combining marks: address_char), and this punctuation; a host alias also takes `@`
# and `:` (user@host, host:port).
ADDRESS_PUNCT = "._-"
ALIAS_PUNCT = ADDRESS_PUNCT + "@:"

# Scratch sessions the bash tool never registers.
SCRATCH_NAMES = frozenset({"scratch", "tmp", "temp", "test"})
SCRATCH_RULE = "sessions named scratch/tmp/temp/test/test-*/_* are not registered"
DEFAULT_SERVER = "default"


def self_alias() -> str:
    """This host's name in the mesh: first line of self.conf, else `hostname -s`."""
    try:
        with open(paths.self_conf(), encoding="utf-8") as fh:
            alias = "".join(fh.readline().split())
        if alias:
            return alias
    except (OSError, UnicodeDecodeError):
        pass
    return host_name()


def host_name() -> str:
    """`hostname -s`: this host's alias when self.conf names none."""
    return os.uname().nodename.split(".")[0]


def valid_alias(alias: str) -> bool:
    """A host alias safe to hand to ssh and to name files after."""
    return bool(alias) and not alias.startswith("-") and all(
        ch.isalnum() or ch in ALIAS_PUNCT for ch in alias
    )


def mesh_aliases(strict: bool = True) -> list[str]:
    """This host and every peer in peers.conf: the hosts of the mesh (strict: see read_peers)."""
    return [self_alias(), *read_peers(strict)]


def read_peers(strict: bool = True) -> list[str]:
    """Aliases from peers.conf (one per line, `#` comments), without this host, in order.

    strict (commands): an unreadable file or an invalid alias is a UsageError. Not
    strict (the hook, resolving an address): both are passed over, never raised."""
    try:
        with open(paths.peers_conf(), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        if not strict:
            return []
        raise UsageError(f"{paths.peers_conf()}: {getattr(exc, 'strerror', None) or exc}"
                         ) from exc
    me = self_alias()
    peers: list[str] = []
    for line in text.splitlines():
        alias = line.split("#", 1)[0].strip()
        if not alias or alias == me or alias in peers:
            continue
        if not valid_alias(alias):
            if not strict:
                continue
            raise UsageError(f"{paths.peers_conf()}: invalid host alias {alias!r}")
        peers.append(alias)
    return peers


def _is_mark(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch).startswith("M")


def address_char(ch: str) -> bool:
    """Is ch one an address may hold: a letter or digit of any script, a combining
    mark, `.`, `_` or `-` (never a control, format or bidi character, a space or `/`)."""
    if ch.isascii():
        return ch.isalnum() or ch in ADDRESS_PUNCT
    return ch.isalnum() or _is_mark(ch)


def fold(text: str) -> str:
    """The form addresses are compared and slugs made in: NFKC (`Ａ` → `A`, `ﬁ` → `fi`,
    a decomposed `ü` → `ü`), then lowercase."""
    if text.isascii():
        return text.lower()
    import unicodedata

    return unicodedata.normalize("NFKC", text).lower()


def slug(name: str) -> str:
    """fold(name); every run of characters that are not letters or digits (of any
    script) becomes one `-`; at most 40 chars."""
    out: list[str] = []
    for ch in fold(name):
        if ch.isalnum() or (not ch.isascii() and _is_mark(ch) and out and out[-1] != "-"):
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out)[:SLUG_MAX].strip("-")


def is_valid_address(address: str) -> bool:
    return (
        0 < len(address) <= ADDRESS_MAX
        and address[0].isalnum()
        and all(address_char(ch) for ch in address)
    )


def host_part(alias: str) -> str:
    """The host alias as it appears in addresses (kept as is when already safe)."""
    return alias if is_valid_address(alias) else (slug(alias) or "host")


def server_part(socket_path: str) -> str:
    """'' for the default tmux server, else its socket's name as a slug (`-L work` → work)."""
    name = os.path.basename(socket_path)
    if not socket_path or name == DEFAULT_SERVER:
        return ""
    return slug(name) or "server"


def base_address(host: str, socket_path: str, session: str, window: str, index: str) -> str:
    """The address a window gets unless it is taken (then `-2`, `-3`, ...)."""
    server = server_part(socket_path)
    parts = [host_part(host), *([server] if server else []),
             slug(session) or "session", slug(window) or f"win{index}"]
    return "-".join(parts)


def is_scratch_session(name: str) -> bool:
    """scratch, tmp, temp, test, test-*, _*: never registered (the bash tool's list)."""
    return name in SCRATCH_NAMES or name.startswith(("test-", "_"))


def unique(base: str, taken: set[str]) -> str:
    """base, else base-2, base-3, ...: the first not yet taken (and now taken)."""
    address, n = base, 2
    while address in taken:
        address = f"{base}-{n}"
        n += 1
    taken.add(address)
    return address


def derives_from(address: str, base: str) -> bool:
    """Is address what unique() could have made of base (base itself or base-N)?"""
    if address == base:
        return True
    rest = address[len(base) + 1 :]
    return address.startswith(base + "-") and rest.isdigit() and rest[0] != "0"


def infer_role(command: str, session: str, window: str) -> str:
    """The role of a window nobody labelled, from its foreground command."""
    where = f"{session}:{window}"
    if command in AGENTS:  # `Claude Code agent`, `Codex agent`
        return f"{AGENTS[command]} agent in {where}"
    if is_shell(command):
        return f"Shell agent in {where}"
    if not command:
        return f"CLI agent in {where}"
    return f"{command} agent in {where}"


def scratch_session_in(address: str, hosts: list[str]) -> str:
    """The scratch session an unknown address seems to name (`vm-test-w` → test), or ''."""
    for host in hosts:
        prefix = host_part(host) + "-"
        if not address.startswith(prefix):
            continue
        first = address[len(prefix) :].split("-", 1)[0]
        if first in SCRATCH_NAMES:
            return first
    return ""
