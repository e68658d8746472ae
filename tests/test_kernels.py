"""Each CPU kernel against its float64 reference twin in ``tests/naive.py``."""

from __future__ import annotations

import concurrent.futures

import naive
import numpy as np
import pytest
from conftest import tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu

SHAPES = [(16, 16), (17, 23), (64, 64), (101, 77), (9, 200)]


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma2", [1.0, 4.0, 25.0])
def test_local_wiener_matches_reference(shape, sigma2, rng):
    d = (rng.standard_normal(shape) * 3).astype(np.float32)
    assert rel_err(wiener_cpu.local_wiener(d, sigma2), naive.wiener(d, sigma2)) < tolerance(np.float32)


def test_local_wiener_in_place_and_gain(rng):
    d = (rng.standard_normal((50, 60)) * 2).astype(np.float32)
    expected = naive.wiener(d, 4.0)
    gain = wiener_cpu.local_wiener_gain(d, 4.0)
    assert rel_err(d * gain, expected) < tolerance(np.float32)
    assert np.all((gain > 0) & (gain <= 1))
    wiener_cpu.local_wiener(d, 4.0, out=d)
    assert rel_err(d, expected) < tolerance(np.float32)


def test_local_wiener_zero_input_gives_zero():
    d = np.zeros((20, 30), np.float32)
    out = wiener_cpu.local_wiener(d, 4.0)
    assert np.all(out == 0) and np.all(np.isfinite(out))


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_mean_total_matches_reference(shape, rng):
    w = (rng.standard_normal(shape) + np.arange(shape[1]) * 0.1).astype(np.float32)
    out, std = spectral_cpu.zero_mean_total(w)
    ref = naive.zero_mean_total(w)
    assert rel_err(out, ref) < tolerance(np.float32)
    assert std == pytest.approx(np.std(ref, ddof=1), rel=1e-5)
    # every sub-lattice has zero row and column means afterwards
    for r in (0, 1):
        for c in (0, 1):
            sub = out[r::2, c::2].astype(np.float64)
            assert np.abs(sub.mean(axis=0)).max() < 1e-5
            assert np.abs(sub.mean(axis=1)).max() < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
def test_wiener_dft_matches_reference(shape, rng):
    w = rng.standard_normal(shape).astype(np.float32)
    w[:, ::8] += 2.0  # a periodic component for the filter to flatten
    s = float(np.std(w, ddof=1))
    assert rel_err(spectral_cpu.wiener_dft(w, s), naive.wiener_dft(w, s)) < 1e-5


def test_wiener_dft_zero_std_gives_zeros():
    out = spectral_cpu.wiener_dft(np.zeros((32, 48), np.float32), 0.0)
    assert out.shape == (32, 48) and np.all(out == 0)


@given(m=st.integers(1, 40), n=st.integers(1, 40), top=st.integers(0, 12), left=st.integers(0, 12),
       bottom=st.integers(0, 12), right=st.integers(0, 12))
@settings(max_examples=60, deadline=None)
def test_pad_symmetric_matches_numpy(m, n, top, left, bottom, right):
    x = np.arange(m * n, dtype=np.uint16).reshape(m, n)
    out = np.empty((m + top + bottom, n + left + right), np.float32)
    layout_cpu._pad_symmetric(x, top, left, np.float32(0.5), out)
    ref = np.pad(x.astype(np.float64), ((top, bottom), (left, right)), mode="symmetric") * 0.5
    assert np.array_equal(out, ref.astype(np.float32))


def test_pad_symmetric_reads_strided_channels(rng):
    img = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    out = np.empty((32, 48), np.float32)
    layout_cpu._pad_symmetric(img[..., 1], 6, 9, np.float32(1.0), out)
    ref = np.pad(img[..., 1], ((6, 5), (9, 9)), mode="symmetric")
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1.0), (np.uint16, 1 / 257)])
def test_accumulate_ml_matches_reference(dtype, scale, rng):
    hi = 255 if dtype == np.uint8 else 65535
    x = rng.integers(0, hi + 1, (40, 50)).astype(dtype)
    x[3:7, 10:14] = hi  # a saturated patch
    x[20, 20] = hi  # an isolated maximum: not saturated (no equal neighbour)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    s = np.zeros(x.shape, np.float32)
    n = np.zeros(x.shape, np.float32)
    estimate_cpu._accumulate_ml(noise, x, scale, s, n)
    xf = naive.to_float(x)
    t = naive.inten_scale(xf) * naive.saturation(xf)
    assert t[5, 12] == 0 and t[20, 20] > 0
    assert rel_err(s, noise * t) < tolerance(np.float32)
    assert rel_err(n, t * t) < tolerance(np.float32)


def test_kernels_thread_safe(rng):
    """nogil kernels called from several threads give the serial answers."""
    arrays = [(rng.standard_normal((200, 300)) * 3).astype(np.float32) for _ in range(4)]
    serial = [wiener_cpu.local_wiener(a, 4.0) for a in arrays]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(lambda a: wiener_cpu.local_wiener(a, 4.0), arrays))
    for a, b in zip(serial, threaded):
        assert np.array_equal(a, b)
