"""Sparse correlation of query columns with many fingerprint digests at once, Numba on the CPU.

A digest keeps a fingerprint's strongest pixels (``fingerprint.digest``). The digests of R
references of one shape are stored reference after reference (the CSR layout of the sparse
R x N matrix ``D`` whose row j holds reference j's digest values at its pixel positions): one
Numba iteration per reference reads that reference's entries in order and gathers the query rows
they name from a pixel-major table of the query at C rotations, ``out = D @ columns`` (C = 4: one
query at four rotations; C = 8: two queries, e.g. two residuals of one image), held as groups of
four columns (:func:`column_groups`: one 16-byte load per entry and group).
References are independent (no partial buffers, no transpose when an index is built), and the
table (16 bytes a pixel for four rotations) stays in the last-level cache at 512 x 512.
Measured here, the loop is bound by the dependent additions, not by memory: four entries at a
time into independent accumulators (``_gather_one``, ``_gather_two``) made it 2-4x faster.

(An earlier pixel-major kernel, an inverted index scattering into an R x C table, cost the same
per entry on this machine and needed a SciPy CSR-to-CSC conversion, 1.8 s at 1000 x 512², to build.)

Reference twin: ``tests/naive.py::sparse_correlation`` (the pixel-major layout; the test transposes).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels._jit import sized_kernel

__all__ = ["CHUNK", "GROUP", "column_groups", "gather_correlation"]


CHUNK = 4096
"""Entries summed in float32 before their sum joins the float64 total (module doc: precision)."""

GROUP = 4
"""Query columns per group of the table the kernel reads (one 16-byte load per entry and group)."""


@sized_kernel  # sized by ``indices`` (the stored entries): parallel from kernels.config.PARALLEL_MIN_SIZE on
def _gather_one(indices, indptr, values, table0, out):
    """``out[j, c] = sum_p values[p] * table0[4 indices[p] + c]`` over reference j's entries, c < 4 (no checks).

    Products are summed in float32 over runs of at most ``CHUNK`` entries, each run's sum added
    to a float64 total. Within a run four entries are taken at a time into four accumulator rows
    (a 4 x 4 block): the chains are independent, so the additions overlap instead of waiting on
    one another, and the four columns are one vector. Measured here (1,000 references x 65,536
    entries, 2 threads): 0.107 -> 0.05 s against one accumulator per column (benchmarks/RESULTS.md).
    A run's rounding error stays below about ``sqrt(CHUNK) * 2**-24`` of its terms' root-sum-square.

    Parameters
    ----------
    indices : int32 or int64 (nnz,)  flat pixel of each entry, reference-major
    indptr : int64 (R + 1,)          reference j's entries are ``indptr[j]:indptr[j + 1]``
    values : float32 (nnz,)          digest value of each entry
    table0 : float32 (N * 4,)        four query vectors, pixel-major (:func:`column_groups`)
    out : float64 (R, 4)             written, one row per reference (no races: a row per iteration)
    """
    for j in prange(indptr.size - 1):
        start, stop = indptr[j], indptr[j + 1]
        total = np.zeros(4)
        for first in range(start, stop, CHUNK):
            end = min(first + CHUNK, stop)
            acc = np.zeros((4, 4), dtype=np.float32)
            p = first
            while p + 3 < end:
                for u in range(4):
                    b, v = 4 * indices[p + u], values[p + u]
                    for c in range(4):
                        acc[u, c] += v * table0[b + c]
                p += 4
            for q in range(p, end):
                b, v = 4 * indices[q], values[q]
                for c in range(4):
                    acc[0, c] += v * table0[b + c]
            for u in range(4):
                for c in range(4):
                    total[c] += acc[u, c]
        for c in range(4):
            out[j, c] = total[c]


@sized_kernel
def _gather_two(indices, indptr, values, table0, table1, out):
    """:func:`_gather_one` for two tables in one pass (e.g. two residuals of one image at four
    rotations): ``out[j, c]`` from ``table0`` and ``out[j, 4 + c]`` from ``table1``, c < 4.

    Each entry is read once for both (a 4 x 8 block of accumulators): 0.34 -> 0.09 s here for
    1,000 x 65,536 entries, against 0.10 s for two passes of :func:`_gather_one`.

    Parameters
    ----------
    indices, indptr, values : as :func:`_gather_one`
    table0, table1 : float32 (N * 4,)
    out : float64 (R, 8)
    """
    for j in prange(indptr.size - 1):
        start, stop = indptr[j], indptr[j + 1]
        total = np.zeros(8)
        for first in range(start, stop, CHUNK):
            end = min(first + CHUNK, stop)
            acc = np.zeros((4, 8), dtype=np.float32)
            p = first
            while p + 3 < end:
                for u in range(4):
                    b, v = 4 * indices[p + u], values[p + u]
                    for c in range(4):
                        acc[u, c] += v * table0[b + c]
                    for c in range(4):
                        acc[u, 4 + c] += v * table1[b + c]
                p += 4
            for q in range(p, end):
                b, v = 4 * indices[q], values[q]
                for c in range(4):
                    acc[0, c] += v * table0[b + c]
                    acc[0, 4 + c] += v * table1[b + c]
            for u in range(4):
                for c in range(8):
                    total[c] += acc[u, c]
        for c in range(8):
            out[j, c] = total[c]


def column_groups(columns: np.ndarray) -> np.ndarray:
    """The (N, C) query table as the kernel reads it: float32 (G, N * 4), ``G = ceil(C / 4)``,
    group g holding columns ``4 g .. 4 g + 3`` pixel-major (missing columns are zeros)."""
    columns = np.asarray(columns, dtype=np.float32)
    n_pixels, n_cols = columns.shape
    n_groups = max(1, -(-n_cols // GROUP))
    groups = np.zeros((n_groups, n_pixels, GROUP), dtype=np.float32)
    for g in range(n_groups):
        part = columns[:, GROUP * g: GROUP * (g + 1)]
        groups[g, :, : part.shape[1]] = part
    return groups.reshape(n_groups, n_pixels * GROUP)


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
        Query vectors, one per column (e.g. the centred query at C rotations); fastest for C of
        4 or 8, any C works.

    Returns
    -------
    ndarray of float64, shape (R, C)

    Notes
    -----
    The caller (``fingerprint.digest.DigestIndex``) has checked shapes and dtypes.
    """
    n_cols = int(np.shape(columns)[1])
    groups = column_groups(columns)
    n_refs = int(indptr.size) - 1
    parts = []
    for g in range(0, groups.shape[0], 2):  # two groups per pass
        pair = groups[g: g + 2]
        out = np.empty((n_refs, GROUP * pair.shape[0]), dtype=np.float64)
        if len(pair) == 2:
            _gather_two(indices, indptr, values, pair[0], pair[1], out)
        else:
            _gather_one(indices, indptr, values, pair[0], out)
        parts.append(out)
    return np.concatenate(parts, axis=1)[:, :n_cols] if len(parts) > 1 else parts[0][:, :n_cols]
