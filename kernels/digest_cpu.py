"""Sparse correlation of query columns with many fingerprint digests at once, Numba on the CPU.

A digest keeps a fingerprint's strongest pixels (``fingerprint.digest``). The digests of R
references of one shape are stored pixel-major (an inverted index, the CSC layout of the sparse
R x N matrix ``D`` whose row j holds reference j's digest values): for every flat pixel ``i`` the
references ``refs[indptr[i]:indptr[i + 1]]`` that keep pixel ``i`` and their values. One pass over
the pixels then reads every query value once and every stored entry once, in order, and adds into
an R x C table that stays in cache: ``out = D @ columns``.

Reference twin: ``tests/naive.py::sparse_correlation``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kernels._jit import sized_kernel

__all__ = ["sparse_correlation"]


@sized_kernel  # the serial build below kernels.config.PARALLEL_MIN_SIZE pixels (kernels/_jit.py)
def _sparse_correlation(indptr, refs, values, columns, bounds, partial):
    """Per-thread partial sums of ``D @ columns`` (no checks: the wrapper has made inputs valid).

    Parameters
    ----------
    indptr : int64 (N + 1,)          pixel i's entries are ``indptr[i]:indptr[i + 1]``
    refs : uint16 or int32 (nnz,)    reference (row of D) of each entry
    values : float32 (nnz,)          digest value of each entry
    columns : float32 (N, C)         C query vectors, pixel-major (C-contiguous)
    bounds : int64 (T + 1,)          chunk t covers pixels ``bounds[t]:bounds[t + 1]``
    partial : float64 (T, R, C)      zeroed; chunk t adds into ``partial[t]``
    """
    n_chunks = bounds.size - 1
    n_cols = columns.shape[1]
    for t in prange(n_chunks):
        acc = partial[t]
        for i in range(bounds[t], bounds[t + 1]):
            row = columns[i]
            for p in range(indptr[i], indptr[i + 1]):
                j = refs[p]
                v = np.float64(values[p])
                for c in range(n_cols):
                    acc[j, c] += v * row[c]


def sparse_correlation(indptr: np.ndarray, refs: np.ndarray, values: np.ndarray, columns: np.ndarray,
                       n_refs: int) -> np.ndarray:
    """``out[j, c] = sum_i D[j, i] * columns[i, c]`` for the pixel-major sparse matrix ``D``.

    Parameters
    ----------
    indptr : ndarray of int64, shape (N + 1,)
        Entry ranges per flat pixel (non-decreasing, ``indptr[0] == 0``, ``indptr[-1] == nnz``).
    refs : ndarray of uint16 or int32, shape (nnz,)
        Reference index of each entry, in ``[0, n_refs)``.
    values : ndarray of float32, shape (nnz,)
        Digest value of each entry.
    columns : ndarray of float32, shape (N, C)
        Query vectors, one per column (e.g. the centred query residual at C rotations).
    n_refs : int
        R, the number of references (rows of ``D``).

    Returns
    -------
    ndarray of float64, shape (R, C)
        The sparse correlations, accumulated in float64.

    Notes
    -----
    The pixels are cut into one chunk per Numba thread with about equal numbers of entries; each
    chunk sums into its own (R, C) buffer and the buffers are added serially afterwards (no races).
    The caller (``fingerprint.digest.DigestIndex``) has checked shapes and dtypes.
    """
    columns = np.ascontiguousarray(columns, dtype=np.float32)
    n_chunks = max(1, min(numba.get_num_threads(), int(indptr.size) - 1))
    targets = np.linspace(0, int(indptr[-1]), n_chunks + 1)
    bounds = np.searchsorted(indptr, targets).astype(np.int64)
    bounds[0], bounds[-1] = 0, indptr.size - 1
    bounds = np.maximum.accumulate(bounds)
    partial = np.zeros((n_chunks, int(n_refs), columns.shape[1]), dtype=np.float64)
    _sparse_correlation(indptr, refs, values, columns, bounds, partial)
    return partial.sum(axis=0)
