"""Scaled-query search: find a camera fingerprint in a query that was resized, and maybe cropped.

A photo resized by a factor ``s`` (``0 < s <= 1``) carries the sensor's PRNU resampled onto its
own pixel grid: query pixel ``(y, x)`` sits on the sensor at ``((y + 0.5) / s - 0.5,
(x + 0.5) / s - 0.5)`` (pixel centres, the convention of Pillow, OpenCV and every image editor);
a crop after the resize shifts that grid by an integer ``(oy, ox)`` of resized pixels. For each
candidate factor the fingerprint ``K`` is resampled onto that grid
(``fingerprint.resample.resample_fingerprint``, "fingerprint down") and the existing crop search (``fingerprint.scores.ReferenceSpectrum``, FFT
cross-correlation of ``W * I`` with the resampled ``K``) finds the offset [1]_.

Two stages, both scored against thresholds fixed before any score is seen
(``fingerprint.error_budget``):

``implied scale``
    The factor the query's size implies if it is the whole frame, resized (``h / H`` and
    ``w / W`` agree to one pixel of rounding): one aligned position per rotation.
``scale search``
    Factors from 1 down to ``max(min_scale, h / H, w / W)`` (below that the query would cover
    more than the sensor), coarse to fine:

    1. a sweep at 1/``coarse`` resolution on a log grid of step ``COARSE_TOLERANCE / (query
       extent / coarse)``, smallest factor first, scoring the query and the query turned by 180
       degrees from one FFT (``surface_stats.coarse_stats``);
    2. each of the ``candidates`` best coarse peaks is refined: a golden-section search, within
       one coarse step, of the phase-free energy (``surface_stats.Peak``) of full-resolution
       windows around the position the coarse peak predicts (``refine_steps`` windows);
    3. the ``decisions`` best factors of each refinement are scored over every shift of the
       whole resampled fingerprint; the best integer-shift PCE of these decides.

    The stage's threshold counts every position it may score, the selection included: the
    coarse sweep's shifts at every factor (a peak picked as the best of a sweep is as extreme
    as the best of the sweep; counting only the deciding surfaces made the measured false-alarm
    rate 4-6 times the stated one, ``benchmarks/camera_false_alarm.py``), the windows and the
    deciding surfaces.

    A coarse peak above a loose level (false-alarm rate 1e-3 over the sweep) is refined as soon as
    the sweep has passed it, and a refined match ends the search.

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
  hence the refinement's guide. At half resolution the PCE keeps 30-90 % of its full-resolution
  value and a median 0.8-1.1 (10th percentile 0.53) at u = 0.8-1.2, which makes the coarse
  sweep cheap and still selective.

References
----------
.. [1] M. Goljan and J. Fridrich, "Camera identification from cropped and scaled images",
   Proc. SPIE 6819, Security, Forensics, Steganography, and Watermarking of Multimedia
   Contents X, 2008. :doi:`10.1117/12.766732`
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.fft

from fingerprint.error_budget import SearchPlan, Stage, threshold
from fingerprint.resample import downsample, resample_fingerprint, resized_shape, wrap_to_fast
from fingerprint.scores import ReferenceSpectrum
from fingerprint.surface_stats import Peak, Template, coarse_stats, peak_stats

__all__ = [
    "COARSE_TOLERANCE",
    "DEFAULT_MIN_SCALE",
    "ScaledMatch",
    "ScaledSearch",
]

DEFAULT_MIN_SCALE = 0.3
"""Smallest resize factor searched (Goljan and Fridrich 2008 search down to about 0.3)."""

COARSE_TOLERANCE = 2.0
"""Coarse log-scale step times the coarse query extent (pixels). Midway between grid points the
scale error is 1.0 / extent at half resolution: the coarse PCE keeps a median 0.8-1.1 and a
10th percentile 0.53 of its value at the true factor (Dresden, ``benchmarks/camera_scaled.py
--peak-width``), enough for the true peak to stand out of the sweep's noise."""

_LOG_STEP = 1e-4  # coarse grids are multiples of this log-scale step, so queries share templates
_STEP_LADDER = sorted({m << i for i in range(24) for m in (1, 3)})  # 1, 2, 3, 4, 6, 8, 12, ...: <= 1.5x too fine
_BAND = math.log(1.06)  # coarse templates of factors within 6 % share one padded size (one query FFT)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_WINDOW_MARGIN = 8  # pixels around the predicted position in the refinement's windows


