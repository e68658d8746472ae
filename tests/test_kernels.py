"""Each CPU kernel against its float64 reference twin in ``tests/naive.py``, on both of its builds.

Tests that take the ``kernel_build`` fixture (tests/conftest.py) run twice: every kernel forced
onto its ``parallel`` build (``config.PARALLEL_MIN_SIZE = 0``), then onto its ``serial`` build; a
spy on the dispatch fails the test unless the forced build really ran. The real-size tests run
without forcing, above the 65,536-element limit.
"""

from __future__ import annotations

import concurrent.futures

import naive
import numba
import numpy as np
import pytest
from conftest import BUILDS, forced_build, sized_kernels, spy_builds, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import config, estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu

SHAPES = [(16, 16), (17, 23), (64, 64), (101, 77), (9, 200)]
BIG = (300, 260)  # 78,000 elements: above config.PARALLEL_MIN_SIZE, the parallel builds run unforced
BIG_DFT = (400, 330)  # its half spectrum (400 x 166) is above the limit too


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


def test_big_shape_is_above_the_parallel_limit():
    assert BIG[0] * BIG[1] >= config.PARALLEL_MIN_SIZE > max(m * n for m, n in SHAPES)
    assert BIG_DFT[0] * (BIG_DFT[1] // 2 + 1) >= config.PARALLEL_MIN_SIZE


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma2", [1.0, 4.0, 25.0])
def test_local_wiener_matches_reference(shape, sigma2, rng, kernel_build):
    d = (rng.standard_normal(shape) * 3).astype(np.float32)
    assert rel_err(wiener_cpu.local_wiener(d, sigma2), naive.wiener(d, sigma2)) < tolerance(np.float32)
    assert kernel_build.count(kernel_build.build, "wiener_cpu._energy_sat") == 1
    assert kernel_build.count(kernel_build.build, "wiener_cpu._apply_wiener") == 1


def test_local_wiener_in_place_and_gain(rng, kernel_build):
    d = (rng.standard_normal((50, 60)) * 2).astype(np.float32)
    expected = naive.wiener(d, 4.0)
    gain = wiener_cpu.local_wiener_gain(d, 4.0)
    assert rel_err(d * gain, expected) < tolerance(np.float32)
    assert np.all((gain > 0) & (gain <= 1))
    wiener_cpu.local_wiener(d, 4.0, out=d)
    assert rel_err(d, expected) < tolerance(np.float32)
    assert kernel_build.count(kernel_build.build, "wiener_cpu._apply_gain") == 1


def test_local_wiener_zero_input_gives_zero(kernel_build):
    d = np.zeros((20, 30), np.float32)
    out = wiener_cpu.local_wiener(d, 4.0)
    assert np.all(out == 0) and np.all(np.isfinite(out))


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_mean_total_matches_reference(shape, rng, kernel_build):
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
    for k in ("spectral_cpu._lattice_sums", "spectral_cpu._zero_mean_apply"):
        assert kernel_build.count(kernel_build.build, k) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_wiener_dft_matches_reference(shape, rng, kernel_build):
    w = rng.standard_normal(shape).astype(np.float32)
    w[:, ::8] += 2.0  # a periodic component for the filter to flatten
    s = float(np.std(w, ddof=1))
    assert rel_err(spectral_cpu.wiener_dft(w, s), naive.wiener_dft(w, s)) < 1e-5
    for k in ("spectral_cpu._full_magnitude", "spectral_cpu._apply_symmetric_gain", "wiener_cpu._apply_gain"):
        assert kernel_build.count(kernel_build.build, k) == 1


def test_wiener_dft_zero_std_gives_zeros():
    out = spectral_cpu.wiener_dft(np.zeros((32, 48), np.float32), 0.0)
    assert out.shape == (32, 48) and np.all(out == 0)


@pytest.mark.parametrize("build", BUILDS)
@given(m=st.integers(1, 40), n=st.integers(1, 40), top=st.integers(0, 12), left=st.integers(0, 12),
       bottom=st.integers(0, 12), right=st.integers(0, 12))
@settings(max_examples=40, deadline=None)
def test_pad_symmetric_matches_numpy(build, m, n, top, left, bottom, right):
    x = np.arange(m * n, dtype=np.uint16).reshape(m, n)
    out = np.empty((m + top + bottom, n + left + right), np.float32)
    with forced_build(build) as spy:
        layout_cpu._pad_symmetric(x, top, left, np.float32(0.5), out)
    spy.check(build)
    ref = np.pad(x.astype(np.float64), ((top, bottom), (left, right)), mode="symmetric") * 0.5
    assert np.array_equal(out, ref.astype(np.float32))


def test_pad_symmetric_reads_strided_channels(rng, kernel_build):
    img = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    out = np.empty((32, 48), np.float32)
    layout_cpu._pad_symmetric(img[..., 1], 6, 9, np.float32(1.0), out)
    ref = np.pad(img[..., 1], ((6, 5), (9, 9)), mode="symmetric")
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("first", [True, False])
def test_add_crop_matches_numpy(first, rng, kernel_build):
    rec = rng.standard_normal((40, 52)).astype(np.float32)
    out = rng.standard_normal((29, 37)).astype(np.float32)
    before = out.astype(np.float64)
    layout_cpu._add_crop(rec, 5, 8, np.float32(0.3), out, first)
    crop = 0.3 * rec[5:34, 8:45].astype(np.float64)
    assert rel_err(out, crop if first else before + crop) < tolerance(np.float32)


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1.0), (np.uint16, 1 / 257)])
def test_accumulate_ml_matches_reference(dtype, scale, rng, kernel_build):
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


