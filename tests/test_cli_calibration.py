"""``ganprint calibration LIBRARY --reset`` (issue 17, item 3): back to what the builds give.

The stored non-matching generator scores do not record whether a build or ``ganprint calibrate``
added them, so the reset recomputes the build scores from the generators' source images; these
tests compare it with libraries built afresh. Small synthetic images written as PNG files.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from fingerprint.calibration import NULL_KEY
from fingerprint.cli import EXIT_OK, EXIT_USAGE, main
from fingerprint.synthetic import make_camera, make_generator
from reference_db import Library

SIZE = 64
N_GEN = 6  # images per generator


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


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
    root = tmp_path_factory.mktemp("calibration")
    return {
        "ga": _save(root / "ga", make_generator("ga", "transposed_conv", 1, out_size=SIZE).images(N_GEN, seed=1), "g"),
        "gb": _save(root / "gb", make_generator("gb", "pixel_shuffle", 2, out_size=SIZE).images(N_GEN, seed=2), "h"),
        "cam": _save(root / "cam", make_camera("c", 3, shape=(SIZE, SIZE)).images(4, seed=3), "c"),
    }


def _build(capsys, lib, name, files):
    code, _, err = cli(capsys, "build", lib, "--name", name, "--kind", "generator", "--quiet", *files)
    assert code == EXIT_OK, err


def _stored(lib):
    with Library(lib, "r") as opened:
        return np.sort(opened.calibration(NULL_KEY)), {(s, r) for s, r, _ in opened.calibration_scores(NULL_KEY)}


@pytest.fixture(scope="module")
def built(tmp_path_factory, images):
    """A library of generators ga and gb, built once (ga's images from copies in ``ga_copies/``)."""
    root = tmp_path_factory.mktemp("built")
    folder = root / "ga_copies"
    folder.mkdir()
    copies = [shutil.copy(p, folder / p.name) and folder / p.name for p in images["ga"]]
    lib = root / "lib.h5"
    for name, files in (("ga", copies), ("gb", images["gb"])):
        assert main(["build", str(lib), "--name", name, "--kind", "generator", "--quiet", *map(str, files)]) == EXIT_OK
    return lib, folder


def _copy(built, tmp_path):
    """A private copy of the built library (its index and folder)."""
    lib, _ = built
    shutil.copytree(f"{lib}.d", tmp_path / "lib.h5.d")
    shutil.copy(lib, tmp_path / "lib.h5")
    return tmp_path / "lib.h5"


def test_reset_drops_calibrate_scores_and_equals_the_builds(capsys, tmp_path, images, built):
    lib = _copy(built, tmp_path)
    fresh = _stored(lib)  # what the builds stored: every image against the other generator
    assert fresh[0].size == 2 * N_GEN
    code, out, err = cli(capsys, "calibrate", lib, "--quiet", *images["cam"])
    assert code == EXIT_OK, err
    assert _stored(lib)[0].size == 2 * N_GEN + 2 * len(images["cam"])
    code, out, err = cli(capsys, "calibration", lib, "--reset")
    assert code == EXIT_OK, err
    assert f"dropped {2 * N_GEN + 2 * len(images['cam'])} stored score(s); stored {2 * N_GEN} build score(s) " \
           f"({2 * N_GEN} recomputed from the generators' source images)" in out
    assert f"non-matching generator scores: {2 * N_GEN}" in out  # then shown, as --show does
    got = _stored(lib)
    assert got[1] == fresh[1]  # the same (image, generator) pairs
    np.testing.assert_allclose(got[0], fresh[0], rtol=0, atol=1e-6)
    # a second reset changes nothing
    assert cli(capsys, "calibration", lib, "--reset")[0] == EXIT_OK
    np.testing.assert_array_equal(_stored(lib)[0], got[0])


def test_reset_drops_the_scores_of_a_removed_generator(capsys, tmp_path, built):
    lib = _copy(built, tmp_path)
    assert cli(capsys, "remove", lib, "gb")[0] == EXIT_OK
    assert _stored(lib)[0].size == 2 * N_GEN  # still there: gb's images against ga, ga's against gb
    code, out, _ = cli(capsys, "calibration", lib, "--reset")
    assert code == EXIT_OK
    assert f"dropped {2 * N_GEN} stored score(s); stored 0 build score(s)" in out and "scores: none" in out
    assert _stored(lib)[0].size == 0


def test_reset_keeps_the_stored_scores_of_missing_source_files(capsys, tmp_path, images, built):
    lib = _copy(built, tmp_path)
    before = _stored(lib)
    assert cli(capsys, "calibrate", lib, "--quiet", *images["cam"])[0] == EXIT_OK
    built[1].rename(tmp_path / "moved")  # ga's sources are gone: their scores against gb cannot be recomputed
    try:
        code, out, err = cli(capsys, "calibration", lib, "--reset")
    finally:
        (tmp_path / "moved").rename(built[1])
    assert code == EXIT_OK, err
    assert f"{N_GEN} recomputed from the generators' source images, {N_GEN} kept: source file missing" in out
    assert "left out" not in err
    after = _stored(lib)
    assert after[1] == before[1]
    np.testing.assert_allclose(after[0], before[0], rtol=0, atol=1e-6)


def test_reset_without_generators_and_usage(capsys, tmp_path, images):
    lib = tmp_path / "lib.h5"
    code, _, err = cli(capsys, "build", lib, "--name", "cam", "--kind", "camera", "--quiet", *images["cam"][:2])
    assert code == EXIT_OK, err
    code, out, _ = cli(capsys, "calibration", lib, "--reset")
    assert code == EXIT_OK and "dropped 0 stored score(s); stored 0" in out and "none" in out
    with pytest.raises(SystemExit) as exc:
        main(["calibration", str(lib), "--show", "--reset"])
    assert exc.value.code == EXIT_USAGE
    with pytest.raises(SystemExit):
        main(["calibration", "--help"])
    assert "--reset" in capsys.readouterr().out


def _statistics(lib) -> dict[str, np.ndarray]:
    """Every per-generator null dataset of the decision (``gnull:...``) with its sorted values."""
    from fingerprint.maintenance import _statistics_null_keys

    with Library(lib, "r") as opened:
        return {k: np.sort(opened.calibration(k)) for k in _statistics_null_keys(opened)}


def test_reset_also_returns_the_per_generator_nulls_to_the_builds(capsys, tmp_path, images, built):
    """``calibrate`` refines each generator's own null (``gnull:`` keys); the reset takes that back too."""
    lib = _copy(built, tmp_path)
    fresh = _statistics(lib)
    assert fresh and any(v.size for v in fresh.values())
    assert cli(capsys, "calibrate", lib, "--quiet", *images["cam"])[0] == EXIT_OK
    grown = _statistics(lib)
    assert sum(v.size for v in grown.values()) > sum(v.size for v in fresh.values())
    assert cli(capsys, "calibration", lib, "--reset")[0] == EXIT_OK
    got = _statistics(lib)
    assert got.keys() == fresh.keys()
    for key in fresh:
        np.testing.assert_allclose(got[key], fresh[key], rtol=0, atol=1e-5, err_msg=key)
