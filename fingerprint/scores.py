"""Similarity scores of docs/algorithm.md §7: NCC, circular cross-correlation and PCE with crop search.

Everything is computed in float32 (complex64 spectra) with float64 accumulators where a long sum
would otherwise lose digits; every score comes back as a Python ``float``.

Conventions
-----------
Cross-correlation. For a reference ``ref`` of shape (H, W) and a query ``q`` of shape (h, w) with
h <= H and w <= W, both made zero-mean, the query is zero-padded at the top-left to (H, W) and

    C[oy, ox] = sum_{y, x} q(y, x) * ref((y + oy) mod H, (x + ox) mod W),

i.e. ``C = real(IDFT2(DFT2(ref - mean(ref)) * conj(DFT2(pad(q - mean(q))))))``. If ``q`` is the
crop ``ref[oy:oy + h, ox:ox + w]`` the peak of ``C`` is at ``C[oy, ox]``; for equal sizes ``C[0, 0]``
is the aligned (un-normalised) correlation. This is ``tests/naive.py::crosscorr(ref, pad(q))``
(first argument the reference, second the query).

PCE. ``PCE = sign(C[s]) * C[s]**2 / mean(C**2 outside the (2r+1) x (2r+1) neighbourhood of s)``,
the neighbourhood wrapping circularly, with ``s`` the (signed) maximum of ``C`` over the allowed
offsets: (0, 0) only for ``search="aligned"``, every ``0 <= oy <= H - h``, ``0 <= ox <= W - w`` for
``search="crop"`` (a query of the reference's size therefore has one allowed offset either way).

References
----------
.. [1] M. Goljan and J. Fridrich, "Camera identification from cropped and scaled images",
   Proc. SPIE 6819, Security, Forensics, Steganography, and Watermarking of Multimedia Contents X,
   2008. :doi:`10.1117/12.766732`
.. [2] M. Goljan, J. Fridrich and T. Filler, "Large scale test of sensor fingerprint camera
   identification", Proc. SPIE 7254, Media Forensics and Security, 2009. :doi:`10.1117/12.805701`
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft
import scipy.special

from fingerprint.errors import InvalidImageError, ShapeMismatchError
from kernels.spec import PCE_RADIUS, check_search

__all__ = [
    "PCEResult",
    "ReferenceSpectrum",
    "ncc",
    "ncc_matrix",
    "pce",
    "search_threshold",
    "DEFAULT_PCE_THRESHOLD",
    "DEFAULT_RADIUS",
]

DEFAULT_PCE_THRESHOLD = 60.0
"""Camera-match threshold at one position (Goljan, Filler and Fridrich 2009 [2]_)."""

DEFAULT_RADIUS = PCE_RADIUS
"""Half-width of the PCE exclusion neighbourhood: 2*5+1 = 11, the 11x11 of docs/algorithm.md §7.3
(``kernels.spec.PCE_RADIUS``, shared with the GPU twin)."""

# Number of float32 elements summed in one BLAS/einsum call before the partial result is added to
# a float64 accumulator: keeps float32 rounding error near 1e-7 relative at any image size.
_CHUNK = 1 << 16
# Float32 temporaries of ncc_matrix are kept under about this many elements.
_TEMP_ELEMENTS = 1 << 23


# --- input checks ----------------------------------------------------------------------------------
def _as_float32(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array; reject complex, object and empty input."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be a real numeric array, got dtype {arr.dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )
    if arr.size == 0:
        raise InvalidImageError(f"{name} is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_2d_float32(x: np.ndarray, name: str) -> np.ndarray:
    arr = _as_float32(x, name)
    if arr.ndim != 2:
        raise InvalidImageError(f"{name} must be 2-D (H, W), got shape {arr.shape}")
    return arr


def _centered(x: np.ndarray) -> np.ndarray:
    """``x - mean(x)`` of a contiguous float32 array, in float32.

    NumPy sums contiguous float32 pairwise (error about eps * log2(n)), as accurate here as a
    float64 accumulator and three times faster.
    """
    return x - np.float32(np.mean(x))


def _sum_squares(x: np.ndarray) -> float:
    """``sum(x**2)`` of a contiguous float32 array: float32 BLAS per chunk, float64 across chunks."""
    flat = x.reshape(-1)
    total = 0.0
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        total += float(np.dot(part, part))
    return total


# --- NCC -----------------------------------------------------------------------------------------
def ncc(a: np.ndarray, b: np.ndarray) -> float:
    r"""Normalised cross-correlation of two arrays of one shape.

    Parameters
    ----------
    a, b : ndarray of float32 (any real dtype is converted), same shape, any ndim
        Typically two noise residuals, or a residual and a generator fingerprint.

    Returns
    -------
    float
        :math:`\rho = \frac{\sum (a - \bar a)(b - \bar b)}{\|a - \bar a\|\,\|b - \bar b\|}`, in
        [-1, 1], dimensionless. 0.0 (not NaN) when either array is constant.

    Raises
    ------
    ShapeMismatchError
        If ``a.shape != b.shape``.
    TypeError
        If either array is complex or not numeric.
    InvalidImageError
        If the arrays are empty.

    Notes
    -----
    The means use NumPy's pairwise summation; the centred arrays are float32 and the three sums are float32
    BLAS dot products over chunks of 65536 elements added in float64, so the result agrees with a
    float64 computation to about 1e-6 at any size. Same as ``ncc_matrix(a[None], b[None])[0, 0]``.
    Reference twin: ``tests/naive.py::ncc``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> round(ncc(a, 2 * a + 1), 6)
    1.0
    >>> ncc(a, np.ones_like(a))
    0.0
    """
    a_arr = np.asarray(a)
    b_arr = np.asarray(b)
    if a_arr.shape != b_arr.shape:
        raise ShapeMismatchError(f"ncc needs arrays of one shape, got {a_arr.shape} and {b_arr.shape}")
    return float(ncc_matrix(a_arr[None], b_arr[None])[0, 0])


def ncc_matrix(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    r"""NCC of every query against every reference, as one matrix product.

    Parameters
    ----------
    queries : ndarray of float32, shape (Q, ...)
        Q arrays (e.g. residuals of shape (H, W)) stacked along the first axis.
    references : ndarray of float32, shape (R, ...)
        R arrays of the same trailing shape as the queries (e.g. generator fingerprints).

    Returns
    -------
    ndarray of float64, shape (Q, R)
        ``out[i, j] = ncc(queries[i], references[j])``, each in [-1, 1]; 0.0 where either array
        is constant.

    Raises
    ------
    ShapeMismatchError
        If the trailing shapes differ.
    InvalidImageError
        If an input has no leading (stack) axis or is empty.
    TypeError
        If an input is complex or not numeric.

    Notes
    -----
    Each array is flattened to length N and centred once (pairwise-summed means). The Gram matrix
    :math:`G = \tilde Q \tilde R^\top` and the squared norms are computed over column chunks with
    float32 BLAS and accumulated in float64, so no float32 sum runs over more than about 65536
    terms and float32 temporaries stay near 2**23 elements whatever Q, R and N are. The result is
    :math:`G_{ij} / (\|\tilde q_i\| \|\tilde r_j\|)`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> refs = rng.standard_normal((3, 8, 8)).astype(np.float32)
    >>> m = ncc_matrix(refs, refs)
    >>> m.shape, bool(np.allclose(np.diag(m), 1.0))
    ((3, 3), True)
    """
    q_arr = np.asarray(queries)
    r_arr = np.asarray(references)
    for name, arr in (("queries", q_arr), ("references", r_arr)):
        if arr.ndim < 2:
            raise InvalidImageError(f"{name} must have a leading stack axis, shape (n, ...), got {arr.shape}")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}; use .astype(np.float32)")
        if arr.size == 0:
            raise InvalidImageError(f"{name} is empty (shape {arr.shape})")
    if q_arr.shape[1:] != r_arr.shape[1:]:
        raise ShapeMismatchError(
            f"queries and references must share one shape, got {q_arr.shape[1:]} and {r_arr.shape[1:]}"
        )
    nq, nr = q_arr.shape[0], r_arr.shape[0]
    xq = q_arr.reshape(nq, -1)
    xr = r_arr.reshape(nr, -1)
    n = xq.shape[1]
    # Pairwise summation along each contiguous row (float32 in, float64 for integer input).
    mean_q = np.mean(xq, axis=1).astype(np.float32)[:, None]
    mean_r = np.mean(xr, axis=1).astype(np.float32)[:, None]

    chunk = int(min(n, max(1024, min(_CHUNK, _TEMP_ELEMENTS // (nq + nr)))))
    gram = np.zeros((nq, nr), dtype=np.float64)
    ss_q = np.zeros(nq, dtype=np.float64)
    ss_r = np.zeros(nr, dtype=np.float64)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        cq = np.subtract(xq[:, sl], mean_q, dtype=np.float32)
        cr = np.subtract(xr[:, sl], mean_r, dtype=np.float32)
        ss_q += np.einsum("ij,ij->i", cq, cq)
        ss_r += np.einsum("ij,ij->i", cr, cr)
        gram += cq @ cr.T

    denom = np.sqrt(ss_q)[:, None] * np.sqrt(ss_r)[None, :]
    out = np.zeros((nq, nr), dtype=np.float64)
    np.divide(gram, denom, out=out, where=denom > 0)
    return np.clip(out, -1.0, 1.0, out=out)


# --- PCE -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PCEResult:
    """Outcome of one PCE computation.

    Attributes
    ----------
    pce : float
        Peak-to-correlation energy, dimensionless, signed like the peak.
    offset : tuple of int
        ``(oy, ox)`` where the peak was found: the row and column of the reference at which the
        query's top-left pixel sits; ``(0, 0)`` for aligned scoring.
    peak : float
        ``C[oy, ox]``, the un-normalised correlation at the peak (units of query x reference).
    n_positions : int
        Number of offsets searched (1 when aligned, ``(H - h + 1) * (W - w + 1)`` for a crop).
        Pass it, times the number of rotations tried, to :func:`search_threshold` to keep the
        false-alarm rate of a decision fixed.
    """

    pce: float
    offset: tuple[int, int]
    peak: float
    n_positions: int


class ReferenceSpectrum:
    r"""A reference array with its DFT cached, for repeated cross-correlation and PCE.

    Parameters
    ----------
    ref : ndarray of float32, shape (H, W)
        The reference, e.g. a camera fingerprint ``K`` or the expected residual ``I * K``.
        It is converted to float32 and its mean is removed before the transform.

    Attributes
    ----------
    shape : tuple of int
        ``(H, W)``.
    spectrum : ndarray of complex64, shape (H, W // 2 + 1)
        ``rfft2(ref - mean(ref))`` (read-only).

    Raises
    ------
    InvalidImageError
        If ``ref`` is not 2-D or is empty.
    TypeError
        If ``ref`` is complex or not numeric.

    Notes
    -----
    :meth:`cross_correlation` returns, for a query ``q`` of shape (h, w), h <= H, w <= W,

    .. math:: C[o_y, o_x] = \sum_{y,x} \tilde q(y, x)\,\tilde r((y + o_y) \bmod H, (x + o_x) \bmod W)

    with :math:`\tilde q = q - \bar q` zero-padded at the top-left to (H, W) and
    :math:`\tilde r = r - \bar r`; a crop of the reference taken at ``(oy, ox)`` peaks at
    ``C[oy, ox]``. It equals ``tests/naive.py::crosscorr(ref, pad(q - mean(q)))``. Costs one rfft2
    of the padded query and one irfft2 (scipy.fft, all cores, complex64).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> k = rng.standard_normal((64, 80)).astype(np.float32)
    >>> spec = ReferenceSpectrum(k)
    >>> res = spec.pce(k[10:42, 20:60], search="crop")
    >>> res.offset, res.n_positions
    ((10, 20), 1353)
    """

    def __init__(self, ref: np.ndarray) -> None:
        arr = _as_2d_float32(ref, "ref")
        self.shape: tuple[int, int] = (int(arr.shape[0]), int(arr.shape[1]))
        spectrum = scipy.fft.rfft2(_centered(arr), workers=-1)
        spectrum.flags.writeable = False
        self.spectrum: np.ndarray = spectrum

    @classmethod
    def from_spectrum(cls, shape: tuple[int, int], spectrum: np.ndarray) -> "ReferenceSpectrum":
        """A reference around an already computed ``rfft2(ref - mean(ref))`` (e.g. from a cache): no FFT.

        Parameters
        ----------
        shape : (int, int)
            ``(H, W)`` of the reference.
        spectrum : ndarray of complex64, shape (H, W // 2 + 1)
            Kept as it is (not copied) and made read-only.

        Raises ``ShapeMismatchError`` for another shape, ``TypeError`` for another dtype.
        """
        big_h, big_w = (int(shape[0]), int(shape[1]))
        if big_h < 1 or big_w < 1:
            raise InvalidImageError(f"a reference shape must be positive, got {tuple(shape)}")
        if not isinstance(spectrum, np.ndarray) or spectrum.dtype != np.complex64:
            raise TypeError(f"the spectrum must be a complex64 array, got {getattr(spectrum, 'dtype', type(spectrum))}")
        if spectrum.shape != (big_h, big_w // 2 + 1):
            raise ShapeMismatchError(f"a spectrum of a {big_h}x{big_w} reference has shape "
                                     f"{(big_h, big_w // 2 + 1)}, got {spectrum.shape}")
        ref = cls.__new__(cls)
        spectrum.flags.writeable = False
        ref.shape = (big_h, big_w)
        ref.spectrum = spectrum
        return ref

    def __repr__(self) -> str:
        return f"ReferenceSpectrum(shape={self.shape})"

    def _check_query(self, query: np.ndarray, *, equal: bool) -> np.ndarray:
        q = _as_2d_float32(query, "query")
        h, w = q.shape
        big_h, big_w = self.shape
        if equal and (h, w) != self.shape:
            raise ShapeMismatchError(
                f"aligned scoring needs the query's shape {q.shape} to equal the reference's {self.shape}; "
                'use search="crop" for a smaller query'
            )
        if h > big_h or w > big_w:
            raise ShapeMismatchError(f"query of shape {q.shape} is larger than the reference of shape {self.shape}")
        return q

    def query_spectrum(self, query: np.ndarray) -> np.ndarray:
        """``conj(DFT2(pad(q - mean(q))))``, complex64 of shape (H, W // 2 + 1): the query's half of
        :meth:`cross_correlation`, reusable against every reference of this shape (:meth:`correlate`).
        Two 1-D passes: the first transforms only the query's h rows (``n=H`` pads the zero rows)."""
        big_h, big_w = self.shape
        spec_q = scipy.fft.rfft(_centered(self._check_query(query, equal=False)), n=big_w, axis=1, workers=-1)
        spec_q = scipy.fft.fft(spec_q, n=big_h, axis=0, workers=-1, overwrite_x=True)
        return np.conjugate(spec_q, out=spec_q)

    def correlate(self, spec_q: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
        """:meth:`cross_correlation` from a :meth:`query_spectrum` (``overwrite``: use it as scratch).
        The split inverse avoids the copy ``scipy.fft.irfft2`` makes (about 1.5x faster at 6 MP)."""
        prod = np.multiply(spec_q, self.spectrum, out=spec_q if overwrite else None)
        prod = scipy.fft.ifft(prod, axis=0, workers=-1, overwrite_x=True)
        return scipy.fft.irfft(prod, n=self.shape[1], axis=1, workers=-1, overwrite_x=True)

    def cross_correlation(self, query: np.ndarray) -> np.ndarray:
        """Circular cross-correlation of a (possibly smaller) query with the reference.

        Parameters
        ----------
        query : ndarray of float32, shape (h, w), h <= H, w <= W
            Placed at the top-left and zero-padded to (H, W) after its mean is removed.

        Returns
        -------
        ndarray of float32, shape (H, W)
            ``C[oy, ox] = sum_x q~(x) * ref~(x + o)`` (indices modulo (H, W)), units of
            query x reference; see the class Notes.

        Raises
        ------
        ShapeMismatchError
            If the query is larger than the reference in either dimension.
        """
        return self.correlate(self.query_spectrum(query), overwrite=True)

    def pce(
        self,
        query: np.ndarray,
        *,
        search: Literal["aligned", "crop"] = "aligned",
        radius: int = DEFAULT_RADIUS,
    ) -> PCEResult:
        r"""Peak-to-correlation energy of a query against the reference.

        Parameters
        ----------
        query : ndarray of float32, shape (H, W) for ``"aligned"``, (h, w) <= (H, W) for ``"crop"``
            Typically a noise residual ``W`` of the query image.
        search : {"aligned", "crop"}, optional
            ``"aligned"``: the peak is taken at offset (0, 0) only. ``"crop"``: the peak is the
            maximum of ``C`` over every offset that keeps the query inside the reference,
            ``0 <= oy <= H - h`` and ``0 <= ox <= W - w`` (no wrap-around); for a query of the
            reference's size that is (0, 0) only.
        radius : int, optional
            The (2 * radius + 1)^2 neighbourhood of the peak is left out of the energy; default 5
            (11 x 11).

        Returns
        -------
        PCEResult
            ``pce``, ``offset`` (oy, ox), ``peak`` = C[oy, ox] and ``n_positions`` searched.

        Raises
        ------
        ShapeMismatchError
            If the query is larger than the reference, or differs from it for ``"aligned"``.
        ValueError
            If ``search`` is unknown or ``radius`` is negative.
        InvalidImageError
            If the reference is so small that nothing lies outside the neighbourhood.

        Notes
        -----
        .. math:: \mathrm{PCE} = \frac{\operatorname{sign}(C[s^*])\, C[s^*]^2}
                  {\frac{1}{N - |\mathcal N|}\left(\sum C^2 - \sum_{\mathcal N(s^*)} C^2\right)}

        where :math:`N = HW` and :math:`\mathcal N(s^*)` is the neighbourhood of the peak taken
        circularly (each pixel counted once if it wraps onto itself). The total energy is one
        chunked float32 BLAS sum added in float64, so no boolean mask is built. When the energy
        outside the neighbourhood is zero the PCE is 0.0 if the peak is 0, else +-inf.
        Reference twin: ``tests/naive.py::pce_from_cc``.
        """
        mode = check_search(search)
        radius = _check_radius(radius)
        q = self._check_query(query, equal=(mode == "aligned"))
        return _pce_of_cc(self.correlate(self.query_spectrum(q), overwrite=True), q.shape, mode, radius)


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    return int(radius)


def _neighbourhood_energy(c: np.ndarray, peak: tuple[int, int], radius: int) -> tuple[float, int]:
    """Sum of ``c**2`` (float64) over the circular (2r+1)^2 neighbourhood of ``peak``, and its size.

    Indices that wrap onto each other (an axis shorter than 2r+1) are counted once.
    """
    big_h, big_w = c.shape
    rows = np.unique(np.arange(peak[0] - radius, peak[0] + radius + 1) % big_h)
    cols = np.unique(np.arange(peak[1] - radius, peak[1] + radius + 1) % big_w)
    block = c[np.ix_(rows, cols)].astype(np.float64)
    return float(np.sum(block * block)), int(rows.size * cols.size)


def _pce_of_cc(c: np.ndarray, query_shape: tuple[int, int], mode: str, radius: int) -> PCEResult:
    """PCE of a correlation surface ``c`` (H, W) for a query of ``query_shape``; inputs checked."""
    big_h, big_w = c.shape
    if mode == "aligned":
        peak = (0, 0)
        n_positions = 1
    else:
        ny = big_h - query_shape[0] + 1
        nx = big_w - query_shape[1] + 1
        n_positions = ny * nx
        if n_positions == 1:
            peak = (0, 0)
        else:
            allowed = c if (ny, nx) == c.shape else c[:ny, :nx]
            flat = int(np.argmax(allowed))
            peak = (flat // nx, flat % nx)
    near_energy, near_count = _neighbourhood_energy(c, peak, radius)
    n_far = c.size - near_count
    if n_far <= 0:
        raise InvalidImageError(
            f"a correlation surface of shape {c.shape} has nothing outside the "
            f"{2 * radius + 1}x{2 * radius + 1} neighbourhood of its peak; use a smaller radius"
        )
    far_energy = max(_sum_squares(c) - near_energy, 0.0)
    value = float(c[peak])
    if far_energy > 0.0:
        score = math.copysign(value * value, value) / (far_energy / n_far)
    else:
        score = 0.0 if value == 0.0 else math.copysign(math.inf, value)
    return PCEResult(pce=float(score), offset=(int(peak[0]), int(peak[1])), peak=value, n_positions=int(n_positions))


def pce(
    a: np.ndarray,
    b: np.ndarray,
    *,
    search: Literal["aligned", "crop"] = "aligned",
    radius: int = DEFAULT_RADIUS,
) -> PCEResult:
    """PCE of a query ``a`` against a reference ``b`` (convenience; builds a :class:`ReferenceSpectrum`).

    Parameters
    ----------
    a : ndarray of float32, shape (h, w)
        The query (e.g. a residual ``W``); (h, w) == (H, W) for ``"aligned"``, <= for ``"crop"``.
    b : ndarray of float32, shape (H, W)
        The reference (e.g. ``I * K``).
    search : {"aligned", "crop"}, optional
        See :meth:`ReferenceSpectrum.pce`.
    radius : int, optional
        Exclusion half-width; default 5 (11 x 11 neighbourhood).

    Returns
    -------
    PCEResult

    Raises
    ------
    ShapeMismatchError
        If ``a`` does not fit ``b`` as ``search`` requires.

    Notes
    -----
    To score many queries against one reference, build the ``ReferenceSpectrum`` once instead.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> k = rng.standard_normal((64, 64)).astype(np.float32)
    >>> pce(k + rng.standard_normal((64, 64)).astype(np.float32), k).pce > 60
    True
    """
    mode = check_search(search)
    radius = _check_radius(radius)
    return ReferenceSpectrum(b).pce(a, search=mode, radius=radius)


# --- thresholds under search ---------------------------------------------------------------------
def search_threshold(base: float = DEFAULT_PCE_THRESHOLD, n_positions: int = 1) -> float:
    r"""PCE threshold for a search over ``n_positions`` with the false-alarm rate of ``base`` at one.

    Parameters
    ----------
    base : float, optional
        Threshold at a single position (default 60, Goljan, Filler and Fridrich 2009 [2]_); > 0.
    n_positions : int, optional
        Number of positions searched: shifts times rotations (e.g. ``PCEResult.n_positions * 4``
        for the four rotations); >= 1.

    Returns
    -------
    float
        :math:`\tau_n` with :math:`n\,P(\chi^2_1 > \tau_n) = P(\chi^2_1 > \tau_0)`, i.e.
        :math:`n\,\operatorname{erfc}(\sqrt{\tau_n/2}) = \operatorname{erfc}(\sqrt{\tau_0/2})`;
        equals ``base`` for ``n_positions == 1`` and grows like :math:`2\ln n`.

    Raises
    ------
    ValueError
        If ``base <= 0`` or ``n_positions < 1``.

    Notes
    -----
    Under the usual null model the normalised correlation at one position of a non-matching pair is
    a standard normal variable, so its PCE is :math:`\chi^2_1`: :math:`P(\mathrm{PCE} > \tau) =
    \operatorname{erfc}(\sqrt{\tau/2}) = 2\Phi(-\sqrt\tau)`. The best of ``n`` positions exceeds
    :math:`\tau` with probability at most :math:`n\,P(\chi^2_1 > \tau)` (union bound; nearly exact at
    these rates), which is set equal to the one-position rate [1]_. The computation stays in log
    space (``scipy.special.log_ndtr`` and its inverse ``ndtri_exp``), so it neither underflows nor
    loses precision for rates far below 1e-300:

    .. math:: \tau_n = \left(\Phi^{-1}\!\left(\exp(\ln\Phi(-\sqrt{\tau_0}) - \ln n)\right)\right)^2

    The signed PCE exceeds :math:`\tau > 0` only for positive peaks; a one-sided test halves both
    sides of the equation, which leaves :math:`\tau_n` unchanged.

    Examples
    --------
    >>> search_threshold(60.0, 1)
    60.0
    >>> round(search_threshold(60.0, 4), 2)
    62.73
    """
    base = float(base)
    if not (base > 0.0 and math.isfinite(base)):
        raise ValueError(f"base must be a positive finite threshold, got {base!r}")
    if isinstance(n_positions, bool) or not n_positions >= 1:
        raise ValueError(f"n_positions must be >= 1, got {n_positions!r}")
    if n_positions == 1:
        return base
    log_tail = scipy.special.log_ndtr(-math.sqrt(base)) - math.log(n_positions)
    z = float(scipy.special.ndtri_exp(log_tail))
    return z * z