def test_accumulate_and_ml_ratio_match_numpy(rng, kernel_build):
    values = rng.standard_normal((33, 47)).astype(np.float32)
    total = rng.standard_normal((33, 47)).astype(np.float32)
    expected = total.astype(np.float64) + values
    estimate_cpu._accumulate(values, total)
    assert rel_err(total, expected) < tolerance(np.float32)
    n_sum = rng.uniform(0, 5, (33, 47)).astype(np.float32)
    out = np.empty_like(values)
    estimate_cpu._ml_ratio(values, n_sum, out)
    assert rel_err(out, values / (n_sum.astype(np.float64) + 1)) < tolerance(np.float32)


def test_kernels_at_real_size_run_their_parallel_builds(rng):
    """Unforced, above the size limit: every SizedKernel dispatches to its parallel build and
    still matches its twin. A kernel added without a case here fails the last assertion."""
    d = (rng.standard_normal(BIG) * 3).astype(np.float32)
    w = (rng.standard_normal(BIG_DFT) + np.arange(BIG_DFT[1]) * 0.01).astype(np.float32)
    w[:, ::8] += 2.0
    x = rng.integers(0, 256, BIG).astype(np.uint8)
    x[3:7, 10:14] = 255
    img = rng.integers(0, 256, (310, 270, 3), dtype=np.uint8)
    with spy_builds() as spy:
        assert rel_err(wiener_cpu.local_wiener(d, 4.0), naive.wiener(d, 4.0)) < tolerance(np.float32)
        assert rel_err(d * wiener_cpu.local_wiener_gain(d, 4.0), naive.wiener(d, 4.0)) < tolerance(np.float32)
        zm, _ = spectral_cpu.zero_mean_total(w)
        assert rel_err(zm, naive.zero_mean_total(w)) < tolerance(np.float32)
        s = float(np.std(w, ddof=1))
        assert rel_err(spectral_cpu.wiener_dft(w, s), naive.wiener_dft(w, s)) < 1e-5
        padded = np.empty((320, 288), np.float32)
        layout_cpu._pad_symmetric(img[..., 2], 5, 9, np.float32(1.0), padded)
        assert np.array_equal(padded, np.pad(img[..., 2], ((5, 5), (9, 9)), mode="symmetric"))
        crop = np.empty((300, 256), np.float32)
        layout_cpu._add_crop(padded, 5, 9, np.float32(0.5), crop, True)
        assert np.array_equal(crop, padded[5:305, 9:265] * np.float32(0.5))
        noise = rng.standard_normal(BIG).astype(np.float32)
        s_sum, n_sum = np.zeros(BIG, np.float32), np.zeros(BIG, np.float32)
        estimate_cpu._accumulate_ml(noise, x, 1.0, s_sum, n_sum)
        t = naive.inten_scale(naive.to_float(x)) * naive.saturation(naive.to_float(x))
        assert rel_err(s_sum, noise * t) < tolerance(np.float32) and rel_err(n_sum, t * t) < tolerance(np.float32)
        total = noise.copy()
        estimate_cpu._accumulate(d, total)
        assert rel_err(total, noise.astype(np.float64) + d) < tolerance(np.float32)
        k = np.empty_like(d)
        estimate_cpu._ml_ratio(s_sum, n_sum, k)
        assert rel_err(k, s_sum / (n_sum.astype(np.float64) + 1)) < tolerance(np.float32)
    assert spy.count("serial") == 0, sorted(spy.kernels_run("serial"))
    assert spy.kernels_run("parallel") == set(sized_kernels())


def test_kernels_thread_safe(rng):
    """nogil kernels called from several threads at once, on their parallel builds (inputs above
    the size limit), give the answers of one call at a time."""
    arrays = [(rng.standard_normal(BIG_DFT) * 3).astype(np.float32) for _ in range(4)]

    def work(a):
        filtered = wiener_cpu.local_wiener(a, 4.0)
        zm, s = spectral_cpu.zero_mean_total(filtered)
        return filtered, zm, spectral_cpu.wiener_dft(zm, s, workers=1)

    one_at_a_time = [work(a) for a in arrays]
    for a, (filtered, _, _) in zip(arrays, one_at_a_time):
        assert rel_err(filtered, naive.wiener(a, 4.0)) < tolerance(np.float32)
    if numba.threading_layer() == "workqueue":
        pytest.fail("Numba runs the 'workqueue' threading layer, which aborts the process when two threads launch "
                    "parallel kernels at once: SizedKernels are not thread-safe here (install tbb or libgomp)")
    with spy_builds() as spy, concurrent.futures.ThreadPoolExecutor(4) as ex:
        threaded = list(ex.map(work, arrays * 3))
    assert spy.count("serial") == 0
    assert spy.count("parallel", "wiener_cpu._apply_wiener") == 12
    for k, results in enumerate(threaded):
        for a, b in zip(one_at_a_time[k % 4], results):
            assert np.array_equal(a, b)
