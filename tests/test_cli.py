"""The ``ganprint`` command line: exit codes, one-line errors naming the file, no tracebacks.

Most tests call ``fingerprint.cli.main([...])`` in-process; a few run the installed ``ganprint``
as a subprocess. Every build/attribute call passes ``--quiet`` (no progress bar on stderr), so a
failure prints exactly one line per bad file. The bad-input table and the small library come
from ``tests/test_reliability.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest

import reference_db.durable as library_module
from fingerprint.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, main
from fingerprint.errors import LibraryNotFoundError
from test_reliability import (  # noqa: F401 - fixtures
    copy_library,
    BAD,
    CASES,
    ERR,
    LIBRARY_FAULTS,
    OK,
    SIZE,
    assert_one_line,
    case_dir,
    error_lines,
    library_copy,
    noise_pngs,
    run_ganprint,
    sha256_of,
    small_library,
    snapshot,
    temp_files,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # damaged TIFFs make Pillow warn


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``main`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stdout_rows(out: str) -> list[str]:
    """The result lines of stdout: not blank, not the '#' header or summary of ``attribute``."""
    return [line for line in out.splitlines() if line.strip() and not line.startswith("#")]


# ----------------------------------------------------------------------------------------------------
# The bad-input matrix through the CLI
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_attribute_one_file(capsys, small_library, case_dir, name):
    library, _ = small_library
    path = case_dir / name
    code, out, err = cli(capsys, "attribute", library, path, "--quiet")
    if CASES[name][2] == OK:
        assert code == EXIT_OK and err == ""
        (row,) = stdout_rows(out)
        assert row.startswith(f"{path}\t")
    else:
        assert code == EXIT_ERROR and stdout_rows(out) == []
        assert_one_line(err, path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_one_file_strict(capsys, library_copy, case_dir, name):
    path = case_dir / name
    before = sha256_of(library_copy)
    code, out, err = cli(capsys, "build", library_copy, "--name", "new", "--kind", "camera", "--quiet", "--strict", path)
    if CASES[name][3] == OK:
        assert code == EXIT_OK and err == ""
        assert "new: created camera fingerprint from 1 new image(s)" in out
        assert snapshot(library_copy)["new"][1] == 1
    else:
        assert code == EXIT_ERROR and out == ""
        assert_one_line(err, path)
        assert sha256_of(library_copy) == before


@pytest.mark.parametrize("name", BAD)
def test_build_one_bad_file(capsys, library_copy, case_dir, name):
    """Without --strict: the bad file's warning (naming it) and a closing error line; no traceback."""
    path = case_dir / name
    before = sha256_of(library_copy)
    code, out, err = cli(capsys, "build", library_copy, "--name", "new", "--kind", "camera", "--quiet", path)
    assert code == EXIT_ERROR and out == "" and "Traceback" not in err
    lines = error_lines(err)
    assert str(path) in lines[0] and 1 <= len(lines) <= 2
    assert all(line.startswith("ganprint: ") for line in lines)
    assert sha256_of(library_copy) == before


def test_build_size_mismatch_against_existing_reference(capsys, library_copy, case_dir):
    """Images of another size than the stored fingerprint: refused, naming the file and the fix."""
    before = sha256_of(library_copy)
    path = case_dir / "larger_than_fp_128x112.png"
    code, out, err = cli(capsys, "build", library_copy, "--name", "camA", "--kind", "camera", "--quiet", "--strict", path)
    assert code == EXIT_ERROR
    line = assert_one_line(err, path)
    assert "--crop" in line
    assert sha256_of(library_copy) == before
    # with --crop to the fingerprint's size the same file is accepted
    code, out, err = cli(capsys, "build", library_copy, "--name", "camA", "--kind", "camera", "--quiet",
                         "--crop", f"{SIZE}x{SIZE}", path)
    assert code == EXIT_OK, err
    assert snapshot(library_copy)["camA"][1] == 4


# ----------------------------------------------------------------------------------------------------
# Batches: one bad file does not stop the others unless --strict
# ----------------------------------------------------------------------------------------------------

def test_attribute_batch_with_one_bad_file(capsys, small_library, case_dir):
    library, files = small_library
    good1, good2 = files["camA"][0], files["camB"][0]
    bad = case_dir / "truncated.jpg"
    code, out, err = cli(capsys, "attribute", library, good1, bad, good2, "--quiet")
    assert code == EXIT_ERROR
    rows = stdout_rows(out)
    assert [r.split("\t")[0] for r in rows] == [str(good1), str(good2)]
    assert_one_line(err, bad)

    code, out, err = cli(capsys, "attribute", library, good1, bad, good2, "--quiet", "--strict")
    assert code == EXIT_ERROR
    assert [r.split("\t")[0] for r in stdout_rows(out)] == [str(good1)]  # stopped at the bad file
    assert_one_line(err, bad)


