"""kernels.resample_cpu against its reference twin, Pillow's antialiased bilinear ``Image.resize``.

The scale search resamples the camera fingerprint with ``fingerprint.resample.resample_fingerprint``,
whose default filter is the Numba kernel. Pillow (``Image.fromarray(a, "F").resize(..., BILINEAR,
box=...)``) is the plain definition: same triangle weights, same two passes. The kernel may differ
from it by the fused multiply-adds that fastmath allows, so outputs are compared to a few float32
roundings of the input's range. Both builds of both passes are run (the serial one on small
inputs, the parallel one forced by ``config.PARALLEL_MIN_SIZE = 0`` and on a 6 MP-sized input).
"""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from conftest import dresden_files
from fingerprint import resample as resample_mod
from kernels import config as kernel_config
from kernels import resample_cpu
from kernels.resample_cpu import resample_bilinear, triangle_coeffs

TOL = 4e-7  # relative to max |a|: a few float32 roundings (2**-24 = 6e-8 each)


def pillow(a: np.ndarray, shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The reference twin: Pillow's resize of a 32-bit float image over a source box."""
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR, box=box), dtype=np.float32)


def assert_close(got: np.ndarray, want: np.ndarray, a: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    err = float(np.max(np.abs(got.astype(np.float64) - want))) / float(np.max(np.abs(a)))
    assert err <= TOL, f"largest difference {err:.2e} of max|a| (tolerance {TOL:.0e})"


@contextlib.contextmanager
def builds(build: str):
    """Force ``build`` ("parallel" or "serial") of both passes and count the calls of each build."""
    calls: Counter = Counter()
    saved_min = kernel_config.PARALLEL_MIN_SIZE
    saved = []
    for kernel in (resample_cpu._horizontal, resample_cpu._vertical):
        for b in ("parallel", "serial"):
            fn = getattr(kernel, b)
            saved.append((kernel, b, fn))

            def counted(*args, _fn=fn, _key=(kernel.__name__, b)):
                calls[_key] += 1
                return _fn(*args)
            setattr(kernel, b, counted)
    kernel_config.PARALLEL_MIN_SIZE = 0 if build == "parallel" else 1 << 62
    try:
        yield calls
    finally:
        kernel_config.PARALLEL_MIN_SIZE = saved_min
        for kernel, b, fn in saved:
            setattr(kernel, b, fn)


# (input shape, output shape, box): whole-image reductions, windows at fractional origins,
# one axis only, enlargement of a window (a filter scale below 1), a box narrower than one pixel.
CASES = [
    ((37, 53), (20, 31), (0.0, 0.0, 53.0, 37.0)),
    ((64, 80), (19, 24), (0.0, 0.0, 80.0, 64.0)),               # x0.3
    ((120, 90), (50, 40), (3.25, 7.5, 3.25 + 40 / 0.61, 7.5 + 50 / 0.61)),
    ((100, 130), (100, 77), (0.0, 0.0, 130.0, 100.0)),          # horizontal only
    ((100, 130), (61, 130), (0.0, 0.0, 130.0, 100.0)),          # vertical only
    ((50, 60), (40, 45), (10.5, 5.25, 40.5, 35.25)),            # enlarged window
    ((30, 30), (7, 9), (12.3, 4.1, 12.8, 4.9)),                 # sub-pixel box
    ((257, 301), (230, 271), (0.0, 0.0, 301.0, 257.0)),         # x0.9, odd sizes
]


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("in_shape,out_shape,box", CASES)
def test_matches_pillow_random(in_shape, out_shape, box, build, rng):
    a = (rng.standard_normal(in_shape) * 3.0).astype(np.float32)
    with builds(build) as calls:
        got = resample_bilinear(a, out_shape, box)
    assert_close(got, pillow(a, out_shape, box), a)
    other = "serial" if build == "parallel" else "parallel"
    assert sum(n for (_, b), n in calls.items() if b == build) >= 1
    assert sum(n for (_, b), n in calls.items() if b == other) == 0


def test_large_input_runs_parallel_by_size(rng):
    """A fingerprint-sized input (6 MP) resampled at an arbitrary factor, no build forced."""
    a = rng.standard_normal((2000, 3008)).astype(np.float32)
    s = 0.537
    out_shape = (int(2000 * s), int(3008 * s))
    box = (0.0, 0.0, out_shape[1] / s, out_shape[0] / s)
    with builds("parallel") as calls:
        kernel_config.PARALLEL_MIN_SIZE = 1 << 16  # the shipped limit: a 6 MP input is above it
        got = resample_bilinear(a, out_shape, box)
    assert calls[("_horizontal", "parallel")] == 1 and calls[("_vertical", "parallel")] == 1
    assert_close(got, pillow(a, out_shape, box), a)


@pytest.mark.shared_data
def test_matches_pillow_on_a_real_photo():
    """The gray levels of a Dresden photo (real image structure, values 0-255), windowed at x0.71."""
    files = dresden_files("nat")
    if not files:
        pytest.skip("no Dresden photos")
    with Image.open(files[0]) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32)[:900, :1300]
    s = 0.71
    out_shape = (300, 400)
    box = (55.5 / s, 20.25 / s, (55.5 + 400) / s, (20.25 + 300) / s)
    for build in ("serial", "parallel"):
        with builds(build):
            assert_close(resample_bilinear(a, out_shape, box), pillow(a, out_shape, box), a)


