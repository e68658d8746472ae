"""Attribution: camera PCE with crop and rotation search, generator z scores, open-set decisions."""

from __future__ import annotations

import naive
import numpy as np
import pytest

from fingerprint import attribute, build_fingerprint, extract_residual
from fingerprint.attribution import Attributor, gray_image
from fingerprint.estimate import generator_residual
from fingerprint.build import build_reference, calibrate_with_negatives, default_params
from fingerprint.scores import search_threshold
from fingerprint.synthetic import make_camera, make_generator

SHAPE = (160, 224)


@pytest.fixture(scope="module")
def cameras():
    cams = [make_camera(f"cam{i}", 100 + i, shape=SHAPE, prnu_std=0.015) for i in range(3)]
    refs = [(c.name, "camera", build_fingerprint(list(c.images(10, seed=1, flat=True)), "camera"),
             default_params("camera")) for c in cams[:2]]
    return cams, refs


def test_camera_match_and_unknown(cameras):
    cams, refs = cameras
    att = Attributor(refs)
    own = next(cams[0].images(1, seed=7))
    res = att.score(own, "own")
    assert res.decision == "match" and res.best == "cam0"
    assert res.scores["cam0"].pce > 60 and res.scores["cam0"].rotation == 0
    assert res.scores["cam1"].pce < 60
    outsider = att.score(next(cams[2].images(1, seed=7)), "outsider")
    assert outsider.decision == "unknown" and outsider.best is None
    assert outsider.closest in ("cam0", "cam1")


def test_aligned_pce_matches_reference(cameras):
    cams, refs = cameras
    img = next(cams[0].images(1, seed=8))
    K = refs[0][2]
    score = Attributor(refs[:1], rotations=False).score(img).scores["cam0"]
    W = naive.residual(img)
    I = naive.rgb2gray(img)
    expected, _ = naive.pce_from_cc(naive.crosscorr(K, W * I))
    assert score.pce == pytest.approx(expected, rel=1e-3)
    assert score.ncc == pytest.approx(naive.ncc(W, I * K), rel=1e-3)


def test_crop_at_unknown_offset_is_found(cameras):
    cams, refs = cameras
    img = next(cams[1].images(1, seed=9))
    crop = img[37:37 + 96, 61:61 + 128]
    att = Attributor(refs)
    s = att.score(crop).scores["cam1"]
    assert s.match and s.offset == (37, 61) and s.scale == 1.0 and s.stage == "native"
    # one budget: the native stage counts every shift of every rotation that fits (4 here) and both
    # residuals, and has its share of the budget beside the scaled stages of a smaller query
    plan = att.cameras[1].search.plan((96, 128), n_sigmas=2)
    shifts = (SHAPE[0] - 96 + 1) * (SHAPE[1] - 128 + 1) + (SHAPE[0] - 128 + 1) * (SHAPE[1] - 96 + 1)
    assert plan.stage("native").n_positions == 2 * 2 * shifts and s.n_positions == plan.n_positions
    assert s.threshold == pytest.approx(plan.threshold("native"))
    assert s.threshold > search_threshold(60.0, 4 * shifts)  # the native stage has half the budget


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotated_query_is_found(cameras, k):
    cams, refs = cameras
    img = np.rot90(next(cams[0].images(1, seed=10)), k)
    res = Attributor(refs).score(np.ascontiguousarray(img))
    assert res.best == "cam0"
    assert res.scores["cam0"].rotation == (360 - 90 * k) % 360


def test_no_rotations_option_misses_rotated_query(cameras):
    cams, refs = cameras
    img = np.ascontiguousarray(np.rot90(next(cams[0].images(1, seed=10)), 2))
    assert Attributor(refs, rotations=False).score(img).decision == "unknown"


def test_query_larger_than_fingerprint_is_reported(cameras):
    _, refs = cameras
    big = np.zeros((SHAPE[0] + 40, SHAPE[1] + 40, 3), np.uint8) + 100
    s = Attributor(refs).score(big).scores["cam0"]
    assert s.pce is None and not s.match and "larger" in s.note


def test_ncc_method_decides_with_equivalent_threshold(cameras):
    cams, refs = cameras
    res = Attributor(refs, method="ncc").score(next(cams[0].images(1, seed=11)))
    s = res.scores["cam0"]
    # the PCE threshold of the search (2 rotations x 2 residuals) converted: PCE ~ NCC**2 * pixels
    assert s.decided_by == "ncc" and s.threshold == pytest.approx(np.sqrt(search_threshold(60.0, 4) / (SHAPE[0] * SHAPE[1])))
    assert res.best == "cam0"


