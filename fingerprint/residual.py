"""Noise residuals: the Binghamton PRNU pipeline of docs/algorithm.md §3-§4 as named stages.

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
from kernels.launch_gpu import is_device_array
from kernels.spec import (  # re-exported: the spec's constants and checks live in kernels.spec
    FINGERPRINT_SIGMA,
    GRAY_WEIGHTS,
    LEVELS,
    MIN_SIZE,
    QUERY_SIGMA,
    check_image,
    check_residual_params,
    pad_amounts,
    value_scale,
)
from kernels.spectral_cpu import wiener_dft, zero_mean_total
from kernels.wiener_cpu import local_wiener

__all__ = [
    "GRAY_WEIGHTS",
    "MIN_SIZE",
    "extract_noise",
    "extract_residual",
    "noise_extract",
    "pad_amounts",
]


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


def noise_extract(channel: np.ndarray, sigma: float = FINGERPRINT_SIGMA, levels: int = LEVELS) -> np.ndarray:
    """Noise residual of one channel (Binghamton ``NoiseExtract``, docs/algorithm.md §3).

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
    sigma, levels = check_residual_params(sigma, levels)
    channel = check_image(channel, "channel")
    if channel.ndim != 2:
        raise InvalidImageError(f"channel: expected a 2-D array, got shape {channel.shape}")
    rec, top, left = _noise_channel(channel, sigma, levels, value_scale(channel.dtype))
    out = np.empty(channel.shape, dtype=np.float32)
    _add_crop(rec, top, left, np.float32(1.0), out, True)
    return out


def extract_noise(image: np.ndarray, sigma: float = FINGERPRINT_SIGMA, levels: int = LEVELS, *,
                  backend: str = "cpu") -> np.ndarray:
    """Per-channel noise residuals, as fingerprint estimation needs them (docs/algorithm.md §5).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8, uint16 or float in [0, 255]
    backend : {"cpu", "cuda", "auto"}, default "cpu"
        As in :func:`extract_residual`; the CUDA result is copied back (``fingerprint.device``).

    Returns
    -------
    ndarray of float32, shape (C, H, W)
        ``noise_extract`` of each channel (C = 1 for gray, 3 for RGB); no gray conversion,
        no ZeroMeanTotal, no DFT Wiener.
    """
    sigma, levels = check_residual_params(sigma, levels)
    image = check_image(image)
    if backend != "cpu":
        from kernels._backend import resolve_backend

        if resolve_backend(backend, image) == "cuda":
            from fingerprint.device import Device

            return Device().noise(image, sigma, levels)
    planes = image[..., None] if image.ndim == 2 else image
    h, w, c = planes.shape
    out = np.empty((c, h, w), dtype=np.float32)
    scale = value_scale(image.dtype)
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
    scale = value_scale(image.dtype)
    for k in range(c):
        rec, top, left = _noise_channel(planes[..., k], sigma, levels, scale)
        _add_crop(rec, top, left, np.float32(weights[k]), gray, k == 0)
        del rec
    return gray


def extract_residual(image: np.ndarray, sigma: float = QUERY_SIGMA, levels: int = LEVELS, *,
                     backend: str = "cpu") -> np.ndarray:
    """Query residual ``W`` of an image (docs/algorithm.md §4; Binghamton ``NoiseExtractFromImage`` + ``WienerInDFT``).

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
        else ``BackendUnavailableError``); ``"auto"`` picks CUDA for a CuPy array, or when a device
        is usable and the image has at least ``kernels._backend.AUTO_MIN_PIXELS`` pixels. The
        result lives where the input lives (NumPy in, NumPy out).

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
    2. gray: ``GRAY_WEIGHTS . (R, G, B)`` (Binghamton ``rgb2gray1``, ``kernels.spec``);
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
    sigma, levels = check_residual_params(sigma, levels)
    if backend != "cpu":
        from kernels._backend import resolve_backend

        if resolve_backend(backend, image) == "cuda":
            return _extract_residual_cuda(image, sigma, levels)
    image = check_image(image)
    if _is_constant(image[..., None] if image.ndim == 2 else image):
        return np.zeros(image.shape[:2], dtype=np.float32)
    w = gray_noise(image, sigma, levels)
    w, s = zero_mean_total(w, out=w)
    return wiener_dft(w, s)


def _extract_residual_cuda(image, sigma: float, levels: int):
    """GPU path of ``extract_residual`` (the same ``check_image`` for a NumPy input); the result
    lives where the input lives (run in the CUDA simulator only, not yet on hardware)."""
    from fingerprint.device import Device

    device = Device()
    image = check_image(image)
    w = device.residual(device.put(image), sigma, levels)
    return w if is_device_array(image) else device.host(w)
