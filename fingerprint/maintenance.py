"""Inspecting and repairing a library: list a reference's source images, take one image out of it,
reset the generator calibration to what the builds alone give.

A reference stores running sums (``fingerprint.estimate``), not images. One image's contribution
to them is a pure function of the image and the stored parameters (camera: ``S_i = W_i T_i``,
``N_i = T_i**2``; generator: ``sum_i = R_i``, ``power_i = |Y_i|**2``), so removing an image is
exact: decode it again, recompute its contribution with the reference's parameters (centre-cropped
to the reference's size, as the build did), subtract it from the sums and finalise the fingerprint
from the remaining sums. Up to float32 rounding the result equals a build without that image.

Resetting the calibration (:func:`reset_calibration`): the stored non-matching scores do not say
where they came from (a build and ``ganprint calibrate`` both key a score by (image SHA-256,
generator); distributed builds and older libraries store unkeyed values; the scores of a removed
generator's images stay), so the scores that builds give are *recomputed* from the references:
every generator's source images (re-read, checked against their recorded SHA-256, centre-cropped to
the reference's size) scored against every other generator of the same parameters, the pairs that
builds of the current generators in any order store. They replace all stored values in one commit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from fingerprint import __version__, interrupt
from fingerprint.errors import InvalidImageError
from fingerprint.calibration import NULL_KEY
from fingerprint.estimate import FingerprintParams, generator_residual, new_accumulator
from fingerprint.io import crop_center, file_sha256, iter_images
from reference_db import Library

__all__ = ["CalibrationReset", "RemovedImage", "list_sources", "remove_image", "reset_calibration"]

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class RemovedImage:
    """What ``remove_image`` took out: the source entry and the image count left."""

    name: str
    path: str
    sha256: str
    n_images: int


@dataclass(frozen=True)
class CalibrationReset:
    """What ``reset_calibration`` did: values dropped and written, and the pairs it could not recompute."""

    dropped: int  # values stored before (build and calibrate scores, keyed or not)
    written: int  # values stored now
    recomputed: int  # of which: scored again from the source files
    kept: int  # of which: stored build scores kept because their source file is missing or changed
    missing: int  # pairs left out: source file missing or changed, and no stored score of the pair


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

    The new fingerprint, sums, count and source list are written in one atomic commit
    (``Library.update`` with ``sources_removed``): the reference keeps its ``created`` time.
    The image's stored generator calibration scores (against the other generators) are kept:
    it remains an image of none of them. A generator's own statistics (its nulls and genuine range,
    ``fingerprint.generator_attribution``) were computed with the old fingerprint: they are deleted
    in the same commit and computed again from the remaining sources in a second one (until it
    lands the generator cannot match: unknown, never a false match); ``calibrate`` scores against
    it are lost with them.

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
        what = f"{recorded_path} was removed from reference {name!r} of {lib.path}"
        with interrupt.deferred(what), lib.transaction():  # one commit; the reference keeps its created time
            lib.update(name, fingerprint=fingerprint, sums=sums, n_images=ref.n_images - 1, sources_added=[],
                       sources_removed=[sha])
            if info.kind == "generator":  # its statistics were computed with the old fingerprint
                for key in lib.owned_calibration(name):
                    lib.clear_calibration(key)
    if info.kind == "generator":  # computed again for the new one, in a second commit
        from fingerprint.generator_stats import refresh_statistics

        with interrupt.deferred(f"the statistics of {name!r} in {library} were recomputed"):
            refresh_statistics(library, lock_timeout=lock_timeout)
    return RemovedImage(name, recorded_path, sha, ref.n_images - 1)


def _build_scores(lib: Library, stored: dict[tuple[str, str], float]) -> tuple[list[tuple[str, str, float]], int, int]:
    """(sha256, other generator, z) of every generator's sources against the others; (scores, kept, missing)."""
    from fingerprint.generator_match import generator_scorers

    infos = [i for i in lib.infos(with_sources=True) if i.kind == "generator" and not i.damaged]
    counted = {i.name: {sha for _, sha in i.sources} for i in infos}
    out: list[tuple[str, str, float]] = []
    kept = missing = 0
    scorers: dict[FingerprintParams, list] = {}  # each fingerprint read once per parameter set
    for info in infos:
        params = FingerprintParams.from_dict(dict(info.params, kind="generator"))
        if params not in scorers:
            scorers[params] = generator_scorers(lib, params)
        others = [g for g in scorers[params] if g.name != info.name]
        if not others:
            continue
        wanted = dict(info.sources)
        found = set()
        for item in iter_images(list(wanted), crop=tuple(info.shape[:2]), sha256=True):
            interrupt.check()
            if item.error is not None or item.sha256 != wanted.get(str(item.path)):
                continue
            found.add(item.sha256)
            r = generator_residual(item.image, params)
            # an image counted in both generators is a negative of neither: left out (a build scores it)
            out += [(item.sha256, g.name, g.score(r).z) for g in others if item.sha256 not in counted[g.name]]
        for _, sha in info.sources:
            if sha in found:
                continue
            for g in others:
                if sha in counted[g.name]:
                    continue
                if (sha, g.name) in stored:
                    out.append((sha, g.name, stored[(sha, g.name)]))
                    kept += 1
                else:
                    missing += 1
    return out, kept, missing


