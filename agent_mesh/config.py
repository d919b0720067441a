"""~/.agents/config.toml, read in one place: `[limits]` (limits.py) and `[peers]`
(mesh/rights.py) ask `table(name)`, the top-level `transport` and `control_persist`
(mesh/remote.py, mesh/sshclient.py) `value(key)`.

A peer's every request and every capped write look a table up, and tomllib costs a fresh
process ~10-30 ms of imports: the file's tables are kept in a marshal cache next to it
(`.config.cache`, 0600), valid while config.toml keeps its inode, mtime and size, and in
the process after its first look. A file that cannot be read or parsed is a one-line
usage error naming it.
"""

from __future__ import annotations

import os

from agent_mesh import paths
from agent_mesh.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Stamp = tuple[int, int, int]
_seen: list[tuple[Stamp, dict[str, Any]]] = []  # this process's last look


def config_path() -> str:
    return os.path.join(paths.agents_dir(), "config.toml")


def table(name: str) -> dict[str, Any]:
    """config.toml's [name] ({} when the file or the table is missing, or it is no table)."""
    found = _tables().get(name)
    return found if isinstance(found, dict) else {}


def value(key: str) -> str | None:
    """config.toml's top-level key, as text (None when the file or the key is missing)."""
    found = _tables().get(key)
    return None if found is None or isinstance(found, dict) else str(found)


def _tables() -> dict[str, Any]:
    import marshal

    path = config_path()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
    if _seen and _seen[0][0] == stamp:
        return _seen[0][1]
    cache = os.path.join(paths.agents_dir(), ".config.cache")
    try:
        with open(cache, "rb") as fh:
            cached_stamp, tables = marshal.load(fh)
        if tuple(cached_stamp) != stamp or not isinstance(tables, dict):
            raise ValueError("stale")
    except (OSError, EOFError, ValueError, TypeError):
        tables = _parse(path)
        from agent_mesh.fsutil import atomic_write

        try:  # noqa: SIM105 - a cache that cannot be written is only slower
            atomic_write(cache, marshal.dumps((stamp, tables)), 0o600)
        except (OSError, ValueError):  # ValueError: a TOML date marshal cannot keep
            pass
    _seen[:] = [(stamp, tables)]
    return tables


def _parse(path: str) -> dict[str, Any]:
    """The file's tables and top-level values (what marshal can keep: no dates)."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            doc = tomllib.loads(fh.read().decode("utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return {key: value for key, value in doc.items()
            if isinstance(value, (dict, str, int, float, bool))}
