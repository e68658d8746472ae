"""Generator scoring (docs/algorithm.md §6, §7.8): NCC of the query's generator residual with a fingerprint.

Per-channel means are removed; a match needs ``z = NCC * sqrt(D)`` (D values compared) to reach
the library's calibrated threshold, i.e. the NCC to reach ``z_threshold / sqrt(D)``. Generators
that share parameters and shape are scored together as one matrix product (:class:`GeneratorBank`).
"""

from __future__ import annotations

import math

import numpy as np

from fingerprint.decision import ReferenceScore
from fingerprint.estimate import FingerprintParams
from fingerprint.scores import ncc
from kernels.spec import GRAY_WEIGHTS

__all__ = ["GeneratorBank", "GeneratorReference", "generator_scorers"]


def _centre(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = a.shape[-2:]
    top, left = (h - shape[0]) // 2, (w - shape[1]) // 2
    return a[..., top : top + shape[0], left : left + shape[1]]



def _centred_channels(a: np.ndarray) -> np.ndarray:
    """Subtract each channel's mean (the DC of every channel), float32 (C, H, W)."""
    return (a - a.mean(axis=(1, 2), keepdims=True, dtype=np.float64)).astype(np.float32, copy=False)


def _unit(a: np.ndarray) -> np.ndarray:
    """Flattened, per-channel-centred, unit-norm float32 vector (zeros for a constant array)."""
    v = _centred_channels(a).ravel()
    norm = float(np.linalg.norm(v.astype(np.float64)))
    return v / np.float32(norm) if norm > 0 else v


class GeneratorReference:
    """One generator fingerprint prepared for NCC scoring against generator residuals."""

    def __init__(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, threshold: float | None,
                 threshold_note: str | None = None):
        self.name = name
        self.params = params
        self.F = np.asarray(fingerprint, dtype=np.float32)
        if self.F.ndim == 2:
            self.F = self.F[None]
        self.threshold = threshold
        self.threshold_note = threshold_note

    def result(self, c: float, d: int, note: str | None = None) -> ReferenceScore:
        """The score record for NCC ``c`` over ``d`` values: ``z = c sqrt(d)`` against the threshold."""
        z = c * math.sqrt(d)
        if self.threshold is None:
            note = "; ".join(x for x in (note, self.threshold_note or "no calibrated threshold") if x)
            return ReferenceScore(self.name, "generator", c, None, "ncc", math.inf, False,
                                  rotation=0, offset=None, n_positions=1, note=note, z=z)
        ncc_threshold = self.threshold / math.sqrt(d)  # the z threshold in NCC units for this size
        return ReferenceScore(self.name, "generator", c, None, "ncc", ncc_threshold, bool(z >= self.threshold),
                              rotation=0, offset=None, n_positions=1, note=note, z=z)

    def score(self, R: np.ndarray) -> ReferenceScore:
        """NCC of a residual R (C, H, W) of any size with this fingerprint (the general path)."""
        F = self.F
        if R.shape[0] != F.shape[0]:  # gray query against a colour fingerprint, or the reverse
            g = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
            R = np.tensordot(g, R, axes=1)[None] if R.shape[0] == 3 else R
            F = np.tensordot(g, F, axes=1)[None] if F.shape[0] == 3 else F
        common = (min(R.shape[1], F.shape[1]), min(R.shape[2], F.shape[2]))
        note = None
        if R.shape[1:] != F.shape[1:]:
            note = f"compared on the centred {common[0]}x{common[1]} region"
        r, f = _centre(R, common), _centre(F, common)
        return self.result(ncc(_centred_channels(r), _centred_channels(f)), r.size, note)


class GeneratorBank:
    """Generators sharing parameters and fingerprint shape: scoring them all is one matrix product.

    ``M`` (R x D, float32) holds the unit, per-channel-centred fingerprints, so for a query residual
    of the same shape the NCC with every generator is ``M @ unit(r)``, and for a batch of Q queries
    ``unit(R) @ M.T`` (Q x R).
    """

    def __init__(self, generators: list[GeneratorReference], device=None):
        self.generators = generators
        self.params = generators[0].params
        self.shape = generators[0].F.shape
        self.M = np.stack([_unit(g.F) for g in generators])
        self.device, self._M = device, (device.put(self.M) if device is not None else None)  # M on the device

    def score_batch(self, residuals: list[np.ndarray]) -> list[list[ReferenceScore]]:
        same = [i for i, r in enumerate(residuals) if r.shape == self.shape]
        out: list[list[ReferenceScore]] = [[] for _ in residuals]
        if same:
            units = np.stack([_unit(residuals[i]) for i in same])
            # (Q, R) NCC: a product of unit vectors, or ncc_matrix (one GEMM) on the device
            c = units @ self.M.T if self.device is None else self.device.ncc_rows(units, self._M)
            d = int(np.prod(self.shape))
            for row, i in enumerate(same):
                out[i] = [g.result(float(np.clip(c[row, k], -1.0, 1.0)), d) for k, g in enumerate(self.generators)]
        for i, r in enumerate(residuals):
            if r.shape != self.shape:
                out[i] = [g.score(r) for g in self.generators]
        return out


def generator_scorers(lib, params: FingerprintParams, exclude: str = "") -> list:
    """Scorers of a library's generators built with ``params``, all but reference ``exclude``.

    Each has ``.score(R)`` (R a generator residual, (C, H, W)) returning a
    :class:`ReferenceScore` whose ``z`` is a score of that image against a generator it does not
    come from: the non-matching calibration scores of ``build`` and ``calibrate``. Only
    generators with the same parameters are returned, so every score is of one statistic. No
    threshold is attached (they never decide a match). Damaged references are left out.
    """
    from reference_db import DamagedReferenceError

    out = []
    for info in lib.infos():
        if info.kind == "generator" and info.name != exclude and not info.damaged:
            theirs = FingerprintParams.from_dict(dict(info.params, kind="generator"))
            if theirs == params:
                try:
                    fingerprint = lib.get(info.name, with_sums=False).fingerprint
                except DamagedReferenceError:
                    continue
                out.append(GeneratorReference(info.name, fingerprint, theirs, None))
    return out
