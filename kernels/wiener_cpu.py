"""Fused four-window local Wiener filter (docs/algorithm.md §2), Numba on the CPU.

For a 2-D array ``d`` and noise variance ``sigma2``::

    E      = d**2
    m_w    = box mean of E over the w x w window, zeros outside, divided by w**2, w in {3, 5, 7, 9}
    v      = min_w max(m_w - sigma2, 0)
    gain   = sigma2 / (v + sigma2)
    wiener = d * gain

All four box filters and the Wiener step are one pass over a float64 summed-area table of
``E`` zero-padded by 4 (the largest half-window), so every window sum is four loads and the
borders need no branches. Reference twin: ``tests/naive.py::wiener``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kernels import config
from kernels._jit import sized_kernel

RADIUS = 4  # half of the largest window (9)
_JIT = dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)


@sized_kernel
def _energy_sat(d, sat):
    """Summed-area table of ``d**2`` zero-padded by ``RADIUS``.

    Parameters
    ----------
    d : float32 (m, n)
    sat : float64 (m + 2R + 1, n + 2R + 1), written: ``sat[a, b] = sum(Ep[:a, :b])`` where ``Ep`` is
        ``d**2`` padded by R = 4 zeros on each side.
    """
    m, n = d.shape
    R = RADIUS
    rows, cols = sat.shape
    # Pass 1: prefix sums along each row (independent rows, parallel).
    for a in prange(rows):
        acc = 0.0
        sat[a, 0] = 0.0
        i = a - 1 - R  # row of d feeding sat row a
        if i < 0 or i >= m:
            for b in range(1, cols):
                sat[a, b] = 0.0
            continue
        for b in range(1, R + 1):
            sat[a, b] = 0.0
        for j in range(n):
            v = np.float64(d[i, j])
            acc += v * v
            sat[a, R + 1 + j] = acc
        for b in range(R + 1 + n, cols):
            sat[a, b] = acc
    # Pass 2: accumulate down the columns, one block of columns per thread (contiguous inner loop).
    block = 256
    nblocks = (cols + block - 1) // block
    for k in prange(nblocks):
        b0 = k * block
        b1 = min(cols, b0 + block)
        for a in range(1, rows):
            for b in range(b0, b1):
                sat[a, b] += sat[a - 1, b]


@numba.njit(inline="always", **_JIT)
def _min_excess(sat, i, j, sigma2):
    """``min_w max(m_w - sigma2, 0)`` at pixel (i, j) of the unpadded array."""
    R = RADIUS
    best = np.inf
    for r in range(1, R + 1):
        top = i + R - r
        bot = i + R + r + 1
        lef = j + R - r
        rig = j + R + r + 1
        s = sat[bot, rig] - sat[top, rig] - sat[bot, lef] + sat[top, lef]
        w = 2 * r + 1
        v = s / (w * w) - sigma2
        if v < best:
            best = v
    return max(best, 0.0)


@sized_kernel
def _apply_wiener(d, sat, sigma2, out):
    """``out = d * sigma2 / (v + sigma2)``; ``out`` may be ``d`` itself (in place)."""
    m, n = d.shape
    for i in prange(m):
        for j in range(n):
            v = _min_excess(sat, i, j, sigma2)
            out[i, j] = d[i, j] * (sigma2 / (v + sigma2))


@sized_kernel
def _apply_gain(sat, sigma2, out):
    """``out = sigma2 / (v + sigma2)``, the Wiener gain alone (used on DFT magnitudes)."""
    m, n = out.shape
    for i in prange(m):
        for j in range(n):
            v = _min_excess(sat, i, j, sigma2)
            out[i, j] = sigma2 / (v + sigma2)


def _sat_for(d: np.ndarray) -> np.ndarray:
    m, n = d.shape
    sat = np.empty((m + 2 * RADIUS + 1, n + 2 * RADIUS + 1), dtype=np.float64)
    _energy_sat(d, sat)
    return sat


def local_wiener(d: np.ndarray, sigma2: float, out: np.ndarray | None = None) -> np.ndarray:
    """Four-window local Wiener filter of a float32 2-D array (docs/algorithm.md §2).

    Parameters
    ----------
    d : ndarray of float32, shape (m, n), C-contiguous
        A wavelet detail sub-band (or any 2-D signal).
    sigma2 : float
        Noise variance sigma**2 (> 0).
    out : ndarray of float32, shape (m, n), optional
        Output buffer; may be ``d`` itself for an in-place filter.

    Returns
    -------
    ndarray of float32, shape (m, n)
        ``d * sigma2 / (min_w max(mean_w(d**2) - sigma2, 0) + sigma2)``.

    Notes
    -----
    Reference twin: ``tests/naive.py::wiener``. Extra memory: 8 bytes per element (the table).
    """
    if out is None:
        out = np.empty_like(d)
    _apply_wiener(d, _sat_for(d), np.float64(sigma2), out)
    return out


def local_wiener_gain(a: np.ndarray, sigma2: float, out: np.ndarray | None = None) -> np.ndarray:
    """The Wiener gain ``sigma2 / (v + sigma2)`` of docs/algorithm.md §2, without multiplying by ``a``.

    ``local_wiener(a) == a * local_wiener_gain(a)``. Used by the DFT Wiener pass, where the gain
    is applied to the complex spectrum. ``out`` may be ``a`` itself.
    Reference twin: ``tests/naive.py::wiener`` divided by its input.
    """
    if out is None:
        out = np.empty_like(a)
    _apply_gain(_sat_for(a), np.float64(sigma2), out)
    return out
