"""``Library``: the HDF5 reference library of ganprint, with atomic commits whose cost is what changed.

The user names one path, the index; every reference is an HDF5 file of its own in the folder
``PATH.d`` beside it (``reference_db/schema.py``, ``docs/reference_db.md``). HDF5 is not crash-safe
when modified in place, so a write never modifies a file that the index names: it writes new data
files, then a new index, fsyncs them and renames the index into place (``store.commit``). A crash at
any instant leaves the library as it was before the write or as it is after. Writers exclude each
other with an exclusive ``flock`` on the sidecar file ``PATH.lock``, held from open to ``close()``;
the kernel drops it when a process dies, so a lock is never stale. Readers take no lock on it.

The pieces live apart: ``durable`` (temporary files, fsync, replace, the lock), ``validate``
(arguments and files), ``records`` (``ReferenceInfo``, ``Reference``), ``groups`` (one reference
as an HDF5 group), ``store`` (index, data files, snapshots, commits) and ``reading`` (the read
API); this module composes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

import h5py
import numpy as np

from . import durable, groups, schema, store, validate
from .errors import (
    DamagedReferenceError,
    LibraryClosedError,
    LibraryError,
    LibraryExistsError,
    LibraryNotFoundError,
    LibraryPermissionError,
    ReferenceExistsError,
)
from .calibration_api import CalibrationMethods
from .reading import LibraryReader
from .records import ParamValue, Reference, ReferenceInfo, iso, utc_now

__all__ = ["MODES", "Library", "Reference", "ReferenceInfo"]

#: The legal values of ``Library(path, mode)``.
MODES = ("r", "r+", "a", "w-", "x")


class Library(CalibrationMethods, LibraryReader):
    """The reference library of camera and generator fingerprints: an index file, one file per reference.

    Parameters
    ----------
    path : str or os.PathLike
        The library (its index, conventionally ``*.h5``; the data files go in ``PATH.d/``).
    mode : str, optional
        As in h5py, read-only by default:

        ========  ================================================================
        ``"r"``   read only, the file must exist (default); takes no write lock
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
    Every mutating call (`add`, `update`, `remove`, `rename`, and `add_calibration`,
    `clear_calibration` of ``calibration_api``) is one atomic commit: the new or changed references
    are written to new files, fsynced, and a new index is renamed onto ``path``. Inside
    ``with lib.transaction():`` the writes are committed once, at the end, or not at all if the
    block raises. A writer holds the lock on ``PATH.lock`` from open to `close`, so a
    read-modify-write (``get`` then ``update``) cannot lose another writer's update; open for
    writing only while you write. A reader (``"r"``)
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
        self._snap: store.Snapshot | None = None
        self._lock_fd: int | None = None
        self._txn: store.Draft | None = None
        self._closed = True
        validate.check_mode(mode, MODES)
        validate.check_lock_timeout(lock_timeout)
        self._path = os.path.abspath(os.fspath(path))
        self._real = os.path.realpath(self._path)
        self._dir = os.path.dirname(self._real)
        self._mode = mode
        self._lock_timeout = float(lock_timeout)
        self._version = str(version)
        self._clock = clock if clock is not None else utc_now
        try:
            if mode == "r":
                self._snap = self._open_snapshot(pin=True)
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
            validate.open_checked(self._real, self._path, self._version).close()  # refuse non-libraries first
        if not os.path.isdir(self._dir):
            raise LibraryNotFoundError(f"cannot create {self._path}: directory {self._dir} does not exist")
        if not durable.can_write(self._dir):
            raise LibraryPermissionError(
                f"cannot write the library {self._path}: its directory {self._dir} is not writable "
                "(read-only location or permission denied); the library is untouched")
        if exists and not durable.can_write(self._real):
            raise LibraryPermissionError(
                f"cannot write the library {self._path}: the file is read-only or permission is denied; "
                "open it with mode 'r' to read it")
        self._lock_fd = durable.acquire_lock(self._lock_path, self._lock_timeout, self._path)
        durable.remove_stale_temps(self._real)
        if os.path.lexists(self._real):
            if self._mode in ("w-", "x"):
                raise LibraryExistsError(f"{self._path} already exists (created by another process "
                                         f"while waiting for the lock; mode {self._mode!r} never overwrites)")
        else:
            self._create()
        self._snap = self._open_snapshot(pin=False)
        store.collect_garbage(self._snap)  # what a killed writer left

    def _open_snapshot(self, *, pin: bool) -> store.Snapshot:
        """The committed state, open for reading (a reader pins the data files it may read)."""
        return store.Snapshot(self._real, self._path, self._version, pin=pin)

    def _create(self) -> None:
        try:
            store.create_index(self._real, iso(self._clock()), self._version)
        except FileExistsError:
            raise LibraryExistsError(f"{self._path} appeared while it was being created; it was not overwritten") \
                from None
        except OSError as err:
            raise self._write_error(err, creating=True) from err

    # ---- lock and errors ---------------------------------------------------------------------------

    @property
    def _lock_path(self) -> str:
        return self._real + ".lock"

    def _write_error(self, err: OSError, *, creating: bool = False) -> LibraryError:
        return durable.write_error(err, self._path, creating=creating)

    # ---- drafts and commits -------------------------------------------------------------------------

    def _commit(self, draft: store.Draft) -> None:
        """Commit ``draft`` (or discard it on failure), then read the new snapshot and collect garbage."""
        try:
            store.commit(draft, self._version)
        except BaseException as err:
            draft.discard()
            if isinstance(err, OSError) and not isinstance(err, LibraryError):
                raise self._write_error(err) from err
            raise
        old, self._snap = self._snap, None
        try:
            self._snap = store.Snapshot(self._real, self._path, self._version, pin=False, after=draft)
        finally:
            if old is not None:
                old.close()
        store.collect_garbage(self._snap, committed=draft)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[store.Draft]:
        """The draft to write into: the open transaction's, or a fresh one committed on exit."""
        self._check_writable()
        assert self._snap is not None
        txn = self._txn
        if txn is not None:
            if txn.failed:
                raise LibraryError(f"an earlier write in this transaction on {self._path} failed; leave "
                                   "the transaction block (nothing will be committed)")
            try:
                yield txn
            except BaseException as err:
                txn.failed = True
                if isinstance(err, OSError) and not isinstance(err, LibraryError):
                    raise self._write_error(err) from err
                raise
            return
        draft = store.Draft(self._snap)
        try:
            yield draft
        except BaseException as err:
            draft.discard()
            if isinstance(err, OSError) and not isinstance(err, LibraryError):
                raise self._write_error(err) from err
            raise
        if draft.changed:
            self._commit(draft)

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
        assert self._snap is not None
        txn = self._txn = store.Draft(self._snap)
        try:
            yield self
        except BaseException:
            self._txn = None
            txn.discard()
            raise
        self._txn = None
        if self._closed:
            txn.discard()
            raise LibraryClosedError(f"the library {self._path} was closed inside a transaction; "
                                     "nothing was committed")
        if txn.failed:
            txn.discard()
            raise LibraryError(f"a write inside the transaction on {self._path} failed; nothing was "
                               "committed and the library is unchanged")
        if txn.changed:
            self._commit(txn)

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

    def _check_writable(self) -> None:
        self._check_open()
        if self._mode == "r":
            raise LibraryPermissionError(f"the library {self._path} was opened read-only (mode 'r'); "
                                         "open it with mode 'r+' or 'a' to write")

    @property
    def schema_version(self) -> int:
        """The schema of the committed library: 1 (one file, written as 2 from the first write) or 2."""
        self._check_open()
        assert self._snap is not None
        return self._snap.schema

    def _state(self) -> store.Snapshot | store.Draft:
        self._check_open()
        assert self._snap is not None
        return self._txn if self._txn is not None else self._snap

    def _snapshot_file(self) -> h5py.File:
        assert self._snap is not None and self._snap.h5 is not None
        return self._snap.h5

    def _created(self) -> str:
        assert self._snap is not None
        return self._snap.created

    def _release(self) -> None:
        if self._txn is not None:
            self._txn.discard()
        if self._snap is not None:
            self._snap.close()
            self._snap = None
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
        kind = validate.check_kind(kind)
        fp = validate.as_fingerprint(fingerprint)
        sums_ = validate.as_sums(sums)
        n = validate.check_count(n_images)
        shape_ = validate.check_shape(shape)
        params_ = validate.check_params(params)
        sources_ = validate.check_sources(sources)
        if n < len(sources_):
            raise ValueError(f"n_images ({n}) is smaller than the number of sources ({len(sources_)})")
        validate.check_arrays(f"reference {name!r} in {self._path}", kind, shape_, fp, sums_)
        if self._has(name):
            try:
                old = self._read_info(name, with_sources=False)
            except DamagedReferenceError as err:
                raise ReferenceExistsError(f"the library {self._path} already holds a damaged reference {name!r} "
                                           f"({err.reason}); remove() it first") from None
            raise ReferenceExistsError(
                f"the library {self._path} already holds a reference {name!r} (existing {old.kind}, "
                f"{old.n_images} images, shape {old.shape} vs new {kind}, {n} images, shape {shape_}); "
                "use update() to add images, or remove() or rename() it first")
        now = iso(self._clock())
        with self._writing() as draft:
            draft.put_reference(name, lambda g: groups.write_reference(
                g, kind=kind, fingerprint=fp, sums=sums_, n_images=n, shape=shape_, params=params_, sources=sources_,
                now=now, version=self._version))

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
        sources_removed: Iterable[str] = (),
    ) -> None:
        """Replace a reference's fingerprint and sums with new totals and record the added sources.

        The reference keeps its ``created`` time; ``updated`` becomes now.

        Parameters
        ----------
        name : str
            An existing reference.
        fingerprint : ndarray
            The new fingerprint; same shape as the stored one.
        sums : dict of str to ndarray
            The new running sums; same names and shapes as the stored ones.
        n_images : int
            The new total count: at least the stored count minus ``len(sources_removed)`` plus
            ``len(sources_added)``.
        sources_added : iterable of (str, str)
            ``(file name, sha256)`` of the images added since the stored totals.
        sources_removed : iterable of str, optional
            SHA-256s of recorded sources whose images the new totals no longer count (an image
            taken out of the sums); their entries leave the source list.
        kind, shape, params : optional
            When given, must equal the stored values (a guard against mixing sources).

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        ReferenceExistsError
            An added SHA-256 is already counted in the reference (the message names both files).
        ValueError
            A removed SHA-256 is not among the recorded sources.
        ReferenceMismatchError
            Kind, image shape, parameters, fingerprint shape or sums differ ("existing ... vs new ...").
        LibraryWriteError
            The write failed; the library is unchanged.
        """
        self._check_writable()
        schema.check_name(name)
        fp = validate.as_fingerprint(fingerprint)
        sums_ = validate.as_sums(sums)
        n = validate.check_count(n_images)
        added = validate.check_sources(sources_added)
        old = self._read_info(name, with_sources=True)
        with self._group(name) as g:
            meta = groups.read_meta(g)
        where = f"reference {name!r} in {self._path}"
        removed = {schema.check_sha256(s) for s in sources_removed}
        unknown = sorted(removed - {sha for _, sha in old.sources})
        if unknown:
            raise ValueError(f"{where}: no recorded source has SHA-256 {unknown[0]}; nothing was updated")
        if removed:  # the totals are compared with what is left
            old = dataclasses.replace(old, n_images=old.n_images - len(removed),
                                      sources=[(f, sha) for f, sha in old.sources if sha not in removed])
        validate.check_update(where, old, meta["sum_shapes"], fingerprint=fp, sums=sums_, n_images=n, added=added,
                              kind=kind, shape=shape, params=params)
        validate.check_arrays(where, old.kind, old.shape, fp, sums_)
        sums_ = {k: v.astype(meta["sum_dtypes"][k], copy=False) for k, v in sums_.items()}  # stored dtypes kept
        now = iso(self._clock())

        def fill(g: h5py.Group) -> None:  # a new data file: the stored record with the new totals
            groups.write_reference(g, kind=old.kind, fingerprint=fp, sums=sums_, n_images=n, shape=old.shape,
                                   params=old.params, sources=[*old.sources, *added], now=now, version=self._version)
            g.attrs[schema.ATTR_CREATED] = old.created

        with self._writing() as draft:
            draft.put_reference(name, fill)

    def remove(self, name: str) -> None:
        """Delete a reference and the calibration datasets it owns (one atomic commit, or part of
        the open transaction).

        Raises
        ------
        ReferenceNotFoundError
            No reference of that name.
        """
        self._check_writable()
        self._check_exists(name)
        with self._writing() as draft:
            draft.remove(name)
            self._carry_owned_calibration(draft, name, None)  # its own statistics go with it

    def rename(self, old: str, new: str) -> None:
        """Rename a reference, and the calibration datasets it owns with it; renaming to the same
        name does nothing.

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
        self._check_exists(old)
        if old == new:
            return
        if self._has(new):
            raise ReferenceExistsError(f"cannot rename {old!r} to {new!r} in {self._path}: a reference "
                                       f"{new!r} exists already; remove it first")
        with self._writing() as draft:
            draft.rename(old, new)
            self._carry_owned_calibration(draft, old, new)  # its own statistics follow it

    def upgrade(self) -> bool:
        """Write a schema 1 library as schema 2 now (one atomic commit); False if it is schema 2 already.

        Any write does this too; a library written as schema 2 cannot be read by a ganprint that
        knows only schema 1.
        """
        self._check_writable()
        if self.schema_version >= schema.SCHEMA_VERSION:
            return False
        with self._writing() as draft:
            draft.changed = True
        return True
