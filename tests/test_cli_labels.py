"""``ganprint build LIBRARY --labels labels.csv`` (issue 15): many references in one call.

Bad rows are listed with their line numbers and nothing is built; good ones give one commit and
one result line per reference. Small synthetic images (``fingerprint.synthetic``) written as PNG.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fingerprint.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from fingerprint.synthetic import make_camera, make_generator
from reference_db import Library

SIZE = 64


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder of images: cam_a/ (4), cam_b/ (3), gen/ (3), and a file that is not an image."""
    base = tmp_path_factory.mktemp("labels")
    for folder, images in (("cam_a", make_camera("a", 1, shape=(SIZE, SIZE)).images(4, seed=1, flat=True)),
                           ("cam_b", make_camera("b", 2, shape=(SIZE, SIZE)).images(3, seed=2, flat=True)),
                           ("gen", make_generator("g", "transposed_conv", 1, out_size=SIZE).images(3, seed=3))):
        (base / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(base / folder / f"{i}.png")
    (base / "broken.png").write_bytes(b"not an image at all")
    return base


def _csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def _library(path):
    with Library(path, "r") as lib:
        return {i.name: (i.kind, i.n_images, [p for p, _ in i.sources]) for i in lib.infos(with_sources=True)}


def test_labels_build_many_references_in_one_call(capsys, tmp_path, root):
    labels = _csv(root / "labels.csv", "path,label,kind\n"
                  "# a comment, then a blank row\n\n"
                  "cam_a/0.png,camA\ncam_a/1.png,camA\ncam_a/2.png,camA\n"
                  f"{root / 'cam_b'},camB\n"  # an absolute path, a folder
                  "gen/0.png,gen,generator\ngen/1.png,gen,generator\ngen/2.png,gen,generator\n")
    lib = tmp_path / "lib.h5"
    code, out, err = cli(capsys, "build", lib, "--labels", labels, "--kind", "camera")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[:3] == ["camA: created camera fingerprint from 3 new image(s), 3 in total",
                         "camB: created camera fingerprint from 3 new image(s), 3 in total",
                         "gen: created generator fingerprint from 3 new image(s), 3 in total"]
    assert lines[3].startswith("generator decision: each of 1 generator(s) against its own null")
    got = _library(lib)
    assert got["camA"] == ("camera", 3, [str(root / "cam_a" / f"{i}.png") for i in range(3)])
    assert got["camB"][:2] == ("camera", 3) and got["gen"][:2] == ("generator", 3)
    # the same reference as a plain build of those files
    single = tmp_path / "single.h5"
    files = [root / "cam_a" / f"{i}.png" for i in range(3)]
    assert cli(capsys, "build", single, "--name", "camA", "--kind", "camera", "--quiet", *files)[0] == EXIT_OK
    with Library(lib) as a, Library(single) as b:
        np.testing.assert_array_equal(a.get("camA").fingerprint, b.get("camA").fingerprint)
    # run again with one more row: only the new image is read, the rest is counted already
    _csv(labels, labels.read_text() + "cam_a/3.png,camA\n")
    code, out, err = cli(capsys, "build", lib, "--labels", labels, "--kind", "camera", "--quiet")
    assert code == EXIT_OK, err
    assert out.splitlines()[:3] == ["camA: updated camera fingerprint from 1 new image(s), 4 in total; 3 skipped",
                                    "camB: nothing new to add (3 file(s) already counted); 3 image(s)",
                                    "gen: nothing new to add (3 file(s) already counted); 3 image(s)"]


def test_bad_rows_are_listed_with_their_line_and_nothing_is_built(capsys, tmp_path, root):
    labels = _csv(tmp_path / "bad.csv",
                  f"{root}/cam_a/0.png,camA\n"            # 1: good
                  f"{root}/cam_a/1.png\n"                 # 2: one column
                  f"{root}/cam_a/2.png,camA,lens\n"       # 3: unknown kind
                  f"{root}/cam_a/nope.png,camA\n"         # 4: missing file
                  f"{root}/cam_b/0.png,  \n"              # 5: empty label
                  f"{root}/gen/0.png,camA,generator\n"    # 6: camA was a camera on line 1
                  f"{root}/cam_a/0.png,camB\n"            # 7: the file of line 1 under another label
                  f"{root}/cam_b/1.png,camB\n")           # 8: good
    lib = tmp_path / "lib.h5"
    code, out, err = cli(capsys, "build", lib, "--labels", labels, "--kind", "camera")
    assert code == EXIT_ERROR and out == ""
    lines = err.strip().splitlines()
    assert [line.split(": line ")[1].split(":")[0] for line in lines[:-1]] == ["2", "3", "4", "5", "6", "7"]
    assert all(line.startswith(f"ganprint: error: {labels}: line ") for line in lines[:-1])
    for words in ("got 1 column", "unknown kind 'lens'", "nope.png: no such file", "empty label",
                  "'camA' is a generator here but a camera on line 1", "labelled 'camB' here but 'camA' on line 1"):
        assert words in err
    assert lines[-1] == f"ganprint: error: {labels}: 6 bad row(s); nothing was built"
    assert not lib.exists()  # no library was created
    # without --kind, a row without a kind column is a bad row; a file that is no CSV is one line
    code, _, err = cli(capsys, "build", lib, "--labels", _csv(tmp_path / "k.csv", f"{root}/cam_a/0.png,camA\n"))
    assert code == EXIT_ERROR and "line 1: no kind for 'camA'" in err and "--kind" in err
    code, _, err = cli(capsys, "build", lib, "--labels", tmp_path / "missing.csv")
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1 and "missing.csv" in err


def test_a_label_of_another_kind_in_the_library_is_a_bad_row(capsys, tmp_path, root):
    lib = tmp_path / "lib.h5"
    assert cli(capsys, "build", lib, "--name", "x", "--kind", "camera", "--quiet", root / "cam_a" / "0.png")[0] == EXIT_OK
    before = _library(lib)
    labels = _csv(tmp_path / "l.csv", "cam_b/0.png,y\n" "gen/0.png,x,generator\n")
    (tmp_path / "cam_b").symlink_to(root / "cam_b")
    (tmp_path / "gen").symlink_to(root / "gen")
    code, _, err = cli(capsys, "build", lib, "--labels", labels, "--kind", "camera")
    assert code == EXIT_ERROR
    assert "line 2: 'x' is a generator here but the library holds a camera of that name" in err
    assert _library(lib) == before  # y was not built either


def test_a_reference_that_fails_does_not_stop_the_others(capsys, tmp_path, root):
    labels = _csv(tmp_path / "l.csv", f"{root}/broken.png,bad\n" f"{root}/cam_b/0.png,good\n" f"{root}/cam_b/1.png,good\n")
    lib = tmp_path / "lib.h5"
    code, out, err = cli(capsys, "build", lib, "--labels", labels, "--kind", "camera", "--quiet")
    assert code == EXIT_ERROR
    assert out.splitlines()[0].startswith("bad: not built: ") and "broken.png" in out.splitlines()[0]
    assert out.splitlines()[1] == "good: created camera fingerprint from 2 new image(s), 2 in total"
    assert "1 of 2 reference(s) not built; the others were written" in err
    assert set(_library(lib)) == {"good"}


def test_labels_usage_errors(capsys, tmp_path, root):
    labels = _csv(tmp_path / "l.csv", f"{root}/cam_b/0.png,good\n")
    for args in (["--labels", labels, "--name", "x"], ["--labels", labels, root / "cam_b" / "1.png"],
                 ["--kind", "camera", root / "cam_b" / "1.png"], ["--name", "x", root / "cam_b" / "1.png"]):
        with pytest.raises(SystemExit) as exc:
            main(["build", str(tmp_path / "lib.h5"), *map(str, args)])
        err = capsys.readouterr().err
        assert exc.value.code == EXIT_USAGE and err.strip().splitlines()[-1].startswith("ganprint build: error: ")
    assert not (tmp_path / "lib.h5").exists()
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "--labels CSV" in capsys.readouterr().out
