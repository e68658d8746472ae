"""Fused four-window local Wiener filter (docs/algorithm.md §2) on the GPU (numba.cuda): twin of ``wiener_cpu``.

For a 2-D array ``d`` and noise variance ``sigma2``::

    m_w    = box mean of d**2 over the w x w window, zeros outside, divided by w**2, w in {3, 5, 7, 9}
    v      = min_w max(m_w - sigma2, 0)
    gain   = sigma2 / (v + sigma2)          (0 where sigma2 <= 0: used for s = 0 in the DFT pass)
    wiener = d * gain

One thread per element reads the 9 x 9 neighbourhood once: for each of the 9 rows it forms the
running row sums over half-widths 1..4 and adds each to the window sums it belongs to. The
variance is read from a one-element device array, so a value computed on the device (the std of
the residual for WienerInDFT) needs no host round trip. Float32 accumulation (81 terms).

The output must not alias the input (neighbouring threads still read it).

Reference twin: ``tests/naive.py::wiener``. Status: tested in Numba's CUDA simulator only.
"""

from __future__ import annotations

from numba import cuda, float32

from kernels.launch_gpu import array_module, grid_2d, launch

__all__ = ["local_wiener", "local_wiener_gain"]


@cuda.jit(device=True, inline=True)
def _e(d, i, j, n):
    if j < 0 or j >= n:
        return float32(0.0)
    v = d[i, j]
    return float32(v * v)


@cuda.jit
def _wiener(d, sigma2, out, gain_only):
    """``out = d * gain`` (``gain_only`` 0) or ``out = gain`` (1), gain of docs/algorithm.md §2.

    Parameters
    ----------
    d : float32 (m, n)
    sigma2 : float32 (1,), the noise variance.
    out : float32 (m, n), written; not ``d``.
    gain_only : int
    """
    j, i = cuda.grid(2)
    m, n = d.shape
    if i >= m or j >= n:
        return
    s2 = sigma2[0]
    if not s2 > 0:
        out[i, j] = float32(0.0)
        return
    w1 = float32(0.0)
    w2 = float32(0.0)
    w3 = float32(0.0)
    w4 = float32(0.0)
    for a in range(-4, 5):
        ii = i + a
        if ii < 0 or ii >= m:
            continue
        c1 = _e(d, ii, j, n) + _e(d, ii, j - 1, n) + _e(d, ii, j + 1, n)
        c2 = c1 + _e(d, ii, j - 2, n) + _e(d, ii, j + 2, n)
        c3 = c2 + _e(d, ii, j - 3, n) + _e(d, ii, j + 3, n)
        c4 = c3 + _e(d, ii, j - 4, n) + _e(d, ii, j + 4, n)
        aa = abs(a)
        if aa <= 1:
            w1 += c1
        if aa <= 2:
            w2 += c2
        if aa <= 3:
            w3 += c3
        w4 += c4
    v = min(min(w1 / float32(9.0), w2 / float32(25.0)), min(w3 / float32(49.0), w4 / float32(81.0))) - s2
    if v < 0:
        v = float32(0.0)
    g = s2 / (v + s2)
    if gain_only:
        out[i, j] = g
    else:
        out[i, j] = d[i, j] * g


def local_wiener(d, sigma2, out=None, *, xp=None):
    """Four-window local Wiener filter of a float32 2-D device array.

    Parameters
    ----------
    d : float32 array (m, n), C-contiguous (CuPy; NumPy in the simulator)
    sigma2 : float32 array of shape (1,)
        The noise variance sigma**2, on the device.
    out : float32 array (m, n), optional; must not be ``d``.

    Returns
    -------
    float32 array (m, n)

    Notes
    -----
    GPU twin of ``kernels.wiener_cpu.local_wiener``. Reference twin: ``tests/naive.py::wiener``.
    """
    xp = xp or array_module(d)
    if out is None:
        out = xp.empty_like(d)
    launch(_wiener, *grid_2d(*d.shape), d, sigma2, out, 0)
    return out


def local_wiener_gain(a, sigma2, out=None, *, xp=None):
    """The Wiener gain ``sigma2 / (v + sigma2)`` alone (0 everywhere when ``sigma2[0] <= 0``).

    GPU twin of ``kernels.wiener_cpu.local_wiener_gain``; ``out`` must not be ``a``.
    Reference twin: ``tests/naive.py::wiener`` divided by its input.
    """
    xp = xp or array_module(a)
    if out is None:
        out = xp.empty_like(a)
    launch(_wiener, *grid_2d(*a.shape), a, sigma2, out, 1)
    return out
