"""TIFF read with ``tifffile``: the stored samples, exactly, in every layout; refused otherwise.

Pillow is not exact for TIFF: it cuts 16-bit colour and CMYK to 8 bits, reads 16-bit colour stored
plane after plane (PlanarConfiguration 2) as garbage, does not invert 16-bit WhiteIsZero, reads a
signed 8-bit -1 as 255 and calls a 12-bit file 16-bit. ``tifffile`` (with ``imagecodecs`` for the
compressions) returns the stored values with their own type for every layout, so it reads every
TIFF, and :func:`read_tiff` turns them into ganprint's pixels by one rule per layout:

================================  ==================================================================
layout                            pixels (bit depth reported = bits per sample stored)
================================  ==================================================================
BlackIsZero, 8 or 16 bits         as stored (uint8, uint16)
9 to 15 bits (e.g. 12)            as stored in uint16 (0 to 4095 for 12 bits)
1, 2, 4 bits (and 3, 5 to 7)      scaled to 0..255 (x 255, 85, 17; others rounded), as PNG does
WhiteIsZero                       inverted: ``2**bits - 1 - v``, then as above
signed integers                   as unsigned when no value is negative, refused otherwise
32-bit integers                   uint16 when every value fits, refused otherwise
floating point                    refused (the scale is ambiguous), saying how many NaN/inf
RGB, any planar configuration     (H, W, 3) as stored; alpha and other extra samples dropped
palette                           the colour map: uint8 when it holds 8-bit colours, else uint16
CMYK (InkSet CMYK)                RGB by Pillow's formula ``R = (M - C)(M - K) / M``, M = 2**bits - 1,
                                  in the stored depth (16-bit CMYK gives uint16)
YCbCr, JPEG-compressed            RGB, as libjpeg converts it
anything else (Lab, CFA, ...)     refused, naming the photometric interpretation
================================  ==================================================================

Before a byte of image data is decoded, from the tags: the page's size against ``max_pixels``; at
most 8 bytes a pixel decoded (so 1.6 GB at most at 200 megapixels); as many strips or tiles as the
image needs (``tifffile`` would fill missing ones with zeros, touching the whole image's memory), each
inside the file (past the end: a truncated file) and not empty (missing data); uncompressed strips
holding the whole image; JPEG-compressed strips walked like JPEG files
(:mod:`fingerprint.io.jpeg_scan`). So a file of a few KB cannot make the decoder use gigabytes. Orientation (274),
make (271) and model (272) come from the first page's tags; the pixels are never rotated.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from fingerprint.errors import InvalidImageError
from fingerprint.io.jpeg_scan import JpegDataError, check_jpeg_scans
from fingerprint.io.metadata import clean_text

__all__ = ["TiffImage", "read_tiff"]

# tifffile logs damaged tags and strips; without a handler of its own, Python's last-resort
# handler would print them on stderr beside ganprint's one-line messages.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

_WHITE_IS_ZERO, _BLACK_IS_ZERO, _RGB, _PALETTE, _SEPARATED, _YCBCR = 0, 1, 2, 3, 5, 6
_PHOTOMETRIC_NAMES = {4: "transparency mask", 8: "CIE L*a*b*", 9: "ICC L*a*b*", 10: "ITU L*a*b*",
                      32803: "colour filter array (raw sensor data)", 32844: "LogL", 32845: "LogLuv",
                      34892: "linear raw (DNG)", 51177: "depth map", 52527: "semantic mask"}
_JPEG = 7
_INKSET_CMYK = 1
_CMYK_ROWS = 256  # rows converted at a time (bounds the int64 temporaries)
_BYTES_PER_PIXEL_LIMIT = 8  # decoded bytes allowed per pixel (16-bit RGBA); 1.6 GB at 200 megapixels


@dataclass(frozen=True)
class TiffImage:
    """What :func:`read_tiff` returns: pixels plus what ``ImageInfo`` needs.

    ``pixels`` uint8 or uint16, (H, W) or (H, W, 3); ``bit_depth`` bits per sample as stored;
    ``mode`` a Pillow-style name of the stored layout ("L", "I;16", "RGB", "RGBA", "P", "CMYK",
    ...); ``orientation`` tag 274 when 1..8; ``make``, ``model`` tags 271, 272.
    """

    pixels: np.ndarray
    bit_depth: int
    mode: str
    orientation: int | None
    make: str | None
    model: str | None


def _fail(path: str | os.PathLike[str], problem: str) -> InvalidImageError:
    return InvalidImageError(problem, path=path)


def read_tiff(fh: BinaryIO, size: int, path: str | os.PathLike[str], max_pixels: int) -> TiffImage:
    """Read the first page of the TIFF open as ``fh`` (``size`` bytes) by the rules of the module doc.

    Raises
    ------
    InvalidImageError
        About ``path``, one line: corrupt or truncated, larger than ``max_pixels``, or a layout
        without an exact reading (see the table).
    """
    import tifffile  # noqa: PLC0415 - 0.1 s to import: only for TIFF files

    fh.seek(0)
    dims = ""
    try:
        with tifffile.TiffFile(fh, name=os.fspath(path), size=size) as tif:
            if not tif.pages:
                raise _fail(path, "corrupt TIFF: no image directory")
            page = tif.pages[0]
            _check_before_decoding(page, size, path, max_pixels)
            dims = f" of {page.imagewidth}x{page.imagelength} pixels"
            tags = page.tags
            orientation = _tag(tags, 274)
            make, model = clean_text(_tag(tags, 271)), clean_text(_tag(tags, 272))
            if page.compression == _JPEG:
                _check_jpeg_strips(fh, page, path)
            data = page.asarray(maxworkers=1)
    except InvalidImageError:
        raise
    except MemoryError:
        raise _fail(path, f"not enough memory to decode this image{dims} (MemoryError); free memory or raise "
                          "the limit (ulimit -v) to read it") from None
    except Exception as err:  # noqa: BLE001 - tifffile and its codecs raise many types on damaged data
        text = " ".join(str(err).split())[:200] or type(err).__name__
        raise _fail(path, f"corrupt or unreadable TIFF ({text})") from None
    pixels, bit_depth, mode = _interpret(page, data, path)
    if not (isinstance(orientation, int) and 1 <= orientation <= 8):
        orientation = None
    return TiffImage(pixels, bit_depth, mode, orientation, make, model)


def _tag(tags, code: int):
    """A tag's value, or None when absent; a one-value tuple gives its value."""
    tag = tags.get(code)
    value = None if tag is None else tag.value
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    return value


