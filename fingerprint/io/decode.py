"""Decoding: image file in, stored pixels out (Pillow, with ``tifffile`` for 16-bit colour TIFF).

Every refusal is an :class:`~fingerprint.errors.InvalidImageError` about the file (``.path`` set,
message ``"<path>: <problem>"``, one line), so the CLI catches one family.

Pixels are returned as they are stored, in **sensor orientation**: the EXIF orientation tag is
reported in :class:`~fingerprint.io.metadata.ImageInfo`, never applied (docs/algorithm.md §1). Integer
precision is kept: 8-bit files give ``uint8``, 16-bit files (gray or colour) give ``uint16``.

Decisions
---------
- Formats: JPEG (and MPO, a multi-picture JPEG), PNG, TIFF, BMP and WebP. Anything else, Pillow's
  exotic formats included (EPS would even start Ghostscript), is refused as "not a supported image".
- TIFF: Pillow rotates TIFFs by their Orientation tag while loading; that is undone (an exact
  permutation of pixels), so TIFFs come back as stored like every other format.
- Multi-frame files (multi-page TIFF, MPO, animated PNG or WebP): the first frame is decoded.
- 16-bit colour PNG and TIFF: Pillow opens them as 8-bit ``"RGB"`` (it keeps only the high byte).
  :func:`load_image` decodes the file a second time with the opposite byte order, which yields the
  low bytes, and recombines them into exact ``uint16`` values. Where that is not possible (a layout
  Pillow has no unpacker for) it uses ``tifffile`` if installed, and otherwise refuses the file
  rather than silently dropping 8 bits.
- Floating-point images (Pillow mode ``"F"``, e.g. 32-bit float TIFF) are refused: their scale
  ([0, 1]? [0, 255]? [0, 65535]?) is a guess, and the result would no longer be the stored pixels.
  The message says whether the file holds NaN or infinite values, and the value range otherwise.
- 32-bit integer images (mode ``"I"``) are returned as ``uint16`` when every value is in
  [0, 65535], and refused otherwise.
- Palette images become RGB; alpha channels are dropped; CMYK becomes RGB with Pillow's
  conversion (not colour-managed); 1-bit images become ``uint8`` 0/255.
- Truncation is never papered over: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` must stay ``False``
  (checked on every call), JPEGs must end their last scan with an end-of-image marker, and PNGs
  must reach their ``IEND`` chunk with every chunk's CRC correct (:mod:`fingerprint.io.integrity`).
- Decompression bombs: the pixel count in the header is checked against ``max_pixels`` before a
  single pixel is allocated (default :data:`MAX_PIXELS`). Pillow's own, smaller limit
  (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels with a warning, 179 with an error) is
  lifted while a header is parsed, under a lock, so that ``max_pixels`` alone decides.
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
from fingerprint.io.integrity import check_jpeg_end, check_png_chunks, check_regular_file
from fingerprint.io.metadata import ImageInfo, read_exif, read_jpeg_quality, tiff_orientation, undo_tiff_orientation

__all__ = ["MAX_PIXELS", "load_image"]

#: Default largest image accepted by :func:`load_image`, in pixels (width × height): 250
#: megapixels, about 16 000 × 15 600. A 100 MP medium-format photo fits with room to spare; a
#: decoded RGB image of this size takes 750 MB as ``uint8`` and 1.5 GB as ``uint16``.
MAX_PIXELS: int = 250_000_000

# Pillow format names that load_image decodes (MPO: multi-picture JPEG, opened by the JPEG plugin).
_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

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
    """Decode the pixels of an opened image (Pillow's pixel limit lifted for large TIFFs)."""
    limit = Image.MAX_IMAGE_PIXELS
    if img.format == "TIFF" and limit is not None and img.width * img.height > limit:
        with _pillow_pixel_limit_lifted():
            img.load()
    else:
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


def _decode_with_tifffile(path: pathlib.Path) -> np.ndarray:
    """Read a TIFF with ``tifffile`` (optional dependency), first page, samples last."""
    import tifffile  # noqa: PLC0415 (optional dependency)

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = page.asarray()
        if data.ndim == 3 and getattr(page, "planarconfig", 1) == 2:  # separate planes: (S, H, W)
            data = np.moveaxis(data, 0, -1)
    if data.dtype not in (np.uint8, np.uint16) or data.ndim not in (2, 3):
        raise NotImplementedError(f"tifffile returned {data.dtype} {data.shape}")
    if data.ndim == 3:
        if data.shape[2] == 2:
            data = data[..., 0]
        elif data.shape[2] >= 3:
            data = data[..., :3]
    return np.ascontiguousarray(data.astype(data.dtype.newbyteorder("="), copy=False))


def _decode(fh: Any, img: ImageFile.ImageFile, path: pathlib.Path) -> tuple[np.ndarray, int]:
    """Decode an opened image into (uint8 or uint16 array, stored bits per sample)."""
    mode = img.mode
    if _is_wide_colour(img):
        try:
            return _decode_wide_colour(fh, img), 16
        except NotImplementedError:
            pass
        if img.format == "TIFF":
            try:
                return _decode_with_tifffile(path), 16
            except ImportError:
                pass
        raise _fail(
            path,
            f"16-bit colour {img.format} with a sample layout Pillow cannot read exactly; "
            "install tifffile (pip install tifffile) for TIFF, or convert the file",
        )

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
    if mode == "F":
        _load(img)
        arr = np.asarray(img)
        finite = np.isfinite(arr)
        if not finite.all():
            n_bad = int(arr.size - np.count_nonzero(finite))
            raise _fail(path, f"floating-point image contains {n_bad} NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        raise _fail(
            path,
            f"floating-point pixels (range [{lo:g}, {hi:g}]) are not supported: the scale is "
            "ambiguous; convert to 8- or 16-bit unsigned integers first",
        )

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
        A JPEG, PNG, TIFF, BMP or WebP file (the content decides, not the name).
    return_metadata : bool, optional
        Also return an :class:`ImageInfo` (format, mode, size, bit depth, EXIF orientation, make,
        model, JPEG quality). Default False.
    max_pixels : int, optional
        Largest width × height accepted, checked from the header before any pixel memory is
        allocated (decompression-bomb guard). Default :data:`MAX_PIXELS` (250 000 000).

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
        directory, empty file, not a supported image, truncated or corrupt data, more than
        ``max_pixels`` pixels, floating-point or out-of-range 32-bit pixels, an unsupported mode.

    Notes
    -----
    Only the first frame of a multi-frame file is decoded. 16-bit colour PNG and TIFF are decoded
    exactly (Pillow alone would keep 8 bits); floating-point images are refused because their
    scale is ambiguous. See the module docstring for the reasons behind each rule.

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
    size = check_regular_file(path)
    try:
        with open(path, "rb") as fh:
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
                    check_jpeg_end(fh, size, path)
                elif fmt == "PNG":
                    check_png_chunks(fh, size, path)
                stored_orientation = tiff_orientation(img) if fmt == "TIFF" else None
                arr, bit_depth = _decode(fh, img, path)
                if stored_orientation is not None:
                    arr = undo_tiff_orientation(img, stored_orientation, arr)
                orientation, make, model = (
                    read_exif(img) if return_metadata else (None, None, None)
                )
                quality = read_jpeg_quality(img) if return_metadata and fmt in _JPEG_FORMATS else None
                if fmt == "TIFF":
                    orientation = stored_orientation
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise _fail(
            path, "not a supported image (unknown format; expected JPEG, PNG, TIFF, BMP or WebP)"
        ) from None
    except MemoryError:
        raise
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

