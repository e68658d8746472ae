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


def test_query_residual_is_the_build_residual_and_keeps_the_statistics(sources):
    """The whitening's spectra serve the texture gate: same residual as a build, same statistics."""
    from fingerprint.build import default_params
    from fingerprint.estimate import _zero_mean_planes, generator_residual
    from fingerprint.generator_attribution import query_residual
    from fingerprint.generator_decision import residual_statistics
    from fingerprint.residual import extract_noise

    params = default_params("generator")
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    for image in [*sources["ga"][1][:2], flat]:
        R, stats = query_residual(image, params)
        assert np.array_equal(R, generator_residual(image, params))
        noise = extract_noise(image, params.sigma, params.levels)
        if params.zero_mean:
            _zero_mean_planes(noise)
        plain = residual_statistics(noise, image)
        assert (stats.informative_pixels, stats.rms, stats.saturated_fraction) == (
            plain.informative_pixels, plain.rms, plain.saturated_fraction)
        assert stats.spectral_spread == pytest.approx(plain.spectral_spread, rel=1e-5, abs=1e-9)


def test_a_shared_query_residual_gives_the_scores_of_separate_ones(models, sources):
    """One QueryResidual (unit vector, spectra) for every generator: the same hypotheses and scores."""
    from fingerprint.generator_attribution import QueryResidual, query_residual
    from fingerprint.generator_search import aligned_z, shift_search

    image = sources["gb"][1][0]
    for cond in ("none", "crop:96", "resize:0.75"):
        x = apply_pipeline(image, cond, image_rng(3, 0)).image
        R, _ = query_residual(x, models.models[0].params)
        shared = QueryResidual(R)
        for m in models.models:
            a, b = m.hypotheses(R, shared), m.hypotheses(R)
            assert [(s.hypothesis, s.offset) for s in a] == [(s.hypothesis, s.offset) for s in b]
            assert [s.z for s in a] == pytest.approx([s.z for s in b], rel=1e-12, abs=1e-12)
            for s in a:  # against the plain definitions
                if s.hypothesis == "crop":
                    assert s.z == pytest.approx(shift_search(R, m.F).z, rel=1e-9, abs=1e-9)
                elif s.hypothesis == "resize":
                    assert s.z == pytest.approx(aligned_z(R, m.resampled(R.shape[1:])), rel=1e-9, abs=1e-9)
                else:
                    assert s.z == pytest.approx(aligned_z(R, m.F), rel=1e-4, abs=1e-4)  # float32 unit vectors


@pytest.fixture
def jpeg_fingerprints(monkeypatch):
    """Builds store compression-matched fingerprints at q90 and q75 (off by default: JPEG_FINGERPRINT_QUALITIES)."""
    import fingerprint.generator_attribution as ga

    monkeypatch.setattr(ga, "JPEG_FINGERPRINT_QUALITIES", (90, 75))
    return ga.JPEG_FINGERPRINT_QUALITIES


def test_by_default_no_compression_matched_fingerprint_is_stored(models):
    import fingerprint.generator_attribution as ga

    assert ga.JPEG_FINGERPRINT_QUALITIES == ()
    assert all(not m.jpeg and all(not h.startswith("jpeg@") for h, _ in m.nulls) for m in models.models)


