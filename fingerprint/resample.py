"""Resampling a camera fingerprint onto the pixel grid of a resized copy of its photos.

A photo resized by ``s`` (resized pixels per sensor pixel, ``0 < s <= 1``) has its pixel
``(y, x)`` centred on the sensor at ``((y + 0.5) / s - 0.5, (x + 0.5) / s - 0.5)``: the
pixel-centre convention of Pillow, OpenCV and image editors, anchored at the frame's top-left
corner. :func:`resample_fingerprint` puts ``K`` on that grid (or a window of it), low-pass
filtered the way a resize filters the photo; :func:`downsample` and :func:`wrap_to_fast` are the
two helpers of the scale search (a coarser working grid, FFT-friendly sizes).

The default filter runs in ``kernels.resample_cpu.resample_bilinear`` (Numba, parallel): Pillow's
antialiased bilinear resize of a float image with a source box, same coefficients and order of
sums, 1.6-4.4x faster on this 2-core guest (``benchmarks/bench_resample.py``). Pillow is its reference
(``tests/test_resample_kernel.py``) and still resamples with any other filter name.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from kernels.resample_cpu import resample_bilinear

__all__ = ["FILTER", "downsample", "resample_fingerprint", "resized_shape", "wrap_to_fast"]

FILTER = "bilinear"
"""Pillow filter that resamples the fingerprint (antialiased triangle when shrinking): 2-10 %
higher PCE than Lanczos, bicubic or box on Dresden photos resized by any of them
(``benchmarks/camera_scaled.py --resampling``)."""


def resized_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(floor(s H), floor(s W))``: the part of a resize by ``s`` that the sensor covers completely."""
    return (int(math.floor(scale * shape[0] + 1e-9)), int(math.floor(scale * shape[1] + 1e-9)))


def resample_fingerprint(fingerprint: np.ndarray, scale: float | tuple[float, float],
                         shape: tuple[int, int] | None = None, *, origin: tuple[int, int] = (0, 0),
                         filter: str = FILTER) -> np.ndarray:
    """The fingerprint on the pixel grid of a copy resized by ``scale``.

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
    scale : float or (sy, sx)
        Resized pixels per sensor pixel, each in (0, 1] (per axis when a pair).
    shape : (h, w), optional
        Output size; default :func:`resized_shape`. ``out[y, x]`` is ``K`` at sensor position
        ``((y + y0 + 0.5) / sy - 0.5, (x + x0 + 0.5) / sx - 0.5)``, low-pass filtered by the
        filter's kernel stretched to ``1 / s`` sensor pixels (Pillow ``Image.resize`` with a ``box``).
    origin : (y0, x0)
        Top-left of the output in the resized grid (a window of the resized fingerprint).
    filter : str
        A Pillow resampling filter name (default ``"bilinear"``: ``kernels.resample_cpu``, which
        computes Pillow's result to about one float32 rounding; other names resample with Pillow).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    sy, sx = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
    if not (0.0 < sy <= 1.0 and 0.0 < sx <= 1.0):
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    k = np.ascontiguousarray(fingerprint, dtype=np.float32)
    if k.ndim != 2:
        raise ValueError(f"fingerprint must be 2-D (H, W), got shape {k.shape}")
    h, w = shape if shape is not None else resized_shape(k.shape, min(sy, sx))
    y0, x0 = origin
    if h < 1 or w < 1 or y0 < 0 or x0 < 0 or (y0 + h) / sy > k.shape[0] + 1e-6 or (x0 + w) / sx > k.shape[1] + 1e-6:
        raise ValueError(f"a {h}x{w} grid at {y0},{x0} and scale {scale} does not fit a "
                         f"{k.shape[0]}x{k.shape[1]} fingerprint")
    box = (x0 / sx, y0 / sy, (x0 + w) / sx, (y0 + h) / sy)
    if filter.lower() == "bilinear":
        return resample_bilinear(k, (h, w), box)
    from PIL import Image

    resample = getattr(Image.Resampling, filter.upper())
    return np.asarray(Image.fromarray(k, mode="F").resize((w, h), resample, box=box), dtype=np.float32)


def downsample(a: np.ndarray, factor: int) -> np.ndarray:
    """``a`` on a grid ``factor`` times coarser (pixel ``j`` centred on ``(j + 0.5) * factor``)."""
    if factor == 1:
        return a
    return resample_fingerprint(a, 1.0 / factor, (a.shape[0] // factor, a.shape[1] // factor))


def wrap_to_fast(t: np.ndarray) -> np.ndarray:
    """Pad periodically to sizes with small prime factors (fast FFTs); every correlation
    position keeps full overlap with fingerprint values, so the PCE energy is not biased."""
    h, w = t.shape
    fh, fw = scipy.fft.next_fast_len(h), scipy.fft.next_fast_len(w)
    return t if (fh, fw) == (h, w) else np.pad(t, ((0, fh - h), (0, fw - w)), mode="wrap")
