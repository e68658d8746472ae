"""The references of a library, read lazily for attribution: shapes first, arrays when a query needs them.

``LazyReferences`` describes every reference of an open ``reference_db.Library`` from its metadata
(name, kind, fingerprint shape, parameters: no array is read) and loads a fingerprint only when
asked. Derived arrays go through the on-disk caches of ``fingerprint.spectrum_cache``, keyed by the
reference's content hash (SHA-256 of the fingerprint and its parameters), so a second run reads a
camera's spectrum instead of computing its FFT, and a changed reference never meets an old entry.

Which references can answer a query is a function of shapes only (:func:`can_match`); among the
camera references aligned with a full-size query, ``CameraPreselector`` keeps those that the exact
PCE must confirm (fingerprint digests, ``fingerprint.digest``): the others cannot reach the
threshold (probability at most ``Phi(-margin)`` for a match exactly at it), so the decision is the
exhaustive search's. Crops and scaled queries are searched exhaustively.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from fingerprint.decision import ReferenceScore
from fingerprint.digest import (
    DEFAULT_MARGIN,
    DEFAULT_TOP_K,
    DIGEST_FRACTION,
    PCE_RATIO,
    Digest,
    DigestIndex,
    Preselection,
    digest_size,
    preselect,
)
from fingerprint.camera_search import CameraDecision, CameraSearch, merge, scale_stage
from fingerprint.error_budget import ALPHA
from fingerprint.error_budget import threshold as budget_threshold
from fingerprint.estimate import FingerprintParams
from fingerprint.scores import ReferenceSpectrum
from fingerprint.spectrum_cache import DigestCache, SpectrumCache, cache_disabled, content_hash, content_key

__all__ = ["DIGEST_MIN_CAMERAS", "CameraPreselector", "LazyCameras", "LazyReferences", "ReferenceEntry", "aligned_rotations",
           "can_match", "decide_preselected", "matching", "not_confirmed"]

ROTATIONS = (0, 1, 2, 3)
DIGEST_MIN_CAMERAS = 32
"""Aligned cameras from which ``Attributor`` pre-selects by default: below, every camera is scored
(a PCE each, every score reported); above, the exact search of the few kept saves most of them."""
NOT_CONFIRMED = "not confirmed: its digest score is below the bound of any match (fingerprint digests)"


# ---- the shape policy: pure functions of shapes -------------------------------------------------
def _plane(shape: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of a fingerprint shape ``(H, W)`` or ``(C, H, W)``."""
    if len(shape) not in (2, 3):
        raise ValueError(f"a fingerprint shape is (H, W) or (C, H, W), got {tuple(shape)}")
    return int(shape[-2]), int(shape[-1])


def aligned_rotations(ref_shape: Sequence[int], query_shape: Sequence[int],
                      rotations: Iterable[int] = ROTATIONS) -> tuple[int, ...]:
    """The rotations k (``numpy.rot90(query, k)``) that give the query exactly the reference's shape."""
    (big_h, big_w), (h, w) = _plane(ref_shape), _plane(query_shape)
    return tuple(k for k in rotations if ((w, h) if k % 2 else (h, w)) == (big_h, big_w))


def can_match(kind: str, ref_shape: Sequence[int], query_shape: Sequence[int],
              rotations: Iterable[int] = ROTATIONS) -> bool:
    """Whether a reference of ``kind`` and fingerprint shape ``ref_shape`` can answer a query of ``query_shape``.

    A camera can when the query fits inside its fingerprint at one of ``rotations``: equal (aligned
    search), smaller (crop search) or resized and maybe cropped (the scaled search resamples the
    fingerprint *down* onto the query's grid, so it needs the fingerprint at least as large as the
    query too: the same set). A camera smaller than the query at every rotation cannot: its score
    is "larger than the fingerprint". A generator always can: ``generator_match`` compares any
    query with it on their common centred region.
    """
    if kind == "generator":
        return True
    if kind != "camera":
        raise ValueError(f"kind must be 'camera' or 'generator', got {kind!r}")
    (big_h, big_w), (h, w) = _plane(ref_shape), _plane(query_shape)
    for k in rotations:
        qh, qw = (w, h) if k % 2 else (h, w)
        if qh <= big_h and qw <= big_w:
            return True
    return False


