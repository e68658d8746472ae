"""Image files in, pixel arrays out: the only place where ganprint decodes an image file.

Everything that can go wrong with a file (missing, empty, not an image, truncated, corrupt,
absurdly large, floating point) is reported as one :class:`~fingerprint.errors.InvalidImageError`
whose message is a single line ``"<path>: <problem>"``, so the CLI catches one family.

Pixels are returned as they are stored, in **sensor orientation**: the EXIF orientation tag is
reported in :class:`ImageInfo`, never applied (DESIGN.md §1). Integer precision is kept: 8-bit
files give ``uint8``, 16-bit files (gray or colour) give ``uint16``.

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
  must reach their ``IEND`` chunk with every chunk's CRC correct.
- Decompression bombs: the pixel count in the header is checked against ``max_pixels`` before a
  single pixel is allocated (default :data:`MAX_PIXELS`). Pillow's own, smaller limit
  (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels with a warning, 179 with an error) is
  lifted while a header is parsed, under a lock, so that ``max_pixels`` alone decides.
- Small images are not refused here (the residual stage decides the minimum size).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pathlib
import re
import sys
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from fingerprint.errors import InvalidImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageInfo",
    "collect_image_paths",
    "crop_center",
    "file_sha256",
    "load_image",
    "parse_crop",
]

#: Default largest image accepted by :func:`load_image`, in pixels (width × height): 250
#: megapixels, about 16 000 × 15 600. A 100 MP medium-format photo fits with room to spare; a
#: decoded RGB image of this size takes 750 MB as ``uint8`` and 1.5 GB as ``uint16``.
MAX_PIXELS: int = 250_000_000

#: File name extensions (lower case) that :func:`collect_image_paths` treats as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
)

# Pillow format names that load_image decodes (MPO: multi-picture JPEG, opened by the JPEG plugin).
_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

_CHUNK = 1 << 20  # bytes per read when hashing or checking files
_JPEG_TAIL = 1 << 16  # bytes at the end of a JPEG searched for its end-of-image marker
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_EXIF_ORIENTATION = 274
_EXIF_MAKE = 271
_EXIF_MODEL = 272

_pillow_limit_lock = threading.Lock()
_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`load_image` learnt about a file besides its pixels.

    Attributes
    ----------
    path : pathlib.Path
        The file, as given.
    format : str
        Pillow's format name: ``"JPEG"``, ``"MPO"`` (multi-picture JPEG), ``"PNG"``, ``"TIFF"``,
        ``"BMP"`` or ``"WEBP"``.
    mode : str
        Pillow's mode of the file as opened (``"RGB"``, ``"L"``, ``"P"``, ``"I;16"``, ...). A 16-bit
        colour file shows ``"RGB"`` or ``"RGBA"`` here and ``bit_depth == 16``.
    width, height : int
        Size in pixels, in sensor orientation (as stored; EXIF orientation not applied).
    bit_depth : int
        Bits per sample as stored: 1, 8, 16 or 32 (32-bit integer files).
    exif_orientation : int or None
        EXIF tag 274 (1 to 8; 6 means "rotate 90° clockwise to display"); None when absent or
        invalid.
    make, model : str or None
        EXIF tags 271 and 272, NULs and surrounding white space removed; None when absent or empty.
    """

    path: pathlib.Path
    format: str
    mode: str
    width: int
    height: int
    bit_depth: int
    exif_orientation: int | None
    make: str | None
    model: str | None


def _fail(path: str | os.PathLike[str], problem: str) -> InvalidImageError:
    """Build the one-line ``"<path>: <problem>"`` error (new lines escaped)."""
    message = f"{os.fspath(path)}: {problem}"
    return InvalidImageError(message.replace("\r", "\\r").replace("\n", "\\n"))


