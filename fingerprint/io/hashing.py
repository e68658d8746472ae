"""File identity: the SHA-256 of a file's bytes (how a library knows an image is already counted)."""

from __future__ import annotations

import hashlib
import os
import pathlib

from fingerprint.errors import InvalidImageError
from fingerprint.io.integrity import open_regular_file

__all__ = ["file_sha256"]

_CHUNK = 1 << 20  # bytes per read


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
        The file does not exist, is a directory, is not a regular file (a FIFO or a device is
        refused without being opened for a blocking read), or cannot be read (``.path`` set; one
        line naming the file).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"
    >>> _ = p.write_bytes(b"")
    >>> file_sha256(p)
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise InvalidImageError("is a directory, not a file", path=path)
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    fh, _ = open_regular_file(path, allow_empty=True)
    try:
        with fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
    except OSError as err:
        raise InvalidImageError(f"cannot read ({err.strerror or err})", path=path) from None
    return digest.hexdigest()
