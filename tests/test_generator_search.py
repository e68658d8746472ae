"""Tests of fingerprint.generator_search against a brute-force twin and by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fingerprint.generator_search import aligned_z, hypothesis_scores, resample_fingerprint, shift_search


def naive_z_surface(q: np.ndarray, F: np.ndarray) -> np.ndarray:
    """z = NCC sqrt(D) at every valid offset, one region at a time (the definition)."""
    C, h, w = q.shape
    H, W = F.shape[1:]
    out = np.zeros((H - h + 1, W - w + 1))
    for t in range(H - h + 1):
        for l in range(W - w + 1):
            a = q - q.mean(axis=(1, 2), keepdims=True)
            b = F[:, t:t + h, l:l + w]
            b = b - b.mean(axis=(1, 2), keepdims=True)
            out[t, l] = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()) * math.sqrt(a.size)
    return out


@pytest.mark.parametrize("shape, qshape", [((3, 24, 20), (10, 9)), ((1, 17, 16), (17, 5)), ((3, 12, 12), (12, 12))])
def test_shift_search_matches_brute_force(rng, shape, qshape):
    F = rng.normal(size=shape)
    q = rng.normal(size=(shape[0], *qshape))
    ref = naive_z_surface(q, F)
    got = shift_search(q, F)
    assert got.n_positions == ref.size
    assert got.z == pytest.approx(ref.max(), rel=1e-9, abs=1e-9)
    assert got.offset == tuple(int(v) for v in np.unravel_index(ref.argmax(), ref.shape))


def test_shift_search_finds_a_noisy_crop(rng):
    F = rng.normal(size=(3, 64, 64))
    q = F[:, 17:17 + 40, 5:5 + 32] + rng.normal(scale=2.0, size=(3, 40, 32))
    found = shift_search(q, F)
    assert found.offset == (17, 5)
    assert found.z > 10  # NCC ~ 1/sqrt(5) over 3840 values


def test_shift_search_of_a_constant_query_is_zero(rng):
    assert shift_search(np.ones((3, 8, 8)), rng.normal(size=(3, 16, 16))).z == 0.0
    with pytest.raises(ValueError, match="fit inside"):
        shift_search(np.zeros((3, 20, 8)), np.zeros((3, 16, 16)))
    with pytest.raises(ValueError, match="fit inside"):
        shift_search(np.zeros((1, 8, 8)), np.zeros((3, 16, 16)))


def test_aligned_z_is_symmetric_scale_free_and_bounded(rng):
    a, b = rng.normal(size=(3, 16, 16)), rng.normal(size=(3, 16, 16))
    z = aligned_z(a, b)
    assert z == pytest.approx(aligned_z(b, a))
    assert z == pytest.approx(aligned_z(5 * a + 2, b))
    assert aligned_z(a, a) == pytest.approx(math.sqrt(a.size))
    assert aligned_z(np.zeros((3, 16, 16)), b) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        aligned_z(a, b[:, :8])


def test_resample_fingerprint(rng):
    F = rng.normal(size=(3, 32, 32)).astype(np.float32)
    assert np.allclose(resample_fingerprint(F, (32, 32)), F, atol=1e-5)
    small = resample_fingerprint(F, (16, 24), "lanczos")
    assert small.shape == (3, 16, 24) and small.dtype == np.float32
    smooth = np.broadcast_to(np.linspace(0, 1, 32, dtype=np.float32), (3, 32, 32))
    assert np.allclose(resample_fingerprint(smooth, (16, 16)).mean(), smooth.mean(), atol=0.02)
    with pytest.raises(ValueError, match="method must be one of"):
        resample_fingerprint(F, (8, 8), "cubic")


def test_hypotheses_follow_the_shapes(rng):
    F = rng.normal(size=(3, 48, 48)).astype(np.float32)
    same = hypothesis_scores("g", F + rng.normal(size=F.shape), F)
    assert [s.hypothesis for s in same] == ["aligned"] and same[0].z > 20
    crop = hypothesis_scores("g", F[:, 8:40, 4:36], F)
    kinds = {s.hypothesis: s for s in crop}
    assert set(kinds) == {"crop", "resize"}
    assert kinds["crop"].offset == (8, 4) and kinds["crop"].n_positions == 17 * 17
    assert kinds["crop"].z == pytest.approx(math.sqrt(3 * 32 * 32))
    assert kinds["resize"].scale == pytest.approx((32 / 48, 32 / 48))
    resized = resample_fingerprint(F, (24, 24))
    k = {s.hypothesis: s for s in hypothesis_scores("g", resized, F)}
    assert k["resize"].z == pytest.approx(math.sqrt(3 * 24 * 24)) and k["resize"].z > k["crop"].z
    big = hypothesis_scores("g", rng.normal(size=(3, 64, 40)), F)
    assert [s.hypothesis for s in big] == ["aligned"]


def test_prepared_fingerprint_gives_the_same_answers(rng):
    from fingerprint.generator_search import FingerprintSearch

    F = rng.normal(size=(3, 40, 36))
    prepared = FingerprintSearch(F)
    for shape in ((20, 20), (33, 17), (20, 20)):
        q = rng.normal(size=(3, *shape))
        assert prepared.search(q) == shift_search(q, F)
    assert set(prepared._norms) == {(20, 20), (33, 17)}  # one norm map per query size
    a = hypothesis_scores("g", F[:, 2:30, 3:31], prepared)
    b = hypothesis_scores("g", F[:, 2:30, 3:31], F)
    assert a == b


def test_a_query_spectrum_serves_every_fingerprint_of_its_size(rng):
    from fingerprint.generator_search import FingerprintSearch, QuerySpectrum

    q = rng.normal(size=(3, 20, 18))
    prepared = QuerySpectrum(q, (32, 30))
    for _ in range(3):
        F = rng.normal(size=(3, 32, 30))
        assert FingerprintSearch(F).search(prepared) == FingerprintSearch(F).search(q)
    with pytest.raises(ValueError, match="fit inside"):
        FingerprintSearch(rng.normal(size=(3, 40, 40))).search(prepared)  # a spectrum of another size
    assert FingerprintSearch(rng.normal(size=(3, 32, 30))).search(QuerySpectrum(np.ones((3, 8, 8)), (32, 30))).z == 0.0
