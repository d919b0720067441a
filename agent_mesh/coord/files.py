"""The files behind coordination, and what may go into them.

Logs (the bulletin, the decisions) are JSON lines appended with one O_APPEND write each,
rotated like the delivery logs (one old file kept, `.1`) at `limits.coord_log_bytes`.
Tables (locks, boards) are one JSON document each, replaced atomically (fsutil) under an
flock that every writer takes. Everything is 0600 in 0700 folders under ~/.agents/coord.

Text is cleaned in one place (text.py: controls and bidi overrides removed) and capped
(limits.py); names, tags and paths that could not be shown or stored faithfully are a
one-line usage error rather than something silently changed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from agent_mesh import paths
from agent_mesh.errors import UsageError, printable
from agent_mesh.fsutil import append_private, atomic_write, locked
from agent_mesh.limits import config_path, limit
from agent_mesh.text import sanitize

NAME_MAX = 40
TAG_MAX = 32
TAGS_MAX = 8
PATH_MAX = 4096
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def coord_file(name: str) -> str:
    return os.path.join(paths.coord_dir(), name)


def now() -> float:
    return round(time.time(), 3)


# --- what may go in ------------------------------------------------------------------


def clean_text(text: object, what: str, *, required: bool = True) -> str:
    """Text as it will be stored: controls removed (text.sanitize), surrounding space
    trimmed, at most limits.coord_text_bytes; a usage error when it is empty (and
    required) or too long, never a silent cut."""
    if not isinstance(text, str):
        raise UsageError(f"{what} must be text")
    kept, _removed = sanitize(text)
    kept = kept.strip()
    if required and not kept:
        raise UsageError(f"{what} is empty")
    cap = limit("coord_text_bytes")
    size = len(kept.encode("utf-8"))
    if size > cap:
        raise UsageError(f"{what} is {size} bytes; at most {cap} are kept (limits.coord_text_"
                         f"bytes in {config_path()}): post a summary and point at a file")
    return kept


def clean_name(name: object, what: str, most: int = NAME_MAX) -> str:
    """A board name or a tag: letters, digits, `.`, `_`, `-`; short; not starting with `-`."""
    if not isinstance(name, str) or not name or len(name) > most or name[0] in ".-" \
            or not set(name) <= NAME_CHARS:
        shown = printable(str(name))[:60]
        raise UsageError(f"bad {what} {shown!r}: use up to {most} letters, digits, "
                         "`.`, `_` or `-`")
    return name


def clean_tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or len(tags) > TAGS_MAX:
        raise UsageError(f"at most {TAGS_MAX} tags")
    return list(dict.fromkeys(clean_name(t, "tag", TAG_MAX) for t in tags))


def clean_path(path: object) -> str:
    """An absolute path, normalised (`a/../b` is `b`, no trailing `/`); control, bidi and
    other unprintable characters are refused: a lock must name exactly the path it shows."""
    if not isinstance(path, str) or not path:
        raise UsageError("a lock needs a path")
    if not path.isprintable() or len(path) > PATH_MAX:  # controls, bidi, odd spaces
        raise UsageError(f"bad path {printable(path)[:80]!r}: characters that cannot be "
                         f"shown as they are (controls, bidi overrides) or over {PATH_MAX} "
                         "characters")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("the path is not valid UTF-8") from None
    if not path.startswith("/"):
        raise UsageError(f"{printable(path)[:80]!r} is not an absolute path")
    return os.path.normpath(path).replace("//", "/")


def covers(held: str, wanted: str) -> bool:
    """Does a lock on `held` keep `wanted` off? It covers itself and every path below."""
    return wanted == held or wanted.startswith(held.rstrip("/") + "/")


# --- logs ---------------------------------------------------------------------------


def append(path: str, record: dict[str, Any], rotate: bool = True) -> None:
    """Append one JSON line (one write: whole lines with concurrent writers); rotate past
    limits.coord_log_bytes, keeping one old file (unless not `rotate`: decisions stay in
    force until superseded). Unlike the delivery log this raises: a post that was not
    kept must say so."""
    data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    fd = append_private(path)
    try:
        os.write(fd, data)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if rotate and st.st_size > limit("coord_log_bytes"):
        try:
            if os.stat(path).st_ino == st.st_ino:
                os.replace(path, path + ".1")
        except OSError:
            pass


def read_log(path: str) -> list[dict[str, Any]]:
    """Every record of a log, oldest first (the rotated file's first); unreadable lines
    are skipped. The whole file is parsed as one JSON array when it can be (a tenth of
    the time of a parse per line), line by line only when some line is damaged."""
    out: list[dict[str, Any]] = []
    for name in (path + ".1", path):
        try:
            with open(name, "rb") as fh:
                data = fh.read().rstrip(b"\n")
        except OSError:
            continue
        if not data:
            continue
        try:
            records = json.loads(b"[" + data.replace(b"\n", b",") + b"]")
        except ValueError:
            records = []
            for line in data.splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        out.extend(r for r in records if type(r) is dict)
    return out


# --- tables ---------------------------------------------------------------------------


def load(path: str) -> dict[str, Any]:
    """A JSON table ({} when missing); a damaged one is a usage error naming it."""
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read() or b"{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: not a JSON object")
    return doc


def save(path: str, doc: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1).encode(), mode=0o600)


def lock_for(path: str) -> locked:
    """The flock every writer of `path` holds (a hidden file beside it)."""
    folder, name = os.path.split(path)
    return locked(os.path.join(folder, f".{name}.lock"), timeout=10.0)
