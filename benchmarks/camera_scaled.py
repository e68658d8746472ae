"""Camera identification from resized, re-compressed and cropped Dresden photos (issue 12).

    python benchmarks/camera_scaled.py                 # default protocol (subsampled, ~10 min)
    python benchmarks/camera_scaled.py --full          # every photo, scale, filter and variant
    python benchmarks/camera_scaled.py --peak-width    # PCE against scale error (chooses the grid)
    python benchmarks/camera_scaled.py --resampling    # fingerprint down vs query up, filters
    python benchmarks/camera_scaled.py --timing        # 6 MP resized query against 6 cameras
    python benchmarks/camera_scaled.py --timing --timing-variants crop --orders ranked,library --no-others
    python benchmarks/camera_scaled.py --through-attribute   # the same cases through Attributor.score

Fingerprints: the 10 flat-fields of each camera in ``../shared/data/dresden/ff`` through the public
build API (``fingerprint.build.build_reference``), cached in ``/tmp/ganprint_bench/dresden_ff.h5``
(delete it to rebuild). Queries: the 16 natural photos of ``nat/``, transformed in memory with
``fingerprint.transforms`` (nothing is written): resized by 0.5, 0.6, 0.75, 0.9 (Lanczos,
bicubic); the same then JPEG q75 (``--jpeg-quality``); the same then cropped to 80 % of each side at a seeded random
offset. Every query is scored against the 6 cameras as an attribution would: native crop search
and implied scale for every camera (sigma 2), the sigma-5 residual in the native stage if no
camera matched, then the scale-search stage until one camera matches
(``fingerprint.camera_search.scale_stage``: every camera surveyed at 1/4 resolution, then
searched the likeliest first, side by side; one error budget per decision). ``--orders
ranked,library`` scores every query also with that stage run camera by camera in library order
(the order before ``scale_stage``), times both and checks that the decisions agree.
``--all-cameras`` runs every stage of every camera (no early stop across cameras) to check
wrong matches thoroughly.
``--through-attribute`` scores each case's queries with the public ``Attributor.score`` of the
library file (the wired path, residuals and records included) instead. A copy saved as JPEG last
(``+jpeg:75``) is scored with its table, as ``attribute`` scores a JPEG file: its residual is
weighted by ``jpeg_residual.weight_residual`` on both paths.
``--photos 0,4,8`` restricts any case to those photos (indices into the sorted nat/ list).

Default run (2 shared cores, ~10 min): every other photo (8 of 16) for resize and resize + JPEG
at every factor with Lanczos and for bicubic at 0.5 and 0.9; resize + crop at every factor with
Lanczos on every fourth photo (4 of 16). The subsets leave out the one weak photo
(Nikon_D70_1_20891, PCE 49 at full size), whose failed searches are the slowest: ``--full`` runs
everything (about 1.5 h on 2 shared cores).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fingerprint.allocator import keep_freed_memory
from fingerprint.build import build_reference
from fingerprint.camera_search import CameraSearch, decide_cameras, merge
from fingerprint.io import load_image
from fingerprint.jpeg_residual import JpegGrid, grid_from_tables, weight_residual
from fingerprint.residual import extract_residual
from fingerprint.scaled_search import resample_fingerprint
from fingerprint.scores import ReferenceSpectrum
from fingerprint.transforms import apply_pipeline, image_rng
from kernels.spec import GRAY_WEIGHTS
from reference_db import Library

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dresden"
CACHE = Path("/tmp/ganprint_bench/dresden_ff.h5")
SCALES = (0.5, 0.6, 0.75, 0.9)
FILTERS = ("lanczos", "bicubic")
CROP = 0.8  # crop after resize keeps this fraction of each side
JPEG = 75


def camera_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def fingerprints(path: Path = CACHE, crop: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Camera fingerprints from ff/ (centre crops of ``crop`` if given), built once into ``path``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        for cam in sorted({camera_of(p) for p in (DATA / "ff").glob("*.JPG")}):
            build_reference(path, cam, "camera", [str(DATA / "ff" / f"{cam}_*.JPG")], crop=crop, progress=False)
        print(f"built {path} in {time.perf_counter() - t:.0f} s", flush=True)
    with Library(path, "r") as lib:
        return {n: np.asarray(lib.get(n, with_sums=False).fingerprint, dtype=np.float32) for n in lib.names()}


def gray(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32)
    return x @ np.asarray(GRAY_WEIGHTS, dtype=np.float32) if x.ndim == 3 else x


def product(image: np.ndarray, sigma: float = 2.0, jpeg: JpegGrid | None = None) -> np.ndarray:
    """``W * I``: the query residual at ``sigma`` times the gray image; a JPEG query's residual
    weighted by its table first (``jpeg_residual.weight_residual``, as ``attribute`` does for a
    JPEG file)."""
    w = extract_residual(image, sigma=sigma)
    g = gray(image)
    if jpeg is not None:
        w = weight_residual(w, g, jpeg)
    return w * g



def pipeline(shape: tuple[int, int], scale: float, filt: str, variant: str) -> str:
    spec = f"resize:{scale:g}:{filt}"
    if variant == "jpeg":
        spec += f"+jpeg:{JPEG}"
    elif variant == "crop":
        h, w = round(shape[0] * scale), round(shape[1] * scale)
        spec += f"+crop:{round(CROP * h)}x{round(CROP * w)}"
    return spec


ORDERS = ("ranked", "library")


def library_order_stage(searches: dict[str, CameraSearch], wi2: np.ndarray, n_sigmas: int, dec: dict) -> dict:
    """The scale-search stage as it was before ``camera_search.scale_stage``: camera by camera in
    library order until one matches (kept here to measure the new order against)."""
    for c, s in searches.items():
        if any(d.match for d in dec.values()):
            break
        dec[c] = merge(dec[c], s.score([wi2], n_sigmas=n_sigmas, stages=("scale search",)))
    return dec


def attribute(image: np.ndarray, searches: dict[str, CameraSearch], *, all_cameras: bool = False,
              order: str = "ranked", jpeg: JpegGrid | None = None):
    """Score one query against every camera as an attribution would; returns ({camera: decision}, seconds).

    ``order``: ``"ranked"``, the scale-search stage of ``decide_cameras`` (``scale_stage``:
    surveyed, then likeliest first); ``"library"``: the same passes with the stage camera by
    camera in library order (:func:`library_order_stage`, the order before it)."""
    t0 = time.perf_counter()
    wi2 = product(image, 2.0, jpeg)
    if order == "ranked" or all_cameras:
        dec = decide_cameras(searches, wi2, lambda: product(image, 5.0, jpeg), exhaustive=all_cameras)
    else:
        # decide_cameras with no scale-search stage (cameras of scaled=False views), then the old loop
        plain = {c: _NoScale(s) for c, s in searches.items()}
        dec = decide_cameras(plain, wi2, lambda: product(image, 5.0, jpeg))
        if not any(d.match for d in dec.values()):
            dec = library_order_stage(searches, wi2, 2, dec)
    return dec, time.perf_counter() - t0


class _NoScale:
    """A ``CameraSearch`` seen without its scale-search stage (the plan, hence every threshold, unchanged)."""

    def __init__(self, search: CameraSearch):
        self.search = search

    def score(self, *args, **kwargs):
        return self.search.score(*args, **kwargs)

    def can_scale_search(self, *args) -> bool:
        return False


class _Record:
    """A ``ReferenceScore`` of ``fingerprint.attribute`` read like a ``CameraDecision``."""

    def __init__(self, s):
        self.match, self.pce, self.stage, self.threshold = s.match, s.pce, s.stage, s.threshold
        self.scale = s.scale if s.scale is not None else float("nan")
        self.false_alarm = s.false_alarm if s.false_alarm is not None else 1.0


_ATTRIBUTORS: dict = {}


def through_attribute(image: np.ndarray, library: Path, jpeg: JpegGrid | None = None):
    """One query through the public ``Attributor.score`` of ``library`` (loaded on first use, the
    load not timed): residuals, JPEG weighting, decision."""
    from fingerprint.attribution import load_attributor

    if library not in _ATTRIBUTORS:
        _ATTRIBUTORS[library] = load_attributor(library, backend="cpu")
    t0 = time.perf_counter()
    res = _ATTRIBUTORS[library].score(image, jpeg=jpeg)
    return {name: _Record(s) for name, s in res.scores.items()}, time.perf_counter() - t0


def run_cases(K: dict, cases: list[tuple], photos: list[Path], *, all_cameras: bool,
              library: Path | None = None, orders=("ranked",)) -> list[dict]:
    """Every case, each query scored with each order of ``orders`` in turn (one set of searches,
    hence of caches, per order); with two orders, each query's decisions are compared: the
    answer (camera matched or unknown) and, per camera, match and PCE where both ended."""
    if library is not None:
        orders = ("attribute",)
    searches = {o: {c: CameraSearch(k) for c, k in K.items()} for o in orders} if library is None else None
    rows = []
    for scale, filt, variant, subset in cases:
        counts = {o: [0, 0, [], []] for o in orders}  # matched, wrong, times, true PCEs
        n = differ = 0
        for i, p in enumerate(photos):
            if subset is not None and i not in subset:
                continue
            n += 1
            img = load_image(p)
            spec = pipeline(img.shape[:2], scale, filt, variant)
            tq = apply_pipeline(img, spec, image_rng(12, i))
            q, grid = tq.image, grid_from_tables(tq.quantization)  # None unless saved as JPEG last
            answers = {}
            for o in orders:
                if library is not None:
                    dec, secs = through_attribute(q, library, grid)
                else:
                    dec, secs = attribute(q, searches[o], all_cameras=all_cameras, order=o, jpeg=grid)
                best = min(dec, key=lambda c: dec[c].false_alarm)
                true = camera_of(p)
                d = dec[best]
                ok = d.match and best == true
                cnt = counts[o]
                cnt[0] += ok
                cnt[1] += d.match and best != true
                cnt[2].append(secs)
                t = dec[true]
                cnt[3].append(t.pce if t.pce is not None else float("nan"))
                answers[o] = (best if d.match else "unknown", dec)
                label = f" [{o}]" if len(orders) > 1 else ""
                print(f"  {p.stem:20s} {spec:40s} {'OK ' if ok else '-- '} best {answers[o][0]:13s} "
                      f"true: PCE {t.pce if t.pce is not None else float('nan'):8.1f} at {t.scale:.4f} ({t.stage}, "
                      f"thr {t.threshold:.1f}) {secs:5.1f} s{label}", flush=True)
            if len(orders) > 1:
                (a, da), (b, db) = answers[orders[0]], answers[orders[1]]
                both = [c for c in da if "scale search" in da[c].searched and "scale search" in db[c].searched]
                same = a == b and all((da[c].match, da[c].pce) == (db[c].match, db[c].pce) for c in both)
                differ += not same
                print(f"    same decision in both orders: {'yes' if same else 'NO'} ({len(both)} cameras "
                      f"searched in both)", flush=True)
        for o in orders:
            matched, wrong, times, pces = counts[o]
            rows.append(dict(scale=scale, filter=filt, variant=variant, order=o, n=n, matched=matched, wrong=wrong,
                             median_s=statistics.median(times), max_s=max(times),
                             min_true_pce=float(np.nanmin(pces)) if n else float("nan")))
            print(f"x{scale:g} {filt} {variant or 'resize'} [{o}]: matched {matched}/{n}, wrong {wrong}, "
                  f"time median {statistics.median(times):.1f} s max {max(times):.1f} s", flush=True)
        if len(orders) > 1:
            print(f"x{scale:g} {filt} {variant or 'resize'}: decisions differ between orders on {differ}/{n}")
    return rows


def default_cases(full: bool, n_photos: int) -> list[tuple]:
    """(factor, filter, variant, photo subset or None) of the run.

    Full: every photo, factor, filter and variant. Default: every other photo (8 of 16) for
    resize and resize + JPEG at every factor with Lanczos and for bicubic at 0.5 and 0.9;
    resize + crop at every factor with Lanczos on every fourth photo (4 of 16).
    """
    cases = []
    every_other = None if full else set(range(0, n_photos, 2))
    every_fourth = None if full else set(range(0, n_photos, 4))
    for variant in ("", "jpeg", "crop"):
        for filt in FILTERS:
            for scale in SCALES:
                if not full and filt == "bicubic" and (variant != "" or scale not in (0.5, 0.9)):
                    continue
                cases.append((scale, filt, variant, every_fourth if variant == "crop" else every_other))
    return cases


def peak_width(K: dict, photos: list[Path]) -> None:
    """PCE retention against scale error, in pixels of misregistration at the query's edge."""
    units = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)
    print("retention = PCE(s (1 + u / extent)) / PCE(s); extent = longer side of the query (pixels)")
    for d in (1, 2):
        table: dict[float, list[float]] = {u: [] for u in units}
        for i, p in enumerate(photos):
            img = load_image(p)
            k = K[camera_of(p)]
            for scale in (0.75, 0.5):
                spec = pipeline(img.shape[:2], scale, "lanczos", "crop")
                q = apply_pipeline(img, spec, image_rng(12, i)).image
                wi = product(q)
                if d > 1:
                    wi = resample_fingerprint(wi, 1.0 / d, (wi.shape[0] // d, wi.shape[1] // d))
                kd = k if d == 1 else resample_fingerprint(k, 1.0 / d, (k.shape[0] // d, k.shape[1] // d))
                extent = max(wi.shape)
                base = None
                for u in units:
                    vals = []
                    for sign in ((1.0,) if u == 0 else (1.0, -1.0)):
                        s = scale * (1.0 + sign * u / extent)
                        t = resample_fingerprint(kd, min(s, 1.0))
                        if t.shape[0] < wi.shape[0] or t.shape[1] < wi.shape[1]:
                            continue
                        vals.append(ReferenceSpectrum(t).pce(wi, search="crop").pce)
                    if u == 0:
                        base = vals[0]
                    if base is not None and base >= 100 and vals:
                        table[u].extend(v / base for v in vals)
        print(f"resolution 1/{d} (photos with PCE >= 100 at the true factor, both signs of the error):")
        for u in units:
            v = sorted(table[u])
            if v:
                print(f"  u = {u:4.2f} px: median {statistics.median(v):.2f}, 10th percentile "
                      f"{v[len(v) // 10]:.2f} (n = {len(v)})")


def resampling(K: dict, photos: list[Path]) -> None:
    """Fingerprint down (several filters) against query up, at the true factor of a whole-frame resize."""
    for scale in (0.9, 0.75, 0.5):
        ratios: dict[str, list[float]] = {}
        tdown, tup = [], []
        for p in photos:
            img = load_image(p)
            k = K[camera_of(p)]
            q = apply_pipeline(img, f"resize:{scale:g}:lanczos").image
            w = extract_residual(q)
            wi = w * gray(q)
            sh = wi.shape
            vals = {}
            for f in ("lanczos", "bicubic", "bilinear", "box"):
                t = time.perf_counter()
                vals[f] = ReferenceSpectrum(resample_fingerprint(k, (sh[0] / k.shape[0], sh[1] / k.shape[1]), sh,
                                                                 filter=f)).pce(wi).pce
                if f == "bilinear":
                    tdown.append(time.perf_counter() - t)
            t = time.perf_counter()
            up = [np.asarray(resample_up(a, k.shape)) for a in (w, gray(q))]
            vals["query up"] = ReferenceSpectrum(k).pce(up[0] * up[1]).pce
            tup.append(time.perf_counter() - t)
            if vals["lanczos"] >= 60:
                for f, v in vals.items():
                    ratios.setdefault(f, []).append(v / vals["lanczos"])
        print(f"x{scale:g}: median PCE relative to fingerprint down with Lanczos: " + ", ".join(
            f"{f} {statistics.median(r):.3f}" for f, r in ratios.items())
              + f"; time bilinear down {statistics.mean(tdown):.2f} s, query up {statistics.mean(tup):.2f} s")


def resample_up(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(a, np.float32), mode="F").resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR))


def sigma_policies(K: dict, photos: list[Path], K512: dict) -> None:
    """Native-resolution protocols under one budget with three residual policies.

    ``sigma 2``: one residual; ``sigma 2 + 5``: two residuals, both counted (the retry as part of
    the one test); ``combined``: one residual ``W2 / std(W2) + W5 / std(W5)``. Thresholds are the
    native stage's of the plan (``CameraSearch.plan``: share 1/2 when the query is smaller than
    the fingerprint, since the scaled stages then share the budget).
    """
    rng = np.random.default_rng(2026)
    protocols: dict[str, list[tuple[np.ndarray, str]]] = {"full size": [], "full size + JPEG q75": [],
                                                          "1024x1536 crops": [], "rot90": [], "rot180": [],
                                                          "512x512 (512 fingerprints)": []}
    for p in photos:
        img = load_image(p)
        cam = camera_of(p)
        h, w = img.shape[:2]
        oy, ox = int(rng.integers(0, h - 1024 + 1)), int(rng.integers(0, w - 1536 + 1))
        protocols["full size"].append((img, cam))
        protocols["full size + JPEG q75"].append((apply_pipeline(img, f"jpeg:{JPEG}").image, cam))
        protocols["1024x1536 crops"].append((np.ascontiguousarray(img[oy:oy + 1024, ox:ox + 1536]), cam))
        protocols["rot90"].append((np.ascontiguousarray(np.rot90(img, 1)), cam))
        protocols["rot180"].append((np.ascontiguousarray(np.rot90(img, 2)), cam))
        top, left = (h - 512) // 2, (w - 512) // 2
        protocols["512x512 (512 fingerprints)"].append((np.ascontiguousarray(img[top:top + 512, left:left + 512]), cam))
    print("| protocol | policy | matched | wrong | lowest true PCE | its threshold |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, items in protocols.items():
        refs = K512 if name.startswith("512") else K
        searches = {c: CameraSearch(k, scaled=False) for c, k in refs.items()}
        plans = {c: CameraSearch(k) for c, k in refs.items()}  # for the plan's shares only
        counts = {pol: [0, 0, math.inf, 0.0] for pol in ("sigma 2", "sigma 2 + 5", "combined")}
        for img, cam in items:
            w2, w5 = product(img, 2.0), product(img, 5.0)
            comb = w2 / np.float32(w2.std()) + w5 / np.float32(w5.std())
            for pol, res, n_sig in (("sigma 2", [w2], 1), ("sigma 2 + 5", [w2, w5], 2), ("combined", [comb], 1)):
                dec = {}
                for c, srch in searches.items():
                    plan = plans[c].plan(w2.shape, n_sig)
                    dec[c] = srch.score(res, plan=plan, stages=("native",))
                best = min(dec, key=lambda c: dec[c].false_alarm)
                cnt = counts[pol]
                cnt[0] += dec[best].match and best == cam
                cnt[1] += any(d.match for c, d in dec.items() if c != cam)
                if dec[cam].pce is not None and dec[cam].pce < cnt[2]:
                    cnt[2], cnt[3] = dec[cam].pce, dec[cam].threshold
        for pol, (m, wrong, low, thr) in counts.items():
            print(f"| {name} | {pol} | {m}/{len(items)} | {wrong} | {low:.1f} | {thr:.1f} |", flush=True)


def timing(K: dict, photos: list[Path], library: Path | None = None, *, variants=("", "crop"),
           orders=("ranked",), others: bool = True, scale: float = 0.75, chosen: set | None = None) -> None:
    """A 6 MP photo (the D70 / D70s, 2000 x 3008) resized by ``scale`` (0.75) against the 6
    cameras: matched, and (``others``) with its camera left out. ``variants``: the whole frame
    ``""`` and/or resized then cropped to 80 % ``"crop"``. ``orders``: the scale-search stage's
    order (``attribute``), each timed on the same query in turn, with fresh searches (cold
    caches) per order; ``chosen``: photo indices instead of the first three D70 / D70s photos.
    With ``library``: through ``Attributor.score`` of the library
    (``fingerprint.attribution.load_attributor``, loaded once, its time printed apart)."""
    from fingerprint.attribution import load_attributor

    if chosen is not None:  # --photos: those photos instead of the first three 6 MP ones
        six = [p for i, p in enumerate(photos) if i in chosen]
    else:
        six = [p for p in photos if camera_of(p).startswith("Nikon_D70")][:3]
    if library is not None:
        t0 = time.perf_counter()
        att = load_attributor(library, backend="cpu")
        print(f"library loaded, fingerprint spectra computed in {time.perf_counter() - t0:.1f} s", flush=True)
    for p in six:
        img = load_image(p)
        for variant in variants:
            q = apply_pipeline(img, pipeline(img.shape[:2], scale, "lanczos", variant), image_rng(12, 0)).image
            if library is not None:
                t0 = time.perf_counter()
                res = att.score(q, p.stem)
                secs = time.perf_counter() - t0
                s = res.scores[res.best or res.closest]
                print(f"{p.stem} x{scale:g} {variant or 'whole frame'} {q.shape[1]}x{q.shape[0]}: {secs:.1f} s "
                      f"against 6 cameras through Attributor.score ({'match ' + res.best if res.best else 'unknown'}, "
                      f"{s.stage}, factor {s.scale:.4f})", flush=True)
                continue
            for order in orders:
                searches = {c: CameraSearch(k) for c, k in K.items()}
                dec, secs = attribute(q, searches, order=order)
                best = min(dec, key=lambda c: dec[c].false_alarm)
                ran = [c for c, d in dec.items() if "scale search" in d.searched]
                text = (f"{p.stem} x{scale:g} {variant or 'whole frame'} [{order}]: {secs:.1f} s against 6 cameras "
                        f"({'match ' + best if dec[best].match else 'unknown'}, {dec[best].stage}, PCE "
                        f"{dec[best].pce:.1f}; scale search ended for {len(ran)})")
                if others:
                    rest = {c: CameraSearch(k) for c, k in K.items() if c != camera_of(p)}
                    dec2, secs2 = attribute(q, rest, order=order)
                    text += (f"; {secs2:.1f} s against the 5 other cameras "
                             f"({'match' if any(d.match for d in dec2.values()) else 'unknown'})")
                print(text + f" [load {os.getloadavg()[0]:.1f}]", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every photo, factor, filter and variant")
    ap.add_argument("--all-cameras", action="store_true", help="no early stop across cameras")
    ap.add_argument("--peak-width", action="store_true")
    ap.add_argument("--resampling", action="store_true")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--timing-variants", default=",crop",
                    help="with --timing: whole frame (empty) and/or crop, e.g. crop (default: both)")
    ap.add_argument("--orders", default="ranked",
                    help="scale-search stage order(s): ranked (scale_stage) and/or library (the old "
                         "camera-by-camera loop), e.g. ranked,library: each case run with each")
    ap.add_argument("--no-others", action="store_true", help="with --timing: skip the left-out-camera runs")
    ap.add_argument("--sigmas", action="store_true", help="native protocols under three residual policies")
    ap.add_argument("--only", help="variants to run, e.g. crop or ,jpeg (empty = plain resize)")
    ap.add_argument("--filters", help="resize filters to run, e.g. lanczos")
    ap.add_argument("--scales", help="factors to run, e.g. 0.5,0.9")
    ap.add_argument("--jpeg-quality", type=int, default=JPEG,
                    help=f"quality of the jpeg variant's re-save (default {JPEG})")
    ap.add_argument("--library", type=Path, default=CACHE)
    ap.add_argument("--through-attribute", action="store_true",
                    help="score with the public Attributor.score of the library file instead of CameraSearch")
    ap.add_argument("--photos", help="photo indices to run in every case, e.g. 0,4,8 (default: the protocol's)")
    ap.add_argument("--default-allocator", action="store_true",
                    help="leave glibc's malloc thresholds as they are (the ganprint command raises them: "
                         "fingerprint.allocator)")
    args = ap.parse_args(argv)
    if not args.default_allocator:
        keep_freed_memory()  # time what the command does
    globals()["JPEG"] = args.jpeg_quality  # read by pipeline()
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1
    orders = tuple(o for o in args.orders.split(",") if o)
    if not orders or any(o not in ORDERS for o in orders):
        print(f"--orders must be among {', '.join(ORDERS)}", file=sys.stderr)
        return 2
    K = fingerprints(args.library)
    photos = sorted((DATA / "nat").glob("*.JPG"))
    if args.peak_width:
        peak_width(K, photos)
    if args.resampling:
        resampling(K, photos)
    if args.timing:
        timing(K, photos, args.library if args.through_attribute else None,
               variants=tuple(args.timing_variants.split(",")), orders=orders, others=not args.no_others,
               scale=float(args.scales) if args.scales and "," not in args.scales else 0.75,
               chosen={int(x) for x in args.photos.split(",") if x != ""} if args.photos else None)
    if args.sigmas:
        sigma_policies(K, photos, fingerprints(args.library.with_name("dresden_ff_512.h5"), crop=(512, 512)))
    if not (args.peak_width or args.resampling or args.timing or args.sigmas):
        cases = default_cases(args.full, len(photos))
        if args.only is not None:
            keep = set(args.only.split(","))
            cases = [c for c in cases if c[2] in keep]
        if args.filters:
            cases = [c for c in cases if c[1] in args.filters.split(",")]
        if args.scales:
            cases = [c for c in cases if any(abs(c[0] - float(x)) < 1e-9 for x in args.scales.split(","))]
        if args.photos:
            chosen = {int(x) for x in args.photos.split(",") if x != ""}
            cases = [c[:3] + (chosen,) for c in cases]
        t = time.perf_counter()
        rows = run_cases(K, cases, photos, all_cameras=args.all_cameras,
                         library=args.library if args.through_attribute else None, orders=orders)
        print("\n| factor | filter | variant | order | matched | wrong | median s | max s | lowest true PCE |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['scale']:g} | {r['filter']} | {r['variant'] or 'resize'} | {r['order']} | "
                  f"{r['matched']}/{r['n']} | "
                  f"{r['wrong']} | {r['median_s']:.1f} | {r['max_s']:.1f} | {r['min_true_pce']:.1f} |")
        print(f"total {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
