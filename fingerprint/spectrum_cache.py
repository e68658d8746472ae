"""On-disk caches of what is derived from camera fingerprints (spectra, digests), keyed by content hash.

Scoring a camera reference needs the DFT of its fingerprint, ``rfft2(K - mean(K))`` as complex64,
shape (H, W // 2 + 1) (``fingerprint.scores.ReferenceSpectrum``). Computing it costs one 2-D FFT
per reference per run; this cache keeps it between runs, one file per reference:

    <root>/<key>.npz        root: $GANPRINT_CACHE_DIR/spectra, else $XDG_CACHE_HOME/ganprint/spectra,
                            else ~/.cache/ganprint/spectra

``key`` is :func:`content_hash` of the fingerprint and its parameters (SHA-256, 64 hex digits), so a
changed or rebuilt reference never meets an old spectrum. Each file is an uncompressed ``.npz``
(NumPy arrays only, read with ``allow_pickle=False``) holding the spectrum, the format number, the
key and the SHA-256 of the spectrum's bytes. Nothing read is trusted: a file whose format, key,
shape, dtype or checksum is wrong, or that cannot be read, is deleted and the spectrum recomputed.
Files are written to a temporary name in the same folder and renamed into place (atomic on POSIX),
so a reader sees a whole file or none. When the folder grows past ``max_bytes`` the least recently
used files are removed. The cache is an optimisation: a folder that cannot be written leaves
scoring unchanged (``store`` returns False). ``GANPRINT_CACHE_DIR=""`` (set, empty) asks the
callers (``fingerprint.camera_library``) to cache nothing (:func:`cache_disabled`).

:class:`DigestCache` keeps fingerprint digests (``fingerprint.digest``) the same way in
``.../digests``: one file per (content hash, digest size), the positions, values, shape and
energy fraction checked against their SHA-256 and against the fingerprint's shape on every read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fingerprint.digest import Digest, make_digest
from fingerprint.scores import ReferenceSpectrum

__all__ = ["DEFAULT_MAX_BYTES", "FORMAT", "DigestCache", "SpectrumCache", "cache_disabled", "content_hash",
           "content_key", "default_cache_dir"]

FORMAT = 1
"""Version of the file layout and of the spectrum's definition (bumped if either changes)."""

DEFAULT_MAX_BYTES = 4 * 2**30
"""Default size cap of the cache folder: 4 GiB (about 170 references of 6 MP)."""

_KEY = re.compile(r"[0-9a-f]{64}")
_STALE_TMP_S = 3600.0  # temporary files older than this are left-overs of a killed writer


def default_cache_dir(kind: str = "spectra") -> Path:
    """``$GANPRINT_CACHE_DIR/<kind>``, else ``$XDG_CACHE_HOME/ganprint/<kind>``, else ``~/.cache/ganprint/<kind>``.

    ``kind`` is ``"spectra"`` or ``"digests"``. See :func:`cache_disabled` for turning caching off.
    """
    if kind not in ("spectra", "digests"):
        raise ValueError(f"the cache kind is 'spectra' or 'digests', got {kind!r}")
    own = os.environ.get("GANPRINT_CACHE_DIR")
    if own:
        return Path(own) / kind
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ganprint" / kind


def cache_disabled() -> bool:
    """True when ``GANPRINT_CACHE_DIR`` is set to the empty string: nothing is cached on disk."""
    return os.environ.get("GANPRINT_CACHE_DIR") == ""


def _params_dict(params: Any) -> dict:
    if params is None:
        return {}
    if hasattr(params, "as_dict"):
        return dict(params.as_dict())
    if isinstance(params, Mapping):
        return dict(params)
    raise TypeError(f"params must be a mapping or have .as_dict(), got {type(params).__name__}")


