"""PNG plots for reports (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(pairs: dict[str, tuple[list[float], list[float]]], out: Path) -> Path:
    """ROC curve of each score (NCC, PCE) from matching and non-matching pair scores."""
    from fingerprint.evaluate import auc, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for key, (pos, neg) in pairs.items():
        if pos and neg:
            fpr, tpr = roc_curve(np.asarray(pos), np.asarray(neg))
            ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{key.upper()} (AUC {auc(pos, neg):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC over (query, reference) pairs",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_score_distributions(pairs: dict[str, tuple[list[float], list[float]]], out: Path,
                             thresholds: dict[str, float] | None = None) -> Path:
    """Histograms of matching vs non-matching pair scores, one panel per score."""
    plt = _plt()
    keys = [k for k, (p, n) in pairs.items() if p and n]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5 * max(len(keys), 1), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pos, neg = np.asarray(pairs[key][0]), np.asarray(pairs[key][1])
        if key == "pce":  # PCE spans decades: a signed log scale shows both populations
            tf = lambda v: np.sign(v) * np.log10(1 + np.abs(v))  # noqa: E731
            xlabel = "sign(PCE) log10(1 + |PCE|)"
        elif key == "z":
            tf, xlabel = (lambda v: v), "z = NCC x sqrt(values compared)"
        else:
            tf, xlabel = (lambda v: v), key.upper()
        allv = tf(np.concatenate([pos, neg]))
        bins = np.linspace(allv.min(), allv.max(), 40)
        ax.hist(tf(neg), bins=bins, alpha=0.6, label=f"non-matching ({len(neg)})", color="tab:grey")
        ax.hist(tf(pos), bins=bins, alpha=0.7, label=f"matching ({len(pos)})", color="tab:red")
        if thresholds and key in thresholds:
            ax.axvline(tf(np.asarray(thresholds[key])), color="k", ls="--", label="threshold")
        ax.set(xlabel=xlabel, ylabel="pairs", title=f"{'generator z' if key == 'z' else key.upper()} scores")
        ax.legend()
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
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(cols), 1.0 + 0.55 * len(rows)))
    ax.imshow(m, cmap="Blues")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="decision", ylabel="true source", title="confusion matrix")
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
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        f = np.asarray(fingerprints[name], dtype=np.float64)
        planes = f if f.ndim == 3 else f[None]
        mag = np.mean([np.abs(np.fft.fft2(p - p.mean())) for p in planes], axis=0)
        mag = np.fft.fftshift(mag)
        contrast = mag / (ndimage.median_filter(mag, size=15, mode="wrap") + 1e-12)
        shown = ndimage.maximum_filter(np.log10(np.maximum(contrast, 1.0)), size=3)
        ax.imshow(shown, cmap="magma", vmin=0, vmax=max(float(np.quantile(shown, 0.999)), 0.5))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle("generator fingerprints: spectral peaks, log10(|DFT| / local median), zero frequency at centre",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
