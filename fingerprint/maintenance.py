"""Inspecting and repairing one reference: list its source images, take one image out of it.

A reference stores running sums (``fingerprint.estimate``), not images. One image's contribution
to them is a pure function of the image and the stored parameters (camera: ``S_i = W_i T_i``,
``N_i = T_i**2``; generator: ``sum_i = R_i``, ``power_i = |Y_i|**2``), so removing an image is
exact: decode it again, recompute its contribution with the reference's parameters (centre-cropped
to the reference's size, as the build did), subtract it from the sums and finalise the fingerprint
from the remaining sums. Up to float32 rounding the result equals a build without that image.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from fingerprint import __version__, interrupt
from fingerprint.errors import InvalidImageError
from fingerprint.estimate import FingerprintParams, new_accumulator
from fingerprint.io import crop_center, file_sha256, iter_images
from reference_db import Library

__all__ = ["RemovedImage", "list_sources", "remove_image"]

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class RemovedImage:
    """What ``remove_image`` took out: the source entry and the image count left."""

    name: str
    path: str
    sha256: str
    n_images: int


def list_sources(library: str | os.PathLike, name: str) -> list[tuple[str, str]]:
    """``(file name, sha256)`` of every image counted in reference ``name``, in the order added."""
    with Library(library, "r") as lib:
        return list(lib.info(name, with_sources=True).sources)


def _find_file(sources: list[tuple[str, str]], image: str, where: str) -> tuple[str, str]:
    """The recorded ``(path, sha256)`` that ``image`` (a file or a SHA-256) names, and the file to read."""
    if os.path.exists(image) or not _SHA256_RE.match(image):
        sha = file_sha256(image)  # one-line InvalidImageError/OSError for an unreadable file
        for path, recorded in sources:
            if recorded == sha:
                return path, image
        raise InvalidImageError(f"{image}: not counted in {where} (its SHA-256 {sha[:12]}... is not among the "
                                f"{len(sources)} source(s); see 'ganprint sources')")
    sha = image.lower()
    for path, recorded in sources:
        if recorded == sha:
            if os.path.isfile(path) and file_sha256(path) == sha:
                return path, path
            raise InvalidImageError(f"{where}: the source {path} of SHA-256 {sha[:12]}... is missing or has "
                                    "changed; give the image file itself: --image PATH")
    raise InvalidImageError(f"{where}: no source has SHA-256 {image}; see 'ganprint sources'")


def remove_image(library: str | os.PathLike, name: str, image: str, *, lock_timeout: float = 10.0) -> RemovedImage:
    """Take one source image out of reference ``name``: subtract its contribution from the sums.

    Parameters
    ----------
    library : the HDF5 library.
    name : the reference.
    image : the image file, or the SHA-256 of a recorded source whose file still exists unchanged.

    The new fingerprint, sums, count and source list are written in one atomic commit (the
    reference is written anew, so its ``created`` time becomes the time of the removal).

    Raises
    ------
    InvalidImageError
        The image is not counted in the reference, cannot be read, or is the reference's last one
        (remove the reference instead).
    """
    with Library(library, "r+", lock_timeout=lock_timeout, version=__version__) as lib:
        ref = lib.get(name, with_sums=True)
        info = ref.info
        where = f"reference {name!r} of {lib.path}"
        recorded_path, read_path = _find_file(list(info.sources), image, where)
        sha = next(s for p, s in info.sources if p == recorded_path)
        if ref.n_images <= 1:
            raise InvalidImageError(f"{where}: {recorded_path} is its only image; remove the reference instead "
                                    f"(ganprint remove LIBRARY {name})")
        params = FingerprintParams.from_dict(dict(info.params, kind=info.kind))
        item = next(iter(iter_images([read_path], sha256=True)))
        if item.error is not None:
            raise item.error
        if item.sha256 != sha:
            raise InvalidImageError(f"{read_path}: changed while being read; nothing was removed")
        frame = item.image
        if tuple(frame.shape[:2]) != tuple(info.shape[:2]):  # the build's centre crop, whatever --crop said
            frame = crop_center(frame, tuple(info.shape[:2]))
        one = new_accumulator(params, backend="cpu")
        one.add(frame, name=read_path)  # one image into zero sums: exactly its contribution
        sums = {k: (np.asarray(v) - one.sums[k].astype(np.asarray(v).dtype)) for k, v in ref.sums.items()}
        if "N" in sums:  # camera: sum of squared weights, >= 0 up to rounding
            np.maximum(sums["N"], 0, out=sums["N"])
        if "power" in sums:
            np.maximum(sums["power"], 0, out=sums["power"])
        rest = type(one).from_sums(params, sums, ref.n_images - 1)
        fingerprint = rest.fingerprint()
        sources = [(p, s) for p, s in info.sources if s != sha]
        what = f"{recorded_path} was removed from reference {name!r} of {lib.path}"
        with interrupt.deferred(what), lib.transaction():  # written anew, in one commit
            lib.remove(name)
            lib.add(name, kind=info.kind, fingerprint=fingerprint, sums=sums, n_images=ref.n_images - 1,
                    shape=info.shape, params=info.params, sources=sources)
    return RemovedImage(name, recorded_path, sha, ref.n_images - 1)
