"""Tests of ``fingerprint.error_budget``: false-alarm probabilities, thresholds and search plans."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from fingerprint import error_budget
from fingerprint.error_budget import (
    ALPHA,
    BASE_PCE,
    SearchPlan,
    Stage,
    false_alarm,
    false_alarm_one,
    log10_false_alarm,
    threshold,
)
from fingerprint.scores import DEFAULT_PCE_THRESHOLD, search_threshold


def test_doctests():
    failures, tried = doctest.testmod(error_budget, verbose=False)
    assert tried > 0 and failures == 0


def test_base_is_the_scores_default():
    assert BASE_PCE == DEFAULT_PCE_THRESHOLD
    assert ALPHA == pytest.approx(0.5 * math.erfc(math.sqrt(BASE_PCE / 2.0)), rel=1e-12)


@pytest.mark.parametrize("pce", [-30.0, -1.0, 0.0, 0.5, 4.0, 25.0, 60.0, 200.0])
def test_one_position_is_the_binghamton_q_function(pce):
    # FAfromPCE: p = Q(sign(pce) sqrt(|pce|)); for pce >= 0 that is 0.5 erfc(sqrt(pce / 2))
    expected = scipy.stats.norm.sf(math.copysign(math.sqrt(abs(pce)), pce))
    assert false_alarm_one(pce) == pytest.approx(expected, rel=1e-10)
    if pce >= 0:
        assert false_alarm_one(pce) == pytest.approx(0.5 * math.erfc(math.sqrt(pce / 2.0)), rel=1e-10)


@pytest.mark.parametrize("pce, n", [(10.0, 1), (10.0, 7), (20.0, 1e3), (30.0, 123456), (5.0, 2.5)])
def test_n_positions_is_sidak(pce, n):
    p = false_alarm_one(pce)
    assert false_alarm(pce, n) == pytest.approx(1.0 - (1.0 - p) ** n, rel=1e-9)


def test_tiny_probabilities_stay_accurate_where_the_naive_formula_rounds_to_zero():
    pce, n = 150.0, 1e9
    p = false_alarm_one(pce)
    assert 1.0 - (1.0 - p) ** n == 0.0  # what the textbook formula gives in float64
    assert false_alarm(pce, n) == pytest.approx(n * p, rel=1e-9)


def test_log10_is_finite_where_the_probability_underflows():
    assert false_alarm(5000.0, 1e6) == 0.0
    log_q = float(scipy.special.log_ndtr(-math.sqrt(5000.0)))
    assert log10_false_alarm(5000.0, 1e6) == pytest.approx((math.log(1e6) + log_q) / math.log(10), rel=1e-12)
    for pce, n in [(20.0, 10), (40.0, 1e5), (80.0, 1e8), (0.0, 3)]:
        assert log10_false_alarm(pce, n) == pytest.approx(math.log10(false_alarm(pce, n)), abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 4, 100, 12345, 1e6, 1e9, 1e12])
def test_threshold_agrees_with_search_threshold_at_pce_60(n):
    assert threshold(ALPHA, n) == pytest.approx(search_threshold(60.0, int(n)), rel=1e-9)


@pytest.mark.parametrize("alpha, n", [(0.05, 1), (0.01, 1e4), (1e-3, 3e7), (ALPHA, 1e9), (1e-100, 1e6),
                                      (1e-300, 1e3)])
def test_threshold_inverts_false_alarm(alpha, n):
    tau = threshold(alpha, n)
    assert false_alarm(tau, n) == pytest.approx(alpha, rel=1e-6) or \
        log10_false_alarm(tau, n) == pytest.approx(math.log10(alpha), rel=1e-9)


def test_threshold_grows_with_positions_and_falls_with_the_rate():
    taus = [threshold(ALPHA, n) for n in (1, 10, 1e3, 1e6, 1e9)]
    assert taus == sorted(taus) and taus[0] == 60.0
    assert threshold(ALPHA / 2, 1e6) > threshold(ALPHA, 1e6) > threshold(2 * ALPHA, 1e6)
    # halving the rate costs about 2 ln 2 of PCE at these tails (P ~ exp(-tau / 2))
    assert 1.2 < threshold(ALPHA / 2, 1e6) - threshold(ALPHA, 1e6) < 1.45


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_bad_rates_are_refused(bad):
    with pytest.raises(ValueError, match="alpha"):
        threshold(bad, 10)


@pytest.mark.parametrize("bad", [0, 0.5, -3, float("inf"), True])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="n_positions"):
        false_alarm(10.0, bad)


def test_the_threshold_holds_its_rate_on_gaussian_maxima(rng):
    # the model itself: best of n independent N(0, 1) correlations, squared with sign
    n, trials, alpha = 1000, 4000, 0.05
    c = rng.standard_normal((trials, n))
    best = np.max(np.sign(c) * c * c, axis=1)
    measured = float(np.mean(best >= threshold(alpha, n)))
    assert abs(measured - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / trials)


# --- plans -----------------------------------------------------------------------------------------
def test_one_stage_plan_is_the_pooled_threshold():
    plan = SearchPlan((Stage("native", (5, 7), rotations=2, sigmas=2),))
    assert plan.n_positions == 24
    assert plan.threshold("native") == pytest.approx(threshold(ALPHA, 24))
    assert plan.false_alarm("native", plan.threshold("native")) == pytest.approx(ALPHA, rel=1e-6)


def test_shares_are_renormalised_over_stages_that_can_run():
    plan = SearchPlan((Stage("native", (1000,), weight=0.5), Stage("implied scale", (), weight=0.25),
                       Stage("scale search", (50, 50), weight=0.25)))
    assert plan.share("implied scale") == 0.0 and plan.threshold("implied scale") == math.inf
    assert plan.share("native") == pytest.approx(2 / 3) and plan.share("scale search") == pytest.approx(1 / 3)
    assert plan.threshold("native") == pytest.approx(threshold(ALPHA * 2 / 3, 1000))
    assert plan.false_alarm("implied scale", 1e6) == 1.0


def test_a_match_is_a_false_alarm_at_most_alpha_in_every_stage():
    plan = SearchPlan((Stage("a", (10,) * 3, weight=2.0), Stage("b", (1e6,), weight=1.0),
                       Stage("c", (400,) * 6, weight=1.0)))
    for name in ("a", "b", "c"):
        tau = plan.threshold(name)
        assert plan.false_alarm(name, tau * 1.001) <= plan.alpha <= plan.false_alarm(name, tau * 0.999)
        assert plan.log10_false_alarm(name, tau) == pytest.approx(math.log10(plan.alpha), abs=1e-6)


def test_the_stage_rates_add_up_to_the_budget():
    plan = SearchPlan((Stage("a", (10,), weight=3.0), Stage("b", (2000, 30), weight=1.0)), alpha=0.01)
    total = sum(false_alarm(plan.threshold(s.name), s.n_positions) for s in plan.stages)
    assert total == pytest.approx(0.01, rel=1e-6)


def test_uniform_plan_gives_every_stage_the_threshold_of_all_positions():
    stages = (Stage("native", (1000,)), Stage("scale search", (10**6,) * 3))
    plan = SearchPlan.uniform(stages)
    n = 1000 + 3 * 10**6
    assert plan.threshold("native") == pytest.approx(threshold(ALPHA, n), rel=1e-9)
    assert plan.threshold("scale search") == pytest.approx(threshold(ALPHA, n), rel=1e-9)


def test_text_says_what_was_searched_and_the_threshold():
    plan = SearchPlan((Stage("scale search", (1_234_567,) * 36 + (1000,), rotations=4, scales=37,
                             coarse_scales=290),))
    text = plan.describe()
    assert text.startswith("searched 4 rotations × 37 scales × ≤ 1.2 M shifts")
    assert "coarse sweep of 290 scales" in text
    assert text.endswith(f"threshold {plan.threshold('scale search'):.1f}")
    two = SearchPlan((Stage("native", (3,), sigmas=2), Stage("implied scale", ())))
    assert two.describe() == f"searched 2 sigmas × 3 shifts: threshold {two.threshold('native'):.1f}"
    empty = SearchPlan((Stage("native", ()),))
    assert "searched nothing" in empty.describe()


def test_plan_errors_are_one_line_value_errors():
    with pytest.raises(ValueError, match="distinct"):
        SearchPlan((Stage("a", (1,)), Stage("a", (2,))))
    with pytest.raises(ValueError, match="shift count"):
        Stage("a", (0,))
    with pytest.raises(KeyError, match="no stage"):
        SearchPlan((Stage("a", (1,)),)).threshold("b")
