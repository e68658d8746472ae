"""Evaluation metrics, calibration thresholds, plots, the demo and the benchmark command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

from fingerprint.attribution import Attribution, ReferenceScore
from fingerprint.calibration import MIN_NULL_SCORES, threshold_from_null
from fingerprint.errors import InvalidImageError
from fingerprint.evaluate import (
    auc,
    eer,
    evaluate_library,
    evaluate_results,
    format_report,
    read_labelled_queries,
    roc_curve,
    roc_curves,
)
from test_reliability import small_library  # noqa: F401 - fixture


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


def test_roc_curves_are_roc_curve_and_auc_per_score():
    pairs = {"ncc": ([0.5, 0.6], [0.0, 0.55, -0.1]), "pce": ([], [1.0]), "z": ([3.0], [])}
    curves = roc_curves(pairs)
    assert list(curves) == ["ncc"]  # a score without both populations has no curve
    fpr, tpr, area = curves["ncc"]
    want_fpr, want_tpr = roc_curve(np.array([0.5, 0.6]), np.array([0.0, 0.55, -0.1]))
    np.testing.assert_array_equal(fpr, want_fpr)
    np.testing.assert_array_equal(tpr, want_tpr)
    assert area == auc([0.5, 0.6], [0.0, 0.55, -0.1]) == pytest.approx(naive_auc([0.5, 0.6], [0.0, 0.55, -0.1]))


def test_plots_import_nothing_of_ganprint():
    """evaluate imports plots, never the reverse (imports inside functions count)."""
    import ast

    import fingerprint.plots

    tree = ast.parse(Path(fingerprint.plots.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m.split(".")[0] in ("fingerprint", "kernels", "reference_db")}, modules


def copy_queries(queries, folder):
    """The small library's queries copied into ``folder``, one sub-folder per source (evaluate's layout)."""
    for camera, files in queries.items():
        (folder / camera).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, folder / camera / f.name)
    return folder


def test_evaluate_library_reports_unreadable_queries_by_file(small_library, tmp_path):
    """Queries that cannot be read or scored are listed (and warned about) once each, one line naming the file."""
    library, queries = small_library
    folder = copy_queries(queries, tmp_path / "queries")
    broken = folder / "camA" / "broken.png"
    broken.write_bytes(b"not a PNG")
    tiny = folder / "camB" / "tiny.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tiny)  # decodes, but too small for a residual
    warnings: list[str] = []
    report = evaluate_library(library, folder, rotations=False, progress=False, warn=warnings.append)
    n_good = sum(len(v) for v in queries.values())
    assert report.n_queries == n_good and report.top1_total == n_good
    assert warnings == report.failed and len(report.failed) == 2
    for path, message in zip((broken, tiny), report.failed):
        assert message.startswith(f"{path}: ") and message.count(str(path)) == 1 and "\n" not in message
    assert "too small" in report.failed[1]
    cropped = evaluate_library(library, folder, crop=(64, 64), rotations=False, progress=False, warn=None)
    assert cropped.n_queries == n_good and len(cropped.failed) == 2
    assert "smaller than the 64x64 crop" in cropped.failed[1]


def test_evaluate_conditions_scores_transformed_copies(small_library, tmp_path):
    """``--transform``: one report per condition, the copies made in memory; a crop that does not fit
    a query is a failure naming the file."""
    from fingerprint.evaluate import evaluate_conditions, format_conditions

    library, queries = small_library
    folder = copy_queries(queries, tmp_path / "queries")
    n = sum(len(v) for v in queries.values())
    side = min(min(Image.open(f).size) for v in queries.values() for f in v)
    reports = evaluate_conditions(library, folder, "none,jpeg:95,crop:32@center", rotations=False, progress=False)
    assert [c for c, _ in reports] == ["none", "jpeg:95", "crop:32@center"]
    plain = evaluate_library(library, folder, rotations=False, progress=False)
    assert reports[0][1].top1_correct == plain.top1_correct
    assert all(r.n_queries == n and not r.failed for _, r in reports)
    warnings: list[str] = []
    with pytest.raises(InvalidImageError, match="no query could be scored"):
        evaluate_library(library, folder, transform=f"crop:{side + 1}", progress=False, warn=warnings.append)
    assert len(warnings) == n and all(f"cannot apply 'crop:{side + 1}'" in m for m in warnings)
    text = format_conditions(reports[:2])
    assert "== jpeg:95 ==" in text and text.splitlines()[1].startswith("  none: ")
    with pytest.raises(ValueError):
        evaluate_conditions(library, folder, "jpeg:101", progress=False)


def test_plots_are_written(tmp_path):
    from fingerprint.plots import plot_confusion, plot_roc, plot_score_distributions, plot_spectra

    pairs = {"ncc": ([0.5, 0.6], [0.0, 0.1, -0.1]), "pce": ([100.0, 80.0], [1.0, -2.0, 3.0])}
    for path in (plot_roc(roc_curves(pairs), tmp_path / "roc.png"), plot_score_distributions(pairs, tmp_path / "s.png"),
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


_WARM_UP_CHILD = r"""
import json, sys
import numpy as np
from numba.core.registry import CPUDispatcher
from fingerprint.bench import warm_up
from fingerprint.build import build_fingerprint
from fingerprint.residual import extract_residual
from fingerprint.scores import pce
from fingerprint.digest import DigestIndex, make_digest
from kernels import digest_cpu, dwt_cpu, estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu
from kernels._jit import SizedKernel

