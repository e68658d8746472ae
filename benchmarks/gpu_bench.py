"""GPU benchmark of the residual and the scores at 12 MP, with the CPU backend measured alongside.

Run on a machine with a CUDA device and CuPy::

    python benchmarks/gpu_bench.py [--size 3000x4000] [--repeat 5] [--out benchmarks/results/gpu.json]

Measures, on one 12 MP RGB uint8 image (random, seeded, or ``--image`` a photo):

* the device-to-device copy bandwidth (``cupy`` copy of 1 GiB, read + written bytes counted) and
  the pinned host-to-device bandwidth;
* the residual (``kernels.residual_gpu``) from a device-resident image, in MP/s, and from host
  uint8 images through ``residual_gpu_batch`` (pinned memory, 2 streams);
* NCC/s (``scores_gpu.ncc_matrix``, 8 queries x 8 references) and PCE/s (``scores_gpu.pce_batch``,
  aligned, batches of 4 against one cached reference spectrum) at 12 MP;
* the CPU backend (``fingerprint.residual.extract_residual``) on the same image, for the ratio;
* parity: NCC of the GPU residual with the CPU one on the same image.

Each GPU figure is also given as a fraction of a memory-bound floor: the time the bytes of an
ideal single-pass implementation would take at the measured device copy bandwidth (the byte counts
are in ``FLOOR_MODEL`` and in the JSON). A GPU timing synchronises the device before the clock
stops; every timed function is called once first (JIT and cuFFT plans are not timed).

Writes ``benchmarks/results/gpu.json`` and prints a table. Exits with status 2 and a message when
no CUDA device or no CuPy is present. Not yet run on a real GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLOOR_MODEL = {
    "residual_device": "bytes = N*(C*1 read uint8 + 4 write W) + 2 FFT passes * N*(4 read + 4 write)",
    "residual_host": "bytes over PCIe = N*C*1 (H2D) + N*4 (D2H), at the measured pinned H2D rate",
    "ncc": "bytes = (Q + R) * N * 4, each array read once, per Q*R scores",
    "pce": "bytes = N*4 (query) + N*4 (half spectrum, complex64) + N*4 (correlation) per score",
}


def _timeit(fn, sync, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="3000x4000", help="HxW of the test image (default 3000x4000, 12 MP)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", type=Path, help="use this photo (centre-cropped/tiled to --size) instead of noise")
    ap.add_argument("--cpu-repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = ap.parse_args(argv)

    from kernels._backend import cuda_status

    usable, reason = cuda_status()
    if not usable:
        print(f"gpu_bench: no usable CUDA device ({reason}); nothing measured", file=sys.stderr)
        return 2
    import cupy as cp

    from fingerprint.residual import extract_residual
    from kernels import scores_gpu
    from kernels.residual_gpu import residual_gpu, residual_gpu_batch

    h, w = (int(v) for v in args.size.lower().split("x"))
    n = h * w
    rng = np.random.default_rng(0)
    if args.image:
        from PIL import Image

        photo = np.asarray(Image.open(args.image))
        reps = (-(-h // photo.shape[0]), -(-w // photo.shape[1]), 1)
        img = np.ascontiguousarray(np.tile(photo, reps)[:h, :w])
    else:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    c = img.shape[2] if img.ndim == 3 else 1
    sync = cp.cuda.Device().synchronize
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    # copy bandwidths
    big = cp.empty(1 << 28, dtype=cp.float32)  # 1 GiB
    dst = cp.empty_like(big)
    t_d2d = _timeit(lambda: cp.copyto(dst, big), sync, args.repeat)
    copy_gb_s = 2 * big.nbytes / t_d2d / 1e9
    del big, dst
    host = cp.cuda.alloc_pinned_memory(1 << 28)
    host_arr = np.frombuffer(host, dtype=np.uint8, count=1 << 28)
    dev = cp.empty(1 << 28, dtype=cp.uint8)
    t_h2d = _timeit(lambda: dev.set(host_arr), sync, args.repeat)
    h2d_gb_s = (1 << 28) / t_h2d / 1e9
    del dev

    # residual, device-resident
    x = cp.asarray(img)
    t_res = _timeit(lambda: residual_gpu(x), sync, args.repeat)
    w_gpu = cp.asnumpy(residual_gpu(x))
    floor_res = n * (c + 4 + 16) / (copy_gb_s * 1e9)

    # residual, from host uint8 (batched, pinned, 2 streams)
    batch = [img] * 4
    t0 = time.perf_counter()
    residual_gpu_batch(batch[:1])
    t0 = time.perf_counter()
    residual_gpu_batch(batch, n_streams=2)
    t_host = (time.perf_counter() - t0) / len(batch)
    floor_host = max(n * c / (h2d_gb_s * 1e9) + n * 4 / (h2d_gb_s * 1e9), floor_res)

    # CPU backend, same image
    extract_residual(img[:256, :256])  # JIT warm-up
    cpu_times = []
    w_cpu = None
    for _ in range(args.cpu_repeat):
        t0 = time.perf_counter()
        w_cpu = extract_residual(img)
        cpu_times.append(time.perf_counter() - t0)
    t_cpu = min(cpu_times)
    a = w_gpu.astype(np.float64).ravel() - w_gpu.mean()
    b = w_cpu.astype(np.float64).ravel() - w_cpu.mean()
    parity = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    # scores at 12 MP
    refs = cp.asarray(rng.standard_normal((8, h, w), dtype=np.float32))
    qs = refs + cp.asarray(rng.standard_normal((8, h, w), dtype=np.float32))
    t_ncc = _timeit(lambda: scores_gpu.ncc_matrix(qs, refs), sync, args.repeat)
    ncc_per_s = 64 / t_ncc
    floor_ncc = 16 * n * 4 / (copy_gb_s * 1e9)
    spec = scores_gpu.reference_spectrum(refs[0])
    del refs
    qb = qs[:4]
    t_pce = _timeit(lambda: scores_gpu.pce_batch(qb, spec, (h, w)), sync, args.repeat)
    pce_per_s = 4 / t_pce
    floor_pce = 4 * n * 12 / (copy_gb_s * 1e9)
    del qs, qb, spec

    mp = n / 1e6
    result = {
        "device": device,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "image": f"{h}x{w}x{c} uint8 " + (str(args.image) if args.image else "random"),
        "copy_gb_per_s": copy_gb_s,
        "h2d_pinned_gb_per_s": h2d_gb_s,
        "residual_mp_per_s": mp / t_res,
        "residual_ms": t_res * 1e3,
        "residual_floor_fraction": floor_res / t_res,
        "residual_host_mp_per_s": mp / t_host,
        "residual_host_floor_fraction": floor_host / t_host,
        "cpu_residual_mp_per_s": mp / t_cpu,
        "gpu_over_cpu_residual": t_cpu / t_res,
        "residual_parity_ncc": parity,
        "ncc_per_s_12mp": ncc_per_s,
        "ncc_floor_fraction": floor_ncc / t_ncc,
        "pce_per_s_12mp": pce_per_s,
        "pce_floor_fraction": floor_pce / t_pce,
        "floor_model": FLOOR_MODEL,
        "repeat": args.repeat,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)

    rows = [
        ("device", device, ""),
        ("device copy (read+write)", f"{copy_gb_s:.0f} GB/s", ""),
        ("host->device, pinned", f"{h2d_gb_s:.1f} GB/s", ""),
        ("residual, device-resident", f"{mp / t_res:.0f} MP/s ({t_res * 1e3:.1f} ms)", f"{floor_res / t_res:.1%} of floor"),
        ("residual, from host uint8", f"{mp / t_host:.0f} MP/s", f"{floor_host / t_host:.1%} of floor"),
        ("residual, CPU backend", f"{mp / t_cpu:.1f} MP/s ({t_cpu:.2f} s)", f"GPU is {t_cpu / t_res:.0f}x"),
        ("residual parity, NCC GPU vs CPU", f"{parity:.7f}", ""),
        (f"NCC at {mp:.0f} MP", f"{ncc_per_s:.0f} /s", f"{floor_ncc / t_ncc:.1%} of floor"),
        (f"PCE at {mp:.0f} MP (aligned, batch 4)", f"{pce_per_s:.0f} /s", f"{floor_pce / t_pce:.1%} of floor"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, val, note in rows:
        print(f"{name:<{width}}  {val:<28} {note}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
