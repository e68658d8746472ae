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


class LibraryLockedError(LibraryError, RuntimeError):
    """Another process holds the library's write lock."""