def content_hash(fingerprint: np.ndarray, params: Any = None) -> str:
    """SHA-256 (hex) of a fingerprint's float32 bytes, shape and parameters: a reference's identity.

    Parameters
    ----------
    fingerprint : ndarray of float, shape (H, W)
        Hashed as C-ordered little-endian float32, so the same values in another dtype or
        memory order give the same key.
    params : FingerprintParams, mapping or None
        Estimation parameters, hashed as JSON with sorted keys.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    k = np.ascontiguousarray(fingerprint, dtype="<f4")
    return content_key(hashlib.sha256(memoryview(k).cast("B")).hexdigest(), k.shape, params)


def content_key(fingerprint_sha256: str, shape: Sequence[int], params: Any = None) -> str:
    """:func:`content_hash` from the SHA-256 of the fingerprint's bytes, without the fingerprint.

    ``fingerprint_sha256``: 64 lowercase hex digits of SHA-256 over the C-ordered little-endian
    float32 bytes (what the library records, ``ReferenceInfo.fingerprint_sha256``); ``shape``
    the fingerprint's shape.
    """
    if not _KEY.fullmatch(str(fingerprint_sha256)):
        raise ValueError(f"a fingerprint SHA-256 is 64 lowercase hex digits, got {fingerprint_sha256!r}")
    shape = tuple(int(n) for n in shape)
    h = hashlib.sha256()
    h.update(f"ganprint-fingerprint/{FORMAT}\0{shape}\0{fingerprint_sha256}\0".encode())
    h.update(json.dumps(_params_dict(params), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _spectrum_of(fingerprint: np.ndarray) -> np.ndarray:
    """The spectrum exactly as :class:`ReferenceSpectrum` computes it (complex64, read-only)."""
    return ReferenceSpectrum(fingerprint).spectrum


def _checksum(arrays) -> bytes:
    """SHA-256 of the bytes of ``arrays`` (C-contiguous), one after the other."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.digest()