def test_attribute_batch_json(capsys, small_library, case_dir):
    library, files = small_library
    code, out, err = cli(capsys, "attribute", library, *files["camA"], case_dir / "empty.png", "--quiet", "--json")
    assert code == EXIT_ERROR
    rows = [json.loads(line) for line in stdout_rows(out)]
    assert [r["image"] for r in rows] == [str(p) for p in files["camA"]]
    assert_one_line(err, case_dir / "empty.png")


def test_attribute_batch_of_many_bad_files(capsys, small_library, case_dir):
    library, files = small_library
    bad = [case_dir / name for name in BAD if not (case_dir / name).is_dir()]
    code, out, err = cli(capsys, "attribute", library, files["camB"][1], *bad, "--quiet")
    assert code == EXIT_ERROR and len(stdout_rows(out)) == 1
    lines = error_lines(err)
    assert "Traceback" not in err and len(lines) == len(bad)
    for path, line in zip(bad, lines):
        assert str(path) in line


def test_attribute_batch_with_a_missing_file_goes_on(capsys, small_library, tmp_path):
    library, files = small_library
    code, out, err = cli(capsys, "attribute", library, tmp_path / "gone.png", files["camA"][0], "--quiet")
    assert len(stdout_rows(out)) == 1
    assert code == EXIT_ERROR
    assert_one_line(err, tmp_path / "gone.png")


def test_attribute_strict_stops_at_a_missing_file(capsys, small_library, tmp_path):
    library, files = small_library
    code, out, err = cli(capsys, "attribute", library, tmp_path / "gone.png", files["camA"][0], "--quiet", "--strict")
    assert code == EXIT_ERROR and stdout_rows(out) == []
    assert_one_line(err, tmp_path / "gone.png")


def test_attribute_batch_with_a_missing_file(capsys, small_library, tmp_path):
    library, files = small_library
    code, out, err = cli(capsys, "attribute", library, files["camA"][0], tmp_path / "gone.png", "--quiet")
    assert code == EXIT_ERROR
    assert_one_line(err, tmp_path / "gone.png")


def test_build_batch_skips_bad_files_unless_strict(capsys, library_copy, small_library, case_dir):
    folder = small_library[0].parent
    good = sorted(folder.glob("camB_flat*.png"))
    bad = [case_dir / "larger_than_fp_128x112.png", case_dir / "truncated.jpg"]
    before = sha256_of(library_copy)
    code, out, err = cli(capsys, "build", library_copy, "--name", "camC", "--kind", "camera", "--quiet", "--strict",
                         good[0], *bad, good[1])
    assert code == EXIT_ERROR and out == ""
    assert_one_line(err, bad[0])
    assert sha256_of(library_copy) == before

    code, out, err = cli(capsys, "build", library_copy, "--name", "camC", "--kind", "camera", "--quiet",
                         good[0], *bad, *good[1:])
    assert code == EXIT_ERROR
    assert out.strip() == f"camC: created camera fingerprint from {len(good)} new image(s), {len(good)} in total; 2 skipped"
    lines = error_lines(err)
    assert "Traceback" not in err and len(lines) == 2
    for path, line in zip(bad, lines):
        assert str(path) in line and line.endswith("; skipped")
    assert snapshot(library_copy)["camC"][1] == len(good)


def test_build_same_files_again_is_not_an_error(capsys, library_copy, small_library):
    flats = sorted(small_library[0].parent.glob("camA_flat*.png"))
    code, out, err = cli(capsys, "build", library_copy, "--name", "camA", "--kind", "camera", "--quiet", *flats)
    assert code == EXIT_OK and "nothing new to add" in out


# ----------------------------------------------------------------------------------------------------
# Library failures through the CLI
# ----------------------------------------------------------------------------------------------------

def _library_commands(library, query, images):
    return {
        "attribute": ["attribute", library, query, "--quiet"],
        "list": ["list", library],
        "build": ["build", library, "--name", "camC", "--kind", "camera", "--quiet", images],
        "remove": ["remove", library, "camA"],
        "rename": ["rename", library, "camA", "camZ"],
        "export": ["export", library, "camA", library.parent / "camA.npy"],
    }


@pytest.mark.parametrize("fault", sorted(LIBRARY_FAULTS))
def test_damaged_library(capsys, small_library, tmp_path, fault):
    source, files = small_library
    library = tmp_path / "refs.h5"
    LIBRARY_FAULTS[fault][0](library, source)
    before = sha256_of(library)
    images = noise_pngs(tmp_path / "imgs", 2, seed=1, size=SIZE)
    for command, args in _library_commands(library, files["camA"][0], images).items():
        code, out, err = cli(capsys, *args)
        assert code == EXIT_ERROR and out == "", command
        line = assert_one_line(err, library)
        assert line.startswith("ganprint: error: ")
    assert sha256_of(library) == before and not temp_files(library)
    assert not (tmp_path / "camA.npy").exists()


