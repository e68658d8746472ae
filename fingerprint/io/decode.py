"""Decoding: image file in, stored pixels out (Pillow for JPEG, PNG, BMP, WebP; tifffile for TIFF).

Every refusal is an :class:`~fingerprint.errors.InvalidImageError` about the file (``.path`` set,
message ``"<path>: <problem>"``, one line), so the CLI catches one family.

Pixels are returned as they are stored, in **sensor orientation**: the EXIF orientation tag is
reported in :class:`~fingerprint.io.metadata.ImageInfo`, never applied (docs/algorithm.md §1). Integer
precision is kept: 8-bit files give ``uint8``, 16-bit files (gray or colour) give ``uint16``.

Decisions
---------
- Formats: JPEG (and MPO, a multi-picture JPEG), PNG, TIFF, BMP and WebP. Anything else, Pillow's
  exotic formats included (EPS would even start Ghostscript), is refused as "not a supported image".
- Only regular files are opened, and a FIFO or a device is refused before anything could block
  on it (:func:`~fingerprint.io.integrity.open_regular_file`).
- TIFF is read by :mod:`fingerprint.io.tiff` (tifffile), one exact rule per layout: planar
  configuration 2, WhiteIsZero, 12-bit, signed, CMYK 16-bit, palette (see its table). Pillow is
  not exact for TIFF (16-bit colour and CMYK cut to 8 bits, 16-bit planar read as garbage, 16-bit
  WhiteIsZero not inverted, signed -1 read as 255) and never decodes one here. TIFF orientation is
  reported and not applied, as for every format.
- Multi-frame files (multi-page TIFF, MPO, animated PNG or WebP): the first frame is decoded.
- 16-bit colour PNG: Pillow opens it as 8-bit ``"RGB"`` (it keeps only the high byte).
  :func:`load_image` decodes the file a second time with the opposite byte order, which yields the
  low bytes, and recombines them into exact ``uint16`` values.
- 32-bit integer images (mode ``"I"``) are returned as ``uint16`` when every value is in
  [0, 65535], and refused otherwise.
- Palette images become RGB; alpha channels are dropped; CMYK becomes RGB with Pillow's
  conversion (not colour-managed); 1-bit images become ``uint8`` 0/255.
- Truncation is never papered over: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` must stay ``False``
  (checked on every call); a JPEG's every scan must hold coded data for all of its blocks, however
  the file ends (:mod:`fingerprint.io.jpeg_scan`: a file cut short and padded with an end-of-image
  marker is caught before decoding); PNGs must reach their ``IEND`` chunk with every chunk's CRC
  correct (:mod:`fingerprint.io.integrity`); a TIFF's strips must lie inside the file.
- Decompression bombs: the pixel count in the header is checked against ``max_pixels`` before a
  single pixel is allocated (default :data:`MAX_PIXELS`, 200 megapixels). Pillow's own, smaller
  limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels with a warning, 179 with an error) is
  lifted while a header is parsed, under a lock, so that ``max_pixels`` alone decides.
- Memory: an image that does not fit in the memory left (``MemoryError`` while decoding, e.g. under
  ``ulimit -v``) is refused like a bad file, naming its size, so that a batch goes on.
- Small images are not refused here (the residual stage decides the minimum size).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, Literal, overload

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from fingerprint.errors import InvalidImageError
from fingerprint.io.integrity import check_png_chunks, open_regular_file
from fingerprint.io.jpeg_scan import JpegDataError, check_jpeg_scans
from fingerprint.io.metadata import ImageInfo, read_exif, read_jpeg_quality
from fingerprint.io.tiff import read_tiff

__all__ = ["MAX_PIXELS", "load_image"]

#: Default largest image accepted by :func:`load_image`, in pixels (width × height): 200
#: megapixels, about 16 300 × 12 250. The largest camera sensors (150 MP medium format) fit; a
#: decoded RGB image of this size takes 600 MB as ``uint8`` and 1.2 GB as ``uint16``.
MAX_PIXELS: int = 200_000_000

# Pillow format names that load_image decodes with Pillow (MPO: multi-picture JPEG, opened by the
# JPEG plugin). TIFF goes to fingerprint.io.tiff.
_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "BMP", "WEBP")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF

_pillow_limit_lock = threading.Lock()


def _fail(path: str | os.PathLike[str], problem: str) -> InvalidImageError:
    """The one-line ``"<path>: <problem>"`` error about ``path``."""
    return InvalidImageError(problem, path=path)


@contextlib.contextmanager
def _pillow_pixel_limit_lifted() -> Iterator[None]:
    """Switch Pillow's own decompression-bomb limit off, under a lock, for the ``with`` body.

    ``load_image`` enforces ``max_pixels`` itself; Pillow's smaller built-in limit would otherwise
    warn from 89 megapixels and refuse from 179. Only header parsing (and the load of a TIFF above
    Pillow's limit, whose plugin checks again) runs inside this block.
    """
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open(fh: Any) -> ImageFile.ImageFile:
    """Open (parse the header of) an image file object, restricted to the supported formats."""
    fh.seek(0)
    Image.init()
    formats = [name for name in _FORMATS if name in Image.OPEN]
    with _pillow_pixel_limit_lifted():
        img = Image.open(fh, formats=formats)
    return img  # type: ignore[return-value]


def _load(img: Image.Image) -> None:
    """Decode the pixels of an opened image (Pillow checks its pixel limit when opening only)."""
    img.load()


def _tile_rawmode(tile: Any) -> str | None:
    """The raw mode (Pillow's name for the byte layout in the file) of one decoder tile."""
    args = tile.args if hasattr(tile, "args") else tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    """A copy of a decoder tile that unpacks with another raw mode."""
    if isinstance(tile.args, str):
        return tile._replace(args=rawmode)
    return tile._replace(args=(rawmode, *tile.args[1:]))


def _swapped_rawmode(rawmode: str) -> str:
    """The same layout read with the other byte order (``RGB;16B`` <-> ``RGB;16L``)."""
    if rawmode.endswith(";16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith(";16L"):
        return rawmode[:-1] + "B"
    if rawmode.endswith(";16N"):
        return rawmode[:-1] + ("B" if sys.byteorder == "little" else "L")
    raise ValueError(rawmode)


def _is_wide_colour(img: Image.Image) -> bool:
    """True for a 16-bit multi-channel file that Pillow would reduce to 8 bits per sample."""
    if img.mode not in ("RGB", "RGBA", "RGBX", "RGBa", "LA", "La"):
        return False
    rawmodes = [_tile_rawmode(t) for t in img.tile]
    return any(r is not None and ";16" in r for r in rawmodes)


def _decode_wide_colour(fh: Any, img: ImageFile.ImageFile) -> np.ndarray:
    """Decode a 16-bit colour (or gray + alpha) file exactly, as uint16 (H, W, 3) or (H, W).

    Pillow unpacks such data to 8 bits by keeping each sample's high byte. Decoding the file a
    second time with the raw mode's byte order swapped makes the same unpacker keep the low byte;
    ``(high << 8) | low`` is then the stored sample. 16-bit gray + alpha (which Pillow opens as
    RGBA) is decoded once, each 4-byte pixel read as four bytes, and the two gray bytes joined.
    """
    rawmodes = [_tile_rawmode(t) for t in img.tile]
    if any(r is None or not r.endswith((";16B", ";16L", ";16N")) for r in rawmodes):
        raise NotImplementedError("tile layout")
    if img.mode == "RGBA" and all(r.startswith("LA;16") for r in rawmodes):  # type: ignore
        # 16-bit gray + alpha, opened as RGBA: read each 4-byte pixel as four 8-bit samples
        # (L high, L low, A high, A low for big-endian data) and join the gray bytes.
        img.tile = [_with_rawmode(t, "RGBA") for t in img.tile]
        _load(img)
        raw = np.asarray(img)
        first, second = raw[..., 0].astype(np.uint16), raw[..., 1].astype(np.uint16)
        suffix = rawmodes[0][-1]  # type: ignore[index]
        big = suffix == "B" or (suffix == "N" and sys.byteorder == "big")
        return (first << 8) | second if big else (second << 8) | first
    _load(img)
    high = np.asarray(img)
    second = _open(fh)
    with second:
        second.tile = [
            _with_rawmode(t, _swapped_rawmode(_tile_rawmode(t) or "")) for t in second.tile
        ]
        _load(second)
        low = np.asarray(second)
    if low.shape != high.shape:
        raise NotImplementedError("byte-swapped decode changed the shape")
    out = high.astype(np.uint16)
    out <<= 8
    out |= low
    if out.ndim == 3:
        out = out[..., :3]
    return np.ascontiguousarray(out)


def _decode(fh: Any, img: ImageFile.ImageFile, path: pathlib.Path) -> tuple[np.ndarray, int]:
    """Decode an opened image into (uint8 or uint16 array, stored bits per sample)."""
    mode = img.mode
    if _is_wide_colour(img):
        try:
            return _decode_wide_colour(fh, img), 16
        except NotImplementedError:
            raise _fail(path, f"16-bit colour {img.format} with a sample layout that cannot be read "
                              "exactly; convert the file") from None

    if mode.startswith("I;16"):  # 16-bit gray, any byte order
        _load(img)
        arr = np.asarray(img)
        if arr.dtype != np.uint16:
            arr = arr.astype(np.uint16)  # native byte order (one copy, big-endian files only)
        return arr, 16
    if mode == "I":  # 32-bit signed integers (or 16-bit signed samples widened)
        _load(img)
        arr = np.asarray(img)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise _fail(
                path,
                f"32-bit integer pixels in [{lo}, {hi}] do not fit 16 bits; "
                "convert to 8- or 16-bit unsigned integers first",
            )
        return arr.astype(np.uint16), 32
    _load(img)
    if mode == "L":
        return np.asarray(img), 8
    if mode == "RGB":
        return np.asarray(img), 8
    if mode == "1":
        return np.asarray(img.convert("L")), 1
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0)), 8
    try:
        rgb = img.convert("RGB")  # P, PA, RGBA, RGBX, RGBa, CMYK, YCbCr, LAB, HSV
    except ValueError as err:
        raise _fail(path, f"image mode {mode!r} is not supported ({err})") from None
    return np.asarray(rgb), 8


@overload
def load_image(
    path: str | os.PathLike[str],
    *,
    return_metadata: Literal[False] = ...,
    max_pixels: int = ...,
) -> np.ndarray: ...
@overload
def load_image(
    path: str | os.PathLike[str],
    *,
    return_metadata: Literal[True],
    max_pixels: int = ...,
) -> tuple[np.ndarray, ImageInfo]: ...
def load_image(
    path: str | os.PathLike[str],
    *,
    return_metadata: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray | tuple[np.ndarray, ImageInfo]:
    """Decode an image file into its stored pixels, in sensor orientation.

    Parameters
    ----------
    path : str or os.PathLike
        A JPEG, PNG, TIFF, BMP or WebP file (the content decides, not the name); only a regular
        file is opened.
    return_metadata : bool, optional
        Also return an :class:`ImageInfo` (format, mode, size, bit depth, EXIF orientation, make,
        model, JPEG quality). Default False.
    max_pixels : int, optional
        Largest width × height accepted, checked from the header before any pixel memory is
        allocated (decompression-bomb guard). Default :data:`MAX_PIXELS` (200 000 000).

    Returns
    -------
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, 3)
        The stored pixels: gray files give (H, W), colour files (H, W, 3). 16-bit files give
        uint16, everything else uint8 (1-bit images as 0/255). Palette images are expanded to RGB,
        alpha is dropped, CMYK is converted to RGB. EXIF orientation is **not** applied. The array
        is C-contiguous and read-only (it may share memory with the decoder's buffer); call
        ``.copy()`` to modify it.
    info : ImageInfo
        Only when ``return_metadata`` is True.

    Raises
    ------
    InvalidImageError
        About the file (``.path`` set), one line, ``"<path>: <problem>"``: no such file, a
        directory, a FIFO or device, empty file, not a supported image, truncated or corrupt data,
        more than ``max_pixels`` pixels, floating-point, negative or out-of-range 32-bit pixels, an
        unsupported mode or TIFF layout, not enough memory to decode it.

    Notes
    -----
    Only the first frame of a multi-frame file is decoded. 16-bit colour PNG and every TIFF layout
    are decoded exactly (Pillow alone would keep 8 bits); floating-point images are refused because
    their scale is ambiguous. See the module docstring for the reasons behind each rule.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(p)
    >>> img, info = load_image(p, return_metadata=True)
    >>> img.dtype, img.shape, info.format, info.bit_depth
    (dtype('uint8'), (3, 4), 'PNG', 8)
    """
    path = pathlib.Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: Pillow would fill truncated images with "
            "grey; ganprint refuses to decode images in that state (set it back to False)"
        )
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    fh, size = open_regular_file(path)
    width = height = 0
    quality = None
    try:
        with fh:
            if fh.read(4) in _TIFF_SIGNATURES:
                tiff = read_tiff(fh, size, path, max_pixels)
                fmt, mode, arr, bit_depth = "TIFF", tiff.mode, tiff.pixels, tiff.bit_depth
                orientation, make, model = tiff.orientation, tiff.make, tiff.model
            else:
                with _open(fh) as img:
                    width, height = img.size
                    if width < 1 or height < 1:
                        raise _fail(path, f"image header gives an empty size {width}x{height}")
                    if width * height > max_pixels:
                        raise _fail(
                            path,
                            f"image of {width}x{height} = {width * height} pixels exceeds the limit "
                            f"of {max_pixels} pixels (decompression-bomb guard; raise max_pixels "
                            "if the file is genuine)",
                        )
                    fmt = img.format or "unknown"
                    mode = img.mode
                    if fmt in _JPEG_FORMATS:
                        fh.seek(0)
                        check_jpeg_scans(fh.read())
                    elif fmt == "PNG":
                        check_png_chunks(fh, size, path)
                    arr, bit_depth = _decode(fh, img, path)
                    orientation, make, model = read_exif(img) if return_metadata else (None, None, None)
                    if return_metadata and fmt in _JPEG_FORMATS:
                        quality = read_jpeg_quality(img)
    except InvalidImageError:
        raise
    except JpegDataError as err:
        raise _fail(path, str(err)) from None
    except UnidentifiedImageError:
        raise _fail(
            path, "not a supported image (unknown format; expected JPEG, PNG, TIFF, BMP or WebP)"
        ) from None
    except MemoryError:
        size_text = f" of {width}x{height} pixels" if width else ""
        raise _fail(path, f"not enough memory to decode this image{size_text} (MemoryError); "
                          "free memory or raise the limit (ulimit -v) to read it") from None
    except OSError as err:
        text = str(err)
        if "truncated" in text:
            raise _fail(path, f"truncated image file ({text})") from None
        raise _fail(path, f"cannot decode image data ({text or type(err).__name__})") from None
    except Exception as err:  # noqa: BLE001 - Pillow's plugins raise many types on corrupt input
        raise _fail(path, f"corrupt image file ({type(err).__name__}: {err})") from None

    arr = _finish(arr, path)
    if not return_metadata:
        return arr
    h, w = arr.shape[:2]
    info = ImageInfo(
        path=path,
        format=fmt,
        mode=mode,
        width=w,
        height=h,
        bit_depth=bit_depth,
        exif_orientation=orientation,
        make=make,
        model=model,
        jpeg_quality=quality,
    )
    return arr, info


def _finish(arr: np.ndarray, path: pathlib.Path) -> np.ndarray:
    """Check the decoded array's contract (dtype, shape), make it C-contiguous and read-only."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise _fail(path, f"decoder produced unsupported pixel type {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise _fail(path, f"decoder produced an array of unsupported shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise _fail(path, f"decoded image is empty ({arr.shape[1]}x{arr.shape[0]})")
    arr = np.ascontiguousarray(arr)
    arr.flags.writeable = False
    return arr

