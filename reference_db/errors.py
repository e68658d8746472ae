"""Exceptions raised by the reference library (no imports from ``fingerprint``)."""

from __future__ import annotations


class LibraryError(Exception):
    """Base class for every error about a reference library file."""


class ReferenceNotFoundError(LibraryError, KeyError):
    """A reference name that the library does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ReferenceExistsError(LibraryError, ValueError):
    """A write that would silently replace an existing reference or count an image twice."""


class SchemaVersionError(LibraryError, ValueError):
    """The library was written by a newer ganprint with a schema this version cannot read."""


class NotALibraryError(LibraryError, ValueError):
    """The file is not HDF5, or is HDF5 but not a ganprint library."""


class DamagedReferenceError(NotALibraryError):
    """One reference of the library is damaged (unreadable, inconsistent shapes, NaN or inf values).

    The rest of the library is usable: readers skip the reference, ``remove`` and ``rename`` still
    work on it. ``name`` is the reference and ``reason`` says what is wrong.
    """

    def __init__(self, message: str, *, name: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason


class LibraryLockedError(LibraryError, RuntimeError):
    """Another process holds the library's write lock."""


class LibraryNotFoundError(LibraryError, FileNotFoundError):
    """Mode ``"r"`` or ``"r+"`` on a path where no file exists."""

    def __str__(self) -> str:  # OSError would prefix "[Errno ...]"
        return str(self.args[0]) if self.args else ""


class LibraryExistsError(LibraryError, FileExistsError):
    """Mode ``"w-"``/``"x"`` on a path where a file already exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LibraryPermissionError(LibraryError, PermissionError):
    """A write the library cannot make: opened read-only, read-only location, permission denied."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LibraryWriteError(LibraryError, OSError):
    """An I/O error (disk full, ...) during a write; the message says whether the library changed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LibraryClosedError(LibraryError, ValueError):
    """An operation on a ``Library`` that has been closed."""


class ReferenceMismatchError(LibraryError, ValueError):
    """An update whose kind, shape, parameters or sums do not match the stored reference."""
