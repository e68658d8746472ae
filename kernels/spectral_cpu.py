"""ZeroMeanTotal and the DFT Wiener pass (docs/algorithm.md §4.3-§4.4), Numba + scipy.fft on the CPU.

Reference twins: ``tests/naive.py::zero_mean_total`` and ``tests/naive.py::wiener_dft``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numba import prange

from kernels import config
from kernels._jit import sized_kernel
from kernels.wiener_cpu import local_wiener_gain

_JIT = dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)


@sized_kernel
def _lattice_sums(w, row_sums, col_sums):
    """Row sums per column parity and column sums per row parity, float64.

    ``row_sums[i, c] = sum_j w[i, c::2]``, ``col_sums[r, j] = sum_i w[r::2, j]``.
    """
    h, n = w.shape
    for i in prange(h):
        s0 = 0.0
        s1 = 0.0
        for j in range(0, n - 1, 2):
            s0 += w[i, j]
            s1 += w[i, j + 1]
        if n % 2 == 1:
            s0 += w[i, n - 1]
        row_sums[i, 0] = s0
        row_sums[i, 1] = s1
    block = 512
    nblocks = (n + block - 1) // block
    for k in prange(nblocks):
        j0 = k * block
        j1 = min(n, j0 + block)
        for j in range(j0, j1):
            col_sums[0, j] = 0.0
            col_sums[1, j] = 0.0
        for i in range(h):
            p = i % 2
            for j in range(j0, j1):
                col_sums[p, j] += w[i, j]


@sized_kernel
def _zero_mean_apply(w, row_mean, col_mean, lattice_mean, out, row_stats):
    """``out = w - col_mean[i%2, j] - row_mean[i, j%2] + lattice_mean[i%2, j%2]``.

    Also writes ``row_stats[i] = (sum_j out[i, j], sum_j out[i, j]**2)`` in float64, so the
    caller gets the standard deviation of the result without another pass.
    """
    h, n = w.shape
    for i in prange(h):
        p = i % 2
        s = 0.0
        ss = 0.0
        for j in range(n):
            q = j % 2
            v = w[i, j] - col_mean[p, j] - row_mean[i, q] + lattice_mean[p, q]
            out[i, j] = v
            s += v
            ss += v * v
        row_stats[i, 0] = s
        row_stats[i, 1] = ss


def zero_mean_total(w: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """ZeroMeanTotal of a float32 residual, and the sample std (ddof=1) of the result.

    For each 2x2 sub-lattice ``w[r::2, c::2]``: subtract its mean, then its column means, then its
    row means. In closed form ``x - colmean_j - rowmean_i + mean`` per sub-lattice.

    Parameters
    ----------
    w : ndarray of float32, shape (H, W), C-contiguous
    out : ndarray of float32, shape (H, W), optional; may be ``w`` (in place).

    Returns
    -------
    out : ndarray of float32, shape (H, W)
    std : float
        ``std(out, ddof=1)``, accumulated in float64.

    Notes
    -----
    Reference twin: ``tests/naive.py::zero_mean_total``.
    """
    h, n = w.shape
    if out is None:
        out = np.empty_like(w)
    row_sums = np.empty((h, 2), dtype=np.float64)
    col_sums = np.empty((2, n), dtype=np.float64)
    _lattice_sums(w, row_sums, col_sums)
    rows_per = np.array([(h + 1) // 2, h // 2], dtype=np.float64)  # rows in lattice parity r
    cols_per = np.array([(n + 1) // 2, n // 2], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_mean = row_sums / cols_per[None, :]
        col_mean = col_sums / rows_per[:, None]
        lat_sum = np.array([[row_sums[r::2, c].sum() for c in (0, 1)] for r in (0, 1)])
        lattice_mean = lat_sum / (rows_per[:, None] * cols_per[None, :])
    for a in (row_mean, col_mean, lattice_mean):
        a[~np.isfinite(a)] = 0.0  # empty sub-lattice (a 1-wide array): nothing to subtract
    row_stats = np.empty((h, 2), dtype=np.float64)
    _zero_mean_apply(w, row_mean, col_mean, lattice_mean, out, row_stats)
    npx = h * n
    total, total_sq = row_stats.sum(axis=0)
    var = (total_sq - total * total / npx) / max(npx - 1, 1)
    return out, float(np.sqrt(max(var, 0.0)))


@sized_kernel
def _full_magnitude(f_half, scale, a_full):
    """Full-size ``|F| * scale`` from the half spectrum of a real signal (Hermitian symmetry).

    ``F[k, l] = conj(F[-k mod H, -l mod W])``, so column ``l > W//2`` is read from the half
    spectrum at ``(-k mod H, W - l)``.
    """
    h, wd = a_full.shape
    nh = f_half.shape[1]
    for k in prange(h):
        kk = (h - k) % h
        for l in range(wd):
            if l < nh:
                z = f_half[k, l]
            else:
                z = f_half[kk, wd - l]
            a_full[k, l] = np.float32(np.sqrt(z.real * z.real + z.imag * z.imag) * scale)


@sized_kernel
def _apply_symmetric_gain(f_half, gain):
    """``F[k, l] *= (gain[k, l] + gain[-k, -l]) / 2`` on the half spectrum.

    ``real(IDFT(F * gain)) == IDFT(F * (gain + gain(-k)) / 2)`` when F is Hermitian, and the
    symmetrised product is Hermitian, so the inverse real FFT of the half spectrum is exact.
    """
    h, nh = f_half.shape
    wd = gain.shape[1]
    for k in prange(h):
        kk = (h - k) % h
        for l in range(nh):
            g = 0.5 * (gain[k, l] + gain[kk, (wd - l) % wd])
            f_half[k, l] = f_half[k, l] * g


def wiener_dft(w: np.ndarray, s: float, *, workers: int = -1) -> np.ndarray:
    """WienerInDFT: Wiener-filter the normalised DFT magnitude of ``w`` with variance ``s**2``.

    ``F = DFT2(w)``, ``A = |F| / sqrt(H W)``, ``A' = wiener(A, s**2)``, ``F' = F A'/A`` (0 where
    A = 0), result ``real(IDFT2(F'))``. Since ``A'/A`` is the Wiener gain, no division is done.

    Parameters
    ----------
    w : ndarray of float32, shape (H, W)
    s : float
        Standard deviation of ``w`` (ddof=1). ``s == 0`` returns zeros.
    workers : int
        ``scipy.fft`` worker threads (-1: all cores).

    Returns
    -------
    ndarray of float32, shape (H, W)

    Notes
    -----
    Real FFTs (complex64) on the half spectrum; the gain is computed on the full-size magnitude
    (the zero-padded box filters of §2 are not symmetric under k -> -k) and symmetrised.
    Reference twin: ``tests/naive.py::wiener_dft``.
    """
    h, wd = w.shape
    if not s > 0:
        return np.zeros_like(w)
    f = scipy.fft.rfft2(w, workers=workers)
    gain = np.empty((h, wd), dtype=np.float32)
    _full_magnitude(f, 1.0 / np.sqrt(h * wd), gain)
    local_wiener_gain(gain, float(s) * float(s), out=gain)
    _apply_symmetric_gain(f, gain)
    del gain
    return scipy.fft.irfft2(f, s=(h, wd), workers=workers).astype(np.float32, copy=False)
