"""Batch builds: a CSV of ``path,label[,kind]`` builds or updates many references in one call.

``ganprint build LIBRARY --labels labels.csv [--kind KIND]``. Three steps:

1. :func:`parse_labels` reads the CSV: one image file (or a folder of one source's images) per
   row, its reference name (the label) and optionally its kind; a first row ``path,label[,kind]``
   is a header, blank rows and rows starting with ``#`` are skipped; relative paths are relative
   to the CSV's folder. Every bad row is reported with its line number (:class:`LabelError`):
   too few or too many columns, an empty path or label, a label that cannot name a reference, an
   unknown kind, no kind (no third column and no ``--kind``), a file or folder that does not
   exist, a label given two kinds, a file given to two labels.
2. :func:`plan_labels` groups the rows into one :class:`PlannedReference` per label (files in
   row order) and checks them against the library: a label naming an existing reference of
   another kind is a bad row too (its first line).
3. :func:`build_labels` builds each planned reference with ``fingerprint.build.build_reference``
   (or a distributed builder), in order of first appearance, one commit per reference.

Nothing is written when any row is bad: every problem is listed and the library is left as it
was, so the fixed CSV can simply be run again. Once the rows are good, each reference is committed
as it is built: a reference that fails (no usable image, another writer's lock, ...) is reported
and the others are still built; a reference's images already counted are skipped, so a rerun after
an interruption adds only what is missing. A library is never left broken: every commit is
atomic (``reference_db``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from fingerprint.build import BuildReport, build_reference
from fingerprint.errors import InvalidImageError
from fingerprint.io.paths import find_images

__all__ = ["KINDS", "LabelError", "LabelRow", "LabelsResult", "PlannedReference", "build_labels", "parse_labels",
           "plan_labels"]

KINDS = ("camera", "generator")


class LabelError(InvalidImageError):
    """Bad rows of a labels CSV: ``problems`` holds one ``"FILE: line N: problem"`` line per row."""

    def __init__(self, csv_path: str | os.PathLike, problems: list[str]):
        self.problems = list(problems)
        more = f" (and {len(problems) - 1} more bad row(s))" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}; nothing was built")


@dataclass(frozen=True)
class LabelRow:
    """One good row: its line number, the path (resolved against the CSV's folder), label and kind;
    ``files``: the path itself, or a folder's image files (``io.find_images``, recursive, by content)."""

    line: int
    path: Path
    label: str
    kind: str
    files: tuple[Path, ...] = ()
    skipped: tuple[tuple[Path, str], ...] = ()


@dataclass
class PlannedReference:
    """One reference to build: its name, kind, files (row order) and the CSV line that first names it."""

    name: str
    kind: str
    line: int
    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # met in its folders and left out (why)


@dataclass
class LabelsResult:
    """Per planned reference (in order): its ``BuildReport``, or the one-line error that stopped it."""

    reports: list[tuple[PlannedReference, BuildReport | None, str | None]] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[PlannedReference, str]]:
        return [(ref, err) for ref, rep, err in self.reports if err is not None]


def _is_header(row: list[str]) -> bool:
    return [c.strip().lower() for c in row[:3]] in (["path", "label"], ["path", "label", "kind"])


