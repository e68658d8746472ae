"""Generator attribution that keeps its false-alarm rate: build-time statistics and query decisions.

The whole generator side of ``attribute`` (issue 11), on top of the pure pieces:
``generator_search`` (hypotheses: aligned, shift search of crops, resampled fingerprint for
resized copies), ``generator_decision`` (texture gate, null models, genuine ranges, the answer) and
``default_null`` (simulated camera photos, so that a one-generator library has a null).

The statistics it reads (keys ``gnull:``, ``ggen:``, ``gjpeg:``) are written at ``build`` and
``calibrate`` by ``generator_stats``, whose docstring lists them.

Every non-matching or genuine image is scored in several *versions* (:func:`versions`): as it is,
re-saved as JPEG, cropped at a random offset and resized to each size of :data:`SCALES`; the
random choices come from the pixels' SHA-256, so they are reproducible.

A query is decided per image over all generators at a false-alarm rate ``fpr`` *per image*: each
generator gets ``fpr / G`` and each hypothesis of a generator its share of that (Bonferroni).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from fingerprint.decision import ReferenceScore
from fingerprint.estimate import FingerprintParams, _zero_mean_planes
from fingerprint.generator_decision import (GeneratorDecision, GenuineRange, HypothesisScore, NullModel, ResidualStats,
                                            decide, nearest_size, off_grid_check, residual_statistics)
from fingerprint.generator_search import FingerprintSearch, QuerySpectrum, aligned_z, resample_fingerprint

SCALES = (0.9, 0.75, 0.625, 0.5)  # query sizes (x the fingerprint's) with their own null and genuine range
GENUINE_QUALITIES = (90, 75)  # JPEG re-saves of the references with their own genuine range (aligned)
JPEG_FINGERPRINT_QUALITIES: tuple[int, ...] = ()
"""Qualities of the compression-matched fingerprints a build stores (references re-saved at Q), and
that ``load_generator_models`` uses; empty: none (the default). Measured with ``(90, 75)``
(benchmarks/RESULTS.md, 2026-12-02): JPEG q75-90 queries gain 2-7 points of closed-set and matched,
q95 loses 4 points of matched, negatives stay 100 % unknown, and builds take about 2.5x longer; the
gain did not pay for the build time, so it is off. Set it to ``(90, 75)`` before building to use it."""
JPEG_STAT_QUALITIES = (95, 90, 85, 80, 75, 70)  # re-saves of null and genuine images, each under the nearest Q
LOSSLESS_QUALITY = 98  # a JPEG query of this quality or more is compared as a lossless image
NULL_JPEG = 80  # the default null's full-size images are also scored re-saved at this quality
DEFAULT_FPR = 0.01  # per image, over every generator and hypothesis
NULL_CAMERAS, NULL_PER_CAMERA = 6, 8  # default null: simulated cameras x photos each
MAX_GENUINE_IMAGES = 48  # leave-one-out scores from at most this many source images per build (generator_stats)
NULL_PREFIX, GENUINE_PREFIX, JPEG_PREFIX = "gnull", "ggen", "gjpeg"
JPEG_HYPOTHESIS = "jpeg"  # "jpeg@q<Q>": a JPEG query against the fingerprint of references re-saved at Q
OFFGRID = "offgrid"  # "offgrid@q<Q>": the null of a JPEG query's aligned score with its 8 x 8 block grid removed

__all__ = ["DEFAULT_FPR", "ArrayRecord", "GeneratorModel", "GeneratorModels", "StatRecord", "decide_one", "genuine_key",
           "load_generator_models", "nearest_quality", "null_key", "query_residual", "score_generators", "stat_sizes",
           "versions"]


# ---------------------------------------------------------------------------------------- keys
def stat_sizes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The smaller query sizes with their own statistics for a fingerprint of ``shape`` (H, W)."""
    H, W = int(shape[0]), int(shape[1])
    out = []
    for s in SCALES:
        size = (max(8, round(H * s)), max(8, round(W * s)))
        if size not in out and size[0] < H and size[1] < W:
            out.append(size)
    return out


def nearest_quality(qualities: Iterable[int], quality: int) -> int:
    """The quality of ``qualities`` nearest ``quality``, ties to the higher."""
    return min(qualities, key=lambda q: (abs(q - quality), -q))


def null_key(generator: str, hypothesis: str, size: tuple[int, int]) -> str:
    return f"{NULL_PREFIX}:{generator}:{hypothesis}:{size[0]}x{size[1]}"


