"""Filesystem adapter: atomic replace, advisory locks, private folders.

Readers never see a half-written file (temp file in the same directory, fsync,
rename), and concurrent writers (tmux runs `run-shell -b` hooks in parallel)
serialise on flock, which the kernel releases even if the holder is killed.

The tmux hook imports this module, so it uses os.path rather than pathlib and a
small class rather than contextlib (each import costs milliseconds on a slow host).
Paths may be given as str or any os.PathLike.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from agent_mesh import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    PathArg: TypeAlias = str | os.PathLike[str]


def make_dirs(path: PathArg) -> str:
    """Create the folder path and its missing parents; returns path.

    Inside ~/.agents and ~/.agent-inbox each folder made is 0700 whatever the
    umask (mkdir's mode is masked by it, and os.makedirs gives the parents it
    makes the default mode), and those two are made only in an existing parent:
    a hook still running after its HOME was removed must not recreate it
    (FileNotFoundError). Elsewhere it is os.makedirs, the umask deciding.
    """
    target = os.path.abspath(os.fspath(path))
    for root in (paths.agents_dir(), paths.inbox_dir()):
        root = os.path.abspath(root)
        if target == root or target.startswith(root + "/"):
            _private_dirs(target, root)
            return target
    os.makedirs(target, exist_ok=True)
    return target


def _private_dirs(path: str, root: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        if path == root:
            raise
        _private_dirs(os.path.dirname(path), root)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # made meanwhile by a concurrent writer
            return
    os.chmod(path, 0o700)  # exactly: a umask like 0o277 would mask owner bits too


def append_private(path: PathArg) -> int:
    """An O_APPEND descriptor on path, a new file being 0600 (whatever the umask:
    logs hold message text); its folder is made as make_dirs makes it."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        make_dirs(os.path.dirname(os.fspath(path)))
        return os.open(path, flags, 0o600)


def atomic_write(path: PathArg, data: bytes, mode: int = 0o644) -> None:
    """Replace path with data in one rename, creating parent directories.

    The temp file lives next to the target (same filesystem, so the rename is
    atomic) and is removed again on any failure: nothing is left behind.
    """
    target = os.fspath(path)
    tmp = _write_temp(target, data, mode)
    _rename_or_drop(tmp, target)


def _write_temp(target: str, data: bytes, mode: int) -> str:
    """A fsynced temp file with data next to target (its folder made); its path."""
    parent, name = os.path.split(target)
    if parent:
        make_dirs(parent)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return tmp


def _rename_or_drop(tmp: str, target: str) -> None:
    try:
        os.replace(tmp, target)
    except BaseException:
        unlink_quietly(tmp)
        raise


def unlink_quietly(path: str) -> None:
    """Remove path if it is there; any failure is the caller's to ignore (a temp file,
    a stale socket). The one such helper."""
    try:  # noqa: SIM105 - contextlib would cost the hook an import
        os.unlink(path)
    except OSError:
        pass


def write_keeping(path: PathArg, data: bytes | str, new_mode: int) -> None:
    """Replace a user's file atomically, keeping what it is: a symlink (into a dotfiles
    repo) stays one, its target rewritten; an existing file keeps its permission bits;
    a new one gets exactly new_mode, whatever the umask (0600 for a config that may
    hold tokens, 0644 for a shell rc). Text is written as UTF-8, the undecodable bytes
    it was read with (surrogateescape) as they were. The one writer of a user's files."""
    real = os.path.realpath(os.fspath(path))
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    try:
        mode = os.stat(real).st_mode & 0o7777
    except FileNotFoundError:
        mode = new_mode
    atomic_write(real, data, mode)
    os.chmod(real, mode)  # the umask may have masked bits off


class FileKeptChanging(OSError):
    """edit_keeping found the file changed under it on every try; it was left as it is."""


EDIT_TRIES = 5


