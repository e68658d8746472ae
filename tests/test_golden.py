"""Golden results: the residual and fingerprints of fixed synthetic images, stored in
``tests/data/golden.npz`` by ``benchmarks/make_golden.py``.

The twin tests compare the fast code with ``tests/naive.py``; a change made to both at once (a
different Wiener window, sigma, padding, weights or estimator) would pass them. These tests
compare with results stored once, so such a change fails until the golden file is regenerated on
purpose. Both kernel builds are checked. Needs no shared data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import naive
import numpy as np
import pytest

GOLDEN_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "make_golden.py"
# float32 results of the same code on another CPU (other SIMD widths under fastmath) or with the
# other kernel build differ by rounding only: ~1e-7 of the largest value. A change of algorithm
# moves them by far more than this tolerance.
RTOL = 2e-5


def _load_script():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_golden = _load_script()


@pytest.fixture(scope="module")
def golden():
    assert make_golden.GOLDEN.is_file(), f"{make_golden.GOLDEN} is missing: run python benchmarks/make_golden.py"
    with np.load(make_golden.GOLDEN) as f:
        return {k: f[k] for k in f.files}


def max_rel_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_golden_file_is_small_and_complete(golden):
    assert make_golden.GOLDEN.stat().st_size <= 100_000
    assert golden["residual"].shape == make_golden.RESIDUAL_SHAPE[:2]
    assert golden["camera"].shape == make_golden.CAMERA_SHAPE[:2]
    assert golden["generator"].shape == (3, *make_golden.GENERATOR_SHAPE[:2])
    for key in ("residual", "camera", "generator"):
        assert golden[key].dtype == np.float32 and np.isfinite(golden[key]).all() and np.abs(golden[key]).max() > 0


def test_synthetic_images_are_the_stored_ones(golden):
    """Integer-only images: the same bits everywhere, or the comparisons below mean nothing."""
    res_img = make_golden.synthetic_image(make_golden.RESIDUAL_SHAPE, 0)
    assert res_img.dtype == np.uint8 and res_img.shape == make_golden.RESIDUAL_SHAPE
    assert (res_img == 255).any() and res_img.std() > 20  # saturated patch, structure and noise
    results = make_golden.compute()
    assert str(results["images_sha256"]) == str(golden["images_sha256"])


def test_results_equal_the_golden_ones(golden, kernel_build):
    results = make_golden.compute()
    for key in ("residual", "camera", "generator"):
        got = results[key]
        assert got.dtype == np.float32 and got.shape == golden[key].shape, key
        assert max_rel_diff(got, golden[key]) < RTOL, key
        assert naive.ncc(got, golden[key]) > 1 - 1e-8, key


def test_golden_results_agree_with_the_float64_twins(golden):
    """The stored file is the spec's answer, not just the code's: the float64 twins agree with it."""
    res_img = make_golden.synthetic_image(make_golden.RESIDUAL_SHAPE, 0)
    assert max_rel_diff(golden["residual"], naive.residual(res_img)) < 1e-4
    cams = [make_golden.synthetic_image(make_golden.CAMERA_SHAPE, s) for s in range(1, 1 + make_golden.N_IMAGES)]
    assert max_rel_diff(golden["camera"], naive.camera_fingerprint(cams)) < 1e-4


@pytest.mark.parametrize("change", ["sigma", "levels", "no_dft_wiener"])
def test_a_changed_residual_is_told_apart(golden, change):
    """The tolerance is tight enough to see a small change of the algorithm (so the test can fail)."""
    from fingerprint.residual import extract_residual

    img = make_golden.synthetic_image(make_golden.RESIDUAL_SHAPE, 0)
    if change == "sigma":
        w = extract_residual(img, sigma=2.05)
    elif change == "levels":
        w = extract_residual(img, levels=3)
    else:
        w = naive.zero_mean_total(naive.rgb2gray(np.stack(
            [naive.noise_extract(img[..., c].astype(np.float64), 2.0) for c in range(3)], axis=-1)))
    assert max_rel_diff(w, golden["residual"]) > 20 * RTOL
