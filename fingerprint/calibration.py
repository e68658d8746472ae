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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

NULL_KEY = "generator_null_z"
DEFAULT_FPR = 0.01  # per (image, generator) pair
MIN_NULL_SCORES = 20  # fewer non-matching scores than this: no calibrated threshold

__all__ = ["DEFAULT_FPR", "MIN_NULL_SCORES", "NULL_KEY", "GeneratorThreshold", "threshold_from_null"]


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
    return GeneratorThreshold(max(empirical, normal), fpr, int(null.size),
                              "normal fit" if normal >= empirical else "empirical quantile")
