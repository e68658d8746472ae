"""One error budget for a camera search: false-alarm probabilities of PCE peaks and thresholds.

A camera decision searches many *positions* (shifts of a crop, rotations, denoiser strengths,
scale factors) and keeps the best PCE. This module turns the size of that search into the
threshold the best PCE must reach, fixed before any score is seen, and the best PCE into the
probability that a non-matching pair scores as high (Binghamton ``FAfromPCE``).

Null model (Goljan, Fridrich and Filler 2009 [1]_; Binghamton's ``PCE.m`` / ``FAfromPCE.m``):
for a non-matching pair the normalised correlation at one position is N(0, 1), so the signed PCE
``sign(c) c**2`` exceeds ``tau >= 0`` with probability

    p(tau) = Q(sqrt(tau)) = 0.5 * erfc(sqrt(tau / 2))                      (one position)

and the best of ``n`` independent positions exceeds it with probability (Sidak)

    P_FA(tau; n) = 1 - (1 - p(tau))**n = -expm1(n * log1p(-p(tau)))        (n positions)

which ``FAfromPCE`` approximates by ``n * p`` above PCE 50. The inverse, the threshold of a
search of ``n`` positions at a per-decision false-alarm rate ``alpha``, is

    tau(alpha; n) = Qinv(p_n)**2,   p_n = -expm1(log1p(-alpha) / n)

computed in log space (``scipy.special.log_ndtr`` and ``ndtri_exp``), so rates far below 1e-300
neither underflow nor lose digits. The stated rate is that of PCE 60 at one position,
``ALPHA = Q(sqrt(60)) = 4.7e-15``: ``tau(ALPHA; 1) = 60`` and ``tau(ALPHA; n)`` equals
``fingerprint.scores.search_threshold(60, n)`` (its union bound ``n p = p_1`` differs from
Sidak by a relative 1e-15).

One budget, several stages
--------------------------
A :class:`SearchPlan` lists the stages a camera search may run (native-resolution crop search,
the scale implied by the query's size, the scale search), each with the positions it may search
and a weight. Stage ``i`` gets the share ``alpha_i = alpha * w_i / sum(w)`` of the budget (a
weighted Bonferroni test), so whatever stages run and in whatever order they stop, a
non-matching pair is accepted with probability at most ``sum(alpha_i) = alpha``. With weights
proportional to the positions (:meth:`SearchPlan.uniform`) every stage has the one threshold
``tau(alpha; n_total)``. The per-decision false-alarm probability of a PCE found in stage ``i``
is the adjusted p-value ``min(1, P_FA(pce; n_i) * sum(w) / w_i)``; a decision is a match exactly
when it is at most ``alpha``.

References
----------
.. [1] M. Goljan, J. Fridrich and T. Filler, "Large scale test of sensor fingerprint camera
   identification", Proc. SPIE 7254, 2009. :doi:`10.1117/12.805701`
.. [2] M. Goljan and J. Fridrich, "Camera identification from cropped and scaled images",
   Proc. SPIE 6819, 2008. :doi:`10.1117/12.766732`
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import scipy.special

from fingerprint.scores import DEFAULT_PCE_THRESHOLD

__all__ = [
    "ALPHA",
    "BASE_PCE",
    "SearchPlan",
    "Stage",
    "false_alarm",
    "false_alarm_one",
    "log10_false_alarm",
    "threshold",
]

BASE_PCE = DEFAULT_PCE_THRESHOLD
"""PCE threshold at one position: ``fingerprint.scores.DEFAULT_PCE_THRESHOLD`` (60), written once there."""


def _check_n(n_positions: float) -> float:
    if isinstance(n_positions, bool) or not (n_positions >= 1 and math.isfinite(n_positions)):
        raise ValueError(f"n_positions must be a finite number >= 1, got {n_positions!r}")
    return float(n_positions)


def _log_q(pce: float) -> float:
    """``ln Q(sign(pce) sqrt(|pce|))``, the log of the one-position tail (``log_ndtr(-x)``)."""
    x = math.copysign(math.sqrt(abs(pce)), pce)
    return float(scipy.special.log_ndtr(-x))


def false_alarm_one(pce: float) -> float:
    """False-alarm probability of a PCE at one position: ``Q(sign(pce) sqrt(|pce|))``.

    ``0.5 * erfc(sqrt(pce / 2))`` for ``pce >= 0``; above 0.5 for a negative PCE (a negative peak).

    Examples
    --------
    >>> f"{false_alarm_one(60.0):.3e}"
    '4.743e-15'
    >>> false_alarm_one(0.0)
    0.5
    """
    pce = float(pce)
    if math.isnan(pce):
        raise ValueError("pce is NaN")
    return math.exp(_log_q(pce))


ALPHA = false_alarm_one(BASE_PCE)
"""The stated per-decision false-alarm rate: that of PCE 60 at one position, ``Q(sqrt 60)``."""


def false_alarm(pce: float, n_positions: float = 1) -> float:
    r"""False-alarm probability of the best PCE of a search over ``n_positions`` (Binghamton ``FAfromPCE``).

    Parameters
    ----------
    pce : float
        The signed PCE of the peak found.
    n_positions : float
        Number of positions the maximum was taken over (>= 1; need not be an integer).

    Returns
    -------
    float
        :math:`1 - (1 - p)^n` with :math:`p = Q(\operatorname{sign}(\mathrm{PCE})\sqrt{|\mathrm{PCE}|})`,
        computed as ``-expm1(n * log1p(-p))``; 0.0 only where it underflows (PCE above ~1400 at
        one position), see :func:`log10_false_alarm` for those.

    Examples
    --------
    >>> false_alarm(60.0, 1) == false_alarm_one(60.0)
    True
    >>> round(false_alarm(20.0, 1e6), 4)
    0.9792
    """
    n = _check_n(n_positions)
    pce = float(pce)
    if math.isnan(pce):
        raise ValueError("pce is NaN")
    p = math.exp(_log_q(pce))
    return float(-math.expm1(n * math.log1p(-p))) if p < 1.0 else 1.0


def log10_false_alarm(pce: float, n_positions: float = 1) -> float:
    """``log10`` of :func:`false_alarm`, finite for any finite PCE (no underflow).

    Uses ``log(n) + ln Q`` when ``n p`` is tiny (relative error below 1e-9 there), the exact
    formula otherwise.

    Examples
    --------
    >>> round(log10_false_alarm(5000.0, 1e9), 1)
    -1079.0
    """
    n = _check_n(n_positions)
    log_p = _log_q(float(pce))
    log_np = math.log(n) + log_p
    if log_np < -20.0:  # n p < 2e-9: 1 - (1-p)^n = n p (1 - (n-1) p / 2 + ...)
        return log_np / math.log(10.0)
    return math.log10(-math.expm1(n * math.log1p(-math.exp(log_p))))


def threshold(alpha: float = ALPHA, n_positions: float = 1) -> float:
    r"""PCE threshold of a search over ``n_positions`` at per-decision false-alarm rate ``alpha``.

    Parameters
    ----------
    alpha : float
        Probability, in (0, 1), that a non-matching pair's best PCE reaches the threshold;
        default :data:`ALPHA` (PCE 60 at one position).
    n_positions : float
        Positions searched, >= 1.

    Returns
    -------
    float
        :math:`\tau` with :math:`1 - (1 - Q(\sqrt\tau))^n = \alpha`:
        :math:`\tau = Q^{-1}(p_n)^2`, :math:`p_n = -\mathrm{expm1}(\mathrm{log1p}(-\alpha)/n)`.
        Negative (the signed PCE of a negative peak) only for absurd rates with :math:`p_n > 1/2`.

    Examples
    --------
    >>> threshold(ALPHA, 1)
    60.0
    >>> round(threshold(ALPHA, 4), 2)
    62.73
    >>> round(threshold(0.01, 1e6), 1)
    31.5
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a probability in (0, 1), got {alpha!r}")
    n = _check_n(n_positions)
    if n == 1.0 and alpha == ALPHA:
        return BASE_PCE  # exact by definition, not up to rounding
    p_n = -math.expm1(math.log1p(-alpha) / n)
    x = -float(scipy.special.ndtri_exp(math.log(p_n)))  # Q(x) = p_n
    return math.copysign(x * x, x)


