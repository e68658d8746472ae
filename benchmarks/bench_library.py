"""Write cost of the reference library against its size: commit (add one reference), rename, update.

A library of N synthetic camera references of 512 x 512 (float32 fingerprint, float32 sums ``S``
and ``N``, about 3 MB each) is built in a temporary folder; then each operation is timed as the
user pays it (open for writing, the commit, close), median of ``--repeat`` runs. Schema 2 writes
one reference file plus the index, so these times should stay flat as N grows.

``--check`` also measures the acceptance criterion of issue 15: in a library of 25 references of
1024 x 1024 (RGB sums), adding one and renaming one cost at most 1.5x (+ 0.3 s) what they cost in
a library of one reference.

    .venv/bin/python benchmarks/bench_library.py            # N = 1, 10, 100 (about a minute)
    .venv/bin/python benchmarks/bench_library.py --full     # N = 1, 10, 100, 1000 (~3 GB of disk)
    .venv/bin/python benchmarks/bench_library.py --check    # the 1 vs 25 references criterion
    .venv/bin/python benchmarks/bench_library.py --search   # attribution through fingerprint.camera_library
    .venv/bin/python benchmarks/bench_library.py --search --through-attribute   # and through Attributor.score

``--search`` times attribution the way the library is read for it (``fingerprint.camera_library``):
for N = 1, 10, 100, 1000 camera references of 512 x 512 (fingerprints and aligned queries of
``benchmarks/bench_search.py``: matches, turned matches, weak blends, unknown cameras), the first
query (opening the library lazily, digests and the index, the first decision) and the median
query after it, with an empty cache (cold) and again with the cache it filled (warm), against the
exhaustive search (``camera_search.decide_cameras`` over every camera); the decisions are compared
on every query and the digest search's time is split into the sparse pass and the exact PCEs.
Residuals are computed once per query, outside every timing (both searches need the same ones).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_db import Library  # noqa: E402

SEARCH_SIZES = (1, 10, 100, 1000)


def reference(i: int, size: int, channels: int) -> dict:
    """Arguments of ``Library.add`` for synthetic camera ``i`` (values vary with ``i``)."""
    rng = np.random.default_rng(i)
    fp = rng.standard_normal((size, size), dtype=np.float32)
    shape = (size, size, 3) if channels == 3 else (size, size)
    sums = {"S": np.full((channels, size, size), i, np.float32), "N": np.ones((channels, size, size), np.float32)}
    return dict(kind="camera", fingerprint=fp, sums=sums, n_images=1, shape=shape, params={"sigma": 3.0},
                sources=[(f"img{i}.png", hashlib.sha256(str(i).encode()).hexdigest())])


def build(path: Path, n: int, size: int, channels: int, batch: int = 50) -> float:
    """Create a library of ``n`` references (``batch`` per commit); returns the seconds it took."""
    start = time.perf_counter()
    for first in range(0, n, batch):
        with Library(path, "a") as lib, lib.transaction():
            for i in range(first, min(n, first + batch)):
                lib.add(f"cam{i:04d}", **reference(i, size, channels))
    return time.perf_counter() - start


def timed(action, repeat: int) -> float:
    """Median seconds of ``action(k)`` for k = 0 .. repeat-1."""
    times = []
    for k in range(repeat):
        start = time.perf_counter()
        action(k)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(folder: Path, n: int, size: int, channels: int, repeat: int) -> dict[str, float]:
    path = folder / f"lib{n}.h5"
    setup = build(path, n, size, channels)
    os.sync()  # the build's writeback is not charged to the operations timed next
    extra = reference(10**6, size, channels)

    def add(k):
        with Library(path, "r+") as lib:
            lib.add(f"new{k}", **extra)

    def rename(k):
        with Library(path, "r+") as lib:
            lib.rename(f"new{k}", f"renamed{k}")

    def update(k):
        with Library(path, "r+") as lib:
            n_images = lib.info("cam0000", with_sources=False).n_images
            lib.update("cam0000", fingerprint=extra["fingerprint"], sums=extra["sums"], n_images=n_images + 1,
                       sources_added=[(f"more{k}.png", hashlib.sha256(f"more{k}".encode()).hexdigest())])

    result = {"build": setup, "add": timed(add, repeat), "rename": timed(rename, repeat),
              "update": timed(update, repeat)}
    size_mb = (path.stat().st_size + sum(p.stat().st_size for p in Path(f"{path}.d").iterdir())) / 1e6 \
        if Path(f"{path}.d").is_dir() else path.stat().st_size / 1e6
    result["size_mb"] = size_mb
    return result


def _search_library(folder: Path, fps: list, names: list) -> Path:
    """A library of the camera fingerprints ``fps`` (sums of ones: attribution reads fingerprints only)."""
    from fingerprint.estimate import FingerprintParams

    path = folder / f"search{len(fps)}.h5"
    params = FingerprintParams().as_dict() | {"kind": "camera"}
    ones = np.ones((1, *fps[0].shape), np.float32)
    for first in range(0, len(fps), 50):
        with Library(path, "a") as lib, lib.transaction():
            for j in range(first, min(len(fps), first + 50)):
                lib.add(names[j], kind="camera", fingerprint=fps[j], sums={"S": ones, "N": ones}, n_images=1,
                        shape=fps[j].shape, params=params,
                        sources=[(f"{names[j]}.png", hashlib.sha256(names[j].encode()).hexdigest())])
    return path


def _digest_run(path: Path, cache: Path, queries: list) -> dict:
    """One attribution run through ``camera_library``: decisions and timings of every query."""
    from fingerprint.camera_library import CameraPreselector, LazyCameras, LazyReferences, decide_preselected
    from fingerprint.camera_search import CameraSearch

    t0 = time.perf_counter()
    refs = LazyReferences(path, cache=cache)
    pre = CameraPreselector(refs)
    open_s = time.perf_counter() - t0
    sparse = {"s": 0.0}

    def select(wi, names):
        t = time.perf_counter()
        out = pre.candidates(wi, names)
        sparse["s"] += time.perf_counter() - t
        return out

    decisions, times, sparse_times, built = [], [], [], []
    index_s = 0.0
    cams = None
    for n, (wi2, wi5) in enumerate(queries):
        t = time.perf_counter()
        if n == 0:  # the index is built by the first aligned query; timed apart to show it
            pre.index(wi2.shape)
            index_s = time.perf_counter() - t
        if cams is None:
            cams = LazyCameras(refs, refs.matching(wi2.shape, "camera"),
                               lambda name, K: CameraSearch(K, spectrum=refs.spectrum(name, K)))
        sparse["s"] = 0.0
        dec = decide_preselected(cams, wi2, lambda wi5=wi5: wi5, select=select)  # builds the kept only
        times.append(time.perf_counter() - t)
        sparse_times.append(sparse["s"])
        decisions.append(_best(dec))
        built.append(len(dec))
    refs.close()
    return {"open_s": open_s, "index_s": index_s, "first_s": open_s + times[0], "times": times,
            "per_query_s": float(np.median(times[1:] or times)), "sparse_s": float(np.median(sparse_times[1:] or sparse_times)),
            "decided": float(np.mean(built)), "loads": refs.loads, "decisions": decisions,
            "spectrum_hits": refs.spectra.hits, "digest_hits": refs.digests.hits}


def _attribute_run(path: Path, cache: Path, images: list) -> dict:
    """The same queries through the wired path: ``load_attributor`` then ``Attributor.score`` on the
    image (residuals, digests, exact PCEs and records all timed)."""
    from fingerprint.attribution import load_attributor

    t0 = time.perf_counter()
    att = load_attributor(path, cache=cache, backend="cpu")
    open_s = time.perf_counter() - t0
    decisions, times = [], []
    with att:
        for image in images:
            t = time.perf_counter()
            res = att.score(image)
            times.append(time.perf_counter() - t)
            decisions.append(res.best)
        loads = att.references.loads
    return {"open_s": open_s, "first_s": open_s + times[0], "per_query_s": float(np.median(times[1:] or times)),
            "decisions": decisions, "loads": loads}


def _best(dec) -> str | None:
    matches = sorted((d.false_alarm, -d.pce, n) for n, d in dec.items() if d.match)
    return matches[0][2] if matches else None


def _exhaustive_run(path: Path, cache: Path, queries: list, limit: int) -> dict:
    from fingerprint.camera_library import LazyReferences
    from fingerprint.camera_search import CameraSearch, decide_cameras

    t0 = time.perf_counter()
    with LazyReferences(path, cache=cache) as refs:
        searches = {n: CameraSearch(K, spectrum=refs.spectrum(n, K)) for n in refs.names("camera")
                    for K in [refs.fingerprint(n)]}
    prepare = time.perf_counter() - t0
    decisions, times = [], []
    for wi2, wi5 in queries[:limit]:
        t = time.perf_counter()
        decisions.append(_best(decide_cameras(searches, wi2, lambda wi5=wi5: wi5)))
        times.append(time.perf_counter() - t)
    return {"prepare_s": prepare, "first_s": prepare + times[0], "per_query_s": float(np.median(times[1:] or times)),
            "decisions": decisions}


def search(folder: Path, sizes, n_queries: int, exhaustive_queries: int, library_file: str | None,
           through_attribute: bool = False) -> None:
    import bench_search as bs  # the fingerprints and queries of the digest benchmark

    from fingerprint.residual import extract_residual
    from kernels.spec import gray_image

    big = max(sizes)
    if library_file and Path(library_file).is_file():
        with np.load(library_file, allow_pickle=False) as npz:
            fps = list(npz["fps"][:big])
    else:
        fps, _ = bs.library(big, 4, bs.SHAPE)
        if library_file:
            np.savez(library_file, fps=np.stack(fps), info=np.array("{}"))
    names = [f"cam{1000 + j:04d}" for j in range(big)]
    queries, images = [], []
    for _, image, _ in bs.queries(bs.SHAPE, n_queries):
        I = gray_image(image)
        images.append(image)
        queries.append((extract_residual(image) * I, extract_residual(image, 5.0) * I))
    print(f"{'N':>5} {'':5} {'open s':>7} {'index s':>8} {'first q s':>10} {'per q s':>8} {'sparse s':>9} "
          f"{'decided':>8} {'loads':>6} | exhaustive: {'first q s':>9} {'per q s':>8} same   load  "
          f"(512x512, {len(queries)} queries, exhaustive on {exhaustive_queries})")
    for n in sizes:
        path = _search_library(folder, fps[:n], names[:n])
        cache = folder / f"cache{n}"
        cold = _digest_run(path, cache, queries)
        warm = _digest_run(path, cache, queries)
        ex = _exhaustive_run(path, cache, queries, exhaustive_queries)
        same = sum(a == b for a, b in zip(ex["decisions"], warm["decisions"]))
        same_runs = cold["decisions"] == warm["decisions"]
        for label, r in (("cold", cold), ("warm", warm)):
            tail = (f"| {ex['first_s']:19.3f} {ex['per_query_s']:8.3f} {same}/{len(ex['decisions'])}"
                    f"{'' if same_runs else ' (cold and warm differ!)'}  {os.getloadavg()[0]:.1f}") if label == "warm" else ""
            print(f"{n:5d} {label:5} {r['open_s']:7.3f} {r['index_s']:8.3f} {r['first_s']:10.3f} {r['per_query_s']:8.3f} "
                  f"{r['sparse_s']:9.3f} {r['decided']:8.1f} {r['loads']:6d} {tail}", flush=True)
        if through_attribute:  # the wired path (cache warm from the runs above), residuals included
            att = _attribute_run(path, cache, images)
            agree = sum(a == b for a, b in zip(ex["decisions"], att["decisions"]))
            print(f"{n:5d} {'attr':5} {att['open_s']:7.3f} {'':>8} {att['first_s']:10.3f} {att['per_query_s']:8.3f} "
                  f"{'':>9} {'':>8} {att['loads']:6d} | same as exhaustive {agree}/{len(ex['decisions'])}  "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(f"{path}.d", ignore_errors=True)
        path.unlink()
        shutil.rmtree(cache, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also N = 1000 (about 3 GB of temporary files)")
    parser.add_argument("--check", action="store_true", help="the 1 vs 25 references of 1024x1024 criterion")
    parser.add_argument("--repeat", type=int, default=5, help="runs per operation (median)")
    parser.add_argument("--dir", help="where the temporary libraries go (default: the system temp folder)")
    parser.add_argument("--search", action="store_true", help="attribution through fingerprint.camera_library")
    parser.add_argument("--sizes", default=",".join(map(str, SEARCH_SIZES)), help="--search: reference counts")
    parser.add_argument("--queries", type=int, default=14, help="--search: aligned queries (at most 14)")
    parser.add_argument("--exhaustive-queries", type=int, default=14, help="--search: queries also searched exhaustively")
    parser.add_argument("--through-attribute", action="store_true",
                        help="--search: also time the same queries through load_attributor + Attributor.score")
    parser.add_argument("--library-file", help="--search: an .npz of the fingerprints (bench_search.py --library-file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        if args.search:
            search(folder, sorted(int(n) for n in args.sizes.split(",")), args.queries, args.exhaustive_queries,
                   args.library_file, args.through_attribute)
            return 0
        if args.check:
            small, big = (measure(folder, n, 1024, 3, args.repeat) for n in (1, 25))
            print("criterion (1024x1024 RGB): 25 references vs 1, limit 1.5x + 0.3 s")
            ok = True
            for op in ("add", "rename"):
                limit = 1.5 * small[op] + 0.3
                ok &= big[op] <= limit
                print(f"  {op:7s} 1 ref {small[op]:.3f} s   25 refs {big[op]:.3f} s   limit {limit:.3f} s   "
                      f"{'ok' if big[op] <= limit else 'FAILED'}")
            return 0 if ok else 1
        sizes = (1, 10, 100, 1000) if args.full else (1, 10, 100)
        print(f"{'N':>5} {'library MB':>11} {'build s':>8} {'add s':>7} {'rename s':>9} {'update s':>9}"
              "   (512x512 references, median of %d)" % args.repeat)
        for n in sizes:
            r = measure(folder, n, 512, 1, args.repeat)
            print(f"{n:5d} {r['size_mb']:11.1f} {r['build']:8.2f} {r['add']:7.3f} {r['rename']:9.3f} {r['update']:9.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
