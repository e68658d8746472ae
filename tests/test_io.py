"""Tests of fingerprint.io: decoding, refusals, metadata, JPEG quality, paths, cropping, the file loop.

Every file is written in ``tmp_path`` with Pillow, numpy or the small writers below (Pillow cannot
write 16-bit colour PNG or TIFF); the real photos of ../shared/data are only used by the tests
marked ``shared_data``, which skip when the folder is absent.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import pickle
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageFile, features

from fingerprint.errors import InvalidImageError
from fingerprint.io import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageInfo,
    LoadedImage,
    collect_image_paths,
    crop_center,
    file_sha256,
    iter_images,
    jpeg_quality,
    load_image,
)
from fingerprint.io.metadata import IJG_LUMINANCE, ijg_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DRESDEN = DATA / "dresden"
GAN = DATA / "gan"
needs_data = pytest.mark.skipif(not DRESDEN.is_dir(), reason=f"shared data not found at {DATA}")

# ----------------------------------------------------------------------------------------------
# Writers for what Pillow cannot write (before the first test, as in stumpy's naive helpers)
# ----------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_filter_rows(raw: np.ndarray, bpp: int) -> bytes:
    """Filter each row with PNG filter ``row % 5`` (None, Sub, Up, Average, Paeth)."""
    height, n = raw.shape
    out = []
    prev = np.zeros(n, np.int32)
    for i in range(height):
        x = raw[i].astype(np.int32)
        a = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        b = prev
        c = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        kind = i % 5
        if kind == 0:
            f = x
        elif kind == 1:
            f = x - a
        elif kind == 2:
            f = x - b
        elif kind == 3:
            f = x - (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            f = x - np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        out.append(bytes([kind]) + (f % 256).astype(np.uint8).tobytes())
        prev = x
    return b"".join(out)


def png_bytes(arr: np.ndarray, *, size: tuple[int, int] | None = None, idat: bytes | None = None):
    """A PNG of a uint8/uint16 array with 1 to 4 channels; ``size=(w, h)`` overrides the header."""
    arr = np.asarray(arr)
    height, width = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    depth = 8 * arr.dtype.itemsize
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = np.frombuffer(arr.astype(f">u{arr.dtype.itemsize}").tobytes(), np.uint8)
    if idat is None:
        idat = zlib.compress(_png_filter_rows(raw.reshape(height, -1), channels * depth // 8))
    w, h = size or (width, height)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def tiff_bytes(
    arr: np.ndarray, *, byteorder: str = "<", deflate: bool = False, sample_format: int = 1
) -> bytes:
    """A one-strip baseline TIFF (uncompressed or Adobe deflate) of a gray or RGB(A) array."""
    arr = np.asarray(arr)
    height, width = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    bits = 8 * arr.dtype.itemsize
    data = arr.astype(arr.dtype.newbyteorder(byteorder)).tobytes()
    if deflate:
        data = zlib.compress(data)
    e = byteorder
    n_tags = 11
    extra_offset = 8 + 2 + 12 * n_tags + 4
    extra = b""
    if channels > 2:
        bits_entry = (258, 3, channels, extra_offset)
        extra = struct.pack(e + "H" * channels, *([bits] * channels))
    else:
        bits_entry = (258, 3, 1, bits)
    data_offset = extra_offset + len(extra)
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        bits_entry,
        (259, 3, 1, 8 if deflate else 1),
        (262, 3, 1, 2 if channels >= 3 else 1),
        (273, 4, 1, data_offset),
        (277, 3, 1, channels),
        (278, 4, 1, height),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
        (339, 3, 1, sample_format),
    ]
    ifd = struct.pack(e + "H", len(tags))
    for tag, kind, count, value in tags:
        if kind == 3 and count == 1:
            ifd += struct.pack(e + "HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack(e + "HHII", tag, kind, count, value)
    ifd += struct.pack(e + "I", 0)
    order = b"II" if byteorder == "<" else b"MM"
    return order + struct.pack(e + "HI", 42, 8) + ifd + extra + data


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, img: Image.Image, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _jpeg_bytes(shape=(48, 64, 3), **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rng().integers(0, 256, shape, dtype=np.uint8)).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _assert_refused(path: Path, *words: str, **kwargs) -> InvalidImageError:
    with pytest.raises(InvalidImageError) as caught:
        load_image(path, **kwargs)
    text = str(caught.value)
    assert caught.value.path == str(path)
    assert text.startswith(f"{path}: ") and text.count(str(path)) == 1  # named once, first
    assert "\n" not in text and "\r" not in text
    for word in words:
        assert word in text.lower(), text
    return caught.value


# ----------------------------------------------------------------------------------------------
# Formats and modes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (6, 8, 3), (1, 1), (1, 9, 3)])
def test_png_8bit_is_exact(tmp_path, shape):
    a = _rng().integers(0, 256, shape, dtype=np.uint8)
    img, info = load_image(_save(tmp_path / "a.png", Image.fromarray(a)), return_metadata=True)
    assert img.dtype == np.uint8 and img.shape == a.shape
    np.testing.assert_array_equal(img, a)
    assert isinstance(info, ImageInfo)
    assert (info.format, info.width, info.height, info.bit_depth) == ("PNG", shape[1], shape[0], 8)
    assert info.exif_orientation is None and info.make is None and info.model is None


def test_output_is_contiguous_and_read_only(tmp_path):
    a = _rng().integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = load_image(_save(tmp_path / "a.png", Image.fromarray(a)))
    assert img.flags.c_contiguous and not img.flags.writeable
    with pytest.raises(ValueError):
        img[0, 0, 0] = 1


def test_png_16bit_gray_is_exact(tmp_path):
    a = _rng().integers(0, 65536, (9, 11), dtype=np.uint16)
    path = _save(tmp_path / "a.png", Image.fromarray(a))
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == np.uint16 and img.shape == a.shape
    np.testing.assert_array_equal(img, a)
    assert info.bit_depth == 16


@pytest.mark.parametrize("channels", [3, 4])
def test_png_16bit_colour_is_exact(tmp_path, channels):
    # Pillow alone keeps the high byte only; every PNG row filter is used (rows cycle 0..4).
    a = _rng().integers(0, 65536, (11, 13, channels), dtype=np.uint16)
    img, info = load_image(_write(tmp_path / "a.png", png_bytes(a)), return_metadata=True)
    assert img.dtype == np.uint16 and img.shape == (11, 13, 3)
    np.testing.assert_array_equal(img, a[..., :3])
    assert info.bit_depth == 16


def test_png_16bit_gray_alpha_gives_gray(tmp_path):
    a = _rng().integers(0, 65536, (7, 10, 2), dtype=np.uint16)
    img = load_image(_write(tmp_path / "a.png", png_bytes(a)))
    assert img.dtype == np.uint16 and img.shape == (7, 10)
    np.testing.assert_array_equal(img, a[..., 0])


def test_rgba_and_la_drop_alpha(tmp_path):
    a = _rng().integers(0, 256, (5, 6, 4), dtype=np.uint8)
    img = load_image(_save(tmp_path / "rgba.png", Image.fromarray(a, "RGBA")))
    np.testing.assert_array_equal(img, a[..., :3])
    la = Image.fromarray(a[..., :2], "LA")
    img = load_image(_save(tmp_path / "la.png", la))
    assert img.shape == (5, 6)
    np.testing.assert_array_equal(img, a[..., 0])


def test_palette_becomes_rgb(tmp_path):
    idx = _rng().integers(0, 4, (6, 7), dtype=np.uint8)
    palette = np.array([[0, 0, 0], [255, 0, 0], [10, 200, 30], [1, 2, 3]], np.uint8)
    p = Image.fromarray(idx, "L").convert("P")
    p.putpalette(palette.ravel().tolist())
    p.frombytes(idx.tobytes())
    img, info = load_image(_save(tmp_path / "p.png", p), return_metadata=True)
    assert img.dtype == np.uint8 and img.shape == (6, 7, 3)
    np.testing.assert_array_equal(img, palette[idx])
    assert info.mode == "P"


def test_one_bit_becomes_0_255(tmp_path):
    bits = _rng().integers(0, 2, (9, 13)).astype(bool)
    img, info = load_image(
        _save(tmp_path / "b.png", Image.fromarray(bits).convert("1")), return_metadata=True
    )
    assert img.dtype == np.uint8 and img.shape == (9, 13)
    np.testing.assert_array_equal(img, np.where(bits, 255, 0))
    assert info.bit_depth == 1


@pytest.mark.parametrize("compression", [None, "tiff_deflate", "tiff_lzw"])
@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 3)])
def test_tiff_8bit_is_exact(tmp_path, compression, shape):
    a = _rng().integers(0, 256, shape, dtype=np.uint8)
    path = _save(tmp_path / "a.tif", Image.fromarray(a), compression=compression)
    img, info = load_image(path, return_metadata=True)
    assert info.format == "TIFF" and img.dtype == np.uint8
    np.testing.assert_array_equal(img, a)


def test_tiff_16bit_gray_is_exact(tmp_path):
    a = _rng().integers(0, 65536, (7, 5), dtype=np.uint16)
    img = load_image(_save(tmp_path / "a.tif", Image.fromarray(a)))
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, a)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiff_16bit_exact_any_byte_order(tmp_path, byteorder, deflate, channels):
    shape = (8, 12) if channels == 1 else (8, 12, channels)
    a = _rng(channels).integers(0, 65536, shape, dtype=np.uint16)
    path = _write(tmp_path / "a.tif", tiff_bytes(a, byteorder=byteorder, deflate=deflate))
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == np.uint16 and img.dtype.byteorder in "=|"
    np.testing.assert_array_equal(img, a if channels == 1 else a[..., :3])
    assert info.bit_depth == 16


def test_float_tiff_is_refused(tmp_path):
    a = _rng().random((6, 7)).astype(np.float32) * 255
    path = _write(tmp_path / "f.tif", tiff_bytes(a, sample_format=3))
    _assert_refused(path, "floating-point", "not supported")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_nan_or_inf_is_refused(tmp_path, bad):
    a = np.ones((6, 7), np.float32)
    a[2, 3] = bad
    path = _write(tmp_path / "f.tif", tiff_bytes(a, sample_format=3))
    _assert_refused(path, "nan or infinite")


def test_int32_tiff_in_range_becomes_uint16_else_refused(tmp_path):
    a = _rng().integers(0, 65536, (5, 6)).astype(np.int32)
    img, info = load_image(_save(tmp_path / "i.tif", Image.fromarray(a)), return_metadata=True)
    assert img.dtype == np.uint16 and info.bit_depth == 32
    np.testing.assert_array_equal(img, a)
    a[0, 0] = -1
    _assert_refused(_save(tmp_path / "neg.tif", Image.fromarray(a)), "do not fit 16 bits")


@pytest.mark.parametrize("mode_shape", [("RGB", (40, 56, 3)), ("L", (40, 56))])
def test_jpeg_shape_and_dtype(tmp_path, mode_shape):
    mode, shape = mode_shape
    a = _rng().integers(0, 256, shape, dtype=np.uint8)
    path = _save(tmp_path / "a.jpg", Image.fromarray(a), quality=95)
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == np.uint8 and img.shape == shape
    assert info.format == "JPEG" and info.mode == mode and info.bit_depth == 8
    np.testing.assert_array_equal(img, np.asarray(Image.open(path)))  # Pillow's default decoder


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.fromarray(_rng().integers(0, 256, (16, 24, 4), dtype=np.uint8), "CMYK")
    path = _save(tmp_path / "c.jpg", cmyk, quality=95)
    img, info = load_image(path, return_metadata=True)
    assert info.mode == "CMYK" and img.dtype == np.uint8 and img.shape == (16, 24, 3)
    np.testing.assert_array_equal(img, np.asarray(Image.open(path).convert("RGB")))


def test_bmp_is_exact(tmp_path):
    a = _rng().integers(0, 256, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(_save(tmp_path / "a.bmp", Image.fromarray(a))), a)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_lossless_webp_is_exact(tmp_path):
    a = _rng().integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = _save(tmp_path / "a.webp", Image.fromarray(a), lossless=True)
    np.testing.assert_array_equal(load_image(path), a)


def test_content_decides_not_extension(tmp_path):
    a = _rng().integers(0, 256, (4, 5), dtype=np.uint8)
    path = _save(tmp_path / "really_a_png.jpg", Image.fromarray(a), format="PNG")
    img, info = load_image(path, return_metadata=True)
    assert info.format == "PNG"
    np.testing.assert_array_equal(img, a)


def test_multi_page_tiff_gives_first_page(tmp_path):
    first = _rng(1).integers(0, 256, (5, 6), dtype=np.uint8)
    second = _rng(2).integers(0, 256, (5, 6), dtype=np.uint8)
    path = tmp_path / "pages.tif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(second)])
    np.testing.assert_array_equal(load_image(path), first)


# ----------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------


def test_exif_orientation_reported_not_applied(tmp_path):
    a = _rng().integers(0, 256, (32, 48, 3), dtype=np.uint8)  # landscape as stored
    exif = Image.Exif()
    exif[274] = 6
    exif[271] = "  NIKON CORPORATION\x00\x00 "
    exif[272] = "NIKON D70\x00junk"
    path = _save(tmp_path / "o.jpg", Image.fromarray(a), exif=exif, quality=95)
    img, info = load_image(path, return_metadata=True)
    assert img.shape == (32, 48, 3)  # sensor orientation kept
    assert (info.width, info.height) == (48, 32)
    assert info.exif_orientation == 6
    assert info.make == "NIKON CORPORATION"
    assert info.model == "NIKON D70"
    assert info.path == path


def test_exif_in_tiff_is_read(tmp_path):
    exif = Image.Exif()
    exif[274] = 3
    exif[272] = "Model X"
    path = _save(tmp_path / "o.tif", Image.new("RGB", (4, 3)), exif=exif)
    _, info = load_image(path, return_metadata=True)
    assert info.exif_orientation == 3 and info.model == "Model X" and info.make is None


def test_invalid_orientation_is_none(tmp_path):
    exif = Image.Exif()
    exif[274] = 42
    path = _save(tmp_path / "o.jpg", Image.new("RGB", (8, 8)), exif=exif)
    assert load_image(path, return_metadata=True)[1].exif_orientation is None


# ----------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "nope.jpg", "no such file")


def test_directory(tmp_path):
    _assert_refused(tmp_path, "directory")


def test_empty_file(tmp_path):
    _assert_refused(_write(tmp_path / "e.png", b""), "empty")


@pytest.mark.parametrize(
    "content",
    [b"hello, I am text\nnot a JPEG\n", bytes(range(256)) * 4, b"\xff\xd8", b"\x89PNG\r\n\x1a\n"],
)
def test_not_an_image(tmp_path, content):
    err = _assert_refused(_write(tmp_path / "x.jpg", content))
    assert "supported image" in str(err) or "truncated" in str(err) or "corrupt" in str(err)


def test_text_named_jpg_says_unknown_format(tmp_path):
    _assert_refused(_write(tmp_path / "notes.jpg", b"just some text\n" * 20), "unknown format")


def test_unsupported_format_gif(tmp_path):
    path = _save(tmp_path / "a.gif", Image.new("P", (4, 4)))
    _assert_refused(path, "not a supported image")


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.1])
def test_truncated_jpeg(tmp_path, keep):
    data = _jpeg_bytes()
    _assert_refused(_write(tmp_path / "t.jpg", data[: int(len(data) * keep)]), "truncated")


def test_jpeg_without_end_marker(tmp_path):
    data = _jpeg_bytes()
    assert data.endswith(b"\xff\xd9")
    _assert_refused(_write(tmp_path / "t.jpg", data[:-2]), "truncated", "end-of-image")


def test_jpeg_with_trailing_bytes_after_end_marker_is_fine(tmp_path):
    data = _jpeg_bytes()
    img = load_image(_write(tmp_path / "t.jpg", data + b"\x00" * 100 + b"TRAILER"))
    assert img.shape == (48, 64, 3)


_JPEG_VARIANTS = {
    "baseline": {},
    "progressive": {"progressive": True},
    "optimized": {"optimize": True},
    "4:4:4": {"subsampling": 0},
    "4:2:2 q100": {"subsampling": 1, "quality": 100},
    "restart markers": {"restart_marker_blocks": 3},
    "progressive restarts": {"progressive": True, "restart_marker_rows": 1},
    "gray": {"mode": "L"},
    "gray progressive": {"mode": "L", "progressive": True},
    "cmyk": {"mode": "CMYK"},
}


def _jpeg_variant(name: str, shape=(61, 83)) -> bytes:
    kwargs = dict(_JPEG_VARIANTS[name])
    mode = kwargs.pop("mode", "RGB")
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    rgb = np.stack([x * 3, y * 4, (x + y) * 2], -1) + _rng(7).integers(-30, 30, (*shape, 3))
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG", **({"quality": 90} | kwargs))
    return buf.getvalue()


@pytest.mark.parametrize("variant", sorted(_JPEG_VARIANTS))
def test_every_complete_jpeg_variant_loads(tmp_path, variant):
    path = _write(tmp_path / "ok.jpg", _jpeg_variant(variant))
    np.testing.assert_array_equal(load_image(path), np.asarray(Image.open(path).convert(
        "RGB" if variant == "cmyk" else Image.open(path).mode)))


@pytest.mark.parametrize("keep", [0.15, 0.4, 0.7, 0.9, 0.97])
@pytest.mark.parametrize("variant", sorted(_JPEG_VARIANTS))
def test_truncated_jpeg_padded_with_end_marker_is_refused(tmp_path, variant, keep):
    """A JPEG cut short and given an end-of-image marker: Pillow loads it with grey (or blurred)
    rows and no error; the scan walk finds the missing data, whatever the file ends with."""
    data = _jpeg_variant(variant)
    cut = data[: int(len(data) * keep)]
    for ending in (b"\xff\xd9", b"\xff\xd9" + b"\x00" * 64, b"\x00" * 10 + b"\xff\xd9"):
        path = _write(tmp_path / "cut.jpg", cut + ending)
        _assert_refused(path, "truncated")


def test_progressive_jpeg_with_whole_scans_missing_is_refused(tmp_path):
    """Cut exactly before a later scan (a clean scan boundary) and closed: coefficients never refined."""
    data = _jpeg_variant("progressive")
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC4, 0xDA)]
    last_scan = max(i for i in starts if data[i + 1] == 0xDA)
    boundary = max(i for i in starts if i <= last_scan and (data[i + 1] == 0xC4 or i == last_scan))
    _assert_refused(_write(tmp_path / "cut.jpg", data[:boundary] + b"\xff\xd9"), "truncated", "progressive")


def test_jpeg_whose_header_claims_240_megapixels_is_refused_before_decoding(tmp_path):
    """A 4 KB JPEG whose frame header says 15000 x 16000 took 14 GB and two minutes: its scan holds
    data for a few blocks only, so it is refused from the walk, without allocating the image."""
    data = bytearray(_jpeg_bytes(shape=(16, 16, 3)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 15000, 16000)
    assert len(data) < 4096
    path = _write(tmp_path / "bomb.jpg", bytes(data))
    tracemalloc.start()
    try:
        _assert_refused(path, "truncated", max_pixels=300_000_000)  # above the size limit's default
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    _assert_refused(path, "exceeds")  # and the default limit refuses it from the header anyway


def test_corrupt_huffman_data_is_refused(tmp_path):
    data = bytearray(_jpeg_variant("baseline"))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    data[start : start + 40] = b"\xff\x00" * 20  # all-ones bits: no Huffman code of 16 ones
    _assert_refused(_write(tmp_path / "bad.jpg", bytes(data)), "corrupt", "huffman")


def test_missing_restart_marker_is_refused(tmp_path):
    data = _jpeg_variant("restart markers")
    rst = data.index(b"\xff\xd1")
    bad = data[:rst] + b"\xff\xd5" + data[rst + 2 :]  # out of sequence
    _assert_refused(_write(tmp_path / "bad.jpg", bad), "restart")


def test_mpo_first_image_is_walked_not_the_trailer(tmp_path):
    """Data after the first image's end-of-image marker (a second picture, cut) does not matter."""
    first = _jpeg_variant("baseline")
    second = _jpeg_variant("progressive")
    path = _write(tmp_path / "two.jpg", first + second[: len(second) // 2])
    assert load_image(path).shape == (61, 83, 3)


# ----------------------------------------------------------------------------------------------
# Paths that are not regular files
# ----------------------------------------------------------------------------------------------

_NOT_REGULAR = """
import json, os, sys
from fingerprint.io import file_sha256, iter_images, load_image
from fingerprint.errors import InvalidImageError
out = {}
for name, call in (("load_image", lambda p: load_image(p)), ("file_sha256", lambda p: file_sha256(p)),
                   ("iter_images", lambda p: next(iter_images([p], sha256=True)).error.problem)):
    try:
        out[name] = "returned " + str(call(sys.argv[1]))
    except InvalidImageError as err:
        out[name] = "refused " + err.problem
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifo_or_device_is_refused_without_blocking(tmp_path, kind):
    """A FIFO with no writer blocks an ordinary open() forever: each entry point refuses it at once.
    Run in a subprocess with a timeout, so that a regression fails instead of hanging the suite."""
    import json
    import subprocess
    import sys

    if kind == "fifo":
        path = tmp_path / "pipe.png"
        os.mkfifo(path)
    else:
        path = Path(os.devnull)
    proc = subprocess.run([sys.executable, "-c", _NOT_REGULAR, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    word = "fifo" if kind == "fifo" else "device"
    for name in ("load_image", "file_sha256"):
        assert out[name].startswith("refused") and word in out[name].lower(), out
    assert word in out["iter_images"].lower(), out


def test_load_truncated_images_flag_is_never_used(tmp_path, monkeypatch):
    path = _write(tmp_path / "ok.jpg", _jpeg_bytes())
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_image(path)


@pytest.mark.parametrize("cut", [1, 12, 30, 200])
def test_truncated_png(tmp_path, cut):
    data = png_bytes(_rng().integers(0, 256, (40, 40, 3), dtype=np.uint8))
    _assert_refused(_write(tmp_path / "t.png", data[:-cut]), "truncated")


def test_png_crc_error(tmp_path):
    data = bytearray(png_bytes(_rng().integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    data[60] ^= 0x01  # inside the IDAT data
    _assert_refused(_write(tmp_path / "c.png", bytes(data)), "crc")


def test_truncated_tiff(tmp_path):
    a = _rng().integers(0, 256, (30, 40, 3), dtype=np.uint8)
    data = tiff_bytes(a)
    _assert_refused(_write(tmp_path / "t.tif", data[: len(data) // 2]))


def test_png_bomb_refused_from_header(tmp_path):
    # Valid signature + IHDR claiming 200000 x 200000 RGB (120 GB decoded) and a tiny IDAT.
    idat = zlib.compress(b"\x00" * 100)
    path = _write(tmp_path / "bomb.png", png_bytes(np.zeros((1, 1, 3), np.uint8),
                                                   size=(200_000, 200_000), idat=idat))
    tracemalloc.start()
    try:
        err = _assert_refused(path, "exceeds", str(MAX_PIXELS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # nothing was decoded or allocated (the image would be 120 GB)
    assert "200000x200000" in str(err)


def test_max_pixels_is_a_parameter(tmp_path):
    path = _save(tmp_path / "a.png", Image.new("L", (100, 50)))
    assert load_image(path, max_pixels=5000).shape == (50, 100)
    _assert_refused(path, "exceeds", max_pixels=4999)
    with pytest.raises(ValueError):
        load_image(path, max_pixels=0)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_pillow_own_limit_does_not_interfere(tmp_path, monkeypatch, fmt):
    # Pillow would warn above MAX_IMAGE_PIXELS and refuse above twice that; max_pixels decides.
    path = _save(tmp_path / f"a.{fmt.lower()}", Image.new("RGB", (30, 20)), format=fmt)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        assert load_image(path).shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_error_message_is_one_line_even_for_odd_names(tmp_path):
    path = _write(tmp_path / "line\nbreak.jpg", b"not an image")
    with pytest.raises(InvalidImageError) as caught:
        load_image(path)
    assert "\n" not in str(caught.value) and "line\\nbreak.jpg" in str(caught.value)


def test_invalid_image_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_image(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------

_FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path reused: each example overwrites

_VALID_SEEDS = {
    "png": png_bytes(_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)),
    "jpg": _jpeg_bytes((16, 16, 3)),
    "tif": tiff_bytes(_rng(4).integers(0, 65536, (6, 6, 3), dtype=np.uint16)),
}


def _check_loads_or_refuses(path: Path) -> None:
    try:
        img = load_image(path)
    except InvalidImageError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert img.dtype in (np.uint8, np.uint16)
    assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)
    assert img.shape[0] >= 1 and img.shape[1] >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_load_or_raise_invalid_image(tmp_path, data):
    _check_loads_or_refuses(_write(tmp_path / "fuzz.jpg", data))


@settings(max_examples=150, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(
    kind=st.sampled_from(sorted(_VALID_SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 10**6),
)
def test_corrupted_valid_files_load_or_raise_invalid_image(tmp_path, kind, edits, cut):
    data = bytearray(_VALID_SEEDS[kind])
    for pos, value in edits:
        data[pos % len(data)] = value
    data = data[: max(1, len(data) - cut % len(data))] if cut % 3 == 0 else data
    _check_loads_or_refuses(_write(tmp_path / f"fuzz.{kind}", bytes(data)))


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(
    a=hnp.arrays(
        np.uint8,
        st.one_of(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
            st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3)),
        ),
    )
)
def test_random_uint8_png_round_trip(tmp_path, a):
    path = _save(tmp_path / "r.png", Image.fromarray(a))
    np.testing.assert_array_equal(load_image(path), a)


def test_concurrent_loads_match_serial(tmp_path):
    paths = []
    for i in range(8):
        a = _rng(i).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        paths.append(_save(tmp_path / f"{i}.png", Image.fromarray(a)))
        paths.append(_write(tmp_path / f"{i}.tif", tiff_bytes(a.astype(np.uint16) * 257)))
    serial = [load_image(p) for p in paths]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(load_image, paths * 4))
    for i, img in enumerate(parallel):
        np.testing.assert_array_equal(img, serial[i % len(paths)])


# ----------------------------------------------------------------------------------------------
# file_sha256
# ----------------------------------------------------------------------------------------------


def test_file_sha256_matches_hashlib(tmp_path):
    data = _rng().integers(0, 256, 3 * 2**20 + 17, dtype=np.uint8).tobytes()
    path = _write(tmp_path / "big.bin", data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_file_sha256_missing(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        file_sha256(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------
# collect_image_paths
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    for name in ["b.JPG", "a.png", "c.TIFF", "d.webp", "e.bmp", "f.jpeg", "g.tif", "notes.txt",
                 ".hidden.jpg", "sub/h.jpg", "sub/deeper/i.png"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def test_collect_folder_is_sorted_non_recursive_images_only(tree):
    names = [p.name for p in collect_image_paths([str(tree)])]
    assert names == ["a.png", "b.JPG", "c.TIFF", "d.webp", "e.bmp", "f.jpeg", "g.tif"]


def test_collect_explicit_file_kept_whatever_its_extension(tree):
    assert collect_image_paths([tree / "notes.txt"]) == [tree / "notes.txt"]


def test_collect_glob_and_recursive_glob(tree):
    assert [p.name for p in collect_image_paths([str(tree / "[bf].*")])] == ["b.JPG", "f.jpeg"]
    deep = collect_image_paths([str(tree / "**" / "*.*")])
    assert {p.name for p in deep} >= {"h.jpg", "i.png", "a.png"}
    assert "notes.txt" not in {p.name for p in deep}
    assert deep == sorted(deep, key=str)


def test_collect_deduplicates_keeping_first_position(tree):
    got = collect_image_paths([tree / "g.tif", str(tree), str(tree / "./a.png")])
    assert got[0] == tree / "g.tif"
    assert [p.name for p in got].count("g.tif") == 1
    assert [p.name for p in got].count("a.png") == 1
    assert len(got) == 7


def test_collect_errors(tree, tmp_path):
    with pytest.raises(InvalidImageError, match="no such file or folder"):
        collect_image_paths([str(tree / "missing.jpg")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidImageError, match="no images in folder"):
        collect_image_paths([tmp_path / "empty"])
    with pytest.raises(InvalidImageError, match="no image files match"):
        collect_image_paths([str(tree / "*.xyz")])
    with pytest.raises(TypeError):
        collect_image_paths(str(tree))  # a bare string is not a list of items


def test_image_extensions():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


# ----------------------------------------------------------------------------------------------
# crop_center
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("H,W", [(10, 12), (11, 13), (10, 13), (11, 12)])
@pytest.mark.parametrize("h,w", [(4, 6), (5, 7), (10, 12)])
@pytest.mark.parametrize("channels", [0, 3])
def test_crop_center_matches_prnu_python_rule(H, W, h, w, channels):
    shape = (H, W, channels) if channels else (H, W)
    image = np.arange(np.prod(shape)).reshape(shape)
    crop = crop_center(image, (h, w))
    r0, c0 = (H - h) // 2, (W - w) // 2
    assert crop.shape == ((h, w, channels) if channels else (h, w))
    np.testing.assert_array_equal(crop, image[r0 : r0 + h, c0 : c0 + w])


def test_crop_center_too_small_names_sizes():
    with pytest.raises(InvalidImageError) as caught:
        crop_center(np.zeros((100, 80)), (512, 512))
    text = str(caught.value)
    assert "100x80" in text and "512x512" in text and "\n" not in text


def test_crop_center_bad_arguments():
    with pytest.raises(ValueError):
        crop_center(np.zeros((10, 10)), (0, 5))
    with pytest.raises(InvalidImageError):
        crop_center(np.zeros(10), (2, 2))



# ----------------------------------------------------------------------------------------------
# Errors about a file carry its path
# ----------------------------------------------------------------------------------------------


def test_collect_and_hash_errors_carry_the_path(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(InvalidImageError) as caught:
        collect_image_paths([missing])
    assert caught.value.path == str(missing) and str(caught.value) == f"{missing}: no such file or folder"
    with pytest.raises(InvalidImageError) as caught:
        file_sha256(tmp_path)
    assert caught.value.path == str(tmp_path) and caught.value.problem == "is a directory, not a file"


def test_file_errors_survive_pickling_with_their_path(tmp_path):
    """Dask ships a worker's errors back to the client by pickle: class, path and problem stay."""
    path = _write(tmp_path / "e.png", b"")
    with pytest.raises(InvalidImageError) as caught:
        load_image(path)
    back = pickle.loads(pickle.dumps(caught.value))
    assert type(back) is InvalidImageError
    assert (back.path, back.problem, str(back)) == (str(path), caught.value.problem, str(caught.value))


def test_error_at_names_one_file_once():
    err = InvalidImageError("image of 4x4 (HxW) is smaller than the 8x8 crop requested")
    assert err.path is None and str(err) == err.problem
    moved = err.at("a/b.png")
    assert type(moved) is InvalidImageError and moved.path == "a/b.png"
    assert str(moved) == "a/b.png: image of 4x4 (HxW) is smaller than the 8x8 crop requested"
    assert str(moved.at("c.png")) == "c.png: image of 4x4 (HxW) is smaller than the 8x8 crop requested"
    assert str(InvalidImageError("two\nlines", path="x\ry")) == "x\\ry: two\\nlines"


# ----------------------------------------------------------------------------------------------
# JPEG quality
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [1, 5, 10, 25, 49, 50, 51, 60, 75, 85, 90, 95, 99, 100])
def test_ijg_table_is_what_libjpeg_writes(quality):
    """Pillow's encoder is libjpeg: its luminance table at each quality is the oracle."""
    img = Image.open(io.BytesIO(_jpeg_bytes(quality=quality)))
    np.testing.assert_array_equal(ijg_table(quality), img.quantization[0])


@pytest.mark.parametrize("quality", [1, 7, 30, 50, 68, 75, 92, 100])
@pytest.mark.parametrize("mode_shape", [("RGB", (48, 64, 3)), ("L", (48, 64))])
def test_jpeg_quality_of_libjpeg_files_is_exact(tmp_path, quality, mode_shape):
    path = _write(tmp_path / "q.jpg", _jpeg_bytes(mode_shape[1], quality=quality))
    _, info = load_image(path, return_metadata=True)
    assert info.jpeg_quality == quality


def test_jpeg_quality_of_other_tables_is_the_nearest_ijg_quality():
    # A table of about the coarseness of IJG quality 85 (S = 200 - 2 * 85 = 30 %), rounded another
    # way than libjpeg (as camera firmware tables are).
    table = np.maximum(np.round(IJG_LUMINANCE * 0.3 + 0.4), 1)
    assert abs(jpeg_quality(table) - 85) <= 1
    assert jpeg_quality(ijg_table(40, baseline=False)) == 40  # a 16-bit table (entries above 255)
    assert jpeg_quality(ijg_table(3, baseline=False)) == 3


@pytest.mark.parametrize("bad", [[], [1] * 63, [0] * 64, "not a table", [[1] * 8] * 7])
def test_jpeg_quality_of_no_table_is_none(bad):
    assert jpeg_quality(bad) is None


def test_jpeg_quality_is_none_for_other_formats(tmp_path):
    a = _rng().integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for name in ("a.png", "a.tif", "a.bmp"):
        _, info = load_image(_save(tmp_path / name, Image.fromarray(a)), return_metadata=True)
        assert info.jpeg_quality is None, name


# ----------------------------------------------------------------------------------------------
# The file loop
# ----------------------------------------------------------------------------------------------


def test_iter_images_yields_images_and_errors_in_order(tmp_path):
    a = _rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    good = _save(tmp_path / "good.png", Image.fromarray(a))
    small = _save(tmp_path / "small.png", Image.fromarray(a[:20, :20]))
    broken = _write(tmp_path / "broken.png", b"not an image at all")
    missing = tmp_path / "missing.png"
    items = list(iter_images([good, str(small), broken, missing], crop=(32, 30)))
    assert [i.path for i in items] == [good, small, broken, missing]
    assert all(isinstance(i, LoadedImage) for i in items)
    np.testing.assert_array_equal(items[0].image, crop_center(a, (32, 30)))
    assert items[0].error is None and items[0].sha256 is None and not items[0].skipped
    for item, words in zip(items[1:], ["smaller than the 32x30 crop", "not a supported image", "no such file"]):
        assert item.image is None and isinstance(item.error, InvalidImageError)
        text = str(item.error)
        assert item.error.path == str(item.path)
        assert text.startswith(f"{item.path}: ") and text.count(str(item.path)) == 1 and words in text, text


def test_iter_images_without_crop_gives_load_image_pixels(tmp_path):
    a = _rng(2).integers(0, 65536, (20, 24), dtype=np.uint16)
    path = _write(tmp_path / "a.png", png_bytes(a))
    (item,) = iter_images([path])
    np.testing.assert_array_equal(item.image, load_image(path))
    assert item.image.dtype == np.uint16 and not item.image.flags.writeable


def test_iter_images_hashes_and_skips_counted_files(tmp_path):
    a = _rng(3).integers(0, 256, (16, 16), dtype=np.uint8)
    first = _save(tmp_path / "a.png", Image.fromarray(a))
    copy = _write(tmp_path / "copy.png", first.read_bytes())
    other = _save(tmp_path / "b.png", Image.fromarray(255 - a))
    counted: set[str] = set()
    seen = []
    for item in iter_images([first, copy, other], sha256=True, skip=counted):
        seen.append((item.path.name, item.skipped, item.image is not None))
        assert item.sha256 == file_sha256(item.path)
        if item.image is not None:
            counted.add(item.sha256)  # added while iterating: the copy is skipped, not decoded
    assert seen == [("a.png", False, True), ("copy.png", True, False), ("b.png", False, True)]


def test_iter_images_is_lazy_and_refuses_a_bad_crop_at_once(tmp_path):
    def paths():
        yield _save(tmp_path / "a.png", Image.new("L", (8, 8)))
        raise AssertionError("the second path is not asked for before the first image is used")

    it = iter_images(paths())
    assert next(it).image.shape == (8, 8)
    with pytest.raises(ValueError, match="two positive integers"):
        next(iter_images([tmp_path / "a.png"], crop=(0, 8)))


def test_io_package_imports_one_way():
    """Modules of fingerprint.io import only those before them in the package docstring's list."""
    import ast

    import fingerprint.io as package

    order = ["integrity", "metadata", "hashing", "paths", "crop", "jpeg_scan", "tiff", "decode", "images"]
    folder = Path(package.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(order + ["__init__"])
    for k, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        inside = {m.split(".")[2] for m in imported if m.startswith("fingerprint.io.")}
        assert inside <= set(order[:k]), (name, inside)
        assert "fingerprint.io" not in imported, name
        assert len((folder / f"{name}.py").read_text().splitlines()) <= 600, name


# ----------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------


@pytest.mark.shared_data
@needs_data
def test_dresden_jpegs_load_in_sensor_orientation():
    files = sorted((DRESDEN / "nat").glob("*.JPG")) + sorted((DRESDEN / "ff").glob("*.JPG"))[::10]
    assert files
    orientations = set()
    for path in files:
        img, info = load_image(path, return_metadata=True)
        assert img.dtype == np.uint8
        assert img.shape in ((2000, 3008, 3), (2592, 3872, 3)), path
        assert info.make is not None and "NIKON" in info.make.upper()
        assert info.model is not None and info.model.upper().startswith("NIKON D")
        orientations.add(info.exif_orientation)
    assert 6 in orientations  # rotated photos stay landscape: orientation reported, not applied


@pytest.mark.shared_data
@needs_data
def test_gan_pngs_load():
    files = sorted(GAN.glob("*/*/*.png"))[:20]
    assert files
    for path in files:
        img = load_image(path)
        assert img.dtype == np.uint8 and img.shape == (256, 256, 3)


@pytest.mark.shared_data
@needs_data
def test_collect_dresden_folder():
    paths = collect_image_paths([DRESDEN / "nat"])
    assert len(paths) == len(list((DRESDEN / "nat").glob("*.JPG")))
    assert paths == sorted(paths, key=os.fspath)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("compression", [None, "tiff_deflate"])
def test_tiff_orientation_reported_not_applied(tmp_path, orientation, compression):
    # Pillow's TIFF plugin rotates on load; load_image must give the stored pixels back.
    from PIL import TiffImagePlugin

    a = _rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[274] = orientation
    tags[271] = "Scanner Co\x00"
    path = _save(tmp_path / "o.tif", Image.fromarray(a), tiffinfo=tags, compression=compression)
    img, info = load_image(path, return_metadata=True)
    np.testing.assert_array_equal(img, a)
    assert info.exif_orientation == orientation
    assert (info.width, info.height) == (8, 5)
    assert info.make == "Scanner Co"


@pytest.mark.parametrize("orientation", [3, 6])
def test_16bit_colour_tiff_orientation_not_applied(tmp_path, orientation):
    a = _rng().integers(0, 65536, (4, 7, 3), dtype=np.uint16)
    data = bytearray(tiff_bytes(a))
    # turn the PlanarConfiguration entry (284) into an Orientation entry (274) with the value
    entry = data.index(struct.pack("<HHIHH", 284, 3, 1, 1, 0))
    data[entry : entry + 12] = struct.pack("<HHIHH", 274, 3, 1, orientation, 0)
    img, info = load_image(_write(tmp_path / "o.tif", bytes(data)), return_metadata=True)
    assert info.exif_orientation == orientation
    np.testing.assert_array_equal(img, a)
