"""One reference as an HDF5 group, and the calibration group: reading and writing their members.

The group layout is ``schema``'s (``/references/<name>`` of schema version 1); the functions take
an open ``h5py.Group`` and never open, commit or lock a file. Arguments are already validated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import h5py
import numpy as np

from . import schema
from .records import ParamValue, ReferenceInfo
from .validate import param_value, text

__all__ = ["append_calibration", "append_sources", "calibration_keys", "calibration_owner", "calibration_scores",
           "drop_calibration", "owned_calibration", "rename_calibration",
           "fingerprint_sha256", "read_arrays", "read_calibration", "read_info", "read_meta", "sum_shapes",
           "write_reference", "write_update"]


def fingerprint_sha256(fingerprint: np.ndarray) -> str:
    """SHA-256 (64 lowercase hex) of a fingerprint as C-ordered little-endian float32 bytes."""
    k = np.ascontiguousarray(fingerprint, dtype="<f4")
    return hashlib.sha256(memoryview(k).cast("B")).hexdigest()


def read_info(g: h5py.Group, name: str, *, with_sources: bool) -> ReferenceInfo:
    """The metadata of the reference stored in group ``g`` under the name ``name``."""
    a = g.attrs
    sources: list[tuple[str, str]] = []
    if with_sources:
        files = g[schema.SOURCES][schema.SOURCE_FILE_NAME].asstr()[()]
        shas = g[schema.SOURCES][schema.SOURCE_SHA256][()]
        sources = [(str(f), text(s)) for f, s in zip(files, shas)]
    return ReferenceInfo(
        name=name,
        kind=text(a[schema.ATTR_KIND]),
        n_images=int(a[schema.ATTR_N_IMAGES]),
        shape=tuple(int(d) for d in np.atleast_1d(a[schema.ATTR_IMAGE_SHAPE])),
        params={k: param_value(v) for k, v in g[schema.PARAMS].attrs.items()},
        created=text(a[schema.ATTR_CREATED]),
        updated=text(a[schema.ATTR_UPDATED]),
        ganprint_version=text(a[schema.ATTR_GANPRINT_VERSION]),
        sources=sources,
        n_sources=int(a[schema.ATTR_N_SOURCES]),
        fingerprint_shape=tuple(g[schema.FINGERPRINT].shape),
        sum_names=tuple(sorted(g[schema.SUMS].keys())),
        fingerprint_sha256=text(a[schema.ATTR_FINGERPRINT_SHA256]) if schema.ATTR_FINGERPRINT_SHA256 in a else None,
    )


def read_arrays(g: h5py.Group, *, with_sums: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fingerprint (float32) and, if ``with_sums``, the running sums (stored dtype) of group ``g``."""
    fingerprint = np.asarray(g[schema.FINGERPRINT][()], dtype=np.float32)
    sums = {k: ds[()] for k, ds in g[schema.SUMS].items()} if with_sums else {}
    return fingerprint, sums


def read_meta(g: h5py.Group) -> dict:
    """Dtypes and lengths of group ``g``'s datasets, without reading them: the arguments of
    ``validate.record_problem`` after the info (``fingerprint_dtype``, ``sum_dtypes``,
    ``sum_shapes``, ``source_lengths``)."""
    sums = g[schema.SUMS]
    datasets = [g[schema.FINGERPRINT], *sums.values(), *(g[schema.SOURCES][k] for k in
                                                          (schema.SOURCE_FILE_NAME, schema.SOURCE_SHA256))]
    for ds in datasets:
        if not isinstance(ds, h5py.Dataset):
            raise TypeError(f"{ds.name} is a {type(ds).__name__}, not a dataset")
    return dict(fingerprint_dtype=g[schema.FINGERPRINT].dtype,
                sum_dtypes={k: ds.dtype for k, ds in sums.items()},
                sum_shapes=sum_shapes(g),
                source_lengths=tuple(len(g[schema.SOURCES][k]) for k in
                                     (schema.SOURCE_FILE_NAME, schema.SOURCE_SHA256)))


