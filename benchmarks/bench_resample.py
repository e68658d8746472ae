"""Timing of the fingerprint resampling: Pillow's bilinear ``Image.resize`` vs ``kernels.resample_cpu``.

Run ``python benchmarks/bench_resample.py [--repeat R]``. For a 2000x3008 float32 fingerprint: the
whole resized grid at s = 0.3, 0.5, 0.75, 0.9; the coarse sweep's case (the fingerprint reduced by
2 first, 1000x1504, then resampled at s = 0.35, 0.5); a 300x300 window of the grid at s = 0.75
and 0.5. Pillow and the kernel are timed in the same run, interleaved call by call after a
warm-up (JIT compile or cache load), and the median of R calls of each is printed with their
ratio and the largest difference (relative to max |K|). The kernel runs with all Numba threads
and with one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import time

import numba
import numpy as np
from PIL import Image

from kernels.resample_cpu import resample_bilinear

SHAPE = (2000, 3008)


def pillow(a: np.ndarray, shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    img = Image.fromarray(a, mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR, box=box), dtype=np.float32)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except (OSError, subprocess.SubprocessError):
        model = "?"
    return f"{model}, {os.cpu_count()} cores, Numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads)"


def cases(rng: np.random.Generator):
    """(label, input, output shape, box) of every timed call."""
    k = rng.standard_normal(SHAPE).astype(np.float32)
    half = pillow(k, (SHAPE[0] // 2, SHAPE[1] // 2), (0, 0, SHAPE[1], SHAPE[0]))
    for s in (0.3, 0.5, 0.75, 0.9):
        h, w = int(s * SHAPE[0]), int(s * SHAPE[1])
        yield f"{SHAPE[0]}x{SHAPE[1]} s={s:g} -> {h}x{w}", k, (h, w), (0, 0, w / s, h / s)
    for s in (0.35, 0.5):
        h, w = int(s * half.shape[0]), int(s * half.shape[1])
        yield f"{half.shape[0]}x{half.shape[1]} s={s:g} -> {h}x{w}", half, (h, w), (0, 0, w / s, h / s)
    for s in (0.75, 0.5):
        y0, x0 = int(0.3 * s * SHAPE[0]), int(0.4 * s * SHAPE[1])
        yield (f"{SHAPE[0]}x{SHAPE[1]} s={s:g} window 300x300 at {y0},{x0}", k, (300, 300),
               (x0 / s, y0 / s, (x0 + 300) / s, (y0 + 300) / s))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    threads = numba.get_num_threads()
    print(f"{datetime.date.today().isoformat()}; {machine()}")
    print(f"median of {args.repeat} interleaved calls, milliseconds; diff = max |kernel - Pillow| / max |K|")
    print(f"{'case':>44} {'Pillow':>8} {'kernel':>8} {'ratio':>6} {'1 thread':>8} {'ratio':>6} {'diff':>8}")
    for label, a, shape, box in cases(np.random.default_rng(0)):
        ref = pillow(a, shape, box)
        got = resample_bilinear(a, shape, box)  # warm-up
        diff = float(np.abs(got - ref).max() / np.abs(a).max())
        times: dict[str, list[float]] = {"pillow": [], "kernel": [], "serial": []}
        for _ in range(args.repeat):
            for name in times:
                numba.set_num_threads(1 if name == "serial" else threads)
                fn = pillow if name == "pillow" else resample_bilinear
                t0 = time.perf_counter()
                fn(a, shape, box)
                times[name].append(time.perf_counter() - t0)
        numba.set_num_threads(threads)
        tp, tk, ts = (1e3 * statistics.median(times[n]) for n in ("pillow", "kernel", "serial"))
        print(f"{label:>44} {tp:8.2f} {tk:8.2f} {tp / tk:6.1f} {ts:8.2f} {tp / ts:6.1f} {diff:8.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