def test_build_stores_compression_matched_fingerprints_and_their_statistics(jpeg_fingerprints, sources, tmp_path):
    JPEG_FINGERPRINT_QUALITIES = jpeg_fingerprints
    models = _library(tmp_path / "jpeg.h5", sources, ["ga", "gb"])
    for m in models.models:
        assert sorted(m.jpeg) == sorted(JPEG_FINGERPRINT_QUALITIES) and m.jpeg[90].shape == m.F.shape
        for q in JPEG_FINGERPRINT_QUALITIES:
            null, genuine = m.nulls[(f"jpeg@q{q}", m.shape)], m.genuine[(f"jpeg@q{q}", m.shape)]
            assert null.size >= 20 and genuine.size >= 5
            assert np.median(genuine) > np.quantile(null, 0.9)
    m = models.models[0]
    assert (m.jpeg_hypothesis(85), m.jpeg_hypothesis(80), m.jpeg_hypothesis(60)) == ("jpeg@q90", "jpeg@q75", "jpeg@q75")
    assert m.jpeg_hypothesis(None) is None and m.jpeg_hypothesis(98) is None
    x = apply_pipeline(sources["ga"][1][0], "jpeg:85")
    hyps = [s.hypothesis for s in m.hypotheses(*_residual(x.image, m), quality=x.jpeg_quality)]
    assert hyps == ["aligned", "jpeg@q90"]
    assert [s.hypothesis for s in m.hypotheses(*_residual(sources["ga"][1][0], m))] == ["aligned"]


def _residual(image, m):
    from fingerprint.generator_attribution import query_residual

    return (query_residual(image, m.params)[0],)


def test_an_out_of_date_jpeg_fingerprint_is_not_used(jpeg_fingerprints, sources, tmp_path):
    from fingerprint.generator_attribution import ArrayRecord, jpeg_fingerprint_key
    from fingerprint.generator_stats import write_records

    path = tmp_path / "one.h5"
    build_reference(str(path), "ga", "generator", [str(sources["ga"][0])], progress=False, warn=lambda m: None)
    with Library(str(path), "r+") as lib:
        stale = np.append(lib.calibration(jpeg_fingerprint_key("ga", 90))[:-1], 7.0)  # built from 8 images, not 7
        with lib.transaction():
            write_records(lib, [ArrayRecord(jpeg_fingerprint_key("ga", 90), stale, "ga")])
    with Library(str(path), "r") as lib:
        loaded = load_generator_models(lib)
        assert lib.calibration(jpeg_fingerprint_key("ga", 90)).size == SIZE * SIZE * 3 + 1  # replaced, not appended
    assert sorted(loaded.models[0].jpeg) == [75]
    assert any("JPEG q90 fingerprint out of date" in n for n in loaded.notes) and loaded.without_statistics == []
    from fingerprint.attribution import load_attributor

    warnings: list[str] = []
    with load_attributor(path, warn=warnings.append) as att:  # a note, not the legacy fallback
        assert att.generator_models is not None and [m.name for m in att.generator_models.models] == ["ga"]
    assert len(warnings) == 1 and "out of date" in warnings[0] and "library-wide" not in warnings[0]


def test_an_update_keeps_the_jpeg_fingerprint_current(jpeg_fingerprints, sources, tmp_path):
    """Adding images to a generator re-reads its earlier sources for the compression-matched sums."""
    from fingerprint.generator_attribution import jpeg_fingerprint_key

    files = sorted(sources["ga"][0].iterdir())
    path = str(tmp_path / "up.h5")
    build_reference(path, "ga", "generator", [str(f) for f in files[:4]], progress=False, warn=lambda m: None)
    build_reference(path, "ga", "generator", [str(f) for f in files[4:]], progress=False, warn=lambda m: None)
    with Library(path, "r") as lib:
        models = load_generator_models(lib)
        assert lib.calibration(jpeg_fingerprint_key("ga", 90))[-1] == 8
    assert sorted(models.models[0].jpeg) == [75, 90] and not models.notes



def _assert_same_statistics(got, want):
    assert set(got.nulls) == set(want.nulls) and set(got.genuine) == set(want.genuine) and want.genuine
    for stats, expected in ((got.nulls, want.nulls), (got.genuine, want.genuine)):
        for k in expected:
            assert stats[k].size == expected[k].size, k
            np.testing.assert_allclose(np.sort(stats[k]), np.sort(expected[k]), rtol=1e-4, atol=1e-4)


def _folder(path, files):
    path.mkdir()
    for f in files:
        (path / f.name).write_bytes(f.read_bytes())
    return path


