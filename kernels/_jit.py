"""Compile a kernel twice, parallel and serial, and pick by problem size.

A Numba ``parallel=True`` loop costs a fork/join of the thread pool (microseconds when the cores
are idle, milliseconds when another process holds one of them). The residual of a small image
calls kernels hundreds of times on tiny sub-bands, so below ``config.PARALLEL_MIN_SIZE`` elements
the serial build of the same function runs instead. Both builds come from one Python function and
compute the same result; ``prange`` is a plain ``range`` in the serial one.
"""

from __future__ import annotations

import threading
import types

import numba

from kernels import config


PARALLEL_LOCK = threading.Lock()
"""Held by whichever Python thread is running a parallel (``prange``) build of a hand-dispatched
kernel (``kernels.dwt_cpu``, ``kernels.resample_cpu``); a concurrent caller runs the serial build
(nogil, so still concurrent). Numba's fallback "workqueue" threading layer aborts the process when
two Python threads launch parallel kernels at once, whichever kernels they are, hence one lock for
all of them. Serial and parallel builds give bit-identical results."""


def _jit_options() -> dict:
    return dict(cache=config.CACHE, fastmath=config.FASTMATH_FLAGS, nogil=True)


class SizedKernel:
    """A kernel whose first argument's ``size`` selects the parallel or the serial build."""

    def __init__(self, fn: types.FunctionType):
        self.py_func = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.parallel = numba.njit(parallel=True, **_jit_options())(fn)
        # A distinct function object (and qualified name) so Numba's on-disk cache keeps the two apart.
        serial_fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
        serial_fn.__qualname__ = fn.__qualname__ + "_serial"
        serial_fn.__module__ = fn.__module__
        self.serial = numba.njit(parallel=False, **_jit_options())(serial_fn)

    def __call__(self, *args):
        kernel = self.parallel if args[0].size >= config.PARALLEL_MIN_SIZE else self.serial
        return kernel(*args)


def sized_kernel(fn: types.FunctionType) -> SizedKernel:
    """Decorator: parallel build for large inputs, serial build for small ones (see module doc)."""
    return SizedKernel(fn)
