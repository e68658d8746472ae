"""What an image file says about itself besides its pixels: :class:`ImageInfo`.

- EXIF orientation (tag 274), make (271) and model (272), read with Pillow's ``getexif()``; a
  corrupt EXIF block gives None, never an error (broken metadata does not make pixels unusable).
- TIFF files are read by :mod:`fingerprint.io.tiff`, which takes orientation, make and model from
  the first page's tags (the same IFD0 tags) and cleans the text with :func:`clean_text`.
- JPEG quality: the IJG quality factor (1 to 100) estimated from the luminance quantisation table
  (:func:`jpeg_quality`).

Nothing here decodes pixels or raises about a file.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "IJG_LUMINANCE",
    "ImageInfo",
    "clean_text",
    "file_jpeg_quality",
    "ijg_table",
    "jpeg_quality",
    "read_exif",
    "read_jpeg_quality",
]

_EXIF_ORIENTATION = 274
_EXIF_MAKE = 271
_EXIF_MODEL = 272

#: The IJG (libjpeg) base luminance quantisation table, ITU-T T.81 Annex K.1, natural (row-major)
#: order: the table libjpeg scales for every quality setting.
IJG_LUMINANCE: np.ndarray = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.int64,
)  # fmt: skip
IJG_LUMINANCE.flags.writeable = False


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`~fingerprint.io.load_image` learnt about a file besides its pixels.

    Attributes
    ----------
    path : pathlib.Path
        The file, as given.
    format : str
        Pillow's format name: ``"JPEG"``, ``"MPO"`` (multi-picture JPEG), ``"PNG"``, ``"TIFF"``,
        ``"BMP"`` or ``"WEBP"``.
    mode : str
        Pillow's mode of the file as opened (``"RGB"``, ``"L"``, ``"P"``, ``"I;16"``, ...); for TIFF,
        read by tifffile, the Pillow-style name of the stored layout. A 16-bit colour file shows
        ``"RGB"`` or ``"RGBA"`` here and ``bit_depth == 16``.
    width, height : int
        Size in pixels, in sensor orientation (as stored; EXIF orientation not applied).
    bit_depth : int
        Bits per sample as stored: 1, 8, 16, or 32 (32-bit integer files); TIFF files also 2 to 15
        (a 12-bit TIFF says 12 and keeps its values, 0 to 4095, in uint16).
    exif_orientation : int or None
        EXIF tag 274 (1 to 8; 6 means "rotate 90° clockwise to display"); None when absent or
        invalid.
    make, model : str or None
        EXIF tags 271 and 272, NULs and surrounding white space removed; None when absent or empty.
    jpeg_quality : int or None
        JPEG and MPO files: the IJG quality (1 to 100) whose luminance table is closest to the
        file's (:func:`jpeg_quality`); exact for files written by libjpeg and its descendants
        (Pillow, OpenCV, ImageMagick, most software), a best fit for camera tables. None for other
        formats or a file without a usable table.
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
    jpeg_quality: int | None = None


def ijg_table(quality: int, *, baseline: bool = True) -> np.ndarray:
    """The luminance quantisation table libjpeg writes for ``quality`` (``jpeg_set_quality``).

    With the base table ``T`` (:data:`IJG_LUMINANCE`) and the percentage scale

    ``S = 5000 / q`` (integer division) for ``q < 50``, ``S = 200 - 2 q`` for ``q >= 50``,

    each entry is ``Q = clip(floor((T * S + 50) / 100), 1, 255)`` (upper bound 32767 when not
    ``baseline``). ``q = 50`` gives ``T`` itself, ``q = 100`` all ones.

    Parameters
    ----------
    quality : int
        1 to 100.
    baseline : bool, optional
        Clip at 255 (8-bit tables, libjpeg's ``force_baseline``; default) instead of 32767.

    Returns
    -------
    table : ndarray of int64, shape (64,)
        Natural (row-major) order.

    Examples
    --------
    >>> ijg_table(50)[:8].tolist()
    [16, 11, 10, 16, 24, 40, 51, 61]
    >>> int(ijg_table(100).max())
    1
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    scale = 5000 // int(quality) if quality < 50 else 200 - 2 * int(quality)
    return np.clip((IJG_LUMINANCE * scale + 50) // 100, 1, 255 if baseline else 32767)


def jpeg_quality(luminance: Any) -> int | None:
    """Estimate the IJG quality factor of a JPEG from its luminance quantisation table.

    The IJG scaling (:func:`ijg_table`) is inverted by search: the estimate is the quality ``q``
    in 1..100 minimising ``sum_i |Q_i - Q_i(q)|`` over the 64 entries (the lowest such ``q`` on a
    tie). For a table libjpeg wrote the distance is 0 and ``q`` is exact; for another encoder's
    table (cameras) it is the IJG quality of about the same coarseness. Entries above 255 (a
    16-bit table) are compared with the unclipped IJG tables.

    Parameters
    ----------
    luminance : sequence of 64 int
        Quantisation table 0 in natural (row-major) order, as Pillow gives it
        (``img.quantization[0]``).

    Returns
    -------
    quality : int or None
        1 to 100; None when ``luminance`` is not 64 positive integers.

    Examples
    --------
    >>> jpeg_quality(ijg_table(75))
    75
    >>> jpeg_quality([1] * 64)
    100
    """
    try:
        q = np.asarray(luminance, dtype=np.int64).ravel()
    except (TypeError, ValueError):
        return None
    if q.shape != (64,) or q.min() < 1:
        return None
    baseline = bool(q.max() <= 255)
    distances = [int(np.abs(q - ijg_table(k, baseline=baseline)).sum()) for k in range(1, 101)]
    return int(np.argmin(distances)) + 1


def read_jpeg_quality(img: Image.Image) -> int | None:
    """:func:`jpeg_quality` of an opened JPEG or MPO (table 0); None for other formats."""
    tables = getattr(img, "quantization", None)
    if not isinstance(tables, dict) or 0 not in tables:
        return None
    return jpeg_quality(tables[0])


def file_jpeg_quality(path) -> int | None:
    """:func:`read_jpeg_quality` of an image file, None for other formats or an unreadable header
    (the decoder reports those when the image is read)."""
    try:
        with Image.open(path) as img:
            return read_jpeg_quality(img) if img.format in ("JPEG", "MPO") else None
    except Exception:  # noqa: BLE001 - the decoder names the file and the problem
        return None


def clean_text(value: Any) -> str | None:
    """An EXIF or TIFF text value as one clean line: cut at the first NUL, white space trimmed; None
    when empty or not text.

    >>> clean_text("  NIKON CORPORATION\\x00\\x00 "), clean_text(b""), clean_text(3)
    ('NIKON CORPORATION', None, None)
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = " ".join(value.split("\x00", 1)[0].split())
    return text or None


def read_exif(img: Image.Image) -> tuple[int | None, str | None, str | None]:
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
    return orientation, clean_text(make), clean_text(model)
