"""ganprint: which camera or which generator made an image, or "unknown".

The pipeline, one module per stage::

    io.load_image -> residual.extract_residual -> estimate (fingerprints) -> reference_db.Library
                  -> scores (NCC, PCE) -> attribute (decision)

Public API: ``load_image``, ``extract_residual``, ``extract_noise``, ``build_fingerprint``,
``Library``, ``attribute`` and the error classes.
"""

__version__ = "0.1.0"

from fingerprint.errors import (  # noqa: E402
    BackendUnavailableError,
    GanprintError,
    InvalidImageError,
    LibraryError,
    ShapeMismatchError,
)
from fingerprint.io import load_image  # noqa: E402
from fingerprint.residual import extract_noise, extract_residual, noise_extract  # noqa: E402
from fingerprint.scores import ncc, pce  # noqa: E402
from fingerprint.build import build_fingerprint, build_reference  # noqa: E402
from fingerprint.attribution import Attribution, attribute  # noqa: E402
from reference_db import Library  # noqa: E402

__all__ = [
    "Attribution",
    "BackendUnavailableError",
    "GanprintError",
    "InvalidImageError",
    "Library",
    "LibraryError",
    "ShapeMismatchError",
    "attribute",
    "build_fingerprint",
    "build_reference",
    "extract_noise",
    "extract_residual",
    "load_image",
    "ncc",
    "noise_extract",
    "pce",
]
