r"""Fingerprint digests: pre-select the few cameras worth an exact PCE out of thousands.

Goljan, Fridrich and Filler [1]_ keep, for each camera fingerprint ``K``, the positions and values
of its strongest pixels (the *digest*). An aligned query (the residual product ``q = W I`` of an
image of the fingerprint's size, docs/algorithm.md §7.4) is correlated with every digest at once by
gathering ``q`` at the digest's pixels; only the cameras whose sparse score is high enough are
confirmed with the exact PCE (``fingerprint.scores``). Crops and scaled queries are not served
here: they search exhaustively.

The sparse score
----------------
With ``D_j`` the digest pixels of reference ``j``, ``v`` its values (``K - mean(K)`` there),
``q~ = q - mean(q)`` and ``sigma_q`` the standard deviation of ``q`` over the whole image,

.. math:: z_j = \frac{\sum_{i \in D_j} v_i\, \tilde q_i}{\sigma_q\, \lVert v \rVert}

is N(0, 1) for a query that does not come from camera ``j``. The full aligned statistic
``z_full = sum_i k~_i q~_i / (sigma_q ||k~||)`` (its square is about the PCE, ``PCE ~ lambda z_full^2``
with ``lambda`` the *PCE ratio*, near 1) contains ``z_j``'s sum: if ``q~ = a k~ + noise``,

.. math:: z_j \mid z_{full} \sim \mathcal N\!\left(r_j\, z_{full},\; 1 - r_j^2\right),
          \qquad r_j = \lVert v \rVert / \lVert \tilde k \rVert = \sqrt{\text{energy fraction}},

the correlation of the two statistics, known exactly for every digest. A reference whose PCE
reaches the decision threshold ``tau`` has ``z_full >= sqrt(tau / lambda)``, so its sparse score
is below

.. math:: b_j = r_j \sqrt{\tau / \lambda_{hi}} - m \sqrt{1 - r_j^2}

with probability at most ``Phi(-m)`` (``m`` the margin, default 5: 2.9e-7 for a match exactly at
the threshold, less for any stronger one). :func:`preselect` keeps every (reference, rotation)
with ``z >= b_j``, plus the ``top_k`` best references, so the exact PCE on the candidates decides
as the exhaustive search does; a non-matching reference is a candidate with probability
``Q(b_j)`` per rotation. ``lambda_hi`` (:data:`PCE_RATIO`) and the model were measured on
synthetic cameras and on Dresden (benchmarks/bench_search.py, docs/scaling.md).

The digest size trades the sparse pass (R x n entries) against that false-candidate rate: for a
white Gaussian ``K`` the strongest fraction f of pixels carries ``r^2 = 2 (q phi(q) + Q(q))`` of its
energy (``q = Phi^-1(1 - f/2)``): f = 0.10 gives r = 0.66, 0.15 gives 0.75, 0.20 gives 0.81, 0.25
gives 0.85 (estimated fingerprints: about 0.01 more). At ``tau = 60``, ``lambda_hi = 1.25``, m = 5
the bound is 0.85 (20 % of non-matching pairs kept) for f = 0.10, 1.85 (3.2 %) for 0.15, 2.62
(0.44 %) for 0.20 and 3.27 (0.054 %) for 0.25: with 1000 references and 4 rotations, about 2
false pairs per query at :data:`DIGEST_FRACTION` = 0.25, 18 at 0.20 (measured:
benchmarks/bench_search.py, docs/scaling.md).

References
----------
.. [1] M. Goljan, J. Fridrich and T. Filler, "Managing a large database of camera fingerprints",
   Proc. SPIE 7541, Media Forensics and Security II, 2010. :doi:`10.1117/12.838378`
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.special

from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.scores import DEFAULT_PCE_THRESHOLD
from kernels.digest_cpu import gather_correlation

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_TOP_K",
    "DIGEST_FRACTION",
    "PCE_RATIO",
    "Digest",
    "DigestIndex",
    "Preselection",
    "digest_bound",
    "digest_size",
    "make_digest",
    "preselect",
]

DIGEST_FRACTION = 0.25
"""Default digest size as a fraction of the fingerprint's pixels (module doc: the trade-off)."""

