"""Integrity checks on image files, before and beside decoding: nothing is papered over.

- :func:`check_regular_file`: the path is an existing, non-empty regular file (its size in bytes).
- :func:`check_jpeg_end`: a JPEG ends its last scan with an end-of-image marker (truncation).
- :func:`check_png_chunks`: every PNG chunk's CRC-32 matches and the file reaches ``IEND``
  (truncation and bit flips, which Pillow does not check in image data chunks).

Each check raises :class:`~fingerprint.errors.InvalidImageError` about the file (``.path`` set,
message ``"<path>: <problem>"``).
"""

from __future__ import annotations

import pathlib
import zlib
from typing import BinaryIO

from fingerprint.errors import InvalidImageError

__all__ = ["check_jpeg_end", "check_png_chunks", "check_regular_file"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = 1 << 20  # bytes per read when walking PNG chunks
_JPEG_TAIL = 1 << 16  # bytes at the end of a JPEG searched for its end-of-image marker
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"


def check_regular_file(path: pathlib.Path) -> int:
    """Return the size of ``path`` in bytes, or raise InvalidImageError saying why it is no file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidImageError("no such file", path=path) from None
    except NotADirectoryError:
        raise InvalidImageError("no such file (a parent is not a folder)", path=path) from None
    except OSError as err:
        raise InvalidImageError(f"cannot read ({err.strerror or err})", path=path) from None
    if path.is_dir():
        raise InvalidImageError("is a directory, not an image file", path=path)
    if not path.is_file():
        raise InvalidImageError("not a regular file", path=path)
    if st.st_size == 0:
        raise InvalidImageError("empty file (0 bytes)", path=path)
    return st.st_size


def check_jpeg_end(fh: BinaryIO, size: int, path: pathlib.Path) -> None:
    """Refuse a JPEG whose last scan is not followed by an end-of-image marker (FF D9).

    Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so FF D9 and
    FF DA (start of scan) only occur as markers. A complete file has an EOI after its last SOS;
    data appended after the EOI (camera trailers, padding, MPF images with their own EOI) is fine.
    The last 64 KiB are searched first, the whole file only when they hold neither marker.
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
    raise InvalidImageError("truncated JPEG: no end-of-image marker after the last scan", path=path)


def check_png_chunks(fh: BinaryIO, size: int, path: pathlib.Path) -> None:
    """Walk a PNG's chunks: every CRC must match and the file must reach its IEND chunk.

    A chunk is ``length (4 bytes, big-endian) | type (4) | data (length) | CRC-32 of type + data
    (4)``, so it spans ``12 + length`` bytes. Pillow does not check the CRC of image data chunks,
    so a flipped bit would otherwise change pixels silently, and it may accept a file cut right
    after its image data. Reads at most 1 MiB at a time.
    """
    fh.seek(len(_PNG_SIGNATURE))
    pos = len(_PNG_SIGNATURE)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            raise InvalidImageError(f"truncated PNG: file ends at byte {pos} before the IEND chunk", path=path)
        length = int.from_bytes(head[:4], "big")
        kind = head[4:8]
        if pos + 12 + length > size:
            raise InvalidImageError(
                f"truncated PNG: chunk {kind.decode('latin-1')!r} at byte {pos} runs past "
                f"the end of the file ({size} bytes)",
                path=path,
            )
        crc = zlib.crc32(kind)
        remaining = length
        while remaining:
            block = fh.read(min(remaining, _CHUNK))
            if not block:
                raise InvalidImageError(f"truncated PNG: file ends inside a chunk at byte {pos}", path=path)
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
        stored = fh.read(4)
        if int.from_bytes(stored, "big") != crc:
            raise InvalidImageError(
                f"corrupt PNG: CRC mismatch in chunk {kind.decode('latin-1')!r} at byte {pos}", path=path
            )
        pos += 12 + length
        if kind == b"IEND":
            return
