"""The whole residual (DESIGN.md §3-§4) against the float64 reference twin, and its properties.

Twin tests that take ``kernel_build`` (tests/conftest.py) run with every CPU kernel forced onto
its parallel build, then onto its serial build; one real-size case runs unforced above the limit.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from conftest import BUILDS, dresden_files, forced_build, sized_kernels, spy_builds
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fingerprint.errors import InvalidImageError
from fingerprint.residual import extract_noise, extract_residual, noise_extract, pad_amounts


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("m", [16, 17, 30, 31, 32, 100, 2000, 2592])
@pytest.mark.parametrize("levels", [1, 3, 4])
def test_pad_amounts_match_reference(m, levels):
    assert pad_amounts(m, levels) == naive.pad_amounts(m, levels)


@pytest.mark.parametrize("shape", [(16, 16), (17, 29), (64, 48, 3), (101, 77, 3), (130, 200)])
@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_residual_matches_reference_random(shape, sigma, rng, kernel_build):
    img = rng.integers(0, 256, shape).astype(np.uint8)
    w = extract_residual(img, sigma=sigma)
    ref = naive.residual(img, sigma=sigma)
    assert w.dtype == np.float32 and w.shape == shape[:2]
    assert rel_err(w, ref) < 1e-4
    assert naive.ncc(w, ref) >= 0.999999


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_residual_other_levels(levels, rng, kernel_build):
    img = rng.integers(0, 256, (40, 52, 3)).astype(np.uint8)
    assert naive.ncc(extract_residual(img, levels=levels), naive.residual(img, levels=levels)) >= 0.99999


def test_noise_extract_stages_match_reference(rng, kernel_build):
    x = rng.integers(0, 256, (45, 61)).astype(np.uint8)
    assert rel_err(noise_extract(x, 3.0), naive.noise_extract(x, 3.0)) < 1e-4
    img = rng.integers(0, 65536, (33, 40, 3)).astype(np.uint16)
    planes = extract_noise(img, 3.0)
    assert planes.shape == (3, 33, 40) and planes.dtype == np.float32
    for c in range(3):
        assert rel_err(planes[c], naive.noise_extract(img[..., c] / 257.0, 3.0)) < 1e-4


def test_uint16_is_scaled_by_257(rng, kernel_build):
    img8 = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257
    assert np.allclose(extract_residual(img8), extract_residual(img16), atol=1e-5)


RESIDUAL_KERNELS = {"layout_cpu._pad_symmetric", "layout_cpu._add_crop", "wiener_cpu._energy_sat",
                    "wiener_cpu._apply_wiener", "wiener_cpu._apply_gain", "spectral_cpu._lattice_sums",
                    "spectral_cpu._zero_mean_apply", "spectral_cpu._full_magnitude",
                    "spectral_cpu._apply_symmetric_gain", "dwt_cpu._dwt2_level", "dwt_cpu._idwt2_level"}


def test_residual_at_real_size_runs_the_parallel_builds(rng):
    """A 520x560 RGB image, unforced: the large stages run their parallel builds, the small
    sub-bands their serial ones, and the whole matches the float64 twin."""
    img = rng.integers(0, 256, (520, 560, 3)).astype(np.uint8)  # level-1 sub-bands 264 x 288
    with spy_builds() as spy:
        w = extract_residual(img)
    assert RESIDUAL_KERNELS <= set(sized_kernels()) | {"dwt_cpu._dwt2_level", "dwt_cpu._idwt2_level"}
    assert spy.kernels_run("parallel") == RESIDUAL_KERNELS
    assert "wiener_cpu._apply_wiener" in spy.kernels_run("serial")  # the deepest sub-bands
    ref = naive.residual(img)
    assert rel_err(w, ref) < 1e-4
    assert naive.ncc(w, ref) >= 0.999999


def test_constant_image_gives_exact_zeros():
    for img in (np.full((40, 50, 3), 77, np.uint8), np.zeros((16, 16), np.uint16), np.full((33, 17), 255.0, np.float32)):
        w = extract_residual(img)
        assert np.all(w == 0) and w.shape == img.shape[:2]


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((15, 40), np.uint8), "too small"),
    (np.zeros((40, 40, 4), np.uint8), "shape"),
    (np.zeros((40,), np.uint8), "shape"),
    (np.full((20, 20), np.nan, np.float32), "NaN"),
    (np.zeros((20, 20), np.complex64), "dtype"),
])
def test_bad_arrays_are_refused(bad, msg):
    with pytest.raises(InvalidImageError, match=msg):
        extract_residual(bad)


@pytest.mark.parametrize("kw", [{"sigma": 0}, {"sigma": -1.0}, {"levels": 0}, {"levels": 2.5}])
def test_bad_parameters_are_refused(kw, rng):
    with pytest.raises(ValueError):
        extract_residual(rng.integers(0, 256, (32, 32)).astype(np.uint8), **kw)


@pytest.mark.parametrize("build", BUILDS)
@given(img=hnp.arrays(np.uint8, st.tuples(st.integers(16, 48), st.integers(16, 48), st.sampled_from([1, 3]))))
@settings(max_examples=20, deadline=None)
def test_residual_properties(build, img):
    img = img[..., 0] if img.shape[2] == 1 else img
    with forced_build(build) as spy:
        w = extract_residual(img)
    if not (img == img.flat[0]).all():  # a constant image returns before any kernel runs
        spy.check(build)
    assert w.shape == img.shape[:2] and w.dtype == np.float32
    assert np.isfinite(w).all()
    assert naive.ncc(w, naive.residual(img)) > 0.9999 or np.abs(w).max() < 1e-3


@pytest.mark.shared_data
def test_residual_matches_reference_on_real_photos_crops():
    from PIL import Image

    for path in dresden_files("nat")[::5]:
        img = np.asarray(Image.open(path))[300:812, 401:1001]
        w = extract_residual(img)
        assert naive.ncc(w, naive.residual(img)) >= 0.999


@pytest.mark.shared_data
def test_residual_matches_reference_on_a_full_size_photo():
    from PIL import Image

    img = np.asarray(Image.open(dresden_files("nat")[2]))
    assert img.shape == (2000, 3008, 3)
    w = extract_residual(img)
    ref = naive.residual(img)
    assert naive.ncc(w, ref) >= 0.999
    assert rel_err(w, ref) < 1e-3
