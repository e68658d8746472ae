"""Inspecting and repairing references and the calibration through the CLI (issue 17, items 3 and 4).

``ganprint sources``, ``ganprint remove --image`` (exact subtraction from the sums), the build's
quality line, ``ganprint calibration`` and the refusals and build-order independence of the
generator calibration. Small synthetic images (``fingerprint.synthetic``), written as PNG files.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fingerprint.calibration import NULL_KEY
from fingerprint.cli import EXIT_ERROR, EXIT_OK, main
from fingerprint.synthetic import make_camera, make_generator
from reference_db import Library

SIZE = 64


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(folder, images, prefix: str) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}{i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """PNG files: flat fields of two cameras, images of two generators (and spares of the first)."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "cam_a": _save(root / "cam_a", make_camera("a", 1, shape=(SIZE, SIZE)).images(6, seed=1, flat=True), "a"),
        "cam_b": _save(root / "cam_b", make_camera("b", 2, shape=(SIZE, SIZE)).images(3, seed=2, flat=True), "b"),
        "gen_a": _save(root / "gen_a", make_generator("ga", "transposed_conv", 1, out_size=SIZE).images(12, seed=1), "g"),
        "gen_b": _save(root / "gen_b", make_generator("gb", "pixel_shuffle", 2, out_size=SIZE).images(12, seed=2), "h"),
        "gen_a_spare": _save(root / "gen_a_spare",
                             make_generator("ga", "transposed_conv", 1, out_size=SIZE).images(3, seed=9), "s"),
    }


def reference(library, name):
    with Library(library, "r") as lib:
        return lib.get(name, with_sums=True)


# --- ganprint sources ---------------------------------------------------------------------------------

