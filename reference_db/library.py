"""``Library``: the HDF5 reference library of ganprint, with atomic copy-on-write updates.

One HDF5 file holds every reference (see ``reference_db/schema.py`` and ``docs/reference_db.md``).
HDF5 is not crash-safe when modified in place, so a write never touches the library file: it copies
the file to a temporary file in the same directory, modifies the copy, flushes and fsyncs it, and
``os.replace``-s it onto the library path (then fsyncs the directory). A crash at any instant leaves
the library as it was before the write or as it is after. Writers exclude each other with an
exclusive ``flock`` on the sidecar file ``PATH.lock``, held from open to ``close()``; the kernel drops
it when a process dies, so a lock is never stale. Readers take no lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import errno
import fcntl
import math
import numbers
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Union

import h5py
import numpy as np

from . import schema
from .errors import (
    LibraryClosedError,
    LibraryError,
    LibraryExistsError,
    LibraryLockedError,
    LibraryNotFoundError,
    LibraryPermissionError,
    LibraryWriteError,
    NotALibraryError,
    ReferenceExistsError,
    ReferenceMismatchError,
    ReferenceNotFoundError,
    SchemaVersionError,
)

__all__ = ["MODES", "Library", "Reference", "ReferenceInfo"]

#: The legal values of ``Library(path, mode)``.
MODES = ("r", "r+", "a", "w-", "x")

ParamValue = Union[bool, int, float, str]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_COPY_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP,
                         errno.EPERM, errno.EBADF}
_MAX_NAMES_SHOWN = 10


# --------------------------------------------------------------------------------------------------
# File-system primitives: module-level so that tests can swap them (disk full, read-only location).
# --------------------------------------------------------------------------------------------------

def _copy_file(src: str, dst_fd: int) -> None:
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


def _fsync(fd: int) -> None:
    """``os.fsync``, swappable in tests."""
    os.fsync(fd)


def _replace(src: str, dst: str) -> None:
    """``os.replace``, swappable in tests."""
    os.replace(src, dst)


def _can_write(path: str) -> bool:
    """Whether this process may write ``path`` (a file or a directory)."""
    return os.access(path, os.W_OK)


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable; filesystems that cannot fsync a directory are ignored."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        _fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _remove_quietly(path: str | None) -> None:
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError, OSError):
        os.unlink(path)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, to the second."""
    if moment.tzinfo is None:
        raise ValueError("the clock must return timezone-aware datetimes")
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_h5(path: str, mode: str, **kwargs: Any) -> h5py.File:
    """h5py.File without HDF5's own file locking: our flock and copy-on-write replace it."""
    return h5py.File(path, mode, locking=False, **kwargs)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReferenceInfo:
    """What the library records about one reference, without its arrays.

    Attributes
    ----------
    name : str
        The reference name.
    kind : str
        ``"camera"`` or ``"generator"``.
    n_images : int
        Number of images counted in the running sums.
    shape : tuple of int
        Shape of every source image, e.g. ``(H, W, 3)``.
    params : dict of str to bool, int, float or str
        Estimation parameters (wavelet, levels, sigma, ...).
    created, updated : str
        ISO 8601 UTC times, e.g. ``"2025-01-31T12:00:00Z"``.
    ganprint_version : str
        The ganprint version that last wrote the reference.
    sources : list of (str, str)
        ``(file name, sha256)`` of each source image, in the order they were added; empty when
        read with ``with_sources=False``.
    n_sources : int
        Number of recorded sources (known even when ``sources`` was not read).
    fingerprint_shape : tuple of int
        Shape of the stored fingerprint.
    sum_names : tuple of str
        Names of the stored running sums.
    """

    name: str
    kind: str
    n_images: int
    shape: tuple[int, ...]
    params: dict[str, ParamValue]
    created: str
    updated: str
    ganprint_version: str
    sources: list[tuple[str, str]]
    n_sources: int = 0
    fingerprint_shape: tuple[int, ...] = ()
    sum_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    """One reference: its ``info``, its fingerprint and its running sums.

    Attributes
    ----------
    info : ReferenceInfo
        The metadata.
    fingerprint : ndarray of float32
        The fingerprint, shape ``info.fingerprint_shape``.
    sums : dict of str to ndarray of float32 or float64
        The running sums needed to add images (empty when read with ``with_sums=False``).
    """

    info: ReferenceInfo
    fingerprint: np.ndarray
    sums: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        """The reference name."""
        return self.info.name

    @property
    def kind(self) -> str:
        """``"camera"`` or ``"generator"``."""
        return self.info.kind

    @property
    def n_images(self) -> int:
        """Number of images counted in the sums."""
        return self.info.n_images


@dataclasses.dataclass
class _Transaction:
    tmp: str | None = None
    h5: h5py.File | None = None
    failed: bool = False


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------

def _check_kind(kind: object) -> str:
    if kind not in schema.KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, schema.KINDS))}, got {kind!r}")
    return str(kind)


