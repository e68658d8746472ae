"""Fingerprint digests: the sparse-correlation kernel against its twin, digests, the index, the pre-selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fingerprint.digest import (
    DigestIndex,
    digest_bound,
    digest_size,
    make_digest,
    preselect,
)
from fingerprint.errors import InvalidImageError, ShapeMismatchError
from fingerprint.scores import ReferenceSpectrum
from fingerprint.synthetic import make_camera
from kernels import config, digest_cpu
import naive


def _random_rows(rng, n_refs, n_pixels, lengths):
    """A reference-major sparse matrix: row j keeps ``lengths[j]`` distinct ascending pixels."""
    cols = [np.sort(rng.choice(n_pixels, n, replace=False)) for n in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.standard_normal(int(indptr[-1])).astype(np.float32)
    return np.concatenate(cols), indptr, values


def _pixel_major(indices, indptr, values, n_pixels):
    """The same matrix in the twin's pixel-major layout (``tests/naive.py::sparse_correlation``)."""
    rows = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    order = np.lexsort((rows, indices))
    counts = np.bincount(indices, minlength=n_pixels)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows[order], values[order]


@pytest.mark.parametrize("build", ["parallel", "serial"])
@pytest.mark.parametrize("n_cols", [4, 8, 1, 3, 6])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_kernel_matches_its_twin(build, n_cols, index_dtype):
    """Both builds of both kernels (one table of four columns, two tables) at a size that the wrapper
    sends to the parallel one (>= PARALLEL_MIN_SIZE entries), uneven rows, one empty row, rows whose
    length is not a multiple of the four entries taken at a time, columns padded to groups of four."""
    rng = np.random.default_rng(3)
    n_refs, n_pixels = 41, 6000
    lengths = rng.integers(1500, 2500, n_refs)
    lengths[7] = 0
    indices, indptr, values = _random_rows(rng, n_refs, n_pixels, lengths)
    indices = indices.astype(index_dtype)
    assert indices.size >= config.PARALLEL_MIN_SIZE
    columns = rng.standard_normal((n_pixels, n_cols)).astype(np.float32)
    expected = naive.sparse_correlation(*_pixel_major(indices, indptr, values, n_pixels), columns, n_refs)
    groups = digest_cpu.column_groups(columns)  # (G, N * 4), missing columns zero
    assert groups.shape == (-(-n_cols // 4), n_pixels * 4)
    out = np.full((n_refs, 4 * groups.shape[0]), np.nan)
    if groups.shape[0] == 2:
        getattr(digest_cpu._gather_two, build)(indices, indptr, values, groups[0], groups[1], out)
    else:
        getattr(digest_cpu._gather_one, build)(indices, indptr, values, groups[0], out)
    np.testing.assert_allclose(out[:, :n_cols], expected, rtol=1e-5, atol=1e-4)
    assert np.all(out[:, n_cols:] == 0) and np.all(out[7] == 0)
    np.testing.assert_allclose(digest_cpu.gather_correlation(indices, indptr, values, columns), expected,
                               rtol=1e-5, atol=1e-4)


def test_gather_kernel_sums_long_rows_in_float32_runs_without_losing_precision():
    """Rows of several ``CHUNK`` runs (the float32 partial sums) against the float64 twin."""
    rng = np.random.default_rng(5)
    n_refs, n_pixels = 5, 40000
    lengths = np.array([3 * digest_cpu.CHUNK + 17, digest_cpu.CHUNK, digest_cpu.CHUNK + 1, 1, 20000])
    indices, indptr, values = _random_rows(rng, n_refs, n_pixels, lengths)
    for n_cols in (4, 8, 2, 12):  # 12: three groups, two passes
        columns = (rng.standard_normal((n_pixels, n_cols)) + 0.5).astype(np.float32)  # a bias: sums grow
        expected = naive.sparse_correlation(*_pixel_major(indices, indptr, values, n_pixels), columns, n_refs)
        got = digest_cpu.gather_correlation(indices, indptr, values, columns)
        scale = np.sqrt(np.diff(indptr))[:, None] * 2.0  # root-sum-square of a row's terms, about
        assert np.all(np.abs(got - expected) <= 1e-5 * scale)


def test_make_digest_keeps_the_strongest_centred_pixels():
    rng = np.random.default_rng(0)
    K = (rng.standard_normal((40, 50)) + 0.3).astype(np.float32)
    d = make_digest(K, 300)
    centred = K.astype(np.float64) - K.mean(dtype=np.float64)
    expected = np.sort(np.argsort(-np.abs(centred).ravel(), kind="stable")[:300])
    np.testing.assert_array_equal(d.indices, expected)
    assert d.indices.dtype == np.int32 and d.values.dtype == np.float32
    np.testing.assert_allclose(d.values, centred.ravel()[expected], rtol=1e-5, atol=1e-6)
    assert d.energy_fraction == pytest.approx(np.sum(centred.ravel()[expected] ** 2) / np.sum(centred**2), rel=1e-5)
    assert d.shape == (40, 50)
    # a Gaussian K: the strongest 25 % carry 2 (q phi(q) + Q(q)) of the energy, q = Phi^-1(1 - f / 2)
    big = make_digest(rng.standard_normal((256, 256)).astype(np.float32))
    assert big.indices.size == digest_size((256, 256)) == round(0.25 * 256 * 256)
    assert big.correlation == pytest.approx(0.851, abs=0.01)


@pytest.mark.parametrize("bad, n, error", [
    (np.zeros((4, 4, 3)), 2, InvalidImageError),
    (np.zeros((0, 4)), 1, InvalidImageError),
    (np.full((4, 4), np.nan), 2, InvalidImageError),
    (np.zeros((4, 4)), 0, ValueError),
    (np.zeros((4, 4)), 17, ValueError),
    (np.zeros((4, 4)), 2.5, ValueError),
])
def test_make_digest_refuses_bad_input(bad, n, error):
    with pytest.raises(error):
        make_digest(bad, n)


def test_index_scores_match_the_twin_at_every_rotation_and_shape():
    rng = np.random.default_rng(1)
    shapes = [(24, 36), (36, 24), (30, 30), (24, 36)]
    fingerprints = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    n = 200
    index = DigestIndex([make_digest(k, n) for k in fingerprints])
    for query_shape in [(24, 36), (30, 30), (20, 20)]:
        q = (rng.standard_normal(query_shape) * 3 + 1).astype(np.float32)
        got = index.scores(q)
        expected = naive.digest_scores(fingerprints, q, n)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-4, atol=1e-4)
    # a 24 x 36 query fits references 0 and 3 at rotations 0 and 2, reference 1 at 1 and 3, never reference 2
    z = index.scores(rng.standard_normal((24, 36)).astype(np.float32))
    assert np.isfinite(z[[0, 3]][:, [0, 2]]).all() and np.isnan(z[[0, 3]][:, [1, 3]]).all()
    assert np.isfinite(z[1, [1, 3]]).all() and np.isnan(z[2]).all()
    only = index.scores(rng.standard_normal((24, 36)).astype(np.float32), rotations=(0,))
    assert np.isnan(only[:, 1:]).all() and np.isfinite(only[[0, 3], 0]).all()


@pytest.mark.parametrize("query_shape, rotations", [((30, 30), (0, 1, 2, 3)), ((24, 36), (0, 1, 2, 3)), ((30, 30), (0,))])
def test_scores_of_several_queries_in_one_pass_equal_their_own(query_shape, rotations):
    """Two residuals of one image (8 columns) or three queries (the general loop): one pass, the same z."""
    rng = np.random.default_rng(4)
    shapes = [(24, 36), (36, 24), (30, 30)] * 40
    index = DigestIndex([make_digest(rng.standard_normal(s).astype(np.float32), 300) for s in shapes])
    for m in (2, 3):
        qs = [(rng.standard_normal(query_shape) * (1 + i)).astype(np.float32) for i in range(m)]
        together = index.scores_many(qs, rotations)
        for q, z in zip(qs, together):
            alone = index.scores(q, rotations)
            assert np.array_equal(np.isnan(z), np.isnan(alone))
            np.testing.assert_allclose(z[~np.isnan(z)], alone[~np.isnan(alone)], rtol=1e-6, atol=1e-6)
    with pytest.raises(ShapeMismatchError):
        index.scores_many([np.ones((30, 30), np.float32), np.ones((24, 36), np.float32)])


def test_sparse_scores_of_unrelated_queries_are_standard_normal():
    rng = np.random.default_rng(2)
    fingerprints = [rng.standard_normal((64, 64)).astype(np.float32) for _ in range(150)]
    index = DigestIndex([make_digest(k) for k in fingerprints])
    z = np.concatenate([index.scores(rng.standard_normal((64, 64)).astype(np.float32))[:, 0] for _ in range(4)])
    assert abs(z.mean()) < 0.15 and 0.85 < z.std() < 1.15


def test_index_refuses_bad_queries():
    index = DigestIndex([make_digest(np.random.default_rng(0).standard_normal((16, 16)))])
    with pytest.raises(InvalidImageError):
        index.scores(np.zeros((16, 16, 3)))
    with pytest.raises(InvalidImageError):
        index.scores(np.full((16, 16), np.inf))
    with pytest.raises(ValueError):
        DigestIndex([])


def test_bound_formula():
    b = digest_bound(np.array([0.0, 0.6, 1.0]), 60.0, margin=5.0, pce_ratio=1.25)
    assert b[0] == -math.inf
    assert b[1] == pytest.approx(0.6 * math.sqrt(48.0) - 5.0 * 0.8)
    assert b[2] == pytest.approx(math.sqrt(48.0))
    with pytest.raises(ValueError):
        digest_bound(0.5, -1.0)


def test_preselect_takes_the_top_k_and_everything_above_the_bound():
    r = np.full(6, 0.75)
    bound = float(digest_bound(0.75))
    z = np.full((6, 4), np.nan)
    z[:, 0] = [0.1, bound + 0.01, -2.0, 0.5, 0.3, 0.2]
    z[2, 2] = bound + 1.0  # reference 2 only at 180 degrees
    z[5, 0] = np.nan  # reference 5 is aligned at no rotation: never a candidate
    sel = preselect(z, r, top_k=3)
    # bound: references 1 and 2 (rotation 2); top 3 by best rotation: 2, 1, 3
    assert sel.candidates.tolist() == [1, 2, 3]
    assert sel.pairs[2].tolist() == [True, False, True, False]  # the top k marks every scored rotation
    assert not sel.pairs[5].any()
    assert sel.expected_false == pytest.approx(6 * 0.5 * math.erfc(bound / math.sqrt(2)), rel=1e-9)
    assert preselect(z, r, top_k=0).candidates.tolist() == [1, 2]
    with pytest.raises(ShapeMismatchError):
        preselect(z[:, :2], r)
    with pytest.raises(ValueError):
        preselect(z, r, top_k=-1)


def test_every_pair_that_passes_the_pce_threshold_is_preselected():
    """``q = a K + noise`` over a range of ``a`` around the threshold: the sparse score follows
    ``N(r sqrt(PCE), 1 - r^2)`` and no pair with PCE >= 60 falls below the bound."""
    rng = np.random.default_rng(5)
    shape = (96, 96)
    fingerprints = [make_camera(f"c{i}", 40 + i, shape=shape).K * 100 for i in range(12)]
    index = DigestIndex([make_digest(k) for k in fingerprints])
    spectra = [ReferenceSpectrum(k) for k in fingerprints]
    pce, z, r = [], [], []
    for trial in range(60):
        j = trial % len(fingerprints)
        a = np.sqrt(rng.uniform(15, 120) / (shape[0] * shape[1]))  # PCE ~ a^2 N
        q = (a * fingerprints[j] / fingerprints[j].std() + rng.standard_normal(shape)).astype(np.float32)
        pce.append(spectra[j].pce(q).pce)
        z.append(index.scores(q, rotations=(0,))[j, 0])
        r.append(index.correlation[j])
    pce, z, r = map(np.asarray, (pce, z, r))
    assert (pce >= 60).sum() >= 15 and (pce < 60).sum() >= 15
    residual = (z - r * np.sqrt(np.maximum(pce, 0))) / np.sqrt(1 - r**2)
    assert abs(residual.mean()) < 0.4 and 0.6 < residual.std() < 1.4
    assert (z[pce >= 60] >= digest_bound(r[pce >= 60])).all()