def matching(entries: Iterable[ReferenceEntry], query_shape: Sequence[int],
             rotations: Iterable[int] = ROTATIONS, kind: str | None = None) -> list[str]:
    """Names of the ``entries`` (of ``kind``, default any) that :func:`can_match` a query of ``query_shape``."""
    rotations = tuple(rotations)
    return [e.name for e in entries if (kind is None or e.kind == kind)
            and can_match(e.kind, e.shape, query_shape, rotations)]


def not_confirmed(name: str, n_positions: int, alpha: float = ALPHA, *, method: str = "pce") -> ReferenceScore:
    """The record of a camera left out by the digest pre-selection: a non-match, scores not computed.

    ``n_positions`` is what its (native-only: the query has its size) search would count,
    aligned rotations x denoiser strengths; the threshold reported is that search's
    (``error_budget.threshold``).
    """
    tau = budget_threshold(alpha, max(int(n_positions), 1))
    return ReferenceScore(name, "camera", None, None, method, tau, False, rotation=None, offset=None,
                          n_positions=int(n_positions), note=NOT_CONFIRMED)


# ---- lazy references ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceEntry:
    """What attribution needs to know of a reference before loading it."""

    name: str
    kind: str
    shape: tuple[int, ...]  # of the fingerprint: (H, W) for a camera, (H, W) or (C, H, W) for a generator
    params: FingerprintParams
    fingerprint_sha256: str | None = None  # recorded by the library (None: written before it was)


