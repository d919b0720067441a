"""The registry's TOML: the one list of fields, the small writer and the readers.

`local.toml`, `registry.toml` and the peers' slices are tables of scalar
`key = value` lines written by the emitter below rather than tomlkit, whose
import alone would double the hook's run time; the tests check that tomllib and
tomlkit read back exactly what it writes. `read_own` reads that same format back
without tomllib (~13 ms to import), so the hook never needs it for its own
files; anything else (a hand edit) goes through tomllib.

Files are written private (0600 in a 0700 ~/.agents: another local user must not
read who runs what where), and a write sweeps the directory of temporaries that
a killed writer left behind.
"""

from __future__ import annotations

import os
import time

from agent_mesh import paths
from agent_mesh.fsutil import atomic_write, make_dirs
from agent_mesh.model import TABLE_FIELDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

Table = dict[str, object]

# The one list of table keys lives with the value they describe (model.Agent).
FIELDS = TABLE_FIELDS
SLICE_FIELDS = FIELDS[:-2]  # a host's own slice never carries the merged view's marks

_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"
}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}


# --- writing ------------------------------------------------------------------


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


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


def comment(line: str) -> str:
    """A comment line: TOML allows no control characters but tab in comments."""
    return "# " + "".join(
        "?" if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF
        else ch
        for ch in line
    )


def table_lines(name: str, table: Mapping[str, object], group: str = "agents") -> list[str]:
    """`[group.name]` then one `key = value` line per entry: exactly what is written."""
    lines = [f"[{toml_key(group)}.{toml_key(name)}]"]
    lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return lines


def dump_tables(
    header: Iterable[str], groups: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> str:
    """Emit `# header` lines then `[group.name]` tables of scalar key = value pairs."""
    lines = [comment(line) for line in header]
    for group, tables in groups.items():
        for name, table in tables.items():
            lines.append("")
            lines.extend(table_lines(name, table, group))
    return "\n".join(lines) + "\n"


# --- reading ------------------------------------------------------------------


def parse_toml(text: str) -> dict[str, object]:
    """tomllib.loads, imported only here (~13 ms); raises ValueError on bad TOML."""
    import tomllib

    return tomllib.loads(text)


def read_own(text: str) -> dict[str, dict[str, Table]] | None:
    """Read back what dump_tables wrote, without tomllib; None for anything else.

    Strict on purpose: a line that dump_tables would not have written (a comment
    after a value, a float, a duplicate table) makes the caller use tomllib.
    """
    groups: dict[str, dict[str, Table]] = {}
    table: Table | None = None
    try:
        for line in text.split("\n"):
            if not line or line[0] == "#":
                continue
            if line[0] == "[":
                group, pos = _key(line, 1)
                if line[pos : pos + 1] != ".":
                    return None
                name, pos = _key(line, pos + 1)
                if line[pos:] != "]":
                    return None
                tables = groups.setdefault(group, {})
                if name in tables:
                    return None
                table = tables[name] = {}
                continue
            key, pos = _key(line, 0)
            if table is None or key in table or line[pos : pos + 3] != " = ":
                return None
            raw = line[pos + 3 :]
            if raw[:1] == '"':
                value, end = _string(raw, 0)
                if end != len(raw):
                    return None
                table[key] = value
            elif raw in ("true", "false"):
                table[key] = raw == "true"
            elif raw.isdigit() and raw.isascii() and (raw == "0" or raw[0] != "0"):
                table[key] = int(raw)
            else:
                return None
    except ValueError:
        return None
    return groups


def _key(line: str, pos: int) -> tuple[str, int]:
    if line[pos : pos + 1] == '"':
        return _string(line, pos)
    end = pos
    while end < len(line) and line[end] in _BARE_KEY_CHARS:
        end += 1
    if end == pos:
        raise ValueError("no key")
    return line[pos:end], end


def _string(line: str, pos: int) -> tuple[str, int]:
    """The basic string starting at line[pos] == '"': its value and the index after it."""
    out: list[str] = []
    i = pos + 1
    while True:
        quote = line.find('"', i)
        slash = line.find("\\", i)
        if quote < 0:
            raise ValueError("unterminated string")
        if slash < 0 or quote < slash:
            out.append(line[i:quote])
            return "".join(out), quote + 1
        out.append(line[i:slash])
        esc = line[slash + 1 : slash + 2]
        if esc in _UNESCAPES:
            out.append(_UNESCAPES[esc])
            i = slash + 2
        elif esc in ("u", "U"):
            width = 4 if esc == "u" else 8
            digits = line[slash + 2 : slash + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("bad escape")
            out.append(chr(int(digits, 16)))
            i = slash + 2 + width
        else:
            raise ValueError("bad escape")


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


def parse_slice(text: str) -> tuple[dict[str, Table], bool] | None:
    """The agents of a local.toml text and whether this module wrote it; None if not TOML.

    Keys this version doesn't know are kept, so a partial rewrite leaves every
    other entry exactly as it was.
    """
    if not text:
        return {}, True
    own = read_own(text)
    if own is not None:
        return tables_from(own, SLICE_FIELDS, extra=True), True
    try:
        return tables_from(parse_toml(text), SLICE_FIELDS, extra=True), False
    except ValueError:  # tomllib.TOMLDecodeError
        return None


def read_text(path: str) -> str:
    """A file's text, "" when missing; other errors (a directory, no access) raise."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# --- files --------------------------------------------------------------------


def ensure_agents_dir() -> str:
    """Create ~/.agents (0700) if needed, but never its parents.

    A hook still running after its HOME was removed (a test's temp dir, a
    deleted account) must not recreate it.
    """
    path = paths.agents_dir()
    try:
        make_dirs(path)
    except FileNotFoundError:
        from agent_mesh.errors import UsageError

        raise UsageError(f"cannot create {path}: its parent directory does not exist") from None
    return path


_SWEPT: set[str] = set()
STALE_TEMP_SECONDS = 60.0


def write_file(path: str, data: bytes) -> None:
    """Replace path atomically, private (0600; a new directory 0700), after
    sweeping its directory of our stale temporaries (once per process)."""
    directory = os.path.dirname(path)
    if directory not in _SWEPT:
        _SWEPT.add(directory)
        make_dirs(directory)
        sweep_temporaries(directory)
    atomic_write(path, data, mode=0o600)


def sweep_temporaries(directory: str, older_than: float = STALE_TEMP_SECONDS) -> list[str]:
    """Remove `.NAME.PID.NS.tmp` files (fsutil.atomic_write's) older than a minute.

    A writer killed between create and rename leaves one; a live writer's is
    younger than a minute, so it is never taken from under it.
    """
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    cutoff = time.time() - older_than
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name[1:-4].rsplit(".", 2)
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            continue
        path = os.path.join(directory, name)
        try:
            if os.lstat(path).st_mtime < cutoff:
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed
