"""Coarse templates of the scale search (``fingerprint.scaled_search``): a bounded cache, and the
threads that make them ahead of use.

A template is a camera fingerprint resampled to one scale factor at a coarse resolution, padded and
transformed (``surface_stats.Template``); it depends on the camera, the factor and the resolution,
never on the query, so a camera's templates can be kept for the next queries of an attribution run
(:class:`TemplateCache`). A template is kept from its second use on, not its first: keeping one
means fresh memory for the next, and a single query's sweep that kept its templates ran 20-25 %
slower (300-400 page faults per coarse point against 5-20, ``benchmarks/RESULTS.md``, 2026-12-03)
for hits it never gets; a batch of queries of one size (photos a messenger resized alike) keeps
them at its second query and reuses them from its third. While one coarse point is scored, the
next point's template is made by one of :func:`prefetch_pool`'s threads (NumPy, SciPy's FFT and
the Numba resampling kernel release the GIL), so the two can overlap on a machine of two or more
cores; on this project's 2-core guest, ahead and in line gave the same times within its noise.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from dataclasses import dataclass, field
from typing import Callable

from fingerprint.surface_stats import Template

__all__ = ["TemplateCache", "prefetch_pool"]

_PREFETCH: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # by process id: threads do not survive a fork
_PREFETCH_LOCK = threading.Lock()
_MAX_SEEN = 1 << 16  # keys remembered as asked for once (a few MiB at most; beyond it nothing new is kept)


def prefetch_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads, shared by every sweep of the process, that make coarse templates ahead of use
    (``ScaledSearch._sweep``): one per core at most, however many cameras' searches run side by side."""
    pid = os.getpid()
    with _PREFETCH_LOCK:
        if pid not in _PREFETCH:
            _PREFETCH.clear()
            _PREFETCH[pid] = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1,
                                                                    thread_name_prefix="ganprint-template")
        return _PREFETCH[pid]


@dataclass
class TemplateCache:
    """Coarse templates by (resolution, ln factor), up to ``limit`` bytes: a key's template is kept
    the second time it is asked for (``seen`` holds the keys asked for once), first come first kept."""

    limit: int
    items: dict = field(default_factory=dict)
    seen: set = field(default_factory=set)
    used: int = 0
    hits: int = 0
    misses: int = 0

    def get(self, key, make: Callable[[], Template]) -> Template:
        item = self.items.get(key)
        if item is not None:
            self.hits += 1
            return item
        self.misses += 1
        item = make()
        if key not in self.seen:
            if len(self.seen) < _MAX_SEEN:
                self.seen.add(key)
        elif self.used + item.spectrum.nbytes <= self.limit:
            self.items[key] = item
            self.used += item.spectrum.nbytes
        return item
