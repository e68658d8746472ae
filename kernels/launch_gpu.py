"""Shared plumbing of the ``*_gpu`` kernels: lazy CuPy, the array module, launch configuration.

Nothing here imports CuPy or ``numba.cuda`` at module import time. The GPU kernels themselves are
written with ``numba.cuda`` (``@cuda.jit``), so that the same source runs

* on a real device, with CuPy arrays (the kernels see them through ``__cuda_array_interface__``)
  launched on CuPy's current stream, and
* in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba is first imported), with
  NumPy arrays, where each CUDA thread runs as Python code. ``tests/test_gpu.py`` uses this to check
  every kernel against its float64 twin in ``tests/naive.py`` on a machine without a GPU.

The array module ``xp`` (``cupy`` on a device, ``numpy`` in the simulator) allocates buffers and
runs the FFTs; every function of the ``*_gpu`` modules takes it as a keyword.

Status: written and tested in the simulator only; nothing here has run on a real GPU yet
(see ``docs/gpu.md``).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

from kernels import config

__all__ = ["simulator_enabled", "require_cupy", "array_module", "is_device_array", "launch", "TILE_X", "TILE_Y"]

# 2-D launches use blocks of TILE_X x TILE_Y threads: 32 consecutive columns per warp (coalesced),
# and config.THREADS_PER_BLOCK // 32 rows.
TILE_X = 32


def TILE_Y() -> int:  # noqa: N802 - reads config at call time so tests may patch it
    return max(1, config.THREADS_PER_BLOCK // TILE_X)


def simulator_enabled() -> bool:
    """True when Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba.core import config as numba_config
    except ImportError:  # pragma: no cover - numba is a hard dependency
        return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    return bool(numba_config.ENABLE_CUDASIM)


def require_cupy():
    """Import and return CuPy, or raise ``ImportError`` saying what to install."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the GPU backend needs CuPy: pip install 'ganprint[gpu]' (cupy-cuda12x) or the "
            "cupy-cuda13x wheel that matches your CUDA driver"
        ) from exc
    return cupy


def is_device_array(a) -> bool:
    """True for a CuPy array (checked by type, without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(a=None):
    """``cupy`` for a CuPy array; ``numpy`` for anything else, or when ``a`` is None in the simulator."""
    if a is not None and is_device_array(a):
        return require_cupy()
    if a is None and not simulator_enabled():
        return require_cupy()
    return np


@functools.lru_cache(maxsize=None)
def _cuda():
    from numba import cuda

    return cuda


_STREAMS: dict[int, object] = {}


def _numba_stream():
    """A Numba stream object for CuPy's current stream (kernels then run in CuPy's stream order)."""
    import cupy

    ptr = int(cupy.cuda.get_current_stream().ptr)
    s = _STREAMS.get(ptr)
    if s is None:
        cuda = _cuda()
        s = cuda.default_stream() if ptr == 0 else cuda.external_stream(ptr)
        _STREAMS[ptr] = s
    return s


def _as_kernel_arg(a):
    if hasattr(a, "__cuda_array_interface__"):
        # sync=False: Numba would otherwise synchronise the array's stream (a host-blocking wait)
        # on every launch. Ordering is already guaranteed: everything runs on CuPy's current stream.
        return _cuda().as_cuda_array(a, sync=False)
    return a


def grid_2d(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Grid and block for one thread per element of a (rows, cols) array; x runs along columns."""
    ty = TILE_Y()
    return (max(1, math.ceil(cols / TILE_X)), max(1, math.ceil(rows / ty))), (TILE_X, ty)


def grid_1d(n: int) -> tuple[int, int]:
    tpb = config.THREADS_PER_BLOCK
    return max(1, math.ceil(n / tpb)), tpb


def launch(kernel, griddim, blockdim, *args) -> None:
    """Launch a ``numba.cuda`` kernel on CuPy's current stream (device) or in the simulator.

    Parameters
    ----------
    kernel : numba.cuda dispatcher
    griddim, blockdim : int or tuple
    *args : arrays (CuPy on a device, NumPy in the simulator) and scalars, as the kernel expects.
    """
    if simulator_enabled():
        kernel[griddim, blockdim](*args)
        return
    kernel[griddim, blockdim, _numba_stream()](*(_as_kernel_arg(a) for a in args))
