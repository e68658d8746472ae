"""Durable-file mechanics of the reference library: temporary files, fsync, atomic replace, the writer lock.

Nothing here knows the library's layout. The primitives ``copy_file``, ``fsync``, ``replace`` and
``can_write`` are module-level and every caller reaches them through this module, so that tests can
swap them (disk full, read-only location) with ``monkeypatch.setattr(reference_db.durable, ...)``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import h5py

from .errors import LibraryError, LibraryLockedError, LibraryPermissionError, LibraryWriteError

__all__ = [
    "acquire_lock", "can_write", "copy_file", "create_exclusive",
    "file_kind", "fsync", "fsync_dir", "fsync_path", "keep_mode_and_owner", "new_temp", "open_h5", "publish_new",
    "remove_quietly", "remove_stale_temps", "replace", "temp_path", "write_error", "write_new_file",
]

PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_COPY_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP,
                         errno.EPERM, errno.EBADF}
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


# ---- swappable primitives ---------------------------------------------------------------------------

def copy_file(src: str, dst_fd: int) -> None:
    """Copy the bytes of file ``src`` to the open file descriptor ``dst_fd``.

    Uses ``os.copy_file_range`` (an in-kernel copy, a reflink on filesystems that share extents)
    and falls back to ``read``/``write``.
    """
    with open(src, "rb") as fin:
        in_fd = fin.fileno()
        size = os.fstat(in_fd).st_size
        copied = 0
        if hasattr(os, "copy_file_range"):
            try:
                while copied < size:
                    n = os.copy_file_range(in_fd, dst_fd, size - copied)
                    if n == 0:
                        break
                    copied += n
                return
            except OSError as err:
                if copied or err.errno not in _COPY_FALLBACK_ERRNOS:
                    raise
        while True:
            block = os.read(in_fd, 1 << 22)
            if not block:
                return
            view = memoryview(block)
            while view:
                view = view[os.write(dst_fd, view):]


def fsync(fd: int) -> None:
    """``os.fsync``."""
    os.fsync(fd)


def replace(src: str, dst: str) -> None:
    """``os.replace``: atomically make ``dst`` name the file ``src``."""
    os.replace(src, dst)


def can_write(path: str) -> bool:
    """Whether this process may write ``path`` (a file or a directory)."""
    return os.access(path, os.W_OK)


# ---- built on them ----------------------------------------------------------------------------------

def fsync_path(path: str) -> None:
    """fsync the file ``path`` (opened without following a symlink)."""
    fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable; filesystems that cannot fsync a directory are ignored."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    except OSError:
        return
    try:
        fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            raise
    finally:
        os.close(fd)


def remove_quietly(path: str | None) -> None:
    """Unlink ``path`` if it exists (never follows a symlink: the link itself is removed)."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)


def open_h5(path: str, mode: str, **kwargs: Any) -> h5py.File:
    """h5py.File without HDF5's own file locking: the writer lock and atomic replace take its place."""
    return h5py.File(path, mode, locking=False, **kwargs)


def file_kind(mode: int) -> str:
    """``"a regular file"``, ``"a directory"``, ``"a FIFO"``, ... for an ``st_mode``."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def keep_mode_and_owner(path: str, like: os.stat_result) -> None:
    """Give the new file ``path`` the permission bits and, where allowed, the owner and group of ``like``.

    Changing the owner needs privileges; without them the new file keeps this process's owner.
    """
    if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.chown(path, like.st_uid, like.st_gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(like.st_mode), follow_symlinks=False)


def create_exclusive(path: str, mode: int = 0o600) -> int:
    """Create ``path`` and return a write descriptor; refuses an existing file or symlink (``O_EXCL``)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, mode)


# ---- temporary files --------------------------------------------------------------------------------

