"""Accuracy of ganprint on ../shared/data, every protocol of the library issue, with one command.

    python benchmarks/evaluate_shared.py [--only dresden512,dresden_full,crops,gan] [--plots DIR]

1. dresden512: 512x512 centre crops; fingerprints from the 10 flat-fields of each camera, the 16
   natural photos as queries (prnu-python's protocol): ROC AUC of NCC and PCE, top-1.
2. dresden_full: the same at full size: every natural photo matched with PCE > 60? highest wrong PCE?
3. crops: queries that are 1024x1536 crops of the natural photos at random offsets, and the
   photos rotated by 90 and 180 degrees, against the full-size fingerprints.
4. gan: generator fingerprints from gan/ref, queries gan/query (real and an unknown generator
   must come out unknown).

Libraries and derived query files go to a temporary folder; nothing is written to shared/.
Everything goes through the same code as the CLI (``build_reference``, ``evaluate_library``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fingerprint.build import build_reference
from fingerprint.evaluate import evaluate_library, format_report
from fingerprint.io import load_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DRESDEN = DATA / "dresden"
GAN = DATA / "gan"


def camera_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def build_cameras(lib: Path, crop) -> None:
    for cam in sorted({camera_of(p) for p in (DRESDEN / "ff").glob("*.JPG")}):
        build_reference(lib, cam, "camera", [str(DRESDEN / "ff" / f"{cam}_*.JPG")], crop=crop, progress=False)


def write_csv(rows, path: Path) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def dresden(tmp: Path, crop, plots) -> dict:
    lib = tmp / f"dresden_{'full' if crop is None else 'crop'}.h5"
    t = time.perf_counter()
    build_cameras(lib, crop)
    t_build = time.perf_counter() - t
    csv = write_csv([(p, camera_of(p)) for p in sorted((DRESDEN / "nat").glob("*.JPG"))], tmp / "nat.csv")
    t = time.perf_counter()
    rep = evaluate_library(lib, csv, crop=crop, plots=plots, progress=False)
    t_eval = time.perf_counter() - t
    print(format_report(rep))
    pos, neg = rep.pairs["pce"]
    print(f"\nmatching pairs with PCE > 60: {sum(v > 60 for v in pos)}/{len(pos)}; lowest matching PCE "
          f"{min(pos):.1f}; highest non-matching PCE {max(neg):.1f}")
    print(f"time: build {t_build:.1f} s (60 flat-fields), evaluate {t_eval:.1f} s ({rep.n_queries} queries)")
    return rep.as_dict() | {"min_matching_pce": min(pos), "max_non_matching_pce": max(neg), "lib": str(lib)}


def crops_and_rotations(tmp: Path, full_lib: Path) -> dict:
    rng = np.random.default_rng(2026)
    rows = []
    qdir = tmp / "derived"
    qdir.mkdir(exist_ok=True)
    for p in sorted((DRESDEN / "nat").glob("*.JPG")):
        img = load_image(p)
        h, w = img.shape[:2]
        ch, cw = 1024, 1536
        oy, ox = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        for tag, arr in ((f"crop_{oy}_{ox}", img[oy:oy + ch, ox:ox + cw]), ("rot90", np.rot90(img, 1)),
                         ("rot180", np.rot90(img, 2))):
            out = qdir / f"{p.stem}_{tag}.png"
            Image.fromarray(np.ascontiguousarray(arr)).save(out, compress_level=1)
            rows.append((out, camera_of(p)))
    csv = write_csv(rows, tmp / "derived.csv")
    t = time.perf_counter()
    rep = evaluate_library(full_lib, csv, progress=False)
    print(format_report(rep))
    print(f"time: {time.perf_counter() - t:.1f} s for {rep.n_queries} queries (every shift searched for crops, "
          "4 rotations when the unrotated score is not a match)")
    return rep.as_dict()


def gan(tmp: Path, plots) -> dict:
    lib = tmp / "gan.h5"
    t = time.perf_counter()
    for g in sorted(p for p in (GAN / "ref").iterdir() if p.is_dir()):
        build_reference(lib, g.name, "generator", [g], progress=False)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    rep = evaluate_library(lib, GAN / "query", plots=plots, progress=False)
    print(format_report(rep))
    from fingerprint.attribution import load_attributor

    print(f"\ngenerator threshold: {load_attributor(lib).generator_threshold.describe()}")
    print(f"time: build {t_build:.1f} s, evaluate {time.perf_counter() - t:.1f} s")
    return rep.as_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="dresden512,dresden_full,crops,gan")
    ap.add_argument("--plots", help="write plots under this folder")
    ap.add_argument("--json", help="write all metrics to this JSON file")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1
    which = set(args.only.split(","))
    results = {}
    plots = Path(args.plots) if args.plots else None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "dresden512" in which:
            section("Dresden, 512x512 centre crops")
            results["dresden512"] = dresden(tmp, (512, 512), plots / "dresden512" if plots else None)
        if "dresden_full" in which or "crops" in which:
            section("Dresden, full size")
            results["dresden_full"] = dresden(tmp, None, plots / "dresden_full" if plots else None)
        if "crops" in which:
            section("Dresden, crops at random offsets and rotated photos, against full-size fingerprints")
            results["crops"] = crops_and_rotations(tmp, Path(results["dresden_full"]["lib"]))
        if "gan" in which:
            section("Generators (gan/)")
            results["gan"] = gan(tmp, plots / "gan" if plots else None)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
