"""The registry files on disk: this host's slice and the merged view.

`~/.agents/local.toml` holds this host's agents, one table per tmux window, and
is rebuilt from live tmux under a lock; `~/.agents/registry.toml` is that slice
merged with the last good slice of every peer (`~/.agents/slices/*.toml`).

Everything the tmux hook runs lives here, and the hook is benchmarked at a
quarter of the bash tool's time, so this module works on plain dicts of strings
and imports only os and time (plus fcntl/select via fsutil and tmux): no
dataclasses, pathlib, typing, socket or re, each of which costs milliseconds to
import on a slow host. tomllib (~13 ms) is imported only where a file must
really be parsed: `on`/`off` of one session, and peer slices when there are any.
A rescan needs nothing from the old slice but the `updated` stamps of tables
that did not change, found by comparing the text this module itself wrote.

Tables are written by a small emitter rather than tomlkit, whose import alone
would double the hook's run time; the tests check that tomllib and tomlkit read
back exactly what it writes.
"""

from __future__ import annotations

import os
import time

from agent_mesh import __version__, paths
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.receivers import is_shell

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from agent_mesh.tmux import Tmux

Table = dict[str, object]

SLUG_MAX = 40
ADDRESS_MAX = 128
_ADDRESS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

# Scratch sessions the bash tool never registers; kept for compatibility.
_SCRATCH_NAMES = frozenset({"scratch", "tmp", "temp", "test"})

# What one `list-windows -a` call reads for every window. `#{@agent-role}` is
# looked up by tmux in the window's options, then the session's, then the
# global session options (`set -g`): the precedence wanted (window option over
# session option over inferred). One quirk of tmux's lookup: a *global window*
# option (`set -gw @agent-role ...`) counts as the window's own and so beats
# session options; use `set -g` for a global default.
SCAN_FIELDS = (
    "session_id",
    "session_name",
    "window_id",
    "window_index",
    "window_name",
    "pane_id",
    "pane_current_command",
    "pane_current_path",
    "@agent-role",
    "@agent-scope",
)

# Table keys in the order they are written (the same as model.Agent's fields).
FIELDS = (
    "host",
    "target",
    "session",
    "window",
    "role",
    "scope",
    "pane_id",
    "command",
    "updated",
    "session_id",
    "window_id",
    "stale",
    "last_seen",
)
_SLICE_ONLY = FIELDS[:-2]  # a host's own slice never carries the merged view's marks


# --- file locations ------------------------------------------------------------

agents_dir = paths.agents_dir
local_slice_path = paths.local_slice
registry_path = paths.registry_file
slices_path = paths.slices_dir


def _slice_lock() -> str:
    return os.path.join(agents_dir(), "local.toml.lock")


def ensure_agents_dir() -> str:
    """Create ~/.agents if needed, but never its parents.

    A hook still running after its HOME was removed (a test's temp dir, a
    deleted account) must not recreate it.
    """
    path = agents_dir()
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except FileNotFoundError:
        from agent_mesh.errors import UsageError

        raise UsageError(f"cannot create {path}: its parent directory does not exist") from None
    return path


def _registry_lock() -> str:
    return os.path.join(agents_dir(), "registry.toml.lock")


# --- identity and addresses -------------------------------------------------


def self_alias() -> str:
    """This host's name in the mesh: first line of self.conf, else `hostname -s`."""
    try:
        with open(os.path.join(agents_dir(), "self.conf"), encoding="utf-8") as fh:
            alias = "".join(fh.readline().split())
        if alias:
            return alias
    except (OSError, UnicodeDecodeError):
        pass
    return os.uname().nodename.split(".")[0]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def age(stamp: str) -> str:
    """How long ago an ISO-8601 UTC stamp was, as `42s`, `5m`, `3h`, `2d` ('' if unparsable)."""
    import calendar

    try:
        then = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return ""
    return duration(time.time() - then)


