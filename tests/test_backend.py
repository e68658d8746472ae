"""The ``backend`` option on a machine without CUDA: ``cpu | cuda | auto`` through the API and the CLI.

``cuda`` must fail at once, in one line, naming what is missing (``BackendUnavailableError`` in
Python; exit status 2 on the command line); ``auto`` must fall back silently and give exactly the
CPU's results; a NumPy image below ``AUTO_MIN_PIXELS`` must never go to a device. The CUDA path
itself is checked in Numba's CUDA simulator (``tests/test_gpu.py``, ``test_sim_*``) and on a
device by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fingerprint import build_fingerprint, extract_residual
from fingerprint.attribution import Attributor, attribute, attribute_paths, load_attributor
from fingerprint.bench import run_bench, run_pipeline_bench
from fingerprint.build import build_reference, default_params
from fingerprint.cli import EXIT_OK, EXIT_USAGE, main
from fingerprint.cli_args import backend_error
from fingerprint.errors import BackendUnavailableError, GanprintError
from fingerprint.estimate import generator_residual, new_accumulator
from fingerprint.evaluate import evaluate_library
from fingerprint.residual import extract_noise
from fingerprint.synthetic import make_camera, make_generator
from kernels import _backend
from kernels._backend import AUTO_MIN_PIXELS, cuda_status, resolve_backend
from reference_db import Library
from test_reliability import copy_library

SHAPE = (64, 80)
no_cuda = pytest.mark.skipif(cuda_status()[0], reason="a CUDA device is usable here: these tests need none")


def _save(folder: Path, name: str, image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(image).save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library (2 cameras, 1 generator, 64 x 80) and a labelled query folder (one sub-folder per source)."""
    root = tmp_path_factory.mktemp("backend")
    lib = root / "refs.h5"
    queries = root / "queries"
    for name, seed in (("camA", 11), ("camB", 22)):
        cam = make_camera(name, seed, shape=SHAPE, prnu_std=0.02)
        flats = [_save(root / name, f"flat{i}.png", im) for i, im in enumerate(cam.images(4, seed=1, flat=True))]
        build_reference(lib, name, "camera", flats, progress=False, warn=lambda msg: None, backend="cpu")
        for i, im in enumerate(cam.images(2, seed=9, flat=True)):
            _save(queries / name, f"q{i}.png", im)
    gen = make_generator("ganA", "transposed_conv", 3, out_size=64)
    flats = [_save(root / "ganA", f"g{i}.png", im[:, :64]) for i, im in enumerate(gen.generate(4, seed=1))]
    build_reference(lib, "ganA", "generator", flats, progress=False, warn=lambda msg: None, backend="cpu")
    _save(queries / "ganA", "q0.png", next(gen.images(1, seed=5)))
    return lib, queries


@pytest.fixture
def usable_cuda(monkeypatch):
    """Pretend a device is usable (``cuda_status`` only): any real attempt to use it would need CuPy."""
    monkeypatch.setattr(_backend, "cuda_status", lambda: (True, "ok: pretend device"))
    monkeypatch.setattr(_backend, "AUTO_MOVES_HOST_DATA", True)


# --- the policy -----------------------------------------------------------------------------------------
def test_auto_keeps_host_images_on_the_cpu_until_the_device_is_verified(monkeypatch):
    """Shipped default: even with a usable device and a 12 MP image, auto runs the CPU."""
    monkeypatch.setattr(_backend, "cuda_status", lambda: (True, "ok: pretend device"))
    assert _backend.AUTO_MOVES_HOST_DATA is False
    assert resolve_backend("auto", pixels=12_000_000) == "cpu"
    assert resolve_backend("auto", np.zeros((3000, 4000), np.uint8)) == "cpu"


def test_auto_policy_is_size_aware(usable_cuda):
    assert resolve_backend("auto", pixels=AUTO_MIN_PIXELS) == "cuda"
    assert resolve_backend("auto", pixels=AUTO_MIN_PIXELS - 1) == "cpu"
    assert resolve_backend("auto") == "cpu"  # size unknown
    assert resolve_backend("auto", np.zeros((1000, 1000, 3), np.uint8)) == "cuda"
    assert resolve_backend("auto", np.zeros((999, 1000), np.uint8)) == "cpu"
    assert resolve_backend("cpu", pixels=10**8) == "cpu"


