"""TIFF layouts read exactly (fingerprint.io.tiff): every layout against the same pixels stored as an 8-bit PNG.

Each test writes one layout with tifffile from pixels that are also saved as an 8-bit PNG, loads
both with ``load_image`` and compares them, scaled where the depth differs (16 bits: x 257,
12 bits: x 16, 4 bits: / 17). Before tifffile read every TIFF, Pillow read 16-bit planar RGB as
garbage, did not invert 16-bit WhiteIsZero, cut 16-bit CMYK to 8 bits, read int8 -1 as 255 and
called 12-bit files 16-bit: those tests failed.
"""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest
import tifffile
from PIL import Image

from fingerprint.errors import InvalidImageError
from fingerprint.io import load_image

H, W = 21, 34  # odd sizes: strips and tiles that do not divide the image


def _pixels(channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (H, W) if channels == 1 else (H, W, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _png_reference(tmp_path, a8: np.ndarray) -> np.ndarray:
    """The pixels of ``a8`` as load_image reads them from an 8-bit PNG."""
    path = tmp_path / "ref.png"
    Image.fromarray(a8).save(path)
    return load_image(path)


def _tiff(tmp_path, data: np.ndarray, name: str = "a.tif", **kwargs):
    path = tmp_path / name
    tifffile.imwrite(path, data, **kwargs)
    return path


def _refused(path, *words: str, **kwargs) -> str:
    with pytest.raises(InvalidImageError) as caught:
        load_image(path, **kwargs)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    for word in words:
        assert word in text.lower(), text
    return text


# ----------------------------------------------------------------------------------------------
# Colour and gray layouts, compared with the 8-bit PNG
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "packbits"])
@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("bits", [8, 16])
def test_rgb_any_planar_configuration_matches_png(tmp_path, bits, planar, compression):
    a8 = _pixels(3)
    ref = _png_reference(tmp_path, a8)
    data = a8 if bits == 8 else a8.astype(np.uint16) * 257
    stored = np.moveaxis(data, -1, 0) if planar == "separate" else data
    path = _tiff(tmp_path, stored, photometric="rgb", planarconfig=planar, compression=compression, rowsperstrip=5)
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == (np.uint8 if bits == 8 else np.uint16) and info.bit_depth == bits
    np.testing.assert_array_equal(img, ref if bits == 8 else ref.astype(np.uint16) * 257)


@pytest.mark.parametrize("layout", ["tiles", "predictor", "big-endian", "alpha"])
def test_16bit_rgb_other_layouts_match_png(tmp_path, layout):
    a8 = _pixels(3)
    ref = _png_reference(tmp_path, a8).astype(np.uint16) * 257
    data = a8.astype(np.uint16) * 257
    kwargs = {"photometric": "rgb"}
    if layout == "tiles":
        data = np.pad(data, ((0, 32 - H), (0, 48 - W), (0, 0)))
        ref = np.pad(ref, ((0, 32 - H), (0, 48 - W), (0, 0)))
        kwargs.update(tile=(16, 16))
    elif layout == "predictor":
        kwargs.update(compression="zlib", predictor=True)
    elif layout == "big-endian":
        kwargs.update(byteorder=">", planarconfig="separate")
        data = np.moveaxis(data, -1, 0)
    else:
        data = np.concatenate([data, np.full((H, W, 1), 1234, np.uint16)], axis=2)
        kwargs.update(extrasamples=["unassalpha"])
    img = load_image(_tiff(tmp_path, data, **kwargs))
    assert img.dtype == np.uint16 and img.dtype.byteorder in "=|"
    np.testing.assert_array_equal(img, ref)


@pytest.mark.parametrize("bits", [8, 16])
def test_white_is_zero_is_inverted(tmp_path, bits):
    a8 = _pixels(1)
    ref = _png_reference(tmp_path, a8)
    full = 255 if bits == 8 else 65535
    data = a8 if bits == 8 else a8.astype(np.uint16) * 257
    path = _tiff(tmp_path, (full - data.astype(np.int64)).astype(data.dtype), photometric="miniswhite")
    img, info = load_image(path, return_metadata=True)
    assert info.bit_depth == bits
    np.testing.assert_array_equal(img, ref if bits == 8 else ref.astype(np.uint16) * 257)


def test_12bit_keeps_its_values_and_says_12(tmp_path):
    a8 = _pixels(1)
    ref = _png_reference(tmp_path, a8)
    path = _tiff(tmp_path, a8.astype(np.uint16) * 16, photometric="minisblack", bitspersample=12)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].bitspersample == 12  # really stored as 12-bit samples
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == np.uint16 and info.bit_depth == 12 and int(img.max()) < 4096
    np.testing.assert_array_equal(img, ref.astype(np.uint16) * 16)


