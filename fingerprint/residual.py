"""Noise residuals: the Binghamton PRNU pipeline of DESIGN.md §3-§4 as named stages.

image (uint8/uint16, H x W [x 3])
  -> per channel: symmetric pad, db4 periodized DWT (L levels), local Wiener of every detail
     sub-band, approximation zeroed, inverse DWT, crop          (``noise_extract``)
  -> gray with Binghamton's rgb2gray1 weights
  -> ZeroMeanTotal                                             (``kernels.spectral_cpu``)
  -> Wiener in the DFT domain with s = std(W)                  (``kernels.spectral_cpu``)
  -> W, float32 H x W                                          (``extract_residual``)

float32 throughout, complex64 FFTs. The float64 reference twin of every stage is in
``tests/naive.py``.
"""

from __future__ import annotations

import numpy as np

from fingerprint.errors import InvalidImageError
from kernels import dwt_cpu
from kernels.layout_cpu import _add_crop, _is_constant, _pad_symmetric
from kernels.spectral_cpu import wiener_dft, zero_mean_total
from kernels.wiener_cpu import local_wiener

GRAY_WEIGHTS = (0.29893602, 0.58704307, 0.11402090)  # Binghamton rgb2gray1
MIN_SIZE = 16  # smallest height and width accepted (pixels)
QUERY_SIGMA = 2.0  # Binghamton default for query residuals
FINGERPRINT_SIGMA = 3.0  # Binghamton default for fingerprint estimation

__all__ = [
    "GRAY_WEIGHTS",
    "MIN_SIZE",
    "extract_noise",
    "extract_residual",
    "noise_extract",
    "pad_amounts",
]