def parse_labels(csv_path: str | os.PathLike, *, kind: str | None = None) -> list[LabelRow]:
    """The good rows of ``csv_path``; raises :class:`LabelError` listing every bad row.

    ``kind`` is the kind of rows without a third column (``--kind``); a row's own kind wins.
    """
    csv_path = Path(csv_path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    from reference_db.schema import check_name

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM is no header
            lines = list(enumerate(csv.reader(fh), 1))
    except UnicodeDecodeError:
        raise InvalidImageError(f"{csv_path}: not a UTF-8 text file (expected a CSV of path,label[,kind])") from None
    except (OSError, csv.Error) as err:
        raise InvalidImageError(f"{csv_path}: cannot read the labels CSV ({getattr(err, 'strerror', None) or err})") \
            from None
    rows, problems = [], []
    kinds: dict[str, tuple[str, int]] = {}  # label -> (kind, first line)
    owners: dict[str, tuple[str, int]] = {}  # resolved file -> (label, line)
    for i, row in lines:
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#") or (i == 1 and _is_header(row)):
            continue
        bad = lambda msg: problems.append(f"{csv_path}: line {i}: {msg}")  # noqa: E731
        if not 2 <= len(row) <= 3:
            bad(f"expected 'path,label' or 'path,label,kind', got {len(row)} column(s)")
            continue
        path_text, label = row[0].strip(), row[1].strip()
        row_kind = row[2].strip().lower() if len(row) == 3 and row[2].strip() else kind
        if not path_text:
            bad("empty path")
            continue
        if not label:
            bad("empty label")
            continue
        try:
            check_name(label)
        except ValueError as err:
            bad(f"label {label!r} cannot name a reference ({err})")
            continue
        if row_kind is None:
            bad(f"no kind for {label!r}: add a third column (camera or generator) or pass --kind")
            continue
        if row_kind not in KINDS:
            bad(f"unknown kind {row[2].strip()!r} (expected camera or generator)")
            continue
        path = Path(path_text)
        path = path if path.is_absolute() else csv_path.parent / path
        if not path.exists():
            bad(f"{path}: no such file or folder")
            continue
        try:
            found = find_images([path]) if path.is_dir() else None
        except InvalidImageError as err:
            bad(str(err))
            continue
        first = kinds.setdefault(label, (row_kind, i))
        if first[0] != row_kind:
            bad(f"{label!r} is a {row_kind} here but a {first[0]} on line {first[1]}")
            continue
        files = tuple(found.paths) if found else (path,)
        clash = next(((f, owners[os.path.realpath(f)]) for f in files
                      if owners.get(os.path.realpath(f), (label,))[0] != label), None)
        if clash is not None:
            bad(f"{clash[0]} is labelled {label!r} here but {clash[1][0]!r} on line {clash[1][1]}: an image has "
                "one source")
            continue
        for f in files:
            owners.setdefault(os.path.realpath(f), (label, i))
        rows.append(LabelRow(i, path, label, row_kind, files, tuple(found.skipped) if found else ()))
    if problems:
        raise LabelError(csv_path, problems)
    if not rows:
        raise InvalidImageError(f"{csv_path}: no 'path,label[,kind]' rows; nothing was built")
    return rows


def plan_labels(rows: Sequence[LabelRow], library: str | os.PathLike, *, csv_path: str | os.PathLike = "labels") \
        -> list[PlannedReference]:
    """One :class:`PlannedReference` per label, in order of first appearance, checked against ``library``.

    A label naming an existing reference of another kind raises :class:`LabelError` (its first line).
    """
    plan: dict[str, PlannedReference] = {}
    for row in rows:
        ref = plan.setdefault(row.label, PlannedReference(row.label, row.kind, row.line))
        ref.paths += [f for f in row.files if f not in ref.paths]
        ref.skipped += row.skipped
    if os.path.exists(library):
        from reference_db import Library

        with Library(library, "r") as lib:
            stored = {i.name: i.kind for i in lib.infos()}
        problems = [f"{csv_path}: line {ref.line}: {ref.name!r} is a {ref.kind} here but the library holds a "
                    f"{stored[ref.name]} of that name" for ref in plan.values()
                    if ref.name in stored and stored[ref.name] != ref.kind]
        if problems:
            raise LabelError(csv_path, problems)
    return list(plan.values())


Builder = Callable[..., BuildReport]


def build_labels(library: str | os.PathLike, plan: Sequence[PlannedReference], *, builder: Builder | None = None,
                 on_reference: Callable[[PlannedReference, BuildReport | None, str | None], None] | None = None,
                 **options) -> LabelsResult:
    """Build every planned reference, one commit each; returns what each build did.

    ``builder`` is ``build_reference`` (default) or a function of the same signature (e.g. a
    distributed build with its client bound); ``options`` go to it (``crop``, ``sigma``, ``strict``,
    ``warn``, ``backend``, ...; ``progress`` is turned off: the caller shows one bar over all
    references, advanced through ``on_reference`` after each one). A reference whose build raises
    a user error (bad images, library problems) is recorded with the one-line message and the next
    one is built; other exceptions (a bug, Ctrl-C) propagate, leaving the committed ones.
    """
    from fingerprint.errors import GanprintError
    from reference_db import LibraryError, LibraryLockedError

    builder = builder or build_reference
    result = LabelsResult()
    for ref in plan:
        rep, err = None, None
        try:
            rep = builder(library, ref.name, ref.kind, [str(p) for p in ref.paths], **(options | {"progress": False}))
        except (GanprintError, LibraryError, ValueError, OSError) as caught:
            if isinstance(caught, LibraryLockedError):
                raise  # another writer holds the library: the rest would fail the same way
            err = " ".join(str(caught).split()) or type(caught).__name__
        result.reports.append((ref, rep, err))
        if on_reference is not None:
            on_reference(ref, rep, err)
    return result
