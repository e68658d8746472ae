"""The records of the reference library: ``ReferenceInfo`` (metadata) and ``Reference`` (with arrays)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Union

import numpy as np

__all__ = ["ParamValue", "Reference", "ReferenceInfo", "iso", "utc_now"]

#: The type of one estimation parameter.
ParamValue = Union[bool, int, float, str]


@dataclasses.dataclass(frozen=True)
class ReferenceInfo:
    """What the library records about one reference, without its arrays.

    Attributes
    ----------
    name : str
        The reference name.
    kind : str
        ``"camera"`` or ``"generator"``.
    n_images : int
        Number of images counted in the running sums.
    shape : tuple of int
        Shape of every source image, e.g. ``(H, W, 3)``.
    params : dict of str to bool, int, float or str
        Estimation parameters (wavelet, levels, sigma, ...).
    created, updated : str
        ISO 8601 UTC times, e.g. ``"2025-01-31T12:00:00Z"``.
    ganprint_version : str
        The ganprint version that last wrote the reference.
    sources : list of (str, str)
        ``(file name, sha256)`` of each source image, in the order they were added; empty when
        read with ``with_sources=False``.
    n_sources : int
        Number of recorded sources (known even when ``sources`` was not read).
    fingerprint_shape : tuple of int
        Shape of the stored fingerprint.
    sum_names : tuple of str
        Names of the stored running sums.
    fingerprint_sha256 : str or None
        SHA-256 of the fingerprint's float32 bytes (C order, little-endian) recorded when it was
        written, or None for a reference written before it was recorded. Reading the fingerprint
        checks it; it also names the fingerprint's content without reading it (caches).
    damaged : str or None
        Why the reference cannot be used (unreadable, inconsistent shapes, NaN or inf values), or
        None. A damaged reference's other fields may be empty.
    """

    name: str
    kind: str
    n_images: int
    shape: tuple[int, ...]
    params: dict[str, ParamValue]
    created: str
    updated: str
    ganprint_version: str
    sources: list[tuple[str, str]]
    n_sources: int = 0
    fingerprint_shape: tuple[int, ...] = ()
    sum_names: tuple[str, ...] = ()
    damaged: str | None = None
    fingerprint_sha256: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    """One reference: its ``info``, its fingerprint and its running sums.

    Attributes
    ----------
    info : ReferenceInfo
        The metadata.
    fingerprint : ndarray of float32
        The fingerprint, shape ``info.fingerprint_shape``.
    sums : dict of str to ndarray of float32 or float64
        The running sums needed to add images (empty when read with ``with_sums=False``).
    """

    info: ReferenceInfo
    fingerprint: np.ndarray
    sums: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        """The reference name."""
        return self.info.name

    @property
    def kind(self) -> str:
        """``"camera"`` or ``"generator"``."""
        return self.info.kind

    @property
    def n_images(self) -> int:
        """Number of images counted in the sums."""
        return self.info.n_images


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment: datetime.datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` suffix, to the second, e.g. ``"2025-01-31T12:00:05Z"``."""
    if moment.tzinfo is None:
        raise ValueError("the clock must return timezone-aware datetimes")
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
