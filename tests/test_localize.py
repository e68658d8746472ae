"""Tamper localisation on simulated cameras: a block pasted from another camera is found, an
untouched photo is left alone, crops and rotations map back, and ``ganprint localize`` writes the mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fingerprint import localize
from fingerprint.attribution import Attributor
from fingerprint.build import build_fingerprint, build_reference, default_params
from fingerprint.cli import main
from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.report import localize_reference
from fingerprint.synthetic import make_camera

SHAPE = (512, 512)
BLOCK = (slice(100, 292), slice(200, 392))  # 192 x 192, with the default 128-pixel window at this size


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / max((mask | truth).sum(), 1))


def false_flag(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & ~truth).sum() / (~truth).sum())


@pytest.fixture(scope="module")
def cameras():
    host = make_camera("host", 5, shape=SHAPE, prnu_std=0.01)
    donor = make_camera("donor", 6, shape=SHAPE, prnu_std=0.01)
    K = build_fingerprint(list(host.images(10, seed=1, flat=True)), "camera")
    return host, donor, K


@pytest.fixture(scope="module")
def spliced(cameras):
    host, donor, _ = cameras
    image = next(host.images(1, seed=2))
    forged = image.copy()
    forged[BLOCK] = next(donor.images(1, seed=2))[BLOCK]
    truth = np.zeros(SHAPE, dtype=bool)
    truth[BLOCK] = True
    return forged, truth


def test_spliced_block_is_found(cameras, spliced):
    forged, truth = spliced
    loc = localize(forged, cameras[2])
    assert loc.mask.shape == SHAPE and loc.mask.dtype == bool
    assert loc.window == 128  # a quarter of the shorter side below 1024 px
    assert iou(loc.mask, truth) >= 0.5  # measured 0.74
    assert false_flag(loc.mask, truth) <= 0.05
    # the map says why: inside the block the correlation is far below the prediction
    inner = np.zeros(SHAPE, dtype=bool)
    inner[130:262, 230:362] = True
    assert np.median(loc.z[inner]) < -loc.z_threshold
    assert np.median(loc.correlation[inner]) < 0.25 * np.median(loc.predicted[inner])


@pytest.mark.parametrize("seed, quality", [(2, None), (3, None), (2, 90)])
def test_untouched_photo_is_not_flagged(cameras, seed, quality):
    host, _, K = cameras
    loc = localize(next(host.images(1, seed=seed, jpeg_quality=quality)), K)
    assert loc.tampered_fraction <= 0.05  # measured 0.0
    assert loc.decidable_fraction > 0.5  # the test had power over most of the photo
    assert loc.excluded < 0.05


def test_crop_and_rotation_map_back(cameras, spliced):
    forged, truth = spliced
    top, left, size = 32, 48, 448
    query = np.ascontiguousarray(np.rot90(forged[top:top + size, left:left + size], -1))  # turned clockwise
    expected = np.rot90(truth[top:top + size, left:left + size], -1)
    att = Attributor([("host", "camera", cameras[2], default_params("camera"))])
    loc, score = localize_reference(att, query, "host")
    assert score.match and score.rotation == 90 and score.offset == (top, left)
    assert loc.mask.shape == query.shape[:2]
    assert iou(loc.mask, expected) >= 0.4


def test_bad_arguments(cameras, spliced):
    forged, _ = spliced
    K = cameras[2]
    with pytest.raises(ShapeMismatchError, match="does not fit"):
        localize(forged, K, offset=(10, 0))
    with pytest.raises(ValueError, match="multiple of 90"):
        localize(forged, K, rotation=45)
    with pytest.raises(ValueError, match="alpha"):
        localize(forged, K, alpha=0.7)
    with pytest.raises(InvalidImageError, match="smaller than one"):
        localize(forged[:100, :100], K, window=128)
    with pytest.raises(ShapeMismatchError):
        localize(forged, np.zeros((3, 512, 512), np.float32))


@pytest.fixture(scope="module")
def library(tmp_path_factory, cameras, spliced):
    host = cameras[0]
    root = tmp_path_factory.mktemp("localize_cli")
    flats = root / "flats"
    flats.mkdir()
    for i, frame in enumerate(host.images(10, seed=1, flat=True)):
        Image.fromarray(frame).save(flats / f"flat_{i}.png", compress_level=1)
    lib = root / "lib.h5"
    build_reference(lib, "host", "camera", [flats], progress=False)
    query = root / "spliced.png"
    Image.fromarray(spliced[0]).save(query)
    return lib, query


def test_cli_writes_the_mask(library, spliced, tmp_path, capsys):
    lib, query = library
    mask_path, map_path = tmp_path / "mask.png", tmp_path / "map.png"
    code = main(["localize", str(lib), str(query), "--reference", "host", "--out", str(mask_path),
                 "--map", str(map_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    with Image.open(mask_path) as im:
        assert im.format == "PNG" and im.mode == "L"
        mask = np.asarray(im)
    assert mask.dtype == np.uint8 and mask.shape == SHAPE
    assert set(np.unique(mask).tolist()) <= {0, 255}
    assert iou(mask == 255, spliced[1]) >= 0.5
    record = json.loads(out)
    assert record["tampered_fraction"] == pytest.approx((mask == 255).mean())
    assert record["attribution"]["pce"] > 60
    with Image.open(map_path) as im:
        assert im.format == "PNG" and im.size[0] > 200


@pytest.mark.parametrize("args, message", [
    (["--reference", "nobody"], "no camera reference named 'nobody'"),
    (["--reference", "host", "--window", "8"], "window must be"),
    (["--reference", "host", "--out-format-is-png"], None),
])
def test_cli_bad_input_is_one_line(library, tmp_path, capsys, args, message):
    lib, query = library
    argv = ["localize", str(lib), str(query), "--out", str(tmp_path / "m.png")] + args
    if message is None:  # an unknown option: argparse usage error
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        return
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_cli_refuses_a_non_png_mask(library, tmp_path, capsys):
    lib, query = library
    code = main(["localize", str(lib), str(query), "--reference", "host", "--out", str(tmp_path / "mask.jpg")])
    err = capsys.readouterr().err
    assert code == 1 and "must end in .png" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mask.jpg").exists()