def temp_path(real: str) -> str:
    """A fresh temporary name ``.BASE.tmp-PID-RANDOM`` beside the file ``real``."""
    base = os.path.basename(real)
    return os.path.join(os.path.dirname(real), f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def new_temp(real: str, mode: int = 0o600) -> tuple[str, int]:
    """Create a fresh temporary file beside ``real`` (``create_exclusive``): ``(path, write fd)``.

    Nothing is created when it fails (e.g. a symlink planted at the name), so the caller removes
    the temporary file only once this returned.
    """
    tmp = temp_path(real)
    return tmp, create_exclusive(tmp, mode)


def remove_stale_temps(real: str) -> None:
    """Remove the temporary files of a killed writer of ``real`` (call only while holding its lock)."""
    pattern = re.compile(rf"^\.{re.escape(os.path.basename(real))}\.tmp-\d+-[0-9a-f]+$")
    with contextlib.suppress(OSError):
        with os.scandir(os.path.dirname(real)) as entries:
            for entry in entries:
                if pattern.match(entry.name):
                    remove_quietly(entry.path)


# ---- new files ------------------------------------------------------------------------------------

def publish_new(tmp: str, real: str) -> bool:
    """Give the complete, fsynced file ``tmp`` the name ``real`` unless ``real`` exists; fsync the directory.

    Returns False, leaving everything as it was, when a file already has the name ``real``.
    """
    try:  # link refuses to overwrite, whoever created the path meanwhile
        os.link(tmp, real)
    except FileExistsError:
        return False
    except OSError:  # filesystems without hard links: the caller holds the lock and checked
        if os.path.lexists(real):
            return False
        replace(tmp, real)
    fsync_dir(os.path.dirname(real))
    return True


def write_new_file(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write the file ``path`` atomically through ``write(fh)``: never through a symlink, never half.

    A fresh temporary file beside ``path`` is created with ``O_EXCL | O_NOFOLLOW`` (a symlink
    planted at its name is refused, not followed), written, fsynced and renamed onto ``path``
    (which replaces a symlink at ``path`` itself, not its target). On failure it is removed.
    """
    tmp, fd = new_temp(path, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            fsync(fh.fileno())
        replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(path) or ".")


# ---- the writer lock --------------------------------------------------------------------------------

def acquire_lock(lock_path: str, timeout: float, library: str) -> int:
    """Take the exclusive ``flock`` on ``lock_path``, waiting up to ``timeout`` seconds; return its fd.

    The lock file must be a regular file: a symbolic link (which would make the PID written into
    it overwrite the link's target), a FIFO or a device there is refused, never opened through.
    The holder's PID is written into the lock file for the error message of the next writer.
    Closing the descriptor (or the process dying) releases the lock.

    Raises
    ------
    LibraryLockedError
        Another process held the lock for ``timeout`` seconds.
    LibraryError
        ``lock_path`` is a symbolic link or not a regular file.
    LibraryPermissionError, LibraryWriteError
        The lock file cannot be created.
    """
    refused = (f"refusing to use the lock file {lock_path} of the library {library}: it is {{}}, not a regular "
               "file (remove it; it is recreated)")
    with contextlib.suppress(FileNotFoundError):
        kind = file_kind(os.lstat(lock_path).st_mode)
        if kind != "a regular file":
            raise LibraryError(refused.format(kind))
    try:  # O_NOFOLLOW: a symlink planted meanwhile fails (ELOOP) instead of being written through
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LibraryError(refused.format("a symbolic link")) from None
        raise write_error(err, library, what=f"create the lock file {lock_path}") from err
    kind = file_kind(os.fstat(fd).st_mode)
    if kind != "a regular file":
        os.close(fd)
        raise LibraryError(refused.format(kind))
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise LibraryError(f"cannot lock {lock_path}: {err.strerror}") from err
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            holder = ""
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(os.pread(fd, 32, 0).split()[0])
                holder = f" (process {pid})"
            os.close(fd)
            raise LibraryLockedError(
                f"the library {library} is being written by another process{holder}; waited "
                f"{timeout:g} s for its lock {lock_path}. Retry when it has finished, "
                "or pass a longer lock_timeout")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)
    with contextlib.suppress(OSError):  # informational: who holds the lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# ---- errors -----------------------------------------------------------------------------------------

def write_error(err: OSError, library: str, *, creating: bool = False, what: str | None = None) -> LibraryError:
    """The library error for an ``OSError`` of a write: permission (``LibraryPermissionError``) or I/O.

    The message names ``library`` and says that it was not changed (or not created).
    """
    action = what or f"{'create' if creating else 'write'} the library {library}"
    reason = err.strerror or str(err)
    state = "was not created" if creating else "is unchanged"
    if isinstance(err, PermissionError) or err.errno in PERMISSION_ERRNOS:
        exc: LibraryError = LibraryPermissionError(
            f"cannot {action}: {reason} (read-only location or permission denied); the library {state}")
    else:
        exc = LibraryWriteError(
            f"could not {action}: {reason}; the library {state} and the temporary file was removed")
    exc.errno = err.errno  # type: ignore[attr-defined]
    exc.filename = library  # type: ignore[attr-defined]
    return exc
