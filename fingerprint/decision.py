"""What attribution answers: one score record per (query, reference) and the decision for a query.

A :class:`ReferenceScore` holds the scores of one query against one reference and whether it
reached that reference's threshold; an :class:`Attribution` is the answer for one questioned
image (the best match, or "unknown", and the closest reference for the closed-set question).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attribution", "ReferenceScore", "decide"]


@dataclass
class ReferenceScore:
    """Scores of one query against one reference.

    ``ncc`` is the normalised cross-correlation at the chosen offset and rotation; ``pce`` the
    peak-to-correlation energy (cameras only, else None); ``threshold`` the value the deciding
    score (``decided_by``) had to reach; ``n_positions`` every position the camera search may
    score (shifts x rotations x denoiser strengths x scales, all its stages counted).

    Cameras also carry: ``scale``, the resize factor at which the query lined up (1.0 at the
    fingerprint's resolution; ``offset`` is then in pixels of the fingerprint resampled to that
    factor); ``false_alarm``, the probability that a non-matching pair scores this high in this
    search (a match iff at most the stated rate); ``stage``, the stage that decided
    (``"native"``, ``"implied scale"`` or ``"scale search"``); ``searched``, what the stages that
    ran searched and their thresholds, in words.
    """

    name: str
    kind: str
    ncc: float | None
    pce: float | None
    decided_by: str
    threshold: float
    match: bool
    rotation: int | None = None
    offset: tuple[int, int] | None = None
    n_positions: int = 0
    note: str | None = None
    z: float | None = None  # generators: NCC * sqrt(number of values compared), ~N(0, 1)-scaled
    scale: float | None = None
    false_alarm: float | None = None
    stage: str | None = None
    searched: str | None = None

    @property
    def strength(self) -> float:
        """The deciding score over its threshold (> 1 means match); ranks candidates of both kinds."""
        value = self.pce if self.decided_by == "pce" else self.ncc
        if value is None or not self.threshold > 0:
            return -math.inf
        return value / self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ncc": self.ncc,
            "pce": self.pce,
            "decided_by": self.decided_by,
            "threshold": self.threshold,
            "match": self.match,
            "rotation": self.rotation,
            "offset": list(self.offset) if self.offset is not None else None,
            "n_positions": self.n_positions,
            "scale": self.scale,
            "false_alarm": self.false_alarm,
            **({"stage": self.stage} if self.stage is not None else {}),
            **({"searched": self.searched} if self.searched else {}),
            **({"z": self.z} if self.z is not None else {}),
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class Attribution:
    """The answer for one questioned image."""

    image: str
    best: str | None
    decision: str  # "match" or "unknown"
    scores: dict[str, ReferenceScore] = field(default_factory=dict)
    closest: str | None = None
    query_residual: str | None = None  # how the camera query residual was made (cameras scored only)

    def as_dict(self) -> dict[str, Any]:
        best = self.scores.get(self.best) if self.best else None
        return {
            "image": self.image,
            "best": self.best,
            "decision": self.decision,
            "closest": self.closest,
            "kind": best.kind if best else None,
            "rotation": best.rotation if best else None,
            "offset": list(best.offset) if best and best.offset is not None else None,
            "scale": best.scale if best else None,
            "n_positions": best.n_positions if best else None,
            "false_alarm": best.false_alarm if best else None,
            **({"query_residual": self.query_residual} if self.query_residual else {}),
            "scores": {name: s.as_dict() for name, s in self.scores.items()},
        }


def decide(scores: dict[str, ReferenceScore], label: str) -> Attribution:
    """The answer for one image: the reference with the highest strength if it matches, else unknown."""
    ordered = {name: scores[name] for name in sorted(scores)}
    ranked = sorted(ordered.values(), key=lambda s: s.strength, reverse=True)
    closest = ranked[0].name if ranked and ranked[0].strength > -math.inf else None
    best = ranked[0].name if ranked and ranked[0].match else None
    return Attribution(label, best, "match" if best else "unknown", ordered, closest)
