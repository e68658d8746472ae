"""GPU benchmark of the residual and the scores at 12 MP, with the CPU backend measured alongside,
and the decisions of the CUDA backend against the CPU's on the Dresden protocols.

Run on a machine with a CUDA device and CuPy::

    python benchmarks/gpu_bench.py [--size 3000x4000] [--repeat 5] [--out benchmarks/results/gpu.json]
                                   [--dresden ../shared/data/dresden]

Measures, on one 12 MP RGB uint8 image (random, seeded, or ``--image`` a photo):

* the device-to-device copy bandwidth (``cupy`` copy of 1 GiB, read + written bytes counted) and
  the pinned host-to-device bandwidth;
* the residual (``kernels.residual_gpu``) from a device-resident image, in MP/s, and from host
  uint8 images through ``residual_gpu_batch`` (pinned memory, 2 streams);
* NCC/s (``scores_gpu.ncc_matrix``, 8 queries x 8 references) and PCE/s (``scores_gpu.pce_batch``,
  aligned, batches of 4 against one cached reference spectrum) at 12 MP;
* the CPU backend (``fingerprint.residual.extract_residual``) on the same image, for the ratio;
* parity: NCC of the GPU residual with the CPU one on the same image;
* the ``"auto"`` break-even (``auto_break_even``): ``extract_residual`` from a host image with
  ``backend="cpu"`` and ``"cuda"`` at 0.25, 1 and 4 MP, to check ``kernels._backend.AUTO_MIN_PIXELS``;
* with ``--dresden DIR`` (``ff/`` and ``nat/`` JPEGs; full-size or the 512 x 512 crops that
  ``gpu_check.sh --prepare`` carries), the decisions (:func:`compare_dresden`): camera
  fingerprints of 512 x 512 centre crops built with both backends (parity), then every natural
  photo (the dresden512 protocol) and 384 x 448 crops at random offsets plus the photos turned by
  90 and 180 degrees (the crops protocol, at 512 x 512) attributed by ``Attributor(backend="cpu")``
  and ``Attributor(backend="cuda")`` against the same CPU-built fingerprints: the decisions must
  be the same, query by query (``decisions_match``; exit status 1 otherwise).

Each GPU figure is also given as a fraction of a memory-bound floor: the time the bytes of an
ideal single-pass implementation would take at the measured device copy bandwidth (the byte counts
are in ``FLOOR_MODEL`` and in the JSON). A GPU timing synchronises the device before the clock
stops; every timed function is called once first (JIT and cuFFT plans are not timed).

Writes ``benchmarks/results/gpu.json`` (``residual_mp_per_s``, ``residual_parity_ncc``,
``pce_per_s_12mp``, ``device``, ``date`` and the rest) and prints a table. Exits with status 2 and
a message when no CUDA device or no CuPy is present. Not yet run on a real GPU.
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


def _camera_of(path: Path) -> str:
    return path.stem.rsplit("_", 1)[0]


def _scores_agree(cpu, gpu) -> tuple[list[str], float]:
    """Queries whose decision differs (one line each, with the deciding scores), and the largest
    relative PCE difference of the best camera over all queries."""
    bad, worst = [], 0.0
    for c, g in zip(cpu, gpu):
        name = c.best or c.closest
        a, b = c.scores.get(name), g.scores.get(name)
        if a is not None and b is not None and a.pce is not None and b.pce is not None:
            worst = max(worst, abs(b.pce - a.pce) / max(abs(a.pce), 1.0))
        if (c.decision, c.best) != (g.decision, g.best):
            bad.append(f"{c.image}: cpu {c.decision} {c.best} (PCE {a.pce if a else None}) vs cuda {g.decision} "
                       f"{g.best} (PCE {b.pce if b else None}, threshold {b.threshold if b else None})")
    return bad, worst


def compare_dresden(folder: Path, *, backends: tuple[str, str] = ("cpu", "cuda"), size: int = 512,
                    seed: int = 2026) -> dict:
    """Decisions of two backends on the Dresden protocols at ``size`` x ``size`` (see the module docstring).

    Returns a dict: ``build`` (fingerprint parity and seconds per image of each backend), one
    entry per protocol (``dresden512``, ``crops_rotations``: queries,
    ``matched_correctly`` (match with the true camera) and ``top1`` (closest camera is the true
    one) of the first backend, seconds per query of each, ``mismatches``, ``max_pce_rel_diff``)
    and ``decisions_match``.
    """
    from fingerprint.attribution import Attributor
    from fingerprint.build import build_fingerprint, default_params
    from fingerprint.io import crop_center, load_image

    first, second = backends
    ff = sorted((folder / "ff").glob("*.JPG"))
    nat = sorted((folder / "nat").glob("*.JPG"))
    if not ff or not nat:
        raise FileNotFoundError(f"{folder}: no ff/*.JPG or nat/*.JPG")
    crop = (size, size)
    flats: dict[str, list[np.ndarray]] = {}
    for p in ff:
        flats.setdefault(_camera_of(p), []).append(np.ascontiguousarray(crop_center(load_image(p), crop)))
    out: dict = {"build": {}}
    fingerprints: dict[str, dict[str, np.ndarray]] = {}
    for backend in backends:
        build_fingerprint(flats[next(iter(flats))][:1], "camera", backend=backend)  # JIT / kernel compilation
        t0 = time.perf_counter()
        fingerprints[backend] = {cam: build_fingerprint(imgs, "camera", backend=backend) for cam, imgs in flats.items()}
        out["build"][f"{backend}_s_per_image"] = (time.perf_counter() - t0) / len(ff)

    def ncc(a, b):
        a, b = a.astype(np.float64).ravel() - a.mean(), b.astype(np.float64).ravel() - b.mean()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    out["build"]["fingerprint_parity_ncc_min"] = min(ncc(fingerprints[first][c], fingerprints[second][c]) for c in flats)
    refs = [(cam, "camera", k, default_params("camera")) for cam, k in sorted(fingerprints[first].items())]
    atts = {b: Attributor(refs, backend=b) for b in backends}
    rng = np.random.default_rng(seed)
    queries = {"dresden512": [], "crops_rotations": []}
    for p in nat:
        img = np.ascontiguousarray(crop_center(load_image(p), crop))
        queries["dresden512"].append((p.name, _camera_of(p), img))
        ch, cw = 3 * size // 4, 7 * size // 8  # 384 x 448 at 512
        oy, ox = int(rng.integers(0, size - ch + 1)), int(rng.integers(0, size - cw + 1))
        for tag, q in ((f"crop_{oy}_{ox}", img[oy:oy + ch, ox:ox + cw]), ("rot90", np.rot90(img, 1)),
                       ("rot180", np.rot90(img, 2))):
            queries["crops_rotations"].append((f"{p.stem}_{tag}", _camera_of(p), np.ascontiguousarray(q)))
    ok = out["build"]["fingerprint_parity_ncc_min"] >= 0.9999
    for protocol, items in queries.items():
        labels, truths, images = zip(*items)
        results, entry = {}, {"queries": len(items)}
        for backend, att in atts.items():
            att.score_batch(list(images[:1]), ["warm-up"])
            t0 = time.perf_counter()
            results[backend] = att.score_batch(list(images), list(labels))
            entry[f"{backend}_s_per_query"] = (time.perf_counter() - t0) / len(items)
        entry["matched_correctly"] = sum(r.best == t for r, t in zip(results[first], truths)) / len(items)
        entry["top1"] = sum(r.closest == t for r, t in zip(results[first], truths)) / len(items)
        entry["mismatches"], entry["max_pce_rel_diff"] = _scores_agree(results[first], results[second])
        ok = ok and not entry["mismatches"]
        out[protocol] = entry
    out["decisions_match"] = ok
    return out


def _break_even(sizes=((512, 512), (1000, 1000), (2000, 2000)), repeat: int = 3) -> dict:
    """Seconds of ``extract_residual`` from a host RGB image with ``backend="cpu"`` and ``"cuda"``."""
    from fingerprint.residual import extract_residual

    rng = np.random.default_rng(1)
    rows = []
    for h, w in sizes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        row = {"size": [h, w]}
        for backend in ("cpu", "cuda"):
            row[f"{backend}_s"] = _timeit(lambda: extract_residual(img, backend=backend), lambda: None, repeat)
        rows.append(row)
    return {"rows": rows, "note": "host image in, host residual out (what backend='auto' would run)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="3000x4000", help="HxW of the test image (default 3000x4000, 12 MP)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--image", type=Path, help="use this photo (centre-cropped/tiled to --size) instead of noise")
    ap.add_argument("--cpu-repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    ap.add_argument("--dresden", type=Path, help="Dresden folder (ff/, nat/): compare the decisions with the CPU's")
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
    from kernels._backend import AUTO_MIN_PIXELS

    result["auto_min_pixels"] = AUTO_MIN_PIXELS

    def write():  # after each part, so that a failure later keeps what was measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.out)

    write()
    result["auto_break_even"] = _break_even()
    write()
    if args.dresden:
        try:
            result["decisions"] = compare_dresden(args.dresden)
        except Exception as exc:  # reported in the JSON and the exit status; the speed figures stay
            result["decisions_error"] = f"{type(exc).__name__}: {exc}"
            print(f"gpu_bench: decisions not compared: {result['decisions_error']}", file=sys.stderr)
        write()

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
    for r in result["auto_break_even"]["rows"]:
        rows.append((f"residual from host {r['size'][0]}x{r['size'][1]}", f"cpu {r['cpu_s'] * 1e3:.1f} ms",
                     f"cuda {r['cuda_s'] * 1e3:.1f} ms (auto: cuda from {AUTO_MIN_PIXELS / 1e6:g} MP)"))
    decisions = result.get("decisions")
    if decisions:
        rows.append(("fingerprint parity, NCC min", f"{decisions['build']['fingerprint_parity_ncc_min']:.7f}", ""))
        for protocol in ("dresden512", "crops_rotations"):
            d = decisions[protocol]
            rows.append((f"decisions {protocol}", f"{d['queries'] - len(d['mismatches'])}/{d['queries']} same",
                         f"matched {d['matched_correctly']:.0%}, top-1 {d['top1']:.0%}, "
                         f"max PCE rel diff {d['max_pce_rel_diff']:.1e}"))
    width = max(len(r[0]) for r in rows)
    for name, val, note in rows:
        print(f"{name:<{width}}  {val:<28} {note}")
    for protocol in ("dresden512", "crops_rotations"):
        for line in (decisions or {}).get(protocol, {}).get("mismatches", []):
            print(f"MISMATCH {protocol}: {line}")
    print(f"wrote {args.out}")
    if "decisions_error" in result:
        return 1
    return 0 if decisions is None or decisions["decisions_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
