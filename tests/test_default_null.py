"""Tests of fingerprint.default_null: the simulated camera photos of a generator library's null."""

from __future__ import annotations

import numpy as np
import pytest

from fingerprint.default_null import NULL_CONDITIONS, camera_pipeline, default_null_images
from fingerprint.transforms import parse_conditions


def test_images_are_deterministic_and_varied():
    a = list(default_null_images((48, 40), cameras=2, per_camera=4, seed=3))
    b = list(default_null_images((48, 40), cameras=2, per_camera=4, seed=3))
    c = list(default_null_images((48, 40), cameras=2, per_camera=4, seed=4))
    assert len(a) == 8
    assert all(im.shape == (48, 40, 3) and im.dtype == np.uint8 for im, _ in a)
    assert all(np.array_equal(x, y) and dx == dy for (x, dx), (y, dy) in zip(a, b))
    assert not all(np.array_equal(x, y) for (x, _), (y, _) in zip(a, c))
    descriptions = [d for _, d in a]
    assert descriptions[0].endswith("@0:0") and not descriptions[1].endswith("@0:0")  # on / off the JPEG grid
    assert len({im.tobytes() for im, _ in a}) == 8


def test_pipeline_demosaics_and_compresses(rng):
    img = np.clip(rng.normal(128, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
    out = camera_pipeline(img, quality=90)
    assert out.shape == img.shape and out.dtype == np.uint8
    # demosaicing interpolates 2 of 3 colours per pixel: the result is smoother than the input
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < np.abs(np.diff(img.astype(float), axis=1)).mean()
    crop = camera_pipeline(img, quality=90, offset=(3, 5), size=(16, 20))
    assert np.array_equal(crop, out[3:19, 5:25])
    sharp = camera_pipeline(img, quality=90, sharpen=1.0)
    assert not np.array_equal(sharp, out)


def test_pipeline_rejects_bad_input(rng):
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8 image"):
        camera_pipeline(img.astype(np.uint16), quality=90)
    with pytest.raises(ValueError, match="bad pipeline settings"):
        camera_pipeline(img, quality=0)
    with pytest.raises(ValueError, match="does not fit"):
        camera_pipeline(img, quality=90, offset=(10, 0), size=(10, 10))


def test_null_conditions_parse():
    assert [p.spec() for p in parse_conditions(list(NULL_CONDITIONS))] == list(NULL_CONDITIONS)
