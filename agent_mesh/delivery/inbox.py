"""The inbox: where files sent with `--file` land, ~/.agent-inbox/<sender>/<name>.

One home for placing files, whether the sender is on this host (a local file,
copied in bounded memory) or a peer (a part it uploaded over SFTP into
~/.agent-inbox/.incoming). Either way the bytes go to a 0600 part under
.incoming first and are then linked under a name no earlier file holds
(`report.md`, `report-2.md`, …): a drop never replaces another, and what the
announcement names is what arrived. Sender folders are a reversible encoding of
the sender's name, so two senders never share one.

On the local delivery path: only os, no pathlib or shutil (import budget).
"""

from __future__ import annotations

import os
import stat
import time

from agent_mesh import paths
from agent_mesh.errors import UsageError, WireError
from agent_mesh.fsutil import unlink_quietly
from agent_mesh.registry.naming import address_char

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

INCOMING = ".incoming"
CHUNK = 1 << 20
DEFAULT_MAX_FILE = 1 << 30
STALE_PART_SECONDS = 3600.0
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# --- names ------------------------------------------------------------------


def safe_component(name: str, fallback: str) -> str:
    """A single path component: no `/`, no control characters, not `.`/`..`."""
    cleaned = "".join(
        "_" if ch in "/\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch for ch in name
    ).strip()
    while cleaned.startswith("."):
        cleaned = cleaned[1:]
    encoded = cleaned.encode("utf-8", "replace")[:200]
    cleaned = encoded.decode("utf-8", "ignore")
    return cleaned or fallback


def sender_dir_name(sender: str) -> str:
    """The sender's folder: the name itself when it is plain ([A-Za-z0-9._-], as the
    bash tool names it), else percent-encoded (`alice bob` → `alice%20bob`), so
    distinct senders never share a folder. A leading `.` is encoded too (no hidden
    or `..` folders); very long names end in a hash of the whole name."""
    if not sender:
        return "unknown"
    out = []
    for index, byte in enumerate(sender.encode("utf-8", "surrogateescape")):
        ch = chr(byte)
        if byte < 0x80 and address_char(ch) and not (index == 0 and ch == "."):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    folder = "".join(out)
    if len(folder) > 200:
        import hashlib

        digest = hashlib.sha256(sender.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        folder = f"{folder[:180]}~{digest}"
    return folder


def _numbered(base: str, n: int) -> str:
    """`report.md` → `report-2.md` (the last extension is kept)."""
    stem, ext = os.path.splitext(base)
    return f"{stem}-{n}{ext}"


# --- reading a local file ---------------------------------------------------


def max_file_size() -> int:
    """AGENT_MESH_MAX_FILE (bytes, or with K/M/G/T), default 1 GiB."""
    raw = os.environ.get("AGENT_MESH_MAX_FILE", "").strip()
    if not raw:
        return DEFAULT_MAX_FILE
    unit = _UNITS.get(raw[-1].lower(), 1)
    number = raw[:-1] if unit != 1 else raw
    if not number.isdigit():
        raise UsageError(
            f"AGENT_MESH_MAX_FILE={raw!r} is not a size (bytes, or a number with K, M, G)"
        )
    return int(number) * unit


class SourceFile:
    """A regular file opened for sending: its name, its size when opened, and its
    bytes in bounded chunks (`chunks()`), or as a file object (`fh`) for SFTP.

    Opening refuses what is not a regular file (a FIFO would block forever,
    /dev/zero never ends, a directory has no bytes) and a file over the size cap.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path.rstrip("/")) or "file"
        try:
            # O_NONBLOCK: opening a FIFO with no writer must not hang before we can look.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"cannot send {path}: {_kind(info.st_mode)}, not a regular file")
            limit = max_file_size()
            if info.st_size > limit:
                raise UsageError(
                    f"cannot send {path}: {info.st_size} bytes is over the limit of {limit} "
                    "bytes (set AGENT_MESH_MAX_FILE to raise it)"
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self.size = info.st_size
        self.fh = os.fdopen(fd, "rb")

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The file's first `self.size` bytes, at most `size` at a time."""
        left = self.size
        while left > 0:
            try:
                data = self.fh.read(min(size, left))
            except OSError as exc:
                raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
            if not data:
                return
            left -= len(data)
            yield data

    def close(self) -> None:
        self.fh.close()

    def __del__(self) -> None:  # callers may simply drop it, as with a file object
        fh = getattr(self, "fh", None)
        if fh is not None:
            fh.close()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device"
    if stat.S_ISSOCK(mode):
        return "it is a socket"
    return "it is not a file"


# --- placing ----------------------------------------------------------------


def incoming_dir() -> str:
    return os.path.join(paths.inbox_dir(), INCOMING)


def _private_dir(path: str) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, 0o700, exist_ok=True)
    os.chmod(path, 0o700)


