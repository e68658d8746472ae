"""``ganprint demo``: the whole job on simulated cameras and generators, no data and no network needed.

1. simulate: 4 cameras and 4 generators for the library (two generators share an architecture and
   differ only by their random weights), plus 1 camera and 1 generator that stay out of it;
2. build: a library from flat-field frames (cameras) and sample outputs (generators), written as
   image files and built with the same code as ``ganprint build``;
3. attribute: held-out images of every source, the two outsiders included (they must come out
   "unknown"), with the same code as ``ganprint evaluate``;
4. report: confusion table, top-1 accuracy, open-set results, timings per stage; the library
   (``library.h5``), per-image results (``results.jsonl``) and PNG plots are left in the output folder,
   with an HTML forensic report of one query per source (``report/index.html``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fingerprint.synthetic import make_camera, make_generator

CAMERAS = [("camera-A", 11), ("camera-B", 12), ("camera-C", 13), ("camera-D", 14)]
UNKNOWN_CAMERA = ("camera-X (not in library)", 19)
GENERATORS = [("tconv-seed1", "transposed_conv", 1), ("tconv-seed2", "transposed_conv", 2),
              ("bilinear-seed3", "bilinear_conv", 3), ("pixshuffle-seed4", "pixel_shuffle", 4)]
UNKNOWN_GENERATOR = ("nearest-seed9 (not in library)", "nearest_conv", 9)
N_FLAT, N_CAMERA_QUERIES = 12, 6
N_GENERATOR_REF, N_GENERATOR_QUERIES = 24, 8
JPEG_QUALITY = 92  # camera queries are JPEGs, as real photos are


def _slug(name: str) -> str:
    return name.split(" ")[0]


def _save(images, folder: Path, prefix: str, ext: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{prefix}_{i:03d}.{ext}"
        Image.fromarray(img).save(p, quality=JPEG_QUALITY) if ext == "jpg" else Image.fromarray(img).save(p, compress_level=1)
        paths.append(p)
    return paths


def _simulate(out: Path, size: int, bar) -> None:
    shape = (size, size)
    for name, seed in CAMERAS + [UNKNOWN_CAMERA]:
        cam = make_camera(_slug(name), seed, shape=shape, prnu_std=0.008)
        if name != UNKNOWN_CAMERA[0]:
            _save(cam.images(N_FLAT, seed=1, flat=True), out / "images" / "build" / _slug(name), "flat", "png")
        _save(cam.images(N_CAMERA_QUERIES, seed=2), out / "images" / "queries" / _slug(name), "photo", "jpg")
        bar.update(1)
    for name, arch, seed in GENERATORS + [UNKNOWN_GENERATOR]:
        gen = make_generator(_slug(name), arch, seed, out_size=size)
        if name != UNKNOWN_GENERATOR[0]:
            _save(gen.images(N_GENERATOR_REF, seed=1), out / "images" / "build" / _slug(name), "sample", "png")
        _save(gen.images(N_GENERATOR_QUERIES, seed=2), out / "images" / "queries" / _slug(name), "sample", "png")
        bar.update(1)


def run_demo(out_dir: str | Path = "demo-output", *, size: int = 256, progress: bool = True) -> dict:
    """Run the demo into ``out_dir`` (replaced if it exists) and print the report; returns the metrics."""
    from tqdm import tqdm

    from fingerprint.attribution import load_attributor
    from fingerprint.build import build_reference
    from fingerprint.evaluate import evaluate_results, format_report, read_labelled_queries
    from fingerprint.io import load_image
    from fingerprint.plots import plot_confusion, plot_score_distributions, plot_spectra
    from reference_db import Library

    if size < 64 or size % 16:
        raise ValueError(f"--size must be a multiple of 16, at least 64; got {size}")
    out = Path(out_dir)
    if out.exists():
        if not (out / "library.h5").exists() and any(out.iterdir()):
            raise ValueError(f"{out}: exists and is not a ganprint demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    show = None if progress else True
    timings: dict[str, float] = {}
    print(f"ganprint demo: {len(CAMERAS)} cameras and {len(GENERATORS)} generators in the library, "
          f"1 camera and 1 generator outside it, {size}x{size} images -> {out}/")

    t = time.perf_counter()
    with tqdm(total=len(CAMERAS) + len(GENERATORS) + 2, desc="simulate", file=sys.stderr, disable=show, leave=False) as bar:
        _simulate(out, size, bar)
    timings["simulate images"] = time.perf_counter() - t

    t = time.perf_counter()
    lib_path = out / "library.h5"
    build_dirs = sorted((out / "images" / "build").iterdir())
    kinds = {_slug(n): "camera" for n, _ in CAMERAS} | {_slug(n): "generator" for n, _, _ in GENERATORS}
    for folder in tqdm(build_dirs, desc="build library", file=sys.stderr, disable=show, leave=False):
        build_reference(lib_path, folder.name, kinds[folder.name], [folder], progress=False)
    timings["build library"] = time.perf_counter() - t
    n_build = sum(len(list(d.iterdir())) for d in build_dirs)

    t = time.perf_counter()
    att = load_attributor(lib_path)
    pairs = read_labelled_queries(out / "images" / "queries")
    results, labels = [], []
    with open(out / "results.jsonl", "w", encoding="utf-8") as fh:
        for path, label in tqdm(pairs, desc="attribute", file=sys.stderr, disable=show, leave=False):
            res = att.score(load_image(path), str(path.relative_to(out)))
            results.append(res)
            labels.append(label)
            fh.write(json.dumps(res.as_dict() | {"true_source": label}) + "\n")
    timings["attribute queries"] = time.perf_counter() - t

    t = time.perf_counter()
    report = evaluate_results(results, labels, att.camera_names + [g.name for g in att.generators])
    with Library(lib_path) as lib:
        spectra = {n: lib.get(n, with_sums=False).fingerprint for n in lib.names() if kinds.get(n) == "generator"}
    plots = out / "plots"
    plots.mkdir()
    cam_pairs = _pairs_of(results, labels, "camera")
    gen_pairs = _pairs_of(results, labels, "generator")
    thresholds = {"pce": 60.0}
    report.plots = [
        str(plot_spectra(spectra, plots / "generator_spectra.png")),
        str(plot_score_distributions({"pce": cam_pairs["pce"]}, plots / "camera_scores.png", thresholds)),
        str(plot_score_distributions({"z": gen_pairs["z"]}, plots / "generator_scores.png",
                                     {"z": att.generator_threshold.value if att.generator_threshold else None})),
        str(plot_confusion(report.confusion, plots / "confusion.png")),
    ]
    timings["metrics and plots"] = time.perf_counter() - t

    t = time.perf_counter()  # --- forensic report (fingerprint/report.py): one query per source, to stay quick ---
    from fingerprint.report import write_report

    firsts = [next(p for p, lab in pairs if lab == source) for source in dict.fromkeys(lab for _, lab in pairs)]
    report_index = write_report(lib_path, firsts, out / "report", note=(
        f"A subset: the first query of each of the {len(firsts)} sources ({len(pairs)} queries in all; every result is "
        "in results.jsonl), to keep the demo quick. Run 'ganprint report library.h5 images/queries --out DIR' for all."))
    timings["report"] = time.perf_counter() - t

    print(format_report(report))
    print()
    models = att.generator_models
    generators = (f"each generator against its own null per hypothesis and size at {models.fpr:g} false alarms per "
                  "image, within its leave-one-out genuine range" if models is not None
                  else att.generator_threshold.describe() if att.generator_threshold else "none")
    print(f"camera decisions: PCE >= 60 at one position, raised with the positions searched (false-alarm rate "
          f"~1e-5 per pair); generator decisions: {generators}")
    print(f"library: {lib_path} ({len(CAMERAS) + len(GENERATORS)} references from {n_build} images); "
          f"per-image results: {out / 'results.jsonl'}")
    print(f"forensic report of {len(firsts)} queries (one per source): {report_index}")
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; {len(results)} queries at {len(results) / timings['attribute queries']:.1f} images/s")
    metrics = report.as_dict() | {"timings_s": timings}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _pairs_of(results, labels, kind: str) -> dict[str, tuple[list[float], list[float]]]:
    pairs: dict[str, tuple[list[float], list[float]]] = {"ncc": ([], []), "pce": ([], []), "z": ([], [])}
    for res, label in zip(results, labels):
        for name, s in res.scores.items():
            if s.kind != kind:
                continue
            for key in ("ncc", "pce", "z"):
                v = getattr(s, key)
                if v is not None and np.isfinite(v):
                    pairs[key][0 if name == label else 1].append(float(v))
    return pairs
