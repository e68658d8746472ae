"""Shared pieces of the simulators: seeded random streams, argument checks and the JPEG round trip.

Every random draw of ``fingerprint.synthetic`` comes from a ``numpy.random.Generator`` built by
:func:`_stream` from a tag (below) and integer seeds, so that the scene, sensor, weight and image
streams of different objects never overlap. The tags are kept together here so that they stay
distinct. NumPy and Pillow only; imports nothing from the other simulator modules.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Tags that keep the random streams of different objects apart (SeedSequence entropy words).
_TAG_CONTENT = 0x6E617475  # "natu"
_TAG_FLAT = 0x666C6174  # "flat"
_TAG_PRNU = 0x70726E75  # "prnu"
_TAG_CAMERA_IMAGES = 0x63616D69  # "cami"
_TAG_WEIGHTS = 0x77656967  # "weig"
_TAG_GENERATOR_IMAGES = 0x67656E69  # "geni"


# --- seeds ------------------------------------------------------------------------------------------
def _check_seed(seed: int, name: str = "seed") -> int:
    """Return ``seed`` as a Python int; it must be a non-negative integer (SeedSequence's rule)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return int(seed)


def _stream(*words: int) -> np.random.Generator:
    """An independent ``Generator`` for the entropy words ``words`` (tags and seeds)."""
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


def _as_rng(
    rng_or_seed: np.random.Generator | np.random.SeedSequence | int, tag: int, name: str
) -> np.random.Generator:
    """Accept a ``Generator`` (used as is), a ``SeedSequence`` or a non-negative int seed.

    An int seed ``s`` gives ``_stream(tag, s)``; ``name`` is the argument's name in error messages.
    """
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, np.random.SeedSequence):
        return np.random.default_rng(rng_or_seed)
    return _stream(tag, _check_seed(rng_or_seed, name))


# --- argument checks --------------------------------------------------------------------------------
def _check_shape(shape: tuple[int, int], minimum: int = 8) -> tuple[int, int]:
    """Return ``(H, W)`` as ints, each at least ``minimum``."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (H, W) of ints, got {shape!r}") from None
    if h < minimum or w < minimum:
        raise ValueError(f"shape must be at least {minimum} x {minimum}, got {h} x {w}")
    return h, w


def _check_count(n: int) -> int:
    """Return the number of images ``n`` as an int; it must be a non-negative integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def _check_jpeg_quality(jpeg_quality: int | None) -> int | None:
    """Return ``jpeg_quality`` as an int in [1, 100], or None (no compression)."""
    if jpeg_quality is None:
        return None
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)):
        raise TypeError(f"jpeg_quality must be an int in [1, 100] or None, got {type(jpeg_quality).__name__}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    return int(jpeg_quality)


# --- JPEG -------------------------------------------------------------------------------------------
def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``image`` (uint8, H x W x 3) as JPEG in memory with Pillow and decode it back."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()
