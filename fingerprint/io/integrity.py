"""Integrity checks on image files, before and beside decoding: nothing is papered over.

- :func:`open_regular_file`: open a path for reading only if it is a regular, non-empty file. A
  FIFO, a socket or a device is refused **before** anything could block on it: the file is opened
  with ``O_NONBLOCK`` (so opening a FIFO without a writer returns at once) and checked with
  ``fstat`` on the open descriptor (so nothing can be swapped in between a check and the open).
- :func:`check_png_chunks`: every PNG chunk's CRC-32 matches and the file reaches ``IEND``
  (truncation and bit flips, which Pillow does not check in image data chunks).

JPEG completeness (every scan's coded data present) is :mod:`fingerprint.io.jpeg_scan`'s.
Each check raises :class:`~fingerprint.errors.InvalidImageError` about the file (``.path`` set,
message ``"<path>: <problem>"``).
"""

from __future__ import annotations

import os
import pathlib
import stat
import zlib
from typing import BinaryIO

from fingerprint.errors import InvalidImageError

__all__ = ["check_png_chunks", "open_regular_file"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CHUNK = 1 << 20  # bytes per read when walking PNG chunks
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def open_regular_file(path: str | os.PathLike[str], *, allow_empty: bool = False) -> tuple[BinaryIO, int]:
    """Open ``path`` for binary reading if it is a regular file: (file object, size in bytes).

    Raises InvalidImageError saying why not: no such file, a directory, a FIFO, socket or device
    (refused without blocking and without reading a byte), unreadable, or empty (unless
    ``allow_empty``). The caller closes the file.
    """
    path = pathlib.Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise InvalidImageError("no such file", path=path) from None
    except NotADirectoryError:
        raise InvalidImageError("no such file (a parent is not a folder)", path=path) from None
    except IsADirectoryError:
        raise InvalidImageError("is a directory, not an image file", path=path) from None
    except OSError as err:
        raise InvalidImageError(f"cannot read ({err.strerror or err})", path=path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidImageError("is a directory, not an image file", path=path)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise InvalidImageError(f"{kind}, not a regular file: not read", path=path)
        if st.st_size == 0 and not allow_empty:
            raise InvalidImageError("empty file (0 bytes)", path=path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return fh, st.st_size


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
