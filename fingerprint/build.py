"""Building fingerprints: from images (arrays) in memory, or from files into a reference library.

file -> ``io.iter_images`` (SHA-256, decode, optional centre crop) -> accumulator (``estimate``) -> ``Library``.
Memory holds one image plus the running sums. A library is written once per build, atomically,
under the library's writer lock; an interrupted build leaves it as it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from fingerprint import __version__, interrupt
from fingerprint.build_quality import BuildQuality
from fingerprint.calibration import MATCH_FPR, MATCH_Z_MIN, NULL_KEY, threshold_from_null
from fingerprint.errors import InvalidImageError, ReferenceExistsError, ShapeMismatchError
from fingerprint.estimate import FingerprintParams, generator_residual, new_accumulator
from fingerprint.generator_attribution import load_generator_models
from fingerprint.generator_stats import GeneratorStatistics, calibration_records, write_records
from fingerprint.io import collect_image_paths, crop_center, iter_images
from fingerprint.residual import check_image
from reference_db import Library

__all__ = ["BuildReport", "build_fingerprint", "build_reference", "default_params"]


def default_params(kind: str, **overrides) -> FingerprintParams:
    """Estimator parameters of ``kind`` (``"camera"`` or ``"generator"``) with the given overrides.

    ``FingerprintParams(kind=kind, **overrides)`` with None overrides left out: the defaults
    themselves are written once, in ``fingerprint.estimate.KIND_DEFAULTS``.
    """
    return FingerprintParams(kind=kind, **{k: v for k, v in overrides.items() if v is not None})


def build_fingerprint(images: Iterable[np.ndarray], kind: str = "camera", *,
                      crop: tuple[int, int] | None = None, backend: str = "auto", **params) -> np.ndarray:
    """Fingerprint of a set of images held in memory.

    Parameters
    ----------
    images : iterable of ndarray, each (H, W) or (H, W, 3), uint8/uint16, all the same size
        (or larger than ``crop``).
    kind : {"camera", "generator"}
        Camera: maximum-likelihood PRNU ``K`` (float32, H x W). Generator: mean residual
        ``F`` (float32, C x H x W).
    crop : (h, w), optional
        Centre-crop every image to this size first.
    backend : {"auto", "cpu", "cuda"}
        Where each image's noise residual is computed (resolved once, at the first image, by
        ``kernels._backend.resolve_backend``); the running sums stay on the CPU.
    **params
        Overrides of :class:`~fingerprint.estimate.FingerprintParams` (sigma, levels, color, ...).

    Returns
    -------
    ndarray of float32
    """
    acc = new_accumulator(default_params(kind, **params), backend=backend)
    for i, image in enumerate(images):
        acc.add(crop_center(image, crop) if crop else image, name=f"image {i}")
    return acc.fingerprint()


@dataclass
class BuildReport:
    """What a build did: images added, skipped (with the reason) and the totals."""

    name: str
    kind: str
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_images: int = 0
    created: bool = False
    quality: BuildQuality | None = None  # the self-check of the images added (build_quality)


def resume_reference(lib: Library | None, name: str, kind: str, sigma: float | None):
    """Parameters, accumulator and counted SHA-256s to continue reference ``name`` of ``lib``.

    A new reference (or no library yet) starts from empty sums with the default parameters; an
    existing one from its stored sums, refusing another kind or another sigma.
    """
    params = default_params(kind, sigma=sigma)
    if lib is None or name not in lib:
        return params, new_accumulator(params), set()
    ref = lib.get(name)
    if ref.kind != kind:
        raise ReferenceExistsError(f"{lib.path}: reference {name!r} is a {ref.kind}, not a {kind}")
    stored = FingerprintParams.from_dict(dict(ref.info.params, kind=kind))
    if sigma is not None and stored.sigma != float(sigma):
        raise ReferenceExistsError(f"{lib.path}: reference {name!r} was built with sigma {stored.sigma}, not {sigma}")
    acc = type(new_accumulator(stored)).from_sums(stored, ref.sums, ref.n_images)
    acc.shape = tuple(ref.info.shape[:2])
    return stored, acc, {sha for _, sha in ref.info.sources}


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    # disable=None: shown on a terminal only, so logs and pipes stay clean
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None if enabled else True, leave=False)


def build_reference(library: str | os.PathLike, name: str, kind: str, paths: Sequence[str | os.PathLike], *,
                    crop: tuple[int, int] | None = None, strict: bool = False, sigma: float | None = None,
                    progress: bool = True, lock_timeout: float = 10.0,
                    warn: Callable[[str], None] | None = None, backend: str = "auto",
                    max_pixels: int | None = None) -> BuildReport:
    """Add images to reference ``name`` of a library, creating the library or reference as needed.

    Parameters
    ----------
    library : path of the HDF5 library (created when missing).
    name, kind : the reference and its kind ("camera" or "generator"); an existing reference of
        another kind is refused.
    paths : files, folders or glob patterns.
    crop : centre-crop every image to (h, w) first.
    strict : stop at the first unreadable or mismatched image (default: skip it and go on).
    sigma : estimator noise std (default 3, Binghamton); must equal the reference's when updating.
    warn : called with a one-line message for every skipped image (default: print to stderr).
    backend : "auto", "cpu" or "cuda": where the images' noise residuals are computed (as in
        :func:`build_fingerprint`); the library's sums are the same either way, up to rounding.
    max_pixels : the decoder's size limit (default ``io.MAX_PIXELS``); an image that does not fit
        in memory (``MemoryError``) is skipped like a bad file.

    Returns
    -------
    BuildReport

    Raises
    ------
    InvalidImageError, ShapeMismatchError
        In strict mode, for the first bad image; otherwise when no image at all could be used.
    LibraryError
        For library problems (not a library, locked, disk full, ...); the library is unchanged.
    """
    from fingerprint.attribution import generator_scorers

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    files = collect_image_paths(paths)
    strict = strict or len(files) == 1  # one file: its own error is the one line to show
    report = BuildReport(name, kind)
    open_library = lambda: Library(library, "a", lock_timeout=lock_timeout, version=__version__)  # noqa: E731
    with contextlib.ExitStack() as stack:
        # A new library is created only when there is something to write into it; an existing one
        # is locked for the whole build, so that nobody updates the reference in between.
        lib = stack.enter_context(open_library()) if os.path.exists(library) else None
        params, acc, seen = resume_reference(lib, name, kind, sigma)
        acc.backend = backend  # resolved at the first image (kernels._backend.resolve_backend)
        new_sources: list[tuple[str, str]] = []
        others = generator_scorers(lib, params, exclude=name) if kind == "generator" and lib is not None else []
        null_scores: list[tuple[str, str, float]] = []  # (image sha256, other generator, z)
        stats = GeneratorStatistics(lib, name, params) if kind == "generator" else None
        report.quality = quality = BuildQuality(kind)
        with progress_bar(len(files), f"build {name}", progress) as bar:
            # hashed before decoding: a file already counted (or seen earlier in this run) is not read
            decode = {} if max_pixels is None else {"max_pixels": max_pixels}
            for item in iter_images(files, crop=crop, sha256=True, skip=seen, **decode):
                interrupt.check()
                bar.update(1)
                path = str(item.path)
                if item.skipped:
                    report.skipped.append((path, "already counted in this reference"))
                    continue
                try:
                    if item.error is not None:
                        raise item.error
                    residual = quality.add(acc, item.image, path)  # acc.add; errors name the image by ``path``
                    null_scores += [(item.sha256, g.name, g.score(residual).z) for g in others]
                    if stats is not None:
                        stats.add(item.image, residual)
                except (InvalidImageError, ShapeMismatchError, MemoryError) as caught:
                    err = _out_of_memory(path, item.image) if isinstance(caught, MemoryError) else caught
                    if strict:
                        raise err
                    report.skipped.append((path, str(err)))
                    warn(f"{err}; skipped")
                    continue
                seen.add(item.sha256)
                new_sources.append((path, item.sha256))
                report.added.append(path)
        if nothing_to_write(report, acc, len(files), warn):
            return report
        if lib is None:
            lib = stack.enter_context(open_library())
            if name in lib:
                raise ReferenceExistsError(f"{lib.path}: another process created reference {name!r} during this "
                                           "build; run the build again to add these images to it")
            if kind == "generator":  # generators another build committed meanwhile: score against them too
                null_scores += _late_null_scores(generator_scorers(lib, params, exclude=name), new_sources, crop,
                                                 params, decode)
        if kind == "generator" and name not in lib:  # a new generator: the earlier ones' images against it too
            null_scores += reverse_null_scores(lib, name, params, acc.fingerprint(), decode, warn)
        quality.finish(acc)  # each added image against the others (build_quality): the quality line
        records = stats.finish(lib, acc, decode, warn) if stats is not None else []
        commit_reference(lib, report, acc, params, crop, new_sources, null_scores, records,
                         replace=stats.replaces if stats is not None else ())
    return report


def reverse_null_scores(lib: Library, name: str, params: FingerprintParams, fingerprint: np.ndarray,
                         decode: dict, warn: Callable[[str], None]) -> list:
    """(sha256, ``name``, z) of the other generators' source images against the new fingerprint of ``name``.

    A build scores its own images against the generators already present; this scores the other
    direction, re-reading the earlier generators' source files (each centre-cropped to its own
    reference's size, checked against its recorded SHA-256), so that the stored non-matching scores,
    hence the threshold, do not depend on the order in which generators were built. A file missing or
    changed since is left out, with one warning.
    """
    from fingerprint.attribution import generator_scorers
    from fingerprint.generator_match import GeneratorReference

    new = [GeneratorReference(name, fingerprint, params, None)]
    out, missing = [], 0
    for other in generator_scorers(lib, params, exclude=name):
        info = lib.info(other.name)
        got = _late_null_scores(new, list(info.sources), tuple(info.shape[:2]), params, decode)
        missing += len(info.sources) - len(got)
        out += got
    if missing:
        warn(f"{missing} source image(s) of earlier generators are missing or changed: their scores against "
             f"{name!r} are left out, so the generator threshold depends on the order of builds")
    return out


def _out_of_memory(path: str, image: np.ndarray | None) -> InvalidImageError:
    """The one-line error about an image that does not fit in the memory left (MemoryError)."""
    size = f" {image.shape[1]}x{image.shape[0]}" if image is not None else ""
    return InvalidImageError(f"not enough memory to add this{size} image (MemoryError); free memory or raise "
                             "the limit (ulimit -v)", path=path)


def _late_null_scores(scorers: list, sources: list[tuple[str, str]], crop, params: FingerprintParams,
                      decode: dict) -> list:
    """(sha256, generator, z) of the images ``sources`` against ``scorers``, the files read again.

    Needed only when another build created the library during this one: its generators were not
    there to score against while the images were read. A file that changed meanwhile is left out.
    """
    if not scorers:
        return []
    wanted = dict((path, sha) for path, sha in sources)
    out = []
    for item in iter_images(list(wanted), crop=crop, sha256=True, **decode):
        if item.error is None and item.sha256 == wanted.get(str(item.path)):
            r = generator_residual(item.image, params)
            out += [(item.sha256, g.name, g.score(r).z) for g in scorers]
    return out


def nothing_to_write(report: BuildReport, acc, n_files: int, warn: Callable[[str], None]) -> bool:
    """After a build's images are read: warn about duplicates, and tell whether there is nothing to write.

    True when every file was already counted (``report.n_images`` is set); raises InvalidImageError
    when no file was usable at all; False when there are new images to commit.
    """
    duplicates = sum(1 for _, r in report.skipped if r.startswith("already counted"))
    if duplicates:
        warn(f"{duplicates} file(s) already counted in {report.name!r} (same SHA-256) were skipped")
    if report.added:
        return False
    if report.skipped and duplicates == len(report.skipped):
        report.n_images = acc.n_images
        return True
    raise InvalidImageError(f"no usable image among {n_files} file(s) for {report.name!r}; library unchanged")


def commit_reference(lib: Library, report: BuildReport, acc, params: FingerprintParams,
                     crop: tuple[int, int] | None, new_sources: list[tuple[str, str]],
                     null_scores: list, records: list | None = None, replace: Sequence[str] = ()) -> None:
    """Write the reference ``report.name`` (added or updated) and its calibration scores in one commit.

    ``null_scores``: ``(image sha256, other generator, z)`` triples, stored keyed by the pair so
    that they are never counted twice (plain z values are appended unkeyed). ``replace``: the
    generators whose stored statistics ``records`` replace (an update of a generator).
    """
    fp = acc.fingerprint()
    shape = (*acc.shape, acc.channels) if acc.channels == 3 else tuple(acc.shape)
    # A Ctrl-C swallowed anywhere before this point stops the write; one during the commit waits
    # for it to complete (interrupt.deferred), so the library is written whole or not at all.
    what = f"reference {report.name!r} ({acc.n_images} image(s)) was written to {lib.path}"
    with interrupt.deferred(what), lib.transaction():  # one atomic commit: the reference and its scores
        if report.name in lib:
            lib.update(report.name, fingerprint=fp, sums=acc.sums, n_images=acc.n_images, sources_added=new_sources)
        else:
            lib.add(report.name, kind=report.kind, fingerprint=fp, sums=acc.sums, n_images=acc.n_images,
                    shape=shape, params=params.as_dict() | {"crop": f"{crop[0]}x{crop[1]}" if crop else ""},
                    sources=new_sources)
            report.created = True
        keyed = [s for s in null_scores if isinstance(s, tuple) and s[2] is not None]
        if keyed:
            lib.add_calibration(NULL_KEY, [z for _, _, z in keyed], sha256=[h for h, _, _ in keyed],
                                against=[g for _, g, _ in keyed])
        lib.add_calibration(NULL_KEY, [s for s in null_scores if not isinstance(s, tuple) and s is not None])
        if records or replace:
            write_records(lib, records or [], replace)  # the generator statistics (fingerprint.generator_attribution)
    report.n_images = acc.n_images


def calibrate_with_negatives(library: str | os.PathLike, paths: Sequence[str | os.PathLike], *,
                             crop: tuple[int, int] | None = None, progress: bool = True, lock_timeout: float = 10.0,
                             warn: Callable[[str], None] | None = None) -> int:
    """Add non-matching generator scores (z = NCC sqrt(D)) from images known to come from none of the
    library's generators.

    Each image is scored against every generator of the library; the scores are appended to the
    library's calibration data (one atomic commit), keyed by (image SHA-256, generator): calibrating
    with the same images again adds nothing. Returns the number of scores added.

    Images that cannot be negatives are refused (``warn``, not used): a source image of one of the
    library's generators (same SHA-256), and an image scoring at or above the library's current
    threshold at ``calibration.MATCH_FPR`` (and at least ``MATCH_Z_MIN``) against some generator (when
    the library is calibrated).
    """
    from fingerprint.attribution import generator_scorers

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    files = collect_image_paths(paths)
    with Library(library, "r+", lock_timeout=lock_timeout, version=__version__) as lib:
        generators = {}
        for info in lib.infos():
            if info.kind == "generator":
                params = FingerprintParams.from_dict(dict(info.params, kind="generator"))
                generators.setdefault(params, []).append(info.name)
        if not generators:
            raise InvalidImageError(f"{lib.path}: the library holds no generator to calibrate")
        scorers = {p: generator_scorers(lib, p) for p in generators}
        models = load_generator_models(lib)
        records: list = []  # the per-generator, per-hypothesis, per-size null (generator_stats)
        scores: list[tuple[str, str, float]] = []  # (image sha256, generator, z)
        own = {sha: i.name for i in lib.infos(with_sources=True) if i.kind == "generator" for _, sha in i.sources}
        match_z = threshold_from_null(lib.calibration(NULL_KEY), MATCH_FPR).value  # None: not calibrated yet
        match_z = None if match_z is None else max(match_z, MATCH_Z_MIN)

        with progress_bar(len(files), "calibrate", progress) as bar:
            for item in iter_images(files, crop=crop, sha256=True):
                bar.update(1)
                try:
                    if item.error is not None:
                        raise item.error
                    if item.sha256 in own:
                        raise InvalidImageError(f"is a source image of generator {own[item.sha256]!r}, not a "
                                                "negative", path=str(item.path))
                    image = check_image(item.image, str(item.path))  # refusals name the file
                    mine = []
                    for params, gens in scorers.items():
                        r = generator_residual(image, params)
                        mine += [(item.sha256, g.name, g.score(r).z) for g in gens]
                    best = max(mine, key=lambda s: s[2])
                    if match_z is not None and best[2] >= match_z:
                        raise InvalidImageError(f"matches generator {best[1]!r} (z {best[2]:.1f} >= {match_z:.1f}: "
                                                f"the threshold at {MATCH_FPR:g} false positives per pair, at least "
                                                f"{MATCH_Z_MIN:g}), not a negative", path=str(item.path))
                    try:
                        mine_records = calibration_records(models, image)
                    except ValueError as err:  # the robust decision matches it to a generator
                        raise InvalidImageError(str(err), path=str(item.path)) from None
                    scores += mine
                    records += mine_records
                except InvalidImageError as err:
                    warn(f"{err}; skipped")
        if not scores:
            return 0
        with interrupt.deferred(f"{len(scores)} calibration score(s) were written to {lib.path}"), lib.transaction():
            write_records(lib, records)
            return lib.add_calibration(NULL_KEY, [z for _, _, z in scores], sha256=[h for h, _, _ in scores],
                                       against=[g for _, g, _ in scores])
