"""Tests of ``fingerprint.scores`` against the float64 twins ``naive.ncc``, ``crosscorr``, ``pce_from_cc``."""

from __future__ import annotations

import dataclasses
import doctest
import math
from concurrent.futures import ThreadPoolExecutor

import naive
import numpy as np
import pytest
import scipy.special
from conftest import tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from fingerprint import scores
from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.scores import PCEResult, ReferenceSpectrum, ncc, ncc_matrix, pce, search_threshold

RTOL32 = tolerance(np.float32)


# --- reference helpers (before the first test) ------------------------------------------------------
def naive_pad_query(q: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean query placed at the top-left of a zero (H, W) array, float64."""
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros(shape)
    out[: q.shape[0], : q.shape[1]] = q - q.mean()
    return out


def naive_crop_cc(ref: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``C[o] = sum_x q~(x) ref~(x + o)``: naive.crosscorr with the reference first."""
    return naive.crosscorr(ref, naive_pad_query(q, ref.shape))


def naive_allowed(shape: tuple[int, int], qshape: tuple[int, int]) -> np.ndarray:
    """Offsets that keep a (h, w) query inside an (H, W) reference."""
    allowed = np.zeros(shape, dtype=bool)
    allowed[: shape[0] - qshape[0] + 1, : shape[1] - qshape[1] + 1] = True
    return allowed


def naive_search_threshold(base: float, n: float) -> float:
    """Solve ``n * erfc(sqrt(t / 2)) = erfc(sqrt(base / 2))`` by bisection in log space."""
    target = math.log(scipy.special.erfc(math.sqrt(base / 2)))
    lo, hi = base, base + 200.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.log(n) + math.log(scipy.special.erfc(math.sqrt(mid / 2))) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _random(rng, shape, dtype=np.float32, loc=0.0, scale=1.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


# --- NCC -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 2), (7, 9), (64, 64), (33, 50), (3, 16, 17)])
def test_ncc_matches_naive(rng, shape, dtype):
    a = _random(rng, shape, dtype, loc=100.0, scale=3.0)
    b = (0.2 * a + _random(rng, shape, dtype)).astype(dtype)
    got = ncc(a, b)
    assert isinstance(got, float)
    assert got == pytest.approx(naive.ncc(a, b), rel=RTOL32, abs=1e-6)


def test_ncc_large_array_accuracy(rng):
    """Float32 chunks with float64 accumulation stay accurate beyond one chunk (2**16)."""
    a = _random(rng, (700, 900), loc=50.0, scale=2.0)
    b = (0.01 * a + _random(rng, a.shape)).astype(np.float32)
    assert ncc(a, b) == pytest.approx(naive.ncc(a, b), rel=1e-5, abs=1e-7)
    assert ncc(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ncc_properties(rng):
    a = _random(rng, (40, 30))
    b = (a + 2 * _random(rng, (40, 30))).astype(np.float32)
    r = ncc(a, b)
    assert -1.0 <= r <= 1.0
    assert ncc(b, a) == pytest.approx(r, rel=1e-6)
    assert ncc(3.5 * a + 7.0, b) == pytest.approx(r, rel=1e-5)
    assert ncc(-a, b) == pytest.approx(-r, rel=1e-5)
    assert ncc(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ncc(a, -a) == pytest.approx(-1.0, abs=1e-6)


def test_ncc_constant_is_zero(rng):
    a = _random(rng, (16, 16))
    c = np.full((16, 16), 3.0, dtype=np.float32)
    assert ncc(a, c) == 0.0
    assert ncc(c, a) == 0.0
    assert ncc(c, c) == 0.0


def test_ncc_errors(rng):
    with pytest.raises(ShapeMismatchError):
        ncc(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(TypeError, match="astype"):
        ncc(np.zeros((4, 4), dtype=complex), np.zeros((4, 4)))
    with pytest.raises(InvalidImageError):
        ncc(np.zeros((0, 4)), np.zeros((0, 4)))


def test_ncc_matrix_equals_pairwise(rng):
    queries = _random(rng, (5, 24, 31), loc=10.0)
    refs = _random(rng, (3, 24, 31))
    refs[1] = 0.5 * queries[2] + refs[1]
    refs[2] = 1.0  # constant reference -> a column of zeros
    m = ncc_matrix(queries, refs)
    assert m.shape == (5, 3)
    assert m.dtype == np.float64
    for i in range(5):
        for j in range(3):
            expected = 0.0 if j == 2 else naive.ncc(queries[i], refs[j])
            assert m[i, j] == pytest.approx(expected, rel=RTOL32, abs=1e-6)
    assert np.all(m[:, 2] == 0.0)


def test_ncc_matrix_many_small_chunks(rng, monkeypatch):
    """The chunked accumulation gives the same result however the columns are split."""
    q = _random(rng, (4, 50, 41))
    r = _random(rng, (6, 50, 41))
    whole = ncc_matrix(q, r)
    monkeypatch.setattr(scores, "_CHUNK", 1024)
    monkeypatch.setattr(scores, "_TEMP_ELEMENTS", 16)
    assert np.allclose(ncc_matrix(q, r), whole, rtol=1e-5, atol=1e-6)
    expected = np.array([[naive.ncc(a, b) for b in r] for a in q])
    assert np.allclose(whole, expected, rtol=RTOL32, atol=1e-6)


def test_ncc_matrix_errors():
    with pytest.raises(ShapeMismatchError):
        ncc_matrix(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(InvalidImageError):
        ncc_matrix(np.zeros(4), np.zeros((1, 4)))


# --- cross-correlation ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 16), (17, 23), (32, 9), (1, 8), (5, 1)])
def test_cross_correlation_equal_size_matches_naive(rng, shape):
    ref = _random(rng, shape, loc=2.0)
    q = _random(rng, shape)
    c = ReferenceSpectrum(ref).cross_correlation(q)
    assert c.dtype == np.float32 and c.shape == shape
    expected = naive.crosscorr(ref, q)
    assert np.allclose(c, expected, rtol=RTOL32, atol=RTOL32 * np.abs(expected).max())
    # Aligned value at (0, 0) is the un-normalised correlation of the centred arrays.
    r64, q64 = ref.astype(np.float64), q.astype(np.float64)
    aligned = np.sum((r64 - r64.mean()) * (q64 - q64.mean()))
    assert c[0, 0] == pytest.approx(aligned, rel=1e-4, abs=RTOL32 * np.abs(expected).max())


@pytest.mark.parametrize(("shape", "qshape"), [((30, 40), (30, 17)), ((31, 27), (8, 27)), ((25, 25), (13, 6))])
def test_cross_correlation_crop_matches_naive(rng, shape, qshape):
    ref = _random(rng, shape)
    q = _random(rng, qshape, loc=5.0)
    c = ReferenceSpectrum(ref).cross_correlation(q)
    expected = naive_crop_cc(ref, q)
    assert np.allclose(c, expected, rtol=RTOL32, atol=RTOL32 * np.abs(expected).max())


def test_cross_correlation_exact_crop_peaks_at_offset(rng):
    ref = _random(rng, (48, 64))
    c = ReferenceSpectrum(ref).cross_correlation(ref[11:31, 5:45])
    assert np.unravel_index(np.argmax(c), c.shape) == (11, 5)


def test_cross_correlation_rejects_larger_query(rng):
    spec = ReferenceSpectrum(_random(rng, (20, 30)))
    for qshape in [(21, 30), (20, 31), (40, 10)]:
        with pytest.raises(ShapeMismatchError):
            spec.cross_correlation(np.zeros(qshape, dtype=np.float32))
    with pytest.raises(InvalidImageError):
        spec.cross_correlation(np.zeros(30, dtype=np.float32))


def test_reference_spectrum_attributes(rng):
    spec = ReferenceSpectrum(_random(rng, (20, 31)).astype(np.float64))
    assert spec.shape == (20, 31)
    assert spec.spectrum.dtype == np.complex64 and spec.spectrum.shape == (20, 16)
    assert not spec.spectrum.flags.writeable
    assert abs(spec.spectrum[0, 0]) < 1e-3  # mean removed
    assert "20, 31" in repr(spec)
    with pytest.raises(InvalidImageError):
        ReferenceSpectrum(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError):
        ReferenceSpectrum(np.zeros((4, 4), dtype=np.complex64))


# --- PCE -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (45, 71), (12, 40)])
@pytest.mark.parametrize("radius", [0, 2, 5])
def test_pce_aligned_matches_naive(rng, shape, radius):
    ref = _random(rng, shape)
    q = (0.3 * ref + _random(rng, shape)).astype(np.float32)
    res = ReferenceSpectrum(ref).pce(q, radius=radius)
    expected, peak = naive.pce_from_cc(naive.crosscorr(ref, q), radius=radius)
    assert res.offset == peak == (0, 0)
    assert res.n_positions == 1
    assert res.pce == pytest.approx(expected, rel=1e-4)
    assert res.peak == pytest.approx(naive.crosscorr(ref, q)[0, 0], rel=1e-4)


def test_pce_radius_wraps_on_small_axes(rng):
    """An axis shorter than 2r+1: neighbourhood pixels are counted once, as in the naive mask."""
    ref = _random(rng, (8, 30))
    q = (ref + _random(rng, (8, 30))).astype(np.float32)
    res = pce(q, ref, radius=5)
    expected, _ = naive.pce_from_cc(naive.crosscorr(ref, q), radius=5)
    assert res.pce == pytest.approx(expected, rel=1e-4)


def test_pce_crop_matches_naive(rng):
    ref = _random(rng, (40, 50))
    q = (ref[9:29, 13:43] + 2.0 * _random(rng, (20, 30))).astype(np.float32)
    res = ReferenceSpectrum(ref).pce(q, search="crop")
    expected, peak = naive.pce_from_cc(naive_crop_cc(ref, q), naive_allowed(ref.shape, q.shape))
    assert res.offset == peak == (9, 13)
    assert res.n_positions == 21 * 21
    assert res.pce == pytest.approx(expected, rel=1e-4)


def test_pce_crop_finds_offset_and_rejects_unrelated(rng):
    ref = _random(rng, (256, 320))
    query = (ref[37 : 37 + 100, 61 : 61 + 150] + 3.0 * _random(rng, (100, 150))).astype(np.float32)
    spec = ReferenceSpectrum(ref)
    hit = spec.pce(query, search="crop")
    n = (256 - 100 + 1) * (320 - 150 + 1)
    assert hit.offset == (37, 61)
    assert hit.n_positions == n
    assert hit.pce > 10 * search_threshold(60.0, n)
    miss = spec.pce(_random(rng, (100, 150)), search="crop")
    assert miss.n_positions == n
    assert miss.pce < search_threshold(60.0, n)
    # The same unrelated query at the single aligned position of a full-size pair scores near 0.
    assert abs(pce(_random(rng, (256, 320)), ref).pce) < 60.0


def test_pce_crop_equal_size_is_aligned(rng):
    ref = _random(rng, (30, 33))
    q = (np.roll(ref, (3, 4), axis=(0, 1)) + _random(rng, (30, 33))).astype(np.float32)
    spec = ReferenceSpectrum(ref)
    crop = spec.pce(q, search="crop")
    aligned = spec.pce(q, search="aligned")
    assert crop == aligned
    assert crop.offset == (0, 0) and crop.n_positions == 1


def test_pce_sign_scale_and_constant(rng):
    ref = _random(rng, (50, 60))
    q = (ref + _random(rng, (50, 60))).astype(np.float32)
    pos = pce(q, ref)
    assert pos.pce > 60.0 and pos.peak > 0
    neg = pce(-q, ref)
    assert neg.pce == pytest.approx(-pos.pce, rel=1e-5) and neg.peak < 0
    assert pce(1000.0 * q + 3.0, ref).pce == pytest.approx(pos.pce, rel=1e-4)
    flat = pce(np.full((50, 60), 7.0, dtype=np.float32), ref)
    assert flat.pce == 0.0 and flat.peak == 0.0


def test_pce_errors(rng):
    spec = ReferenceSpectrum(_random(rng, (20, 30)))
    with pytest.raises(ShapeMismatchError, match="crop"):
        spec.pce(np.zeros((10, 30), dtype=np.float32))
    with pytest.raises(ShapeMismatchError):
        spec.pce(np.zeros((21, 30), dtype=np.float32), search="crop")
    with pytest.raises(ValueError, match="aligned"):
        spec.pce(np.zeros((20, 30), dtype=np.float32), search="rotate")
    with pytest.raises(ValueError):
        spec.pce(np.zeros((20, 30), dtype=np.float32), radius=-1)
    with pytest.raises(InvalidImageError):
        ReferenceSpectrum(_random(rng, (5, 5))).pce(_random(rng, (5, 5)), radius=2)


def test_pce_result_is_frozen(rng):
    res = pce(_random(rng, (16, 16)), _random(rng, (16, 16)), radius=2)
    assert isinstance(res, PCEResult)
    assert isinstance(res.pce, float) and isinstance(res.peak, float)
    assert all(type(v) is int for v in res.offset) and type(res.n_positions) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.pce = 0.0


def test_cached_spectrum_reused_and_threads_match_single(rng):
    ref = _random(rng, (64, 80))
    queries = [(ref[i : i + 32, 2 * i : 2 * i + 40] + _random(rng, (32, 40))).astype(np.float32) for i in range(4)]
    spec = ReferenceSpectrum(ref)
    single = [spec.pce(q, search="crop") for q in queries]  # one spectrum, several queries in turn
    assert single == [pce(q, ref, search="crop") for q in queries]  # a fresh spectrum per query
    assert [r.offset for r in single] == [(i, 2 * i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda q: spec.pce(q, search="crop"), queries * 3))
    assert threaded == single * 3


@settings(max_examples=40, deadline=None)
@given(
    big_h=st.integers(12, 40),
    big_w=st.integers(12, 40),
    fy=st.floats(0.1, 1.0),
    fx=st.floats(0.1, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_pce_crop_any_size_matches_naive(big_h, big_w, fy, fx, seed):
    rng = np.random.default_rng(seed)
    h, w = max(1, int(fy * big_h)), max(1, int(fx * big_w))
    ref = _random(rng, (big_h, big_w))
    q = _random(rng, (h, w))
    spec = ReferenceSpectrum(ref)
    c = spec.cross_correlation(q)
    expected_cc = naive_crop_cc(ref, q)
    scale = np.abs(expected_cc).max()
    assert np.allclose(c, expected_cc, rtol=RTOL32, atol=1e-5 * scale)
    res = spec.pce(q, search="crop", radius=3)
    allowed = naive_allowed(ref.shape, q.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected, peak = naive.pce_from_cc(expected_cc, allowed, radius=3)
    assert res.n_positions == int(allowed.sum())
    assert allowed[res.offset]
    # The maximum itself is robust to rounding even where two offsets nearly tie.
    assert res.peak == pytest.approx(expected_cc[peak], rel=1e-4, abs=1e-5 * scale + 1e-12)
    if h * w == 1:  # a one-pixel query minus its mean is zero: C = 0, naive gives 0/0
        assert res.pce == 0.0
    elif res.offset == peak:
        assert res.pce == pytest.approx(expected, rel=1e-3, abs=1e-6)


# --- thresholds ----------------------------------------------------------------------------------
def test_search_threshold_properties():
    assert search_threshold() == 60.0
    assert search_threshold(60.0, 1) == 60.0
    assert search_threshold(25.0, 1) == 25.0
    values = [search_threshold(60.0, n) for n in (1, 2, 10, 1000, 10**6, 12_000_000 * 4)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert all(math.isfinite(v) for v in values)
    assert 60.0 < values[-1] < 60.0 + 2 * math.log(12_000_000 * 4) + 1


@pytest.mark.parametrize("base", [10.0, 60.0, 200.0])
@pytest.mark.parametrize("n", [2, 37, 1e4, 48e6])
def test_search_threshold_keeps_false_alarm_rate(base, n):
    got = search_threshold(base, n)
    assert got == pytest.approx(naive_search_threshold(base, n), rel=1e-9)
    lhs = math.log(n) + math.log(scipy.special.erfc(math.sqrt(got / 2)))
    assert lhs == pytest.approx(math.log(scipy.special.erfc(math.sqrt(base / 2))), rel=1e-9)


def test_search_threshold_no_underflow():
    """erfc(sqrt(1000)) underflows float64; the log-space computation does not."""
    got = search_threshold(2000.0, 48e6)
    assert math.isfinite(got) and 2000.0 < got < 2000.0 + 2 * math.log(48e6)


def test_search_threshold_errors():
    for base, n in [(0.0, 1), (-5.0, 10), (math.inf, 1), (60.0, 0), (60.0, 0.5), (60.0, math.nan)]:
        with pytest.raises(ValueError):
            search_threshold(base, n)


def test_docstring_examples():
    failures, tried = doctest.testmod(scores, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
