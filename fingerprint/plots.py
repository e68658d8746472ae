"""PNG plots for reports (matplotlib, Agg backend, no display needed).

Drawing only: the numbers come from the caller (``fingerprint.evaluate`` computes ROC curves and
metrics and imports this module; this module imports nothing of ganprint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_LABELS = {"pce": "camera PCE", "ncc": "camera NCC", "z": "generator z = NCC*sqrt(D)"}


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], out: Path, *,
             names: dict[str, str] | None = None,
             operating: dict[str, tuple[float, float]] | None = None) -> Path:
    """ROC curve of each score: ``curves[key] = (false-positive rates, true-positive rates, AUC)``.

    ``fingerprint.evaluate.roc_curves`` computes them from matching and non-matching pair scores.
    The false-positive axis is logarithmic (forensic thresholds live at rates of 1e-2 to 1e-6),
    from half the smallest non-zero rate of any curve; a rate of 0 is drawn at that floor.
    ``operating[key] = (fpr, tpr)``: the decisions actually made at the thresholds, marked with
    their values. ``names`` labels the keys (default: camera PCE, camera NCC, generator z).
    """
    plt = _plt()
    names = {**_LABELS, **(names or {})}
    positive = [f[f > 0].min() for f, _, _ in curves.values() if np.any(f > 0)]
    floor = min(positive) / 2 if positive else 1e-3
    fig, ax = plt.subplots(figsize=(6, 5))
    for key, (fpr, tpr, area) in curves.items():
        (line,) = ax.step(np.maximum(fpr, floor), tpr, where="post", label=f"{names.get(key, key)} (AUC {area:.3f})")
        if operating and key in operating:
            fp, tp = operating[key]
            shown = "0" if fp == 0 else f"{fp:.2g}"
            ax.plot(max(fp, floor), tp, "o", color=line.get_color(), markersize=8, markeredgecolor="k",
                    label=f"  at the threshold: FPR {shown}, TPR {tp:.1%}")
    chance = np.logspace(np.log10(floor), 0, 50)
    ax.plot(chance, chance, ":", color="grey", label="chance")
    ax.set_xscale("log")
    ax.set(xlabel="false-positive rate (share of non-matching pairs accepted, log scale)",
           ylabel="true-positive rate (share of matching pairs accepted)",
           title="ROC over (query, reference) pairs", xlim=(floor, 1), ylim=(0, 1.01))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _symlog_edges(values: np.ndarray, n: int = 40) -> np.ndarray:
    """Bin edges even in sign(v) log10(1 + |v|): the histogram bins of a symmetric-log axis."""
    t = np.sign(values) * np.log10(1 + np.abs(values))
    lo, hi = float(t.min()), float(t.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, n)
    return np.sign(edges) * (10 ** np.abs(edges) - 1)


def plot_score_distributions(pairs: dict[str, tuple[list[float], list[float]]], out: Path,
                             thresholds: dict[str, float] | None = None, *,
                             names: dict[str, str] | None = None) -> Path:
    """Histograms of matching vs non-matching pair scores, one panel per score, thresholds marked.

    PCE spans decades (non-matching pairs near 0, sometimes negative; matches up to 1e5), so its
    axis is symmetric-logarithmic (linear within +-1) and shows PCE values; z and NCC are linear.
    ``thresholds[key]`` is drawn as a dashed line labelled with its value (for PCE the threshold
    at one position; searches raise it per pair); None says in the legend that there is none.
    """
    plt = _plt()
    names = {**_LABELS, **(names or {})}
    keys = [k for k, (p, n) in pairs.items() if len(p) and len(n)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5.5 * max(len(keys), 1), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pos, neg = np.asarray(pairs[key][0], float), np.asarray(pairs[key][1], float)
        allv = np.concatenate([pos, neg])
        if key == "pce":
            bins = _symlog_edges(allv)
            ax.set_xscale("symlog", linthresh=1.0)
            xlabel = "PCE (symmetric log scale)"
        else:
            bins = np.linspace(allv.min(), allv.max() if allv.max() > allv.min() else allv.min() + 1, 40)
            xlabel = "z = NCC x sqrt(values compared)" if key == "z" else "NCC"
        ax.hist(neg, bins=bins, alpha=0.6, label=f"non-matching pairs ({len(neg)})", color="tab:grey")
        ax.hist(pos, bins=bins, alpha=0.7, label=f"matching pairs ({len(pos)})", color="tab:red")
        if thresholds and key in thresholds and thresholds[key] is not None:
            t = float(thresholds[key])
            what = "PCE" if key == "pce" else ("z" if key == "z" else "NCC")
            extra = " at one position" if key == "pce" else ""
            ax.axvline(t, color="k", ls="--", label=f"threshold {what} {t:.4g}{extra}")
        elif thresholds and key in thresholds:  # None: there is no threshold (e.g. uncalibrated generators)
            ax.plot([], [], " ", label="no threshold (uncalibrated): never a match")
        ax.set(xlabel=xlabel, ylabel="pairs (count)", title=f"{names.get(key, key)}: pair scores")
        ax.legend(fontsize=8)
    if not keys:
        axes[0][0].set(title="no score with both matching and non-matching pairs")
        axes[0][0].axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(confusion: dict[str, dict[str, int]], out: Path) -> Path:
    """Confusion matrix: rows are true sources, columns decisions (references and "unknown")."""
    plt = _plt()
    rows = list(confusion)
    cols = list(next(iter(confusion.values())))
    m = np.array([[confusion[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.7 * len(cols)), max(3.5, 1.0 + 0.55 * len(rows))))
    ax.imshow(m, cmap="Blues")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="decision (a reference, or unknown)", ylabel="true source",
           title=f"confusion matrix\n(images per true source and decision; {int(m.sum())} images)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_spectra(fingerprints: dict[str, np.ndarray], out: Path) -> Path:
    """Spectral peaks of each generator fingerprint: |DFT| over its local median (centred, log scale).

    Up-sampling layers leave energy at isolated frequencies (multiples of size / factor); dividing
    by a 15 x 15 running median removes the smooth spectral envelope, and a 3 x 3 maximum filter
    keeps single-bin peaks visible at print size.
    """
    from scipy import ndimage

    plt = _plt()
    names = list(fingerprints)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 1.2, 3.9), squeeze=False, layout="constrained")
    images = []
    for ax, name in zip(axes[0], names):
        f = np.asarray(fingerprints[name], dtype=np.float64)
        planes = f if f.ndim == 3 else f[None]
        mag = np.mean([np.abs(np.fft.fft2(p - p.mean())) for p in planes], axis=0)
        mag = np.fft.fftshift(mag)
        contrast = mag / (ndimage.median_filter(mag, size=15, mode="wrap") + 1e-12)
        images.append(ndimage.maximum_filter(np.log10(np.maximum(contrast, 1.0)), size=3))
    vmax = max([float(np.quantile(im, 0.999)) for im in images] + [0.5])
    for ax, name, shown in zip(axes[0], names, images):
        # fftshift puts frequency -0.5 cycles/pixel in the first row and column, 0 at the centre
        im = ax.imshow(shown, cmap="magma", vmin=0, vmax=vmax, extent=(-0.5, 0.5, 0.5, -0.5))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("horizontal frequency (cycles/pixel)", fontsize=8)
        ax.set_xticks([-0.5, -0.25, 0, 0.25, 0.5])
        ax.set_yticks([-0.5, -0.25, 0, 0.25, 0.5])
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("vertical frequency (cycles/pixel)", fontsize=8)
    bar = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
    bar.set_label("log10(|DFT| / local median)", fontsize=8)
    fig.suptitle("generator fingerprints: spectral peaks of the up-sampling (zero frequency at the centre)",
                 fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