def test_missing_library(capsys, small_library, tmp_path):
    _, files = small_library
    library = tmp_path / "missing.h5"
    images = noise_pngs(tmp_path / "imgs", 2, seed=1, size=SIZE)
    commands = _library_commands(library, files["camA"][0], images)
    for command in ("attribute", "list", "remove", "rename", "export"):
        code, out, err = cli(capsys, *commands[command])
        assert code == EXIT_ERROR, command
        assert_one_line(err, library)
        assert not library.exists()
    nowhere = tmp_path / "no" / "such" / "folder" / "refs.h5"
    code, out, err = cli(capsys, "build", nowhere, "--name", "x", "--kind", "camera", "--quiet", images)
    assert code == EXIT_ERROR
    assert_one_line(err, nowhere)


def test_read_only_location(capsys, library_copy, small_library, monkeypatch, tmp_path):
    _, files = small_library
    before = sha256_of(library_copy)
    monkeypatch.setattr(library_module, "can_write", lambda path: False)
    images = noise_pngs(tmp_path / "imgs", 2, seed=1, size=SIZE)
    for command in ("build", "remove", "rename"):
        code, out, err = cli(capsys, *_library_commands(library_copy, files["camA"][0], images)[command])
        assert code == EXIT_ERROR
        assert "read-only" in assert_one_line(err, library_copy)
    code, out, err = cli(capsys, "attribute", library_copy, files["camA"][0], "--quiet")  # reading works
    assert code == EXIT_OK and len(stdout_rows(out)) == 1
    assert sha256_of(library_copy) == before


def test_disk_full(capsys, library_copy, monkeypatch, tmp_path):
    before = sha256_of(library_copy)

    def full(fd):  # the disk fills while a commit makes its new files durable
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(library_module, "fsync", full)
    images = noise_pngs(tmp_path / "imgs", 2, seed=1, size=SIZE)
    for args in (["build", library_copy, "--name", "camC", "--kind", "camera", "--quiet", images],
                 ["remove", library_copy, "camA"]):
        code, out, err = cli(capsys, *args)
        assert code == EXIT_ERROR
        line = assert_one_line(err, library_copy)
        assert "No space left on device" in line and "unchanged" in line
    assert sha256_of(library_copy) == before and not temp_files(library_copy)


def test_reference_errors(capsys, library_copy, tmp_path):
    code, out, err = cli(capsys, "remove", library_copy, "camZ")
    assert code == EXIT_ERROR and "camZ" in assert_one_line(err, library_copy)
    code, out, err = cli(capsys, "rename", library_copy, "camA", "camB")
    assert code == EXIT_ERROR and "camB" in assert_one_line(err)
    code, out, err = cli(capsys, "export", library_copy, "camA", tmp_path / "out.txt")
    assert code == EXIT_ERROR and assert_one_line(err, tmp_path / "out.txt")
    code, out, err = cli(capsys, "export", library_copy, "camA", tmp_path / "no" / "dir" / "out.npy")
    assert code == EXIT_ERROR and assert_one_line(err, tmp_path / "no" / "dir")
    code, out, err = cli(capsys, "build", library_copy, "--name", "camA", "--kind", "generator", "--quiet", tmp_path)
    assert code == EXIT_ERROR and assert_one_line(err)


def test_export_round_trip(capsys, library_copy, tmp_path):
    out_path = tmp_path / "camA.npy"
    code, out, err = cli(capsys, "export", library_copy, "camA", out_path)
    assert code == EXIT_OK and np.load(out_path).shape == (SIZE, SIZE)


# ----------------------------------------------------------------------------------------------------
# Interrupts, usage errors, --debug
# ----------------------------------------------------------------------------------------------------

def test_keyboard_interrupt_in_process(capsys, library_copy, small_library, monkeypatch):
    import fingerprint.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fingerprint.build, "build_reference", interrupted)
    before = sha256_of(library_copy)
    code, out, err = cli(capsys, "build", library_copy, "--name", "x", "--kind", "camera", "--quiet",
                         small_library[1]["camA"][0])
    assert code == EXIT_INTERRUPTED == 130
    assert "interrupted" in assert_one_line(err)
    assert sha256_of(library_copy) == before