def test_identity_and_crop_are_exact(rng):
    a = rng.standard_normal((40, 50)).astype(np.float32)
    np.testing.assert_array_equal(resample_bilinear(a, (40, 50), (0, 0, 50, 40)), a)
    np.testing.assert_array_equal(resample_bilinear(a, (10, 20), (5, 3, 25, 13)), a[3:13, 5:25])
    np.testing.assert_array_equal(resample_bilinear(a, (10, 20), (5, 3, 25, 13)), pillow(a, (10, 20), (5, 3, 25, 13)))


def test_triangle_weights_sum_to_one_and_cover_the_box():
    first, count, w = triangle_coeffs(1000, 0.0, 1000.0, 537)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert first[0] == 0 and first[-1] + count[-1] == 1000
    assert np.all(np.diff(first) >= 0) and np.all(count >= 1)
    # taps past a tap count carry no weight
    k = np.arange(w.shape[1])
    assert np.all(w[k[None, :] >= count[:, None]] == 0)


def test_resample_fingerprint_default_is_the_kernel(rng):
    """The public resampler's default filter gives Pillow's bilinear result; other filters are Pillow's."""
    k = rng.standard_normal((200, 240)).astype(np.float32)
    s = 0.63
    got = resample_mod.resample_fingerprint(k, s, (60, 70), origin=(10, 12))
    box = (12 / s, 10 / s, (12 + 70) / s, (10 + 60) / s)
    assert_close(got, pillow(k, (60, 70), box), k)
    bic = resample_mod.resample_fingerprint(k, s, (60, 70), origin=(10, 12), filter="bicubic")
    want = np.asarray(Image.fromarray(k, "F").resize((70, 60), Image.Resampling.BICUBIC, box=box))
    np.testing.assert_array_equal(bic, want)


@pytest.mark.parametrize("args", [
    (np.zeros((4, 4), np.float64), (2, 2), (0, 0, 4, 4)),
    (np.zeros((4, 4, 1), np.float32), (2, 2), (0, 0, 4, 4)),
    (np.zeros((4, 4), np.float32), (0, 2), (0, 0, 4, 4)),
    (np.zeros((4, 4), np.float32), (2, 2), (-1, 0, 4, 4)),
    (np.zeros((4, 4), np.float32), (2, 2), (3, 0, 2, 4)),
])
def test_bad_arguments_are_refused(args):
    with pytest.raises(ValueError):
        resample_bilinear(*args)
