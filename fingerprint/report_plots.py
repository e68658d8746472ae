"""Figures of the forensic report, as PNG bytes ready to inline (``data:`` URIs).

matplotlib's object API only (``matplotlib.figure.Figure``, rendered by its own Agg canvas): no
pyplot, no global backend switch, safe to call from a process that has its own matplotlib state.
Every function takes numbers and arrays and returns PNG bytes; the report decides what to show.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from scipy import special

__all__ = [
    "camera_null_png",
    "data_uri",
    "display_image",
    "generator_null_png",
    "localization_png",
    "spectra_png",
    "strengths_png",
    "thumbnail_jpeg",
]

_DPI = 100
_MATCH, _OTHER, _NULL = "#b2182b", "#4d4d4d", "#92c5de"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` for an ``<img src>`` that needs no file and no network."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def display_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """8-bit RGB copy of an image (uint8/uint16, gray or colour) no larger than ``max_side``."""
    x = np.asarray(image)
    if x.dtype == np.uint16:
        x = (x / 257.0 + 0.5).astype(np.uint8)
    elif x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    pil = Image.fromarray(np.ascontiguousarray(x))
    pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(pil)


def thumbnail_jpeg(image: np.ndarray, max_side: int = 200, quality: int = 85) -> bytes:
    """A JPEG view of the image (longest side ``max_side`` pixels; for display only, never analysed)."""
    buf = io.BytesIO()
    Image.fromarray(display_image(image, max_side)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _reduce(a: np.ndarray, shape: tuple[int, int], how: str = "mean") -> np.ndarray:
    """Block-reduce a 2-D map to at most ``shape`` (integer factor, mean or max)."""
    f = max(1, math.ceil(a.shape[0] / shape[0]), math.ceil(a.shape[1] / shape[1]))
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    blocks = a[:h, :w].reshape(h // f, f, w // f, f)
    return blocks.max(axis=(1, 3)) if how == "max" else blocks.mean(axis=(1, 3))


def localization_png(image: np.ndarray, mask: np.ndarray, fraction_present: np.ndarray, decidable: np.ndarray,
                     *, title: str = "", max_side: int = 560) -> bytes:
    """Two panels: the image with the tamper mask outlined, and the map of the fingerprint present.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
    mask : ndarray of bool, (H, W)
        Tampered pixels (drawn in red).
    fraction_present : ndarray of float, (H, W)
        ``rho / rho_hat``: about 1 where the fingerprint is as strong as predicted, 0 where absent.
    decidable : ndarray of bool, (H, W)
        Where the test has power; elsewhere the map is greyed out.
    """
    shown = display_image(image, max_side)
    size = shown.shape[:2]
    m = _reduce(mask.astype(np.float32), size, "max")
    frac = _reduce(np.clip(fraction_present, -0.5, 1.5).astype(np.float32), size)
    dec = _reduce(decidable.astype(np.float32), size) >= 0.5
    aspect = size[1] / size[0]
    fig = Figure(figsize=(2 * 4.2 * min(aspect, 1.6) + 1.2, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    extent = (0, image.shape[1], image.shape[0], 0)
    ax1.imshow(shown, extent=extent, interpolation="lanczos")
    overlay = np.zeros(m.shape + (4,), dtype=np.float32)
    overlay[m > 0] = (0.85, 0.05, 0.05, 0.45)
    ax1.imshow(overlay, extent=extent, interpolation="nearest")
    if m.any():
        ax1.contour(np.linspace(0, image.shape[1], m.shape[1]), np.linspace(0, image.shape[0], m.shape[0]), m,
                    levels=[0.5], colors=["#ff2020"], linewidths=1.2)
    ax1.set_title("image, tampered area in red" if m.any() else "image: nothing flagged", fontsize=10)
    shown_frac = np.ma.masked_where(~dec, frac)
    ax2.set_facecolor("#bdbdbd")
    im = ax2.imshow(shown_frac, cmap="RdYlGn", vmin=0.0, vmax=1.2, extent=extent, interpolation="nearest")
    ax2.set_title("fingerprint present / predicted (grey: cannot tell)", fontsize=10)
    fig.colorbar(im, ax=ax2, shrink=0.8, label="fraction of the expected fingerprint")
    for ax in (ax1, ax2):
        ax.set_xlabel("x (pixels)", fontsize=8)
        ax.tick_params(labelsize=7)
    ax1.set_ylabel("y (pixels)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def camera_null_png(pce: float, threshold: float, n_positions: int, *, name: str = "") -> bytes:
    """The observed PCE against the null distribution of the best PCE over ``n_positions`` positions.

    Under H0 (another camera) the normalised correlation at one position is N(0, 1), so the signed
    PCE exceeds ``t > 0`` with probability ``Q(sqrt(t))``; the best of ``n`` independent positions
    has ``P(max <= t) = (1 - Q(sqrt(t)))^n``. Drawn as a density over ``log10(PCE)``.
    """
    n = max(int(n_positions), 1)
    hi = max(threshold * 3.0, (pce if pce is not None and pce > 0 else 1.0) * 2.0, 100.0)
    t = np.logspace(-2, math.log10(hi), 600)
    # log P(max <= t) = n log(1 - Q(sqrt t)); density over log10(t) by numerical derivative
    log_cdf = n * np.log1p(-np.exp(special.log_ndtr(-np.sqrt(t))))
    cdf = np.exp(log_cdf)
    dens = np.gradient(cdf, np.log10(t))
    fig = Figure(figsize=(6.0, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(t, dens, color=_NULL, alpha=0.8, label=f"other cameras (H0), best of {n:,} position(s)")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.1f}")
    if pce is not None and np.isfinite(pce):
        shown = max(pce, t[0])
        ax.axvline(shown, color=_MATCH if pce >= threshold else _OTHER, lw=2.2, label=f"this image: PCE {pce:.1f}")
    ax.set_xscale("log")
    ax.set_xlim(t[0], hi)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("PCE (log scale)")
    ax.set_ylabel("density (per decade)")
    ax.set_title(f"PCE with {name} against its null distribution" if name else "PCE against its null distribution",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def generator_null_png(z: float, threshold: float | None, null: np.ndarray, *, name: str = "") -> bytes:
    """The observed ``z = NCC sqrt(D)`` against the library's non-matching generator scores."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    fig = Figure(figsize=(6.0, 3.0), layout="constrained")
    ax = fig.subplots()
    values = [v for v in (z, threshold) if v is not None and np.isfinite(v)]
    lo = min([-4.0] + [float(null.min()) if null.size else 0.0] + values) - 0.5
    hi = max([4.0] + [float(null.max()) if null.size else 0.0] + values) + 0.5
    if null.size:
        ax.hist(null, bins=np.linspace(lo, hi, 60), density=True, color=_NULL,
                label=f"non-matching scores in the library ({null.size})")
    else:
        x = np.linspace(lo, hi, 400)
        ax.plot(x, np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi), color=_NULL, label="N(0, 1) (no calibration data)")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold z = {threshold:.2f}")
    if z is not None and np.isfinite(z):
        ax.axvline(z, color=_MATCH if threshold is not None and z >= threshold else _OTHER, lw=2.2,
                   label=f"this image: z = {z:.2f}")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("z = NCC x sqrt(values compared)")
    ax.set_ylabel("density")
    ax.set_title(f"z with {name} against non-matching scores" if name else "z against non-matching scores", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def strengths_png(names: list[str], strengths: list[float], kinds: list[str]) -> bytes:
    """Horizontal bars: each reference's deciding score over its threshold (1 = the threshold)."""
    k = len(names)
    fig = Figure(figsize=(6.0, 0.8 + 0.32 * max(k, 1)), layout="constrained")
    ax = fig.subplots()
    vals = np.array([s if np.isfinite(s) else 0.0 for s in strengths], dtype=np.float64)
    shown = np.clip(vals, 1e-3, None)
    colours = [_MATCH if v >= 1 else _OTHER for v in vals]
    y = np.arange(k)[::-1]
    ax.barh(y, shown, color=colours, height=0.6)
    ax.axvline(1.0, color="black", ls="--", lw=1)
    ax.set_yticks(y, [f"{n} ({kd})" for n, kd in zip(names, kinds)], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, max(10.0, float(shown.max()) * 2 if k else 10.0))
    ax.set_xlabel("score / threshold (log scale; match at 1 and above)")
    ax.set_title("every reference in the library", fontsize=10)
    return _png(fig)


def _log_spectrum(a: np.ndarray, size: int = 256) -> np.ndarray:
    """Centred log-magnitude DFT of a 2-D array (channel average first), on a grid of at most ``size``."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 3:
        x = x.mean(axis=0) if x.shape[0] in (1, 3) else x.mean(axis=2)
    h, w = x.shape
    top, left = max((h - 4 * size) // 2, 0), max((w - 4 * size) // 2, 0)
    x = x[top:top + 4 * size, left:left + 4 * size]
    x = x - x.mean()
    mag = _reduce(np.abs(np.fft.fftshift(np.fft.fft2(x))), (size, size))
    floor = 1e-2 * float(np.median(mag)) + 1e-30  # shrunk-to-zero bins (Wiener-shrunk fingerprints) stay dark grey
    return np.log10(mag + floor)


def spectra_png(query_residual: np.ndarray, fingerprint: np.ndarray, *, name: str = "") -> bytes:
    """The query's residual spectrum beside the generator fingerprint's (log magnitude, DC centred).

    Periodic up-sampling traces show as bright isolated peaks; shared peaks support the match.
    """
    fig = Figure(figsize=(7.6, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, arr, title in ((axes[0], query_residual, "this image's residual"),
                           (axes[1], fingerprint, f"fingerprint of {name}" if name else "fingerprint")):
        s = _log_spectrum(arr)
        lo, hi = np.percentile(s, [2, 99.8])
        ax.imshow(s, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{title}: spectrum", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)
