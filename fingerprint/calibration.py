"""Open-set decision thresholds for generators, calibrated on non-matching scores.

Generator scores are ``z = NCC * sqrt(D)``, D the number of values compared: for unrelated
residuals z is roughly normal with a spread that does not depend on the image size, so one
threshold serves every size (the NCC threshold of a pair is ``z_threshold / sqrt(D)``).

A library gathers, in ``/calibration/generator_null_z``, the z of generator images against the
fingerprints of *other* generators: at every ``build`` of a generator (its images against the
generators already in the library) and with ``ganprint calibrate`` (images known to come from no
generator of the library, e.g. real photos). The threshold for a per-pair false-positive rate
``fpr`` is the larger of

- the empirical ``1 - fpr`` quantile of those scores, and
- ``mean + z(1 - fpr) * std`` of a normal fit (stabler when few scores are available),

so a non-matching image exceeds it for one reference with probability about ``fpr``; an image is
compared with every generator, so its chance of a false match is at most ``fpr`` times their number.

``ganprint calibrate`` refuses images that cannot be negatives: a source image of a library
generator (same SHA-256), and one scoring at or above the current threshold at :data:`MATCH_FPR`
against a generator, and at least :data:`MATCH_Z_MIN` (such images once moved the threshold
from 7.7 to 64); the z test needs a calibrated library, so the refusal leaves out at most the top
0.1 % of genuine negatives and does not bend the 1 % threshold. ``ganprint calibration
LIBRARY`` shows (``--show``, :func:`describe_null`) or resets (``--reset``,
``fingerprint.maintenance.reset_calibration``) what is stored.

Build order: a build scores its images against the generators already in the library and, reading
their source files again (``build.reverse_null_scores``), the earlier generators' images against
the new one, so the stored pairs are both directions of every pair of generators whatever the
order of the builds. ``ganprint calibrate`` with images of no library generator scores each image
against *every* current generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

NULL_KEY = "generator_null_z"
DEFAULT_FPR = 0.01  # per (image, generator) pair
MIN_NULL_SCORES = 20  # fewer non-matching scores than this: no calibrated threshold
MATCH_FPR = 1e-3  # calibrate: an image at or above the threshold at this rate matches a generator, refused
MATCH_Z_MIN = 6.0  # ... and at or above this z (1e-9 of a N(0, 1) null), whatever the stored scores say

__all__ = ["DEFAULT_FPR", "MATCH_FPR", "MATCH_Z_MIN", "MIN_NULL_SCORES", "NULL_KEY", "GeneratorThreshold", "describe_null", "threshold_from_null"]


@dataclass(frozen=True)
class GeneratorThreshold:
    """A threshold on generator z scores, with how it was obtained."""

    value: float | None  # None: not enough calibration data
    fpr: float
    n_null: int
    source: str

    def describe(self) -> str:
        if self.value is None:
            return (f"uncalibrated ({self.n_null} non-matching scores, {MIN_NULL_SCORES} needed): build a second "
                    "generator, run 'ganprint calibrate' with images of no library generator, or pass --generator-z (generator_threshold= in Python)")
        return (f"z = NCC*sqrt(D) >= {self.value:.2f} at {self.fpr:g} false positives per pair "
                f"({self.source} of {self.n_null} non-matching scores)")


def threshold_from_null(null: np.ndarray, fpr: float = DEFAULT_FPR) -> GeneratorThreshold:
    """z threshold for per-pair false-positive rate ``fpr`` from non-matching z scores ``null``."""
    if not 0 < fpr < 1:
        raise ValueError(f"the false-positive rate must be in (0, 1), got {fpr}")
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if null.size < MIN_NULL_SCORES:
        return GeneratorThreshold(None, fpr, int(null.size), "uncalibrated")
    empirical = float(np.quantile(null, 1 - fpr))
    normal = float(null.mean() + ndtri(1 - fpr) * null.std(ddof=1))
    # Floor: for a query unrelated to the generator, z = NCC*sqrt(D) is ~N(0, 1) when the residual
    # is white; a stored null that sits lower (generators anti-correlated with each other, a few
    # scores) says nothing about an unrelated real photo, so the threshold never goes below the
    # N(0, 1) quantile at the same rate (2.33 at 1 %).
    theory = float(ndtri(1 - fpr))
    value, source = max((empirical, "empirical quantile"), (normal, "normal fit"), (theory, "N(0, 1) floor"))
    return GeneratorThreshold(value, fpr, int(null.size), source)


def describe_null(null: np.ndarray, fprs: tuple[float, ...] = (DEFAULT_FPR, MATCH_FPR)) -> list[str]:
    """Lines describing stored non-matching z scores: how many, their spread, the thresholds at ``fprs``."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    if null.size == 0:
        return ["non-matching generator scores: none"]
    q = np.quantile(null, [0.0, 0.5, 0.99, 1.0])
    lines = [f"non-matching generator scores: {null.size}; z min {q[0]:.2f}, median {q[1]:.2f}, "
             f"99th percentile {q[2]:.2f}, max {q[3]:.2f}"]
    return lines + [f"threshold at {f:g}: {threshold_from_null(null, f).describe()}" for f in fprs]
