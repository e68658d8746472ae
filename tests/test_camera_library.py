"""Lazy references for attribution: the shape policy, loading on demand, the caches, digest pre-selection."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import fingerprint.spectrum_cache as sc
from fingerprint.camera_library import (
    NOT_CONFIRMED,
    CameraPreselector,
    LazyCameras,
    LazyReferences,
    ReferenceEntry,
    aligned_rotations,
    can_match,
    decide_preselected,
    matching,
    not_confirmed,
)
from fingerprint.camera_search import CameraSearch, decide_cameras
from fingerprint.error_budget import threshold as budget_threshold
from fingerprint.estimate import FingerprintParams
from fingerprint.residual import extract_residual
from fingerprint.scores import ReferenceSpectrum
from fingerprint.synthetic import make_camera
from kernels.spec import gray_image
from reference_db import Library

SHAPE = (128, 128)
PARAMS = FingerprintParams()


def _add(lib, name, fingerprint, kind="camera"):
    planes = fingerprint[None] if fingerprint.ndim == 2 else fingerprint
    sums = {"S": np.ones(planes.shape, np.float32), "N": np.ones(planes.shape, np.float32)} if kind == "camera" \
        else {"sum": planes.astype(np.float32)}
    lib.add(name, kind=kind, fingerprint=fingerprint.astype(np.float32), sums=sums, n_images=1,
            shape=fingerprint.shape[-2:], params=PARAMS.as_dict() | {"kind": kind},
            sources=[(f"{name}.png", hashlib.sha256(name.encode()).hexdigest())])


@pytest.fixture
def small_library(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib, lib.transaction():
        _add(lib, "big", rng.standard_normal((64, 96)).astype(np.float32))
        _add(lib, "square", rng.standard_normal((48, 48)).astype(np.float32))
        _add(lib, "gen", rng.standard_normal((3, 32, 32)).astype(np.float32), kind="generator")
    return path


# ---- the shape policy ---------------------------------------------------------------------------
def test_shape_policy_is_a_function_of_shapes():
    assert aligned_rotations((64, 96), (64, 96)) == (0, 2)
    assert aligned_rotations((64, 96), (96, 64)) == (1, 3)
    assert aligned_rotations((48, 48), (48, 48)) == (0, 1, 2, 3)
    assert aligned_rotations((48, 48), (48, 48), (0,)) == (0,)
    assert aligned_rotations((64, 96), (64, 64)) == ()
    assert can_match("camera", (64, 96), (64, 96))  # aligned
    assert can_match("camera", (64, 96), (90, 60))  # a crop, turned
    assert not can_match("camera", (64, 96), (90, 60), rotations=(0, 2))  # ... but not without the turn
    assert not can_match("camera", (64, 96), (65, 97)) and not can_match("camera", (64, 96), (100, 50))
    assert can_match("generator", (3, 32, 32), (500, 700))  # compared on the common centred region
    with pytest.raises(ValueError):
        can_match("scanner", (4, 4), (4, 4))
    entries = [ReferenceEntry("a", "camera", (64, 96), PARAMS), ReferenceEntry("b", "camera", (48, 48), PARAMS),
               ReferenceEntry("g", "generator", (3, 32, 32), PARAMS)]
    assert matching(entries, (50, 50)) == ["a", "g"]
    assert matching(entries, (40, 40), kind="camera") == ["a", "b"]


# ---- loading on demand ----------------------------------------------------------------------------
def test_nothing_is_loaded_until_asked(small_library, tmp_path, monkeypatch):
    calls = []
    real_read = Library.fingerprint
    monkeypatch.setattr(Library, "fingerprint", lambda self, name: calls.append(name) or real_read(self, name))
    monkeypatch.setattr(Library, "get", _refuse)  # the sources and sums are never read
    with LazyReferences(small_library, cache=tmp_path / "cache") as refs:
        assert calls == [] and refs.loads == 0
        assert refs.names() == ["big", "gen", "square"] and refs.names("camera") == ["big", "square"]
        assert refs.entries["big"].shape == (64, 96) and refs.entries["gen"].shape == (3, 32, 32)
        assert refs.matching((60, 60), "camera") == ["big"] and refs.max_pixels() == 64 * 96
        made = []
        cams = LazyCameras(refs, refs.matching((48, 48), "camera"), lambda n, K: made.append(n) or (K, refs.spectrum(n, K)))
        assert list(cams) == ["big", "square"] and len(cams) == 2 and calls == []
        K, spec = cams["square"]
        assert calls == ["square"] and made == ["square"] and cams.built == ["square"] and refs.loads == 1
        assert cams["square"][0] is K and calls == ["square"]  # built once
        assert np.array_equal(spec.spectrum, ReferenceSpectrum(K).spectrum)
        with pytest.raises(KeyError):
            cams["gen"]
        listed, view = cams.as_list(), cams.view(["big", "square"], "__class__")
        assert len(listed) == 2 and bool(listed) and list(view) == ["big", "square"] and calls == ["square"]
        assert view["big"] is tuple and listed[0][0].shape == (64, 96) and calls == ["square", "big"]
    assert not (tmp_path / "cache" / "digests").exists()  # no digest was asked for


def test_a_damaged_reference_is_reported_and_left_out(small_library):
    import h5py

    from reference_db import DamagedReferenceError

    with h5py.File(small_library, "r+") as f:  # a NaN: found only when the fingerprint is read
        f["references/square/fingerprint"][0, 0] = np.nan
    warnings = []
    with LazyReferences(small_library, cache=False, warn=warnings.append) as refs:
        with pytest.raises(DamagedReferenceError):
            refs.fingerprint("square")
        assert "square" in refs.skipped and refs.names("camera") == ["big"] and len(warnings) == 1
    with LazyReferences(small_library, cache=False, warn=warnings.append) as refs:
        cams = LazyCameras(refs, ["big", "square"], lambda n, K: K)
        with pytest.raises(KeyError):  # found damaged when first looked up: left out from then on
            cams["square"]
        assert list(cams) == ["big"] and len(cams) == 1 and len(warnings) == 2


# ---- the caches -------------------------------------------------------------------------------------
def _refuse(*_args, **_kwargs):
    raise AssertionError("called although it must not be (recomputed, or read more than asked)")


def test_second_run_reads_spectra_and_digests_from_the_cache(small_library, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with LazyReferences(small_library, cache=cache) as refs:
        first = refs.spectrum("big").spectrum
        digest = refs.digest("big", 500)
        assert refs.spectra.misses == 1 and refs.digests.misses == 1
    monkeypatch.setattr(sc, "_spectrum_of", _refuse)
    monkeypatch.setattr(sc, "make_digest", _refuse)
    with LazyReferences(small_library, cache=cache) as refs:  # a new run
        assert np.array_equal(refs.spectrum("big").spectrum, first)
        again = refs.digest("big", 500)
        assert (refs.spectra.hits, refs.digests.hits) == (1, 1)
        assert np.array_equal(again.indices, digest.indices) and np.array_equal(again.values, digest.values)
        assert again.energy_fraction == digest.energy_fraction and again.shape == (64, 96)


@pytest.mark.parametrize("kind", ["spectra", "digests"])
def test_a_corrupted_cache_file_is_ignored_and_rewritten(small_library, tmp_path, kind):
    cache = tmp_path / "cache"
    with LazyReferences(small_library, cache=cache) as refs:
        expected_spectrum = refs.spectrum("square").spectrum
        expected_digest = refs.digest("square", 300)
    (path,) = (cache / kind).glob("*.npz")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    with LazyReferences(small_library, cache=cache) as refs:
        assert np.array_equal(refs.spectrum("square").spectrum, expected_spectrum)
        assert np.array_equal(refs.digest("square", 300).values, expected_digest.values)
        store = refs.spectra if kind == "spectra" else refs.digests
        assert store.rejected == 1  # refused, recomputed
    with LazyReferences(small_library, cache=cache) as refs:  # and written again, whole
        refs.spectrum("square")
        refs.digest("square", 300)
        assert (refs.spectra.hits, refs.digests.hits, refs.spectra.rejected + refs.digests.rejected) == (1, 1, 0)


def test_the_cache_folder_follows_the_option_and_the_environment(small_library, tmp_path, monkeypatch):
    monkeypatch.setenv("GANPRINT_CACHE_DIR", str(tmp_path / "env"))
    with LazyReferences(small_library) as refs:
        assert refs.spectra.root == tmp_path / "env" / "spectra" and refs.digests.root == tmp_path / "env" / "digests"
    monkeypatch.setenv("GANPRINT_CACHE_DIR", "")  # set and empty: no cache
    with LazyReferences(small_library) as refs:
        assert refs.spectra is None and refs.digests is None
        assert np.array_equal(refs.spectrum("big").spectrum, ReferenceSpectrum(refs.fingerprint("big")).spectrum)
    with LazyReferences(small_library, cache=tmp_path / "own") as refs:
        assert refs.spectra.root == tmp_path / "own" / "spectra"


# ---- digest pre-selection ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    """20 synthetic cameras of 128 x 128 in a library, and queries: matches at several strengths
    (blended with another camera's photo), one turned by 90 degrees, and photos of unknown cameras."""
    rng = np.random.default_rng(1)
    cams = [make_camera(f"c{j}", 300 + j, shape=SHAPE, prnu_std=0.02) for j in range(20)]
    path = tmp_path_factory.mktemp("cams") / "lib.h5"
    with Library(path, "a") as lib, lib.transaction():
        for j, c in enumerate(cams):
            _add(lib, f"cam{j:02d}", (c.K + 0.5 * c.K.std() * rng.standard_normal(SHAPE)).astype(np.float32))
    queries = []
    for j, w in [(0, 1.0), (1, 1.0), (2, 0.8), (3, 0.7), (4, 0.6), (5, 0.5), (6, 1.0)]:
        photo = next(cams[j].images(1, seed=9, jpeg_quality=90)).astype(np.float32)
        other = next(make_camera("other", 900 + j, shape=SHAPE).images(1, seed=j)).astype(np.float32)
        image = np.clip(np.round(w * photo + (1 - w) * other), 0, 255).astype(np.uint8)
        queries.append(np.ascontiguousarray(np.rot90(image)) if j == 6 else image)
    for j in range(4):
        queries.append(next(make_camera("unknown", 700 + j, shape=SHAPE).images(1, seed=j, jpeg_quality=85)))
    return path, [(extract_residual(q), extract_residual(q, 5.0), gray_image(q)) for q in queries], queries


def _decision(dec):
    matches = sorted((d.false_alarm, n) for n, d in dec.items() if d.match)
    return matches[0][1] if matches else None


@pytest.mark.parametrize("top_k", [0, 2])
@pytest.mark.parametrize("by", ["names", "rotations"])
def test_preselection_decides_as_the_exhaustive_search(cameras, tmp_path, top_k, by, monkeypatch):
    """The cameras kept (``candidates``), or the cameras and rotations kept (``select_many``):
    the same decision as every camera at every rotation; a match found alike; a camera kept but
    not matching has the best PCE of the rotations computed, never more than the exhaustive one."""
    path, queries, _ = cameras
    with LazyReferences(path, cache=tmp_path / "cache") as refs:
        names = refs.names("camera")
        searches = {n: CameraSearch(refs.fingerprint(n), spectrum=refs.spectrum(n)) for n in names}
        pre = CameraPreselector(refs, top_k=top_k)
        select = pre.candidates if by == "names" else (lambda wi, names: pre.select_many([wi], names)[0])
        calls = {"n": 0}
        pce = ReferenceSpectrum.pce

        def counted(self, *args, **kwargs):
            calls["n"] += 1
            return pce(self, *args, **kwargs)

        monkeypatch.setattr(ReferenceSpectrum, "pce", counted)
        decisions, kept, computed = [], [], []
        for W2, W5, I in queries:
            wi2, wi5 = W2 * I, W5 * I
            exhaustive = decide_cameras(searches, wi2, lambda: wi5)
            calls["n"] = 0
            digest = decide_preselected(searches, wi2, lambda: wi5, select=select)
            computed.append(calls["n"])
            assert _decision(digest) == _decision(exhaustive)
            for n, d in digest.items():
                if d.match or exhaustive[n].match:
                    assert (d.pce, d.match, d.rotation) == (exhaustive[n].pce, exhaustive[n].match, exhaustive[n].rotation)
                else:
                    assert d.pce <= exhaustive[n].pce + 1e-9
            decisions.append(_decision(exhaustive))
            kept.append(len(digest))
        assert sum(d is not None for d in decisions) >= 4 and decisions[-4:] == [None] * 4  # matches and unknowns
        assert "cam06" in decisions  # the turned photo
        assert max(kept[-4:]) < len(names) / 2  # the pre-selection leaves most cameras out
        assert pre.last is not None and pre.scored > pre.kept
        if by == "rotations":  # an unknown query: at most the kept pairs plus one rotation per top camera
            assert 0 < sum(computed[-4:]) < 2 * 4 * sum(kept[-4:])  # every rotation of both residuals: 2 x 4 a camera


def test_without_a_selection_the_passes_are_those_of_decide_cameras(cameras, tmp_path):
    path, queries, _ = cameras
    with LazyReferences(path, cache=False) as refs:
        searches = {n: CameraSearch(refs.fingerprint(n)) for n in refs.names("camera")[:6]}
        for W2, W5, I in (queries[0], queries[-1]):
            wi2, wi5 = W2 * I, W5 * I
            a, b = decide_cameras(searches, wi2, lambda: wi5), decide_preselected(searches, wi2, lambda: wi5)
            assert list(a) == list(b)
            assert [(d.pce, d.match, d.searched, d.n_positions) for d in a.values()] == \
                [(d.pce, d.match, d.searched, d.n_positions) for d in b.values()]


def test_crops_and_other_kinds_pass_through_and_the_left_out_are_recorded(small_library):
    with LazyReferences(small_library, cache=False) as refs:
        pre = CameraPreselector(refs, top_k=0)
        crop = np.random.default_rng(2).standard_normal((40, 40)).astype(np.float32)
        assert pre.candidates(crop, ["big", "square", "gen"]) == ["big", "square", "gen"]  # nothing aligned
        assert refs.loads == 0
        aligned = np.random.default_rng(3).standard_normal((48, 48)).astype(np.float32)
        kept = pre.candidates(aligned, ["big", "square", "gen"])
        assert kept[0] == "big" and kept[-1] == "gen"  # the crop camera and the generator are kept
    record = not_confirmed("square", 8)
    assert record.match is False and record.pce is None and record.note == NOT_CONFIRMED
    assert record.threshold == pytest.approx(budget_threshold(n_positions=8))


# ---- wired into attribution ---------------------------------------------------------------------------
def test_load_attributor_reads_lazily_and_decides_as_every_camera_scored(cameras, tmp_path):
    """``load_attributor`` (lazy references, digests) against an ``Attributor`` holding every camera:
    the same answer for every query, every match found alike, the others non-matches."""
    from fingerprint.attribution import Attributor, load_attributor

    path, _, images = cameras
    with Library(path) as lib:
        eager = Attributor([(n, "camera", lib.fingerprint(n), PARAMS) for n in lib.names()])
    expected = [eager.score(im, f"q{i}") for i, im in enumerate(images)]
    loads = []
    for run in range(2):  # the second run finds the digests in the cache: it reads the confirmed cameras only
        with load_attributor(path, cache=tmp_path / "cache", preselect=True) as att:  # 20 cameras: below the default
            assert att.preselector is not None and att.camera_names == sorted(att.camera_names)
            assert att.references.loads == 0  # nothing read before the first query
            chosen = images if run == 0 else images[-5:]
            for i, (image, want) in enumerate(zip(chosen, expected if run == 0 else expected[-5:])):
                got = att.score(image, f"q{i}")
                assert got.best == want.best and list(got.scores) == list(want.scores)
                confirmed = [n for n, s in got.scores.items() if s.note != NOT_CONFIRMED]
                for n, s in got.scores.items():
                    if n in confirmed and (s.match or want.scores[n].match):
                        assert (s.pce, s.match, s.rotation) == pytest.approx((want.scores[n].pce, want.scores[n].match,
                                                                              want.scores[n].rotation))
                    elif n in confirmed:  # kept, not a match: the best PCE of the rotations the digest kept
                        assert s.pce <= want.scores[n].pce * (1 + 1e-6) + 1e-9 and s.rotation is not None
                    else:
                        assert not s.match and not want.scores[n].match and s.pce is None
                        assert s.as_dict()["note"] == NOT_CONFIRMED
                if got.best is None:
                    assert len(confirmed) < len(got.scores) / 2
            loads.append(att.references.loads)
    assert loads[0] >= 20 > loads[1]  # digests computed from every fingerprint once, then read from the cache


def test_the_ncc_method_and_small_queries_search_every_camera(cameras, tmp_path):
    from fingerprint.attribution import load_attributor

    path, _, images = cameras
    with load_attributor(path, cache=False, method="ncc", preselect=True) as att:
        assert att.preselector is None  # a digest bounds the PCE, not the NCC at the peak
    with load_attributor(path, cache=False, preselect=False) as att:
        assert att.preselector is None
    with load_attributor(path, cache=False) as att:  # by default 20 aligned cameras are all scored
        res = att.score(images[-1])
        assert att.preselector.scored == 0 and all(s.note != NOT_CONFIRMED for s in res.scores.values())
    with load_attributor(path, cache=False) as att:
        crop = np.ascontiguousarray(images[0][:120, :112])
        res = att.score(crop)  # a crop: searched exhaustively, every camera loaded
        assert (res.best or res.closest) == "cam00" and att.references.loads == 20 and len(res.scores) == 20
        assert all(s.note != NOT_CONFIRMED for s in res.scores.values())
        big = np.zeros((140, 140), np.uint8)
        res = att.score(big)  # larger than every fingerprint: nothing to load or search
        assert all(s.pce is None and "larger than the fingerprint" in s.note for s in res.scores.values())
