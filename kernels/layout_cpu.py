"""Data-layout kernels of the residual: symmetric padding to float32 and weighted crop-add.

Reference twins: ``numpy.pad(x, ..., mode="symmetric")`` and ``out += weight * rec[t:t+m, l:l+n]``
(see ``tests/naive.py::noise_extract`` and ``tests/naive.py::rgb2gray``).
"""

from __future__ import annotations

import numba
from numba import prange

from kernels import config
from kernels._jit import sized_kernel

_JIT = dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)


@numba.njit(inline="always", **_JIT)
def _mirror(i, m):
    """Index into [0, m) of padded index ``i`` under numpy's ``symmetric`` mode (edge repeated)."""
    period = 2 * m
    i = i % period
    if i < 0:
        i += period
    if i >= m:
        i = period - 1 - i
    return i


@sized_kernel
def _pad_symmetric(x, top, left, scale, out):
    """``out = scale * pad(x, symmetric)``: x (m, n) any real dtype, any strides; out float32 (nr, nc).

    ``out[a, b] = scale * x[mirror(a - top, m), mirror(b - left, n)]``.
    """
    m, n = x.shape
    nr, nc = out.shape
    for a in prange(nr):
        i = _mirror(a - top, m)
        for b in range(left):
            out[a, b] = x[i, _mirror(b - left, n)] * scale
        for j in range(n):
            out[a, left + j] = x[i, j] * scale
        for b in range(left + n, nc):
            out[a, b] = x[i, _mirror(b - left, n)] * scale


@sized_kernel
def _add_crop(rec, top, left, weight, out, first):
    """``out = weight * rec[top:top+m, left:left+n]`` (first) or ``out += ...`` (later channels)."""
    m, n = out.shape
    for i in prange(m):
        if first:
            for j in range(n):
                out[i, j] = weight * rec[top + i, left + j]
        else:
            for j in range(n):
                out[i, j] += weight * rec[top + i, left + j]



@numba.njit(**_JIT)
def _is_constant(x):
    """True when every element of the 3-D array ``x`` (any strides) equals ``x[0, 0, 0]``; exits early."""
    v = x[0, 0, 0]
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for k in range(x.shape[2]):
                if x[i, j, k] != v:
                    return False
    return True