@dataclass
class ScaledMatch:
    """The best of one stage of a scaled search.

    Attributes
    ----------
    stage : str
        ``"implied scale"`` or ``"scale search"``.
    pce : float
        Best full-resolution PCE (``-inf`` when nothing could be scored).
    scale : float
        Resize factor (resized pixels per sensor pixel) of the best position.
    offset : (int, int)
        Top-left of the rotated query in the fingerprint resampled to ``scale`` (resized pixels).
    rotation : int
        Degrees: ``np.rot90(query, rotation // 90)`` is what matched.
    n_positions : int
        Positions the stage searched at full resolution (each a PCE candidate).
    threshold : float
        PCE the best position had to reach (fixed in advance for its number of shifts).
    false_alarm : float
        Per-decision false-alarm probability of ``pce`` under the plan (adjusted p-value).
    match : bool
        ``false_alarm <= plan.alpha``, i.e. ``pce >= threshold``.
    scales_tried : int
        Factors scored (coarse and fine).
    seconds : float
        Wall time of the stage.
    """

    stage: str
    pce: float
    scale: float
    offset: tuple[int, int]
    rotation: int
    n_positions: int
    threshold: float
    false_alarm: float
    match: bool
    scales_tried: int = 0
    seconds: float = 0.0
    shifts: int = 1

    @property
    def sensor_offset(self) -> tuple[float, float]:
        """Sensor position (pixels) of the centre of the rotated query's top-left pixel."""
        return ((self.offset[0] + 0.5) / self.scale - 0.5, (self.offset[1] + 0.5) / self.scale - 0.5)


@dataclass
class _Candidate:
    pce: float  # coarse PCE
    log_scale: float  # ln of the factor
    k: int  # quarter turns
    step: float  # coarse log-scale step of its sweep
    offset: tuple[int, int] = (0, 0)  # coarse offset of the peak (pixels at 1/d)
    d: int = 1  # coarse resolution divisor


@dataclass
class _Cache:
    """Coarse templates by (resolution, grid index), first come first kept, up to ``limit`` bytes."""

    limit: int
    items: dict = field(default_factory=dict)
    used: int = 0
    hits: int = 0
    misses: int = 0

    def get(self, key, make: Callable[[], Template]) -> Template:
        item = self.items.get(key)
        if item is not None:
            self.hits += 1
            return item
        self.misses += 1
        item = make()
        if self.used + item.spectrum.nbytes <= self.limit:
            self.items[key] = item
            self.used += item.spectrum.nbytes
        return item