def test_sources_lists_every_image_with_its_hash(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    files = images["cam_a"][:3]
    assert cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", "--quiet", *files)[0] == EXIT_OK
    code, out, _ = cli(capsys, "sources", lib, "cam")
    assert code == EXIT_OK
    assert out.splitlines() == [f"{sha256_of(p)}\t{p}" for p in files]
    code, out, _ = cli(capsys, "sources", lib, "cam", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [{"path": str(p), "sha256": sha256_of(p)} for p in files]
    code, _, err = cli(capsys, "sources", lib, "nope")
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1 and "nope" in err


# --- ganprint remove --image ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, key", [("camera", "cam_a"), ("generator", "gen_a")])
def test_remove_image_equals_a_build_without_it(capsys, tmp_path, images, kind, key):
    a, b, c = images[key][:3]
    full, ref = tmp_path / "full.h5", tmp_path / "ref.h5"
    assert cli(capsys, "build", full, "--name", "x", "--kind", kind, "--quiet", a, b, c)[0] == EXIT_OK
    assert cli(capsys, "build", ref, "--name", "x", "--kind", kind, "--quiet", a, b)[0] == EXIT_OK
    before = reference(full, "x").fingerprint
    code, out, err = cli(capsys, "remove", full, "x", "--image", c)
    assert code == EXIT_OK, err
    assert str(c) in out and "2 image(s) left" in out
    got, want = reference(full, "x"), reference(ref, "x")
    assert got.n_images == 2 and got.info.sources == want.info.sources
    assert got.info.params == want.info.params
    scale = float(np.abs(want.fingerprint).max())
    assert not np.allclose(before, want.fingerprint, atol=1e-3 * scale)  # c did change the fingerprint
    np.testing.assert_allclose(got.fingerprint, want.fingerprint, rtol=0, atol=1e-4 * scale)
    for name, total in want.sums.items():
        np.testing.assert_allclose(got.sums[name], total, rtol=0, atol=1e-5 * float(np.abs(total).max()))


def test_remove_image_by_sha256_and_its_errors(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    folder = tmp_path / "imgs"
    folder.mkdir()
    files = [shutil.copy(p, folder / p.name) and folder / p.name for p in images["cam_a"][:3]]
    assert cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", "--quiet", *files)[0] == EXIT_OK
    code, out, err = cli(capsys, "remove", lib, "cam", "--image", sha256_of(files[0]))
    assert code == EXIT_OK, err
    assert "2 image(s) left" in out
    # the recorded file is gone: a SHA-256 is not enough, the error asks for the file
    sha = sha256_of(files[1])
    files[1].rename(tmp_path / "moved.png")
    code, _, err = cli(capsys, "remove", lib, "cam", "--image", sha)
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1 and "--image PATH" in err
    code, _, err = cli(capsys, "remove", lib, "cam", "--image", tmp_path / "moved.png")  # the file itself works
    assert code == EXIT_OK, err
    # an image not counted in the reference, and the last image, are refused in one line
    code, _, err = cli(capsys, "remove", lib, "cam", "--image", images["cam_b"][0])
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1 and "not counted" in err
    code, _, err = cli(capsys, "remove", lib, "cam", "--image", files[2])
    assert code == EXIT_ERROR and "only image" in err
    assert reference(lib, "cam").n_images == 1
    # plain 'remove LIBRARY NAME' still removes the whole reference
    assert cli(capsys, "remove", lib, "cam")[0] == EXIT_OK
    with Library(lib, "r") as opened:
        assert "cam" not in opened


def test_remove_image_keeps_the_created_time(capsys, tmp_path, images, monkeypatch):
    import datetime

    import reference_db.library

    lib = tmp_path / "lib.h5"
    at = lambda day: (lambda: datetime.datetime(2025, 1, day, 12, 0, 0, tzinfo=datetime.timezone.utc))  # noqa: E731
    monkeypatch.setattr(reference_db.library, "utc_now", at(1))
    assert cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", "--quiet", *images["cam_a"][:3])[0] == EXIT_OK
    monkeypatch.setattr(reference_db.library, "utc_now", at(2))
    assert cli(capsys, "remove", lib, "cam", "--image", images["cam_a"][1])[0] == EXIT_OK
    info = reference(lib, "cam").info
    assert (info.created, info.updated) == ("2025-01-01T12:00:00Z", "2025-01-02T12:00:00Z")
    assert [p for p, _ in info.sources] == [str(images["cam_a"][0]), str(images["cam_a"][2])]


# --- the quality line of a build ------------------------------------------------------------------------

def test_build_quality_line_flags_wrong_images(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    code, _, err = cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", *images["cam_a"])
    assert code == EXIT_OK
    quality = [line for line in err.splitlines() if "quality:" in line]
    assert len(quality) == 1 and "6 image(s) used" in quality[0] and "0 outlier(s)" in quality[0]
    assert "saturated pixels" in quality[0]
    # three images of another camera added to the flat-field reference: each one is named
    code, _, err = cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", *images["cam_b"])
    assert code == EXIT_OK
    assert "3 outlier(s)" in err and "against the stored images" in err
    flagged = [line for line in err.splitlines() if "self-check z" in line and "warning" in line]
    assert len(flagged) == 3 and all(str(p) in "\n".join(flagged) for p in images["cam_b"])
    # and they can be taken out again, leaving the reference as it was
    for path in images["cam_b"]:
        assert cli(capsys, "remove", lib, "cam", "--image", path)[0] == EXIT_OK
    code, out, _ = cli(capsys, "sources", lib, "cam")
    assert [line.split("\t")[1] for line in out.splitlines()] == [str(p) for p in images["cam_a"]]


def test_build_quality_flags_one_stranger_in_a_new_reference(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    stranger = images["cam_b"][0]
    code, _, err = cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", *images["cam_a"], stranger)
    assert code == EXIT_OK
    assert "1 outlier(s)" in err and "against the others" in err
    flagged = [line for line in err.splitlines() if "self-check z" in line and "warning" in line]
    assert len(flagged) == 1 and str(stranger) in flagged[0]
    # --quiet drops the quality line, never the outlier warning
    code, _, err = cli(capsys, "build", tmp_path / "q.h5", "--name", "cam", "--kind", "camera", "--quiet",
                       *images["cam_a"], stranger)
    assert code == EXIT_OK and "quality:" not in err
    assert [line for line in err.splitlines() if "self-check z" in line] == flagged


# --- ganprint calibration, calibrate refusals, build order -------------------------------------------------

def _two_generators(capsys, lib, images, order):
    for name in order:
        assert cli(capsys, "build", lib, "--name", name, "--kind", "generator", "--quiet",
                   *images[{"ga": "gen_a", "gb": "gen_b"}[name]])[0] == EXIT_OK


def test_threshold_does_not_depend_on_build_order(capsys, tmp_path, images):
    ab, ba = tmp_path / "ab.h5", tmp_path / "ba.h5"
    _two_generators(capsys, ab, images, ["ga", "gb"])
    _two_generators(capsys, ba, images, ["gb", "ga"])
    with Library(ab, "r") as x, Library(ba, "r") as y:
        null_ab, null_ba = np.sort(x.calibration(NULL_KEY)), np.sort(y.calibration(NULL_KEY))
    assert null_ab.size == 24  # 12 images of each generator against the other one
    np.testing.assert_allclose(null_ab, null_ba, rtol=0, atol=1e-9)
    shown = [cli(capsys, "calibration", lib)[1] for lib in (ab, ba)]
    assert shown[0] == shown[1] and "24" in shown[0] and "threshold at 0.01" in shown[0]


def test_missing_sources_of_earlier_generators_are_reported(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    folder = tmp_path / "ga"
    folder.mkdir()
    for p in images["gen_a"]:
        shutil.copy(p, folder / p.name)
    assert cli(capsys, "build", lib, "--name", "ga", "--kind", "generator", "--quiet", folder)[0] == EXIT_OK
    shutil.rmtree(folder)
    code, _, err = cli(capsys, "build", lib, "--name", "gb", "--kind", "generator", "--quiet", *images["gen_b"])
    assert code == EXIT_OK
    assert "12 source image(s) of earlier generators are missing" in err and "order of builds" in err
    with Library(lib, "r") as opened:
        assert opened.calibration(NULL_KEY).size == 12


def test_calibration_show_and_calibrate_refusals(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    assert cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", "--quiet", *images["cam_a"][:2])[0] == EXIT_OK
    code, out, _ = cli(capsys, "calibration", lib, "--show")
    assert code == EXIT_OK and "none" in out
    _two_generators(capsys, lib, images, ["ga", "gb"])
    code, before, _ = cli(capsys, "calibration", lib)
    assert code == EXIT_OK and "non-matching generator scores: 24" in before
    # a source image of a library generator, and a fresh image of one, are not negatives
    own, fresh = images["gen_a"][0], images["gen_a_spare"][0]
    code, _, err = cli(capsys, "calibrate", lib, "--quiet", own, fresh)
    assert code == EXIT_ERROR
    assert f"{own}: is a source image of generator 'ga'" in err
    assert f"{fresh}: matches generator 'ga'" in err
    assert cli(capsys, "calibration", lib)[1] == before  # nothing was added
    # real negatives (camera images) are added
    code, out, err = cli(capsys, "calibrate", lib, "--quiet", *images["cam_b"])
    assert code == EXIT_OK, err
    assert "added 6 non-matching score(s)" in out
    assert "non-matching generator scores: 30" in cli(capsys, "calibration", lib)[1]


def test_help_describes_the_new_commands(capsys):
    for command, words in (("sources", "SHA-256"), ("calibration", "order of builds"), ("remove", "--image")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert words in capsys.readouterr().out