def test_auto_never_moves_a_small_numpy_image_to_the_device(usable_cuda, monkeypatch, rng):
    """With a device 'usable', a 64 x 80 NumPy image still runs on the CPU: same result, and the
    device glue (``fingerprint.device.Device``, which every CUDA path goes through) is never made."""
    from fingerprint import device

    def refuse(self, *args, **kwargs):
        raise AssertionError("the CUDA path was taken")

    monkeypatch.setattr(device.Device, "__init__", refuse)
    img = rng.integers(0, 256, (*SHAPE, 3)).astype(np.uint8)
    assert np.array_equal(extract_residual(img, backend="auto"), extract_residual(img, backend="cpu"))
    assert np.array_equal(extract_noise(img, backend="auto"), extract_noise(img))
    camera = default_params("camera")
    assert Attributor([("k", "camera", np.zeros(SHAPE, np.float32), camera)]).backend == "cpu"
    acc = new_accumulator(camera)
    acc.add(img)
    assert acc.backend == "cpu"
    with pytest.raises(AssertionError, match="CUDA path"):  # the hook does catch the device path: 1 MP goes
        Attributor([("k", "camera", np.zeros((1000, 1000), np.float32), camera)])


def test_accumulator_resolves_its_backend_once_at_the_first_image(rng):
    acc = new_accumulator(default_params("generator"), backend="auto")
    assert acc.backend == "auto"
    acc.add(rng.integers(0, 256, (*SHAPE, 3)).astype(np.uint8))
    assert acc.backend == "cpu"
    with pytest.raises(ValueError, match="valid backends are 'auto', 'cpu', 'cuda'"):
        new_accumulator(default_params("camera"), backend="gpu").add(np.zeros(SHAPE, np.uint8))


# --- the API: cuda without CUDA raises, auto equals cpu -------------------------------------------------
@no_cuda
def test_api_cuda_raises_backend_unavailable(library, tmp_path, rng):
    lib, queries = library
    img = rng.integers(0, 256, (*SHAPE, 3)).astype(np.uint8)
    params = default_params("generator")
    calls = {
        "extract_residual": lambda: extract_residual(img, backend="cuda"),
        "extract_noise": lambda: extract_noise(img, backend="cuda"),
        "generator_residual": lambda: generator_residual(img, params, backend="cuda"),
        "Attributor": lambda: Attributor([("k", "camera", np.zeros(SHAPE, np.float32), default_params("camera"))],
                                         backend="cuda"),
        "load_attributor": lambda: load_attributor(lib, backend="cuda"),
        "attribute": lambda: attribute(img, lib, backend="cuda"),
        "attribute_paths": lambda: list(attribute_paths(lib, [queries], progress=False, backend="cuda")),
        "build_fingerprint": lambda: build_fingerprint([img], "camera", backend="cuda"),
        "evaluate_library": lambda: evaluate_library(lib, queries, progress=False, backend="cuda"),
        "run_bench": lambda: run_bench([(64, 64)], repeat=1, reference=False, backend="cuda"),
        "run_pipeline_bench": lambda: run_pipeline_bench([(64, 64)], repeat=1, references=1, backend="cuda"),
    }
    reason = cuda_status()[1]
    for name, call in calls.items():
        with pytest.raises(BackendUnavailableError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, GanprintError) and reason in message and "\n" not in message, name


@no_cuda
def test_build_reference_cuda_leaves_the_library_unchanged(library, tmp_path):
    lib, queries = library
    copy = tmp_path / "refs.h5"
    copy_library(lib, copy)
    before = _sha(copy)
    for target in (copy, tmp_path / "new.h5"):
        with pytest.raises(BackendUnavailableError):
            build_reference(target, "camC", "camera", [queries / "camA"], progress=False, backend="cuda")
    assert _sha(copy) == before and not (tmp_path / "new.h5").exists()


def test_api_auto_gives_the_cpu_results(library):
    lib, queries = library
    files = sorted(str(p) for p in queries.rglob("*.png"))
    auto = [r.as_dict() for r in attribute_paths(lib, files, progress=False, backend="auto")]
    cpu = [r.as_dict() for r in attribute_paths(lib, files, progress=False, backend="cpu")]
    assert auto == cpu and [r["best"] for r in cpu if "cam" in r["image"]] == ["camA", "camA", "camB", "camB"]
    assert load_attributor(lib).backend == "cpu"  # auto, 64 x 80 references: below AUTO_MIN_PIXELS
    rep_auto = evaluate_library(lib, queries, progress=False, backend="auto").as_dict()
    rep_cpu = evaluate_library(lib, queries, progress=False, backend="cpu").as_dict()
    assert rep_auto == rep_cpu
    images = [np.asarray(Image.open(p)) for p in files if "camA" in p]
    assert np.array_equal(build_fingerprint(images, "camera", backend="auto"), build_fingerprint(images, "camera",
                                                                                                  backend="cpu"))


