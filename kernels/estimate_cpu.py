"""Running sums of the fingerprint estimators (docs/algorithm.md §5-§6), Numba on the CPU.

Reference twins: ``tests/naive.py::inten_scale``, ``tests/naive.py::saturation`` and the sums in
``tests/naive.py::camera_fingerprint``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kernels import config
from kernels._jit import sized_kernel

_JIT = dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)

SATURATION_LEVEL = 250.0  # a channel whose maximum is at or below this has no saturated pixels
INTEN_KNEE = 252.0  # Binghamton IntenScale: T = 252, v = 6
INTEN_WIDTH = 6.0


@numba.njit(**_JIT)
def _channel_max(x):
    """Maximum of a 2-D array (any strides), as float64 (serial: called inside a parallel kernel)."""
    h, w = x.shape
    m = -np.inf
    for i in range(h):
        for j in range(w):
            v = np.float64(x[i, j])
            if v > m:
                m = v
    return m


@sized_kernel
def _accumulate_ml(noise, x, scale, s_sum, n_sum):
    """Add one channel to the maximum-likelihood PRNU sums.

    ``T = inten(x) * sat(x)``, ``S += W * T``, ``N += T**2`` with
    ``inten(x) = x / 252`` for ``x < 252`` else ``exp(-(x - 252)**2 / 6)``, and ``sat(x) = 0`` where
    ``max(x) > 250``, ``x == max(x)`` and a 4-neighbour (wrapping) has the same value, 1 elsewhere.

    Parameters
    ----------
    noise : float32 (H, W)      noise residual W of the channel
    x : uint8/uint16/float (H, W), any strides   the channel's stored values
    scale : float               maps stored values to [0, 255] (1/257 for uint16)
    s_sum, n_sum : float32 (H, W)   running sums, updated in place
    """
    h, w = x.shape
    mx = _channel_max(x)
    check_sat = mx * scale > SATURATION_LEVEL
    for i in prange(h):
        up = (i - 1) % h
        down = (i + 1) % h
        for j in range(w):
            raw = x[i, j]
            v = np.float64(raw) * scale
            if v < INTEN_KNEE:
                t = v / INTEN_KNEE
            else:
                t = np.exp(-(v - INTEN_KNEE) * (v - INTEN_KNEE) / INTEN_WIDTH)
            if check_sat and np.float64(raw) == mx:
                if (x[up, j] == raw or x[down, j] == raw
                        or x[i, (j - 1) % w] == raw or x[i, (j + 1) % w] == raw):
                    t = 0.0
            s_sum[i, j] += np.float32(noise[i, j] * t)
            n_sum[i, j] += np.float32(t * t)


@sized_kernel
def _accumulate(values, total):
    """``total += values`` (float32, same shape, 2-D)."""
    h, w = values.shape
    for i in prange(h):
        for j in range(w):
            total[i, j] += values[i, j]


@sized_kernel
def _ml_ratio(s_sum, n_sum, out):
    """``K = S / (N + 1)`` elementwise (float32, 2-D)."""
    h, w = s_sum.shape
    for i in prange(h):
        for j in range(w):
            out[i, j] = s_sum[i, j] / (n_sum[i, j] + np.float32(1.0))
