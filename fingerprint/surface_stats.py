"""Statistics of correlation surfaces for the scale search: integer-shift PCE and a phase-free twin.

``peak_stats`` reads one crop-search correlation surface (``fingerprint.scores`` convention:
``C[o]`` is the correlation with the query's top-left at offset ``o``) and returns its PCE,
computed exactly as ``ReferenceSpectrum.pce`` does, and the energy of the 3 x 3 around the peak
over the same noise energy (see :class:`Peak`). ``coarse_stats`` gets the surfaces of a query and
of the query turned by 180 degrees from one query spectrum. ``surface_peak`` (behind ``coarse_stats``
and ``fingerprint.scaled_refine``) transforms back only the band of rows where the query fits
(``surface_band``), the surface's energy coming from the spectrum by Parseval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

# the PCE's own pieces, so that ``peak_stats`` is exactly ``ReferenceSpectrum.pce`` (one definition)
from fingerprint.scores import DEFAULT_RADIUS, _neighbourhood_energy, _sum_squares

__all__ = ["Peak", "Template", "coarse_stats", "peak_stats", "surface_band", "surface_peak"]


@dataclass
class Template:
    """A coarse resampled fingerprint: spectrum at its band's padded size, and its true size."""

    spectrum: np.ndarray  # complex64 (Ph, Pw // 2 + 1): rfft2 of the wrap-padded, mean-free template
    shape: tuple[int, int]  # (th, tw) before padding
    padded: tuple[int, int]  # (Ph, Pw)


_RADIUS = DEFAULT_RADIUS  # PCE exclusion half-width (11 x 11), as fingerprint.scores


@dataclass(frozen=True)
class Peak:
    """Statistics of one correlation surface: integer-shift PCE and its phase-free twin.

    ``pce`` is exactly ``fingerprint.scores``' PCE (peak over the allowed offsets, energy outside
    the circular 11 x 11 neighbourhood). ``energy`` is the same with the peak value replaced by the
    sum of ``C**2`` over the 3 x 3 around it: when a scale error leaves a sub-pixel misregistration
    at the query's centre, the peak spreads over its neighbours but their energy stays (for a
    band-limited correlation, ``sum_k sinc(r + k)**2 = 1`` whatever ``r``), so ``energy`` against
    the factor is one smooth lobe where ``pce`` has one lobe per integer shift. It guides the
    search; only ``pce`` decides.
    """

    pce: float
    energy: float
    offset: tuple[int, int]
    n_positions: int


def peak_stats(c: np.ndarray, allowed: tuple[slice, slice], *, total: float | None = None,
               size: int | None = None) -> Peak:
    """``Peak`` of surface ``c`` with the peak searched in ``c[allowed]``; the offset is the peak's place in it.

    ``c`` may also be a band of rows of a larger surface (``surface_peak``): ``total`` is then the
    whole surface's sum of squares and ``size`` its number of values, and the band holds at
    least ``_RADIUS`` rows on both sides of ``allowed``, so that no neighbourhood wraps in it.
    """
    big_h, big_w = c.shape
    region = c[allowed]
    j = int(np.argmax(region))
    ry, rx = j // region.shape[1], j % region.shape[1]
    py, px = ry + allowed[0].start, rx + allowed[1].start
    near_energy, near_count = _neighbourhood_energy(c, (py, px), _RADIUS)
    total = _sum_squares(c) if total is None else total
    size = c.size if size is None else size
    far = max(total - near_energy, 0.0) / (size - near_count)
    value = float(c[py, px])
    local = c[np.ix_(np.arange(py - 1, py + 2) % big_h, np.arange(px - 1, px + 2) % big_w)].astype(np.float64)
    if far <= 0.0:
        return Peak(0.0, 0.0, (ry, rx), region.size)
    return Peak(math.copysign(value * value, value) / far, float(np.sum(local * local)) / far, (ry, rx),
                 region.size)


