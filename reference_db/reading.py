"""The read API of a library: names, metadata, fingerprints, sums and calibration of one snapshot.

``LibraryReader`` reads the places (``store.Place``) that its subclass's ``_state()`` returns (for
``Library``: the snapshot it opened, or the draft of its open transaction). Nothing it returns comes
from a damaged reference: a reference whose data cannot be read, whose shapes or dtypes disagree
with the schema, or whose fingerprint or sums hold NaN or inf raises `DamagedReferenceError`
(naming the library, the reference and the problem) instead, and `infos` lists it as damaged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import stat
from collections.abc import Iterator

import h5py
import numpy as np

from . import durable, groups, schema, store, validate
from .errors import (
    DamagedReferenceError,
    LibraryClosedError,
    LibraryError,
    LibraryExistsError,
    LibraryPermissionError,
    LibraryWriteError,
    NotALibraryError,
    ReferenceNotFoundError,
)
from .records import Reference, ReferenceInfo

__all__ = ["LibraryReader"]

_MAX_NAMES_SHOWN = 10


class LibraryReader:
    """Reading methods shared by every open library; ``_path`` names it in messages."""

    _path: str
    _real: str
    _closed: bool

    def _state(self) -> store.Snapshot | store.Draft:
        """The state to read: its ``places`` and ``calibration`` (raises ``LibraryClosedError`` once closed)."""
        raise NotImplementedError

    def _snapshot_file(self) -> h5py.File:
        """The open index (or schema 1 file) of the snapshot, which schema 1 places point into."""
        raise NotImplementedError

    def _created(self) -> str:
        """When the library was created (ISO 8601 UTC)."""
        raise NotImplementedError

    _version: str

    def _check_open(self) -> None:
        if self._closed:
            raise LibraryClosedError(f"the library {self._path} is closed")

    # ---- names ------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Sorted names of the references (damaged ones included)."""
        return sorted(self._state().places)

    def _has(self, name: str) -> bool:
        """Whether an entry ``name`` exists (a dangling one counts: it names a damaged reference)."""
        return name in self._state().places

    def __contains__(self, name: object) -> bool:
        try:
            schema.check_name(name)
        except (TypeError, ValueError):
            return False
        return self._has(name)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._state().places)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

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

    def _check_exists(self, name: str) -> None:
        schema.check_name(name)
        if not self._has(name):
            raise self._not_found(name)

    # ---- damage -----------------------------------------------------------------------------------

    def _damaged(self, name: str, reason: str) -> DamagedReferenceError:
        return DamagedReferenceError(
            f"reference {name!r} in the library {self._path} is damaged: {reason}; it is not used "
            f"(remove it, then build it again)", name=name, reason=reason)

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        """Turn any failure to read reference ``name`` into a `DamagedReferenceError`."""
        try:
            yield
        except LibraryError:
            raise
        except store.Unreadable as err:
            raise self._damaged(name, str(err)) from None
        except Exception as err:
            detail = " ".join(str(err).split()) or type(err).__name__
            raise self._damaged(name, f"its data cannot be read ({type(err).__name__}: {detail})") from None

    @contextlib.contextmanager
    def _group(self, name: str) -> Iterator[h5py.Group]:
        """The group of reference ``name``, open while the block runs; what cannot be read is damage."""
        self._check_exists(name)
        with self._reading(name), store.open_group(self._snapshot_file(), self._state().places[name]) as obj:
            if not isinstance(obj, h5py.Group):
                raise store.Unreadable(f"it is a {type(obj).__name__}, not a reference group")
            yield obj

    def _read_info(self, name: str, *, with_sources: bool) -> ReferenceInfo:
        with self._group(name) as g:
            info = groups.read_info(g, name, with_sources=with_sources)
            problem = validate.record_problem(info, **groups.read_meta(g))
        if problem:
            raise self._damaged(name, problem)
        return info

    def _read(self, name: str, *, with_sums: bool) -> Reference:
        info = self._read_info(name, with_sources=True)
        with self._group(name) as g:
            fingerprint, sums = groups.read_arrays(g, with_sums=with_sums)
        arrays = [("its fingerprint", fingerprint), *((f"its running sum {k!r}", v) for k, v in sorted(sums.items()))]
        for what, arr in arrays:
            problem = validate.nonfinite_problem(what, arr)
            if problem:
                raise self._damaged(name, problem)
        problem = _checksum_problem(info, fingerprint)
        if problem:
            raise self._damaged(name, problem)
        return Reference(info=info, fingerprint=fingerprint, sums=sums)

    # ---- references -------------------------------------------------------------------------------

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
        DamagedReferenceError
            The reference's metadata cannot be read or disagrees with its arrays' shapes and dtypes.
        ValueError
            ``name`` is not a legal reference name.
        """
        return self._read_info(name, with_sources=with_sources)

    def infos(self, *, with_sources: bool = False, verify: bool = False) -> list[ReferenceInfo]:
        """Metadata of every reference, sorted by name; damaged references are listed, not raised.

        Parameters
        ----------
        with_sources : bool, optional
            Also read each reference's sources (default False: ``sources`` is empty, ``n_sources``
            still counts them).
        verify : bool, optional
            Also read every fingerprint and running sum and check that all values are finite (one
            pass over the library's arrays). By default only metadata, shapes and dtypes are checked.

        Returns
        -------
        list of ReferenceInfo
            A damaged reference has ``damaged`` set to the reason (its other fields may be empty).
        """
        out = []
        for name in self.names():
            try:
                info = self._read_info(name, with_sources=with_sources)
                if verify:
                    self._read(name, with_sums=True)
            except DamagedReferenceError as err:
                info = ReferenceInfo(name=name, kind="", n_images=0, shape=(), params={}, created="", updated="",
                                     ganprint_version="", sources=[])
                with contextlib.suppress(DamagedReferenceError):  # keep what could be read
                    info = self._read_info(name, with_sources=False)
                info = dataclasses.replace(info, damaged=err.reason)
            out.append(info)
        return out

    def damaged(self) -> dict[str, str]:
        """``{name: reason}`` of every damaged reference, checking every array (``infos(verify=True)``)."""
        return {i.name: i.damaged for i in self.infos(verify=True) if i.damaged}

    def get(self, name: str, *, with_sums: bool = True) -> Reference:
        """Load one reference: its metadata, fingerprint and (by default) running sums.

        Every loaded array is checked: its shape and dtype against the schema and its values for
        NaN and inf (one pass over each array).

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
        DamagedReferenceError
            The reference is damaged (also a `NotALibraryError`): the message names it and the
            problem; the library's other references can still be read.
        """
        return self._read(name, with_sums=with_sums)

    def fingerprint(self, name: str) -> np.ndarray:
        """The fingerprint of reference ``name`` alone (float32), checked as `get` checks it.

        What attribution reads: the metadata is checked against the arrays' shapes and dtypes
        (as `info`) and the fingerprint for NaN and inf, in one open of the reference, without
        reading its sources or running sums.

        Raises
        ------
        ReferenceNotFoundError, DamagedReferenceError
            As `get`.
        """
        with self._group(name) as g:
            info = groups.read_info(g, name, with_sources=False)
            problem = validate.record_problem(info, **groups.read_meta(g))
            fingerprint = None if problem else groups.read_arrays(g, with_sums=False)[0]
        problem = problem or validate.nonfinite_problem("its fingerprint", fingerprint) or _checksum_problem(info, fingerprint)
        if problem:
            raise self._damaged(name, problem)
        return fingerprint

    def export_fingerprint(self, name: str, out: str | os.PathLike[str]) -> np.ndarray:
        """Write the fingerprint of reference ``name`` to the ``.npy`` file ``out`` and return it.

        The file is written atomically (a new temporary file, never one reached through a
        symbolic link, then a rename). ``out`` may replace an existing ``.npy`` file, but never the
        library, its lock file, an HDF5 file or anything that is not a regular file.

        Raises
        ------
        LibraryExistsError
            ``out`` is this library (or its lock file) or another HDF5 file.
        ValueError
            ``out`` is a directory, FIFO or device.
        ReferenceNotFoundError, DamagedReferenceError
            As `get`.
        """
        out = os.path.abspath(os.fspath(out))
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(out)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{out} is {durable.file_kind(st.st_mode)}: the fingerprint is written to a new "
                                 "regular file only")
            for own, what in ((self._real, "itself"), (self._real + ".lock", "lock file")):
                if os.path.exists(own) and os.path.samefile(out, own):
                    raise LibraryExistsError(f"refusing to overwrite {out}: it is the library {self._path} {what}")
            with open(out, "rb") as fh:
                if fh.read(8) == b"\x89HDF\r\n\x1a\n":
                    raise LibraryExistsError(f"refusing to overwrite {out}: it is an HDF5 file (perhaps a "
                                             "reference library), not a .npy file")
        fingerprint = self.get(name, with_sums=False).fingerprint
        try:
            durable.write_new_file(out, lambda fh: np.save(fh, fingerprint, allow_pickle=False))
        except OSError as err:
            denied = isinstance(err, PermissionError) or err.errno in durable.PERMISSION_ERRNOS
            exc = (LibraryPermissionError if denied else LibraryWriteError)(
                f"could not write {out}: {err.strerror or err}; nothing was written")
            exc.errno = err.errno  # type: ignore[attr-defined]
            raise exc from err
        return fingerprint

    def export(self, out: str | os.PathLike[str]) -> dict[str, str]:
        """Write the library as one self-contained file ``out`` (schema 1); never overwrites a file.

        Every reference is copied as a group of ``/references`` (exact HDF5 copies), with the
        calibration data: a file for any ganprint, or for plain h5py without the folder. Damaged
        references are left out: returns ``{name: reason}`` of those.

        Raises
        ------
        LibraryExistsError
            A file exists at ``out``.
        """
        out = os.path.abspath(os.fspath(out))
        if os.path.lexists(out):
            raise LibraryExistsError(f"refusing to overwrite {out}: export writes a new file only")
        state = self._state()
        damaged = {i.name: i.damaged for i in self.infos(verify=True) if i.damaged}
        places = {k: v for k, v in state.places.items() if k not in damaged}
        try:
            tmp, fd = durable.new_temp(out, 0o666)
            os.close(fd)
        except OSError as err:
            raise durable.write_error(err, out, creating=True) from err
        try:
            store.export_single_file(tmp, self._snapshot_file(), places, state.calibration, self._created(),
                                     self._version)
            durable.fsync_path(tmp)
            if not durable.publish_new(tmp, out):
                raise LibraryExistsError(f"refusing to overwrite {out}: it appeared during the export")
        except OSError as err:
            if isinstance(err, LibraryError):
                raise
            raise durable.write_error(err, out, creating=True) from err
        finally:
            durable.remove_quietly(tmp)
        return damaged

    def calibration(self, key: str) -> np.ndarray:
        """Calibration values stored under ``key`` (float64, 1-D; empty when there are none).

        Raises
        ------
        NotALibraryError
            The calibration data does not have the schema's layout (damaged).
        """
        schema.check_name(key)
        with self._calibration(key) as f:
            return groups.read_calibration(f, key) if f is not None else np.zeros(0, dtype=np.float64)

    @contextlib.contextmanager
    def _calibration(self, key: str) -> Iterator[h5py.File | None]:
        """The file of the calibration groups (None: none yet); damage raises `NotALibraryError`."""
        try:
            with store.open_calibration(self._snapshot_file(), self._state().calibration) as f:
                yield f
        except LibraryError:
            raise
        except Exception as err:
            detail = " ".join(str(err).split()) or type(err).__name__
            raise NotALibraryError(f"the calibration data {key!r} of the library {self._path} is damaged "
                                   f"({detail})") from None


def _checksum_problem(info: ReferenceInfo, fingerprint: np.ndarray) -> str | None:
    """Why ``fingerprint`` is not the one written (its recorded SHA-256 differs), or None (or none recorded)."""
    if info.fingerprint_sha256 is None or groups.fingerprint_sha256(fingerprint) == info.fingerprint_sha256:
        return None
    return "its fingerprint does not match the SHA-256 recorded when it was written (the file was altered)"
