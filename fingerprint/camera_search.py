"""One camera decision for one query: native, implied-scale and scale search under one error budget.

``CameraSearch`` holds one fingerprint ``K`` (its spectrum and the resampled spectra of the
scaled search cached) and answers, for a query given as ``W * I`` (residual times gray image),
whether it comes from that camera:

1. ``native``: the crop search of ``fingerprint.scores`` at the fingerprint's own resolution,
   every rotation that fits, with the sigma-2 residual and, if given, a second residual
   (sigma 5): ``sigmas * sum over rotations of (H - h + 1)(W - w + 1)`` positions;
2. ``implied scale`` and 3. ``scale search`` (``fingerprint.scaled_search``), only for queries
   smaller than the fingerprint.

The stages, their positions and their shares of the budget are fixed by the query's and the
fingerprint's sizes before any score is computed (``fingerprint.error_budget.SearchPlan``); the
stages run in that order and the first match ends the search, which with fixed thresholds gives
the decision the full search would (up to the scale search's own coarse-to-fine selection).

With a CUDA ``device`` (``fingerprint.device.Device``) the native stage runs there (the
fingerprint's spectrum on the device, the query residuals device arrays); the implied-scale and
scale-search stages always run on the CPU, on a host copy of the first residual made only when
they run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from fingerprint.error_budget import ALPHA, SearchPlan, Stage
from fingerprint.scaled_search import DEFAULT_MIN_SCALE, ScaledSearch
from fingerprint.scores import ReferenceSpectrum

__all__ = ["DEFAULT_WEIGHTS", "CameraDecision", "CameraSearch", "STAGES", "decide_cameras", "merge"]

STAGES = ("native", "implied scale", "scale search")

DEFAULT_WEIGHTS = {"native": 0.5, "implied scale": 0.25, "scale search": 0.25}
"""Shares of the error budget (before stages that cannot run are dropped and the rest
renormalised). A query of the fingerprint's size has only the native stage: all of it."""


@dataclass
class CameraDecision:
    """The answer for one (query, fingerprint) pair.

    ``pce``, ``scale``, ``offset``, ``rotation`` describe the best position of the deciding stage
    (``stage``): the match if there is one, else the stage with the smallest false-alarm
    probability. ``offset`` is the rotated query's top-left in the fingerprint resampled to
    ``scale`` (fingerprint pixels when ``scale == 1``). ``n_positions`` counts every position
    the plan may search, ``threshold`` is the PCE the deciding stage needed, ``false_alarm``
    the per-decision false-alarm probability (adjusted p-value; a match iff ``<= alpha``).
    ``searched`` lists the stages that ran; ``text`` says what was searched and found.
    """

    pce: float | None
    scale: float
    offset: tuple[int, int] | None
    rotation: int | None
    stage: str | None
    n_positions: int
    threshold: float
    false_alarm: float
    match: bool
    sigma_index: int = 0
    searched: list[str] = field(default_factory=list)
    text: str = ""
    seconds: float = 0.0
    by_stage: dict = field(default_factory=dict)
    plan: SearchPlan | None = None

    def describe_searched(self) -> str:
        """What the stages that ran searched, e.g. ``"native: searched 2 rotations × 2 sigmas × 1
        position: threshold 62.7"`` (every stage of the plan when none ran)."""
        if self.plan is None:
            return ""
        names = [n for n in self.searched if n in self.plan and self.plan.share(n) > 0]
        return "; ".join(self.plan.describe(n) for n in names) if names else self.plan.describe()

    def as_dict(self) -> dict:
        return {"pce": self.pce, "scale": self.scale, "offset": list(self.offset) if self.offset else None,
                "rotation": self.rotation, "stage": self.stage, "n_positions": self.n_positions,
                "threshold": self.threshold, "false_alarm": self.false_alarm, "match": self.match}


