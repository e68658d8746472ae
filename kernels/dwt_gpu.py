"""Multi-level 2-D db4 DWT with periodic extension on the GPU (numba.cuda): GPU twin of ``dwt_cpu``.

Same maths as ``kernels/dwt_cpu.py`` and ``pywt.wavedec2/waverec2(..., "db4",
mode="periodization")``. Per axis and level, with ``lo = dec_lo``, ``hi = dec_hi`` (8 taps)::

    a[i] = sum_k lo[k] x[(2 i + 4 - k) mod n]        d[i] = sum_k hi[k] x[(2 i + 4 - k) mod n]

so in 2-D (axis 0 first, pywt's sub-band names)::

    cA[i, j] = sum_{k, l} lo[k] lo[l] x[(2i + 4 - k) mod M, (2j + 4 - l) mod N]
    cH: hi[k] lo[l]      cV: lo[k] hi[l]      cD: hi[k] hi[l]

Forward: one thread per coefficient position (i, j) reads the 8 x 8 window once and writes all four
sub-bands. Inverse (the transpose, the transform being orthonormal): output ``x[2p + e, 2q + f]``
gets ``lo/hi[2t - e]`` along axis 0 and ``lo/hi[2u - f]`` along axis 1 from coefficient
``(p + t - 2, q + u - 2)``, t, u = 0..4 (taps outside 0..7 are zero); one thread per 2 x 2 output
block reads the 5 x 5 neighbourhood of the four sub-bands once. Float32 accumulation.

Reference twin: ``pywt.wavedec2`` / ``pywt.waverec2`` (``tests/naive.py::noise_extract``).
Status: tested in Numba's CUDA simulator only; not yet run on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pywt
from numba import cuda, float32

from kernels.launch_gpu import array_module, grid_2d, launch
from kernels.spec import WAVELET

__all__ = ["wavedec2", "waverec2"]

_W = pywt.Wavelet(WAVELET)
_LO = np.asarray(_W.dec_lo, dtype=np.float32)
_HI = np.asarray(_W.dec_hi, dtype=np.float32)
# Inverse taps by offset t = 0..4 (coefficient p + t - 2): parity 0 uses k = 2t, parity 1 k = 2t - 1.
_LO_E = np.array([_LO[0], _LO[2], _LO[4], _LO[6], 0.0], dtype=np.float32)
_LO_O = np.array([0.0, _LO[1], _LO[3], _LO[5], _LO[7]], dtype=np.float32)
_HI_E = np.array([_HI[0], _HI[2], _HI[4], _HI[6], 0.0], dtype=np.float32)
_HI_O = np.array([0.0, _HI[1], _HI[3], _HI[5], _HI[7]], dtype=np.float32)


@cuda.jit
def _dwt2_level(x, ca, ch, cv, cd):
    """One forward level.

    Parameters
    ----------
    x : float32 (M, N), M and N even.
    ca, ch, cv, cd : float32 (M/2, N/2), written.

    Reference twin: ``pywt.dwt2(x, "db4", mode="periodization")``.
    """
    j, i = cuda.grid(2)
    mh, nh = ca.shape
    if i >= mh or j >= nh:
        return
    m, n = x.shape
    sa = float32(0.0)
    sh = float32(0.0)
    sv = float32(0.0)
    sd = float32(0.0)
    for k in range(8):
        r = (2 * i + 4 - k) % m
        rl = float32(0.0)
        rh = float32(0.0)
        for t in range(8):
            v = x[r, (2 * j + 4 - t) % n]
            rl += _LO[t] * v
            rh += _HI[t] * v
        sa += _LO[k] * rl
        sh += _HI[k] * rl
        sv += _LO[k] * rh
        sd += _HI[k] * rh
    ca[i, j] = sa
    ch[i, j] = sh
    cv[i, j] = sv
    cd[i, j] = sd


@cuda.jit
def _idwt2_level(ca, ch, cv, cd, x):
    """One inverse level.

    Parameters
    ----------
    ca, ch, cv, cd : float32 (m, n) (pywt's cA, cH, cV, cD).
    x : float32 (2m, 2n), written.

    Reference twin: ``pywt.idwt2((ca, (ch, cv, cd)), "db4", mode="periodization")``.
    """
    q, p = cuda.grid(2)
    m, n = ca.shape
    if p >= m or q >= n:
        return
    x00 = float32(0.0)
    x01 = float32(0.0)
    x10 = float32(0.0)
    x11 = float32(0.0)
    for t in range(5):
        r = (p + t - 2) % m
        le = _LO_E[t]
        lo_ = _LO_O[t]
        he = _HI_E[t]
        ho = _HI_O[t]
        for u in range(5):
            c = (q + u - 2) % n
            a = ca[r, c]
            h = ch[r, c]
            v = cv[r, c]
            d = cd[r, c]
            # along axis 1 first: P = lo-along-axis-0 part, Q = hi-along-axis-0 part, per column parity
            p0 = _LO_E[u] * a + _HI_E[u] * v
            p1 = _LO_O[u] * a + _HI_O[u] * v
            q0 = _LO_E[u] * h + _HI_E[u] * d
            q1 = _LO_O[u] * h + _HI_O[u] * d
            x00 += le * p0 + he * q0
            x01 += le * p1 + he * q1
            x10 += lo_ * p0 + ho * q0
            x11 += lo_ * p1 + ho * q1
    x[2 * p, 2 * q] = x00
    x[2 * p, 2 * q + 1] = x01
    x[2 * p + 1, 2 * q] = x10
    x[2 * p + 1, 2 * q + 1] = x11


def wavedec2(x, levels: int, *, xp=None) -> list:
    """Multi-level 2-D periodized db4 DWT of a float32 device array.

    Parameters
    ----------
    x : float32 array, shape (M, N), C-contiguous; CuPy on a device (NumPy in the simulator).
        M and N multiples of ``2**levels`` (the caller pads; no checks here).
    levels : int
    xp : module, optional
        The array module; taken from ``x`` when omitted.

    Returns
    -------
    list
        ``[cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]``, pywt's layout, float32.

    Notes
    -----
    GPU twin of ``kernels.dwt_cpu.wavedec2``; agrees with float64 pywt to about 1e-6 of
    ``max |coef|`` (float32 accumulation). Reference twin: ``pywt.wavedec2(x, "db4",
    mode="periodization", level=levels)``.
    """
    xp = xp or array_module(x)
    details = []
    a = x
    for _ in range(levels):
        mh, nh = a.shape[0] // 2, a.shape[1] // 2
        ca, ch, cv, cd = (xp.empty((mh, nh), dtype=xp.float32) for _ in range(4))
        launch(_dwt2_level, *grid_2d(mh, nh), a, ca, ch, cv, cd)
        details.append((ch, cv, cd))
        a = ca
    return [a] + details[::-1]


def waverec2(coeffs, *, xp=None):
    """Inverse of :func:`wavedec2` (pywt's ``waverec2`` layout), float32 device arrays.

    Parameters
    ----------
    coeffs : list ``[cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]`` of C-contiguous float32
        arrays with matching shapes (not checked).
    xp : module, optional

    Returns
    -------
    float32 array, shape ``(2**L * cA_L.shape[0], 2**L * cA_L.shape[1])``

    Notes
    -----
    GPU twin of ``kernels.dwt_cpu.waverec2``. Reference twin: ``pywt.waverec2(coeffs, "db4",
    mode="periodization")``.
    """
    a = coeffs[0]
    xp = xp or array_module(a)
    for ch, cv, cd in coeffs[1:]:
        m, n = a.shape
        x = xp.empty((2 * m, 2 * n), dtype=xp.float32)
        launch(_idwt2_level, *grid_2d(m, n), a, ch, cv, cd, x)
        a = x
    return a