def _vertex(points: list[tuple[float, float]]) -> float | None:
    """Abscissa of the parabola's vertex through the best point and its two neighbours, or None."""
    if len(points) < 3:
        return None
    i = max(range(len(points)), key=lambda j: points[j][1])
    i = min(max(i, 1), len(points) - 2)
    (x0, y0), (x1, y1), (x2, y2) = points[i - 1: i + 2]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den if den else 0.0
    if not a < 0:
        return None  # not a maximum
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
    x = -b / (2 * a)
    return x if x0 <= x <= x2 and all(abs(x - p) > 1e-12 for p, _ in points) else None


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
    refine_steps : int
        Full-resolution windows per refined peak (golden-section search, default 7); they guide.
    decisions : int
        Whole full-resolution surfaces scored per refined peak (default 2).
    coarse_min_side : int
        The coarse sweep runs at 1/``coarse`` resolution when the query's shorter side is at
        least ``coarse * coarse_min_side`` pixels (default 128), else at full resolution.
    cache_bytes : int
        Memory for cached coarse spectra (default 256 MiB); kept across queries of one run.

    Examples
    --------
    >>> from fingerprint.synthetic import make_camera
    >>> search = ScaledSearch(make_camera("a", 1, shape=(192, 256)).K)
    >>> [(st.name, st.rotations) for st in search.stages((134, 179))]
    [('implied scale', 1), ('scale search', 1)]
    """

    def __init__(self, fingerprint: np.ndarray, *, min_scale: float = DEFAULT_MIN_SCALE,
                 rotations: tuple[int, ...] = (0, 1, 3), orientation: str = "sensor", coarse: int = 2,
                 candidates: int = 3, refine_steps: int = 7, decisions: int = 2, coarse_min_side: int = 128,
                 cache_bytes: int = 256 << 20):
        k = np.ascontiguousarray(fingerprint, dtype=np.float32)
        if k.ndim != 2:
            raise ValueError(f"fingerprint must be 2-D (H, W), got shape {k.shape}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        if coarse < 1 or candidates < 1 or decisions < 1 or refine_steps < 3:
            raise ValueError("coarse, candidates and decisions must be >= 1, refine_steps >= 3")
        if orientation not in ("sensor", "any"):
            raise ValueError(f"orientation must be 'sensor' or 'any', got {orientation!r}")
        self.K = k
        self.min_scale = float(min_scale)
        self.rotations = tuple(sorted({int(r) % 4 for r in rotations}))
        self.orientation = orientation
        self.coarse = int(coarse)
        self.candidates = int(candidates)
        self.refine_steps = int(refine_steps)
        self.decisions = int(decisions)
        self.coarse_min_side = int(coarse_min_side)
        self.cache = _Cache(int(cache_bytes))
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

    def _grid(self, shape: tuple[int, int]) -> tuple[int, float, list[tuple[float, tuple]]]:
        """Coarse sweep of a query of ``shape``: (level d, log step, [(ln factor, cache key)]), smallest first.

        Factors ``exp(-m * step)`` for ``m = 0, 1, ...`` down to the smallest factor at which the
        query fits, which is added as the first point (a whole frame resized lies exactly there).
        ``step = COARSE_TOLERANCE * d / max(shape)`` rounded down to 1, 1.5, 2, 3, 4, 6, ... times
        1e-4, so that queries of similar size share the cached spectra.
        """
        rng = self._range(shape)
        if rng is None:
            return 1, _LOG_STEP, []
        d = self._level(shape)
        wanted = COARSE_TOLERANCE / (max(shape) / d) / _LOG_STEP
        mult = max(m for m in _STEP_LADDER if m <= max(wanted, 1.0))
        step = mult * _LOG_STEP
        lo = math.log(rng[0])
        m_max = int(math.floor(-lo / step + 1e-9))
        points = [(-m * step, (d, m * mult)) for m in range(m_max, -1, -1)]
        if points[0][0] - lo > 0.25 * step:
            points.insert(0, (lo, (d, "lo", round(lo, 12))))
        return d, step, points

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
        ``scale search``: every position it may score, selection included (a peak picked from a
        sweep is the best of the sweep, so the sweep's positions count): the coarse sweep's
        shifts at every factor and rotation, then per refined peak ``refine_steps`` windows of
        ``(2 * 8 + 1)**2`` shifts and ``decisions`` whole surfaces of at most the shifts at factor 1.
        """
        turns = self._turns(query_shape)
        implied = [k for k in turns if self._implied_scale(self._turned(query_shape, k)) is not None]
        fits = [k for k in turns if self._range(self._turned(query_shape, k)) is not None]
        coarse: list[int] = []
        for k in fits:
            shape = self._turned(query_shape, k)
            d, _, points = self._grid(shape)
            hd, wd = shape[0] // d, shape[1] // d
            for log_scale, _ in points:
                th, tw = resized_shape((self.K.shape[0] // d, self.K.shape[1] // d), math.exp(log_scale))
                coarse.append(max(th - hd + 1, 1) * max(tw - wd + 1, 1))
        bound = max((self._shifts(self._turned(query_shape, k), 1.0) for k in fits), default=0)
        window = (2 * _WINDOW_MARGIN + 1) ** 2
        refine = ([window] * self.refine_steps + [bound] * self.decisions) * self.candidates if fits else []
        n_coarse = len(coarse) // max(len(fits), 1) if fits else 0
        return [
            Stage("implied scale", (1,) * len(implied), rotations=len(implied), scales=1, weight=weights[0]),
            Stage("scale search", tuple(coarse + refine), rotations=len(fits),
                  scales=n_coarse + self.candidates * (self.refine_steps + self.decisions) if fits else 0,
                  weight=weights[1], coarse_scales=n_coarse),
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

    def _full_stats(self, q: np.ndarray, log_scale: float) -> Peak | None:
        """Full-resolution crop search at factor ``exp(log_scale)`` (``ReferenceSpectrum`` surface), or None."""
        t = resample_fingerprint(self.K, math.exp(log_scale))
        if q.shape[0] > t.shape[0] or q.shape[1] > t.shape[1]:
            return None
        padded = wrap_to_fast(t)
        c = ReferenceSpectrum(padded).cross_correlation(q)
        ny, nx = padded.shape[0] - q.shape[0] + 1, padded.shape[1] - q.shape[1] + 1
        return peak_stats(c, (slice(0, ny), slice(0, nx)))

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

        Returns the best refined (full-resolution) result, or None when the query fits at no
        factor and rotation. ``progress(fraction, text)`` is called after every coarse factor.
        """
        t0 = time.perf_counter()
        name = "scale search"
        turns = [k for k in self._turns(WI.shape) if self._range(self._turned(WI.shape, k)) is not None]
        sweeps = []  # (base turn b in {0, 1}, turns {b, b+2} searched, level, step, points)
        for b in (0, 1):
            ks = [k for k in turns if k % 2 == b]
            if ks:
                sweeps.append((b, ks) + self._grid(self._turned(WI.shape, b)))
        if not sweeps:
            return None
        total = sum(len(sw[4]) for sw in sweeps)
        widest = max(self._shifts(self._turned(WI.shape, sw[0]), 1.0) for sw in sweeps)
        clear = threshold(1e-3, total * 2 * widest)  # a coarse PCE this high is refined at once
        queries = {k: np.ascontiguousarray(np.rot90(WI, k)) for k in turns}
        refined: list[ScaledMatch] = []
        state = {"tried": 0, "positions": 0}

        def refine(cand: _Candidate) -> ScaledMatch:
            got = self._refine(queries[cand.k], cand, plan, name, state)
            refined.append(got)
            return got

        coarse: list[_Candidate] = []
        done = 0
        for b, ks, d, step, points in sweeps:
            qd = downsample(queries[b], d)
            qd = qd - np.float32(qd.mean())
            spec_q: dict[tuple, np.ndarray] = {}
            pending: _Candidate | None = None  # a clear coarse peak, refined once the sweep is past it
            for log_scale, key in points:  # smallest factor first: a crop of a resize lies near it
                t = self.cache.get(key, lambda: self._coarse_template(log_scale, d))
                state["tried"] += 1
                done += 1
                here: list[_Candidate] = []
                if qd.shape[0] <= t.shape[0] + (d > 1) and qd.shape[1] <= t.shape[1] + (d > 1):
                    q = qd[: min(qd.shape[0], t.shape[0]), : min(qd.shape[1], t.shape[1])]  # 1 px of rounding at 1/d
                    if (t.padded, q.shape) not in spec_q:  # one query FFT per band of factors
                        spec_q = {(t.padded, q.shape): scipy.fft.rfft2(q, s=t.padded, workers=-1)}
                    stats = coarse_stats(t, spec_q[(t.padded, q.shape)], q.shape, both=(b + 2) in ks)
                    here = [_Candidate(st.pce, log_scale, kk, step, st.offset, d)
                            for st, kk in zip(stats, [b, b + 2]) if kk in ks]
                coarse += here
                top = max(here, key=lambda c: c.pce, default=None)
                if pending is not None and (top is None or top.pce < pending.pce):
                    got = refine(pending)
                    pending = None
                    if got.match:
                        return self._finish(got, state, t0)
                if top is not None and top.pce >= clear and len(refined) < self.candidates and (
                        pending is None or top.pce >= pending.pce):
                    pending = top
                if progress is not None:
                    progress(done / total, f"scale search: factor {math.exp(log_scale):.4f} ({done}/{total})")
            if pending is not None:
                got = refine(pending)
                if got.match:
                    return self._finish(got, state, t0)
        for cand in self._peaks(coarse, skip=[(r.rotation // 90, math.log(r.scale)) for r in refined]):
            if len(refined) >= self.candidates:
                break
            if refine(cand).match:
                break
        best = min(refined, key=lambda r: (r.false_alarm, -r.pce)) if refined else None
        return self._finish(best, state, t0) if best is not None else None

    def _peaks(self, coarse: list[_Candidate], skip: list) -> list[_Candidate]:
        """Coarse peaks, best first, at least two coarse steps apart (per rotation)."""
        chosen: list[_Candidate] = []
        taken = list(skip)
        for cand in sorted(coarse, key=lambda c: -c.pce):
            if any(k == cand.k and abs(ls - cand.log_scale) < 2.0 * cand.step for k, ls in taken):
                continue
            chosen.append(cand)
            taken.append((cand.k, cand.log_scale))
            if len(chosen) >= self.candidates:
                break
        return chosen

    def _window_stats(self, q: np.ndarray, log_scale: float, cand: _Candidate) -> Peak | None:
        """Full-resolution correlation of ``q`` with a window of the resampled fingerprint around the
        position the coarse peak predicts (``_WINDOW_MARGIN`` pixels of slack); offsets are in the
        whole resampled fingerprint. Guides the refinement only."""
        s = math.exp(log_scale)
        th, tw = resized_shape(self.K.shape, s)
        h, w = q.shape
        ratio = s / math.exp(cand.log_scale)
        top = []
        for o, n, big in ((cand.offset[0], h, th), (cand.offset[1], w, tw)):
            centre = ((o + 0.5) * cand.d - 0.5) * ratio  # the coarse offset at full resolution, at this factor
            start = min(max(int(round(centre)) - _WINDOW_MARGIN, 0), max(big - n - 2 * _WINDOW_MARGIN, 0))
            top.append((start, min(n + 2 * _WINDOW_MARGIN, big - start)))
        (y0, wh), (x0, ww) = top
        if wh < h or ww < w:
            return None
        c = ReferenceSpectrum(resample_fingerprint(self.K, s, (wh, ww), origin=(y0, x0))).cross_correlation(q)
        got = peak_stats(c, (slice(0, wh - h + 1), slice(0, ww - w + 1)))
        return Peak(got.pce, got.energy, (got.offset[0] + y0, got.offset[1] + x0), got.n_positions)

    def _refine(self, q: np.ndarray, cand: _Candidate, plan: SearchPlan, name: str, state: dict) -> ScaledMatch:
        """Refine one coarse peak; the best PCE of ``decisions`` whole full-resolution surfaces decides.

        A golden-section search of the phase-free ``energy`` of full-resolution windows around the
        predicted position (one smooth lobe) within one coarse step of ``cand``, then the vertex of
        the parabola through the best three factors (``refine_steps`` windows in all); the
        ``decisions`` factors with the highest energy are then scored over every shift of the
        whole resampled fingerprint.
        """
        lo = math.log(self._range(q.shape)[0])
        a, b = max(cand.log_scale - cand.step, lo), min(cand.log_scale + cand.step, 0.0)
        seen: dict[float, Peak | None] = {}

        def f(x: float) -> float:
            if x not in seen:
                seen[x] = self._window_stats(q, x, cand)
                state["tried"] += 1
            return -math.inf if seen[x] is None else seen[x].energy

        f(min(max(cand.log_scale, a), b))  # the coarse peak itself
        x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        f1, f2 = f(x1), f(x2)
        for _ in range(self.refine_steps - 4):
            if f1 >= f2:
                b, x2, f2 = x2, x1, f1
                x1 = b - _GOLDEN * (b - a)
                f1 = f(x1)
            else:
                a, x1, f1 = x1, x2, f2
                x2 = a + _GOLDEN * (b - a)
                f2 = f(x2)
        vertex = _vertex(sorted((x, r.energy) for x, r in seen.items() if r is not None))
        if vertex is not None and lo <= vertex <= 0.0:
            f(vertex)
        guided = sorted((x for x, r in seen.items() if r is not None), key=lambda x: -seen[x].energy)
        decided = []
        for x in guided[: self.decisions] or [cand.log_scale]:
            res = self._full_stats(q, x)
            state["tried"] += 1
            if res is not None:
                state["positions"] += res.n_positions
                decided.append((x, res))
        if not decided:
            return ScaledMatch(name, -math.inf, math.exp(cand.log_scale), (0, 0), 90 * cand.k, 0, math.inf, 1.0,
                               False)
        x_best, res = max(decided, key=lambda xr: xr[1].pce)
        thr = plan.threshold(name)
        fa = plan.false_alarm(name, res.pce)
        return ScaledMatch(name, res.pce, math.exp(x_best), res.offset, 90 * cand.k, res.n_positions, thr, fa,
                           bool(res.pce >= thr), shifts=res.n_positions)

    @staticmethod
    def _finish(best: ScaledMatch, state: dict, t0: float) -> ScaledMatch:
        best.scales_tried = state["tried"]
        best.n_positions = state["positions"]
        best.seconds = time.perf_counter() - t0
        return best