DEFAULT_MARGIN = 5.0
"""Standard deviations of ``z_j | z_full`` left below a match exactly at the threshold."""

DEFAULT_TOP_K = 2
"""References confirmed whatever their sparse score (the best ones, by their best rotation)."""

PCE_RATIO = 1.25
"""Upper bound ``lambda_hi`` of ``PCE / z_full^2`` used by the bound.

Measured over pairs with PCE >= 20: 0.96-1.00 on synthetic cameras, 0.67-1.08 on Dresden 512 x 512
crops, 0.70-1.17 on full-size Dresden photos (docs/scaling.md). A true ratio above it lowers the
effective margin: at 1.5 by about one of the margin's standard deviations."""

ROTATIONS = (0, 1, 2, 3)


@dataclass(frozen=True, eq=False)
class Digest:
    """The strongest pixels of one fingerprint.

    Attributes
    ----------
    indices : ndarray of int32 (int64 past 2**31 pixels), shape (n,)
        Row-major flat positions in the fingerprint, ascending.
    values : ndarray of float32, shape (n,)
        ``K - mean(K)`` at those positions.
    shape : tuple of int
        ``(H, W)`` of the fingerprint.
    energy_fraction : float
        ``sum(values**2) / sum((K - mean(K))**2)`` in [0, 1]; its square root is the correlation
        ``r`` of the sparse and full statistics (module doc).
    """

    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    energy_fraction: float

    @property
    def correlation(self) -> float:
        """``r = sqrt(energy_fraction)``."""
        return math.sqrt(self.energy_fraction)

    @property
    def nbytes(self) -> int:
        return int(self.indices.nbytes + self.values.nbytes)