def _check_regular_file(path: pathlib.Path) -> int:
    """Return the size of ``path`` in bytes, or raise InvalidImageError saying why it is no file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except NotADirectoryError:
        raise _fail(path, "no such file (a parent is not a folder)") from None
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})") from None
    if path.is_dir():
        raise _fail(path, "is a directory, not an image file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    return st.st_size


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


def _check_jpeg_end(fh: Any, size: int, path: pathlib.Path) -> None:
    """Refuse a JPEG whose last scan is not followed by an end-of-image marker (FF D9).

    Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so FF D9 and
    FF DA (start of scan) only occur as markers. A complete file has an EOI after its last SOS;
    data appended after the EOI (camera trailers, padding, MPF images with their own EOI) is fine.
    """
    start = max(0, size - _JPEG_TAIL)
    fh.seek(start)
    tail = fh.read()
    eoi, sos = tail.rfind(_JPEG_EOI), tail.rfind(_JPEG_SOS)
    if eoi >= 0 and eoi > sos:
        return
    if eoi < 0 and sos < 0 and start > 0:  # long trailer after the image: search the whole file
        fh.seek(0)
        whole = fh.read()
        eoi, sos = whole.rfind(_JPEG_EOI), whole.rfind(_JPEG_SOS)
        if eoi >= 0 and eoi > sos:
            return
    raise _fail(path, "truncated JPEG: no end-of-image marker after the last scan")


def _check_png_chunks(fh: Any, size: int, path: pathlib.Path) -> None:
    """Walk a PNG's chunks: every CRC must match and the file must reach its IEND chunk.

    Pillow does not check the CRC of image data chunks, so a flipped bit would otherwise change
    pixels silently, and it may accept a file cut right after its image data.
    """
    fh.seek(len(_PNG_SIGNATURE))
    pos = len(_PNG_SIGNATURE)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise _fail(path, f"truncated PNG: file ends at byte {pos} before the IEND chunk")
        length = int.from_bytes(head[:4], "big")
        kind = head[4:8]
        if pos + 12 + length > size:
            raise _fail(
                path,
                f"truncated PNG: chunk {kind.decode('latin-1')!r} at byte {pos} runs past "
                f"the end of the file ({size} bytes)",
            )
        crc = zlib.crc32(kind)
        remaining = length
        while remaining:
            block = fh.read(min(remaining, _CHUNK))
            if not block:
                raise _fail(path, f"truncated PNG: file ends inside a chunk at byte {pos}")
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        stored = fh.read(4)
        if int.from_bytes(stored, "big") != crc:
            raise _fail(
                path, f"corrupt PNG: CRC mismatch in chunk {kind.decode('latin-1')!r} at byte {pos}"
            )
        pos += 12 + length
        if kind == b"IEND":
            return


def _tiff_orientation(img: Image.Image) -> int | None:
    """The TIFF Orientation tag (1 to 8), read before decoding; None when absent or invalid."""
    try:
        value = img.tag_v2.get(_EXIF_ORIENTATION)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a broken tag is no orientation
        return None
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return None


def _undo_tiff_orientation(img: Image.Image, orientation: int, arr: np.ndarray) -> np.ndarray:
    """Return a TIFF's pixels to their stored (sensor) orientation.

    Pillow's TIFF plugin applies the Orientation tag while loading (``ImageOps.exif_transpose``)
    and then deletes the tag. When it has done so, apply the inverse permutation of pixels: exact,
    nothing is resampled. Pillow's transposes per orientation: 2 mirror left-right, 3 rotate 180°,
    4 mirror top-bottom, 5 transpose, 6 rotate 270° (clockwise), 7 transverse, 8 rotate 90°.
    """
    if orientation == 1 or _EXIF_ORIENTATION in img.tag_v2:  # type: ignore[attr-defined]
        return arr  # nothing to undo, or this Pillow left the pixels as stored
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(arr, 1)  # undo a clockwise quarter turn
    elif orientation == 7:
        out = arr[::-1, ::-1].swapaxes(0, 1)
    else:
        out = np.rot90(arr, -1)  # orientation 8: undo a counter-clockwise quarter turn
    return np.ascontiguousarray(out)


def _clean_text(value: Any) -> str | None:
    """An EXIF text value as one clean line: cut at the first NUL, white space trimmed."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = " ".join(value.split("\x00", 1)[0].split())
    return text or None


def _read_metadata(img: Image.Image) -> tuple[int | None, str | None, str | None]:
    """(orientation, make, model) from Pillow's ``getexif()``; a corrupt EXIF block gives Nones."""
    try:
        exif = img.getexif()
        orientation = exif.get(_EXIF_ORIENTATION)
        make, model = exif.get(_EXIF_MAKE), exif.get(_EXIF_MODEL)
    except Exception:  # noqa: BLE001 - broken metadata never makes the pixels unusable
        return None, None, None
    if isinstance(orientation, tuple) and len(orientation) == 1:
        orientation = orientation[0]
    if isinstance(orientation, bool) or not isinstance(orientation, int):
        orientation = None
    elif not 1 <= orientation <= 8:
        orientation = None
    return orientation, _clean_text(make), _clean_text(model)


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
        model). Default False.
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
        One line, ``"<path>: <problem>"``: no such file, a directory, empty file, not a supported
        image, truncated or corrupt data, more than ``max_pixels`` pixels, floating-point or
        out-of-range 32-bit pixels, an unsupported mode.

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
    size = _check_regular_file(path)
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
                    _check_jpeg_end(fh, size, path)
                elif fmt == "PNG":
                    _check_png_chunks(fh, size, path)
                tiff_orientation = _tiff_orientation(img) if fmt == "TIFF" else None
                arr, bit_depth = _decode(fh, img, path)
                if tiff_orientation is not None:
                    arr = _undo_tiff_orientation(img, tiff_orientation, arr)
                orientation, make, model = (
                    _read_metadata(img) if return_metadata else (None, None, None)
                )
                if fmt == "TIFF":
                    orientation = tiff_orientation
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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory).

    Parameters
    ----------
    path : str or os.PathLike
        Any regular file.

    Returns
    -------
    digest : str
        64 lower-case hexadecimal characters.

    Raises
    ------
    InvalidImageError
        The file does not exist, is a directory, or cannot be read (one line naming the file).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"
    >>> _ = p.write_bytes(b"")
    >>> file_sha256(p)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a directory, not a file")
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
    except OSError as err:
        raise _fail(path, f"cannot read ({err.strerror or err})") from None
    return digest.hexdigest()