class CameraSearch:
    """Every search one camera fingerprint may run on a query, under one error budget.

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
    rotations : tuple of int
        Quarter turns of the native stage, default all four (one that fits nowhere adds nothing).
    scaled_rotations : tuple of int
        Quarter turns of the scaled stages (default ``(0, 1, 3)``, see ``ScaledSearch``).
    scaled : bool
        Run the implied-scale and scale-search stages for queries smaller than the fingerprint.
    weights : dict
        Shares of the budget by stage name (default :data:`DEFAULT_WEIGHTS`).
    alpha : float
        Per-decision false-alarm rate (default PCE 60 at one position).
    spectrum : optional
        The fingerprint's spectrum for the native stage, precomputed (a
        ``scores.ReferenceSpectrum`` of ``fingerprint``, e.g. from a spectrum cache, or a
        ``device.DeviceSpectrum``); default: computed here (on the device when ``device`` is given).
    device : fingerprint.device.Device, optional
        Run the native stage on this CUDA device; the scaled stages stay on the CPU.
    **scaled_options
        Passed to :class:`~fingerprint.scaled_search.ScaledSearch` (``min_scale``,
        ``candidates``, ``refine_steps``, ``coarse``, ``cache_bytes``).
    """

    def __init__(self, fingerprint: np.ndarray, *, rotations: Sequence[int] = (0, 1, 2, 3),
                 scaled_rotations: Sequence[int] = (0, 1, 3), scaled: bool = True,
                 weights: dict | None = None, alpha: float = ALPHA, min_scale: float = DEFAULT_MIN_SCALE,
                 spectrum=None, device=None, **scaled_options):
        self.K = np.ascontiguousarray(fingerprint, dtype=np.float32)
        if spectrum is not None and tuple(spectrum.shape) != self.K.shape:
            raise ValueError(f"the spectrum given is of a {spectrum.shape} reference, the fingerprint is {self.K.shape}")
        self.device = device
        self.xp = np if device is None else device.xp
        if spectrum is None:
            spectrum = ReferenceSpectrum(self.K) if device is None else device.spectrum(self.K)
        self.spectrum = spectrum
        self.rotations = tuple(sorted({int(r) % 4 for r in rotations}))
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        self.alpha = float(alpha)
        self.scaled = ScaledSearch(self.K, rotations=tuple(scaled_rotations), min_scale=min_scale,
                                   **scaled_options) if scaled else None

    def _native_shifts(self, query_shape: tuple[int, int]) -> dict[int, int]:
        H, W = self.K.shape
        out = {}
        for k in self.rotations:
            h, w = query_shape if k % 2 == 0 else query_shape[::-1]
            if h <= H and w <= W:
                out[k] = (H - h + 1) * (W - w + 1)
        return out

    def plan(self, query_shape: tuple[int, int], n_sigmas: int = 1) -> SearchPlan:
        """The plan for a query of ``query_shape`` (h, w) with ``n_sigmas`` residuals in the native stage."""
        shifts = self._native_shifts(query_shape)
        stages = [Stage("native", tuple(shifts.values()), rotations=len(shifts), sigmas=n_sigmas,
                        weight=self.weights.get("native", 0.0))]
        smaller = query_shape[0] * query_shape[1] < self.K.size
        if self.scaled is not None and smaller:
            w = (self.weights.get("implied scale", 0.0), self.weights.get("scale search", 0.0))
            stages += self.scaled.stages(query_shape, weights=w)
        return SearchPlan(tuple(stages), self.alpha)

    def score(self, residuals: Sequence[np.ndarray], *, n_sigmas: int | None = None,
              stages: Sequence[str] = STAGES, progress: Callable[[float, str], None] | None = None,
              plan: SearchPlan | None = None, native_residuals: Sequence[int] | None = None) -> CameraDecision:
        """Decide for one query.

        Parameters
        ----------
        residuals : sequence of ndarray of float32, (h, w)
            ``W * I`` for each denoiser strength; the first (sigma 2) serves every stage, the
            others only the native stage.
        n_sigmas : int, optional
            Residuals the plan counts in the native stage (default ``len(residuals)``); pass 2
            with one residual to score with the budget of a search whose second residual is
            computed only when this one matches nowhere (the decision is the same).
        stages : sequence of str
            Stages to run now (e.g. the cheap ``("native", "implied scale")`` for every camera
            first); the plan, hence every threshold, still counts all of them.
        """
        t0 = time.perf_counter()
        xp = self.xp
        residuals = [xp.ascontiguousarray(r, dtype=xp.float32) for r in residuals]
        shape = tuple(int(n) for n in residuals[0].shape)
        plan = plan or self.plan(shape, n_sigmas or len(residuals))
        found: dict[str, tuple] = {}  # stage -> (pce, scale, offset, rotation, false_alarm, threshold, sigma)
        searched: list[str] = []
        for name in STAGES:
            if name not in stages or name not in plan or plan.share(name) == 0.0:
                continue
            searched.append(name)
            got = self._run(name, residuals, plan, progress, native_residuals)
            if got is not None:
                found[name] = got
                if got[4] <= plan.alpha:
                    break
        return self._decide(plan, found, searched, time.perf_counter() - t0)

    def _run(self, name: str, residuals, plan: SearchPlan, progress, native_residuals=None):
        if name == "native":
            xp, best, thr = self.xp, None, plan.threshold(name)
            for si, wi in enumerate(residuals):
                if native_residuals is not None and si not in native_residuals:
                    continue
                for k in self._native_shifts(tuple(int(n) for n in wi.shape)):  # rotation 0 first
                    q = xp.ascontiguousarray(xp.rot90(wi, k))
                    res = self.spectrum.pce(q, search="aligned" if tuple(q.shape) == self.K.shape else "crop")
                    if best is None or res.pce > best[0].pce:
                        best = (res, k, si)
                    if best[0].pce >= thr:
                        break  # a match at a fixed threshold: the other positions cannot undo it
                if best is not None and best[0].pce >= thr:
                    break  # the second residual is only needed when the first matches nowhere
            if best is None:
                return None
            res, k, si = best
            return (res.pce, 1.0, res.offset, 90 * k, plan.false_alarm(name, res.pce), thr, si)
        host = residuals[0] if self.device is None else np.ascontiguousarray(self.device.host(residuals[0]))
        if name == "implied scale":
            m = self.scaled.implied(host, plan)
        else:
            m = self.scaled.search(host, plan, progress=progress)
        if m is None:
            return None
        return (m.pce, m.scale, m.offset, m.rotation, m.false_alarm, m.threshold, 0)

    @staticmethod
    def _decide(plan: SearchPlan, found: dict, searched: list[str], seconds: float) -> CameraDecision:
        n_total = plan.n_positions
        if not found:
            return CameraDecision(None, 1.0, None, None, None, n_total, math.inf, 1.0, False, searched=searched,
                                  text="no match: " + plan.describe(), seconds=seconds, plan=plan)
        name = min(found, key=lambda s: found[s][4])
        pce, scale, offset, rot, fa, thr, si = found[name]
        match = fa <= plan.alpha
        where = f"factor {scale:.4f}, " if scale != 1.0 else ""
        best = (f"{name} at {where}offset {offset[0]},{offset[1]}, rotation {rot}: PCE {pce:.1f} "
                f"{'>=' if match else '<'} threshold {thr:.1f} (false alarm {fa:.2g})")
        text = ("match: " if match else "no match: ") + plan.describe() + "; best " + best
        return CameraDecision(pce, scale, offset, rot, name, n_total, thr, fa, match, si, searched, text, seconds,
                              by_stage=dict(found), plan=plan)