def pad_amounts(m: int, levels: int) -> tuple[int, int]:
    """Rows (columns) added before and after so that ``m + 2`` rounds up to a multiple of ``2**levels``.

    ``nr = ceil((m + 2) / 2**L) * 2**L``; ``ceil((nr - m) / 2)`` before, the rest after.
    """
    q = 1 << levels
    nr = -(-(m + 2) // q) * q
    extra = nr - m
    before = -(-extra // 2)
    return before, extra - before


def _scale_for(dtype: np.dtype) -> float:
    """Factor that maps stored values onto [0, 255]: 1/257 for uint16, 1 otherwise."""
    return 1.0 / 257.0 if dtype == np.uint16 else 1.0


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an image array: (H, W) or (H, W, C) with C in {1, 3}, H, W >= 16, finite values."""
    if not isinstance(image, np.ndarray):
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
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InvalidImageError(f"{name}: contains NaN or infinite values")
    return image


def _check_params(sigma: float, levels: int) -> None:
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if int(levels) != levels or not 1 <= levels <= 8:
        raise ValueError(f"levels must be an integer from 1 to 8, got {levels!r}")


def _noise_channel(channel: np.ndarray, sigma: float, levels: int, scale: float) -> tuple[np.ndarray, int, int]:
    """Padded noise of one channel (float32, nr x nc) and the pad offsets (top, left)."""
    m, n = channel.shape
    top, bottom = pad_amounts(m, levels)
    left, right = pad_amounts(n, levels)
    padded = np.empty((m + top + bottom, n + left + right), dtype=np.float32)
    _pad_symmetric(channel, top, left, np.float32(scale), padded)
    coeffs = dwt_cpu.wavedec2(padded, levels)
    del padded
    sigma2 = float(sigma) * float(sigma)
    for details in coeffs[1:]:
        for d in details:
            local_wiener(d, sigma2, out=d)
    coeffs[0][...] = 0.0
    return dwt_cpu.waverec2(coeffs), top, left


def noise_extract(channel: np.ndarray, sigma: float = FINGERPRINT_SIGMA, levels: int = 4) -> np.ndarray:
    """Noise residual of one channel (Binghamton ``NoiseExtract``, DESIGN.md §3).

    Parameters
    ----------
    channel : ndarray, shape (M, N), uint8, uint16 (divided by 257) or float in [0, 255]
    sigma : float
        Standard deviation of the noise the wavelet denoiser removes (grey levels).
    levels : int
        Wavelet decomposition levels L.

    Returns
    -------
    ndarray of float32, shape (M, N)
        ``x - denoised(x)`` restricted to the detail bands: the inverse DWT of the Wiener-filtered
        detail sub-bands with the level-L approximation set to zero.
    """
    _check_params(sigma, levels)
    channel = _check_image(channel, "channel")
    if channel.ndim != 2:
        raise InvalidImageError(f"channel: expected a 2-D array, got shape {channel.shape}")
    rec, top, left = _noise_channel(channel, sigma, levels, _scale_for(channel.dtype))
    out = np.empty(channel.shape, dtype=np.float32)
    _add_crop(rec, top, left, np.float32(1.0), out, True)
    return out


def extract_noise(image: np.ndarray, sigma: float = FINGERPRINT_SIGMA, levels: int = 4) -> np.ndarray:
    """Per-channel noise residuals, as fingerprint estimation needs them (DESIGN.md §5).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8, uint16 or float in [0, 255]

    Returns
    -------
    ndarray of float32, shape (C, H, W)
        ``noise_extract`` of each channel (C = 1 for gray, 3 for RGB); no gray conversion,
        no ZeroMeanTotal, no DFT Wiener.
    """
    _check_params(sigma, levels)
    image = _check_image(image)
    planes = image[..., None] if image.ndim == 2 else image
    h, w, c = planes.shape
    out = np.empty((c, h, w), dtype=np.float32)
    scale = _scale_for(image.dtype)
    for k in range(c):
        rec, top, left = _noise_channel(planes[..., k], sigma, levels, scale)
        _add_crop(rec, top, left, np.float32(1.0), out[k], True)
    return out


def gray_noise(image: np.ndarray, sigma: float, levels: int) -> np.ndarray:
    """``rgb2gray1`` of the per-channel noise, accumulated channel by channel (float32, H x W)."""
    planes = image[..., None] if image.ndim == 2 else image
    h, w, c = planes.shape
    weights = (1.0,) if c == 1 else GRAY_WEIGHTS
    gray = np.empty((h, w), dtype=np.float32)
    scale = _scale_for(image.dtype)
    for k in range(c):
        rec, top, left = _noise_channel(planes[..., k], sigma, levels, scale)
        _add_crop(rec, top, left, np.float32(weights[k]), gray, k == 0)
        del rec
    return gray


def extract_residual(image: np.ndarray, sigma: float = QUERY_SIGMA, levels: int = 4, *,
                     backend: str = "cpu") -> np.ndarray:
    """Query residual ``W`` of an image (DESIGN.md §4; Binghamton ``NoiseExtractFromImage`` + ``WienerInDFT``).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3)
        uint8, uint16 (divided by 257) or float in [0, 255]; H, W >= 16, odd sizes allowed.
    sigma : float, default 2.0
        Standard deviation of the noise removed by the wavelet denoiser (grey levels).
    levels : int, default 4
        Wavelet decomposition levels.
    backend : {"cpu", "cuda", "auto"}, default "cpu"
        ``"cuda"`` runs the GPU twins (``kernels.residual_gpu``; needs CuPy and a CUDA device,
        else ``BackendUnavailableError``); ``"auto"`` picks CUDA for a CuPy array or when a device
        is usable. The result lives where the input lives (NumPy in, NumPy out).

    Returns
    -------
    ndarray of float32, shape (H, W)
        The residual. A constant image gives zeros exactly.

    Raises
    ------
    InvalidImageError
        Wrong shape or dtype, smaller than 16 x 16, NaN or infinite values.

    Notes
    -----
    1. ``noise_extract`` of each channel (pad, db4 periodized DWT, four-window local Wiener of
       every detail sub-band, approximation zeroed, inverse DWT, crop);
    2. gray: ``0.29893602 R + 0.58704307 G + 0.11402090 B``;
    3. ZeroMeanTotal on each 2x2 sub-lattice (removes row/column and CFA-periodic patterns);
    4. Wiener filter of the DFT magnitude with ``s = std(W)`` (flattens JPEG-block peaks).

    References
    ----------
    .. [1] J. Lukas, J. Fridrich, M. Goljan, "Digital camera identification from sensor pattern
       noise", IEEE TIFS 1(2), 2006. doi:10.1109/TIFS.2006.873602
    .. [2] M. Chen, J. Fridrich, M. Goljan, J. Lukas, "Determining image origin and integrity using
       sensor noise", IEEE TIFS 3(1), 2008. doi:10.1109/TIFS.2007.916285

    Examples
    --------
    >>> import numpy as np
    >>> from fingerprint import extract_residual
    >>> w = extract_residual(np.full((64, 64), 128, np.uint8))
    >>> w.shape, w.dtype, float(abs(w).max())
    ((64, 64), dtype('float32'), 0.0)
    """
    _check_params(sigma, levels)
    if backend != "cpu":
        from kernels._backend import resolve_backend

        if resolve_backend(backend, image) == "cuda":
            return _extract_residual_cuda(image, sigma, levels)
    image = _check_image(image)
    if _is_constant(image[..., None] if image.ndim == 2 else image):
        return np.zeros(image.shape[:2], dtype=np.float32)
    w = gray_noise(image, sigma, levels)
    w, s = zero_mean_total(w, out=w)
    return wiener_dft(w, s)


def _extract_residual_cuda(image, sigma: float, levels: int):
    """GPU path of ``extract_residual``: same checks, result on the input's side (untested on hardware)."""
    from kernels.residual_gpu import residual_gpu

    on_device = type(image).__module__.split(".")[0] == "cupy"
    if not on_device:
        image = _check_image(image)
    w = residual_gpu(image, sigma, levels)
    return w if on_device else w.get()