def _real_array(value: object, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what} must have at least one dimension, got a scalar")
    return arr


def _as_fingerprint(value: object) -> np.ndarray:
    return np.ascontiguousarray(_real_array(value, "fingerprint"), dtype=np.float32)


def _as_sums(sums: object) -> dict[str, np.ndarray]:
    if not isinstance(sums, Mapping):
        raise TypeError(f"sums must be a dict of name to array, not {type(sums).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in sums.items():
        schema.check_name(key, what="sum name")
        arr = _real_array(value, f"sum {key!r}")
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
        out[key] = np.ascontiguousarray(arr, dtype=dtype)
    return out


def _check_count(n: object, what: str = "n_images") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return int(n)


def _check_shape(shape: object) -> tuple[int, ...]:
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, not {type(shape).__name__}") from None
    if not dims or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0
                       for d in dims):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _param_value(value: object) -> ParamValue:
    """A parameter as a plain Python scalar (bool, int, float or str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"parameter values must be bool, int, float or str, got {type(value).__name__}")


def _check_params(params: object) -> dict[str, ParamValue]:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of name to scalar, not {type(params).__name__}")
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"parameter names must be non-empty str, got {key!r}")
        try:
            out[key] = _param_value(value)
        except TypeError as err:
            raise TypeError(f"parameter {key!r}: {err}") from None
    return out


def _same_param(a: ParamValue, b: ParamValue) -> bool:
    if isinstance(a, bool) != isinstance(b, bool) or isinstance(a, str) != isinstance(b, str):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _source_name(value: object) -> str:
    name = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else value
    if not isinstance(name, str):
        raise TypeError(f"a source file name must be a str, not {type(value).__name__}")
    # h5py stores UTF-8: keep undecodable bytes of odd file names visible instead of failing.
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_sources(sources: object) -> list[tuple[str, str]]:
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Iterable):
        raise TypeError("sources must be an iterable of (file name, sha256) pairs")
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for item in sources:
        try:
            file_name, digest = item
        except (TypeError, ValueError):
            raise TypeError(f"each source must be a (file name, sha256) pair, got {item!r}") from None
        file_name = _source_name(file_name)
        digest = schema.check_sha256(digest)
        if digest in seen:
            raise ReferenceExistsError(
                f"{file_name!r} has the same SHA-256 as {seen[digest]!r} ({digest[:12]}...): "
                "an image may be counted only once")
        seen[digest] = file_name
        out.append((file_name, digest))
    return out


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


# --------------------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------------------

class Library:
    """The reference library: one HDF5 file of camera and generator fingerprints.

    Parameters
    ----------
    path : str or os.PathLike
        The library file (conventionally ``*.h5``).
    mode : str, optional
        As in h5py, read-only by default:

        ========  ================================================================
        ``"r"``   read only, the file must exist (default); takes no lock
        ``"r+"``  read and write, the file must exist
        ``"a"``   read and write, create the file if it does not exist
        ``"w-"``  create the file, fail if a file exists there (``"x"`` is the same)
        ========  ================================================================

        h5py's ``"w"`` (truncate) is deliberately not offered.
    lock_timeout : float, optional
        Seconds a writer waits for another writer's lock before raising `LibraryLockedError`
        (0 tries once; ``math.inf`` waits forever).
    version : str, optional
        The ganprint version recorded with what this object writes.
    clock : callable returning a timezone-aware datetime, optional
        Source of the created/updated times (default: now, UTC); tests may swap it.

    Raises
    ------
    ValueError
        ``mode`` is not one of `MODES`.
    LibraryNotFoundError
        Mode ``"r"`` or ``"r+"`` and no file at ``path`` (also a `FileNotFoundError`).
    LibraryExistsError
        Mode ``"w-"``/``"x"`` and a file exists at ``path`` (also a `FileExistsError`).
    NotALibraryError
        The file is not HDF5, is truncated or damaged, or is HDF5 but not a ganprint library.
        It is never modified.
    SchemaVersionError
        The library was written with a newer schema; upgrade ganprint.
    LibraryPermissionError
        A write mode where the file or its directory cannot be written.
    LibraryLockedError
        A write mode and another writer kept the lock for ``lock_timeout`` seconds.

    Notes
    -----
    Every mutating call (`add`, `update`, `remove`, `rename`) is one atomic commit: a copy of the
    file is modified, fsynced and renamed onto ``path``. Inside ``with lib.transaction():`` the
    writes are committed once, at the end, or not at all if the block raises. A writer holds the
    lock on ``PATH.lock`` from open to `close`, so a read-modify-write (``get`` then ``update``)
    cannot lose another writer's update; open for writing only while you write. A reader (``"r"``)
    sees the library as it was when opened, never a half-written file; reopen to see later writes.
    A ``Library`` object is not thread-safe.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "refs.h5")
    >>> with Library(path, "a") as lib:
    ...     lib.add("cam1", kind="camera", fingerprint=np.zeros((4, 4)),
    ...             sums={"S": np.zeros((1, 4, 4)), "N": np.ones((1, 4, 4))}, n_images=1,
    ...             shape=(4, 4), params={"sigma": 3.0}, sources=[("a.png", "0" * 64)])
    >>> with Library(path) as lib:
    ...     lib.names(), lib.get("cam1").fingerprint.shape
    (['cam1'], (4, 4))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        lock_timeout: float = 10.0,
        version: str = "0.1.0",
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._h5: h5py.File | None = None
        self._lock_fd: int | None = None
        self._txn: _Transaction | None = None
        self._closed = True
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(
                f"invalid mode {mode!r}: use one of {', '.join(map(repr, MODES))} "
                "('r' read only, 'r+' read/write, 'a' read/write or create, 'w-'/'x' create)")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, numbers.Real) \
                or math.isnan(lock_timeout) or lock_timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
        self._path = os.path.abspath(os.fspath(path))
        self._real = os.path.realpath(self._path)
        self._dir = os.path.dirname(self._real)
        self._mode = mode
        self._lock_timeout = float(lock_timeout)
        self._version = str(version)
        self._clock = clock if clock is not None else _utc_now
        try:
            if mode == "r":
                self._h5 = self._open_existing()
            else:
                self._open_for_writing()
        except BaseException:
            self._release()
            raise
        self._closed = False

    # ---- opening ----------------------------------------------------------------------------------

    def _open_for_writing(self) -> None:
        exists = os.path.lexists(self._real)
        if self._mode == "r+" and not exists:
            raise LibraryNotFoundError(f"no reference library at {self._path} (mode 'r+' needs an "
                                       "existing file; use mode 'a' to create one)")
        if self._mode in ("w-", "x") and exists:
            raise LibraryExistsError(f"{self._path} already exists (mode {self._mode!r} creates a new "
                                     "library and never overwrites; use mode 'r+' or 'a' to open it)")
        if exists:
            self._open_existing().close()  # refuse non-libraries before anything is created
        if not os.path.isdir(self._dir):
            raise LibraryNotFoundError(f"cannot create {self._path}: directory {self._dir} does not exist")
        if not _can_write(self._dir):
            raise LibraryPermissionError(
                f"cannot write the library {self._path}: its directory {self._dir} is not writable "
                "(read-only location or permission denied); the library is untouched")
        if exists and not _can_write(self._real):
            raise LibraryPermissionError(
                f"cannot write the library {self._path}: the file is read-only or permission is denied; "
                "open it with mode 'r' to read it")
        self._acquire_lock()
        self._remove_stale_temps()
        if os.path.lexists(self._real):
            if self._mode in ("w-", "x"):
                raise LibraryExistsError(f"{self._path} already exists (created by another process "
                                         f"while waiting for the lock; mode {self._mode!r} never overwrites)")
            self._h5 = self._open_existing()
        else:
            self._create()
            self._h5 = self._open_existing()

    def _open_existing(self) -> h5py.File:
        """Open the current library file read-only after checking that it is a readable library."""
        path = self._path
        if os.path.isdir(self._real):
            raise NotALibraryError(f"{path} is a directory, not a ganprint reference library")
        try:
            with open(self._real, "rb") as fh:
                head = fh.read(len(_HDF5_SIGNATURE))
        except FileNotFoundError:
            raise LibraryNotFoundError(f"no reference library at {path} (file not found)") from None
        except PermissionError:
            raise LibraryPermissionError(f"cannot read the library {path}: permission denied") from None
        if head != _HDF5_SIGNATURE:
            is_hdf5 = False
            if head:  # HDF5 allows a user block before the superblock
                with contextlib.suppress(Exception):
                    is_hdf5 = bool(h5py.is_hdf5(self._real))
            if not is_hdf5:
                what = "an empty file" if not head else "not an HDF5 file"
                raise NotALibraryError(f"{path} is {what}, not a ganprint reference library")
        try:
            f = _open_h5(self._real, "r")
        except Exception as err:  # h5py reports damage as OSError; keep its text, drop its traceback
            raise NotALibraryError(
                f"{path} cannot be opened as HDF5; it may be truncated or damaged ({err})") from None
        try:
            self._check_root(f)
        except BaseException:
            f.close()
            raise
        return f

    def _check_root(self, f: h5py.File) -> None:
        path = self._path
        try:
            attrs = f.attrs
            marker = _text(attrs[schema.ATTR_FORMAT]) if schema.ATTR_FORMAT in attrs else None
            if marker != schema.FORMAT_MARKER:
                raise NotALibraryError(
                    f"{path} is an HDF5 file but not a ganprint reference library (root attribute "
                    f"{schema.ATTR_FORMAT!r} is {marker!r}, expected {schema.FORMAT_MARKER!r})")
            raw = attrs.get(schema.ATTR_SCHEMA_VERSION)
            try:
                found = int(np.asarray(raw).item())
            except (TypeError, ValueError):
                raise NotALibraryError(f"{path}: root attribute {schema.ATTR_SCHEMA_VERSION!r} is "
                                       f"{raw!r}, not an integer; the library is damaged") from None
            if found > schema.SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{path} uses reference library schema version {found}, but this ganprint "
                    f"({self._version}) reads versions up to {schema.SCHEMA_VERSION}: upgrade ganprint "
                    "to read it")
            if found < 1:
                raise NotALibraryError(f"{path}: invalid schema version {found}; the library is damaged")
            if not isinstance(f.get(schema.REFERENCES, getlink=True), h5py.HardLink) \
                    or not isinstance(f[schema.REFERENCES], h5py.Group):
                raise NotALibraryError(f"{path}: the group /{schema.REFERENCES} is missing; "
                                       "the library is damaged")
        except LibraryError:
            raise
        except Exception as err:
            raise NotALibraryError(f"{path} cannot be read; it may be truncated or damaged ({err})") \
                from None

    def _create(self) -> None:
        tmp = self._temp_path()
        try:
            with _open_h5(tmp, "w-", fs_strategy="fsm", fs_persist=True, fs_threshold=1) as f:
                f.attrs[schema.ATTR_FORMAT] = schema.FORMAT_MARKER
                f.attrs[schema.ATTR_SCHEMA_VERSION] = np.int64(schema.SCHEMA_VERSION)
                f.attrs[schema.ATTR_CREATED] = _iso(self._clock())
                f.attrs[schema.ATTR_GANPRINT_VERSION] = self._version
                f.create_group(schema.REFERENCES)
            self._fsync_path(tmp)
            try:  # link refuses to overwrite, whoever created the path meanwhile
                os.link(tmp, self._real)
            except FileExistsError:
                raise LibraryExistsError(f"{self._path} appeared while it was being created; "
                                         "it was not overwritten") from None
            except OSError:  # filesystems without hard links: we hold the lock and checked above
                if os.path.lexists(self._real):
                    raise LibraryExistsError(f"{self._path} appeared while it was being created; "
                                             "it was not overwritten") from None
                _replace(tmp, self._real)
            _fsync_dir(self._dir)
        except LibraryError:
            raise
        except OSError as err:
            raise self._write_error(err, creating=True) from err
        finally:
            _remove_quietly(tmp)

    # ---- lock and temporary files -----------------------------------------------------------------

    @property
    def _lock_path(self) -> str:
        return self._real + ".lock"

    def _acquire_lock(self) -> None:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise self._write_error(err, creating=False, what=f"create the lock file {self._lock_path}") \
                from err
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LibraryError(f"cannot lock {self._lock_path}: {err.strerror}") from err
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    pid = int(os.pread(fd, 32, 0).split()[0])
                    holder = f" (process {pid})"
                os.close(fd)
                raise LibraryLockedError(
                    f"the library {self._path} is being written by another process{holder}; waited "
                    f"{self._lock_timeout:g} s for its lock {self._lock_path}. Retry when it has finished, "
                    "or pass a longer lock_timeout")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
        self._lock_fd = fd
        with contextlib.suppress(OSError):  # informational: who holds the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _temp_path(self) -> str:
        base = os.path.basename(self._real)
        return os.path.join(self._dir, f".{base}.tmp-{os.getpid()}-{secrets.token_hex(4)}")

    def _remove_stale_temps(self) -> None:
        """Remove temporary files left by a killed writer (we hold the lock, so none is live)."""
        pattern = re.compile(rf"^\.{re.escape(os.path.basename(self._real))}\.tmp-\d+-[0-9a-f]+$")
        with contextlib.suppress(OSError):
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    if pattern.match(entry.name):
                        _remove_quietly(entry.path)

    @staticmethod
    def _fsync_path(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            _fsync(fd)
        finally:
            os.close(fd)

    def _write_error(self, err: OSError, *, creating: bool = False, what: str | None = None) -> LibraryError:
        action = what or f"{'create' if creating else 'write'} the library {self._path}"
        reason = err.strerror or str(err)
        state = "was not created" if creating else "is unchanged"
        if isinstance(err, PermissionError) or err.errno in _PERMISSION_ERRNOS:
            exc: LibraryError = LibraryPermissionError(
                f"cannot {action}: {reason} (read-only location or permission denied); "
                f"the library {state}")
        else:
            exc = LibraryWriteError(
                f"could not {action}: {reason}; the library {state} and the temporary file was removed")
        exc.errno = err.errno  # type: ignore[attr-defined]
        exc.filename = self._path  # type: ignore[attr-defined]
        return exc

    # ---- copy-on-write ----------------------------------------------------------------------------

    def _begin(self) -> tuple[str, h5py.File]:
        """Copy the library to a new temporary file and open the copy for writing."""
        tmp = self._temp_path()
        try:
            file_mode = stat.S_IMODE(os.stat(self._real).st_mode)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                _copy_file(self._real, fd)
                os.fchmod(fd, file_mode | stat.S_IRUSR | stat.S_IWUSR)
            finally:
                os.close(fd)
            return tmp, _open_h5(tmp, "r+")
        except BaseException as err:
            _remove_quietly(tmp)
            if isinstance(err, OSError) and not isinstance(err, LibraryError):
                raise self._write_error(err) from err
            raise

    def _discard(self, tmp: str | None, h5: h5py.File | None) -> None:
        if h5 is not None:
            with contextlib.suppress(Exception):
                h5.close()
        _remove_quietly(tmp)

    def _commit(self, tmp: str, h5: h5py.File) -> None:
        """Flush, fsync and rename the modified copy onto the library path."""
        try:
            h5.flush()
            h5.close()
            self._fsync_path(tmp)
            _replace(tmp, self._real)
        except BaseException as err:
            self._discard(tmp, h5)
            if isinstance(err, OSError) and not isinstance(err, LibraryError):
                raise self._write_error(err) from err
            raise
        old, self._h5 = self._h5, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        with contextlib.suppress(OSError):  # committed already; only durability is at stake
            _fsync_dir(self._dir)
        self._h5 = self._open_existing()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[h5py.File]:
        """The file to modify: the open transaction's copy, or a fresh copy committed on exit."""
        self._check_writable()
        txn = self._txn
        if txn is not None:
            if txn.failed:
                raise LibraryError(f"an earlier write in this transaction on {self._path} failed; leave "
                                   "the transaction block (nothing will be committed)")
            if txn.h5 is None:
                txn.tmp, txn.h5 = self._begin()
            try:
                yield txn.h5
            except BaseException as err:
                txn.failed = True
                if isinstance(err, OSError) and not isinstance(err, LibraryError):
                    raise self._write_error(err) from err
                raise
            return
        tmp, h5 = self._begin()
        try:
            yield h5
        except BaseException as err:
            self._discard(tmp, h5)
            if isinstance(err, OSError) and not isinstance(err, LibraryError):
                raise self._write_error(err) from err
            raise
        self._commit(tmp, h5)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Library]:
        """Group several writes into one atomic commit.

        The writes inside the block are visible to this object's reads at once and reach the file
        only when the block ends without an exception; an exception discards them all and the
        library is left as it was. Nested transactions are not supported.

        Yields
        ------
        Library
            This library.

        Raises
        ------
        LibraryPermissionError
            The library was opened read-only.
        RuntimeError
            A transaction is already open on this object.
        LibraryWriteError
            The commit failed (disk full, ...); the library is unchanged.

        Examples
        --------
        >>> with lib.transaction():                                     # doctest: +SKIP
        ...     lib.remove("old"); lib.rename("new", "old")
        """
        self._check_writable()
        if self._txn is not None:
            raise RuntimeError(f"a transaction is already open on {self._path}; "
                               "nested transactions are not supported")
        txn = self._txn = _Transaction()
        try:
            yield self
        except BaseException:
            self._txn = None
            self._discard(txn.tmp, txn.h5)
            raise
        self._txn = None
        if self._closed:
            self._discard(txn.tmp, txn.h5)
            raise LibraryClosedError(f"the library {self._path} was closed inside a transaction; "
                                     "nothing was committed")
        if txn.failed:
            self._discard(txn.tmp, txn.h5)
            raise LibraryError(f"a write inside the transaction on {self._path} failed; nothing was "
                               "committed and the library is unchanged")
        if txn.h5 is not None and txn.tmp is not None:
            self._commit(txn.tmp, txn.h5)

    # ---- state ------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Absolute path of the library file."""
        return self._path

    @property
    def mode(self) -> str:
        """The mode the library was opened with."""
        return self._mode

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise LibraryClosedError(f"the library {self._path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._mode == "r":
            raise LibraryPermissionError(f"the library {self._path} was opened read-only (mode 'r'); "
                                         "open it with mode 'r+' or 'a' to write")

    def _file(self) -> h5py.File:
        self._check_open()
        if self._txn is not None and self._txn.h5 is not None:
            return self._txn.h5
        assert self._h5 is not None
        return self._h5

    def _refs(self) -> h5py.Group:
        return self._file()[schema.REFERENCES]

    def _release(self) -> None:
        if self._txn is not None:
            self._discard(self._txn.tmp, self._txn.h5)
            self._txn.h5 = None
            self._txn.tmp = None
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def close(self) -> None:
        """Close the file and release the write lock; an open transaction is discarded. Idempotent."""
        self._closed = True
        self._release()

    def __enter__(self) -> Library:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ganprint Library {self._path!r} mode={self._mode!r} {state}>"

    # ---- reading ----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Sorted names of the references."""
        return sorted(self._refs().keys())

    def __contains__(self, name: object) -> bool:
        try:
            schema.check_name(name)
        except (TypeError, ValueError):
            return False
        return name in self._refs()

    def __len__(self) -> int:
        return len(self._refs())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _group(self, name: str) -> h5py.Group:
        schema.check_name(name)
        refs = self._refs()
        if name not in refs:
            raise self._not_found(name)
        return refs[name]

    def _not_found(self, name: str) -> ReferenceNotFoundError:
        names = self.names()
        msg = f"no reference {name!r} in the library {self._path}"
        close = difflib.get_close_matches(name, names, n=3)
        if close:
            msg += f" (did you mean {' or '.join(map(repr, close))}?)"
        if not names:
            msg += "; the library is empty"
        else:
            shown = ", ".join(names[:_MAX_NAMES_SHOWN])
            more = f", ... ({len(names) - _MAX_NAMES_SHOWN} more)" if len(names) > _MAX_NAMES_SHOWN else ""
            msg += f"; it holds {len(names)}: {shown}{more}"
        return ReferenceNotFoundError(msg)

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        try:
            yield
        except LibraryError:
            raise
        except Exception as err:
            raise NotALibraryError(f"reference {name!r} in {self._path} cannot be read; the library "
                                   f"may be damaged ({type(err).__name__}: {err})") from None

    def _read_info(self, name: str, *, with_sources: bool) -> ReferenceInfo:
        g = self._group(name)
        with self._reading(name):
            a = g.attrs
            sources: list[tuple[str, str]] = []
            if with_sources:
                files = g[schema.SOURCES][schema.SOURCE_FILE_NAME].asstr()[()]
                shas = g[schema.SOURCES][schema.SOURCE_SHA256][()]
                sources = [(str(f), _text(s)) for f, s in zip(files, shas)]
            return ReferenceInfo(
                name=name,
                kind=_text(a[schema.ATTR_KIND]),
                n_images=int(a[schema.ATTR_N_IMAGES]),
                shape=tuple(int(d) for d in np.atleast_1d(a[schema.ATTR_IMAGE_SHAPE])),
                params={k: _param_value(v) for k, v in g[schema.PARAMS].attrs.items()},
                created=_text(a[schema.ATTR_CREATED]),
                updated=_text(a[schema.ATTR_UPDATED]),
                ganprint_version=_text(a[schema.ATTR_GANPRINT_VERSION]),
                sources=sources,
                n_sources=int(a[schema.ATTR_N_SOURCES]),
                fingerprint_shape=tuple(g[schema.FINGERPRINT].shape),
                sum_names=tuple(sorted(g[schema.SUMS].keys())),
            )

    def info(self, name: str, *, with_sources: bool = True) -> ReferenceInfo:
        """Metadata of one reference, without loading its arrays.

        Parameters
        ----------
        name : str
            The reference name.
        with_sources : bool, optional
            Read the list of source files and hashes (default True).

        Returns
        -------
        ReferenceInfo

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name; the message names the library and lists what it holds.
        ValueError
            ``name`` is not a legal reference name.
        """
        return self._read_info(name, with_sources=with_sources)

    def infos(self, *, with_sources: bool = False) -> list[ReferenceInfo]:
        """Metadata of every reference, sorted by name: the cheap listing (attributes only by default).

        Parameters
        ----------
        with_sources : bool, optional
            Also read each reference's sources (default False: ``sources`` is empty, ``n_sources``
            still counts them).

        Returns
        -------
        list of ReferenceInfo
        """
        return [self._read_info(n, with_sources=with_sources) for n in self.names()]

    def get(self, name: str, *, with_sums: bool = True) -> Reference:
        """Load one reference: its metadata, fingerprint and (by default) running sums.

        Parameters
        ----------
        name : str
            The reference name.
        with_sums : bool, optional
            Load the running sums too (default True); attribution needs only the fingerprint.

        Returns
        -------
        Reference

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        """
        info = self._read_info(name, with_sources=True)
        g = self._group(name)
        with self._reading(name):
            fingerprint = np.asarray(g[schema.FINGERPRINT][()], dtype=np.float32)
            sums = {k: ds[()] for k, ds in g[schema.SUMS].items()} if with_sums else {}
        return Reference(info=info, fingerprint=fingerprint, sums=sums)

    def has_source(self, name: str, sha256: str) -> bool:
        """Whether the image of SHA-256 ``sha256`` is already counted in reference ``name``.

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        ValueError
            ``sha256`` is not 64 hex digits.
        """
        digest = schema.check_sha256(sha256).encode("ascii")
        g = self._group(name)
        with self._reading(name):
            shas = g[schema.SOURCES][schema.SOURCE_SHA256][()]
        return bool(np.any(shas == digest))

    def calibration(self, key: str) -> np.ndarray:
        """Calibration values stored under ``key`` (float64, 1-D; empty when there are none)."""
        schema.check_name(key)
        group = self._file().get(schema.CALIBRATION)
        if group is None or key not in group:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(group[key][()], dtype=np.float64)

    # ---- writing ----------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        kind: str,
        fingerprint: np.ndarray,
        sums: Mapping[str, np.ndarray],
        n_images: int,
        shape: tuple[int, ...],
        params: Mapping[str, ParamValue],
        sources: Iterable[tuple[str, str]],
    ) -> None:
        """Add a new reference (one atomic commit, or part of the open transaction).

        Parameters
        ----------
        name : str
            Non-empty, printable, without ``"/"``, not starting with ``"."``.
        kind : {"camera", "generator"}
        fingerprint : ndarray, any shape
            Stored as float32 (camera (H, W); generator (H, W) or (C, H, W)).
        sums : dict of str to ndarray
            Running sums to add images later (camera ``S``, ``N`` of shape (C, H, W); generator
            ``sum``); float32 arrays stay float32, others are stored as float64.
        n_images : int
            Images counted in ``sums``; at least ``len(sources)``.
        shape : tuple of int
            Shape of every source image.
        params : dict of str to bool, int, float or str
            Estimation parameters (wavelet, levels, sigma, ...).
        sources : iterable of (str, str)
            ``(file name, sha256)`` of each source image.

        Raises
        ------
        ReferenceExistsError
            A reference of that name exists, or two sources share a SHA-256.
        LibraryPermissionError
            The library was opened read-only, or cannot be written.
        LibraryWriteError
            The write failed (disk full, ...); the library is unchanged.
        ValueError, TypeError
            An argument is malformed.
        """
        self._check_writable()
        schema.check_name(name)
        kind = _check_kind(kind)
        fp = _as_fingerprint(fingerprint)
        sums_ = _as_sums(sums)
        n = _check_count(n_images)
        shape_ = _check_shape(shape)
        params_ = _check_params(params)
        sources_ = _check_sources(sources)
        if n < len(sources_):
            raise ValueError(f"n_images ({n}) is smaller than the number of sources ({len(sources_)})")
        if name in self._refs():
            old = self._read_info(name, with_sources=False)
            raise ReferenceExistsError(
                f"the library {self._path} already holds a reference {name!r} (existing {old.kind}, "
                f"{old.n_images} images, shape {old.shape} vs new {kind}, {n} images, shape {shape_}); "
                "use update() to add images, or remove() or rename() it first")
        now = _iso(self._clock())
        with self._writing() as f:
            g = f[schema.REFERENCES].create_group(name)
            g.attrs[schema.ATTR_KIND] = kind
            g.attrs[schema.ATTR_N_IMAGES] = np.int64(n)
            g.attrs[schema.ATTR_IMAGE_SHAPE] = np.asarray(shape_, dtype=np.int64)
            g.attrs[schema.ATTR_CREATED] = now
            g.attrs[schema.ATTR_UPDATED] = now
            g.attrs[schema.ATTR_GANPRINT_VERSION] = self._version
            g.attrs[schema.ATTR_N_SOURCES] = np.int64(len(sources_))
            g.create_dataset(schema.FINGERPRINT, data=fp)
            sg = g.create_group(schema.SUMS)
            for key, arr in sums_.items():
                sg.create_dataset(key, data=arr)
            pg = g.create_group(schema.PARAMS)
            for key, value in params_.items():
                pg.attrs[key] = value
            src = g.create_group(schema.SOURCES)
            src.create_dataset(schema.SOURCE_FILE_NAME, shape=(0,), maxshape=(None,),
                               chunks=(schema.SOURCES_CHUNK,), dtype=h5py.string_dtype("utf-8"))
            src.create_dataset(schema.SOURCE_SHA256, shape=(0,), maxshape=(None,),
                               chunks=(schema.SOURCES_CHUNK,), dtype=schema.SHA256_DTYPE)
            self._append_sources(g, sources_)

    @staticmethod
    def _append_sources(g: h5py.Group, sources: list[tuple[str, str]]) -> None:
        if not sources:
            return
        files = g[schema.SOURCES][schema.SOURCE_FILE_NAME]
        shas = g[schema.SOURCES][schema.SOURCE_SHA256]
        start = files.shape[0]
        stop = start + len(sources)
        files.resize((stop,))
        shas.resize((stop,))
        files[start:stop] = np.array([f for f, _ in sources], dtype=object)
        shas[start:stop] = np.array([s.encode("ascii") for _, s in sources], dtype=schema.SHA256_DTYPE)
        g.attrs[schema.ATTR_N_SOURCES] = np.int64(stop)

    def update(
        self,
        name: str,
        *,
        fingerprint: np.ndarray,
        sums: Mapping[str, np.ndarray],
        n_images: int,
        sources_added: Iterable[tuple[str, str]],
        kind: str | None = None,
        shape: tuple[int, ...] | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> None:
        """Replace a reference's fingerprint and sums with new totals and record the added sources.

        Parameters
        ----------
        name : str
            An existing reference.
        fingerprint : ndarray
            The new fingerprint; same shape as the stored one.
        sums : dict of str to ndarray
            The new running sums; same names and shapes as the stored ones.
        n_images : int
            The new total count: at least the stored count plus ``len(sources_added)``.
        sources_added : iterable of (str, str)
            ``(file name, sha256)`` of the images added since the stored totals.
        kind, shape, params : optional
            When given, must equal the stored values (a guard against mixing sources).

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        ReferenceExistsError
            An added SHA-256 is already counted in the reference (the message names both files).
        ReferenceMismatchError
            Kind, image shape, parameters, fingerprint shape or sums differ ("existing ... vs new ...").
        LibraryWriteError
            The write failed; the library is unchanged.
        """
        self._check_writable()
        schema.check_name(name)
        fp = _as_fingerprint(fingerprint)
        sums_ = _as_sums(sums)
        n = _check_count(n_images)
        added = _check_sources(sources_added)
        old = self._read_info(name, with_sources=True)
        where = f"reference {name!r} in {self._path}"
        if kind is not None and _check_kind(kind) != old.kind:
            raise ReferenceMismatchError(f"{where}: existing kind {old.kind!r} vs new {kind!r}")
        if shape is not None and _check_shape(shape) != old.shape:
            raise ReferenceMismatchError(f"{where}: existing image shape {old.shape} vs new "
                                         f"{_check_shape(shape)}")
        if params is not None:
            new_params = _check_params(params)
            keys = sorted(set(old.params) | set(new_params))
            diff = [k for k in keys if k not in old.params or k not in new_params
                    or not _same_param(old.params[k], new_params[k])]
            if diff:
                detail = ", ".join(f"{k}: existing {old.params.get(k, '<absent>')!r} vs new "
                                   f"{new_params.get(k, '<absent>')!r}" for k in diff)
                raise ReferenceMismatchError(f"{where}: parameters differ ({detail})")
        if fp.shape != old.fingerprint_shape:
            raise ReferenceMismatchError(f"{where}: existing fingerprint shape {old.fingerprint_shape} "
                                         f"vs new {fp.shape}")
        if tuple(sorted(sums_)) != old.sum_names:
            raise ReferenceMismatchError(f"{where}: existing sums {list(old.sum_names)} vs new "
                                         f"{sorted(sums_)}")
        g = self._group(name)
        for key, arr in sums_.items():
            stored = g[schema.SUMS][key]
            if arr.shape != stored.shape:
                raise ReferenceMismatchError(f"{where}: existing sum {key!r} of shape {stored.shape} "
                                             f"vs new {arr.shape}")
        counted = {sha: f for f, sha in old.sources}
        dupes = [(f, sha) for f, sha in added if sha in counted]
        if dupes:
            f, sha = dupes[0]
            more = f" (and {len(dupes) - 1} more)" if len(dupes) > 1 else ""
            raise ReferenceExistsError(
                f"{f!r} is already counted in {where}: same SHA-256 as {counted[sha]!r} "
                f"({sha[:12]}...){more}; nothing was updated")
        if n < old.n_images + len(added):
            raise ValueError(f"n_images ({n}) must be at least the stored count ({old.n_images}) plus "
                             f"the {len(added)} added sources")
        now = _iso(self._clock())
        with self._writing() as f:
            g = f[schema.REFERENCES][name]
            g[schema.FINGERPRINT][...] = fp
            for key, arr in sums_.items():
                ds = g[schema.SUMS][key]
                ds[...] = arr.astype(ds.dtype, copy=False)
            self._append_sources(g, added)
            g.attrs[schema.ATTR_N_IMAGES] = np.int64(n)
            g.attrs[schema.ATTR_UPDATED] = now
            g.attrs[schema.ATTR_GANPRINT_VERSION] = self._version

    def add_calibration(self, key: str, values) -> None:
        """Append finite values to the calibration dataset ``key`` (one atomic commit, or part of
        the open transaction). Non-finite values are refused with ``ValueError``."""
        self._check_writable()
        schema.check_name(key)
        values = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)):
            raise ValueError(f"calibration values for {key!r} must be finite")
        if values.size == 0:
            return
        with self._writing() as f:
            group = f.require_group(schema.CALIBRATION)
            if key not in group:
                group.create_dataset(key, data=values, maxshape=(None,), chunks=(schema.CALIBRATION_CHUNK,))
            else:
                ds = group[key]
                n = ds.shape[0]
                ds.resize((n + values.size,))
                ds[n:] = values

    def remove(self, name: str) -> None:
        """Delete a reference (one atomic commit, or part of the open transaction).

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        """
        self._check_writable()
        self._group(name)
        with self._writing() as f:
            del f[schema.REFERENCES][name]

    def rename(self, old: str, new: str) -> None:
        """Rename a reference; renaming to the same name does nothing.

        Raises
        ------
        ReferenceNotFoundError
            No reference ``old``.
        ReferenceExistsError
            A reference ``new`` exists already.
        ValueError
            ``new`` is not a legal reference name.
        """
        self._check_writable()
        schema.check_name(new)
        self._group(old)
        if old == new:
            return
        if new in self._refs():
            raise ReferenceExistsError(f"cannot rename {old!r} to {new!r} in {self._path}: a reference "
                                       f"{new!r} exists already; remove it first")
        with self._writing() as f:
            f[schema.REFERENCES].move(old, new)
