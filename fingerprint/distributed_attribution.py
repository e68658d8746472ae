"""Attribution on a ``dask.distributed`` cluster: the same answers as ``attribution.attribute_paths``.

Optional, as ``fingerprint.distributed`` (its :func:`~fingerprint.distributed.connect` gives the
client).

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

import os
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from fingerprint.distributed import _chunks, _n_workers, _require_distributed

__all__ = ["attribute_distributed", "shard_names"]


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
    from fingerprint.io.metadata import file_jpeg_quality
    from fingerprint.io import iter_images
    from fingerprint.jpeg_residual import read_jpeg_grid

    att = _worker_attributor(payload, token)
    out: list = []
    for path, item in zip(paths, iter_images(paths, crop=crop)):
        try:
            if item.error is not None:
                raise item.error
            out.append(att.score(item.image, path, file_jpeg_quality(path),  # a refusal names the file: its label
                                 jpeg=read_jpeg_grid(path, crop)))
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
    from fingerprint.io.metadata import file_jpeg_quality
    from fingerprint.io import iter_images
    from fingerprint.jpeg_residual import read_jpeg_grid

    att = _shard_attributor(library, names, options, token)
    out: list = []
    for path, item in zip(paths, iter_images(paths, crop=crop)):
        try:
            if item.error is not None:
                raise item.error
            out.append(att.score(item.image, path, file_jpeg_quality(path), jpeg=read_jpeg_grid(path, crop)))
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
    answer.query_residual = next((p.query_residual for p in parts if p.query_residual), None)
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
