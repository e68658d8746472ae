"""Constants and input checks of the residual spec, written once (the lowest layer that needs them).

Every other module (CPU and GPU residuals, estimators, attribution, simulators) imports these
names from here; nothing else spells them. Needs NumPy only (no Numba, no CuPy; the package above,
``fingerprint``, is never loaded from here), as scikit-image keeps its shared checks in
``_shared/utils.py``. The errors it raises are defined in ``kernels.errors``.

References
----------
.. [1] M. Goljan, J. Fridrich, T. Filler, "Large scale test of sensor fingerprint camera
       identification", Proc. SPIE 7254, 2009 (the Binghamton camera-fingerprint toolbox:
       ``rgb2gray1`` weights, ``NoiseExtract`` padding, PCE threshold 60).
"""

from __future__ import annotations

import math

import numpy as np

from kernels.errors import InvalidImageError
from kernels.launch_gpu import is_device_array

__all__ = [
    "FINGERPRINT_SIGMA",
    "GRAY_WEIGHTS",
    "LEVELS",
    "MAX_LEVELS",
    "MIN_SIZE",
    "PCE_RADIUS",
    "QUERY_SIGMA",
    "SEARCH_MODES",
    "UINT16_SCALE",
    "WAVELET",
    "check_image",
    "check_residual_params",
    "check_search",
    "SIGMA_RANGE",
    "gray_image",
    "pad_amounts",
    "value_scale",
]

#: Colour to gray weights of Binghamton ``rgb2gray1``: ``I = 0.29893602 R + 0.58704307 G + 0.11402090 B``.
GRAY_WEIGHTS: tuple[float, float, float] = (0.29893602, 0.58704307, 0.11402090)

#: Smallest height and width (pixels) the residual accepts.
MIN_SIZE: int = 16

#: Factor that maps 16-bit stored values onto the [0, 255] scale the spec is written in (1/257:
#: 65535 maps to 255 exactly).
UINT16_SCALE: float = 1.0 / 257.0


def value_scale(dtype: np.dtype) -> float:
    """Factor that maps stored values onto [0, 255]: :data:`UINT16_SCALE` for uint16, 1 otherwise."""
    return UINT16_SCALE if np.dtype(dtype) == np.uint16 else 1.0


def gray_image(image, xp=np):
    """Gray image ``I`` in [0, 255], float32 (H, W): stored values times :func:`value_scale`, then
    ``GRAY_WEIGHTS . (R, G, B)`` for colour. ``xp`` is the array module of ``image`` (NumPy or CuPy).

    Reference twin: ``tests/naive.py::rgb2gray``.
    """
    x = image.astype(xp.float32)
    scale = value_scale(image.dtype)
    if scale != 1.0:
        x *= np.float32(scale)
    if x.ndim == 3:  # a weighted sum of the channels, not ``x @ weights``: OpenBLAS aborts the process
        #              when it cannot allocate its buffers, where NumPy raises MemoryError
        w = [np.float32(v) for v in GRAY_WEIGHTS]
        gray = x[..., 0] * w[0]
        for c in range(1, x.shape[2]):
            gray += x[..., c] * w[c]
        x = gray
    return x


def pad_amounts(m: int, levels: int) -> tuple[int, int]:
    """Rows (columns) added before and after so that ``m + 2`` rounds up to a multiple of ``2**levels``.

    ``nr = ceil((m + 2) / 2**L) * 2**L``; ``ceil((nr - m) / 2)`` before, the rest after
    (Binghamton ``NoiseExtract``: symmetric padding before the wavelet transform).
    """
    q = 1 << levels
    nr = -(-(m + 2) // q) * q
    extra = nr - m
    before = -(-extra // 2)
    return before, extra - before


#: The wavelet of the denoiser: 8-tap Daubechies, periodized (the only one implemented).
WAVELET: str = "db4"

#: Default number of wavelet decomposition levels L, and the largest accepted.
LEVELS: int = 4
MAX_LEVELS: int = 8

#: Default denoiser noise std (grey levels) for query residuals (Binghamton ``NoiseExtractFromImage``).
QUERY_SIGMA: float = 2.0

#: Default denoiser noise std (grey levels) for camera fingerprint estimation (Binghamton ``getFingerprint``).
FINGERPRINT_SIGMA: float = 3.0

#: Half-width r of the PCE exclusion neighbourhood: (2r + 1)^2 = 11 x 11 (docs/algorithm.md §7.3).
PCE_RADIUS: int = 5

#: Where a PCE peak may lie: ``"aligned"`` (offset (0, 0) only) or ``"crop"`` (every offset that
#: keeps the query inside the reference).
SEARCH_MODES: tuple[str, str] = ("aligned", "crop")


def check_image(image, name: str = "image"):
    """An image array the residual accepts, or :class:`~kernels.errors.InvalidImageError` saying why not.

    The one input check of the CPU (``fingerprint.residual``) and GPU (``kernels.residual_gpu``)
    residuals, so both refuse the same inputs with the same error and message.

    Parameters
    ----------
    image : array-like, NumPy or CuPy, shape (H, W), (H, W, 1) or (H, W, 3)
        uint8, uint16 or float (not float16); H, W >= :data:`MIN_SIZE`.
    name : str
        What to call the array in the message (``"image"``, a file name, ...).

    Returns
    -------
    ndarray (NumPy or CuPy, as given; anything else through ``numpy.asarray``)
        ``image``, with an (H, W, 1) array viewed as (H, W). No copy.

    Raises
    ------
    InvalidImageError
        Wrong shape or dtype, smaller than ``MIN_SIZE`` x ``MIN_SIZE``, NaN or infinite values. The
        NaN check runs on host (NumPy) arrays only: on a CuPy array it would synchronise the stream.
    """
    if not isinstance(image, np.ndarray) and not is_device_array(image):
        image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InvalidImageError(f"{name}: expected shape (H, W) or (H, W, 3), got {image.shape}")
    if image.dtype.kind not in "uif" or image.dtype == np.float16:
        raise InvalidImageError(f"{name}: unsupported dtype {image.dtype}; use uint8, uint16 or float32")
    h, w = image.shape[:2]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise InvalidImageError(f"{name}: {h}x{w} pixels is too small; the residual needs at least {MIN_SIZE}x{MIN_SIZE}")
    if image.dtype.kind == "f" and isinstance(image, np.ndarray) and not np.isfinite(image).all():
        raise InvalidImageError(f"{name}: contains NaN or infinite values")
    return image


#: Accepted wavelet-denoiser noise std (grey levels, 8-bit scale). Outside it a residual is almost
#: zero (sigma << quantisation step) or the whole image (sigma >> any texture); 1e300 overflows to NaN.
SIGMA_RANGE: tuple[float, float] = (0.1, 100.0)


def check_residual_params(sigma: float, levels: int) -> tuple[float, int]:
    """``(sigma, levels)`` as ``(float, int)``, or ``ValueError``: sigma in :data:`SIGMA_RANGE`, 1 <= levels <= MAX_LEVELS."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]:
        raise ValueError(f"sigma must be from {SIGMA_RANGE[0]:g} to {SIGMA_RANGE[1]:g} grey levels, got {sigma!r}")
    if int(levels) != levels or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer from 1 to {MAX_LEVELS}, got {levels!r}")
    return float(sigma), int(levels)


def check_search(search: str) -> str:
    """``search`` if it is one of :data:`SEARCH_MODES`, else ``ValueError`` listing them."""
    if search not in SEARCH_MODES:
        raise ValueError(f"search must be one of {sorted(SEARCH_MODES)}, got {search!r}")
    return search
