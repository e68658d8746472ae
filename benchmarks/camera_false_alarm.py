"""Does the stated false-alarm rate hold? Non-matching (query, camera) pairs of simulated cameras.

    python benchmarks/camera_false_alarm.py [--cameras 12] [--pairs 10000] [--shape 112x160] [--json F]
    python benchmarks/camera_false_alarm.py --through-attribute   # the wired path: Attributor.score
    python benchmarks/camera_false_alarm.py --jpeg 60,95           # queries saved as JPEG, residuals weighted

Simulated cameras (``fingerprint.synthetic.make_camera``), fingerprints estimated from 8
flat-fields each with the public build API (``fingerprint.build.build_fingerprint``). Every query
(a natural photo of one camera) is scored against every other camera's fingerprint with
``fingerprint.camera_search.CameraSearch``, exactly as an attribution scores it, so every pair is
a non-matching pair. Three kinds of search, ``--pairs`` pairs each:

``aligned``
    the photo at full size: native stage only, rotations 0 and 180 degrees x sigma 2 and 5
    (4 positions);
``cropped``
    a crop of 50-90 % of each side at a random offset: native crop search over every shift,
    every rotation that fits, sigma 2 and 5;
``scaled``
    resized by a random factor in [0.45, 0.95] (Lanczos or bicubic), half of them then cropped to
    70-95 % of each side: the implied-scale stage (whole frames) and the coarse-to-fine scale
    search, each with its own budget, and the whole plan (native + implied + scale search with
    the default shares).

``--jpeg LO,HI`` saves every query (after its crop or resize) as a JPEG of a random quality in
``LO..HI`` and weights its residual by the file's quantisation table, as ``attribute`` does for a
JPEG file (``fingerprint.jpeg_residual.weight_residual``): the null of the weighted residual.

``--through-attribute`` scores every query with ``fingerprint.attribution.Attributor`` over the
other cameras (one Attributor per left-out camera; the attribution's own order of stages, both
residuals, every record's ``false_alarm``): one row per kind, stage ``attribute``.

For each search the probability ``p`` the error budget states for the best PCE of the pair
(``error_budget.false_alarm`` with the stage's positions) is recorded; a search at stated rate
``alpha`` accepts the pair when ``p <= alpha``. The table prints, per kind and ``alpha``, the
measured fraction of accepted non-matching pairs beside ``alpha``, their ratio and its 95 %
binomial interval (Wilson). The stated rate of a real decision (PCE 60 at one position,
4.7e-15) cannot be measured with 10^4 pairs; rates of 0.1 to 0.005 test the same model and the
same position counts where they can be measured.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
from PIL import Image

from fingerprint.build import build_fingerprint
from fingerprint.camera_search import CameraSearch
from fingerprint.jpeg_residual import JpegGrid, grid_from_tables, weight_residual
from fingerprint.residual import extract_residual
from fingerprint.synthetic import make_camera
from fingerprint.transforms import apply_pipeline
from kernels.spec import GRAY_WEIGHTS

ALPHAS = (0.1, 0.05, 0.02, 0.01, 0.005)
KINDS = ("aligned", "cropped", "scaled")


def product(image: np.ndarray, sigma: float, jpeg: JpegGrid | None = None) -> np.ndarray:
    gray = image.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32)
    w = extract_residual(image, sigma=sigma)
    return (w if jpeg is None else weight_residual(w, gray, jpeg)) * gray


def as_jpeg(image: np.ndarray, quality: int) -> tuple[np.ndarray, JpegGrid]:
    """The image saved as a JPEG of ``quality`` and decoded, with the file's grid."""
    t = apply_pipeline(image, f"jpeg:{quality}")
    return t.image, grid_from_tables(t.quantization)


def resize(image: np.ndarray, factor: float, filt: str) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(16, round(w * factor)), max(16, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, getattr(Image.Resampling, filt.upper())))


