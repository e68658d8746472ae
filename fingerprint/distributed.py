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

Attribution (:func:`attribute_distributed`): the references are read once on the client and
scattered to every worker (``broadcast=True``); each worker builds one
:class:`~fingerprint.attribution.Attributor` (fingerprint spectra included) per scattered payload and
keeps it in a worker-local cache. Queries go out in small batches with a bounded number in flight;
results stream back in input order.

Sharded attribution (:func:`attribute_distributed` with ``shards``), for a library larger than one
worker's memory: the camera references are split into shards of about equal pixels, one per
worker and pinned to it; each worker reads its shard lazily from the library file itself (which
must be on a file system every worker sees, as the query images already are), the first shard
also holding the generators. Every batch of queries goes to every shard; the client merges the
records of all shards and decides (``decision.decide``), as in-process. Each shard runs the
cheapest-first passes of ``camera_search`` over its own cameras, so a shard may run the σ-5 or
scale-search pass for a query that another shard's camera matched: more work than in-process,
never a different threshold (every camera's budget is fixed by its own plan).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from fingerprint.errors import BackendUnavailableError, InvalidImageError, ShapeMismatchError

__all__ = [
    "PartialSums",
    "attribute_distributed",
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
        commit_reference(lib, report, acc, params, crop, new_sources, null_scores)
    if kind == "generator":  # the decision's statistics (null, leave-one-out), computed here as a build does
        from fingerprint import interrupt
        from fingerprint.generator_stats import refresh_statistics

        with interrupt.deferred(f"the statistics of generator {name!r} were written to {library}"):
            refresh_statistics(library, warn=warn)
    return report


# --------------------------------------------------------------------------------------------------
# Attribution
# --------------------------------------------------------------------------------------------------

_WORKER_ATTRIBUTORS: dict[str, Any] = {}  # worker-local: token -> Attributor (a few at most)
_WORKER_LOCK = threading.Lock()
_MAX_CACHED = 2


def _worker_attributor(payload, token: str):
    from fingerprint.attribution import Attributor

    with _WORKER_LOCK:
        att = _WORKER_ATTRIBUTORS.get(token)
        if att is None:
            refs, options = payload
            att = Attributor(refs, **options)  # fingerprint spectra computed here, once per worker
            while len(_WORKER_ATTRIBUTORS) >= _MAX_CACHED:
                _WORKER_ATTRIBUTORS.pop(next(iter(_WORKER_ATTRIBUTORS)))
            _WORKER_ATTRIBUTORS[token] = att
        return att


def _attribute_batch(paths: Sequence[str], payload, token: str, crop, strict: bool) -> list:
    """Worker task: an Attribution, or a one-line error string, per path (strict: raise)."""
    from fingerprint.errors import GanprintError
    from fingerprint.generator_attribution import file_jpeg_quality
    from fingerprint.io import iter_images

    att = _worker_attributor(payload, token)
    out: list = []
    for path, item in zip(paths, iter_images(paths, crop=crop)):
        try:
            if item.error is not None:
                raise item.error
            out.append(att.score(item.image, path, file_jpeg_quality(path)))  # a refusal names the file: its label
        except GanprintError as err:  # "<path>: <problem>"
            if strict:
                raise
            out.append(str(err))
    return out


def shard_names(sizes: dict[str, int], generators: Sequence[str], n_shards: int) -> list[list[str]]:
    """Split cameras ``{name: pixels}`` into at most ``n_shards`` shards of about equal pixels.

    Greedy: largest camera first, into the lightest shard (ties: the lower index). Every shard has
    at least one camera (fewer shards than requested when there are fewer cameras); the first
    shard also gets every generator. Names keep the library's (sorted) order within a shard.
    """
    if n_shards < 1:
        raise ValueError(f"the number of shards must be at least 1, got {n_shards}")
    n = max(1, min(int(n_shards), len(sizes)))
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0] * n
    for name in sorted(sizes, key=lambda k: (-sizes[k], k)):
        i = min(range(n), key=lambda j: (load[j], j))
        shards[i].append(name)
        load[i] += sizes[name]
    shards[0] += list(generators)
    return [sorted(s) for s in shards]


def _shard_attributor(library: str, names: tuple[str, ...], options: dict, token: str):
    from fingerprint.attribution import load_attributor

    with _WORKER_LOCK:
        att = _WORKER_ATTRIBUTORS.get(token)
        if att is None:
            att = load_attributor(library, names=names, warn=lambda msg: None, **options)  # the client warned
            while len(_WORKER_ATTRIBUTORS) >= _MAX_CACHED:
                old = _WORKER_ATTRIBUTORS.pop(next(iter(_WORKER_ATTRIBUTORS)))
                if hasattr(old, "close"):
                    old.close()
            _WORKER_ATTRIBUTORS[token] = att
        return att


def _attribute_shard(paths: Sequence[str], library: str, names: tuple[str, ...], options: dict, token: str,
                     crop, strict: bool) -> list:
    """Worker task: per path, this shard's ``Attribution`` (its references' records), or an error string."""
    from fingerprint.errors import GanprintError
    from fingerprint.generator_attribution import file_jpeg_quality
    from fingerprint.io import iter_images

    att = _shard_attributor(library, names, options, token)
    out: list = []
    for path, item in zip(paths, iter_images(paths, crop=crop)):
        try:
            if item.error is not None:
                raise item.error
            out.append(att.score(item.image, path, file_jpeg_quality(path)))
        except GanprintError as err:
            if strict:
                raise
            out.append(str(err))
    return out


def _merge_shards(parts: list) -> Any:
    """One answer from every shard's answer to one image (the first shard holds the generators)."""
    from fingerprint.decision import decide

    if any(isinstance(p, str) for p in parts):  # the image itself is bad: every shard says the same
        return next(p for p in parts if isinstance(p, str))
    merged: dict = {}
    for p in parts:
        merged.update(p.scores)
    # in-process order: the cameras by name (the library's order), then the generators as scored
    scores = {n: merged[n] for n in sorted(n for n, s in merged.items() if s.kind == "camera")}
    scores.update((n, s) for n, s in merged.items() if s.kind != "camera")
    answer = decide(scores, parts[0].image)
    first = parts[0]  # the generators' closed-set answer, as Attributor.score_batch sets it
    if (answer.best is None and first.closest in first.scores and first.scores[first.closest].kind == "generator"
            and (answer.closest is None or scores[answer.closest].kind == "generator")):
        answer.closest = first.closest
    return answer


def attribute_distributed(library, paths, *, client, crop: tuple[int, int] | None = None, strict: bool = False,
                          progress: bool = True, batch_size: int = 4, in_flight: int | None = None,
                          shards: int | None = None, **options) -> Iterator[Any]:
    """:func:`fingerprint.attribution.attribute_paths` on a Dask cluster: same items, same order.

    Yields an :class:`~fingerprint.attribution.Attribution`, or a one-line error string per bad
    file (``strict``: the first bad file raises). The references are scattered once to every
    worker; each worker prepares one ``Attributor`` for them. At most ``in_flight`` tasks of
    ``batch_size`` images (default: 4 per worker) are outstanding, so client memory stays bounded
    however many queries there are. ``options``: as ``load_attributor`` (``method``,
    ``pce_threshold``, ``generator_threshold``, ``fpr``, ``rotations``, ``backend``). The backend
    is resolved on each worker, whose ``Attributor`` keeps the references on its GPU for
    ``"cuda"`` (dask-cuda); the client only reads the library (on the CPU).

    ``shards``: split the cameras over that many workers (``0``: one shard per worker) instead
    of scattering every reference to every worker (module doc, "Sharded attribution"); the
    library must then be readable by every worker at the same path.
    """
    _require_distributed()
    if shards is not None:
        yield from _attribute_sharded(library, paths, client=client, crop=crop, strict=strict, progress=progress,
                                      batch_size=batch_size, in_flight=in_flight, shards=shards, **options)
        return
    from collections import deque

    from fingerprint.attribution import load_attributor
    from fingerprint.build import progress_bar
    from fingerprint.io import collect_image_paths
    from reference_db import DamagedReferenceError

    files = [str(p) for p in collect_image_paths(paths)]
    backend = options.pop("backend", "auto")  # the workers' choice, not the client's
    att = load_attributor(library, backend="cpu", **options)  # the same references and thresholds as in-process
    lazy = att.references  # fingerprints read, no spectrum computed here: the workers compute their own
    refs = []
    for n in att.camera_names:
        try:
            refs.append((n, "camera", lazy.fingerprint(n), lazy.entries[n].params))
        except DamagedReferenceError:
            continue  # reported (warn) and left out, as in-process
    refs += [(g.name, "generator", g.F, g.params) for g in att.generators]
    worker_options = dict(method=att.method, pce_threshold=att.pce_threshold,
                          generator_threshold=att.generator_threshold, rotations=len(att.rotations) > 1,
                          query_sigma=att.query_sigma, retry_sigma=att.retry_sigma, backend=backend,
                          scale_search=att.scale_search, min_scale=att.min_scale,
                          generator_models=att.generator_models)
    att.close()
    del att
    payload = client.scatter([(refs, worker_options)], broadcast=True, hash=True)[0]
    token = payload.key
    in_flight = in_flight or 4 * _n_workers(client)
    batches = _chunks(files, max(1, batch_size))
    pending: deque = deque()
    it = iter(batches)
    try:
        with progress_bar(len(files), "attribute", progress) as bar:
            for batch in it:
                pending.append((len(batch), client.submit(_attribute_batch, batch, payload, token, crop, strict, pure=False)))
                if len(pending) >= in_flight:
                    n, fut = pending.popleft()
                    results = fut.result()
                    bar.update(n)
                    yield from results
            while pending:
                n, fut = pending.popleft()
                results = fut.result()
                bar.update(n)
                yield from results
    finally:
        if pending:
            client.cancel([f for _, f in pending])
        del payload


def _attribute_sharded(library, paths, *, client, crop, strict: bool, progress: bool, batch_size: int,
                       in_flight: int | None, shards: int, **options) -> Iterator[Any]:
    """:func:`attribute_distributed` with the cameras sharded over the workers (module doc)."""
    import uuid
    from collections import deque

    from fingerprint.attribution import load_attributor
    from fingerprint.build import progress_bar
    from fingerprint.io import collect_image_paths

    files = [str(p) for p in collect_image_paths(paths)]
    library = os.path.abspath(os.fspath(library))
    backend = options.pop("backend", "auto")  # the workers' choice, not the client's
    with load_attributor(library, backend="cpu", **options) as att:  # library errors and warnings first, here
        refs = att.references
        sizes = {n: int(np.prod(refs.entries[n].shape[-2:])) for n in att.camera_names}
        generators = [g.name for g in att.generators]
    workers = sorted(client.scheduler_info()["workers"])
    groups = shard_names(sizes, generators, shards or len(workers)) if sizes else [generators]
    options = {k: v for k, v in options.items() if k != "warn"} | {"backend": backend}
    run = uuid.uuid4().hex
    tasks = [(tuple(g), workers[i % len(workers)], f"shard-{run}-{i}") for i, g in enumerate(groups)]
    in_flight = in_flight or 2 * len(workers)
    pending: deque = deque()
    try:
        with progress_bar(len(files), "attribute", progress) as bar:
            for batch in _chunks(files, max(1, batch_size)):
                futs = [client.submit(_attribute_shard, batch, library, names, options, token, crop, strict,
                                      workers=[worker], allow_other_workers=False, pure=False)
                        for names, worker, token in tasks]
                pending.append((len(batch), futs))
                while len(pending) >= in_flight:
                    yield from _collect(pending.popleft(), bar)
            while pending:
                yield from _collect(pending.popleft(), bar)
    finally:
        for _, futs in pending:
            client.cancel(futs)


def _collect(item, bar) -> Iterator[Any]:
    n, futs = item
    per_shard = [f.result() for f in futs]
    bar.update(n)
    for parts in zip(*per_shard):
        yield _merge_shards(list(parts))
