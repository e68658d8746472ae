"""Shared test fixtures: data locations, markers, tolerances, small synthetic images, kernel builds."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kernels import config as kernel_config
from kernels import dwt_cpu, estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu
from kernels._jit import SizedKernel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DRESDEN = DATA / "dresden"
GAN = DATA / "gan"

# PyWavelets warns that 4 levels on tiny sub-bands see boundary effects; the spec asks for it.
warnings.filterwarnings("ignore", message="Level value of .* is too high")


def tolerance(dtype) -> float:
    """Relative tolerance for comparing a result of ``dtype`` with a float64 reference."""
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-10


def pytest_configure(config):
    # pytest resets warning filters per test; keep the spec's 4 levels on tiny sub-bands quiet there too
    config.addinivalue_line("filterwarnings", "ignore:Level value of .* is too high:UserWarning")
    # attribution caches spectra and digests on disk (fingerprint/spectrum_cache.py): in a folder of
    # this run, not the user's ~/.cache (subprocesses of the CLI tests inherit it); tests of the
    # default location set or unset the variable themselves
    if "GANPRINT_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["GANPRINT_CACHE_DIR"] = _OWN_CACHE[0] = tempfile.mkdtemp(prefix="ganprint-test-cache-")


_OWN_CACHE: list[str | None] = [None]  # the cache folder pytest_configure made, removed at the end


def pytest_unconfigure(config):
    if _OWN_CACHE[0] is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE[0], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("GANPRINT_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow test: set GANPRINT_SLOW=1 to run"))
        if "shared_data" in item.keywords and not DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"shared data not found at {DATA}"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def dresden_files(folder: str = "nat") -> list[Path]:
    return sorted((DRESDEN / folder).glob("*.JPG")) if DRESDEN.is_dir() else []


# --- parallel and serial builds of the CPU kernels -------------------------------------------------
# Every ``prange`` kernel has a serial twin build: a SizedKernel (kernels/_jit.py) runs its
# ``.parallel`` build from ``config.PARALLEL_MIN_SIZE`` elements up, and the DWT
# (kernels/dwt_cpu.py) runs ``_dwt2_level``/``_idwt2_level`` while its lock is free and the
# ``_serial`` ones while another caller holds it. Test inputs are small, so without forcing, the
# twin tests would only ever see the serial builds (stumpy patches its size limits the same way).
CPU_KERNEL_MODULES = (dwt_cpu, estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu)
DWT_BUILDS = {"_dwt2_level": "parallel", "_dwt2_level_serial": "serial",
              "_idwt2_level": "parallel", "_idwt2_level_serial": "serial"}
BUILDS = ("parallel", "serial")


@functools.cache
def sized_kernels() -> dict[str, SizedKernel]:
    """Every SizedKernel of ``kernels/*_cpu.py``, by ``"module.name"`` (e.g. ``"wiener_cpu._apply_wiener"``)."""
    return {f"{mod.__name__.rsplit('.', 1)[1]}.{name}": obj
            for mod in CPU_KERNEL_MODULES for name, obj in vars(mod).items() if isinstance(obj, SizedKernel)}


class BuildSpy:
    """Counts the calls of each build of every CPU kernel: ``calls[(kernel, build)]``.

    ``kernel`` is ``"module.name"`` (``"dwt_cpu._dwt2_level"`` for both DWT forward builds, likewise
    ``"dwt_cpu._idwt2_level"``); ``build`` is ``"parallel"`` or ``"serial"``. ``dwt_blocks`` holds
    the ``nblocks`` argument of every parallel DWT level call.
    """

    def __init__(self):
        self.calls: Counter = Counter()
        self.dwt_blocks: list[int] = []
        self.lock = threading.Lock()  # kernels may be called from several threads at once
        self.build: str | None = None  # the forced build, set by the kernel_build fixture

    def count(self, build: str, kernel: str | None = None) -> int:
        """Calls of ``build`` (of one kernel, or of all)."""
        return sum(n for (k, b), n in self.calls.items() if b == build and kernel in (None, k))

    def kernels_run(self, build: str) -> set[str]:
        return {k for (k, b), n in self.calls.items() if b == build and n}

    def check(self, build: str) -> None:
        """Fail unless some kernel ran ``build`` and none ran the other build."""
        other = BUILDS[1 - BUILDS.index(build)]
        assert self.count(build) > 0, f"no CPU kernel ran its {build} build"
        assert self.count(other) == 0, f"{other} builds ran while {build} was forced: {sorted(self.kernels_run(other))}"


def _counting(fn, spy: BuildSpy, kernel: str, build: str, dwt: bool = False):
    def wrapper(*args):
        with spy.lock:
            spy.calls[(kernel, build)] += 1
            if dwt and build == "parallel":
                spy.dwt_blocks.append(int(args[-2] if kernel.endswith("_idwt2_level") else args[3]))
        return fn(*args)
    return wrapper


@contextlib.contextmanager
def spy_builds():
    """Count the builds the CPU kernels really dispatch to (see :class:`BuildSpy`); nothing is forced."""
    spy = BuildSpy()
    saved = []
    for name, k in sized_kernels().items():
        for build in BUILDS:
            saved.append((k, build, getattr(k, build)))
            setattr(k, build, _counting(getattr(k, build), spy, name, build))
    for attr, build in DWT_BUILDS.items():
        fn = getattr(dwt_cpu, attr)
        saved.append((dwt_cpu, attr, fn))
        setattr(dwt_cpu, attr, _counting(fn, spy, "dwt_cpu." + attr.removesuffix("_serial"), build, dwt=True))
    try:
        yield spy
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)


@contextlib.contextmanager
def forced_build(build: str):
    """Make every CPU kernel run its ``build`` ("parallel" or "serial"), whatever the input size.

    "parallel": ``config.PARALLEL_MIN_SIZE = 0`` (the DWT lock is left free, so the DWT runs its
    parallel levels). "serial": the limit above any input, and this thread holds the DWT lock, so
    every DWT level runs serially. Yields the :class:`BuildSpy` that proves which builds ran.
    """
    if build not in BUILDS:
        raise ValueError(build)
    saved = kernel_config.PARALLEL_MIN_SIZE
    kernel_config.PARALLEL_MIN_SIZE = 0 if build == "parallel" else 1 << 62
    try:
        with spy_builds() as spy, (dwt_cpu._PARALLEL_LOCK if build == "serial" else contextlib.nullcontext()):
            yield spy
    finally:
        kernel_config.PARALLEL_MIN_SIZE = saved


@pytest.fixture(params=BUILDS)
def kernel_build(request):
    """Run the test once with every CPU kernel forced onto its parallel build, once onto its serial
    build; the test errors (at teardown) unless the forced build really ran and the other did not."""
    with forced_build(request.param) as spy:
        spy.build = request.param
        yield spy
    spy.check(request.param)