def test_unknown_backend_name_is_refused(library):
    lib, _ = library
    with pytest.raises(ValueError, match="unknown backend 'gpu'; valid backends are 'auto', 'cpu', 'cuda'"):
        load_attributor(lib, backend="gpu")
    with pytest.raises(ValueError, match="valid backends"):
        extract_residual(np.zeros(SHAPE, np.uint8), backend="gpu")


# --- the CLI ----------------------------------------------------------------------------------------------
def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _commands(lib, queries, new_lib):
    return {
        "build": ["build", new_lib, "--name", "camC", "--kind", "camera", "--quiet", queries / "camA"],
        "attribute": ["attribute", lib, queries, "--quiet"],
        "evaluate": ["evaluate", lib, queries, "--quiet"],
        "bench": ["bench", "--sizes", "64x64", "--repeat", "1", "--no-reference"],
    }


@no_cuda
@pytest.mark.parametrize("command", ["build", "attribute", "evaluate", "bench"])
def test_cli_backend_cuda_without_cuda_is_a_one_line_usage_error(capsys, library, tmp_path, command):
    lib, queries = library
    before = _sha(lib)
    args = _commands(lib, queries, tmp_path / "new.h5")[command]
    code, out, err = _cli(capsys, *args, "--backend", "cuda")
    assert code == EXIT_USAGE and out == ""
    assert err.splitlines() == [f"ganprint: error: --backend cuda: {cuda_status()[1]}; use --backend cpu or auto"]
    assert _sha(lib) == before and not (tmp_path / "new.h5").exists()


def test_cli_backend_auto_equals_cpu(capsys, library, tmp_path):
    lib, queries = library
    outputs = {}
    for backend in ("auto", "cpu"):
        code, out, err = _cli(capsys, "attribute", lib, queries, "--quiet", "--json", "--backend", backend)
        assert code == EXIT_OK and err == ""
        outputs[backend] = out
    assert outputs["auto"] == outputs["cpu"] and outputs["cpu"].count("\n") == 5
    for backend in ("auto", "cpu"):  # a build with either backend writes the same fingerprint
        target = tmp_path / f"{backend}.h5"
        code, _, err = _cli(capsys, "build", target, "--name", "camC", "--kind", "camera", "--quiet",
                            queries / "camA", "--backend", backend)
        assert code == EXIT_OK and err == ""
        code, _, _ = _cli(capsys, "export", target, "camC", tmp_path / f"{backend}.npy")
        assert code == EXIT_OK
    assert np.array_equal(np.load(tmp_path / "auto.npy"), np.load(tmp_path / "cpu.npy"))


def test_cli_backend_choices_and_default(capsys, library):
    lib, queries = library
    with pytest.raises(SystemExit) as info:
        main(["attribute", str(lib), str(queries), "--backend", "gpu"])
    assert info.value.code == EXIT_USAGE and "invalid choice: 'gpu'" in capsys.readouterr().err
    from fingerprint.cli import _parser

    parsed = _parser().parse_args(["evaluate", str(lib), str(queries)])
    assert parsed.backend == "auto"


def test_backend_error_leaves_distributed_runs_to_the_workers(usable_cuda):
    assert backend_error(argparse.Namespace(backend="cuda", scheduler="local:2")) is None
    assert backend_error(argparse.Namespace(backend="cuda", scheduler=None)) is None  # usable (pretend)
    assert backend_error(argparse.Namespace(backend="auto", scheduler=None)) is None


# --- Dask: the workers get the backend -----------------------------------------------------------------
@no_cuda
def test_distributed_passes_the_backend_to_the_workers(library, tmp_path):
    distributed = pytest.importorskip("distributed")
    from fingerprint.distributed import build_reference_distributed
    from fingerprint.distributed_attribution import attribute_distributed

    lib, queries = library
    files = sorted(str(p) for p in queries.rglob("*.png"))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        same = [r.as_dict() for r in attribute_distributed(lib, files, client=client, progress=False, backend="auto")]
        assert same == [r.as_dict() for r in attribute_paths(lib, files, progress=False, backend="cpu")]
        with pytest.raises(BackendUnavailableError):  # raised by the worker's Attributor, not the client's
            list(attribute_distributed(lib, files, client=client, progress=False, backend="cuda"))
        with pytest.raises(BackendUnavailableError):  # raised by the worker's accumulator
            build_reference_distributed(tmp_path / "d.h5", "camC", "camera", [queries / "camA"], client=client,
                                        progress=False, backend="cuda")
    if (tmp_path / "d.h5").exists():  # the client may have created the library: it holds nothing
        with Library(tmp_path / "d.h5", "r") as lib:
            assert lib.names() == []
