"""Tamper localisation: where in a camera photo is the camera's PRNU missing?

For a query image whose camera fingerprint ``K`` is known (the photo matched it), the residual
``W`` (docs/algorithm.md §4, sigma 2) of an authentic region correlates with ``X = I K`` (``I`` the
gray image, saturated pixels zeroed); a region pasted from another camera, or copied from
elsewhere in the same photo, does not. After Chen, Fridrich, Goljan and Lukas (2008):

1. ``rho(b) = NCC(W_b, X_b)`` over every ``w x w`` window ``b`` of a grid with stride ``s``
   (box sums from integral images). Saturated pixels (any channel >= 250) carry no PRNU and are
   zeroed in ``X``.
2. The correlation predicted from the window's content if it is authentic. For ``W = a X + N``
   with noise ``N`` independent of ``X``, ``rho = a q`` with ``q = std(X_b) / std(W_b)``: ``q``
   carries the window's intensity (``X = I K``), its saturation (zeroed pixels) and its texture
   (content leaking into ``W`` raises ``std(W_b)``). The denoiser also passes less of a
   multiplicative pattern in some content than in other; that attenuation ``g(b)`` is measured
   on the image itself by adding a known white pattern ``I P`` (std ``INJECTED_STD``) and
   regressing the change of the residual on it window by window. Two one-parameter predictors,
   ``rho_hat = a q`` and ``rho_hat = a g q``, are fitted and the one closer to the data (smaller
   median of ``|rho - rho_hat| / sigma0`` over all windows) is kept. The gain ``a`` is fitted on the query
   itself, so nothing beyond the fingerprint is needed: authentic windows scatter as
   ``rho ~ N(a x, (c sigma0)^2)`` (``c >= 1`` absorbs the predictor's error) and tampering only
   lowers ``rho``, so ``c`` is measured on the windows above the fit and windows far below it are
   left out of the next least-squares fit of ``a`` (one-sided iterative trimming). This needs most
   of the image to be authentic: a forgery covering about half of the photo or more is missed.
3. ``sigma0(b)``, the spread of ``rho`` without this PRNU, is measured on the image: the RMS over
   ``N_NULL`` misaligned (circularly shifted) copies of ``K`` of each window's correlation,
   smoothed over 5 x 5 neighbouring windows. Textured windows have a larger ``sigma0``.
4. One-sided test per window at false-alarm rate ``alpha``: ``z = (rho - rho_hat) / (c sigma0)``
   is N(0, 1) for an authentic window, so ``z < -z_alpha`` (``z_alpha = Phi^-1(1 - alpha)``)
   flags it with probability ``alpha``. A window is *decidable* only where losing its PRNU
   entirely would be flagged at least half of the time (``rho_hat >= z_alpha c sigma0``): where
   the PRNU cannot show (dark, saturated or strongly textured areas) its absence is not
   evidence and nothing is flagged.
5. Per pixel: a pixel takes the decision of the window centred nearest to it and is marked
   tampered when that window is flagged, decidable and ``rho < rho_hat / 2`` (more than half of
   the window lacks the PRNU, which puts the mask's edge where the window is half over the edge
   of a pasted block). Flagged regions smaller than ``min_area`` pixels (``(w / 2)^2`` by default,
   counted as connected windows of the grid) are dropped: a lone flagged window is not a finding.

Predictors with more freedom (``q`` times a polynomial in intensity, texture and ``g``) fitted
on the query predict better inside authentic content but also learn to predict a low
correlation for the pasted content itself, so they find less: measured on Dresden forgeries in benchmarks/RESULTS.md ("Tamper localisation",
``benchmarks/eval_localize.py``), with the accuracy of this default.

References
----------
.. [1] M. Chen, J. Fridrich, M. Goljan, J. Lukas, "Determining image origin and integrity using
   sensor noise", IEEE TIFS 3(1), 2008. doi:10.1109/TIFS.2007.916285
.. [2] P. Korus, J. Huang, "Multi-scale analysis strategies in PRNU-based tampering localization",
   IEEE TIFS 12(4), 2017. doi:10.1109/TIFS.2016.2636089
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, special

from fingerprint.attribution import gray_image
from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.residual import extract_residual
from kernels.spec import QUERY_SIGMA, value_scale

__all__ = ["DEFAULT_ALPHA", "DEFAULT_WINDOW", "Localization", "localize"]

DEFAULT_WINDOW = 256  # window side in pixels for photos of 1024 px and more (Chen et al. 2008 use 128)
DEFAULT_ALPHA = 0.01  # false-alarm rate of the one-sided test per window (and so per pixel)
SATURATED = 250.0  # a pixel with any channel at or above this (0-255 scale) carries no PRNU
N_NULL = 6  # misaligned fingerprints measuring the spread of rho without this PRNU
NULL_SMOOTHING = 5  # the null spread is averaged over this many windows in each direction
FIT_ITERATIONS = 30
TRIM = 2.5  # windows this many scatter units below the fit are left out of the next fit
INJECTED_STD = 0.01  # std of the multiplicative white pattern that measures the denoiser's attenuation
PREDICTORS = ("q", "gq")  # rho_hat = a q, or a g q (g: measured attenuation); the better fit is kept


@dataclass
class Localization:
    """Result of :func:`localize`, in the query's own orientation.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W)
        True where the fingerprint is absent: tampered.
    correlation : ndarray of float32, shape (H, W)
        ``rho`` of the window centred nearest to each pixel.
    predicted : ndarray of float32, shape (H, W)
        ``rho_hat``, the correlation predicted for that window if authentic.
    z : ndarray of float32, shape (H, W)
        ``(rho - rho_hat) / (c sigma0)``: about N(0, 1) where authentic, strongly negative where not.
    decidable : ndarray of bool, shape (H, W)
        Where a missing PRNU would be detected at least half of the time.
    window, stride : int
        Window side and grid step, pixels.
    alpha : float
        False-alarm rate of the test per window.
    z_threshold : float
        ``Phi^-1(1 - alpha)``; a window is flagged when ``z < -z_threshold``.
    predictor : str
        ``"q"`` (``rho_hat = a q``) or ``"gq"`` (``rho_hat = a g q``), the one that fitted better.
    gain : float
        ``a`` of the predictor.
    inflation : float
        ``c``: spread of authentic windows about the prediction, in units of ``sigma0``.
    null_std : float
        Median ``sigma0`` over the windows (the correlation's spread without this PRNU).
    excluded : float
        Share of windows the robust fit left out (far below the prediction).
    n_windows : int
        Windows scored.
    min_area : int
        Smallest flagged region kept, pixels.
    """

    mask: np.ndarray
    correlation: np.ndarray
    predicted: np.ndarray
    z: np.ndarray
    decidable: np.ndarray
    window: int
    stride: int
    alpha: float
    z_threshold: float
    predictor: str
    gain: float
    inflation: float
    null_std: float
    excluded: float
    n_windows: int
    min_area: int

    @property
    def tampered_fraction(self) -> float:
        """Fraction of the image's pixels marked tampered."""
        return float(self.mask.mean())

    @property
    def decidable_fraction(self) -> float:
        """Fraction of the image's pixels where the test has power."""
        return float(self.decidable.mean())

    @property
    def fraction_present(self) -> np.ndarray:
        """``rho / rho_hat`` (0 where ``rho_hat <= 0``): about 1 where authentic, 0 where absent."""
        return np.divide(self.correlation, self.predicted, out=np.zeros_like(self.correlation),
                         where=self.predicted > 0)

    def as_dict(self) -> dict[str, Any]:
        """Summary without the per-pixel arrays (JSON-ready)."""
        return {"shape": list(self.mask.shape), "tampered_fraction": self.tampered_fraction,
                "decidable_fraction": self.decidable_fraction, "window": self.window, "stride": self.stride,
                "alpha": self.alpha, "z_threshold": self.z_threshold, "predictor": self.predictor, "gain": self.gain,
                "inflation": self.inflation, "null_std": self.null_std, "excluded": self.excluded,
                "n_windows": self.n_windows, "min_area": self.min_area}


def _integral(a: np.ndarray) -> np.ndarray:
    """Integral image ``c[y, x] = sum(a[:y, :x])``, float64, shape (H + 1, W + 1)."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.float64)
    np.cumsum(a, axis=0, dtype=np.float64, out=c[1:, 1:])
    np.cumsum(c[1:, 1:], axis=1, out=c[1:, 1:])
    return c


def _box_sums(a: np.ndarray, ys: np.ndarray, xs: np.ndarray, w: int) -> np.ndarray:
    """``sum(a[y:y + w, x:x + w])`` for every top-left corner (y, x) of the grid ys x xs (float64)."""
    c = _integral(a)
    return c[np.ix_(ys + w, xs + w)] - c[np.ix_(ys, xs + w)] - c[np.ix_(ys + w, xs)] + c[np.ix_(ys, xs)]


class _Windows:
    """Box statistics of the residual ``W`` on a grid of ``w x w`` windows (sums, centred energy)."""

    def __init__(self, W: np.ndarray, ys: np.ndarray, xs: np.ndarray, w: int):
        self.W, self.ys, self.xs, self.w, self.n = W, ys, xs, w, float(w * w)
        self.sw = _box_sums(W, ys, xs, w)
        self.vw = np.maximum(_box_sums(W * W, ys, xs, w) - self.sw ** 2 / self.n, 0.0)

    def ncc(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per window: ``NCC(W_b, X_b)`` and ``q = std(X_b) / std(W_b)`` (float64 grids)."""
        sx = _box_sums(X, self.ys, self.xs, self.w)
        vx = np.maximum(_box_sums(X * X, self.ys, self.xs, self.w) - sx * sx / self.n, 0.0)
        cov = _box_sums(self.W * X, self.ys, self.xs, self.w) - self.sw * sx / self.n
        denom = np.sqrt(self.vw * vx)
        rho = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
        q = np.sqrt(np.divide(vx, self.vw, out=np.zeros_like(vx), where=self.vw > 0))
        return rho, q


def _null_spread(win: _Windows, I: np.ndarray, K: np.ndarray, unsat: np.ndarray) -> np.ndarray:
    """``sigma0`` per window: RMS of ``rho`` against ``N_NULL`` circularly shifted copies of ``K``."""
    H, Wd = K.shape
    acc = np.zeros((win.ys.size, win.xs.size))
    for k in range(N_NULL):  # shifts far from 0 and from each other (no PRNU left in common)
        shift = ((H // 3 + 97 * k + 31) % H, (Wd // 2 + 151 * k + 17) % Wd)
        rho0, _ = win.ncc(I * np.roll(K, shift, axis=(0, 1)) * unsat)
        acc += rho0 * rho0
    s0 = np.sqrt(ndimage.uniform_filter(acc / N_NULL, NULL_SMOOTHING, mode="nearest"))
    return np.maximum(s0, 1e-6)


def _attenuation(img: np.ndarray, W: np.ndarray, win: _Windows, I: np.ndarray, sigma: float, levels: int) -> np.ndarray:
    """``g`` per window: the share of an added pattern ``I P`` that reaches the residual.

    ``P`` is white Gaussian noise of std ``INJECTED_STD`` (fixed seed); the image times
    ``1 + P`` (float, [0, 255] scale) gives residual ``W'``, and ``g = cov(W' - W, I P) / var(I P)``
    over each window, the local linear response of the residual to a multiplicative pattern.
    """
    P = np.random.default_rng(20080101).standard_normal(W.shape).astype(np.float32) * np.float32(INJECTED_STD)
    x = img.astype(np.float32) * np.float32(value_scale(img.dtype))
    x *= (1.0 + P)[..., None] if x.ndim == 3 else (1.0 + P)
    np.clip(x, 0.0, 255.0, out=x)
    dW = extract_residual(x, sigma=sigma, levels=levels).astype(np.float64) - W
    XP = I * P
    n = win.n
    sd, sp = _box_sums(dW, win.ys, win.xs, win.w), _box_sums(XP, win.ys, win.xs, win.w)
    cov = _box_sums(dW * XP, win.ys, win.xs, win.w) - sd * sp / n
    var = _box_sums(XP * XP, win.ys, win.xs, win.w) - sp * sp / n
    return np.clip(np.divide(cov, var, out=np.zeros_like(cov), where=var > 0), 0.0, None)


def _fit_gain(rho: np.ndarray, x: np.ndarray, s0: np.ndarray) -> tuple[float, float, float]:
    """One-sided robust fit of ``rho ~ a x`` with scatter ``c s0``; returns ``(a, c, excluded)``.

    Tampering only lowers ``rho`` (partly covered windows by any fraction), so the spread ``c`` is
    taken from the windows above the fit (``c^2`` = mean of ``r^2`` over ``r > 0``, ``r = (rho -
    a x) / s0``: exact for a symmetric scatter, at least 1) and the windows more than
    ``TRIM`` ``c`` below it are left out of the next weighted least-squares fit of ``a``
    (weights ``1 / s0^2``). ``excluded`` is the share of windows left out at the end.
    """
    y, xx, s = rho.ravel(), x.ravel(), s0.ravel()
    wx, wy = xx / s ** 2, y / s ** 2
    keep = np.ones(y.shape, dtype=bool)
    a, c = float(np.sum(wx * y) / max(np.sum(wx * xx), 1e-300)), 1.0
    for _ in range(FIT_ITERATIONS):
        r = (y - a * xx) / s
        above = r[keep & (r > 0)]
        c = max(1.0, float(np.sqrt(np.mean(above ** 2)))) if above.size else 1.0
        new = r > -TRIM * c
        a = float(np.sum(wx[new] * y[new]) / max(np.sum(wx[new] * xx[new]), 1e-300))
        if np.array_equal(new, keep):
            break
        keep = new
    return a, c, float(1.0 - keep.mean())


def _to_pixels(grid: np.ndarray, shape: tuple[int, int], w: int, s: int) -> np.ndarray:
    """Nearest-window-centre upsampling of a grid of windows (top-left corners at 0, s, 2s, ...)."""
    iy = np.clip(np.rint((np.arange(shape[0]) - w / 2 + 0.5) / s).astype(int), 0, grid.shape[0] - 1)
    ix = np.clip(np.rint((np.arange(shape[1]) - w / 2 + 0.5) / s).astype(int), 0, grid.shape[1] - 1)
    return grid[np.ix_(iy, ix)]


def _drop_small(flagged: np.ndarray, min_windows: int) -> np.ndarray:
    """Drop connected groups of fewer than ``min_windows`` flagged windows (on the grid, so that a
    lone window at a border, whose nearest pixels reach to the image edge, counts as one)."""
    if min_windows <= 1 or not flagged.any():
        return flagged
    labels, n = ndimage.label(flagged)
    small = np.bincount(labels.ravel(), minlength=n + 1) < min_windows
    small[0] = False
    flagged = flagged.copy()
    flagged[small[labels]] = False
    return flagged


def default_window(shape: tuple[int, ...]) -> int:
    """Window side for an image: ``DEFAULT_WINDOW`` from 1024 px up, a quarter of the shorter side
    (multiple of 16, at least 32) below."""
    side = min(shape[:2])
    return DEFAULT_WINDOW if side >= 4 * DEFAULT_WINDOW else max(32, side // 4 // 16 * 16)


def _check(image, fingerprint, offset, rotation, window, stride, alpha):
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise InvalidImageError(f"image: expected an array of shape (H, W) or (H, W, 3), got {np.shape(image)}")
    K = np.asarray(fingerprint, dtype=np.float32)
    if K.ndim != 2:
        raise ShapeMismatchError(f"fingerprint: expected a camera fingerprint of shape (H, W), got {K.shape}")
    if int(rotation) % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    k = (int(rotation) // 90) % 4
    h, w = image.shape[:2] if k % 2 == 0 else image.shape[1::-1]
    oy, ox = (int(v) for v in offset)
    if oy < 0 or ox < 0 or oy + h > K.shape[0] or ox + w > K.shape[1]:
        raise ShapeMismatchError(
            f"the query ({h}x{w} after rotating by {90 * k} degrees) at offset ({oy}, {ox}) does not fit in "
            f"the {K.shape[0]}x{K.shape[1]} fingerprint")
    window = default_window((h, w)) if window is None else window
    if int(window) != window or window < 16:
        raise ValueError(f"window must be an integer of at least 16 pixels, got {window}")
    if min(h, w) < window:
        raise InvalidImageError(f"image: {h}x{w} pixels is smaller than one {window}x{window} window")
    step = int(stride) if stride else max(int(window) // 8, 1)
    return K[oy:oy + h, ox:ox + w], k, int(window), step


def localize(image: np.ndarray, fingerprint: np.ndarray, *, offset: tuple[int, int] = (0, 0), rotation: int = 0,
             window: int | None = None, stride: int | None = None, alpha: float = DEFAULT_ALPHA,
             min_area: int | None = None, sigma: float = QUERY_SIGMA, levels: int = 4) -> Localization:
    """Per-pixel map of where a camera's fingerprint is absent from a photo, and a tamper mask.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, 3)
        The questioned photo, as stored.
    fingerprint : ndarray of float32, shape (Hk, Wk)
        The camera fingerprint ``K`` the photo was attributed to.
    offset : (int, int), optional
        Where the (rotated) query's top-left pixel sits in ``K``: ``ReferenceScore.offset`` of the
        attribution (``(0, 0)`` for a full-size photo).
    rotation : int, optional
        Degrees the query was rotated by (``np.rot90`` steps) to match ``K``:
        ``ReferenceScore.rotation``. The results come back in the query's own orientation.
    window : int, optional
        Window side ``w`` in pixels (default :func:`default_window`: 256 from 1024 px up); a larger
        window detects weaker fingerprints, a smaller one resolves smaller forgeries.
    stride : int, optional
        Grid step (default ``window // 8``).
    alpha : float, optional
        False-alarm rate of the one-sided test per window (default 0.01).
    min_area : int, optional
        Flagged regions smaller than this many pixels are dropped (default ``(window // 2)**2``),
        counted on the grid as ``min_area / stride**2`` connected windows.
    sigma, levels : float, int
        Residual parameters (as for attribution: sigma 2, 4 levels).

    Returns
    -------
    Localization
        The mask, the maps and the fitted model (see there).

    Raises
    ------
    ShapeMismatchError
        The query does not fit in the fingerprint at ``offset`` and ``rotation``.
    InvalidImageError
        Not an image array, or smaller than one window.
    ValueError
        ``rotation`` not a multiple of 90, ``alpha`` outside (0, 0.5), ``window`` below 16.

    Notes
    -----
    The module docstring gives the model. For a straight edge of a pasted block the mask's edge
    lies where the window is half over the block, so blocks from about the window size up are
    outlined; smaller ones lose their corners or vanish. Cost: two residuals and about
    ``9 + 3 N_NULL`` integral images of the image size.

    References
    ----------
    .. [1] M. Chen, J. Fridrich, M. Goljan, J. Lukas, "Determining image origin and integrity using
       sensor noise", IEEE TIFS 3(1), 2008. doi:10.1109/TIFS.2007.916285

    Examples
    --------
    >>> import numpy as np
    >>> from fingerprint.synthetic import make_camera
    >>> from fingerprint.build import build_fingerprint
    >>> cam = make_camera("c", 5, shape=(256, 256), prnu_std=0.02)
    >>> K = build_fingerprint(list(cam.images(8, seed=1, flat=True)))
    >>> res = localize(next(cam.images(1, seed=2)), K)
    >>> res.mask.shape, res.mask.dtype, res.window
    ((256, 256), dtype('bool'), 64)
    """
    Kc, k, w, step = _check(image, fingerprint, offset, rotation, window, stride, alpha)
    img = np.ascontiguousarray(np.rot90(image, k))
    W = extract_residual(img, sigma=sigma, levels=levels).astype(np.float64)
    I = gray_image(img).astype(np.float64)
    planes = img if img.ndim == 3 else img[..., None]
    unsat = (planes.max(axis=2).astype(np.float64) * value_scale(img.dtype) < SATURATED).astype(np.float64)
    H, Wd = W.shape
    ys, xs = np.arange(0, H - w + 1, step), np.arange(0, Wd - w + 1, step)
    win = _Windows(W, ys, xs, w)
    rho, q = win.ncc(I * Kc * unsat)
    s0 = _null_spread(win, I, Kc, unsat)
    g = _attenuation(img, W, win, I, sigma, levels)
    fits = {name: (x, *_fit_gain(rho, x, s0)) for name, x in (("q", q), ("gq", g * q))}
    # keep the predictor closer to the data: median |rho - a x| / sigma0 over every window (a
    # symmetric measure; the trimmed scatter c alone would favour a fit that left many windows out)
    predictor = min(fits, key=lambda n: float(np.median(np.abs(rho - fits[n][1] * fits[n][0]) / s0)))
    x, a, c, pi = fits[predictor]
    pred = a * x
    spread = c * s0
    z = (rho - pred) / spread
    z_alpha = float(-special.ndtri(alpha))
    decidable = pred >= z_alpha * spread
    flagged = (z < -z_alpha) & decidable & (rho < pred / 2)
    area = (w // 2) ** 2 if min_area is None else int(min_area)
    back = (-k) % 4

    def full(grid):
        return np.ascontiguousarray(np.rot90(_to_pixels(grid, (H, Wd), w, step), back))

    flagged = _drop_small(flagged, max(1, round(area / (step * step))))
    return Localization(mask=full(flagged), correlation=full(rho.astype(np.float32)),
                        predicted=full(pred.astype(np.float32)), z=full(z.astype(np.float32)),
                        decidable=full(decidable), window=w, stride=step, alpha=float(alpha), z_threshold=z_alpha,
                        predictor=predictor, gain=a, inflation=c, null_std=float(np.median(s0)), excluded=pi,
                        n_windows=int(rho.size), min_area=area)
