"""Cameras found in resized (and cropped) copies through ``attribute`` and ``ganprint attribute``.

Synthetic cameras (``fingerprint.synthetic``): fingerprints from flat-fields through the public
build API, queries transformed in code (``fingerprint.transforms``). Checks: a resized query is
matched to its camera with the factor reported, a non-matching one is unknown and says what was
searched, the JSON carries the search's fields, and full-size and cropped queries keep the
native-resolution behaviour (offset, rotation, no scale).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fingerprint import build_fingerprint
from fingerprint.attribution import Attributor, attribute
from fingerprint.build import build_reference, default_params
from fingerprint.error_budget import ALPHA, threshold
from fingerprint.synthetic import make_camera
from fingerprint.transforms import apply_pipeline, image_rng

SHAPE = (192, 256)


@pytest.fixture(scope="module")
def cams():
    return [make_camera(f"cam{i}", 300 + i, shape=SHAPE, prnu_std=0.02) for i in range(3)]


@pytest.fixture(scope="module")
def att(cams):
    refs = [(c.name, "camera", build_fingerprint(list(c.images(10, seed=1, flat=True)), "camera"),
             default_params("camera")) for c in cams[:2]]
    return Attributor(refs, backend="cpu")


def transformed(cam, spec: str, seed: int = 5) -> np.ndarray:
    photo = next(cam.images(1, seed=seed))
    return np.ascontiguousarray(apply_pipeline(photo, spec, image_rng(12, seed)).image)


def test_resized_whole_frame_is_matched_at_its_implied_scale(att, cams):
    res = att.score(transformed(cams[0], "resize:0.75:lanczos"), "r75")
    s = res.scores["cam0"]
    assert res.best == "cam0" and s.stage == "implied scale"
    assert s.scale == pytest.approx(0.75, abs=0.005) and s.offset == (0, 0)
    assert s.false_alarm <= ALPHA and s.pce >= s.threshold
    assert not res.scores["cam1"].match


def test_resized_and_cropped_is_found_by_the_scale_search(att, cams):
    res = att.score(transformed(cams[1], "resize:0.8:bicubic+crop:130x180"), "rc")
    s = res.scores["cam1"]
    assert res.best == "cam1" and s.stage == "scale search"
    assert s.scale == pytest.approx(0.8, rel=0.01)
    assert "scale search" in s.searched and s.n_positions > 1
    d = res.as_dict()
    assert d["scale"] == s.scale and d["offset"] == list(s.offset) and d["false_alarm"] == s.false_alarm


def test_a_resized_outsider_is_unknown_and_says_what_was_searched(att, cams):
    res = att.score(transformed(cams[2], "resize:0.8:lanczos+crop:130x180"), "outsider")
    assert res.decision == "unknown" and res.best is None
    for s in res.scores.values():
        assert not s.match and s.false_alarm > ALPHA
    # with no match anywhere every stage ran for every camera, and the record says so
    searched = res.scores[res.closest].searched
    assert all(stage in searched for stage in ("native", "scale search")) and "threshold" in searched


def test_full_size_and_crop_queries_keep_the_native_search(att, cams):
    photo = next(cams[0].images(1, seed=9))
    full = att.score(photo).scores["cam0"]
    # a full-size query has only the native stage: 2 rotations (0, 180) x 2 residuals, the whole budget
    assert full.match and full.stage == "native" and full.scale == 1.0 and full.offset == (0, 0)
    assert full.n_positions == 4 and full.threshold == pytest.approx(threshold(ALPHA, 4))
    crop = np.ascontiguousarray(photo[21:21 + 128, 33:33 + 160])
    s = att.score(crop).scores["cam0"]
    assert s.match and s.stage == "native" and s.offset == (21, 33) and s.rotation == 0 and s.scale == 1.0
    turned = att.score(np.ascontiguousarray(np.rot90(crop, 1))).scores["cam0"]
    assert turned.match and turned.rotation == 270 and turned.offset == (21, 33)
    plain = Attributor([("cam0", "camera", att.cameras[0].K, default_params("camera"))], scale_search=False)
    same = plain.score(crop).scores["cam0"]
    assert same.match and same.offset == (21, 33) and same.threshold < s.threshold  # the native stage has it all


def test_precomputed_spectrum_is_used(att):
    from fingerprint.camera_match import CameraReference
    from fingerprint.scores import ReferenceSpectrum

    cam = att.cameras[0]
    spec = ReferenceSpectrum(cam.K)
    ref = CameraReference("c", cam.K, cam.params, spectrum=spec)
    assert ref.spectrum is spec and ref.search.spectrum is spec
    with pytest.raises(ValueError, match="spectrum"):
        CameraReference("c", cam.K, cam.params, spectrum=ReferenceSpectrum(cam.K[:64, :64]))


def test_attribute_api_and_cli_json_on_a_library(tmp_path, cams, capsys):
    from PIL import Image

    from fingerprint.cli import main

    lib = tmp_path / "lib.h5"
    for cam in cams[:2]:
        folder = tmp_path / cam.name
        folder.mkdir()
        for i, im in enumerate(cam.images(10, seed=1, flat=True)):
            Image.fromarray(im).save(folder / f"{i}.png")
        build_reference(lib, cam.name, "camera", [folder], progress=False)
    query = tmp_path / "resized.png"
    Image.fromarray(transformed(cams[0], "resize:0.75:lanczos")).save(query)
    outsider = tmp_path / "outsider.png"
    Image.fromarray(transformed(cams[2], "resize:0.75:lanczos")).save(outsider)
    (api,) = attribute(query, lib)
    assert api.best == "cam0" and api.scores["cam0"].scale == pytest.approx(0.75, abs=0.005)
    code = main(["attribute", str(lib), str(query), str(outsider), "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    rows = {r["image"]: r for r in map(json.loads, out.splitlines()) if r.get("image")}
    got, unknown = rows[str(query)], rows[str(outsider)]
    for key in ("image", "best", "decision", "closest", "scores", "scale", "offset", "rotation", "n_positions",
                "false_alarm"):
        assert key in got and key in unknown
    assert got["best"] == "cam0" and got["scale"] == pytest.approx(0.75, abs=0.005) and got["n_positions"] > 1
    assert got["false_alarm"] <= ALPHA and got["scores"]["cam0"]["stage"] == "implied scale"
    assert unknown["decision"] == "unknown" and unknown["best"] is None
    assert "scale search" in unknown["scores"][unknown["closest"]]["searched"]
    code = main(["attribute", str(lib), str(query), str(outsider), "--quiet"])
    text = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")]
    assert "resized by 0.75" in text[0] and "threshold raised" in text[0]
    assert text[1].split("\t")[1].startswith("unknown") and "tried: " in text[1]
    # --no-scale-search: the native stage only; the resized query then matches nothing
    code = main(["attribute", str(lib), str(query), "--json", "--quiet", "--no-scale-search"])
    (row,) = [r for r in map(json.loads, capsys.readouterr().out.splitlines()) if r.get("image")]
    assert code == 0 and row["decision"] == "unknown"
    searched = row["scores"]["cam0"]["searched"]
    assert searched.startswith("native: ") and "scale" not in searched
    with pytest.raises(SystemExit) as exc:
        main(["attribute", str(lib), str(query), "--min-scale", "1.5"])
    assert exc.value.code == 2 and "resize factor" in capsys.readouterr().err
