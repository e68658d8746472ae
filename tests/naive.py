"""Plain float64 reference twins of ganprint's algorithms, written from ``shared/DESIGN.md``.

Clarity over speed: numpy, PyWavelets and SciPy only, float64 throughout, no Numba, no tricks.
Every fast kernel in ``kernels/`` and every stage in ``fingerprint/`` is tested against the
function of the same name here. Section numbers refer to DESIGN.md.
"""

from __future__ import annotations

import numpy as np
import pywt
from scipy import ndimage

GRAY_WEIGHTS = np.array([0.29893602, 0.58704307, 0.11402090])  # Binghamton rgb2gray1
WINDOWS = (3, 5, 7, 9)


# --- §2 local Wiener filter --------------------------------------------------------------------
def wiener(d: np.ndarray, sigma2: float) -> np.ndarray:
    """``d * sigma2 / (min_w max(mean_w(d^2) - sigma2, 0) + sigma2)``, zero padding, w = 3,5,7,9."""
    d = np.asarray(d, dtype=np.float64)
    energy = d * d
    v = None
    for w in WINDOWS:
        m = ndimage.uniform_filter(energy, size=w, mode="constant", cval=0.0)
        vw = np.maximum(m - sigma2, 0.0)
        v = vw if v is None else np.minimum(v, vw)
    return d * sigma2 / (v + sigma2)


# --- §3 noise residual of one channel --------------------------------------------------------------
def pad_amounts(m: int, levels: int) -> tuple[int, int]:
    """Rows (or columns) added on top and at the bottom so the size is a multiple of 2**levels."""
    q = 2**levels
    nr = int(np.ceil((m + 2) / q)) * q
    extra = nr - m
    top = int(np.ceil(extra / 2))
    return top, extra - top


def noise_extract(x: np.ndarray, sigma: float, levels: int = 4) -> np.ndarray:
    """Binghamton ``NoiseExtract``: pad, db4 periodized DWT, Wiener the details, zero approx, inverse."""
    x = np.asarray(x, dtype=np.float64)
    m, n = x.shape
    t, b = pad_amounts(m, levels)
    left, right = pad_amounts(n, levels)
    xp = np.pad(x, ((t, b), (left, right)), mode="symmetric")
    coeffs = pywt.wavedec2(xp, "db4", mode="periodization", level=levels)
    sigma2 = sigma * sigma
    out = [np.zeros_like(coeffs[0])]
    for details in coeffs[1:]:
        out.append(tuple(wiener(d, sigma2) for d in details))
    rec = pywt.waverec2(out, "db4", mode="periodization")
    return rec[t : t + m, left : left + n]