def sum_shapes(g: h5py.Group) -> dict[str, tuple[int, ...]]:
    """Shape of each stored running sum of group ``g``."""
    return {k: tuple(ds.shape) for k, ds in g[schema.SUMS].items()}


def write_reference(g: h5py.Group, *, kind: str, fingerprint: np.ndarray, sums: Mapping[str, np.ndarray],
                    n_images: int, shape: tuple[int, ...], params: Mapping[str, ParamValue],
                    sources: list[tuple[str, str]], now: str, version: str) -> None:
    """Fill the empty group ``g`` with a new reference (``created`` = ``updated`` = ``now``)."""
    g.attrs[schema.ATTR_KIND] = kind
    g.attrs[schema.ATTR_N_IMAGES] = np.int64(n_images)
    g.attrs[schema.ATTR_IMAGE_SHAPE] = np.asarray(shape, dtype=np.int64)
    g.attrs[schema.ATTR_CREATED] = now
    g.attrs[schema.ATTR_UPDATED] = now
    g.attrs[schema.ATTR_GANPRINT_VERSION] = version
    g.attrs[schema.ATTR_N_SOURCES] = np.int64(0)
    g.create_dataset(schema.FINGERPRINT, data=fingerprint)
    g.attrs[schema.ATTR_FINGERPRINT_SHA256] = fingerprint_sha256(g[schema.FINGERPRINT][()])  # of what is stored
    sg = g.create_group(schema.SUMS)
    for key, arr in sums.items():
        sg.create_dataset(key, data=arr)
    pg = g.create_group(schema.PARAMS)
    for key, value in params.items():
        pg.attrs[key] = value
    src = g.create_group(schema.SOURCES)
    src.create_dataset(schema.SOURCE_FILE_NAME, shape=(0,), maxshape=(None,),
                       chunks=(schema.SOURCES_CHUNK,), dtype=h5py.string_dtype("utf-8"))
    src.create_dataset(schema.SOURCE_SHA256, shape=(0,), maxshape=(None,),
                       chunks=(schema.SOURCES_CHUNK,), dtype=schema.SHA256_DTYPE)
    append_sources(g, sources)


def append_sources(g: h5py.Group, sources: list[tuple[str, str]]) -> None:
    """Append ``(file name, sha256)`` pairs to the source datasets of group ``g`` and count them."""
    if not sources:
        return
    files = g[schema.SOURCES][schema.SOURCE_FILE_NAME]
    shas = g[schema.SOURCES][schema.SOURCE_SHA256]
    start = files.shape[0]
    stop = start + len(sources)
    files.resize((stop,))
    shas.resize((stop,))
    files[start:stop] = np.array([f for f, _ in sources], dtype=object)
    shas[start:stop] = np.array([s.encode("ascii") for _, s in sources], dtype=schema.SHA256_DTYPE)
    g.attrs[schema.ATTR_N_SOURCES] = np.int64(stop)


def write_update(g: h5py.Group, *, fingerprint: np.ndarray, sums: Mapping[str, np.ndarray], n_images: int,
                 added: list[tuple[str, str]], now: str, version: str) -> None:
    """Overwrite the arrays of group ``g`` with new totals (same shapes, stored dtypes kept)."""
    g[schema.FINGERPRINT][...] = fingerprint
    g.attrs[schema.ATTR_FINGERPRINT_SHA256] = fingerprint_sha256(g[schema.FINGERPRINT][()])
    for key, arr in sums.items():
        ds = g[schema.SUMS][key]
        ds[...] = arr.astype(ds.dtype, copy=False)
    append_sources(g, added)
    g.attrs[schema.ATTR_N_IMAGES] = np.int64(n_images)
    g.attrs[schema.ATTR_UPDATED] = now
    g.attrs[schema.ATTR_GANPRINT_VERSION] = version


