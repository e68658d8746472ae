"""Evaluation on labelled queries: top-1 accuracy, open-set decisions, confusion, ROC AUC, EER, plots.

Queries are given as a folder with one sub-folder per source (the sub-folder name is the label)
or as a CSV file of ``path,label`` rows. A label that is not a reference of the library is an
"unknown" source: its images are correct when the decision is "unknown".
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import rankdata

from fingerprint.errors import GanprintError, InvalidImageError

UNKNOWN = "unknown"

__all__ = ["EvaluationReport", "auc", "eer", "evaluate_library", "format_report", "read_labelled_queries", "roc_curve"]


def read_labelled_queries(queries: str | os.PathLike) -> list[tuple[Path, str]]:
    """(path, label) pairs from a folder of per-source sub-folders or a ``path,label`` CSV file."""
    from fingerprint.io import IMAGE_EXTENSIONS

    q = Path(queries)
    if q.is_dir():
        pairs = []
        for sub in sorted(p for p in q.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(sub.iterdir()):
                if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                    pairs.append((f, sub.name))
        if not pairs:
            raise InvalidImageError(f"{q}: no images in per-source sub-folders")
        return pairs
    if q.is_file():
        pairs = []
        with open(q, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].startswith("#") or (i == 1 and row[:2] == ["path", "label"]):
                    continue
                if len(row) < 2:
                    raise InvalidImageError(f"{q}: line {i}: expected 'path,label'")
                path = Path(row[0])
                pairs.append((path if path.is_absolute() else q.parent / path, row[1].strip()))
        if not pairs:
            raise InvalidImageError(f"{q}: no 'path,label' rows")
        return pairs
    raise InvalidImageError(f"{q}: no such folder or CSV file")


def roc_curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold (scores above or at the threshold are positive)."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(lab)[distinct]
    fp = np.cumsum(1 - lab)[distinct]
    return np.r_[0.0, fp / max(len(neg), 1)], np.r_[0.0, tp / max(len(pos), 1)]


def auc(pos, neg) -> float:
    """ROC AUC = P(score of a matching pair > score of a non-matching pair), ties count one half."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = rankdata(allv)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))




def eer(pos, neg) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate (interpolated)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    fpr, tpr = roc_curve(pos, neg)
    fnr = 1 - tpr
    i = int(np.argmax(fpr >= fnr))
    if i == 0:
        return float(fpr[0])
    # linear interpolation between points i-1 and i of (fpr - fnr) crossing zero
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d1 != d0 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


