"""Multi-level 2-D orthonormal DWT, 8-tap Daubechies ("db4"), periodic extension, Numba on the CPU.

Computes exactly the transform of ``pywt.wavedec2(x, "db4", mode="periodization", level=L)`` and
its inverse ``pywt.waverec2(coeffs, "db4", mode="periodization")`` (docs/algorithm.md §3 steps 2 and 5),
with the same coefficient layout, in float32.

One level, along one axis of length ``n`` (even), with ``lo = dec_lo`` and ``hi = dec_hi`` of
``pywt.Wavelet("db4")`` (8 taps each)::

    a[i] = sum_k lo[k] * x[(2 i + 4 - k) mod n]        i = 0 .. n/2 - 1
    d[i] = sum_k hi[k] * x[(2 i + 4 - k) mod n]

(the offset 4 was found with impulses and holds for every even ``n``, including ``n < 8`` where
the window wraps more than once). The inverse is the transpose (the transform is orthonormal)::

    x[n'] = sum_{i, k : (2 i + 4 - k) mod n = n'} lo[k] a[i] + hi[k] d[i]

i.e. ``x[2p]   = lo0 a[p-2] + lo2 a[p-1] + lo4 a[p] + lo6 a[p+1]  (+ the same with hi, d)`` and
``x[2p+1] = lo1 a[p-1] + lo3 a[p] + lo5 a[p+1] + lo7 a[p+2]  (+ hi, d)``, indices mod n/2.
(``rec_lo[k] == lo[7 - k]``, so this is pywt's reconstruction filter.)

In 2-D, axis 0 (rows index) is filtered first, then axis 1. Sub-bands, as in pywt::

    cA = lo along axis 0, lo along axis 1      cH = hi along axis 0, lo along axis 1
    cV = lo along axis 0, hi along axis 1      cD = hi along axis 0, hi along axis 1

Implementation: one fused pass per level. Forward: each output row pair is 8 whole input rows
combined linearly (vectorises over columns), then filtered along the row after splitting it into
even and odd phases padded by two periodic samples each side, so every load is contiguous. Inverse:
each coefficient row is first inverted along axis 1 into a small per-thread ring of rows, then each
output row pair is 4 + 4 whole ring rows combined linearly. Work is split into contiguous blocks of
rows, one block per ``prange`` iteration. Accumulation is in float32; against float64 pywt the
error is about 1e-7 of the largest coefficient.

Reference twin: ``pywt.wavedec2`` / ``pywt.waverec2`` with ``mode="periodization"``
(``tests/naive.py::noise_extract`` calls them).
"""

from __future__ import annotations

import operator

import numba
import numpy as np
import pywt
from numba import prange

from kernels import config
from kernels._jit import PARALLEL_LOCK
from kernels.spec import WAVELET  # re-exported

__all__ = ["wavedec2", "waverec2", "WAVELET", "FILTER_LENGTH"]

FILTER_LENGTH = 8
_W = pywt.Wavelet(WAVELET)
DEC_LO = np.asarray(_W.dec_lo, dtype=np.float64)
DEC_HI = np.asarray(_W.dec_hi, dtype=np.float64)
assert DEC_LO.size == FILTER_LENGTH and DEC_HI.size == FILTER_LENGTH
# Orthonormal: the reconstruction filters are the time-reversed decomposition filters.
assert np.array_equal(np.asarray(_W.rec_lo), DEC_LO[::-1])
assert np.array_equal(np.asarray(_W.rec_hi), DEC_HI[::-1])
# Forward kernels correlate the window x[2i-3 .. 2i+4] with w[m] = dec[7 - m].
_FWD_LO = DEC_LO[::-1].astype(np.float32)
_FWD_HI = DEC_HI[::-1].astype(np.float32)
_INV_LO = DEC_LO.astype(np.float32)
_INV_HI = DEC_HI.astype(np.float32)

_JIT = dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)
_MIN_BLOCK_ROWS = 16  # rows per prange block, at least (the inverse re-does 4 ring rows per block)


