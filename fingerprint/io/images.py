"""The file loop: every command that reads image files reads them through :func:`iter_images`.

For each path, in order: (optionally) its SHA-256, its pixels (:func:`~fingerprint.io.load_image`),
(optionally) a centre crop (:func:`~fingerprint.io.crop_center`). What goes wrong with one file
(a ``MemoryError`` included: an image too large for the memory left) is not raised but yielded,
as an :class:`~fingerprint.errors.InvalidImageError` about that file (``.path`` set, message
``"<path>: <problem>"`` on one line), so the caller decides whether to skip it (warn and go on)
or to stop (strict mode: ``raise item.error``).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from fingerprint.errors import InvalidImageError
from fingerprint.io.crop import check_crop_shape, crop_center
from fingerprint.io.decode import MAX_PIXELS, load_image
from fingerprint.io.hashing import file_sha256

__all__ = ["LoadedImage", "iter_images"]


@dataclass(frozen=True)
class LoadedImage:
    """One file of :func:`iter_images`: its pixels, or why it has none.

    Attributes
    ----------
    path : pathlib.Path
        The file, as given.
    image : ndarray or None
        The stored pixels (uint8 or uint16, (H, W) or (H, W, 3), read-only), centre-cropped when a
        crop was asked for; None when ``error`` is set or the file was ``skipped``.
    error : InvalidImageError or None
        Why the file has no pixels: ``error.path == str(path)``, ``str(error)`` is
        ``"<path>: <problem>"``.
    sha256 : str or None
        The file's SHA-256 (64 hexadecimal characters) when hashes were asked for, else None.
    skipped : bool
        True when the file's hash is one of ``skip``: it was not decoded (no image, no error).
    """

    path: pathlib.Path
    image: np.ndarray | None = None
    error: InvalidImageError | None = None
    sha256: str | None = None
    skipped: bool = False


def _about(err: InvalidImageError, path: pathlib.Path) -> InvalidImageError:
    """``err`` as an error about ``path`` (crop errors concern an array and name no file)."""
    return err if err.path == os.fspath(path) else err.at(path)


def iter_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    crop: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
    sha256: bool = False,
    skip: Container[str] = (),
) -> Iterator[LoadedImage]:
    """Load image files one at a time: ``(path, image)`` or ``(path, error)`` for each, in order.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Image files (expand folders and patterns first with
        :func:`~fingerprint.io.collect_image_paths`). Consumed lazily: one image in memory at a
        time, however many paths.
    crop : (h, w), optional
        Centre-crop every image to ``h`` rows by ``w`` columns (:func:`~fingerprint.io.crop_center`);
        an image smaller than that is an error about its file.
    max_pixels : int, optional
        Decompression-bomb limit passed to :func:`~fingerprint.io.load_image`.
    sha256 : bool, optional
        Hash every file first (:func:`~fingerprint.io.file_sha256`, before it is decoded).
    skip : container of str, optional
        With ``sha256``: hashes of files not to decode (already counted); such a file is yielded
        with ``skipped=True``. Looked up when the file is reached, so the caller may add to it
        while iterating (a second copy of a file in the same run is then skipped too).

    Yields
    ------
    LoadedImage
        ``image`` set, or ``error`` set, or ``skipped``; ``sha256`` when asked for.

    Raises
    ------
    ValueError
        ``crop`` or ``max_pixels`` is malformed (a programming error, not a bad file).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.zeros((40, 60), np.uint8)).save(d / "a.png")
    >>> _ = (d / "b.png").write_bytes(b"not an image")
    >>> for item in iter_images([d / "a.png", d / "b.png"], crop=(32, 32)):
    ...     print(item.path.name, None if item.image is None else item.image.shape, item.error is not None)
    a.png (32, 32) False
    b.png None True
    """
    if crop is not None:
        check_crop_shape(crop)
    for given in paths:
        yield _load_one(pathlib.Path(given), crop, max_pixels, sha256, skip)


def _load_one(path: pathlib.Path, crop: tuple[int, int] | None, max_pixels: int, sha256: bool,
              skip: Container[str]) -> LoadedImage:
    """One step of :func:`iter_images`: hash, skip or decode and crop ``path``; errors returned, not raised."""
    digest = None
    try:
        if sha256:
            digest = file_sha256(path)
            if digest in skip:
                return LoadedImage(path, sha256=digest, skipped=True)
        image = load_image(path, max_pixels=max_pixels)
        if crop is not None:
            image = crop_center(image, crop)
    except InvalidImageError as err:
        return LoadedImage(path, error=_about(err, path), sha256=digest)
    except OSError as err:  # load_image and file_sha256 translate their own; anything left over
        problem = f"cannot read ({err.strerror or err})"
        return LoadedImage(path, error=InvalidImageError(problem, path=path), sha256=digest)
    except MemoryError:  # load_image translates its own; this one came from hashing or cropping
        problem = "not enough memory to read this image (MemoryError)"
        return LoadedImage(path, error=InvalidImageError(problem, path=path), sha256=digest)
    return LoadedImage(path, image=image, sha256=digest)

