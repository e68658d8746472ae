"""Tests of the scaled-query search (``fingerprint.scaled_search``, ``resample``, ``surface_stats``,
``camera_search``) on simulated cameras: resized and resized-then-cropped queries are found at the
right factor and offset, another camera's query is not matched, and the statistics agree with
``fingerprint.scores``."""

from __future__ import annotations

import functools
import os
import math

import numpy as np
import pytest
from PIL import Image

from fingerprint.build import build_fingerprint
from fingerprint.camera_search import CameraSearch
from fingerprint.error_budget import ALPHA, SearchPlan, threshold
from fingerprint.resample import resample_fingerprint, resized_shape, wrap_to_fast
from fingerprint.residual import extract_residual
from fingerprint.scaled_search import ScaledSearch
from fingerprint.scores import ReferenceSpectrum
from fingerprint.surface_stats import Template, coarse_stats, peak_stats
from fingerprint.synthetic import make_camera
from kernels.spec import GRAY_WEIGHTS

SHAPE = (240, 320)


# --- helpers (before the first test) -----------------------------------------------------------------
@functools.cache
def camera(seed: int):
    """A simulated camera and its fingerprint estimated from 8 flat-fields (the real estimator)."""
    cam = make_camera(f"cam{seed}", seed, shape=SHAPE)
    return cam, build_fingerprint(cam.images(8, seed=0, flat=True))


def photo(seed: int, index: int = 0) -> np.ndarray:
    return next(camera(seed)[0].images(1, seed=100 + index))


def resize(image: np.ndarray, factor: float, filt=Image.Resampling.LANCZOS) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), filt))


def product(image: np.ndarray) -> np.ndarray:
    """``W * I`` of a query (sigma-2 residual times gray image)."""
    return extract_residual(image) * (image.astype(np.float32) @ np.asarray(GRAY_WEIGHTS, np.float32))


def searched(query: np.ndarray, seed: int, **options):
    search = ScaledSearch(camera(seed)[1], **options)
    wi = product(query)
    plan = SearchPlan(tuple(search.stages(wi.shape)))
    return search, wi, plan


