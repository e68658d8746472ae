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

Across cameras, :func:`decide_cameras` runs the cheap stages for every camera first, and
:func:`scale_stage` the scale search: every camera surveyed (a coarse sweep at 1/4 resolution),
then searched the likeliest first and side by side, one step at a time
(:meth:`CameraSearch.start_scale_search`), until one matches. Each camera's search and threshold
are the same in any order; the order only decides which cameras are searched before a match.

With a CUDA ``device`` (``fingerprint.device.Device``) the native stage runs there (the
fingerprint's spectrum on the device, the query residuals device arrays); the implied-scale and
scale-search stages always run on the CPU, on a host copy of the first residual made only when
they run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from fingerprint.error_budget import ALPHA, SearchPlan, Stage
from fingerprint.scaled_search import DEFAULT_MIN_SCALE, ScaledMatch, ScaledSearch, Survey
from fingerprint.scores import ReferenceSpectrum

__all__ = ["DEFAULT_WEIGHTS", "SIDE_BY_SIDE", "SURVEY_CLEAR", "CameraDecision", "CameraSearch", "STAGES",
           "ScaleStageRun", "decide_cameras", "merge", "scale_stage"]

STAGES = ("native", "implied scale", "scale search")

SIDE_BY_SIDE = 8
"""Cameras whose scale searches :func:`scale_stage` runs side by side at most (each holds its
query copies and spectra, some 40 MB for a 6 MP query); the next in the survey's order starts
when one ends."""

SURVEY_CLEAR = 1e-3
"""False-alarm probability of a camera's survey peak (``ScaledSearch.survey``) at or below which
:func:`scale_stage` searches that camera first and whole: noise reaches it once in a thousand
surveys. It orders the searches only; no decision depends on it."""

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
              plan: SearchPlan | None = None, native_residuals: Sequence[int] | None = None,
              native_rotations: Sequence[int] | None = None) -> CameraDecision:
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
        native_residuals, native_rotations : sequence of int, optional
            Residuals (indices into ``residuals``) and quarter turns the native stage computes now
            (default all); the plan still counts every one. A caller that knows the others cannot
            reach the threshold (``camera_library``'s digests) leaves them out: the decision is
            the same, and the PCE of a camera that does not match is the best of those computed.
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
            got = self._run(name, residuals, plan, progress, native_residuals, native_rotations)
            if got is not None:
                found[name] = got
                if got[4] <= plan.alpha:
                    break
        return self._decide(plan, found, searched, time.perf_counter() - t0)

    def _run(self, name: str, residuals, plan: SearchPlan, progress, native_residuals=None, native_rotations=None):
        if name == "native":
            xp, best, thr = self.xp, None, plan.threshold(name)
            for si, wi in enumerate(residuals):
                if native_residuals is not None and si not in native_residuals:
                    continue
                for k in self._native_shifts(tuple(int(n) for n in wi.shape)):  # rotation 0 first
                    if native_rotations is not None and k not in native_rotations:
                        continue
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
        host = self._host(residuals[0])
        if name == "implied scale":
            m = self.scaled.implied(host, plan)
        else:
            m = self.scaled.search(host, plan, progress=progress)
        return _found(m)

    def _host(self, residual) -> np.ndarray:
        """A host float32 copy of a residual (the scaled stages run on the CPU)."""
        if self.device is None:
            return np.ascontiguousarray(residual, dtype=np.float32)
        return np.ascontiguousarray(self.device.host(residual), dtype=np.float32)

    def can_scale_search(self, query_shape: tuple[int, int], n_sigmas: int = 1) -> bool:
        """Whether the plan for a query of ``query_shape`` has a scale-search stage with a share."""
        plan = self.plan(tuple(int(n) for n in query_shape), n_sigmas)
        return "scale search" in plan and plan.share("scale search") > 0.0

    def survey(self, residual) -> Survey | None:
        """:meth:`ScaledSearch.survey <fingerprint.scaled_search.ScaledSearch.survey>` of the first
        residual (``W * I`` at sigma 2): a cheap coarse look that orders cameras, never decides;
        None without a scaled search or where it does not run."""
        if self.scaled is None:
            return None
        return self.scaled.survey(self._host(residual))

    def start_scale_search(self, residual, *, n_sigmas: int = 1,
                           progress: Callable[[float, str], None] | None = None) -> "ScaleStageRun":
        """The ``scale search`` stage of :meth:`score` as a run stepped by its caller
        (:class:`ScaleStageRun`); stepped to its end it gives exactly
        ``score([residual], n_sigmas=n_sigmas, stages=("scale search",), progress=progress)``."""
        return ScaleStageRun(self, residual, n_sigmas, progress)

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


def _found(m: ScaledMatch | None) -> tuple | None:
    """A scaled stage's answer as ``CameraSearch``'s per-stage tuple, or None."""
    if m is None:
        return None
    return (m.pce, m.scale, m.offset, m.rotation, m.false_alarm, m.threshold, 0)


class ScaleStageRun:
    """One camera's ``scale search`` stage in progress, advanced one unit of work per
    :meth:`step` (:class:`fingerprint.scaled_search.ScaledRun`), so that :func:`scale_stage`
    can interleave cameras. The plan, hence the threshold, is the camera's own, fixed by the
    query's and the fingerprint's sizes before the first step.

    Attributes
    ----------
    camera : CameraSearch
    plan : SearchPlan
    run : fingerprint.scaled_search.ScaledRun
    """

    def __init__(self, camera: CameraSearch, residual, n_sigmas: int, progress):
        self.camera = camera
        host = camera._host(residual)
        self.plan = camera.plan(tuple(int(n) for n in host.shape), n_sigmas)
        self.run = camera.scaled.start(host, self.plan, progress=progress)
        self.seconds = 0.0

    @property
    def done(self) -> bool:
        return self.run.done

    @property
    def fraction(self) -> float:
        """Share of the coarse sweep done (1.0 while its best peaks are refined)."""
        return self.run.fraction

    @property
    def coarse_log10_false_alarm(self) -> float:
        """``ScaledRun.coarse_log10_false_alarm``: the sweep's best peak so far, the lower the stronger."""
        return self.run.coarse_log10_false_alarm

    def step(self) -> bool:
        """One unit of work; False once the stage has ended."""
        t0 = time.perf_counter()
        more = self.run.step()
        self.seconds += time.perf_counter() - t0
        return more

    def decision(self) -> CameraDecision:
        """The stage's decision (call once :attr:`done`): the one ``CameraSearch.score`` gives."""
        if not self.run.done:
            raise RuntimeError("the scale search has not ended: step it until step() returns False")
        got = _found(self.run.result)
        found = {} if got is None else {"scale search": got}
        return CameraSearch._decide(self.plan, found, ["scale search"], self.seconds)


def merge(a: CameraDecision | None, b: CameraDecision | None) -> CameraDecision | None:
    """One camera's decision over two passes: the one with the smaller false-alarm probability,
    with the stages of both in ``searched``."""
    if a is None or b is None:
        return a if b is None else b
    best = a if a.false_alarm <= b.false_alarm else b
    best.searched = list(dict.fromkeys(a.searched + b.searched))
    return best


def scale_stage(searches: Mapping[str, CameraSearch], names: Sequence[str], wi2, n_sigmas: int,
                decisions: dict[str, CameraDecision], *, exhaustive: bool = False,
                progress: Callable[[str, float, str], None] | None = None) -> dict[str, CameraDecision]:
    """The scale-search stage over several cameras, until one matches; updates ``decisions``.

    Each camera's scale search (:meth:`CameraSearch.start_scale_search`) runs exactly as it
    would alone, with the plan's threshold of that camera (fixed by the query's and the
    fingerprint's sizes, counting ``n_sigmas`` residuals in its native stage), so neither the
    order below nor what other cameras scored changes any camera's threshold or result; only
    which cameras run before a match ends the stage, and how long that takes:

    1. a survey of every camera (:meth:`CameraSearch.survey`: a coarse sweep at 1/4
       resolution, about 1/8 of a search's sweep) ranks them by the false-alarm probability of
       their best coarse peak;
    2. the cameras whose survey peak is clear (at most :data:`SURVEY_CLEAR`, a level noise
       reaches once in a thousand surveys) are searched one by one, best first, each to its end;
    3. the others are searched side by side (at most :data:`SIDE_BY_SIDE` at a time, the next in
       the survey's order starting when one ends): the one least advanced in its coarse sweep
       takes the next step (a coarse factor; ties go to the better survey), so a camera whose
       sweep passes a clear coarse peak refines it, and may match, while the wrong cameras have
       swept no more than it has. A camera whose best coarse peak so far is as unlikely as
       :data:`SURVEY_CLEAR` over the coarse positions it has scored goes on alone (the most
       unlikely first) until its search ends. Once every sweep is done, the refinements run
       best coarse peak first.

    A decision is merged (:func:`merge`) only for a camera whose search ended; a camera not
    reached, or interrupted by another's match, keeps its decision (its ``searched`` has no
    ``"scale search"``). Nothing runs if a decision already matches. ``exhaustive`` searches
    every camera to its end. Cameras of ``names`` whose plan has no scale search (the query is
    not smaller than the fingerprint, or ``scaled=False``) are skipped.

    Parameters
    ----------
    searches : mapping of str to CameraSearch
        Looked up only for the cameras of ``names`` (a lazy mapping loads no other).
    names : sequence of str
        Cameras to search, in library order (the order of ties).
    wi2 : ndarray of float32, (h, w)
        ``W * I`` of the query at sigma 2 (a CuPy array is copied to the host once: the scaled
        stages run on the CPU).
    n_sigmas : int
        Residuals each plan counts in its native stage (2 when a second residual may be scored).
    decisions : dict of str to CameraDecision
        The earlier stages' decisions, updated in place and returned.
    progress : callable, optional
        ``progress(camera, fraction, text)``: the survey (fraction 0) and every coarse factor.
    """
    matched = lambda: any(d is not None and d.match for d in decisions.values())  # noqa: E731
    if not exhaustive and matched():
        return decisions
    wi2 = np.ascontiguousarray(wi2.get() if hasattr(wi2, "get") else wi2, dtype=np.float32)  # one host copy
    shape = tuple(int(n) for n in wi2.shape)
    todo = [c for c in names if searches[c].can_scale_search(shape, n_sigmas)]

    def start(c: str) -> ScaleStageRun:
        report = (lambda f, text: progress(c, f, text)) if progress is not None else None
        return searches[c].start_scale_search(wi2, n_sigmas=n_sigmas, progress=report)

    def finish(c: str, run: ScaleStageRun) -> bool:
        """Merge an ended search; True when the stage is over (a match, not exhaustive)."""
        decisions[c] = merge(decisions.get(c), run.decision())
        return decisions[c].match and not exhaustive

    if exhaustive or len(todo) < 2:
        for c in todo:
            run = start(c)
            while run.step():
                pass
            if finish(c, run):
                break
        return decisions
    strength = {}
    for c in todo:
        sv = searches[c].survey(wi2)
        strength[c] = sv.log10_false_alarm if sv is not None else 0.0
        if sv is not None and progress is not None:
            progress(c, 0.0, f"scale search: survey at 1/{sv.level}, best coarse PCE {sv.pce:.1f} at factor "
                             f"{sv.scale:.4f} (false alarm 10^{sv.log10_false_alarm:.1f})")
    ranked = sorted(todo, key=lambda c: strength[c])  # stable: ties in library order
    rank = {c: i for i, c in enumerate(ranked)}
    clear = math.log10(SURVEY_CLEAR)
    for c in (c for c in ranked if strength[c] <= clear):
        run = start(c)
        while run.step():
            pass
        if finish(c, run):
            return decisions
    queue = [c for c in ranked if strength[c] > clear]
    runs: dict[str, ScaleStageRun] = {}

    def key(c: str) -> tuple:
        r = runs[c]
        strong = r.coarse_log10_false_alarm
        if strong <= clear:  # a promising coarse peak so far: this camera goes on alone
            return (0, strong, 0.0, rank[c])
        return (1, r.fraction, strong if r.fraction >= 1.0 else 0.0, rank[c])

    while queue or runs:
        while queue and len(runs) < SIDE_BY_SIDE:
            c = queue.pop(0)
            runs[c] = start(c)
        c = min(runs, key=key)
        if not runs[c].step() and finish(c, runs.pop(c)):
            return decisions
    return decisions


def decide_cameras(searches: Mapping[str, CameraSearch], wi2: np.ndarray,
                   second: Callable[[], np.ndarray] | None = None, *, exhaustive: bool = False,
                   progress: Callable[[str, float, str], None] | None = None) -> dict[str, CameraDecision]:
    """Score one query against every camera the way an attribution should, cheapest stages first.

    1. native (first residual) and implied scale, every camera;
    2. if no camera matched and ``second`` is given: the native stage with the second residual
       (``second()``, e.g. ``W * I`` at sigma 5, computed only then);
    3. if still no camera matched: the scale search (:func:`scale_stage`: every camera surveyed,
       then searched, the likeliest first, until one matches).

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
    return scale_stage(searches, list(searches), wi2, n_sigmas, dec, exhaustive=exhaustive, progress=progress)
