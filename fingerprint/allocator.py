"""Keep freed large arrays inside the process, so that the next one is not faulted in again.

glibc's ``malloc`` gives every block above its mmap threshold (at most 32 MiB by its own
adjustment) fresh pages from the kernel and hands them back on ``free``; the heap above the trim
threshold is handed back too. A scale search makes and drops hundreds of such arrays (a 6 MP
correlation surface is 20-33 MB, its spectrum as much), so each one was zero-filled page by page
again: an unknown answer for a 6 MP query took 400-530 thousand minor page faults and 5-8 s of
system time, against 40-90 thousand and 2-2.6 s with the blocks kept (``benchmarks/RESULTS.md``,
2026-12-03). :func:`keep_freed_memory` raises both thresholds, so freed blocks stay in the heap
for the next array of that size.

It changes the whole process, so only a program that owns its process calls it: the ``ganprint``
command (``fingerprint.cli``) and the benchmarks that time what the command does. A library user
or a Dask worker keeps its allocator as it is (Dask workers trim their heap on purpose, to give
memory back). The process's resident memory then stays near its peak until it exits. On a C
library other than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # bytes: blocks up to 1 GiB come from the heap and are reused
TRIM_THRESHOLD = (1 << 31) - 1  # bytes (mallopt takes an int): the heap's free top is kept


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (module docstring); True if both were set.

    Returns False, changing nothing, where the C library is not glibc or refuses the values.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
