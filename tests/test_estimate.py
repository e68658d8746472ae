"""Fingerprint estimators (DESIGN.md §5-§6) against float64 twins, streaming and merging.

Twin tests that take ``kernel_build`` (tests/conftest.py) run with every CPU kernel forced onto
its parallel build, then onto its serial build; one real-size case runs unforced above the limit.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from conftest import spy_builds
from scipy import ndimage

from fingerprint.build import build_fingerprint, default_params
from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.estimate import (
    CameraAccumulator,
    FingerprintParams,
    GeneratorAccumulator,
    generator_residual,
    self_whiten,
    whitening_window,
)


# --- float64 twins of the generator estimator (reference for the tests below) -------------------
def naive_self_whiten(planes):
    w = (min(planes.shape[1:]) // 8) | 1
    out = []
    for p in np.asarray(planes, np.float64):
        f = np.fft.fft2(p)
        power = ndimage.uniform_filter(np.abs(f) ** 2, size=w, mode="wrap")
        out.append(np.real(np.fft.ifft2(f / np.sqrt(power + 1e-12 * power.mean() + 1e-30))))
    return np.array(out)


def naive_shrunk_mean(residuals):
    r = np.asarray(residuals, np.float64)  # (N, C, H, W)
    n = len(r)
    y = np.fft.rfft2(r, axes=(-2, -1))
    y[:, :, 0, 0] = 0
    m = y.mean(axis=0)
    m2 = np.abs(m) ** 2
    var = np.maximum((np.abs(y) ** 2).sum(axis=0) - n * m2, 0) / (n - 1)
    gain = np.where(m2 > 0, np.maximum(0, 1 - var / (n * np.where(m2 > 0, m2, 1))), 0)
    return np.fft.irfft2(m * gain, s=r.shape[-2:], axes=(-2, -1))


def rel_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_camera_fingerprint_matches_reference(rng, kernel_build):
    imgs = [rng.integers(0, 256, (70, 90, 3)).astype(np.uint8) for _ in range(3)]
    imgs[0][5:9, 5:9] = 255  # saturated patch
    k = build_fingerprint(imgs, "camera")
    assert k.dtype == np.float32 and k.shape == (70, 90)
    assert rel_err(k, naive.camera_fingerprint(imgs)) < 1e-4


def test_camera_fingerprint_gray_uint16_matches_reference(rng, kernel_build):
    imgs = [rng.integers(0, 65536, (40, 50)).astype(np.uint16) for _ in range(2)]
    assert rel_err(build_fingerprint(imgs, "camera"), naive.camera_fingerprint(imgs)) < 1e-4


def test_camera_fingerprint_at_real_size_runs_the_parallel_builds(rng):
    """Unforced, 300x260 RGB images (78,000 pixels, above the limit): the estimator's own kernels
    run their parallel builds and the fingerprint matches the float64 twin."""
    imgs = [rng.integers(0, 256, (300, 260, 3)).astype(np.uint8) for _ in range(2)]
    imgs[1][40:50, 60:70] = 255  # a saturated patch
    with spy_builds() as spy:
        k = build_fingerprint(imgs, "camera")
    assert {"estimate_cpu._accumulate_ml", "estimate_cpu._ml_ratio"} <= spy.kernels_run("parallel")
    assert not {"estimate_cpu._accumulate_ml", "estimate_cpu._ml_ratio"} & spy.kernels_run("serial")
    assert rel_err(k, naive.camera_fingerprint(imgs)) < 1e-4


def test_self_whiten_matches_reference(rng):
    planes = rng.standard_normal((3, 64, 80)).astype(np.float32)
    planes[0] += np.sin(np.arange(80) / 3.0)  # a coloured component
    assert whitening_window((64, 80)) == 9
    assert rel_err(self_whiten(planes), naive_self_whiten(planes)) < 1e-4


def test_generator_fingerprint_shrinkage_matches_reference(rng, kernel_build):
    params = default_params("generator")
    imgs = [rng.integers(0, 256, (48, 64, 3)).astype(np.uint8) for _ in range(4)]
    acc = GeneratorAccumulator(params)
    residuals = [acc.add(im) for im in imgs]
    assert rel_err(acc.fingerprint(), naive_shrunk_mean(residuals)) < 1e-4
    assert acc.sums["power"].shape == (3, 48, 33)


def test_generator_fingerprint_plain_mean(rng, kernel_build):
    params = FingerprintParams(kind="generator", sigma=3.0, zero_mean=False)
    imgs = [rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(3)]
    fp = build_fingerprint(imgs, "generator", sigma=3.0, zero_mean=False, whiten=False, shrink=False)
    assert fp.shape == (3, 32, 32)
    per_channel = np.mean([[naive.noise_extract(im[..., c], 3.0) for c in range(3)] for im in imgs], axis=0)
    assert rel_err(fp, per_channel) < 1e-4
    assert generator_residual(imgs[0], params).shape == (3, 32, 32)


@pytest.mark.parametrize("kind", ["camera", "generator"])
def test_merge_of_partial_sums_equals_one_pass(kind, rng):
    params = default_params(kind)
    imgs = [rng.integers(0, 256, (40, 48, 3)).astype(np.uint8) for _ in range(5)]
    whole = CameraAccumulator(params) if kind == "camera" else GeneratorAccumulator(params)
    a = CameraAccumulator(params) if kind == "camera" else GeneratorAccumulator(params)
    b = CameraAccumulator(params) if kind == "camera" else GeneratorAccumulator(params)
    for i, im in enumerate(imgs):
        whole.add(im)
        (a if i < 2 else b).add(im)
    merged = a.merge(b)
    assert merged.n_images == 5
    assert rel_err(merged.fingerprint(), whole.fingerprint().astype(np.float64)) < 1e-5


def test_more_images_strengthen_the_camera_fingerprint():
    from fingerprint.synthetic import make_camera

    cam = make_camera("c", 5, shape=(96, 96), prnu_std=0.01)
    flats = list(cam.images(12, seed=1, flat=True))
    k2 = build_fingerprint(flats[:2], "camera")
    k12 = build_fingerprint(flats, "camera")
    assert naive.ncc(k12, cam.K) > naive.ncc(k2, cam.K) > 0.1


def test_mismatched_sizes_are_refused_or_cropped(rng):
    a = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (44, 48, 3)).astype(np.uint8)
    with pytest.raises(ShapeMismatchError, match="--crop"):
        build_fingerprint([a, b], "camera")
    assert build_fingerprint([a, b], "camera", crop=(32, 32)).shape == (32, 32)


def test_empty_accumulator_and_channel_mismatch(rng):
    with pytest.raises(ValueError):
        CameraAccumulator(default_params("camera")).fingerprint()
    acc = CameraAccumulator(default_params("camera"))
    acc.add(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))
    with pytest.raises(InvalidImageError, match="channel"):
        acc.add(rng.integers(0, 256, (32, 32)).astype(np.uint8))


@pytest.mark.parametrize("sigma", [1e300, 1e-30, 0.0, -1.0, float("nan"), float("inf")])
def test_fingerprint_params_refuse_sigma_that_breaks_the_fingerprint(sigma):
    """sigma 1e300 used to give an all-NaN fingerprint and 1e-30 an all-zero one (issue 13)."""
    from fingerprint.estimate import FingerprintParams

    for kind in ("camera", "generator"):
        with pytest.raises(ValueError, match="sigma"):
            FingerprintParams(kind=kind, sigma=sigma)


def test_fingerprint_params_accept_the_published_sigmas():
    from fingerprint.estimate import FingerprintParams

    assert FingerprintParams(kind="camera", sigma=3.0).sigma == 3.0
    assert FingerprintParams(kind="generator").sigma == 5.0