def _check_before_decoding(page, size: int, path, max_pixels: int) -> None:
    """Size limits and strip positions, from the tags alone."""
    width, height, depth = int(page.imagewidth), int(page.imagelength), int(page.imagedepth)
    if width < 1 or height < 1:
        raise _fail(path, f"image header gives an empty size {width}x{height}")
    if depth > 1:
        raise _fail(path, f"volumetric TIFF ({depth} slices) is not supported")
    if width * height > max_pixels:
        raise _fail(path, f"image of {width}x{height} = {width * height} pixels exceeds the limit of "
                          f"{max_pixels} pixels (decompression-bomb guard; raise max_pixels if the file is genuine)")
    samples, bits = int(page.samplesperpixel), int(page.bitspersample)
    per_pixel = samples * (page.dtype.itemsize if page.dtype is not None else (bits + 7) // 8)
    if per_pixel > _BYTES_PER_PIXEL_LIMIT:
        raise _fail(path, f"TIFF with {samples} samples of {bits} bits per pixel ({per_pixel} bytes a pixel decoded, "
                          f"more than {_BYTES_PER_PIXEL_LIMIT}) is not an image ganprint reads")
    offsets, counts = page.dataoffsets, page.databytecounts
    if not offsets or len(offsets) != len(counts):
        raise _fail(path, "corrupt TIFF: no or inconsistent strip offsets and byte counts")
    planes = samples if int(page.planarconfig) == 2 else 1
    if page.is_tiled:
        tile_w, tile_h = max(1, int(page.tilewidth)), max(1, int(page.tilelength))
        needed = planes * -(-height // tile_h) * -(-width // tile_w)
    else:
        needed = planes * -(-height // max(1, min(int(page.rowsperstrip), height)))
    if len(offsets) != needed:  # tifffile would fill the missing ones with zeros, the whole image allocated
        raise _fail(path, f"corrupt TIFF: {len(offsets)} strips or tiles listed, the image needs {needed}")
    if page.compression == 1 and not page.is_tiled:  # uncompressed strips hold the whole image
        row = -(-width * (samples // planes) * bits // 8)
        if sum(counts) < planes * height * row:
            raise _fail(path, f"truncated TIFF: its strips hold {sum(counts)} bytes, the image needs "
                              f"{planes * height * row}")
    for i, (offset, count) in enumerate(zip(offsets, counts)):
        if count == 0 or offset == 0:
            raise _fail(path, f"corrupt TIFF: image data missing (strip or tile {i} is empty)")
        if offset + count > size:
            raise _fail(path, f"truncated TIFF: strip or tile {i} (bytes {offset} to {offset + count}) runs "
                              f"past the end of the file ({size} bytes)")


def _check_jpeg_strips(fh: BinaryIO, page, path) -> None:
    """Walk every JPEG-compressed strip or tile (with the page's JPEGTables) as a JPEG file."""
    tables = page.jpegtables
    for i, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
        fh.seek(offset)
        try:
            check_jpeg_scans(fh.read(count), tables=tables if isinstance(tables, bytes) else None)
        except JpegDataError as err:
            raise _fail(path, f"JPEG-compressed TIFF, strip or tile {i}: {err}") from None


def _interpret(page, data: np.ndarray, path) -> tuple[np.ndarray, int, str]:
    """Stored samples -> (pixels, bit depth, mode) by the module's rules."""
    bits = int(page.bitspersample)
    photometric = int(page.photometric)
    samples = int(page.samplesperpixel)
    if data.ndim == 3 and int(page.planarconfig) == 2 and samples > 1:
        data = np.moveaxis(data, 0, -1)  # planes (S, H, W) -> samples last
    if data.ndim not in (2, 3) or data.shape[:2] != (int(page.imagelength), int(page.imagewidth)):
        raise _fail(path, f"TIFF page decodes to an unexpected shape {data.shape}")
    if photometric in _PHOTOMETRIC_NAMES or photometric not in (0, 1, 2, 3, 5, 6):
        name = _PHOTOMETRIC_NAMES.get(photometric, f"photometric interpretation {photometric}")
        raise _fail(path, f"TIFF {name} images are not supported; convert to RGB or grayscale")
    if photometric == _YCBCR and page.compression != _JPEG:
        raise _fail(path, "TIFF YCbCr images without JPEG compression are not supported; convert to RGB")
    data = _unsigned(data, bits, path)
    if photometric in (_WHITE_IS_ZERO, _BLACK_IS_ZERO):
        gray = data if data.ndim == 2 else data[..., 0]  # extra samples (alpha) dropped
        if photometric == _WHITE_IS_ZERO:
            gray = _max_value(gray, bits) - gray
        if bits < 8:  # v * 255 / (2**bits - 1), rounded, through a lookup table (no float copy)
            levels = (1 << bits) - 1
            lut = np.round(np.arange(levels + 1) * (255 / levels)).astype(np.uint8)
            gray = lut[np.minimum(gray, levels)]
        mode = "1" if bits == 1 else "L" if bits <= 8 else "I;16" if bits <= 16 else "I"
        return _narrow(gray, bits, path), bits, mode + ("A" if data.ndim == 3 and bits <= 8 else "")
    if data.ndim != 3 and photometric != _PALETTE:
        raise _fail(path, f"TIFF colour image with {samples} sample(s) per pixel is not readable")
    if photometric in (_RGB, _YCBCR):
        if data.shape[2] < 3:
            raise _fail(path, f"TIFF RGB image with {data.shape[2]} samples per pixel")
        mode = "RGBA" if data.shape[2] > 3 else "RGB"
        return _narrow(data[..., :3], bits, path), bits, mode if photometric == _RGB else "YCbCr"
    if photometric == _PALETTE:
        return _palette(page, data if data.ndim == 2 else data[..., 0], path), bits, "P"
    return _cmyk(page, data, bits, path), bits, "CMYK"


def _max_value(a: np.ndarray, bits: int):
    return a.dtype.type((1 << bits) - 1) if bits < 8 * a.dtype.itemsize else np.iinfo(a.dtype).max


def _unsigned(data: np.ndarray, bits: int, path) -> np.ndarray:
    """Unsigned samples of the stored values: bool as 0/1, signed without negatives as is; floats refused."""
    if data.dtype == np.bool_:
        return data.view(np.uint8)
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            raise _fail(path, f"floating-point image contains {n_bad} NaN or infinite values")
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        raise _fail(path, f"floating-point pixels (range [{lo:g}, {hi:g}]) are not supported: the scale is "
                          "ambiguous; convert to 8- or 16-bit unsigned integers first")
    if data.dtype.kind not in "iu":
        raise _fail(path, f"TIFF samples of type {data.dtype} are not supported")
    native = np.dtype(data.dtype.type)
    data = data.view(native) if data.dtype.isnative else data.astype(native)  # native byte order, as "="
    if data.dtype.kind == "i":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if lo < 0 and data.dtype.itemsize > 2:
            raise _fail(path, f"{bits}-bit integer pixels in [{lo}, {hi}] do not fit 16 bits; convert to 8- or "
                              "16-bit unsigned integers first")
        if lo < 0:
            raise _fail(path, f"signed {bits}-bit samples with negative values (range [{lo}, {hi}]) have no "
                              "unsigned reading; convert to 8- or 16-bit unsigned integers first")
        data = data.view(np.dtype(f"u{data.dtype.itemsize}"))
    return data


def _narrow(a: np.ndarray, bits: int, path) -> np.ndarray:
    """uint8/uint16 kept; wider integers as uint16 when every value fits (refused otherwise)."""
    if a.dtype in (np.uint8, np.uint16):
        return a
    hi = int(a.max()) if a.size else 0
    if hi > 65535:
        lo = int(a.min()) if a.size else 0
        raise _fail(path, f"{bits}-bit integer pixels in [{lo}, {hi}] do not fit 16 bits; convert to 8- or "
                          "16-bit unsigned integers first")
    return a.astype(np.uint16)


def _palette(page, index: np.ndarray, path) -> np.ndarray:
    """Palette indices through the colour map: uint8 RGB when the map holds 8-bit colours, else uint16."""
    cmap = page.colormap
    if cmap is None or np.ndim(cmap) != 2 or cmap.shape[0] != 3:
        raise _fail(path, "corrupt TIFF: palette image without a colour map")
    if index.size and int(index.max()) >= cmap.shape[1]:
        raise _fail(path, f"corrupt TIFF: palette index {int(index.max())} beyond its {cmap.shape[1]} colours")
    cmap = np.asarray(cmap, np.uint16)
    if int(cmap.max()) < 256:  # a writer that stored 8-bit colours in the 16-bit map
        table = cmap.astype(np.uint8)
    elif not (cmap % 257).any():  # 8-bit colours scaled by 257, as the TIFF specification says
        table = (cmap // 257).astype(np.uint8)
    else:
        table = cmap  # 16-bit colours: kept
    return np.ascontiguousarray(table.T[index])


def _cmyk(page, data: np.ndarray, bits: int, path) -> np.ndarray:
    """CMYK (InkSet 1) to RGB: ``R = M - K' - round(C K' / M)`` with ``K' = M - K`` (Pillow's ``cmyk2rgb``)."""
    inkset = _tag(page.tags, 332)
    if inkset not in (None, _INKSET_CMYK) or data.shape[2] < 4:
        raise _fail(path, "TIFF separated (ink) image that is not CMYK is not supported")
    if data.dtype not in (np.uint8, np.uint16):
        raise _fail(path, f"TIFF CMYK with {bits}-bit samples is not supported")
    full = int(_max_value(data, bits))
    rgb = np.empty((*data.shape[:2], 3), data.dtype)
    for r in range(0, data.shape[0], _CMYK_ROWS):  # int64 products, a band of rows at a time
        band = data[r : r + _CMYK_ROWS]
        nk = full - band[..., 3:4].astype(np.int64)
        rgb[r : r + _CMYK_ROWS] = nk - (band[..., :3].astype(np.int64) * nk + full // 2) // full
    return rgb
