"""Scaled-query search: find a camera fingerprint in a query that was resized, and maybe cropped.

A photo resized by a factor ``s`` (``0 < s <= 1``) carries the sensor's PRNU resampled onto its
own pixel grid: query pixel ``(y, x)`` sits on the sensor at ``((y + 0.5) / s - 0.5,
(x + 0.5) / s - 0.5)`` (pixel centres, the convention of Pillow, OpenCV and every image editor);
a crop after the resize shifts that grid by an integer ``(oy, ox)`` of resized pixels. For each
candidate factor the fingerprint ``K`` is resampled onto that grid (:func:`resample_fingerprint`,
"fingerprint down") and the existing crop search (``fingerprint.scores.ReferenceSpectrum``, FFT
cross-correlation of ``W * I`` with the resampled ``K``) finds the offset [1]_.

Two stages, both scored against thresholds fixed before any score is seen
(``fingerprint.error_budget``):

``implied scale``
    The factor the query's size implies if it is the whole frame, resized (``h / H`` and
    ``w / W`` agree to one pixel of rounding): one aligned position per rotation that fits.
``scale search``
    Factors from just below 1 down to ``max(min_scale, h / H, w / W)`` (below that the query
    would cover more than the sensor), coarse to fine: a sweep at 1/``coarse`` resolution on a
    log grid of step ``COARSE_TOLERANCE / (query extent / coarse)``, then each of the
    ``candidates`` best coarse peaks refined at full resolution by a golden-section search
    of ``refine_steps`` factors within one coarse step. Only full-resolution surfaces decide;
    the stage's share of the error budget is split equally over its
    ``candidates * refine_steps`` surfaces, then over each surface's shifts
    (``error_budget.Stage(split="surfaces")``). A clear coarse peak is refined at once and a
    refined match stops the search.

Why these choices (measured on the 16 Dresden photos, ``benchmarks/camera_scaled.py``):

- fingerprint down beats query up on cost (3-4x: its FFTs are ``s**2`` smaller) at nearly the
  same PCE (query up +5 % median at x0.75, +0.5 % at x0.5), and its shifts live on the query's
  own grid, where the correlation surface is nearly white (counting its shifts counts
  independent positions);
- the resampling filter is Pillow's antialiased bilinear (triangle of half-width ``1 / s``
  sensor pixels): 2-10 % higher PCE than Lanczos, bicubic or box whatever filter did the resize;
- the PCE peak in scale is narrow: half of the PCE is lost at a relative scale error of about
  ``0.6 / extent`` (0.3 pixel of misregistration at the query's edge), so the full-resolution
  grid must be that fine; at half resolution the peak is twice as wide and keeps 30-90 % of the
  PCE, which is what makes the coarse sweep both cheap and selective.

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
from fingerprint.scores import ReferenceSpectrum

__all__ = [
    "COARSE_TOLERANCE",
    "DEFAULT_MIN_SCALE",
    "ScaledMatch",
    "ScaledSearch",
    "resample_fingerprint",
    "resized_shape",
]

DEFAULT_MIN_SCALE = 0.3
"""Smallest resize factor searched (Goljan and Fridrich 2008 search down to about 0.3)."""

COARSE_TOLERANCE = 1.8
"""Coarse log-scale step times the coarse query extent (pixels): 1.8 / 768 = 2.4e-3 at half
resolution of a 1536-pixel query, where the PCE keeps about half its value midway between grid
points (``benchmarks/camera_scaled.py --peak-width``)."""

FILTER = "bilinear"
"""Pillow filter that resamples the fingerprint (antialiased triangle when shrinking)."""

_LOG_STEP = 1e-4  # coarse grids are multiples of this log-scale step, so queries share templates
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_MIN_COARSE_SIDE = 128  # below this the query is swept at full resolution


def resized_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(floor(s H), floor(s W))``: the part of a resize by ``s`` that the sensor covers completely."""
    return (int(math.floor(scale * shape[0] + 1e-9)), int(math.floor(scale * shape[1] + 1e-9)))