# --- per-thread helpers ---------------------------------------------------------------------------
@numba.njit(parallel=False, **_JIT)
def _split_phases(row, ev, od):
    """De-interleave ``row`` (length 2h) into periodically padded phases.

    Parameters
    ----------
    row : float32 (2h,)
    ev, od : float32 (h + 4,), written: ``ev[t] = row[2 ((t - 2) mod h)]``,
        ``od[t] = row[2 ((t - 2) mod h) + 1]`` for t = 0 .. h + 3.
    """
    h = row.shape[0] // 2
    for t in range(h):
        ev[t + 2] = row[2 * t]
        od[t + 2] = row[2 * t + 1]
    for t in (0, 1, h + 2, h + 3):
        s = (t - 2) % h
        ev[t] = row[2 * s]
        od[t] = row[2 * s + 1]


@numba.njit(parallel=False, **_JIT)
def _analysis_row(ev, od, w, out):
    """One level along a row from its padded phases.

    ``out[j] = sum_m w[m] row[(2j - 3 + m) mod 2h]``.

    Parameters
    ----------
    ev, od : float32 (h + 4,), from ``_split_phases``.
    w : float32 (8,), the reversed decomposition filter.
    out : float32 (h,), written.
    """
    w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    for j in range(out.shape[0]):
        out[j] = (
            w0 * od[j] + w1 * ev[j + 1] + w2 * od[j + 1] + w3 * ev[j + 2]
            + w4 * od[j + 2] + w5 * ev[j + 3] + w6 * od[j + 3] + w7 * ev[j + 4]
        )


@numba.njit(parallel=False, **_JIT)
def _pad_row(c, cp):
    """Periodic padding: ``cp[t] = c[(t - 2) mod h]``, t = 0 .. h + 3.

    ``c`` float32 (h,), ``cp`` float32 (h + 4,), written.
    """
    h = c.shape[0]
    for t in range(h):
        cp[t + 2] = c[t]
    for t in (0, 1, h + 2, h + 3):
        cp[t] = c[(t - 2) % h]