def _warn_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class LazyReferences:
    """The references of a library, described at once and loaded on demand.

    Parameters
    ----------
    library : path or reference_db.Library
        A path is opened read-only and closed by :meth:`close`; an open library stays the caller's
        (it must stay open while references are loaded: it holds the snapshot they come from).
    cache : path, False or None
        Folder of the on-disk caches (``<cache>/spectra``, ``<cache>/digests``); None: the default
        (``spectrum_cache.default_cache_dir``: ``$GANPRINT_CACHE_DIR``, else the XDG cache folder;
        ``GANPRINT_CACHE_DIR=""`` turns caching off); False: no cache (everything computed).
    warn : callable, optional
        Gets one line per damaged reference (default: print to stderr); damaged references are
        left out (:attr:`skipped`).
    names : iterable of str, optional
        Describe only these references (a shard of the library, ``fingerprint.distributed``);
        default all. A name the library does not hold is ignored.

    Attributes
    ----------
    entries : dict of str to ReferenceEntry
        Every usable reference, by name (sorted).
    skipped : dict of str to str
        Damaged references and why, found when describing or when loading.
    loads : int
        Fingerprints read from the library so far (what laziness saves).
    spectra, digests : SpectrumCache, DigestCache or None
        The caches in use.
    """

    def __init__(self, library, *, cache: str | os.PathLike[str] | bool | None = None,
                 warn: Callable[[str], None] | None = None, names: Iterable[str] | None = None):
        from reference_db import Library

        self._own = not isinstance(library, Library)
        self.library = Library(library, "r") if self._own else library
        self.warn = warn or _warn_stderr
        self.loads = 0
        self.skipped: dict[str, str] = {}
        self._keys: dict[str, str] = {}
        if cache is False or (cache is None and cache_disabled()):
            self.spectra, self.digests = None, None
        elif cache is None:
            self.spectra, self.digests = SpectrumCache(), DigestCache()
        else:
            self.spectra = SpectrumCache(os.path.join(os.fspath(cache), "spectra"))
            self.digests = DigestCache(os.path.join(os.fspath(cache), "digests"))
        self.entries: dict[str, ReferenceEntry] = {}
        wanted = None if names is None else set(names)
        try:
            for info in self.library.infos(with_sources=False):  # metadata only: no array is read
                if wanted is not None and info.name not in wanted:
                    continue
                if info.damaged:
                    self._skip(info.name, f"reference {info.name!r} in the library {self.path} is damaged: "
                                          f"{info.damaged}; it is not used (remove it, then build it again)")
                    continue
                params = FingerprintParams.from_dict(dict(info.params, kind=info.kind))
                self.entries[info.name] = ReferenceEntry(info.name, info.kind, tuple(info.fingerprint_shape), params,
                                                         info.fingerprint_sha256)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        return str(getattr(self.library, "path", self.library))

    def __repr__(self) -> str:
        return f"LazyReferences({self.path!r}, {len(self.entries)} references, {self.loads} loaded)"

    def __len__(self) -> int:
        return len(self.entries)

    def __enter__(self) -> LazyReferences:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the library if this object opened it."""
        if self._own:
            self.library.close()

    def _skip(self, name: str, message: str) -> None:
        self.skipped[name] = message
        self.entries.pop(name, None)
        self.warn(message)

    # ---- what can match -------------------------------------------------------------------------
    def names(self, kind: str | None = None) -> list[str]:
        """Names of the usable references (of ``kind``, default all), sorted."""
        return [n for n, e in self.entries.items() if kind is None or e.kind == kind]

    def matching(self, query_shape: Sequence[int], kind: str | None = None,
                 rotations: Iterable[int] = ROTATIONS) -> list[str]:
        """Names of the references that can answer a query of ``query_shape`` (:func:`can_match`)."""
        return matching(self.entries.values(), query_shape, rotations, kind)

    def max_pixels(self) -> int | None:
        """Pixels of the largest fingerprint plane (for choosing a backend), without loading any."""
        return max((int(np.prod(_plane(e.shape))) for e in self.entries.values()), default=None)

    # ---- loading ----------------------------------------------------------------------------------
    def fingerprint(self, name: str) -> np.ndarray:
        """Read the fingerprint of ``name`` (float32; not kept here) and learn its content hash.

        Raises ``reference_db.DamagedReferenceError`` (the reference is then in :attr:`skipped`).
        """
        from reference_db import DamagedReferenceError

        entry = self.entries[name]
        try:
            K = self.library.fingerprint(name)  # metadata checked, the fingerprint alone read
        except DamagedReferenceError as err:
            self._skip(name, str(err))
            raise
        self.loads += 1
        if tuple(K.shape) != entry.shape:
            raise RuntimeError(f"{self.path}: reference {name!r} changed shape while open")
        if entry.fingerprint_sha256 is not None:  # the library checked K against it on this read
            self._keys[name] = content_key(entry.fingerprint_sha256, entry.shape, entry.params)
        else:
            self._keys[name] = content_hash(K, entry.params)
        return K

    def key(self, name: str) -> str:
        """The content hash of ``name``: from the SHA-256 the library recorded for its fingerprint
        (nothing read), else computed by reading the fingerprint (a reference written before the
        library recorded it)."""
        if name not in self._keys:
            entry = self.entries[name]
            if entry.fingerprint_sha256 is not None:
                self._keys[name] = content_key(entry.fingerprint_sha256, entry.shape, entry.params)
            else:
                self.fingerprint(name)
        return self._keys[name]

    def spectrum(self, name: str, fingerprint: np.ndarray | None = None) -> ReferenceSpectrum:
        """The :class:`ReferenceSpectrum` of camera ``name``, from the spectrum cache when it holds it.

        ``fingerprint``: the one just read by :meth:`fingerprint` (else it is read).
        """
        K = self.fingerprint(name) if fingerprint is None else fingerprint
        if self.spectra is None:
            return ReferenceSpectrum(K)
        return self.spectra.reference_spectrum(K, self.entries[name].params, key=self.key(name))

    def digest(self, name: str, n: int | None = None) -> Digest:
        """The ``n``-pixel digest of camera ``name`` (default :func:`digest.digest_size`), cached.

        With the fingerprint's SHA-256 recorded by the library, a cached digest is read without
        reading the fingerprint; otherwise the fingerprint is read (to learn its content hash, and
        to compute the digest if the cache does not hold it) and not kept.
        """
        from fingerprint.digest import make_digest

        shape = _plane(self.entries[name].shape)
        n = digest_size(shape) if n is None else int(n)
        if self.digests is None:
            return make_digest(self.fingerprint(name), n)
        if self.entries[name].fingerprint_sha256 is None:
            K = self.fingerprint(name)
            return self.digests.digest(K, n, key=self._keys[name])
        key = self.key(name)  # from the recorded SHA-256: nothing read yet
        cached = self.digests.load(key, shape, n)
        if cached is None:
            K = self.fingerprint(name)  # checked against that SHA-256: its content hash is ``key``
            cached = make_digest(K, n)
            self.digests.store(key, cached)
        return cached


# ---- pre-selection of aligned camera queries ----------------------------------------------------
class CameraPreselector:
    """Which cameras an aligned query must be scored against exactly: digests, then the bound.

    Parameters
    ----------
    references : LazyReferences
    alpha : float
        The per-decision false-alarm rate of the camera searches (default that of PCE 60 at one
        position). A camera aligned with the query searches its native stage only, with all of
        the budget, over (aligned rotations) x ``n_sigmas`` positions, so a match has at least
        ``error_budget.threshold(alpha, that count)``: the bound's threshold.
    n_sigmas : int
        Query residuals the plans count (2 with the sigma-5 second residual, the default).
    fraction, top_k, margin, pce_ratio
        The digest size (fraction of the pixels) and :func:`digest.preselect`'s arguments.
    min_cameras : int
        With at most this many aligned cameras (or at most ``top_k``) every one is kept without
        a sparse pass (default 0).

    Attributes
    ----------
    last : Preselection or None
        The pre-selection of the latest call of :meth:`candidates` that scored digests.
    scored, kept : int
        Cameras scored by their digests and cameras kept, over every call (statistics).
    """

    def __init__(self, references: LazyReferences, *, alpha: float = ALPHA, n_sigmas: int = 2,
                 fraction: float = DIGEST_FRACTION, top_k: int = DEFAULT_TOP_K, margin: float = DEFAULT_MARGIN,
                 pce_ratio: float = PCE_RATIO, min_cameras: int = 0):
        if not 0.0 < alpha < 1.0 or int(n_sigmas) < 1:
            raise ValueError(f"alpha must be in (0, 1) and n_sigmas >= 1, got {alpha!r} and {n_sigmas!r}")
        self.references = references
        self.alpha, self.n_sigmas = float(alpha), int(n_sigmas)
        self.fraction, self.top_k, self.margin, self.pce_ratio = float(fraction), int(top_k), float(margin), float(pce_ratio)
        self.min_cameras = int(min_cameras)
        self._indexes: dict[tuple[int, int], tuple[DigestIndex | None, list[str]]] = {}
        self.last: Preselection | None = None
        self.scored = self.kept = 0

    def index(self, shape: tuple[int, int]) -> tuple[DigestIndex | None, list[str]]:
        """The digest index of every usable camera of fingerprint ``shape`` and their names (built once)."""
        from reference_db import DamagedReferenceError

        shape = (int(shape[0]), int(shape[1]))
        if shape not in self._indexes:
            names, digests = [], []
            refs = self.references
            for name in refs.names("camera"):
                if refs.entries[name].shape != shape:
                    continue
                try:
                    digests.append(refs.digest(name, digest_size(shape, self.fraction)))
                except DamagedReferenceError:
                    continue  # reported and skipped by LazyReferences
                names.append(name)
            self._indexes[shape] = (DigestIndex(digests) if digests else None, names)
        return self._indexes[shape]

    def candidates(self, WI: np.ndarray, names: Sequence[str], rotations: Iterable[int] = ROTATIONS) -> list[str]:
        """The cameras among ``names`` to score exactly for the query whose residual product is ``WI``.

        Cameras aligned with the query (its shape at one of ``rotations``) are kept if their digest
        score reaches the bound or they are among the ``top_k`` best; every other name (a camera
        for a crop or scaled search) is kept as it is. Names come back in their input order.
        A camera left out cannot match (module doc): record it with :func:`not_confirmed`. With at
        most ``top_k`` (or ``min_cameras``) aligned cameras every one is kept without computing a digest.
        """
        return self.candidates_many([WI], names, rotations)[0]

    def candidates_many(self, WIs: Sequence[np.ndarray], names: Sequence[str],
                        rotations: Iterable[int] = ROTATIONS) -> list[list[str]]:
        """:meth:`candidates` for several residual products of one image (one shape), with one
        sparse pass over the digests for all of them (``DigestIndex.scores_many``)."""
        return [list(kept) for kept in self.select_many(WIs, names, rotations)]

    def select_many(self, WIs: Sequence[np.ndarray], names: Sequence[str],
                    rotations: Iterable[int] = ROTATIONS) -> list[dict[str, tuple[int, ...] | None]]:
        """:meth:`candidates_many` with the rotations to confirm: for each residual product,
        ``{name: quarter turns}`` over the cameras kept, in the order of ``names``.

        An aligned camera kept by the bound is confirmed at the rotations whose sparse score
        reached it (the others cannot reach the threshold: module doc); one kept only as one of
        the ``top_k`` best (for the record of the closest camera: it cannot match either) at its
        best-scoring rotation. ``None``: every rotation (a camera not aligned with the query, one
        whose digest could not be read, or every camera when no sparse pass runs).
        """
        WIs = [np.asarray(w) for w in WIs]
        shape = tuple(WIs[0].shape)
        if any(tuple(w.shape) != shape for w in WIs):
            raise ValueError(f"candidates_many needs residuals of one shape, got {[w.shape for w in WIs]}")
        rotations = tuple(sorted({int(k) % 4 for k in rotations}))
        entries = self.references.entries
        shapes = {(shape[1], shape[0]) if k % 2 else shape for k in rotations}
        aligned = [n for n in names if n in entries and entries[n].kind == "camera" and entries[n].shape in shapes]
        if len(aligned) <= max(self.top_k, self.min_cameras):  # every one kept: no sparse pass
            return [{n: None for n in names if n in entries} for _ in WIs]
        wanted = set(aligned)
        z_rows: list[list[np.ndarray]] = [[] for _ in WIs]
        r_rows, row_names, counts = [], [], []
        for s in sorted(shapes):
            index, members = self.index(s)
            if index is None:
                continue
            rows = [i for i, n in enumerate(members) if n in wanted]
            if not rows:
                continue
            for m, z in enumerate(index.scores_many(WIs, rotations)):
                z_rows[m].append(z[rows])
            r_rows.append(index.correlation[rows])
            row_names += [members[i] for i in rows]
            counts.append(len(aligned_rotations(s, shape, rotations)))
        if not row_names:
            return [{n: None for n in names if n not in wanted} for _ in WIs]
        tau = budget_threshold(self.alpha, min(counts) * self.n_sigmas)  # the lowest threshold of any row's plan
        correlation = np.concatenate(r_rows)
        row_of = {n: i for i, n in enumerate(row_names)}
        out = []
        for z in z_rows:
            z = np.concatenate(z)
            sel = preselect(z, correlation, tau, top_k=self.top_k, margin=self.margin, pce_ratio=self.pce_ratio)
            self.last = sel
            best = np.argmax(np.where(np.isnan(z), -np.inf, z), axis=1)
            chosen = set(sel.candidates.tolist())
            keep: dict[str, tuple[int, ...] | None] = {}
            for n in names:
                if n not in entries:
                    continue
                i = row_of.get(n)
                if i is None:  # not aligned, or aligned but its digest could not be read (damaged): exact search
                    keep[n] = None
                elif i in chosen:
                    turns = tuple(int(k) for k in np.flatnonzero(sel.above[i]))
                    keep[n] = turns or (int(best[i]),)
            self.scored += len(row_names)
            self.kept += len(chosen)
            out.append(keep)
        return out


# ---- cameras built on first use, and the decision over the pre-selected ones ---------------------
class LazyCameras(Mapping):
    """``{name: camera}`` over ``names``, each built by ``make(name, fingerprint)`` when first looked up.

    ``make`` gets the fingerprint read from the library and returns the scoring object (e.g.
    ``camera_match.CameraReference(name, K, params, spectrum=references.spectrum(name, K), ...)``,
    the spectrum from the cache); built objects are kept. Iterating gives the names, in order,
    without building anything.
    """

    def __init__(self, references: LazyReferences, names: Sequence[str], make: Callable[[str, np.ndarray], Any]):
        self.references, self.make = references, make
        self._names = list(names)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        """The camera ``name``, built now if it is not yet; KeyError if it is not here or is damaged
        (found when its fingerprint is read: reported once by :class:`LazyReferences`, then left out)."""
        from reference_db import DamagedReferenceError

        if name not in self._built:
            if name not in self._names or name in self.references.skipped:
                raise KeyError(name)
            try:
                K = self.references.fingerprint(name)
            except DamagedReferenceError:
                raise KeyError(name) from None
            self._built[name] = self.make(name, K)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        skipped = self.references.skipped
        return iter([n for n in self._names if n not in skipped])

    def __len__(self) -> int:
        skipped = self.references.skipped
        return sum(n not in skipped for n in self._names)

    @property
    def built(self) -> list[str]:
        """Names of the cameras built so far."""
        return list(self._built)

    def view(self, names: Sequence[str], attribute: str) -> Mapping:
        """``{name: getattr(camera, attribute)}`` over ``names``, building a camera only when looked up
        (e.g. ``view(names, "search")`` for :func:`decide_preselected`)."""
        return _AttributeView(self, list(names), attribute)

    def as_list(self) -> Sequence:
        """The cameras as a sequence: ``len`` and truth cost nothing, items are built when reached."""
        return _CameraList(self)


class _AttributeView(Mapping):
    def __init__(self, cameras: LazyCameras, names: list[str], attribute: str):
        self._cameras, self._names, self._attribute = cameras, names, attribute

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return getattr(self._cameras[name], self._attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _CameraList(Sequence):
    def __init__(self, cameras: LazyCameras):
        self._cameras = cameras

    def __len__(self) -> int:
        return len(self._cameras)

    def __getitem__(self, i):
        names = list(self._cameras)
        if isinstance(i, slice):
            return [self._cameras[n] for n in names[i]]
        return self._cameras[names[i]]


def decide_preselected(searches: Mapping[str, CameraSearch], wi2: np.ndarray,
                       second: Callable[[], np.ndarray] | None = None, *,
                       select: Callable[[np.ndarray, list[str]], Sequence[str] | Mapping[str, Any]] | None = None,
                       progress: Callable[[str, float, str], None] | None = None) -> dict[str, CameraDecision]:
    """``camera_search.decide_cameras`` over the cameras ``select`` keeps for each residual.

    The same passes in the same order (native and implied scale for every camera kept for the
    first residual; if none matched, the native stage with the second residual ``second()`` for
    every camera kept for the first *or* the second residual, the ones new to it scored with the
    first residual too; then, if still none matched, the scale search camera by camera), with the
    plans counting the second residual from the start. ``select(wi, names)`` is
    :meth:`CameraPreselector.candidates` (the names kept) or :meth:`CameraPreselector.select_many`'s
    ``{name: rotations}`` (the native stage then computes only those quarter turns; None: all):
    a camera or rotation it leaves out cannot match (module doc), so the decisions are those of
    the exhaustive search; a camera left out for both residuals has no decision here (record it
    with :func:`not_confirmed`). ``searches`` may be lazy (:class:`LazyCameras` mapped to
    ``.search``): only the cameras kept are looked up. Without ``select`` this is
    ``decide_cameras`` (tests/test_camera_library.py compares them).
    """
    names = list(searches)

    def pick(wi) -> dict[str, tuple[int, ...] | None]:
        if select is None:
            return dict.fromkeys(names)
        kept = select(wi, names)
        return dict(kept) if isinstance(kept, Mapping) else dict.fromkeys(kept)

    n_sigmas = 2 if second is not None else 1
    dec: dict[str, CameraDecision] = {}
    lost: set[str] = set()  # a lazy camera found damaged when first looked up: left out

    def first_pass(c: str, turns) -> None:
        try:
            search = searches[c]
        except KeyError:
            lost.add(c)
            return
        dec[c] = search.score([wi2], n_sigmas=n_sigmas, stages=("native", "implied scale"), native_rotations=turns)

    for c, turns in pick(wi2).items():
        first_pass(c, turns)
    matched = lambda: any(d.match for d in dec.values())  # noqa: E731
    if second is not None and not matched():
        wi5 = second()
        kept5 = pick(wi5)
        for c in (n for n in names if (n in kept5 or n in dec) and n not in lost):
            turns = kept5.get(c, ())  # () for a camera kept only for the first residual
            if c not in dec:
                first_pass(c, turns)
                if c in lost:
                    continue
            if turns == ():
                continue  # no rotation of the second residual can reach the threshold: nothing to add
            dec[c] = merge(dec[c], searches[c].score([wi2, wi5], stages=("native",), native_residuals=(1,),
                                                     native_rotations=turns))
    if not matched():  # the scale search, in camera_search's order (survey first), until one matches
        scale_stage(searches, [n for n in names if n in dec], wi2, n_sigmas, dec, progress=progress)
    return {n: dec[n] for n in names if n in dec}