def _calibration_values(f: h5py.File, key: str) -> h5py.Dataset | None:
    group = f.get(schema.CALIBRATION)
    if group is None:
        return None
    if not isinstance(group, h5py.Group):
        raise TypeError(f"/{schema.CALIBRATION} is a {type(group).__name__}, not a group")
    if key not in group:
        return None
    ds = group[key]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "fiu":
        what = type(ds).__name__ if not isinstance(ds, h5py.Dataset) else f"{ds.ndim}-D {ds.dtype} dataset"
        raise TypeError(f"{ds.name} is a {what}, not a 1-D float dataset")
    return ds


def _calibration_sources(f: h5py.File, key: str, n: int) -> tuple[h5py.Dataset, h5py.Dataset] | None:
    group = f.get(schema.CALIBRATION_SOURCES)
    if group is None or key not in group:
        return None
    sub = group[key]
    shas, refs = sub.get(schema.CALIBRATION_SHA256), sub.get(schema.CALIBRATION_REFERENCE)
    if not (isinstance(shas, h5py.Dataset) and isinstance(refs, h5py.Dataset)) or shas.ndim != 1 \
            or shas.dtype != np.dtype(schema.SHA256_DTYPE) or refs.ndim != 1 or refs.dtype.kind not in "OS" \
            or len(shas) != len(refs) or len(shas) > n:
        raise TypeError(f"{sub.name} does not hold two 1-D lists (sha256, reference) of at most {n} entries")
    return shas, refs


def read_calibration(f: h5py.File, key: str) -> np.ndarray:
    """The calibration values stored under ``key`` (float64, 1-D; empty when there are none).

    Raises ``TypeError`` when the calibration groups do not have the schema's layout.
    """
    ds = _calibration_values(f, key)
    if ds is None:
        return np.zeros(0, dtype=np.float64)
    _calibration_sources(f, key, len(ds))
    return np.asarray(ds[()], dtype=np.float64)


def calibration_keys(f: h5py.File, key: str) -> set[tuple[str, str]]:
    """The ``(image sha256, reference)`` pairs recorded with the values of ``key`` (unrecorded ones left out)."""
    ds = _calibration_values(f, key)
    found = _calibration_sources(f, key, len(ds)) if ds is not None else None
    if found is None:
        return set()
    shas, refs = found
    pairs = zip((text(s) for s in shas[()]), refs.asstr()[()])
    return {(s, str(r)) for s, r in pairs if s}


def calibration_scores(f: h5py.File, key: str) -> list[tuple[str, str, float]]:
    """``(image sha256, reference, value)`` of every value of ``key`` recorded with its pair (unkeyed ones left out)."""
    ds = _calibration_values(f, key)
    found = _calibration_sources(f, key, len(ds)) if ds is not None else None
    if found is None:
        return []
    shas, refs = found
    values = np.asarray(ds[()], dtype=np.float64)
    return [(text(s), str(r), float(v)) for s, r, v in zip(shas[()], refs.asstr()[()], values) if text(s)]


def drop_calibration(f: h5py.File, key: str) -> int:
    """Delete the values of ``key`` and their recorded pairs from file ``f``; returns how many values there were.

    The layout is checked first (``TypeError`` when it is not the schema's), so nothing is deleted from damaged data.
    """
    ds = _calibration_values(f, key)
    if ds is None:
        return 0
    n = len(ds)
    found = _calibration_sources(f, key, n)
    del f[schema.CALIBRATION][key]
    if found is not None:
        del f[schema.CALIBRATION_SOURCES][key]
    return n


def calibration_owner(f: h5py.File, key: str) -> str | None:
    """The reference that owns the calibration dataset ``key`` of file ``f`` (None: the library's)."""
    ds = _calibration_values(f, key)
    owner = ds.attrs.get(schema.ATTR_CALIBRATION_OWNER) if ds is not None else None
    return text(owner) if owner is not None else None