def new_part() -> tuple[str, int]:
    """A fresh 0600 part under ~/.agent-inbox/.incoming: (path, open fd)."""
    inbox = paths.inbox_dir()
    _private_dir(inbox)
    _private_dir(os.path.join(inbox, INCOMING))
    part = os.path.join(inbox, INCOMING, f"{os.getpid()}-{os.urandom(8).hex()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return part, fd


class Upload:
    """A part a peer streamed to us: its path relative to HOME and declared size."""

    __slots__ = ("size", "tmp")

    def __init__(self, tmp: str, size: int) -> None:
        self.tmp = tmp
        self.size = size


def receive_upload(stream: BinaryIO, size: int) -> Upload:
    """Stream a request's body into a fresh 0600 part, CHUNK bytes at a time (bounded
    memory). A body cut short leaves a short part, which place_upload refuses."""
    part, fd = new_part()
    try:
        left = size
        while left > 0:
            data = stream.read(min(CHUNK, left))
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            left -= len(data)
    except BaseException:
        os.close(fd)
        unlink_quietly(part)
        raise
    os.close(fd)
    return Upload(os.path.relpath(part, paths.home()), size)


class Dropped:
    """A file placed in the inbox: where it is, how the announcement shows it, its size."""

    __slots__ = ("path", "shown", "size")

    def __init__(self, path: str, shown: str, size: int) -> None:
        self.path = path
        self.shown = shown
        self.size = size

    def remove(self) -> None:
        """Take it out again (the message announcing it was not delivered)."""
        unlink_quietly(self.path)


def place(file: SourceFile | Upload | bytes, sender: str, name: str | None) -> Dropped:
    """Put a local file, bytes or a peer's upload into ~/.agent-inbox/<sender>/.

    A failing disk is the recipient's problem, not the sender's arguments: it is
    a WireError (exit 4), one line, with nothing left behind.
    """
    try:
        if isinstance(file, Upload):
            return place_upload(file.tmp, sender, name or "file", file.size)
        fallback = file.name if isinstance(file, SourceFile) else "file"
        return place_local(file, sender, name or fallback)
    except OSError as exc:
        raise WireError(
            f"could not drop the file into ~/.agent-inbox: {exc.strerror or exc}"
        ) from None


def place_local(source: SourceFile | bytes, sender: str, name: str) -> Dropped:
    """Copy a local file (or bytes) into the inbox.

    Streams through a 0600 part in 1 MiB chunks, then links it under a free name;
    any failure removes the part, so nothing half-written is ever left behind.
    """
    part, fd = new_part()
    size = 0
    try:
        try:
            pieces = source.chunks() if isinstance(source, SourceFile) else (source,)
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
                size += len(piece)
        finally:
            os.close(fd)
        path, shown = _publish(part, sender, name)
    except BaseException:
        unlink_quietly(part)
        raise
    return Dropped(path, shown, size)


def place_upload(tmp: str, sender: str, name: str, size: int) -> Dropped:
    """Publish a part a peer streamed to us (receive_upload).

    The part must be ours (a `.part` directly under ~/.agent-inbox/.incoming, given
    relative to HOME) and exactly `size` bytes long; anything else is refused and a
    wrong-sized part removed.
    """
    source = _upload_path(tmp)
    if source is None:
        raise UsageError(f"refusing upload path {tmp!r}")
    try:
        actual = os.stat(source).st_size
    except FileNotFoundError:
        raise UsageError("the uploaded file is missing") from None
    if actual != size:
        unlink_quietly(source)
        raise UsageError(f"upload truncated ({actual} of {size} bytes)")
    try:
        os.chmod(source, 0o600)
        path, shown = _publish(source, sender, name)
    except BaseException:
        unlink_quietly(source)
        raise
    return Dropped(path, shown, size)


def discard_upload(tmp: str) -> None:
    """Remove a peer's part that was not delivered (a no-op once it was published)."""
    source = _upload_path(tmp)
    if source is not None:
        unlink_quietly(source)


def _upload_path(tmp: str) -> str | None:
    incoming = os.path.realpath(incoming_dir())
    source = os.path.realpath(os.path.join(paths.home(), tmp))
    if os.path.dirname(source) != incoming or not source.endswith(".part"):
        return None
    return source


def _publish(part: str, sender: str, name: str) -> tuple[str, str]:
    """Link part under ~/.agent-inbox/<sender>/ with the first free name, drop the
    part; returns (path, display path)."""
    folder = sender_dir_name(sender)
    base = safe_component(os.path.basename(name), "file")
    target_dir = os.path.join(paths.inbox_dir(), folder)
    _private_dir(target_dir)
    chosen = base
    for n in range(2, 10_000):
        try:
            os.link(part, os.path.join(target_dir, chosen))  # atomic, never replaces
            break
        except FileExistsError:
            chosen = _numbered(base, n)
    else:
        raise OSError(f"too many files named {base} from this sender")
    unlink_quietly(part)
    return os.path.join(target_dir, chosen), f"~/.agent-inbox/{folder}/{chosen}"


# --- leftovers --------------------------------------------------------------


def stale_parts(max_age: float = STALE_PART_SECONDS) -> list[str]:
    """Parts in ~/.agent-inbox/.incoming untouched for max_age seconds: uploads or
    copies whose sender was killed. (For `doctor`, and swept at each delivery.)"""
    cutoff = time.time() - max_age
    try:
        entries = list(os.scandir(incoming_dir()))
    except OSError:
        return []
    stale = []
    for entry in entries:
        try:
            if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                stale.append(entry.path)
        except OSError:
            continue
    return sorted(stale)


def sweep_stale_parts(max_age: float = STALE_PART_SECONDS) -> int:
    """Remove stale parts; how many went. Never raises (it is housekeeping)."""
    stale = stale_parts(max_age)
    for path in stale:
        unlink_quietly(path)
    return len(stale)
