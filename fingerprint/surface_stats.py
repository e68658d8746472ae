"""Statistics of correlation surfaces for the scale search: integer-shift PCE and a phase-free twin.

``peak_stats`` reads one crop-search correlation surface (``fingerprint.scores`` convention:
``C[o]`` is the correlation with the query's top-left at offset ``o``) and returns its PCE,
computed exactly as ``ReferenceSpectrum.pce`` does, and the energy of the 3 x 3 around the peak
over the same noise energy (see :class:`Peak`). ``coarse_stats`` gets the surfaces of a query and
of the query turned by 180 degrees from one query spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

# the PCE's own pieces, so that ``peak_stats`` is exactly ``ReferenceSpectrum.pce`` (one definition)
from fingerprint.scores import DEFAULT_RADIUS, _neighbourhood_energy, _sum_squares

__all__ = ["Peak", "Template", "coarse_stats", "peak_stats"]


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


def peak_stats(c: np.ndarray, allowed: tuple[slice, slice]) -> Peak:
    """``Peak`` of surface ``c`` with the peak searched in ``c[allowed]``; the offset is the peak's place in it."""
    big_h, big_w = c.shape
    region = c[allowed]
    j = int(np.argmax(region))
    ry, rx = j // region.shape[1], j % region.shape[1]
    py, px = ry + allowed[0].start, rx + allowed[1].start
    near_energy, near_count = _neighbourhood_energy(c, (py, px), _RADIUS)
    far = max(_sum_squares(c) - near_energy, 0.0) / (c.size - near_count)
    value = float(c[py, px])
    local = c[np.ix_(np.arange(py - 1, py + 2) % big_h, np.arange(px - 1, px + 2) % big_w)].astype(np.float64)
    if far <= 0.0:
        return Peak(0.0, 0.0, (ry, rx), region.size)
    return Peak(math.copysign(value * value, value) / far, float(np.sum(local * local)) / far, (ry, rx),
                 region.size)


def coarse_stats(t: Template, spec_q: np.ndarray, qshape: tuple[int, int], both: bool) -> list[Peak]:
    """``Peak`` of a query against a coarse template and, if ``both``, of the query turned 180 degrees.

    ``C0 = irfft2(T conj(Q))`` is the crop-search correlation of the query placed at the top-left;
    for the query turned by 180 degrees (``q'(y, x) = q(h-1-y, w-1-x)``) the correlation at offset
    ``o`` is the convolution ``irfft2(T Q)`` at ``o + (h - 1, w - 1)``, so both come from one
    query spectrum. Peaks are taken over offsets that keep the query inside the unpadded template.
    """
    h, w = qshape
    th, tw = t.shape
    out = []
    for turned in ((False, True) if both else (False,)):
        prod = t.spectrum * spec_q if turned else t.spectrum * np.conj(spec_q)
        c = scipy.fft.irfft2(prod, s=t.padded, workers=-1)
        allowed = (slice(h - 1, th), slice(w - 1, tw)) if turned else (slice(0, th - h + 1), slice(0, tw - w + 1))
        out.append(peak_stats(c, allowed))
    return out
