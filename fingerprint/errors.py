"""The ganprint exception hierarchy.

Every project error also subclasses the matching built-in, so ``except ValueError`` works too.
The CLI catches ``GanprintError`` and ``LibraryError`` once, prints one line, exits non-zero.
"""

from __future__ import annotations

from reference_db.errors import (  # re-exported
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


class GanprintError(Exception):
    """Base class of ganprint's own errors (not about the library file)."""


class InvalidImageError(GanprintError, ValueError):
    """An image file or array ganprint cannot use: unreadable, truncated, too large, too small."""


class ShapeMismatchError(GanprintError, ValueError):
    """Arrays whose shapes must agree do not (residual vs fingerprint, images of one build)."""


class BackendUnavailableError(GanprintError, RuntimeError):
    """A compute backend was asked for but cannot run here (no CuPy, no CUDA device)."""


__all__ = [
    "GanprintError",
    "InvalidImageError",
    "ShapeMismatchError",
    "BackendUnavailableError",
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
