"""Antialiased bilinear (triangle) resampling of a float32 2-D array over a source box, Numba on the CPU.

Computes Pillow's ``Image.fromarray(a, mode="F").resize((w, h), Image.Resampling.BILINEAR,
box=(bx0, by0, bx1, by1))`` (Pillow's ``src/libImaging/Resample.c``, the 32-bit float path),
with the same coefficients, bounds, rounding and order of operations. Per axis, for an input of
``n`` samples, a box ``[b0, b1)`` (rounded to float32, as Pillow parses it) and ``m`` outputs::

    scale  = float32(b1 - b0) / m            fs = max(scale, 1)      support = fs
    c_j    = b0 + (j + 0.5) * scale                                   j = 0 .. m - 1
    lo_j   = max(trunc(c_j - support + 0.5), 0)
    n_j    = min(trunc(c_j + support + 0.5), n) - lo_j
    t(x)   = 1 - |x| for |x| < 1, else 0                              (the triangle)
    w_jk   = t((lo_j + k - c_j + 0.5) / fs) / sum_k' t(...)           k = 0 .. n_j - 1

(a weight sum of 0 leaves the raw, all-zero weights). Two passes, as Pillow: horizontally over the
input rows the vertical pass needs (``lo_0 .. lo_last + n_last`` of the vertical axis), each value
``float32(sum_k w_jk a[r, lo_j + k])`` summed in float64 in order of k, into a float32 table;
then vertically, ``out[i, j] = float32(sum_k w_ik tmp[lo_i + k, j])``. An axis whose box is the
whole input at the input's size is not resampled (Pillow's ``need_horizontal``/``need_vertical``),
and a box at integer coordinates whose size is the output's is a crop (Pillow's shortcut).

The horizontal pass runs over rows in parallel, one output row's taps at a time; the vertical pass
runs over output rows in parallel, each adding its few weighted input rows into a float64 row (the
sum is still in order of k for every pixel, and the inner loop is contiguous and vectorises).
Against Pillow the only differences are the fused multiply-adds and reassociation that
``config.FASTMATH_FLAGS`` allow: about one float32 rounding (6e-8 relative) in a few outputs.

Reference twin: Pillow itself (``tests/test_resample_kernel.py``).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import prange

from kernels._jit import PARALLEL_LOCK, _jit_options, sized_kernel

__all__ = ["resample_bilinear", "triangle_coeffs"]


def triangle_coeffs(in_size: int, box0: float, box1: float, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` for the triangle filter along one axis (module doc formula).

    Parameters
    ----------
    in_size : int, samples of the input along the axis
    box0, box1 : float, the source interval (rounded to float32 first, as Pillow does)
    out_size : int (>= 1), samples of the output

    Returns
    -------
    first : ndarray of int64, shape (out_size,)   ``lo_j``, first input sample of output j
    count : ndarray of int64, shape (out_size,)   ``n_j``, number of taps of output j
    weights : ndarray of float64, shape (out_size, ksize)  ``w_jk`` for k < n_j, zeros after;
        ``ksize = 2 ceil(support) + 1``
    """
    b0, b1 = np.float32(box0), np.float32(box1)
    scale = float(np.float32(b1 - b0)) / out_size  # the float difference, then double, as Pillow
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = float(b0) + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C (int): truncation
    count = np.minimum((center + support + 0.5).astype(np.int64), in_size) - first
    count = np.maximum(count, 0)
    taps = np.arange(ksize, dtype=np.int64)
    x = (((first[:, None] + taps[None, :]).astype(np.float64) - center[:, None]) + 0.5) * (1.0 / filterscale)
    x = np.abs(x)
    w = np.where((x < 1.0) & (taps[None, :] < count[:, None]), 1.0 - x, 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for k in range(ksize):  # in order of k, as Pillow sums them
        total += w[:, k]
    nonzero = total != 0.0
    w[nonzero] /= total[nonzero, None]
    return first, count, np.ascontiguousarray(w)


ROWS = 8
"""Input rows the horizontal pass filters together (one vector of float64 per column of a block)."""


@numba.njit(parallel=False, **_jit_options())
def _load_block(table, src, r0, nr, c0, c1):
    """``table[x - c0, r] = float64(src[r0 + r, x])`` for ``r < nr``, ``c0 <= x < c1`` (the block's
    transpose). A full block (``nr == ROWS``) takes a loop of constant length, which Numba unrolls:
    with it the horizontal pass of a 1000 x 1504 input ran 19-30 % faster (serial build, factors
    0.45-0.95, ``benchmarks/RESULTS.md`` 2026-12-04), the same values bit for bit."""
    if nr == ROWS:
        for x in range(c0, c1):
            for r in range(ROWS):
                table[x - c0, r] = src[r0 + r, x]
    else:
        for x in range(c0, c1):
            for r in range(nr):
                table[x - c0, r] = src[r0 + r, x]


@numba.njit(parallel=False, **_jit_options())
def _store_block(tmp, acc, r0, nr):
    """``tmp[r0 + r, j] = float32(acc[j, r])`` for ``r < nr`` (the block's results transposed back),
    a full block again with the loop of constant length."""
    m = tmp.shape[1]
    if nr == ROWS:
        for r in range(ROWS):
            for j in range(m):
                tmp[r0 + r, j] = np.float32(acc[j, r])
    else:
        for r in range(nr):
            for j in range(m):
                tmp[r0 + r, j] = np.float32(acc[j, r])


@sized_kernel  # sized by ``tmp`` (the work): parallel from kernels.config.PARALLEL_MIN_SIZE on
def _horizontal(tmp, src, row0, first, count, weights, nchunks):
    """``tmp[r, j] = float32(sum_{k < count[j]} weights[j, k] * src[row0 + r, first[j] + k])`` (no checks).

    Blocks of ``ROWS`` input rows, one per ``prange`` iteration: the block's columns that some
    output reads are transposed into a float64 (columns, ROWS) table, so every tap is one
    multiply-add of ``ROWS`` contiguous values (the sum of each output still in order of k),
    and the (m, ROWS) results are transposed back into ``tmp``.

    Parameters
    ----------
    tmp : float32 (rows, m), written
    src : float32 (H, W), rows ``row0 .. row0 + rows - 1`` are read
    row0 : int
    first, count : int64 (m,)
    weights : float64 (m, ksize)
    nchunks : int (>= 1), chunks of blocks the ``prange`` loop shares out (any value gives the
        same result; the caller passes a few per thread)
    """
    rows, m = tmp.shape
    c0 = first[0]
    c1 = c0
    for j in range(m):
        c1 = max(c1, first[j] + count[j])
    nblocks = (rows + ROWS - 1) // ROWS
    nchunks = max(1, min(nblocks, nchunks))
    for c in prange(nchunks):
        # one pair of buffers per chunk of blocks: allocating them per block cost more than the sums
        table = np.zeros((c1 - c0, ROWS))
        acc = np.empty((m, ROWS))
        for b in range(c * nblocks // nchunks, (c + 1) * nblocks // nchunks):
            r0 = b * ROWS
            nr = min(ROWS, rows - r0)
            _load_block(table, src, row0 + r0, nr, c0, c1)
            for j in range(m):
                lo = first[j] - c0
                for r in range(ROWS):
                    acc[j, r] = 0.0
                for k in range(count[j]):
                    wk = weights[j, k]
                    for r in range(ROWS):
                        acc[j, r] += table[lo + k, r] * wk
            _store_block(tmp, acc, r0, nr)


@sized_kernel  # sized by ``out``
def _vertical(out, tmp, first, count, weights):
    """``out[i, j] = float32(sum_{k < count[i]} weights[i, k] * tmp[first[i] + k, j])`` (no checks).

    Parameters
    ----------
    out : float32 (h, m), written
    tmp : float32 (rows, m), rows relative to the first one the vertical pass needs
    first, count : int64 (h,)
    weights : float64 (h, ksize)
    """
    h, m = out.shape
    for i in prange(h):
        acc = np.zeros(m, dtype=np.float64)
        lo = first[i]
        for k in range(count[i]):
            wk = weights[i, k]
            line = tmp[lo + k]
            for j in range(m):
                acc[j] += np.float64(line[j]) * wk
        for j in range(m):
            out[i, j] = np.float32(acc[j])


# Whoever holds the lock of every hand-dispatched kernel (kernels._jit.PARALLEL_LOCK, shared with
# the DWT) may run the parallel builds; a concurrent caller (the scale search's template prefetch
# threads, a residual in another thread) runs the serial ones. And GNU OpenMP (the "omp" layer)
# terminates a forked child that starts a parallel region after its parent used one, so a forked
# child runs the serial builds only. Both builds give bit-identical results.
_PARALLEL_LOCK = PARALLEL_LOCK
_FORKED = [False]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _FORKED.__setitem__(0, True))


def _run(kernel, *args) -> None:
    par = not _FORKED[0] and _PARALLEL_LOCK.acquire(blocking=False)
    try:
        (kernel if par else kernel.serial)(*args)
    finally:
        if par:
            _PARALLEL_LOCK.release()


def resample_bilinear(a: np.ndarray, shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """``a`` resampled onto ``shape`` over the source ``box``, antialiased triangle filter (module doc).

    Parameters
    ----------
    a : ndarray of float32, shape (H, W)
        Made C-contiguous if needed.
    shape : (h, w), each >= 1
        Output size.
    box : (x0, y0, x1, y1)
        Source region in input pixel edges (Pillow's ``box``: x along columns, y along rows),
        ``0 <= x0 <= x1`` and ``0 <= y0 <= y1``; taps beyond the input are dropped (Pillow
        refuses a box beyond the input, this kernel clips it).

    Returns
    -------
    ndarray of float32, shape ``shape``
        Pillow's ``Image.fromarray(a, "F").resize((w, h), BILINEAR, box=box)``, to about one
        float32 rounding.

    Raises
    ------
    ValueError
        ``a`` is not 2-D float32, an output side is below 1, or the box is negative or reversed.
    """
    a = np.asarray(a)
    if a.dtype != np.float32 or a.ndim != 2:
        raise ValueError(f"a must be a 2-D float32 array, got {a.dtype} of shape {a.shape}")
    h, w = int(shape[0]), int(shape[1])
    fx0, fy0, fx1, fy1 = (np.float32(v) for v in box)
    if h < 1 or w < 1:
        raise ValueError(f"output size must be at least 1x1, got {h}x{w}")
    if fx0 < 0 or fy0 < 0 or fx1 < fx0 or fy1 < fy0:
        raise ValueError(f"box must satisfy 0 <= x0 <= x1 and 0 <= y0 <= y1, got {box!r}")
    a = np.ascontiguousarray(a)
    H, W = a.shape
    # Pillow's crop shortcut: integer box corners and a box the size of the output
    if (fx0 == int(fx0) and fx1 - fx0 == w and fy0 == int(fy0) and fy1 - fy0 == h
            and fx1 <= W and fy1 <= H):
        return a[int(fy0): int(fy0) + h, int(fx0): int(fx0) + w].copy()
    need_h = w != W or fx0 != 0 or fx1 != w
    need_v = h != H or fy0 != 0 or fy1 != h
    fy, cy, wy = triangle_coeffs(H, fy0, fy1, h)
    row0 = int(fy[0])
    row1 = int(fy[-1] + cy[-1])
    if need_h:
        fx, cx, wx = triangle_coeffs(W, fx0, fx1, w)
        tmp = np.empty((row1 - row0, w), dtype=np.float32)
        # a few chunks per thread, counted here: numba.get_num_threads() inside a kernel would
        # make its serial build uncachable ("dynamic globals")
        _run(_horizontal, tmp, a, row0, fx, cx, wx, 4 * numba.get_num_threads())
    else:
        tmp = a[row0:row1]
    if not need_v:
        return tmp if need_h else a.copy()
    out = np.empty((h, w), dtype=np.float32)
    _run(_vertical, out, tmp, fy - row0, cy, wy)
    return out
