"""Sparse correlation of query columns with many fingerprint digests at once, Numba on the CPU.

A digest keeps a fingerprint's strongest pixels (``fingerprint.digest``). The digests of R
references of one shape are stored reference after reference (the CSR layout of the sparse
R x N matrix ``D`` whose row j holds reference j's digest values at its pixel positions): one
Numba iteration per reference reads that reference's entries in order and gathers the query rows
they name from a pixel-major (N, C) table of the query at C rotations, ``out = D @ columns``
(C = 4: one query at four rotations; C = 8: two queries, e.g. two residuals of one image).
References are independent (no partial buffers, no transpose when an index is built), and the
table (16 bytes a pixel for four rotations) stays in the last-level cache at 512 x 512.

(An earlier pixel-major kernel, an inverted index scattering into an R x C table, cost the same
per entry on this machine and needed a SciPy CSR-to-CSC conversion, 1.8 s at 1000 x 512², to build.)

Reference twin: ``tests/naive.py::sparse_correlation`` (the pixel-major layout; the test transposes).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels._jit import sized_kernel

__all__ = ["CHUNK", "gather_correlation"]


CHUNK = 4096
"""Entries summed in float32 before their sum joins the float64 total (module doc: precision)."""


@sized_kernel  # sized by ``indices`` (the stored entries): parallel from kernels.config.PARALLEL_MIN_SIZE on
def _gather_correlation(indices, indptr, values, columns, out):
    """``out[j] = sum_p values[p] * columns[indices[p]]`` over reference j's entries (no checks).

    Products are summed in float32 over runs of at most ``CHUNK`` entries, each run's sum added
    to a float64 total: the float32 chains vectorise and keep four independent accumulators busy
    (about 4x faster here than float64 throughout, 65 M entries x 4 columns), and a run's rounding
    error stays below about ``sqrt(CHUNK) * 2**-24`` of its terms' root-sum-square.

    Parameters
    ----------
    indices : int32 or int64 (nnz,)  flat pixel of each entry, reference-major
    indptr : int64 (R + 1,)          reference j's entries are ``indptr[j]:indptr[j + 1]``
    values : float32 (nnz,)          digest value of each entry
    columns : float32 (N, C)         C query vectors, pixel-major (C-contiguous)
    out : float64 (R, C)             written, one row per reference (no races: a row per iteration)
    """
    n_refs = indptr.size - 1
    n_cols = columns.shape[1]
    for j in prange(n_refs):
        start, stop = indptr[j], indptr[j + 1]
        if n_cols == 4:  # the four rotations of a square query: four accumulators in registers
            t0 = t1 = t2 = t3 = 0.0
            for first in range(start, stop, CHUNK):
                a0 = a1 = a2 = a3 = np.float32(0.0)
                for p in range(first, min(first + CHUNK, stop)):
                    row = columns[indices[p]]
                    v = values[p]
                    a0 += v * row[0]
                    a1 += v * row[1]
                    a2 += v * row[2]
                    a3 += v * row[3]
                t0 += a0
                t1 += a1
                t2 += a2
                t3 += a3
            out[j, 0], out[j, 1], out[j, 2], out[j, 3] = t0, t1, t2, t3
        elif n_cols == 8:  # two queries (e.g. two residuals of one image) at four rotations, in one pass
            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
            for first in range(start, stop, CHUNK):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
                for p in range(first, min(first + CHUNK, stop)):
                    row = columns[indices[p]]
                    v = values[p]
                    a0 += v * row[0]
                    a1 += v * row[1]
                    a2 += v * row[2]
                    a3 += v * row[3]
                    a4 += v * row[4]
                    a5 += v * row[5]
                    a6 += v * row[6]
                    a7 += v * row[7]
                t0 += a0
                t1 += a1
                t2 += a2
                t3 += a3
                t4 += a4
                t5 += a5
                t6 += a6
                t7 += a7
            out[j, 0], out[j, 1], out[j, 2], out[j, 3] = t0, t1, t2, t3
            out[j, 4], out[j, 5], out[j, 6], out[j, 7] = t4, t5, t6, t7
        else:
            total = np.zeros(n_cols)
            acc = np.zeros(n_cols, dtype=np.float32)
            for first in range(start, stop, CHUNK):
                acc[:] = 0.0
                for p in range(first, min(first + CHUNK, stop)):
                    row = columns[indices[p]]
                    v = values[p]
                    for c in range(n_cols):
                        acc[c] += v * row[c]
                for c in range(n_cols):
                    total[c] += acc[c]
            for c in range(n_cols):
                out[j, c] = total[c]


def gather_correlation(indices: np.ndarray, indptr: np.ndarray, values: np.ndarray,
                       columns: np.ndarray) -> np.ndarray:
    """``out[j, c] = sum_p values[p] * columns[indices[p], c]`` over the entries of reference j.

    ``D`` is stored by rows (CSR, module doc): each reference's entries are read in order and
    gather the query rows they name.

    Parameters
    ----------
    indices : ndarray of int32 or int64, shape (nnz,)
        Flat pixel of each entry, in ``[0, N)`` (ascending within a reference reads the query in order).
    indptr : ndarray of int64, shape (R + 1,)
        Entry ranges per reference (non-decreasing, ``indptr[0] == 0``, ``indptr[-1] == nnz``).
    values : ndarray of float32, shape (nnz,)
    columns : ndarray of float32, shape (N, C)
        Query vectors, one per column (e.g. the centred query at C rotations).

    Returns
    -------
    ndarray of float64, shape (R, C)

    Notes
    -----
    The caller (``fingerprint.digest.DigestIndex``) has checked shapes and dtypes.
    """
    columns = np.ascontiguousarray(columns, dtype=np.float32)
    out = np.empty((int(indptr.size) - 1, columns.shape[1]), dtype=np.float64)
    _gather_correlation(indices, indptr, values, columns, out)
    return out