def crop(image: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = max(16, int(h * rng.uniform(lo, hi))), max(16, int(w * rng.uniform(lo, hi)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(image[top: top + ch, left: left + cw])


def query(kind: str, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "aligned":
        return image
    if kind == "cropped":
        return crop(image, rng, 0.5, 0.9)
    out = resize(image, rng.uniform(0.45, 0.95), str(rng.choice(["lanczos", "bicubic"])))
    return crop(out, rng, 0.7, 0.95) if rng.random() < 0.5 else out


def stage_p(decision, plan, name: str) -> float | None:
    """The stage's own false-alarm probability of its best PCE (its budget share undone)."""
    got = decision.by_stage.get(name)
    if got is None:
        return None
    return min(1.0, got[4] * plan.share(name))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def run(n_cameras: int, pairs: int, shape: tuple[int, int], seed: int, kinds, coarse_min_side: int = 128,
        through: bool = False, jpeg: tuple[int, int] | None = None) -> dict:
    t = time.perf_counter()
    cams = [make_camera(f"sim{i}", 1000 + i, shape=shape) for i in range(n_cameras)]
    fps = [build_fingerprint(c.images(8, seed=seed, flat=True)) for c in cams]
    searches = [CameraSearch(k, coarse_min_side=coarse_min_side) for k in fps]
    if through:
        from fingerprint.attribution import Attributor
        from fingerprint.build import default_params

        refs = [(c.name, "camera", k, default_params("camera")) for c, k in zip(cams, fps)]
        left_out = [Attributor([r for j, r in enumerate(refs) if j != i], backend="cpu") for i in range(n_cameras)]
        for att in left_out:
            for cam in att.cameras:  # the sweep's resolution rule of the CameraSearch rows
                if cam.search.scaled is not None:
                    cam.search.scaled.coarse_min_side = coarse_min_side
    print(f"{n_cameras} fingerprints of {shape[0]}x{shape[1]} in {time.perf_counter() - t:.1f} s", flush=True)
    per_query = n_cameras - 1
    n_queries = -(-pairs // per_query)
    results: dict[str, dict[str, list[float]]] = {}
    for kind in kinds:
        t = time.perf_counter()
        rng = np.random.default_rng([seed, KINDS.index(kind)])
        ps: dict[str, list[float]] = {}
        images = {}
        for qi in range(n_queries):
            ci = qi % n_cameras
            image = next(cams[ci].images(1, seed=seed + 1 + qi // n_cameras))
            q = query(kind, image, rng)
            grid = None
            if jpeg is not None:
                q, grid = as_jpeg(q, int(rng.integers(jpeg[0], jpeg[1] + 1)))
            if through:
                res = left_out[ci].score(q, f"q{qi}", jpeg=grid)
                ps.setdefault("attribute", []).extend(sc.false_alarm for sc in res.scores.values())
                images[qi] = q.shape
                if (qi + 1) % max(1, n_queries // 10) == 0:
                    print(f"  {kind}: {qi + 1}/{n_queries} queries, {time.perf_counter() - t:.0f} s", flush=True)
                continue
            wi2 = product(q, 2.0, grid)
            wi5 = product(q, 5.0, grid) if kind != "scaled" else None
            images[qi] = q.shape
            for cj, search in enumerate(searches):
                if cj == ci:
                    continue
                if kind == "scaled":
                    plan = search.plan(wi2.shape, n_sigmas=1)
                    dec = search.score([wi2], plan=plan)
                    for name in ("implied scale", "scale search"):
                        p = stage_p(dec, plan, name)
                        if p is not None:
                            ps.setdefault(name, []).append(p)
                    ps.setdefault("whole plan", []).append(dec.false_alarm)
                else:
                    plan = search.plan(wi2.shape, n_sigmas=2)
                    dec = search.score([wi2, wi5], plan=plan, stages=("native",))
                    ps.setdefault("native", []).append(stage_p(dec, plan, "native"))
            if (qi + 1) % max(1, n_queries // 10) == 0:
                print(f"  {kind}: {qi + 1}/{n_queries} queries, {time.perf_counter() - t:.0f} s", flush=True)
        results[kind] = ps
        print(f"{kind}: {n_queries} queries x {per_query} cameras in {time.perf_counter() - t:.0f} s", flush=True)
    return results


def table(results: dict) -> list[dict]:
    rows = []
    print("\n| search | stage | pairs | stated | measured | ratio | 95 % interval of the ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, by_stage in results.items():
        for name, ps in by_stage.items():
            p = np.asarray(ps)
            for a in ALPHAS:
                k = int(np.sum(p <= a))
                lo, hi = wilson(k, p.size)
                rows.append(dict(kind=kind, stage=name, pairs=int(p.size), alpha=a, accepted=k,
                                 measured=k / p.size, ratio=k / p.size / a))
                print(f"| {kind} | {name} | {p.size} | {a:g} | {k / p.size:.4f} ({k}) | {k / p.size / a:.2f} | "
                      f"{lo / a:.2f}-{hi / a:.2f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=10_000, help="non-matching pairs per kind of search")
    ap.add_argument("--shape", default="112x160", help="sensor size HxW of the simulated cameras")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--coarse-min-side", type=int, default=128,
                    help="coarse sweep at half resolution when the query's shorter side is >= 2x this "
                         "(default 128, as ScaledSearch; 24 exercises the half-resolution sweep on small sensors)")
    ap.add_argument("--json", help="write the table and every p-value to this file")
    ap.add_argument("--through-attribute", action="store_true", help="score through Attributor.score (the wired path)")
    ap.add_argument("--jpeg", help="LO,HI: save each query as a JPEG of a quality in LO..HI, residual weighted")
    args = ap.parse_args(argv)
    jpeg = tuple(int(v) for v in args.jpeg.split(",")) if args.jpeg else None
    if jpeg is not None and (len(jpeg) != 2 or not 1 <= jpeg[0] <= jpeg[1] <= 100):
        print("error: --jpeg takes LO,HI with 1 <= LO <= HI <= 100", file=sys.stderr)
        return 2
    h, w = (int(v) for v in args.shape.lower().split("x"))
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or args.cameras < 2 or args.pairs < 1:
        print(f"error: kinds must be among {', '.join(KINDS)}, cameras >= 2, pairs >= 1", file=sys.stderr)
        return 2
    t = time.perf_counter()
    results = run(args.cameras, args.pairs, (h, w), args.seed, kinds, args.coarse_min_side, args.through_attribute,
                  jpeg)
    rows = table(results)
    print(f"total {time.perf_counter() - t:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "p": results}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