def jpeg_fingerprint_key(generator: str, quality: int) -> str:
    """Calibration dataset of a compression-matched fingerprint: its values (C*H*W, float32 as
    float64), then the generator's image count when it was computed (a check that it is current)."""
    return f"{JPEG_PREFIX}:{generator}:q{int(quality)}"


def genuine_key(generator: str, hypothesis: str, size: tuple[int, int], quality: int | None = None) -> str:
    q = f"@q{quality}" if quality else ""
    return f"{GENUINE_PREFIX}:{generator}:{hypothesis}{q}:{size[0]}x{size[1]}"


@dataclass(frozen=True)
class ArrayRecord:
    """A whole calibration dataset for the library (replaced, not appended): a compression-matched
    fingerprint (:func:`jpeg_fingerprint_key`)."""

    key: str
    values: np.ndarray
    generator: str  # the owner: the dataset follows it on rename and goes with it on remove


@dataclass(frozen=True)
class StatRecord:
    """One value for the library: calibration dataset ``key``, keyed by (``sha256``, ``generator``)."""

    key: str
    generator: str
    sha256: str
    value: float


# -------------------------------------------------------------------------------- residuals
def query_residual(image: np.ndarray, params: FingerprintParams, backend: str = "cpu") -> tuple[np.ndarray, ResidualStats]:
    """The generator residual of an image (as ``estimate.generator_residual``, the same values) and
    its testability statistics, measured on the noise before whitening (the whitening's spectra
    serve both)."""
    from fingerprint.residual import extract_noise

    planes = extract_noise(image, params.sigma, params.levels, backend=backend)
    if params.zero_mean:
        _zero_mean_planes(planes)
    clip = image if image.shape[:2] == planes.shape[1:] else None
    if params.whiten:
        white, power = _whiten_with_power(planes)
        stats = residual_statistics(planes, clip, power=power)
        planes = white
    else:
        stats = residual_statistics(planes, clip)
    if not params.color and planes.shape[0] == 3:
        from kernels.spec import GRAY_WEIGHTS

        planes = np.tensordot(np.asarray(GRAY_WEIGHTS, np.float32), planes, axes=1)[None]
    return planes, stats


