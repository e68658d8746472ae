"""Validation for the reference library: arguments of writes, and files before they are trusted.

Every check raises with a message that says what is wrong; nothing here touches a file except to
read it (``check_file_header``, ``check_root``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import stat
from collections.abc import Iterable, Mapping

import h5py
import numpy as np

from . import durable, schema
from .errors import (
    LibraryError,
    LibraryNotFoundError,
    LibraryPermissionError,
    NotALibraryError,
    ReferenceExistsError,
    ReferenceMismatchError,
    SchemaVersionError,
)
from .records import ParamValue, ReferenceInfo

__all__ = [
    "as_fingerprint", "as_sums", "check_arrays", "check_count", "check_file_header", "check_kind",
    "check_lock_timeout", "check_mode", "check_params", "check_root", "check_shape", "check_sources", "check_update", "layout_problem",
    "nonfinite_problem", "open_checked", "param_value", "record_problem", "text",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# ---- arguments of writes ----------------------------------------------------------------------------

def check_mode(mode: object, modes: tuple[str, ...]) -> str:
    """``mode`` if it is one of ``modes`` (those of ``Library``), else ``ValueError`` naming them."""
    if not isinstance(mode, str) or mode not in modes:
        raise ValueError(f"invalid mode {mode!r}: use one of {', '.join(map(repr, modes))} "
                         "('r' read only, 'r+' read/write, 'a' read/write or create, 'w-'/'x' create)")
    return mode


def check_lock_timeout(seconds: object) -> float:
    """``seconds`` as a float >= 0 (``math.inf`` allowed), else ``ValueError``."""
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or math.isnan(seconds) or seconds < 0:
        raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {seconds!r}")
    return float(seconds)


def check_kind(kind: object) -> str:
    """``kind`` if it is one of ``schema.KINDS``, else ``ValueError``."""
    if kind not in schema.KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, schema.KINDS))}, got {kind!r}")
    return str(kind)


def _real_array(value: object, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what} must have at least one dimension, got a scalar")
    return arr


def as_fingerprint(value: object) -> np.ndarray:
    """``value`` as a C-contiguous float32 array of at least one dimension."""
    return np.ascontiguousarray(_real_array(value, "fingerprint"), dtype=np.float32)


def as_sums(sums: object) -> dict[str, np.ndarray]:
    """The running sums as C-contiguous arrays: float32 stays float32, anything else becomes float64."""
    if not isinstance(sums, Mapping):
        raise TypeError(f"sums must be a dict of name to array, not {type(sums).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in sums.items():
        schema.check_name(key, what="sum name")
        arr = _real_array(value, f"sum {key!r}")
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
        out[key] = np.ascontiguousarray(arr, dtype=dtype)
    return out


def check_count(n: object, what: str = "n_images") -> int:
    """``n`` as an int >= 0 (``bool`` is refused)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return int(n)


def check_shape(shape: object) -> tuple[int, ...]:
    """``shape`` as a non-empty tuple of positive ints."""
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, not {type(shape).__name__}") from None
    if not dims or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0
                       for d in dims):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def param_value(value: object) -> ParamValue:
    """A parameter as a plain Python scalar (bool, int, float or str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"parameter values must be bool, int, float or str, got {type(value).__name__}")


def check_params(params: object) -> dict[str, ParamValue]:
    """The parameters as a dict of non-empty str to plain scalars."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of name to scalar, not {type(params).__name__}")
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"parameter names must be non-empty str, got {key!r}")
        try:
            out[key] = param_value(value)
        except TypeError as err:
            raise TypeError(f"parameter {key!r}: {err}") from None
    return out


def _same_param(a: ParamValue, b: ParamValue) -> bool:
    if isinstance(a, bool) != isinstance(b, bool) or isinstance(a, str) != isinstance(b, str):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _source_name(value: object) -> str:
    name = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else value
    if not isinstance(name, str):
        raise TypeError(f"a source file name must be a str, not {type(value).__name__}")
    # h5py stores UTF-8: keep undecodable bytes of odd file names visible instead of failing.
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def check_sources(sources: object) -> list[tuple[str, str]]:
    """``(file name, sha256)`` pairs with lowercase digests; two pairs with one digest are refused."""
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Iterable):
        raise TypeError("sources must be an iterable of (file name, sha256) pairs")
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for item in sources:
        try:
            file_name, digest = item
        except (TypeError, ValueError):
            raise TypeError(f"each source must be a (file name, sha256) pair, got {item!r}") from None
        file_name = _source_name(file_name)
        digest = schema.check_sha256(digest)
        if digest in seen:
            raise ReferenceExistsError(
                f"{file_name!r} has the same SHA-256 as {seen[digest]!r} ({digest[:12]}...): "
                "an image may be counted only once")
        seen[digest] = file_name
        out.append((file_name, digest))
    return out


