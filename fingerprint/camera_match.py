"""Camera scoring (docs/algorithm.md §7.4-§7.7, docs/camera_search.md): PCE of ``W·I`` against ``K``.

Each :class:`CameraReference` holds a :class:`~fingerprint.camera_search.CameraSearch`: one
decision per (query, camera) under one error budget, over every position it may search (shifts
of a crop, rotations, the second denoiser strength, the scale implied by the query's size and
the scale search of a resized query). The threshold is fixed before any score is seen by the
number of positions of each stage and its share of the budget
(``fingerprint.error_budget.SearchPlan``), so the false-alarm rate of a decision is that of
PCE 60 at one position whatever was searched. :meth:`CameraReference.record` turns a decision
into the :class:`~fingerprint.decision.ReferenceScore` of the answer (NCC at the position found
included).

``score`` and ``retry`` are the sequential tests of before the one budget (unrotated, then
rotations, then the sigma-5 retry, each with its own threshold); the attribution no longer uses
them; ``benchmarks/bench_search.py`` (digest pre-selection) still does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from fingerprint.camera_search import CameraDecision, CameraSearch
from fingerprint.decision import ReferenceScore
from fingerprint.error_budget import ALPHA
from fingerprint.estimate import FingerprintParams
from fingerprint.scaled_search import DEFAULT_MIN_SCALE
from fingerprint.scores import ncc, search_threshold
from kernels.spec import gray_image  # re-exported: the gray query image I of the camera scores

__all__ = ["CameraReference", "gray_image", "too_large_record"]


def too_large_record(name: str, fingerprint_shape: Sequence[int], query_shape: Sequence[int],
                     method: str = "pce") -> ReferenceScore:
    """The record of a camera whose fingerprint (H, W) is smaller than the query (h, w) at every rotation.

    Nothing can be searched (the scaled stages resample the fingerprint down, smaller still): a
    non-match with an infinite threshold, no positions and a false-alarm probability of 1.
    """
    H, W = (int(n) for n in fingerprint_shape[-2:])
    h, w = (int(n) for n in query_shape[:2])
    return ReferenceScore(name, "camera", None, None, method, math.inf, False, n_positions=0,
                          note=f"query {h}x{w} is larger than the fingerprint {H}x{W} at every rotation",
                          scale=None, false_alarm=1.0, stage=None, searched=None)


class CameraReference:
    """One camera fingerprint K prepared for scoring: its DFT computed once (on the device with CUDA).

    Parameters
    ----------
    name : str
    fingerprint : ndarray of float32, shape (H, W)
    params : FingerprintParams
    device : fingerprint.device.Device, optional
        The CUDA device: K and its spectrum live there and the native stage (the crop and
        rotation search at the fingerprint's resolution) runs there; the scaled stages run on the
        CPU (a host copy of the query residual, made only when they run).
    spectrum : optional
        A precomputed spectrum of ``fingerprint`` (``scores.ReferenceSpectrum``, e.g. from a
        spectrum cache; a ``device.DeviceSpectrum`` with a device); default: computed here.
    rotations : sequence of int
        Quarter turns of the search (default all four; ``(0,)``: none). The scaled stages try
        those of ``(0, 1, 3)`` among them (an upside-down resized photo is not searched).
    scale_search : bool
        Run the implied-scale and scale-search stages for queries smaller than the fingerprint.
    min_scale : float
        Smallest resize factor searched (default 0.3).
    alpha : float
        Per-decision false-alarm rate (default that of PCE 60 at one position).
    **scaled_options
        Passed to ``ScaledSearch`` (``candidates``, ``coarse``, ``cache_bytes``, ...).
    """

    def __init__(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, device=None, *,
                 spectrum=None, rotations: Sequence[int] = (0, 1, 2, 3), scale_search: bool = True,
                 min_scale: float = DEFAULT_MIN_SCALE, alpha: float = ALPHA, **scaled_options):
        self.name = name
        self.params = params
        self.K = np.ascontiguousarray(fingerprint, dtype=np.float32)
        turns = tuple(sorted({int(r) % 4 for r in rotations}))
        scaled_turns = tuple(k for k in (0, 1, 3) if k in turns) or (0,)
        self.search = CameraSearch(self.K, rotations=turns, scaled_rotations=scaled_turns, scaled=scale_search,
                                   alpha=alpha, min_scale=min_scale, spectrum=spectrum, device=device,
                                   **scaled_options)
        self.spectrum = self.search.spectrum  # the native stage's (on the device with CUDA)
        self.device = device
        on_host = device is None
        self.xp, self._K, self._ncc = (np, self.K, ncc) if on_host else (device.xp, device.put(self.K), device.ncc)

    def _host(self, a) -> np.ndarray:
        return np.asarray(a) if self.device is None else np.ascontiguousarray(self.device.host(a))

    def record(self, dec: CameraDecision, residuals: Sequence, I, *, method: str = "pce",
               sigmas: Sequence[float] = ()) -> ReferenceScore:
        """The :class:`ReferenceScore` of a decision ``dec`` of :attr:`search` for one query.

        ``residuals``: the query residuals ``W`` the decision may have used (sigma 2 first, then
        the second one if it was computed), ``I`` the gray query image, ``sigmas`` their denoiser
        strengths (for the note of a match found with the second residual). With ``method="ncc"``
        the NCC at the position found decides, against the PCE threshold of the deciding stage
        converted (``PCE ~ NCC**2 * pixels``); the search itself stops on PCE matches.
        """
        searched = dec.describe_searched() or None
        if dec.pce is None:  # nothing fits natively at any rotation; a resampled fingerprint is smaller still
            return dataclasses.replace(too_large_record(self.name, self.K.shape, residuals[0].shape, method),
                                       searched=searched)
        xp, k = self.xp, (dec.rotation or 0) // 90
        Wr, Ir = xp.rot90(residuals[dec.sigma_index], k), xp.rot90(I, k)
        h, w = (int(n) for n in Wr.shape)
        oy, ox = dec.offset
        if dec.scale == 1.0 and dec.stage == "native":
            c = self._ncc(xp.ascontiguousarray(Wr), xp.ascontiguousarray(Ir * self._K[oy: oy + h, ox: ox + w]))
        else:
            window = self.search.scaled.aligned_fingerprint(dec.stage, dec.scale, dec.offset, (h, w))
            c = ncc(self._host(Wr), self._host(Ir) * window) if window is not None else None
        threshold = dec.threshold if method == "pce" else math.sqrt(max(dec.threshold, 0.0) / (h * w))
        match = dec.match if method == "pce" else (c is not None and c >= threshold)
        note = None
        if match and dec.sigma_index > 0:
            sigma = sigmas[dec.sigma_index] if len(sigmas) > dec.sigma_index else None
            note = f"matched with the query residual at sigma {sigma:g}" if sigma else "matched with the second query residual"
        return ReferenceScore(self.name, "camera", c, dec.pce, method, threshold, bool(match), rotation=dec.rotation,
                              offset=(int(oy), int(ox)), n_positions=dec.n_positions, note=note, scale=dec.scale,
                              false_alarm=dec.false_alarm, stage=dec.stage, searched=searched)

    # --- the sequential tests of before the one budget (benchmarks/bench_search.py) -------------
    def _try(self, WI: np.ndarray, k: int):
        q = self.xp.ascontiguousarray(self.xp.rot90(WI, k))
        H, Wd = self.K.shape
        if q.shape[0] > H or q.shape[1] > Wd:
            return None
        return self.spectrum.pce(q, search="aligned" if q.shape == self.K.shape else "crop")

    @staticmethod
    def _threshold(method: str, base: float, n_positions: int, pixels: int) -> float:
        """The PCE threshold for a search over ``n_positions``, or its NCC equivalent."""
        tau = search_threshold(base, max(n_positions, 1))
        return tau if method == "pce" else math.sqrt(tau / pixels)  # PCE ~ NCC**2 * pixels

    def _result(self, k, res, n_positions, W, I, method, base) -> ReferenceScore:
        oy, ox = res.offset
        Wr, Ir = self.xp.rot90(W, k), self.xp.rot90(I, k)
        h, w = Wr.shape
        c = self._ncc(Wr, Ir * self._K[oy : oy + h, ox : ox + w])
        threshold = self._threshold(method, base, n_positions, h * w)
        match = (res.pce if method == "pce" else c) >= threshold
        return ReferenceScore(self.name, "camera", c, res.pce, method, threshold, bool(match),
                              rotation=90 * k, offset=(oy, ox), n_positions=n_positions)

    def score(self, W: np.ndarray, WI: np.ndarray, I: np.ndarray, *, method: str, base: float,
              rotations: tuple[int, ...]) -> ReferenceScore:
        """Score at 0 degrees; the other rotations are tried only when that is not a match.

        A rotated result replaces the unrotated one only if it is a match at the threshold of
        the whole search (every position of every rotation tried). A non-match reports its
        unrotated score with the threshold of the whole search and the positions searched.
        """
        first = self._try(WI, 0)
        n_first = first.n_positions if first is not None else 0
        if first is not None:
            unrotated = self._result(0, first, n_first, W, I, method, base)
            if unrotated.match or rotations == (0,):
                return unrotated
        tried = [(k, self._try(WI, k)) for k in rotations if k != 0]
        tried = [(k, r) for k, r in tried if r is not None]
        n_total = n_first + sum(r.n_positions for _, r in tried)
        if tried:
            k, res = max(tried, key=lambda kr: kr[1].pce)
            rotated = self._result(k, res, n_total, W, I, method, base)
            if rotated.match or first is None:
                return rotated
        if first is not None:
            return self._result(0, first, n_total, W, I, method, base)
        H, Wd = self.K.shape
        return ReferenceScore(self.name, "camera", None, None, method, math.inf, False, n_positions=0,
                              note=f"query {W.shape[0]}x{W.shape[1]} is larger than the fingerprint {H}x{Wd} at every rotation")

    def retry(self, previous: ReferenceScore, W: np.ndarray, WI: np.ndarray, I: np.ndarray, sigma: float, *,
              method: str, base: float) -> ReferenceScore:
        """Try a second residual (another denoiser sigma) at the rotation already reported.

        Its positions are added to the search, so the threshold rises with it (two published
        denoiser strengths are one more test, not a free second chance). Returns the new result
        if it is a match, else ``previous`` with the threshold of the whole search.
        """
        if previous.pce is None:
            return previous
        k = (previous.rotation or 0) // 90
        res = self._try(WI, k)
        if res is None:
            return previous
        n_all = previous.n_positions + res.n_positions
        candidate = self._result(k, res, n_all, W, I, method, base)
        if candidate.match:
            return dataclasses.replace(candidate, note=f"matched with the query residual at sigma {sigma:g}")
        h, w = W.shape[::-1] if k % 2 else W.shape
        return dataclasses.replace(previous, n_positions=n_all, threshold=self._threshold(method, base, n_all, h * w))