@pytest.mark.parametrize("kind", [SystemError, OSError])
def test_an_error_raised_by_an_interrupt_is_an_interrupt(capsys, library_copy, small_library, monkeypatch, kind):
    """A Ctrl-C inside a compiled extension (h5py's lock) comes back as ``SystemError: <cyfunction
    FastRLock.__exit__> returned a result with an exception set``, the interrupt as its cause: exit
    130 and "interrupted", not an internal error (seen once in three Ctrl-C 1 ms apart)."""
    import fingerprint.build

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ki:
            raise kind("<cyfunction FastRLock.__exit__> returned a result with an exception set") from ki

    monkeypatch.setattr(fingerprint.build, "build_reference", interrupted)
    before = sha256_of(library_copy)
    code, out, err = cli(capsys, "build", library_copy, "--name", "x", "--kind", "camera", "--quiet",
                         small_library[1]["camA"][0])
    assert code == EXIT_INTERRUPTED
    assert assert_one_line(err).startswith("ganprint: error: interrupted")
    assert sha256_of(library_copy) == before


def test_an_error_not_raised_by_an_interrupt_stays_an_error(capsys, library_copy, small_library, monkeypatch):
    import fingerprint.build

    def broken(*args, **kwargs):
        raise SystemError("something else")

    monkeypatch.setattr(fingerprint.build, "build_reference", broken)
    code, out, err = cli(capsys, "build", library_copy, "--name", "x", "--kind", "camera", "--quiet",
                         small_library[1]["camA"][0])
    assert code == 1 and "internal error (SystemError: something else)" in assert_one_line(err)


@pytest.mark.parametrize("args", [["attribute"], ["build", "lib.h5", "x.png"], ["attribute", "lib.h5", "x.png", "--crop", "banana"],
                                  ["attribute", "lib.h5", "x.png", "--pce-threshold", "-1"], ["frobnicate"]])
def test_usage_errors_exit_2(capsys, args):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ganprint")


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(LibraryNotFoundError):
        main(["--debug", "list", str(tmp_path / "missing.h5")])


# ----------------------------------------------------------------------------------------------------
# The installed console script
# ----------------------------------------------------------------------------------------------------

def test_installed_ganprint_batch(small_library, case_dir, tmp_path):
    library, files = small_library
    good = [files["camA"][0], files["camB"][1]]
    bad = case_dir / "bomb_200000x200000.png"
    proc = run_ganprint("attribute", library, good[0], bad, good[1], "--quiet")
    assert proc.returncode == 1
    assert [r.split("\t")[0] for r in stdout_rows(proc.stdout)] == [str(p) for p in good]
    assert "decompression-bomb" in assert_one_line(proc.stderr, bad)

    lib2 = tmp_path / "refs.h5"
    copy_library(library, lib2)
    proc = run_ganprint("build", lib2, "--name", "camA", "--kind", "camera", "--quiet", "--strict",
                        case_dir / "text.jpg")
    assert proc.returncode == 1 and proc.stdout == ""
    assert_one_line(proc.stderr, case_dir / "text.jpg")
    damaged = case_dir / "tiff_header_only.tif"  # Pillow warns about it: the warning stays hidden
    proc = run_ganprint("attribute", library, damaged, "--quiet")
    assert proc.returncode == 1
    assert_one_line(proc.stderr, damaged)
    proc = run_ganprint("list", tmp_path / "nope.h5")
    assert proc.returncode == 1
    assert_one_line(proc.stderr, tmp_path / "nope.h5")
    proc = run_ganprint("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ganprint ")


def test_build_of_one_bad_file_on_a_new_library_prints_one_line_and_creates_nothing(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG file")
    library = tmp_path / "new.h5"
    code, out, err = cli(capsys, "build", library, "--name", "x", "--kind", "camera", bad, "--quiet")
    assert code == EXIT_ERROR
    assert_one_line(err, bad)
    assert not library.exists() and not list(tmp_path.glob("new.h5*"))


def test_internal_errors_are_one_line_too(capsys, monkeypatch, small_library):
    import fingerprint.cli as cli_module

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli_module.COMMANDS, "list", broken)
    code, out, err = cli(capsys, "list", small_library[0])
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1
    assert "internal error" in err and "--debug" in err and "Traceback" not in err


# --- HxW sizes (--crop, bench --sizes): one parser, fingerprint.cli.parse_crop ---------------------

@pytest.mark.parametrize("text,expected", [("512x512", (512, 512)), ("2000x3008", (2000, 3008)),
                                           (" 16 X 32 ", (16, 32)), ("7×9", (7, 9))])
def test_parse_crop(text, expected):
    from fingerprint.cli import parse_crop

    assert parse_crop(text) == expected


@pytest.mark.parametrize("text", ["512", "512x", "x512", "0x5", "5x0", "-5x5", "5.5x5", "axb", ""])
def test_parse_crop_rejects(text):
    from fingerprint.cli import parse_crop

    with pytest.raises(ValueError, match="HxW|positive"):
        parse_crop(text)


def test_bad_crop_is_a_usage_error_naming_the_option(capsys, small_library):
    with pytest.raises(SystemExit) as caught:
        main(["attribute", str(small_library[0]), "x.png", "--crop", "12by12"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "argument --crop: crop size must look like HxW" in err and "'12by12'" in err
