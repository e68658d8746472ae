"""Scenes for the simulators: natural-looking content and flat fields, as float32 in [0, 1].

- ``natural_content`` draws smooth gradients, random polygons and disks with soft edges, gratings
  and 1/f ("pink") textures, in colour: what a camera photographs or a generator decodes;
- ``flat_field`` draws a bright, nearly uniform scene (a sky or a wall), what camera fingerprints
  are built from.

Both are pure functions of a seed (or advance a given ``numpy.random.Generator``). NumPy only.
"""

from __future__ import annotations

import numpy as np

from fingerprint.synthetic._common import _TAG_CONTENT, _TAG_FLAT, _as_rng, _check_shape
from kernels.spec import GRAY_WEIGHTS

__all__ = ["flat_field", "natural_content"]


def _pink_noise(rng: np.random.Generator, shape: tuple[int, int], alpha: float, count: int = 1) -> np.ndarray:
    """``count`` fields with amplitude spectrum ``|f|**-alpha``, zero mean, unit std, float64.

    White Gaussian noise is filtered in the DFT domain (real FFT); the DC term is set to zero. Natural
    images have ``alpha`` close to 1 (power spectrum ``1/f**2``), which is what makes them look natural.
    """
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    f[0, 0] = 1.0
    amp = f**-alpha
    amp[0, 0] = 0.0
    white = rng.standard_normal((count, h, w))
    out = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(h, w))
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-12
    return out


def _soft_mask(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside): a linear ramp."""
    return np.clip(0.5 + signed_distance / width, 0.0, 1.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour: a brightness times a mildly saturated hue, in [0, 1]."""
    lum = rng.uniform(0.08, 0.92)
    tint = 1.0 + rng.normal(0.0, 0.25, size=3)
    return np.clip(lum * tint, 0.02, 0.98)


def natural_content(
    shape: tuple[int, int],
    rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
    *,
    channels: int = 3,
) -> np.ndarray:
    """Draw a natural-looking scene: gradients, soft-edged shapes, textures and a 1/f spectrum.

    Parameters
    ----------
    shape : tuple of int, (H, W)
        Size of the scene, each side at least 8.
    rng_or_seed : numpy.random.Generator, numpy.random.SeedSequence or int
        Source of randomness. A ``Generator`` is advanced; an int seed (non-negative) always gives
        the same scene.
    channels : {3, 1}, optional
        3 for RGB (default), 1 for gray (Binghamton gray weights of the RGB scene).

    Returns
    -------
    ndarray of float32, shape (H, W, channels)
        Display-referred values in [0, 1].

    Raises
    ------
    ValueError
        If ``shape`` is not a pair of ints >= 8 or ``channels`` is not 1 or 3.
    TypeError
        If ``rng_or_seed`` is neither a ``Generator``, a ``SeedSequence`` nor an int.

    Notes
    -----
    Painter's algorithm, back to front, in coordinates scaled by ``max(H, W)`` so a scene looks the
    same at every size:

    1. background: a linear colour ramp ``c0 + (c1 - c0) * clip(<p - 1/2, d> + 1/2, 0, 1)``;
    2. 6 to 15 objects, convex polygons (intersection of half-planes) or disks, each composited
       with an anti-aliased coverage ``a = clip(1/2 + dist / w, 0, 1)`` (edge width ``w`` from 1 to
       3 pixels: sharp and defocused edges), filled with a colour, a linear shading and either a
       sinusoidal grating or a pink-noise texture;
    3. a multiplicative 1/f texture ``Y <- Y (1 + 0.06 P)`` with ``|P^(f)| ~ 1/f`` (natural
       images' amplitude spectrum), plus a weaker colour-decorrelated one.

    Examples
    --------
    >>> y = natural_content((64, 96), 7)
    >>> y.shape, y.dtype, bool(y.min() >= 0.0 and y.max() <= 1.0)
    ((64, 96, 3), dtype('float32'), True)
    >>> bool(np.array_equal(y, natural_content((64, 96), 7)))
    True
    """
    h, w = _check_shape(shape)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    rng = _as_rng(rng_or_seed, _TAG_CONTENT, "rng_or_seed")
    scale = float(max(h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    py = (yy + 0.5) / scale  # normalised coordinates, aspect kept
    px = (xx + 0.5) / scale
    cy, cx = h / (2 * scale), w / (2 * scale)

    # 1. background ramp
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.clip((px - cx) * np.cos(theta) + (py - cy) * np.sin(theta) + 0.5, 0.0, 1.0)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    img = c0 + (c1 - c0) * ramp[..., None]

    # 2. objects
    for _ in range(int(rng.integers(6, 16))):
        centre = np.array([rng.uniform(0, h / scale), rng.uniform(0, w / scale)])
        radius = rng.uniform(0.04, 0.3)
        dy, dx = py - centre[0], px - centre[1]
        if rng.random() < 0.35:  # disk
            dist = (radius - np.hypot(dy, dx)) * scale
        else:  # convex polygon: min over edges of the distance to each supporting line
            n_edges = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n_edges))
            aspect = rng.uniform(0.5, 1.5)
            dist = np.full((h, w), np.inf)
            for a in angles:
                reach = radius * (aspect if np.sin(a) ** 2 > 0.5 else 1.0)
                dist = np.minimum(dist, reach - (dy * np.sin(a) + dx * np.cos(a)))
            dist *= scale
        cover = _soft_mask(dist, rng.uniform(1.0, 3.0))
        colour = _random_colour(rng)
        phi = rng.uniform(0, 2 * np.pi)
        shade = 1.0 + rng.uniform(-0.4, 0.4) * ((dx * np.cos(phi) + dy * np.sin(phi)) / radius)
        fill = colour * shade[..., None]
        fmax = min(60.0, 0.3 * scale)  # cycles per scene width, below 0.3 cycles/pixel: no aliasing
        if rng.random() < 0.5 and fmax > 8.0:  # grating (stripes, fabric, blinds)
            freq = rng.uniform(8.0, fmax)
            psi = rng.uniform(0, np.pi)
            grating = np.sin(2 * np.pi * freq * (px * np.cos(psi) + py * np.sin(psi)) + rng.uniform(0, 6.3))
            fill = fill * (1.0 + rng.uniform(0.05, 0.3) * grating)[..., None]
        else:  # rough surface
            tex = _pink_noise(rng, (h, w), rng.uniform(0.6, 1.2))[0]
            fill = fill * (1.0 + rng.uniform(0.03, 0.15) * tex)[..., None]
        img += cover[..., None] * (fill - img)

    # 3. global 1/f texture, luminance and (weaker) chroma
    lum_tex, *chroma = _pink_noise(rng, (h, w), rng.uniform(0.9, 1.3), count=4)
    img *= 1.0 + 0.06 * lum_tex[..., None] + 0.015 * np.stack(chroma, axis=-1)
    img = np.clip(img, 0.0, 1.0)
    if channels == 1:
        img = img @ np.array(GRAY_WEIGHTS)
        img = img[..., None]
    return img.astype(np.float32)


