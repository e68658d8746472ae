"""ganprint: which camera or which generator made an image, or "unknown".

The pipeline, one module per stage::

    io.load_image -> residual.extract_residual -> estimate (fingerprints) -> reference_db.Library
                  -> scores (NCC, PCE) -> attribution (decision)

Public API: ``load_image``, ``extract_residual``, ``extract_noise``, ``build_fingerprint``,
``Library``, ``attribute``, ``localize`` (tamper localisation) and the error classes. Names are imported on first use, so the command
line starts without loading the numerical stack it does not need.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Attribution": "fingerprint.attribution",
    "attribute": "fingerprint.attribution",
    "BackendUnavailableError": "fingerprint.errors",
    "GanprintError": "fingerprint.errors",
    "InvalidImageError": "fingerprint.errors",
    "LibraryError": "fingerprint.errors",
    "ShapeMismatchError": "fingerprint.errors",
    "Library": "reference_db",
    "build_fingerprint": "fingerprint.build",
    "build_reference": "fingerprint.build",
    "extract_noise": "fingerprint.residual",
    "extract_residual": "fingerprint.residual",
    "noise_extract": "fingerprint.residual",
    "load_image": "fingerprint.io",
    "localize": "fingerprint.localization",
    "ncc": "fingerprint.scores",
    "pce": "fingerprint.scores",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fingerprint' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
