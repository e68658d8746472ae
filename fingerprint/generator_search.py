"""Where a query may sit in a generator fingerprint: alignment, shift search, resampled fingerprints.

A generator query may be the whole output (same size as the fingerprint), a crop at an unknown
offset, or a resized copy. Each possibility is a *hypothesis* scored with the same statistic,
``z = NCC sqrt(D)`` over the ``D`` values compared (per-channel means removed), and reported with
the number of positions it searched so that the decision (``fingerprint.generator_decision``)
can keep its false-alarm rate:

- ``"aligned"``: query and fingerprint of one size, compared at zero shift (1 position);
- ``"crop"``: a query smaller than the fingerprint, compared at every shift that keeps it inside
  (``(H - h + 1)(W - w + 1)`` positions, one FFT cross-correlation);
- ``"resize"``: the fingerprint resampled to the query's size (Pillow, bicubic by default), i.e.
  the whole output resized by ``(h / H, w / W)``, compared at zero shift (1 position). The
  up-sampling traces of a generator are periodic; resizing the whole image moves their spectral
  peaks with it, so the fingerprint is moved the same way. The factor is reported.

A query larger than the fingerprint is centre-cropped to it first (as the attribution does
today); a query larger in one side and smaller in the other is cropped to the common region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fingerprint.generator_decision import HypothesisScore

HYPOTHESES = ("aligned", "crop", "resize")
RESAMPLE_FILTERS = ("bicubic", "bilinear", "lanczos")

__all__ = ["HYPOTHESES", "FingerprintSearch", "QuerySpectrum", "ShiftResult", "aligned_z", "hypothesis_scores",
           "resample_fingerprint", "shift_search"]


def _centred(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a - a.mean(axis=(-2, -1), keepdims=True)


def _as_planes(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    a = a[None] if a.ndim == 2 else a
    if a.ndim != 3 or min(a.shape[1:]) < 1:
        raise ValueError(f"{name} must be (C, H, W) or (H, W), got shape {np.shape(a)}")
    return a


def aligned_z(residual: np.ndarray, fingerprint: np.ndarray) -> float:
    """``NCC(r, f) sqrt(D)`` of two same-shape arrays (C, H, W), per-channel means removed.

    0 when either is constant. ``D = C H W``.
    """
    r, f = _centred(_as_planes(residual, "residual")), _centred(_as_planes(fingerprint, "fingerprint"))
    if r.shape != f.shape:
        raise ValueError(f"residual {r.shape} and fingerprint {f.shape} differ in shape")
    den = math.sqrt(float((r * r).sum()) * float((f * f).sum()))
    return float((r * f).sum() / den * math.sqrt(r.size)) if den > 0 else 0.0


def _box_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of ``a`` (C, H, W) over every h x w window: (C, H - h + 1, W - w + 1), float64."""
    c = np.pad(a.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    return c[:, h:, w:] - c[:, :-h, w:] - c[:, h:, :-w] + c[:, :-h, :-w]


@dataclass(frozen=True)
class ShiftResult:
    """Best ``z`` over every shift, the fingerprint offset (top, left) where it occurs, and how many
    shifts were searched."""

    z: float
    offset: tuple[int, int]
    n_positions: int


class FingerprintSearch:
    """One fingerprint prepared for shift searches: its half spectrum and, per query size, the
    norms of all its regions, computed once (an attribution bank keeps one per generator).

    Parameters
    ----------
    fingerprint : ndarray, (C, H, W) or (H, W)
    """

    def __init__(self, fingerprint: np.ndarray):
        from scipy import fft

        self.F = np.asarray(_as_planes(fingerprint, "fingerprint"), dtype=np.float64)
        self.spectrum = fft.rfft2(self.F, workers=-1)
        self._norms: dict[tuple[int, int], np.ndarray] = {}

    def region_norms(self, h: int, w: int) -> np.ndarray:
        """``|F[:, t:t+h, l:l+w] - its channel means|`` for every offset: (H - h + 1, W - w + 1)."""
        if (h, w) not in self._norms:
            s1, s2 = _box_sums(self.F, h, w), _box_sums(self.F * self.F, h, w)
            self._norms[(h, w)] = np.sqrt(np.maximum((s2 - s1 * s1 / (h * w)).sum(0), 0.0))
        return self._norms[(h, w)]

    def search(self, residual: np.ndarray | QuerySpectrum) -> ShiftResult:
        """See :func:`shift_search`. ``residual`` may be a :class:`QuerySpectrum` of this
        fingerprint's size (one spectrum of a query serves every fingerprint of that size)."""
        from scipy import fft

        Cf, H, W = self.F.shape
        q = residual if isinstance(residual, QuerySpectrum) else QuerySpectrum(residual, (H, W))
        C, h, w = q.shape
        if C != Cf or h > H or w > W or q.size != (H, W):
            raise ValueError(f"residual {q.shape} must have the fingerprint's channels and fit inside {self.F.shape}")
        n_positions = (H - h + 1) * (W - w + 1)
        if q.norm == 0:
            return ShiftResult(0.0, (0, 0), n_positions)
        # channels summed in the frequency domain (the transform is linear): one inverse FFT
        spec = (q.conj_spectrum * self.spectrum).sum(0)
        corr = fft.irfft2(spec, s=(H, W), workers=-1)[: H - h + 1, : W - w + 1]
        norms = self.region_norms(h, w)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(norms > 0, corr / (norms * q.norm), 0.0) * math.sqrt(C * h * w)
        t, l = np.unravel_index(int(np.argmax(z)), z.shape)
        return ShiftResult(float(z[t, l]), (int(t), int(l)), n_positions)


class QuerySpectrum:
    """A query residual prepared for shift searches in fingerprints of size ``size`` = (H, W):
    per-channel centred (float64), its norm and the conjugate half spectrum of its zero-padded
    planes (C, H, W // 2 + 1), computed once for every fingerprint of that size."""

    def __init__(self, residual: np.ndarray, size: tuple[int, int]):
        from scipy import fft

        q = _centred(_as_planes(residual, "residual"))
        self.shape = q.shape
        self.size = (int(size[0]), int(size[1]))
        self.norm = math.sqrt(float((q * q).sum()))
        fits = q.shape[1] <= self.size[0] and q.shape[2] <= self.size[1]
        self.conj_spectrum = np.conj(fft.rfft2(q, s=self.size, workers=-1)) if fits and self.norm > 0 else None


def shift_search(residual: np.ndarray, fingerprint: np.ndarray | FingerprintSearch) -> ShiftResult:
    """``z = NCC sqrt(D)`` of a query residual at every offset inside a larger fingerprint.

    For the query ``q`` (C, h, w, per-channel centred) and each offset (t, l) with
    ``0 <= t <= H - h``, ``0 <= l <= W - w``::

        z(t, l) = sum_c <q_c, F_c[t:t+h, l:l+w]> / (|q| |F[t:t+h, l:l+w] - its channel means|) * sqrt(C h w)

    The correlations come from one circular cross-correlation per channel (``rfft2``; the
    zero-padded query never wraps at valid offsets), the region norms from box sums.

    Parameters
    ----------
    residual : ndarray, (C, h, w) or (h, w)
    fingerprint : ndarray, (C, H, W) or (H, W), with H >= h, W >= w and the same C; or a
        :class:`FingerprintSearch` (spectrum and region norms cached)

    Returns
    -------
    ShiftResult
    """
    prepared = fingerprint if isinstance(fingerprint, FingerprintSearch) else FingerprintSearch(fingerprint)
    return prepared.search(residual)


def resample_fingerprint(fingerprint: np.ndarray, shape: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """The fingerprint (C, H, W) resampled to ``shape`` = (h, w) per channel with a Pillow filter.

    Measured on ../shared/data/gan (benchmarks/gan_trust.py): bicubic resampling of the fingerprint
    keeps more of a bicubically resized query's score than band-limited (Fourier) cropping.
    """
    from PIL import Image

    if method not in RESAMPLE_FILTERS:
        raise ValueError(f"method must be one of {', '.join(RESAMPLE_FILTERS)}, got {method!r}")
    F = _as_planes(fingerprint, "fingerprint")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    resample = getattr(Image.Resampling, method.upper())
    out = np.empty((F.shape[0], h, w), np.float32)
    for c in range(F.shape[0]):
        plane = Image.fromarray(np.ascontiguousarray(F[c], dtype=np.float32), mode="F")
        out[c] = np.asarray(plane.resize((w, h), resample))
    return out


def _centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = a.shape[-2:]
    t, l = (H - h) // 2, (W - w) // 2
    return a[..., t: t + h, l: l + w]


def hypothesis_scores(generator: str, residual: np.ndarray, fingerprint: np.ndarray | FingerprintSearch, *,
                      resample: str = "bicubic") -> list[HypothesisScore]:
    """Every hypothesis that the shapes allow, scored (see the module docstring).

    Same size: ``aligned``. Smaller in both sides: ``crop`` (shift search) and ``resize``
    (fingerprint resampled to the query size, factor ``(h / H, w / W)``). Otherwise the common
    centred region is compared as ``aligned``.
    """
    R = _as_planes(residual, "residual")
    prepared = fingerprint if isinstance(fingerprint, FingerprintSearch) else None
    F = prepared.F if prepared is not None else _as_planes(fingerprint, "fingerprint")
    h, w = R.shape[1:]
    H, W = F.shape[1:]
    if (h, w) == (H, W):
        return [HypothesisScore(generator, "aligned", aligned_z(R, F))]
    if h <= H and w <= W:
        found = shift_search(R, prepared if prepared is not None else F)
        resized = resample_fingerprint(F, (h, w), resample)
        return [HypothesisScore(generator, "crop", found.z, found.n_positions, offset=found.offset, scale=(1.0, 1.0)),
                HypothesisScore(generator, "resize", aligned_z(R, resized), 1, offset=(0, 0), scale=(h / H, w / W))]
    ch, cw = min(h, H), min(w, W)
    return [HypothesisScore(generator, "aligned", aligned_z(_centre(R, ch, cw), _centre(F, ch, cw)))]
