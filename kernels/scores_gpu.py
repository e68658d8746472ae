"""NCC as matrix products and batched PCE against a cached reference spectrum, on the GPU (CuPy).

GPU twin of ``fingerprint.scores`` (docs/algorithm.md §7). Written against the array-module API shared by
CuPy and NumPy, so the same code runs with ``xp=numpy`` on a CPU (that is how
``tests/test_gpu.py`` checks it against ``tests/naive.py::ncc`` / ``crosscorr`` / ``pce_from_cc``
without a GPU). With CuPy arrays, everything stays on the device.

Conventions are those of ``fingerprint.scores``: the query is centred and zero-padded at the
top-left to the reference's (H, W); ``C = irfft2(rfft2(ref~) * conj(rfft2(pad(q~))))``; PCE
``= sign(C[s]) C[s]^2 / mean(C^2 outside the (2r+1)^2 circular neighbourhood of s)``.

Status: run with NumPy only; not yet run with CuPy on a device.
"""

from __future__ import annotations

import numpy as np

from kernels.launch_gpu import array_module, is_device_array
from kernels.spec import PCE_RADIUS, check_search

__all__ = ["ncc_matrix", "reference_spectrum", "pce_batch"]


def _xp(a, xp):
    return xp if xp is not None else (array_module(a) if is_device_array(a) else np)


def ncc_matrix(queries, references, *, chunk: int = 1 << 20, xp=None):
    """NCC of every query against every reference: one float32 GEMM per column chunk.

    Parameters
    ----------
    queries : float32 array (Q, ...), references : float32 array (R, ...), same trailing shape.
    chunk : int
        Columns per GEMM; partial products are accumulated in float64, so no float32 sum runs over
        more than ``chunk`` terms (cuBLAS sgemm then agrees with float64 to about 1e-6).

    Returns
    -------
    float64 array (Q, R), clipped to [-1, 1]; 0 where either array is constant.

    Notes
    -----
    GPU twin of ``fingerprint.scores.ncc_matrix``; reference twin ``tests/naive.py::ncc``.
    Means and squared norms are float64 reductions. No checks (the CPU wrapper checks shapes).
    """
    xp = _xp(queries, xp)
    nq, nr = queries.shape[0], references.shape[0]
    xq = queries.reshape(nq, -1)
    xr = references.reshape(nr, -1)
    n = xq.shape[1]
    mq = xq.mean(axis=1, dtype=xp.float64).astype(xp.float32)[:, None]
    mr = xr.mean(axis=1, dtype=xp.float64).astype(xp.float32)[:, None]
    gram = xp.zeros((nq, nr), dtype=xp.float64)
    ssq = xp.zeros(nq, dtype=xp.float64)
    ssr = xp.zeros(nr, dtype=xp.float64)
    for start in range(0, n, chunk):
        cq = (xq[:, start : start + chunk] - mq).astype(xp.float32, copy=False)
        cr = (xr[:, start : start + chunk] - mr).astype(xp.float32, copy=False)
        ssq += (cq * cq).sum(axis=1, dtype=xp.float64)
        ssr += (cr * cr).sum(axis=1, dtype=xp.float64)
        gram += cq @ cr.T
    denom = xp.sqrt(ssq)[:, None] * xp.sqrt(ssr)[None, :]
    out = xp.where(denom > 0, gram / xp.where(denom > 0, denom, 1.0), 0.0)
    return xp.clip(out, -1.0, 1.0)


def reference_spectrum(ref, *, xp=None):
    """``rfft2(ref - mean(ref))`` of a float32 (H, W) reference, complex64 (H, W // 2 + 1).

    Computed once per reference and cached by the caller (``fingerprint.scores.ReferenceSpectrum``
    on the CPU).
    """
    xp = _xp(ref, xp)
    r = ref.astype(xp.float32, copy=False)
    r = r - r.mean(dtype=xp.float64).astype(xp.float32)
    f = xp.fft.rfft2(r)
    return f if f.dtype == xp.complex64 else f.astype(xp.complex64)