# --- resampling geometry --------------------------------------------------------------------------
def test_resampling_maps_query_pixels_onto_the_sensor_by_x_over_s():
    # out(y, x) is a linear ramp read at sensor position ((y + 0.5) / s - 0.5, (x + 0.5) / s - 0.5),
    # up to the sub-pixel bias of a discrete antialiasing filter (Pillow's taps are not
    # symmetric about every centre: at most 0.1 sensor pixel here, as in any editor's resize)
    H, W = 120, 160
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    ramp = 0.5 * yy + 0.25 * xx
    s = 0.6
    out = resample_fingerprint(ramp, s)
    assert out.shape == resized_shape((H, W), s) == (72, 96)
    y, x = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    want = 0.5 * ((y + 0.5) / s - 0.5) + 0.25 * ((x + 0.5) / s - 0.5)
    inner = (slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(out[inner], want[inner], atol=0.1 * (0.5 + 0.25))
    assert abs(float(np.mean(out[inner] - want[inner]))) < 0.02  # no drift: the grid is x -> x / s


def test_a_window_is_the_same_pixels_as_the_whole_resample():
    rng = np.random.default_rng(3)
    k = rng.standard_normal((100, 140)).astype(np.float32)
    whole = resample_fingerprint(k, 0.7)
    win = resample_fingerprint(k, 0.7, (30, 40), origin=(11, 23))
    np.testing.assert_allclose(win, whole[11:41, 23:63], atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        resample_fingerprint(k, 0.7, (30, 40), origin=(60, 0))
    with pytest.raises(ValueError, match="scale"):
        resample_fingerprint(k, 1.2)


def test_wrap_padding_reaches_fast_sizes_with_the_fingerprint_repeated():
    t = np.arange(97 * 101, dtype=np.float32).reshape(97, 101)
    p = wrap_to_fast(t)
    assert p.shape[0] >= 97 and p.shape[1] >= 101 and p.shape != t.shape
    np.testing.assert_array_equal(p[:97, :101], t)
    np.testing.assert_array_equal(p[97:, :101], t[: p.shape[0] - 97])


# --- surface statistics ----------------------------------------------------------------------------
def test_peak_stats_pce_is_exactly_the_scores_pce(rng):
    k = rng.standard_normal((90, 130)).astype(np.float32)
    q = k[20:70, 30:110] + 2.0 * rng.standard_normal((50, 80)).astype(np.float32)
    spec = ReferenceSpectrum(k)
    want = spec.pce(q, search="crop")
    got = peak_stats(spec.cross_correlation(q), (slice(0, 41), slice(0, 51)))
    assert got.offset == want.offset == (20, 30)
    assert got.n_positions == want.n_positions
    assert got.pce == pytest.approx(want.pce, rel=1e-6)
    assert got.energy >= got.pce  # the 3 x 3 around the peak holds at least the peak


def test_the_turned_query_comes_from_the_same_spectrum(rng):
    import scipy.fft

    k = rng.standard_normal((64, 96)).astype(np.float32)
    q = rng.standard_normal((40, 50)).astype(np.float32)
    q[...] += np.rot90(k[10:50, 30:80], 2)  # the 180-degree turned crop of k at (10, 30)
    q -= q.mean()
    kc = k - k.mean()
    t = Template(scipy.fft.rfft2(kc), k.shape, k.shape)
    straight, turned = coarse_stats(t, scipy.fft.rfft2(q, s=k.shape), q.shape, both=True)
    want = ReferenceSpectrum(k).pce(np.ascontiguousarray(np.rot90(q, 2)), search="crop")
    assert turned.offset == want.offset == (10, 30)
    assert turned.pce == pytest.approx(want.pce, rel=1e-3)
    assert straight.pce < turned.pce / 10


@pytest.mark.parametrize("kshape, qshape", [((64, 96), (40, 50)), ((90, 131), (75, 60)), ((120, 97), (30, 90)),
                                             ((81, 80), (20, 20)), ((64, 64), (60, 30))])
def test_coarse_stats_band_equals_the_whole_surface(rng, kshape, qshape):
    """Where only a band of rows is inverted (``surface_band``), every peak statistic is the whole
    surface's: PCE, energy and offset, for both turns; odd and even widths, bands and whole surfaces."""
    import scipy.fft

    from fingerprint.surface_stats import _BAND_MAX, _RADIUS, surface_band

    k = rng.standard_normal(kshape).astype(np.float32)
    h, w = qshape
    q = 0.3 * k[2 : 2 + h, 3 : 3 + w] + rng.standard_normal(qshape).astype(np.float32)
    q -= q.mean()
    t = Template(scipy.fft.rfft2(k - k.mean()), kshape, kshape)
    spec_q = scipy.fft.rfft2(q, s=kshape)
    got = coarse_stats(t, spec_q, qshape, both=True)
    th, tw = kshape
    for g, turned in zip(got, (False, True)):
        c = scipy.fft.irfft2(t.spectrum * (spec_q if turned else np.conj(spec_q)), s=kshape)
        allowed = (slice(h - 1, th), slice(w - 1, tw)) if turned else (slice(0, th - h + 1), slice(0, tw - w + 1))
        want = peak_stats(c, allowed)
        assert g.offset == want.offset and g.n_positions == want.n_positions
        assert g.pce == pytest.approx(want.pce, rel=1e-5)
        assert g.energy == pytest.approx(want.energy, rel=1e-5)
    # the band itself: its rows and the whole surface's energy
    prod = t.spectrum * np.conj(spec_q)
    c = scipy.fft.irfft2(prod, s=kshape)
    band, total = surface_band(prod.copy(), kshape, -_RADIUS, th - h + 1 + _RADIUS)
    np.testing.assert_allclose(band, np.take(c, np.arange(-_RADIUS, th - h + 1 + _RADIUS) % th, axis=0),
                               atol=1e-5 * float(np.abs(c).max()))
    assert total == pytest.approx(float(np.sum(c.astype(np.float64) ** 2)), rel=1e-5)
    assert _BAND_MAX < 1.0


# --- the search on simulated cameras ------------------------------------------------------------------
def test_a_resized_whole_frame_is_matched_at_its_implied_factor():
    query = resize(photo(1), 0.7)
    search, wi, plan = searched(query, 1)
    got = search.implied(wi, plan)
    assert got.match and got.false_alarm <= ALPHA
    assert got.scale == pytest.approx(0.7, abs=2e-3)
    assert got.threshold == pytest.approx(plan.threshold("implied scale"))


def test_a_resized_whole_frame_is_also_found_by_the_scale_search():
    query = resize(photo(1), 0.7)
    search, wi, plan = searched(query, 1)
    got = search.search(wi, plan)
    assert got.match and got.pce >= got.threshold
    assert abs(math.log(got.scale / 0.7)) < 3.0 / max(wi.shape)
    assert got.offset == (0, 0)


@pytest.mark.parametrize("factor, top, left", [(0.7, 17, 23), (0.55, 5, 40)])
def test_a_resized_then_cropped_query_is_found_at_its_factor_and_offset(factor, top, left):
    resized = resize(photo(2, 1), factor)
    h, w = resized.shape[:2]
    query = np.ascontiguousarray(resized[top: top + int(0.75 * h), left: left + int(0.75 * w)])
    search, wi, plan = searched(query, 2)
    implied = search.implied(wi, plan)  # same aspect as the sensor: a whole frame at 0.75 * factor?
    assert implied is not None and not implied.match
    got = search.search(wi, plan)
    assert got.match, got
    assert abs(math.log(got.scale / factor)) < 1.5 / max(wi.shape)
    assert abs(got.offset[0] - top) <= 1 and abs(got.offset[1] - left) <= 1
    assert got.false_alarm == pytest.approx(plan.false_alarm("scale search", got.pce))
    assert got.threshold == pytest.approx(plan.threshold("scale search"))


def test_a_query_from_another_camera_is_not_matched():
    query = resize(photo(3), 0.7)
    h, w = query.shape[:2]
    for q in (query, np.ascontiguousarray(query[10: 10 + int(0.8 * h), 5: 5 + int(0.8 * w)])):
        search, wi, plan = searched(q, 1)
        for got in (search.implied(wi, plan), search.search(wi, plan)):
            if got is None:
                continue
            assert not got.match
            assert got.pce < got.threshold and got.false_alarm > 1e-6


def test_a_query_that_fits_nowhere_searches_nothing():
    big = np.zeros((300, 400), np.float32)
    search = ScaledSearch(camera(1)[1])
    implied, scaled = search.stages(big.shape)
    assert implied.n_positions == 0 and scaled.n_positions == 0
    plan = SearchPlan((implied, scaled))
    assert search.search(big, plan) is None and search.implied(big, plan) is None


def test_grids_follow_the_query_size_and_start_at_the_smallest_factor():
    search = ScaledSearch(np.zeros((2000, 3008), np.float32))
    d, r, fine = search._grid((1350, 2030))
    assert d == 2 and r == 4  # the coarse sweep: every 4th fine point at half resolution
    assert fine[0] == pytest.approx(math.log(0.675))  # the whole-frame factor comes first
    assert fine[-1] == 0.0 and np.all(np.diff(fine) > 0)
    assert np.diff(fine)[:-1] == pytest.approx(1.0 / 2030)
    points = search._coarse_points(len(fine), r)
    assert points[0] == 0 and points[-1] == len(fine) - 1 and np.all(np.diff(points) <= r)
    _, _, fine_small = search._grid((675, 1015))
    assert np.diff(fine_small)[0] > np.diff(fine)[0]  # a smaller query tolerates a larger scale error


def test_progress_is_reported_through_the_sweep():
    query = resize(photo(3), 0.7)
    search, wi, plan = searched(query, 1)
    seen = []
    search.search(wi, plan, progress=lambda f, text: seen.append((f, text)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert "scale search: factor" in seen[0][1]


def test_the_scale_search_stage_counts_every_shift_of_the_fine_grid():
    search = ScaledSearch(np.zeros((240, 320), np.float32))
    implied, scaled = search.stages((120, 160))
    _, _, fine = search._grid((120, 160))
    want = sum(search._shifts((120, 160), math.exp(x)) for x in fine)
    assert scaled.n_positions == want and scaled.scales == len(fine)
    assert implied.n_positions == 1  # the whole frame at 0.5, upright (landscape query, landscape sensor)
    assert SearchPlan((scaled,)).threshold("scale search") == pytest.approx(threshold(ALPHA, want))


# --- one camera decision ------------------------------------------------------------------------------
def test_a_query_of_the_fingerprints_size_has_only_the_native_stage():
    cs = CameraSearch(camera(1)[1])
    plan = cs.plan(SHAPE, n_sigmas=2)
    assert [s.name for s in plan.active] == ["native"]
    assert plan.threshold("native") == pytest.approx(threshold(ALPHA, 4))  # 0 and 180 degrees x 2 sigmas
    got = cs.score([product(photo(1, 2))], n_sigmas=2)
    assert got.match and got.stage == "native" and got.scale == 1.0
    assert got.searched == ["native"]


def test_camera_search_runs_the_stages_in_order_and_reports_what_was_searched():
    cs = CameraSearch(camera(2)[1])
    resized = resize(photo(2, 3), 0.62)
    got = cs.score([product(resized)])
    assert got.match and got.stage == "implied scale" and got.searched == ["native", "implied scale"]
    assert set(got.as_dict()) >= {"scale", "offset", "rotation", "n_positions", "false_alarm"}
    other = CameraSearch(camera(1)[1]).score([product(resized)])
    assert not other.match and other.searched == ["native", "implied scale", "scale search"]
    assert other.text.startswith("no match: native: searched")
    assert "scale search: searched" in other.text


def test_decide_cameras_runs_the_cheap_stages_first_and_stops_at_a_match():
    from fingerprint.camera_search import decide_cameras

    searches = {"a": CameraSearch(camera(1)[1]), "b": CameraSearch(camera(2)[1])}
    resized = resize(photo(2, 4), 0.8)
    asked = []
    dec = decide_cameras(searches, product(resized), lambda: asked.append(1) or product(resized))
    assert dec["b"].match and not dec["a"].match
    assert asked == []  # the sigma-5 residual is computed only when nothing matched
    assert "scale search" not in dec["a"].searched  # a match elsewhere spares the expensive stage
    plan = searches["a"].plan(resized.shape[:2], 2)  # the plan counts the second residual from the start
    assert dec["a"].stage in ("native", "implied scale")
    assert dec["a"].threshold == pytest.approx(plan.threshold(dec["a"].stage))


# --- the scale-search stage over several cameras (camera_search.scale_stage) -------------------------
def library_order_stage(searches, wi, n_sigmas, dec):
    """The stage as it was: camera by camera in library order until one matches (the reference)."""
    from fingerprint.camera_search import merge

    for c, s in searches.items():
        if any(d.match for d in dec.values()):
            break
        dec[c] = merge(dec[c], s.score([wi], n_sigmas=n_sigmas, stages=("scale search",)))
    return dec


def first_passes(searches, wi, n_sigmas=1):
    return {c: s.score([wi], n_sigmas=n_sigmas, stages=("native", "implied scale")) for c, s in searches.items()}


def resized_crop(seed: int, factor: float, index: int = 1) -> np.ndarray:
    resized = resize(photo(seed, index), factor)
    h, w = resized.shape[:2]
    return np.ascontiguousarray(resized[7: 7 + int(0.75 * h), 11: 11 + int(0.75 * w)])


def test_a_stepped_run_ends_exactly_as_the_search():
    search, wi, plan = searched(resized_crop(2, 0.7), 2)
    run = search.start(wi, plan)
    assert run.fraction == 0.0 and not run.done
    fractions = []
    while run.step():
        fractions.append(run.fraction)
    want = search.search(wi, plan)
    got = run.result
    assert run.done and got.match and fractions == sorted(fractions)
    assert (got.pce, got.scale, got.offset, got.rotation, got.scales_tried, got.n_positions) == \
        (want.pce, want.scale, want.offset, want.rotation, want.scales_tried, want.n_positions)
    assert not run.step()  # an ended run stays ended


def test_a_survey_finds_the_factor_and_changes_nothing_in_the_search(rng):
    # a resampled, cropped fingerprint in noise: strong enough to show at 1/4 resolution
    k, other = (rng.standard_normal((400, 600)).astype(np.float32) for _ in range(2))
    t = resample_fingerprint(k, 0.7)
    wi = np.ascontiguousarray(t[20:20 + 210, 30:30 + 315] + 2.0 * rng.standard_normal((210, 315)).astype(np.float32))
    right, wrong = ScaledSearch(k, coarse_min_side=16), ScaledSearch(other, coarse_min_side=16)
    plan = SearchPlan(tuple(right.stages(wi.shape)))
    before = right.search(wi, plan)
    seen = right.survey(wi)
    assert not right.cache.items and not right.survey_cache.items  # a template is kept at its second use
    after = right.search(wi, plan)
    assert right.survey(wi).pce == seen.pce  # from the same templates, now kept
    assert (before.pce, before.scale, before.offset, before.scales_tried) == \
        (after.pce, after.scale, after.offset, after.scales_tried)  # the survey's templates are cached apart
    assert before.match and right.cache.items and right.survey_cache.items
    assert seen.level == 4 and abs(math.log(seen.scale / 0.7)) < 0.03 and seen.rotation == 0
    assert seen.n_positions > seen.scales_tried > 1
    assert seen.log10_false_alarm < -10 < wrong.survey(wi).log10_false_alarm  # it ranks; it never decides
    assert ScaledSearch(k).survey(wi) is None  # 210 px at 1/4 is under the default 128 px: no survey


@pytest.mark.parametrize("names", [("a", "b", "c"), ("c", "b", "a"), ("b", "a", "c")])
def test_no_camera_threshold_or_score_depends_on_the_order_or_the_others(names):
    from fingerprint.camera_search import scale_stage

    searches = {n: CameraSearch(camera(s)[1], coarse_min_side=16) for n, s in zip(names, (1, 2, 4))}
    wi = product(resized_crop(3, 0.7))  # camera 3 is none of them: every search runs to its end
    dec = scale_stage(searches, list(searches), wi, 1, {})  # no earlier stages: the stage's own decisions
    for n, s in searches.items():
        alone = s.score([wi], stages=("scale search",))
        assert dec[n].searched == ["scale search"] and not dec[n].match and dec[n].stage == "scale search"
        assert dec[n].threshold == pytest.approx(s.plan(wi.shape).threshold("scale search"))
        assert (dec[n].pce, dec[n].scale, dec[n].offset, dec[n].threshold, dec[n].false_alarm) == \
            (alone.pce, alone.scale, alone.offset, alone.threshold, alone.false_alarm)


def strong_case(seed: int = 5):
    """Three random fingerprints of 400 x 600 and a resized (0.7), cropped copy of the third in
    noise: strong enough at 1/4 resolution for the survey to run (``coarse_min_side=16``)."""
    gen = np.random.default_rng(seed)
    ks = [gen.standard_normal((400, 600)).astype(np.float32) for _ in range(3)]
    t = resample_fingerprint(ks[2], 0.7)
    wi = np.ascontiguousarray(t[20:20 + 210, 30:30 + 315] + 3.0 * gen.standard_normal((210, 315)).astype(np.float32))
    return {n: CameraSearch(k, coarse_min_side=16) for n, k in zip("xyz", ks)}, wi


@pytest.mark.parametrize("case", ["simulated cameras", "survey"])
def test_the_stage_decides_as_the_library_order_and_spares_the_wrong_cameras(case):
    from fingerprint.camera_search import decide_cameras

    # the true camera z last in library order: the old stage searched both wrong cameras first
    if case == "survey":
        searches, wi = strong_case()
    else:  # no survey (queries this small), the sweeps side by side
        searches = {n: CameraSearch(camera(s)[1]) for n, s in (("x", 1), ("y", 4), ("z", 2))}
        wi = product(resized_crop(2, 0.7))
    seen = []
    new = decide_cameras(searches, wi, progress=lambda c, f, text: seen.append((c, text)))
    old = library_order_stage(searches, wi, 1, first_passes(searches, wi))
    assert new["z"].match and old["z"].match and new["z"].stage == "scale search"
    if case == "survey":  # every camera surveyed; the clear one searched first, alone
        assert [c for c, text in seen if "survey" in text] == ["x", "y", "z"]
        assert {c for c, text in seen if "survey" not in text} == {"z"}
    assert not new["x"].match and not new["y"].match
    assert (new["z"].pce, new["z"].scale, new["z"].offset) == (old["z"].pce, old["z"].scale, old["z"].offset)
    assert new["z"].threshold == pytest.approx(searches["z"].plan(wi.shape).threshold("scale search"))
    assert all("scale search" in old[c].searched for c in "xy")
    assert not any("scale search" in new[c].searched for c in "xy")  # stopped before they ended
    assert new["x"].searched == ["native", "implied scale"]


def test_the_stage_runs_nothing_after_a_match_and_everything_when_exhaustive():
    from fingerprint.camera_search import scale_stage

    searches = {"x": CameraSearch(camera(1)[1]), "z": CameraSearch(camera(2)[1])}
    wi = product(resized_crop(2, 0.7))
    dec = first_passes(searches, wi)
    matched = CameraSearch(camera(2)[1]).score([wi])  # a match found earlier (here: the whole search)
    dec["z"] = matched
    assert scale_stage(searches, ["x", "z"], wi, 1, dec)["x"].searched == ["native", "implied scale"]
    seen = []
    dec = scale_stage(searches, ["x", "z"], wi, 1, first_passes(searches, wi), exhaustive=True,
                      progress=lambda c, f, text: seen.append(c))
    assert all("scale search" in d.searched for d in dec.values()) and dec["z"].match and not dec["x"].match
    assert set(seen) == {"x", "z"}


def _search_in_child(conn, query: np.ndarray) -> None:
    search, wi, plan = searched(query, 2)
    got = search.search(wi, plan)
    conn.send((got.pce, got.scale, got.offset))
    conn.close()


def test_templates_made_ahead_in_another_thread_give_the_same_search_and_survive_a_fork():
    """The coarse templates are made one point ahead by the prefetch threads (``template_cache.prefetch_pool``):
    a second search of the same query (templates now from the cache) and a search in a process
    forked after the threads started (their threads do not survive the fork) score the same."""
    import multiprocessing

    import fingerprint.template_cache as tc

    query = np.ascontiguousarray(resize(photo(2, 1), 0.7)[10:150, 20:210])
    search, wi, plan = searched(query, 2)
    first = search.search(wi, plan)
    assert os.getpid() in tc._PREFETCH  # the sweep went through the prefetch threads
    again = search.search(wi, plan)
    assert (again.pce, again.scale, again.offset) == (first.pce, first.scale, first.offset)
    fresh = ScaledSearch(camera(2)[1], cache_bytes=0).search(wi, plan)  # nothing cached: every template made ahead
    assert (fresh.pce, fresh.scale, fresh.offset) == (first.pce, first.scale, first.offset)
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_search_in_child, args=(child, query))
    proc.start()
    assert parent.poll(120), "the forked search did not finish (prefetch threads lost in the fork?)"
    got = parent.recv()
    proc.join(30)
    assert got == (first.pce, first.scale, first.offset)


def test_the_template_cache_keeps_a_template_from_its_second_use_within_its_limit():
    from fingerprint.surface_stats import Template
    from fingerprint.template_cache import TemplateCache

    made = []

    def make(key):
        def f():
            made.append(key)
            return Template(np.zeros((4, 3), np.complex64), (4, 4), (4, 4))  # 96 bytes
        return f

    cache = TemplateCache(limit=200)
    for key in ("a", "b", "a", "a", "b", "c", "c", "c"):
        cache.get(key, make(key))
    # a: made twice, then a hit; b: made twice, kept; c: made twice, no room (200 < 3 x 96), made again
    assert made == ["a", "b", "a", "b", "c", "c", "c"]
    assert set(cache.items) == {"a", "b"} and cache.used == 192 and cache.hits == 1