def edit_keeping(path: PathArg, edit: Callable[[bytes | None], bytes | None],
                 new_mode: int, tries: int = EDIT_TRIES, remove_empty: bool = False) -> bool:
    """Edit a file another program writes too (an agent CLI's own config: Claude Code
    rewrites ~/.claude.json while it runs) without losing its write: compare and swap.

    Under our own lock (one agent-mesh edit of a file at a time), read the file, let
    edit(old bytes, None when missing) make the new bytes (None or the same: nothing
    to write), write them to a temp file, and just before the rename check the file is
    still what was read (same inode, same bytes); if not, the other program wrote it
    meanwhile: read it again and redo the edit, up to `tries` times, then
    FileKeptChanging, the file untouched. A missing file is created with link(2), which
    fails rather than replace one made meanwhile. What is left is the microseconds
    between the check and the rename, which only the other program's own lock could
    close (the agent CLIs take none). Kept like write_keeping: symlink, mode, new_mode.
    With remove_empty, an edit that leaves nothing (b"") removes the file instead,
    under the same check. True when the file was written or removed."""
    real = os.path.realpath(os.fspath(path))
    with locked(_edit_lock(real)):
        for _ in range(max(1, tries)):
            before, ino, mode = _read_stamped(real)
            after = edit(before)
            if after is None or after == before:
                return False
            if remove_empty and not after:
                if before is None or _unlink_if(real, before, ino):
                    return before is not None
                continue
            mode = new_mode if mode is None else mode
            tmp = _write_temp(real, after, mode)
            try:
                os.chmod(tmp, mode)  # the umask may have masked bits off
                if _swap(tmp, real, before, ino):
                    return True
            finally:
                unlink_quietly(tmp)
    raise FileKeptChanging(errno.EAGAIN, f"it kept changing while agent-mesh edited it "
                           f"({tries} tries); left as it is: run the command again",
                           os.fspath(path))


def _edit_lock(real: str) -> str:
    import hashlib

    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return os.path.join(paths.locks_dir(), f"edit-{digest}.lock")


def _read_stamped(real: str) -> tuple[bytes | None, int | None, int | None]:
    """(bytes, inode, permission bits) of the file; (None, None, None) when missing."""
    try:
        with open(real, "rb") as fh:
            st = os.fstat(fh.fileno())
            return fh.read(), st.st_ino, st.st_mode & 0o7777
    except FileNotFoundError:
        return None, None, None


def _unlink_if(real: str, before: bytes, ino: int | None) -> bool:
    """Remove real if it is still (before, ino); False when it changed."""
    now, now_ino, _mode = _read_stamped(real)
    if now != before or now_ino != ino:
        return False
    os.unlink(real)
    return True


def _swap(tmp: str, real: str, before: bytes | None, ino: int | None) -> bool:
    """Put tmp at real if real is still (before, ino); False when it changed."""
    if before is None:
        try:
            os.link(tmp, real)  # fails if one was made meanwhile: never replaces it
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: check, then rename
            if os.path.lexists(real):
                return False
            os.replace(tmp, real)
            return True
    now, now_ino, _mode = _read_stamped(real)
    if now != before or now_ino != ino:
        return False
    os.replace(tmp, real)
    return True


class locked:  # lowercase: used like a function, `with locked(path):`
    """Hold an exclusive flock on lock_path; TimeoutError after timeout seconds.

    Polls with a short growing sleep rather than blocking, so the timeout works
    in any thread (no SIGALRM) and a killed holder never wedges the waiters.
    """

    def __init__(self, lock_path: PathArg, timeout: float = 30.0) -> None:
        self.path = os.fspath(lock_path)
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> int:
        parent = os.path.dirname(self.path)
        if parent:
            make_dirs(parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"lock {self.path} held too long") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return fd

    def __exit__(self, *exc_info: object) -> None:
        """Unlock whatever happened inside (the exception, if any, goes on)."""
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor releases the flock
            self.fd = -1


def append_rotating(path: str, data: bytes, max_bytes: int | None) -> None:
    """Append data in one write (whole lines, with any number of concurrent writers); past
    max_bytes, path becomes path.1 (the one old file kept) unless another writer rotated it
    already. Raises OSError: whether a lost line matters is the caller's to say."""
    fd = append_private(path)
    try:
        os.write(fd, data)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if max_bytes is not None and st.st_size > max_bytes:
        try:
            if os.stat(path).st_ino == st.st_ino:
                os.replace(path, path + ".1")
        except OSError:
            pass


LOG_LINE_MAX = 1_000_000  # bytes of a plain-text log (hook.log, agent-event.log) before rotation


def log_line(path: str, line: str) -> None:
    """`<ISO stamp> [pid] <line>` appended to a plain-text log, control characters made
    printable, rotated at LOG_LINE_MAX; never raises (a hook's log must not break its hook)."""
    try:
        from agent_mesh.clock import now_iso
        from agent_mesh.errors import printable

        text = f"{now_iso()} [{os.getpid()}] {printable(line)}\n"
        append_rotating(path, text.encode("utf-8", "replace"), LOG_LINE_MAX)
    except Exception:
        pass
