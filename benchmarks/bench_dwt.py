"""Timing of the 4-level db4 periodized 2-D DWT: PyWavelets float32 vs ``kernels.dwt_cpu``.

Run ``python benchmarks/bench_dwt.py [--repeat R]``. Prints the best of R runs (seconds) of the
forward and inverse transform, after a warm-up call, for pywt and for the Numba kernels with 1 and
with all available Numba threads, on 2016x3024 and 2608x3888 float32 images.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
import pywt

from kernels import dwt_cpu

SHAPES = ((2016, 3024), (2608, 3888))
LEVELS = 4


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up: JIT compile / cache load, first-touch of pages
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    max_threads = numba.config.NUMBA_NUM_THREADS
    thread_counts = sorted({1, max_threads})
    print(f"db4, periodization, {LEVELS} levels, float32; best of {args.repeat} runs, seconds")
    print(f"{'shape':>11} {'impl':>12} {'forward':>8} {'inverse':>8} {'sum':>8}")
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        cp = pywt.wavedec2(x, "db4", mode="periodization", level=LEVELS)
        fwd = lambda: pywt.wavedec2(x, "db4", mode="periodization", level=LEVELS)  # noqa: E731
        tf = best_time(fwd, args.repeat)
        ti = best_time(lambda: pywt.waverec2(cp, "db4", mode="periodization"), args.repeat)
        label = f"{shape[0]}x{shape[1]}"
        print(f"{label:>11} {'pywt':>12} {tf:8.4f} {ti:8.4f} {tf + ti:8.4f}")
        cn = dwt_cpu.wavedec2(x, LEVELS)
        for nt in thread_counts:
            numba.set_num_threads(nt)
            tf = best_time(lambda: dwt_cpu.wavedec2(x, LEVELS), args.repeat)
            ti = best_time(lambda: dwt_cpu.waverec2(cn), args.repeat)
            impl = f"numba x{nt}"
            print(f"{label:>11} {impl:>12} {tf:8.4f} {ti:8.4f} {tf + ti:8.4f}")
        numba.set_num_threads(max_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