def test_bad_options_are_refused(cameras):
    _, refs = cameras
    with pytest.raises(ValueError, match="method"):
        Attributor(refs, method="psnr")
    with pytest.raises(ValueError, match="threshold"):
        Attributor(refs, pce_threshold=0)


def test_gray_image_matches_reference(rng):
    img = rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    assert np.allclose(gray_image(img), naive.rgb2gray(img / 257.0), rtol=1e-5)


def test_library_round_trip_with_generators_and_cameras(tmp_path):
    """build -> library -> attribute through the public API, with a calibrated generator threshold."""
    from PIL import Image

    lib = tmp_path / "lib.h5"
    gens = [make_generator(f"g{i}", arch, seed, out_size=128)
            for i, (arch, seed) in enumerate([("transposed_conv", 1), ("transposed_conv", 2), ("pixel_shuffle", 3)])]
    for g in gens[:2]:
        folder = tmp_path / g.name
        folder.mkdir()
        for i, im in enumerate(g.images(12, seed=1)):
            Image.fromarray(im).save(folder / f"{i}.png")
        build_reference(lib, g.name, "generator", [folder], progress=False)
    cam = make_camera("camZ", 3, shape=(128, 128))
    cdir = tmp_path / "camZ"
    cdir.mkdir()
    for i, im in enumerate(cam.images(8, seed=1, flat=True)):
        Image.fromarray(im).save(cdir / f"{i}.png")
    build_reference(lib, "camZ", "camera", [cdir], progress=False)
    queries = [next(g.images(1, seed=5)) for g in gens] + [next(cam.images(1, seed=5))]
    # the two builds store 24 non-matching scores (each generator's images against the other, in
    # both directions, whatever the build order): enough to calibrate
    from fingerprint.calibration import NULL_KEY, threshold_from_null
    from reference_db import Library

    with Library(lib) as opened:
        null = opened.calibration(NULL_KEY)
    assert len(null) == 24
    first = attribute(queries[0], lib)[0]
    assert first.best == "g0"
    assert threshold_from_null(null).value >= 2.3263  # never below the N(0, 1) quantile at 1 %
    negatives = tmp_path / "negatives"
    negatives.mkdir()
    for i, im in enumerate(make_generator("n", "nearest_conv", 8, out_size=128).images(10, seed=1)):
        Image.fromarray(im).save(negatives / f"{i}.png")
    assert calibrate_with_negatives(lib, [negatives], progress=False) == 20
    results = attribute(queries, lib)
    assert [r.best for r in results[:2]] == ["g0", "g1"]
    assert results[2].decision == "unknown"  # a generator outside the library
    assert results[3].best == "camZ"
    d = results[0].as_dict()
    assert d["decision"] == "match" and d["scores"]["g0"]["z"] > d["scores"]["g1"]["z"]


def test_residual_is_deterministic(cameras):
    cams, _ = cameras
    img = next(cams[0].images(1, seed=3))
    assert np.array_equal(extract_residual(img), extract_residual(img))


def test_generator_bank_matrix_product_equals_pairwise_ncc():
    """The batched path (one matrix product per group) gives the per-pair NCC of the general path."""
    gens = [make_generator(f"g{i}", arch, i + 1, out_size=64)
            for i, arch in enumerate(["transposed_conv", "pixel_shuffle", "bilinear_conv"])]
    refs = [(g.name, "generator", build_fingerprint(g.generate(6, seed=1), "generator"), default_params("generator"))
            for g in gens]
    att = Attributor(refs, generator_threshold=5.0)
    queries = [next(g.images(1, seed=4)) for g in gens]
    batch = att.score_batch(queries, ["a", "b", "c"])
    singles = [att.score(q, label) for q, label in zip(queries, ["a", "b", "c"])]  # batches of one
    for res, single, g_query in zip(batch, singles, queries):
        r = generator_residual(g_query, default_params("generator"))
        for gen in att.generators:
            pair = gen.score(r)  # the general, one-pair path
            assert res.scores[gen.name].ncc == pytest.approx(pair.ncc, abs=1e-5)
            assert res.scores[gen.name].z == pytest.approx(pair.z, rel=1e-4, abs=1e-3)
            assert single.scores[gen.name].ncc == pytest.approx(pair.ncc, abs=1e-5)
    assert [r.best for r in batch] == ["g0", "g1", "g2"]
    assert [r.image for r in singles] == ["a", "b", "c"]


