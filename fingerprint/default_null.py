"""Images known to come from no generator, made here: the default null of a generator library.

A library with one generator has no other references to score against, and users rarely have a
calibration set at hand, so the build needs non-matching images of its own. They are simulated
camera photos (``fingerprint.synthetic.make_camera``: PRNU, shot and read noise, natural and
flat-field scenes) passed through what a camera does after the sensor (:func:`camera_pipeline`):
Bayer sampling and bilinear demosaicing, unsharp masking, 8-bit rounding and JPEG compression at a
camera quality, then a crop that puts the 8 x 8 JPEG grid on or off the image grid. The scores of
a generator's fingerprint against these images, under the same hypotheses and transformations as
queries (``NULL_CONDITIONS``), give its null models (``fingerprint.generator_decision.NullModel``);
``ganprint calibrate`` adds real photos to them.

Measured in benchmarks/gan_trust.py: the in-camera pipeline widens the null of plain simulated
cameras towards that of real photos (Dresden crops), but does not reach it for every generator;
calibrating with real photos remains the better null where they are available.
"""

from __future__ import annotations

import io
from typing import Iterator

import numpy as np

JPEG_QUALITIES = (75, 85, 92, 97)
SHARPEN = (0.0, 0.5, 1.0)
SUBSAMPLING = (0, 1, 2)  # Pillow codes: 4:4:4, 4:2:2, 4:2:0
# Conditions under which the null is scored (fingerprint.transforms specs): the query sizes and
# JPEG qualities that users bring, so that each hypothesis has a null at a nearby size.
NULL_CONDITIONS = ("none", "jpeg:90", "jpeg:75", "resize:0.9", "resize:0.75", "resize:0.5",
                   "crop:224", "crop:192", "crop:160", "crop:128")
GRID_MARGIN = 16  # extra sensor rows and columns, so that crops can start off the JPEG grid

__all__ = ["JPEG_QUALITIES", "NULL_CONDITIONS", "camera_pipeline", "default_null_images"]


def _demosaic_bilinear(x: np.ndarray) -> np.ndarray:
    """RGGB Bayer sampling of an RGB float image (H, W, 3), then bilinear interpolation."""
    from scipy import ndimage

    H, W, _ = x.shape
    mask = np.zeros((H, W, 3))
    mask[0::2, 0::2, 0] = 1
    mask[0::2, 1::2, 1] = 1
    mask[1::2, 0::2, 1] = 1
    mask[1::2, 1::2, 2] = 1
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    out = np.empty_like(x)
    for c, k in ((0, k_rb), (1, k_g), (2, k_rb)):
        out[..., c] = ndimage.convolve(x[..., c] * mask[..., c], k, mode="mirror")
    return out


def camera_pipeline(image: np.ndarray, *, quality: int, sharpen: float = 0.0, subsampling: int = 2,
                    offset: tuple[int, int] = (0, 0), size: tuple[int, int] | None = None) -> np.ndarray:
    """Demosaic, sharpen, round, JPEG-compress and crop a sensor image.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        The sensor's output in display values (a ``SimulatedCamera`` capture).
    quality : int in [1, 100]
        JPEG quality (Pillow's scale).
    sharpen : float >= 0
        Unsharp-mask amount: ``x + sharpen (x - gaussian(x, 1 px))``.
    subsampling : {0, 1, 2}
        JPEG chroma subsampling, Pillow's codes for 4:4:4, 4:2:2, 4:2:0.
    offset : (top, left)
        Start of the crop; ``offset % 8`` is where the JPEG grid falls in the result.
    size : (h, w), optional
        Crop size (default: everything from ``offset`` on).

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)
    """
    from PIL import Image
    from scipy import ndimage

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera_pipeline needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    if not 1 <= int(quality) <= 100 or sharpen < 0 or subsampling not in SUBSAMPLING:
        raise ValueError(f"bad pipeline settings: quality {quality}, sharpen {sharpen}, subsampling {subsampling}")
    x = _demosaic_bilinear(image.astype(np.float64))
    if sharpen > 0:
        x = x + sharpen * (x - ndimage.gaussian_filter(x, (1.0, 1.0, 0)))
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=int(quality), subsampling=int(subsampling))
    buf.seek(0)
    with Image.open(buf) as im:
        y = np.asarray(im.convert("RGB"))
    top, left = offset
    h, w = size if size is not None else (y.shape[0] - top, y.shape[1] - left)
    if top < 0 or left < 0 or top + h > y.shape[0] or left + w > y.shape[1]:
        raise ValueError(f"a {h}x{w} crop at {top}:{left} does not fit a {y.shape[0]}x{y.shape[1]} image")
    return np.ascontiguousarray(y[top: top + h, left: left + w])


def default_null_images(shape: tuple[int, int] = (256, 256), *, cameras: int = 8, per_camera: int = 12,
                        seed: int = 0) -> Iterator[tuple[np.ndarray, str]]:
    """Simulated camera photos for a generator library's default null, with a description each.

    ``cameras`` simulated sensors (PRNU strengths 0.5-2 %), ``per_camera`` scenes each, half
    natural and half flat-field; every photo gets a random JPEG quality from ``JPEG_QUALITIES``,
    sharpening from ``SHARPEN``, chroma subsampling, and a crop on the JPEG grid (even photos) or
    off it (odd ones). Deterministic for a seed.

    Yields
    ------
    (image, description) : ndarray of uint8 (H, W, 3), str such as ``"cam3/7 q92 s0.5 sub1 @5:11"``
    """
    from fingerprint.synthetic import make_camera

    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7211]))
    for k in range(cameras):
        strength = 0.005 + 0.015 * k / max(cameras - 1, 1)
        cam = make_camera(f"null-{k}", 5000 + 97 * int(seed) + k, shape=(h + GRID_MARGIN, w + GRID_MARGIN),
                          prnu_std=strength)
        natural = per_camera - per_camera // 2
        scenes = list(cam.images(natural, seed=k)) + list(cam.images(per_camera // 2, seed=k, flat=True))
        for i, scene in enumerate(scenes):
            q = int(rng.choice(JPEG_QUALITIES))
            s = float(rng.choice(SHARPEN))
            sub = int(rng.choice(SUBSAMPLING))
            off = (0, 0) if i % 2 == 0 else (int(rng.integers(1, GRID_MARGIN)), int(rng.integers(1, GRID_MARGIN)))
            yield (camera_pipeline(scene, quality=q, sharpen=s, subsampling=sub, offset=off, size=(h, w)),
                   f"cam{k}/{i} q{q} s{s:g} sub{sub} @{off[0]}:{off[1]}")
