"""The whole query residual of docs/algorithm.md §3-§4 on the GPU: CuPy arrays, numba.cuda kernels, cuFFT.

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

import numpy as np

from kernels import dwt_gpu, layout_gpu, spectral_gpu, wiener_gpu
from kernels.launch_gpu import require_cupy
from kernels.spec import GRAY_WEIGHTS, LEVELS, QUERY_SIGMA, check_image, check_residual_params, pad_amounts, value_scale

__all__ = ["residual_gpu", "residual_gpu_batch"]


def _noise_channel(planes, channel: int, sigma2, levels: int, scale, xp):
    """Padded noise of ``planes[..., channel]`` (float32, nr x nc) and the pad offsets: docs/algorithm.md §3."""
    m, n = planes.shape[:2]
    top, bottom = pad_amounts(m, levels)
    left, right = pad_amounts(n, levels)
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
    scale = np.float32(value_scale(x.dtype))
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


def residual_gpu(image, sigma: float = QUERY_SIGMA, levels: int = LEVELS):
    """Query residual ``W`` of one image on the GPU (docs/algorithm.md §4), as a CuPy float32 array.

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
    InvalidImageError
        Wrong shape, size or dtype, or NaN / infinite values in a NumPy input
        (``kernels.spec.check_image``, the check of the CPU residual too).
    ValueError
        ``sigma`` or ``levels`` out of range (``kernels.spec.check_residual_params``).
    ImportError
        CuPy is not installed (a bad NumPy input is refused first).

    Notes
    -----
    GPU twin of ``fingerprint.residual.extract_residual``; expected to agree with the float64 twin
    ``tests/naive.py::residual`` to NCC >= 0.9999 (float32 throughout, complex64 FFTs; verified in
    the simulator on small images, not yet on a device). A float CuPy input is not checked for NaN
    or infinite values (that check would synchronise the stream); a NumPy input is.
    """
    sigma, levels = check_residual_params(sigma, levels)
    image = check_image(image)
    cp = require_cupy()
    x = cp.ascontiguousarray(cp.asarray(image))
    return _residual(x, sigma, levels, cp)


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


def residual_gpu_batch(images, sigma: float = QUERY_SIGMA, levels: int = LEVELS, *, n_streams: int = 2):
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
    sigma, levels = check_residual_params(sigma, levels)
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
        img = check_image(np.asarray(img))
        host_in = _pinned((slot, "in"), img.shape, img.dtype)
        np.copyto(host_in, img)
        with streams[slot]:
            x = cp.empty(img.shape, dtype=img.dtype)
            x.set(host_in, stream=streams[slot])
            w = _residual(x, sigma, levels, cp)
            host_out = _pinned((slot, "out"), w.shape, np.float32)
            w.get(stream=streams[slot], out=host_out)
            del x, w
        pending[slot] = (idx, host_out)
        count = idx + 1
    for slot in range(n_streams):
        collect(slot)
    return [results[i] for i in range(count)]
