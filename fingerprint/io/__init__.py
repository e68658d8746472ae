"""Image files in, pixel arrays out: the only place where ganprint decodes an image file.

Everything that can go wrong with a file (missing, a FIFO or device, empty, not an image,
truncated, corrupt, absurdly large, too large for the memory left, floating point) is reported as one :class:`~fingerprint.errors.InvalidImageError`
about it (``.path`` set) whose message is a single line ``"<path>: <problem>"``, so the CLI
catches one family. Pixels come back as stored, in sensor orientation (see
:mod:`fingerprint.io.decode` for every decoding rule).

Modules, each importing only those listed before it:

- :mod:`~fingerprint.io.integrity`: opening regular files only (a FIFO or device is refused
  without blocking), PNG chunk CRCs;
- :mod:`~fingerprint.io.metadata`: :class:`ImageInfo`, EXIF orientation, make, model, JPEG quality;
- :mod:`~fingerprint.io.hashing`: :func:`file_sha256`;
- :mod:`~fingerprint.io.paths`: :func:`collect_image_paths` (files, folders, glob patterns);
- :mod:`~fingerprint.io.crop`: :func:`crop_center`;
- :mod:`~fingerprint.io.jpeg_scan`: every JPEG scan complete, whatever the file ends with (its
  Huffman-coded bits walked by the Numba loop :mod:`kernels.jpeg_entropy_cpu`);
- :mod:`~fingerprint.io.tiff`: TIFF read with tifffile, exactly, one rule per layout;
- :mod:`~fingerprint.io.decode`: :func:`load_image` (integrity, metadata, JPEG scans, TIFF);
- :mod:`~fingerprint.io.images`: :func:`iter_images`, the file loop of every command (decode,
  crop, hashing).
"""

from __future__ import annotations

from fingerprint.io.crop import crop_center
from fingerprint.io.decode import MAX_PIXELS, load_image
from fingerprint.io.hashing import file_sha256
from fingerprint.io.images import LoadedImage, iter_images
from fingerprint.io.metadata import ImageInfo, jpeg_quality
from fingerprint.io.paths import IMAGE_EXTENSIONS, collect_image_paths

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageInfo",
    "LoadedImage",
    "collect_image_paths",
    "crop_center",
    "file_sha256",
    "iter_images",
    "jpeg_quality",
    "load_image",
]
