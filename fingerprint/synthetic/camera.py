"""Simulated cameras: a sensor with its own PRNU factor ``K`` photographs scenes.

``SimulatedCamera`` turns a display-referred scene ``Y`` into an 8-bit frame
``I = quantize(gamma(Y (1 + K) + shot + read noise))``, optionally JPEG-compressed; ``make_camera``
builds one from a name and a seed. The scenes come from ``fingerprint.synthetic.scene``. NumPy,
SciPy and Pillow only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from fingerprint.synthetic._common import (
    _TAG_CAMERA_IMAGES,
    _TAG_PRNU,
    _check_count,
    _check_jpeg_quality,
    _check_seed,
    _check_shape,
    _jpeg_roundtrip,
    _stream,
)
from fingerprint.synthetic.scene import flat_field, natural_content
from kernels.spec import MIN_SIZE

__all__ = ["SimulatedCamera", "make_camera"]

# --- tunables of the sensor model (documented in ``SimulatedCamera``) -------------------------------
PRNU_STD_RANGE = (0.005, 0.02)  # valid PRNU strengths (std of K)
GAMMA = 2.2  # display gamma: content is display-referred, the sensor sees content ** GAMMA
FULL_WELL = 20000.0  # electrons at full scale (shot noise std = sqrt(electrons))
READ_NOISE = 4.0  # electrons, std of the read noise
EXPOSURE_RANGE = (0.75, 1.0)  # fraction of full well reached by content value 1.0, per capture


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
        Sensor size, default (256, 256); each side at least ``kernels.spec.MIN_SIZE`` (16).
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
    which is what ganprint's camera detector correlates with ``I K`` (docs/algorithm.md §7.4).

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
        # frames go through the residual, so the sensor is at least the residual's smallest size
        object.__setattr__(self, "shape", _check_shape(self.shape, minimum=MIN_SIZE))
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
        n = _check_count(n)
        seed = _check_seed(seed)
        _check_jpeg_quality(jpeg_quality)
        for i in range(n):
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
