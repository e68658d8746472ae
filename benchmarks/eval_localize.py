"""Tamper localisation on forgeries made from ../shared/data/dresden, in about three minutes.

    python benchmarks/eval_localize.py [--hosts 4] [--size 1536] [--library CACHE.h5]

1. Fingerprints: every camera's 10 flat-fields, centre-cropped to SIZE x SIZE (built once into a
   temporary library, or into --library to reuse it).
2. Hosts: the natural photos (same centre crop) with the strongest fingerprint (highest PCE with
   their own camera), ``--hosts`` of them; donors: natural photos of another camera model.
3. Forgeries of each host, made here in memory:
   - ``splice B``: a B x B block of the donor (same place) pasted at a random position, B in
     128, 256, 640, 1024;
   - ``copy-move 640``: a 640 x 640 block of the host itself pasted 700 px further down-right;
   - ``splice 640 + JPEG 90``: the spliced photo re-saved as JPEG quality 90;
   - ``untouched`` and ``untouched + JPEG 90``: the host as it is, and re-saved.
4. ``fingerprint.localization.localize`` with its defaults (window 256 at this size, alpha 0.01; the
   small blocks also with window 128): IoU of the mask with the pasted block, the fraction of the
   authentic area flagged, and the fraction of an untouched photo flagged.

Prints a Markdown table for benchmarks/RESULTS.md. Nothing is written to shared/.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fingerprint.attribution import load_attributor
from fingerprint.build import build_reference
from fingerprint.io import crop_center, load_image
from fingerprint.localization import localize

DRESDEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "dresden"
BLOCKS = (128, 256, 640, 1024)


def camera_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def model_of(path: Path) -> str:
    return camera_of(path).rsplit("_", 1)[0]


def jpeg(image: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def forgeries(host: np.ndarray, donor: np.ndarray, rng: np.random.Generator):
    """(name, image, truth mask or None) for every forgery of one host."""
    n = host.shape[0]
    out = [("untouched", host, None), ("untouched + JPEG 90", jpeg(host), None)]
    for b in BLOCKS:
        y, x = (int(v) for v in rng.integers(0, n - b + 1, 2))
        f = host.copy()
        f[y:y + b, x:x + b] = donor[y:y + b, x:x + b]
        truth = np.zeros(host.shape[:2], dtype=bool)
        truth[y:y + b, x:x + b] = True
        out.append((f"splice {b}", f, truth))
        if b == 640:
            out.append(("splice 640 + JPEG 90", jpeg(f), truth))
    b, (sy, sx), (dy, dx) = 640, (60, 60), (760, 760)
    f = host.copy()
    f[dy:dy + b, dx:dx + b] = host[sy:sy + b, sx:sx + b]
    truth = np.zeros(host.shape[:2], dtype=bool)
    truth[dy:dy + b, dx:dx + b] = True
    out.append(("copy-move 640", f, truth))
    return out


def scores(mask: np.ndarray, truth: np.ndarray | None) -> tuple[float | None, float]:
    """(IoU with the truth, fraction of the authentic area flagged)."""
    if truth is None:
        return None, float(mask.mean())
    iou = float((mask & truth).sum() / max((mask | truth).sum(), 1))
    return iou, float((mask & ~truth).sum() / max((~truth).sum(), 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=4, help="number of host photos (strongest fingerprints first)")
    ap.add_argument("--size", type=int, default=1536, help="centre crop of every photo (default 1536)")
    ap.add_argument("--library", help="library file to build once and reuse")
    args = ap.parse_args(argv)
    if not DRESDEN.is_dir():
        print(f"shared data not found at {DRESDEN}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    crop = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(args.library) if args.library else Path(tmp) / "dresden.h5"
        if not lib.exists():
            for cam in sorted({camera_of(p) for p in (DRESDEN / "ff").glob("*.JPG")}):
                build_reference(lib, cam, "camera", [str(DRESDEN / "ff" / f"{cam}_*.JPG")], crop=crop, progress=False)
        t_build = time.perf_counter() - t0
        att = load_attributor(lib, rotations=False)
        K = {c.name: c.K for c in att.cameras}
        nat = sorted((DRESDEN / "nat").glob("*.JPG"))
        photos = {p: crop_center(load_image(p), crop) for p in nat}
        pce = {p: att.score(im, p.name).scores[camera_of(p)].pce for p, im in photos.items()}
        hosts = sorted(nat, key=lambda p: -pce[p])[: args.hosts]
        rng = np.random.default_rng(14)
        rows: dict[str, list] = {}
        for i, host in enumerate(hosts):
            donors = [p for p in nat if model_of(p) != model_of(host)]
            donor = donors[(7 * i + 3) % len(donors)]
            print(f"host {host.name} (PCE {pce[host]:.0f}), donor {donor.name}", file=sys.stderr, flush=True)
            for name, image, truth in forgeries(photos[host], photos[donor], rng):
                windows = [None, 128] if name in ("splice 128", "splice 256") else [None]
                for window in windows:
                    loc = localize(image, K[camera_of(host)], window=window)
                    key = name if window is None else f"{name} (window {window})"
                    rows.setdefault(key, []).append((*scores(loc.mask, truth), loc.window, loc.predictor))
    elapsed = time.perf_counter() - t0
    print(f"\n{len(hosts)} hosts ({', '.join(f'{h.name} PCE {pce[h]:.0f}' for h in hosts)}), {args.size}x{args.size} "
          f"centre crops; build {t_build:.0f} s, total {elapsed:.0f} s\n")
    print("| forgery | window | IoU mean | IoU per host | authentic area flagged (mean / max) |")
    print("| --- | --- | --- | --- | --- |")
    for key, vals in rows.items():
        ious = [v[0] for v in vals if v[0] is not None]
        fa = [v[1] for v in vals]
        iou_text = (f"{np.mean(ious):.2f}", " / ".join(f"{v:.2f}" for v in ious)) if ious else ("-", "-")
        print(f"| {key.split(' (window')[0]} | {vals[0][2]} | {iou_text[0]} | {iou_text[1]} | "
              f"{100 * np.mean(fa):.1f} % / {100 * max(fa):.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