def _is_image_name(path: pathlib.Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _sort_key(path: pathlib.Path) -> str:
    return os.fspath(path)


def collect_image_paths(items: Iterable[str | os.PathLike[str]]) -> list[pathlib.Path]:
    """Expand files, folders and glob patterns into a list of image files.

    Parameters
    ----------
    items : iterable of str or os.PathLike
        Each one is
        - an existing file: kept as it is, whatever its extension (the decoder decides);
        - an existing folder: its image files, **not recursive**, sorted by name;
        - otherwise a glob pattern (``*``, ``?``, ``[...]``; ``**`` matches sub-folders, so
          ``"photos/**/*.JPG"`` is the recursive form): the matching image files, sorted.
        Image files are those with an extension in :data:`IMAGE_EXTENSIONS`
        (case-insensitive); hidden files (name starting with ``.``, e.g. macOS ``._x.jpg``) are
        skipped in folders and glob matches.

    Returns
    -------
    paths : list of pathlib.Path
        In the order of ``items``, each item's matches sorted; a file reached twice (same
        resolved path) is kept only where it first appears.

    Raises
    ------
    InvalidImageError
        An item that matches nothing: ``"<item>: no such file or folder"``,
        ``"<item>: no images in folder"`` or ``"<item>: no image files match this pattern"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.JPG", "a.png", "notes.txt"):
    ...     _ = (d / name).write_bytes(b"x")
    >>> [p.name for p in collect_image_paths([d])]
    ['a.png', 'b.JPG']
    """
    if isinstance(items, (str, bytes, os.PathLike)):
        raise TypeError("collect_image_paths expects a list of paths, not a single path")
    out: list[pathlib.Path] = []
    seen: set[str] = set()
    for item in items:
        text = os.fspath(item)
        path = pathlib.Path(text)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and _is_image_name(p)), key=_sort_key
            )
            if not found:
                raise _fail(path, "no images in folder")
        elif path.exists():
            raise _fail(path, "not a regular file or folder")
        elif _GLOB_MAGIC.search(text):
            found = sorted(
                (
                    pathlib.Path(m)
                    for m in glob.glob(text, recursive=True)
                    if os.path.isfile(m) and _is_image_name(pathlib.Path(m))
                ),
                key=_sort_key,
            )
            if not found:
                raise _fail(text, "no image files match this pattern")
        else:
            raise _fail(text, "no such file or folder")
        for p in found:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def crop_center(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop of an image to ``shape = (h, w)``, as in Binghamton's toolbox and prnu-python.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any dtype.
    shape : tuple of int
        ``(h, w)``, rows then columns, each at least 1.

    Returns
    -------
    crop : ndarray, shape (h, w) or (h, w, C)
        ``image[r0:r0 + h, c0:c0 + w]`` with ``r0 = (H - h) // 2`` and ``c0 = (W - w) // 2``: a
        view, not a copy.

    Raises
    ------
    InvalidImageError
        The image is smaller than the crop in either dimension (the message gives both sizes), or
        is not 2-D or 3-D.
    ValueError
        ``shape`` is not two positive integers.

    Examples
    --------
    >>> import numpy as np
    >>> crop_center(np.arange(25).reshape(5, 5), (2, 3))
    array([[ 6,  7,  8],
           [11, 12, 13]])
    """
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"crop shape must be two positive integers (h, w), got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    if image.ndim not in (2, 3):
        raise InvalidImageError(
            f"crop_center needs an (H, W) or (H, W, C) image, got shape {image.shape}"
        )
    rows, cols = image.shape[:2]
    if rows < h or cols < w:
        raise InvalidImageError(
            f"image of {rows}x{cols} (HxW) is smaller than the {h}x{w} crop requested"
        )
    r0 = (rows - h) // 2
    c0 = (cols - w) // 2
    return image[r0 : r0 + h, c0 : c0 + w]


_CROP_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")


def parse_crop(text: str) -> tuple[int, int]:
    """Parse a crop size ``"HxW"`` (rows x columns), e.g. ``"512x512"`` or ``"2000x3008"``.

    Parameters
    ----------
    text : str
        Two positive integers separated by ``x`` (or ``X``, ``×``); spaces around them allowed.

    Returns
    -------
    shape : tuple of int
        ``(h, w)``.

    Raises
    ------
    ValueError
        Anything else, with the text quoted.

    Examples
    --------
    >>> parse_crop("512x256")
    (512, 256)
    """
    match = _CROP_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"crop size must look like HxW, e.g. 512x512, got {text!r}")
    h, w = int(match.group(1)), int(match.group(2))
    if h < 1 or w < 1:
        raise ValueError(f"crop size must be positive, got {text!r}")
    return h, w

