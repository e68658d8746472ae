"""What an analyst expects from the command line (issue 17, and the CLI items of issue 13):
case folders (nested, mixed names, files chosen by content), honest thresholds and statistics,
a header and a summary, escaped file names, strict JSON, quiet broken pipes, usage errors that
exit 2, an evaluation that says which image went wrong, and a README whose commands parse.

Everything goes through ``fingerprint.cli.main`` (in-process) or the installed ``ganprint``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fingerprint.cli import EXIT_ERROR, EXIT_OK, EXIT_PIPE, main
from test_reliability import ganprint_command
from test_reliability import copy_library

SIDE = 192  # fingerprints are SIDE x SIDE
CROP_AT = (20, 30)  # row, column of the cropped query inside the sensor
README = Path(__file__).resolve().parents[1] / "README.md"


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip() and not line.startswith("#")]


def strict_json(line: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A library (cameras camA, camB; generator gen1) and a case folder as it comes off a disk."""
    from fingerprint.synthetic import make_camera, make_generator

    root = tmp_path_factory.mktemp("habits")
    library = root / "lib.h5"
    for name, seed in (("camA", 11), ("camB", 12)):
        cam = make_camera(name, seed, shape=(SIDE, SIDE), prnu_std=0.02)
        flats = root / "build" / name
        flats.mkdir(parents=True)
        for i, im in enumerate(cam.images(16, seed=1, flat=True)):
            Image.fromarray(im).save(flats / f"flat{i}.png")
        assert main(["build", str(library), "--name", name, "--kind", "camera", "--quiet", str(flats)]) == EXIT_OK
        if name == "camA":
            photos = list(cam.images(3, seed=2))
    gen = make_generator("gen1", "transposed_conv", 1, out_size=SIDE)
    samples = root / "build" / "gen1"
    samples.mkdir(parents=True)
    for i, im in enumerate(gen.images(12, seed=1)):
        Image.fromarray(im).save(samples / f"s{i}.png")
    folder = root / "case"
    (folder / "camA" / "sub").mkdir(parents=True)
    (folder / "gen1").mkdir()
    (folder / "big").mkdir()
    Image.fromarray(photos[0]).save(folder / "camA" / "IMG_0001", format="JPEG", quality=92)  # no extension
    Image.fromarray(photos[0]).save(folder / "camA" / "sub" / "photo.jfif", format="JPEG", quality=90)
    Image.fromarray(np.rot90(photos[1], -1).copy()).save(folder / "camA" / "rot.jpg", quality=92)  # turned clockwise
    r, c = CROP_AT
    Image.fromarray(photos[2][r : r + 64, c : c + 64].copy()).save(folder / "camA" / "crop.png")
    Image.fromarray(next(iter(gen.images(1, seed=2)))).save(folder / "gen1" / "s0.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (SIDE + 8, SIDE - 16, 3), dtype=np.uint8)).save(folder / "big" / "huge.png")
    (folder / "notes.txt").write_text("seized 2024-05-01, exhibit 7\n")
    (folder / "gen1" / "._s0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble
    return library, samples, folder


@pytest.fixture(scope="module")
def one_generator_library(case, tmp_path_factory):
    """camA + camB + the single generator gen1: decided against its own null (the default null of
    simulated camera photos: a one-generator library needs no calibration)."""
    library, samples, _ = case
    lib = tmp_path_factory.mktemp("onegen") / "lib.h5"
    copy_library(library, lib)
    code = main(["build", str(lib), "--name", "gen1", "--kind", "generator", "--quiet", str(samples)])
    assert code == EXIT_OK
    return lib


# ----------------------------------------------------------------------------------------------------
# A case folder end to end, read without opening the JSON
# ----------------------------------------------------------------------------------------------------

def test_case_folder_end_to_end(capsys, one_generator_library, case):
    _, _, folder = case
    code, out, err = cli(capsys, "attribute", one_generator_library, folder, "--quiet")
    assert code == EXIT_OK and err == ""
    lines = out.splitlines()
    assert lines[0] == "# image\tdecision\tscore vs threshold\tnotes"
    got = {Path(r.split("\t")[0]).relative_to(folder).as_posix(): r.split("\t")[1:] for r in rows(out)}
    assert sorted(got) == ["big/huge.png", "camA/IMG_0001", "camA/crop.png", "camA/rot.jpg", "camA/sub/photo.jfif",
                           "gen1/s0.png"]
    for name in ("camA/IMG_0001", "camA/sub/photo.jfif", "camA/rot.jpg", "camA/crop.png"):
        assert got[name][0] == "camA", (name, got[name])
        assert re.fullmatch(r"PCE \d+\.\d >= \d+\.\d", got[name][1]), got[name]
    assert "turned 90 deg counter-clockwise" in got["camA/rot.jpg"][2]
    assert f"at row {CROP_AT[0]}, column {CROP_AT[1]}" in got["camA/crop.png"][2]
    assert got["gen1/s0.png"][0] == "gen1" and got["gen1/s0.png"][1].startswith("z "), got["gen1/s0.png"]
    huge = "\t".join(got["big/huge.png"])
    assert f"not compared with camA, camB: query {SIDE + 8}x{SIDE - 16} is larger than the fingerprint" in huge
    assert "inf" not in out.replace("information", "").replace("informative", "")
    summary = [line for line in lines if line.startswith("# ") and line != lines[0]]
    assert summary[0] == ("# 6 images: 5 matched (cameras 4, generators 1), 1 unknown, 0 unreadable; 2 file(s) in "
                          "the folders left out (listed below)")
    left = summary[1:]
    assert left == [f"# left out: {folder / 'gen1' / '._s0.png'} (hidden file, not an image: content is not JPEG, "
                    "PNG, TIFF, BMP or WebP)",
                    f"# left out: {folder / 'notes.txt'} (not an image: content is not JPEG, PNG, TIFF, BMP or WebP)"]


def test_no_recursive_reports_the_sub_folder(capsys, case):
    library, _, folder = case
    code, out, err = cli(capsys, "attribute", library, folder / "camA", "--quiet", "--no-recursive")
    assert code == EXIT_OK
    names = sorted(Path(r.split("\t")[0]).name for r in rows(out))
    assert names == ["IMG_0001", "crop.png", "rot.jpg"]
    assert f"# left out: {folder / 'camA' / 'sub'} (folder not searched: --no-recursive)" in out.splitlines()
    code, out, err = cli(capsys, "attribute", library, folder, "--quiet", "--no-recursive")
    assert code == EXIT_ERROR and rows(out) == []
    assert "no images in folder" in err and "sub-folder(s) not searched (--no-recursive)" in err


def test_build_reports_how_generators_are_decided(capsys, case, tmp_path):
    library, samples, _ = case
    lib = tmp_path / "lib.h5"
    copy_library(library, lib)
    code, out, err = cli(capsys, "build", lib, "--name", "gen1", "--kind", "generator", "--quiet", samples)
    assert code == EXIT_OK
    line = out.splitlines()[1]
    assert re.fullmatch(r"generator decision: each of 1 generator\(s\) against its own null \((\d+) non-matching "
                        r"scores: simulated camera photos, .*\) at 0\.01 false alarms per image", line), line
    assert int(line.split("(")[2].split()[0]) >= 20


# ----------------------------------------------------------------------------------------------------
# Thresholds are named by what they are, and validated
# ----------------------------------------------------------------------------------------------------

def test_generator_z_decides_and_is_printed(capsys, one_generator_library, case):
    _, _, folder = case
    code, out, err = cli(capsys, "attribute", one_generator_library, folder / "gen1" / "s0.png", "--quiet",
                         "--generator-z", "3.1")
    assert code == EXIT_OK and err == ""
    (row,) = rows(out)
    assert re.fullmatch(r".*\tgen1\tz \d+\.\d\d >= 3\.10 \(NCC 0\.\d{4}\)", row), row


def test_small_generator_z_warns_with_the_false_positive_rate(capsys, one_generator_library, case):
    _, _, folder = case
    code, out, err = cli(capsys, "attribute", one_generator_library, folder / "camA" / "rot.jpg", "--quiet",
                         "--generator-z", "0.05")
    assert code == EXIT_OK
    assert "--generator-z 0.05 accepts about 48% of non-matching" in err


def test_ncc_threshold_is_refused_with_the_new_name(capsys):
    with pytest.raises(SystemExit) as info:
        main(["attribute", "lib.h5", "x.png", "--ncc-threshold", "0.05"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--generator-z" in err and "Traceback" not in err


BAD_VALUES = [
    *[["attribute", "lib.h5", "x.png", "--pce-threshold", v] for v in ("0", "-1", "nan", "inf", "-inf")],
    *[["attribute", "lib.h5", "x.png", "--generator-z", v] for v in ("0", "-2", "nan", "inf")],
    *[["attribute", "lib.h5", "x.png", "--fpr", v] for v in ("0", "0.999999", "1.5", "nan", "-0.01")],
    *[["attribute", "lib.h5", "x.png", "--sigma", v] for v in ("1e300", "1e-30", "0", "nan")],
    *[["build", "lib.h5", "--name", "a", "--kind", "camera", "x.png", "--sigma", v] for v in ("1e300", "1e-30", "-3")],
    *[["evaluate", "lib.h5", "q/", opt, v] for opt, v in (("--fpr", "0.9"), ("--sigma", "500"))],
]


@pytest.mark.parametrize("args", BAD_VALUES, ids=[" ".join(a[-2:]) + f" ({a[0]})" for a in BAD_VALUES])
def test_out_of_range_values_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"ganprint {args[0]}: error: argument")


# ----------------------------------------------------------------------------------------------------
# Output: strict JSON, escaped names, broken pipes
# ----------------------------------------------------------------------------------------------------

def test_json_has_no_infinity_and_says_why(capsys, one_generator_library, case):
    _, _, folder = case
    code, out, err = cli(capsys, "attribute", one_generator_library, folder / "big" / "huge.png", "--quiet", "--json")
    assert code == EXIT_OK and "Infinity" not in out and "NaN" not in out
    (line,) = out.splitlines()
    res = strict_json(line)
    for cam in ("camA", "camB"):
        assert res["scores"][cam]["threshold"] is None and "larger than the fingerprint" in res["scores"][cam]["note"]
    gen = res["scores"]["gen1"]
    assert gen["match"] is False and 0 < gen["threshold"] < 1 and res["decision"] == "unknown"  # an NCC threshold


def test_list_json_lines_are_strict_json(capsys, one_generator_library):
    code, out, err = cli(capsys, "list", one_generator_library, "--json")
    assert code == EXIT_OK
    assert sorted(strict_json(line)["name"] for line in out.splitlines()) == ["camA", "camB", "gen1"]


def test_a_file_name_cannot_forge_a_result_line(capsys, case, tmp_path):
    library, _, folder = case
    evil = tmp_path / "evil\tcamB\tPCE 9999.0 >= 60.0\nforged.png"
    shutil.copyfile(folder / "camA" / "crop.png", evil)
    bad = tmp_path / "bad\x1b[2Jname\n.png"
    bad.write_bytes(b"not an image")
    code, out, err = cli(capsys, "attribute", library, tmp_path, "--quiet")
    assert code == EXIT_ERROR
    (row,) = rows(out)
    assert row.startswith(str(tmp_path) + "/evil\\tcamB\\tPCE 9999.0 >= 60.0\\nforged.png\t")
    assert row.split("\t")[1] == "camA"
    (warning,) = err.splitlines()
    assert "bad\\x1b[2Jname\\n.png" in warning and "\x1b" not in warning


def test_backslashes_are_doubled_so_escapes_are_unambiguous():
    from fingerprint.cli_text import printable

    assert printable("a\\tb") == "a\\\\tb" and printable("a\tb") == "a\\tb"
    assert printable("x\u202ey") == "x\\u202ey"  # a bidirectional override cannot reverse the line


def test_broken_pipe_is_quiet(case):
    """stdout whose reader has already gone: exit 141, nothing on stderr."""
    library, _, folder = case
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([*ganprint_command(), "attribute", str(library), str(folder / "camA"), "--quiet"],
                          stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write_end)
    assert proc.returncode == EXIT_PIPE == 141
    assert proc.stderr == ""


def test_broken_pipe_in_process(capsys, monkeypatch, case):
    import io
    import sys

    library, _, folder = case

    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["attribute", str(library), str(folder / "camA" / "crop.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_PIPE and err == ""


# ----------------------------------------------------------------------------------------------------
# evaluate: per-image results, thresholds, what was dropped, exit status, plots
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled(case, tmp_path_factory):
    _, _, folder = case
    q = tmp_path_factory.mktemp("labelled")
    shutil.copytree(folder / "camA", q / "camA")
    shutil.copytree(folder / "gen1", q / "gen1")
    (q / "elsewhere").mkdir()
    shutil.copyfile(folder / "big" / "huge.png", q / "elsewhere" / "huge.png")
    (q / "camA" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (q / "README.txt").write_text("labels are sub-folder names")
    return q


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_evaluate_per_image_thresholds_and_exit_status(capsys, one_generator_library, labelled, tmp_path, suffix):
    import csv

    per_image = tmp_path / f"results{suffix}"
    code, out, err = cli(capsys, "evaluate", one_generator_library, labelled, "--quiet", "--per-image", per_image)
    assert code == EXIT_ERROR  # broken.jpg could not be read; the report is printed all the same
    assert f"{labelled / 'camA' / 'broken.jpg'}" in err
    assert "camera threshold: PCE >= 60 at one position" in out
    assert "generator threshold: z = NCC*sqrt(D) above each generator's null" in out
    assert "1 query file(s) could not be read and are not counted above:" in out
    assert "2 pair(s) without a camera PCE score, left out of its ROC: query 200x176 is larger" in out
    assert f"{labelled / 'README.txt'} (not in a per-source sub-folder)" in out
    assert f"{labelled / 'gen1' / '._s0.png'} (hidden file" in out
    wrong = out.split("wrong decisions (")[1].split("\n\n")[0].splitlines()[1:] if "wrong decisions (" in out else []
    assert not any(str(labelled / "gen1" / "s0.png") in w for w in wrong)  # gen1, by its own null
    if suffix == ".csv":
        with open(per_image, newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
    else:
        table = [strict_json(line) for line in per_image.read_text().splitlines()]
    assert len(table) == 6  # scored: 4 of camA (broken.jpg unreadable), s0.png, huge.png
    by_name = {Path(r["image"]).name: r for r in table}
    assert set(by_name) == {"IMG_0001", "photo.jfif", "rot.jpg", "crop.png", "s0.png", "huge.png"}
    assert str(by_name["rot.jpg"]["correct"]) == "True" and by_name["rot.jpg"]["decision"] == "camA"
    assert by_name["huge.png"]["true_source"] == "elsewhere" and str(by_name["huge.png"]["known_source"]) == "False"
    assert by_name["s0.png"]["decision"] == "gen1" and str(by_name["s0.png"]["correct"]) == "True"
    assert f"per-image results: {per_image}" in out


def test_evaluate_plots_log_roc_with_operating_point(capsys, monkeypatch, one_generator_library, labelled, tmp_path):
    """The ROC's false-positive axis is logarithmic and the decisions' operating point is labelled."""
    import fingerprint.plots as plots

    figures = []
    real = plots._plt

    class Recorder:
        def __init__(self, plt):
            self._plt = plt

        def __getattr__(self, name):
            return getattr(self._plt, name)

        def close(self, fig):
            figures.append(fig)

    monkeypatch.setattr(plots, "_plt", lambda: Recorder(real()))
    code, out, err = cli(capsys, "evaluate", one_generator_library, labelled, "--quiet", "--plots", tmp_path / "plots")
    assert code == EXIT_ERROR
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["confusion.png", "roc.png", "scores.png"]
    roc, scores, confusion = figures
    (ax,) = roc.axes
    assert ax.get_xscale() == "log" and ax.get_title()
    assert any(t.get_text().startswith("  at the threshold: FPR") for t in ax.get_legend().get_texts())
    pce_ax = scores.axes[0]
    assert pce_ax.get_xscale() == "symlog" and pce_ax.get_xlabel().startswith("PCE")
    assert any(t.get_text() == "threshold PCE 60 at one position" for t in pce_ax.get_legend().get_texts())
    assert all(a.get_title() and a.get_xlabel() and a.get_ylabel() for f in figures for a in f.axes)


# ----------------------------------------------------------------------------------------------------
# The README's commands are the ones the parser knows
# ----------------------------------------------------------------------------------------------------

def _readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("ganprint ")]


def test_readme_commands_parse():
    from fingerprint.cli import _parser

    commands = _readme_commands()
    assert len(commands) >= 10
    for line in commands:
        argv = shlex.split(line, comments=True)[1:]
        try:
            _parser().parse_args(argv)
        except SystemExit as exc:  # --version exits 0; a usage error exits 2
            assert exc.code == 0, line


def test_readme_states_the_exit_codes():
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "2 on bad command-line usage" in text and "141" in text and "1 with a one-line message" in text


# ----------------------------------------------------------------------------------------------------
# Rows of constructed results: every note that matters reaches the text
# ----------------------------------------------------------------------------------------------------

def _score(name, kind, **kw):
    from fingerprint.attribution import ReferenceScore

    base = dict(ncc=0.01, pce=None, decided_by="ncc" if kind == "generator" else "pce", threshold=60.0,
                match=False, rotation=0, offset=(0, 0), n_positions=1)
    return ReferenceScore(name, kind, **{**base, **kw})


def test_row_shows_the_retry_the_centred_region_and_the_z_threshold():
    from fingerprint.attribution import Attribution
    from fingerprint.cli_text import format_row

    cam = _score("camA", "camera", ncc=0.2, pce=512.0, threshold=87.3, match=True, rotation=270, offset=(744, 1248),
                 note="matched with the query residual at sigma 5")
    res = Attribution("q.jpg", "camA", "match", {"camA": cam}, "camA")
    assert format_row(res) == ("q.jpg\tcamA\tPCE 512.0 >= 87.3\tturned 270 deg counter-clockwise; "
                               "at row 744, column 1248; matched with the query residual at sigma 5")
    d = 10_000  # values compared: z = NCC * 100, the z threshold 3.1 is an NCC threshold of 0.031
    gen = _score("gen1", "generator", ncc=0.025, z=2.5, threshold=3.1 / np.sqrt(d), offset=None,
                 note="compared on the centred 100x100 region")
    res = Attribution("g.png", None, "unknown", {"gen1": gen}, "gen1")
    assert format_row(res) == ("g.png\tunknown (closest gen1)\tz 2.50 < 3.10 (NCC 0.0250)\t"
                               "compared on the centred 100x100 region")


def test_strict_json_of_a_result_without_threshold():
    from fingerprint.attribution import Attribution
    from fingerprint.cli_text import attribution_json, dumps

    cam = _score("camA", "camera", ncc=None, pce=None, threshold=float("inf"), n_positions=0)
    res = Attribution("q.jpg", None, "unknown", {"camA": cam}, None)
    d = strict_json(dumps(attribution_json(res)))
    assert d["scores"]["camA"]["threshold"] is None and d["scores"]["camA"]["note"]
    assert dumps({"x": float("nan"), "y": [1.0, float("-inf")]}) == '{"x": null, "y": [1.0, null]}'


def test_a_score_next_to_its_threshold_is_never_printed_equal_to_it():
    from fingerprint.attribution import Attribution
    from fingerprint.cli_text import format_row

    cam = _score("camA", "camera", ncc=0.1, pce=59.96, threshold=60.0, match=False)
    row = format_row(Attribution("q.jpg", None, "unknown", {"camA": cam}, "camA"))
    assert row.split("\t")[2] == "PCE 59.960 < 60.000"


def test_evaluate_generator_z_is_the_threshold_of_the_per_image_rows(capsys, one_generator_library, labelled, tmp_path):
    per_image = tmp_path / "r.jsonl"
    code, out, err = cli(capsys, "evaluate", one_generator_library, labelled, "--quiet", "--generator-z", "3.1",
                         "--per-image", per_image)
    assert code == EXIT_ERROR  # broken.jpg
    assert "generator threshold: z = NCC*sqrt(D) >= 3.10 (given)" in out
    (row,) = [r for r in map(strict_json, per_image.read_text().splitlines()) if r["image"].endswith("s0.png")]
    assert row["decision"] == "gen1" and row["correct"] is True and row["score_name"] == "z"
    assert row["threshold"] == pytest.approx(3.1) and row["score"] > 3.1
