"""Tamper localisation: where in a camera photo is the camera's PRNU missing?

For a query image whose camera fingerprint ``K`` is known (the photo matched it), the residual
``W`` (DESIGN.md §4, sigma 2) of an authentic region correlates with ``I K`` (``I`` the gray image);
a region pasted from another camera, or copied from elsewhere in the same photo, does not.
Following Chen, Fridrich, Goljan and Lukas (2008):

1. ``rho(b) = NCC(W_b, X_b)`` over every ``w x w`` window ``b`` of a grid with stride ``s``, where
   ``X = I K`` with saturated pixels (any channel >= 250) set to zero (they carry no PRNU); box sums
   from integral images.
2. The correlation the window *should* show if authentic, ``rho_hat(b) = F(b) theta``, predicted
   from its content. ``F`` holds ``q = std(X_b) / std(W_b)`` (for ``W = a X + N``, ``rho = a q``)
   and ``q`` times the mean intensity, its square, the log residual energy, the log gradient
   energy (texture) and the unsaturated fraction, plus intercept, intensity and texture.
   ``theta`` is fitted on the query itself by least squares with iterative trimming (windows more
   than ``TRIM_LOW`` robust standard deviations below the fit, or ``TRIM_HIGH`` above, are left
   out of the next fit: most of an image is authentic and tampering only lowers ``rho``), so the
   predictor needs nothing the library does not have. The scatter of authentic windows about the
   fit is ``sigma(b)^2 = s0^2 + (s1 rho_hat(b))^2`` (the spread grows with the signal), ``s0, s1``
   fitted on the kept windows' squared residuals.
3. One-sided test per window at false-alarm rate ``alpha``: ``z = (rho - rho_hat) / sigma`` is
   N(0, 1) for an authentic window, so ``z < -Phi^-1(1 - alpha)`` is flagged with probability
   ``alpha``. A window is *decidable* only if losing its PRNU entirely would be flagged at least
   half of the time (``rho_hat >= z_alpha sigma``): where the PRNU cannot show (dark, saturated or
   strongly textured areas) its absence is not evidence and nothing is flagged.
4. Per pixel: a pixel takes the decision of the window centred nearest to it, and is marked
   tampered when that window is flagged, decidable and ``rho < rho_hat / 2`` (more than half of the
   window lacks the PRNU, which puts the mask's edge where the window is half over the edge of a
   pasted block). Flagged regions smaller than ``min_area`` pixels are dropped.

The measured accuracy on forgeries made from Dresden photos is in benchmarks/RESULTS.md
("Tamper localisation", ``benchmarks/eval_localize.py``).

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
from fingerprint.residual import QUERY_SIGMA, extract_residual

__all__ = ["DEFAULT_ALPHA", "DEFAULT_WINDOW", "Localization", "localize"]

DEFAULT_WINDOW = 128  # window side in pixels (Chen et al. 2008 use 128 x 128)
DEFAULT_ALPHA = 1e-3  # false-alarm rate of the one-sided test per window (and so per pixel)
SATURATED = 250.0  # a pixel with any channel at or above this (0-255 scale) carries no PRNU
TRIM_LOW, TRIM_HIGH = 2.5, 4.0  # trimming of the robust fit, in robust standard deviations
FIT_ITERATIONS = 8
_MAD = 1.4826  # MAD -> standard deviation for a normal variable
_FEATURES = ("q", "q*mu", "q*mu^2", "q*log_sw", "q*log_tex", "q*unsat", "1", "mu", "log_tex")


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
        ``(rho - rho_hat) / sigma``: about N(0, 1) where authentic, strongly negative where not.
    decidable : ndarray of bool, shape (H, W)
        Where a missing PRNU would be detected at least half of the time.
    window, stride : int
        Window side and grid step, pixels.
    alpha : float
        False-alarm rate of the test per window.
    z_threshold : float
        ``Phi^-1(1 - alpha)``; a window is flagged when ``z < -z_threshold``.
    scatter : tuple of float
        ``(s0, s1)`` of ``sigma = sqrt(s0^2 + (s1 rho_hat)^2)``.
    null_std : float
        Robust std of ``rho`` against a misaligned fingerprint (the correlation of a window without
        this PRNU), for reference.
    coefficients : dict of str to float
        The fitted predictor ``theta`` by feature name.
    n_windows, n_fit : int
        Windows scored, and windows kept by the trimmed fit.
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
    scatter: tuple[float, float]
    null_std: float
    coefficients: dict[str, float]
    n_windows: int
    n_fit: int
    min_area: int

    @property
    def tampered_fraction(self) -> float:
        """Fraction of the image's pixels marked tampered."""
        return float(self.mask.mean())

    @property
    def decidable_fraction(self) -> float:
        """Fraction of the image's pixels where the test has power."""
        return float(self.decidable.mean())

    def as_dict(self) -> dict[str, Any]:
        """Summary without the per-pixel arrays (JSON-ready)."""
        return {"shape": list(self.mask.shape), "tampered_fraction": self.tampered_fraction,
                "decidable_fraction": self.decidable_fraction, "window": self.window, "stride": self.stride,
                "alpha": self.alpha, "z_threshold": self.z_threshold, "scatter": list(self.scatter),
                "null_std": self.null_std, "n_windows": self.n_windows, "n_fit": self.n_fit,
                "min_area": self.min_area, "coefficients": self.coefficients}


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