def test_retry_with_a_second_sigma_raises_the_threshold(cameras):
    """The second-residual retry counts as more positions searched: its threshold is tau(n_all)."""
    from fingerprint.attribution import ReferenceScore

    cams, refs = cameras
    att = Attributor(refs)
    cam = att.cameras[0]
    weak = ReferenceScore("cam0", "camera", 0.001, 10.0, "pce", 60.0, False, rotation=0, offset=(0, 0), n_positions=1)
    own = next(cams[0].images(1, seed=21))
    W = extract_residual(own, sigma=5.0)
    I = gray_image(own)
    got = cam.retry(weak, W, W * I, I, 5.0, method="pce", base=60.0)
    assert got.match and got.n_positions == 2 and "sigma 5" in got.note
    assert got.threshold == pytest.approx(search_threshold(60.0, 2))
    other = next(cams[2].images(1, seed=21))
    W = extract_residual(other, sigma=5.0)
    I = gray_image(other)
    kept = cam.retry(weak, W, W * I, I, 5.0, method="pce", base=60.0)
    assert not kept.match and kept.pce == 10.0 and kept.n_positions == 2
    assert kept.threshold == pytest.approx(search_threshold(60.0, 2))


def test_unknown_query_reports_the_whole_search(cameras):
    cams, refs = cameras
    res = Attributor(refs).score(next(cams[2].images(1, seed=22)))
    s = res.scores["cam0"]
    # rotations 0 and 180 fit a non-square fingerprint, each with both residuals: 4 positions, one budget
    assert not s.match and s.n_positions == 4 and s.threshold == pytest.approx(search_threshold(60.0, 4))
    assert "2 rotations × 2 sigmas" in s.searched and s.false_alarm > 0.01
    no_retry = Attributor(refs, retry_sigma=None).score(next(cams[2].images(1, seed=22))).scores["cam0"]
    assert no_retry.n_positions == 2 and no_retry.threshold == pytest.approx(search_threshold(60.0, 2))


def test_second_residual_is_one_more_test_of_the_same_budget(cameras):
    """A match found only with the second residual is reported as such, at the threshold that
    counts both residuals from the start (whether or not the second one was needed)."""
    cams, refs = cameras
    att = Attributor(refs)
    cam = att.cameras[0]
    own, other = next(cams[0].images(1, seed=21)), next(cams[2].images(1, seed=21))
    W_other, W_own = extract_residual(other, sigma=2.0), extract_residual(own, sigma=5.0)
    I = gray_image(own)
    dec = cam.search.score([W_other * gray_image(other), W_own * I])
    assert dec.match and dec.sigma_index == 1
    rec = cam.record(dec, [W_other, W_own], I, sigmas=(2.0, 5.0))
    assert rec.match and "sigma 5" in rec.note and rec.threshold == pytest.approx(search_threshold(60.0, 4))


def test_one_default_per_kind():
    """FingerprintParams(kind=...), build.default_params and a stored dict without the keys agree."""
    from fingerprint.estimate import KIND_DEFAULTS, FingerprintParams

    for kind in ("camera", "generator"):
        params = FingerprintParams(kind=kind)
        assert params == default_params(kind) == FingerprintParams.from_dict({"kind": kind})
        assert {k: getattr(params, k) for k in KIND_DEFAULTS[kind]} == KIND_DEFAULTS[kind]
    assert FingerprintParams(kind="generator").sigma == 5.0 and FingerprintParams().sigma == 3.0
    assert FingerprintParams(kind="generator", whiten=False).whiten is False
    assert default_params("generator", sigma=None, shrink=False) == FingerprintParams(kind="generator", shrink=False)


def test_generator_threshold_never_falls_below_the_normal_quantile():
    """Generators anti-correlated with each other give a null far below 0; an unrelated photo
    (z ~ N(0, 1)) must still not pass: the threshold is floored at the N(0, 1) quantile."""
    from scipy.special import ndtri

    from fingerprint.calibration import threshold_from_null

    null = np.random.default_rng(0).normal(-6.8, 1.0, 40)
    for fpr in (0.01, 0.001):
        t = threshold_from_null(null, fpr)
        assert t.value == pytest.approx(float(ndtri(1 - fpr))) and t.source == "N(0, 1) floor"
    high = np.random.default_rng(1).normal(3.0, 2.0, 200)
    assert threshold_from_null(high, 0.01).value > 3.0 + 2.0 * 2.0  # a higher null still raises it