def flat_field(
    shape: tuple[int, int],
    seed: np.random.Generator | np.random.SeedSequence | int,
    *,
    channels: int = 3,
) -> np.ndarray:
    """Draw a bright, nearly uniform, smoothly varying scene (a sky or a wall).

    Flat fields are what camera fingerprints are built from: little content, so the noise residual
    is mostly PRNU.

    Parameters
    ----------
    shape : tuple of int, (H, W)
        Size, each side at least 8.
    seed : numpy.random.Generator, numpy.random.SeedSequence or int
        Source of randomness (as ``rng_or_seed`` of ``natural_content``).
    channels : {3, 1}, optional
        3 for RGB (default), 1 for gray.

    Returns
    -------
    ndarray of float32, shape (H, W, channels)
        Values in about [0.4, 0.9]: never saturated, never dark.

    Notes
    -----
    ``Y(p) = b t_c (1 + q(p)) (1 - v r(p)^2) (1 + 0.01 P(p))`` with brightness ``b`` in [0.6, 0.85],
    a slight colour tint ``t_c``, a random quadratic ``q`` (about +-8 %), vignetting strength ``v``
    in [0.05, 0.2] over the squared normalised radius ``r^2``, and a faint, very smooth 1/f**2 field
    ``P`` (clouds, plaster).

    Examples
    --------
    >>> f = flat_field((32, 32), 1)
    >>> f.shape, bool(0.3 < f.min() and f.max() < 0.95)
    ((32, 32, 3), True)
    """
    h, w = _check_shape(shape)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    rng = _as_rng(seed, _TAG_FLAT, "seed")
    yy, xx = np.mgrid[0:h, 0:w]
    v = (yy + 0.5) / h - 0.5
    u = (xx + 0.5) / w - 0.5
    c = rng.uniform(-0.08, 0.08, size=5)
    quad = c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v
    vignette = 1.0 - rng.uniform(0.05, 0.2) * (u * u + v * v) * 2.0
    clouds = _pink_noise(rng, (h, w), 2.0)[0]
    tint = 1.0 + rng.normal(0.0, 0.04, size=3)
    base = rng.uniform(0.6, 0.85) * (1.0 + quad) * vignette * (1.0 + 0.01 * clouds)
    img = np.clip(base[..., None] * tint, 0.0, 0.95)
    if channels == 1:
        img = (img @ np.array(GRAY_WEIGHTS))[..., None]
    return img.astype(np.float32)