def _whiten_with_power(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``estimate.self_whiten(planes)`` (the same operations, so the same values) and the power
    spectrum it computes, summed over channels with the DC bin zeroed (float64 (H, W): the spectrum
    of the per-channel centred planes, ``residual_statistics``' ``power``)."""
    from scipy import fft, ndimage

    from fingerprint.estimate import whitening_window

    w = whitening_window(planes.shape[1:])
    out = np.empty_like(planes)
    total = np.zeros(planes.shape[1:], np.float64)
    for c in range(planes.shape[0]):
        f = fft.fft2(planes[c], workers=-1)
        raw = (f.real**2 + f.imag**2).astype(np.float32)
        total += raw
        power = ndimage.uniform_filter(raw, size=w, mode="wrap")
        f /= np.sqrt(power + np.float32(1e-12) * power.mean() + np.float32(1e-30))
        out[c] = fft.ifft2(f, workers=-1).real
    total[0, 0] = 0.0
    return out, total


def _sha(image: np.ndarray, spec: str) -> str:
    h = hashlib.sha256(np.ascontiguousarray(image).tobytes())
    h.update(f"{image.shape}{image.dtype}{spec}".encode())
    return h.hexdigest()


def versions(image: np.ndarray, shape: tuple[int, int], *, qualities: Sequence[int] = (),
             seed: str = "") -> Iterable[tuple[str, int | None, np.ndarray]]:
    """``(spec, jpeg quality or None, image)``: the image as it is and re-saved at each of ``qualities``
    (when it has the fingerprint's ``shape``), then cropped at a random offset and resized to each
    :func:`stat_sizes` size. Random offsets come from ``seed`` (default: the pixels' SHA-256)."""
    from fingerprint.transforms import apply_pipeline

    rng = np.random.default_rng(int((seed or _sha(image, ""))[:16], 16))
    if image.shape[:2] == tuple(shape):
        yield "none", None, image
        for q in qualities:
            yield f"jpeg:{q}", q, apply_pipeline(image, f"jpeg:{q}").image
    for h, w in stat_sizes(shape):
        if image.shape[0] >= h and image.shape[1] >= w:
            yield f"crop:{h}x{w}", None, apply_pipeline(image, f"crop:{h}x{w}", rng).image
        yield f"resize:{h}x{w}", None, apply_pipeline(image, f"resize:{h}x{w}").image


# ------------------------------------------------------------------------------------ models
@dataclass
class GeneratorModel:
    """One generator prepared for queries: fingerprint, shift-search cache, resampled copies and the
    stored statistics (null models and genuine ranges by (hypothesis, size))."""

    name: str
    params: FingerprintParams
    F: np.ndarray
    nulls: dict[tuple[str, tuple[int, int]], np.ndarray] = field(default_factory=dict)
    genuine: dict[tuple[str, tuple[int, int]], np.ndarray] = field(default_factory=dict)
    jpeg: dict[int, np.ndarray] = field(default_factory=dict)  # JPEG quality -> compression-matched fingerprint

    def __post_init__(self) -> None:
        self.F = np.asarray(self.F, dtype=np.float32)
        self.F = self.F[None] if self.F.ndim == 2 else self.F
        self._search: FingerprintSearch | None = None
        self._resampled: dict[tuple[int, int], np.ndarray] = {}
        self._resampled_unit: dict[tuple[int, int], np.ndarray] = {}
        self._unit = _unit(self.F)  # centred, unit-norm fingerprint: aligned z is one dot product
        self.jpeg = {int(q): np.asarray(f, np.float32).reshape(self.F.shape) for q, f in self.jpeg.items()}
        self._jpeg_units = {q: _unit(f) for q, f in self.jpeg.items()}
        self._null_models: dict = {}
        self._genuine_models: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.F.shape[1:])

    def resampled(self, size: tuple[int, int]) -> np.ndarray:
        if size not in self._resampled:
            self._resampled[size] = resample_fingerprint(self.F, size)
        return self._resampled[size]

    def _resampled_direction(self, size: tuple[int, int]) -> np.ndarray:
        """The resampled fingerprint, per-channel centred, flattened, unit norm (float64), once per size."""
        if size not in self._resampled_unit:
            f = self.resampled(size).astype(np.float64)
            f = (f - f.mean(axis=(-2, -1), keepdims=True)).ravel()
            norm = math.sqrt(float(f @ f))
            self._resampled_unit[size] = f / norm if norm > 0 else f
        return self._resampled_unit[size]

    def jpeg_hypothesis(self, quality: int | None) -> str | None:
        """The compression-matched hypothesis for a JPEG query of ``quality``: ``"jpeg@q<Q>"``, Q the
        stored quality nearest it (ties to the higher), or None (not a JPEG, none stored, or q >= 98)."""
        if quality is None or not self.jpeg or quality >= LOSSLESS_QUALITY:
            return None
        return f"{JPEG_HYPOTHESIS}@q{nearest_quality(self.jpeg, quality)}"

    def hypotheses(self, R: np.ndarray, query: QueryResidual | None = None,
                   quality: int | None = None) -> list[HypothesisScore]:
        """The hypotheses the query's size allows, scored (``generator_search`` conventions).

        ``query``: the same residual wrapped in a :class:`QueryResidual`, whose unit vector and
        spectra are computed once for every generator it is compared with (same scores).
        ``quality``: a JPEG query's quality; with compression-matched fingerprints (``jpeg``) a
        query of the fingerprint's size is also compared with the one of the nearest quality."""
        F = self.F
        if R.shape[0] != F.shape[0]:
            from kernels.spec import GRAY_WEIGHTS

            g = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
            R = np.tensordot(g, R, axes=1)[None] if R.shape[0] == 3 else R
            F = np.tensordot(g, F, axes=1)[None] if F.shape[0] == 3 else F
            if F is not self.F:  # a gray query against a colour fingerprint: no cached search
                return _hypotheses_plain(self.name, R, F)
            query = None
        q = query if query is not None and query.R is R else QueryResidual(R)
        h, w = R.shape[1:]
        H, W = F.shape[1:]
        if (h, w) == (H, W):
            out = [HypothesisScore(self.name, "aligned", float(np.dot(q.unit, self._unit)) * math.sqrt(R.size))]
            hyp = self.jpeg_hypothesis(quality) if F is self.F else None
            if hyp is not None:
                unit = self._jpeg_units[int(hyp.split("@q")[1])]
                out.append(HypothesisScore(self.name, hyp, float(np.dot(q.unit, unit)) * math.sqrt(R.size)))
            return out
        if h <= H and w <= W:
            if self._search is None:
                self._search = FingerprintSearch(F)
            found = self._search.search(q.spectrum((H, W)))
            rz = float(q.centred @ self._resampled_direction((h, w))) / q.norm * math.sqrt(R.size) if q.norm > 0 else 0.0
            return [HypothesisScore(self.name, "crop", found.z, found.n_positions, offset=found.offset, scale=(1.0, 1.0)),
                    HypothesisScore(self.name, "resize", rz, 1, offset=(0, 0), scale=(h / H, w / W))]
        ch, cw = min(h, H), min(w, W)
        return [HypothesisScore(self.name, "aligned", aligned_z(_centre(R, ch, cw), _centre(F, ch, cw)))]

    def null_for(self, hypothesis: str, size: tuple[int, int], quality: int | None = None) -> NullModel | None:
        """The null model for a hypothesis at the stored size nearest ``size`` (None: none stored);
        a JPEG query's ``"aligned"`` hypothesis meets ``aligned@q<Q>`` when stored (``_at_quality``)."""
        key = (hypothesis, tuple(size), quality)
        if key not in self._null_models:
            self._null_models[key] = self._null_for(hypothesis, size, quality)
        return self._null_models[key]

    def _at_quality(self, hypothesis: str, quality: int | None, stored: dict) -> str:
        """``aligned@q<Q>`` for a JPEG query's ``"aligned"`` (quality < ``LOSSLESS_QUALITY``), Q the
        nearest of ``GENUINE_QUALITIES`` in ``stored`` (``nulls``, ``genuine``); else ``hypothesis``."""
        if hypothesis == "aligned" and quality is not None and quality < LOSSLESS_QUALITY:
            qs = [q for q in GENUINE_QUALITIES if (f"aligned@q{q}", self.shape) in stored]
            if qs:
                return f"aligned@q{nearest_quality(qs, quality)}"
        return hypothesis

    def _null_for(self, hypothesis: str, size: tuple[int, int], quality: int | None) -> NullModel | None:
        name = self._at_quality(hypothesis, quality, self.nulls)
        size = (self.shape if hypothesis in ("aligned",) or hypothesis.startswith(JPEG_HYPOTHESIS) else size)
        sizes = [s for (h, s) in self.nulls if h == name]
        if not sizes:
            return None
        s = nearest_size(sizes, size)
        positions = (self.shape[0] - s[0] + 1) * (self.shape[1] - s[1] + 1) if hypothesis == "crop" else 1
        return NullModel(self.name, name, s, self.nulls[(name, s)], positions)

    def offgrid_null(self, hypothesis: str, size: tuple[int, int], quality: int | None) -> NullModel | None:
        """The null of a JPEG query's score under ``hypothesis`` with its block grid removed: ``offgrid@q<Q>``
        (Q nearest ``quality``) for ``"aligned"``, ``offgrid-crop|resize`` at the size nearest ``size``
        for the others; when not stored, :meth:`null_for` (scores with the grid kept: stricter)."""
        if hypothesis == "aligned" and quality is not None:
            qs = [q for q in GENUINE_QUALITIES if (f"{OFFGRID}@q{q}", self.shape) in self.nulls]
            if qs:
                name = f"{OFFGRID}@q{nearest_quality(qs, quality)}"
                return NullModel(self.name, name, self.shape, self.nulls[(name, self.shape)], 1)
        elif hypothesis in ("crop", "resize"):
            name = f"{OFFGRID}-{hypothesis}"
            sizes = [s for (h, s) in self.nulls if h == name]
            if sizes:
                s = nearest_size(sizes, size)
                positions = (self.shape[0] - s[0] + 1) * (self.shape[1] - s[1] + 1) if hypothesis == "crop" else 1
                return NullModel(self.name, name, s, self.nulls[(name, s)], positions)
        return self.null_for(hypothesis, size, quality)

    def genuine_for(self, hypothesis: str, size: tuple[int, int], quality: int | None) -> GenuineRange | None:
        """The genuine range for a hypothesis near ``size`` (JPEG queries: near their quality)."""
        key = (hypothesis, tuple(size), quality)
        if key not in self._genuine_models:
            self._genuine_models[key] = self._genuine_for(hypothesis, size, quality)
        return self._genuine_models[key]

    def _genuine_for(self, hypothesis: str, size: tuple[int, int], quality: int | None) -> GenuineRange | None:
        name = self._at_quality(hypothesis, quality, self.genuine)  # a JPEG query: the range at its quality
        size = self.shape if hypothesis == "aligned" or hypothesis.startswith(JPEG_HYPOTHESIS) else size
        sizes = [s for (h, s) in self.genuine if h == name]
        if not sizes:
            return None
        s = nearest_size(sizes, size)
        return GenuineRange(self.name, name, s, self.genuine[(name, s)])


class QueryResidual:
    """One query residual R (C, H, W) with what every generator of its size compares it with,
    computed on first use: its unit vector (float32, as ``_unit``), its per-channel centred
    values (float64, flattened) and norm, and its spectrum per fingerprint size
    (``generator_search.QuerySpectrum``)."""

    def __init__(self, R: np.ndarray):
        self.R = R
        self._unit: np.ndarray | None = None
        self._centred: np.ndarray | None = None
        self._norm = 0.0
        self._spectra: dict[tuple[int, int], QuerySpectrum] = {}

    @property
    def unit(self) -> np.ndarray:
        if self._unit is None:
            self._unit = _unit(self.R)
        return self._unit

    @property
    def centred(self) -> np.ndarray:
        if self._centred is None:
            r = self.R.astype(np.float64)
            self._centred = (r - r.mean(axis=(-2, -1), keepdims=True)).ravel()
            self._norm = math.sqrt(float(self._centred @ self._centred))
        return self._centred

    @property
    def norm(self) -> float:
        """``|centred|``."""
        self.centred  # noqa: B018 - computes the norm with the centred values
        return self._norm

    def spectrum(self, size: tuple[int, int]) -> QuerySpectrum:
        if size not in self._spectra:
            self._spectra[size] = QuerySpectrum(self.R, size)
        return self._spectra[size]


def _unit(a: np.ndarray) -> np.ndarray:
    """Flattened, per-channel-centred, unit-norm float32 (zeros for a constant array)."""
    v = (a - a.mean(axis=(-2, -1), keepdims=True, dtype=np.float64)).astype(np.float32).ravel()
    norm = float(np.linalg.norm(v))
    return v / np.float32(norm) if norm > 0 else v


def _centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = a.shape[-2:]
    t, l = (H - h) // 2, (W - w) // 2
    return a[..., t: t + h, l: l + w]


def _hypotheses_plain(name: str, R: np.ndarray, F: np.ndarray) -> list[HypothesisScore]:
    from fingerprint.generator_search import hypothesis_scores

    return [HypothesisScore(name, s.hypothesis, s.z, s.n_positions, s.offset, s.scale)
            for s in hypothesis_scores(name, R, F)]


@dataclass
class GeneratorModels:
    """Every usable generator of a library, with the rate the decisions keep."""

    models: list[GeneratorModel]
    fpr: float = DEFAULT_FPR
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def without_statistics(self) -> list[str]:
        """Generators with no stored null (a library built before the statistics): never matched."""
        return [m.name for m in self.models if not m.nulls]


def _parse_key(key: str) -> tuple[str, str, str, tuple[int, int]] | None:
    parts = key.split(":")
    if len(parts) < 4 or parts[0] not in (NULL_PREFIX, GENUINE_PREFIX):
        return None
    try:
        h, w = (int(v) for v in parts[-1].split("x"))
    except ValueError:
        return None
    return parts[0], ":".join(parts[1:-2]), parts[-2], (h, w)


def _expected_keys(name: str, shape: tuple[int, int]) -> list[str]:
    keys = [null_key(name, "aligned", shape), genuine_key(name, "aligned", shape)]
    keys += [genuine_key(name, "aligned", shape, q) for q in GENUINE_QUALITIES]
    keys += [null_key(name, f"aligned@q{q}", shape) for q in GENUINE_QUALITIES]
    keys += [null_key(name, f"{OFFGRID}@q{q}", shape) for q in GENUINE_QUALITIES]
    for q in JPEG_FINGERPRINT_QUALITIES:
        keys += [null_key(name, f"{JPEG_HYPOTHESIS}@q{q}", shape), genuine_key(name, f"{JPEG_HYPOTHESIS}@q{q}", shape)]
    for size in stat_sizes(shape):
        for hyp in ("crop", "resize"):
            keys += [null_key(name, hyp, size), genuine_key(name, hyp, size), null_key(name, f"{OFFGRID}-{hyp}", size)]
    return keys


def load_generator_models(lib, *, fpr: float = DEFAULT_FPR, warn: Callable[[str], None] | None = None) -> GeneratorModels:
    """The generators of an open ``reference_db.Library`` with their stored statistics.

    A library built before these statistics existed has none: its generators are scored, but no
    hypothesis can match (the reason says so) until they are computed (:func:`generator_records`
    over the references' sources, e.g. at the next build or ``calibrate``).
    """
    from reference_db import DamagedReferenceError

    if not 0 < fpr < 1:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {fpr}")
    out = GeneratorModels([], fpr)
    for info in lib.infos():
        if info.kind != "generator" or info.damaged:
            continue
        try:
            ref = lib.get(info.name, with_sums=False)
        except DamagedReferenceError as err:
            if warn:
                warn(str(err))
            continue
        params = FingerprintParams.from_dict(dict(ref.info.params, kind="generator"))
        jpeg = {}
        for q in JPEG_FINGERPRINT_QUALITIES:  # compression-matched fingerprints, when current
            values = lib.calibration(jpeg_fingerprint_key(info.name, q))
            if values.size == np.size(ref.fingerprint) + 1 and int(values[-1]) == info.n_images:
                jpeg[q] = values[:-1].astype(np.float32).reshape(np.shape(ref.fingerprint))
            elif values.size:
                out.notes.append(f"{info.name}: JPEG q{q} fingerprint out of date (images removed or added since); "
                                 "JPEG queries are compared with the plain fingerprint only")
        model = GeneratorModel(info.name, params, ref.fingerprint, jpeg=jpeg)
        for key in _expected_keys(info.name, model.shape):
            values = lib.calibration(key)
            parsed = _parse_key(key)
            if values.size and parsed is not None:
                kind, _, hyp, size = parsed
                (model.nulls if kind == NULL_PREFIX else model.genuine)[(hyp, size)] = values
        if not model.nulls:
            out.notes.append(f"{info.name}: no null statistics stored (library built before them); never matched")
        out.models.append(model)
    return out


# ----------------------------------------------------------------------------------- scoring
def _pair_rate(models: GeneratorModels) -> float:
    return models.fpr / max(len(models.models), 1)


def decide_one(models: GeneratorModels, R: np.ndarray, stats: ResidualStats, quality: int | None = None,
               group: Sequence[GeneratorModel] | None = None) -> tuple[GeneratorDecision, dict[str, list[HypothesisScore]]]:
    """The decision for one query residual over ``group`` (default: every generator)."""
    group = list(group) if group is not None else models.models
    size = tuple(R.shape[1:])
    scores, nulls, genuine, per = [], {}, {}, {}
    query = QueryResidual(R)  # its unit vector and spectra serve every generator
    for m in group:
        hs = m.hypotheses(R, query, quality)
        per[m.name] = hs
        for s in hs:
            scores.append(s)
            n = m.null_for(s.hypothesis, size, quality)
            if n is not None:
                nulls[(m.name, s.hypothesis)] = n
            g = m.genuine_for(s.hypothesis, size, quality)
            if g is not None:
                genuine[(m.name, s.hypothesis)] = g
    return decide(scores, nulls, genuine, stats=stats, fpr=_pair_rate(models)), per


def _compared(R: np.ndarray, shape: tuple[int, int]) -> int:
    """Number of values a hypothesis compares: the query's, or the common centred region's."""
    return int(R.shape[0] * min(R.shape[1], shape[0]) * min(R.shape[2], shape[1]))


def _record(m: GeneratorModel, hs: list[HypothesisScore], R: np.ndarray, alpha: float, decision: GeneratorDecision,
            quality: int | None) -> ReferenceScore:
    """The record of one generator: its hypothesis of largest null-standardised score, that
    hypothesis' threshold (NCC units), and ``match`` only for the decided generator."""
    size = tuple(R.shape[1:])
    best, best_u, best_thr = hs[0], -math.inf, None
    for s in hs:
        null = m.null_for(s.hypothesis, size, quality)
        if null is None:
            continue
        u = null.standardised(s.z)
        if u > best_u:
            extra = max(1.0, s.n_positions / max(null.positions, 1))
            best, best_u, best_thr = s, u, null.threshold(alpha / len(hs) / extra)
    if decision.closest == m.name and decision.hypothesis is not None:
        best = next((s for s in hs if s.hypothesis == decision.hypothesis), best)
        best_thr = decision.threshold if decision.threshold is not None else best_thr
    d = _compared(R, m.shape)
    note = [best.hypothesis]
    if best.hypothesis == "resize" and best.scale:
        note.append(f"scale {best.scale[0]:.3f}x{best.scale[1]:.3f}")
    if quality is not None:
        note.append(f"JPEG q{quality}")
    if decision.closest == m.name or (decision.closest is None and decision.reason.startswith("insufficient")):
        note.append(decision.reason)
        if decision.resemblance:
            note.append(decision.resemblance)
        if decision.p_value is not None:
            note.append(f"p-value {decision.p_value:.2g}")
    elif best_thr is None:
        note.append("no null statistics for this size: never matched")
    threshold = best_thr / math.sqrt(d) if best_thr is not None else math.inf
    return ReferenceScore(m.name, "generator", best.z / math.sqrt(d), None, "ncc", threshold, decision.best == m.name,
                          rotation=0, offset=best.offset, n_positions=sum(s.n_positions for s in hs),
                          note="; ".join(note), z=best.z)


def score_generators(models: GeneratorModels, images: Sequence[np.ndarray], *,
                     qualities: Sequence[int | None] | None = None, backend: str = "cpu",
                     decisions: list | None = None) -> list[dict[str, ReferenceScore]]:
    """Generator records of each image (checked uint8/uint16 arrays), a ``ReferenceScore`` per generator.

    Only the decided generator has ``match`` True (at most one per image); ``note`` carries the
    hypothesis, the resize factor, the JPEG quality, and for the closest generator the reason
    (texture gate with its measured numbers, threshold, genuine range, resemblance) and p-value.
    ``qualities``: the JPEG quality of each query file (``io.metadata.jpeg_quality``; None for
    other files): a JPEG query is compared with the genuine range of re-saved references.
    ``decisions``: a list that receives the :class:`GeneratorDecision` of each image (its
    ``closest`` is the closed-set answer).
    """
    qualities = list(qualities) if qualities is not None else [None] * len(images)
    if len(qualities) != len(images):
        raise ValueError(f"{len(qualities)} qualities for {len(images)} images")
    groups: dict = {}
    for m in models.models:
        groups.setdefault(m.params, []).append(m)
    alpha = _pair_rate(models)
    out = []
    for image, quality in zip(images, qualities):
        records: dict[str, ReferenceScore] = {}
        chosen = None
        for params, group in groups.items():
            R, stats = query_residual(image, params, backend)
            dec, per = decide_one(models, R, stats, quality, group)
            if dec.decision == "match" and quality is not None and quality < LOSSLESS_QUALITY:
                m = next(x for x in group if x.name == dec.best)
                dec = _block_grid_check(m, dec, R, per[m.name], quality, alpha)
            for m in group:
                records[m.name] = _record(m, per[m.name], R, alpha, dec, quality)
            if chosen is None or _better(dec, chosen):
                chosen = dec
        if decisions is not None:
            decisions.append(chosen)
        out.append(records)
    return out


def _block_grid_check(m: GeneratorModel, dec: GeneratorDecision, R: np.ndarray, hs: list[HypothesisScore],
                      quality: int, alpha: float) -> GeneratorDecision:
    """A JPEG query's match to ``m`` checked without the file's 8 x 8 block grid
    (``generator_decision.off_grid_check``): the decided hypothesis scored again on the residual less
    its periodic part, against :meth:`GeneratorModel.offgrid_null` at the same share of ``alpha``."""
    from fingerprint.jpeg_residual import remove_block_grid

    off = next((s for s in m.hypotheses(remove_block_grid(R), None, quality) if s.hypothesis == dec.hypothesis), None)
    if off is None:
        return dec
    null = m.offgrid_null(dec.hypothesis, tuple(R.shape[1:]), quality)
    return off_grid_check(dec, off, null, alpha / len(hs))


def _better(a: GeneratorDecision, b: GeneratorDecision) -> bool:
    """Between the decisions of two parameter groups: a match first, then the smaller p-value."""
    if (a.decision == "match") != (b.decision == "match"):
        return a.decision == "match"
    return (a.p_value if a.p_value is not None else 2.0) < (b.p_value if b.p_value is not None else 2.0)