def digest_size(shape: tuple[int, int], fraction: float = DIGEST_FRACTION) -> int:
    """Number of pixels kept for a fingerprint of ``shape``: ``round(fraction * H * W)``, at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the digest fraction must be in (0, 1], got {fraction!r}")
    return max(1, int(round(fraction * shape[0] * shape[1])))


def make_digest(K: np.ndarray, n: int | None = None) -> Digest:
    """The digest of fingerprint ``K``: its ``n`` pixels of largest ``|K - mean(K)|``.

    Parameters
    ----------
    K : ndarray of float, shape (H, W)
        A camera fingerprint (finite values).
    n : int, optional
        Pixels kept, 1 <= n <= H * W; default :func:`digest_size` (25 % of the pixels).

    Returns
    -------
    Digest
        Positions ascending (the sparse pass then reads the query in order); ties at the cut are
        broken by ``numpy.argpartition``.

    Raises
    ------
    InvalidImageError
        ``K`` is not 2-D, is empty or holds NaN or inf.
    ValueError
        ``n`` is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.zeros((4, 4), np.float32); K[1, 2] = 3.0; K[3, 0] = -2.0
    >>> d = make_digest(K, 2)
    >>> d.indices.tolist(), [round(float(v), 4) for v in d.values]
    ([6, 12], [2.9375, -2.0625])
    """
    arr = np.asarray(K)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidImageError(f"a digest needs a 2-D fingerprint, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"the fingerprint must be real, got dtype {arr.dtype}; use .astype(np.float32)")
    k = arr.astype(np.float32).ravel()
    if not np.isfinite(k).all():
        raise InvalidImageError("the fingerprint holds NaN or inf values")
    size = k.size
    n = digest_size(arr.shape) if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= size:
        raise ValueError(f"the digest size must be an integer in [1, {size}], got {n!r}")
    centred = k - np.float32(np.mean(k, dtype=np.float64))
    magnitude = np.abs(centred)
    idx = np.arange(size) if n == size else np.argpartition(magnitude, size - n)[size - n:]
    idx = np.sort(idx).astype(np.int32 if size < 2**31 else np.int64)
    values = centred[idx]
    total = float(np.dot(centred.astype(np.float64), centred))
    kept = float(np.dot(values.astype(np.float64), values))
    fraction = min(kept / total, 1.0) if total > 0 else 0.0
    return Digest(idx, values, (int(arr.shape[0]), int(arr.shape[1])), fraction)


@dataclass
class _Group:
    """Digests of one shape, reference-major (``kernels.digest_cpu.gather_correlation``)."""

    members: np.ndarray  # positions of the group's references in the index, (G,)
    indptr: np.ndarray  # member g's entries are indptr[g]:indptr[g + 1], int64 (G + 1,)
    indices: np.ndarray  # flat pixel of each entry, int32 (int64 past 2**31 pixels)
    values: np.ndarray  # float32
    norms: np.ndarray  # ||v|| of each member, float64 (G,)

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.indices.nbytes + self.values.nbytes)


def _sum_squares(values: np.ndarray) -> float:
    """``sum(values**2)`` in float64 (one BLAS dot: a float64 by float32 ``np.dot`` takes NumPy's slow path)."""
    v = values.astype(np.float64)
    return float(v @ v)


def _group(members: list[int], digests: Sequence[Digest]) -> _Group:
    lengths = np.array([digests[j].indices.size for j in members], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    index_dtype = np.result_type(*(digests[j].indices.dtype for j in members))
    indices = np.concatenate([digests[j].indices for j in members]).astype(index_dtype, copy=False)
    values = np.concatenate([digests[j].values for j in members]).astype(np.float32, copy=False)
    norms = np.sqrt([_sum_squares(digests[j].values) for j in members])
    return _Group(np.asarray(members, dtype=np.int64), indptr, indices, values, norms)


class DigestIndex:
    """The digests of many references, grouped by shape, scored against a query all at once.

    Parameters
    ----------
    digests : sequence of Digest
        Reference ``j`` of the index is ``digests[j]``; any mix of shapes.

    Attributes
    ----------
    correlation : ndarray of float64, shape (R,)
        ``r_j`` of every digest (module doc).
    shapes : list of tuple
        The fingerprint shapes present.

    Notes
    -----
    Memory: per stored entry a float32 value and an int32 pixel position, 8 bytes, stored
    reference after reference (CSR), so building is one concatenation per shape and each
    reference is scored by one thread (``kernels.digest_cpu.gather_correlation``).
    """

    def __init__(self, digests: Sequence[Digest]):
        digests = list(digests)
        if not digests:
            raise ValueError("a digest index needs at least one digest")
        self.n_refs = len(digests)
        self.correlation = np.array([d.correlation for d in digests], dtype=np.float64)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for j, d in enumerate(digests):
            by_shape.setdefault(tuple(d.shape), []).append(j)
        self._groups = {shape: _group(members, digests) for shape, members in by_shape.items()}
        self.shapes = list(self._groups)

    def __len__(self) -> int:
        return self.n_refs

    def __repr__(self) -> str:
        return f"DigestIndex({self.n_refs} references, shapes {self.shapes}, {self.nbytes / 2**20:.1f} MiB)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays."""
        return sum(g.nbytes for g in self._groups.values())

    def scores(self, query: np.ndarray, rotations: Sequence[int] = ROTATIONS) -> np.ndarray:
        """Sparse scores ``z`` of an aligned query against every digest, at each rotation.

        Parameters
        ----------
        query : ndarray of float, shape (h, w)
            The query's residual product ``W I`` (float32; any real dtype is converted).
        rotations : sequence of int in {0, 1, 2, 3}
            Rotations ``numpy.rot90(query, k)`` to score; default all four.

        Returns
        -------
        ndarray of float64, shape (R, 4)
            ``z[j, k]`` for rotation k (module doc), N(0, 1) for a non-matching reference; NaN
            where rotation k was not asked for or does not give the reference's shape (a query
            that is aligned with no reference gives all NaN: search it exhaustively).

        Raises
        ------
        InvalidImageError
            The query is not 2-D, is empty or holds NaN or inf.
        """
        return self.scores_many([query], rotations)[0]

    def scores_many(self, queries: Sequence[np.ndarray], rotations: Sequence[int] = ROTATIONS) -> list[np.ndarray]:
        """:meth:`scores` of several queries of one shape (e.g. two residuals of one image) in one pass.

        Every digest entry is read once for each two of them: the query table has 4 columns per
        query (``kernels.digest_cpu._gather_two`` for two). On this 2-core machine one such pass
        costs what two single passes do (benchmarks/RESULTS.md, 2026-12-02 05:10), so attribution
        scores one residual at a time; the shared read pays where memory, not the additions,
        bounds the pass. Returns one (R, 4) array per query, as :meth:`scores`.
        """
        prepared = []
        for query in queries:
            q = np.asarray(query)
            if q.ndim != 2 or q.size == 0:
                raise InvalidImageError(f"the query must be 2-D (h, w), got shape {q.shape}")
            if q.dtype.kind not in "biuf":
                raise TypeError(f"the query must be real, got dtype {q.dtype}; use .astype(np.float32)")
            q = q.astype(np.float32)
            if not np.isfinite(q).all():
                raise InvalidImageError("the query holds NaN or inf values")
            prepared.append(_normalised(q))
        shapes = {c.shape for c, _ in prepared}
        if len(shapes) > 1:
            raise ShapeMismatchError(f"scores_many needs queries of one shape, got {sorted(shapes)}")
        ks = sorted({int(k) % 4 for k in rotations})
        outs = [np.full((self.n_refs, 4), np.nan) for _ in prepared]
        shape = prepared[0][0].shape
        fits = {g: [k for k in ks if (shape[::-1] if k % 2 else shape) == g] for g in self._groups}
        needed = sorted({k for fitting in fits.values() for k in fitting})
        if not needed:
            return outs
        # every query at every rotation needed, pixel-major: one (N, C) table read by every reference
        n_pix = prepared[0][0].size
        columns = np.empty((n_pix, len(needed) * len(prepared)), dtype=np.float32)
        for m, (centred, _) in enumerate(prepared):
            for c, k in enumerate(needed):
                columns[:, m * len(needed) + c] = np.rot90(centred, k).ravel()
        for g, group in self._groups.items():
            fitting = fits[g]
            if not fitting:
                continue
            picks = [m * len(needed) + needed.index(k) for m in range(len(prepared)) for k in fitting]
            cols = columns if len(picks) == columns.shape[1] else columns[:, picks]
            raw = gather_correlation(group.indices, group.indptr, group.values, cols)
            for m, (_, sigma) in enumerate(prepared):
                part = raw[:, m * len(fitting): (m + 1) * len(fitting)]
                denom = sigma * group.norms[:, None]
                z = np.divide(part, denom, out=np.zeros_like(part), where=denom > 0)
                outs[m][np.ix_(group.members, fitting)] = z
        return outs


def _normalised(q: np.ndarray) -> tuple[np.ndarray, float]:
    """``q - mean(q)`` (float32) and the standard deviation of ``q`` (float64 sums), computed once per query."""
    centred = q - np.float32(np.mean(q, dtype=np.float64))
    return centred, math.sqrt(_sum_squares(centred.ravel()) / q.size)


def digest_bound(correlation: np.ndarray | float, threshold: float = DEFAULT_PCE_THRESHOLD, *,
                 margin: float = DEFAULT_MARGIN, pce_ratio: float = PCE_RATIO) -> np.ndarray:
    """The sparse score under which a reference cannot be a match: ``r sqrt(tau / lambda) - m sqrt(1 - r^2)``.

    Parameters
    ----------
    correlation : float or ndarray
        ``r_j`` of each digest, in [0, 1].
    threshold : float
        The lowest PCE any match must reach (the threshold at one position, default 60).
    margin : float
        ``m``: a match exactly at the threshold scores below the bound with probability ``Phi(-m)``.
    pce_ratio : float
        ``lambda_hi``, an upper bound of ``PCE / z_full^2``.

    Returns
    -------
    ndarray of float64
        ``b_j``; -inf where ``r_j == 0`` is impossible to bound (such a digest always passes).
    """
    if not (threshold > 0 and pce_ratio > 0 and margin >= 0):
        raise ValueError("threshold and pce_ratio must be positive and margin non-negative")
    r = np.clip(np.asarray(correlation, dtype=np.float64), 0.0, 1.0)
    bound = r * math.sqrt(threshold / pce_ratio) - margin * np.sqrt(1.0 - r * r)
    return np.where(r > 0, bound, -np.inf)


@dataclass(frozen=True)
class Preselection:
    """Which references (and rotations) the exact PCE must confirm.

    Attributes
    ----------
    candidates : ndarray of int64
        Positions of the references to confirm, ascending.
    pairs : ndarray of bool, shape (R, 4)
        ``pairs[j, k]``: rotation k of reference j is at or above the bound, or j is in the top k.
    bound : ndarray of float64, shape (R,)
        ``b_j`` (:func:`digest_bound`).
    expected_false : float
        Expected number of (non-matching reference, rotation) pairs above the bound,
        ``sum_j sum_k Q(b_j)`` over the scored pairs: the cost of the margin.
    above : ndarray of bool, shape (R, 4)
        ``above[j, k]``: rotation k of reference j was scored and is at or above the bound (the
        pairs that can reach the threshold; ``pairs`` without the ``top_k`` additions).
    """

    candidates: np.ndarray
    pairs: np.ndarray
    bound: np.ndarray
    expected_false: float
    above: np.ndarray


def preselect(z: np.ndarray, correlation: np.ndarray, threshold: float = DEFAULT_PCE_THRESHOLD, *,
              top_k: int = DEFAULT_TOP_K, margin: float = DEFAULT_MARGIN,
              pce_ratio: float = PCE_RATIO) -> Preselection:
    """Candidates for the exact PCE: the ``top_k`` best references and all at or above the bound.

    Parameters
    ----------
    z : ndarray of float64, shape (R, 4)
        :meth:`DigestIndex.scores` (NaN for rotations not scored).
    correlation : ndarray of float64, shape (R,)
        :attr:`DigestIndex.correlation`.
    threshold, margin, pce_ratio
        See :func:`digest_bound`; ``threshold`` is the smallest PCE that any decision accepts.
    top_k : int
        References kept by their best scored rotation, whatever the bound (>= 0).

    Returns
    -------
    Preselection
        References with no scored rotation are never candidates.
    """
    z = np.asarray(z, dtype=np.float64)
    correlation = np.asarray(correlation, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 4 or correlation.shape != (z.shape[0],):
        raise ShapeMismatchError(f"z must be (R, 4) and correlation (R,), got {z.shape} and {correlation.shape}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    bound = digest_bound(correlation, threshold, margin=margin, pce_ratio=pce_ratio)
    scored = ~np.isnan(z)
    above = scored & (np.where(scored, z, -np.inf) >= bound[:, None])
    pairs = above.copy()
    best = np.where(scored, z, -np.inf).max(axis=1)
    order = np.argsort(-best, kind="stable")[: min(int(top_k), z.shape[0])]
    top = order[np.isfinite(best[order])]
    pairs[top] |= scored[top]
    tail = scipy.special.ndtr(-bound)  # P(N(0, 1) >= b_j)
    expected = float(np.sum(np.where(scored, tail[:, None], 0.0)))
    return Preselection(np.flatnonzero(pairs.any(axis=1)).astype(np.int64), pairs, bound, expected, above)
