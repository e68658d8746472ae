"""The ``build`` command of ``ganprint``: one reference from PATHs, or many from ``--labels CSV``.

A thin layer over ``fingerprint.build.build_reference`` (in process),
``fingerprint.distributed.build_reference_distributed`` (``--scheduler``) and
``fingerprint.labels`` (``--labels``). Results on stdout, one line per reference; the quality
self-check, warnings and the progress bar on stderr. Also the file search every command uses
(:func:`expand_paths`).
"""

from __future__ import annotations

import contextlib
import functools
import sys

from fingerprint.cli_args import EXIT_ERROR, EXIT_OK
from fingerprint.cli_library import error, shown, warn

__all__ = ["build_line", "cmd_build", "expand_paths"]


def expand_paths(paths, *, recursive: bool, strict: bool):
    """(files to read, one-line errors of items that give none, (path, reason) of files left out).

    Folders are searched with ``io.find_images`` (recursively unless told not to, files chosen by
    content). With ``strict`` the first item that gives nothing raises.
    """
    from fingerprint.errors import InvalidImageError
    from fingerprint.io.paths import find_images

    files, errors, skipped = [], [], []
    for item in paths:
        try:
            found = find_images([item], recursive=recursive)
        except InvalidImageError as err:
            if strict:
                raise
            errors.append(str(err))
            continue
        files += found.paths
        skipped += found.skipped
    return files, errors, skipped


def generator_decision_line(library) -> str:
    """After a generator build: how the library's generators are now decided (one line)."""
    from fingerprint.generator_attribution import OFFGRID, load_generator_models
    from reference_db import Library

    with Library(library, "r") as lib:
        models = load_generator_models(lib)
    if models.notes or not models.models:  # a library built before the per-generator statistics
        return f"generator threshold: {describe_generator_threshold(_generator_threshold(library))}"
    # the block-grid check's nulls are the same images scored again: not counted twice
    n = sum(int(v.size) for m in models.models for (h, _), v in m.nulls.items() if not h.startswith(OFFGRID))
    return (f"generator decision: each of {len(models.models)} generator(s) against its own null ({n} non-matching "
            f"scores: simulated camera photos, the other generators' images, 'ganprint calibrate' photos) at "
            f"{models.fpr:g} false alarms per image")


def _generator_threshold(library):
    """The library's generator threshold at the default false-positive rate (reads the calibration only)."""
    from fingerprint.calibration import NULL_KEY, threshold_from_null
    from reference_db import Library

    with Library(library, "r") as lib:
        return threshold_from_null(lib.calibration(NULL_KEY))


def build_line(name: str, kind: str, rep) -> str:
    """The result line of one reference's build (``BuildReport`` ``rep``)."""
    if not rep.added:
        return f"{shown(name)}: nothing new to add ({len(rep.skipped)} file(s) already counted); {rep.n_images} image(s)"
    verb = "created" if rep.created else "updated"
    return (f"{shown(name)}: {verb} {kind} fingerprint from {len(rep.added)} new image(s), {rep.n_images} in total"
            + (f"; {len(rep.skipped)} skipped" if rep.skipped else ""))


def _bad_skips(rep) -> bool:
    """Whether a build left out a file for another reason than being counted already."""
    return any(not r.startswith("already") for _, r in rep.skipped)


def _quality(rep, quiet: bool) -> None:
    for line in rep.quality.lines(show=shown)[1 if quiet else 0:] if rep.quality and rep.added else ():
        print(f"ganprint: {line}", file=sys.stderr)  # the self-check (build_quality) on stderr


def cmd_build(args) -> int:
    from fingerprint.build import build_reference
    from fingerprint.cli_text import describe_generator_threshold, left_out

    if args.labels:
        return _build_labels(args)
    files, _, skipped = expand_paths(args.paths, recursive=not args.no_recursive, strict=True)
    if getattr(args, "scheduler", None):  # --- distributed (fingerprint/distributed.py) ---
        from fingerprint.distributed import build_reference_distributed, connect

        with connect(args.scheduler) as client:
            rep = build_reference_distributed(args.library, args.name, args.kind, files, client=client,
                                              crop=args.crop, strict=args.strict, sigma=args.sigma,
                                              progress=not args.quiet, warn=warn, backend=args.backend)
    else:
        rep = build_reference(args.library, args.name, args.kind, files, crop=args.crop, strict=args.strict,
                              sigma=args.sigma, progress=not args.quiet, warn=warn, backend=args.backend,
                              max_pixels=args.max_pixels)
    print(build_line(args.name, args.kind, rep))
    _quality(rep, args.quiet)
    if args.kind == "generator" and rep.added:
        print(generator_decision_line(args.library))
    for path, why in skipped:
        print(left_out(path, why))
    return EXIT_ERROR if _bad_skips(rep) else EXIT_OK


def _build_labels(args) -> int:
    """``build LIBRARY --labels CSV``: every bad row listed (nothing built), else one line per reference."""
    csv_path = args.paths[0]
    from fingerprint.build import progress_bar
    from fingerprint.cli_text import describe_generator_threshold, left_out
    from fingerprint.labels import LabelError, build_labels, parse_labels, plan_labels

    try:
        plan = plan_labels(parse_labels(csv_path, kind=args.kind), args.library, csv_path=csv_path)
    except LabelError as err:
        for problem in err.problems:
            error(problem)
        error(f"{shown(csv_path)}: {len(err.problems)} bad row(s); nothing was built")
        return EXIT_ERROR
    options = dict(crop=args.crop, strict=args.strict, sigma=args.sigma, warn=warn, backend=args.backend)
    with contextlib.ExitStack() as stack:
        if getattr(args, "scheduler", None):  # --- distributed: each reference's images over the workers ---
            from fingerprint.distributed import build_reference_distributed, connect

            client = stack.enter_context(connect(args.scheduler))
            builder = functools.partial(build_reference_distributed, client=client)
        else:
            builder = build_reference_with_limit(args.max_pixels)
        bar = stack.enter_context(progress_bar(sum(len(r.paths) for r in plan), "build --labels", not args.quiet))

        def advance(ref, rep, err):
            bar.update(len(ref.paths))
            bar.set_postfix_str(ref.name[:30], refresh=False)

        result = build_labels(args.library, plan, builder=builder, on_reference=advance, **options)
    for ref, rep, err in result.reports:  # the summary: one line per reference
        print(build_line(ref.name, ref.kind, rep) if rep is not None else f"{shown(ref.name)}: not built: {shown(err)}")
    for ref, rep, err in result.reports:
        if rep is not None:
            _quality(rep, quiet=True)  # outlier warnings only: the per-reference lines above are the summary
    if any(ref.kind == "generator" and rep is not None and rep.added for ref, rep, _ in result.reports):
        print(generator_decision_line(args.library))
    for ref in plan:
        for path, why in ref.skipped:
            print(left_out(path, why))
    bad = result.failed or any(_bad_skips(rep) for _, rep, _ in result.reports if rep is not None)
    if result.failed:
        error(f"{len(result.failed)} of {len(plan)} reference(s) not built; the others were written")
    return EXIT_ERROR if bad else EXIT_OK


def build_reference_with_limit(max_pixels):
    """``build_reference`` with the decoder's pixel limit bound (the distributed build has no such option)."""
    from fingerprint.build import build_reference

    return functools.partial(build_reference, max_pixels=max_pixels)
