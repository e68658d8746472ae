"""The JPEG-aware weighting of a camera query residual (``fingerprint.jpeg_residual``).

The vectorised weighting is compared with a plain twin (one 8 x 8 block at a time, the formula of
the module docstring) on random arrays and a real photo, at grid offsets and sizes with partial
blocks; the grid is read from JPEG files (crops move it); and through ``attribute`` a JPEG query's
residual is weighted (the record says so) while a PNG's is not. The block-grid removal of a
generator query (``remove_block_grid``) is compared with its spectral twin (the DFT bins of the
8 x 8-periodic lattice zeroed) and checked for what it promises: no score from any periodic pattern.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.fft
from PIL import Image

from conftest import dresden_files
from fingerprint import build_fingerprint
from fingerprint.attribution import Attributor, attribute
from fingerprint.build import build_reference, default_params
from fingerprint.io import load_image
from fingerprint.io.metadata import ijg_table
from fingerprint.jpeg_residual import BLOCK, JpegGrid, read_jpeg_grid, remove_block_grid, weight_residual
from fingerprint.resample import resample_fingerprint
from fingerprint.residual import extract_residual
from fingerprint.scores import ReferenceSpectrum
from fingerprint.synthetic import make_camera
from fingerprint.transforms import apply_pipeline, image_rng
from kernels.spec import GRAY_WEIGHTS


def plain_weighting(w: np.ndarray, gray: np.ndarray, table, offset=(0, 0)) -> np.ndarray:
    """Reference twin: block by block, ``IDCT(a * DCT(W))``, ``a = min Q / Q`` where
    ``round(DCT(I - 128) / Q) != 0``, else 0; partial blocks left as they are."""
    q = np.asarray(table, dtype=np.float64).reshape(8, 8)
    out = np.array(w, dtype=np.float64)
    for y in range(offset[0], w.shape[0] - 7, 8):
        for x in range(offset[1], w.shape[1] - 7, 8):
            lum = scipy.fft.dctn(gray[y: y + 8, x: x + 8].astype(np.float64) - 128.0, norm="ortho")
            a = np.where(np.rint(lum / q) != 0, q.min() / q, 0.0)
            out[y: y + 8, x: x + 8] = scipy.fft.idctn(a * scipy.fft.dctn(out[y: y + 8, x: x + 8], norm="ortho"),
                                                      norm="ortho")
    return out


def to_gray(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32) if image.ndim == 3 else image.astype(np.float32)


@pytest.mark.parametrize("shape,offset,quality", [((64, 64), (0, 0), 75), ((61, 83), (3, 5), 50),
                                                  ((130, 97), (7, 1), 92), ((16, 9), (0, 0), 30)])
def test_weighting_matches_the_plain_twin_on_random_arrays(rng, shape, offset, quality):
    gray = np.clip(128 + 60 * rng.standard_normal(shape), 0, 255).astype(np.float32)
    gray[: shape[0] // 2] = np.round(gray[: shape[0] // 2] / 16) * 16  # some blocks with zeroed coefficients
    w = rng.standard_normal(shape).astype(np.float32)
    table = ijg_table(quality)
    got = weight_residual(w, gray, JpegGrid(table, offset))
    want = plain_weighting(w, gray, table, offset)
    assert got.dtype == np.float32 and got.shape == shape
    assert np.max(np.abs(got - want)) <= 2e-5 * np.max(np.abs(w))
    assert not np.allclose(got, w)  # it did weight something


@pytest.mark.shared_data
def test_weighting_matches_the_plain_twin_on_a_real_photo():
    path = dresden_files()[0]
    image = np.ascontiguousarray(load_image(path)[:600, :904])  # 75 x 113 blocks, the file's own grid
    grid = read_jpeg_grid(path)
    assert grid is not None
    gray = to_gray(image)
    w = extract_residual(image)
    got = weight_residual(w, gray, grid)
    want = plain_weighting(w, gray, grid.table)
    assert np.max(np.abs(got - want)) <= 2e-5 * np.max(np.abs(w))


def test_a_flat_block_gives_zero_and_partial_blocks_are_kept(rng):
    gray = np.full((20, 27), 128.0, np.float32)  # every coefficient of every block is 0
    w = rng.standard_normal(gray.shape).astype(np.float32)
    out = weight_residual(w, gray, JpegGrid([4] * 64))
    assert np.all(out[:16, :24] == 0)
    assert np.array_equal(out[16:], w[16:]) and np.array_equal(out[:, 24:], w[:, 24:])


def test_unit_table_on_texture_keeps_the_residual(rng):
    # quality 100 (every Q = 1) and coefficients far from 0: weight 1 everywhere, the residual unchanged
    gray = (128 + 100 * np.sign(rng.standard_normal((48, 48)))).astype(np.float32)
    lum = scipy.fft.dctn(gray.reshape(6, 8, 6, 8).swapaxes(1, 2) - 128, axes=(2, 3), norm="ortho")
    keep = np.abs(lum) >= 0.5
    w = rng.standard_normal(gray.shape).astype(np.float32)
    out = weight_residual(w, gray, JpegGrid([1] * 64))
    if keep.all():
        assert np.allclose(out, w, atol=1e-5)
    else:  # the few coefficients that round to 0 are removed, nothing else changes
        assert np.allclose(out, plain_weighting(w, gray, [1] * 64), atol=1e-5)


def test_weighting_is_linear_in_the_residual(rng):
    gray = rng.uniform(0, 255, (40, 48)).astype(np.float32)
    a, b = (rng.standard_normal(gray.shape).astype(np.float32) for _ in range(2))
    grid = JpegGrid(ijg_table(70), (2, 6))
    lhs = weight_residual(2 * a - b, gray, grid)
    rhs = 2 * weight_residual(a, gray, grid) - weight_residual(b, gray, grid)
    assert np.allclose(lhs, rhs, atol=1e-4)


def test_a_crop_moves_the_grid(rng):
    gray = rng.uniform(0, 255, (64, 72)).astype(np.float32)
    w = rng.standard_normal(gray.shape).astype(np.float32)
    grid = JpegGrid(ijg_table(60))
    whole = weight_residual(w, gray, grid)
    top, left = 3, 13
    part = weight_residual(w[top:, left:], gray[top:, left:], grid.cropped(top, left))
    assert grid.cropped(top, left).offset == (5, 3)
    # the crop's whole blocks are the image's blocks from row 8, column 16 on
    assert np.allclose(part[5:5 + 48, 3:3 + 48], whole[8:56, 16:64], atol=1e-5)


def test_grid_values_are_checked():
    with pytest.raises(ValueError, match="64 positive"):
        JpegGrid([1] * 63)
    with pytest.raises(ValueError, match="64 positive"):
        JpegGrid([0] * 64)
    with pytest.raises(ValueError, match="same 2-D shape"):
        weight_residual(np.zeros((8, 8), np.float32), np.zeros((8, 9)), JpegGrid([1] * 64))


def test_read_jpeg_grid(tmp_path, rng):
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    jpg, png, junk = tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "junk.jpg"
    Image.fromarray(image).save(jpg, quality=75)
    Image.fromarray(image).save(png)
    junk.write_bytes(b"not an image")
    grid = read_jpeg_grid(jpg)
    assert grid.quality == 75 and grid.offset == (0, 0) and grid.table == tuple(ijg_table(75))
    assert read_jpeg_grid(jpg, (40, 64)).offset == ((0 - 5) % 8, (0 - 3) % 8)  # crop_center: rows 5.., columns 3..
    assert read_jpeg_grid(jpg, (60, 64)) is None  # the crop does not fit (the crop itself reports it)
    assert read_jpeg_grid(png) is None and read_jpeg_grid(junk) is None and read_jpeg_grid(tmp_path / "no.jpg") is None


# --- through attribute ----------------------------------------------------------------------------
SHAPE = (192, 256)


@pytest.fixture(scope="module")
def cams():
    return [make_camera(f"cam{i}", 700 + i, shape=SHAPE, prnu_std=0.01) for i in range(2)]


@pytest.fixture(scope="module")
def library(cams, tmp_path_factory):
    path = tmp_path_factory.mktemp("jpeg") / "lib.h5"
    for c in cams:
        folder = path.parent / c.name
        folder.mkdir()
        for i, im in enumerate(c.images(8, seed=1, flat=True)):
            Image.fromarray(im).save(folder / f"ff{i}.png")
        build_reference(path, c.name, "camera", [str(folder / "*.png")], progress=False)
    return path


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_attribute_weights_a_jpeg_query_and_says_so(cams, library, tmp_path):
    photo = next(cams[0].images(1, seed=9))
    resized = apply_pipeline(photo, "resize:0.7:lanczos", image_rng(3, 0)).image
    jpg, png = tmp_path / "q.jpg", tmp_path / "q.png"
    jpg.write_bytes(jpeg_bytes(resized, 70))
    Image.fromarray(load_image(jpg)).save(png)  # the same pixels, no quantisation table
    (a,), (b,) = attribute(jpg, library), attribute(png, library)
    assert "JPEG quantisation table (quality 70)" in a.query_residual
    assert b.query_residual.startswith("plain")
    assert a.as_dict()["query_residual"] == a.query_residual
    sa, sb = a.scores["cam0"], b.scores["cam0"]
    assert sa.pce != sb.pce  # the JPEG's residual was weighted, the PNG's was not
    # the weighted PCE is the Attributor's score with the grid passed by hand
    refs = [(c.name, "camera", build_fingerprint(list(c.images(8, seed=1, flat=True)), "camera"),
             default_params("camera")) for c in cams]
    pixels = load_image(jpg)
    by_hand = Attributor(refs, backend="cpu").score(pixels, "q", jpeg=read_jpeg_grid(jpg)).scores["cam0"]
    assert by_hand.pce == pytest.approx(sa.pce, rel=1e-3)
    assert json.loads(json.dumps(a.as_dict()))["query_residual"]


def test_weighting_raises_the_pce_of_a_resized_then_compressed_query(cams):
    # six photos of a synthetic camera resized to 0.6 then saved at quality 70, scored against the
    # camera's fingerprint resampled to the query's grid: the weighted residual keeps more of the PRNU
    K = build_fingerprint(list(cams[1].images(8, seed=1, flat=True)), "camera")
    gains = []
    for seed in range(6):
        photo = next(cams[1].images(1, seed=20 + seed))
        t = apply_pipeline(photo, "resize:0.6:lanczos+jpeg:70", image_rng(4, seed))
        h, w = t.image.shape[:2]
        ref = ReferenceSpectrum(resample_fingerprint(K, (h / K.shape[0], w / K.shape[1]), (h, w)))
        gray, residual = to_gray(t.image), extract_residual(t.image)
        plain = ref.pce(residual * gray, search="aligned").pce
        weighted = ref.pce(weight_residual(residual, gray, JpegGrid(t.quantization[0])) * gray, search="aligned").pce
        gains.append(weighted / plain)
    # a PCE is one draw of a noisy statistic: the gain is asked of most photos and of their geometric mean
    assert sum(g > 1.0 for g in gains) >= 4 and np.exp(np.mean(np.log(gains))) > 1.3, gains


# ------------------------------------------------------------------ block grid of generator queries
def _lattice_twin(r: np.ndarray, period: int) -> np.ndarray:
    """Plain twin of ``remove_block_grid`` for sides that are multiples of ``period``: a
    ``period``-periodic pattern has its spectrum on the bins ``(u, v)``, ``u`` a multiple of
    ``H / period`` and ``v`` of ``W / period``; zero them (DC included)."""
    f = np.fft.fft2(np.asarray(r, np.float64), axes=(-2, -1))
    H, W = r.shape[-2:]
    f[..., :: H // period, :: W // period] = 0
    return np.fft.ifft2(f, axes=(-2, -1)).real


@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 256, 192), (3, 96, 256)])
def test_block_grid_removal_matches_its_spectral_twin(rng, shape):
    r = rng.normal(size=shape).astype(np.float32)
    r += np.tile(rng.normal(size=(shape[0], BLOCK, BLOCK)), (1, shape[1] // BLOCK, shape[2] // BLOCK))  # a grid
    np.testing.assert_allclose(remove_block_grid(r), _lattice_twin(r, BLOCK), atol=2e-5)


@pytest.mark.shared_data
def test_block_grid_removal_matches_its_twin_on_a_real_jpeg():
    x = load_image(dresden_files("nat")[0])[:256, :320]
    r = extract_residual(x, 2.0).astype(np.float32)
    np.testing.assert_allclose(remove_block_grid(r), _lattice_twin(r, BLOCK), atol=2e-5)


@pytest.mark.parametrize("shape", [(2, 61, 75), (37, 203)])
def test_no_periodic_pattern_scores_after_block_grid_removal(rng, shape):
    """At any size (partial blocks) and any shift, a period-8 pattern has zero inner product with
    the cleaned residual; a residual with no periodic part comes back as it was."""
    r = rng.normal(size=shape).astype(np.float32)
    out = remove_block_grid(r)
    assert out.shape == r.shape and out.dtype == np.float32
    H, W = shape[-2:]
    for dy, dx in ((0, 0), (3, 5), (7, 1)):
        p = np.tile(rng.normal(size=(BLOCK, BLOCK)), (H // BLOCK + 2, W // BLOCK + 2))[dy: dy + H, dx: dx + W]
        assert abs(float((out * p).sum())) < 1e-3 * float(np.abs(r).sum())
        assert abs(float((r * p).sum())) > 10 * abs(float((out * p).sum()))  # it did score before
    np.testing.assert_allclose(remove_block_grid(out), out, atol=1e-5)


def test_block_grid_removal_checks_its_input():
    with pytest.raises(ValueError, match="residual"):
        remove_block_grid(np.zeros((2, 3, 4, 5)))