def check_update(where: str, old: ReferenceInfo, sum_shapes: Mapping[str, tuple[int, ...]], *,
                 fingerprint: np.ndarray, sums: Mapping[str, np.ndarray], n_images: int,
                 added: list[tuple[str, str]], kind: str | None, shape: object | None,
                 params: Mapping[str, ParamValue] | None) -> None:
    """Refuse an update of the stored reference ``old`` that would mix incompatible data.

    ``where`` names the reference in messages; ``sum_shapes`` are the stored sums' shapes. Kind,
    image shape and parameters are compared only when given.

    Raises
    ------
    ReferenceMismatchError
        Kind, image shape, parameters, fingerprint shape, sum names or sum shapes differ
        ("existing ... vs new ...").
    ReferenceExistsError
        An added SHA-256 is already counted (the message names both files).
    ValueError
        ``n_images`` is below the stored count plus the added sources.
    """
    if kind is not None and check_kind(kind) != old.kind:
        raise ReferenceMismatchError(f"{where}: existing kind {old.kind!r} vs new {kind!r}")
    if shape is not None and check_shape(shape) != old.shape:
        raise ReferenceMismatchError(f"{where}: existing image shape {old.shape} vs new {check_shape(shape)}")
    if params is not None:
        new_params = check_params(params)
        keys = sorted(set(old.params) | set(new_params))
        diff = [k for k in keys if k not in old.params or k not in new_params
                or not _same_param(old.params[k], new_params[k])]
        if diff:
            detail = ", ".join(f"{k}: existing {old.params.get(k, '<absent>')!r} vs new "
                               f"{new_params.get(k, '<absent>')!r}" for k in diff)
            raise ReferenceMismatchError(f"{where}: parameters differ ({detail})")
    if fingerprint.shape != old.fingerprint_shape:
        raise ReferenceMismatchError(f"{where}: existing fingerprint shape {old.fingerprint_shape} "
                                     f"vs new {fingerprint.shape}")
    if tuple(sorted(sums)) != old.sum_names:
        raise ReferenceMismatchError(f"{where}: existing sums {list(old.sum_names)} vs new {sorted(sums)}")
    for key, arr in sums.items():
        if arr.shape != tuple(sum_shapes[key]):
            raise ReferenceMismatchError(f"{where}: existing sum {key!r} of shape {tuple(sum_shapes[key])} "
                                         f"vs new {arr.shape}")
    counted = {sha: f for f, sha in old.sources}
    dupes = [(f, sha) for f, sha in added if sha in counted]
    if dupes:
        f, sha = dupes[0]
        more = f" (and {len(dupes) - 1} more)" if len(dupes) > 1 else ""
        raise ReferenceExistsError(f"{f!r} is already counted in {where}: same SHA-256 as {counted[sha]!r} "
                                   f"({sha[:12]}...){more}; nothing was updated")
    if n_images < old.n_images + len(added):
        raise ValueError(f"n_images ({n_images}) must be at least the stored count ({old.n_images}) plus "
                         f"the {len(added)} added sources")


def check_arrays(where: str, kind: str, shape: tuple[int, ...], fingerprint: np.ndarray,
                 sums: Mapping[str, np.ndarray]) -> None:
    """Refuse to store arrays that a reader would have to call damaged (``ValueError`` naming ``where``).

    The shapes must follow ``layout_problem`` and every value must be finite.
    """
    problem = layout_problem(kind, shape, fingerprint.shape, {k: v.shape for k, v in sums.items()})
    for what, arr in (("the fingerprint", fingerprint), *((f"the running sum {k!r}", v) for k, v in sums.items())):
        problem = problem or nonfinite_problem(what, arr)
    if problem:
        raise ValueError(f"refusing to store {where}: {problem}")


# ---- stored values ----------------------------------------------------------------------------------

