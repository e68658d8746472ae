"""The HDF5 reference library of ganprint: fingerprints plus the running sums to extend them."""

from .errors import (
    LibraryError,
    LibraryLockedError,
    NotALibraryError,
    ReferenceExistsError,
    ReferenceNotFoundError,
    SchemaVersionError,
)

__all__ = [
    "LibraryError",
    "LibraryLockedError",
    "NotALibraryError",
    "ReferenceExistsError",
    "ReferenceNotFoundError",
    "SchemaVersionError",
]
