"""``ganprint bench``: residual throughput of ganprint against the plain float64 implementation.

Each measurement runs in a fresh subprocess so that peak memory (``ru_maxrss`` above the resident
size just before the call) belongs to that call alone. Times are the best of ``repeat`` calls after
one warm-up call (JIT compilation and caches excluded). The plain float64 implementation is
``tests/naive.py::residual`` of a source checkout (numpy, PyWavelets, scipy, written from
DESIGN.md); it is skipped with a note when ganprint is installed without its tests.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

NAIVE = Path(__file__).resolve().parents[1] / "tests" / "naive.py"

_CHILD = r"""
import json, resource, sys, time, importlib.util
import numpy as np
impl, h, w, repeat, naive_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:h, 0:w]
base = 128 + 60 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
image = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
if impl == "ganprint":
    from fingerprint.residual import extract_residual as f
else:
    spec = importlib.util.spec_from_file_location("naive", naive_path)
    naive = importlib.util.module_from_spec(spec); spec.loader.exec_module(naive)
    f = naive.residual
f(image[:64, :64])  # warm-up: JIT load, FFT plans
def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
before = rss_bytes()
times = []
for _ in range(repeat):
    t = time.perf_counter(); out = f(image); times.append(time.perf_counter() - t)
    del out
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"best_s": min(times), "peak_extra_bytes": max(peak - before, 0)}))
"""


def _measure(impl: str, h: int, w: int, repeat: int) -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", _CHILD, impl, str(h), str(w), str(repeat), str(NAIVE)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {impl} at {h}x{w} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run_bench(sizes: list[tuple[int, int]], *, repeat: int = 3, reference: bool = True, out=sys.stdout) -> list[dict]:
    """Measure and print one table row per size: seconds per RGB image, MP/s, ratio, peak bytes/pixel."""
    have_ref = reference and NAIVE.is_file()
    if reference and not have_ref:
        print(f"note: {NAIVE} not found (installed without tests): ganprint only", file=sys.stderr)
    rows = []
    print(f"# residual of one RGB image, best of {repeat}; {machine()}; {time.strftime('%Y-%m-%d')}", file=out)
    print("| size | implementation | s/image | MP/s | speed-up | peak extra bytes/pixel |", file=out)
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    for h, w in sizes:
        mp = h * w / 1e6
        fast = _measure("ganprint", h, w, repeat)
        plain = _measure("plain", h, w, max(1, min(repeat, 2))) if have_ref else None
        for name, r in (("plain float64", plain), ("ganprint", fast)):
            if r is None:
                continue
            ratio = f"{plain['best_s'] / r['best_s']:.1f}x" if plain else "-"
            print(f"| {h}x{w} | {name} | {r['best_s']:.3f} | {mp / r['best_s']:.1f} | {ratio} | "
                  f"{r['peak_extra_bytes'] / (h * w):.1f} |", file=out, flush=True)
        rows.append({"size": [h, w], "ganprint": fast, "plain": plain})
    return rows


def warm_up() -> float:
    """Run every CPU kernel once on tiny inputs so Numba compiles them into its on-disk cache.

    ``make install`` calls this, so the first real command does not spend ~10 s compiling.
    Returns the seconds it took.
    """
    import numpy as np

    from fingerprint.build import build_fingerprint
    from fingerprint.residual import extract_residual
    from fingerprint.scores import pce

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for shape, dtype in (((48, 64, 3), np.uint8), ((48, 64), np.uint8), ((48, 64, 3), np.uint16),
                         ((640, 640, 3), np.uint8)):  # sub-bands of the last one are large enough for the parallel builds
        image = rng.integers(0, 256 if dtype == np.uint8 else 65536, shape).astype(dtype)
        w = extract_residual(image)
        k = build_fingerprint([image, image[::-1].copy()], "camera")
        build_fingerprint([image], "generator")
        pce(w * 1.0, k)
    return time.perf_counter() - start