def test_statistics_follow_the_generator_and_its_fingerprint(sources, tmp_path):
    """A generator's statistics are those of its current fingerprint and name, whatever happened:
    an update (images added) and an image removed give what one build of the same images gives; a
    rename keeps them; a generator built after a removed one of the same name inherits nothing."""
    from fingerprint.maintenance import remove_image

    files = sorted(sources["ga"][0].glob("*.png"))
    gb = {"gb": sources["gb"]}

    def fresh(folder, tag):
        return {m.name: m for m in _library(tmp_path / f"{tag}.h5", {**gb, "ga": (folder, None)}, ["gb", "ga"]).models}

    from fingerprint.build import calibrate_with_negatives
    from fingerprint.synthetic import make_camera

    path = tmp_path / "lib.h5"
    first = {m.name: m for m in _library(path, {**gb, "ga": (_folder(tmp_path / "a", files[:4]), None)},
                                         ["gb", "ga"]).models}["ga"]
    photos = _write(tmp_path / "photos", list(make_camera("c", 5, shape=(SIZE, SIZE)).images(3, seed=1)))
    assert calibrate_with_negatives(str(path), sorted(photos.glob("*.png")), progress=False) > 0
    warnings: list[str] = []
    build_reference(str(path), "ga", "generator", [str(_folder(tmp_path / "b", files[4:]))], progress=False,
                    warn=warnings.append)
    assert any("calibrate" in w and "dropped" in w for w in warnings), warnings  # they cannot be recomputed
    with Library(str(path)) as lib:
        updated = {m.name: m for m in load_generator_models(lib).models}
    all_eight = fresh(sources["ga"][0], "all")["ga"]
    key = ("aligned", (SIZE, SIZE))
    assert not np.allclose(np.sort(first.nulls[key]), np.sort(all_eight.nulls[key]))  # the old fingerprint's differ
    _assert_same_statistics(updated["ga"], all_eight)

    with Library(str(path), "r+") as lib:  # rename: the same statistics under the new name
        lib.rename("ga", "renamed")
        renamed = {m.name: m for m in load_generator_models(lib).models}["renamed"]
    _assert_same_statistics(renamed, all_eight)

    remove_image(str(path), "renamed", str(files[0]))  # as a build of the other seven
    with Library(str(path)) as lib:
        seven = {m.name: m for m in load_generator_models(lib).models}["renamed"]
    _assert_same_statistics(seven, fresh(_folder(tmp_path / "c", files[1:]), "seven")["ga"])

    with Library(str(path), "r+") as lib:
        lib.remove("renamed")
        assert lib.owned_calibration("renamed") == []
    rebuilt = {m.name: m for m in _library(path, {"renamed": sources["ga"]}, ["renamed"]).models}["renamed"]
    _assert_same_statistics(rebuilt, all_eight)  # nothing of the removed one left beside its own