class _NpzCache:
    """Files of NumPy arrays keyed by content hash, checked when read (the mechanics of both caches).

    Parameters
    ----------
    root : path, optional
        The cache folder (created on first store); default :func:`default_cache_dir`.
    max_bytes : int, optional
        Size cap of the folder's cache files; least recently used files go first. Default 4 GiB.

    Attributes
    ----------
    hits, misses, rejected : int
        Loads served, loads that found no file, files refused (damaged, wrong key, shape or
        checksum) and deleted, since this object was made.
    """

    KIND = "spectra"

    def __init__(self, root: str | os.PathLike[str] | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
        self.root = Path(root) if root is not None else default_cache_dir(self.KIND)
        self.max_bytes = int(max_bytes)
        self.hits = self.misses = self.rejected = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path(self, key: str) -> Path:
        """The file of ``key`` (64 hex digits, else ValueError: no path can leave the folder)."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"a cache key is 64 lowercase hex digits (content_hash), got {key!r}")
        return self.root / f"{key}.npz"

    # ---- read -------------------------------------------------------------------------------------
    def _read(self, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """The arrays ``names`` of the file of ``key`` if its format, stored key and checksum (the
        SHA-256 of the arrays' bytes, in that order) are right; None if absent; a damaged file is deleted."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                fmt = int(npz["format"])
                stored_key = bytes(npz["key"]).decode("ascii")
                checksum = bytes(npz["sha256"])
                arrays = {name: npz[name] for name in names}
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # noqa: BLE001 - any unreadable file is a damaged cache entry
            self._reject(path)
            return None
        if fmt != FORMAT or stored_key != key or not all(a.flags.c_contiguous for a in arrays.values()) \
                or _checksum(arrays[n] for n in names) != checksum:
            self._reject(path)
            return None
        return arrays

    def _served(self, key: str) -> None:
        self.hits += 1
        with contextlib.suppress(OSError):
            os.utime(self.path(key))  # least recently used order for eviction

    def _reject(self, path: Path) -> None:
        self.rejected += 1
        with contextlib.suppress(OSError):
            path.unlink()

    # ---- write ------------------------------------------------------------------------------------
    def _write(self, key: str, arrays: dict[str, np.ndarray]) -> bool:
        """Write ``arrays`` (C-contiguous) under ``key`` atomically with their checksum; False if refused."""
        path = self.path(key)
        tmp = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays, format=np.int64(FORMAT), key=np.frombuffer(key.encode("ascii"), dtype=np.uint8),
                         sha256=np.frombuffer(_checksum(arrays.values()), dtype=np.uint8))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError:
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self.evict()
        return True

    def evict(self) -> int:
        """Remove least recently used files until the folder holds at most ``max_bytes``; bytes removed.

        Temporary files older than an hour (left by a killed writer) are removed too.
        """
        entries = []
        removed = 0
        now = time.time()
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    if e.name.endswith(".tmp"):
                        if now - st.st_mtime > _STALE_TMP_S:
                            with contextlib.suppress(OSError):
                                os.unlink(e.path)
                                removed += st.st_size
                    elif e.name.endswith(".npz"):
                        entries.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            return removed
        total = sum(size for _, size, _ in entries)
        for _, size, file in sorted(entries):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(file)
                removed += size
            total -= size
        return removed

    def nbytes(self) -> int:
        """Bytes of the cache files now in the folder."""
        try:
            with os.scandir(self.root) as it:
                return sum(e.stat().st_size for e in it if e.name.endswith(".npz"))
        except OSError:
            return 0


class SpectrumCache(_NpzCache):
    """Fingerprint spectra on disk (see the module doc); parameters and counters as :class:`DigestCache`."""

    KIND = "spectra"

    def load(self, key: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached spectrum of a fingerprint of ``shape``, or None (absent or refused).

        A present file is checked: format, stored key, shape ``(H, W // 2 + 1)``, dtype complex64
        and the SHA-256 of the spectrum's bytes. A file failing any check is deleted.
        """
        arrays = self._read(key, ("spectrum",))
        if arrays is None:
            return None
        spectrum = arrays["spectrum"]
        if spectrum.shape != (int(shape[0]), int(shape[1]) // 2 + 1) or spectrum.dtype != np.complex64:
            self._reject(self.path(key))
            return None
        self._served(key)
        return spectrum

    def store(self, key: str, spectrum: np.ndarray) -> bool:
        """Write a spectrum (complex64, 2-D) under ``key`` atomically; False if the folder refuses.

        Evicts least recently used files afterwards if the folder is over ``max_bytes``.
        """
        self.path(key)
        arr = np.ascontiguousarray(spectrum)
        if arr.dtype != np.complex64 or arr.ndim != 2:
            raise ValueError(f"a spectrum is 2-D complex64, got {arr.dtype} of shape {arr.shape}")
        return self._write(key, {"spectrum": arr})

    # ---- get or compute ---------------------------------------------------------------------------
    def spectrum(self, fingerprint: np.ndarray, params: Any = None, *, key: str | None = None) -> np.ndarray:
        """The spectrum of ``fingerprint`` from the cache, or computed (and stored).

        Parameters
        ----------
        fingerprint : ndarray of float, shape (H, W)
        params : FingerprintParams, mapping or None
            Part of the key (:func:`content_hash`).
        key : str, optional
            A content hash already known (e.g. recorded by the library), saving the hashing.

        Returns
        -------
        ndarray of complex64, shape (H, W // 2 + 1), read-only
            Equal, bit for bit, to ``ReferenceSpectrum(fingerprint).spectrum``.
        """
        shape = np.shape(fingerprint)
        if len(shape) != 2:
            raise ValueError(f"a fingerprint is 2-D, got shape {shape}")
        key = key if key is not None else content_hash(fingerprint, params)
        cached = self.load(key, shape)
        if cached is not None:
            cached.flags.writeable = False
            return cached
        spectrum = _spectrum_of(fingerprint)
        self.store(key, spectrum)
        return spectrum

    def reference_spectrum(self, fingerprint: np.ndarray, params: Any = None, *,
                           key: str | None = None) -> ReferenceSpectrum:
        """A :class:`ReferenceSpectrum` of ``fingerprint`` whose DFT comes from the cache when it can."""
        return ReferenceSpectrum.from_spectrum(np.shape(fingerprint), self.spectrum(fingerprint, params, key=key))


class DigestCache(_NpzCache):
    """Fingerprint digests (``fingerprint.digest``) on disk, one file per (reference, digest size).

    Parameters
    ----------
    root : path, optional
        The cache folder; default :func:`default_cache_dir` ``("digests")``.
    max_bytes : int, optional
        Size cap of the folder (least recently used files go first); default 4 GiB.

    Attributes
    ----------
    hits, misses, rejected : int
        As :class:`SpectrumCache`.

    Notes
    -----
    The file of a digest of ``n`` pixels of the reference whose content hash is ``key`` is named
    by ``SHA-256(key, n)``. It holds the positions (int32 or int64), the values (float32), the
    fingerprint's shape and the energy fraction, with the SHA-256 of all four; a file whose checksum,
    key, dtypes or sizes are wrong is deleted and the digest recomputed.
    """

    KIND = "digests"

    @staticmethod
    def digest_key(key: str, n: int) -> str:
        """The file key of the ``n``-pixel digest of the reference whose content hash is ``key``."""
        return hashlib.sha256(f"ganprint-digest/{FORMAT}\0{key}\0{int(n)}".encode()).hexdigest()

    def load(self, key: str, shape: tuple[int, int], n: int) -> Digest | None:
        """The cached ``n``-pixel digest of a fingerprint of ``shape`` and content hash ``key``, or None."""
        file_key = self.digest_key(key, n)
        arrays = self._read(file_key, ("indices", "values", "shape", "energy_fraction"))
        if arrays is None:
            return None
        idx, values, dims, energy = (arrays[k] for k in ("indices", "values", "shape", "energy_fraction"))
        size = int(shape[0]) * int(shape[1])
        ok = (idx.dtype in (np.int32, np.int64) and idx.shape == (n,) and values.dtype == np.float32
              and values.shape == (n,) and dims.tolist() == [int(shape[0]), int(shape[1])]
              and energy.shape == (1,) and 0.0 <= float(energy[0]) <= 1.0
              and (n == 0 or (int(idx[0]) >= 0 and int(idx[-1]) < size and bool(np.all(np.diff(idx) > 0)))))
        if not ok:
            self._reject(self.path(file_key))
            return None
        self._served(file_key)
        return Digest(idx, values, (int(shape[0]), int(shape[1])), float(energy[0]))

    def store(self, key: str, digest: Digest) -> bool:
        """Write ``digest`` of the reference whose content hash is ``key``; False if the folder refuses."""
        self.path(key)
        return self._write(self.digest_key(key, digest.indices.size), {
            "indices": np.ascontiguousarray(digest.indices), "values": np.ascontiguousarray(digest.values, np.float32),
            "shape": np.asarray(digest.shape, dtype=np.int64),
            "energy_fraction": np.asarray([digest.energy_fraction], dtype=np.float64)})

    def digest(self, fingerprint: np.ndarray, n: int, params: Any = None, *, key: str | None = None) -> Digest:
        """The ``n``-pixel digest of ``fingerprint`` from the cache, or computed (and stored)."""
        shape = np.shape(fingerprint)
        if len(shape) != 2:
            raise ValueError(f"a fingerprint is 2-D, got shape {shape}")
        key = key if key is not None else content_hash(fingerprint, params)
        cached = self.load(key, shape, n)
        if cached is not None:
            return cached
        made = make_digest(fingerprint, n)
        self.store(key, made)
        return made
