"""Symmetric padding to float32 and the weighted crop-add on the GPU: twin of ``layout_cpu``.

Reference twins: ``numpy.pad(x, ..., mode="symmetric")`` and ``out += weight * rec[t:t+m, l:l+n]``
(``tests/naive.py::noise_extract`` and ``tests/naive.py::rgb2gray``).
Status: tested in Numba's CUDA simulator only.
"""

from __future__ import annotations

from numba import cuda

from kernels.launch_gpu import grid_2d, launch

__all__ = ["pad_symmetric", "add_crop"]  # the pad widths: kernels.spec.pad_amounts


@cuda.jit
def _pad_symmetric(x, channel, top, left, scale, out):
    """``out[a, b] = scale * x[mirror(a - top, m), mirror(b - left, n), channel]`` (numpy 'symmetric').

    ``x`` (m, n, C) any real dtype, C-contiguous (a gray image is passed as ``x[:, :, None]``);
    ``out`` float32 (nr, nc).
    """
    b, a = cuda.grid(2)
    nr, nc = out.shape
    if a >= nr or b >= nc:
        return
    m = x.shape[0]
    n = x.shape[1]
    i = (a - top) % (2 * m)
    if i >= m:
        i = 2 * m - 1 - i
    j = (b - left) % (2 * n)
    if j >= n:
        j = 2 * n - 1 - j
    out[a, b] = x[i, j, channel] * scale


@cuda.jit
def _add_crop(rec, top, left, weight, out, first):
    """``out = weight * rec[top:top+m, left:left+n]`` (``first`` 1) or ``out += ...`` (0)."""
    j, i = cuda.grid(2)
    m, n = out.shape
    if i >= m or j >= n:
        return
    v = weight * rec[top + i, left + j]
    if first:
        out[i, j] = v
    else:
        out[i, j] += v


def pad_symmetric(x, channel: int, top: int, left: int, scale, out) -> None:
    """Fill ``out`` (float32, C-contiguous) with ``scale *`` the symmetric padding of ``x[..., channel]``.

    ``x`` is (m, n, C), C-contiguous (one device buffer for all channels, no strided views).

    GPU twin of ``kernels.layout_cpu._pad_symmetric``.
    """
    launch(_pad_symmetric, *grid_2d(*out.shape), x, channel, top, left, scale, out)


def add_crop(rec, top: int, left: int, weight, out, first: bool) -> None:
    """``out (=|+=) weight * rec[top:top+m, left:left+n]``; GPU twin of ``kernels.layout_cpu._add_crop``."""
    launch(_add_crop, *grid_2d(*out.shape), rec, top, left, weight, out, 1 if first else 0)