def merge(a: CameraDecision | None, b: CameraDecision | None) -> CameraDecision | None:
    """One camera's decision over two passes: the one with the smaller false-alarm probability,
    with the stages of both in ``searched``."""
    if a is None or b is None:
        return a if b is None else b
    best = a if a.false_alarm <= b.false_alarm else b
    best.searched = list(dict.fromkeys(a.searched + b.searched))
    return best


def decide_cameras(searches: dict[str, CameraSearch], wi2: np.ndarray,
                   second: Callable[[], np.ndarray] | None = None, *, exhaustive: bool = False,
                   progress: Callable[[str, float, str], None] | None = None) -> dict[str, CameraDecision]:
    """Score one query against every camera the way an attribution should, cheapest stages first.

    1. native (first residual) and implied scale, every camera;
    2. if no camera matched and ``second`` is given: the native stage with the second residual
       (``second()``, e.g. ``W * I`` at sigma 5, computed only then);
    3. if still no camera matched: the scale search, camera by camera, until one matches.

    Every camera's plan counts the second residual from the start (``n_sigmas=2``), so a
    decision does not depend on whether the passes ran; a camera skipped by an earlier match
    lists only the stages it ran in ``searched``. ``exhaustive`` runs every pass for every camera.
    ``progress(camera, fraction, text)`` follows the scale search.
    """
    n_sigmas = 2 if second is not None else 1
    dec = {c: s.score([wi2], n_sigmas=n_sigmas, stages=("native", "implied scale")) for c, s in searches.items()}
    matched = lambda: any(d.match for d in dec.values())  # noqa: E731
    if second is not None and (exhaustive or not matched()):
        wi5 = second()
        for c, s in searches.items():
            dec[c] = merge(dec[c], s.score([wi2, wi5], stages=("native",), native_residuals=(1,)))
    for c, s in searches.items():
        if not exhaustive and matched():
            break
        report = (lambda f, text, c=c: progress(c, f, text)) if progress is not None else None
        dec[c] = merge(dec[c], s.score([wi2], n_sigmas=n_sigmas, stages=("scale search",), progress=report))
    return dec
