"""The whole query residual of DESIGN.md §3-§4 on the GPU: CuPy arrays, numba.cuda kernels, cuFFT.

image (uint8/uint16/float, H x W [x 3]) on the device
  -> per channel: symmetric pad (layout_gpu), db4 periodized DWT (dwt_gpu), four-window local
     Wiener of every detail sub-band (wiener_gpu), approximation zeroed, inverse DWT, crop and
     weighted add into the gray residual (rgb2gray1 weights)
  -> ZeroMeanTotal, with std(W) kept on the device (spectral_gpu)
  -> Wiener in the DFT domain (cupy.fft.rfft2 / irfft2 + spectral_gpu kernels)
  -> W, float32 H x W, a CuPy array

Everything stays on the device and in CuPy's current stream; no host synchronisation happens
inside :func:`residual_gpu` (the constant-image test and the standard deviation are device
scalars), so consecutive images on different streams overlap (:func:`residual_gpu_batch`).

Status: the kernels and this glue were run only in Numba's CUDA simulator, with NumPy standing in
for CuPy (``tests/test_gpu.py``); nothing here has run on a real GPU yet. ``docs/gpu.md`` lists
what remains to verify.

Reference twin: ``tests/naive.py::residual``; CPU twin: ``fingerprint.residual.extract_residual``.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import dwt_gpu, layout_gpu, spectral_gpu, wiener_gpu
from kernels.launch_gpu import require_cupy

__all__ = ["residual_gpu", "residual_gpu_batch", "GRAY_WEIGHTS", "MIN_SIZE"]

GRAY_WEIGHTS = (0.29893602, 0.58704307, 0.11402090)  # Binghamton rgb2gray1 (DESIGN.md §1)
MIN_SIZE = 16


def _check(image, sigma: float, levels: int):
    """Validate shape, dtype and parameters (the public wrapper's job; kernels check nothing)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image: expected shape (H, W) or (H, W, 3), got {image.shape}")
    if image.dtype.kind not in "uif" or image.dtype == np.float16:
        raise TypeError(f"image: unsupported dtype {image.dtype}; use uint8, uint16 or float32")
    h, w = image.shape[:2]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"image: {h}x{w} pixels is too small; the residual needs at least {MIN_SIZE}x{MIN_SIZE}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if int(levels) != levels or not 1 <= levels <= 8:
        raise ValueError(f"levels must be an integer from 1 to 8, got {levels!r}")
    return image


def _noise_channel(planes, channel: int, sigma2, levels: int, scale, xp):
    """Padded noise of ``planes[..., channel]`` (float32, nr x nc) and the pad offsets: DESIGN.md §3."""
    m, n = planes.shape[:2]
    top, bottom = layout_gpu.pad_amounts(m, levels)
    left, right = layout_gpu.pad_amounts(n, levels)
    padded = xp.empty((m + top + bottom, n + left + right), dtype=xp.float32)
    layout_gpu.pad_symmetric(planes, channel, top, left, scale, padded)
    coeffs = dwt_gpu.wavedec2(padded, levels, xp=xp)
    del padded
    filtered = [xp.zeros_like(coeffs[0])]
    for details in coeffs[1:]:
        filtered.append(tuple(wiener_gpu.local_wiener(d, sigma2, xp=xp) for d in details))
    del coeffs
    return dwt_gpu.waverec2(filtered, xp=xp), top, left


def _residual(x, sigma: float, levels: int, xp):
    """The residual of a validated, C-contiguous image array ``x`` already in ``xp``'s memory."""
    h, w = x.shape[:2]
    channels = 1 if x.ndim == 2 else 3
    weights = (1.0,) if channels == 1 else GRAY_WEIGHTS
    scale = np.float32(1.0 / 257.0 if x.dtype == np.uint16 else 1.0)
    keep = spectral_gpu.not_constant(x, xp=xp)
    sigma2 = xp.full(1, float(sigma) * float(sigma), dtype=xp.float32)
    gray = xp.empty((h, w), dtype=xp.float32)
    planes = x[:, :, None] if channels == 1 else x
    for c in range(channels):
        rec, top, left = _noise_channel(planes, c, sigma2, levels, scale, xp)
        layout_gpu.add_crop(rec, top, left, np.float32(weights[c]), gray, c == 0)
        del rec
    gray, s2 = spectral_gpu.zero_mean_total(gray, out=gray, keep=keep, xp=xp)
    return spectral_gpu.wiener_dft(gray, s2, xp=xp)


def residual_gpu(image, sigma: float = 2.0, levels: int = 4):
    """Query residual ``W`` of one image on the GPU (DESIGN.md §4), as a CuPy float32 array.

    Parameters
    ----------
    image : cupy.ndarray or numpy.ndarray, shape (H, W) or (H, W, 3)
        uint8, uint16 (divided by 257) or float in [0, 255]; H, W >= 16. A NumPy array is copied
        to the device (pageable memory; use :func:`residual_gpu_batch` for many host images).
    sigma : float, default 2.0
        Standard deviation of the noise the wavelet denoiser removes (grey levels).
    levels : int, default 4
        Wavelet decomposition levels.

    Returns
    -------
    cupy.ndarray of float32, shape (H, W)
        The residual, on the current device, computed in CuPy's current stream (not synchronised).
        A constant image gives exact zeros.

    Raises
    ------
    ImportError
        CuPy is not installed.
    ValueError, TypeError
        Wrong shape, size, dtype or parameters (``fingerprint.residual`` maps these to
        ``InvalidImageError`` before calling here).

    Notes
    -----
    GPU twin of ``fingerprint.residual.extract_residual``; expected to agree with the float64 twin
    ``tests/naive.py::residual`` to NCC >= 0.9999 (float32 throughout, complex64 FFTs; verified in
    the simulator on small images, not yet on a device). NaN or infinite float input is not
    checked here (the CPU wrapper checks it).
    """
    cp = require_cupy()
    x = cp.ascontiguousarray(cp.asarray(image))
    x = _check(x, float(sigma), levels)
    return _residual(cp.ascontiguousarray(x), float(sigma), int(levels), cp)


_PINNED: dict = {}


def _pinned(key, shape, dtype):
    """A cached page-locked host array (kept alive with its memory) of ``shape`` and ``dtype``."""
    cp = require_cupy()
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    hit = _PINNED.get(key)
    if hit is None or hit[0].size < nbytes:
        mem = cp.cuda.alloc_pinned_memory(max(nbytes, 1))
        hit = (mem, np.frombuffer(mem, dtype=np.uint8, count=max(nbytes, 1)))
        _PINNED[key] = hit
    return hit[1][:nbytes].view(dtype).reshape(shape)


def residual_gpu_batch(images, sigma: float = 2.0, levels: int = 4, *, n_streams: int = 2):
    """Residuals of many host images, overlapping copies and compute on ``n_streams`` CUDA streams.

    Parameters
    ----------
    images : iterable of numpy.ndarray, each (H, W) or (H, W, 3), uint8 / uint16 / float
        Sizes may differ between images.
    sigma, levels
        As in :func:`residual_gpu`.
    n_streams : int, default 2
        Image ``k`` runs on stream ``k % n_streams``. Each stream owns a page-locked input and
        output buffer; while one stream computes, the host fills the other's buffer and its
        host-to-device copy runs.

    Returns
    -------
    list of numpy.ndarray of float32, shape (H, W)
        One residual per image, in order.

    Notes
    -----
    Per image: copy into the stream's pinned buffer (host), asynchronous ``set`` to the device,
    :func:`residual_gpu`'s kernels, asynchronous ``get`` into the pinned output buffer; the stream
    is synchronised only when its slot is reused or at the end. CuPy's memory pool is stream-aware,
    so buffers freed on one stream are not handed to another while still in use.
    """
    cp = require_cupy()
    if n_streams < 1:
        raise ValueError(f"n_streams must be >= 1, got {n_streams}")
    streams = [cp.cuda.Stream(non_blocking=True) for _ in range(n_streams)]
    pending: list = [None] * n_streams
    results: dict[int, np.ndarray] = {}

    def collect(slot):
        if pending[slot] is not None:
            idx, host_out = pending[slot]
            streams[slot].synchronize()
            results[idx] = host_out.copy()
            pending[slot] = None

    count = 0
    for idx, img in enumerate(images):
        slot = idx % n_streams
        collect(slot)
        img = np.asarray(img)
        img = _check(img, float(sigma), levels)
        host_in = _pinned((slot, "in"), img.shape, img.dtype)
        np.copyto(host_in, img)
        with streams[slot]:
            x = cp.empty(img.shape, dtype=img.dtype)
            x.set(host_in, stream=streams[slot])
            w = _residual(x, float(sigma), int(levels), cp)
            host_out = _pinned((slot, "out"), w.shape, np.float32)
            w.get(stream=streams[slot], out=host_out)
            del x, w
        pending[slot] = (idx, host_out)
        count = idx + 1
    for slot in range(n_streams):
        collect(slot)
    return [results[i] for i in range(count)]
