"""Open-set decisions for generator attribution that keep their stated false-alarm rate.

Pure functions over numbers the attribution code measures; no file, library or residual code here.
A decision for one query goes through four steps (DESIGN.md §7, issue 11):

1. **Testability** (:func:`residual_statistics`, :func:`insufficient_signal`). A residual that carries too
   little signal (flat, saturated, tiny or heavily smoothed images) is answered "unknown" with the
   reason, whatever its scores. Two measured statistics decide, each against a floor fixed from
   first principles, not from query answers:

   - *informative pixels*: pixels whose local residual RMS (``TEXTURE_WINDOW`` box, channels
     pooled) exceeds ``TEXTURE_FACTOR`` times the quantisation noise of the input,
     ``Q = 1 / sqrt(12)`` grey level for 8 bits, and that are not clipped. Fewer than
     ``MIN_INFORMATIVE_PIXELS`` (a 64 x 64 area): the residual is rounding error, not noise.
   - *spectral spread*: ``(sum P_s)^2 / (N sum P_s^2)`` of the residual power spectrum ``P``
     smoothed over ``min(H, W) // 8`` bins (the self-whitening window), ``N`` bins. White noise
     gives 1; a residual made of a few structures (ramps, JPEG blocks of a smooth image, edges of
     a cartoon) gives a few per cent. Below ``MIN_SPECTRAL_SPREAD`` the ``z`` statistic has too
     few degrees of freedom for any null fitted on textured images to apply.

2. **Null models** (:class:`NullModel`). For each generator, each *hypothesis* the scorer tries
   (``"aligned"``: same size as the fingerprint; ``"crop"``: every shift at scale 1; ``"resize"``:
   the fingerprint resampled to the query's size; ``"jpeg@q90"``: a compression-matched
   fingerprint) and each query size, the scores of images known not to come from that generator
   (simulated cameras, the library's other references, ``calibrate`` photos; for a JPEG query,
   the same images re-saved near its quality), each already
   maximised over the same search. The threshold at a per-pair false-alarm rate ``a`` is the
   larger of the empirical ``1 - a`` quantile and ``mean + z(1 - a) std`` (as
   ``calibration.threshold_from_null``). Trying ``m`` hypotheses for one generator splits the rate
   (``a / m`` each, Bonferroni), so the decision keeps ``a`` per pair; a search over more
   positions than the null was computed with divides ``a`` by the ratio.

3. **Genuine ranges** (:class:`GenuineRange`). The same scores of the generator's own reference
   images against its fingerprint rebuilt without each of them (leave-one-out), per hypothesis and
   size. A query above the null but below ``mean - k * std`` of that range (``k`` the prediction bound's factor at miss rate ``FAMILY_MISS``, ``GenuineRange.lower``) is *not* that
   generator: it resembles it (a sibling model of the same architecture does) and is answered
   "unknown" with the resemblance.

4. **The answer** (:func:`decide`): ``closest`` is the generator with the largest null-standardised
   score ``u = (z - mean) / std`` over its hypotheses (the closed-set answer); ``best`` is
   ``closest`` when it passes its threshold and lies within its genuine range, else None.

5. **The block-grid check of a JPEG match** (:func:`off_grid_check`). JPEG writes one 8 x 8 pattern
   into every block of a smooth region, and generators trained on JPEG photos carry such a pattern
   in their fingerprints: a resized, re-saved gray ramp reaches their thresholds through the grid
   alone. A JPEG query's match stands only if the same hypothesis, scored on the residual less its
   8 x 8-periodic part, also reaches the threshold of a null scored the same way, at the same rate.
   Both tests must pass, so the false-alarm rate can only fall; closed-set answers do not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtr, ndtri

QUANTISATION_STD = 1.0 / math.sqrt(12.0)  # grey levels: std of rounding to 8 bits
TEXTURE_FACTOR = 2.0  # informative: local residual RMS above twice the rounding noise
TEXTURE_WINDOW = 8  # pixels, side of the local RMS box
MIN_INFORMATIVE_PIXELS = 64 * 64
MIN_SPECTRAL_SPREAD = 0.3
DEFAULT_FPR = 0.01
FAMILY_MISS = 1e-2  # genuine range: the rate at which a genuine query falls below it (normal prediction bound)
FAMILY_K = None  # None: the bound's factor from FAMILY_MISS and the number of scores (GenuineRange.lower)
MIN_NULL_SCORES = 20

__all__ = [
    "DEFAULT_FPR",
    "FAMILY_K",
    "FAMILY_MISS",
    "GeneratorDecision",
    "GenuineRange",
    "HypothesisScore",
    "NullModel",
    "ResidualStats",
    "decide",
    "nearest_size",
    "residual_statistics",
    "insufficient_signal",
    "off_grid_check",
]


# ---------------------------------------------------------------------------------- testability
@dataclass(frozen=True)
class ResidualStats:
    """Measured properties of one query residual (see the module docstring).

    ``rms`` grey levels over all values; ``informative_pixels`` count; ``saturated_fraction`` of
    pixels clipped in some channel; ``spectral_spread`` in (0, 1]; ``shape`` (H, W).
    """

    shape: tuple[int, int]
    rms: float
    informative_pixels: int
    saturated_fraction: float
    spectral_spread: float

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "rms": self.rms, "informative_pixels": self.informative_pixels,
                "saturated_fraction": self.saturated_fraction, "spectral_spread": self.spectral_spread}


def _saturated(image: np.ndarray) -> np.ndarray:
    top = 65535 if image.dtype == np.uint16 else 255
    planes = image[..., None] if image.ndim == 2 else image
    return ((planes == 0) | (planes == top)).any(-1)


def residual_statistics(noise: np.ndarray, image: np.ndarray | None = None, *,
                        power: np.ndarray | None = None) -> ResidualStats:
    """Testability statistics of a residual.

    Parameters
    ----------
    noise : ndarray, shape (C, H, W) or (H, W)
        The per-channel noise residual **before** any whitening (``residual.extract_noise``), in
        grey levels of [0, 255].
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, C), optional
        The image the residual came from, for the clipping mask and the bit depth (uint16: the
        rounding noise is 257 times smaller). Without it no pixel counts as clipped.
    power : ndarray, shape (H, W), optional
        ``sum_c |DFT2(noise_c - mean(noise_c))|^2``, when the caller has the spectra already
        (the whitening computes them); computed here otherwise.

    Returns
    -------
    ResidualStats
    """
    from scipy import ndimage

    n = np.asarray(noise, dtype=np.float64)
    n = n[None] if n.ndim == 2 else n
    if n.ndim != 3 or min(n.shape[1:]) < 1:
        raise ValueError(f"noise must be (C, H, W) or (H, W), got shape {np.shape(noise)}")
    _, H, W = n.shape
    q = QUANTISATION_STD / (257.0 if image is not None and image.dtype == np.uint16 else 1.0)
    energy = ndimage.uniform_filter((n**2).mean(0), TEXTURE_WINDOW, mode="reflect")
    informative = energy > (TEXTURE_FACTOR * q) ** 2
    saturated = np.zeros((H, W), bool)
    if image is not None:
        if image.shape[:2] != (H, W):
            raise ValueError(f"image {image.shape[:2]} and noise {(H, W)} differ in size")
        saturated = _saturated(image)
    if power is None:
        from scipy import fft

        y = fft.fft2((n - n.mean(axis=(1, 2), keepdims=True)).astype(np.float32), workers=-1)
        spectrum = (y.real**2 + y.imag**2).sum(0, dtype=np.float64)
    else:
        spectrum = np.asarray(power, dtype=np.float64)
        if spectrum.shape != (H, W):
            raise ValueError(f"power {spectrum.shape} and noise {(H, W)} differ in size")
    smooth = ndimage.uniform_filter(spectrum, (min(H, W) // 8) | 1, mode="wrap")
    total = float((smooth**2).sum())
    spread = float(smooth.sum() ** 2 / total / smooth.size) if total > 0 else 0.0
    return ResidualStats((H, W), float(np.sqrt((n**2).mean())), int((informative & ~saturated).sum()),
                         float(saturated.mean()), spread)


def insufficient_signal(stats: ResidualStats, *, min_pixels: int = MIN_INFORMATIVE_PIXELS,
                min_spread: float = MIN_SPECTRAL_SPREAD) -> str | None:
    """None when the residual can be tested, else the one-line reason it cannot."""
    if stats.informative_pixels < min_pixels:
        return (f"insufficient texture/noise to attribute: {stats.informative_pixels} informative pixels "
                f"(residual above {TEXTURE_FACTOR:g}x the rounding noise, unclipped), {min_pixels} needed")
    if stats.spectral_spread < min_spread:
        return (f"insufficient texture/noise to attribute: the residual is a few structures, not noise "
                f"(spectral spread {stats.spectral_spread:.2f} < {min_spread:g})")
    return None


# --------------------------------------------------------------------------------- score models
@dataclass(frozen=True)
class NullModel:
    """Non-matching scores of one generator, one hypothesis, one query size.

    ``scores`` were each maximised over ``positions`` positions (1 for an aligned comparison).
    """

    generator: str
    hypothesis: str
    size: tuple[int, int]
    scores: np.ndarray = field(repr=False)
    positions: int = 1

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float64)
        s = np.sort(s[np.isfinite(s)])
        object.__setattr__(self, "scores", s)
        # computed once: a model serves every query of an attribution run
        object.__setattr__(self, "_mean", float(s.mean()) if s.size else math.nan)
        object.__setattr__(self, "_std", float(s.std(ddof=1)) if s.size > 1 else math.nan)
        object.__setattr__(self, "_thresholds", {})

    @property
    def n(self) -> int:
        return int(self.scores.size)

    @property
    def mean(self) -> float:
        return self._mean

    @property
    def std(self) -> float:
        return self._std

    def threshold(self, fpr: float) -> float | None:
        """Score reached by a non-matching query with probability ``fpr`` (None: too few scores)."""
        if not 0 < fpr < 1:
            raise ValueError(f"the false-positive rate must be in (0, 1), got {fpr}")
        if self.n < MIN_NULL_SCORES:
            return None
        if fpr not in self._thresholds:
            self._thresholds[fpr] = max(float(np.quantile(self.scores, 1 - fpr)),
                                        self.mean + float(ndtri(1 - fpr)) * self.std)
        return self._thresholds[fpr]

    def p_value(self, z: float) -> float:
        """P(non-matching score >= z): the larger of the normal tail and (count + 1) / (n + 1)."""
        if self.n < MIN_NULL_SCORES:
            return 1.0
        normal = float(ndtr(-(z - self.mean) / self.std)) if self.std > 0 else float(z <= self.mean)
        empirical = (self.n - int(np.searchsorted(self.scores, z, side="left")) + 1) / (self.n + 1)
        return min(1.0, max(normal, empirical))

    def standardised(self, z: float) -> float:
        """``(z - mean) / std``; -inf without a usable model."""
        if self.n < MIN_NULL_SCORES or not self.std > 0:
            return -math.inf
        return (z - self.mean) / self.std


@dataclass(frozen=True)
class GenuineRange:
    """Leave-one-out scores of a generator's own references for one hypothesis and size."""

    generator: str
    hypothesis: str
    size: tuple[int, int]
    scores: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float64)
        object.__setattr__(self, "_finite", s[np.isfinite(s)])
        object.__setattr__(self, "_lower", {})  # per k: a range serves every query of an attribution run

    def lower(self, k: float | None = FAMILY_K) -> float:
        """``mean - k std`` of the scores (-inf with fewer than 3 scores: no range known).

        ``k`` None: the one-sided normal *prediction* bound for one more genuine score at miss rate
        :data:`FAMILY_MISS`, ``k = t(1 - FAMILY_MISS; n - 1) sqrt(1 + 1/n)`` (Student t, n scores):
        a dozen leave-one-out scores estimate the spread poorly, and a genuine query answered
        "not the same model" is an error this bound keeps at about 1 %. (At 0.1 % the bound let
        through more non-matching 128-pixel crops: 5.8 % against 2.9 % of the negatives of
        ``benchmarks/gan_wild.py``; the rule also guards the null's small-crop tail.)
        """
        if k not in self._lower:
            self._lower[k] = self._bound(k)
        return self._lower[k]

    def _bound(self, k: float | None) -> float:
        s = self._finite
        if s.size < 3:
            return -math.inf
        if k is None:
            from scipy.stats import t

            k = float(t.ppf(1.0 - FAMILY_MISS, s.size - 1)) * math.sqrt(1.0 + 1.0 / s.size)
        return float(s.mean() - k * s.std(ddof=1))


