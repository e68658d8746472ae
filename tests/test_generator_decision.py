"""Tests of fingerprint.generator_decision: insufficient_signal statistics, null models, genuine ranges, decide()."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fingerprint.generator_decision import (
    FAMILY_MISS,
    MIN_INFORMATIVE_PIXELS,
    GenuineRange,
    HypothesisScore,
    NullModel,
    ResidualStats,
    decide,
    off_grid_check,
    nearest_size,
    residual_statistics,
    insufficient_signal,
)
from fingerprint.residual import extract_noise


def _null(gen, hyp="aligned", mean=0.0, std=1.0, n=400, seed=0, positions=1, size=(256, 256)):
    rng = np.random.default_rng(seed)
    return NullModel(gen, hyp, size, rng.normal(mean, std, n), positions)


def _textured(rng, shape=(128, 128)):
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    img = 80 + 0.3 * x[..., None] + rng.normal(0, 6, (*shape, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- insufficient_signal
def test_flat_images_are_untestable():
    for value in (0, 128, 255):
        img = np.full((128, 128, 3), value, np.uint8)
        stats = residual_statistics(extract_noise(img, 5.0, 4), img)
        assert stats.informative_pixels == 0
        assert "insufficient texture/noise" in insufficient_signal(stats)


def test_ramp_is_untestable_and_noise_is_testable(rng):
    ramp = np.tile(np.arange(128, dtype=np.uint8)[None, :, None], (128, 1, 3))
    assert insufficient_signal(residual_statistics(extract_noise(ramp, 5.0, 4), ramp)) is not None
    img = _textured(rng)
    stats = residual_statistics(extract_noise(img, 5.0, 4), img)
    assert insufficient_signal(stats) is None
    assert stats.informative_pixels > 0.9 * 128 * 128
    assert 0.3 < stats.spectral_spread <= 1.0
    assert stats.rms > 1.0


def test_white_noise_has_full_spectral_spread(rng):
    stats = residual_statistics(rng.normal(0, 3, (3, 96, 96)))
    assert stats.spectral_spread > 0.9
    assert stats.saturated_fraction == 0.0


def test_clipped_pixels_are_not_informative(rng):
    img = _textured(rng)
    noise = extract_noise(img, 5.0, 4)
    clipped = img.copy()
    clipped[:, :100] = 255  # 100 of 128 columns saturated
    stats = residual_statistics(noise, clipped)
    assert stats.saturated_fraction == pytest.approx(100 / 128, abs=0.01)
    assert stats.informative_pixels <= 28 * 128
    assert "informative pixels" in insufficient_signal(stats)


def test_uint16_uses_a_smaller_rounding_floor(rng):
    noise = np.full((1, 64, 64), 0.1)  # 0.1 grey level: below the 8-bit floor, far above the 16-bit one
    noise[0, ::2] *= -1
    assert residual_statistics(noise, np.zeros((64, 64), np.uint8)).informative_pixels == 0
    assert residual_statistics(noise, np.zeros((64, 64), np.uint16) + 1000).informative_pixels == 64 * 64


def test_a_small_image_is_untestable(rng):
    img = _textured(rng, (48, 48))  # 2304 pixels < 4096
    reason = insufficient_signal(residual_statistics(extract_noise(img, 5.0, 4), img))
    assert reason is not None and str(MIN_INFORMATIVE_PIXELS) in reason


def test_statistics_reject_bad_shapes():
    with pytest.raises(ValueError, match="noise must be"):
        residual_statistics(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="differ in size"):
        residual_statistics(np.zeros((3, 8, 8)), np.zeros((9, 9, 3), np.uint8))


# ---------------------------------------------------------------------------------- null models
def test_null_threshold_and_p_value_follow_the_normal_fit():
    null = _null("g", mean=1.0, std=2.0, n=5000)
    assert null.threshold(0.01) == pytest.approx(1.0 + 2.326 * 2.0, abs=0.25)
    assert null.p_value(1.0 + 2.326 * 2.0) == pytest.approx(0.01, abs=0.004)
    assert null.p_value(-10.0) == 1.0
    assert null.standardised(5.0) == pytest.approx(2.0, abs=0.1)
    assert null.threshold(0.001) > null.threshold(0.01)


def test_null_takes_the_heavier_of_empirical_and_normal_tails():
    scores = np.r_[np.zeros(380), np.full(20, 50.0)]  # 5 % of the scores far out
    null = NullModel("g", "aligned", (256, 256), scores)
    assert null.threshold(0.01) == pytest.approx(50.0)
    assert null.p_value(49.0) >= 21 / 401


def test_too_few_null_scores_give_no_threshold():
    null = _null("g", n=10)
    assert null.threshold(0.01) is None
    assert null.p_value(100.0) == 1.0
    assert null.standardised(100.0) == -math.inf
    with pytest.raises(ValueError, match="false-positive rate"):
        _null("g").threshold(1.5)


def test_genuine_range_lower_bound():
    g = GenuineRange("g", "aligned", (256, 256), np.array([40.0, 44.0, 48.0, 52.0, 56.0]))
    assert g.lower(2.0) == pytest.approx(48.0 - 2.0 * np.std([40, 44, 48, 52, 56], ddof=1))
    assert GenuineRange("g", "aligned", (256, 256), np.array([1.0, 2.0])).lower() == -math.inf


def test_nearest_size_in_log_area():
    sizes = [(128, 128), (160, 160), (200, 200), (256, 256)]
    assert nearest_size(sizes, (150, 150)) == (160, 160)
    assert nearest_size(sizes, (64, 64)) == (128, 128)
    assert nearest_size(sizes, (512, 512)) == (256, 256)
    with pytest.raises(ValueError):
        nearest_size([], (10, 10))


# ------------------------------------------------------------------------------------ decisions
@pytest.fixture
def models():
    nulls = {("a", "aligned"): _null("a", seed=1), ("b", "aligned"): _null("b", std=3.0, seed=2)}
    genuine = {("a", "aligned"): GenuineRange("a", "aligned", (256, 256), np.array([38.0, 40, 42, 44, 46])),
               ("b", "aligned"): GenuineRange("b", "aligned", (256, 256), np.array([18.0, 20, 22, 24]))}
    return nulls, genuine


def test_genuine_score_is_a_match(models):
    nulls, genuine = models
    d = decide([HypothesisScore("a", "aligned", 41.0), HypothesisScore("b", "aligned", 1.0)], nulls, genuine)
    assert d.decision == "match" and d.best == "a" and d.closest == "a"
    assert d.p_value == pytest.approx(1 / 401)  # the empirical floor of 400 null scores
    assert d.z == 41.0 and d.threshold == pytest.approx(2.33, abs=0.4)
    assert "within the genuine range" in d.reason


def test_score_between_null_and_genuine_range_is_a_resemblance(models):
    nulls, genuine = models
    d = decide([HypothesisScore("a", "aligned", 10.0), HypothesisScore("b", "aligned", 0.0)], nulls, genuine,
               families={"a": "pix2pix"})
    assert d.decision == "unknown" and d.best is None and d.closest == "a"
    assert d.resemblance == "closest: a, same family (pix2pix), not the same model"
    from scipy.stats import t

    k = t.ppf(1 - FAMILY_MISS, 4) * np.sqrt(1 + 1 / 5)  # the prediction bound for one more of 5 scores
    assert d.genuine_low == pytest.approx(42 - k * np.std([38, 40, 42, 44, 46], ddof=1))


def test_below_every_threshold_is_unknown_with_closest(models):
    nulls, genuine = models
    d = decide([HypothesisScore("a", "aligned", 1.0), HypothesisScore("b", "aligned", 2.0)], nulls, genuine)
    assert d.decision == "unknown" and d.best is None
    assert d.closest == "a"  # 1.0 / std 1 beats 2.0 / std 3 once standardised
    assert "no generator reaches its threshold" in d.reason


def test_closest_uses_standardised_scores(models):
    nulls, _ = models
    d = decide([HypothesisScore("a", "aligned", 4.0), HypothesisScore("b", "aligned", 9.0)], nulls)
    assert d.closest == "a" and d.standardised["a"] > d.standardised["b"]
    assert d.decision == "match"  # no genuine range given: no family test


def test_untestable_query_is_unknown_whatever_its_scores(models):
    nulls, genuine = models
    flat = ResidualStats((256, 256), 0.0, 0, 0.0, 0.0)
    d = decide([HypothesisScore("a", "aligned", 41.0)], nulls, genuine, stats=flat)
    assert d.decision == "unknown" and d.best is None
    assert d.reason.startswith("insufficient texture/noise to attribute")


def test_hypotheses_split_the_false_alarm_rate():
    nulls = {("a", "aligned"): _null("a", n=20000), ("a", "resize"): _null("a", "resize", n=20000, seed=3)}
    one = decide([HypothesisScore("a", "aligned", 2.45)], nulls)
    two = decide([HypothesisScore("a", "aligned", 2.45), HypothesisScore("a", "resize", -5.0)], nulls)
    assert one.decision == "match" and two.decision == "unknown"  # 2.45 > z(0.99) but < z(0.995)
    assert two.p_value == pytest.approx(2 * one.p_value, rel=1e-9)


def test_a_wider_search_than_the_null_raises_the_threshold():
    nulls = {("a", "crop"): _null("a", "crop", mean=4.0, std=0.5, positions=100, n=5000)}
    same = decide([HypothesisScore("a", "crop", 5.4, n_positions=100)], nulls)
    wider = decide([HypothesisScore("a", "crop", 5.4, n_positions=10000)], nulls)
    assert same.decision == "match" and wider.decision == "unknown"
    assert wider.threshold > same.threshold


def test_missing_null_cannot_match():
    d = decide([HypothesisScore("a", "aligned", 100.0)], {})
    assert d.decision == "unknown" and d.closest is None and "no calibrated null" in d.reason
    d = decide([], {})
    assert d.reason == "no generator to compare with"
    with pytest.raises(ValueError):
        decide([], {}, fpr=0.0)


def test_as_dict_is_plain(models):
    nulls, genuine = models
    d = decide([HypothesisScore("a", "aligned", 41.0, offset=(3, 4), scale=(0.5, 0.5))], nulls, genuine).as_dict()
    assert d["decision"] == "match" and d["offset"] == [3, 4] and d["scale"] == [0.5, 0.5]
    assert set(d) >= {"decision", "best", "closest", "reason", "p_value", "resemblance"}


# ------------------------------------------------------------------ block-grid check of JPEG matches
def test_a_jpeg_match_stands_only_if_it_holds_off_the_block_grid(models):
    nulls, genuine = models
    match = decide([HypothesisScore("a", "aligned", 41.0)], nulls, genuine)
    off_null = _null("a", "offgrid@q90", seed=5)
    thr = off_null.threshold(0.01)
    kept = off_grid_check(match, HypothesisScore("a", "aligned", thr + 0.5), off_null, 0.01)
    assert kept.decision == "match" and kept.best == "a" and kept.z == match.z
    assert "without the JPEG block grid" in kept.reason and kept.reason.startswith(match.reason)
    vetoed = off_grid_check(match, HypothesisScore("a", "aligned", thr - 0.5), off_null, 0.01)
    assert vetoed.decision == "unknown" and vetoed.best is None and vetoed.closest == "a"
    assert "JPEG 8x8 block grid only" in vetoed.reason and "offgrid@q90" in vetoed.reason
    # no null to test it against: no match either
    assert off_grid_check(match, HypothesisScore("a", "aligned", 99.0), None, 0.01).decision == "unknown"


def test_the_block_grid_check_counts_a_wider_search_and_leaves_non_matches_alone(models):
    nulls, genuine = models
    match = decide([HypothesisScore("a", "aligned", 41.0)], nulls, genuine)
    crop_null = _null("a", "crop", mean=4.0, std=0.5, positions=100, n=5000)
    z = crop_null.threshold(0.01) + 0.05
    assert off_grid_check(match, HypothesisScore("a", "crop", z, n_positions=100), crop_null, 0.01).decision == "match"
    assert off_grid_check(match, HypothesisScore("a", "crop", z, n_positions=10000), crop_null, 0.01).decision == "unknown"
    unknown = decide([HypothesisScore("a", "aligned", 1.0)], nulls, genuine)
    assert off_grid_check(unknown, HypothesisScore("a", "aligned", -9.0), None, 0.01) is unknown
