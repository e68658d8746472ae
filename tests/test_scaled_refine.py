"""Tests of the refinement of a scaled search's coarse peak (``fingerprint.scaled_refine``) and of
the split cross-correlation it uses (``ReferenceSpectrum.query_spectrum`` / ``correlate``): a shared
query transform gives the same surface as a fresh one, a window is a part of its factor's whole
surface, and a refinement finds a resized crop at its factor and offset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft

from fingerprint.resample import resample_fingerprint, resized_shape, wrap_to_fast
from fingerprint.scaled_refine import WINDOW_MARGIN, _Surfaces, refine
from fingerprint.scores import ReferenceSpectrum


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape, qshape", [((64, 80), (40, 52)), ((227, 301), (200, 263))])
def test_a_shared_query_transform_gives_the_same_surface(shape, qshape):
    q = _random(qshape, 1)
    ref0 = _random(shape, 2)
    first, second = ReferenceSpectrum(ref0), ReferenceSpectrum(_random(shape, 3))
    spec = first.query_spectrum(q)
    kept = spec.copy()
    for ref in (first, second):
        np.testing.assert_array_equal(ref.correlate(spec), ref.cross_correlation(q))
    np.testing.assert_array_equal(spec, kept)  # overwrite=False leaves the shared transform as it was
    direct = np.real(np.fft.ifft2(np.fft.fft2(ref0 - ref0.mean())
                                  * np.conj(np.fft.fft2(q - q.mean(), s=shape))))
    np.testing.assert_allclose(first.correlate(spec), direct, atol=1e-3 * np.abs(direct).max())


@pytest.mark.parametrize("scale, offset", [(0.8, (3, 5)), (0.61, (0, 0)), (0.9, (12, 40))])
def test_a_window_is_a_part_of_its_factors_whole_surface(scale, offset):
    """The window's peak is the maximum of the whole surface over the window's shifts, and the window
    lies in the resampled fingerprint (its sides rounded up to fast FFT lengths only where there is room)."""
    k = _random((300, 420), 4)
    th, tw = resized_shape(k.shape, scale)
    q = _random((th - 60, tw - 90), 5)
    surfaces = _Surfaces(k, q)
    log_scale = math.log(scale)
    win = surfaces.window(log_scale, offset, 2, scale)
    assert win is not None
    padded = wrap_to_fast(resample_fingerprint(k, scale))
    whole = ReferenceSpectrum(padded).cross_correlation(q)
    oy, ox = win.offset
    assert 0 <= oy <= th - q.shape[0] and 0 <= ox <= tw - q.shape[1]
    window_shapes = list(surfaces._spectra)
    assert len(window_shapes) == 1
    wh, ww = window_shapes[0]
    assert wh >= min(q.shape[0] + 2 * WINDOW_MARGIN, th) and ww >= min(q.shape[1] + 2 * WINDOW_MARGIN, tw)
    assert wh <= th and ww <= tw
    for side, n, big in ((wh, q.shape[0], th), (ww, q.shape[1], tw)):
        if scipy.fft.next_fast_len(n + 2 * WINDOW_MARGIN) <= big:
            assert side == scipy.fft.next_fast_len(n + 2 * WINDOW_MARGIN)
    # the window's surface is the whole surface over the window's shifts (both references are made
    # zero-mean, against a zero-mean query, so the values agree): its peak is their maximum there
    y0, x0 = _origin(k, scale, q.shape, offset)
    part = whole[y0: y0 + wh - q.shape[0] + 1, x0: x0 + ww - q.shape[1] + 1]
    iy, ix = np.unravel_index(int(np.argmax(part)), part.shape)
    assert (oy, ox) == (y0 + iy, x0 + ix)


@pytest.mark.parametrize("scale, qshape", [(0.8, (170, 240)), (0.55, (150, 200)), (1.0, (120, 150))])
def test_the_band_surfaces_score_as_the_whole_ones(scale, qshape):
    """``whole`` and ``window`` invert only a band of rows of each surface (``surface_peak``):
    their PCE, energy and offset are those of the whole surface."""
    from fingerprint.surface_stats import peak_stats

    k = _random((300, 420), 6)
    q = _random(qshape, 7)
    q += 0.5 * resample_fingerprint(k, scale)[10 : 10 + qshape[0], 20 : 20 + qshape[1]]
    surfaces = _Surfaces(k, q)
    got = surfaces.whole(math.log(scale))
    padded = wrap_to_fast(resample_fingerprint(k, scale))
    want = ReferenceSpectrum(padded).pce(q, search="crop")
    assert got.offset == want.offset == (10, 20) and got.n_positions == want.n_positions
    assert got.pce == pytest.approx(want.pce, rel=1e-5)
    h, w = q.shape
    c = ReferenceSpectrum(padded).cross_correlation(q)
    full = peak_stats(c, (slice(0, padded.shape[0] - h + 1), slice(0, padded.shape[1] - w + 1)))
    assert got.energy == pytest.approx(full.energy, rel=1e-5)
    win = surfaces.window(math.log(scale), (5, 10), 2, scale)  # centred near the true offset
    shapes = [sh for sh in surfaces._spectra if sh != padded.shape]  # the window's (if not the whole's)
    wh, ww = shapes[0] if shapes else padded.shape
    y0, x0 = _origin(k, scale, q.shape, (5, 10))
    ref = resample_fingerprint(k, scale, (wh, ww), origin=(y0, x0))
    part = peak_stats(ReferenceSpectrum(ref).cross_correlation(q), (slice(0, wh - h + 1), slice(0, ww - w + 1)))
    assert win.offset == (part.offset[0] + y0, part.offset[1] + x0)
    assert win.pce == pytest.approx(part.pce, rel=1e-5) and win.energy == pytest.approx(part.energy, rel=1e-5)


def _origin(k, scale, qshape, offset):
    """The window's top-left as ``_Surfaces.window`` places it (its rule, restated)."""
    th, tw = resized_shape(k.shape, scale)
    out = []
    for o, n, big in ((offset[0], qshape[0], th), (offset[1], qshape[1], tw)):
        side = n + 2 * WINDOW_MARGIN
        if scipy.fft.next_fast_len(side) <= big:
            side = scipy.fft.next_fast_len(side)
        centre = (o + 0.5) * 2 - 0.5
        out.append(min(max(int(round(centre)) - (side - n) // 2, 0), max(big - side, 0)))
    return tuple(out)


def test_refine_finds_a_resized_crop_at_its_factor_and_offset():
    """A query holding the fingerprint resized by 0.8 and cropped at (37, 51), plus noise: a coarse
    peak two fine points off and a coarse offset near the truth are refined to the true factor's
    neighbourhood and the true offset, and every decided point is one of the ranked ones."""
    k = _random((320, 400), 6)
    fine = math.log(0.7) + (1.0 / 260) * np.arange(int(-math.log(0.7) * 260) + 1)
    true = int(np.argmin(np.abs(fine - math.log(0.8))))
    t = resample_fingerprint(k, math.exp(fine[true]))
    q = t[37: 37 + 200, 51: 51 + 260] + 2.0 * _random((200, 260), 7)
    decided = []
    tried = refine(k, np.ascontiguousarray(q, dtype=np.float32), index=true + 2, offset=(18, 25), d=2,
                   fine=fine, r=4, decisions=2, decide=lambda j, res: decided.append((j, res)))
    assert tried == 9 + 2 and len(decided) == 2
    assert all(abs(j - (true + 2)) <= 4 for j, _ in decided)
    j, best = max(decided, key=lambda d: d[1].pce)
    assert abs(j - true) <= 1
    assert best.offset == (37, 51)
    assert best.pce > 100.0
