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
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_db import Library  # noqa: E402


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also N = 1000 (about 3 GB of temporary files)")
    parser.add_argument("--check", action="store_true", help="the 1 vs 25 references of 1024x1024 criterion")
    parser.add_argument("--repeat", type=int, default=5, help="runs per operation (median)")
    parser.add_argument("--dir", help="where the temporary libraries go (default: the system temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
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
