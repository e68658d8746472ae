"""Streaming fingerprint estimators: camera PRNU (maximum likelihood) and generator mean residual.

Memory holds one image plus the running sums, whatever the number of images. The sums are what
the reference library stores, so a fingerprint can be extended later, and what Dask workers
reduce in parallel (``merge``).

Camera (docs/algorithm.md §5; Chen, Fridrich, Goljan, Lukas 2008), per channel c::

    W_c = noise_extract(X_c, sigma=3)      T_c = inten(X_c) * sat(X_c)
    S_c += W_c * T_c                       N_c += T_c**2
    K_c = S_c / (N_c + 1)  ->  ZeroMeanTotal per channel  ->  gray  ->  WienerInDFT(std(K))

Generator (docs/algorithm.md §6; Marra et al. 2019)::

    F = (1/N) sum_i R_i,   R_i = generator_residual(X_i)  (per-channel noise, optional gray/ZMT)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.residual import extract_noise
from kernels._backend import resolve_backend
from kernels.estimate_cpu import _accumulate, _accumulate_ml, _ml_ratio
from kernels.spec import FINGERPRINT_SIGMA, GRAY_WEIGHTS, LEVELS, WAVELET, check_image, check_residual_params, value_scale
from kernels.spectral_cpu import wiener_dft, zero_mean_total
from reference_db.schema import KINDS  # re-exported: the legal kinds are the library's

__all__ = [
    "KINDS",
    "KIND_DEFAULTS",
    "CameraAccumulator",
    "FingerprintParams",
    "GeneratorAccumulator",
    "generator_residual",
    "new_accumulator",
]

#: Default estimator parameters of each kind: the one place they are written. A field of
#: :class:`FingerprintParams` left at None takes its kind's value from here.
#: Cameras: Binghamton's sigma 3 (Chen, Fridrich, Goljan, Lukas 2008). Generators: measured on
#: shared/data/gan (benchmarks/gan_experiments.py, RESULTS.md): colour, sigma 5, no ZeroMeanTotal,
#: spectral self-whitening and a Wiener-shrunk mean.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "camera": dict(sigma=FINGERPRINT_SIGMA, color=True, zero_mean=True, whiten=False, shrink=False),
    "generator": dict(sigma=5.0, color=True, zero_mean=False, whiten=True, shrink=True),
}


@dataclass(frozen=True)
class FingerprintParams:
    """How a fingerprint (and the residuals compared with it) are computed.

    Stored with every reference in the library; queries are processed with the same values.
    ``sigma``, ``color``, ``zero_mean``, ``whiten`` and ``shrink`` left at None take the value of
    :data:`KIND_DEFAULTS` for ``kind``, so ``FingerprintParams(kind="generator")`` is the
    generator default (and ``from_dict`` of a stored dict lacking a key reads the kind's default).
    """

    kind: str = "camera"
    sigma: float | None = None  # wavelet denoiser noise std of the estimator (grey levels)
    levels: int = LEVELS
    wavelet: str = WAVELET
    color: bool | None = None  # generators: keep 3 colour channels (False: gray)
    zero_mean: bool | None = None  # generators: ZeroMeanTotal on each channel's residual
    whiten: bool | None = None  # generators: spectral self-whitening of each residual channel
    shrink: bool | None = None  # generators: per-frequency Wiener shrinkage of the mean (needs the "power" sum)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.wavelet != WAVELET:
            raise ValueError(f"only the {WAVELET!r} wavelet is implemented, got {self.wavelet!r}")
        for key, value in KIND_DEFAULTS[self.kind].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)  # frozen: set once, here
        check_residual_params(self.sigma, self.levels)  # refuse sigma 1e300 (NaN fingerprint) or 1e-30 (zeros)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FingerprintParams:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key, typ in (("sigma", float), ("levels", int), ("color", bool), ("zero_mean", bool),
                         ("whiten", bool), ("shrink", bool)):
            if key in known:
                known[key] = typ(known[key])
        return cls(**known)


def _zero_mean_planes(planes: np.ndarray) -> np.ndarray:
    for k in range(planes.shape[0]):
        zero_mean_total(planes[k], out=planes[k])
    return planes


def _to_gray(planes: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) with Binghamton's weights (C = 3), or the single plane (C = 1)."""
    if planes.shape[0] == 1:
        return planes[0]
    g = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
    return np.tensordot(g, planes, axes=1).astype(np.float32, copy=False)


def whitening_window(shape: tuple[int, int]) -> int:
    """Width (odd, in frequency bins) of the spectral smoothing of ``self_whiten``: min(H, W) // 8."""
    return (min(shape) // 8) | 1


def self_whiten(planes: np.ndarray) -> np.ndarray:
    """Divide each channel's spectrum by its own smoothed magnitude (spectral self-whitening).

    Per channel: ``F = DFT2(r)``, ``P = box_w(|F|^2)`` (w x w moving average over frequencies,
    circular, ``w = whitening_window``), ``r <- real(IDFT2(F / sqrt(P + 1e-12 mean(P))))``.
    The smooth, content-driven colouring of the residual spectrum is removed while narrow
    periodic peaks (up-sampling traces) and the phase survive, so the NCC of whitened residuals
    is close to a matched filter. Uses only the image itself.

    Parameters
    ----------
    planes : ndarray of float32, shape (C, H, W)

    Returns
    -------
    ndarray of float32, shape (C, H, W)
    """
    from scipy import fft, ndimage

    w = whitening_window(planes.shape[1:])
    out = np.empty_like(planes)
    for c in range(planes.shape[0]):
        f = fft.fft2(planes[c], workers=-1)
        power = ndimage.uniform_filter((f.real**2 + f.imag**2).astype(np.float32), size=w, mode="wrap")
        f /= np.sqrt(power + np.float32(1e-12) * power.mean() + np.float32(1e-30))
        out[c] = fft.ifft2(f, workers=-1).real
    return out


def generator_residual(image: np.ndarray, params: FingerprintParams, *, backend: str = "cpu") -> np.ndarray:
    """Residual used for generator fingerprints and generator queries (docs/algorithm.md §6).

    Per-channel ``noise_extract`` with ``params.sigma`` (no DFT Wiener: the periodic peaks are the
    signal), then ZeroMeanTotal per channel if ``params.zero_mean``, spectral self-whitening if
    ``params.whiten``, gray if not ``params.color``. ``backend`` (``"cpu"``, ``"cuda"``, ``"auto"``)
    is that of the noise (``extract_noise``); the later steps run on the CPU (no GPU twin).

    Returns
    -------
    ndarray of float32, shape (C, H, W) with C = 3 (colour, RGB input), else (1, H, W).
    """
    planes = extract_noise(image, params.sigma, params.levels, backend=backend)
    if params.zero_mean:
        _zero_mean_planes(planes)
    if params.whiten:
        planes = self_whiten(planes)
    if not params.color and planes.shape[0] == 3:
        planes = _to_gray(planes)[None]
    return planes


@dataclass
class _Accumulator:
    params: FingerprintParams
    shape: tuple[int, int] | None = None  # (H, W) of every image
    channels: int | None = None
    n_images: int = 0
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    # where each image's noise is computed: "auto", "cpu" or "cuda" (kernels._backend), resolved once,
    # at the first image (its size decides "auto"); the running sums stay on the host either way
    backend: str = "auto"

    def _backend_for(self, image: np.ndarray) -> str:
        """``backend``, fixed at the first image: ``"auto"`` becomes ``"cpu"`` or ``"cuda"`` by its size."""
        self.backend = resolve_backend(self.backend, image)
        return self.backend

    def check(self, image: np.ndarray, name: str) -> np.ndarray:
        """Validate ``image`` (named ``name`` in errors) and fix, on the first image, the shape and channels
        every later image of this accumulator must have."""
        image = check_image(image, name)
        shape = tuple(image.shape[:2])
        channels = 1 if image.ndim == 2 else 3
        if self.shape is None:
            self.shape, self.channels = shape, channels
        elif shape != self.shape:
            raise ShapeMismatchError(
                f"{name}: {shape[0]}x{shape[1]} pixels, but this fingerprint is {self.shape[0]}x{self.shape[1]}; "
                "centre-crop every image to a common size (crop=(h, w) in Python, --crop HxW on the command line)"
            )
        elif channels != self.channels:
            raise InvalidImageError(f"{name}: has {channels} channel(s), earlier images had {self.channels}")
        return image

    def merge(self, other: _Accumulator) -> _Accumulator:
        """Add another accumulator's sums into this one (partial sums of a parallel build)."""
        if other.n_images == 0:
            return self
        if self.n_images == 0:
            self.shape, self.channels = other.shape, other.channels
            self.sums = {k: v.copy() for k, v in other.sums.items()}
            self.n_images = other.n_images
            return self
        if other.params != self.params or other.shape != self.shape or other.sums.keys() != self.sums.keys():
            raise ShapeMismatchError(f"cannot merge sums of {other.shape} {other.params} into {self.shape} {self.params}")
        for k, v in other.sums.items():
            if v.shape != self.sums[k].shape:
                raise ShapeMismatchError(f"sum {k!r}: existing {self.sums[k].shape} vs new {v.shape}")
            for c in range(v.shape[0]):
                _accumulate(v[c], self.sums[k][c])
        self.n_images += other.n_images
        return self

    @classmethod
    def from_sums(cls, params: FingerprintParams, sums: dict[str, np.ndarray], n_images: int):
        any_sum = next(iter(sums.values()))
        sums = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sums.items()}
        return cls(params=params, shape=tuple(any_sum.shape[1:]), channels=any_sum.shape[0], n_images=int(n_images), sums=sums)


class CameraAccumulator(_Accumulator):
    """Running sums ``S`` and ``N`` (each float32, shape (C, H, W)) of the camera ML estimator."""

    def add(self, image: np.ndarray, name: str = "image") -> None:
        """Add one image (uint8/uint16, H x W [x 3]) of the camera."""
        image = self.check(image, name)
        noise = extract_noise(image, self.params.sigma, self.params.levels, backend=self._backend_for(image))
        planes = image[..., None] if image.ndim == 2 else image
        if not self.sums:
            zeros = np.zeros(noise.shape, dtype=np.float32)
            self.sums = {"S": zeros, "N": zeros.copy()}
        scale = value_scale(image.dtype)
        for c in range(noise.shape[0]):
            _accumulate_ml(noise[c], planes[..., c], scale, self.sums["S"][c], self.sums["N"][c])
        self.n_images += 1

    def fingerprint(self) -> np.ndarray:
        """The camera fingerprint K, float32 (H, W): S/(N+1), ZeroMeanTotal, gray, WienerInDFT."""
        if self.n_images == 0:
            raise ValueError("no images were added; a fingerprint needs at least one")
        s, n = self.sums["S"], self.sums["N"]
        k = np.empty_like(s)
        for c in range(s.shape[0]):
            _ml_ratio(s[c], n[c], k[c])
            zero_mean_total(k[c], out=k[c])
        gray = np.ascontiguousarray(_to_gray(k))
        std = float(np.std(gray, ddof=1, dtype=np.float64))
        return wiener_dft(gray, std)


def _half_spectrum(planes: np.ndarray) -> np.ndarray:
    """``rfft2`` of each channel with its DC bin zeroed (complex64, shape (C, H, W // 2 + 1))."""
    from scipy import fft

    y = fft.rfft2(planes, axes=(-2, -1), workers=-1)
    y[:, 0, 0] = 0
    return y


class GeneratorAccumulator(_Accumulator):
    """Running sums of generator residuals R_i (float32, shape (C, H, W)).

    ``sum`` = sum_i R_i, and with ``params.shrink`` also ``power`` = sum_i |Y_i|**2 (float32,
    shape (C, H, W // 2 + 1)), ``Y_i`` the half spectrum of R_i with DC zeroed, from which the
    per-frequency variance across images is known.
    """

    def add(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Add one image (uint8/uint16, H x W [x 3]) of the generator; returns its residual (C, H, W)."""
        image = self.check(image, name)
        r = generator_residual(image, self.params, backend=self._backend_for(image))
        if not self.sums:
            self.sums = {"sum": np.zeros(r.shape, dtype=np.float32)}
            if self.params.shrink:
                self.sums["power"] = np.zeros((r.shape[0], r.shape[1], r.shape[2] // 2 + 1), dtype=np.float32)
        power = None
        if self.params.shrink:  # computed before any sum changes: a MemoryError here leaves the sums as they were
            y = _half_spectrum(r)
            power = (y.real**2 + y.imag**2).astype(np.float32)
        for c in range(r.shape[0]):
            _accumulate(r[c], self.sums["sum"][c])
            if power is not None:
                _accumulate(power[c], self.sums["power"][c])
        self.n_images += 1
        return r

    def fingerprint(self) -> np.ndarray:
        """The generator fingerprint, float32 (C, H, W).

        The mean residual ``F = sum / n``; with ``params.shrink``, each frequency of its spectrum
        ``M`` is multiplied by the Wiener gain ``max(0, 1 - V / (n |M|^2))``, where
        ``V = max(power - n |M|^2, 0) / (n - 1)`` is the variance of that frequency across the
        images: frequencies whose mean does not stand above its own estimation noise are zeroed.
        """
        from scipy import fft

        n = self.n_images
        if n == 0:
            raise ValueError("no images were added; a fingerprint needs at least one")
        mean = (self.sums["sum"] / np.float32(n)).astype(np.float32)
        if not self.params.shrink or n < 2:
            return mean
        m = _half_spectrum(mean)
        m2 = (m.real.astype(np.float64) ** 2 + m.imag.astype(np.float64) ** 2)
        var = np.maximum(self.sums["power"] - n * m2, 0.0) / (n - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(m2 > 0, np.maximum(0.0, 1.0 - var / (n * m2)), 0.0)
        m *= gain.astype(np.float32)
        return fft.irfft2(m, s=mean.shape[1:], axes=(-2, -1), workers=-1).astype(np.float32)


def new_accumulator(params: FingerprintParams, *, backend: str = "auto") -> _Accumulator:
    """An empty accumulator of the right kind for ``params``; ``backend`` as in ``_Accumulator``."""
    kind = CameraAccumulator if params.kind == "camera" else GeneratorAccumulator
    return kind(params, backend=backend)
