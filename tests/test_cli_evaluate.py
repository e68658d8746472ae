"""``ganprint evaluate --transform``: one evaluation per condition through the command line."""

from __future__ import annotations

import json

import pytest

from fingerprint.cli import main
from test_evaluate import copy_queries
from test_reliability import small_library  # noqa: F401 - fixture


@pytest.fixture
def query_folder(small_library, tmp_path):
    library, queries = small_library
    return library, copy_queries(queries, tmp_path / "queries"), sum(len(v) for v in queries.values())


def test_evaluate_transform_conditions_json_and_per_image(query_folder, tmp_path, capsys):
    library, folder, n = query_folder
    out = tmp_path / "rows.jsonl"
    code = main(["evaluate", str(library), str(folder), "--no-rotations", "--quiet", "--json",
                 "--transform", "none,jpeg:90,crop:40@center", "--per-image", str(out)])
    assert code == 0
    got = json.loads(capsys.readouterr().out)
    assert [c["condition"] for c in got] == ["none", "jpeg:90", "crop:40@center"]
    assert all(c["report"]["n_queries"] == n for c in got)
    files = sorted(p.name for p in tmp_path.glob("rows.*.jsonl"))
    assert files == ["rows.crop_40@center.jsonl", "rows.jpeg_90.jsonl", "rows.none.jsonl"]
    assert sum(1 for _ in open(tmp_path / "rows.jpeg_90.jsonl")) == n


def test_evaluate_one_transform_is_a_plain_run_on_copies(query_folder, capsys):
    library, folder, n = query_folder
    assert main(["evaluate", str(library), str(folder), "--no-rotations", "--quiet", "--transform", "crop:40@center"]) == 0
    text = capsys.readouterr().out
    assert f"{n}" in text and "condition" not in text.splitlines()[0]


@pytest.mark.parametrize("bad", ["jpeg:101", "resize:0", "rotate:3", "none,,jpeg:75"])
def test_evaluate_bad_transform_is_a_usage_error(query_folder, bad, capsys):
    library, folder, _ = query_folder
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(library), str(folder), "--transform", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--transform" in err and "Traceback" not in err


def test_evaluate_several_conditions_refuse_plots(query_folder, tmp_path, capsys):
    library, folder, _ = query_folder
    code = main(["evaluate", str(library), str(folder), "--quiet", "--transform", "none,jpeg:90",
                 "--plots", str(tmp_path / "plots")])
    assert code == 1 and "--plots" in capsys.readouterr().err
