"""Attribution: score a questioned image against every reference and decide match or unknown.

This module orchestrates; the maths lives in ``residual``, ``estimate`` and ``scores``.

Cameras (docs/algorithm.md §7.4-§7.7): the query residual ``W`` (sigma 2) times the gray query image ``I`` is
cross-correlated with the fingerprint ``K``, whose spectrum is computed once per reference. A
query of the fingerprint's size is scored at zero shift; a smaller one (a crop at an unknown
offset) is searched over every shift that keeps it inside; each rotation by 0/90/180/270 degrees
that fits is tried and the best PCE wins. The decision threshold grows with the number of
positions searched, so the false-alarm rate of a decision stays that of PCE 60 at one position.

Generators (docs/algorithm.md §6, §7.8): NCC between the query's generator residual and the fingerprint
(per-channel means removed); match when ``z = NCC * sqrt(D)`` (D values compared) reaches the
library's calibrated threshold, i.e. when the NCC reaches ``z_threshold / sqrt(D)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from fingerprint.calibration import DEFAULT_FPR, NULL_KEY, GeneratorThreshold, threshold_from_null
from fingerprint.estimate import FingerprintParams, generator_residual
from fingerprint.residual import extract_residual
from fingerprint.scores import DEFAULT_PCE_THRESHOLD, ReferenceSpectrum, ncc, search_threshold
from kernels._backend import resolve_backend
from kernels.spec import GRAY_WEIGHTS, QUERY_SIGMA, check_image, value_scale

RETRY_SIGMA = 5.0  # second denoiser strength for camera queries that match nothing (prnu-python's default)
BATCH = 8  # images scored together by attribute_paths (generator NCCs as one matrix product)
METHODS = ("pce", "ncc")

__all__ = ["Attribution", "Attributor", "ReferenceScore", "DEFAULT_PCE_THRESHOLD", "METHODS", "generator_scorers"]


@dataclass
class ReferenceScore:
    """Scores of one query against one reference.

    ``ncc`` is the normalised cross-correlation at the chosen offset and rotation; ``pce`` the
    peak-to-correlation energy (cameras only, else None); ``threshold`` the value the deciding
    score (``decided_by``) had to reach; ``n_positions`` the shifts x rotations searched.
    """

    name: str
    kind: str
    ncc: float | None
    pce: float | None
    decided_by: str
    threshold: float
    match: bool
    rotation: int | None = None
    offset: tuple[int, int] | None = None
    n_positions: int = 0
    note: str | None = None
    z: float | None = None  # generators: NCC * sqrt(number of values compared), ~N(0, 1)-scaled

    @property
    def strength(self) -> float:
        """The deciding score over its threshold (> 1 means match); ranks candidates of both kinds."""
        value = self.pce if self.decided_by == "pce" else self.ncc
        if value is None or not self.threshold > 0:
            return -math.inf
        return value / self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ncc": self.ncc,
            "pce": self.pce,
            "decided_by": self.decided_by,
            "threshold": self.threshold,
            "match": self.match,
            "rotation": self.rotation,
            "offset": list(self.offset) if self.offset is not None else None,
            "n_positions": self.n_positions,
            **({"z": self.z} if self.z is not None else {}),
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class Attribution:
    """The answer for one questioned image."""

    image: str
    best: str | None
    decision: str  # "match" or "unknown"
    scores: dict[str, ReferenceScore] = field(default_factory=dict)
    closest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        best = self.scores.get(self.best) if self.best else None
        return {
            "image": self.image,
            "best": self.best,
            "decision": self.decision,
            "closest": self.closest,
            "kind": best.kind if best else None,
            "rotation": best.rotation if best else None,
            "offset": list(best.offset) if best and best.offset is not None else None,
            "scores": {name: s.as_dict() for name, s in self.scores.items()},
        }


def gray_image(image: np.ndarray) -> np.ndarray:
    """Gray query image I in [0, 255], float32 (H, W) (uint16 divided by 257)."""
    x = image.astype(np.float32)
    scale = value_scale(image.dtype)
    if scale != 1.0:
        x *= np.float32(scale)
    if x.ndim == 3:
        x = x @ np.asarray(GRAY_WEIGHTS, dtype=np.float32)
    return x


def _centre(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = a.shape[-2:]
    top, left = (h - shape[0]) // 2, (w - shape[1]) // 2
    return a[..., top : top + shape[0], left : left + shape[1]]


class _Camera:
    def __init__(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, device=None):
        self.name = name
        self.params = params
        self.K = np.ascontiguousarray(fingerprint, dtype=np.float32)
        # DFT of K computed once; with a device (fingerprint.device.Device), K and its DFT live there
        self.spectrum = ReferenceSpectrum(self.K) if device is None else device.spectrum(self.K)
        on_host = device is None
        self.xp, self._K, self._ncc = (np, self.K, ncc) if on_host else (device.xp, device.put(self.K), device.ncc)

    def _try(self, WI: np.ndarray, k: int):
        q = self.xp.ascontiguousarray(self.xp.rot90(WI, k))
        H, Wd = self.K.shape
        if q.shape[0] > H or q.shape[1] > Wd:
            return None
        return self.spectrum.pce(q, search="aligned" if q.shape == self.K.shape else "crop")

    @staticmethod
    def _threshold(method: str, base: float, n_positions: int, pixels: int) -> float:
        """The PCE threshold for a search over ``n_positions``, or its NCC equivalent."""
        tau = search_threshold(base, max(n_positions, 1))
        return tau if method == "pce" else math.sqrt(tau / pixels)  # PCE ~ NCC**2 * pixels

    def _result(self, k, res, n_positions, W, I, method, base) -> ReferenceScore:
        oy, ox = res.offset
        Wr, Ir = self.xp.rot90(W, k), self.xp.rot90(I, k)
        h, w = Wr.shape
        c = self._ncc(Wr, Ir * self._K[oy : oy + h, ox : ox + w])
        threshold = self._threshold(method, base, n_positions, h * w)
        match = (res.pce if method == "pce" else c) >= threshold
        return ReferenceScore(self.name, "camera", c, res.pce, method, threshold, bool(match),
                              rotation=90 * k, offset=(oy, ox), n_positions=n_positions)

    def score(self, W: np.ndarray, WI: np.ndarray, I: np.ndarray, *, method: str, base: float,
              rotations: tuple[int, ...]) -> ReferenceScore:
        """Score at 0 degrees; the other rotations are tried only when that is not a match.

        A rotated result replaces the unrotated one only if it is a match at the threshold of
        the whole search (every position of every rotation tried). A non-match reports its
        unrotated score with the threshold of the whole search and the positions searched.
        """
        first = self._try(WI, 0)
        n_first = first.n_positions if first is not None else 0
        if first is not None:
            unrotated = self._result(0, first, n_first, W, I, method, base)
            if unrotated.match or rotations == (0,):
                return unrotated
        tried = [(k, self._try(WI, k)) for k in rotations if k != 0]
        tried = [(k, r) for k, r in tried if r is not None]
        n_total = n_first + sum(r.n_positions for _, r in tried)
        if tried:
            k, res = max(tried, key=lambda kr: kr[1].pce)
            rotated = self._result(k, res, n_total, W, I, method, base)
            if rotated.match or first is None:
                return rotated
        if first is not None:
            return self._result(0, first, n_total, W, I, method, base)
        H, Wd = self.K.shape
        return ReferenceScore(self.name, "camera", None, None, method, math.inf, False, n_positions=0,
                              note=f"query {W.shape[0]}x{W.shape[1]} is larger than the fingerprint {H}x{Wd} at every rotation")

    def retry(self, previous: ReferenceScore, W: np.ndarray, WI: np.ndarray, I: np.ndarray, sigma: float, *,
              method: str, base: float) -> ReferenceScore:
        """Try a second residual (another denoiser sigma) at the rotation already reported.

        Its positions are added to the search, so the threshold rises with it (two published
        denoiser strengths are one more test, not a free second chance). Returns the new result
        if it is a match, else ``previous`` with the threshold of the whole search.
        """
        if previous.pce is None:
            return previous
        k = (previous.rotation or 0) // 90
        res = self._try(WI, k)
        if res is None:
            return previous
        n_all = previous.n_positions + res.n_positions
        candidate = self._result(k, res, n_all, W, I, method, base)
        if candidate.match:
            return dataclasses.replace(candidate, note=f"matched with the query residual at sigma {sigma:g}")
        h, w = W.shape[::-1] if k % 2 else W.shape
        return dataclasses.replace(previous, n_positions=n_all, threshold=self._threshold(method, base, n_all, h * w))


def _centred_channels(a: np.ndarray) -> np.ndarray:
    """Subtract each channel's mean (the DC of every channel), float32 (C, H, W)."""
    return (a - a.mean(axis=(1, 2), keepdims=True, dtype=np.float64)).astype(np.float32, copy=False)