def owned_calibration(f: h5py.File | None, owner: str) -> list[str]:
    """Keys of the calibration datasets of file ``f`` owned by reference ``owner``, sorted."""
    group = f.get(schema.CALIBRATION) if f is not None else None
    if group is None:
        return []
    return sorted(k for k in group if calibration_owner(f, k) == owner)


def rename_calibration(f: h5py.File, key: str, old: str, new: str) -> str:
    """Move the dataset ``key`` owned by ``old`` (and its recorded pairs) to the key naming ``new``,
    which then owns it; the pairs' references equal to ``old`` now read ``new``. Returns the new key."""
    family, rest = schema.owned_calibration_key(key, old)
    target = f"{family}:{new}:{rest}"
    ds = _calibration_values(f, key)
    found = _calibration_sources(f, key, len(ds))
    if target in f[schema.CALIBRATION]:
        raise ValueError(f"calibration dataset {target!r} exists already")
    f[schema.CALIBRATION].move(key, target)
    f[schema.CALIBRATION][target].attrs[schema.ATTR_CALIBRATION_OWNER] = new
    if found is not None:
        f[schema.CALIBRATION_SOURCES].move(key, target)
        refs = f[schema.CALIBRATION_SOURCES][target][schema.CALIBRATION_REFERENCE]
        names = refs.asstr()[()]
        if len(names) and np.any(names == old):
            refs[...] = np.array([new if r == old else r for r in names], dtype=object)
    return target


def append_calibration(f: h5py.File, key: str, values: np.ndarray,
                       keys: list[tuple[str, str]] | None = None, owner: str | None = None) -> None:
    """Append the float64 ``values`` to the calibration dataset ``key`` of file ``f``.

    With ``keys`` (one ``(sha256, reference)`` per value) they are recorded in
    ``/calibration_sources/<key>``, index for index; values without keys leave that list shorter.
    ``owner``: the reference whose statistics these are (``schema.owned_calibration_key``), recorded
    on the dataset; a dataset of another owner is refused (``ValueError``).
    """
    if owner is not None:
        schema.owned_calibration_key(key, owner)
    ds = _calibration_values(f, key)
    if ds is not None and owner is not None and calibration_owner(f, key) not in (None, owner):
        raise ValueError(f"calibration dataset {key!r} belongs to {calibration_owner(f, key)!r}, not {owner!r}")
    if ds is None:
        ds = f.require_group(schema.CALIBRATION).create_dataset(
            key, shape=(0,), maxshape=(None,), chunks=(schema.CALIBRATION_CHUNK,), dtype=np.float64)
    if owner is not None:
        ds.attrs[schema.ATTR_CALIBRATION_OWNER] = owner
    n = ds.shape[0]
    if keys is not None:
        found = _calibration_sources(f, key, n)
        if found is None:
            sub = f.require_group(schema.CALIBRATION_SOURCES).create_group(key)
            found = (sub.create_dataset(schema.CALIBRATION_SHA256, shape=(0,), maxshape=(None,),
                                        chunks=(schema.CALIBRATION_CHUNK,), dtype=schema.SHA256_DTYPE),
                     sub.create_dataset(schema.CALIBRATION_REFERENCE, shape=(0,), maxshape=(None,),
                                        chunks=(schema.CALIBRATION_CHUNK,), dtype=h5py.string_dtype("utf-8")))
        shas, refs = found
        m = len(shas)  # values m..n-1 have no recorded source: pad, then record the new ones
        for column in (shas, refs):
            column.resize((n + values.size,))
        if n > m:
            shas[m:n] = np.zeros(n - m, dtype=schema.SHA256_DTYPE)
            refs[m:n] = np.array([""] * (n - m), dtype=object)
        shas[n:] = np.array([k.encode("ascii") for k, _ in keys], dtype=schema.SHA256_DTYPE)
        refs[n:] = np.array([r for _, r in keys], dtype=object)
    ds.resize((n + values.size,))
    ds[n:] = values