def signatures():
    out = {}
    for mod in (digest_cpu, dwt_cpu, estimate_cpu, layout_cpu, spectral_cpu, wiener_cpu):
        for name, obj in vars(mod).items():
            key = mod.__name__ + "." + name
            if isinstance(obj, SizedKernel):
                out[key + ".parallel"] = sorted(map(str, obj.parallel.signatures))
                out[key + ".serial"] = sorted(map(str, obj.serial.signatures))
            elif isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                out[key] = sorted(map(str, obj.signatures))
    return out

seconds = warm_up()
after_warm_up = signatures()
# What load_image gives a command: uint8 or uint16, gray (C-contiguous) or RGB (strided channels),
# small (serial builds) or large (parallel builds); and the DWT of a second thread (serial levels).
rng = np.random.default_rng(1)
for shape in ((560, 480, 3), (560, 480), (40, 56, 3), (40, 56)):
    for dtype, top in ((np.uint8, 256), (np.uint16, 65536)):
        image = rng.integers(0, top, shape).astype(dtype)
        w = extract_residual(image)
        pce(w, build_fingerprint([image], "camera"))
        build_fingerprint([image], "generator")
with dwt_cpu._PARALLEL_LOCK:
    extract_residual(rng.integers(0, 256, (560, 480, 3)).astype(np.uint8))
for n_refs, size in ((3, 48), (30, 96)):  # digest pre-selection: serial and parallel builds, 1 and 2 residuals
    index = DigestIndex([make_digest(rng.standard_normal((size, size)).astype(np.float32)) for _ in range(n_refs)])
    q = rng.standard_normal((size, size)).astype(np.float32)
    index.scores(q)
    index.scores_many([q, q * 2])
print(json.dumps({"seconds": seconds, "after_warm_up": after_warm_up, "after_commands": signatures()}))
"""


def test_warm_up_compiles_every_kernel_build_a_command_uses():
    """``warm_up`` (``make install``) claims that afterwards no command compiles: in a fresh process,
    every parallel and serial build of every CPU kernel has its signatures after it, and running the
    pipeline on every kind of image a command can load (and from a second thread) adds none."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _WARM_UP_CHILD], capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["seconds"] > 0
    warm, used = report["after_warm_up"], report["after_commands"]
    entry = [k for k in warm if k.endswith((".parallel", ".serial"))]
    levels = ("_dwt2_level", "_dwt2_level_serial", "_idwt2_level", "_idwt2_level_serial")
    entry += [f"kernels.dwt_cpu.{n}" for n in levels]
    assert len(entry) == 2 * 14 + 4
    assert [k for k in entry if not warm[k]] == [], "kernel builds warm_up leaves uncompiled"
    compiled_later = {k: sorted(set(used[k]) - set(warm[k])) for k in used if set(used[k]) - set(warm.get(k, []))}
    assert compiled_later == {}, "signatures compiled after warm_up"