def _unit(a: np.ndarray) -> np.ndarray:
    """Flattened, per-channel-centred, unit-norm float32 vector (zeros for a constant array)."""
    v = _centred_channels(a).ravel()
    norm = float(np.linalg.norm(v.astype(np.float64)))
    return v / np.float32(norm) if norm > 0 else v


class _Generator:
    def __init__(self, name: str, fingerprint: np.ndarray, params: FingerprintParams, threshold: float | None,
                 threshold_note: str | None = None):
        self.name = name
        self.params = params
        self.F = np.asarray(fingerprint, dtype=np.float32)
        if self.F.ndim == 2:
            self.F = self.F[None]
        self.threshold = threshold
        self.threshold_note = threshold_note

    def result(self, c: float, d: int, note: str | None = None) -> ReferenceScore:
        """The score record for NCC ``c`` over ``d`` values: ``z = c sqrt(d)`` against the threshold."""
        z = c * math.sqrt(d)
        if self.threshold is None:
            note = "; ".join(x for x in (note, self.threshold_note or "no calibrated threshold") if x)
            return ReferenceScore(self.name, "generator", c, None, "ncc", math.inf, False,
                                  rotation=0, offset=None, n_positions=1, note=note, z=z)
        ncc_threshold = self.threshold / math.sqrt(d)  # the z threshold in NCC units for this size
        return ReferenceScore(self.name, "generator", c, None, "ncc", ncc_threshold, bool(z >= self.threshold),
                              rotation=0, offset=None, n_positions=1, note=note, z=z)

    def score(self, R: np.ndarray) -> ReferenceScore:
        """NCC of a residual R (C, H, W) of any size with this fingerprint (the general path)."""
        F = self.F
        if R.shape[0] != F.shape[0]:  # gray query against a colour fingerprint, or the reverse
            g = np.asarray(GRAY_WEIGHTS, dtype=np.float32)
            R = np.tensordot(g, R, axes=1)[None] if R.shape[0] == 3 else R
            F = np.tensordot(g, F, axes=1)[None] if F.shape[0] == 3 else F
        common = (min(R.shape[1], F.shape[1]), min(R.shape[2], F.shape[2]))
        note = None
        if R.shape[1:] != F.shape[1:]:
            note = f"compared on the centred {common[0]}x{common[1]} region"
        r, f = _centre(R, common), _centre(F, common)
        return self.result(ncc(_centred_channels(r), _centred_channels(f)), r.size, note)


