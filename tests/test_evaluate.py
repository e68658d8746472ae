"""Evaluation metrics, calibration thresholds, plots, the demo and the benchmark command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from fingerprint.attribution import Attribution, ReferenceScore
from fingerprint.calibration import MIN_NULL_SCORES, threshold_from_null
from fingerprint.evaluate import auc, eer, evaluate_results, format_report, read_labelled_queries, roc_curve


def naive_auc(pos, neg):
    """P(pos > neg) + P(pos == neg) / 2 over all pairs."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean(p > n) + 0.5 * np.mean(p == n))


def test_auc_matches_pairwise_definition(rng):
    pos = rng.normal(1, 1, 40).round(1)
    neg = rng.normal(0, 1, 70).round(1)  # rounding makes ties
    assert auc(pos, neg) == pytest.approx(naive_auc(pos, neg))
    assert auc([2, 3], [0, 1]) == 1.0 and auc([0, 1], [2, 3]) == 0.0


def test_eer_and_roc():
    assert eer([1, 2, 3], [-3, -2, -1]) == 0.0
    pos, neg = np.arange(10.0), np.arange(10.0) + 0.5  # half overlap
    e = eer(pos, neg)
    assert 0.4 < e < 0.6
    fpr, tpr = roc_curve(np.array([1.0, 2.0]), np.array([0.0]))
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1


def test_threshold_from_null_is_at_least_the_quantile_and_the_normal_fit(rng):
    null = rng.normal(0, 1, 2000)
    t = threshold_from_null(null, 0.01)
    assert t.value >= np.quantile(null, 0.99) - 1e-12
    assert t.value == pytest.approx(norm.ppf(0.99), abs=0.15)
    assert np.mean(null >= t.value) <= 0.011
    few = threshold_from_null(null[: MIN_NULL_SCORES - 1])
    assert few.value is None and "uncalibrated" in few.describe()
    with pytest.raises(ValueError):
        threshold_from_null(null, 1.5)


def _res(label, best, closest, scores):
    return Attribution(label, best, "match" if best else "unknown",
                       {n: ReferenceScore(n, "camera", v / 100, v, "pce", 60.0, v >= 60) for n, v in scores.items()},
                       closest)


def test_evaluate_results_counts_open_and_closed_set():
    results = [
        _res("a1", "A", "A", {"A": 100, "B": 1}),
        _res("b1", None, "B", {"A": 2, "B": 30}),     # right camera, below threshold
        _res("x1", None, "A", {"A": 5, "B": 3}),      # unknown source, rejected
        _res("x2", "B", "B", {"A": 1, "B": 70}),      # unknown source, false match
    ]
    rep = evaluate_results(results, ["A", "B", "X", "X"], ["A", "B"])
    assert (rep.top1_correct, rep.top1_total) == (2, 2)
    assert rep.open_set_correct == 2 and (rep.unknown_correct, rep.unknown_total) == (1, 2)
    assert rep.confusion["B"]["unknown"] == 1 and rep.confusion["X"]["B"] == 1
    assert rep.roc["pce"]["auc"] == pytest.approx(naive_auc([100, 30], [1, 2, 5, 3, 1, 70]))
    text = format_report(rep)
    assert "top-1 accuracy" in text and "unknown sources rejected: 1/2" in text


def test_read_labelled_queries_folder_and_csv(tmp_path):
    from PIL import Image

    for label in ("cam1", "cam2"):
        (tmp_path / "q" / label).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "q" / label / "x.png")
    pairs = read_labelled_queries(tmp_path / "q")
    assert [lab for _, lab in pairs] == ["cam1", "cam2"]
    csv = tmp_path / "q.csv"
    csv.write_text("path,label\nq/cam1/x.png,cam1\n")
    assert read_labelled_queries(csv) == [(tmp_path / "q/cam1/x.png", "cam1")]
    with pytest.raises(ValueError, match="no such"):
        read_labelled_queries(tmp_path / "missing")


def test_plots_are_written(tmp_path):
    from fingerprint.plots import plot_confusion, plot_roc, plot_score_distributions, plot_spectra

    pairs = {"ncc": ([0.5, 0.6], [0.0, 0.1, -0.1]), "pce": ([100.0, 80.0], [1.0, -2.0, 3.0])}
    for path in (plot_roc(pairs, tmp_path / "roc.png"), plot_score_distributions(pairs, tmp_path / "s.png"),
                 plot_confusion({"A": {"A": 2, "unknown": 0}}, tmp_path / "c.png"),
                 plot_spectra({"g": np.random.default_rng(0).standard_normal((3, 32, 32))}, tmp_path / "sp.png")):
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_demo_reduced_size(tmp_path, capsys):
    from fingerprint.demo import run_demo

    metrics = run_demo(tmp_path / "demo", size=128, progress=False)
    out = capsys.readouterr().out
    assert "accuracy" in out and "unknown sources rejected" in out
    assert (tmp_path / "demo" / "library.h5").is_file()
    lines = (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    assert len(lines) == metrics["n_queries"] and json.loads(lines[0])["decision"] in ("match", "unknown")
    assert len(list((tmp_path / "demo" / "plots").glob("*.png"))) == 4
    assert metrics["top1_accuracy"] >= 0.9  # simulated sources are easy; a broken pipeline is not
    assert metrics["unknown_rejected"] >= 0.8 * metrics["unknown_total"]


def test_demo_refuses_a_foreign_folder(tmp_path):
    from fingerprint.demo import run_demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a ganprint demo folder"):
        run_demo(tmp_path, size=128, progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_bench_runs_and_reports_a_ratio():
    import io

    from fingerprint.bench import run_bench

    buf = io.StringIO()
    rows = run_bench([(64, 96)], repeat=1, out=buf)
    assert rows[0]["ganprint"]["best_s"] > 0 and rows[0]["plain"]["best_s"] > 0
    assert "| 64x96 | ganprint |" in buf.getvalue()


def test_warm_up_runs_every_pipeline_stage():
    from fingerprint.bench import warm_up

    assert warm_up() > 0
