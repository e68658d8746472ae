"""Tests of ``fingerprint.synthetic``: the demo's deterministic camera and generator simulators."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import naive
from fingerprint import synthetic
from fingerprint.synthetic import (
    ARCHITECTURES,
    SimulatedCamera,
    SimulatedGenerator,
    flat_field,
    make_camera,
    make_generator,
    natural_content,
)
from fingerprint.synthetic import camera, generator, scene
from kernels.spec import GRAY_WEIGHTS, MIN_SIZE

N_GEN = 20  # images per generator in the statistical tests


def naive_highpass_gray(image: np.ndarray) -> np.ndarray:
    """A simple high-pass residual: gray image minus its Gaussian blur (sigma 1), float64."""
    x = naive.rgb2gray(image)
    return x - ndimage.gaussian_filter(x, 1.0)


def naive_prnu_residual(image: np.ndarray) -> np.ndarray:
    """Gray Binghamton ``noise_extract`` residual (sigma 3, 4 levels) of an RGB uint8 image."""
    x = image.astype(np.float64)
    return naive.rgb2gray(np.stack([naive.noise_extract(x[..., c], 3.0, 4) for c in range(3)], axis=-1))


@pytest.fixture(scope="module")
def generated() -> dict[tuple[str, int], np.ndarray]:
    """High-pass residuals of N_GEN images of seeds 1 and 2 of every architecture."""
    out = {}
    for arch in ARCHITECTURES:
        for seed in (1, 2):
            gen = make_generator(f"{arch}-{seed}", arch, seed)
            out[arch, seed] = np.stack([naive_highpass_gray(im) for im in gen.generate(N_GEN, seed=0)])
    return out


# --- scenes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (37, 81)])
def test_natural_content_range_and_determinism(shape):
    a = natural_content(shape, 5)
    assert a.shape == shape + (3,) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(a, natural_content(shape, 5))
    assert not np.array_equal(a, natural_content(shape, 6))
    assert a.std() > 0.05  # real content, not a flat field


def test_natural_content_generator_and_gray():
    a = natural_content((32, 32), np.random.default_rng(3))
    b = natural_content((32, 32), np.random.default_rng(3))
    assert np.array_equal(a, b)
    g = natural_content((32, 32), 3, channels=1)
    assert g.shape == (32, 32, 1)
    with pytest.raises(ValueError, match="channels"):
        natural_content((32, 32), 3, channels=2)
    with pytest.raises(ValueError, match="shape"):
        natural_content((4, 32), 3)
    with pytest.raises(ValueError, match="non-negative"):
        natural_content((32, 32), -1)


def test_natural_content_spectrum_falls_off():
    """Natural scenes have most energy at low frequencies (roughly 1/f amplitude)."""
    y = naive.rgb2gray(natural_content((128, 128), 11))
    a = np.abs(np.fft.fft2(y - y.mean()))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij"))
    low = a[(f > 0.02) & (f < 0.05)].mean()
    high = a[(f > 0.3) & (f < 0.45)].mean()
    assert low > 10 * high


@pytest.mark.parametrize("draw", [natural_content, flat_field])
def test_gray_scenes_use_the_spec_gray_weights(draw):
    """``channels=1`` is the RGB scene weighted by ``kernels.spec.GRAY_WEIGHTS`` (up to float32 rounding)."""
    rgb = draw((40, 24), 8).astype(np.float64)
    gray = draw((40, 24), 8, channels=1)
    assert gray.shape == (40, 24, 1) and gray.dtype == np.float32
    np.testing.assert_allclose(gray[..., 0], rgb @ np.array(GRAY_WEIGHTS), rtol=0, atol=2e-7)
    # and not some other plausible weighting (equal weights, ITU-R BT.709)
    for other in ([1 / 3, 1 / 3, 1 / 3], [0.2126, 0.7152, 0.0722]):
        assert np.abs(gray[..., 0] - rgb @ np.array(other)).max() > 1e-3


def test_flat_field_is_bright_and_smooth():
    f = flat_field((64, 64), 2)
    assert f.shape == (64, 64, 3) and f.dtype == np.float32
    assert 0.3 < f.min() and f.max() < 0.95
    assert np.abs(naive_highpass_gray(f)).max() < 5e-3  # no edges, no texture (about 1 gray level)
    assert np.array_equal(f, flat_field((64, 64), 2))
    assert not np.array_equal(f, flat_field((64, 64), 3))


# --- cameras ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prnu_std", [0.005, 0.01, 0.02])
def test_prnu_statistics(prnu_std):
    cam = make_camera("c", 4, shape=(128, 96), prnu_std=prnu_std)
    k = cam.K
    assert k.shape == (128, 96) and k.dtype == np.float32
    assert abs(float(k.mean())) < 0.05 * prnu_std
    assert abs(float(k.std()) - prnu_std) < 0.2 * prnu_std
    assert not k.flags.writeable
    # mostly white: neighbour correlation small but present
    rho = np.corrcoef(k[:, :-1].ravel(), k[:, 1:].ravel())[0, 1]
    assert 0.0 < rho < 0.3


def test_prnu_is_a_function_of_the_seed():
    a, b = make_camera("a", 1, shape=(32, 32)), make_camera("b", 2, shape=(32, 32))
    assert np.array_equal(a.K, make_camera("a2", 1, shape=(32, 32)).K)
    assert not np.allclose(a.K, b.K)
    assert abs(naive.ncc(a.K, b.K)) < 0.1


def test_camera_validation():
    with pytest.raises(ValueError, match="prnu_std"):
        make_camera("c", 1, prnu_std=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        make_camera("c", -3)
    with pytest.raises(ValueError, match="name"):
        SimulatedCamera(name="", seed=1)
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE} x {MIN_SIZE}"):
        make_camera("c", 1, shape=(MIN_SIZE - 1, 32))  # smaller than the residual accepts
    assert make_camera("c", 1, shape=(MIN_SIZE, MIN_SIZE)).K.shape == (MIN_SIZE, MIN_SIZE)
    cam = make_camera("c", 1, shape=(32, 32))
    with pytest.raises(ValueError, match="shape"):
        cam.capture(np.zeros((16, 16, 3)), rng=0)
    with pytest.raises(ValueError, match="jpeg_quality"):
        cam.capture(np.zeros((32, 32, 3)), rng=0, jpeg_quality=0)


def test_capture_dtype_shape_and_determinism():
    cam = make_camera("c", 7, shape=(48, 64))
    frames = list(cam.images(3, seed=1))
    assert len(frames) == 3
    for fr in frames:
        assert fr.shape == (48, 64, 3) and fr.dtype == np.uint8
    again = list(cam.images(3, seed=1))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert not np.array_equal(frames[0], next(cam.images(1, seed=2)))
    assert not np.array_equal(frames[0], frames[1])
    # frame i does not depend on how many frames were asked for
    assert np.array_equal(frames[1], list(cam.images(2, seed=1))[1])
    # gray content is accepted and repeated over the channels
    gray = cam.capture(np.full((48, 64), 0.5), rng=np.random.default_rng(0))
    assert gray.shape == (48, 64, 3)


def test_capture_jpeg_path():
    cam = make_camera("c", 7, shape=(64, 64))
    raw = next(cam.images(1, seed=3))
    jpg = next(cam.images(1, seed=3, jpeg_quality=75))
    assert jpg.shape == raw.shape and jpg.dtype == np.uint8
    assert not np.array_equal(raw, jpg)
    assert np.abs(raw.astype(int) - jpg.astype(int)).mean() < 6  # same picture, compressed
    assert np.array_equal(jpg, next(cam.images(1, seed=3, jpeg_quality=75)))


def test_flat_frames_are_bright_and_unsaturated():
    cam = make_camera("c", 1, shape=(64, 64))
    for fr in cam.images(3, seed=0, flat=True):
        assert 90 < fr.mean() < 245 and fr.max() < 255


def test_prnu_is_detectable_in_flat_fields():
    """The averaged residual of 10 flat frames correlates with the camera's own K, not another's."""
    cam_a = make_camera("a", 10, shape=(128, 128))
    cam_b = make_camera("b", 11, shape=(128, 128))
    residual = np.mean([naive_prnu_residual(fr) for fr in cam_a.images(10, seed=0, flat=True)], axis=0)
    own = naive.ncc(residual, cam_a.K)
    other = naive.ncc(residual, cam_b.K)
    assert own > 0.3
    assert abs(other) < 0.05
    # and a single natural photo still carries it (weaker, with content in the way)
    photo = next(cam_a.images(1, seed=5))
    w = naive.residual(photo)
    i_k = naive.rgb2gray(photo) * cam_a.K
    assert naive.ncc(w, i_k) > 5 * abs(naive.ncc(w, naive.rgb2gray(photo) * cam_b.K)) + 0.01


# --- generators ---------------------------------------------------------------------------------------
def test_generator_validation():
    with pytest.raises(ValueError, match="bilinear_conv, nearest_conv, pixel_shuffle, transposed_conv"):
        make_generator("g", "deconv", 1)
    with pytest.raises(ValueError, match="out_size"):
        make_generator("g", "nearest_conv", 1, out_size=102)
    with pytest.raises(ValueError, match="non-negative"):
        make_generator("g", "nearest_conv", -1)
    with pytest.raises(ValueError, match="jpeg_quality"):
        make_generator("g", "nearest_conv", 1, out_size=64).generate(1, seed=0, jpeg_quality=101)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_generator_determinism(arch):
    gen = make_generator("g", arch, 3, out_size=64)
    a = gen.generate(3, seed=0)
    assert len(a) == 3 and all(im.shape == (64, 64, 3) and im.dtype == np.uint8 for im in a)
    b = SimulatedGenerator(name="other name", architecture=arch, seed=3, out_size=64).generate(3, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], gen.generate(1, seed=1)[0])
    assert not np.array_equal(a[0], make_generator("g", arch, 4, out_size=64).generate(1, seed=0)[0])
    # image i does not depend on n or on the batch size
    assert np.array_equal(a[2], list(gen.images(5, seed=0, batch_size=2))[2])
    assert a[0].std() > 10  # a picture, not a flat field


def test_generator_jpeg_path():
    gen = make_generator("g", "pixel_shuffle", 1, out_size=64)
    raw, jpg = gen.generate(1, seed=0)[0], gen.generate(1, seed=0, jpeg_quality=80)[0]
    assert jpg.shape == raw.shape and not np.array_equal(raw, jpg)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_generator_spectral_peaks(generated, arch):
    """Mean DFT magnitude of the residuals peaks at the up-sampling frequencies."""
    r = generated[arch, 1]
    n = r.shape[-1]
    spec = np.abs(np.fft.fft2(r)).mean(axis=0)
    median = np.median(spec)
    half = max(spec[0, n // 2], spec[n // 2, 0], spec[n // 2, n // 2])
    assert half > 8 * median
    if arch in ("transposed_conv", "pixel_shuffle"):  # zero insertion: every stage shows
        quarter = max(spec[0, n // 4], spec[n // 4, 0], spec[n // 4, n // 4])
        assert quarter > 8 * median


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_generator_fingerprints_are_distinct(generated, arch):
    """Two halves of one generator agree; two seeds of one architecture do not."""
    r1, r2 = generated[arch, 1], generated[arch, 2]
    h = N_GEN // 2
    same = naive.ncc(r1[:h].mean(0), r1[h:].mean(0))
    cross = naive.ncc(r1.mean(0), r2.mean(0))
    assert same > 0.4
    assert abs(cross) < 0.2
    assert same > abs(cross) + 0.3


def test_generators_of_different_architectures_are_distinct(generated):
    fps = {a: generated[a, 1].mean(0) for a in ARCHITECTURES}
    for i, a in enumerate(ARCHITECTURES):
        for b in ARCHITECTURES[i + 1 :]:
            assert abs(naive.ncc(fps[a], fps[b])) < 0.2


def test_public_api():
    assert set(synthetic.__all__) == {
        "ARCHITECTURES",
        "SimulatedCamera",
        "SimulatedGenerator",
        "flat_field",
        "make_camera",
        "make_generator",
        "natural_content",
    }


def test_package_re_exports_its_modules():
    """The package ``__all__`` is exactly the union of the public names of its three modules."""
    modules = (scene, camera, generator)
    names = [name for module in modules for name in module.__all__]
    assert sorted(names) == sorted(synthetic.__all__)
    for module in modules:
        for name in module.__all__:
            assert getattr(synthetic, name) is getattr(module, name)
