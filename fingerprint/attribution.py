"""Attribution: score a questioned image against every reference and decide match or unknown.

This module orchestrates: it computes each query's residuals once, hands them to the camera
scorers (``camera_match``: PCE of ``W·I`` against ``K``, docs/algorithm.md §7.4-§7.7) and to the
generator banks (``generator_match``: NCC and ``z = NCC·sqrt(D)``, §6, §7.8), and turns the
scores into one answer per image (``decision``). ``load_attributor`` prepares every reference of a
library; ``attribute`` and ``attribute_paths`` score arrays and files.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from fingerprint.calibration import DEFAULT_FPR, NULL_KEY, GeneratorThreshold, threshold_from_null
from fingerprint.camera_match import CameraReference, gray_image
from fingerprint.decision import Attribution, ReferenceScore, decide
from fingerprint.estimate import FingerprintParams, generator_residual
from fingerprint.generator_match import GeneratorBank, GeneratorReference, generator_scorers
from fingerprint.residual import extract_residual
from fingerprint.scores import DEFAULT_PCE_THRESHOLD
from kernels._backend import resolve_backend
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
    references : iterable of (name, kind, fingerprint, params)
        ``params`` a :class:`FingerprintParams` or dict.
    method : {"pce", "ncc"}
        Score that decides camera matches (generators always use NCC).
    pce_threshold : float
        PCE threshold at one position (default 60); raised for searches (``scores.search_threshold``).
    generator_threshold : float or GeneratorThreshold, optional
        The ``z = NCC * sqrt(D)`` a generator query must reach (from
        ``calibration.threshold_from_null``); without one, generators are scored but never matched.
    rotations : bool
        Try 90, 180 and 270 degree rotations of camera queries.
    query_sigma : float
        Noise std of the wavelet denoiser for camera query residuals (default 2, Binghamton).
    retry_sigma : float or None
        When no camera matches at ``query_sigma``, the residual is computed once more with this
        sigma (default 5, prnu-python's) and every camera is scored again at the rotation already
        reported; the extra positions raise the threshold (``Camera.retry``). None: no retry.
        Measured on Dresden in benchmarks/RESULTS.md.
    backend : {"auto", "cpu", "cuda"}
        Where query residuals and scores are computed, resolved once here
        (``kernels._backend.resolve_backend``, work size = the largest reference): ``"cuda"`` keeps
        fingerprints and spectra on the GPU (``fingerprint.device``); ``"auto"`` uses it only when
        usable and the references have at least ``AUTO_MIN_PIXELS`` pixels. ``self.backend`` holds
        the resolved name. The same ``ReferenceScore`` records come out, up to float32 rounding.
    """

    def __init__(self, references: Iterable[tuple[str, str, np.ndarray, Any]], *, method: str = "pce",
                 pce_threshold: float = DEFAULT_PCE_THRESHOLD,
                 generator_threshold: float | GeneratorThreshold | None = None, rotations: bool = True,
                 query_sigma: float = QUERY_SIGMA, retry_sigma: float | None = RETRY_SIGMA, backend: str = "auto"):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not pce_threshold > 0:
            raise ValueError(f"the PCE threshold must be positive, got {pce_threshold}")
        self.method = method
        self.pce_threshold = float(pce_threshold)
        self.query_sigma = float(query_sigma)
        self.retry_sigma = float(retry_sigma) if retry_sigma else None
        self.rotations = (0, 1, 2, 3) if rotations else (0,)
        self.cameras: list[CameraReference] = []
        self.generators: list[GeneratorReference] = []
        if generator_threshold is None or isinstance(generator_threshold, GeneratorThreshold):
            self.generator_threshold = generator_threshold
        else:
            self.generator_threshold = GeneratorThreshold(float(generator_threshold), float("nan"), 0, "given")
        gthr = self.generator_threshold
        references = list(references)
        pixels = max((int(np.prod(np.shape(fp)[-2:])) for _, _, fp, _ in references), default=None)
        self.backend = resolve_backend(backend, pixels=pixels)
        self.device = _cuda_device() if self.backend == "cuda" else None
        for name, kind, fp, params in references:
            params = params if isinstance(params, FingerprintParams) else FingerprintParams.from_dict(dict(params, kind=kind))
            if kind == "camera":
                self.cameras.append(CameraReference(name, fp, params, self.device))
            else:
                self.generators.append(GeneratorReference(name, fp, params, gthr.value if gthr else None,
                                                  gthr.describe() if gthr else None))
        groups: dict = {}
        for gen in self.generators:
            groups.setdefault((gen.params, gen.F.shape), []).append(gen)
        self.banks = [GeneratorBank(g, self.device) for g in groups.values()]

    def score(self, image: np.ndarray, label: str = "image") -> Attribution:
        """Score one image (uint8/uint16 array, H x W [x 3]) against every reference."""
        return self.score_batch([image], [label])[0]

    def score_batch(self, images: list[np.ndarray], labels: list[str] | None = None) -> list[Attribution]:
        """Score several images: camera PCEs per image (fingerprint spectra cached), generator NCCs
        of the whole batch as one matrix product per group of generators."""
        labels = labels if labels is not None else [f"image {i}" for i in range(len(images))]
        # the residual's input check, first, so that a refusal names the image by its label;
        # (H, W, 1) comes back as (H, W): gray, as extract_residual reads it
        images = [check_image(im, label) for im, label in zip(images, labels)]
        per_image: list[dict[str, ReferenceScore]] = [{} for _ in images]
        if self.cameras:
            for scores, image in zip(per_image, images):
                x = image if self.device is None else self.device.put(image)  # one copy to the device
                W = self._residual(x, self.query_sigma)
                I = gray_image(x) if self.device is None else self.device.gray(x)
                WI = W * I
                for cam in self.cameras:
                    scores[cam.name] = cam.score(W, WI, I, method=self.method, base=self.pce_threshold,
                                                 rotations=self.rotations)
                if self.retry_sigma and not any(scores[c.name].match for c in self.cameras):
                    W = self._residual(x, self.retry_sigma)
                    WI = W * I
                    for cam in self.cameras:
                        scores[cam.name] = cam.retry(scores[cam.name], W, WI, I, self.retry_sigma,
                                                     method=self.method, base=self.pce_threshold)
        residuals: dict[FingerprintParams, list[np.ndarray]] = {}
        for bank in self.banks:
            if bank.params not in residuals:
                residuals[bank.params] = [generator_residual(im, bank.params, backend=self.backend) for im in images]
            for scores, bank_scores in zip(per_image, bank.score_batch(residuals[bank.params])):
                scores.update((s.name, s) for s in bank_scores)
        return [decide(scores, label) for scores, label in zip(per_image, labels)]

    def _residual(self, x, sigma: float):
        """Camera query residual of a checked image (on the device with the CUDA backend)."""
        levels = self.cameras[0].params.levels
        return extract_residual(x, sigma, levels) if self.device is None else self.device.residual(x, sigma, levels)