# --- §4 query residual -------------------------------------------------------------------------------
def rgb2gray(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x
    return x @ GRAY_WEIGHTS


def zero_mean(x: np.ndarray) -> np.ndarray:
    """Subtract the mean, then the column means and the row means."""
    x = x - x.mean()
    x = x - x.mean(axis=0, keepdims=True)
    return x - x.mean(axis=1, keepdims=True)


def zero_mean_total(w: np.ndarray) -> np.ndarray:
    """ZeroMean on each of the four 2x2 sub-lattices ``w[r::2, c::2]``."""
    w = np.array(w, dtype=np.float64)
    for r in (0, 1):
        for c in (0, 1):
            w[r::2, c::2] = zero_mean(w[r::2, c::2])
    return w


def wiener_dft(w: np.ndarray, s: float) -> np.ndarray:
    """WienerInDFT: Wiener-filter the normalised DFT magnitude with variance ``s**2``."""
    h, wd = w.shape
    f = np.fft.fft2(w)
    a = np.abs(f) / np.sqrt(h * wd)
    a_f = wiener(a, s * s)
    ratio = np.zeros_like(a)
    nz = a != 0
    ratio[nz] = a_f[nz] / a[nz]
    return np.real(np.fft.ifft2(f * ratio))


def to_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 257.0
    return image.astype(np.float64)


def residual(image: np.ndarray, sigma: float = 2.0, levels: int = 4) -> np.ndarray:
    """Query residual W of §4 (float64 here; ganprint returns float32)."""
    x = to_float(image)
    if x.ndim == 2:
        w = noise_extract(x, sigma, levels)
    else:
        w = rgb2gray(np.stack([noise_extract(x[..., c], sigma, levels) for c in range(x.shape[2])], axis=-1))
    w = zero_mean_total(w)
    s = np.std(w, ddof=1)
    return wiener_dft(w, s)


# --- §5 camera fingerprint ---------------------------------------------------------------------------
def inten_scale(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.exp(-((x - 252.0) ** 2) / 6.0)
    low = x < 252
    out[low] = x[low] / 252.0
    return out


def saturation(x: np.ndarray) -> np.ndarray:
    """1 where usable, 0 on saturated pixels (Binghamton ``Saturation``, one channel)."""
    x = np.asarray(x, dtype=np.float64)
    mx = x.max()
    if mx <= 250:
        return np.ones_like(x)
    eq_max = x == mx
    neighbour_equal = np.zeros_like(eq_max)
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
        neighbour_equal |= np.roll(x, shift, axis=axis) == x
    return np.where(eq_max & neighbour_equal, 0.0, 1.0)


def camera_fingerprint(images: list[np.ndarray], sigma: float = 3.0, levels: int = 4) -> np.ndarray:
    """Maximum-likelihood PRNU K of §5, gray, ZeroMeanTotal and WienerInDFT applied."""
    s_sum = n_sum = None
    for img in images:
        x = to_float(img)
        if x.ndim == 2:
            x = x[..., None]
        w = np.stack([noise_extract(x[..., c], sigma, levels) for c in range(x.shape[2])], axis=-1)
        t = np.stack([inten_scale(x[..., c]) * saturation(x[..., c]) for c in range(x.shape[2])], axis=-1)
        if s_sum is None:
            s_sum, n_sum = np.zeros_like(w), np.zeros_like(w)
        s_sum += w * t
        n_sum += t * t
    k = s_sum / (n_sum + 1.0)
    k = np.stack([zero_mean_total(k[..., c]) for c in range(k.shape[2])], axis=-1)
    k = rgb2gray(k) if k.shape[2] == 3 else k[..., 0]
    return wiener_dft(k, np.std(k, ddof=1))


# --- §7 scores ----------------------------------------------------------------------------------------
def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def crosscorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Circular cross-correlation ``C[s] = sum_x a(x + s) b(x)`` of two same-size arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    fa = np.fft.fft2(a - a.mean())
    fb = np.fft.fft2(b - b.mean())
    return np.real(np.fft.ifft2(fa * np.conj(fb)))


def pce_from_cc(c: np.ndarray, allowed: np.ndarray | None = None, radius: int = 5) -> tuple[float, tuple[int, int]]:
    """PCE of a cross-correlation surface; the peak is searched where ``allowed`` is True."""
    if allowed is None:
        peak = (0, 0)
    else:
        masked = np.where(allowed, c, -np.inf)
        peak = np.unravel_index(int(np.argmax(masked)), c.shape)
    h, w = c.shape
    rows = (np.arange(peak[0] - radius, peak[0] + radius + 1)) % h
    cols = (np.arange(peak[1] - radius, peak[1] + radius + 1)) % w
    mask = np.ones(c.shape, dtype=bool)
    mask[np.ix_(rows, cols)] = False
    v = c[peak]
    return float(np.sign(v) * v * v / np.mean(c[mask] ** 2)), (int(peak[0]), int(peak[1]))


# --- fingerprint digests (Goljan, Fridrich, Filler 2010) -------------------------------------------
def sparse_correlation(indptr, refs, values, columns, n_refs: int) -> np.ndarray:
    """``D @ columns`` for the pixel-major sparse matrix ``D`` (pixel i's entries ``indptr[i]:indptr[i+1]``)."""
    columns = np.asarray(columns, dtype=np.float64)
    dense = np.zeros((n_refs, columns.shape[0]))
    pixel = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    dense[np.asarray(refs, dtype=np.int64), pixel] = np.asarray(values, dtype=np.float64)
    return dense @ columns


def digest_scores(fingerprints: list[np.ndarray], query: np.ndarray, n: int) -> np.ndarray:
    """Sparse z of ``query`` against the ``n``-pixel digest of each fingerprint, rotations 0-3 (NaN: shape differs)."""
    q = np.asarray(query, dtype=np.float64)
    q = q - q.mean()
    sigma = np.sqrt(np.mean(q * q))
    out = np.full((len(fingerprints), 4), np.nan)
    for j, k in enumerate(fingerprints):
        k = np.asarray(k, dtype=np.float64)
        k = k - k.mean()
        keep = np.argsort(-np.abs(k).ravel(), kind="stable")[:n]
        v = k.ravel()[keep]
        for rot in range(4):
            qr = np.rot90(q, rot)
            if qr.shape == k.shape:
                out[j, rot] = np.sum(v * qr.ravel()[keep]) / (sigma * np.linalg.norm(v))
    return out