def nearest_size(sizes: Sequence[tuple[int, int]], size: tuple[int, int]) -> tuple[int, int]:
    """The calibrated size closest to ``size`` in log area, ties to the larger (more searched)."""
    if not sizes:
        raise ValueError("no calibrated sizes")
    area = math.log(size[0] * size[1])
    return min(sizes, key=lambda s: (abs(math.log(s[0] * s[1]) - area), -s[0] * s[1]))


# ------------------------------------------------------------------------------------- deciding
@dataclass(frozen=True)
class HypothesisScore:
    """The best score of one generator under one hypothesis: ``z = NCC sqrt(D)``."""

    generator: str
    hypothesis: str
    z: float
    n_positions: int = 1
    offset: tuple[int, int] | None = None
    scale: tuple[float, float] | None = None


@dataclass(frozen=True)
class GeneratorDecision:
    """The open-set answer for one query over the library's generators."""

    decision: str  # "match" or "unknown"
    best: str | None
    closest: str | None
    reason: str
    p_value: float | None = None  # closest generator, adjusted for the hypotheses tried
    resemblance: str | None = None
    hypothesis: str | None = None
    z: float | None = None
    threshold: float | None = None
    genuine_low: float | None = None
    scale: tuple[float, float] | None = None
    offset: tuple[int, int] | None = None
    standardised: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"decision": self.decision, "best": self.best, "closest": self.closest, "reason": self.reason,
                "p_value": self.p_value, "resemblance": self.resemblance, "hypothesis": self.hypothesis,
                "z": self.z, "threshold": self.threshold, "genuine_low": self.genuine_low,
                "scale": list(self.scale) if self.scale else None,
                "offset": list(self.offset) if self.offset else None, "standardised": dict(self.standardised)}