def _window_ncc(W, X, ys, xs, w):
    """Per window: NCC of W and X, and the variances of W and X times ``w*w`` (float64 grids)."""
    n = float(w * w)
    sw, sx = _box_sums(W, ys, xs, w), _box_sums(X, ys, xs, w)
    vw = np.maximum(_box_sums(W * W, ys, xs, w) - sw * sw / n, 0.0)
    vx = np.maximum(_box_sums(X * X, ys, xs, w) - sx * sx / n, 0.0)
    cov = _box_sums(W * X, ys, xs, w) - sw * sx / n
    denom = np.sqrt(vw * vx)
    rho = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
    return rho, vw, vx


def _features(I, W, unsat, vw, vx, ys, xs, w) -> np.ndarray:
    """Content features of every window, shape (n_windows, len(_FEATURES)), float64."""
    n = float(w * w)
    q = np.sqrt(np.divide(vx, vw, out=np.zeros_like(vx), where=vw > 0))
    mu = _box_sums(I, ys, xs, w) / (255.0 * n)
    smooth = ndimage.gaussian_filter(I, 1.0)
    gy, gx = np.gradient(smooth)
    log_tex = np.log(_box_sums(gx * gx + gy * gy, ys, xs, w) / n + 1e-3)
    log_sw = np.log(np.sqrt(vw / n) + 1e-6)
    frac = _box_sums(unsat, ys, xs, w) / n
    cols = [q, q * mu, q * mu * mu, q * log_sw, q * log_tex, q * frac, np.ones_like(q), mu, log_tex]
    return np.stack([c.ravel() for c in cols], axis=1)


def _robust_fit(F: np.ndarray, rho: np.ndarray):
    """Trimmed least squares ``rho ~ F theta`` and the scatter model; returns theta, (s0, s1), kept."""
    scale = np.maximum(np.abs(F).max(axis=0), 1e-12)  # column scaling for a well-conditioned solve
    A = F / scale
    keep = np.ones(rho.shape, dtype=bool)
    for _ in range(FIT_ITERATIONS):
        theta, *_ = np.linalg.lstsq(A[keep], rho[keep], rcond=None)
        r = rho - A @ theta
        s = _MAD * float(np.median(np.abs(r[keep] - np.median(r[keep])))) + 1e-12
        new = (r > -TRIM_LOW * s) & (r < TRIM_HIGH * s)
        if np.array_equal(new, keep) or new.sum() < F.shape[1] * 4:
            break
        keep = new
    pred = A @ theta
    # scatter model sigma^2 = s0^2 + s1^2 rho_hat^2 on the kept windows (robust: median of squares
    # in bins of rho_hat, then a least-squares line through them, clipped to non-negative)
    r2 = (rho - pred)[keep] ** 2 / 0.4549  # median of chi2_1 is 0.4549
    p2 = pred[keep] ** 2
    edges = np.quantile(p2, np.linspace(0, 1, 9))
    bins = np.clip(np.searchsorted(edges, p2, side="right") - 1, 0, 7)
    mx = np.array([np.median(p2[bins == b]) for b in range(8) if np.any(bins == b)])
    my = np.array([np.median(r2[bins == b]) for b in range(8) if np.any(bins == b)])
    slope, icpt = np.polyfit(mx, my, 1) if len(mx) > 1 else (0.0, float(np.median(r2)))
    if icpt <= 0:
        icpt = float(np.min(my))
    s0 = float(np.sqrt(max(icpt, 1e-12)))
    s1 = float(np.sqrt(max(slope, 0.0)))
    return theta / scale, (s0, s1), keep


def _to_pixels(grid: np.ndarray, shape: tuple[int, int], w: int, s: int) -> np.ndarray:
    """Nearest-window-centre upsampling of a grid of windows (top-left corners at 0, s, 2s, ...)."""
    iy = np.clip(np.rint((np.arange(shape[0]) - w / 2 + 0.5) / s).astype(int), 0, grid.shape[0] - 1)
    ix = np.clip(np.rint((np.arange(shape[1]) - w / 2 + 0.5) / s).astype(int), 0, grid.shape[1] - 1)
    return grid[np.ix_(iy, ix)]


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    if min_area <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = sizes < min_area
    small[0] = False
    mask = mask.copy()
    mask[small[labels]] = False
    return mask