def duration(seconds: float) -> str:
    """A span as `42s`, `5m`, `3h` or `2d` (largest whole unit; negative counts as 0)."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def slug(name: str) -> str:
    """Lowercase; every run of non-alphanumerics becomes one `-`; at most 40 chars."""
    out: list[str] = []
    for ch in name.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out)[:SLUG_MAX].strip("-")


def is_valid_address(address: str) -> bool:
    return (
        0 < len(address) <= ADDRESS_MAX
        and address[0].isalnum()
        and all(ch in _ADDRESS_CHARS for ch in address)
    )


def host_part(alias: str) -> str:
    """The host alias as it appears in addresses (kept as is when already safe)."""
    return alias if is_valid_address(alias) else (slug(alias) or "host")


def is_scratch_session(name: str) -> bool:
    """scratch, tmp, temp, test, test-*, _*: never registered (the bash tool's list)."""
    return name in _SCRATCH_NAMES or name.startswith(("test-", "_"))


def unique(base: str, taken: set[str]) -> str:
    """base, else base-2, base-3, ...: the first not yet taken (and now taken)."""
    address, n = base, 2
    while address in taken:
        address = f"{base}-{n}"
        n += 1
    taken.add(address)
    return address


def infer_role(command: str, session: str, window: str) -> str:
    """The role of a window nobody labelled, from its foreground command."""
    where = f"{session}:{window}"
    if command in ("claude", "claude-code"):
        return f"Claude Code agent in {where}"
    if command == "codex":
        return f"Codex agent in {where}"
    if is_shell(command):
        return f"Shell agent in {where}"
    if not command:
        return f"CLI agent in {where}"
    return f"{command} agent in {where}"


def infer_scope(path: str, target: str) -> str:
    return f"Window target {target}; current path {path}" if path else f"Window target {target}"


# --- TOML -------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"
}