@dataclass(frozen=True)
class _Tested:
    score: HypothesisScore
    u: float
    p: float
    threshold: float | None
    low: float
    null: str | None = None  # the null's hypothesis when it is not the score's (a JPEG query: "aligned@q75")

    @property
    def against(self) -> str:
        """The hypothesis, and the null it was tested against when that has a name of its own."""
        h = self.score.hypothesis
        return f"{h}, null {self.null}: non-matching images re-saved near q{self.null.split('@q')[1]}" if self.null else h


def _test(s: HypothesisScore, null: NullModel | None, genuine: GenuineRange | None, alpha: float,
          family_k: float | None) -> _Tested:
    if null is None:
        return _Tested(s, -math.inf, 1.0, None, -math.inf)
    extra = max(1.0, s.n_positions / max(null.positions, 1))  # a wider search than the null's
    a = alpha / extra
    low = genuine.lower(family_k) if genuine is not None else -math.inf
    other = null.hypothesis if null.hypothesis != s.hypothesis and "@q" in null.hypothesis else None
    return _Tested(s, null.standardised(s.z), min(1.0, null.p_value(s.z) * extra), null.threshold(a), low, other)


def decide(scores: Sequence[HypothesisScore], nulls: Mapping[tuple[str, str], NullModel],
           genuine: Mapping[tuple[str, str], GenuineRange] | None = None, *, stats: ResidualStats | None = None,
           fpr: float = DEFAULT_FPR, family_k: float | None = FAMILY_K, families: Mapping[str, str] | None = None,
           min_pixels: int = MIN_INFORMATIVE_PIXELS, min_spread: float = MIN_SPECTRAL_SPREAD) -> GeneratorDecision:
    """Decide match or unknown for one query.

    Parameters
    ----------
    scores : HypothesisScore per (generator, hypothesis) tried.
    nulls : NullModel per (generator, hypothesis), already chosen for the query's size
        (:func:`nearest_size`); a missing one means that hypothesis cannot match.
    genuine : GenuineRange per (generator, hypothesis), optional (no range: no family test).
    stats : the query's residual statistics; an untestable residual is "unknown" with the reason.
    fpr : per-pair false-alarm rate, split over the hypotheses tried for each generator.
    family_k : a score below ``mean - family_k std`` of the genuine range is "not that generator"
        (None: the prediction bound of ``GenuineRange.lower``).
    families : optional generator -> architecture label, for the resemblance message.

    Returns
    -------
    GeneratorDecision
    """
    if not 0 < fpr < 1:
        raise ValueError(f"the false-positive rate must be in (0, 1), got {fpr}")
    by_gen: dict[str, list[HypothesisScore]] = {}
    for s in scores:
        by_gen.setdefault(s.generator, []).append(s)
    tested: dict[str, list[_Tested]] = {
        g: [_test(s, nulls.get((g, s.hypothesis)), (genuine or {}).get((g, s.hypothesis)), fpr / len(lst), family_k)
            for s in lst] for g, lst in by_gen.items()}
    u_best = {g: max(t.u for t in lst) for g, lst in tested.items()}
    ranked = sorted((g for g in u_best if u_best[g] > -math.inf), key=lambda g: u_best[g], reverse=True)
    closest = ranked[0] if ranked else None
    if stats is not None:
        why = insufficient_signal(stats, min_pixels=min_pixels, min_spread=min_spread)
        if why is not None:
            return GeneratorDecision("unknown", None, closest, why, standardised=u_best)
    if closest is None:
        reason = "no generator to compare with" if not scores else "no calibrated null for any generator"
        return GeneratorDecision("unknown", None, None, reason, standardised=u_best)
    lst = tested[closest]
    p = min(1.0, min(t.p for t in lst) * len(lst))
    above = [t for t in lst if t.threshold is not None and t.score.z >= t.threshold]
    top = max(lst, key=lambda t: t.u)
    common = dict(p_value=p, standardised=u_best)
    if not above:
        thr = top.threshold
        reason = (f"no generator reaches its threshold (closest {closest}: z {top.score.z:.1f}"
                  + (f" < {thr:.1f}" if thr is not None else ", uncalibrated") + f", {top.against})")
        return GeneratorDecision("unknown", None, closest, reason, hypothesis=top.score.hypothesis, z=top.score.z,
                                 threshold=thr, scale=top.score.scale, offset=top.score.offset, **common)
    genuine_like = [t for t in above if t.score.z >= t.low]
    if not genuine_like:
        t = max(above, key=lambda t: t.u)
        fam = f"same family ({families[closest]})" if families and closest in families else "same family"
        resemblance = f"closest: {closest}, {fam}, not the same model"
        reason = (f"resembles {closest} (z {t.score.z:.1f} above its null threshold {t.threshold:.1f}) but far below "
                  f"its genuine range (leave-one-out low {t.low:.1f}, {t.against})")
        return GeneratorDecision("unknown", None, closest, reason, resemblance=resemblance,
                                 hypothesis=t.score.hypothesis, z=t.score.z, threshold=t.threshold, genuine_low=t.low,
                                 scale=t.score.scale, offset=t.score.offset, **common)
    t = max(genuine_like, key=lambda t: t.u)
    reason = (f"z {t.score.z:.1f} >= threshold {t.threshold:.1f} ({fpr:g} false alarms per pair, "
              f"{len(lst)} hypothesis(es)) and within the genuine range ({t.against})")
    return GeneratorDecision("match", closest, closest, reason, hypothesis=t.score.hypothesis, z=t.score.z,
                             threshold=t.threshold, genuine_low=t.low if t.low > -math.inf else None,
                             scale=t.score.scale, offset=t.score.offset, **common)


def off_grid_check(decision: GeneratorDecision, off: HypothesisScore, null: NullModel | None,
                   alpha: float) -> GeneratorDecision:
    """Step 5 of the module docstring: a match kept only if ``off`` (its hypothesis' score with the
    JPEG block grid removed) reaches ``null``'s threshold at ``alpha`` (divided by the search's extra
    positions, as in :func:`decide`); else "unknown" with the reason. Not a match: returned as is."""
    if decision.decision != "match":
        return decision
    thr = None
    if null is not None:
        thr = null.threshold(alpha / max(1.0, off.n_positions / max(null.positions, 1)))
    if thr is not None and off.z >= thr:
        return replace(decision, reason=f"{decision.reason}; without the JPEG block grid z {off.z:.1f} >= {thr:.1f}")
    bound = f"< {thr:.1f}" if thr is not None else "with no null to test it"
    reason = (f"resembles {decision.best} through the JPEG 8x8 block grid only (z {decision.z:.1f} with it, "
              f"{off.z:.1f} without it {bound}, {null.hypothesis if null is not None else 'no'} null): "
              "JPEG writes that grid into any picture, so it is not evidence of a generator")
    return replace(decision, decision="unknown", best=None, reason=reason)
