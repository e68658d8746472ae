"""Scaled-query search: find a camera fingerprint in a query that was resized, and maybe cropped.

A photo resized by a factor ``s`` (``0 < s <= 1``) carries the sensor's PRNU resampled onto its
own pixel grid: query pixel ``(y, x)`` sits on the sensor at ``((y + 0.5) / s - 0.5,
(x + 0.5) / s - 0.5)`` (pixel centres, the convention of Pillow, OpenCV and every image editor);
a crop after the resize shifts that grid by an integer ``(oy, ox)`` of resized pixels. For each
candidate factor the fingerprint ``K`` is resampled onto that grid
(``fingerprint.resample.resample_fingerprint``, "fingerprint down") and the existing crop search
(``fingerprint.scores.ReferenceSpectrum``, FFT cross-correlation of ``W * I`` with the resampled
``K``) finds the offset [1]_.

Two stages, both scored against thresholds fixed before any score is seen
(``fingerprint.error_budget``):

``implied scale``
    The factor the query's size implies if it is the whole frame, resized (``h / H`` and
    ``w / W`` agree to one pixel of rounding): one aligned position per rotation.
``scale search``
    Factors from 1 down to ``max(min_scale, h / H, w / W)`` (below that the query would cover
    more than the sensor), on a fine log grid of step ``FINE_TOLERANCE / extent`` (extent: the
    query's longer side) fixed before any score, coarse to fine:

    1. a sweep at 1/``coarse`` resolution over every ``r``-th fine point, smallest factor first,
       scoring the query and the query turned by 180 degrees from one FFT
       (``surface_stats.coarse_stats``: only the band of rows where the query fits is transformed
       back); the next point's template (fingerprint resampled, its
       FFT) is made by a prefetch thread while the current point is scored (``template_cache.prefetch_pool``,
       one thread per core for the whole process): the same templates in the same order;
    2. each of the ``candidates`` best coarse peaks is refined (``fingerprint.scaled_refine``): at
       the fine points within ``r`` of it, full-resolution windows around the position the coarse
       peak predicts rank the points by the phase-free energy of their peak
       (``surface_stats.Peak``), and the ``decisions`` best are scored over every shift of the
       whole resampled fingerprint;
    3. the best integer-shift PCE of the full-resolution surfaces decides (at full-resolution
       sweeps, ``coarse == 1`` or small queries, the sweep's surfaces are among them).

    Every deciding surface lies on the fine grid, so the stage's threshold counts every shift of
    every fine point: the best of a subset of a fixed set of positions, whatever picked the
    subset, reaches the threshold with at most the stage's rate. Counting only the surfaces
    scored is not valid: a refinement climbs the sweep's best noise peak, and with that count the
    measured false-alarm rate was 1.0-2.7 times the stated one and grew as the rate fell
    (``benchmarks/camera_false_alarm.py``). A coarse peak above a loose level (false-alarm rate
    1e-3 over the sweep) is refined as soon as the sweep has passed it, and a match ends the
    search. ``ScaledSearch.start`` gives the same search as a ``ScaledRun`` advanced one coarse
    factor (or one refined peak) per step, so that several cameras' searches can run side by
    side (``camera_search.scale_stage``); each scores the same surfaces as it would alone.

``survey`` (not a stage: it orders cameras and decides nothing)
    A coarse sweep at 1/4 resolution over every 8th fine point, no refinement: about 1/8 of the
    stage's sweep. The false-alarm probability of its best peak over the survey's positions says
    which cameras to search first.

Why these choices (measured on the 16 Dresden photos, ``benchmarks/camera_scaled.py``):

- fingerprint down beats query up on cost (3-4x: its FFTs are ``s**2`` smaller) at nearly the
  same PCE (query up +5 % median at x0.75, +0.5 % at x0.5), and its shifts live on the query's
  own grid, where the correlation surface is nearly white (counting its shifts counts
  independent positions);
- the resampling filter is Pillow's antialiased bilinear (``fingerprint.resample``);
- the PCE peak in scale is narrow: at a relative scale error ``u / extent`` it keeps a median
  0.93 of its value at u = 0.2, 0.71 at u = 0.5 and 0.46 at u = 0.8 (u/2 pixels of
  misregistration at the query's edges), and it has one lobe per integer shift, since the
  misregistration at the query's centre passes through half pixels as the factor changes; the
  3 x 3 energy around the peak has one smooth lobe (0.75 of its value at u = 1, 0.5 at u = 2),
  hence the refinement's ranking. At half resolution the PCE keeps 30-90 % of its full-resolution
  value and a median 0.8-1.1 (10th percentile 0.53) at u = 0.8-1.2, which makes the coarse
  sweep cheap and still selective.

References
----------
.. [1] M. Goljan and J. Fridrich, "Camera identification from cropped and scaled images",
   Proc. SPIE 6819, Security, Forensics, Steganography, and Watermarking of Multimedia
   Contents X, 2008. :doi:`10.1117/12.766732`
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.fft

from fingerprint.error_budget import SearchPlan, Stage, log10_false_alarm, threshold
from fingerprint.resample import downsample, resample_fingerprint, resized_shape, wrap_to_fast
from fingerprint.scaled_records import ScaledMatch, ScaledRun, Survey
from fingerprint.scaled_refine import refine as refine_peak
from fingerprint.scores import ReferenceSpectrum
from fingerprint.surface_stats import Peak, Template, coarse_stats
from fingerprint.template_cache import TemplateCache, prefetch_pool

__all__ = [
    "COARSE_TOLERANCE",
    "DEFAULT_MIN_SCALE",
    "ScaledMatch",
    "ScaledRun",
    "ScaledSearch",
    "SURVEY_LEVEL",
    "Survey",
]

DEFAULT_MIN_SCALE = 0.3
"""Smallest resize factor searched (Goljan and Fridrich 2008 search down to about 0.3)."""

FINE_TOLERANCE = 1.0
"""Step of the fine grid of factors, in log scale, times the query's longer side (pixels): the
grid on which every deciding surface lies. Midway between its points the scale error is 0.5 /
extent, where the PCE keeps a median 0.71 (10th percentile 0.58) of its value at the true factor
(Dresden, ``benchmarks/camera_scaled.py --peak-width``); the threshold counts all its points."""

COARSE_TOLERANCE = 2.0
"""Coarse step times the coarse query extent: the sweep at 1/d resolution visits every
``round(COARSE_TOLERANCE * d / FINE_TOLERANCE)``-th fine point. Midway between coarse points the
scale error is 1.0 / extent at half resolution, where the coarse PCE keeps a median 0.8-1.1 and a
10th percentile 0.53 of its value at the true factor, enough for the true peak to stand out."""

SURVEY_LEVEL = 4
"""Resolution divisor of :meth:`ScaledSearch.survey` (the sweep that orders cameras): at 1/4
the coarse surfaces have 1/4 of the half-resolution sweep's pixels and the stride is twice as
long, so a survey costs about 1/8 of a camera's sweep."""

