"""Camera scoring (docs/algorithm.md §7.4-§7.7): PCE of the query's ``W·I`` against a fingerprint ``K``.

A query of the fingerprint's size is scored at zero shift; a smaller one (a crop at an unknown
offset) is searched over every shift that keeps it inside; rotations by 90/180/270 degrees are
tried when the unrotated score is not a match. The threshold grows with the number of positions
searched (``scores.search_threshold``), so the false-alarm rate of a decision stays that of PCE 60
at one position.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fingerprint.decision import ReferenceScore
from fingerprint.estimate import FingerprintParams
from fingerprint.scores import ReferenceSpectrum, ncc, search_threshold
from kernels.spec import gray_image  # re-exported: the gray query image I of the camera scores

__all__ = ["CameraReference", "gray_image"]


class CameraReference:
    """One camera fingerprint K prepared for scoring: its DFT computed once (on the device with CUDA)."""

    def __init__(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, device=None):
        self.name = name
        self.params = params
        self.K = np.ascontiguousarray(fingerprint, dtype=np.float32)
        # DFT of K computed once; with a device (fingerprint.device.Device), K and its DFT live there
        self.spectrum = ReferenceSpectrum(self.K) if device is None else device.spectrum(self.K)
        on_host = device is None
        self.xp, self._K, self._ncc = (np, self.K, ncc) if on_host else (device.xp, device.put(self.K), device.ncc)

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
