"""The records of the scaled camera search (``fingerprint.scaled_search``): what it found
(:class:`ScaledMatch`), what a survey found (:class:`Survey`), and a search run in steps
(:class:`ScaledRun`).

Kept apart from the search itself so that ``scaled_search`` holds the algorithm and this module
the data it hands out (docs/camera_search.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fingerprint.error_budget import log10_false_alarm

__all__ = ["ScaledMatch", "ScaledRun", "Survey"]


@dataclass
class ScaledMatch:
    """The best of one stage of a scaled search.

    Attributes
    ----------
    stage : str
        ``"implied scale"`` or ``"scale search"``.
    pce : float
        Best full-resolution PCE.
    scale : float
        Resize factor (resized pixels per sensor pixel) of the best position.
    offset : (int, int)
        Top-left of the rotated query in the fingerprint resampled to ``scale`` (resized pixels).
    rotation : int
        Degrees: ``np.rot90(query, rotation // 90)`` is what matched.
    n_positions : int
        Positions scored at full resolution (the plan's stage counts every one it may score).
    threshold : float
        PCE the best position had to reach (the stage's, fixed by the plan).
    false_alarm : float
        Per-decision false-alarm probability of ``pce`` under the plan (adjusted p-value).
    match : bool
        ``false_alarm <= plan.alpha``, i.e. ``pce >= threshold``.
    scales_tried : int
        Surfaces scored (coarse, windows and whole).
    seconds : float
        Wall time of the stage.
    shifts : int
        Shifts of the surface that holds the best position.
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
class Survey:
    """What a coarse survey (:meth:`ScaledSearch.survey`) saw; it orders searches, never decides.

    Attributes
    ----------
    pce : float
        Best PCE of the coarse surfaces (at 1/``level`` resolution).
    log10_false_alarm : float
        ``log10`` of the probability that the best of ``n_positions`` null positions reaches
        ``pce`` (``error_budget.log10_false_alarm``): comparable across fingerprints of
        different sizes, the lower the stronger.
    scale : float
        Factor of the best coarse surface.
    rotation : int
        Degrees of the best coarse surface.
    n_positions : int
        Coarse shifts scored, every surface and turn together.
    scales_tried : int
        Coarse surfaces scored (factors; both 180-degree turns come from one).
    level : int
        Resolution divisor of the survey.
    seconds : float
        Wall time.
    """

    pce: float
    log10_false_alarm: float
    scale: float
    rotation: int
    n_positions: int
    scales_tried: int
    level: int
    seconds: float


class ScaledRun:
    """A scale search in progress (:meth:`ScaledSearch.start`), advanced one unit of work per
    :meth:`step`: a coarse factor of the sweep, or the refinement of one coarse peak.

    Stepped to its end it is exactly :meth:`ScaledSearch.search` (which is implemented so):
    however runs of several cameras are interleaved, each one scores the same surfaces in the
    same order and ends with the same :class:`ScaledMatch`.

    Attributes
    ----------
    fraction : float
        Share of the coarse sweep done (1.0 while the best peaks are refined).
    coarse_pce : float
        Best coarse PCE so far (``-inf`` before the first).
    coarse_positions : int
        Coarse shifts scored so far.
    done : bool
        The search has ended (a match, or everything it searches was scored).
    result : ScaledMatch or None
        The stage's answer once ``done`` (None when the query fits nowhere).
    """

    def __init__(self, steps):
        self._steps = steps
        self.fraction = 0.0
        self.coarse_pce = -math.inf
        self.coarse_positions = 0
        self.done = False
        self.result: ScaledMatch | None = None

    def step(self) -> bool:
        """Do one unit of work; False once the search has ended (``done``, ``result`` set)."""
        if self.done:
            return False
        try:
            self.fraction, self.coarse_pce, self.coarse_positions = next(self._steps)
        except StopIteration as stop:
            self.done, self.result, self.fraction = True, stop.value, 1.0
            return False
        return True

    @property
    def coarse_log10_false_alarm(self) -> float:
        """``log10`` of the null probability of the best coarse peak over the coarse shifts so
        far (0 before any): how strongly the fingerprint shows, comparable across cameras."""
        if self.coarse_positions < 1 or not math.isfinite(self.coarse_pce):
            return 0.0
        return log10_false_alarm(self.coarse_pce, self.coarse_positions)
