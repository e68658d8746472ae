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

__all__ = ["EvaluationReport", "auc", "eer", "evaluate_conditions", "evaluate_library", "format_conditions",
           "format_report", "read_labelled_queries", "roc_curve", "roc_curves"]


def read_labelled_queries(queries: str | os.PathLike) -> list[tuple[Path, str]]:
    """(path, label) pairs from a folder of per-source sub-folders or a ``path,label`` CSV file."""
    return labelled_queries(queries)[0]


def labelled_queries(queries: str | os.PathLike, *, recursive: bool = True
                     ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(path, label) pairs, and the (path, reason) of files left out, from a folder or a CSV file.

    A folder: each sub-folder is a source (its name the label), searched with
    ``io.find_images`` (recursively unless ``recursive`` is False; files chosen by content); files
    directly in the folder belong to no source and are left out. A CSV file: ``path,label`` rows
    (a ``path,label`` header and ``#`` comments allowed), paths relative to the CSV's folder.
    """
    from fingerprint.io.paths import find_images

    q = Path(queries)
    if q.is_dir():
        pairs, left = [], []
        for entry in sorted(q.iterdir()):
            if not entry.is_dir():
                left.append((entry, "not in a per-source sub-folder"))
                continue
            try:
                found = find_images([entry], recursive=recursive)
            except InvalidImageError as err:
                left.append((entry, getattr(err, "problem", None) or str(err)))
                continue
            pairs += [(f, entry.name) for f in found.paths]
            left += found.skipped
        if not pairs:
            raise InvalidImageError(f"{q}: no images in per-source sub-folders")
        return pairs, left
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
        return pairs, []
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


def roc_curves(pairs: dict[str, tuple[list[float], list[float]]]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """(false-positive rates, true-positive rates, AUC) per score with both matching and non-matching pairs.

    ``pairs`` maps a score name (``"ncc"``, ``"pce"``) to (matching, non-matching) pair scores;
    the result is what :func:`fingerprint.plots.plot_roc` draws.
    """
    return {key: (*roc_curve(np.asarray(pos, float), np.asarray(neg, float)), auc(pos, neg))
            for key, (pos, neg) in pairs.items() if len(pos) and len(neg)}


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
    per_image: list[dict] = field(default_factory=list, repr=False)  # one row per scored query (per_image_row)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # score -> reason -> pairs not compared
    operating: dict[str, dict[str, float]] = field(default_factory=dict)  # score -> decisions at the thresholds
    thresholds: dict[str, str] = field(default_factory=dict)  # "camera", "generator": the rule in words
    threshold_values: dict[str, float | None] = field(default_factory=dict)  # score -> base threshold (plots)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) not tried

    def as_dict(self) -> dict:
        return {
            "n_queries": self.n_queries,
            "top1_accuracy": self.top1_correct / self.top1_total if self.top1_total else None,
            "top1_correct": self.top1_correct,
            "top1_total": self.top1_total,
            "open_set_accuracy": self.open_set_correct / self.n_queries if self.n_queries else None,
            "unknown_rejected": self.unknown_correct,
            "unknown_total": self.unknown_total,
            "thresholds": self.thresholds,
            "roc": self.roc,
            "operating_points": self.operating,
            "pairs_not_compared": self.dropped,
            "confusion": self.confusion,
            "errors": [r["image"] for r in self.per_image if not r["correct"]],
            "failed": self.failed,
            "left_out": [{"path": p, "reason": why} for p, why in self.left_out],
            "plots": self.plots,
        }


#: Pair scores of an evaluation: what each key holds.
PAIR_SCORES = {"pce": "camera PCE", "ncc": "camera NCC", "z": "generator z = NCC*sqrt(D)"}


def _pair_keys(kind: str) -> tuple[str, ...]:
    return ("pce", "ncc") if kind == "camera" else ("z",)


def _deciding_key(s) -> str:
    return "z" if s.kind == "generator" else ("pce" if s.decided_by == "pce" else "ncc")


def per_image_row(res, label: str, refs: set[str]) -> dict:
    """One query's outcome: decision, correctness, and the scores that decided it.

    ``correct`` is the open-set verdict (the true source matched, or an unknown source rejected);
    ``top1_correct`` whether the closest reference is the true one (None for unknown sources);
    ``score`` / ``threshold`` the deciding statistic (``score_name``) of the reported reference
    (the match, else the closest); ``true_score`` that statistic against the true source.
    """
    known = label in refs
    shown = res.scores.get(res.best or res.closest) if (res.best or res.closest) else None
    true = res.scores.get(label)

    def value(s):
        if s is None:
            return None
        v = {"pce": s.pce, "ncc": s.ncc, "z": s.z}[_deciding_key(s)]
        return float(v) if v is not None and np.isfinite(v) else None

    def threshold(s):
        """The threshold on the deciding statistic: for generators the z threshold, i.e. the NCC
        threshold times sqrt(D), D = (z / NCC)**2 the values compared."""
        if s is None or not np.isfinite(s.threshold):
            return None
        if s.kind != "generator":
            return float(s.threshold)
        given = getattr(s, "z_threshold", None)
        if given is not None:
            return float(given)
        return float(s.threshold * s.z / s.ncc) if s.z is not None and s.ncc else None

    return {
        "image": res.image, "true_source": label, "known_source": known, "decision": res.best or UNKNOWN,
        "closest": res.closest, "correct": (res.best == label) if known else res.best is None,
        "top1_correct": (res.closest == label) if known else None,
        "score_name": _deciding_key(shown) if shown else None, "score": value(shown),
        "threshold": threshold(shown),
        "true_score": value(true), "note": shown.note if shown else None,
    }


def evaluate_results(results, labels: list[str], references: list[str]) -> EvaluationReport:
    """Metrics from Attribution results and their true labels.

    Pair scores (``report.pairs``) are kept per score (:data:`PAIR_SCORES`): camera PCE and NCC,
    generator z. A pair without a finite score (a query larger than a camera fingerprint) is not
    dropped silently: it is counted in ``report.dropped`` under its reason. ``report.operating``
    gives, per deciding score, the true- and false-positive rates of the decisions actually made
    (each pair at its own threshold, search-adjusted for cameras).
    """
    refs = set(references)
    cols = references + [UNKNOWN]
    rows = sorted(set(labels), key=lambda x: (x not in refs, x))
    confusion = {r: {c: 0 for c in cols} for r in rows}
    top1 = top1_total = open_ok = unk_ok = unk_total = 0
    pairs: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in PAIR_SCORES}
    dropped: dict[str, dict[str, int]] = {}
    decided: dict[str, list[int]] = {}  # key -> [matched matching, matching, matched non-matching, non-matching]
    per_image = []
    for res, label in zip(results, labels):
        per_image.append(per_image_row(res, label, refs))
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
            matching = name == label
            for key in _pair_keys(s.kind):
                v = getattr(s, key)
                if v is not None and np.isfinite(v):
                    pairs[key][0 if matching else 1].append(float(v))
                else:
                    reason = (s.note or "no score").split("; ")[0]
                    dropped.setdefault(key, {}).setdefault(reason, 0)
                    dropped[key][reason] += 1
            if np.isfinite(s.threshold):
                d = decided.setdefault(_deciding_key(s), [0, 0, 0, 0])
                d[0 if matching else 2] += bool(s.match)
                d[1 if matching else 3] += 1
    roc = {}
    for key, (pos, neg) in pairs.items():
        if pos and neg:
            roc[key] = {"auc": auc(pos, neg), "eer": eer(pos, neg), "n_matching": len(pos), "n_non_matching": len(neg)}
    operating = {k: {"tpr": d[0] / d[1] if d[1] else None, "fpr": d[2] / d[3] if d[3] else None,
                     "matched_matching": d[0], "n_matching": d[1], "matched_non_matching": d[2], "n_non_matching": d[3]}
                 for k, d in decided.items()}
    return EvaluationReport(references, labels, len(labels), top1, top1_total, open_ok, unk_ok, unk_total,
                            confusion, roc, pairs={k: v for k, v in pairs.items() if v[0] or v[1]},
                            per_image=per_image, dropped=dropped, operating=operating)


def threshold_rules(att) -> tuple[dict[str, str], dict[str, float | None]]:
    """The decision rules of an Attributor in words, and the base threshold of each score (for plots;
    None where the score has no threshold)."""
    from fingerprint.calibration import MIN_NULL_SCORES

    words, values = {}, {}
    if att.camera_names:
        base = att.pce_threshold
        if att.method == "pce":
            words["camera"] = (f"PCE >= {base:g} at one position, raised with the number of positions searched "
                               "(crop search, rotations, second residual, scales) to keep its false-alarm rate")
            values["pce"] = base
        else:
            words["camera"] = f"NCC >= sqrt(tau / pixels), tau the PCE threshold ({base:g} at one position) of the search"
    models = getattr(att, "generator_models", None)
    if att.generators and models is not None:
        words["generator"] = (f"z = NCC*sqrt(D) above each generator's null for the query's size and hypothesis "
                              f"(aligned, crop search, resized fingerprint) at {models.fpr:g} false alarms per image, "
                              "within its leave-one-out genuine range, residual testable (texture gate)")
        values["z"] = None
    elif att.generators:
        g = att.generator_threshold
        if g is None or g.value is None:
            n = g.n_null if g is not None else 0
            words["generator"] = (f"none: uncalibrated ({n} non-matching scores, {MIN_NULL_SCORES} needed), so no "
                                  "generator is ever matched")
            values["z"] = None
        else:
            words["generator"] = (f"z = NCC*sqrt(D) >= {g.value:.2f} (given)" if g.source == "given"
                                  else g.describe())
            values["z"] = g.value
    return words, values


def evaluate_library(library, queries, *, crop=None, method: str = "pce", rotations: bool = True, fpr: float = 0.01,
                     query_sigma: float = 2.0,
                     plots: str | os.PathLike | None = None, progress: bool = True,
                     warn: Callable[[str], None] | None = None, recursive: bool = True,
                     generator_threshold: float | None = None, backend: str = "auto",
                     transform=None, seed: int = 0, scale_search: bool = True,
                     min_scale: float | None = None) -> EvaluationReport:
    """Attribute every labelled query against ``library`` and compute the metrics (and plots).

    ``report.failed`` lists the query files that could not be read (each also passed to ``warn``),
    ``report.left_out`` the files the folder search passed over, ``report.per_image`` one row per
    scored query (see :func:`write_per_image`). ``generator_threshold``: a z threshold instead of
    the library's calibrated one. ``backend``: as in :class:`~fingerprint.attribution.Attributor`
    ("auto", "cpu", "cuda"; resolved once). Plots: ``roc.png`` (log false-positive axis, the
    operating points of the decisions marked), ``scores.png`` (thresholds marked with their value),
    ``confusion.png``. ``transform``: a ``fingerprint.transforms`` pipeline (or its text, e.g.
    ``"resize:0.5+jpeg:75"``) applied in memory to every query before it is scored (random crops
    seeded per image from ``seed``, :func:`~fingerprint.transforms.image_rng`); see
    :func:`evaluate_conditions` for several.
    """
    import sys

    from fingerprint.io.metadata import file_jpeg_quality
    from fingerprint.jpeg_residual import grid_from_tables, read_jpeg_grid
    from fingerprint.transforms import Pipeline, apply_pipeline, image_rng, parse_pipeline

    pipeline = None if transform is None else transform if isinstance(transform, Pipeline) else parse_pipeline(transform)

    from tqdm import tqdm

    from fingerprint.attribution import load_attributor
    from fingerprint.io import iter_images

    pairs, left_out = labelled_queries(queries, recursive=recursive)
    scaled = {"scale_search": scale_search} | ({"min_scale": min_scale} if min_scale is not None else {})
    # every camera scored exactly (no digest pre-selection): the ROC and the closed-set answer need every score
    att = load_attributor(library, method=method, rotations=rotations, fpr=fpr, query_sigma=query_sigma,
                          generator_threshold=generator_threshold, backend=backend, preselect=False, **scaled)
    references = att.camera_names + [g.name for g in att.generators]
    results, labels, failed = [], [], []
    loaded = iter_images((path for path, _ in pairs), crop=crop)
    desc = "evaluate" if pipeline is None or not pipeline.steps else f"evaluate {pipeline.spec()}"
    for index, ((path, label), item) in enumerate(tqdm(zip(pairs, loaded), total=len(pairs), desc=desc, unit="img",
                                                       file=sys.stderr, disable=None if progress else True,
                                                       leave=False)):
        try:
            if item.error is not None:
                raise item.error
            image, quality, jpeg = item.image, None, None
            if pipeline is not None and pipeline.steps:
                try:
                    t = apply_pipeline(image, pipeline, image_rng(seed, index))
                except ValueError as err:  # e.g. a crop larger than this query
                    raise InvalidImageError(f"cannot apply {pipeline.spec()!r}: {err}", path=path) from None
                image, quality = t.image, t.jpeg_quality if t.quantization is not None else None
                jpeg = grid_from_tables(t.quantization)
            else:
                quality, jpeg = file_jpeg_quality(path), read_jpeg_grid(path, crop)
            if getattr(att, "generator_models", None) is None:  # the library-wide generator threshold reads no quality
                quality = None
            results.append(att.score(image, str(path), quality, jpeg=jpeg))  # a refusal names the file: its label
            labels.append(label)
        except GanprintError as err:  # "<path>: <problem>"
            failed.append(str(err))
            if warn:
                warn(str(err))
    if not results:
        raise InvalidImageError(f"{queries}: no query could be scored")
    report = evaluate_results(results, labels, references)
    report.failed = failed
    report.left_out = [(str(p), why) for p, why in left_out]
    report.thresholds, report.threshold_values = threshold_rules(att)
    if plots:
        from fingerprint.plots import plot_confusion, plot_roc, plot_score_distributions

        out = Path(plots)
        out.mkdir(parents=True, exist_ok=True)
        names = {k: PAIR_SCORES[k] for k in report.pairs}
        points = {k: (o["fpr"], o["tpr"]) for k, o in report.operating.items()
                  if k in report.roc and o["fpr"] is not None and o["tpr"] is not None}
        report.plots = [
            str(plot_roc(roc_curves(report.pairs), out / "roc.png", names=names, operating=points)),
            str(plot_score_distributions(report.pairs, out / "scores.png", report.threshold_values, names=names)),
            str(plot_confusion(report.confusion, out / "confusion.png")),
        ]
    return report


def evaluate_conditions(library, queries, conditions, **options) -> list[tuple[str, EvaluationReport]]:
    """:func:`evaluate_library` once per condition of ``conditions`` (text such as
    ``"none,jpeg:75,resize:0.5,crop:160"`` or a list of pipelines, ``transforms.parse_conditions``):
    ``[(condition, report), ...]`` in order. ``options`` as :func:`evaluate_library` (no ``plots``:
    one set of plots would be overwritten by the next condition)."""
    from fingerprint.transforms import parse_conditions

    if options.get("plots"):
        raise ValueError("plots are written for one condition at a time: evaluate the conditions one by one")
    return [(p.spec(), evaluate_library(library, queries, transform=p, **options)) for p in parse_conditions(conditions)]


def format_conditions(reports: list[tuple[str, EvaluationReport]], **options) -> str:
    """One summary line per condition, then each full report under its condition's title."""
    lines = ["condition: top-1 (closed set), open-set accuracy, unknown sources rejected"]
    for cond, r in reports:
        top1 = f"{r.top1_correct / r.top1_total:.1%}" if r.top1_total else "n/a"
        unk = f"{r.unknown_correct}/{r.unknown_total}" if r.unknown_total else "n/a"
        lines.append(f"  {cond}: {top1}, {r.open_set_correct / r.n_queries:.1%}, {unk}")
    for cond, r in reports:
        lines += ["", f"== {cond} ==", format_report(r, **options)]
    return "\n".join(lines)


PER_IMAGE_FIELDS = ("image", "true_source", "known_source", "decision", "closest", "correct", "top1_correct",
                    "score_name", "score", "threshold", "true_score", "note")


def write_per_image(report: EvaluationReport, path: str | os.PathLike) -> Path:
    """Write one row per scored query to ``path``: CSV (``.csv``) or JSON Lines (``.jsonl``).

    Columns: :data:`PER_IMAGE_FIELDS` (see :func:`per_image_row`); empty / null where a value
    does not exist (a threshold that was never reached because none exists, an unknown source's top-1).
    """
    import json

    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"{out}: the per-image file must end in .csv or .jsonl")
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        if suffix == ".csv":
            w = csv.DictWriter(fh, fieldnames=PER_IMAGE_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows({k: ("" if r.get(k) is None else r[k]) for k in PER_IMAGE_FIELDS} for r in report.per_image)
        else:
            for r in report.per_image:
                fh.write(json.dumps({k: r.get(k) for k in PER_IMAGE_FIELDS}, allow_nan=False) + "\n")
    tmp.replace(out)
    return out


def format_report(report: EvaluationReport, *, show: Callable[[str], str] = str, max_errors: int = 50) -> str:
    """A plain-text report: accuracy, thresholds, ROC and operating points, errors, confusion matrix.

    ``show`` formats every file path printed (the CLI passes one that escapes control
    characters); at most ``max_errors`` wrong decisions are listed (all are in the per-image file).
    """
    lines = []
    if report.top1_total:
        lines.append(f"top-1 accuracy (closed set): {report.top1_correct}/{report.top1_total} = "
                     f"{report.top1_correct / report.top1_total:.1%}")
    lines.append(f"open-set accuracy (match or unknown): {report.open_set_correct}/{report.n_queries} = "
                 f"{report.open_set_correct / report.n_queries:.1%}")
    if report.unknown_total:
        lines.append(f"unknown sources rejected: {report.unknown_correct}/{report.unknown_total}")
    for kind, rule in report.thresholds.items():
        lines.append(f"{kind} threshold: {rule}")
    for key, r in report.roc.items():
        lines.append(f"{PAIR_SCORES.get(key, key)}: ROC AUC {r['auc']:.4f}, EER {r['eer']:.2%} "
                     f"({r['n_matching']} matching, {r['n_non_matching']} non-matching pairs)")
    for key, o in report.operating.items():
        parts = []
        if o["n_matching"]:
            parts.append(f"{o['matched_matching']}/{o['n_matching']} matching pairs matched (TPR {o['tpr']:.1%})")
        if o["n_non_matching"]:
            parts.append(f"{o['matched_non_matching']}/{o['n_non_matching']} non-matching pairs matched "
                         f"(FPR {o['fpr']:.3%})")
        lines.append(f"  at the thresholds, {PAIR_SCORES.get(key, key)}: " + ", ".join(parts))
    for key, reasons in report.dropped.items():
        for reason, n in reasons.items():
            lines.append(f"  {n} pair(s) without a {PAIR_SCORES.get(key, key)} score, left out of its ROC: {reason}")
    wrong = [r for r in report.per_image if not r["correct"]]
    if wrong:
        lines.append("")
        lines.append(f"wrong decisions ({len(wrong)}; true source -> decision, closest reference, deciding score):")
        for r in wrong[:max_errors]:
            score = (f"{r['score_name'].upper() if r['score_name'] != 'z' else 'z'} {r['score']:.4g}"
                     if r["score"] is not None else "no score")
            lines.append(f"  {show(r['image'])}: {r['true_source']} -> {r['decision']}, closest {r['closest']}, {score}")
        if len(wrong) > max_errors:
            lines.append(f"  ... and {len(wrong) - max_errors} more (write them all with --per-image FILE)")
    cols = list(next(iter(report.confusion.values())).keys()) if report.confusion else []
    width = max([len(c) for c in cols] + [len(r) for r in report.confusion] + [8])
    lines.append("")
    lines.append("confusion (rows: true source, columns: decision)")
    short = [c[: width] for c in cols]
    lines.append(" " * width + " | " + " ".join(f"{c:>{min(width, 12)}.12}" for c in short))
    for r, row in report.confusion.items():
        lines.append(f"{r:<{width}} | " + " ".join(f"{row[c]:>{min(width, 12)}d}" for c in cols))
    if report.failed:
        lines.append("")
        lines.append(f"{len(report.failed)} query file(s) could not be read and are not counted above:")
        lines.extend(f"  {show(msg)}" for msg in report.failed)
    if report.left_out:
        lines.append("")
        lines.append(f"{len(report.left_out)} file(s) or folder(s) left out by the folder search:")
        lines.extend(f"  {show(p)} ({why})" for p, why in report.left_out)
    for p in report.plots:
        lines.append(f"plot: {show(p)}")
    return "\n".join(lines)
