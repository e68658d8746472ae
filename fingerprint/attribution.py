"""Attribution: score a questioned image against every reference and decide match or unknown.

This module orchestrates: it computes each query's residuals once, hands them to the camera
scorers (``camera_match``: PCE of ``W·I`` against ``K``, docs/algorithm.md §7.4-§7.7, with the
crop, rotation, denoiser and scale searches under one error budget, docs/camera_search.md) and to the
generator banks (``generator_match``: NCC and ``z = NCC·sqrt(D)``, §6, §7.8), and turns the
scores into one answer per image (``decision``). ``load_attributor`` prepares every reference of a
library; ``attribute`` and ``attribute_paths`` score arrays and files.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from fingerprint.calibration import DEFAULT_FPR, NULL_KEY, GeneratorThreshold, threshold_from_null
from fingerprint.camera_library import (DIGEST_MIN_CAMERAS, CameraPreselector, LazyCameras, LazyReferences,
                                        aligned_rotations, can_match, decide_preselected, not_confirmed)
from fingerprint.camera_match import CameraReference, gray_image, too_large_record
from fingerprint.error_budget import false_alarm_one
from fingerprint.decision import Attribution, ReferenceScore, decide
from fingerprint.estimate import FingerprintParams, generator_residual
from fingerprint.generator_attribution import GeneratorModels, load_generator_models, score_generators
from fingerprint.io.metadata import file_jpeg_quality
from fingerprint.generator_match import GeneratorBank, GeneratorReference, generator_scorers
from fingerprint.jpeg_residual import JpegGrid, read_jpeg_grid, weight_residual
from fingerprint.residual import extract_residual
from fingerprint.scaled_search import DEFAULT_MIN_SCALE
from fingerprint.scores import DEFAULT_PCE_THRESHOLD
from kernels._backend import resolve_backend
from reference_db import DamagedReferenceError
from kernels.spec import QUERY_SIGMA, check_image

RETRY_SIGMA = 5.0  # second denoiser strength for camera queries that match nothing (prnu-python's default)
BATCH = 8  # images scored together by attribute_paths (generator NCCs as one matrix product)
BATCH_BYTES = 256 * 2**20  # and at most this many bytes of decoded pixels in a batch (its float32 residuals take 4-8x
#                            more); a larger image is scored alone. Eight 64-megapixel JPEGs took 10 GB in one batch.
METHODS = ("pce", "ncc")

__all__ = ["Attribution", "Attributor", "ReferenceScore", "DEFAULT_PCE_THRESHOLD", "METHODS", "generator_scorers", "gray_image"]


# (records, camera and generator scoring live in decision.py, camera_match.py, generator_match.py)

def _cuda_device():
    from fingerprint.device import Device  # loads CuPy: only for the CUDA backend

    return Device()


class Attributor:
    """Prepared references (fingerprints, cached spectra) that score many queries.

    Parameters
    ----------
    references : iterable of (name, kind, fingerprint, params), or LazyReferences
        ``params`` a :class:`FingerprintParams` or dict. A
        :class:`~fingerprint.camera_library.LazyReferences` (what :func:`load_attributor` passes)
        is read on demand: generators at once, each camera only when a query's shape lets it
        answer (its fingerprint spectrum from the on-disk cache), and an aligned query is scored
        exactly only against the cameras its fingerprint digests cannot rule out
        (``camera_library.CameraPreselector``, with the PCE method and more than two aligned
        cameras; the decision is the exhaustive search's). :meth:`close` closes the library it
        opened.
    method : {"pce", "ncc"}
        Score that decides camera matches (generators always use NCC).
    pce_threshold : float
        PCE threshold at one position (default 60): it fixes the per-decision false-alarm rate
        ``Q(sqrt(60))``; every camera search gets the threshold of the positions it may score
        (``fingerprint.error_budget``, docs/camera_search.md).
    generator_threshold : float or GeneratorThreshold, optional
        The ``z = NCC * sqrt(D)`` a generator query must reach (from
        ``calibration.threshold_from_null``); without one, generators are scored but never matched.
        Used only without ``generator_models``.
    generator_models : GeneratorModels, optional
        The library's generators with their stored statistics
        (``generator_attribution.load_generator_models``, what ``load_attributor`` passes unless a
        threshold is given): generators are then decided by
        ``generator_attribution.score_generators`` (texture gate, a null per generator, hypothesis
        and size, the genuine range, crop and resize hypotheses) at a false-alarm rate per image.
    rotations : bool
        Try 90, 180 and 270 degree rotations of camera queries (90 and 270 in the scaled stages).
    query_sigma : float
        Noise std of the wavelet denoiser for camera query residuals (default 2, Binghamton).
    retry_sigma : float or None
        A second denoiser strength (default 5, prnu-python's): when no camera matches at
        ``query_sigma`` in the native and implied-scale stages, the residual is computed once
        more with this sigma and every camera's native stage is scored with it. Its positions
        are counted in every camera's budget from the start (the threshold does not depend on
        whether it ran). None: one residual.
    scale_search : bool
        Search resize factors (``min_scale`` to 1) for camera queries smaller than the
        fingerprint: the factor the query's size implies for every camera first, then, only when
        no camera matched, the coarse-to-fine scale search camera by camera until one matches
        (``fingerprint.camera_search.decide_cameras``). It runs on the CPU, also with the CUDA
        backend. False: the native stage only (it then gets the whole budget).
    min_scale : float
        Smallest resize factor searched (default 0.3).
    progress : callable, optional
        ``progress(camera, fraction, text)`` during the scale search (the slow stage).
    preselect : bool or None
        Digest pre-selection of a :class:`LazyReferences`'s cameras for aligned queries: None
        (default) when more than ``camera_library.DIGEST_MIN_CAMERAS`` cameras are aligned with the
        query (below that every camera is scored, so every score is reported), True whenever more
        than two are, False never (every camera scored exactly, e.g. for an evaluation's ROC).
    backend : {"auto", "cpu", "cuda"}
        Where query residuals and scores are computed, resolved once here
        (``kernels._backend.resolve_backend``, work size = the largest reference): ``"cuda"`` keeps
        fingerprints and spectra on the GPU (``fingerprint.device``); ``"auto"`` uses it only when
        usable and the references have at least ``AUTO_MIN_PIXELS`` pixels. ``self.backend`` holds
        the resolved name. The same ``ReferenceScore`` records come out, up to float32 rounding.
    """

    def __init__(self, references: Iterable[tuple[str, str, np.ndarray, Any]] | LazyReferences, *, method: str = "pce",
                 pce_threshold: float = DEFAULT_PCE_THRESHOLD,
                 generator_threshold: float | GeneratorThreshold | None = None, rotations: bool = True,
                 query_sigma: float = QUERY_SIGMA, retry_sigma: float | None = RETRY_SIGMA, backend: str = "auto",
                 scale_search: bool = True, min_scale: float = DEFAULT_MIN_SCALE, progress=None,
                 generator_models: GeneratorModels | None = None, preselect: bool | None = None):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not pce_threshold > 0:
            raise ValueError(f"the PCE threshold must be positive, got {pce_threshold}")
        self.method = method
        self.pce_threshold = float(pce_threshold)
        self.query_sigma = float(query_sigma)
        self.retry_sigma = float(retry_sigma) if retry_sigma else None
        self.rotations = (0, 1, 2, 3) if rotations else (0,)
        self.scale_search = bool(scale_search)
        self.min_scale = float(min_scale)
        self.progress = progress
        alpha = false_alarm_one(self.pce_threshold)
        self._alpha = alpha
        self.generators: list[GeneratorReference] = []
        self.references = references if isinstance(references, LazyReferences) else None
        self.preselector: CameraPreselector | None = None
        if generator_threshold is None or isinstance(generator_threshold, GeneratorThreshold):
            self.generator_threshold = generator_threshold
        else:
            self.generator_threshold = GeneratorThreshold(float(generator_threshold), float("nan"), 0, "given")
        gthr = self.generator_threshold
        lazy = self.references
        if lazy is not None:  # generators now (small, every query needs them); cameras on demand
            pixels = lazy.max_pixels()
            eager = []
            for n in lazy.names("generator"):
                try:
                    eager.append((n, "generator", lazy.fingerprint(n), lazy.entries[n].params))
                except DamagedReferenceError:
                    continue  # reported (warn) and left out by LazyReferences
        else:
            eager = list(references)
            pixels = max((int(np.prod(np.shape(fp)[-2:])) for _, _, fp, _ in eager), default=None)
        self.backend = resolve_backend(backend, pixels=pixels)
        self.device = _cuda_device() if self.backend == "cuda" else None
        cameras: dict[str, CameraReference] = {}
        self._camera_shapes: dict[str, tuple[int, ...]] = {}
        for name, kind, fp, params in eager:
            params = params if isinstance(params, FingerprintParams) else FingerprintParams.from_dict(dict(params, kind=kind))
            if kind == "camera":
                cameras[name] = self._camera(name, fp, params)
                self._camera_shapes[name] = tuple(np.shape(fp))
            else:
                self.generators.append(GeneratorReference(name, fp, params, gthr.value if gthr else None,
                                                  gthr.describe() if gthr else None))
        self._cameras: Mapping[str, CameraReference] = cameras
        # wavelet levels of the camera query residual: the first camera's parameters
        self._levels = next(iter(cameras.values())).params.levels if cameras else None
        if lazy is not None:
            names = lazy.names("camera")
            self._camera_shapes = {n: lazy.entries[n].shape for n in names}
            # a cached CPU spectrum is of no use to the CUDA native stage, which computes its own
            make = lambda n, K: self._camera(n, K, lazy.entries[n].params,  # noqa: E731
                                             lazy.spectrum(n, K) if self.device is None else None)
            self._cameras = LazyCameras(lazy, names, make)
            self._levels = lazy.entries[names[0]].params.levels if names else None
            if method == "pce" and preselect is not False:  # digests bound the PCE, not an NCC decision
                self.preselector = CameraPreselector(lazy, alpha=alpha, n_sigmas=2 if self.retry_sigma else 1,
                                                     min_cameras=DIGEST_MIN_CAMERAS if preselect is None else 0)
        groups: dict = {}
        for gen in self.generators:
            groups.setdefault((gen.params, gen.F.shape), []).append(gen)
        self.banks = [GeneratorBank(g, self.device) for g in groups.values()]
        self.generator_models = generator_models
        if generator_models is not None:  # the same generators, decided by generator_attribution
            self.banks = []

    def _camera(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, spectrum=None) -> CameraReference:
        return CameraReference(name, fingerprint, params, self.device, spectrum=spectrum, rotations=self.rotations,
                               scale_search=self.scale_search, min_scale=self.min_scale, alpha=self._alpha)

    @property
    def camera_names(self) -> list[str]:
        """Names of the camera references, in library order (nothing is loaded)."""
        return list(self._cameras)

    @property
    def cameras(self) -> Sequence[CameraReference]:
        """The camera references (lazily built ones are built as they are reached: prefer
        :attr:`camera_names` and :meth:`camera` to look at a few)."""
        c = self._cameras
        return c.as_list() if isinstance(c, LazyCameras) else list(c.values())

    def camera(self, name: str) -> CameraReference:
        """The camera reference ``name`` (built now if it is read lazily); KeyError if there is none."""
        return self._cameras[name]

    def close(self) -> None:
        """Close the library that :func:`load_attributor` opened for lazy reading (idempotent)."""
        if self.references is not None:
            self.references.close()

    def __enter__(self) -> Attributor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def score(self, image: np.ndarray, label: str = "image", quality: int | None = None, *,
              jpeg: JpegGrid | None = None) -> Attribution:
        """Score one image (uint8/uint16 array, H x W [x 3]) against every reference; ``quality``:
        the JPEG quality of its file (``io.metadata.file_jpeg_quality``), if any;
        ``jpeg``: its file's quantisation table and block grid (``jpeg_residual.read_jpeg_grid``),
        which weights the camera query residual (``jpeg_residual.weight_residual``)."""
        return self.score_batch([image], [label], [quality], jpegs=[jpeg])[0]

    def score_batch(self, images: list[np.ndarray], labels: list[str] | None = None,
                    qualities: list[int | None] | None = None, *,
                    jpegs: list[JpegGrid | None] | None = None) -> list[Attribution]:
        """Score several images: camera PCEs per image (fingerprint spectra cached); generators by
        ``generator_attribution.score_generators`` when the attributor has ``generator_models``,
        else (a given ``generator_threshold``) NCCs of the whole batch as one matrix product per
        group of generators. ``qualities``: JPEG quality of each image's file (None: not a JPEG);
        ``jpegs``: each file's :class:`~fingerprint.jpeg_residual.JpegGrid` (None: not a JPEG, or
        pixels that are no longer the file's, e.g. transformed)."""
        labels = labels if labels is not None else [f"image {i}" for i in range(len(images))]
        jpegs = list(jpegs) if jpegs is not None else [None] * len(images)
        # the residual's input check, first, so that a refusal names the image by its label;
        # (H, W, 1) comes back as (H, W): gray, as extract_residual reads it
        images = [check_image(im, label) for im, label in zip(images, labels)]
        per_image: list[dict[str, ReferenceScore]] = [{} for _ in images]
        if self._camera_shapes:
            for scores, image, jpeg in zip(per_image, images, jpegs):
                scores.update(self._camera_scores(image, jpeg))
        decisions: list = []
        if self.generator_models is not None and self.generator_models.models:
            records = score_generators(self.generator_models, images, qualities=qualities,
                                       backend="cuda" if self.device is not None else "cpu", decisions=decisions)
            for scores, recs in zip(per_image, records):
                scores.update(recs)
        residuals: dict[FingerprintParams, list[np.ndarray]] = {}
        for bank in self.banks:
            if bank.params not in residuals:
                residuals[bank.params] = [generator_residual(im, bank.params, backend=self.backend) for im in images]
            for scores, bank_scores in zip(per_image, bank.score_batch(residuals[bank.params])):
                scores.update((s.name, s) for s in bank_scores)
        answers = [decide(scores, label) for scores, label in zip(per_image, labels)]
        if self._camera_shapes:
            for answer, jpeg in zip(answers, jpegs):
                answer.query_residual = _describe_residual(jpeg)
        for answer, dec in zip(answers, decisions):  # closed set among generators: the decision's closest
            if dec is not None and dec.closest and answer.best is None and (
                    answer.closest is None or answer.scores[answer.closest].kind == "generator"):
                answer.closest = dec.closest
        return answers

    def _camera_scores(self, image: np.ndarray, jpeg: JpegGrid | None = None) -> dict[str, ReferenceScore]:
        """Every camera's record for one checked image, cheapest stages first for every camera
        (``camera_library.decide_preselected``, which is ``camera_search.decide_cameras`` over the
        cameras the digests keep): native and implied scale at ``query_sigma``; the native stage
        with the ``retry_sigma`` residual if no camera matched; the scale search camera by camera
        until one matches. A camera smaller than the query is not loaded (``too_large_record``),
        one left out by the digests is "not confirmed" (``camera_library.not_confirmed``).
        Residuals and the native stage on the device with CUDA. With ``jpeg`` (the file's
        quantisation), both residuals are weighted by it (``jpeg_residual.weight_residual``)."""
        shape = image.shape[:2]
        skipped = self.references.skipped if self.references is not None else {}
        shapes = {n: s for n, s in self._camera_shapes.items() if n not in skipped}  # damaged ones found so far: out
        if not shapes and not self.generators and self.references is not None:
            self._no_usable_references()
        fits = [n for n, s in shapes.items() if can_match("camera", s, shape, self.rotations)]
        out = {n: too_large_record(n, s, shape, self.method) for n, s in shapes.items() if n not in fits}
        if not fits:
            return out
        x = image if self.device is None else self.device.put(image)  # one copy to the device
        residuals = [self._residual(x, self.query_sigma)]  # first: the largest allocation fails before any other
        I = gray_image(x) if self.device is None else self.device.gray(x)
        residuals[0] = self._jpeg_weighted(residuals[0], I, jpeg)
        second = None
        if self.retry_sigma:
            def second():
                residuals.append(self._jpeg_weighted(self._residual(x, self.retry_sigma), I, jpeg))
                return residuals[-1] * I
        cams = self._cameras
        searches = cams.view(fits, "search") if isinstance(cams, LazyCameras) else {n: cams[n].search for n in fits}
        wi2, select, pre = residuals[0] * I, None, self.preselector
        if pre is not None:  # one sparse pass per residual: the second only for a query that matched nowhere
            select = lambda wi, names: pre.select_many([self._host(wi)], names, self.rotations)[0]  # noqa: E731
        decisions = decide_preselected(searches, wi2, second, select=select, progress=self.progress)
        sigmas = (self.query_sigma, self.retry_sigma)
        n_sigmas = 2 if self.retry_sigma else 1
        for n in fits:
            if n in decisions:
                out[n] = cams[n].record(decisions[n], residuals, I, method=self.method, sigmas=sigmas)
            elif n not in skipped:  # ruled out by its digest: it cannot reach the threshold
                turns = aligned_rotations(self._camera_shapes[n], shape, self.rotations)
                out[n] = not_confirmed(n, len(turns) * n_sigmas, self._alpha, method=self.method)
        if not self.generators and skipped and all(n in skipped for n in shapes):  # all found damaged when read
            self._no_usable_references()
        return {n: out[n] for n in shapes if n in out}  # library order

    def _host(self, a) -> np.ndarray:
        return np.asarray(a) if self.device is None else np.ascontiguousarray(self.device.host(a))

    def _no_usable_references(self):
        """A lazily read library whose every reference was found damaged: no answer can be given."""
        refs = self.references
        raise ValueError(f"{refs.path}: the library holds no usable references ({len(refs.skipped)} damaged)")

    def _jpeg_weighted(self, w, I, jpeg: JpegGrid | None):
        """``w`` weighted by the file's JPEG quantisation (on the host: a blockwise DCT), or ``w``."""
        if jpeg is None:
            return w
        if self.device is None:
            return weight_residual(w, I, jpeg)
        return self.device.put(weight_residual(self._host(w), self._host(I), jpeg))

    def _residual(self, x, sigma: float):
        """Camera query residual of a checked image (on the device with the CUDA backend)."""
        levels = self._levels
        return extract_residual(x, sigma, levels) if self.device is None else self.device.residual(x, sigma, levels)


def _describe_residual(jpeg: JpegGrid | None) -> str:
    """How the camera query residual was made, in words (``Attribution.query_residual``)."""
    if jpeg is None:
        return "plain (no JPEG quantisation table)"
    quality = jpeg.quality
    return ("weighted by the file's JPEG quantisation table"
            + (f" (quality {quality})" if quality is not None else ""))


def load_attributor(library, *, fpr: float = DEFAULT_FPR, generator_threshold: float | None = None,
                    warn=None, backend: str = "auto", cache=None, names: Iterable[str] | None = None,
                    **options) -> Attributor:
    """An :class:`Attributor` over the references of a library (a path or an open ``Library``).

    References are read lazily (``camera_library.LazyReferences``): the generators now, each
    camera when a query's shape lets it answer, its spectrum and digest from the on-disk cache
    (``cache``: a folder, False for none, None for the default, see ``LazyReferences``). The
    generator NCC threshold is calibrated from the library's non-matching scores at per-pair
    false-positive rate ``fpr`` (see ``fingerprint.calibration``) unless ``generator_threshold``
    is given. A damaged reference (NaN or inf values, inconsistent shapes, unreadable data) is
    skipped: ``warn`` (default: print to stderr) gets one line naming it and the problem, when it
    is found. ``backend`` ("auto", "cpu", "cuda") and ``options`` go to :class:`Attributor`. A
    library given by its path stays open (read-only, no lock) until ``Attributor.close``.
    ``names``: only these references (a shard of the library, ``fingerprint.distributed``;
    generators not named are neither scored nor decided).
    """
    import sys

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    names = None if names is None else list(names)
    refs = LazyReferences(library, cache=cache, warn=warn, names=names)
    try:
        lib, path = refs.library, refs.path
        if not refs.entries:
            n = len(refs.skipped)
            what = f"no usable references ({n} damaged)" if n else "no references; build some first"
            raise ValueError(f"{path}: the library holds {what}")
        null = lib.calibration(NULL_KEY)
        # (a camera-only library skips the generators' statistics: one more pass over every reference's metadata)
        has_generators = bool(refs.names("generator"))
        models = load_generator_models(lib, fpr=fpr, warn=warn) if generator_threshold is None and has_generators else None
        if models is not None and names is not None:  # a shard: its generators only (the rate stays per image)
            models = dataclasses.replace(models, models=[m for m in models.models if m.name in refs.entries])
        if models is not None and models.without_statistics:  # a library built before the per-generator statistics
            warn(f"{path}: generators without their statistics ({', '.join(models.without_statistics)}); they are "
                 "decided by the library-wide threshold until `ganprint calibration LIBRARY --reset` computes them")
            models = None
        elif models is not None and models.notes:  # e.g. a compression-matched fingerprint out of date: not used
            warn(f"{path}: {'; '.join(models.notes)}")
        threshold = generator_threshold if generator_threshold is not None else threshold_from_null(null, fpr)
        att = Attributor(refs, generator_threshold=threshold, generator_models=models, backend=backend, **options)
        if not att.camera_names and not att.generators:  # every generator found damaged when read
            raise ValueError(f"{path}: the library holds no usable references ({len(refs.skipped)} damaged)")
        return att
    except BaseException:
        refs.close()
        raise


def attribute(images, library, *, crop: tuple[int, int] | None = None, **options) -> list[Attribution]:
    """Attribute images (arrays, or paths of image files) against a library.

    Parameters
    ----------
    images : ndarray, path, or a sequence of them
    library : path of an HDF5 library, or an open ``reference_db.Library``
    crop : (h, w), optional
        Centre-crop every image to this size first.
    **options
        ``method`` ("pce" or "ncc"), ``pce_threshold`` (60), ``generator_threshold``, ``rotations``,
        ``retry_sigma``, ``scale_search``, ``min_scale``, ``backend`` ("auto", "cpu" or "cuda");
        see :class:`Attributor`.

    Returns
    -------
    list of Attribution, one per image, in order.
    """

    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object:
        images = [images]
    elif isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        images = [images]
    with load_attributor(library, **options) as att:
        return _attribute_each(att, images, crop)


def _attribute_each(att: Attributor, images, crop) -> list[Attribution]:
    from fingerprint.io import crop_center, iter_images

    out = []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            label, image = f"image {i}", crop_center(item, crop) if crop else item
        else:
            (loaded,) = iter_images([item], crop=crop)
            if loaded.error is not None:
                raise loaded.error  # "<path>: <problem>"
            label, image = str(item), loaded.image
        quality = None if isinstance(item, np.ndarray) else file_jpeg_quality(item)
        jpeg = None if isinstance(item, np.ndarray) else read_jpeg_grid(item, crop)
        out.append(att.score(image, label, quality, jpeg=jpeg))  # a refusal names the image by its label
    return out


def attribute_paths(library, paths, *, crop=None, strict: bool = False, progress: bool = True,
                    max_pixels: int | None = None, **options):
    """Attribute image files one by one; yields an Attribution, or a one-line error string per bad file.

    Files, folders and glob patterns are expanded with ``io.collect_image_paths``, one item at a
    time, so an item that matches nothing is reported like a bad file. With ``strict`` the first
    bad item raises instead. ``max_pixels``: the decoder's size limit (default
    ``io.MAX_PIXELS``). Images are scored in batches of at most :data:`BATCH` images and
    :data:`BATCH_BYTES` bytes of pixels; an image that does not fit in memory (``MemoryError``
    while decoding or scoring it) is reported like a bad file, naming it, and the others are
    answered. ``options``: as :func:`load_attributor` (``backend`` included).
    """
    att = load_attributor(library, **options)  # library errors first: they concern every image
    try:
        yield from _attribute_files(att, paths, crop, strict, progress, max_pixels)
    finally:
        att.close()


def _attribute_files(att: Attributor, paths, crop, strict: bool, progress: bool, max_pixels: int | None):
    """The body of :func:`attribute_paths` with the attributor loaded."""
    import sys

    from tqdm import tqdm

    from fingerprint import interrupt
    from fingerprint.errors import GanprintError, InvalidImageError
    from fingerprint.io import collect_image_paths, iter_images

    files: list = []
    seen: set = set()
    for item in paths:
        try:
            for path in collect_image_paths([item]):
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    files.append(path)
        except GanprintError as err:
            if strict:
                raise
            files.append(str(err))
    pending: list = []  # (path or error string, image or None), scored BATCH images at a time

    def one(path, image):
        try:
            return att.score(image, str(path), file_jpeg_quality(path), jpeg=read_jpeg_grid(path, crop))
        except GanprintError as err:  # it names the file: the path is the image's label
            if strict:
                raise
            return str(err)
        except MemoryError:
            err = InvalidImageError(f"not enough memory to attribute this {image.shape[1]}x{image.shape[0]} image "
                                    "(MemoryError); free memory or raise the limit (ulimit -v)", path=path)
        if strict:
            raise err
        return str(err)

    def flush():
        images = [(str(p), im) for p, im in pending if im is not None]
        try:
            scored = att.score_batch([im for _, im in images], [lab for lab, _ in images],
                                     [file_jpeg_quality(lab) for lab, _ in images],
                                     jpegs=[read_jpeg_grid(lab, crop) for lab, _ in images])
        except (GanprintError, MemoryError):  # an image the residual refuses, or too many bytes at once
            scored = None  # (left the except block first: its traceback holds the batch's arrays)
        if scored is None:  # score one by one, so that the refusal names its image
            scored = [one(p, im) for p, im in images]
        scored = iter(scored)
        for p, im in pending:
            yield next(scored) if im is not None else p
        pending.clear()

    decode = {} if max_pixels is None else {"max_pixels": max_pixels}
    loaded = iter_images((f for f in files if not isinstance(f, str)), crop=crop, **decode)  # lazily, in step with files
    for path in tqdm(files, desc="attribute", unit="img", file=sys.stderr, disable=None if progress else True, leave=False):
        interrupt.check()
        if isinstance(path, str):  # an item that matched nothing
            pending.append((path, None))
        else:
            item = next(loaded)
            if item.error is not None:
                if strict:
                    yield from flush()  # the images before the bad one are answered first
                    raise item.error
                pending.append((str(item.error), None))
            else:
                if pending and sum(im.nbytes for _, im in pending if im is not None) + item.image.nbytes > BATCH_BYTES:
                    yield from flush()
                pending.append((path, item.image))
        if len(pending) >= BATCH:
            yield from flush()
    yield from flush()
