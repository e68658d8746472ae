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
        else:
            tf, xlabel = (lambda v: v), key.upper()
        allv = tf(np.concatenate([pos, neg]))
        bins = np.linspace(allv.min(), allv.max(), 40)
        ax.hist(tf(neg), bins=bins, alpha=0.6, label=f"non-matching ({len(neg)})", color="tab:grey")
        ax.hist(tf(pos), bins=bins, alpha=0.7, label=f"matching ({len(pos)})", color="tab:red")
        if thresholds and key in thresholds:
            ax.axvline(tf(np.asarray(thresholds[key])), color="k", ls="--", label="threshold")
        ax.set(xlabel=xlabel, ylabel="pairs", title=f"{key.upper()} scores")
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
    """Log DFT magnitude (centred) of each generator fingerprint; up-sampling leaves bright peaks."""
    plt = _plt()
    names = list(fingerprints)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        f = np.asarray(fingerprints[name], dtype=np.float64)
        f = f.mean(axis=0) if f.ndim == 3 else f
        spec = np.fft.fftshift(np.abs(np.fft.fft2(f - f.mean())))
        ax.imshow(np.log10(spec + 1e-6 * spec.max() + 1e-12), cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle("generator fingerprints: log |DFT| (centre = zero frequency)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
