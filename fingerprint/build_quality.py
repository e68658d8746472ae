"""A build's self-check: does each added image agree with the rest of the reference?

Each image's contribution to the running sums is kept on a centre window of at most
``WINDOW`` x ``WINDOW`` pixels (camera: ``dS_i = W_i T_i`` and ``dN_i = T_i**2``; generator: the
residual ``R_i``), for at most ``SAMPLE`` images (a uniform reservoir sample beyond that). After
the build, each kept image is scored against the fingerprint of all the *other* images counted
in the reference (leave one out, on that window) or, when the build adds images to a stored
reference, against the stored images alone (``S``, ``N``, ``sum`` below are then the stored sums
and ``dS_i``, ``dN_i``, ``R_i`` are not subtracted), so that several wrong images added together
cannot vouch for each other::

    camera:     K_-i = (S - dS_i) / (N - dN_i + 1)
                z_i  = NCC(ZMT(dS_i), ZMT(dN_i K_-i)) * sqrt(D)     (ZMT: ZeroMeanTotal per channel)
    generator:  z_i  = NCC(R_i, sum - R_i) * sqrt(D)

D is the number of values compared. ``dN_i K_-i = T_i**2 K`` is what ``dS_i = W_i T_i`` holds of
the camera's PRNU ``K`` (``W_i ~ I_i K``), so z_i is the usual detection statistic; for an image
of another source it is about N(0, 1). An image is an outlier when its z_i is below
``Z_UNRELATED`` (no evidence of the reference's source), or more than ``OUTLIER_SIGMAS`` robust
standard deviations (1.4826 MAD) below the median *and* below half the median (so a tight, healthy
build does not flag its dimmest image). Cost: two small window copies
per image and one NCC per kept image at the end, far less than one PCE each. Also counted: the
share of pixels at the type's maximum (255, 65535: saturated, they carry no PRNU).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from fingerprint.scores import ncc
from kernels.spectral_cpu import zero_mean_total

__all__ = ["OUTLIER_SIGMAS", "SAMPLE", "WINDOW", "Z_UNRELATED", "BuildQuality"]

OUTLIER_SIGMAS = 3.0  # robust standard deviations below the median that flag an image
SAMPLE = 64  # images kept for the leave-one-out check (a reservoir sample beyond)
WINDOW = 256  # side of the centre window of the check, pixels
Z_UNRELATED = 3.0  # below this z an image shows no sign of the reference's source (N(0, 1): 0.13 % above)


def _window(a: np.ndarray) -> tuple[slice, slice]:
    h, w = a.shape[-2:]
    dh, dw = min(h, WINDOW), min(w, WINDOW)
    return slice((h - dh) // 2, (h - dh) // 2 + dh), slice((w - dw) // 2, (w - dw) // 2 + dw)


def _zmt(planes: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(planes, dtype=np.float32).copy()
    for c in range(out.shape[0]):
        zero_mean_total(out[c], out=out[c])
    return out


@dataclass
class BuildQuality:
    """Self-check of one build; ``add`` wraps ``accumulator.add``, ``finish`` scores the kept images."""

    kind: str
    kept: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)  # (name, window contributions)
    scores: list[tuple[str, float]] = field(default_factory=list)  # (name, leave-one-out z), after finish
    n_images: int = 0
    saturated: int = 0
    pixels: int = 0
    stored: dict[str, np.ndarray] | None = None  # windows of the stored sums, when the build resumes a reference
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, acc, image: np.ndarray, name: str):
        """``acc.add(image, name=name)``, keeping the image's windowed contribution; returns what it returns."""
        before = {k: v[(slice(None), *_window(v))].copy() for k, v in acc.sums.items() if k != "power"}
        if self.n_images == 0 and acc.n_images > 0:
            self.stored = before
        out = acc.add(image, name=name)
        self.n_images += 1
        top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
        self.saturated += int(np.count_nonzero(image >= top))
        self.pixels += int(image.size)
        slot = len(self.kept) if len(self.kept) < SAMPLE else self._rng.randrange(self.n_images)
        if slot < SAMPLE:
            delta = {}
            for k, v in acc.sums.items():
                if k != "power":
                    now = v[(slice(None), *_window(v))]
                    delta[k] = now - before[k] if k in before else now.copy()
            entry = (name, delta)
            self.kept.append(entry) if slot == len(self.kept) else self.kept.__setitem__(slot, entry)
        return out

    def finish(self, acc) -> None:
        """Score every kept image against the other images of ``acc`` (its final sums); needs 2+ images."""
        self.scores = []
        if acc.n_images < 2:
            return
        total = {k: v[(slice(None), *_window(v))] for k, v in acc.sums.items() if k != "power"}
        for name, d in self.kept:
            rest = self.stored if self.stored is not None else {k: total[k] - d[k] for k in total}
            if self.kind == "camera":
                a, b = _zmt(d["S"]), _zmt(d["N"] * (rest["S"] / (rest["N"] + 1)))
            else:
                a, b = d["sum"], rest["sum"]
            self.scores.append((name, ncc(a, b) * math.sqrt(a.size)))

    def outliers(self) -> list[tuple[str, float]]:
        """``(name, z)`` of the scored images below Z_UNRELATED or far below the others (module docstring)."""
        if len(self.scores) < 3:
            return [(n, s) for n, s in self.scores if s < Z_UNRELATED]
        z = np.array([s for _, s in self.scores])
        median = float(np.median(z))
        spread = 1.4826 * float(np.median(np.abs(z - median)))
        bar = min(median - OUTLIER_SIGMAS * spread, median / 2)
        return [(n, s) for n, s in self.scores if s < bar or s < Z_UNRELATED]

    def summary(self) -> str:
        """One line: images used, the self-check z (median, min), saturation share, outlier count."""
        parts = [f"{self.n_images} image(s) used"]
        if self.scores:
            z = [s for _, s in self.scores]
            sample = f", a sample of {len(z)}" if len(z) < self.n_images else ""
            against = "the stored images" if self.stored is not None else "the others"
            parts.append(f"self-check z of each image against {against}: median {float(np.median(z)):.1f}, "
                         f"min {min(z):.1f}{sample}")
        else:
            parts.append("self-check: no other image to compare with")
        if self.pixels:
            parts.append(f"saturated pixels {100 * self.saturated / self.pixels:.2f} %")
        parts.append(f"{len(self.outliers())} outlier(s)")
        return "quality: " + "; ".join(parts)

    def lines(self, show=str) -> list[str]:
        """``summary()`` then one warning line per outlier; ``show`` formats image names (escaping)."""
        return [self.summary()] + [f"warning: {show(n)}: self-check z {z:.1f}, unlike the reference's other images; from "
                                   "another source? (ganprint remove LIBRARY NAME --image PATH)"
                                   for n, z in self.outliers()]
