"""Speed of ``fingerprint.scores`` against the float64 NumPy twins in ``tests/naive.py``.

Run as a script for a side-by-side table (best of repeats after one warm-up call; the
minimum is the least disturbed by other processes)::

    .venv/bin/python benchmarks/bench_scores.py            # 512x512 and 2000x3008
    .venv/bin/python benchmarks/bench_scores.py --repeat 3

or with pytest-benchmark (not collected by the default test run)::

    .venv/bin/python -m pytest benchmarks/bench_scores.py --benchmark-only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.fft

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import naive  # noqa: E402

from fingerprint.scores import ReferenceSpectrum, ncc, ncc_matrix  # noqa: E402

SIZES = [(512, 512), (2000, 3008)]


def _data(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(shape).astype(np.float32)
    query = (0.05 * ref + rng.standard_normal(shape)).astype(np.float32)
    return ref, query


def _crop(shape: tuple[int, int]) -> tuple[slice, slice]:
    h, w = shape
    return slice(h // 8, h // 8 + h // 2), slice(w // 8, w // 8 + w // 2)


def _best_ms(fn, repeat: int) -> float:
    fn()  # warm-up: FFT plans, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.min(times))


def _naive_pce_crop(ref: np.ndarray, q: np.ndarray):
    padded = np.zeros(ref.shape)
    padded[: q.shape[0], : q.shape[1]] = q - q.mean(dtype=np.float64)
    allowed = np.zeros(ref.shape, dtype=bool)
    allowed[: ref.shape[0] - q.shape[0] + 1, : ref.shape[1] - q.shape[1] + 1] = True
    return naive.pce_from_cc(naive.crosscorr(ref, padded), allowed)


def cases(shape: tuple[int, int]) -> list[tuple[str, object, object]]:
    """(name, naive float64 callable, ganprint callable) for one image size."""
    ref, query = _data(shape)
    rows, cols = _crop(shape)
    crop = np.ascontiguousarray(query[rows, cols])
    spec = ReferenceSpectrum(ref)
    ifft_input = scipy.fft.rfft2(query, workers=-1)
    stack_q = np.stack([query, ref, query + ref])
    stack_r = np.stack([ref, query])
    return [
        ("ncc", lambda: naive.ncc(query, ref), lambda: ncc(query, ref)),
        (
            "ncc_matrix 3x2",
            lambda: [[naive.ncc(a, b) for b in stack_r] for a in stack_q],
            lambda: ncc_matrix(stack_q, stack_r),
        ),
        (
            "ReferenceSpectrum (rfft2 of ref)",
            lambda: np.fft.rfft2(ref - ref.mean(dtype=np.float64)),
            lambda: ReferenceSpectrum(ref),
        ),
        ("irfft2 alone (scipy, float32)", None, lambda: scipy.fft.irfft2(ifft_input, s=shape, workers=-1)),
        ("cross_correlation", lambda: naive.crosscorr(ref, query), lambda: spec.cross_correlation(query)),
        ("pce aligned (cached ref)", lambda: naive.pce_from_cc(naive.crosscorr(ref, query)), lambda: spec.pce(query)),
        ("pce crop search (h/2 x w/2)", lambda: _naive_pce_crop(ref, crop), lambda: spec.pce(crop, search="crop")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"# bench_scores: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, scipy {scipy.__version__}; best of {args.repeat} after warm-up")
    print(f"| {'size':>9} | {'case':<34} | {'naive f64 ms':>12} | {'ganprint ms':>11} | {'speed-up':>8} |")
    print(f"|{'-' * 11}|{'-' * 36}|{'-' * 14}|{'-' * 13}|{'-' * 10}|")
    for shape in SIZES:
        for name, slow, fast in cases(shape):
            t_fast = _best_ms(fast, args.repeat)
            t_slow = _best_ms(slow, max(1, args.repeat // 2)) if slow is not None else float("nan")
            ratio = f"{t_slow / t_fast:7.1f}x" if slow is not None else "       -"
            slow_txt = f"{t_slow:12.1f}" if slow is not None else f"{'-':>12}"
            print(f"| {shape[0]:>4}x{shape[1]:<4} | {name:<34} | {slow_txt} | {t_fast:11.1f} | {ratio} |")
    return 0


# --- pytest-benchmark cases ----------------------------------------------------------------------
@pytest.mark.parametrize("shape", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("impl", ["naive", "ganprint"])
@pytest.mark.parametrize("case", ["cross_correlation", "pce aligned (cached ref)", "pce crop search (h/2 x w/2)", "ncc"])
def test_bench_scores(benchmark, shape, impl, case):
    table = {name: (slow, fast) for name, slow, fast in cases(shape)}
    slow, fast = table[case]
    fn = slow if impl == "naive" else fast
    fn()
    benchmark(fn)


if __name__ == "__main__":
    raise SystemExit(main())
