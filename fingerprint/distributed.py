"""Scale-out with Dask: build fingerprints and attribute queries on a ``dask.distributed`` cluster.

Optional: needs ``pip install 'ganprint[dist]'``. Dask is imported lazily, so ``import fingerprint``
works without it; :func:`connect` raises :class:`~fingerprint.errors.BackendUnavailableError` (one
line) when it is missing.

Building (:func:`build_reference_distributed`), same library semantics as
:func:`fingerprint.build.build_reference`:

1. *hash*: workers compute the SHA-256 of every file (tasks of ``hash_batch`` files). The client
   de-duplicates in input order: a hash already in the reference, or seen earlier in this run, is
   skipped. Every image that will be counted now has a distinct hash, fixed before any pixel is read.
2. *probe*: one task decodes files in order until one is usable; its size (after ``crop``) and
   channel count become the build's, exactly as the first usable image does in-process (an existing
   reference keeps its own).
3. *reduce*: each task reads its batch one image at a time into an accumulator of
   :mod:`fingerprint.estimate` and returns a :class:`PartialSums`: the running sums plus the set of
   hashes counted in them. Partials are tree-reduced (``split_every`` at a time, in batch order,
   so the float32 sums are the same whichever worker ran what). :func:`merge_partials` refuses
   overlapping hash sets, so an image can never be counted twice; a task whose worker dies is
   simply re-run by the scheduler (its result replaces nothing: it had none).
4. *write*: the client merges the partial into the reference's stored sums and writes the
   library once, in one ``lib.transaction()``, with every new source's hash (and, for generators,
   the non-matching calibration scores against the library's other generators).

The client holds the library's writer lock from start to end, like the in-process build.

Attribution on a cluster is ``fingerprint.distributed_attribution``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from fingerprint.errors import BackendUnavailableError, InvalidImageError, ShapeMismatchError

__all__ = [
    "PartialSums",
    "build_reference_distributed",
    "connect",
    "default_batch_size",
    "merge_partials",
    "parse_scheduler",
    "reduce_batch",
]

_DIST_MISSING = "--scheduler needs dask.distributed, which is not installed: pip install 'ganprint[dist]'"


def _require_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(_DIST_MISSING) from None
    return distributed


# --------------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------------

def parse_scheduler(spec: str) -> tuple[str, int | None]:
    """``"local"`` -> ("local", None); ``"local:N"`` -> ("local", N); else ("address", None).

    An address is what ``dask.distributed.Client`` accepts: ``tcp://host:8786``, ``host:8786``,
    or the path of a scheduler file (``*.json``).
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("--scheduler: empty; give ADDRESS, 'local' or 'local:N'")
    if spec == "local":
        return "local", None
    if spec.startswith("local:"):
        text = spec[len("local:"):]
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"--scheduler local:N: N must be a positive integer, got {text!r}") from None
        if n < 1:
            raise ValueError(f"--scheduler local:N: N must be a positive integer, got {n}")
        return "local", n
    return "address", None


