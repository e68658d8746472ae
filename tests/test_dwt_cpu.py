"""Tests of ``kernels.dwt_cpu``: the Numba db4 periodized 2-D DWT against PyWavelets in float64.

Tests that take ``kernel_build`` (tests/conftest.py) run on the parallel level kernels (the DWT
lock free) and on the serial ones (lock held); a spy proves which ran, and that the parallel
kernels split the rows into several blocks where the input is tall enough.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import pywt
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BUILDS, forced_build, spy_builds

from kernels import config, dwt_cpu

# float32 kernels vs float64 pywt: error relative to the largest coefficient (observed ~3e-7).
RTOL_F32 = 1e-5


def naive_wavedec2(x, levels):
    """float64 reference: pywt on the float64 input (quiet about the 'level too high' warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pywt.wavedec2(np.asarray(x, np.float64), "db4", mode="periodization", level=levels)


def naive_waverec2(coeffs):
    c64 = [np.asarray(coeffs[0], np.float64)]
    c64 += [tuple(np.asarray(d, np.float64) for d in t) for t in coeffs[1:]]
    return pywt.waverec2(c64, "db4", mode="periodization")


def flatten(coeffs):
    return [coeffs[0]] + [d for t in coeffs[1:] for d in t]


def assert_coeffs_close(got, ref, rtol=RTOL_F32):
    assert len(got) == len(ref)
    assert isinstance(got[0], np.ndarray)
    for t in got[1:]:
        assert isinstance(t, tuple) and len(t) == 3
    g, r = flatten(got), flatten(ref)
    scale = max(np.abs(a).max() for a in r)
    for a, b in zip(g, r):
        assert a.dtype == np.float32
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def random_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 50 + 128).astype(np.float32)


SHAPES_LEVELS = [
    ((16, 16), 4),  # smallest 4-level input: the last level works on 2x2
    ((2, 2), 1),
    ((4, 4), 2),
    ((8, 8), 3),
    ((2, 6), 1),
    ((6, 2), 1),
    ((32, 48), 1),
    ((48, 32), 2),
    ((64, 96), 3),
    ((96, 64), 4),
    ((80, 208), 4),
    ((144, 176), 4),
]


def check_blocks(spy, shape, levels):
    """On the parallel build, inputs of 64 rows or more must have been split into several blocks."""
    if spy.build == "parallel" and levels and shape[0] >= 4 * dwt_cpu._MIN_BLOCK_ROWS:
        assert max(spy.dwt_blocks) > 1


@pytest.mark.parametrize("shape, levels", SHAPES_LEVELS)
def test_wavedec2_matches_pywt(shape, levels, kernel_build):
    x = random_image(shape)
    assert_coeffs_close(dwt_cpu.wavedec2(x, levels), naive_wavedec2(x, levels))
    assert kernel_build.count(kernel_build.build, "dwt_cpu._dwt2_level") == levels
    check_blocks(kernel_build, shape, levels)


@pytest.mark.parametrize("shape, levels", SHAPES_LEVELS)
def test_waverec2_matches_pywt(shape, levels, kernel_build):
    # Arbitrary coefficients (not from a forward transform); zero approximation, as in the pipeline.
    rng = np.random.default_rng(1)
    m, n = shape[0] >> levels, shape[1] >> levels
    coeffs = [np.zeros((m, n), np.float32)]
    for lev in range(levels, 0, -1):
        s = (shape[0] >> lev, shape[1] >> lev)
        coeffs.append(tuple(rng.standard_normal(s).astype(np.float32) for _ in range(3)))
    got = dwt_cpu.waverec2(coeffs)
    ref = naive_waverec2(coeffs)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=RTOL_F32 * np.abs(ref).max())
    assert kernel_build.count(kernel_build.build, "dwt_cpu._idwt2_level") == levels
    check_blocks(kernel_build, shape, levels)


@pytest.mark.parametrize("shape, levels", [((16, 16), 4), ((64, 96), 3), ((272, 144), 4), ((656, 512), 4)])
def test_round_trip(shape, levels, kernel_build):
    x = random_image(shape, seed=2)
    rec = dwt_cpu.waverec2(dwt_cpu.wavedec2(x, levels))
    assert rec.dtype == np.float32 and rec.shape == shape
    np.testing.assert_allclose(rec, x, rtol=0, atol=RTOL_F32 * np.abs(x).max())
    check_blocks(kernel_build, shape, levels)


def test_real_size_matches_pywt_on_the_parallel_kernels():
    """A padded 640x496 channel, unforced: the parallel levels run with as many blocks as allowed."""
    x = random_image((656, 512), seed=4)
    with spy_builds() as spy:
        got = dwt_cpu.wavedec2(x, 4)
        rec = dwt_cpu.waverec2(got)
    assert_coeffs_close(got, naive_wavedec2(x, 4))
    np.testing.assert_allclose(rec, x, rtol=0, atol=RTOL_F32 * np.abs(x).max())
    # each level runs its parallel build only where its input (forward) or output (inverse) has at
    # least config.PARALLEL_MIN_SIZE elements: levels 1-2 here (656x512, 328x256), each way
    big = sum((656 >> k) * (512 >> k) >= config.PARALLEL_MIN_SIZE for k in range(4))
    assert big == 2
    assert spy.count("parallel") == 2 * big and spy.count("serial") == 2 * (4 - big)
    assert max(spy.dwt_blocks) == dwt_cpu._nblocks(328) > 1


