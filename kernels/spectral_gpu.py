"""ZeroMeanTotal and the DFT Wiener pass (docs/algorithm.md §4.3-§4.4) on the GPU: twin of ``spectral_cpu``.

The elementwise and reduction kernels are ``numba.cuda`` kernels (run in the CUDA simulator by
``tests/test_gpu.py``); the FFTs are the array module's (``cupy.fft`` on a device, ``numpy.fft``
in the simulator), in the thin function :func:`wiener_dft`.

No host synchronisation: the standard deviation of the ZeroMeanTotal output stays on the device as
a one-element float32 array ``s2`` (its square, the variance) that the DFT Wiener kernel reads.

Reference twins: ``tests/naive.py::zero_mean_total`` and ``tests/naive.py::wiener_dft``.
Status: tested in Numba's CUDA simulator only (the CuPy FFT glue not at all); not yet run on a GPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from kernels.launch_gpu import array_module, grid_1d, grid_2d, launch, simulator_enabled
from kernels.wiener_gpu import local_wiener_gain

__all__ = ["zero_mean_total", "wiener_dft", "not_constant"]

# Threads per block of the row reductions (a compile-time shared-memory size, a power of two);
# smaller in the simulator, where every thread is a Python thread.
_RED = 8 if simulator_enabled() else 256
_COL_CHUNK = 64  # rows summed per thread before the atomic add, in the column sums


# The block reductions below are written out in each kernel, not as a device function: the CUDA
# simulator swaps the module's ``cuda`` global on every device-function call and restores it on
# return, so while one thread returns, another thread's ``cuda.syncthreads()`` can miss the block's
# barrier (numba's simulator/kernelapi.py ``swapped_cuda_module``). It failed about 1 run in 15.
# Each reduction: ``sh0[0] = sum a``, ``sh1[0] = sum b`` over the ``_RED`` threads (a power of two).


@cuda.jit
def _row_parity_sums(w, row_sums):
    """``row_sums[i, c] = sum_j w[i, c::2]`` (float64); one block per row, shared-memory reduction."""
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    h, n = w.shape
    sh0 = cuda.shared.array(_RED, float64)
    sh1 = cuda.shared.array(_RED, float64)
    s0 = float64(0.0)
    s1 = float64(0.0)
    if i < h:
        for j in range(tid, n, _RED):
            if j % 2 == 0:
                s0 += w[i, j]
            else:
                s1 += w[i, j]
    sh0[tid] = s0
    sh1[tid] = s1
    cuda.syncthreads()
    step = _RED // 2
    while step > 0:
        if tid < step:
            sh0[tid] += sh0[tid + step]
            sh1[tid] += sh1[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0 and i < h:
        row_sums[i, 0] = sh0[0]
        row_sums[i, 1] = sh1[0]


@cuda.jit
def _col_parity_sums(w, col_sums):
    """``col_sums[r, j] += sum_i w[r::2, j]`` over a chunk of rows per thread (atomic add, float64).

    ``col_sums`` must be zeroed first. Grid: x over columns, y over chunks of ``_COL_CHUNK`` rows.
    """
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    chunk = cuda.blockIdx.y
    h, n = w.shape
    if j >= n:
        return
    i0 = chunk * _COL_CHUNK
    i1 = min(h, i0 + _COL_CHUNK)
    s0 = float64(0.0)
    s1 = float64(0.0)
    for i in range(i0, i1):
        if i % 2 == 0:
            s0 += w[i, j]
        else:
            s1 += w[i, j]
    cuda.atomic.add(col_sums, (0, j), s0)
    cuda.atomic.add(col_sums, (1, j), s1)


@cuda.jit
def _means(row_sums, col_sums, row_mean, col_mean, lat_mean):
    """Row means per column parity, column means per row parity, and the four sub-lattice means.

    ``row_mean[i, c] = row_sums[i, c] / #cols of parity c`` (0 for an empty sub-lattice), likewise
    ``col_mean``; thread 0 also sums ``row_sums`` by row parity for ``lat_mean`` (2, 2).
    """
    t = cuda.grid(1)
    h = row_sums.shape[0]
    n = col_sums.shape[1]
    ncols0 = (n + 1) // 2
    ncols1 = n // 2
    nrows0 = (h + 1) // 2
    nrows1 = h // 2
    if t < h:
        row_mean[t, 0] = row_sums[t, 0] / ncols0 if ncols0 > 0 else 0.0
        row_mean[t, 1] = row_sums[t, 1] / ncols1 if ncols1 > 0 else 0.0
    if t < n:
        col_mean[0, t] = col_sums[0, t] / nrows0 if nrows0 > 0 else 0.0
        col_mean[1, t] = col_sums[1, t] / nrows1 if nrows1 > 0 else 0.0
    if t == 0:
        l00 = float64(0.0)
        l01 = float64(0.0)
        l10 = float64(0.0)
        l11 = float64(0.0)
        for i in range(0, h, 2):
            l00 += row_sums[i, 0]
            l01 += row_sums[i, 1]
        for i in range(1, h, 2):
            l10 += row_sums[i, 0]
            l11 += row_sums[i, 1]
        lat_mean[0, 0] = l00 / (nrows0 * ncols0) if nrows0 * ncols0 > 0 else 0.0
        lat_mean[0, 1] = l01 / (nrows0 * ncols1) if nrows0 * ncols1 > 0 else 0.0
        lat_mean[1, 0] = l10 / (nrows1 * ncols0) if nrows1 * ncols0 > 0 else 0.0
        lat_mean[1, 1] = l11 / (nrows1 * ncols1) if nrows1 * ncols1 > 0 else 0.0


@cuda.jit
def _zero_mean_apply(w, row_mean, col_mean, lat_mean, out, row_stats):
    """``out = w - col_mean[i%2, j] - row_mean[i, j%2] + lat_mean[i%2, j%2]``, one block per row.

    Also ``row_stats[i] = (sum_j out[i, j], sum_j out[i, j]**2)`` in float64 (shared-memory reduction).
    ``out`` may be ``w`` (each element is read and written by one thread).
    """
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    h, n = w.shape
    sh0 = cuda.shared.array(_RED, float64)
    sh1 = cuda.shared.array(_RED, float64)
    s = float64(0.0)
    ss = float64(0.0)
    if i < h:
        p = i % 2
        for j in range(tid, n, _RED):
            q = j % 2
            v = float32(w[i, j] - col_mean[p, j] - row_mean[i, q] + lat_mean[p, q])
            out[i, j] = v
            s += v
            ss += float64(v) * float64(v)
    sh0[tid] = s
    sh1[tid] = ss
    cuda.syncthreads()
    step = _RED // 2
    while step > 0:
        if tid < step:
            sh0[tid] += sh0[tid + step]
            sh1[tid] += sh1[tid + step]
        cuda.syncthreads()
        step //= 2
    if tid == 0 and i < h:
        row_stats[i, 0] = sh0[0]
        row_stats[i, 1] = sh1[0]


@cuda.jit
def _variance(row_stats, npx, keep, s2):
    """``s2[0] = var(out, ddof=1)`` from the per-row sums (one thread; 0 when ``keep[0] == 0``).

    Also writes ``s2[1] = sqrt(s2[0])``, the standard deviation.
    """
    if cuda.grid(1) != 0:
        return
    total = float64(0.0)
    total_sq = float64(0.0)
    for i in range(row_stats.shape[0]):
        total += row_stats[i, 0]
        total_sq += row_stats[i, 1]
    var = (total_sq - total * total / npx) / max(npx - 1, 1)
    if var < 0 or keep[0] == 0:
        var = 0.0
    s = math.sqrt(var)
    s2[0] = float32(s * s)
    s2[1] = float32(s)


@cuda.jit
def _not_constant(x, flag):
    """``flag[0] = 1`` if any element of the flat array ``x`` differs from ``x[0]`` (``flag`` zeroed)."""
    t = cuda.grid(1)
    if t < x.shape[0] and x[t] != x[0]:
        flag[0] = 1


@cuda.jit
def _full_magnitude(f_half, scale, a_full):
    """``a_full[k, l] = |F[k, l]| * scale``, full (H, W) from the half spectrum (Hermitian symmetry)."""
    l, k = cuda.grid(2)
    h, wd = a_full.shape
    if k >= h or l >= wd:
        return
    nh = f_half.shape[1]
    if l < nh:
        z = f_half[k, l]
    else:
        z = f_half[(h - k) % h, wd - l]
    a_full[k, l] = float32(math.sqrt(z.real * z.real + z.imag * z.imag) * scale)


@cuda.jit
def _apply_symmetric_gain(f_half, gain):
    """``F[k, l] *= (gain[k, l] + gain[-k, -l]) / 2`` on the half spectrum, in place."""
    l, k = cuda.grid(2)
    h, nh = f_half.shape
    if k >= h or l >= nh:
        return
    wd = gain.shape[1]
    g = float32(0.5) * (gain[k, l] + gain[(h - k) % h, (wd - l) % wd])
    f_half[k, l] = f_half[k, l] * g


def not_constant(x, *, xp=None):
    """Device flag (int32, shape (1,)): 1 when the C-contiguous array ``x`` is not constant."""
    xp = xp or array_module(x)
    flag = xp.zeros(1, dtype=xp.int32)
    flat = x.reshape(-1)
    launch(_not_constant, *grid_1d(flat.shape[0]), flat, flag)
    return flag


def zero_mean_total(w, out=None, *, keep=None, xp=None):
    """ZeroMeanTotal of a float32 residual on the device, and its variance as a device scalar.

    Parameters
    ----------
    w : float32 array (H, W), C-contiguous (CuPy; NumPy in the simulator)
    out : float32 array (H, W), optional; may be ``w``.
    keep : int32 array (1,), optional
        When given and 0, the returned variance is 0 (a constant input image: the DFT Wiener then
        returns exact zeros).

    Returns
    -------
    out : float32 array (H, W)
    s2 : float32 array (2,)
        ``[var(out, ddof=1), std(out, ddof=1)]``, float64 accumulation.

    Notes
    -----
    GPU twin of ``kernels.spectral_cpu.zero_mean_total``. Reference twin:
    ``tests/naive.py::zero_mean_total``.
    """
    xp = xp or array_module(w)
    h, n = w.shape
    if out is None:
        out = xp.empty_like(w)
    if keep is None:
        keep = xp.ones(1, dtype=xp.int32)
    row_sums = xp.empty((h, 2), dtype=xp.float64)
    col_sums = xp.zeros((2, n), dtype=xp.float64)
    launch(_row_parity_sums, h, _RED, w, row_sums)
    tpb = grid_1d(n)[1]
    launch(_col_parity_sums, (math.ceil(n / tpb), math.ceil(h / _COL_CHUNK)), tpb, w, col_sums)
    row_mean = xp.empty((h, 2), dtype=xp.float64)
    col_mean = xp.empty((2, n), dtype=xp.float64)
    lat_mean = xp.empty((2, 2), dtype=xp.float64)
    launch(_means, *grid_1d(max(h, n)), row_sums, col_sums, row_mean, col_mean, lat_mean)
    row_stats = xp.empty((h, 2), dtype=xp.float64)
    launch(_zero_mean_apply, h, _RED, w, row_mean, col_mean, lat_mean, out, row_stats)
    s2 = xp.empty(2, dtype=xp.float32)
    launch(_variance, 1, 1, row_stats, float(h * n), keep, s2)
    return out, s2


def wiener_dft(w, s2, *, xp=None):
    """WienerInDFT with the variance ``s2[0]`` read on the device (docs/algorithm.md §4.4).

    ``F = rfft2(w)``; ``A = |F| / sqrt(H W)`` on the full grid; gain = Wiener gain of ``A`` with
    variance ``s2[0]``, symmetrised ``(g(k) + g(-k)) / 2`` on the half spectrum; result
    ``irfft2(F * gain)``. ``s2[0] == 0`` gives exact zeros.

    Parameters
    ----------
    w : float32 array (H, W)
    s2 : float32 array (1,) or (2,), on the device.
    xp : module, optional (``cupy``; ``numpy`` in the simulator).

    Returns
    -------
    float32 array (H, W)

    Notes
    -----
    The only FFT glue of the residual: two calls of ``xp.fft``. CuPy's ``rfft2`` of float32 is
    complex64; NumPy's (simulator) is complex128 and is cast to complex64 here. GPU twin of
    ``kernels.spectral_cpu.wiener_dft``; reference twin: ``tests/naive.py::wiener_dft``.
    """
    xp = xp or array_module(w)
    h, wd = w.shape
    f = xp.fft.rfft2(w)
    if f.dtype != xp.complex64:
        f = f.astype(xp.complex64)
    mag = xp.empty((h, wd), dtype=xp.float32)
    launch(_full_magnitude, *grid_2d(h, wd), f, np.float32(1.0 / math.sqrt(h * wd)), mag)
    gain = local_wiener_gain(mag, s2, xp=xp)
    del mag
    launch(_apply_symmetric_gain, *grid_2d(*f.shape), f, gain)
    del gain
    out = xp.fft.irfft2(f, s=(h, wd))
    return out if out.dtype == xp.float32 else out.astype(xp.float32)