def test_a_jpeg_query_meets_the_null_of_re_saved_non_matching_images(models):
    """The plain fingerprint's null for JPEG queries: the default null photos re-saved at each quality
    of JPEG_STAT_QUALITIES, counted under the nearest genuine quality; chosen by the query's quality."""
    import fingerprint.generator_attribution as ga
    from fingerprint.default_null import default_null_images

    m = {x.name: x for x in models.models}["ga"]
    shape = (SIZE, SIZE)
    for q in ga.GENUINE_QUALITIES:
        assert m.nulls[(f"aligned@q{q}", shape)].size >= 20
    assert m.null_for("aligned", shape, 92).hypothesis == "aligned@q90"
    assert m.null_for("aligned", shape, 70).hypothesis == "aligned@q75"
    assert m.null_for("aligned", shape, None).hypothesis == "aligned"  # not a JPEG
    assert m.null_for("aligned", shape, 99).hypothesis == "aligned"  # nearly lossless: as a PNG
    # a default null photo re-saved at 70 is scored against the plain fingerprint under aligned@q75
    photo = next(iter(default_null_images(shape, cameras=ga.NULL_CAMERAS, per_camera=ga.NULL_PER_CAMERA, seed=0)))[0]
    R, _ = ga.query_residual(apply_pipeline(photo, "jpeg:70").image, m.params)
    z = m.hypotheses(R)[0].z
    assert np.isclose(m.nulls[("aligned@q75", shape)], z, rtol=1e-4, atol=1e-4).any()
    assert not np.isclose(m.nulls[("aligned@q90", shape)], z, rtol=1e-4, atol=1e-4).any()
    # and the decision of a JPEG query uses it
    out: list = []
    score_generators(GeneratorModels([m]), [apply_pipeline(photo, "jpeg:80").image], qualities=[80], decisions=out)
    assert out[0].threshold == pytest.approx(m.null_for("aligned", shape, 80).threshold(0.01))
    assert m.null_for("aligned", shape, 80).threshold(0.01) != m.null_for("aligned", shape).threshold(0.01)
    assert "null aligned@q75: non-matching images re-saved near q75" in out[0].reason  # the user is told
    out = []
    score_generators(GeneratorModels([m]), [photo], decisions=out)  # a PNG: the plain null, said as before
    assert "re-saved" not in out[0].reason and "aligned)" in out[0].reason


def test_a_library_without_the_jpeg_null_tests_jpeg_queries_against_the_plain_one(models, sources, tmp_path):
    """A library built before the ``aligned@q<Q>`` nulls: JPEG queries use ``aligned``, as they did."""
    path = tmp_path / "old.h5"
    _library(path, sources, ["ga"])
    with Library(str(path), "r+") as lib, lib.transaction():
        for q in (90, 75):
            lib.clear_calibration(null_key("ga", f"aligned@q{q}", (SIZE, SIZE)))
    with Library(str(path), "r") as lib:
        m = load_generator_models(lib).models[0]
    assert m.null_for("aligned", (SIZE, SIZE), 80).hypothesis == "aligned"
    x = apply_pipeline(sources["ga"][1][0], "jpeg:80")
    out: list = []
    score_generators(GeneratorModels([m]), [x.image], qualities=[x.jpeg_quality], decisions=out)
    assert out[0].threshold == pytest.approx(m.null_for("aligned", (SIZE, SIZE)).threshold(0.01))
    assert "re-saved" not in out[0].reason


def _periodic_part(F: np.ndarray, period: int = 8) -> np.ndarray:
    """The residue-class means of F (C, H, W), tiled: its period-8 pattern."""
    P = np.zeros_like(F, dtype=np.float64)
    for a in range(period):
        for b in range(period):
            P[:, a::period, b::period] = F[:, a::period, b::period].mean(axis=(1, 2), keepdims=True)
    return P


def test_build_stores_the_null_of_the_block_grid_check(models):
    """``offgrid@q<Q>``: the re-saved non-matching images' aligned scores with the 8 x 8 grid removed."""
    import fingerprint.generator_attribution as ga
    from fingerprint.default_null import default_null_images
    from fingerprint.jpeg_residual import remove_block_grid

    m = {x.name: x for x in models.models}["ga"]
    shape = (SIZE, SIZE)
    for q in ga.GENUINE_QUALITIES:
        assert m.nulls[(f"offgrid@q{q}", shape)].size == m.nulls[(f"aligned@q{q}", shape)].size
    assert m.offgrid_null("aligned", shape, 70).hypothesis == "offgrid@q75"
    for hyp in ("crop", "resize"):  # smaller queries: the crop / resize null images, grid removed
        got, plain = m.offgrid_null(hyp, (100, 100), 70), m.null_for(hyp, (100, 100))
        assert got.hypothesis == f"offgrid-{hyp}" and got.size == plain.size and got.positions == plain.positions
        assert got.n == plain.n and not np.allclose(np.sort(got.scores), np.sort(plain.scores))
    photo = next(iter(default_null_images(shape, cameras=ga.NULL_CAMERAS, per_camera=ga.NULL_PER_CAMERA, seed=0)))[0]
    R, _ = ga.query_residual(apply_pipeline(photo, "jpeg:70").image, m.params)
    z_off = m.hypotheses(remove_block_grid(R))[0].z
    assert np.isclose(m.nulls[("offgrid@q75", shape)], z_off, rtol=1e-4, atol=1e-4).any()
    assert not np.isclose(m.nulls[("offgrid@q75", shape)], m.hypotheses(R)[0].z, rtol=1e-4, atol=1e-4).any()


