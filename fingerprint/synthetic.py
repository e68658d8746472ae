"""Deterministic simulators of cameras and generators for the built-in demo.

``make demo`` must show ganprint end to end on a machine with no data and no network, so the demo
makes its own data:

- ``natural_content`` and ``flat_field`` draw scenes: smooth gradients, random polygons and disks
  with soft edges, gratings and 1/f ("pink") textures, in colour, as float32 in [0, 1];
- ``SimulatedCamera`` photographs a scene through a sensor with its own PRNU factor ``K``
  (``I = quantize(gamma(Y (1 + K) + shot + read noise))``), optionally JPEG-compressed;
- ``SimulatedGenerator`` is a fixed, seeded, random up-sampling decoder (transposed convolution,
  nearest or bilinear up-sampling followed by a convolution, or pixel shuffle) that turns
  low-resolution scenes into colour images carrying the periodic traces real GANs leave.

Everything is a pure function of integer seeds through ``numpy.random.SeedSequence``: the same seed
gives the same bytes on every machine, a different seed a different camera, generator or image.
Image ``i`` of a sequence depends only on ``(seed, i)``, never on how many images were asked for.
NumPy, SciPy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "ARCHITECTURES",
    "SimulatedCamera",
    "SimulatedGenerator",
    "flat_field",
    "make_camera",
    "make_generator",
    "natural_content",
]

# --- tunables of the simulators (one place; documented in the docstrings below) ------------------
ARCHITECTURES = ("transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle")
PRNU_STD_RANGE = (0.005, 0.02)  # valid PRNU strengths (std of K)
GAMMA = 2.2  # display gamma: content is display-referred, the sensor sees content ** GAMMA
FULL_WELL = 20000.0  # electrons at full scale (shot noise std = sqrt(electrons))
READ_NOISE = 4.0  # electrons, std of the read noise
EXPOSURE_RANGE = (0.75, 1.0)  # fraction of full well reached by content value 1.0, per capture
HIDDEN_CHANNELS = 8  # generator feature channels: 3 colour + 5 "extra" (leaky ReLU) channels
LEAKY_SLOPE = 0.2  # leaky ReLU slope of the extra channels
BATCH_SIZE = 16  # images per generator forward pass (bounds memory: ~30 MB at 256 x 256)
_EPS_RGB = 0.0004  # std of the random perturbation of each colour-to-colour kernel tap
_ETA_RGB = 0.001  # scale of the extra-to-colour kernels relative to He initialisation
# std of the 1x1 toRGB weights of the extra channels: up-sampling by zero insertion leaves strong
# checkerboards in the extra channels, so those architectures mix them in more weakly
_TO_RGB = {"transposed_conv": 0.0025, "pixel_shuffle": 0.0025, "nearest_conv": 0.04, "bilinear_conv": 0.06}
_NOISE_RGB = (0.002, 0.004)  # per-image noise injection gains, colour channels
_NOISE_X = (0.5, 0.8)  # per-image noise injection gains, extra channels
_FIXED_RGB = (0.0015, 0.0025)  # fixed noise buffer gains, colour channels
_FIXED_X = (0.3, 0.5)  # fixed noise buffer gains, extra channels

# Tags that keep the random streams of different objects apart (SeedSequence entropy words).
_TAG_CONTENT = 0x6E617475  # "natu"
_TAG_FLAT = 0x666C6174  # "flat"
_TAG_PRNU = 0x70726E75  # "prnu"
_TAG_CAMERA_IMAGES = 0x63616D69  # "cami"
_TAG_WEIGHTS = 0x77656967  # "weig"
_TAG_GENERATOR_IMAGES = 0x67656E69  # "geni"
_ARCH_CODE = {name: i for i, name in enumerate(ARCHITECTURES)}


# --- seeds ------------------------------------------------------------------------------------------
def _check_seed(seed: int, name: str = "seed") -> int:
    """Return ``seed`` as a Python int; it must be a non-negative integer (SeedSequence's rule)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return int(seed)


def _stream(*words: int) -> np.random.Generator:
    """An independent ``Generator`` for the entropy words ``words`` (tags and seeds)."""
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


def _as_rng(rng_or_seed: np.random.Generator | np.random.SeedSequence | int) -> np.random.Generator:
    """Accept a ``Generator`` (used as is), a ``SeedSequence`` or a non-negative int seed."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, np.random.SeedSequence):
        return np.random.default_rng(rng_or_seed)
    return _stream(_TAG_CONTENT, _check_seed(rng_or_seed, "rng_or_seed"))


def _check_shape(shape: tuple[int, int], minimum: int = 8) -> tuple[int, int]:
    """Return ``(H, W)`` as ints, each at least ``minimum``."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a pair (H, W) of ints, got {shape!r}") from None
    if h < minimum or w < minimum:
        raise ValueError(f"shape must be at least {minimum} x {minimum}, got {h} x {w}")
    return h, w