def _check(image, fingerprint, offset, rotation, window, stride, alpha):
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise InvalidImageError(f"image: expected an array of shape (H, W) or (H, W, 3), got {np.shape(image)}")
    K = np.asarray(fingerprint, dtype=np.float32)
    if K.ndim != 2:
        raise ShapeMismatchError(f"fingerprint: expected a camera fingerprint of shape (H, W), got {K.shape}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if int(window) != window or window < 16:
        raise ValueError(f"window must be an integer of at least 16 pixels, got {window}")
    k = (int(rotation) // 90) % 4
    h, w = image.shape[:2] if k % 2 == 0 else image.shape[1::-1]
    oy, ox = (int(v) for v in offset)
    if oy < 0 or ox < 0 or oy + h > K.shape[0] or ox + w > K.shape[1]:
        raise ShapeMismatchError(
            f"the query ({h}x{w} after rotating by {90 * k} degrees) at offset ({oy}, {ox}) does not fit in "
            f"the {K.shape[0]}x{K.shape[1]} fingerprint")
    if min(h, w) < window:
        raise InvalidImageError(f"image: {h}x{w} pixels is smaller than one {window}x{window} window")
    step = int(stride) if stride else max(window // 8, 1)
    return K[oy:oy + h, ox:ox + w], k, step


def localize(image: np.ndarray, fingerprint: np.ndarray, *, offset: tuple[int, int] = (0, 0), rotation: int = 0,
             window: int = DEFAULT_WINDOW, stride: int | None = None, alpha: float = DEFAULT_ALPHA,
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
        Window side ``w`` in pixels (default 128); a larger window detects weaker fingerprints and
        larger forgeries, a smaller one resolves smaller ones.
    stride : int, optional
        Grid step (default ``window // 8``).
    alpha : float, optional
        False-alarm rate of the one-sided test per window (default 1e-3).
    min_area : int, optional
        Flagged regions smaller than this many pixels are dropped (default ``(window // 2)**2``).
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
    lies where the window is half over the block, so blocks of about the window size and above
    are outlined; smaller ones lose their corners or vanish. Cost: one residual and about a dozen
    integral images of the image size.

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
    >>> res = localize(next(cam.images(1, seed=2)), K, window=64)
    >>> res.mask.shape, res.mask.dtype
    ((256, 256), dtype('bool'))
    """
    Kc, k, step = _check(image, fingerprint, offset, rotation, window, stride, alpha)
    w = int(window)
    img = np.rot90(image, k)
    W = np.ascontiguousarray(extract_residual(np.ascontiguousarray(img), sigma=sigma, levels=levels), dtype=np.float64)
    I = gray_image(np.ascontiguousarray(img)).astype(np.float64)
    planes = img if img.ndim == 3 else img[..., None]
    scale = 1.0 / 257.0 if img.dtype == np.uint16 else 1.0
    unsat = (planes.max(axis=2).astype(np.float64) * scale < SATURATED).astype(np.float64)
    X = I * Kc * unsat
    H, Wd = W.shape
    ys = np.arange(0, H - w + 1, step)
    xs = np.arange(0, Wd - w + 1, step)
    rho, vw, vx = _window_ncc(W, X, ys, xs, w)
    shift = (H // 2 + 17, Wd // 2 + 29)  # a misaligned fingerprint: the correlation without this PRNU
    rho0, _, _ = _window_ncc(W, I * np.roll(Kc, shift, axis=(0, 1)) * unsat, ys, xs, w)
    F = _features(I, W, unsat, vw, vx, ys, xs, w)
    theta, (s0, s1), keep = _robust_fit(F, rho.ravel())
    pred = (F @ theta).reshape(rho.shape)
    spread = np.sqrt(s0 * s0 + (s1 * pred) ** 2)
    z = (rho - pred) / spread
    z_alpha = float(-special.ndtri(alpha))
    decidable = pred >= z_alpha * spread
    flagged = (z < -z_alpha) & decidable & (rho < pred / 2)
    area = (w // 2) ** 2 if min_area is None else int(min_area)
    back = (-k) % 4

    def full(grid):
        return np.ascontiguousarray(np.rot90(_to_pixels(grid, (H, Wd), w, step), back))

    mask = _drop_small(full(flagged), area)
    return Localization(mask=mask, correlation=full(rho.astype(np.float32)), predicted=full(pred.astype(np.float32)),
                        z=full(z.astype(np.float32)), decidable=full(decidable), window=w, stride=step, alpha=float(alpha),
                        z_threshold=z_alpha, scatter=(s0, s1), null_std=_MAD * float(np.median(np.abs(rho0))),
                        coefficients={n: float(t) for n, t in zip(_FEATURES, theta)}, n_windows=int(rho.size),
                        n_fit=int(keep.sum()), min_area=area)
