"""Tunables of the compute kernels, in one place (stumpy's ``config`` idea).

``FASTMATH_FLAGS`` deliberately leaves out ``nnan``/``ninf`` so NaN checks keep working.
``CACHE`` turns Numba's on-disk cache on, so a CLI call does not recompile; set the environment
variable ``GANPRINT_NUMBA_CACHE=0`` to turn it off if a stale cache ever causes trouble.
"""

from __future__ import annotations

import os

FASTMATH_FLAGS = {"nsz", "arcp", "contract", "afn", "reassoc"}
CACHE = os.environ.get("GANPRINT_NUMBA_CACHE", "1") != "0"
THREADS_PER_BLOCK = 256
PARALLEL_MIN_SIZE = 1 << 16  # elements; smaller inputs run the serial build of a kernel (kernels/_jit.py)

_DEFAULTS = {"FASTMATH_FLAGS": set(FASTMATH_FLAGS), "CACHE": CACHE, "THREADS_PER_BLOCK": THREADS_PER_BLOCK,
             "PARALLEL_MIN_SIZE": PARALLEL_MIN_SIZE}


def reset() -> None:
    """Restore every tunable to its default."""
    globals().update({k: (set(v) if isinstance(v, set) else v) for k, v in _DEFAULTS.items()})
