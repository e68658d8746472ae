"""The HDF5 reference library of ganprint: fingerprints plus the running sums to extend them."""

from .errors import (
    DamagedReferenceError,
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
from .library import MODES, Library, Reference, ReferenceInfo
from .schema import FORMAT_MARKER, SCHEMA_VERSION

__all__ = [
    "FORMAT_MARKER",
    "MODES",
    "SCHEMA_VERSION",
    "DamagedReferenceError",
    "Library",
    "LibraryClosedError",
    "LibraryError",
    "LibraryExistsError",
    "LibraryLockedError",
    "LibraryNotFoundError",
    "LibraryPermissionError",
    "LibraryWriteError",
    "NotALibraryError",
    "Reference",
    "ReferenceExistsError",
    "ReferenceInfo",
    "ReferenceMismatchError",
    "ReferenceNotFoundError",
    "SchemaVersionError",
]