def resample_fingerprint(fingerprint: np.ndarray, scale: float | tuple[float, float],
                         shape: tuple[int, int] | None = None, *, filter: str = FILTER) -> np.ndarray:
    """The fingerprint on the pixel grid of a copy resized by ``scale``.

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
    scale : float or (sy, sx)
        Resized pixels per sensor pixel, each in (0, 1] (per axis when a pair).
    shape : (h, w), optional
        Output size; default :func:`resized_shape`. ``out[y, x]`` is ``K`` at sensor position
        ``((y + 0.5) / sy - 0.5, (x + 0.5) / sx - 0.5)``, low-pass filtered by the filter's kernel
        stretched to ``1 / s`` sensor pixels (Pillow ``Image.resize`` with a ``box``).
    filter : str
        A Pillow resampling filter name (default ``"bilinear"``).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    from PIL import Image

    sy, sx = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
    if not (0.0 < sy <= 1.0 and 0.0 < sx <= 1.0):
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    k = np.ascontiguousarray(fingerprint, dtype=np.float32)
    if k.ndim != 2:
        raise ValueError(f"fingerprint must be 2-D (H, W), got shape {k.shape}")
    h, w = shape if shape is not None else resized_shape(k.shape, min(sy, sx))
    if h < 1 or w < 1 or h / sy > k.shape[0] + 1e-6 or w / sx > k.shape[1] + 1e-6:
        raise ValueError(f"a {h}x{w} grid at scale {scale} does not fit a {k.shape[0]}x{k.shape[1]} fingerprint")
    resample = getattr(Image.Resampling, filter.upper())
    img = Image.fromarray(k, mode="F")
    return np.asarray(img.resize((w, h), resample, box=(0.0, 0.0, w / sx, h / sy)), dtype=np.float32)


def _downsample(a: np.ndarray, factor: int) -> np.ndarray:
    """``a`` on a grid ``factor`` times coarser (pixel ``j`` centred on ``(j + 0.5) * factor``)."""
    if factor == 1:
        return a
    return resample_fingerprint(a, 1.0 / factor, (a.shape[0] // factor, a.shape[1] // factor))


def _wrap_to_fast(t: np.ndarray) -> np.ndarray:
    """Pad periodically to sizes with small prime factors (fast FFTs); every correlation
    position keeps full overlap with fingerprint values, so the PCE energy is not biased."""
    h, w = t.shape
    fh, fw = scipy.fft.next_fast_len(h), scipy.fft.next_fast_len(w)
    return t if (fh, fw) == (h, w) else np.pad(t, ((0, fh - h), (0, fw - w)), mode="wrap")


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


@dataclass
class _Cache:
    """Resampled-fingerprint spectra by (resolution, grid index), first come first kept, up to ``limit`` bytes."""

    limit: int
    items: dict = field(default_factory=dict)
    used: int = 0
    hits: int = 0
    misses: int = 0

    def get(self, key, make: Callable[[], ReferenceSpectrum]) -> ReferenceSpectrum:
        spec = self.items.get(key)
        if spec is not None:
            self.hits += 1
            return spec
        self.misses += 1
        spec = make()
        size = spec.spectrum.nbytes
        if self.used + size <= self.limit:
            self.items[key] = spec
            self.used += size
        return spec


class ScaledSearch:
    """Scaled-query search against one camera fingerprint, with its resampled spectra cached.

    Parameters
    ----------
    fingerprint : ndarray of float32, shape (H, W)
        The camera's PRNU factor ``K``.
    min_scale : float
        Smallest factor searched (default 0.3).
    rotations : tuple of int
        Quarter turns tried (``np.rot90(query, k)``), default all four; a rotation whose query
        fits at no factor <= 1 adds no positions.
    coarse : int
        Resolution divisor of the coarse sweep (default 2; 1 for queries under 256 pixels).
    candidates : int
        Coarse peaks refined at full resolution (default 3).
    refine_steps : int
        Full-resolution factors per refined peak (golden-section search, default 8).
    cache_bytes : int
        Memory for cached coarse spectra (default 512 MiB); kept across queries of one run.

    Examples
    --------
    >>> import numpy as np
    >>> from fingerprint.synthetic import make_camera
    >>> cam = make_camera("a", 1, shape=(192, 256))
    >>> search = ScaledSearch(cam.K)
    >>> [st.name for st in search.stages((134, 179))]
    ['implied scale', 'scale search']
    """

    def __init__(self, fingerprint: np.ndarray, *, min_scale: float = DEFAULT_MIN_SCALE,
                 rotations: tuple[int, ...] = (0, 1, 2, 3), coarse: int = 2, candidates: int = 3,
                 refine_steps: int = 8, cache_bytes: int = 512 << 20):
        k = np.ascontiguousarray(fingerprint, dtype=np.float32)
        if k.ndim != 2:
            raise ValueError(f"fingerprint must be 2-D (H, W), got shape {k.shape}")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        if coarse < 1 or candidates < 1 or refine_steps < 1:
            raise ValueError("coarse, candidates and refine_steps must be >= 1")
        self.K = k
        self.min_scale = float(min_scale)
        self.rotations = tuple(sorted({int(r) % 4 for r in rotations}))
        self.coarse = int(coarse)
        self.candidates = int(candidates)
        self.refine_steps = int(refine_steps)
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
        return self.coarse if min(shape) // self.coarse >= _MIN_COARSE_SIDE else 1

    def _grid(self, shape: tuple[int, int]) -> tuple[int, float, list[tuple[float, tuple]]]:
        """Coarse sweep of a query of ``shape``: (level d, log step, [(ln factor, cache key)]), smallest first.

        Factors ``exp(-m * step)`` for ``m = 0, 1, ...`` down to the smallest factor at which the
        query fits, which is added as the first point (a whole frame resized lies exactly there).
        ``step = COARSE_TOLERANCE * d / max(shape)`` rounded down to a power of two times 1e-4, so
        that queries of similar size share the cached spectra.
        """
        rng = self._range(shape)
        if rng is None:
            return 1, _LOG_STEP, []
        d = self._level(shape)
        wanted = COARSE_TOLERANCE / (max(shape) / d)
        mult = max(1, 2 ** int(math.floor(math.log2(max(wanted / _LOG_STEP, 1.0)))))
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

    def _shapes(self, query_shape: tuple[int, int]) -> dict[int, tuple[int, int]]:
        h, w = query_shape
        return {k: ((h, w) if k % 2 == 0 else (w, h)) for k in self.rotations}

    def stages(self, query_shape: tuple[int, int], *, weights: tuple[float, float] = (1.0, 1.0)) -> list[Stage]:
        """The two stages this search may run for a query of ``query_shape``, with their positions.

        ``implied scale``: one position per rotation whose shape is a resized whole frame.
        ``scale search``: ``candidates * refine_steps`` full-resolution surfaces, each of at most
        the shifts at the largest factor in range; its share is split per surface (the number of
        shifts of the surface that decides is known only when it is found).
        """
        shapes = self._shapes(query_shape)
        implied = [k for k, shp in shapes.items() if self._implied_scale(shp) is not None]
        fits = [k for k, shp in shapes.items() if self._range(shp) is not None]
        bound = max((self._shifts(shapes[k], 1.0) for k in fits), default=0)
        n_surfaces = self.candidates * self.refine_steps if fits else 0
        n_coarse = sum(len(self._grid(shapes[k])[2]) for k in fits)
        return [
            Stage("implied scale", (1,) * len(implied), rotations=len(implied), scales=1, weight=weights[0]),
            Stage("scale search", (bound,) * n_surfaces, rotations=len(fits), scales=n_surfaces,
                  weight=weights[1], split="surfaces", coarse_scales=n_coarse),
        ]

    # --- scoring ---------------------------------------------------------------------------------
    def _reduced_fingerprint(self, d: int) -> np.ndarray:
        if d not in self._reduced:
            self._reduced[d] = _downsample(self.K, d)
        return self._reduced[d]

    def _template_spectrum(self, scale: float, d: int) -> ReferenceSpectrum:
        kd = self._reduced_fingerprint(d)
        shape = resized_shape(kd.shape, scale)
        return ReferenceSpectrum(_wrap_to_fast(resample_fingerprint(kd, scale, shape)))

    def _pce(self, q: np.ndarray, log_scale: float, d: int, key=None):
        """PCE result of query ``q`` (already at resolution 1/d) at factor ``exp(log_scale)``."""
        scale = math.exp(log_scale)
        if key is not None:
            spec = self.cache.get(key, lambda: self._template_spectrum(scale, d))
        else:
            spec = self._template_spectrum(scale, d)
        over = (q.shape[0] - spec.shape[0], q.shape[1] - spec.shape[1])
        if max(over) > (0 if d == 1 else 2):
            return None
        if max(over) > 0:  # a coarse query one or two pixels too big (rounding at 1/d): trim it
            q = q[: min(q.shape[0], spec.shape[0]), : min(q.shape[1], spec.shape[1])]
        return spec.pce(q, search="crop")

    def implied(self, WI: np.ndarray, plan: SearchPlan) -> ScaledMatch | None:
        """Stage ``implied scale``: aligned PCE against ``K`` resized exactly to the query's size."""
        t0 = time.perf_counter()
        best = None
        for k, shp in self._shapes(WI.shape).items():
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
        stage = plan.stage(name)
        shapes = self._shapes(WI.shape)
        sweeps = []
        for k, shp in shapes.items():
            d, step, points = self._grid(shp)
            if points:
                sweeps.append((k, d, step, points))
        if not sweeps:
            return None
        total = sum(len(p) for *_, p in sweeps)
        clear = threshold(1e-3, total * max(self._shifts(shapes[k], 1.0) for k, *_ in sweeps))
        queries = {k: np.ascontiguousarray(np.rot90(WI, k)) for k, *_ in sweeps}
        refined: list[ScaledMatch] = []
        state = {"tried": 0, "positions": 0}

        def refine(cand: _Candidate) -> ScaledMatch:
            m = self._refine(queries[cand.k], cand, plan, name, state)
            refined.append(m)
            return m

        coarse: list[_Candidate] = []
        done = 0
        for k, d, step, points in sweeps:
            qd = np.ascontiguousarray(_downsample(queries[k], d))
            pending: _Candidate | None = None  # a clear coarse peak, refined once the sweep is past it
            for log_scale, key in points:  # smallest factor first: a crop of a resize lies near it
                res = self._pce(qd, log_scale, d, key=key)
                state["tried"] += 1
                done += 1
                cand = _Candidate(res.pce, log_scale, k, step) if res is not None else None
                if cand is not None:
                    coarse.append(cand)
                if pending is not None and (cand is None or cand.pce < pending.pce):
                    got = refine(pending)
                    pending = None
                    if got.match:
                        return self._finish(got, refined, state, t0)
                if cand is not None and cand.pce >= clear and len(refined) < self.candidates and (
                        pending is None or cand.pce >= pending.pce):
                    pending = cand
                if progress is not None:
                    progress(done / total, f"scale search: factor {math.exp(log_scale):.4f} ({done}/{total})")
            if pending is not None:
                got = refine(pending)
                if got.match:
                    return self._finish(got, refined, state, t0)
        for cand in self._peaks(coarse, skip=[(r.rotation // 90, math.log(r.scale)) for r in refined]):
            if len(refined) >= self.candidates:
                break
            got = refine(cand)
            if got.match:
                break
        best = min(refined, key=lambda r: (r.false_alarm, -r.pce)) if refined else None
        return self._finish(best, refined, state, t0) if best is not None else None

    def _peaks(self, coarse: list[_Candidate], skip: list) -> list[_Candidate]:
        """Coarse peaks, best first, at least two coarse steps apart (per rotation)."""
        ordered = sorted(coarse, key=lambda c: -c.pce)
        chosen: list[_Candidate] = []
        taken = list(skip)
        for cand in ordered:
            if any(k == cand.k and abs(ls - cand.log_scale) < 2.0 * cand.step for k, ls in taken):
                continue
            chosen.append(cand)
            taken.append((cand.k, cand.log_scale))
            if len(chosen) >= self.candidates:
                break
        return chosen

    def _refine(self, q: np.ndarray, cand: _Candidate, plan: SearchPlan, name: str, state: dict) -> ScaledMatch:
        """Golden-section search of the full-resolution PCE within one coarse step of ``cand``."""
        lo_bound = math.log(self._range(q.shape)[0])
        a = max(cand.log_scale - cand.step, lo_bound)
        b = min(cand.log_scale + cand.step, 0.0)
        seen: dict[float, object] = {}

        def f(x: float):
            if x not in seen:
                res = self._pce(q, x, 1)
                state["tried"] += 1
                if res is not None:
                    state["positions"] += res.n_positions
                seen[x] = res
            r = seen[x]
            return -math.inf if r is None else r.pce

        f(min(max(cand.log_scale, a), b))  # the coarse peak itself, at full resolution
        x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        f1, f2 = f(x1), f(x2)
        for _ in range(max(self.refine_steps - 3, 0)):
            if f1 >= f2:
                b, x2, f2 = x2, x1, f1
                x1 = b - _GOLDEN * (b - a)
                f1 = f(x1)
            else:
                a, x1, f1 = x1, x2, f2
                x2 = a + _GOLDEN * (b - a)
                f2 = f(x2)
        scored = [(x, r) for x, r in seen.items() if r is not None]
        if not scored:
            return ScaledMatch(name, -math.inf, math.exp(cand.log_scale), (0, 0), 90 * cand.k, 0,
                               math.inf, 1.0, False)
        # the surface with the smallest false-alarm probability decides (thresholds differ by shifts)
        x_best, res = min(scored, key=lambda xr: (plan.false_alarm(name, xr[1].pce, shifts=xr[1].n_positions),
                                                  -xr[1].pce))
        thr = plan.threshold(name, shifts=res.n_positions)
        fa = plan.false_alarm(name, res.pce, shifts=res.n_positions)
        return ScaledMatch(name, res.pce, math.exp(x_best), res.offset, 90 * cand.k, res.n_positions, thr, fa,
                           bool(res.pce >= thr), shifts=res.n_positions)

    @staticmethod
    def _finish(best: ScaledMatch, refined: list, state: dict, t0: float) -> ScaledMatch:
        best.scales_tried = state["tried"]
        best.n_positions = state["positions"]
        best.seconds = time.perf_counter() - t0
        return best