class _GeneratorBank:
    """Generators sharing parameters and fingerprint shape: scoring them all is one matrix product.

    ``M`` (R x D, float32) holds the unit, per-channel-centred fingerprints, so for a query residual
    of the same shape the NCC with every generator is ``M @ unit(r)``, and for a batch of Q queries
    ``unit(R) @ M.T`` (Q x R).
    """

    def __init__(self, generators: list[_Generator], device=None):
        self.generators = generators
        self.params = generators[0].params
        self.shape = generators[0].F.shape
        self.M = np.stack([_unit(g.F) for g in generators])
        self.device, self._M = device, (device.put(self.M) if device is not None else None)  # M on the device

    def score_batch(self, residuals: list[np.ndarray]) -> list[list[ReferenceScore]]:
        same = [i for i, r in enumerate(residuals) if r.shape == self.shape]
        out: list[list[ReferenceScore]] = [[] for _ in residuals]
        if same:
            units = np.stack([_unit(residuals[i]) for i in same])
            # (Q, R) NCC: a product of unit vectors, or ncc_matrix (one GEMM) on the device
            c = units @ self.M.T if self.device is None else self.device.ncc_rows(units, self._M)
            d = int(np.prod(self.shape))
            for row, i in enumerate(same):
                out[i] = [g.result(float(np.clip(c[row, k], -1.0, 1.0)), d) for k, g in enumerate(self.generators)]
        for i, r in enumerate(residuals):
            if r.shape != self.shape:
                out[i] = [g.score(r) for g in self.generators]
        return out


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
        self.cameras: list[_Camera] = []
        self.generators: list[_Generator] = []
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
                self.cameras.append(_Camera(name, fp, params, self.device))
            else:
                self.generators.append(_Generator(name, fp, params, gthr.value if gthr else None,
                                                  gthr.describe() if gthr else None))
        groups: dict = {}
        for gen in self.generators:
            groups.setdefault((gen.params, gen.F.shape), []).append(gen)
        self.banks = [_GeneratorBank(g, self.device) for g in groups.values()]

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
        return [self._decide(scores, label) for scores, label in zip(per_image, labels)]

    def _residual(self, x, sigma: float):
        """Camera query residual of a checked image (on the device with the CUDA backend)."""
        levels = self.cameras[0].params.levels
        return extract_residual(x, sigma, levels) if self.device is None else self.device.residual(x, sigma, levels)

    @staticmethod
    def _decide(scores: dict[str, ReferenceScore], label: str) -> Attribution:
        ordered = {name: scores[name] for name in sorted(scores)}
        ranked = sorted(ordered.values(), key=lambda s: s.strength, reverse=True)
        closest = ranked[0].name if ranked and ranked[0].strength > -math.inf else None
        best = ranked[0].name if ranked and ranked[0].match else None
        return Attribution(label, best, "match" if best else "unknown", ordered, closest)


