"""GPU kernels (``kernels/*_gpu.py``) against the float64 twins of ``tests/naive.py``.

Three groups:

* ``test_sim_*``: every numba.cuda kernel in Numba's CUDA simulator, on tiny inputs, with NumPy
  standing in for CuPy, and the CUDA backend wired through the API (``Attributor(backend="cuda")``,
  the builds, ``extract_residual``) against the CPU backend, on 32 x 32 gray images. They need ``NUMBA_ENABLE_CUDASIM=1`` before Numba is first imported, so
  ``test_simulator_suite`` runs them in a subprocess (``pytest -k sim_``, the variable set); in the
  ordinary run they are skipped with that reason. To run them directly::

      NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_gpu.py -k sim_

* CPU-only tests of the backend choice and of the array-module scoring code (``scores_gpu`` with
  ``xp=numpy``).
* ``test_device_*``: the real GPU (CuPy + a CUDA device); skipped with the reason when either is
  missing. ``benchmarks/gpu_check.sh`` runs them on a lent GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import naive
import numpy as np
import pytest
import pywt
from conftest import DRESDEN, dresden_files

ROOT = Path(__file__).resolve().parents[1]
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
sim_only = pytest.mark.skipif(
    not SIM, reason="CUDA-simulator test: runs in test_simulator_suite's subprocess (NUMBA_ENABLE_CUDASIM=1)"
)


def naive_rel_err(a, b):
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def naive_center_crop(img, size=512):
    h, w = img.shape[:2]
    t, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[t : t + size, left : left + size])


# --- simulator suite driver -------------------------------------------------------------------------
@pytest.mark.skipif(SIM, reason="already inside the simulator subprocess")
def test_simulator_suite():
    """Run the ``test_sim_*`` tests in a fresh interpreter with NUMBA_ENABLE_CUDASIM=1 (about a minute)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__)), "-k", "sim_", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::UserWarning"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    tail = (proc.stdout + proc.stderr)[-6000:]
    failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    if proc.returncode != 0 and failed:
        # Numba's simulator runs a block's threads as Python threads. A reduction that came out
        # different from the same call made again (a parity mean of zero_mean_total off by a whole
        # term) was the simulator's shared-array race, made thread-safe in ``sim_config``
        # (``_locked_shared_array``): 60 calls gave 2 distinct outputs without it, 1 with it. The
        # retry stays for scheduling effects not yet seen: the tests that failed run once more,
        # alone, and fail the suite if they fail again; the first failure is shown as a warning.
        import warnings

        warnings.warn(f"simulator tests failed once, run again: {failed}\n{tail}", stacklevel=1)
        cmd = [sys.executable, "-m", "pytest", *(str(ROOT / f) for f in failed), "-q", "-p", "no:cacheprovider",
               "-W", "ignore::UserWarning"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"simulator tests failed:\n{tail}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.split("\n")[-2], tail


def _locked_shared_array(original, lock):
    """Numba's simulated ``cuda.shared.array`` with its allocation made under ``lock``.

    The simulator (``numba/cuda/simulator/kernelapi.py``, ``FakeCUDAShared.array``, numba 0.68)
    keys a block's shared arrays by the calling line and allocates one on a miss with an
    unsynchronised check-then-set: two threads of a block that reach the line together can each
    allocate their own array, and a shared-memory reduction (``kernels.spectral_gpu``) then sums
    only some threads' terms. With the fast thread switching below that happened in about one
    suite run in 15 on the 2-vCPU guest, and in 2 of 3 runs of the residual tests on a slower one
    (2026-12-04: a ZeroMeanTotal sub-lattice mean off by a whole term). A real GPU has no such
    race: shared arrays there are static. Same key (file, line) and same result otherwise;
    ``original`` (the simulator's own method) serves dynamic shared memory.
    """
    from numba import types as numba_types
    from numba.np import numpy_support

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer, no allocation
            return original(self, shape, dtype)
        if isinstance(dtype, numba_types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    return array


@pytest.fixture
def sim_config(monkeypatch):
    """Small blocks (every simulated thread is a Python thread), fast thread switching, and the
    simulator's shared-array allocation made thread-safe (``_locked_shared_array``)."""
    import threading

    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    from kernels import config

    monkeypatch.setattr(FakeCUDAShared, "array", _locked_shared_array(FakeCUDAShared.array, threading.Lock()))
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    config.THREADS_PER_BLOCK = 32
    yield
    config.reset()
    sys.setswitchinterval(old_switch)


# --- (a) simulator tests: each numba.cuda kernel against its naive twin ---------------------------
@sim_only
@pytest.mark.parametrize("shape,levels", [((16, 24), 2), ((8, 8), 1), ((4, 6), 1), ((32, 16), 3)])
def test_sim_wavedec2_matches_pywt(shape, levels, rng, sim_config):
    from kernels import dwt_gpu

    x = rng.standard_normal(shape).astype(np.float32)
    got = dwt_gpu.wavedec2(x, levels, xp=np)
    ref = pywt.wavedec2(x.astype(np.float64), "db4", mode="periodization", level=levels)
    scale = max(np.abs(c).max() for c in [ref[0]] + [d for t in ref[1:] for d in t])
    assert np.abs(got[0] - ref[0]).max() < 2e-6 * scale
    for g, r in zip(got[1:], ref[1:]):
        for gd, rd in zip(g, r):
            assert gd.shape == rd.shape and gd.dtype == np.float32
            assert np.abs(gd - rd).max() < 2e-6 * scale


@sim_only
@pytest.mark.parametrize("shape,levels", [((16, 24), 2), ((4, 6), 1)])
def test_sim_waverec2_matches_pywt(shape, levels, rng, sim_config):
    from kernels import dwt_gpu

    ref_coeffs = pywt.wavedec2(rng.standard_normal(shape), "db4", mode="periodization", level=levels)
    coeffs = [ref_coeffs[0].astype(np.float32)] + [tuple(d.astype(np.float32) for d in t) for t in ref_coeffs[1:]]
    got = dwt_gpu.waverec2(coeffs, xp=np)
    ref = pywt.waverec2(ref_coeffs, "db4", mode="periodization")
    assert got.shape == ref.shape
    assert naive_rel_err(got, ref) < 2e-6


@sim_only
@pytest.mark.parametrize("shape", [(13, 11), (3, 5), (10, 10)])
@pytest.mark.parametrize("sigma2", [4.0, 9.0])
def test_sim_local_wiener_matches_naive(shape, sigma2, rng, sim_config):
    from kernels import wiener_gpu

    d = (rng.standard_normal(shape) * 3).astype(np.float32)
    s2 = np.array([sigma2], np.float32)
    assert naive_rel_err(wiener_gpu.local_wiener(d, s2, xp=np), naive.wiener(d, sigma2)) < 2e-6
    gain = wiener_gpu.local_wiener_gain(d, s2, xp=np)
    assert naive_rel_err(d * gain, naive.wiener(d, sigma2)) < 2e-6
    assert not wiener_gpu.local_wiener_gain(d, np.zeros(1, np.float32), xp=np).any()  # s = 0 -> gain 0


@sim_only
@pytest.mark.parametrize("shape", [(17, 20), (16, 16), (9, 3)])
def test_sim_zero_mean_total_matches_naive(shape, rng, sim_config):
    from kernels import spectral_gpu

    w = rng.standard_normal(shape).astype(np.float32) + np.arange(shape[1], dtype=np.float32)
    out, s2 = spectral_gpu.zero_mean_total(w, xp=np)
    ref = naive.zero_mean_total(w)
    assert np.abs(out - ref).max() < 1e-5 * np.abs(w).max()
    assert s2[0] == pytest.approx(np.var(ref, ddof=1), rel=1e-5)
    assert s2[1] == pytest.approx(np.std(ref, ddof=1), rel=1e-5)
    inplace, _ = spectral_gpu.zero_mean_total(w.copy(), out=None, xp=np)
    assert np.array_equal(inplace, out)
    _, zero = spectral_gpu.zero_mean_total(w, keep=np.zeros(1, np.int32), xp=np)
    assert zero[0] == 0.0


@sim_only
@pytest.mark.parametrize("shape", [(15, 20), (16, 17), (12, 12)])
def test_sim_wiener_dft_matches_naive(shape, rng, sim_config):
    from kernels import spectral_gpu

    w = rng.standard_normal(shape).astype(np.float32)
    w[::8, :] += 3.0  # a periodic pattern, so the gain is far from flat
    s = float(np.std(w, ddof=1))
    got = spectral_gpu.wiener_dft(w, np.array([s * s, s], np.float32), xp=np)
    assert got.dtype == np.float32 and got.shape == shape
    assert naive_rel_err(got, naive.wiener_dft(w, s)) < 2e-5
    assert not spectral_gpu.wiener_dft(w, np.zeros(2, np.float32), xp=np).any()


@sim_only
def test_sim_pad_crop_and_constant_flag(rng, sim_config):
    from kernels import layout_gpu, spectral_gpu
    from kernels.spec import pad_amounts

    x = rng.integers(0, 256, (7, 5, 3)).astype(np.uint8)
    top, bottom = pad_amounts(7, 2)
    left, right = pad_amounts(5, 2)
    assert (top, bottom) == naive.pad_amounts(7, 2) and (left, right) == naive.pad_amounts(5, 2)
    out = np.empty((7 + top + bottom, 5 + left + right), np.float32)
    layout_gpu.pad_symmetric(x, 1, top, left, np.float32(0.5), out)
    assert np.array_equal(out, 0.5 * np.pad(x[..., 1].astype(np.float32), ((top, bottom), (left, right)), mode="symmetric"))
    acc = np.empty((7, 5), np.float32)
    layout_gpu.add_crop(out, top, left, np.float32(2.0), acc, True)
    layout_gpu.add_crop(out, top, left, np.float32(1.0), acc, False)
    assert np.allclose(acc, 1.5 * x[..., 1])
    assert spectral_gpu.not_constant(x, xp=np)[0] == 1
    assert spectral_gpu.not_constant(np.full((4, 4, 3), 9, np.uint8), xp=np)[0] == 0


@sim_only
@pytest.mark.parametrize("shape,levels,dtype", [((16, 20), 2, np.uint8), ((9, 11, 3), 1, np.uint8), ((16, 16), 1, np.uint16)])
def test_sim_residual_matches_naive(shape, levels, dtype, rng, sim_config):
    from kernels import residual_gpu

    img = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    got = residual_gpu._residual(img, 2.0, levels, np)
    ref = naive.residual(img, sigma=2.0, levels=levels)
    assert got.dtype == np.float32 and got.shape == shape[:2]
    assert naive.ncc(got, ref) >= 0.9999
    assert naive_rel_err(got, ref) < 1e-4


@sim_only
def test_sim_residual_of_constant_image_is_exactly_zero(sim_config):
    from kernels import residual_gpu

    got = residual_gpu._residual(np.full((16, 16), 77, np.uint8), 2.0, 1, np)
    assert got.dtype == np.float32 and not got.any()


# --- (a') simulator: the CUDA backend wired through the public API (fingerprint/device.py) ----------
@pytest.fixture
def simulated_device(monkeypatch):
    """Let ``cuda_status`` count the simulator as a device, so ``backend="cuda"`` runs the
    ``numba.cuda`` kernels as Python, with NumPy standing in for CuPy."""
    from kernels import _backend

    from collections import Counter

    from fingerprint import device

    calls: Counter = Counter()  # which device paths ran

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for name in ("residual", "noise", "ncc", "ncc_rows"):
        spy(device.Device, name)
    spy(device.DeviceSpectrum, "pce")
    monkeypatch.setattr(_backend, "SIMULATOR_COUNTS_AS_DEVICE", True)
    _backend.cuda_status.cache_clear()
    assert _backend.cuda_status()[0]
    yield calls
    monkeypatch.undo()
    _backend.cuda_status.cache_clear()


def naive_same_scores(cpu, gpu, *, pce_rel=2e-3, pce_abs=0.05, ncc_abs=2e-5):
    """Two lists of Attributions agree: decisions, search bookkeeping exactly; scores within tolerance."""
    assert len(cpu) == len(gpu)
    for c, g in zip(cpu, gpu):
        assert (g.decision, g.best, g.closest) == (c.decision, c.best, c.closest), c.image
        assert g.scores.keys() == c.scores.keys()
        for name, a in c.scores.items():
            b = g.scores[name]
            assert (b.match, b.kind, b.decided_by, b.rotation, b.offset, b.n_positions, b.note) == \
                (a.match, a.kind, a.decided_by, a.rotation, a.offset, a.n_positions, a.note), (c.image, name)
            assert type(b.ncc) is float and b.ncc == pytest.approx(a.ncc, abs=ncc_abs), (c.image, name)
            if a.pce is not None:
                assert type(b.pce) is float and b.pce == pytest.approx(a.pce, rel=pce_rel, abs=pce_abs), (c.image, name)
            if a.z is not None:
                assert b.z == pytest.approx(a.z, rel=pce_rel, abs=1e-3)
            assert b.threshold == pytest.approx(a.threshold, rel=1e-6)


@sim_only
def test_sim_attributor_cuda_gives_the_cpu_decisions(sim_config, simulated_device, monkeypatch):
    """Cameras, 24 x 24 gray: a match at zero shift, an outsider (four rotations, then the sigma-5
    retry, all on the device) and an 18 x 21 crop found by the crop search. Same decisions, offsets,
    rotations and positions as the CPU; PCE and NCC within float32 rounding."""
    from fingerprint import build_fingerprint
    from fingerprint.attribution import Attributor
    from fingerprint.build import default_params
    from fingerprint.device import DeviceSpectrum
    from fingerprint.synthetic import make_camera

    cams = [make_camera(f"cam{i}", 100 + i, shape=(24, 24), prnu_std=0.02) for i in range(3)]
    params = default_params("camera", levels=1)
    refs = [(c.name, "camera", build_fingerprint([im[..., 1] for im in c.images(12, seed=1, flat=True)], "camera",
                                                 levels=1, backend="cpu"), params) for c in cams[:2]]
    queries = [next(cams[0].images(1, seed=7, flat=True))[..., 1], next(cams[2].images(1, seed=7, flat=True))[..., 1],
               np.ascontiguousarray(next(cams[1].images(1, seed=9, flat=True))[3:21, 2:23, 1])]
    from fingerprint.scores import ReferenceSpectrum

    cpu_pces = []
    original = ReferenceSpectrum.pce
    monkeypatch.setattr(ReferenceSpectrum, "pce", lambda self, *a, **k: cpu_pces.append(1) or original(self, *a, **k))
    cpu = Attributor(refs, backend="cpu").score_batch(queries, ["own", "outsider", "crop"])
    att = Attributor(refs, backend="cuda")
    assert att.backend == "cuda" and all(isinstance(c.spectrum, DeviceSpectrum) for c in att.cameras)
    gpu = att.score_batch(queries, ["own", "outsider", "crop"])
    # on the device: 3 residuals at sigma 2 and the outsider's sigma-5 residual, and every PCE the CPU
    # computed (the native stage of one budget: the sigma-5 residual is tried at all 4 rotations)
    assert simulated_device["residual"] == 4 and simulated_device["pce"] == len(cpu_pces) == 26
    assert [(r.decision, r.best) for r in cpu] == [("match", "cam0"), ("unknown", None), ("match", "cam1")]
    assert cpu[1].scores["cam0"].n_positions == 8 and cpu[2].scores["cam1"].offset == (3, 2)  # 4 rotations x 2 sigmas
    naive_same_scores(cpu, gpu)


@sim_only
def test_sim_build_and_generator_scores_cuda_match_cpu(sim_config, simulated_device):
    """The estimators' noise on the device (camera build), extract_residual(backend="cuda"), and
    generator NCC as one device GEMM: the CPU's fingerprint, residual and z scores."""
    from fingerprint import build_fingerprint, extract_residual
    from fingerprint.attribution import Attributor
    from fingerprint.build import default_params
    from fingerprint.synthetic import make_camera, make_generator

    frames = [im[..., 1] for im in make_camera("cam", 5, shape=(24, 24), prnu_std=0.02).images(2, seed=3, flat=True)]
    k_cpu = build_fingerprint(frames, "camera", levels=1, backend="cpu")
    k_gpu = build_fingerprint(frames, "camera", levels=1, backend="cuda")
    assert simulated_device["noise"] == 2
    assert k_gpu.dtype == np.float32 and naive.ncc(k_gpu, k_cpu) >= 0.9999 and naive_rel_err(k_gpu, k_cpu) < 1e-4
    w = extract_residual(frames[0][:16, :20], 2.0, 1, backend="cuda")
    assert isinstance(w, np.ndarray) and naive.ncc(w, extract_residual(frames[0][:16, :20], 2.0, 1)) >= 0.9999

    gens = [make_generator(f"g{i}", arch, i + 1, out_size=32)
            for i, arch in enumerate(["transposed_conv", "pixel_shuffle", "bilinear_conv"])]
    params = default_params("generator", levels=1)
    refs = [(g.name, "generator", build_fingerprint([im[..., 1] for im in g.generate(8, seed=1)], "generator",
                                                    levels=1, backend="cpu"), params) for g in gens[:2]]
    queries = [next(gens[0].images(1, seed=4))[..., 1], next(gens[2].images(1, seed=4))[..., 1]]
    cpu = Attributor(refs, generator_threshold=3.0, backend="cpu").score_batch(queries, ["g0", "outsider"])
    gpu = Attributor(refs, generator_threshold=3.0, backend="cuda").score_batch(queries, ["g0", "outsider"])
    assert simulated_device["noise"] == 4 and simulated_device["ncc_rows"] == 1  # 2 queries, one GEMM
    assert [(r.decision, r.best) for r in cpu] == [("match", "g0"), ("unknown", None)]
    naive_same_scores(cpu, gpu)


# --- CPU-only: imports, backend choice, array-module scoring --------------------------------------
@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_imports_do_not_load_cupy_or_numba_cuda():
    code = (
        "import sys, kernels, fingerprint, kernels._backend, kernels.launch_gpu, kernels.scores_gpu\n"
        "bad = [m for m in sys.modules if m == 'cupy' or m.startswith('cupy.') or m.startswith('numba.cuda')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_kernels_and_reference_db_never_import_fingerprint():
    """The layers import downwards only: no ``import fingerprint...`` anywhere in kernels/ or
    reference_db/, imports inside functions included (read from the source, not from sys.modules)."""
    import ast

    offenders = []
    for package in ("kernels", "reference_db"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if node.level == 0 else []
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                              if n == "fingerprint" or n.startswith("fingerprint.")]
    assert not offenders, offenders


BAD_IMAGES = {
    "too small": np.zeros((15, 40), np.uint8),
    "two channels": np.zeros((32, 32, 2), np.uint8),
    "4-D": np.zeros((32, 32, 3, 1), np.uint8),
    "float16": np.zeros((32, 32), np.float16),
    "complex": np.zeros((32, 32), np.complex64),
    "NaN": np.full((32, 32), np.nan, np.float32),
    "inf": np.full((20, 20, 3), np.inf, np.float64),
}


@pytest.mark.skipif(SIM, reason="not a simulator test")
@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_gpu_residual_refuses_bad_input_like_the_cpu_one(case):
    """One check (kernels.spec.check_image) for both backends: same class, same message, and the
    GPU entry points refuse a bad NumPy input before they need CuPy."""
    from fingerprint.errors import InvalidImageError
    from fingerprint.residual import extract_residual
    from kernels.residual_gpu import residual_gpu

    with pytest.raises(InvalidImageError) as cpu:
        extract_residual(BAD_IMAGES[case])
    with pytest.raises(InvalidImageError) as gpu:
        residual_gpu(BAD_IMAGES[case])
    assert type(gpu.value) is type(cpu.value) and str(gpu.value) == str(cpu.value)


@pytest.mark.skipif(SIM, reason="not a simulator test")
@pytest.mark.parametrize("sigma,levels", [(0.0, 4), (float("nan"), 4), (2.0, 0), (2.0, 9), (2.0, 2.5)])
def test_gpu_residual_refuses_bad_parameters_like_the_cpu_one(sigma, levels):
    from fingerprint.residual import extract_residual
    from kernels.residual_gpu import residual_gpu

    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError) as cpu:
        extract_residual(img, sigma, levels)
    with pytest.raises(ValueError) as gpu:
        residual_gpu(img, sigma, levels)
    assert type(gpu.value) is type(cpu.value) and str(gpu.value) == str(cpu.value)


@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_kernel_errors_are_the_fingerprint_errors():
    """fingerprint.errors re-exports the classes kernels raise (so ``except`` catches them)."""
    import kernels.errors

    from fingerprint import errors

    for name in ("GanprintError", "InvalidImageError", "ShapeMismatchError", "BackendUnavailableError"):
        assert getattr(errors, name) is getattr(kernels.errors, name)
    assert issubclass(errors.InvalidImageError, errors.GanprintError) and issubclass(errors.InvalidImageError, ValueError)
    assert issubclass(errors.BackendUnavailableError, errors.GanprintError)
    assert issubclass(errors.BackendUnavailableError, RuntimeError)


@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_resolve_backend_names():
    from kernels._backend import cuda_status, resolve_backend

    assert resolve_backend("cpu") == "cpu"
    assert resolve_backend("auto") == "cpu"  # no work size: never the device
    assert resolve_backend("auto", pixels=4000 * 3000) == ("cuda" if cuda_status()[0] else "cpu")
    with pytest.raises(ValueError, match=r"unknown backend 'gpux'; valid backends are 'auto', 'cpu', 'cuda'"):
        resolve_backend("gpux")
    with pytest.raises(ValueError, match="valid backends"):
        resolve_backend(None)


@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_resolve_backend_cuda_without_device_says_what_to_install():
    from kernels._backend import cuda_status, resolve_backend

    from fingerprint.errors import BackendUnavailableError, GanprintError

    if cuda_status()[0]:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(BackendUnavailableError, match="cupy") as info:
        resolve_backend("cuda")
    assert isinstance(info.value, GanprintError) and isinstance(info.value, RuntimeError)


@pytest.mark.skipif(SIM, reason="not a simulator test")
def test_scores_ncc_matrix_with_numpy_matches_naive(rng):
    from kernels import scores_gpu

    q = rng.standard_normal((3, 20, 30)).astype(np.float32)
    r = (q[[0, 2]] + 0.5 * rng.standard_normal((2, 20, 30))).astype(np.float32)
    got = scores_gpu.ncc_matrix(q, r, chunk=97, xp=np)
    ref = np.array([[naive.ncc(a, b) for b in r] for a in q])
    assert np.allclose(got, ref, atol=1e-6)
    assert scores_gpu.ncc_matrix(q, np.ones((1, 20, 30), np.float32), xp=np)[0, 0] == 0.0


@pytest.mark.skipif(SIM, reason="not a simulator test")
@pytest.mark.parametrize("search,qshape", [("aligned", (40, 48)), ("crop", (25, 30)), ("crop", (40, 48))])
def test_scores_pce_batch_with_numpy_matches_naive(search, qshape, rng):
    from kernels import scores_gpu

    ref = rng.standard_normal((40, 48)).astype(np.float32)
    h, w = qshape
    queries = np.stack([ref[3 : 3 + h, 5 : 5 + w] if search == "crop" and h < 40 else ref[:h, :w], rng.standard_normal((h, w))])
    queries = (queries + 0.3 * rng.standard_normal(queries.shape)).astype(np.float32)
    spec = scores_gpu.reference_spectrum(ref, xp=np)
    got = scores_gpu.pce_batch(queries, spec, ref.shape, search=search, xp=np)
    for k in range(2):
        qpad = np.zeros((40, 48))
        qpad[:h, :w] = queries[k] - queries[k].mean()
        cc = naive.crosscorr(ref, qpad)
        allowed = None
        if search == "crop":
            allowed = np.zeros(cc.shape, bool)
            allowed[: 40 - h + 1, : 48 - w + 1] = True
        pce_ref, peak = naive.pce_from_cc(cc, allowed)
        assert (int(got["oy"][k]), int(got["ox"][k])) == peak
        assert got["pce"][k] == pytest.approx(pce_ref, rel=1e-4, abs=1e-6)
    if search == "crop" and h < 40:
        assert (int(got["oy"][0]), int(got["ox"][0])) == (3, 5) and got["pce"][0] > 60


# --- (b) real GPU --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cp():
    if SIM:
        pytest.skip("Numba's CUDA simulator is on: no real device")
    from kernels._backend import cuda_status

    usable, reason = cuda_status()
    if not usable:
        pytest.skip(f"no usable CUDA device: {reason}")
    import cupy

    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(16, 16), (17, 29), (64, 48, 3), (101, 77, 3), (256, 384, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_device_residual_matches_naive_random(shape, dtype, cp, rng):
    from kernels.residual_gpu import residual_gpu

    img = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    got = residual_gpu(img)
    assert isinstance(got, cp.ndarray) and got.dtype == np.float32 and got.shape == shape[:2]
    got = cp.asnumpy(got)
    ref = naive.residual(img)
    assert naive.ncc(got, ref) >= 0.9999
    assert naive_rel_err(got, ref) < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("shape,levels", [((64, 96), 3), ((128, 64), 4)])
def test_device_kernels_match_naive(shape, levels, cp, rng):
    from kernels import dwt_gpu, spectral_gpu, wiener_gpu

    x = rng.standard_normal(shape).astype(np.float32)
    got = dwt_gpu.wavedec2(cp.asarray(x), levels)
    ref = pywt.wavedec2(x.astype(np.float64), "db4", mode="periodization", level=levels)
    assert naive_rel_err(cp.asnumpy(got[0]), ref[0]) < 2e-6
    assert naive_rel_err(cp.asnumpy(dwt_gpu.waverec2(got)), x) < 2e-6
    d = (x * 3).astype(np.float32)
    s2 = cp.asarray([4.0], dtype=cp.float32)
    assert naive_rel_err(cp.asnumpy(wiener_gpu.local_wiener(cp.asarray(d), s2)), naive.wiener(d, 4.0)) < 2e-6
    out, var = spectral_gpu.zero_mean_total(cp.asarray(x))
    zref = naive.zero_mean_total(x)
    assert np.abs(cp.asnumpy(out) - zref).max() < 1e-5 * np.abs(x).max()
    s = float(np.std(zref, ddof=1))
    assert float(var[1]) == pytest.approx(s, rel=1e-5)
    got_dft = cp.asnumpy(spectral_gpu.wiener_dft(out, var))
    assert naive_rel_err(got_dft, naive.wiener_dft(zref, s)) < 5e-5


@pytest.mark.gpu
def test_device_constant_image_gives_exact_zeros(cp):
    from kernels.residual_gpu import residual_gpu

    assert not cp.asnumpy(residual_gpu(np.full((64, 80, 3), 200, np.uint8))).any()


@pytest.mark.gpu
def test_device_batch_equals_single(cp, rng):
    from kernels.residual_gpu import residual_gpu, residual_gpu_batch

    imgs = [rng.integers(0, 256, s).astype(np.uint8) for s in [(64, 64, 3), (80, 48), (64, 64, 3), (33, 40, 3), (64, 64)]]
    batch = residual_gpu_batch(imgs, n_streams=2)
    for img, w in zip(imgs, batch):
        assert isinstance(w, np.ndarray)
        assert np.allclose(w, cp.asnumpy(residual_gpu(img)), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_device_scores_match_naive(cp, rng):
    from kernels import scores_gpu

    ref = rng.standard_normal((96, 128)).astype(np.float32)
    q = (ref + rng.standard_normal(ref.shape)).astype(np.float32)
    spec = scores_gpu.reference_spectrum(cp.asarray(ref))
    got = scores_gpu.pce_batch(cp.asarray(q[None]), spec, ref.shape)
    cc = naive.crosscorr(ref, q)
    assert float(got["pce"][0]) == pytest.approx(naive.pce_from_cc(cc)[0], rel=1e-4)
    m = scores_gpu.ncc_matrix(cp.asarray(q[None]), cp.asarray(ref[None]))
    assert float(m[0, 0]) == pytest.approx(naive.ncc(q, ref), abs=1e-6)


@pytest.mark.gpu
def test_device_attributor_and_builds_match_cpu(cp):
    """The CUDA backend through the API on a device: camera matches, crop search, rotations and
    retry, generator NCC, fingerprint builds and extract_noise give the CPU's decisions and scores."""
    from fingerprint import build_fingerprint
    from fingerprint.attribution import Attributor
    from fingerprint.build import default_params
    from fingerprint.residual import extract_noise
    from fingerprint.synthetic import make_camera, make_generator

    cams = [make_camera(f"cam{i}", 200 + i, shape=(256, 320), prnu_std=0.01) for i in range(3)]
    frames = {c.name: list(c.images(6, seed=1, flat=True)) for c in cams[:2]}
    k_cpu = {n: build_fingerprint(f, "camera", backend="cpu") for n, f in frames.items()}
    k_gpu = {n: build_fingerprint(f, "camera", backend="cuda") for n, f in frames.items()}
    for n in k_cpu:
        assert naive.ncc(k_gpu[n], k_cpu[n]) >= 0.9999
    img = frames["cam0"][0]
    assert naive.ncc(extract_noise(img, backend="cuda"), extract_noise(img)) >= 0.9999
    gens = [make_generator(f"g{i}", arch, i + 1, out_size=128) for i, arch in enumerate(["transposed_conv", "pixel_shuffle"])]
    refs = [(n, "camera", k, default_params("camera")) for n, k in sorted(k_cpu.items())]
    refs += [(g.name, "generator", build_fingerprint(g.generate(8, seed=1), "generator", backend="cpu"),
              default_params("generator")) for g in gens]
    own = next(cams[0].images(1, seed=7))
    queries = [own, next(cams[2].images(1, seed=7)), np.ascontiguousarray(own[37:37 + 160, 61:61 + 224]),
               np.ascontiguousarray(np.rot90(next(cams[1].images(1, seed=8)), 2)), next(gens[0].images(1, seed=4))]
    labels = ["own", "outsider", "crop", "rot180", "g0"]
    cpu = Attributor(refs, generator_threshold=3.0, backend="cpu").score_batch(queries, labels)
    assert [r.best for r in cpu] == ["cam0", None, "cam0", "cam1", "g0"] and cpu[3].scores["cam1"].rotation == 180
    att = Attributor(refs, generator_threshold=3.0, backend="cuda")
    assert att.backend == "cuda"
    naive_same_scores(cpu, att.score_batch(queries, labels))


@pytest.mark.gpu
@pytest.mark.shared_data
def test_device_residual_on_dresden_crops(cp):
    from PIL import Image

    from kernels.residual_gpu import residual_gpu

    files = dresden_files("nat")
    if not files:
        pytest.skip(f"no Dresden photos under {DRESDEN / 'nat'}")
    for path in files[::3]:
        img = np.asarray(Image.open(path))[300:812, 401:1001]
        assert naive.ncc(cp.asnumpy(residual_gpu(img)), naive.residual(img)) >= 0.9999


@pytest.mark.gpu
@pytest.mark.shared_data
def test_device_dresden_512_attribution_decisions_equal_cpu(cp):
    """Dresden 512x512 centre crops: fingerprints from ff/ (CPU), queries from nat/; PCE of W vs I*K.

    The decision per query (best camera when its PCE >= 60, else unknown) must be the same whether
    the query residual comes from the CPU or the GPU backend.
    """
    from PIL import Image

    from fingerprint.estimate import CameraAccumulator, FingerprintParams
    from fingerprint.residual import GRAY_WEIGHTS, extract_residual
    from fingerprint.scores import DEFAULT_PCE_THRESHOLD, pce
    from kernels.residual_gpu import residual_gpu

    ff, nat = dresden_files("ff"), dresden_files("nat")
    if not ff or not nat:
        pytest.skip(f"Dresden ff/ or nat/ missing under {DRESDEN}")
    camera = lambda p: p.stem.rsplit("_", 1)[0]  # noqa: E731
    accs = {}
    for p in ff:
        accs.setdefault(camera(p), CameraAccumulator(FingerprintParams())).add(naive_center_crop(np.asarray(Image.open(p))))
    ks = {name: acc.fingerprint() for name, acc in accs.items()}

    def decide(w, img):
        gray = img.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32)
        scores = {name: pce(w, gray * k).pce for name, k in ks.items()}
        best = max(scores, key=scores.get)
        return (best if scores[best] >= DEFAULT_PCE_THRESHOLD else "unknown"), scores[best]

    for p in nat:
        img = naive_center_crop(np.asarray(Image.open(p)))
        d_cpu, s_cpu = decide(extract_residual(img), img)
        d_gpu, s_gpu = decide(cp.asnumpy(residual_gpu(img)), img)
        assert d_cpu == d_gpu, f"{p.name}: CPU {d_cpu} (PCE {s_cpu:.1f}) vs GPU {d_gpu} (PCE {s_gpu:.1f})"
        assert s_gpu == pytest.approx(s_cpu, rel=1e-3)