_BAND = math.log(1.06)  # coarse templates of factors within 6 % share one padded size (one query FFT)


@dataclass
class _Candidate:
    pce: float  # coarse PCE
    index: int  # point of the fine grid
    k: int  # quarter turns
    offset: tuple[int, int] = (0, 0)  # coarse offset of the peak (pixels at 1/d)
    d: int = 1  # coarse resolution divisor


class ScaledSearch:
    """Scaled-query search against one camera fingerprint, with its resampled spectra cached.

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
        The camera's PRNU factor ``K``.
    min_scale : float
        Smallest factor searched (default 0.3).
    rotations : tuple of int
        Quarter turns tried (``np.rot90(query, k)``), default ``(0, 1, 3)``: upright, and the two
        quarter turns of a portrait photo; add 2 for photos turned upside down (it doubles the
        sweep of a landscape query, at the cost of one more FFT per factor).
    orientation : {"sensor", "any"}
        ``"sensor"`` (default): of those rotations, only the ones that give the query the
        sensor's orientation (a landscape query on a landscape sensor: 0 and 180 degrees; a
        portrait one: 90 and 270), so a portrait crop of a landscape photo is not searched;
        ``"any"``: every rotation that fits. Square queries or sensors try every rotation.
    coarse : int
        Resolution divisor of the coarse sweep (default 2; 1 for queries under 256 pixels).
    candidates : int
        Coarse peaks refined at full resolution (default 3).
    decisions : int
        Whole full-resolution surfaces scored per refined peak (default 2).
    coarse_min_side : int
        The coarse sweep runs at 1/``coarse`` resolution when the query's shorter side is at
        least ``coarse * coarse_min_side`` pixels (default 128), else at full resolution.
    cache_bytes : int
        Memory for cached coarse spectra (default 256 MiB), kept across queries of one run from a
        template's second use on (``template_cache.TemplateCache``). The
        survey's (:meth:`survey`) are cached apart, in a quarter of that.

    Examples
    --------
    >>> from fingerprint.synthetic import make_camera
    >>> search = ScaledSearch(make_camera("a", 1, shape=(192, 256)).K)
    >>> [(st.name, st.rotations) for st in search.stages((134, 179))]
    [('implied scale', 1), ('scale search', 1)]
    """

    def __init__(self, fingerprint: np.ndarray, *, min_scale: float = DEFAULT_MIN_SCALE,
                 rotations: tuple[int, ...] = (0, 1, 3), orientation: str = "sensor", coarse: int = 2,
                 candidates: int = 3, decisions: int = 2, coarse_min_side: int = 128,
                 cache_bytes: int = 256 << 20):
        k = np.ascontiguousarray(fingerprint, dtype=np.float32)
        if k.ndim != 2:
            raise ValueError(f"fingerprint must be 2-D (H, W), got shape {k.shape}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        if coarse < 1 or candidates < 1 or decisions < 1:
            raise ValueError("coarse, candidates and decisions must be >= 1")
        if orientation not in ("sensor", "any"):
            raise ValueError(f"orientation must be 'sensor' or 'any', got {orientation!r}")
        self.K = k
        self.min_scale = float(min_scale)
        self.rotations = tuple(sorted({int(r) % 4 for r in rotations}))
        self.orientation = orientation
        self.coarse = int(coarse)
        self.candidates = int(candidates)
        self.decisions = int(decisions)
        self.coarse_min_side = int(coarse_min_side)
        self.cache = TemplateCache(int(cache_bytes))
        self.survey_cache = TemplateCache(int(cache_bytes) // 4)  # apart: survey templates never crowd out the search's
        self._reduced: dict[int, np.ndarray] = {1: k}
        self._implied: dict[tuple[int, int], ReferenceSpectrum] = {}

    # --- geometry, fixed before any score --------------------------------------------------------
    def _range(self, shape: tuple[int, int]) -> tuple[float, float] | None:
        """Factors at which a query of ``shape`` fits inside the resampled fingerprint, or None."""
        H, W = self.K.shape
        lo = max(self.min_scale, shape[0] / H, shape[1] / W)
        return (lo, 1.0) if lo <= 1.0 else None

    def _implied_scale(self, shape: tuple[int, int]) -> tuple[float, float] | None:
        """Per-axis factors if ``shape`` is the whole frame resized (sides agree to 1 pixel), else None."""
        H, W = self.K.shape
        h, w = shape
        sy, sx = h / H, w / W
        if (h, w) == (H, W) or sy > 1.0 or sx > 1.0 or sy < self.min_scale or sx < self.min_scale:
            return None
        return (sy, sx) if abs(sy - sx) <= 1.0 / H + 1.0 / W else None

    def _level(self, shape: tuple[int, int]) -> int:
        return self.coarse if min(shape) // self.coarse >= self.coarse_min_side else 1

    def _grid(self, shape: tuple[int, int], level: int | None = None) -> tuple[int, int, np.ndarray]:
        """(coarse level d, coarse stride r, fine grid) for a query of ``shape``.

        The fine grid holds ``ln`` factors from the smallest at which the query fits (a whole
        frame resized lies exactly there) up to 0, step ``FINE_TOLERANCE / max(shape)``; the coarse
        sweep visits every ``r``-th point and the last one. ``level``: the sweep's resolution
        divisor d (default ``_level(shape)``); the stride grows with it (``r = 2 d``).
        """
        rng = self._range(shape)
        if rng is None:
            return 1, 1, np.zeros(0)
        d = self._level(shape) if level is None else int(level)
        step = FINE_TOLERANCE / max(shape)
        lo = math.log(rng[0])
        fine = lo + step * np.arange(int(math.floor(-lo / step + 1e-9)) + 1)
        if fine[-1] < -0.25 * step:
            fine = np.append(fine, 0.0)
        return d, max(1, int(round(COARSE_TOLERANCE * d / FINE_TOLERANCE))), fine

    @staticmethod
    def _coarse_points(n: int, r: int) -> list[int]:
        return sorted(set(range(0, n, r)) | {n - 1}) if n else []

    def _shifts(self, shape: tuple[int, int], scale: float) -> int:
        """Shifts of a query of ``shape`` in the (fast-padded) fingerprint at ``scale``."""
        th, tw = resized_shape(self.K.shape, scale)
        fh, fw = scipy.fft.next_fast_len(th), scipy.fft.next_fast_len(tw)
        return max(fh - shape[0] + 1, 1) * max(fw - shape[1] + 1, 1)

    def _turns(self, query_shape: tuple[int, int]) -> list[int]:
        """Quarter turns searched for a query of ``query_shape`` (see ``orientation``)."""
        h, w = query_shape
        H, W = self.K.shape
        if self.orientation == "any" or h == w or H == W:
            return list(self.rotations)
        same = (h < w) == (H < W)
        return [k for k in self.rotations if (k % 2 == 0) == same]

    @staticmethod
    def _turned(shape: tuple[int, int], k: int) -> tuple[int, int]:
        return shape if k % 2 == 0 else (shape[1], shape[0])

    def stages(self, query_shape: tuple[int, int], *, weights: tuple[float, float] = (1.0, 1.0)) -> list[Stage]:
        """The two stages this search may run for a query of ``query_shape``, with their positions.

        ``implied scale``: one position per rotation whose shape is a resized whole frame.
        ``scale search``: every shift of every point of the fine grid, per rotation. Whatever the
        coarse sweep and the refinement pick, every surface that decides is one of these, so the
        best of them reaches the threshold with at most the stage's rate (a maximum over a subset).
        """
        turns = self._turns(query_shape)
        implied = [k for k in turns if self._implied_scale(self._turned(query_shape, k)) is not None]
        fits = [k for k in turns if self._range(self._turned(query_shape, k)) is not None]
        shifts: list[int] = []
        n_fine = n_coarse = 0
        for k in fits:
            shape = self._turned(query_shape, k)
            _, r, fine = self._grid(shape)
            shifts += [self._shifts(shape, math.exp(x)) for x in fine]
            n_fine = max(n_fine, len(fine))
            n_coarse = max(n_coarse, len(self._coarse_points(len(fine), r)))
        return [
            Stage("implied scale", (1,) * len(implied), rotations=len(implied), scales=1, weight=weights[0]),
            Stage("scale search", tuple(shifts), rotations=len(fits), scales=n_fine, weight=weights[1],
                  coarse_scales=n_coarse),
        ]

    # --- scoring ---------------------------------------------------------------------------------
    def _reduced_fingerprint(self, d: int) -> np.ndarray:
        if d not in self._reduced:
            self._reduced[d] = downsample(self.K, d)
        return self._reduced[d]

    def _coarse_template(self, log_scale: float, d: int) -> Template:
        kd = self._reduced_fingerprint(d)
        scale = math.exp(log_scale)
        t = resample_fingerprint(kd, scale)
        top = math.exp(-math.floor(-log_scale / _BAND + 1e-9) * _BAND)  # largest factor of the band
        th, tw = resized_shape(kd.shape, min(top, 1.0))
        padded = (scipy.fft.next_fast_len(max(th, t.shape[0])), scipy.fft.next_fast_len(max(tw, t.shape[1])))
        full = np.pad(t, ((0, padded[0] - t.shape[0]), (0, padded[1] - t.shape[1])), mode="wrap")
        full -= np.float32(full.mean())
        return Template(scipy.fft.rfft2(full, workers=-1), t.shape, padded)

    def aligned_fingerprint(self, stage: str, scale: float, offset: tuple[int, int],
                            shape: tuple[int, int]) -> np.ndarray | None:
        """The resampled fingerprint under a (rotated) query of ``shape`` where a match of ``stage``
        put it (``ScaledMatch.scale`` and ``offset``), for the NCC at that position; None if it
        does not fit (it always fits for a position the search scored)."""
        if stage == "implied scale":
            factors = self._implied_scale(shape)
            return None if factors is None else resample_fingerprint(self.K, factors, shape)
        t = wrap_to_fast(resample_fingerprint(self.K, scale))
        (oy, ox), (h, w) = offset, shape
        if oy < 0 or ox < 0 or oy + h > t.shape[0] or ox + w > t.shape[1]:
            return None
        return np.ascontiguousarray(t[oy: oy + h, ox: ox + w])

    def implied(self, WI: np.ndarray, plan: SearchPlan) -> ScaledMatch | None:
        """Stage ``implied scale``: aligned PCE against ``K`` resized exactly to the query's size."""
        t0 = time.perf_counter()
        best = None
        for k in self._turns(WI.shape):
            shp = self._turned(WI.shape, k)
            scale = self._implied_scale(shp)
            if scale is None:
                continue
            if shp not in self._implied:
                self._implied[shp] = ReferenceSpectrum(resample_fingerprint(self.K, scale, shp))
            res = self._implied[shp].pce(np.ascontiguousarray(np.rot90(WI, k)), search="aligned")
            if best is None or res.pce > best[0].pce:
                best = (res, k, math.sqrt(scale[0] * scale[1]))
        if best is None:
            return None
        res, k, scale = best
        n = plan.stage("implied scale").n_positions
        thr = plan.threshold("implied scale")
        fa = plan.false_alarm("implied scale", res.pce)
        return ScaledMatch("implied scale", res.pce, scale, (0, 0), 90 * k, n, thr, fa, res.pce >= thr,
                           scales_tried=1, seconds=time.perf_counter() - t0)

    def search(self, WI: np.ndarray, plan: SearchPlan, *,
               progress: Callable[[float, str], None] | None = None) -> ScaledMatch | None:
        """Stage ``scale search`` for the query product ``WI = W * I`` (float32, (h, w)).

        Returns the best full-resolution surface on the fine grid, or None when the query fits at
        no factor and rotation. ``progress(fraction, text)`` is called after every coarse factor.
        The same as ``start(WI, plan, progress=progress)`` stepped to its end.
        """
        run = self.start(WI, plan, progress=progress)
        while run.step():
            pass
        return run.result

    def start(self, WI: np.ndarray, plan: SearchPlan, *,
              progress: Callable[[float, str], None] | None = None) -> ScaledRun:
        """The scale search of :meth:`search` as a :class:`ScaledRun`, to be stepped: one coarse
        factor or one refined peak per step, so that several cameras' searches can be
        interleaved (``camera_search.scale_stage``). Nothing runs before the first step."""
        return ScaledRun(self._steps(WI, plan, progress))

    def _steps(self, WI: np.ndarray, plan: SearchPlan, progress):
        """Generator behind :class:`ScaledRun`: yields ``(fraction of the sweep done, best coarse
        PCE, coarse positions so far)`` after every unit of work and returns the ScaledMatch."""
        clock = {"spent": 0.0, "since": time.perf_counter()}

        def pause():
            now = time.perf_counter()
            clock["spent"] += now - clock["since"]
            return now

        name = "scale search"
        thr = plan.threshold(name)
        turns = [k for k in self._turns(WI.shape) if self._range(self._turned(WI.shape, k)) is not None]
        sweeps = []  # (base turn b in {0, 1}, turns {b, b+2} searched, level, stride, fine grid)
        for b in (0, 1):
            ks = [k for k in turns if k % 2 == b]
            if ks:
                sweeps.append((b, ks) + self._grid(self._turned(WI.shape, b)))
        if not sweeps:
            return None
        total = sum(len(self._coarse_points(len(sw[4]), sw[3])) for sw in sweeps)
        widest = max(self._shifts(self._turned(WI.shape, sw[0]), 1.0) for sw in sweeps)
        clear = threshold(1e-3, total * 2 * widest)  # a coarse peak this high is refined at once
        queries = {k: np.ascontiguousarray(np.rot90(WI, k)) for k in turns}
        fines = {k: sw[4] for sw in sweeps for k in sw[1]}
        strides = {k: sw[3] for sw in sweeps for k in sw[1]}
        state = {"tried": 0, "positions": 0, "best": None, "refined": []}
        top_pce, n_coarse = -math.inf, 0

        def decide(k: int, index: int, res: Peak) -> None:
            """Keep the best surface of the fine grid scored at full resolution."""
            state["positions"] += res.n_positions
            best = state["best"]
            if best is None or res.pce > best[2].pce:
                state["best"] = (k, index, res)

        def refine(cand: _Candidate) -> bool:
            state["refined"].append(cand)
            state["tried"] += refine_peak(self.K, queries[cand.k], index=cand.index, offset=cand.offset, d=cand.d,
                                          fine=fines[cand.k], r=strides[cand.k], decisions=self.decisions,
                                          decide=lambda j, res: decide(cand.k, j, res))
            return state["best"] is not None and state["best"][2].pce >= thr

        def finish():
            pause()
            return self._finish(state, fines, plan, clock["spent"])

        coarse: list[_Candidate] = []
        done = 0
        for b, ks, d, r, fine in sweeps:
            pending: _Candidate | None = None  # a clear coarse peak, refined once the sweep is past it
            for i, log_scale, here in self._sweep(queries[b], b, ks, d, r, fine):
                state["tried"] += 1
                done += 1
                for cand, st in here:
                    n_coarse += st.n_positions
                    top_pce = max(top_pce, cand.pce)
                    if d == 1:  # a full-resolution surface of the fine grid: it decides too
                        decide(cand.k, i, st)
                here = [cand for cand, _ in here]
                coarse += here
                top = max(here, key=lambda c: c.pce, default=None)
                if pending is not None and (top is None or top.pce < pending.pce):
                    matched = refine(pending)
                    pending = None
                    if matched:
                        return finish()
                if top is not None and top.pce >= clear and len(state["refined"]) < self.candidates and (
                        pending is None or top.pce >= pending.pce):
                    pending = top
                if progress is not None:
                    progress(done / total, f"scale search: factor {math.exp(log_scale):.4f} ({done}/{total})")
                pause()
                yield done / total, top_pce, n_coarse
                clock["since"] = time.perf_counter()
            if pending is not None and refine(pending):
                return finish()
        for cand in self._peaks(coarse, strides, skip=state["refined"]):
            if len(state["refined"]) >= self.candidates:
                break
            if refine(cand):
                break
            pause()
            yield 1.0, top_pce, n_coarse
            clock["since"] = time.perf_counter()
        return finish()

    def _sweep(self, query: np.ndarray, b: int, ks: list[int], d: int, r: int, fine: np.ndarray,
               cache: TemplateCache | None = None):
        """The coarse sweep of one base turn ``b``: for every ``r``-th point of ``fine`` (and the
        last), smallest factor first (a crop of a resize lies near it), yields ``(index, ln
        factor, [(candidate, Peak), ...])`` for the turns ``b`` and ``b + 2`` in ``ks`` (none
        where the query does not fit), from the query at 1/``d`` resolution against the cached
        coarse templates (``cache``, default the search's); one query FFT per band of factors."""
        cache = self.cache if cache is None else cache
        qd = downsample(query, d)
        qd = qd - np.float32(qd.mean())
        spec_q: dict[tuple, np.ndarray] = {}
        points = self._coarse_points(len(fine), r)

        def template(i: int) -> Template:
            log_scale = float(fine[i])
            return cache.get((d, round(log_scale, 10)), lambda: self._coarse_template(log_scale, d))

        # The next point's template (a resampling, single-threaded, and an FFT) is made in a second
        # thread while this point's correlation runs: the same templates, in the same order.
        pool = prefetch_pool()
        ahead = pool.submit(template, points[0]) if points else None
        try:
            for n, i in enumerate(points):
                t = ahead.result()
                ahead = pool.submit(template, points[n + 1]) if n + 1 < len(points) else None
                yield i, float(fine[i]), self._coarse_point(t, qd, spec_q, i, b, ks, d)
        finally:
            if ahead is not None and not ahead.cancel():
                concurrent.futures.wait([ahead])  # a sweep left early leaves no work behind

    @staticmethod
    def _coarse_point(t: Template, qd: np.ndarray, spec_q: dict, i: int, b: int, ks: list[int],
                      d: int) -> list[tuple[_Candidate, Peak]]:
        """The candidates of one coarse point: the query at 1/``d`` (``qd``) against template ``t``."""
        here: list[tuple[_Candidate, Peak]] = []
        if qd.shape[0] <= t.shape[0] + (d > 1) and qd.shape[1] <= t.shape[1] + (d > 1):
            q = qd[: min(qd.shape[0], t.shape[0]), : min(qd.shape[1], t.shape[1])]  # 1 px of rounding at 1/d
            if (t.padded, q.shape) not in spec_q:  # one query FFT per band of factors (the latest kept)
                spec_q.clear()
                spec_q[(t.padded, q.shape)] = scipy.fft.rfft2(q, s=t.padded, workers=-1)
            stats = coarse_stats(t, spec_q[(t.padded, q.shape)], q.shape, both=(b + 2) in ks)
            for st, kk in zip(stats, [b, b + 2]):
                if kk in ks:
                    here.append((_Candidate(st.pce, i, kk, st.offset, d), st))
        return here

    def survey(self, WI: np.ndarray, *, level: int = SURVEY_LEVEL) -> Survey | None:
        """A cheap look at how strongly this fingerprint is in ``WI``: a coarse sweep at
        1/``level`` resolution (stride ``2 level`` fine points) over every factor and turn the
        scale search would try, no refinement.

        It decides nothing and changes nothing in :meth:`search` (which runs whole whatever the
        survey found): ``camera_search.scale_stage`` only orders the cameras' scale searches by
        it. Returns None when the query fits at no factor, or when its shorter side at
        1/``level`` is under ``coarse_min_side`` (a query that small has a cheap search anyway).
        """
        t0 = time.perf_counter()
        turns = [k for k in self._turns(WI.shape) if self._range(self._turned(WI.shape, k)) is not None]
        if not turns or min(WI.shape) // level < self.coarse_min_side:
            return None
        best: tuple | None = None
        n = tried = 0
        for b in (0, 1):
            ks = [k for k in turns if k % 2 == b]
            if not ks:
                continue
            query = np.ascontiguousarray(np.rot90(WI, b))
            d, r, fine = self._grid(query.shape, level)
            for _, log_scale, here in self._sweep(query, b, ks, d, r, fine, self.survey_cache):
                tried += 1
                for cand, st in here:
                    n += st.n_positions
                    if best is None or cand.pce > best[0]:
                        best = (cand.pce, math.exp(log_scale), cand.k)
        if best is None:
            return None
        pce, scale, k = best
        return Survey(pce, log10_false_alarm(pce, n), scale, 90 * k, n, tried, int(level),
                      time.perf_counter() - t0)

    def _peaks(self, coarse: list[_Candidate], strides: dict, skip: list) -> list[_Candidate]:
        """Coarse peaks, best first, at least two coarse steps apart (per rotation)."""
        chosen: list[_Candidate] = []
        taken = list(skip)
        for cand in sorted(coarse, key=lambda c: -c.pce):
            if any(t.k == cand.k and abs(t.index - cand.index) < 2 * strides[cand.k] for t in taken):
                continue
            chosen.append(cand)
            taken.append(cand)
            if len(chosen) >= self.candidates:
                break
        return chosen

    def _finish(self, state: dict, fines: dict, plan: SearchPlan, seconds: float) -> ScaledMatch | None:
        name = "scale search"
        if state["best"] is None:
            return None
        k, index, res = state["best"]
        thr = plan.threshold(name)
        return ScaledMatch(name, res.pce, math.exp(fines[k][index]), res.offset, 90 * k, state["positions"], thr,
                           plan.false_alarm(name, res.pce), bool(res.pce >= thr), scales_tried=state["tried"],
                           seconds=seconds, shifts=res.n_positions)