def test_a_jpeg_match_through_the_block_grid_alone_is_unknown(models, sources):
    """A noisy gray picture carrying only the generator's 8 x 8-periodic pattern, given as a JPEG
    file: a match would rest on the block grid, and is refused with the reason. A genuine image
    re-saved as JPEG keeps its match, said to hold off the grid."""
    m = {x.name: x for x in models.models}["ga"]
    P = _periodic_part(m.F.astype(np.float64)).mean(0)
    rng = np.random.default_rng(3)
    x = np.clip(np.rint(128 + rng.normal(0, 5, (SIZE, SIZE, 3)) + 3.0 * (P / P.std())[..., None]), 0, 255)
    x = x.astype(np.uint8)
    jpeg: list = []
    score_generators(models, [x], qualities=[90], decisions=jpeg)
    plain = m.hypotheses(ga_residual(x, m))[0].z
    assert plain > 3 * m.null_for("aligned", (SIZE, SIZE), 90).threshold(0.01)  # the grid alone scores high
    assert jpeg[0].decision == "unknown" and jpeg[0].closest == "ga"
    assert "block grid only" in jpeg[0].reason
    genuine = apply_pipeline(sources["ga"][1][0], "jpeg:90")
    out: list = []
    score_generators(models, [genuine.image], qualities=[90], decisions=out)
    assert out[0].decision == "match" and out[0].best == "ga"
    assert "without the JPEG block grid z" in out[0].reason


def ga_residual(image, m):
    from fingerprint.generator_attribution import query_residual

    return query_residual(image, m.params)[0]


def _stored_statistics(path) -> dict:
    with Library(str(path), "r") as lib:
        # scores with the image and generator they pair; the compression-matched fingerprints as stored
        return {key: sorted(lib.calibration_scores(key)) or np.asarray(lib.calibration(key)).tolist()
                for name in ("ga", "gb") for key in lib.owned_calibration(name)}


def test_the_residual_cache_of_non_matching_images_changes_no_statistic(sources, tmp_path, monkeypatch):
    """A second library of the same images takes every non-matching image's versions from the
    process's cache (``generator_stats._VERSIONS``), and both store what a build without the cache
    stores, value for value."""
    from fingerprint import generator_stats as gs

    cache = gs._VersionCache(gs.VERSION_CACHE_BYTES)
    computed: list = []
    get = cache.get
    monkeypatch.setattr(cache, "get", lambda key, compute: get(key, lambda: computed.append(key) or compute()))
    monkeypatch.setattr(gs, "_VERSIONS", cache)
    _library(tmp_path / "a.h5", sources, ["ga", "gb"])
    first = len(computed)
    _library(tmp_path / "b.h5", sources, ["ga", "gb"])
    assert first == 2 * 8 * 2 and len(computed) == first  # 16 images x (versions, JPEG re-saves), once each
    assert len(cache.entries) == first and cache.used > 0
    monkeypatch.setattr(gs, "_VERSIONS", gs._VersionCache(0))  # keeps nothing: every residual computed afresh
    _library(tmp_path / "c.h5", sources, ["ga", "gb"])
    a, b, c = (_stored_statistics(tmp_path / f"{x}.h5") for x in "abc")
    assert a.keys() and a == b == c
