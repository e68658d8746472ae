"""The calibration methods of ``Library``: append values, read them with their pairs, clear them.

Calibration data is one more data file of the library (``store.Draft.calibration_file``): a write
copies the current file into a new one, changes the copy and commits it with a new index, so
every call here is one atomic commit (or part of the open transaction) and crash-safe like the
reference writes. The layout (``/calibration/<key>`` and ``/calibration_sources/<key>``) is in
``docs/reference_db.md``; the group-level reading and writing in ``groups``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from . import groups, schema

__all__ = ["CalibrationMethods"]


class CalibrationMethods:
    """Mixed into ``Library``: uses its ``_check_writable``, ``_calibration`` and ``_writing``."""

    def add_calibration(self, key: str, values: Iterable[float], *, sha256: Iterable[str] | None = None,
                        against: Iterable[str] | None = None, owner: str | None = None) -> int:
        """Append finite values to the calibration dataset ``key`` (one atomic commit, or part of
        the open transaction); returns how many were added.

        With ``sha256`` and ``against`` (one per value: the SHA-256 of the image scored and the
        reference it was scored against) a value is skipped when that pair is already recorded
        for ``key`` (or repeats within ``values``), so adding the same scores twice adds nothing.
        Non-finite values are refused with ``ValueError``.

        ``owner``: the reference these values are statistics of; ``key`` must then read
        ``"<family>:<owner>:<rest>"``. An owned dataset follows its reference: ``rename`` renames
        it (and the pairs naming the reference), ``remove`` deletes it, in the same commit, so a
        later reference of the same name never inherits another's statistics.
        """
        self._check_writable()
        schema.check_name(key)
        if owner is not None:
            schema.owned_calibration_key(key, schema.check_name(owner))
        values = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)):
            raise ValueError(f"calibration values for {key!r} must be finite")
        if (sha256 is None) != (against is None):
            raise TypeError("give both sha256 and against (one per value), or neither")
        keys = None
        if sha256 is not None and against is not None:
            keys = [(schema.check_sha256(s), schema.check_name(r)) for s, r in zip(sha256, against, strict=True)]
            if len(keys) != values.size:
                raise ValueError(f"{len(keys)} (sha256, reference) keys for {values.size} calibration values")
        with self._calibration(key) as f:
            stored = groups.calibration_keys(f, key) if f is not None else set()  # also checks the layout
        if keys is not None:
            keep = []
            for i, k in enumerate(keys):
                if k not in stored:
                    stored.add(k)
                    keep.append(i)
            values, keys = values[keep], [keys[i] for i in keep]
        if values.size == 0:
            return 0
        with self._writing() as draft, draft.calibration_file() as f:
            groups.append_calibration(f, key, values, keys, owner)
        return int(values.size)

    def calibration_scores(self, key: str) -> list[tuple[str, str, float]]:
        """``(image sha256, reference, value)`` of each value of ``key`` stored with its pair, in order.

        Values appended without ``sha256``/``against`` are left out (``calibration(key)`` has them all).

        Raises
        ------
        NotALibraryError
            The calibration data does not have the schema's layout (damaged).
        """
        schema.check_name(key)
        with self._calibration(key) as f:
            return groups.calibration_scores(f, key) if f is not None else []

    def clear_calibration(self, key: str) -> int:
        """Delete every value of the calibration dataset ``key`` and its recorded pairs; returns how many.

        One atomic commit, or part of the open transaction: ``clear_calibration`` then
        ``add_calibration`` inside ``with lib.transaction():`` replaces the values in one commit.
        Other keys are kept. Nothing is written when ``key`` holds no values.

        Raises
        ------
        LibraryPermissionError
            The library was opened read-only.
        NotALibraryError
            The calibration data does not have the schema's layout (damaged); nothing is deleted.
        """
        self._check_writable()
        schema.check_name(key)
        with self._calibration(key) as f:
            n = len(groups.read_calibration(f, key)) if f is not None else 0  # also checks the layout
        if n == 0:
            return 0
        with self._writing() as draft, draft.calibration_file() as f:
            return groups.drop_calibration(f, key)

    def owned_calibration(self, owner: str) -> list[str]:
        """Keys of the calibration datasets reference ``owner`` owns (``add_calibration(owner=...)``), sorted."""
        schema.check_name(owner)
        with self._calibration(owner) as f:
            return groups.owned_calibration(f, owner)

    def _carry_owned_calibration(self, draft, name: str, new: str | None) -> None:
        """Inside the write of ``remove(name)`` (``new`` None) or ``rename(name, new)``: delete or
        rename the calibration datasets ``name`` owns, in that draft's calibration file."""
        owned = self.owned_calibration(name)
        if not owned:
            return
        with draft.calibration_file() as f:
            for key in owned:
                if new is None:
                    groups.drop_calibration(f, key)
                else:
                    groups.rename_calibration(f, key, name, new)