def layout_problem(kind: str, image_shape: tuple[int, ...], fingerprint_shape: tuple[int, ...],
                   sum_shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """What is wrong with the shapes of a reference of ``kind``, or None when they agree.

    With the image shape ``(H, W[, ...])``, planes ``C`` in ``schema.CHANNELS``:

    - camera fingerprint ``(H, W)``; generator fingerprint ``(H, W)`` or ``(C, H, W)``;
    - the running sums are ``schema.SUM_LAYOUTS[kind]``, the ``REQUIRED_SUMS`` present, each
      ``(C, H, W)`` ("CHW") or ``(C, H, W // 2 + 1)`` ("CHF") with one ``C`` for all: a camera's
      image channels (1 for ``(H, W)`` images), a generator fingerprint's planes.
    """
    if kind not in schema.KINDS:
        return f"its kind is {kind!r}, not one of {', '.join(map(repr, schema.KINDS))}"
    if len(image_shape) not in (2, 3) or min(image_shape) < 1:
        return f"its image shape {tuple(image_shape)} is not (H, W) or (H, W, C)"
    h, w = image_shape[:2]
    fp = tuple(fingerprint_shape)
    if not (fp == (h, w) or (kind == "generator" and len(fp) == 3 and fp[1:] == (h, w)
                             and fp[0] in schema.CHANNELS)):
        expected = "(H, W)" if kind == "camera" else "(H, W) or (C, H, W)"
        return f"its fingerprint shape {fp} does not fit its {h}x{w} images (a {kind} fingerprint is {expected})"
    layout = schema.SUM_LAYOUTS[kind]
    if any(k not in sum_shapes for k in schema.REQUIRED_SUMS[kind]) or set(sum_shapes) - set(layout):
        return (f"its running sums are {sorted(sum_shapes)}, but a {kind} has {list(schema.REQUIRED_SUMS[kind])}"
                + (f" (and optionally {sorted(set(layout) - set(schema.REQUIRED_SUMS[kind]))})"
                   if len(layout) > len(schema.REQUIRED_SUMS[kind]) else ""))
    if kind == "camera":  # one noise plane per image channel
        c = image_shape[2] if len(image_shape) == 3 else 1
    else:
        first = tuple(sum_shapes[schema.REQUIRED_SUMS[kind][0]])
        c = fp[0] if len(fp) == 3 else (first[0] if first and first[0] in schema.CHANNELS else 1)
    for key in sorted(sum_shapes):
        expected = (c, h, w) if layout[key] == "CHW" else (c, h, w // 2 + 1)
        if tuple(sum_shapes[key]) != expected:
            return f"its running sum {key!r} has shape {tuple(sum_shapes[key])}, expected {expected}"
    return None


def record_problem(info: ReferenceInfo, fingerprint_dtype: np.dtype, sum_dtypes: Mapping[str, np.dtype],
                   sum_shapes: Mapping[str, tuple[int, ...]], source_lengths: tuple[int, int]) -> str | None:
    """What is wrong with a stored reference's metadata, dtypes and shapes, or None (reads no array)."""
    if info.n_images < 0 or info.n_sources < 0 or info.n_images < info.n_sources:
        return f"it counts {info.n_images} image(s) and {info.n_sources} source(s)"
    if source_lengths != (info.n_sources, info.n_sources):
        return f"its source lists have {source_lengths[0]} and {source_lengths[1]} entries, not {info.n_sources}"
    if np.dtype(fingerprint_dtype) != np.dtype(schema.FINGERPRINT_DTYPE):
        return f"its fingerprint is {np.dtype(fingerprint_dtype)}, not {schema.FINGERPRINT_DTYPE}"
    for key, dtype in sorted(sum_dtypes.items()):
        if np.dtype(dtype).name not in schema.SUM_DTYPES:
            return f"its running sum {key!r} is {np.dtype(dtype)}, not one of {', '.join(schema.SUM_DTYPES)}"
    return layout_problem(info.kind, info.shape, info.fingerprint_shape, sum_shapes)


def nonfinite_problem(what: str, arr: np.ndarray) -> str | None:
    """``"<what> has N NaN or infinite value(s)"``, or None when every value of ``arr`` is finite.

    One pass: a float64 sum of float32 values cannot overflow, so it is finite exactly when every
    value is; a non-finite sum of float64 values is confirmed element by element.
    """
    if arr.size == 0 or math.isfinite(float(np.sum(arr, dtype=np.float64))):
        return None
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    return f"{what} has {bad} NaN or infinite value(s)" if bad else None


def text(value: object) -> str:
    """A stored string attribute (bytes, numpy scalar or str) as ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value)


# ---- files ------------------------------------------------------------------------------------------

def check_file_header(real: str, shown: str) -> None:
    """Refuse, before HDF5 sees it, a file ``real`` (named ``shown`` in messages) that is not HDF5.

    Raises
    ------
    NotALibraryError
        Not a regular file (a directory, FIFO, device), an empty file, or a file without the
        HDF5 signature.
    LibraryNotFoundError, LibraryPermissionError
        The file is missing or cannot be read.
    """
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise LibraryNotFoundError(f"no reference library at {shown} (file not found)") from None
    except PermissionError:
        raise LibraryPermissionError(f"cannot read the library {shown}: permission denied") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or be read without end
        raise NotALibraryError(f"{shown} is {durable.file_kind(st.st_mode)}, not a ganprint reference library")
    try:
        with open(real, "rb") as fh:
            head = fh.read(len(_HDF5_SIGNATURE))
    except FileNotFoundError:
        raise LibraryNotFoundError(f"no reference library at {shown} (file not found)") from None
    except PermissionError:
        raise LibraryPermissionError(f"cannot read the library {shown}: permission denied") from None
    if head == _HDF5_SIGNATURE:
        return
    is_hdf5 = False
    if head:  # HDF5 allows a user block before the superblock
        with contextlib.suppress(Exception):
            is_hdf5 = bool(h5py.is_hdf5(real))
    if not is_hdf5:
        what = "an empty file" if not head else "not an HDF5 file"
        raise NotALibraryError(f"{shown} is {what}, not a ganprint reference library")


def open_checked(real: str, shown: str, version: str) -> h5py.File:
    """Open the library file ``real`` read-only once ``check_file_header`` and ``check_root`` pass."""
    check_file_header(real, shown)
    try:
        f = durable.open_h5(real, "r")
    except Exception as err:  # h5py reports damage as OSError; keep its text, drop its traceback
        raise NotALibraryError(f"{shown} cannot be opened as HDF5; it may be truncated or damaged ({err})") from None
    try:
        check_root(f, shown, version)
    except BaseException:
        f.close()
        raise
    return f


def check_root(f: h5py.File, shown: str, version: str) -> int:
    """Check the root of an open library file: the format marker, a readable schema, ``/references``.

    Returns the schema version. ``version`` is the running ganprint's, for the upgrade message.

    Raises
    ------
    NotALibraryError
        Not a ganprint library, or damaged.
    SchemaVersionError
        Written with a newer schema than ``schema.SCHEMA_VERSION``.
    """
    try:
        attrs = f.attrs
        marker = text(attrs[schema.ATTR_FORMAT]) if schema.ATTR_FORMAT in attrs else None
        if marker != schema.FORMAT_MARKER:
            raise NotALibraryError(
                f"{shown} is an HDF5 file but not a ganprint reference library (root attribute "
                f"{schema.ATTR_FORMAT!r} is {marker!r}, expected {schema.FORMAT_MARKER!r})")
        raw = attrs.get(schema.ATTR_SCHEMA_VERSION)
        try:
            found = int(np.asarray(raw).item())
        except (TypeError, ValueError):
            raise NotALibraryError(f"{shown}: root attribute {schema.ATTR_SCHEMA_VERSION!r} is "
                                   f"{raw!r}, not an integer; the library is damaged") from None
        if found > schema.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{shown} uses reference library schema version {found}, but this ganprint "
                f"({version}) reads versions up to {schema.SCHEMA_VERSION}: upgrade ganprint to read it")
        if found < 1:
            raise NotALibraryError(f"{shown}: invalid schema version {found}; the library is damaged")
        if not isinstance(f.get(schema.REFERENCES, getlink=True), h5py.HardLink) \
                or not isinstance(f[schema.REFERENCES], h5py.Group):
            raise NotALibraryError(f"{shown}: the group /{schema.REFERENCES} is missing; the library is damaged")
        return found
    except LibraryError:
        raise
    except Exception as err:
        raise NotALibraryError(f"{shown} cannot be read; it may be truncated or damaged ({err})") from None