@numba.njit(parallel=False, **_JIT)
def _synthesis_row(ap, dp, lo, hi, out):
    """Inverse of one level along a row, from padded approximation ``ap`` and detail ``dp`` rows.

    ``out[2q] = sum_{k even} lo[k] a[q - 2 + k/2] + hi[k] d[q - 2 + k/2]`` and
    ``out[2q+1] = sum_{k odd} lo[k] a[q - 2 + (k+1)/2] + hi[k] d[...]``, indices mod h.

    Parameters
    ----------
    ap, dp : float32 (h + 4,), from ``_pad_row``.
    lo, hi : float32 (8,), the decomposition filters.
    out : float32 (2h,), written.
    """
    l0, l1, l2, l3, l4, l5, l6, l7 = lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7]
    for q in range(out.shape[0] // 2):
        a0, a1, a2, a3, a4 = ap[q], ap[q + 1], ap[q + 2], ap[q + 3], ap[q + 4]
        d0, d1, d2, d3, d4 = dp[q], dp[q + 1], dp[q + 2], dp[q + 3], dp[q + 4]
        out[2 * q] = (
            l0 * a0 + l2 * a1 + l4 * a2 + l6 * a3 + g0 * d0 + g2 * d1 + g4 * d2 + g6 * d3
        )
        out[2 * q + 1] = (
            l1 * a1 + l3 * a2 + l5 * a3 + l7 * a4 + g1 * d1 + g3 * d2 + g5 * d3 + g7 * d4
        )


@numba.njit(parallel=False, **_JIT)
def _forward_rows(x, wl, wh, i0, i1, ca, ch, cv, cd):
    """Forward level for output rows ``i0 .. i1 - 1`` (one thread's block).

    Parameters
    ----------
    x : float32 (m, n), C-contiguous, m and n even.
    wl, wh : float32 (8,), reversed ``dec_lo`` and ``dec_hi``.
    i0, i1 : int, the block of output rows.
    ca, ch, cv, cd : float32 (m/2, n/2), rows i0 .. i1 - 1 written.
    """
    m, n = x.shape
    h = n // 2
    lrow = np.empty(n, np.float32)
    hrow = np.empty(n, np.float32)
    lev = np.empty(h + 4, np.float32)
    lod = np.empty(h + 4, np.float32)
    hev = np.empty(h + 4, np.float32)
    hod = np.empty(h + 4, np.float32)
    l0, l1, l2, l3, l4, l5, l6, l7 = wl[0], wl[1], wl[2], wl[3], wl[4], wl[5], wl[6], wl[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = wh[0], wh[1], wh[2], wh[3], wh[4], wh[5], wh[6], wh[7]
    for i in range(i0, i1):
        # Axis 0: rows (2i - 3 + k) mod m, k = 0..7, combined whole.
        r0 = x[(2 * i - 3) % m]
        r1 = x[(2 * i - 2) % m]
        r2 = x[(2 * i - 1) % m]
        r3 = x[(2 * i) % m]
        r4 = x[(2 * i + 1) % m]
        r5 = x[(2 * i + 2) % m]
        r6 = x[(2 * i + 3) % m]
        r7 = x[(2 * i + 4) % m]
        for c in range(n):
            v0, v1, v2, v3 = r0[c], r1[c], r2[c], r3[c]
            v4, v5, v6, v7 = r4[c], r5[c], r6[c], r7[c]
            lrow[c] = l0 * v0 + l1 * v1 + l2 * v2 + l3 * v3 + l4 * v4 + l5 * v5 + l6 * v6 + l7 * v7
            hrow[c] = g0 * v0 + g1 * v1 + g2 * v2 + g3 * v3 + g4 * v4 + g5 * v5 + g6 * v6 + g7 * v7
        # Axis 1.
        _split_phases(lrow, lev, lod)
        _split_phases(hrow, hev, hod)
        _analysis_row(lev, lod, wl, ca[i])
        _analysis_row(lev, lod, wh, cv[i])
        _analysis_row(hev, hod, wl, ch[i])
        _analysis_row(hev, hod, wh, cd[i])


@numba.njit(parallel=False, **_JIT)
def _inverse_rows(ca, ch, cv, cd, lo, hi, p0, p1, x):
    """Inverse level for output row pairs ``p0 .. p1 - 1``, i.e. rows ``2 p0 .. 2 p1 - 1``.

    One thread's block.

    Parameters
    ----------
    ca, ch, cv, cd : float32 (m, n), C-contiguous.
    lo, hi : float32 (8,), ``dec_lo`` and ``dec_hi``.
    p0, p1 : int, the block of row pairs.
    x : float32 (2m, 2n), rows 2 p0 .. 2 p1 - 1 written.
    """
    m, n = ca.shape
    # Ring of axis-1-inverted coefficient rows: slot (r - p0 + 2) & 7 holds row r mod m.
    lring = np.empty((8, 2 * n), np.float32)  # from (ca, cv): lo along axis 0
    hring = np.empty((8, 2 * n), np.float32)  # from (ch, cd): hi along axis 0
    ap = np.empty(n + 4, np.float32)
    dp = np.empty(n + 4, np.float32)
    l0, l1, l2, l3, l4, l5, l6, l7 = lo[0], lo[1], lo[2], lo[3], lo[4], lo[5], lo[6], lo[7]
    g0, g1, g2, g3, g4, g5, g6, g7 = hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7]
    for r in range(p0 - 2, p1 + 2):
        rr = r % m
        s = (r - p0 + 2) & 7
        _pad_row(ca[rr], ap)
        _pad_row(cv[rr], dp)
        _synthesis_row(ap, dp, lo, hi, lring[s])
        _pad_row(ch[rr], ap)
        _pad_row(cd[rr], dp)
        _synthesis_row(ap, dp, lo, hi, hring[s])
        p = r - 2  # the newest ring row r = p + 2 completes row pair p
        if p < p0:
            continue
        s0 = (p - p0) & 7
        s1 = (p - p0 + 1) & 7
        s2 = (p - p0 + 2) & 7
        s3 = (p - p0 + 3) & 7
        s4 = (p - p0 + 4) & 7
        a0, a1, a2, a3, a4 = lring[s0], lring[s1], lring[s2], lring[s3], lring[s4]
        d0, d1, d2, d3, d4 = hring[s0], hring[s1], hring[s2], hring[s3], hring[s4]
        xe = x[2 * p]
        xo = x[2 * p + 1]
        for c in range(2 * n):
            u0, u1, u2, u3, u4 = a0[c], a1[c], a2[c], a3[c], a4[c]
            e0, e1, e2, e3, e4 = d0[c], d1[c], d2[c], d3[c], d4[c]
            xe[c] = l0 * u0 + l2 * u1 + l4 * u2 + l6 * u3 + g0 * e0 + g2 * e1 + g4 * e2 + g6 * e3
            xo[c] = l1 * u1 + l3 * u2 + l5 * u3 + l7 * u4 + g1 * e1 + g3 * e2 + g5 * e3 + g7 * e4


# --- level drivers --------------------------------------------------------------------------------
@numba.njit(parallel=True, **_JIT)
def _dwt2_level(x, wl, wh, nblocks, ca, ch, cv, cd):
    """One forward level of the 2-D periodized db4 DWT, blocks of output rows in parallel.

    Parameters
    ----------
    x : float32 (m, n), C-contiguous, m and n even.
    wl, wh : float32 (8,), reversed ``dec_lo`` and ``dec_hi`` (``_FWD_LO``, ``_FWD_HI``).
    nblocks : int, number of row blocks (>= 1).
    ca, ch, cv, cd : float32 (m/2, n/2), written (pywt's cA, cH, cV, cD of ``pywt.dwt2``).

    Reference twin: ``pywt.dwt2(x, "db4", mode="periodization")``.
    """
    mh = ca.shape[0]
    for b in prange(nblocks):
        _forward_rows(x, wl, wh, b * mh // nblocks, (b + 1) * mh // nblocks, ca, ch, cv, cd)


@numba.njit(parallel=False, **_JIT)
def _dwt2_level_serial(x, wl, wh, nblocks, ca, ch, cv, cd):
    """Single-threaded ``_dwt2_level`` (same arguments, same result, no thread pool)."""
    _forward_rows(x, wl, wh, 0, ca.shape[0], ca, ch, cv, cd)


@numba.njit(parallel=True, **_JIT)
def _idwt2_level(ca, ch, cv, cd, lo, hi, nblocks, x):
    """One inverse level of the 2-D periodized db4 DWT, blocks of output row pairs in parallel.

    Parameters
    ----------
    ca, ch, cv, cd : float32 (m, n), C-contiguous (pywt's cA, cH, cV, cD).
    lo, hi : float32 (8,), ``dec_lo`` and ``dec_hi`` (``_INV_LO``, ``_INV_HI``).
    nblocks : int, number of blocks (>= 1).
    x : float32 (2m, 2n), written.

    Reference twin: ``pywt.idwt2((ca, (ch, cv, cd)), "db4", mode="periodization")``.
    """
    m = ca.shape[0]
    for b in prange(nblocks):
        _inverse_rows(ca, ch, cv, cd, lo, hi, b * m // nblocks, (b + 1) * m // nblocks, x)


@numba.njit(parallel=False, **_JIT)
def _idwt2_level_serial(ca, ch, cv, cd, lo, hi, nblocks, x):
    """Single-threaded ``_idwt2_level`` (same arguments, same result, no thread pool)."""
    _inverse_rows(ca, ch, cv, cd, lo, hi, 0, ca.shape[0], x)


# --- public wrappers ------------------------------------------------------------------------------
# Whoever holds this lock (the one of every hand-dispatched kernel, kernels._jit.PARALLEL_LOCK)
# uses the parallel kernels; a concurrent caller runs the serial ones. Both give bit-identical rows.
_PARALLEL_LOCK = PARALLEL_LOCK


def _nblocks(rows: int) -> int:
    return max(1, min(rows // _MIN_BLOCK_ROWS, 4 * numba.get_num_threads()))


def wavedec2(x: np.ndarray, levels: int) -> list:
    """Multi-level 2-D DWT with db4 and periodic extension, float32, Numba.

    Parameters
    ----------
    x : ndarray of float32, shape (M, N)
        M and N must be multiples of ``2**levels`` (the caller pads). Made C-contiguous if needed.
    levels : int
        Number of levels L >= 0.

    Returns
    -------
    list
        ``[cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]``, float32 arrays; level ``l``
        has shape ``(M / 2**l, N / 2**l)``. Same layout as ``pywt.wavedec2``: H = high-pass along
        axis 0, V = high-pass along axis 1, D = both.

    Raises
    ------
    TypeError
        ``x`` is not float32.
    ValueError
        ``x`` is not 2-D, ``levels`` is negative, or a side is not a multiple of ``2**levels``.

    Notes
    -----
    Per axis and level, ``a[i] = sum_k dec_lo[k] x[(2i + 4 - k) mod n]``, ``d`` likewise with
    ``dec_hi`` (module docstring). Agrees with float64 pywt to about 1e-7 of ``max |coef|``.

    Reference twin: ``pywt.wavedec2(x, "db4", mode="periodization", level=levels)``.
    """
    x = _check_float32(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D, got shape {x.shape}")
    levels = _as_levels(levels, "levels")
    q = 2**levels
    if x.shape[0] % q or x.shape[1] % q or x.size == 0:
        raise ValueError(
            f"x of shape {x.shape} cannot take {levels} levels: both sides must be positive "
            f"multiples of 2**levels = {q}; pad first"
        )
    x = np.ascontiguousarray(x)
    details = []
    par = _PARALLEL_LOCK.acquire(blocking=False)
    try:
        a = x
        for _ in range(levels):
            mh, nh = a.shape[0] // 2, a.shape[1] // 2
            ca = np.empty((mh, nh), np.float32)
            ch = np.empty((mh, nh), np.float32)
            cv = np.empty((mh, nh), np.float32)
            cd = np.empty((mh, nh), np.float32)
            # the parallel build only where the level's input is large enough to pay for the fork/join
            kernel = _dwt2_level if par and a.size >= config.PARALLEL_MIN_SIZE else _dwt2_level_serial
            kernel(a, _FWD_LO, _FWD_HI, _nblocks(mh), ca, ch, cv, cd)
            details.append((ch, cv, cd))
            a = ca
    finally:
        if par:
            _PARALLEL_LOCK.release()
    if levels == 0:
        a = a.copy()
    return [a] + details[::-1]


def waverec2(coeffs) -> np.ndarray:
    """Inverse of :func:`wavedec2`: multi-level 2-D inverse DWT with db4, periodic extension.

    Parameters
    ----------
    coeffs : list
        ``[cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]`` of float32 2-D arrays, the layout of
        ``pywt.wavedec2``; the three details of a level have the shape of that level's
        approximation, and each level doubles both sides.

    Returns
    -------
    ndarray of float32, shape (M, N)
        ``M = 2**L * cA_L.shape[0]``, ``N`` likewise.

    Raises
    ------
    TypeError
        A coefficient array is not float32.
    ValueError
        The list is empty, an entry is not a triple, or shapes do not fit together.

    Notes
    -----
    Transpose of the forward transform (orthonormal), per axis and level
    ``x[n'] = sum_{(2i + 4 - k) mod n = n'} dec_lo[k] a[i] + dec_hi[k] d[i]``.

    Reference twin: ``pywt.waverec2(coeffs, "db4", mode="periodization")``.
    """
    if not isinstance(coeffs, (list, tuple)) or len(coeffs) == 0:
        raise ValueError("coeffs must be a non-empty list [cA_L, (cH_L, cV_L, cD_L), ...]")
    a = np.ascontiguousarray(_check_float32(coeffs[0], "coeffs[0]"))
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"coeffs[0] must be a non-empty 2-D array, got shape {a.shape}")
    levels = []
    for k, det in enumerate(coeffs[1:], start=1):
        if not isinstance(det, (list, tuple)) or len(det) != 3:
            raise ValueError(f"coeffs[{k}] must be a triple (cH, cV, cD)")
        levels.append(tuple(np.ascontiguousarray(_check_float32(d, f"coeffs[{k}]")) for d in det))
    par = _PARALLEL_LOCK.acquire(blocking=False)
    try:
        for k, (ch, cv, cd) in enumerate(levels, start=1):
            if not (ch.shape == cv.shape == cd.shape == a.shape):
                raise ValueError(
                    f"coeffs[{k}] shapes {ch.shape}, {cv.shape}, {cd.shape} do not match the "
                    f"approximation shape {a.shape}"
                )
            m, n = a.shape
            x = np.empty((2 * m, 2 * n), np.float32)
            kernel = _idwt2_level if par and x.size >= config.PARALLEL_MIN_SIZE else _idwt2_level_serial
            kernel(a, ch, cv, cd, _INV_LO, _INV_HI, _nblocks(m), x)
            a = x
    finally:
        if par:
            _PARALLEL_LOCK.release()
    if not levels:
        a = a.copy()
    return a


def _check_float32(arr, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {arr.dtype}; call .astype(np.float32) first")
    return arr


def _as_levels(value, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v
