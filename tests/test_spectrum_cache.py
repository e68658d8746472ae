"""The on-disk cache of fingerprint spectra: keys, round trips, refusal of damaged files, atomic writes, size cap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import fingerprint.spectrum_cache as sc
from fingerprint.estimate import FingerprintParams
from fingerprint.scores import ReferenceSpectrum
from fingerprint.spectrum_cache import SpectrumCache, content_hash, default_cache_dir


@pytest.fixture
def K():
    return np.random.default_rng(0).standard_normal((48, 40)).astype(np.float32)


def _no_fft(monkeypatch):
    def refuse(_):
        raise AssertionError("the spectrum was recomputed")
    monkeypatch.setattr(sc, "_spectrum_of", refuse)


def test_content_hash_is_the_reference_identity(K):
    params = FingerprintParams()
    key = content_hash(K, params)
    assert len(key) == 64 and key == content_hash(K.astype(np.float64), params.as_dict())
    assert key == content_hash(np.asfortranarray(K), params)
    changed = K.copy()
    changed[3, 4] += 1e-3
    assert content_hash(changed, params) != key
    assert content_hash(K, FingerprintParams(sigma=2.0)) != key
    assert content_hash(K.reshape(40, 48), params) != key
    with pytest.raises(TypeError):
        content_hash(K, 3)


def test_second_run_loads_the_spectrum_bit_for_bit(tmp_path, K, monkeypatch):
    first = SpectrumCache(tmp_path).spectrum(K, {"levels": 4})
    expected = ReferenceSpectrum(K).spectrum
    assert np.array_equal(first, expected)
    _no_fft(monkeypatch)
    cache = SpectrumCache(tmp_path)  # a new run
    again = cache.spectrum(K, {"levels": 4})
    assert np.array_equal(again, expected) and again.dtype == np.complex64 and not again.flags.writeable
    assert (cache.hits, cache.misses, cache.rejected) == (1, 0, 0)
    q = np.random.default_rng(1).standard_normal(K.shape).astype(np.float32) + K
    assert cache.reference_spectrum(K, {"levels": 4}).pce(q) == ReferenceSpectrum(K).pce(q)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # no temporary file left


def _corrupt_spectrum_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the spectrum, the largest member
    data[middle : middle + 8] = bytes(8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "pickle", "wrong_key", "wrong_checksum"])
def test_damaged_files_are_refused_and_recomputed(tmp_path, K, damage):
    cache = SpectrumCache(tmp_path)
    key = content_hash(K)
    cache.spectrum(K)
    path = cache.path(key)
    if damage == "flip":
        _corrupt_spectrum_bytes(path)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file")
    elif damage == "pickle":
        with open(path, "wb") as f:
            np.savez(f, spectrum=np.array([{"x": 1}], dtype=object), format=np.int64(1), key=np.zeros(64, np.uint8),
                     sha256=np.zeros(32, np.uint8))
    elif damage == "wrong_key":  # another reference's valid file under this name
        other = K + 1
        cache.spectrum(other)
        os.replace(cache.path(content_hash(other)), path)
    elif damage == "wrong_checksum":
        spectrum = ReferenceSpectrum(K).spectrum
        with open(path, "wb") as f:
            np.savez(f, spectrum=spectrum, format=np.int64(1), key=np.frombuffer(key.encode(), np.uint8),
                     sha256=np.zeros(32, np.uint8))
    fresh = SpectrumCache(tmp_path)
    assert fresh.load(key, K.shape) is None and fresh.rejected == 1 and not path.exists()
    assert np.array_equal(fresh.spectrum(K), ReferenceSpectrum(K).spectrum)
    assert SpectrumCache(tmp_path).load(key, K.shape) is not None  # rewritten whole


def test_a_spectrum_of_another_shape_is_refused(tmp_path, K):
    cache = SpectrumCache(tmp_path)
    cache.spectrum(K)
    assert cache.load(content_hash(K), (48, 42)) is None and cache.rejected == 1


def test_an_unwritable_folder_leaves_scoring_unchanged(tmp_path, K):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = SpectrumCache(blocker / "spectra")
    assert np.array_equal(cache.spectrum(K), ReferenceSpectrum(K).spectrum)
    assert cache.store(content_hash(K), ReferenceSpectrum(K).spectrum) is False


def test_size_cap_removes_least_recently_used_first(tmp_path):
    rng = np.random.default_rng(2)
    fps = [rng.standard_normal((32, 32)).astype(np.float32) for _ in range(3)]
    cache = SpectrumCache(tmp_path)
    for k in fps:
        cache.spectrum(k)
    paths = [cache.path(content_hash(k)) for k in fps]
    size = paths[0].stat().st_size
    now = time.time()
    for age, p in zip((300, 200, 100), paths):  # file 0 oldest
        os.utime(p, (now - age, now - age))
    assert cache.load(content_hash(fps[0]), (32, 32)) is not None  # using it makes it the newest
    cache.max_bytes = 2 * size
    assert cache.evict() == size
    assert [p.exists() for p in paths] == [True, False, True]
    assert cache.nbytes() == 2 * size


def test_stale_temporary_files_are_removed(tmp_path, K):
    cache = SpectrumCache(tmp_path)
    stale, recent = tmp_path / ".abc.x.tmp", tmp_path / ".abd.y.tmp"
    stale.write_bytes(b"half")
    recent.write_bytes(b"writing")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache.spectrum(K)
    assert not stale.exists() and recent.exists()


def test_keys_cannot_leave_the_folder_and_arguments_are_checked(tmp_path):
    cache = SpectrumCache(tmp_path)
    for bad in ("../" + "a" * 61, "A" * 64, "a" * 63, 5):
        with pytest.raises(ValueError):
            cache.path(bad)
    with pytest.raises(ValueError):
        SpectrumCache(tmp_path, max_bytes=-1)
    with pytest.raises(ValueError):
        cache.store("a" * 64, np.zeros((4, 3), np.complex128))


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GANPRINT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ganprint" / "spectra"
    monkeypatch.setenv("GANPRINT_CACHE_DIR", str(tmp_path / "own"))
    assert default_cache_dir() == tmp_path / "own" / "spectra"
    assert SpectrumCache().root == tmp_path / "own" / "spectra"
    monkeypatch.delenv("GANPRINT_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "ganprint" / "spectra"


def test_digests_round_trip_per_size_and_refuse_a_wrong_file(tmp_path, K, monkeypatch):
    from fingerprint.spectrum_cache import DigestCache

    cache = DigestCache(tmp_path)
    d100, d200 = cache.digest(K, 100), cache.digest(K, 200)
    assert d100.indices.size == 100 and d200.indices.size == 200 and len(list(tmp_path.iterdir())) == 2
    monkeypatch.setattr(sc, "make_digest", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = DigestCache(tmp_path).digest(K, 100)
    assert np.array_equal(again.indices, d100.indices) and again.energy_fraction == d100.energy_fraction
    key = content_hash(K)
    assert cache.load(key, (40, 48), 100) is None and cache.rejected == 1  # another shape: refused, deleted
    misses = cache.misses
    assert cache.load(key, K.shape, 100) is None and cache.misses == misses + 1  # it is gone


def test_reference_spectrum_from_a_spectrum_scores_as_the_computed_one(K):
    from fingerprint.errors import ShapeMismatchError

    computed = ReferenceSpectrum(K)
    spectrum = computed.spectrum.copy()
    made = ReferenceSpectrum.from_spectrum(K.shape, spectrum)
    assert made.shape == K.shape and made.spectrum is spectrum and not spectrum.flags.writeable
    q = K[5:30, 3:33] + np.random.default_rng(4).standard_normal((25, 30)).astype(np.float32)
    assert made.pce(q, search="crop") == computed.pce(q, search="crop")
    with pytest.raises(ShapeMismatchError):
        ReferenceSpectrum.from_spectrum((48, 42), computed.spectrum)
    with pytest.raises(TypeError):
        ReferenceSpectrum.from_spectrum(K.shape, computed.spectrum.astype(np.complex128))