# --- plans ---------------------------------------------------------------------------------------
def _count(n: float) -> str:
    """``1234567`` -> ``'1.2 M'``; counts below 10,000 stay exact."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if n >= size:
            value = n / (1e3 if unit == "k" else size)
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n:g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Stage:
    """One stage of a camera search and the positions it may search.

    Parameters
    ----------
    name : str
        e.g. ``"native"``, ``"implied scale"``, ``"scale search"``.
    shifts : tuple of int
        Shifts of every correlation surface the stage may score (one entry per rotation x scale
        pair): ``(H_s - h + 1) * (W_s - w + 1)`` for a query of (h, w) in a fingerprint of
        (H_s, W_s). An upper bound where the surfaces are chosen during the search.
    rotations, scales : int
        Distinct rotations and scale factors among those surfaces (for the text only).
    sigmas : int
        Query residuals (denoiser strengths) scored on every surface; multiplies the count.
    weight : float
        Share of the error budget before normalisation (>= 0).
    coarse_scales : int
        Factors of a coarse sweep among those surfaces (for the text only).
    """

    name: str
    shifts: tuple[int, ...]
    rotations: int = 1
    scales: int = 1
    sigmas: int = 1
    weight: float = 1.0
    coarse_scales: int = 0

    def __post_init__(self) -> None:
        shifts = tuple(int(s) for s in self.shifts)
        if any(s < 1 for s in shifts):
            raise ValueError(f"stage {self.name!r}: every shift count must be >= 1, got {self.shifts}")
        object.__setattr__(self, "shifts", shifts)
        if self.sigmas < 1 or self.rotations < 0 or self.scales < 0 or self.coarse_scales < 0:
            raise ValueError(f"stage {self.name!r}: sigmas must be >= 1, rotations and scales >= 0")
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"stage {self.name!r}: weight must be a finite number >= 0, got {self.weight!r}")

    @property
    def n_positions(self) -> int:
        """``sigmas * sum(shifts)``: 0 for a stage that cannot run (the query fits nowhere)."""
        return self.sigmas * sum(self.shifts)

    def describe(self) -> str:
        """``"2 rotations × 2 sigmas × 37 scales × ≤ 1.2 M shifts"`` (factors of 1 left out)."""
        if not self.shifts:
            return "nothing (the query fits nowhere)"
        parts = []
        if self.rotations > 1:
            parts.append(_plural(self.rotations, "rotation"))
        if self.sigmas > 1:
            parts.append(_plural(self.sigmas, "sigma"))
        if self.scales > 1:
            parts.append(_plural(self.scales, "scale"))
        most = max(self.shifts)
        if most == 1:
            return " × ".join(parts + ["1 position"])
        shifts = _plural(most, "shift") if most < 10_000 else f"{_count(most)} shifts"
        parts.append(shifts if min(self.shifts) == most else f"≤ {shifts}")
        text = " × ".join(parts)
        if self.coarse_scales:
            text += f" (a coarse sweep of {self.coarse_scales} scales, then its best peaks refined)"
        return text


@dataclass(frozen=True)
class SearchPlan:
    """Every stage a camera search may run, fixed before any score is seen; one budget ``alpha``.

    Stages that cannot run (no positions) get no share; the others share ``alpha`` in
    proportion to their weights. See the module docstring for the test.

    Examples
    --------
    >>> plan = SearchPlan((Stage("native", (1, 1), rotations=2, sigmas=2),))
    >>> round(plan.threshold("native"), 2), plan.n_positions
    (62.73, 4)
    >>> plan.describe()
    'searched 2 rotations × 2 sigmas × 1 position: threshold 62.7'
    """

    stages: tuple[Stage, ...]
    alpha: float = ALPHA
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be distinct, got {names}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"alpha must be a probability in (0, 1), got {self.alpha!r}")
        object.__setattr__(self, "_by_name", {s.name: s for s in self.stages})

    @classmethod
    def uniform(cls, stages, alpha: float = ALPHA) -> "SearchPlan":
        """The plan whose stages all have the one threshold ``tau(alpha; n_total)`` (weights = positions)."""
        return cls(tuple(Stage(s.name, s.shifts, s.rotations, s.scales, s.sigmas, float(s.n_positions),
                               s.coarse_scales) for s in stages), alpha)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def stage(self, name: str) -> Stage:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no stage {name!r} in this plan (stages: {', '.join(self._by_name)})") from None

    @property
    def active(self) -> tuple[Stage, ...]:
        """The stages that may search at least one position and have a share of the budget."""
        return tuple(s for s in self.stages if s.n_positions > 0 and s.weight > 0)

    @property
    def n_positions(self) -> int:
        """Positions of every active stage together."""
        return sum(s.n_positions for s in self.active)

    def share(self, name: str) -> float:
        """The stage's share ``w_i / sum(w)`` of the budget (0 for a stage that cannot run)."""
        st = self.stage(name)
        total = sum(s.weight for s in self.active)
        return st.weight / total if st in self.active and total > 0 else 0.0

    def threshold(self, name: str) -> float:
        """``tau(alpha * share; n_i)``: the PCE the stage's best position must reach (inf if it cannot run)."""
        share = self.share(name)
        if share == 0.0:
            return math.inf
        return threshold(self.alpha * share, self.stage(name).n_positions)

    def false_alarm(self, name: str, pce: float) -> float:
        """Per-decision false-alarm probability of ``pce`` found in stage ``name``.

        ``min(1, P_FA(pce; n_i) / share_i)``, the weighted-Bonferroni adjusted p-value: at most
        ``alpha`` exactly when ``pce`` reaches :meth:`threshold`.
        """
        share = self.share(name)
        if share == 0.0:
            return 1.0
        return min(1.0, false_alarm(pce, self.stage(name).n_positions) / share)

    def log10_false_alarm(self, name: str, pce: float) -> float:
        """``log10`` of :meth:`false_alarm` (finite where it underflows)."""
        share = self.share(name)
        if share == 0.0:
            return 0.0
        return min(0.0, log10_false_alarm(pce, self.stage(name).n_positions) - math.log10(share))

    def describe(self, name: str | None = None) -> str:
        """Human text: ``"searched 4 rotations × 37 scales × 1.2 M shifts: threshold 91"``.

        Without ``name``, every active stage, joined by ``"; "``; a stage that cannot run says so.
        A stage with part of the budget says which (``"(25% of the error budget)"``): that share,
        besides its positions, raises its threshold.
        """
        stages = [self.stage(name)] if name is not None else list(self.active)
        if not stages:
            return "searched nothing: the query does not fit the fingerprint at any allowed rotation or scale"
        texts = []
        for st in stages:
            label = "" if len(self.active) <= 1 and name is None else f"{st.name}: "
            if st.n_positions == 0:
                texts.append(f"{label}nothing (the query does not fit)")
                continue
            thr, share = self.threshold(st.name), self.share(st.name)
            part = f" ({share:.0%} of the error budget)" if share < 1.0 else ""
            texts.append(f"{label}searched {st.describe()}{part}: threshold {thr:.1f}")
        return "; ".join(texts)