def _check_jpeg_quality(jpeg_quality: int | None) -> int | None:
    if jpeg_quality is None:
        return None
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)):
        raise TypeError(f"jpeg_quality must be an int in [1, 100] or None, got {type(jpeg_quality).__name__}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    return int(jpeg_quality)


# --- scenes -----------------------------------------------------------------------------------------
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
    rng = _as_rng(rng_or_seed)
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
        img = img @ np.array([0.29893602, 0.58704307, 0.11402090])
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
    rng = seed if isinstance(seed, np.random.Generator) else None
    if rng is None:
        rng = (
            np.random.default_rng(seed)
            if isinstance(seed, np.random.SeedSequence)
            else _stream(_TAG_FLAT, _check_seed(seed))
        )
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
        img = (img @ np.array([0.29893602, 0.58704307, 0.11402090]))[..., None]
    return img.astype(np.float32)


# --- JPEG ---------------------------------------------------------------------------------------------
def _jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``image`` (uint8, H x W x 3) as JPEG in memory with Pillow and decode it back."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


# --- cameras ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimulatedCamera:
    """A camera with its own sensor: a fixed PRNU factor ``K`` plus shot and read noise.

    Parameters
    ----------
    name : str
        A label (not used for randomness: two cameras with one seed share one ``K``).
    seed : int
        Non-negative; decides ``K``.
    shape : tuple of int, (H, W), optional
        Sensor size, default (256, 256).
    prnu_std : float, optional
        Standard deviation of ``K``, in [0.005, 0.02]; default 0.01 (1 %, typical of real sensors).

    Notes
    -----
    The imaging model (Lukas, Fridrich, Goljan 2006; Chen et al. 2008), per colour channel ``c``:

    .. math::

        e   &= F\\,x\\,Y_c^{\\gamma}\\,(1 + K) + \\sqrt{F\\,x\\,Y_c^{\\gamma}\\,(1 + K)}\\,n_s
              + r\\,n_r \\\\
        I_c &= \\mathrm{round}\\big(255\\,\\mathrm{clip}(e / F, 0, 1)^{1/\\gamma}\\big)

    with content ``Y`` display-referred in [0, 1] (so ``Y**gamma`` is linear light, gamma = 2.2),
    exposure ``x`` drawn per capture from [0.75, 1.0], full well ``F = 20000`` electrons, shot noise
    (Gaussian approximation of Poisson, ``n_s ~ N(0, 1)``), read noise ``r = 4`` electrons, and
    ``K`` shared by the three channels (no colour filter array is simulated). Since ``I`` is about
    ``I0 (1 + K / gamma)``, the PRNU survives into the 8-bit image as a multiplicative pattern,
    which is what ganprint's camera detector correlates with ``I K`` (DESIGN.md §7).

    ``K`` is white Gaussian noise mixed with a little of itself blurred (Gaussian, sigma 1 pixel),
    then set to mean 0 and std ``prnu_std`` exactly: mostly white, slightly correlated between
    neighbours, as measured on real sensors.

    References
    ----------
    .. [1] J. Lukas, J. Fridrich, M. Goljan, "Digital camera identification from sensor pattern
       noise", IEEE TIFS 1(2), 2006. :doi:`10.1109/TIFS.2006.873602`
    .. [2] M. Chen, J. Fridrich, M. Goljan, J. Lukas, "Determining image origin and integrity using
       sensor noise", IEEE TIFS 3(1), 2008. :doi:`10.1109/TIFS.2007.916285`

    Examples
    --------
    >>> cam = make_camera("cam-a", 1, shape=(64, 64))
    >>> frame = next(cam.images(1, seed=0, flat=True))
    >>> frame.shape, frame.dtype
    ((64, 64, 3), dtype('uint8'))
    """

    name: str
    seed: int
    shape: tuple[int, int] = (256, 256)
    prnu_std: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        object.__setattr__(self, "seed", _check_seed(self.seed))
        object.__setattr__(self, "shape", _check_shape(self.shape, minimum=16))
        lo, hi = PRNU_STD_RANGE
        if not (lo <= float(self.prnu_std) <= hi):
            raise ValueError(f"prnu_std must be in [{lo}, {hi}], got {self.prnu_std!r}")
        object.__setattr__(self, "prnu_std", float(self.prnu_std))

    @cached_property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name of the PRNU factor
        """The PRNU factor: float32, shape (H, W), mean 0, std ``prnu_std``, read-only."""
        rng = _stream(_TAG_PRNU, self.seed)
        white = rng.standard_normal(self.shape)
        k = white + 0.3 * ndimage.gaussian_filter(white, 1.0, mode="wrap") / 0.28
        k -= k.mean()
        k *= self.prnu_std / k.std()
        k = k.astype(np.float32)
        k.setflags(write=False)
        return k

    def capture(
        self,
        content: np.ndarray,
        *,
        rng: np.random.Generator | int,
        jpeg_quality: int | None = None,
    ) -> np.ndarray:
        """Photograph ``content`` with this camera.

        Parameters
        ----------
        content : ndarray of float, shape (H, W), (H, W, 1) or (H, W, 3)
            Display-referred scene in [0, 1] (values outside are clipped), the camera's shape.
        rng : numpy.random.Generator or int
            Source of the exposure and the shot and read noise.
        jpeg_quality : int in [1, 100] or None, optional
            If given, the frame is JPEG-compressed at this quality (Pillow, in memory) and decoded.

        Returns
        -------
        ndarray of uint8, shape (H, W, 3)

        Raises
        ------
        ValueError
            If ``content`` does not have the camera's shape or 1 or 3 channels, or
            ``jpeg_quality`` is outside [1, 100].
        """
        quality = _check_jpeg_quality(jpeg_quality)
        y = np.asarray(content, dtype=np.float32)
        if y.ndim == 2:
            y = y[..., None]
        if y.ndim != 3 or y.shape[:2] != self.shape or y.shape[2] not in (1, 3):
            raise ValueError(
                f"content must have shape {self.shape} or {self.shape + (3,)}, got {np.shape(content)}"
            )
        if y.shape[2] == 1:
            y = np.repeat(y, 3, axis=2)
        if not isinstance(rng, np.random.Generator):
            rng = _stream(_TAG_CAMERA_IMAGES, self.seed, _check_seed(rng, "rng"))
        exposure = rng.uniform(*EXPOSURE_RANGE)
        linear = np.clip(y, 0.0, 1.0) ** np.float32(GAMMA)
        electrons = (FULL_WELL * exposure) * linear * (1.0 + self.K)[..., None]
        shot = rng.standard_normal(electrons.shape, dtype=np.float32)
        read = rng.standard_normal(electrons.shape, dtype=np.float32)
        electrons += np.sqrt(electrons) * shot + np.float32(READ_NOISE) * read
        v = np.clip(electrons / FULL_WELL, 0.0, 1.0) ** np.float32(1.0 / GAMMA)
        frame = np.rint(v * 255.0).astype(np.uint8)
        if quality is not None:
            frame = _jpeg_roundtrip(frame, quality)
        return frame

    def images(
        self,
        n: int,
        *,
        seed: int,
        flat: bool = False,
        jpeg_quality: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Photograph ``n`` fresh scenes, one at a time.

        Parameters
        ----------
        n : int
            Number of frames (>= 0).
        seed : int
            Non-negative; with the camera's own seed it decides the scenes and the noise, so two
            cameras given one ``seed`` photograph different scenes.
        flat : bool, optional
            ``flat_field`` scenes (for building fingerprints) instead of ``natural_content``.
        jpeg_quality : int in [1, 100] or None, optional
            JPEG quality of every frame; None (default) keeps them uncompressed.

        Yields
        ------
        ndarray of uint8, shape (H, W, 3)
            Frame ``i`` depends only on (camera seed, ``seed``, ``i``, ``flat``, ``jpeg_quality``).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        seed = _check_seed(seed)
        _check_jpeg_quality(jpeg_quality)
        for i in range(int(n)):
            rng = _stream(_TAG_CAMERA_IMAGES, self.seed, seed, i, int(bool(flat)))
            scene = flat_field(self.shape, rng) if flat else natural_content(self.shape, rng)
            yield self.capture(scene, rng=rng, jpeg_quality=jpeg_quality)


def make_camera(
    name: str, seed: int, shape: tuple[int, int] = (256, 256), prnu_std: float = 0.01
) -> SimulatedCamera:
    """Build a ``SimulatedCamera`` (see there); ``K`` is drawn on first use.

    Examples
    --------
    >>> make_camera("cam-a", 3, shape=(32, 48)).K.shape
    (32, 48)
    """
    return SimulatedCamera(name=name, seed=seed, shape=tuple(shape), prnu_std=prnu_std)


# --- generators ---------------------------------------------------------------------------------------
def _leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, LEAKY_SLOPE * x)


def _correlate(x: np.ndarray, w: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Multi-channel 2-D cross-correlation with zero padding, as a convolution layer computes it.

    Parameters
    ----------
    x : ndarray of float32, shape (C_in, B, H, W)
        Feature maps, channel axis first, then batch.
    w : ndarray of float32, shape (C_out, C_in, kh, kw)
        Kernels.
    pads : tuple of int
        Zeros added (top, bottom, left, right).

    Returns
    -------
    ndarray of float32, shape (C_out, B, H + top + bottom - kh + 1, W + left + right - kw + 1)
        ``out[o, b, i, j] = sum_{c, u, v} w[o, c, u, v] xp[c, b, i + u, j + v]``.
    """
    top, bottom, left, right = pads
    c_out, c_in, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="edge")
    ho = xp.shape[2] - kh + 1
    wo = xp.shape[3] - kw + 1
    batch = x.shape[1]
    out = np.empty((c_out, batch, ho, wo), dtype=np.float32)
    w2 = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(c_out, kh * kw * c_in), dtype=np.float32)
    # im2col in chunks of images, so the column matrix stays under about 32 MB
    per_image = kh * kw * c_in * ho * wo * 4
    step = max(1, (32 << 20) // per_image)
    for b0 in range(0, batch, step):
        b1 = min(batch, b0 + step)
        cols = np.empty((kh, kw, c_in, b1 - b0, ho, wo), dtype=np.float32)
        for u in range(kh):
            for v in range(kw):
                cols[u, v] = xp[:, b0:b1, u : u + ho, v : v + wo]
        out[:, b0:b1] = (w2 @ cols.reshape(kh * kw * c_in, -1)).reshape(c_out, b1 - b0, ho, wo)
    return out


def _upsample_nearest(x: np.ndarray) -> np.ndarray:
    """Repeat every pixel 2 x 2 (``x`` of shape (C, B, H, W))."""
    return x.repeat(2, axis=2).repeat(2, axis=3)


def _upsample_bilinear(x: np.ndarray) -> np.ndarray:
    """Bilinear x2 with half-pixel centres and edge replication (PyTorch ``align_corners=False``).

    Along each axis ``out[2i] = x[i] - (x[i] - x[i-1]) / 4`` and ``out[2i+1] = x[i] + (x[i+1] - x[i]) / 4``.
    """
    for axis in (2, 3):
        n = x.shape[axis]
        prev = np.take(x, np.r_[0, 0 : n - 1], axis=axis)
        nxt = np.take(x, np.r_[1:n, n - 1], axis=axis)
        even = 0.75 * x + 0.25 * prev
        odd = 0.75 * x + 0.25 * nxt
        x = np.stack([even, odd], axis=axis + 1)
        shape = list(even.shape)
        shape[axis] = 2 * n
        x = x.reshape(shape)
    return x


def _interleave(phases: np.ndarray) -> np.ndarray:
    """Depth to space: ``phases`` of shape (2, 2, C, B, h, w) -> (C, B, 2h, 2w), ``out[.., 2i+p, 2j+q] = phases[p, q, .., i, j]``."""
    _, _, c, b, h, w = phases.shape
    return phases.transpose(2, 3, 4, 0, 5, 1).reshape(c, b, 2 * h, 2 * w)


# Base ("interpolating") kernels of the colour path: what a trained network's kernels are close to.
_B4 = np.array([0.25, 0.75, 0.75, 0.25])  # transposed conv k=4, s=2: bilinear weights, gain 2
_B3 = np.array([0.25, 0.5, 0.25])  # after nearest: nearest * [1,2,1]/4 = bilinear
_DELTA3 = np.array([0.0, 1.0, 0.0])  # after bilinear: identity
_PS = (np.array([0.25, 0.75, 0.0]), np.array([0.0, 0.75, 0.25]))  # pixel shuffle: phase 0, 1


def _base_kernels(architecture: str) -> np.ndarray:
    """Colour-path base kernel(s): shape (kh, kw), or (2, 2, 3, 3) for pixel shuffle's four phases."""
    if architecture == "transposed_conv":
        return np.outer(_B4, _B4)
    if architecture == "nearest_conv":
        return np.outer(_B3, _B3)
    if architecture == "bilinear_conv":
        return np.outer(_DELTA3, _DELTA3)
    return np.stack([np.stack([np.outer(_PS[p], _PS[q]) for q in (0, 1)]) for p in (0, 1)])


@dataclass(frozen=True)
class _Stage:
    """Weights of one up-sampling stage (see ``SimulatedGenerator``)."""

    kernel: np.ndarray  # (C, C, k, k), or (2, 2, C, C, 3, 3) for pixel shuffle
    bias: np.ndarray  # (C,)
    noise_gain: np.ndarray  # (C,) per-image noise injection strength
    fixed_noise: np.ndarray  # (C, 1, S, S) the generator's own constant noise buffer, scaled


@dataclass(frozen=True)
class _Weights:
    mix_in: np.ndarray  # (E, 3) colour -> extra channels at the input
    const_input: np.ndarray  # (E, 1, s0, s0) learned constant input
    stages: tuple[_Stage, ...]
    to_rgb: np.ndarray  # (3, E) 1x1 toRGB of the extra channels
    rgb_bias: np.ndarray  # (3,)


@dataclass(frozen=True)
class SimulatedGenerator:
    """A fixed, seeded, random up-sampling decoder that leaves GAN-like periodic traces.

    Parameters
    ----------
    name : str
        A label (not used for randomness).
    architecture : {"transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle"}
        How each stage up-samples by 2.
    seed : int
        Non-negative; decides every weight. Two seeds of one architecture are two generators.
    out_size : int, optional
        Side of the square output, default 256; a multiple of ``2**stages``.
    stages : int, optional
        Number of x2 up-sampling stages, default 2 (64 x 64 -> 256 x 256).

    Notes
    -----
    Features ``h`` have ``C = 8`` channels: 3 colour channels ``h_rgb`` that carry the scene and
    5 extra channels ``h_x`` with leaky-ReLU activations (slope 0.2). The input, at side
    ``s0 = out_size / 2**stages``, is a low-resolution ``natural_content`` scene ``Y0``:

    .. math::

        h_{rgb}^{(0)} = Y_0, \\qquad h_x^{(0)} = \\phi(A (Y_0 - 1/2) + Q)

    with a random 5 x 3 matrix ``A`` and a learned constant input ``Q`` (StyleGAN). Each stage is

    .. math::

        h^{(k+1)} = \\phi_k\\big(W_k \\star U(h^{(k)}) + b_k + g_k n_k + f_k N_k\\big)

    where ``U`` and ``W_k`` follow the architecture:

    - ``transposed_conv``: zero insertion and a 4 x 4 kernel (``ConvTranspose2d(k=4, s=2, p=1)``,
      computed in polyphase form);
    - ``nearest_conv``: pixel repetition, then a 3 x 3 kernel;
    - ``bilinear_conv``: bilinear x2 (half-pixel centres), then a 3 x 3 kernel;
    - ``pixel_shuffle``: a 3 x 3 kernel to ``4 C`` channels at low resolution, then depth to space.

    ``n_k`` is per-image white noise (StyleGAN's noise inputs), ``N_k`` the generator's own fixed
    noise buffer (both with per-channel gains; the extra channels get none after the last stage,
    where no later up-sampling would turn them into traces), ``phi_k`` the identity on the colour
    channels and leaky ReLU on the others. The
    colour-to-colour kernels are an interpolating base (bilinear weights) plus seeded random
    perturbations; every other kernel is random (He initialisation). The output is

    .. math::

        I = \\mathrm{round}\\big(255\\,\\mathrm{clip}(h_{rgb} + T (h_x - \\bar h_x) + c, 0, 1)\\big)

    with a random 1 x 1 ``toRGB`` matrix ``T`` (weaker for the zero-insertion architectures, whose
    extra channels carry strong checkerboards) and ``bar h_x`` the spatial mean of each extra
    channel of the image (the role of a trained toRGB bias: no colour cast). The periodic traces come from the same places as
    in trained GANs: polyphase components of transposed-convolution and pixel-shuffle kernels with
    unequal gains (a checkerboard proportional to the local feature level), and, for nearest and
    bilinear up-sampling, the phase-dependent variance of the up-sampled features turned into a
    phase-dependent mean by the leaky ReLU. Stage ``k`` of ``S`` leaves period ``2**(S-k)``
    patterns, so the spectrum of the noise residual peaks at multiples of ``out_size / 2``,
    ``out_size / 4``, ... in each axis (Odena et al. 2016; Zhang et al. 2019; Frank et al. 2020).
    The fixed noise buffers and the constant input add a non-periodic, generator-specific
    pattern, so two seeds of one architecture leave different mean residuals (Marra et al. 2019;
    Yu et al. 2019).

    References
    ----------
    .. [1] A. Odena, V. Dumoulin, C. Olah, "Deconvolution and checkerboard artifacts", Distill,
       2016. :doi:`10.23915/distill.00003`
    .. [2] F. Marra, D. Gragnaniello, L. Verdoliva, G. Poggi, "Do GANs leave artificial
       fingerprints?", IEEE MIPR 2019. :doi:`10.1109/MIPR.2019.00103`
    .. [3] N. Yu, L. Davis, M. Fritz, "Attributing fake images to GANs: learning and analyzing GAN
       fingerprints", ICCV 2019. :doi:`10.1109/ICCV.2019.00765`
    .. [4] J. Frank et al., "Leveraging frequency analysis for deep fake image recognition",
       ICML 2020.

    Examples
    --------
    >>> gen = make_generator("gan-a", "transposed_conv", 1, out_size=64)
    >>> imgs = gen.generate(2, seed=0)
    >>> len(imgs), imgs[0].shape, imgs[0].dtype
    (2, (64, 64, 3), dtype('uint8'))
    """

    name: str
    architecture: str
    seed: int
    out_size: int = 256
    stages: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if self.architecture not in _ARCH_CODE:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; valid: {', '.join(sorted(ARCHITECTURES))}"
            )
        object.__setattr__(self, "seed", _check_seed(self.seed))
        if isinstance(self.stages, bool) or not isinstance(self.stages, (int, np.integer)) or self.stages < 1:
            raise ValueError(f"stages must be a positive int, got {self.stages!r}")
        object.__setattr__(self, "stages", int(self.stages))
        q = 1 << self.stages
        if (
            isinstance(self.out_size, bool)
            or not isinstance(self.out_size, (int, np.integer))
            or self.out_size % q
            or self.out_size // q < 8
        ):
            raise ValueError(
                f"out_size must be a multiple of 2**stages = {q} and at least {8 * q}, got {self.out_size!r}"
            )
        object.__setattr__(self, "out_size", int(self.out_size))

    @property
    def in_size(self) -> int:
        """Side of the low-resolution input scene: ``out_size / 2**stages``."""
        return self.out_size >> self.stages

    @cached_property
    def _weights(self) -> _Weights:
        """All weights, drawn once from the generator's seed and architecture."""
        rng = _stream(_TAG_WEIGHTS, _ARCH_CODE[self.architecture], self.seed)
        c, e = HIDDEN_CHANNELS, HIDDEN_CHANNELS - 3
        s = self.in_size
        mix_in = rng.normal(0.0, 1.5, size=(e, 3))
        const_input = rng.normal(0.0, 0.5, size=(e, 1, s, s))
        base = _base_kernels(self.architecture)
        stages = []
        for k in range(self.stages):
            s *= 2
            last = k == self.stages - 1
            if self.architecture == "pixel_shuffle":
                shape = (2, 2, c, c, 3, 3)
                fan_in = c * 9
            else:
                k = base.shape[-1]
                shape = (c, c, k, k)
                fan_in = c * k * k // (4 if self.architecture == "transposed_conv" else 1)
            kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
            rgb = kernel[..., :3, :3, :, :]
            rgb *= _EPS_RGB / np.sqrt(2.0 / fan_in)  # colour -> colour: small perturbation ...
            eye = np.eye(3)[:, :, None, None]
            if self.architecture == "pixel_shuffle":
                rgb += eye * base[:, :, None, None]  # ... of the interpolating base
            else:
                rgb += eye * base
            kernel[..., :3, 3:, :, :] *= _ETA_RGB  # extra -> colour: weak
            bias = np.concatenate([rng.normal(0.0, 0.01, 3), rng.normal(0.0, 0.1, e)])
            # noise of the extra channels matters where the next stage up-samples it: none after the last
            noise_gain = np.concatenate([rng.uniform(*_NOISE_RGB, 3), rng.uniform(*_NOISE_X, e) * (not last)])
            fixed = rng.standard_normal((1, 1, s, s)) * np.concatenate(
                [rng.uniform(*_FIXED_RGB, 3), rng.uniform(*_FIXED_X, e) * (not last)]
            )[:, None, None, None]
            stages.append(
                _Stage(
                    kernel=kernel.astype(np.float32),
                    bias=bias.astype(np.float32),
                    noise_gain=noise_gain.astype(np.float32),
                    fixed_noise=fixed.astype(np.float32),
                )
            )
        to_rgb = rng.normal(0.0, _TO_RGB[self.architecture], size=(3, e))
        rgb_bias = rng.normal(0.0, 0.01, size=3)
        return _Weights(
            mix_in=mix_in.astype(np.float32),
            const_input=const_input.astype(np.float32),
            stages=tuple(stages),
            to_rgb=to_rgb.astype(np.float32),
            rgb_bias=rgb_bias.astype(np.float32),
        )

    def _stage(self, h: np.ndarray, stage: _Stage, rng_noise: np.ndarray) -> np.ndarray:
        """One x2 stage on features ``h`` of shape (C, B, s, s); returns (C, B, 2s, 2s)."""
        arch = self.architecture
        if arch == "transposed_conv":
            # out[2m+p] = w[1-p] x[m] + w[3-p] x[m+1] along each axis (zero insertion, k=4, p=1)
            phases = np.stack(
                [
                    np.stack(
                        [
                            _correlate(h, stage.kernel[:, :, [1 - p, 3 - p]][:, :, :, [1 - q, 3 - q]], (0, 1, 0, 1))
                            for q in (0, 1)
                        ]
                    )
                    for p in (0, 1)
                ]
            )
            y = _interleave(phases)
        elif arch == "pixel_shuffle":
            phases = np.stack(
                [np.stack([_correlate(h, stage.kernel[p, q], (1, 1, 1, 1)) for q in (0, 1)]) for p in (0, 1)]
            )
            y = _interleave(phases)
        else:
            up = _upsample_nearest(h) if arch == "nearest_conv" else _upsample_bilinear(h)
            y = _correlate(up, stage.kernel, (1, 1, 1, 1))
        y += stage.bias[:, None, None, None]
        y += stage.noise_gain[:, None, None, None] * rng_noise
        y += stage.fixed_noise
        y[3:] = _leaky_relu(y[3:])
        return y

    def _forward(self, scenes: np.ndarray, noises: list[np.ndarray]) -> np.ndarray:
        """Run the decoder on ``scenes`` (B, s0, s0, 3) float32 with per-stage noises (1, B, S, S)."""
        wts = self._weights
        rgb = scenes.transpose(3, 0, 1, 2)  # (3, B, s0, s0)
        extra = _leaky_relu(np.tensordot(wts.mix_in, rgb - 0.5, axes=(1, 0)) + wts.const_input)
        h = np.concatenate([rgb, extra.astype(np.float32)], axis=0)
        for stage, noise in zip(wts.stages, noises):
            h = self._stage(h, stage, noise)
        extra = h[3:] - h[3:].mean(axis=(2, 3), keepdims=True)  # toRGB bias cancels the mean level
        out = h[:3] + np.tensordot(wts.to_rgb, extra, axes=(1, 0)) + wts.rgb_bias[:, None, None, None]
        out = np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
        return out.transpose(1, 2, 3, 0)  # (B, S, S, 3)

    def images(
        self, n: int, *, seed: int, jpeg_quality: int | None = None, batch_size: int = BATCH_SIZE
    ) -> Iterator[np.ndarray]:
        """Generate ``n`` images lazily (computed ``batch_size`` at a time).

        Parameters
        ----------
        n : int
            Number of images (>= 0).
        seed : int
            Non-negative; with the generator's seed it decides the scenes and the injected noise.
        jpeg_quality : int in [1, 100] or None, optional
            JPEG quality of every image; None (default) keeps them uncompressed.
        batch_size : int, optional
            Images per forward pass; results do not depend on it.

        Yields
        ------
        ndarray of uint8, shape (out_size, out_size, 3)
            Image ``i`` depends only on (generator, ``seed``, ``i``, ``jpeg_quality``).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        seed = _check_seed(seed)
        quality = _check_jpeg_quality(jpeg_quality)
        code = _ARCH_CODE[self.architecture]
        sizes = [self.in_size << (k + 1) for k in range(self.stages)]
        for start in range(0, int(n), int(batch_size)):
            idx = range(start, min(int(n), start + int(batch_size)))
            scenes, noises = [], [[] for _ in sizes]
            for i in idx:
                rng = _stream(_TAG_GENERATOR_IMAGES, code, self.seed, seed, i)
                scenes.append(natural_content((self.in_size, self.in_size), rng))
                for k, s in enumerate(sizes):
                    noises[k].append(rng.standard_normal((s, s), dtype=np.float32))
            batch = self._forward(np.stack(scenes), [np.stack(z)[None] for z in noises])
            for img in batch:
                yield _jpeg_roundtrip(img, quality) if quality is not None else np.ascontiguousarray(img)

    def generate(self, n: int, *, seed: int, jpeg_quality: int | None = None) -> list[np.ndarray]:
        """Generate ``n`` images; ``list(self.images(n, seed=seed, jpeg_quality=jpeg_quality))``.

        Parameters
        ----------
        n : int
            Number of images (>= 0).
        seed : int
            Non-negative seed of the scenes and injected noise (see ``images``).
        jpeg_quality : int in [1, 100] or None, optional
            JPEG quality; None (default) keeps the images uncompressed.

        Returns
        -------
        list of ndarray of uint8, shape (out_size, out_size, 3)
        """
        return list(self.images(n, seed=seed, jpeg_quality=jpeg_quality))


def make_generator(
    name: str, architecture: str, seed: int, *, out_size: int = 256, stages: int = 2
) -> SimulatedGenerator:
    """Build a ``SimulatedGenerator`` (see there); its weights are drawn on first use.

    Examples
    --------
    >>> make_generator("gan-b", "pixel_shuffle", 2).in_size
    64
    """
    return SimulatedGenerator(name=name, architecture=architecture, seed=seed, out_size=out_size, stages=stages)
