"""``ganprint bench``: residual throughput against the plain float64 implementation, and
``ganprint bench --pipeline``: the time of every stage a user pays for.

Residual comparison (``run_bench``). Each measurement runs in a fresh subprocess so that peak memory (``ru_maxrss`` above the resident
size just before the call) belongs to that call alone. Times are the best of ``repeat`` calls after
one warm-up call (JIT compilation and caches excluded). The plain float64 implementation is
``tests/naive.py::residual`` of a source checkout (numpy, PyWavelets, scipy, written from
docs/algorithm.md); it is skipped with a note when ganprint is installed without its tests.

Pipeline (``run_pipeline_bench``), in this process, on synthetic RGB images of each size and N
synthetic references (random fingerprints: the cost of scoring does not depend on their content):
decode of a JPEG file, query residual, camera and generator build per image, attribution of one
query against N cameras (aligned; crop search; rotations and the sigma-5 retry of a query that
matches nothing, i.e. the defaults) and against N generators, the NCC matrix and PCE per second.
Times are the best of ``repeat`` calls after one warm-up call.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kernels.spec import MIN_SIZE

NAIVE = Path(__file__).resolve().parents[1] / "tests" / "naive.py"

_CHILD = r"""
import json, resource, sys, time, importlib.util
import numpy as np
impl, h, w, repeat, naive_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:h, 0:w]
base = 128 + 60 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
image = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
backend = "cpu"
if impl == "ganprint":
    import functools
    from fingerprint.residual import extract_residual
    from kernels._backend import resolve_backend
    backend = resolve_backend(sys.argv[6], image)  # once, for the full-size image (the warm-up uses it too)
    f = functools.partial(extract_residual, backend=backend)
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
print(json.dumps({"best_s": min(times), "peak_extra_bytes": max(peak - before, 0), "backend": backend}))
"""


def _measure(impl: str, h: int, w: int, repeat: int, backend: str = "cpu") -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", _CHILD, impl, str(h), str(w), str(repeat), str(NAIVE), backend],
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


def _check_sizes(sizes: Sequence[tuple[int, int]], repeat: int) -> None:
    if not sizes:
        raise ValueError("no image sizes to measure")
    for h, w in sizes:
        if h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(f"{h}x{w}: every size must be at least {MIN_SIZE}x{MIN_SIZE}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a whole number >= 1, got {repeat!r}")


def run_bench(sizes: list[tuple[int, int]], *, repeat: int = 3, reference: bool = True, out=None,
              as_json: bool = False, backend: str = "auto") -> list[dict]:
    """Measure and print one table row per size: seconds per RGB image, MP/s, ratio, peak bytes/pixel.

    With ``as_json`` one JSON object (machine, date, repeat, rows) is printed instead of the table.
    ``out``: the text stream (default ``sys.stdout`` at call time). ``backend`` ("auto", "cpu",
    "cuda"): ganprint's residual backend, resolved once per size in the measuring process (the
    CUDA time includes the copies to and from the device); each row names the one that ran.
    """
    _check_sizes(sizes, repeat)
    from kernels._backend import resolve_backend

    resolve_backend(backend)  # an unknown name, or "cuda" without a device, fails before any measurement
    out = out if out is not None else sys.stdout
    have_ref = reference and NAIVE.is_file()
    if reference and not have_ref:
        print(f"note: {NAIVE} not found (installed without tests): ganprint only", file=sys.stderr)
    rows = []
    table = (lambda *a, **k: None) if as_json else functools.partial(print, file=out, flush=True)
    table(f"# residual of one RGB image, best of {repeat}; {machine()}; {time.strftime('%Y-%m-%d')}")
    table("| size | implementation | s/image | MP/s | speed-up | peak extra bytes/pixel | backend |")
    table("| --- | --- | --- | --- | --- | --- | --- |")
    for h, w in sizes:
        mp = h * w / 1e6
        fast = _measure("ganprint", h, w, repeat, backend)
        plain = _measure("plain", h, w, max(1, min(repeat, 2))) if have_ref else None
        for name, r in (("plain float64", plain), ("ganprint", fast)):
            if r is None:
                continue
            ratio = f"{plain['best_s'] / r['best_s']:.1f}x" if plain else "-"
            table(f"| {h}x{w} | {name} | {r['best_s']:.3f} | {mp / r['best_s']:.1f} | {ratio} | "
                  f"{r['peak_extra_bytes'] / (h * w):.1f} | {r.get('backend', 'cpu')} |")
        rows.append({"size": [h, w], "ganprint": fast, "plain": plain})
    if as_json:
        print(json.dumps({"benchmark": "residual", "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                          "repeat": repeat, "rows": rows}, indent=2), file=out)
    return rows


# --- the pipeline --------------------------------------------------------------------------------------
def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB scene plus noise, uint8 (h, w, 3): what the residual and the JPEG coder see in a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
    return np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time (s) of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@dataclass(frozen=True)
class Stage:
    """One measured stage: ``seconds`` per ``unit`` (one call), and what one call processes."""

    size: tuple[int, int]
    stage: str
    unit: str  # what one call is: "image", "query", "matrix", "PCE"
    seconds: float
    per_call: float  # how many rate units one call processes (megapixels, queries, pairs, PCEs)
    rate_unit: str  # "MP/s", "queries/s", "pairs/s", "PCE/s"
    backend: str = "cpu"  # where it ran: "cpu" or "cuda" (decode always runs on the CPU)

    @property
    def rate(self) -> float:
        return self.per_call / self.seconds if self.seconds > 0 else math.inf

    def as_dict(self) -> dict:
        return {"size": list(self.size), "stage": self.stage, "unit": self.unit, "seconds": self.seconds,
                "rate": self.rate, "rate_unit": self.rate_unit, "backend": self.backend}


def _references(h: int, w: int, n: int, seed: int = 1):
    """N camera and N generator references with random fingerprints, as an Attributor takes them."""
    from fingerprint.build import default_params

    rng = np.random.default_rng(seed)
    cam, gen = default_params("camera"), default_params("generator")
    cameras = [(f"camera-{i}", "camera", rng.standard_normal((h, w)).astype(np.float32) * 0.01, cam) for i in range(n)]
    generators = [(f"generator-{i}", "generator", rng.standard_normal((3, h, w)).astype(np.float32) * 0.01, gen)
                  for i in range(n)]
    return cameras, generators


def measure_pipeline(h: int, w: int, *, references: int = 6, repeat: int = 3, batch: int = 8,
                     folder: str | os.PathLike | None = None, backend: str = "auto") -> list[Stage]:
    """Time every user-facing stage at one size (see the module docstring); returns one Stage per row.

    ``folder`` receives the JPEG file that the decode stage reads (a temporary folder by default).
    ``backend`` is resolved once for this size (``kernels._backend.resolve_backend``) and used by
    every stage but the decode; with ``"cuda"`` the PCE and NCC rows score device-resident arrays.
    """
    import tempfile

    from PIL import Image

    from fingerprint.attribution import Attributor
    from fingerprint.build import default_params
    from fingerprint.estimate import generator_residual, new_accumulator
    from fingerprint.io import load_image
    from fingerprint.residual import extract_residual
    from fingerprint.scores import ReferenceSpectrum, ncc_matrix
    from kernels._backend import resolve_backend

    _check_sizes([(h, w)], repeat)
    on = resolve_backend(backend, pixels=h * w)
    if references < 1:
        raise ValueError(f"references must be >= 1, got {references}")
    mp, n = h * w / 1e6, references
    image = synthetic_photo(h, w)
    crop = np.ascontiguousarray(image[h // 4 : h // 4 + max(h // 2, MIN_SIZE), w // 4 : w // 4 + max(w // 2, MIN_SIZE)])
    cameras, generators = _references(h, w, n)
    rows: list[Stage] = []

    def add(stage: str, unit: str, fn, per_call: float, rate_unit: str, where: str = on) -> None:
        rows.append(Stage((h, w), stage, unit, _best(fn, repeat), per_call, rate_unit, where))

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        jpeg = Path(tmp) / "photo.jpg"
        Image.fromarray(image).save(jpeg, quality=92)
        add("decode (JPEG file, load_image)", "image", lambda: load_image(jpeg), mp, "MP/s", "cpu")
    add("residual (query, sigma 2)", "image", lambda: extract_residual(image, backend=on), mp, "MP/s")
    cam_acc = new_accumulator(default_params("camera"), backend=on)
    add("camera build, per image", "image", lambda: cam_acc.add(image), mp, "MP/s")
    gen_acc = new_accumulator(default_params("generator"), backend=on)
    add("generator build, per image", "image", lambda: gen_acc.add(image), mp, "MP/s")

    aligned = Attributor(cameras, rotations=False, retry_sigma=None, backend=on)
    add(f"attribute vs {n} cameras: aligned", "query", lambda: aligned.score(image), 1, "queries/s")
    crop_name = f"attribute vs {n} cameras: crop search ({crop.shape[0]}x{crop.shape[1]} query)"
    add(crop_name, "query", lambda: aligned.score(crop), 1, "queries/s")
    defaults = Attributor(cameras, backend=on)
    add(f"attribute vs {n} cameras: rotations + sigma-5 retry (defaults, no match)", "query",
        lambda: defaults.score(image), 1, "queries/s")
    gens = Attributor(generators, generator_threshold=3.0, backend=on)
    add(f"attribute vs {n} generators", "query", lambda: gens.score(image), 1, "queries/s")

    residual = extract_residual(image, backend=on)
    small = np.ascontiguousarray(residual[: crop.shape[0], : crop.shape[1]])
    queries = np.stack([generator_residual(image, default_params("generator"), backend=on)] * batch)
    fingerprints = np.stack([g[2] for g in generators])
    if on == "cuda":  # the scores alone, on device-resident arrays (fingerprint.device)
        from fingerprint.device import Device

        dev = Device()
        spectrum, residual, small = dev.spectrum(cameras[0][2]), dev.put(residual), dev.put(small)
        queries_on, fingerprints_on = dev.put(queries), dev.put(fingerprints)
        nccs = lambda: dev.ncc_rows(queries_on, fingerprints_on)  # noqa: E731
    else:
        spectrum = ReferenceSpectrum(cameras[0][2])
        nccs = lambda: ncc_matrix(queries, fingerprints)  # noqa: E731
    add("PCE, aligned (one reference)", "PCE", lambda: spectrum.pce(residual), 1, "PCE/s")
    add("PCE, crop search (one reference)", "PCE", lambda: spectrum.pce(small, search="crop"), 1, "PCE/s")
    add(f"NCC matrix, {batch} queries x {n} generators", "matrix", nccs, batch * n, "pairs/s")
    return rows


def dominant_stages(rows: Sequence[Stage]) -> list[str]:
    """One sentence per size and job (build, attribute): the stages a user pays for, and the largest.

    Building pays decode + camera build per image. Attributing a photo with the defaults pays
    decode + attribution against N cameras; when nothing matches that attribution holds two
    residuals (sigma 2, then sigma 5), the rest is PCE over the rotations and the retry.
    """
    out = []
    for size in dict.fromkeys(r.size for r in rows):
        at = [r for r in rows if r.size == size]
        decode = next((r for r in at if r.stage.startswith("decode")), None)
        residual = next((r for r in at if r.stage.startswith("residual")), None)
        build = next((r for r in at if r.stage.startswith("camera build")), None)
        attr = next((r for r in at if "defaults" in r.stage), None)
        label = f"{size[0]}x{size[1]}"
        if decode and build:
            out.append(_sentence(f"{label} camera build, per image",
                                 {"decode": decode.seconds, "camera build": build.seconds}))
        if decode and residual and attr:
            scoring = attr.seconds - 2 * residual.seconds
            sentence = _sentence(f"{label} attribution of a photo that matches none of the cameras",
                                 {"decode": decode.seconds, "residuals (sigma 2 and 5)": 2 * residual.seconds,
                                  "PCE over rotations and retry": max(scoring, 0.0)})
            if scoring < 0:  # the attribution, residuals included, measured faster than its two residuals
                sentence += " (inconsistent timings: the machine was busy; rerun with a larger --repeat)"
            out.append(sentence)
    return out


def _sentence(job: str, parts: dict[str, float]) -> str:
    total = sum(parts.values())
    top = max(parts, key=parts.get)
    share = parts[top] / total if total > 0 else 0.0
    detail = " + ".join(f"{k} {v:.3f} s" for k, v in parts.items())
    return f"{job}: {total:.3f} s = {detail}; {top} dominates ({share:.0%})"


def run_pipeline_bench(sizes: Sequence[tuple[int, int]], *, references: int = 6, repeat: int = 3,
                       out=None, as_json: bool = False, backend: str = "auto") -> dict:
    """Measure every stage at every size; print one table (or one JSON object) and the dominant stages.

    ``backend`` ("auto", "cpu", "cuda") is resolved once per size (:func:`measure_pipeline`); the
    table's last column says where each stage ran.
    Returns ``{"machine", "date", "repeat", "references", "backend", "rows": [Stage.as_dict()], "dominant": [str]}``.
    """
    _check_sizes(sizes, repeat)
    from kernels._backend import resolve_backend

    resolve_backend(backend)  # an unknown name, or "cuda" without a device, fails before any measurement
    out = out if out is not None else sys.stdout
    if isinstance(references, bool) or not isinstance(references, int) or references < 1:
        raise ValueError(f"references must be a whole number >= 1, got {references!r}")
    table = (lambda *a, **k: None) if as_json else functools.partial(print, file=out, flush=True)
    table(f"# pipeline stages on synthetic RGB images, {references} references, best of {repeat} after a warm-up; "
          f"{machine()}; {time.strftime('%Y-%m-%d')}")
    table("| size | stage | s per call | per | rate | backend |")
    table("| --- | --- | --- | --- | --- | --- |")
    rows: list[Stage] = []
    for h, w in sizes:
        for r in measure_pipeline(h, w, references=references, repeat=repeat, backend=backend):
            rows.append(r)
            table(f"| {h}x{w} | {r.stage} | {r.seconds:.4f} | {r.unit} | {r.rate:.3g} {r.rate_unit} | {r.backend} |")
    dominant = dominant_stages(rows)
    for line in dominant:
        table(f"# {line}")
    result = {"benchmark": "pipeline", "machine": machine(), "date": time.strftime("%Y-%m-%d"), "repeat": repeat,
              "references": references, "backend": backend, "rows": [r.as_dict() for r in rows], "dominant": dominant}
    if as_json:
        print(json.dumps(result, indent=2), file=out)
    return result


def _warm_up_digests(rng) -> None:
    """Compile the sparse digest kernel (kernels/digest_cpu.py), serial and parallel builds: digests of
    4 and of 40 fingerprints of 64 x 64 (4 x 4,096 entries: below config.PARALLEL_MIN_SIZE; 40 x 4,096 above)."""
    import numpy as np

    from fingerprint.digest import DigestIndex, make_digest

    for n_refs in (4, 40):
        index = DigestIndex([make_digest(rng.standard_normal((64, 64)).astype(np.float32), 4096) for _ in range(n_refs)])
        queries = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2)]
        index.scores(queries[0])
        index.scores_many(queries)


def _warm_up_jpeg_check(rng) -> None:
    """Compile the JPEG scan walker (kernels/jpeg_entropy_cpu.py) on a baseline and a progressive file."""
    import tempfile

    from PIL import Image

    from fingerprint.io import load_image

    pixels = rng.integers(0, 256, (64, 64, 3)).astype("uint8")
    with tempfile.TemporaryDirectory() as folder:
        for progressive in (False, True):
            path = Path(folder) / f"warm-{int(progressive)}.jpg"
            Image.fromarray(pixels).save(path, quality=90, progressive=progressive)
            load_image(path)


def warm_up() -> float:
    """Run every CPU kernel once on tiny inputs so Numba compiles them into its on-disk cache.

    ``make install`` calls this, so the first real command does not spend ~10 s compiling.
    Returns the seconds it took.
    """
    import numpy as np

    from fingerprint.build import build_fingerprint
    from fingerprint.residual import extract_residual
    from fingerprint.scores import pce
    from kernels import dwt_cpu

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    # small shapes compile the serial builds, 640x640 (sub-bands above config.PARALLEL_MIN_SIZE) the parallel ones
    for shape, dtype in itertools.product(((48, 64, 3), (48, 64), (640, 640, 3), (640, 640)), (np.uint8, np.uint16)):
        image = rng.integers(0, 256 if dtype == np.uint8 else 65536, shape).astype(dtype)
        w = extract_residual(image)
        k = build_fingerprint([image, image[::-1].copy()], "camera")
        build_fingerprint([image], "generator")
        pce(w * 1.0, k)
    with dwt_cpu._PARALLEL_LOCK:  # a second thread's residual runs the serial DWT levels
        extract_residual(rng.integers(0, 256, (640, 640)).astype(np.uint8))
    _warm_up_jpeg_check(rng)
    _warm_up_digests(rng)
    return time.perf_counter() - start
