"""Tests of fingerprint.transforms: the spec grammar, its errors, and each step's effect."""

from __future__ import annotations

import numpy as np
import pytest

from fingerprint.io import crop_center
from fingerprint.transforms import (
    Crop,
    Jpeg,
    Pipeline,
    Resize,
    Rotate,
    apply_pipeline,
    image_rng,
    parse_conditions,
    parse_pipeline,
)


@pytest.fixture
def rgb(rng):
    """A textured 64 x 80 RGB uint8 image (smooth gradient plus noise)."""
    y, x = np.mgrid[0:64, 0:80]
    base = 60 + 1.5 * x + 0.8 * y
    img = base[..., None] + rng.normal(0, 8, (64, 80, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- grammar
@pytest.mark.parametrize("text, steps", [
    ("jpeg:75", (Jpeg(75),)),
    ("JPEG:90:444", (Jpeg(90, "444"),)),
    ("resize:0.5", (Resize(factor=0.5),)),
    ("resize:0.75:lanczos", (Resize(factor=0.75, filter="lanczos"),)),
    ("resize:100x120:nearest", (Resize(size=(100, 120), filter="nearest"),)),
    ("crop:160", (Crop((160, 160), "random"),)),
    ("crop:160x128@center", (Crop((160, 128), "center"),)),
    ("crop:64@12:34", (Crop((64, 64), (12, 34)),)),
    ("rotate:270", (Rotate(270),)),
    (" resize:0.5 + jpeg:75 + crop:128@random ", (Resize(factor=0.5), Jpeg(75), Crop((128, 128)))),
    ("none", ()),
])
def test_parse_pipeline(text, steps):
    pipe = parse_pipeline(text)
    assert pipe.steps == steps
    assert parse_pipeline(pipe.spec()) == pipe  # the canonical text parses back to the same pipeline


def test_parse_conditions_splits_on_commas():
    conds = parse_conditions("none,jpeg:75,resize:0.5+crop:128@center")
    assert [c.spec() for c in conds] == ["none", "jpeg:75", "resize:0.5+crop:128@center"]
    assert parse_conditions(["jpeg:90", "crop:64,rotate:90"]) == [
        Pipeline((Jpeg(90),)), Pipeline((Crop((64, 64)),)), Pipeline((Rotate(90),))]


@pytest.mark.parametrize("text, message", [
    ("blur:3", "unknown transform 'blur'; valid: crop, jpeg, resize, rotate"),
    ("jpeg", "jpeg needs an argument"),
    ("jpeg:0", "Q an integer in 1..100"),
    ("jpeg:101", "Q an integer in 1..100"),
    ("jpeg:7.5", "Q an integer in 1..100"),
    ("jpeg:75:411", "chroma subsampling must be one of 420, 422, 444"),
    ("resize:0", "scale factor must be in [0.05, 8]"),
    ("resize:big", "scale must be a factor"),
    ("resize:0.5:cubic", "filter must be one of"),
    ("resize:0x10", "at least 1 pixel"),
    ("crop:abc", "size must be N or HxW"),
    ("crop:64@", "nothing after '@'"),
    ("crop:64@left", "offset must be center, random or TOP:LEFT"),
    ("crop:64@-1:2", "offset must be center, random or TOP:LEFT"),
    ("rotate:45", "rotate:90, rotate:180 or rotate:270"),
    ("jpeg:75++crop:64", "empty transform step"),
    ("jpeg:75,crop:64", "',' separates conditions"),
])
def test_bad_specs_give_one_line_errors(text, message):
    with pytest.raises(ValueError) as err:
        parse_pipeline(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_condition_lists():
    with pytest.raises(ValueError, match="empty transform condition"):
        parse_conditions("jpeg:75,,crop:64")
    with pytest.raises(ValueError, match="must be text"):
        parse_pipeline(75)


# ---------------------------------------------------------------------------------------- applying
def test_jpeg_changes_pixels_and_reports_tables(rgb):
    q90 = apply_pipeline(rgb, "jpeg:90")
    q50 = apply_pipeline(rgb, "jpeg:50")
    for t in (q90, q50):
        assert t.image.shape == rgb.shape and t.image.dtype == np.uint8
        assert set(t.quantization) == {0, 1} and all(len(v) == 64 for v in t.quantization.values())
    assert sum(q50.quantization[0]) > sum(q90.quantization[0])  # coarser steps at lower quality
    err90 = np.abs(q90.image.astype(int) - rgb).mean()
    err50 = np.abs(q50.image.astype(int) - rgb).mean()
    assert 0 < err90 < err50
    assert q90.jpeg_quality == 90 and q90.applied == ["jpeg:90"]


def test_quantization_only_when_the_last_step_is_jpeg(rgb):
    assert apply_pipeline(rgb, "jpeg:75+crop:32@center").quantization is None
    assert apply_pipeline(rgb, "crop:32@center+jpeg:75").quantization is not None
    assert apply_pipeline(rgb, "jpeg:75+crop:32@center").jpeg_quality == 75


def test_jpeg_of_uint16_and_gray_gives_uint8():
    g16 = (np.arange(48 * 40, dtype=np.uint32).reshape(48, 40) * 30).astype(np.uint16)
    t = apply_pipeline(g16, "jpeg:95")
    assert t.image.dtype == np.uint8 and t.image.shape == (48, 40)
    assert set(t.quantization) == {0}  # one table for a gray JPEG
    assert np.abs(t.image.astype(float) - g16 / 257.0).mean() < 2.0


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.3])
def test_resize_by_factor(rgb, factor):
    t = apply_pipeline(rgb, f"resize:{factor}")
    assert t.image.shape == (round(64 * factor), round(80 * factor), 3)
    assert t.scale == pytest.approx((t.image.shape[0] / 64, t.image.shape[1] / 80))
    assert abs(float(t.image.mean()) - float(rgb.mean())) < 2.0  # resampling keeps the brightness


def test_resize_to_size_and_constant_stays_constant():
    flat = np.full((50, 70, 3), 123, np.uint8)
    for f in ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"):
        t = apply_pipeline(flat, f"resize:33x41:{f}")
        assert t.image.shape == (33, 41, 3)
        assert np.all(t.image == 123)


def test_resize_uint16_agrees_with_uint8(rgb):
    wide = rgb.astype(np.uint16) * 257
    t8 = apply_pipeline(rgb, "resize:0.5:bilinear").image.astype(float)
    t16 = apply_pipeline(wide, "resize:0.5:bilinear").image
    assert t16.dtype == np.uint16
    assert np.abs(t16 / 257.0 - t8).max() <= 1.0


def test_crop_center_matches_io_crop_center(rgb):
    t = apply_pipeline(rgb, "crop:31x17@center")
    assert np.array_equal(t.image, crop_center(rgb, (31, 17)))


def test_crop_at_an_offset(rgb):
    t = apply_pipeline(rgb, "crop:20x30@5:7")
    assert np.array_equal(t.image, rgb[5:25, 7:37])
    assert t.applied == ["crop:20x30@5:7"]


def test_random_crop_is_reproducible_per_image(rgb):
    a = apply_pipeline(rgb, "crop:32", image_rng(7, 0))
    b = apply_pipeline(rgb, "crop:32", image_rng(7, 0))
    assert a.applied == b.applied and np.array_equal(a.image, b.image)
    offsets = {tuple(apply_pipeline(rgb, "crop:32", image_rng(7, i)).applied) for i in range(20)}
    assert len(offsets) > 5  # different images get different offsets
    for (spec,) in offsets:
        top, left = map(int, spec.split("@")[1].split(":"))
        assert 0 <= top <= 64 - 32 and 0 <= left <= 80 - 32


def test_crop_errors(rgb):
    with pytest.raises(ValueError, match="does not fit a 64x80 image"):
        apply_pipeline(rgb, "crop:65@center")
    with pytest.raises(ValueError, match="at 40:0 does not fit"):
        apply_pipeline(rgb, "crop:32@40:0")
    with pytest.raises(ValueError, match="needs a seeded rng"):
        apply_pipeline(rgb, "crop:32")


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotate_is_rot90(rgb, angle):
    assert np.array_equal(apply_pipeline(rgb, f"rotate:{angle}").image, np.rot90(rgb, angle // 90))


def test_chain_order_and_identity(rgb):
    t = apply_pipeline(rgb, "rotate:90+rotate:90+rotate:180")
    assert np.array_equal(t.image, rgb)
    assert t.image is not rgb and not np.shares_memory(t.image, rgb)
    a = apply_pipeline(rgb, "crop:32@0:0+resize:0.5").image
    b = apply_pipeline(rgb, "resize:0.5+crop:32@0:0").image
    assert a.shape == (16, 16, 3) and b.shape == (32, 32, 3)
    none = apply_pipeline(rgb, "none")
    assert np.array_equal(none.image, rgb) and none.applied == [] and none.quantization is None


def test_gray_and_single_channel_images():
    g = np.tile(np.arange(60, dtype=np.uint8)[None] * 4, (40, 1))
    assert apply_pipeline(g[..., None], "rotate:90").image.shape == (60, 40)
    assert apply_pipeline(g, "resize:0.5+jpeg:80").image.shape == (20, 30)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.float32), np.zeros((8, 8, 4), np.uint8), np.zeros(8, np.uint8)])
def test_bad_images(bad):
    with pytest.raises(ValueError, match="transforms need"):
        apply_pipeline(bad, "rotate:90")