_BAND_MAX = 0.75
"""Largest share of a surface's rows that ``surface_peak`` computes as a band; above it the whole
inverse FFT is about as cheap (``benchmarks/RESULTS.md``, session of 2026-12-03, 16:36 UTC)."""


def surface_band(prod: np.ndarray, padded: tuple[int, int], start: int, stop: int) -> tuple[np.ndarray, float]:
    """Rows ``start .. stop - 1`` (modulo ``Ph``) of ``C = irfft2(prod, s=padded)``, and ``sum(C**2)``
    over the whole surface.

    ``irfft2`` is a complex inverse FFT down every column, then a real inverse FFT along each row;
    only the rows asked for take the second pass. The whole surface's energy comes from the first
    pass by Parseval: a row ``t`` after it has ``sum_x C[y, x]**2 = (|t_0|**2 + 2 sum_(0<k<Pw/2)
    |t_k|**2 + |t_(Pw/2)|**2) / Pw`` (the last term only for even ``Pw``). ``prod``: complex64
    ``(Ph, Pw // 2 + 1)``, overwritten.
    """
    ph, pw = padded
    cols = scipy.fft.ifft(prod, axis=0, workers=-1, overwrite_x=True)
    half = 2.0 * _sum_squares(cols.view(np.float32))
    edges = [cols[:, 0]] + ([cols[:, -1]] if pw % 2 == 0 else [])
    total = (half - sum(float(np.sum(np.abs(e).astype(np.float64) ** 2)) for e in edges)) / pw
    rows = np.take(cols, np.arange(start, stop) % ph, axis=0)
    return scipy.fft.irfft(rows, n=pw, axis=1, workers=-1, overwrite_x=True), total


def surface_peak(prod: np.ndarray, padded: tuple[int, int], rows: tuple[int, int], cols: slice) -> Peak:
    """``peak_stats`` of ``C = irfft2(prod, s=padded)`` over the offsets ``rows[0] .. rows[1] - 1``
    by ``cols``, ``prod`` overwritten. Where those rows and their PCE neighbourhoods span at most
    ``_BAND_MAX`` of the surface, only that band is computed (``surface_band``): the same values,
    to float32 rounding; else the whole surface, by the same two passes."""
    ph, pw = padded
    first, last = rows
    if last - first + 2 * _RADIUS <= _BAND_MAX * ph:
        band, total = surface_band(prod, padded, first - _RADIUS, last + _RADIUS)
        return peak_stats(band, (slice(_RADIUS, _RADIUS + last - first), cols), total=total, size=ph * pw)
    c = scipy.fft.irfft(scipy.fft.ifft(prod, axis=0, workers=-1, overwrite_x=True), n=pw, axis=1, workers=-1,
                        overwrite_x=True)
    return peak_stats(c, (slice(first, last), cols))


def coarse_stats(t: Template, spec_q: np.ndarray, qshape: tuple[int, int], both: bool) -> list[Peak]:
    """``Peak`` of a query against a coarse template and, if ``both``, of the query turned 180 degrees.

    ``C0 = irfft2(T conj(Q))`` is the crop-search correlation of the query placed at the top-left;
    for the query turned by 180 degrees (``q'(y, x) = q(h-1-y, w-1-x)``) the correlation at offset
    ``o`` is the convolution ``irfft2(T Q)`` at ``o + (h - 1, w - 1)``, so both come from one
    query spectrum. Peaks are taken over offsets that keep the query inside the unpadded template
    (``surface_peak``: only the band of rows where they lie is transformed back).
    """
    h, w = qshape
    th, tw = t.shape
    out = []
    for turned in ((False, True) if both else (False,)):
        prod = t.spectrum * spec_q if turned else t.spectrum * np.conj(spec_q)
        if turned:
            out.append(surface_peak(prod, t.padded, (h - 1, th), slice(w - 1, tw)))
        else:
            out.append(surface_peak(prod, t.padded, (0, th - h + 1), slice(0, tw - w + 1)))
    return out