def generator_scorers(lib, params: FingerprintParams, exclude: str = "") -> list:
    """Scorers of a library's generators built with ``params``, all but reference ``exclude``.

    Each has ``.score(R)`` (R a generator residual, (C, H, W)) returning a
    :class:`ReferenceScore` whose ``z`` is a score of that image against a generator it does not
    come from: the non-matching calibration scores of ``build`` and ``calibrate``. Only
    generators with the same parameters are returned, so every score is of one statistic. No
    threshold is attached (they never decide a match). Damaged references are left out.
    """
    from reference_db import DamagedReferenceError

    out = []
    for info in lib.infos():
        if info.kind == "generator" and info.name != exclude and not info.damaged:
            theirs = FingerprintParams.from_dict(dict(info.params, kind="generator"))
            if theirs == params:
                try:
                    fingerprint = lib.get(info.name, with_sums=False).fingerprint
                except DamagedReferenceError:
                    continue
                out.append(_Generator(info.name, fingerprint, theirs, None))
    return out


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


def attribute_paths(library, paths, *, crop=None, strict: bool = False, progress: bool = True, **options):
    """Attribute image files one by one; yields an Attribution, or a one-line error string per bad file.

    Files, folders and glob patterns are expanded with ``io.collect_image_paths``, one item at a
    time, so an item that matches nothing is reported like a bad file. With ``strict`` the first
    bad item raises instead. ``options``: as :func:`load_attributor` (``backend`` included).
    """
    import sys

    from tqdm import tqdm

    from fingerprint import interrupt
    from fingerprint.errors import GanprintError
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

    def flush():
        images = [(str(p), im) for p, im in pending if im is not None]
        try:
            scored = iter(att.score_batch([im for _, im in images], [lab for lab, _ in images]))
        except GanprintError:  # an image the residual refuses: score one by one to name it
            scored = iter([one(p, im) for p, im in images])
        for p, im in pending:
            yield next(scored) if im is not None else p
        pending.clear()

    loaded = iter_images((f for f in files if not isinstance(f, str)), crop=crop)  # lazily, in step with files
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
                pending.append((path, item.image))
        if len(pending) >= BATCH:
            yield from flush()
    yield from flush()
