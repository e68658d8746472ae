"""Build-time statistics of generators: default null, the other generators' images, leave-one-out.

What ``build`` and ``calibrate`` store for ``fingerprint.generator_attribution`` (the keys are
listed below). :class:`GeneratorStatistics` follows a build: it keeps up to
``MAX_GENUINE_IMAGES`` of the added images with their residuals and scores every added image
against the library's other generators; :meth:`GeneratorStatistics.finish` adds the default null
(simulated cameras), the other generators' source images against the new fingerprint (read again,
as ``build.reverse_null_scores`` does, so that the statistics do not depend on the order of
builds) and the leave-one-out genuine scores. On an update (images added to a generator) its
earlier source images are read again too, every statistic of the generator is computed against
the new fingerprint, and the stored ones are replaced in the same commit (``replaces``): the
result is what one build of all its images stores.

Statistics stored in the library (calibration datasets of ``reference_db``, keyed by the SHA-256
of the scored pixels and the generator, so that a value is never counted twice):

- ``gnull:<generator>:<hypothesis>:<h>x<w>``: scores of images known not to come from the
  generator, each the best over the hypothesis' search, for queries of size h x w. Filled at
  ``build`` (the default null: :func:`default_null.default_null_images`; the other generators'
  source images, in both directions, so that the result does not depend on the order of builds)
  and by ``calibrate`` (real photos).
- ``gnull:<generator>:aligned@q<Q>:<H>x<W>``: the null of JPEG queries (quality q < 98) against the
  plain fingerprint: the same non-matching images re-saved at each of ``JPEG_STAT_QUALITIES``, under
  the Q of ``GENUINE_QUALITIES`` nearest; a JPEG query meets the Q nearest q (else ``aligned``).
- ``ggen:<generator>:<hypothesis>[@q<Q>]:<h>x<w>``: genuine scores by leave-one-out: each source
  image of the generator, transformed (JPEG at Q, cropped or resized to h x w), against the
  fingerprint rebuilt without it from the running sums (exact: the sums of the other images).
- ``gjpeg:<generator>:q<Q>``: the *compression-matched* fingerprint, from the generator's source
  images re-saved as JPEG at Q (``JPEG_FINGERPRINT_QUALITIES``), flattened, then the number of
  images it counts (a fingerprint whose count is not the reference's is not used: images were
  removed or added since). A JPEG query of quality q of the fingerprint's size is also compared
  with the one of the Q nearest q (hypothesis ``jpeg@q<Q>``), against its own null
  (``gnull:<generator>:jpeg@q<Q>:<h>x<w>``: the default null photos and the other generators'
  images re-saved at every quality of ``JPEG_STAT_QUALITIES`` nearest Q) and genuine range
  (leave-one-out of the re-saved sources). A library built before these has none: JPEG queries
  are compared with the plain fingerprint only, as before.
- ``gnull:<generator>:offgrid@q<Q>:<H>x<W>``: the null of the *block-grid check* of a JPEG match:
  the ``aligned@q<Q>`` images' scores with their 8 x 8-periodic part removed
  (``jpeg_residual.remove_block_grid``). A JPEG query matched to a generator keeps the match only
  if its score without the grid also reaches this null's threshold (:func:`_block_grid_check`).
- ``gnull:<generator>:offgrid-<crop|resize>:<h>x<w>``: the same for smaller JPEG queries: the
  ``crop`` / ``resize`` null images' scores with their grid removed. A library built before these
  checks against the null of the hypothesis itself (grid kept: higher scores, a stricter check).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from fingerprint.estimate import FingerprintParams, GeneratorAccumulator, generator_residual
from fingerprint.generator_attribution import (GENUINE_QUALITIES, MAX_GENUINE_IMAGES, NULL_JPEG, NULL_PREFIX, ArrayRecord,
                                               GeneratorModel, GeneratorModels, StatRecord, _sha, decide_one,
                                               genuine_key, jpeg_fingerprint_key, load_generator_models, null_key,
                                               query_residual, versions)

KEEP_BYTES = 256 * 2**20  # images and residuals kept for leave-one-out, at most

__all__ = ["GeneratorStatistics", "JpegSums", "calibration_records", "default_null_jpeg_records", "default_null_records",
           "generator_records", "jpeg_accumulators", "jpeg_loo_records", "jpeg_null_records", "loo_records",
           "refresh_statistics", "write_records"]


class _VersionCache:
    """Residuals of the versions of non-matching source images, by the image's SHA-256, the version
    set and the params, so that a process building several generators computes each earlier
    generator's images once, not once per later build (``GeneratorStatistics.finish`` scores them
    against every new fingerprint). Entries are kept while they fit in ``limit`` bytes and are
    never evicted: every build reads the earlier generators' images in the same order, which an
    evicting cache smaller than them would miss every time. The values are those computed
    afresh (same pixels, same params: same residual)."""

    def __init__(self, limit: int):
        self.limit, self.used, self.entries = limit, 0, {}

    def get(self, key, compute: Callable[[], list]) -> list:
        hit = self.entries.get(key)
        if hit is None:
            hit = compute()
            size = sum(v[2].nbytes for v in hit)
            if self.used + size <= self.limit:
                for v in hit:
                    v[2].flags.writeable = False  # shared by every later caller: read-only
                self.entries[key] = hit
                self.used += size
        return hit

    def clear(self) -> None:
        self.entries.clear()
        self.used = 0


VERSION_CACHE_BYTES = 512 * 2**20
_VERSIONS = _VersionCache(VERSION_CACHE_BYTES)


def _testable_versions(image: np.ndarray, shape: tuple[int, int], params: FingerprintParams,
                       qualities: Sequence[int], *, cache: bool = False) -> list[tuple[str, int | None, np.ndarray, str]]:
    """``(spec, quality, residual, sha)`` of every version of ``image`` (:func:`versions`) that passes
    the texture gate (the decision never scores the others); through the process's cache when
    ``cache`` (the image is a non-matching source that later builds score again)."""
    from fingerprint.generator_decision import insufficient_signal

    def compute():
        out = []
        for spec, quality, x in versions(image, shape, qualities=qualities):
            R, stats = query_residual(x, params)
            if insufficient_signal(stats) is None:
                out.append((spec, quality, R, _sha(x, spec)))
        return out

    if not cache:
        return compute()
    return _VERSIONS.get(("versions", _sha(image, ""), tuple(shape), params, tuple(qualities)), compute)


def _version_scores(targets: Sequence[GeneratorModel], image: np.ndarray, params: FingerprintParams,
                    qualities: Sequence[int], *, genuine: bool) -> Iterable[tuple[GeneratorModel, str, tuple[int, int], float, str]]:
    """(target, hypothesis name, size, z, sha) for every version of ``image`` against every target.

    Null scores (``genuine`` False) come under every hypothesis the version's size allows; genuine
    scores only under the hypothesis that is true for the version (a crop under "crop", a resized
    copy under "resize", a JPEG re-save under "aligned@q<Q>"). Untestable versions (texture gate)
    are left out: the decision never scores them.
    """
    shape = targets[0].shape
    for spec, quality, R, sha in _testable_versions(image, shape, params, qualities, cache=not genuine):
        size = tuple(R.shape[1:])
        for m in targets:
            for s in m.hypotheses(R):
                if genuine:
                    true = ("aligned" if spec == "none" else f"aligned@q{quality}" if quality else spec.split(":")[0])
                    if true.split("@")[0] != s.hypothesis:
                        continue
                    yield m, true, size, s.z, sha
                else:
                    yield m, s.hypothesis, size, s.z, sha
            if not genuine and size != m.shape:
                for hyp, z in _offgrid_scores(m, R):
                    yield m, hyp, size, z, sha


def _offgrid_scores(m: GeneratorModel, R: np.ndarray) -> list[tuple[str, float]]:
    """``(offgrid-<hypothesis>, z)``: a smaller non-matching version's scores with its 8 x 8-periodic
    part removed, the null of the block-grid check of smaller JPEG queries."""
    from fingerprint import generator_attribution as ga
    from fingerprint.jpeg_residual import remove_block_grid

    return [(f"{ga.OFFGRID}-{s.hypothesis}", s.z) for s in m.hypotheses(remove_block_grid(R))]


def generator_records(targets: Sequence[GeneratorModel], image: np.ndarray, params: FingerprintParams) -> list[StatRecord]:
    """Null records of one image known to come from none of ``targets`` (all of one shape and params)."""
    if not targets:
        return []
    return [StatRecord(null_key(m.name, hyp, size), m.name, sha, z)
            for m, hyp, size, z, sha in _version_scores(targets, image, params, (NULL_JPEG,), genuine=False)]


_NULL_CACHE: dict = {}  # the default null's residuals, per (shape, channels, params, counts): a build reuses them
NULL_CACHE_BYTES = 512 * 2**20


def _default_null_residuals(shape: tuple[int, int], channels: int, params: FingerprintParams, cameras: int,
                            per_camera: int, seed: int) -> list[tuple[np.ndarray, str]]:
    """(residual, sha) of every testable version of the default null images (computed once per process
    when they fit in ``NULL_CACHE_BYTES``; they do not depend on the generator)."""
    def variants(x):
        return ((None, spec, v) for spec, _, v in versions(x, shape, qualities=(NULL_JPEG,)))

    found = _testable_null_residuals(variants, _NULL_CACHE, NULL_CACHE_BYTES, shape, channels, params, cameras,
                                     per_camera, seed)
    return [(R, sha) for _, R, sha in found]


def _testable_null_residuals(variants, cache: dict, limit: int, shape: tuple[int, int], channels: int,
                             params: FingerprintParams, cameras: int, per_camera: int, seed: int) -> list[tuple]:
    """(tag, residual, sha) of every version ``variants(x)`` (which yields ``(tag, spec, image)``) of the
    default null photos that passes the texture gate; kept in ``cache`` (one entry, replaced) when the
    residuals take at most ``limit`` bytes."""
    from fingerprint.default_null import default_null_images
    from fingerprint.generator_decision import insufficient_signal

    key = (tuple(shape), channels, params, cameras, per_camera, seed)
    if key in cache:
        return cache[key]
    out, size = [], 0
    for image, _ in default_null_images(shape, cameras=cameras, per_camera=per_camera, seed=seed):
        x = image if channels == 3 else np.asarray(image.mean(-1).round(), np.uint8)
        for tag, spec, v in variants(x):
            R, stats = query_residual(v, params)
            if insufficient_signal(stats) is None:
                out.append((tag, R, _sha(v, spec)))
                size += R.nbytes
    cache.clear()
    if size <= limit:
        cache[key] = out
    return out


def default_null_records(target: GeneratorModel, *, cameras: int | None = None, per_camera: int | None = None,
                         seed: int = 0) -> list[StatRecord]:
    """The default null of a generator: simulated camera photos (``default_null``) at its size,
    ``cameras`` x ``per_camera`` of them (default ``generator_attribution.NULL_CAMERAS`` x
    ``NULL_PER_CAMERA``), in every version, under every hypothesis."""
    from fingerprint import generator_attribution as ga

    cameras = ga.NULL_CAMERAS if cameras is None else cameras
    per_camera = ga.NULL_PER_CAMERA if per_camera is None else per_camera
    out = []
    for R, sha in _default_null_residuals(target.shape, target.F.shape[0], target.params, cameras, per_camera, seed):
        size = tuple(R.shape[1:])
        out += [StatRecord(null_key(target.name, s.hypothesis, size), target.name, sha, s.z)
                for s in target.hypotheses(R)]
        if size != target.shape:
            out += [StatRecord(null_key(target.name, hyp, size), target.name, sha, z)
                    for hyp, z in _offgrid_scores(target, R)]
    return out


def loo_records(name: str, params: FingerprintParams, sums: dict[str, np.ndarray], n_images: int,
                kept: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[StatRecord]:
    """Genuine records: each kept ``(image, residual)`` of generator ``name`` (its residual as added
    to ``sums``), in every version, against the fingerprint of the other ``n_images - 1`` images."""
    from scipy import fft

    if n_images < 3:
        return []
    out = []
    for image, r in kept[:MAX_GENUINE_IMAGES]:
        loo = {"sum": sums["sum"] - r}
        if "power" in sums:
            y = fft.rfft2(r, axes=(-2, -1), workers=-1)
            y[:, 0, 0] = 0
            loo["power"] = sums["power"] - (y.real**2 + y.imag**2).astype(np.float32)
        F = GeneratorAccumulator.from_sums(params, loo, n_images - 1).fingerprint()
        m = GeneratorModel(name, params, F)
        out += [StatRecord(genuine_key(name, hyp.split("@")[0], size, int(hyp.split("@q")[1]) if "@q" in hyp else None),
                           name, sha, z)
                for _, hyp, size, z, sha in _version_scores([m], image, params, GENUINE_QUALITIES, genuine=True)]
    return out


# ------------------------------------------------------------- compression-matched fingerprints
class JpegSums:
    """The compression-matched fingerprints of one generator being built: per stored JPEG quality Q
    (``JPEG_FINGERPRINT_QUALITIES``) an accumulator of its images re-saved at Q, and the
    ``(image, residual at Q)`` of up to ``MAX_GENUINE_IMAGES`` of them for leave-one-out."""

    def __init__(self, params: FingerprintParams, qualities: Sequence[int] | None = None):
        from fingerprint import generator_attribution as ga

        self.params = params
        self._bytes = 0
        self.accumulators = {int(q): (GeneratorAccumulator(params, backend="cpu"), [])
                             for q in (ga.JPEG_FINGERPRINT_QUALITIES if qualities is None else qualities)}

    def add(self, image: np.ndarray, keep: bool = True) -> None:
        from fingerprint.transforms import apply_pipeline

        for q, (acc, kept) in self.accumulators.items():
            r = acc.add(apply_pipeline(image, f"jpeg:{q}").image)
            if keep and len(kept) < MAX_GENUINE_IMAGES and self._bytes + image.nbytes + r.nbytes <= KEEP_BYTES:
                kept.append((image, r))
                self._bytes += image.nbytes + r.nbytes

    def fingerprints(self) -> dict[int, np.ndarray]:
        return {q: acc.fingerprint() for q, (acc, _) in self.accumulators.items() if acc.n_images}

    def array_records(self, name: str) -> list[ArrayRecord]:
        """The fingerprints for the library, each followed by the number of images it counts."""
        return [ArrayRecord(jpeg_fingerprint_key(name, q),
                            np.append(acc.fingerprint().astype(np.float64).ravel(), float(acc.n_images)), name)
                for q, (acc, _) in self.accumulators.items() if acc.n_images]


def jpeg_accumulators(params: FingerprintParams, images: Sequence[np.ndarray],
                      qualities: Sequence[int] | None = None) -> JpegSums:
    """:class:`JpegSums` of ``images`` (a generator's sources)."""
    sums = JpegSums(params, qualities)
    for x in images:
        sums.add(x)
    return sums


def _jpeg_versions(image: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    from fingerprint import generator_attribution as ga
    from fingerprint.transforms import apply_pipeline

    for q in ga.JPEG_STAT_QUALITIES:
        yield q, apply_pipeline(image, f"jpeg:{q}").image


_JPEG_NULL_CACHE: dict = {}  # the default null's JPEG re-saves, residuals per (shape, channels, params, counts)


def _default_null_jpeg_residuals(shape: tuple[int, int], channels: int, params: FingerprintParams, cameras: int,
                                 per_camera: int, seed: int) -> list[tuple[int, np.ndarray, str]]:
    """(quality, residual, sha) of every testable re-save of the default null photos at each of
    ``JPEG_STAT_QUALITIES`` (kept for the next generator of the process when they fit in
    ``NULL_CACHE_BYTES / 2``; they do not depend on the generator)."""
    def variants(x):
        return ((q, f"jpeg:{q}", v) for q, v in _jpeg_versions(x))

    return _testable_null_residuals(variants, _JPEG_NULL_CACHE, NULL_CACHE_BYTES // 2, shape, channels, params,
                                    cameras, per_camera, seed)


def _jpeg_null_key(target: GeneratorModel, hypothesis: str, quality: int) -> str | None:
    """The null dataset of a re-saved non-matching image's score under ``hypothesis``: the plain
    fingerprint's ``"aligned"`` score counts under ``aligned@q<Q>`` (Q the genuine quality nearest
    the re-save's, ``generator_attribution.nearest_quality``), a compression-matched score under its own
    ``jpeg@q<Q>``; None for the other hypotheses."""
    from fingerprint import generator_attribution as ga

    if hypothesis == "aligned":
        return null_key(target.name, f"aligned@q{ga.nearest_quality(ga.GENUINE_QUALITIES, quality)}", target.shape)
    if hypothesis.startswith(ga.JPEG_HYPOTHESIS):
        return null_key(target.name, hypothesis, target.shape)
    return None


def _offgrid_records(target: GeneratorModel, R: np.ndarray, quality: int, sha: str) -> list[StatRecord]:
    """The null of the block-grid check: a re-save's aligned score with its 8 x 8-periodic part removed,
    under ``offgrid@q<Q>`` (Q the genuine quality nearest the re-save's)."""
    from fingerprint import generator_attribution as ga
    from fingerprint.jpeg_residual import remove_block_grid

    s = next((s for s in target.hypotheses(remove_block_grid(R)) if s.hypothesis == "aligned"), None)
    if s is None:
        return []
    key = null_key(target.name, f"{ga.OFFGRID}@q{ga.nearest_quality(ga.GENUINE_QUALITIES, quality)}", target.shape)
    return [StatRecord(key, target.name, sha, s.z)]


def default_null_jpeg_records(target: GeneratorModel, *, seed: int = 0) -> list[StatRecord]:
    """The default null of a JPEG query of the fingerprint's size: the default null photos
    (:func:`default_null_records`) re-saved at each of ``JPEG_STAT_QUALITIES``, against the plain
    fingerprint (``aligned@q<Q>``) and, when it has them, the compression-matched ones (``jpeg@q<Q>``)."""
    from fingerprint import generator_attribution as ga

    out = []
    for q, R, sha in _default_null_jpeg_residuals(target.shape, target.F.shape[0], target.params, ga.NULL_CAMERAS,
                                                  ga.NULL_PER_CAMERA, seed):
        for s in target.hypotheses(R, quality=q):
            key = _jpeg_null_key(target, s.hypothesis, q)
            if key is not None:
                out.append(StatRecord(key, target.name, sha, s.z))
        out += _offgrid_records(target, R, q, sha)
    return out


def jpeg_null_records(targets: Sequence[GeneratorModel], image: np.ndarray, params: FingerprintParams) -> list[StatRecord]:
    """Null records of JPEG queries: ``image`` (from none of ``targets``, of their size) re-saved at
    each of ``JPEG_STAT_QUALITIES``, against each target's plain fingerprint (``aligned@q<Q>``, Q the
    nearest of ``GENUINE_QUALITIES``) and compression-matched fingerprint of the nearest stored
    quality (``jpeg@q<Q>``, when the target has them)."""
    from fingerprint.generator_decision import insufficient_signal

    targets = [m for m in targets if tuple(image.shape[:2]) == m.shape]
    if not targets:
        return []

    def compute():
        out = []
        for q, x in _jpeg_versions(image):
            R, stats = query_residual(x, params)
            if insufficient_signal(stats) is None:
                out.append((q, None, R, _sha(x, f"jpeg:{q}")))
        return out

    out = []
    for q, _, R, sha in _VERSIONS.get(("jpeg", _sha(image, ""), params), compute):
        for m in targets:
            for s in m.hypotheses(R, quality=q):
                key = _jpeg_null_key(m, s.hypothesis, q)
                if key is not None:
                    out.append(StatRecord(key, m.name, sha, s.z))
            out += _offgrid_records(m, R, q, sha)
    return out


def jpeg_loo_records(model: GeneratorModel, sums: JpegSums) -> list[StatRecord]:
    """Genuine records of the ``jpeg@q<Q>`` hypotheses: each kept source, re-saved at each quality of
    ``JPEG_STAT_QUALITIES``, against the compression-matched fingerprint of the nearest Q rebuilt
    without that source (its re-save at Q subtracted from the sums)."""
    from scipy import fft

    from fingerprint.generator_attribution import JPEG_HYPOTHESIS
    from fingerprint.generator_decision import insufficient_signal

    out = []
    for Q, (acc, kept) in sums.accumulators.items():
        if acc.n_images < 3:
            continue
        for image, r in kept[:MAX_GENUINE_IMAGES]:
            loo = {"sum": acc.sums["sum"] - r}
            if "power" in acc.sums:
                y = fft.rfft2(r, axes=(-2, -1), workers=-1)
                y[:, 0, 0] = 0
                loo["power"] = acc.sums["power"] - (y.real**2 + y.imag**2).astype(np.float32)
            F = GeneratorAccumulator.from_sums(model.params, loo, acc.n_images - 1).fingerprint()
            m = GeneratorModel(model.name, model.params, model.F, jpeg={Q: F})
            for q, x in _jpeg_versions(image):
                if q not in _nearest_to(Q, model):
                    continue
                R, stats = query_residual(x, model.params)
                if insufficient_signal(stats) is not None:
                    continue
                for s in m.hypotheses(R, quality=q):
                    if s.hypothesis.startswith(JPEG_HYPOTHESIS):
                        out.append(StatRecord(genuine_key(model.name, s.hypothesis, model.shape), model.name,
                                              _sha(x, f"jpeg:{q}"), s.z))
    return out


def _nearest_to(Q: int, model: GeneratorModel) -> list[int]:
    """The qualities of ``JPEG_STAT_QUALITIES`` whose nearest stored quality is Q."""
    from fingerprint import generator_attribution as ga

    return [q for q in ga.JPEG_STAT_QUALITIES if model.jpeg_hypothesis(q) == f"{ga.JPEG_HYPOTHESIS}@q{Q}"]


def write_records(lib, records: Iterable[StatRecord], replace: Iterable[str] = ()) -> int:
    """Append records to the library's calibration data, one dataset per key (call inside a transaction).

    Every dataset is owned by its generator (``Library.add_calibration(owner=...)``): renaming the
    generator renames its statistics, removing it removes them. ``replace``: generators whose
    stored statistics are deleted first (an update: they were computed with its old fingerprint)."""
    for name in replace:
        for key in lib.owned_calibration(name):
            lib.clear_calibration(key)
    by_key: dict[str, list[StatRecord]] = {}
    n = 0
    for r in records:
        if isinstance(r, ArrayRecord):  # a whole dataset: replaced
            lib.clear_calibration(r.key)
            n += lib.add_calibration(r.key, r.values, owner=r.generator)
        elif math.isfinite(r.value):
            by_key.setdefault(r.key, []).append(r)
    for key, rs in by_key.items():
        n += lib.add_calibration(key, [r.value for r in rs], sha256=[r.sha256 for r in rs],
                                 against=[r.generator for r in rs], owner=rs[0].generator)  # the generator's own
    return n


def calibration_records(models: GeneratorModels, image: np.ndarray, match_fpr: float = 1e-3) -> list[StatRecord]:
    """Null records of a ``calibrate`` image against every generator; raises ``ValueError`` naming the
    generator when the image looks like one of them (any hypothesis above its null threshold at
    ``match_fpr`` and inside its genuine range): it cannot be a negative."""
    groups: dict = {}
    for m in models.models:
        groups.setdefault((m.params, m.shape), []).append(m)
    out = []
    for (params, _), group in groups.items():
        R, stats = query_residual(image, params)
        strict = GeneratorModels(group, match_fpr * len(models.models))
        dec, _ = decide_one(strict, R, stats, None, group)
        if dec.decision == "match":
            raise ValueError(f"matches generator {dec.best!r} ({dec.reason}), not a negative")
        out += generator_records(group, image, params)
        out += jpeg_null_records(group, image, params)
    return out


class GeneratorStatistics:
    """The statistics of one generator build (see the module docstring).

    Parameters
    ----------
    lib : the open library, or None when the build creates it
    name, params : the generator being built
    """

    def __init__(self, lib, name: str, params: FingerprintParams):
        self.name, self.params = name, params
        models = load_generator_models(lib).models if lib is not None else []
        self.others = [m for m in models if m.name != name and m.params == params]
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []
        self.records: list[StatRecord] = []
        self.jpeg = JpegSums(params)
        self._bytes = 0
        self.replaces: list[str] = []  # generators whose stored statistics the records replace (an update)

    def add(self, image: np.ndarray, residual: np.ndarray) -> None:
        """One image added to the generator, with the residual the accumulator added."""
        same = [m for m in self.others if m.shape == tuple(residual.shape[1:])]
        self.records += generator_records(same, image, self.params)
        self.records += jpeg_null_records(same, image, self.params)
        self.jpeg.add(image)
        size = image.nbytes + residual.nbytes
        if len(self.kept) < MAX_GENUINE_IMAGES and self._bytes + size <= KEEP_BYTES:
            self.kept.append((image, residual))
            self._bytes += size

    def finish(self, lib, acc, decode: dict, warn: Callable[[str], None]) -> list[StatRecord]:
        """Every record of the build, to write with the reference."""
        from fingerprint.io import iter_images

        self.replaces = [self.name] if self.name in lib else []
        if self.replaces:  # the earlier images again: compression-matched sums and leave-one-out
            info = lib.info(self.name)
            wanted = dict((path, sha) for path, sha in info.sources)
            got = 0
            for item in iter_images(list(wanted), crop=tuple(info.shape[:2]), sha256=True, **decode):
                if item.error is None and item.sha256 == wanted.get(str(item.path)):
                    self.jpeg.add(item.image, keep=False)
                    got += 1
                    if len(self.kept) < MAX_GENUINE_IMAGES:
                        r = generator_residual(item.image, self.params)  # as the sums hold it
                        if self._bytes + item.image.nbytes + r.nbytes <= KEEP_BYTES:
                            self.kept.append((item.image, r))
                            self._bytes += item.image.nbytes + r.nbytes
            if got < len(wanted):
                warn(f"{len(wanted) - got} earlier source image(s) of {self.name!r} are missing or changed: its "
                     "statistics, recomputed for the new fingerprint, leave them out")
        new = GeneratorModel(self.name, self.params, acc.fingerprint(), jpeg=self.jpeg.fingerprints())
        out = list(self.records)
        out += default_null_records(new)
        out += default_null_jpeg_records(new)
        out += self.jpeg.array_records(self.name)  # counts short of the reference's (files missing): not used
        # the other generators' images against it (all again on an update: its fingerprint is new)
        missing = 0
        for other in load_generator_models(lib).models:
            if other.name == self.name or other.params != self.params or other.shape != new.shape:
                continue
            info = lib.info(other.name)
            wanted = dict((path, sha) for path, sha in info.sources)
            got = 0
            for item in iter_images(list(wanted), crop=tuple(info.shape[:2]), sha256=True, **decode):
                if item.error is None and item.sha256 == wanted.get(str(item.path)):
                    out += generator_records([new], item.image, self.params)
                    out += jpeg_null_records([new], item.image, self.params)
                    got += 1
            missing += len(wanted) - got
        if missing:
            warn(f"{missing} source image(s) of earlier generators are missing or changed: the null statistics "
                 f"of {self.name!r} leave them out")
        out += loo_records(self.name, self.params, acc.sums, acc.n_images, self.kept)
        out += jpeg_loo_records(new, self.jpeg)
        if self.replaces:  # what the new statistics cannot recompute: `calibrate` scores of other photos
            fresh = {(r.key, r.sha256) for r in out if isinstance(r, StatRecord)}
            dropped = sum((key, sha) not in fresh for key in lib.owned_calibration(self.name)
                          if key.startswith(NULL_PREFIX + ":") for sha, _, _ in lib.calibration_scores(key))
            if dropped:
                warn(f"{dropped} stored null score(s) of {self.name!r} (from `ganprint calibrate`) were computed "
                     "with its previous fingerprint and are dropped: run calibrate again with those photos")
        return out


def refresh_statistics(library, *, lock_timeout: float = 10.0, warn: Callable[[str], None] | None = None) -> int:
    """Compute the statistics of every generator of a library that has none (a library built before
    them): default null, every other generator's source images, and leave-one-out from the stored
    sums and the source files (read again, checked against their SHA-256; a missing or changed file
    is left out, with one warning). One atomic commit; returns the number of values written."""
    from reference_db import Library

    from fingerprint.io import iter_images

    warn = warn or (lambda msg: None)
    with Library(library, "r+", lock_timeout=lock_timeout) as lib:
        models = load_generator_models(lib).models
        todo = [m for m in models if not m.nulls]
        if not todo:
            return 0
        images: dict[str, list[np.ndarray]] = {}
        for m in models:
            info = lib.info(m.name)
            wanted = dict((path, sha) for path, sha in info.sources)
            got = [item.image for item in iter_images(list(wanted), crop=tuple(info.shape[:2]), sha256=True)
                   if item.error is None and item.sha256 == wanted.get(str(item.path))]
            if len(got) < len(wanted):
                warn(f"{len(wanted) - len(got)} source image(s) of {m.name!r} are missing or changed: left out of "
                     "its statistics")
            images[m.name] = got
        records: list = []
        for m in todo:
            ref = lib.get(m.name)
            complete = len(images[m.name]) == ref.n_images  # sums and leave-one-out need every image
            jpeg = jpeg_accumulators(m.params, images[m.name]) if complete else None
            mj = GeneratorModel(m.name, m.params, m.F, jpeg=jpeg.fingerprints()) if jpeg is not None else m
            records += default_null_records(m)
            records += default_null_jpeg_records(mj)
            for other in models:
                if other.name != m.name and other.params == m.params and other.shape == m.shape:
                    for x in images[other.name]:
                        records += generator_records([m], x, m.params)
                        records += jpeg_null_records([mj], x, m.params)
            if jpeg is not None:
                records += jpeg.array_records(m.name) + jpeg_loo_records(mj, jpeg)
            if len(images[m.name]) == ref.n_images:  # leave-one-out needs every image of the sums
                from fingerprint.estimate import generator_residual

                kept = [(x, generator_residual(x, m.params)) for x in images[m.name][:MAX_GENUINE_IMAGES]]
                records += loo_records(m.name, m.params, ref.sums, ref.n_images, kept)
        with lib.transaction():
            return write_records(lib, records)
