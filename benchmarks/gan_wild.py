"""Issue 11 figures of the generator decision that ``attribute`` gives (``fingerprint.generator_attribution``).

Run: ``.venv/bin/python benchmarks/gan_wild.py LIBRARY [CONDITION ...]`` with a library built from
``../shared/data/gan/ref`` (``ganprint build``; every statistic it uses is made at build time from
those images and simulated cameras). Evaluated on ``gan/query`` (genuine, real, the unseen
day2night generator), 256 x 256 crops of the Dresden photos and featureless images
(``gan_trust_data``), each transformed in memory (``fingerprint.transforms``, random crops seeded
per image). Prints one table row per condition: closed-set top-1 (``closest``), genuine matched,
wrong matches, negatives answered unknown per kind and pooled, the measured false-alarm rate
against the stated one (per image), and the median time per query.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gan_trust_data as data  # noqa: E402
from fingerprint.generator_attribution import load_generator_models, score_generators  # noqa: E402
from fingerprint.transforms import apply_pipeline, image_rng  # noqa: E402
from reference_db import Library  # noqa: E402

DEFAULT_CONDITIONS = ("none", "jpeg:90", "jpeg:75", "resize:0.9", "resize:0.75", "resize:0.5",
                      "crop:200", "crop:160", "crop:128")


def sets():
    q = data.gan_set("query")
    d = data.dresden_set()
    f = data.flat_set()
    return [*q[0], *d[0], *f[0]], [*q[1], *d[1], *f[1]]


def run(library: str, conditions, fpr: float = 0.01, models=None) -> list[str]:
    """The table rows; ``models``: ``GeneratorModels`` to use instead of the library's (experiments)."""
    if models is None:
        with Library(library, "r") as lib:
            models = load_generator_models(lib, fpr=fpr)
    fpr = models.fpr
    images, labels = sets()
    names = set(models.names)
    lines = ["| condition | closed-set | matched | wrong match | real | day2night | dresden | flat | negatives unknown "
             "| false alarms (stated) | resemblance on negatives | ms/query |", "|" + "---|" * 12]
    for cond in conditions:
        dec, times = [], []
        for i, x in enumerate(images):
            t = apply_pipeline(x, cond, image_rng(data.SEED, i))
            out: list = []
            t0 = time.perf_counter()
            score_generators(models, [t.image], qualities=[t.jpeg_quality], decisions=out)
            times.append(time.perf_counter() - t0)
            dec.append(out[0])
        lab = np.array(labels)
        gen = np.array([lb in names for lb in labels])
        closest = np.array([d.closest for d in dec], dtype=object)
        best = np.array([d.best for d in dec], dtype=object)
        top1 = float((closest[gen] == lab[gen]).mean())
        matched = float((best[gen] == lab[gen]).mean())
        wrong = float(np.mean([b is not None and b != t for b, t in zip(best[gen], lab[gen])]))
        neg = ~gen

        def unk(sel):
            return f"{np.mean([b is None for b in best[sel]]):.0%} ({sel.sum()})"

        kinds = {k: np.array([lb == k for lb in labels]) for k in ("real", "unknown_pix2pix_day2night")}
        kinds["dresden"] = np.array([lb.startswith("dresden") for lb in labels])
        kinds["flat"] = np.array([lb.startswith("flat") for lb in labels])
        fa = float(np.mean([b is not None for b in best[neg]]))
        res = float(np.mean([d.resemblance is not None for d, n in zip(dec, neg) if n]))
        lines.append(f"| {cond} | {top1:.0%} | {matched:.0%} | {wrong:.0%} | " + " | ".join(unk(s) for s in kinds.values())
                     + f" | {1 - fa:.1%} | {fa:.1%} ({fpr:g}) | {res:.0%} | {1000 * np.median(times):.0f} |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    run(sys.argv[1], sys.argv[2:] or DEFAULT_CONDITIONS)