def pce_batch(queries, spectrum, shape, *, search: str = "aligned", radius: int = PCE_RADIUS, xp=None):
    """PCE of a batch of same-size queries against one cached reference spectrum.

    Parameters
    ----------
    queries : float32 array (B, h, w), h <= H, w <= W (h, w == H, W for ``"aligned"``)
    spectrum : complex64 array (H, W // 2 + 1), from :func:`reference_spectrum`
    shape : (H, W), the reference's shape
    search : {"aligned", "crop"}
        ``"aligned"``: peak at (0, 0). ``"crop"``: peak = max of C over 0 <= oy <= H - h,
        0 <= ox <= W - w.
    radius : int
        Half-width of the excluded neighbourhood (default ``kernels.spec.PCE_RADIUS`` = 5: 11 x 11).

    Returns
    -------
    dict of arrays (in ``xp``), each of length B
        ``pce`` (float64), ``peak`` (float64, C at the peak), ``oy``, ``ox`` (int64).

    Notes
    -----
    One batched ``rfft2`` of the zero-padded queries, one product with the conjugate, one batched
    ``irfft2``; the total energy is a float64 reduction, the neighbourhood energy a gather of
    (2r+1)^2 values per query (the whole axis when it is shorter than 2r+1, so nothing is counted
    twice). Memory: about 3 x B x H x W x 4 bytes. GPU twin of
    ``fingerprint.scores.ReferenceSpectrum.pce``; reference twin ``tests/naive.py::pce_from_cc``.
    """
    search = check_search(search)
    xp = _xp(queries, xp)
    big_h, big_w = int(shape[0]), int(shape[1])
    b, h, w = queries.shape
    q = queries.astype(xp.float32, copy=False)
    q = q - q.mean(axis=(1, 2), dtype=xp.float64).astype(xp.float32)[:, None, None]
    fq = xp.fft.rfft2(q, s=(big_h, big_w), axes=(1, 2))
    fq = xp.conj(fq) * spectrum[None]
    c = xp.fft.irfft2(fq, s=(big_h, big_w), axes=(1, 2))
    del fq
    if c.dtype != xp.float32:
        c = c.astype(xp.float32)
    if search == "aligned" or (h, w) == (big_h, big_w):
        oy = xp.zeros(b, dtype=xp.int64)
        ox = xp.zeros(b, dtype=xp.int64)
    else:  # "crop"
        ny, nx = big_h - h + 1, big_w - w + 1
        flat = xp.argmax(c[:, :ny, :nx].reshape(b, -1), axis=1)
        oy, ox = flat // nx, flat % nx
    span = xp.arange(-radius, radius + 1)
    rows = (oy[:, None] + span[None, :]) % big_h if big_h > 2 * radius else xp.broadcast_to(xp.arange(big_h), (b, big_h))
    cols = (ox[:, None] + span[None, :]) % big_w if big_w > 2 * radius else xp.broadcast_to(xp.arange(big_w), (b, big_w))
    bidx = xp.arange(b)
    block = c[bidx[:, None, None], rows[:, :, None], cols[:, None, :]].astype(xp.float64)
    near = (block * block).sum(axis=(1, 2))
    n_far = big_h * big_w - rows.shape[1] * cols.shape[1]
    if n_far <= 0:
        raise ValueError(f"a correlation surface of shape {(big_h, big_w)} has nothing outside the peak neighbourhood")
    total = (c * c).sum(axis=(1, 2), dtype=xp.float64)
    far = xp.maximum(total - near, 0.0)
    peak = c[bidx, oy, ox].astype(xp.float64)
    safe = xp.where(far > 0, far, 1.0)
    score = xp.where(far > 0, xp.sign(peak) * peak * peak / (safe / n_far), xp.where(peak == 0, 0.0, xp.sign(peak) * xp.inf))
    return {"pce": score, "peak": peak, "oy": oy, "ox": ox}