def toml_string(value: str) -> str:
    """A TOML basic string; control characters escaped, lone surrogates replaced."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    """Bare when possible (so the bash tool's sed/awk still read the file), else quoted."""
    return key if key and all(ch in _BARE_KEY_CHARS for ch in key) else toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


def _comment(line: str) -> str:
    """A comment line: TOML allows no control characters but tab in comments."""
    return "# " + "".join(
        "?" if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF
        else ch
        for ch in line
    )


def _table_lines(name: str, table: Mapping[str, object], group: str = "agents") -> list[str]:
    """`[group.name]` then one `key = value` line per entry: exactly what is written."""
    lines = [f"[{toml_key(group)}.{toml_key(name)}]"]
    lines.extend(f"{toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
    return lines


def dump_tables(
    header: Iterable[str], groups: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> str:
    """Emit `# header` lines then `[group.name]` tables of scalar key = value pairs."""
    lines = [_comment(line) for line in header]
    for group, tables in groups.items():
        for name, table in tables.items():
            lines.append("")
            lines.extend(_table_lines(name, table, group))
    return "\n".join(lines) + "\n"


def parse_toml(text: str) -> dict[str, object]:
    """tomllib.loads, imported only here (~13 ms); raises ValueError on bad TOML."""
    import tomllib

    return tomllib.loads(text)


def clean_table(
    table: Mapping[str, object], keys: Iterable[str] = FIELDS, extra: bool = False
) -> Table:
    """Known keys in write order, as strings (`stale` a bool); with extra, then any
    other string/bool/integer keys as they were (a newer version's fields)."""
    out: Table = {}
    wanted = tuple(keys)
    for key in wanted:
        if key not in table:
            continue
        value = table[key]
        out[key] = bool(value) if key == "stale" else str(value)
    if extra:
        for key, value in table.items():
            if key not in wanted and key not in FIELDS and isinstance(value, str | int):
                out[key] = value
    return out


def tables_from(
    doc: Mapping[str, object], keys: Iterable[str] = FIELDS, extra: bool = False
) -> dict[str, Table]:
    """The `[agents.*]` tables of a parsed registry file, cleaned (see clean_table).

    An entry without a string `host` and `target` can't be delivered to (nor
    made into a model.Agent): it is skipped rather than crash every reader.
    """
    agents = doc.get("agents", {})
    if not isinstance(agents, dict):
        return {}
    fields = tuple(keys)
    return {
        a: clean_table(t, fields, extra)
        for a, t in agents.items()
        if isinstance(t, dict) and all(isinstance(t.get(k), str) for k in ("host", "target"))
    }


def _read_text(path: str) -> str:
    """A file's text, "" when missing; other errors (a directory, no access) raise."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _is_stamp(value: str) -> bool:
    """Exactly `YYYY-MM-DDTHH:MM:SSZ`, as now_iso writes it."""
    return len(value) == 20 and all(
        ch == value[i] if i in (4, 7, 10, 13, 16, 19) else value[i].isdigit()
        for i, ch in enumerate("0000-00-00T00:00:00Z")
    )


def _previous_stamps(text: str) -> dict[str, tuple[list[str], str]]:
    """Each table of a slice this module wrote: its lines but `updated`, and that stamp.

    Our emitter puts every key on one line and escapes newlines inside values,
    so a line starting with `[` is always a table header. For a file edited by
    hand this may find nothing useful; the cost is only a fresh `updated`.
    """
    found: dict[str, tuple[list[str], str]] = {}
    body: list[str] = []
    stamp = ""
    for line in text.split("\n"):
        if line.startswith("["):
            body, stamp = [line], ""
            found[line] = (body, stamp)
        elif not body or not line or line.startswith("#"):
            continue
        elif line.startswith("updated = "):
            value = line[len("updated = ") :]
            if len(value) == 22 and value[0] == value[-1] == '"' and _is_stamp(value[1:-1]):
                found[body[0]] = (body, value[1:-1])
        else:
            body.append(line)
    return found


# --- this host's slice ------------------------------------------------------


def scan_windows(tmux: Tmux) -> list[dict[str, str]]:
    """Every window of the tmux server in one call ([] when no server runs)."""
    from agent_mesh.errors import WireError
    from agent_mesh.tmux import fields_format, parse_records

    result = tmux.run("list-windows", "-a", "-F", fields_format(SCAN_FIELDS), check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace")
        if "no server running" in err or (
            "error connecting to" in err and ("No such file" in err or "refused" in err)
        ):
            return []
        raise WireError(f"tmux list-windows failed: {result.error_line}")
    return parse_records(result.stdout, SCAN_FIELDS)


def _window_order(w: Mapping[str, str]) -> tuple[str, int]:
    index = w["window_index"]
    return w["session_name"], int(index) if index.isdigit() else 0


def build_tables(
    windows: Iterable[Mapping[str, str]],
    host: str,
    taken: set[str],
    now: str,
    old_text: str = "",
) -> dict[str, Table]:
    """Turn scanned windows into addressed tables.

    Windows are taken in (session, index) order so duplicate slugs get the same
    `-2`, `-3` suffixes on every rescan; `updated` is kept from old_text (the
    previous slice) for a table that is otherwise unchanged.
    """
    prefix = host_part(host)
    previous = _previous_stamps(old_text) if old_text else {}
    tables: dict[str, Table] = {}
    for w in sorted(windows, key=_window_order):
        session, index, name = w["session_name"], w["window_index"], w["window_name"]
        if is_scratch_session(session):
            continue
        base = f"{prefix}-{slug(session) or 'session'}-{slug(name) or f'win{index}'}"
        address = unique(base, taken)
        target = f"{session}:{index}"
        command = w["pane_current_command"]
        table: Table = {
            "host": host,
            "target": target,
            "session": session,
            "window": name,
            "role": w["@agent-role"] or infer_role(command, session, name),
            "scope": w["@agent-scope"] or infer_scope(w["pane_current_path"], target),
            "pane_id": w["pane_id"],
            "command": command,
            "updated": now,
            "session_id": w["session_id"],
            "window_id": w["window_id"],
        }
        lines = _table_lines(address, table)
        old = previous.get(lines[0])
        if old is not None and old[1] and old[0] == [x for x in lines if x[:10] != "updated = "]:
            table["updated"] = old[1]
        tables[address] = table
    return tables


def write_slice(tables: Mapping[str, Mapping[str, object]], host: str) -> None:
    """Write local.toml (atomically; callers hold the slice lock)."""
    header = [
        "agent-mesh: this host's agents, rewritten by the tmux hooks. Do not edit;",
        'advertise yourself with: agent-self-identify --role "..." --scope "..."',
    ]
    meta = {"host": host, "generated": now_iso(), "version": __version__}
    text = dump_tables(header, {"slice": {"meta": meta}, "agents": tables})
    if _content(text) == _content(_read_text(local_slice_path())):
        return  # unchanged: keep the file (and its inode), so nothing is pushed to peers
    atomic_write(local_slice_path(), text.encode("utf-8"))


def _content(text: str) -> list[str]:
    """A slice's lines without the generation stamp: what peers care about."""
    return [line for line in text.splitlines() if not line.startswith("generated = ")]


def rescan(tmux: Tmux) -> dict[str, Table]:
    """Rebuild this host's whole slice from live tmux (authoritative), then the registry."""
    host = self_alias()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = _read_text(local_slice_path())
        tables = build_tables(scan_windows(tmux), host, set(), now_iso(), old_text)
        write_slice(tables, host)
        assemble(tables)
    return tables


def in_session(table: Mapping[str, object], session: str) -> bool:
    """Does this entry belong to the session given by name or by `$id`?"""
    return table.get("session") == session or (
        bool(table.get("session_id")) and table.get("session_id") == session
    )


def _parse_slice(text: str) -> dict[str, Table] | None:
    """The agents of local.toml's text; None when it is not valid TOML.

    Keys this version doesn't know are kept, so `on`/`off` of one session
    leaves every other entry exactly as it was.
    """
    try:
        return tables_from(parse_toml(text), _SLICE_ONLY, extra=True) if text else {}
    except ValueError:  # tomllib.TOMLDecodeError
        return None


def register_session(tmux: Tmux, session: str) -> dict[str, Table]:
    """Re-register one session (name or `$id`); other sessions' entries stay as they are.

    A local.toml that does not parse is rebuilt whole from tmux instead.
    """
    host = self_alias()
    now = now_iso()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = _read_text(local_slice_path())
        previous = _parse_slice(old_text)
        windows = scan_windows(tmux)
        if previous is None:
            tables = build_tables(windows, host, set(), now, old_text)
            fresh = {a: t for a, t in tables.items() if in_session(t, session)}
        else:
            kept = {a: t for a, t in previous.items() if not in_session(t, session)}
            mine = [w for w in windows if session in (w["session_name"], w["session_id"])]
            fresh = build_tables(mine, host, set(kept), now, old_text)
            tables = {**kept, **fresh}
        write_slice(tables, host)
        assemble(tables)
    return fresh


def unregister_session(session: str, tmux: Tmux | None = None) -> list[str]:
    """Drop one session's entries (it closed); returns the removed addresses.

    A local.toml that does not parse is rebuilt whole from tmux instead.
    """
    host = self_alias()
    ensure_agents_dir()
    with locked(_slice_lock()):
        old_text = _read_text(local_slice_path())
        previous = _parse_slice(old_text)
        if previous is None:
            if tmux is None:
                from agent_mesh.tmux import Tmux

                tmux = Tmux()
            tables = build_tables(scan_windows(tmux), host, set(), now_iso(), old_text)
            removed = []
        else:
            removed = [a for a, t in previous.items() if in_session(t, session)]
            tables = {a: t for a, t in previous.items() if a not in removed}
        if removed or previous is None:
            write_slice(tables, host)
        assemble(tables)
    return removed


# --- the merged view --------------------------------------------------------


def peer_slice_files() -> list[str]:
    """`~/.agents/slices/<peer>.toml`, sorted (hidden and temp files skipped)."""
    try:
        names = os.listdir(slices_path())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        os.path.join(slices_path(), n)
        for n in names
        if n.endswith(".toml") and not n.startswith(".")
    )


def read_slice(path: str) -> tuple[dict[str, object], dict[str, Table]]:
    """A stored slice's `[slice.meta]` table and its agents (ValueError if not TOML)."""
    doc = parse_toml(_read_text(path))
    slice_tables = doc.get("slice", {})
    meta = slice_tables.get("meta", {}) if isinstance(slice_tables, dict) else {}
    return (meta if isinstance(meta, dict) else {}), tables_from(doc)


_PEER_CACHE = ".peers.cache"


def _peer_signature(files: list[str]) -> str:
    """Identity of every peer slice file: name, inode, mtime and size.

    Slices are replaced by rename, so any rewrite changes the inode.
    """
    parts = [f"v{__version__}"]
    for path in files:
        st = os.stat(path)
        name = os.path.basename(path).encode("utf-8", "surrogateescape").hex()
        parts.append(f"{name}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    return " ".join(parts)


def _render_peers(files: list[str]) -> tuple[list[str], list[list[str]]]:
    """Parse the peer slices: their aliases and their tables as emitted lines.

    The first peer (by file name) to claim an address keeps it. A slice whose
    meta says `stale = true` marks its agents stale with the time it was last
    fetched, so they stay addressable through a network blip.
    """
    sources: list[str] = []
    blocks: list[list[str]] = []
    seen_addresses: set[str] = set()
    for path in files:
        try:
            meta, tables = read_slice(path)
        except (OSError, ValueError):
            continue
        sources.append(os.path.basename(path)[: -len(".toml")])
        stale = bool(meta.get("stale"))
        fetched = str(meta.get("fetched", ""))
        for address, table in tables.items():
            if address in seen_addresses:
                continue
            seen_addresses.add(address)
            entry = clean_table(table, _SLICE_ONLY)
            if stale:
                entry["stale"] = True
                if fetched:
                    entry["last_seen"] = fetched
            blocks.append(_table_lines(address, entry))
    return sources, blocks


def _peer_section() -> tuple[list[str], list[list[str]]]:
    """The peers' part of registry.toml, re-parsed only when a slice file changed.

    Parsing needs tomllib (~13 ms to import) and every peer file, on every
    hook; the rendered result is cached in ~/.agents/.peers.cache under the
    signature of the files it came from, with a checksum so a damaged cache is
    rebuilt rather than copied into registry.toml.
    """
    files = peer_slice_files()
    if not files:
        return [], []
    try:
        signature = _peer_signature(files)
    except OSError:  # a slice vanished meanwhile: don't cache this round
        return _render_peers(files)
    from binascii import crc32

    cache = os.path.join(agents_dir(), _PEER_CACHE)
    try:
        head, checksum, body = _read_text(cache).split("\n", 2)
        if head == signature and checksum == f"{crc32(body.encode()):08x}":
            lines = body.split("\n")
            sources = lines[0].split("\t") if lines[0] else []
            blocks: list[list[str]] = []
            for line in lines[1:]:
                if line.startswith("["):
                    blocks.append([line])
                elif line and blocks:
                    blocks[-1].append(line)
            return sources, blocks
    except (OSError, ValueError):
        pass
    sources, blocks = _render_peers(files)
    body = "\t".join(_comment(s)[2:].replace("\t", "?") for s in sources) + "\n"
    body += "".join(line + "\n" for block in blocks for line in block)
    text = f"{signature}\n{crc32(body.encode()):08x}\n{body}"
    atomic_write(cache, text.encode("utf-8"))
    return sources, blocks


def assemble(local: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """Write registry.toml: this host's slice, then each peer's last good slice.

    `local` is the slice just written (callers that hold the slice lock pass it,
    so two hooks can't assemble in the wrong order); without it local.toml is
    read. This host's own agents win any address clash. Returns the text written.
    """
    ensure_agents_dir()
    with locked(_registry_lock()):
        if local is None:
            local = _parse_slice(_read_text(local_slice_path())) or {}
        lines = [
            _comment("agent-mesh registry: assembled from every host's ~/.agents/local.toml."
                     " Do not edit."),
            "",  # the Mesh: line, once the peers are known
            _comment(f"Last assembled: {now_iso()}"),
        ]
        mine = set()
        for address, table in local.items():
            block = _table_lines(address, clean_table(table, _SLICE_ONLY))
            mine.add(block[0])
            lines.append("")
            lines.extend(block)
        sources, blocks = _peer_section()
        lines[1] = _comment(f"Mesh: {' '.join([self_alias(), *sources])}")
        for block in blocks:
            if block[0] not in mine:
                lines.append("")
                lines.extend(block)
        text = "\n".join(lines) + "\n"
        atomic_write(registry_path(), text.encode("utf-8"))
    return text
