"""``ganprint bench --pipeline``: every stage a user pays for, one table or one JSON object, the
dominant stage named. Timings are never asserted (only that they exist and are consistent)."""

from __future__ import annotations

import io
import json
import math

import pytest

from fingerprint.bench import Stage, dominant_stages, run_pipeline_bench
from fingerprint.cli import main

SIZE = (64, 96)
STAGES = ("decode", "residual", "camera build", "generator build", "attribute vs {n} cameras: aligned",
          "attribute vs {n} cameras: crop search", "attribute vs {n} cameras: rotations + sigma-5 retry",
          "attribute vs {n} generators", "PCE, aligned", "PCE, crop search", "NCC matrix")


@pytest.fixture(scope="module")
def pipeline():
    buf = io.StringIO()
    result = run_pipeline_bench([SIZE], references=2, repeat=1, out=buf)
    return result, buf.getvalue()


def test_every_stage_is_measured_once_per_size(pipeline):
    result, _ = pipeline
    rows = result["rows"]
    for stage in STAGES:
        assert sum(r["stage"].startswith(stage.format(n=2)) for r in rows) == 1, stage
    for r in rows:
        assert r["size"] == list(SIZE)
        assert r["seconds"] > 0 and math.isfinite(r["rate"]) and r["rate"] > 0
    attribute = [r for r in rows if r["stage"].startswith("attribute")]
    assert {r["unit"] for r in attribute} == {"query"} and all("vs 2 " in r["stage"] for r in attribute)
    ncc = next(r for r in rows if "NCC matrix" in r["stage"])
    assert ncc["rate_unit"] == "pairs/s" and ncc["rate"] == pytest.approx(8 * 2 / ncc["seconds"])


def test_table_and_dominant_sentences(pipeline):
    result, text = pipeline
    lines = text.splitlines()
    assert lines[0].startswith("# pipeline stages") and "2 references" in lines[0]
    table = [line for line in lines if line.startswith("| 64x96 |")]
    assert len(table) == len(result["rows"])
    assert len(result["dominant"]) == 2 and all("dominates" in d for d in result["dominant"])
    assert all(f"# {d}" in lines for d in result["dominant"])


def test_dominant_stage_is_the_largest_share():
    def row(stage, seconds):
        return Stage((100, 100), stage, "image", seconds, 0.01, "MP/s")

    rows = [row("decode (JPEG file, load_image)", 0.1), row("residual (query, sigma 2)", 0.2),
            row("camera build, per image", 0.5),
            row("attribute vs 6 cameras: rotations + sigma-5 retry (defaults, no match)", 1.4)]
    build, attribute = dominant_stages(rows)
    assert build.startswith("100x100 camera build, per image: 0.600 s") and "camera build dominates (83%)" in build
    # 1.4 s of attribution = 2 residuals (0.4 s) + 1.0 s of PCE: the PCE part dominates 1.5 s in all
    assert "1.500 s" in attribute and "PCE over rotations and retry dominates (67%)" in attribute
    assert "inconsistent" not in attribute
    rows[-1] = row(rows[-1].stage, 0.3)  # faster than its own two residuals: a busy machine, said so
    assert "inconsistent timings" in dominant_stages(rows)[1]


def test_cli_pipeline_json(capsys):
    code = main(["bench", "--pipeline", "--sizes", "64x96", "--references", "1", "--repeat", "1", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["benchmark"] == "pipeline" and result["references"] == 1
    assert len(result["rows"]) == len(STAGES)


@pytest.mark.parametrize("args", [["--sizes", "512"], ["--sizes", "8x8"], ["--sizes", ""], ["--repeat", "0"],
                                  ["--repeat", "x"], ["--pipeline", "--references", "0"]])
def test_bad_bench_options_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(["bench", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err and "ganprint bench: error:" in err


def test_api_refuses_bad_arguments():
    with pytest.raises(ValueError, match="no image sizes"):
        run_pipeline_bench([], out=io.StringIO())
    with pytest.raises(ValueError, match="references"):
        run_pipeline_bench([SIZE], references=0, out=io.StringIO())
    with pytest.raises(ValueError, match="repeat"):
        run_pipeline_bench([SIZE], repeat=0, out=io.StringIO())
