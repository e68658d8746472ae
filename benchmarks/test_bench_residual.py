"""pytest-benchmark cases: each residual kernel and the whole residual at 512x512, 6 MP and 12 MP.

    .venv/bin/pytest benchmarks/test_bench_residual.py --benchmark-only [-k 512]

Every case runs once before timing (JIT compilation and FFT plans are not timed). The side-by-side
table against the plain float64 implementation is ``ganprint bench`` (``make bench``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fingerprint.residual import extract_noise, extract_residual, pad_amounts
from kernels import dwt_cpu, spectral_cpu, wiener_cpu

SIZES = {"512": (512, 512), "6MP": (2000, 3008), "12MP": (3000, 4000)}


def _image(shape):
    rng = np.random.default_rng(0)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
    return np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=list(SIZES))
def image(request):
    return _image(SIZES[request.param])


def _warm(benchmark, fn, *args):
    fn(*args)
    return benchmark(fn, *args)


def test_residual_rgb(benchmark, image):
    _warm(benchmark, extract_residual, image)


def test_noise_per_channel(benchmark, image):
    _warm(benchmark, extract_noise, image, 3.0)


def test_dwt_forward_4_levels(benchmark, image):
    h, w = image.shape[:2]
    x = np.zeros((h + sum(pad_amounts(h, 4)), w + sum(pad_amounts(w, 4))), np.float32)
    x[:h, :w] = image[..., 1]
    _warm(benchmark, dwt_cpu.wavedec2, x, 4)


def test_dwt_inverse_4_levels(benchmark, image):
    h, w = image.shape[:2]
    x = np.zeros((h + sum(pad_amounts(h, 4)), w + sum(pad_amounts(w, 4))), np.float32)
    coeffs = dwt_cpu.wavedec2(x, 4)
    _warm(benchmark, dwt_cpu.waverec2, coeffs)


def test_local_wiener_level1_subband(benchmark, image):
    h, w = image.shape[:2]
    d = np.random.default_rng(1).normal(0, 3, (h // 2, w // 2)).astype(np.float32)
    _warm(benchmark, wiener_cpu.local_wiener, d, 4.0)


def test_zero_mean_total(benchmark, image):
    w = np.random.default_rng(2).normal(0, 3, image.shape[:2]).astype(np.float32)
    _warm(benchmark, spectral_cpu.zero_mean_total, w)


def test_wiener_dft(benchmark, image):
    w = np.random.default_rng(3).normal(0, 3, image.shape[:2]).astype(np.float32)
    _warm(benchmark, spectral_cpu.wiener_dft, w, 3.0)
