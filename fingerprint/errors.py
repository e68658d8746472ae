"""The ganprint exception hierarchy.

Every project error also subclasses the matching built-in, so ``except ValueError`` works too.
The CLI catches ``GanprintError`` and ``LibraryError`` once, prints one line, exits non-zero.
"""

from __future__ import annotations

from kernels.errors import (  # re-exported
    BackendUnavailableError,
    GanprintError,
    InvalidImageError,
    ShapeMismatchError,
)
from reference_db.errors import (  # re-exported
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


# GanprintError, InvalidImageError, ShapeMismatchError, BackendUnavailableError (and their
# file-aware base, ``.path`` / ``.problem`` / ``.at``) are defined in kernels/errors.py, the lowest
# layer, so that the CPU and GPU input checks raise these very classes: edit them there.


__all__ = [
    "GanprintError",
    "InvalidImageError",
    "ShapeMismatchError",
    "BackendUnavailableError",
    "DamagedReferenceError",
    "LibraryClosedError",
    "LibraryError",
    "LibraryExistsError",
    "LibraryLockedError",
    "LibraryNotFoundError",
    "LibraryPermissionError",
    "LibraryWriteError",
    "NotALibraryError",
    "ReferenceExistsError",
    "ReferenceMismatchError",
    "ReferenceNotFoundError",
    "SchemaVersionError",
]
