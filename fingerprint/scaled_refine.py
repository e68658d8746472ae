"""Refinement of one coarse peak of the scaled-query search at full resolution (docs/algorithm.md §7.7).

A coarse peak of :class:`fingerprint.scaled_search.ScaledSearch`'s sweep (the query at 1/d
resolution, every r-th point of the fine grid of factors) says roughly at which factor and offset
the fingerprint may lie. :func:`refine` scores the fine-grid points within r of it at full
resolution, in two steps:

1. a *window* per point: the query against the resampled fingerprint cut to the query's size plus
   at least ``WINDOW_MARGIN`` pixels on each side around the offset the coarse peak predicts (the
   window's sides rounded up to fast FFT lengths where the fingerprint has room); the points are
   ranked by the phase-free ``energy`` of the window's peak (``surface_stats.Peak``: one smooth lobe
   in the factor, where the integer-shift PCE has one lobe per shift);
2. the ``decisions`` best points are scored over every shift of the whole resampled fingerprint,
   and each such surface is passed to ``decide``.

Every surface lies on the fine grid, so the stage threshold (which counts every shift of every
fine point) holds whatever the ranking picked.

Cost: every window and whole surface is a full-resolution FFT correlation of the query (6 MP for
a whole Dresden frame). The query's transform depends only on the padded shape of the surface
(``ReferenceSpectrum.query_spectrum``), and the windows of one refinement share one shape, so it is
computed once per shape and refinement: three transforms per window become two, with the same
numbers as a fresh transform per surface. Of each inverse transform only the band of rows where
the query fits is computed (``surface_stats.surface_peak``): for a window, 17 rows and the PCE's
neighbourhood around them. A window of the query's size plus 16 pixels is often a
slow FFT length (1816 = 8 x 227): rounded up to a fast one (1848), a 6 MP window costs 0.09
instead of 0.21 s.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.fft

from fingerprint.resample import resample_fingerprint, resized_shape, wrap_to_fast
from fingerprint.scores import ReferenceSpectrum
from fingerprint.surface_stats import Peak, surface_peak

__all__ = ["WINDOW_MARGIN", "refine"]

WINDOW_MARGIN = 8
"""Pixels of slack around the predicted position in the refinement's windows."""


class _Surfaces:
    """Full-resolution correlation surfaces of one query ``q`` (float32, (h, w)) against one
    fingerprint ``K`` resampled at factors of the fine grid, the query's transform shared by
    every surface of one shape."""

    def __init__(self, fingerprint: np.ndarray, q: np.ndarray):
        self.K = fingerprint
        self.q = q
        self._spectra: dict[tuple[int, int], np.ndarray] = {}

    def _peak(self, ref: np.ndarray) -> Peak:
        """``Peak`` of the crop search of the query in ``ref`` (every shift that keeps it inside):
        the ``ReferenceSpectrum`` surface, of which ``surface_peak`` computes only the band of rows
        where those shifts lie."""
        spectrum = ReferenceSpectrum(ref)
        if ref.shape not in self._spectra:
            self._spectra[ref.shape] = spectrum.query_spectrum(self.q)
        h, w = self.q.shape
        return surface_peak(self._spectra[ref.shape] * spectrum.spectrum, ref.shape,
                            (0, ref.shape[0] - h + 1), slice(0, ref.shape[1] - w + 1))

    def whole(self, log_scale: float) -> Peak | None:
        """Crop search over every shift of ``K`` resampled by ``exp(log_scale)`` (fast-padded by
        wrapping, as ``ReferenceSpectrum`` surfaces), or None if the query does not fit."""
        t = resample_fingerprint(self.K, math.exp(log_scale))
        h, w = self.q.shape
        if h > t.shape[0] or w > t.shape[1]:
            return None
        return self._peak(wrap_to_fast(t))

    def window(self, log_scale: float, offset: tuple[int, int], d: int, coarse_scale: float) -> Peak | None:
        """The window around the position a coarse peak at ``offset`` (pixels at 1/``d``, factor
        ``coarse_scale``) predicts at factor ``exp(log_scale)``; offsets are in the whole resampled
        fingerprint, and its shifts are a subset of that factor's surface."""
        s = math.exp(log_scale)
        th, tw = resized_shape(self.K.shape, s)
        h, w = self.q.shape
        ratio = s / coarse_scale
        top = []
        for o, n, big in ((offset[0], h, th), (offset[1], w, tw)):
            centre = ((o + 0.5) * d - 0.5) * ratio  # the coarse offset at full resolution, at this factor
            side = n + 2 * WINDOW_MARGIN
            fast = scipy.fft.next_fast_len(side)  # a fast FFT length: 2-3x faster than e.g. 1816 = 8 x 227
            if fast <= big:
                side = fast
            start = min(max(int(round(centre)) - (side - n) // 2, 0), max(big - side, 0))
            top.append((start, min(side, big - start)))
        (y0, wh), (x0, ww) = top
        if wh < h or ww < w:
            return None
        got = self._peak(resample_fingerprint(self.K, s, (wh, ww), origin=(y0, x0)))
        return Peak(got.pce, got.energy, (got.offset[0] + y0, got.offset[1] + x0), got.n_positions)


def refine(fingerprint: np.ndarray, q: np.ndarray, *, index: int, offset: tuple[int, int], d: int,
           fine: np.ndarray, r: int, decisions: int, decide: Callable[[int, Peak], None]) -> int:
    """Refine the coarse peak at point ``index`` of the fine grid ``fine`` (ln factors).

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
        The camera's ``K`` at full resolution.
    q : ndarray of float32, shape (h, w)
        The query product ``W * I``, turned as the peak's rotation.
    index, offset, d
        The coarse peak: its fine-grid point, its offset (pixels at 1/d) and the sweep's divisor.
    r : int
        The coarse stride: points ``index - r .. index + r`` are ranked.
    decisions : int
        Points scored over every shift of the whole resampled fingerprint.
    decide : callable
        ``decide(point, peak)`` for every whole surface scored.

    Returns
    -------
    int
        The number of surfaces scored (windows and whole surfaces).
    """
    surfaces = _Surfaces(fingerprint, q)
    coarse_scale = math.exp(fine[index])
    lo, hi = max(index - r, 0), min(index + r, len(fine) - 1)
    ranked = []
    for j in range(lo, hi + 1):
        win = surfaces.window(float(fine[j]), offset, d, coarse_scale)
        if win is not None:
            ranked.append((win.energy, j))
    tried = hi - lo + 1
    for _, j in sorted(ranked, reverse=True)[:decisions]:
        res = surfaces.whole(float(fine[j]))
        tried += 1
        if res is not None:
            decide(j, res)
    return tried
