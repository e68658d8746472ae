"""Simulated generators: fixed, seeded, random up-sampling decoders with GAN-like periodic traces.

``SimulatedGenerator`` turns low-resolution ``natural_content`` scenes into colour images through
``stages`` x2 up-sampling stages (transposed convolution, nearest or bilinear up-sampling followed
by a convolution, or pixel shuffle), which leave the periodic traces real GANs leave;
``make_generator`` builds one from a name, an architecture and a seed. The layers (multi-channel
cross-correlation, up-sampling, depth to space) are written here in NumPy. NumPy and Pillow only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fingerprint.synthetic._common import (
    _TAG_GENERATOR_IMAGES,
    _TAG_WEIGHTS,
    _check_count,
    _check_jpeg_quality,
    _check_seed,
    _jpeg_roundtrip,
    _stream,
)
from fingerprint.synthetic.scene import natural_content

__all__ = ["ARCHITECTURES", "SimulatedGenerator", "make_generator"]

# --- tunables of the decoder (documented in ``SimulatedGenerator``) ---------------------------------
ARCHITECTURES = ("transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle")
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
_ARCH_CODE = {name: i for i, name in enumerate(ARCHITECTURES)}


# --- layers -----------------------------------------------------------------------------------------
def _leaky_relu(x: np.ndarray) -> np.ndarray:
    """Leaky ReLU ``phi(x) = max(x, s x)`` with slope ``s = LEAKY_SLOPE``."""
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


# --- weights ----------------------------------------------------------------------------------------
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
        n = _check_count(n)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        seed = _check_seed(seed)
        quality = _check_jpeg_quality(jpeg_quality)
        code = _ARCH_CODE[self.architecture]
        sizes = [self.in_size << (k + 1) for k in range(self.stages)]
        for start in range(0, n, int(batch_size)):
            idx = range(start, min(n, start + int(batch_size)))
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
