"""Images per second building a camera fingerprint: in-process vs a LocalCluster of 1 and 2 workers.

Input: the 10 Nikon_D70_0 flat-fields of the Dresden set (``../shared/data/dresden/ff``), full
size (3008x2000 RGB JPEG) unless ``--crop`` is given. Each configuration builds a fresh library;
the time covers the whole ``build_reference[_distributed]`` call (hashing, decoding, residuals,
reduction, the one library write) after a warm-up build on the same cluster (JIT caches, imports),
not the cluster start-up. Best of ``--repeat`` runs, interleaved across configurations::

    .venv/bin/python benchmarks/bench_distributed.py                 # full size
    .venv/bin/python benchmarks/bench_distributed.py --crop 1024x1024 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fingerprint.build import build_reference  # noqa: E402
from fingerprint.cli import parse_crop  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "dresden" / "ff"


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop", type=parse_crop, help="centre-crop every image to HxW (default: full size)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the best is reported")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--pattern", default="Nikon_D70_0_*.JPG")
    args = ap.parse_args(argv)

    files = sorted(DATA.glob(args.pattern))
    if not files:
        print(f"no files {DATA / args.pattern}; nothing to measure", file=sys.stderr)
        return 1
    from fingerprint.distributed import build_reference_distributed, connect

    tmp = Path(tempfile.mkdtemp(prefix="bench_dist_"))
    counter = iter(range(10**6))

    def fresh() -> Path:
        return tmp / f"lib{next(counter)}.h5"

    quiet = dict(progress=False, warn=lambda m: None)
    size = f"{args.crop[0]}x{args.crop[1]}" if args.crop else "full size"
    import contextlib

    cores = os.cpu_count() or 1
    labels = ["in-process (Numba: all cores)"]
    runs = [lambda: build_reference(fresh(), "cam", "camera", files, crop=args.crop, **quiet)]
    build_reference(fresh(), "w", "camera", files[:1], crop=args.crop, **quiet)  # warm-up (JIT caches)
    with contextlib.ExitStack() as stack:
        for n in (int(x) for x in args.workers.split(",")):
            client = stack.enter_context(connect(f"local:{n}"))
            build_reference_distributed(fresh(), "w", "camera", files[:n], client=client, crop=args.crop,
                                        batch_size=1, **quiet)  # warm-up every worker
            labels.append(f"local:{n} ({n} proc x 1 thread, Numba {max(1, cores // n)} thr)")
            runs.append(lambda client=client: build_reference_distributed(fresh(), "cam", "camera", files,
                                                                          client=client, crop=args.crop, **quiet))
        # interleaved repeats (the clusters idle meanwhile), so a busy moment hurts every row alike
        best = [float("inf")] * len(runs)
        for _ in range(args.repeat):
            for i, run in enumerate(runs):
                best[i] = min(best[i], _time(run, 1))
    rows = list(zip(labels, best))

    print(f"camera fingerprint from {len(files)} x {args.pattern} ({size}); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'configuration':<46} {'seconds':>8} {'images/s':>9} {'s/image':>8} {'vs 1st':>7}")
    base = rows[0][1]
    for label, t in rows:
        print(f"{label:<46} {t:8.2f} {len(files) / t:9.2f} {t / len(files):8.3f} {base / t:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