def load_attributor(library, *, fpr: float = DEFAULT_FPR, generator_threshold: float | None = None,
                    warn=None, backend: str = "auto", **options) -> Attributor:
    """An :class:`Attributor` over every reference of a library (a path or an open ``Library``).

    The generator NCC threshold is calibrated from the library's non-matching scores at per-pair
    false-positive rate ``fpr`` (see ``fingerprint.calibration``) unless ``generator_threshold``
    is given. A damaged reference (NaN or inf values, inconsistent shapes, unreadable data) is
    skipped: ``warn`` (default: print to stderr) gets one line naming it and the problem.
    ``backend`` ("auto", "cpu", "cuda") and ``options`` go to :class:`Attributor`.
    """
    import sys

    from reference_db import DamagedReferenceError, Library

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    own = not isinstance(library, Library)
    lib = Library(library, "r") if own else library
    skipped = 0
    try:
        refs = []
        for name in lib.names():
            try:
                ref = lib.get(name, with_sums=False)
            except DamagedReferenceError as err:
                warn(str(err))
                skipped += 1
                continue
            params = FingerprintParams.from_dict(dict(ref.info.params, kind=ref.kind))
            refs.append((name, ref.kind, ref.fingerprint, params))
        null = lib.calibration(NULL_KEY)
    finally:
        if own:
            lib.close()
    if not refs:
        what = f"no usable references ({skipped} damaged)" if skipped else "no references; build some first"
        raise ValueError(f"{getattr(lib, 'path', library)}: the library holds {what}")
    threshold = generator_threshold if generator_threshold is not None else threshold_from_null(null, fpr)
    return Attributor(refs, generator_threshold=threshold, backend=backend, **options)


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
        ``backend`` ("auto", "cpu" or "cuda"; see :class:`Attributor`).

    Returns
    -------
    list of Attribution, one per image, in order.
    """
    from fingerprint.io import crop_center, iter_images

    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object:
        images = [images]
    elif isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        images = [images]
    att = load_attributor(library, **options)
    out = []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            label, image = f"image {i}", crop_center(item, crop) if crop else item
        else:
            (loaded,) = iter_images([item], crop=crop)
            if loaded.error is not None:
                raise loaded.error  # "<path>: <problem>"
            label, image = str(item), loaded.image
        out.append(att.score(image, label))  # a refusal names the image by its label
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
    import sys

    from tqdm import tqdm

    from fingerprint import interrupt
    from fingerprint.errors import GanprintError, InvalidImageError
    from fingerprint.io import collect_image_paths, iter_images

    att = load_attributor(library, **options)  # library errors first: they concern every image
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
            return att.score(image, str(path))
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
            scored = att.score_batch([im for _, im in images], [lab for lab, _ in images])
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