def _statistics_null_keys(lib: Library) -> list[str]:
    """The per-generator null datasets (``gnull:...``) of every generator, which ``calibrate`` also fills."""
    from fingerprint.generator_attribution import NULL_PREFIX, _expected_keys

    keys = []
    for info in lib.infos():
        if info.kind == "generator" and not info.damaged:
            keys += [k for k in _expected_keys(info.name, tuple(info.shape[:2])) if k.startswith(NULL_PREFIX + ":")]
    return keys


def reset_calibration(library: str | os.PathLike, *, lock_timeout: float = 10.0) -> CalibrationReset:
    """Drop every stored non-matching generator score and store those the builds give.

    What ``ganprint calibrate`` added goes; what a fresh build of the current generators (in any
    order) would store comes back: each generator's source images against every other generator
    of the same parameters, recomputed from the files (see the module notes). A source file that is
    missing or changed cannot be scored again: its stored score of the same pair, when there is one,
    is kept (it is a build's score of that very image), otherwise the pair is counted in
    ``missing``. The per-generator nulls of the decision (``fingerprint.generator_attribution``,
    which ``calibrate`` refines too) are dropped in the same commit and recomputed as a build
    computes them (``generator_stats.refresh_statistics``) in a second one; until it lands no
    generator can match (unknown, never a false match).
    """
    from fingerprint.generator_stats import refresh_statistics

    with Library(library, "r+", lock_timeout=lock_timeout, version=__version__) as lib:
        before = lib.calibration(NULL_KEY)
        stored = {(sha, ref): z for sha, ref, z in lib.calibration_scores(NULL_KEY)}
        scores, kept, missing = _build_scores(lib, stored)
        stat_keys = [k for k in _statistics_null_keys(lib) if lib.calibration(k).size]
        what = f"the generator calibration of {lib.path} was reset ({len(scores)} build score(s))"
        with interrupt.deferred(what), lib.transaction():
            lib.clear_calibration(NULL_KEY)
            if scores:
                lib.add_calibration(NULL_KEY, [z for _, _, z in scores], sha256=[h for h, _, _ in scores],
                                    against=[g for _, g, _ in scores])
            for key in stat_keys:
                lib.clear_calibration(key)
    with interrupt.deferred(f"the generator statistics of {library} were recomputed"):
        refresh_statistics(library, lock_timeout=lock_timeout)  # also those of a library built before them
    return CalibrationReset(int(before.size), len(scores), len(scores) - kept, kept, missing)