def test_impulse_alignment():
    # One impulse per axis fixes the index offset: pywt's a[i] = sum_k lo[k] x[(2i + 4 - k) mod n].
    x = np.zeros((32, 32), np.float32)
    x[5, 11] = 1.0
    assert_coeffs_close(dwt_cpu.wavedec2(x, 1), naive_wavedec2(x, 1), rtol=1e-6)


def test_orientation():
    # Stripes that vary along axis 0 only (horizontal edges) give horizontal detail cH, not cV.
    x = np.tile(np.tile([0.0, 1.0], 8)[:, None], (1, 16)).astype(np.float32)
    ch, cv, cd = dwt_cpu.wavedec2(x, 1)[1]
    assert np.abs(ch).max() > 0.5
    assert np.abs(cv).max() < 1e-5 and np.abs(cd).max() < 1e-5


def test_levels_zero():
    x = random_image((6, 10))
    out = dwt_cpu.wavedec2(x, 0)
    assert len(out) == 1 and np.array_equal(out[0], x) and out[0] is not x
    np.testing.assert_array_equal(dwt_cpu.waverec2(out), x)


def test_non_contiguous_input():
    x = random_image((48, 64))
    xt = np.asfortranarray(x)
    assert_coeffs_close(dwt_cpu.wavedec2(xt, 2), naive_wavedec2(x, 2))


def test_serial_fallback_is_identical():
    # While another caller holds the parallel kernels, the serial twins run; same bits either way.
    x = random_image((96, 160), seed=3)
    par = dwt_cpu.wavedec2(x, 3)
    with dwt_cpu._PARALLEL_LOCK:
        ser = dwt_cpu.wavedec2(x, 3)
        rec_ser = dwt_cpu.waverec2(par)
    for a, b in zip(flatten(par), flatten(ser)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(dwt_cpu.waverec2(par), rec_ser)


def test_concurrent_threads_match_serial():
    images = [random_image((208, 144), seed=s) for s in range(6)]
    serial_fwd = [dwt_cpu.wavedec2(x, 4) for x in images]
    serial_inv = [dwt_cpu.waverec2(c) for c in serial_fwd]

    def work(k):
        c = dwt_cpu.wavedec2(images[k], 4)
        return c, dwt_cpu.waverec2(c)

    with ThreadPoolExecutor(max_workers=3) as ex:
        results = list(ex.map(work, list(range(len(images))) * 3))
    for k, (c, rec) in enumerate(results):
        j = k % len(images)
        for a, b in zip(flatten(c), flatten(serial_fwd[j])):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(rec, serial_inv[j])


@pytest.mark.parametrize("build", BUILDS)
@settings(max_examples=30, deadline=None)
@given(
    levels=st.integers(0, 4),
    km=st.integers(1, 6),
    kn=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_property_shapes(build, levels, km, kn, seed):
    shape = (km * 2**levels, kn * 2**levels)
    x = random_image(shape, seed)
    with forced_build(build) as spy:
        got = dwt_cpu.wavedec2(x, levels)
    assert spy.count(build) == levels and spy.count(BUILDS[1 - BUILDS.index(build)]) == 0
    if levels:
        assert_coeffs_close(got, naive_wavedec2(x, levels))
    for lev, t in zip(range(levels, 0, -1), got[1:]):
        assert all(d.shape == (shape[0] >> lev, shape[1] >> lev) for d in t)
    rec = dwt_cpu.waverec2(got)
    np.testing.assert_allclose(rec, x, rtol=0, atol=RTOL_F32 * np.abs(x).max())


# --- input checks ---------------------------------------------------------------------------------
def test_rejects_float64():
    with pytest.raises(TypeError, match="astype"):
        dwt_cpu.wavedec2(np.zeros((16, 16)), 2)
    with pytest.raises(TypeError, match="astype"):
        dwt_cpu.waverec2([np.zeros((4, 4)), tuple(np.zeros((4, 4), np.float32) for _ in range(3))])


@pytest.mark.parametrize("shape, levels", [((24, 32), 4), ((32, 24), 4), ((3, 4), 1), ((0, 16), 1)])
def test_rejects_sizes_not_multiple(shape, levels):
    with pytest.raises(ValueError, match="multiples"):
        dwt_cpu.wavedec2(np.zeros(shape, np.float32), levels)


def test_rejects_bad_ndim_and_levels():
    with pytest.raises(ValueError, match="2-D"):
        dwt_cpu.wavedec2(np.zeros((16, 16, 3), np.float32), 1)
    with pytest.raises(ValueError, match=">= 0"):
        dwt_cpu.wavedec2(np.zeros((16, 16), np.float32), -1)
    with pytest.raises(TypeError, match="integer"):
        dwt_cpu.wavedec2(np.zeros((16, 16), np.float32), 2.0)


def test_waverec2_rejects_mismatched_shapes():
    z = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="do not match"):
        dwt_cpu.waverec2([z, (z, z, np.zeros((4, 5), np.float32))])
    with pytest.raises(ValueError, match="do not match"):
        dwt_cpu.waverec2([z, (z, z, z), (z, z, z)])  # second level must be 8x8
    with pytest.raises(ValueError, match="triple"):
        dwt_cpu.waverec2([z, (z, z)])
    with pytest.raises(ValueError, match="non-empty"):
        dwt_cpu.waverec2([])
