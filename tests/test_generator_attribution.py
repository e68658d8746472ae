"""End to end tests of fingerprint.generator_attribution: the statistics ``build`` stores, and decisions.

Simulated generators (``fingerprint.synthetic``) at 128 x 128, built into a library through
``build.build_reference``; no shared data needed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fingerprint.build import build_reference
from fingerprint.generator_attribution import (GeneratorModel, GeneratorModels, genuine_key, load_generator_models,
                                               null_key, score_generators, stat_sizes)
from fingerprint.generator_decision import MIN_INFORMATIVE_PIXELS
from fingerprint.synthetic import make_generator
from fingerprint.transforms import apply_pipeline, image_rng
from reference_db import Library

SIZE = 128
ARCHS = (("ga", "transposed_conv", 1), ("gb", "pixel_shuffle", 2))


def _write(folder, images):
    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module", autouse=True)
def small_default_null():
    """A default null of 3 simulated cameras x 8 photos (24 images) keeps these builds short."""
    import fingerprint.generator_attribution as ga

    saved = ga.NULL_CAMERAS, ga.NULL_PER_CAMERA
    ga.NULL_CAMERAS, ga.NULL_PER_CAMERA = 3, 8
    yield
    ga.NULL_CAMERAS, ga.NULL_PER_CAMERA = saved


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("gens")
    out = {}
    for name, arch, seed in ARCHS:
        g = make_generator(name, arch, seed, out_size=SIZE)
        out[name] = (_write(root / name, list(g.images(8, seed=0))), list(g.images(4, seed=99)))
    return out


def _library(path, sources, order):
    for name in order:
        build_reference(str(path), name, "generator", [str(sources[name][0])], progress=False, warn=lambda m: None)
    with Library(str(path), "r") as lib:
        return load_generator_models(lib)


@pytest.fixture(scope="module")
def models(sources, tmp_path_factory):
    return _library(tmp_path_factory.mktemp("lib") / "ab.h5", sources, ["ga", "gb"])


def test_build_stores_null_and_genuine_statistics_per_hypothesis_and_size(models):
    m = {x.name: x for x in models.models}["ga"]
    assert ("aligned", (SIZE, SIZE)) in m.nulls and ("aligned", (SIZE, SIZE)) in m.genuine
    for size in stat_sizes((SIZE, SIZE)):
        for hyp in ("crop", "resize"):
            if size[0] * size[1] >= 2 * MIN_INFORMATIVE_PIXELS:  # smaller copies mostly fail the texture gate
                assert m.nulls[(hyp, size)].size >= 20  # simulated cameras + the other generator's images
                assert m.genuine[(hyp, size)].size >= 5  # leave-one-out of its 8 images
    # the genuine scores stand far above the null under the same hypothesis
    assert np.median(m.genuine[("aligned", (SIZE, SIZE))]) > np.quantile(m.nulls[("aligned", (SIZE, SIZE))], 0.99)


def test_statistics_do_not_depend_on_the_order_of_builds(models, sources, tmp_path):
    other = {x.name: x for x in _library(tmp_path / "ba.h5", sources, ["gb", "ga"]).models}
    for m in models.models:
        o = other[m.name]
        assert set(m.nulls) == set(o.nulls) and set(m.genuine) == set(o.genuine)
        for k in m.nulls:
            np.testing.assert_allclose(np.sort(m.nulls[k]), np.sort(o.nulls[k]), rtol=1e-5, atol=1e-5)
        for k in m.genuine:
            np.testing.assert_allclose(np.sort(m.genuine[k]), np.sort(o.genuine[k]), rtol=1e-5, atol=1e-5)


def test_genuine_queries_match_their_generator_pristine_and_resized(models, sources):
    queries = [(name, im) for name in ("ga", "gb") for im in sources[name][1]]
    decisions: list = []
    recs = score_generators(models, [im for _, im in queries], decisions=decisions)
    assert [d.closest for d in decisions] == [n for n, _ in queries]
    assert sum(d.best == n for d, (n, _) in zip(decisions, queries)) >= 6
    assert all(d.best in (None, n) for d, (n, _) in zip(decisions, queries))  # never the other generator
    for r, (n, _) in zip(recs, queries):
        assert sum(s.match for s in r.values()) <= 1 and set(r) == {"ga", "gb"}
    small = [apply_pipeline(im, "resize:0.75").image for _, im in queries]
    decisions = []
    recs = score_generators(models, small, decisions=decisions)
    assert sum(d.closest == n for d, (n, _) in zip(decisions, queries)) >= 6
    assert all(d.best in (None, n) for d, (n, _) in zip(decisions, queries))
    hit = [r[n] for r, (n, _) in zip(recs, queries) if r[n].match]
    assert hit and all("scale 0.750x0.750" in s.note for s in hit if s.note.startswith("resize"))


def test_crops_at_random_offsets_are_searched(models, sources):
    queries = [(name, apply_pipeline(im, "crop:96", image_rng(3, i)).image)
               for i, (name, im) in enumerate((n, im) for n in ("ga", "gb") for im in sources[n][1])]
    decisions: list = []
    score_generators(models, [im for _, im in queries], decisions=decisions)
    assert sum(d.closest == n for d, (n, _) in zip(decisions, queries)) >= 6
    assert all(d.best in (None, n) for d, (n, _) in zip(decisions, queries))


def test_featureless_and_camera_images_are_unknown_with_the_reason(models):
    from fingerprint.synthetic import make_camera

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    flat = [np.full((SIZE, SIZE, 3), v, np.uint8) for v in (0, 128, 255)]
    flat.append(np.repeat(np.uint8(x)[..., None], 3, -1))
    decisions: list = []
    recs = score_generators(models, flat, decisions=decisions)
    assert all(d.decision == "unknown" and d.reason.startswith("insufficient texture/noise") for d in decisions)
    assert all(not s.match for r in recs for s in r.values())
    assert any("informative pixels" in s.note for s in recs[0].values())
    photos = list(make_camera("c", 5, shape=(SIZE, SIZE)).images(6, seed=1, jpeg_quality=85))
    decisions = []
    score_generators(models, photos, decisions=decisions)
    assert all(d.best is None for d in decisions)


def test_a_library_without_statistics_never_matches(models, sources):
    bare = GeneratorModels([GeneratorModel(m.name, m.params, m.F) for m in models.models])
    decisions: list = []
    recs = score_generators(bare, sources["ga"][1][:2], decisions=decisions)
    assert all(d.best is None for d in decisions)
    assert all(s.threshold == float("inf") and "no null statistics" in s.note for s in recs[0].values()
               if s.name != decisions[0].closest)


def test_keys_are_library_names():
    from reference_db import schema

    for k in (null_key("a b", "crop", (96, 96)), genuine_key("g", "aligned", (128, 128), 75)):
        assert schema.check_name(k) == k


def test_calibrate_refines_the_per_generator_null(sources, tmp_path):
    from fingerprint.build import calibrate_with_negatives
    from fingerprint.synthetic import make_camera

    models = _library(tmp_path / "one.h5", sources, ["ga"])  # one generator: the default null only
    before = {k: v.size for k, v in models.models[0].nulls.items()}
    photos = _write(tmp_path / "photos", list(make_camera("c", 8, shape=(SIZE, SIZE)).images(3, seed=2)))
    assert calibrate_with_negatives(str(tmp_path / "one.h5"), [str(photos)], progress=False, warn=lambda m: None) > 0
    with Library(str(tmp_path / "one.h5"), "r") as lib:
        after = load_generator_models(lib).models[0].nulls
    assert after[("aligned", (SIZE, SIZE))].size == before[("aligned", (SIZE, SIZE))] + 3 * 2  # as is and re-saved
    assert sum(v.size for v in after.values()) > sum(before.values())


def test_refresh_statistics_gives_an_old_library_the_statistics_of_a_new_build(sources, tmp_path, models):
    """A library without the statistics (built before them: cleared here) never matches; refreshing it
    recomputes exactly what the builds store."""
    from fingerprint.generator_attribution import _expected_keys
    from fingerprint.generator_stats import refresh_statistics

    path = tmp_path / "old.h5"
    _library(path, sources, ["ga", "gb"])
    with Library(str(path), "r+") as lib, lib.transaction():
        for m in models.models:
            for key in _expected_keys(m.name, m.shape):
                lib.clear_calibration(key)
    with Library(str(path), "r") as lib:
        assert all(not m.nulls for m in load_generator_models(lib).models)
    assert refresh_statistics(str(path)) > 0
    with Library(str(path), "r") as lib:
        fresh = {m.name: m for m in load_generator_models(lib).models}
    for m in models.models:
        assert set(fresh[m.name].nulls) == set(m.nulls)
        for k in m.nulls:
            np.testing.assert_allclose(np.sort(fresh[m.name].nulls[k]), np.sort(m.nulls[k]), rtol=1e-4, atol=1e-4)
        for k in m.genuine:
            np.testing.assert_allclose(np.sort(fresh[m.name].genuine[k]), np.sort(m.genuine[k]), rtol=1e-4, atol=1e-4)
    assert refresh_statistics(str(path)) == 0  # nothing left to do