def test_12bit_white_is_zero_inverts_within_12_bits(tmp_path):
    a8 = _pixels(1)
    ref = _png_reference(tmp_path, a8)
    path = _tiff(tmp_path, 4095 - a8.astype(np.uint16) * 16, photometric="miniswhite", bitspersample=12)
    np.testing.assert_array_equal(load_image(path), ref.astype(np.uint16) * 16)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_low_bit_gray_is_scaled_to_8_bits_like_png(tmp_path, bits):
    levels = (1 << bits) - 1
    stored = _pixels(1) % (levels + 1)
    a8 = (stored.astype(np.int64) * 255 // levels).astype(np.uint8)  # 1 bit: 0/255, 2: x85, 4: x17
    ref = _png_reference(tmp_path, a8)
    data = stored.astype(bool) if bits == 1 else stored
    path = _tiff(tmp_path, data, photometric="minisblack", **({} if bits == 1 else {"bitspersample": bits}))
    img, info = load_image(path, return_metadata=True)
    assert info.bit_depth == bits and img.dtype == np.uint8
    np.testing.assert_array_equal(img, ref)


def test_gray_with_alpha_gives_gray(tmp_path):
    a8 = _pixels(1)
    ref = _png_reference(tmp_path, a8)
    data = np.stack([a8.astype(np.uint16) * 257, np.full_like(a8, 7, np.uint16)], axis=2)
    path = _tiff(tmp_path, data, photometric="minisblack", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(load_image(path), ref.astype(np.uint16) * 257)


# ----------------------------------------------------------------------------------------------
# Signed, palette, CMYK
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_signed_samples_without_negatives_are_kept(tmp_path, dtype):
    a8 = _pixels(1) // 2  # 0..127 fits int8
    ref = _png_reference(tmp_path, a8)
    img = load_image(_tiff(tmp_path, a8.astype(dtype), photometric="minisblack"))
    assert img.dtype == (np.uint8 if dtype == np.int8 else np.uint16)
    np.testing.assert_array_equal(img, ref)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_negative_signed_samples_are_refused(tmp_path, dtype):
    data = (_pixels(1) // 2).astype(dtype)
    data[3, 4] = -1  # Pillow read int8 -1 as 255
    _refused(_tiff(tmp_path, data, photometric="minisblack"), "signed", "negative", "[-1,")


def test_palette_with_8bit_colours_matches_png(tmp_path):
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = _pixels(1)
    ref = _png_reference(tmp_path, palette[index])
    path = _tiff(tmp_path, index, photometric="palette", colormap=palette.T.astype(np.uint16) * 257)
    img, info = load_image(path, return_metadata=True)
    assert img.dtype == np.uint8 and info.mode == "P"
    np.testing.assert_array_equal(img, ref)


def test_palette_with_16bit_colours_keeps_16_bits(tmp_path):
    rng = np.random.default_rng(4)
    colormap = rng.integers(0, 65536, (3, 256), dtype=np.uint16)
    colormap[0, 0] = 1001  # not a multiple of 257: the colours are really 16-bit
    index = _pixels(1)
    img = load_image(_tiff(tmp_path, index, photometric="palette", colormap=colormap))
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, colormap.T[index])


def test_cmyk_8bit_matches_pillow_conversion(tmp_path):
    cmyk = _pixels(4, seed=5)
    expected = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB"))
    img, info = load_image(_tiff(tmp_path, cmyk, photometric="separated"), return_metadata=True)
    assert info.mode == "CMYK" and info.bit_depth == 8
    np.testing.assert_array_equal(img, expected)


def test_cmyk_16bit_is_converted_in_16_bits_not_truncated(tmp_path):
    cmyk = _pixels(4, seed=5)
    rgb8 = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB")).astype(np.int64)
    img, info = load_image(_tiff(tmp_path, cmyk.astype(np.uint16) * 257, photometric="separated"),
                           return_metadata=True)
    assert img.dtype == np.uint16 and info.bit_depth == 16
    assert np.abs(img.astype(np.int64) - rgb8 * 257).max() <= 257  # the same colours, 16-bit precision
    low_bits = cmyk.astype(np.uint16) * 257 + np.random.default_rng(6).integers(0, 200, cmyk.shape).astype(np.uint16)
    fine = load_image(_tiff(tmp_path, low_bits, name="fine.tif", photometric="separated"))
    assert (fine % 257 != 0).any()  # the low byte is used, not dropped


@pytest.mark.parametrize("photometric, word", [("cielab", "l*a*b*"), ("cfa", "colour filter")])
def test_other_photometric_interpretations_are_refused(tmp_path, photometric, word):
    data = _pixels(3) if photometric == "cielab" else _pixels(1)
    _refused(_tiff(tmp_path, data, photometric=photometric), "not supported", word)


def test_float_tiff_is_refused(tmp_path):
    data = _pixels(1).astype(np.float32) / 255
    _refused(_tiff(tmp_path, data, photometric="minisblack"), "floating-point", "not supported")


def test_jpeg_compressed_tiff_loads_close_to_its_pixels(tmp_path):
    y, x = np.mgrid[0:H, 0:W]
    smooth = np.stack([x * 7, y * 11, (x + y) * 4], axis=-1).astype(np.uint8)  # gradients: JPEG-friendly
    path = _tiff(tmp_path, smooth, photometric="rgb", compression="jpeg", compressionargs={"level": 95})
    img = load_image(path)
    assert img.shape == (H, W, 3) and np.abs(img.astype(int) - smooth).mean() < 3


# ----------------------------------------------------------------------------------------------
# Damage and limits: refused before decoding
# ----------------------------------------------------------------------------------------------


def _one_strip_tiff(tmp_path, name="t.tif", **kwargs) -> tuple:
    """An RGB TIFF written by tifffile: (path, its bytes to edit)."""
    path = _tiff(tmp_path, _pixels(3), name=name, photometric="rgb", **kwargs)
    return path, bytearray(path.read_bytes())


def test_strip_past_the_end_of_the_file_is_truncated(tmp_path):
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=4)
    with tifffile.TiffFile(path) as tif:
        last_end = max(o + c for o, c in zip(tif.pages[0].dataoffsets, tif.pages[0].databytecounts))
    path.write_bytes(bytes(raw[: last_end - 10]))
    _refused(path, "truncated tiff")


def test_empty_strip_is_missing_data_not_zeros(tmp_path):
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=H)  # one strip, count stored in the tag
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[279]  # StripByteCounts
        offset, fmt = tag.valueoffset, {3: "<H", 4: "<I"}[int(tag.dtype)]
    struct.pack_into(fmt, raw, offset, 0)  # tifffile would fill the strip with zeros
    path.write_bytes(bytes(raw))
    _refused(path, "missing")