@dataclass
class EvaluationReport:
    references: list[str]
    labels: list[str]
    n_queries: int
    top1_correct: int
    top1_total: int
    open_set_correct: int
    unknown_correct: int
    unknown_total: int
    confusion: dict[str, dict[str, int]]
    roc: dict[str, dict[str, float]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    pairs: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {
            "n_queries": self.n_queries,
            "top1_accuracy": self.top1_correct / self.top1_total if self.top1_total else None,
            "top1_correct": self.top1_correct,
            "top1_total": self.top1_total,
            "open_set_accuracy": self.open_set_correct / self.n_queries if self.n_queries else None,
            "unknown_rejected": self.unknown_correct,
            "unknown_total": self.unknown_total,
            "roc": self.roc,
            "confusion": self.confusion,
            "failed": self.failed,
            "plots": self.plots,
        }


def evaluate_results(results, labels: list[str], references: list[str]) -> EvaluationReport:
    """Metrics from Attribution results and their true labels."""
    refs = set(references)
    cols = references + [UNKNOWN]
    rows = sorted(set(labels), key=lambda x: (x not in refs, x))
    confusion = {r: {c: 0 for c in cols} for r in rows}
    top1 = top1_total = open_ok = unk_ok = unk_total = 0
    pairs: dict[str, tuple[list[float], list[float]]] = {"ncc": ([], []), "pce": ([], [])}
    for res, label in zip(results, labels):
        known = label in refs
        predicted = res.best or UNKNOWN
        confusion[label][predicted] += 1
        if known:
            top1_total += 1
            top1 += res.closest == label
            open_ok += res.best == label
        else:
            unk_total += 1
            unk_ok += res.best is None
            open_ok += res.best is None
        for name, s in res.scores.items():
            for key in ("ncc", "pce"):
                v = getattr(s, key)
                if v is not None and np.isfinite(v):
                    pairs[key][0 if name == label else 1].append(float(v))
    roc = {}
    for key, (pos, neg) in pairs.items():
        if pos and neg:
            roc[key] = {"auc": auc(pos, neg), "eer": eer(pos, neg), "n_matching": len(pos), "n_non_matching": len(neg)}
    return EvaluationReport(references, labels, len(labels), top1, top1_total, open_ok, unk_ok, unk_total,
                            confusion, roc, pairs=pairs)


def evaluate_library(library, queries, *, crop=None, method: str = "pce", rotations: bool = True, fpr: float = 0.01,
                     query_sigma: float = 2.0,
                     plots: str | os.PathLike | None = None, progress: bool = True,
                     warn: Callable[[str], None] | None = None) -> EvaluationReport:
    """Attribute every labelled query against ``library`` and compute the metrics (and plots)."""
    import sys

    from tqdm import tqdm

    from fingerprint.attribution import load_attributor
    from fingerprint.io import crop_center, load_image

    pairs = read_labelled_queries(queries)
    att = load_attributor(library, method=method, rotations=rotations, fpr=fpr, query_sigma=query_sigma)
    references = [c.name for c in att.cameras] + [g.name for g in att.generators]
    results, labels, failed = [], [], []
    for path, label in tqdm(pairs, desc="evaluate", unit="img", file=sys.stderr, disable=None if progress else True, leave=False):
        try:
            image = load_image(path)
            if crop:
                image = crop_center(image, crop)
            results.append(att.score(image, str(path)))
            labels.append(label)
        except GanprintError as err:
            failed.append(str(err))
            if warn:
                warn(str(err))
    if not results:
        raise InvalidImageError(f"{queries}: no query could be scored")
    report = evaluate_results(results, labels, references)
    report.failed = failed
    if plots:
        from fingerprint.plots import plot_confusion, plot_roc, plot_score_distributions

        out = Path(plots)
        out.mkdir(parents=True, exist_ok=True)
        report.plots = [
            str(plot_roc(report.pairs, out / "roc.png")),
            str(plot_score_distributions(report.pairs, out / "scores.png")),
            str(plot_confusion(report.confusion, out / "confusion.png")),
        ]
    return report


def format_report(report: EvaluationReport) -> str:
    """A plain-text report: accuracy lines, ROC table, confusion matrix."""
    lines = []
    if report.top1_total:
        lines.append(f"top-1 accuracy (closed set): {report.top1_correct}/{report.top1_total} = "
                     f"{report.top1_correct / report.top1_total:.1%}")
    lines.append(f"open-set accuracy (match or unknown): {report.open_set_correct}/{report.n_queries} = "
                 f"{report.open_set_correct / report.n_queries:.1%}")
    if report.unknown_total:
        lines.append(f"unknown sources rejected: {report.unknown_correct}/{report.unknown_total}")
    for key, r in report.roc.items():
        lines.append(f"{key.upper()}: ROC AUC {r['auc']:.4f}, EER {r['eer']:.2%} "
                     f"({r['n_matching']} matching, {r['n_non_matching']} non-matching pairs)")
    cols = list(next(iter(report.confusion.values())).keys()) if report.confusion else []
    width = max([len(c) for c in cols] + [len(r) for r in report.confusion] + [8])
    lines.append("")
    lines.append("confusion (rows: true source, columns: decision)")
    short = [c[: width] for c in cols]
    lines.append(" " * width + " | " + " ".join(f"{c:>{min(width, 12)}.12}" for c in short))
    for r, row in report.confusion.items():
        lines.append(f"{r:<{width}} | " + " ".join(f"{row[c]:>{min(width, 12)}d}" for c in cols))
    if report.failed:
        lines.append(f"{len(report.failed)} query file(s) could not be read")
    for p in report.plots:
        lines.append(f"plot: {p}")
    return "\n".join(lines)