@contextlib.contextmanager
def connect(spec: str, *, quiet: bool = True) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``spec`` (see :func:`parse_scheduler`), closed on exit.

    ``local[:N]`` starts a ``LocalCluster`` of N worker processes (default: one per core), one
    Dask thread each; Numba in each worker gets ``cores // N`` threads (at least 1), so the machine
    is used fully and not oversubscribed.
    """
    kind, n = parse_scheduler(spec)
    _require_distributed()
    from distributed import Client, LocalCluster

    if kind == "address":
        kwargs = {"scheduler_file": spec} if spec.endswith(".json") and os.path.isfile(spec) else {"address": spec}
        with Client(**kwargs, timeout="30s") as client:
            yield client
        return
    cores = os.cpu_count() or 1
    n = n or cores
    numba_threads = str(max(1, cores // n))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=40 if quiet else 30,
                           env={"NUMBA_NUM_THREADS": numba_threads, "OMP_NUM_THREADS": numba_threads})
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _n_workers(client) -> int:
    """Dask threads in the cluster (the parallelism a batch size is chosen for), at least 1."""
    return max(1, sum(client.nthreads().values()))


# --------------------------------------------------------------------------------------------------
# Partial sums and their reduction
# --------------------------------------------------------------------------------------------------

@dataclass
class _Record:
    """What happened to one file of a batch (small: travels with the partial sums)."""

    index: int  # position in the build's file list
    path: str
    sha: str
    error: BaseException | None = None  # the exception that made it skip (None: counted)
    null_scores: list[float] = field(default_factory=list)  # generators: z scores vs the library's other generators


@dataclass
class PartialSums:
    """Running sums of some images, with the SHA-256 of every image counted in them.

    ``sums``/``n_images``/``shape``/``channels`` are those of an accumulator of
    :mod:`fingerprint.estimate` (``params``); ``hashes`` the images counted; ``records`` one entry
    per file the batch was given (counted or skipped, with the reason).
    """

    params: Any  # FingerprintParams
    n_images: int = 0
    shape: tuple[int, int] | None = None
    channels: int | None = None
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    hashes: frozenset = frozenset()
    records: list[_Record] = field(default_factory=list)

    def accumulator(self):
        """An accumulator over these sums (shares their memory; do not add to it)."""
        from fingerprint.estimate import new_accumulator

        acc = new_accumulator(self.params)
        acc.shape, acc.channels, acc.n_images, acc.sums = self.shape, self.channels, self.n_images, self.sums
        return acc


def merge_partials(*parts: PartialSums) -> PartialSums:
    """Sum partials in the order given, into new arrays (the inputs are never modified).

    Raises ``ValueError`` if two partials counted an image with the same SHA-256: a merge that
    would count an image twice is refused, whatever the scheduling. Deterministic: the same
    partials in the same order give the same float32 sums.
    """
    from fingerprint.estimate import new_accumulator

    if not parts:
        raise ValueError("merge_partials needs at least one partial")
    params = parts[0].params
    acc = new_accumulator(params)
    hashes: set[str] = set()
    records: list[_Record] = []
    for p in parts:
        if p.params != params:
            raise ValueError(f"cannot merge partial sums of different parameters: {p.params} vs {params}")
        overlap = hashes.intersection(p.hashes)
        if overlap:
            raise ValueError(f"refusing to merge partial sums that both count {len(overlap)} image(s) "
                             f"(SHA-256 {sorted(overlap)[0][:12]}...): an image may be counted only once")
        if p.n_images:
            acc.merge(p.accumulator())  # the first merge into an empty accumulator copies
        hashes.update(p.hashes)
        records.extend(p.records)
    if acc.n_images == 0:  # keep the shape known to the inputs, if any
        acc.shape = next((p.shape for p in parts if p.shape is not None), None)
        acc.channels = next((p.channels for p in parts if p.channels is not None), None)
    return PartialSums(params, acc.n_images, acc.shape, acc.channels, acc.sums, frozenset(hashes), records)


def _announced(paths: Iterator[str], on_image: Callable[[str], None] | None) -> Iterator[str]:
    """``paths``, calling ``on_image(path)`` just before each one is handed on (and read)."""
    for path in paths:
        if on_image is not None:
            on_image(path)
        yield path


def reduce_batch(items: Sequence[tuple[int, str, str]], params, *, crop=None, shape=None, channels=None,
                 others: Sequence[Any] = (), on_image: Callable[[str], None] | None = None,
                 backend: str = "auto") -> PartialSums:
    """Worker task: read ``items`` ((index, path, sha) triples) one image at a time into partial sums.

    ``shape``/``channels`` are the build's (from the probe or the existing reference); an image
    of another size is skipped like in-process. ``others``: generator scorers for the
    non-matching calibration scores. Bad images are recorded, never raised (the client decides,
    in file order, what strict mode does). ``on_image(path)`` is called before each image (tests).
    ``backend``: where the noise residuals are computed, resolved here, on the worker (a dask-cuda
    worker with a GPU runs the same CUDA path as an in-process build).
    """
    from fingerprint.estimate import new_accumulator
    from fingerprint.io import iter_images

    acc = new_accumulator(params, backend=backend)
    acc.shape = tuple(shape) if shape is not None else None
    acc.channels = channels
    hashes: set[str] = set()
    records: list[_Record] = []
    loaded = iter_images(_announced((path for _, path, _ in items), on_image), crop=crop)
    for (index, path, sha), item in zip(items, loaded):
        rec = _Record(index, path, sha)
        if sha in hashes:  # never happens with the client's de-duplication; kept as a guard
            rec.error = InvalidImageError("already counted in this reference", path=path)
        else:
            try:
                if item.error is not None:
                    raise item.error
                residual = acc.add(item.image, name=path)  # its errors name the image by ``name``
                rec.null_scores = [g.score(residual).z for g in others]  # as build_reference: z = NCC sqrt(D)
                hashes.add(sha)
            except (InvalidImageError, ShapeMismatchError) as err:
                rec.error = err
        records.append(rec)
    return PartialSums(params, acc.n_images, acc.shape, acc.channels, acc.sums, frozenset(hashes), records)


def _first_error(part: PartialSums) -> BaseException | None:
    """Worker task: the error of the first bad file of a batch, or None."""
    bad = [r for r in part.records if r.error is not None]
    return min(bad, key=lambda r: r.index).error if bad else None


def _hash_batch(paths: Sequence[str]) -> list[str | BaseException]:
    from fingerprint.io import file_sha256

    out: list[str | BaseException] = []
    for p in paths:
        try:
            out.append(file_sha256(p))
        except (InvalidImageError, OSError) as err:
            out.append(err)
    return out


def _probe(items: Sequence[tuple[int, str]], params, crop) -> tuple[int, tuple[int, int] | None, int | None, list]:
    """Worker task: decode files in order until one is usable; its (H, W) and channel count.

    Returns (number tried, shape, channels, [(index, error), ...] of the unusable ones before it).
    """
    from fingerprint.estimate import new_accumulator
    from fingerprint.io import iter_images

    errors = []
    for k, ((index, path), item) in enumerate(zip(items, iter_images((path for _, path in items), crop=crop))):
        try:
            if item.error is not None:
                raise item.error
            acc = new_accumulator(params)
            acc.check(item.image, path)  # the accumulator's own size/channel check (errors name ``path``)
            return k + 1, acc.shape, acc.channels, errors
        except (InvalidImageError, ShapeMismatchError) as err:
            errors.append((index, err))
    return len(items), None, None, errors


def default_batch_size(n_images: int, n_threads: int) -> int:
    """Images per reduce task: about 4 tasks per worker thread (load balance, little work lost when a
    worker dies), but at least min(16, n / threads) images, since every task ships one partial sum
    (144 MB for a 6 MP RGB camera) that costs about as much as decoding and reducing one image; at
    most 256."""
    per_thread = math.ceil(n_images / max(1, n_threads))
    return max(1, min(256, max(math.ceil(n_images / (4 * max(1, n_threads))), min(16, per_thread))))


def _chunks(seq: Sequence, size: int) -> list:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------

def build_reference_distributed(library: str | os.PathLike, name: str, kind: str, paths: Sequence[str | os.PathLike],
                                *, client, crop: tuple[int, int] | None = None, strict: bool = False,
                                sigma: float | None = None, progress: bool = True, lock_timeout: float = 10.0,
                                warn: Callable[[str], None] | None = None, batch_size: int | None = None,
                                split_every: int = 4, hash_batch: int = 64,
                                on_image: Callable[[str], None] | None = None, backend: str = "auto"):
    """:func:`fingerprint.build.build_reference` on a Dask cluster; same arguments, same result.

    Parameters (beyond ``build_reference``'s)
    -----------------------------------------
    client : dask.distributed.Client
    batch_size : images per reduce task (default: :func:`default_batch_size`). A smaller batch
        loses less work when a worker dies, a larger one ships fewer partial sums (each is
        2 x C x H x W float32 for a camera).
    split_every : partial sums merged per reduction task (fan-in of the tree).
    hash_batch : files per hashing task.
    on_image : called with each path before it is read, on the worker (fault-injection in tests).
    backend : "auto", "cpu" or "cuda", resolved on each worker (see :func:`reduce_batch`).

    Returns
    -------
    BuildReport (``added`` and ``skipped`` in input-file order)

    Raises
    ------
    InvalidImageError, ShapeMismatchError, OSError
        In strict mode, for the first bad image (in file order among those seen when it stops);
        otherwise when no image at all could be used. The library is then unchanged.
    """
    _require_distributed()
    from distributed import as_completed

    from fingerprint import __version__
    from fingerprint.attribution import generator_scorers
    from fingerprint.build import (BuildReport, commit_reference, nothing_to_write, progress_bar, resume_reference,
                                    reverse_null_scores)
    from fingerprint.io import collect_image_paths
    from reference_db import Library

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    files = [str(p) for p in collect_image_paths(paths)]
    report = BuildReport(name, kind)
    n_workers = _n_workers(client)
    with Library(library, "a", lock_timeout=lock_timeout, version=__version__) as lib:
        params, acc, seen = resume_reference(lib, name, kind, sigma)
        others = generator_scorers(lib, params, exclude=name) if kind == "generator" else []

        # 1. hash on the workers, de-duplicate here in file order
        status: dict[int, tuple[str, str]] = {}  # index -> (path, skip reason), for skipped files
        hashes = client.gather(client.map(_hash_batch, _chunks(files, hash_batch), pure=False))
        first_of: dict[str, int] = {}
        dup_of: dict[int, int] = {}
        todo: list[tuple[int, str, str]] = []
        for index, (path, sha) in enumerate(zip(files, (h for batch in hashes for h in batch))):
            if isinstance(sha, BaseException):
                if strict:
                    raise sha
                status[index] = (path, str(sha))  # "<path>: <problem>"
            elif sha in seen:
                status[index] = (path, "already counted in this reference")
                if sha in first_of:
                    dup_of[index] = first_of[sha]
            else:
                seen.add(sha)
                first_of[sha] = index
                todo.append((index, path, sha))

        # 2. the size of the build: the reference's, or the first usable image's
        shape = tuple(acc.shape) if acc.shape is not None else None
        channels = acc.channels
        probe_errors: dict[int, BaseException] = {}
        if todo and shape is None:
            start = 0
            while shape is None and start < len(todo):
                part = [(i, p) for i, p, _ in todo[start:start + 2 * n_workers]]
                tried, shape, channels, errors = client.submit(_probe, part, params, crop, pure=False).result()
                if errors and strict:
                    raise errors[0][1]
                probe_errors.update(errors)
                start += tried
        if probe_errors:  # already known bad: not sent again
            todo = [t for t in todo if t[0] not in probe_errors]
            for index, err in probe_errors.items():
                status[index] = (files[index], str(err))

        # 3. reduce: batches -> partial sums -> tree
        total = None
        records: list[_Record] = []
        if todo:
            if batch_size is None:
                batch_size = default_batch_size(len(todo), n_workers)
            batches = _chunks(todo, batch_size)
            others_f = client.scatter([others], broadcast=True)[0] if others else ()
            leaves = [client.submit(reduce_batch, b, params, crop=crop, shape=shape, channels=channels,
                                    others=others_f, on_image=on_image, backend=backend, pure=False)
                      for b in batches]
            level = leaves
            while len(level) > 1:
                level = [grp[0] if len(grp) == 1 else client.submit(merge_partials, *grp, pure=False)
                         for grp in _chunks(level, max(2, split_every))]
            root = level[0]
            # progress (and, strict, the first bad image) from tiny per-batch tasks: no sums travel here
            watch = {client.submit(_first_error, leaf, pure=False): len(b) for leaf, b in zip(leaves, batches)}
            del leaves, level
            with progress_bar(len(todo), f"build {name} ({n_workers} workers)", progress) as bar:
                for fut in as_completed(list(watch)):
                    first = fut.result()
                    bar.update(watch.pop(fut))
                    if strict and first is not None:
                        client.cancel([root, *watch])
                        raise first
            total = root.result()
            records = total.records
            del root

        for rec in records:
            if rec.error is not None:
                status[rec.index] = (rec.path, str(rec.error))
        bad = {i for i, (_, reason) in status.items() if not reason.startswith("already counted")}
        for index, first in dup_of.items():  # a copy of a bad file is as bad as the file
            if first in bad:
                status[index] = (files[index], status[first][1].replace(files[first], files[index]))
        added = sorted((r for r in records if r.error is None), key=lambda r: r.index)
        for index in sorted(status):
            path, reason = status[index]
            report.skipped.append((path, reason))
            if not reason.startswith("already counted"):
                warn(f"{reason}; skipped")
        report.added = [r.path for r in added]
        if nothing_to_write(report, acc, len(files), warn):
            return report

        # 4. write once
        acc.merge(total.accumulator())  # stored sums (if any) + the new images
        new_sources = [(r.path, r.sha) for r in added]
        null_scores = [s for r in added for s in r.null_scores]
        if kind == "generator" and name not in lib:  # as build_reference: earlier generators' images against it
            null_scores += reverse_null_scores(lib, name, params, acc.fingerprint(), {}, warn)
        # an update of a generator: its statistics (old fingerprint) go in this commit, refreshed below
        replace = [name] if kind == "generator" and name in lib else []
        commit_reference(lib, report, acc, params, crop, new_sources, null_scores, replace=replace)
    if kind == "generator":  # the decision's statistics (null, leave-one-out), computed here as a build does
        from fingerprint import interrupt
        from fingerprint.generator_stats import refresh_statistics

        with interrupt.deferred(f"the statistics of generator {name!r} were written to {library}"):
            refresh_statistics(library, warn=warn)
    return report