def test_truncated_jpeg_strip_in_a_tiff_is_refused(tmp_path):
    path, raw = _one_strip_tiff(tmp_path, compression="jpeg", compressionargs={"level": 90}, rowsperstrip=H)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    cut = raw[offset : offset + count // 2] + b"\xff\xd9"  # cut short, padded with an end-of-image marker
    raw[offset : offset + count] = cut + bytes(count - len(cut))
    path.write_bytes(bytes(raw))
    _refused(path, "jpeg", "truncated")


def test_tiff_size_limit_is_checked_from_the_tags(tmp_path):
    path = _tiff(tmp_path, _pixels(3), photometric="rgb")
    assert load_image(path, max_pixels=H * W).shape == (H, W, 3)
    _refused(path, "exceeds", str(H * W - 1), max_pixels=H * W - 1)


def test_tiff_bomb_is_refused_before_allocation(tmp_path):
    """Tags claiming 60000 x 60000 (10.8 GB of RGB) over a 2 KB file: refused from the tags."""
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=H)
    with tifffile.TiffFile(path) as tif:
        for code, value in ((256, 60000), (257, 60000), (278, 60000)):
            tag = tif.pages[0].tags[code]
            struct.pack_into({3: "<H", 4: "<I"}[int(tag.dtype)], raw, tag.valueoffset, value)
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        _refused(path, "exceeds")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_tiff_decoded_size_limit_counts_samples(tmp_path):
    data = np.zeros((H, W, 2), np.float64)  # 16 bytes a pixel: more than 8 per pixel of the limit
    path = _tiff(tmp_path, data, photometric="minisblack", planarconfig="contig")
    _refused(path, "bytes", max_pixels=H * W)


def test_not_a_tiff_behind_a_tiff_signature(tmp_path):
    path = tmp_path / "fake.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 200)
    _refused(path, "tiff")


def test_tiff_never_goes_through_pillow(tmp_path, monkeypatch):
    """Pillow is not exact for TIFF: load_image must not hand a TIFF to it, whatever the layout."""
    import PIL.Image

    def no_pillow(*args, **kwargs):
        raise AssertionError("Pillow opened a TIFF")

    monkeypatch.setattr(PIL.Image, "open", no_pillow)
    buf = io.BytesIO()
    tifffile.imwrite(buf, _pixels(3), photometric="rgb")
    path = tmp_path / "a.tif"
    path.write_bytes(buf.getvalue())
    assert load_image(path).shape == (H, W, 3)


def _set_tags(path, raw: bytearray, values: dict[int, int]) -> None:
    with tifffile.TiffFile(path) as tif:
        for code, value in values.items():
            tag = tif.pages[0].tags[code]
            struct.pack_into({3: "<H", 4: "<I"}[int(tag.dtype)], raw, tag.valueoffset, value)
    path.write_bytes(bytes(raw))


def test_a_header_asking_for_more_strips_than_listed_is_refused_before_allocation(tmp_path):
    """A 3 KB TIFF whose height says 65535 rows (one strip listed, 1771 needed): tifffile would
    allocate and zero-fill the whole image (1.4 GB for 255 samples a pixel)."""
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=H)
    _set_tags(path, raw, {257: 65535})
    tracemalloc.start()
    try:
        _refused(path, "strips", "needs")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_more_than_8_bytes_a_pixel_is_refused_from_the_tags(tmp_path):
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=H)
    _set_tags(path, raw, {277: 255})  # 255 samples per pixel
    _refused(path, "255 samples", "bytes a pixel")


def test_uncompressed_strips_shorter_than_the_image_are_truncated(tmp_path):
    path, raw = _one_strip_tiff(tmp_path, rowsperstrip=H)
    with tifffile.TiffFile(path) as tif:
        count = tif.pages[0].databytecounts[0]
    _set_tags(path, raw, {279: count - 3 * W})  # one row short
    _refused(path, "truncated tiff", "strips hold")
