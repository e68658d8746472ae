"""The ``ganprint`` command line: a thin layer over the public API.

Results go to stdout, progress and warnings to stderr. Exit codes: 0 success, 1 a user error
(bad file, bad library; one line on stderr), 2 bad command-line usage (an unknown option, a value
out of range, ``--backend cuda`` where no GPU is usable), 130 interrupted (Ctrl-C; a library
being written is left as it was), 141 when the reader of stdout closed it early (``| head``;
nothing more is printed). ``--debug`` shows tracebacks.
Every name and path printed has its control characters escaped (``cli_text.printable``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Sequence

from fingerprint.cli_args import (  # argument types; parse_crop, CropSizeError and the exit codes are re-exported
    ATTRIBUTE_EPILOG,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_USAGE,
    Z_ADVICE,
    CropSizeError,
    _count,
    _generator_z,
    _ncc_threshold_removed,
    _positive,
    _rate,
    _sigma,
    _sizes,
    add_backend_option,
    add_maintenance_commands,
    add_scale_options,
    backend_error,
    build_usage_error,
    parse_conditions,
    parse_crop,
    scale_options,
)
from fingerprint.cli_build import cmd_build
from fingerprint.cli_evaluate import evaluate_transformed
from fingerprint.cli_build import expand_paths as _expand
from fingerprint.cli_library import (cmd_calibration, cmd_export, cmd_list, cmd_remove, cmd_rename, cmd_sources,
                                     cmd_upgrade)
from fingerprint.cli_library import error as _err
from fingerprint.cli_library import shown as _shown
from fingerprint.cli_library import warn as _warn

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PIPE", "EXIT_USAGE", "CropSizeError", "main", "parse_crop"]


def _parser() -> argparse.ArgumentParser:
    from fingerprint import __version__

    p = argparse.ArgumentParser(prog="ganprint", description="Which camera or which generator made an image, or unknown.",
                                epilog="exit status: 0 success, 1 a user error (bad file or library; one line on stderr), "
                                       "2 bad usage (unknown option, value out of range), 130 interrupted, "
                                       "141 stdout closed early (| head)")
    p.add_argument("--version", action="version", version=f"ganprint {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="add images of one camera or generator (or, with --labels, of many) to a library",
                       usage="%(prog)s [options] LIBRARY (--name NAME --kind KIND PATH... | --labels CSV [--kind KIND])",
                       epilog="--labels CSV: one row path,label[,kind] per image file or folder, paths relative to the "
                              "CSV's folder; bad rows are listed with their line number and nothing is built; then "
                              "one commit and one result line per reference (see the README)")
    b.set_defaults(usage_error=b.error)
    b.add_argument("library", help="HDF5 library file (created if missing)")
    b.add_argument("--name", help="reference name (adding to an existing name updates it)")
    b.add_argument("--kind", choices=["camera", "generator"],
                   help="the reference's kind; with --labels, the kind of rows without a third column")
    b.add_argument("--labels", action="store_true", help="PATH is a CSV of path,label[,kind]: build or update "
                   "one reference per label")
    b.add_argument("--crop", type=parse_crop, metavar="HxW", help="centre-crop every image to HxW first")
    b.add_argument("--sigma", type=_sigma,
                   help="estimator noise std in grey levels, 0.1 to 100 (default 3 for cameras, 5 for generators)")
    b.add_argument("--strict", action="store_true", help="stop at the first bad image instead of skipping it")
    b.add_argument("--quiet", action="store_true", help="no progress bar, no quality line (outlier warnings remain)")
    b.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively, files chosen by content) or glob patterns")
    b.add_argument("--no-recursive", action="store_true", help="do not search sub-folders of folders")
    b.add_argument("--max-pixels", type=_count, metavar="N",
                   help="refuse images of more than N pixels, from their header (default 200000000)")
    add_backend_option(b)
    # --- distributed (fingerprint/distributed.py) ---
    b.add_argument("--scheduler", metavar="ADDRESS|local[:N]",
                   help="build on a Dask cluster: a scheduler address, or local[:N] worker processes (needs ganprint[dist])")

    a = sub.add_parser("attribute", help="attribute questioned images against a library",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ATTRIBUTE_EPILOG)
    a.add_argument("library")
    a.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively, files chosen by content) or glob patterns")
    a.add_argument("--no-recursive", action="store_true", help="do not search sub-folders of folders")
    a.add_argument("--crop", type=parse_crop, metavar="HxW", help="centre-crop every image to HxW first")
    a.add_argument("--method", choices=["pce", "ncc"], default="pce", help="score deciding camera matches (default pce)")
    a.add_argument("--pce-threshold", type=_positive, default=60.0,
                   help="camera PCE threshold at one position, raised for crop and rotation searches (default 60)")
    a.add_argument("--generator-z", type=_generator_z, metavar="Z",
                   help="generator threshold on z = NCC*sqrt(D), D the values compared (about N(0,1) for "
                        "non-matching pairs; 2.33 = 1%% of them), one for every generator, instead of each "
                        "generator's own calibrated decision at --fpr")
    a.add_argument("--ncc-threshold", type=_ncc_threshold_removed, help=argparse.SUPPRESS)
    a.add_argument("--fpr", type=_rate, default=0.01,
                   help="generator false-alarm rate per image over all generators (split across generators and "
                        "the hypotheses each tries), in (0, 0.5] (default 0.01)")
    a.add_argument("--no-rotations", action="store_true", help="do not try 90/180/270 degree rotations")
    add_scale_options(a)
    a.add_argument("--exhaustive", action="store_true",
                   help="score every camera exactly, with every score reported; by default, against more than "
                        "32 cameras of a full-size query's shape, fingerprint digests leave out the cameras that "
                        "cannot match ('not confirmed'; the same decisions, faster)")
    a.add_argument("--sigma", type=_sigma, default=2.0,
                   help="denoiser noise std of camera query residuals in grey levels, 0.1 to 100 (default 2)")
    a.add_argument("--json", action="store_true", help="one JSON object per line (JSON Lines), one per image")
    a.add_argument("--strict", action="store_true", help="stop at the first bad image")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--max-pixels", type=_count, metavar="N",
                   help="refuse images of more than N pixels, from their header (default 200000000)")
    add_backend_option(a)
    # --- distributed (fingerprint/distributed.py) ---
    a.add_argument("--scheduler", metavar="ADDRESS|local[:N]",
                   help="attribute on a Dask cluster: a scheduler address, or local[:N] worker processes (needs ganprint[dist])")
    a.add_argument("--shards", type=_count, metavar="N",
                   help="with --scheduler: split the camera references into N shards, each read from the library "
                        "by one worker (for a library larger than one worker's memory; the library must be at the "
                        "same path on every worker); default: every worker holds every reference")

    ca = sub.add_parser("calibrate", help="add non-matching generator scores from images of no library generator")
    ca.add_argument("library")
    ca.add_argument("paths", nargs="+", metavar="PATH", help="images known to come from none of the library's generators")
    ca.add_argument("--no-recursive", action="store_true", help="do not search sub-folders of folders")
    ca.add_argument("--crop", type=parse_crop, metavar="HxW")
    ca.add_argument("--quiet", action="store_true")

    ls = sub.add_parser("list", help="list the references of a library")
    ls.add_argument("library")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (JSON Lines), one per reference")

    rm = sub.add_parser("remove", help="remove a reference, or (--image) one source image from it")
    rm.add_argument("library")
    rm.add_argument("name")
    rm.add_argument("--image", metavar="PATH|SHA256", help="take only this image out of the reference: its "
                    "contribution is subtracted from the sums (exact); a SHA-256 needs its recorded file unchanged")
    add_maintenance_commands(sub)  # sources, calibration

    rn = sub.add_parser("rename", help="rename a reference")
    rn.add_argument("library")
    rn.add_argument("old")
    rn.add_argument("new")

    ex = sub.add_parser("export", help="write a reference's fingerprint to a .npy file, or the whole library to one .h5 file")
    ex.add_argument("library")
    ex.add_argument("name", nargs="?", help="the reference (omit it to export the whole library)")
    ex.add_argument("out", metavar="OUT.npy|OUT.h5")

    up = sub.add_parser("upgrade", help="write a library of an older schema in the current one (atomically)")
    up.add_argument("library")

    ev = sub.add_parser("evaluate", help="accuracy, confusion, ROC AUC and EER on labelled queries",
                        epilog="exit status 1 when a query file could not be read (the report is still printed)")
    ev.add_argument("library")
    ev.add_argument("queries", help="a folder with one sub-folder per source, or a CSV file of path,label")
    ev.add_argument("--crop", type=parse_crop, metavar="HxW")
    ev.add_argument("--method", choices=["pce", "ncc"], default="pce")
    ev.add_argument("--no-rotations", action="store_true")
    add_scale_options(ev)
    ev.add_argument("--sigma", type=_sigma, default=2.0, help="camera query residual sigma, 0.1 to 100 (default 2)")
    ev.add_argument("--fpr", type=_rate, default=0.01, help="generator false-alarm rate per image, in (0, 0.5] (default 0.01)")
    ev.add_argument("--generator-z", type=_generator_z, metavar="Z",
                    help="one generator threshold on z = NCC*sqrt(D) for every generator (default: each generator's own "
                         "calibrated decision at --fpr)")
    ev.add_argument("--plots", metavar="DIR", help="write ROC, score-distribution and confusion PNGs here")
    ev.add_argument("--per-image", metavar="FILE", help="write one row per query to FILE.csv or FILE.jsonl "
                    "(true source, decision, closest, correct, deciding score and threshold, note)")
    ev.add_argument("--no-recursive", action="store_true", help="do not search inside the per-source sub-folders' sub-folders")
    ev.add_argument("--transform", type=parse_conditions, metavar="CONDITIONS",
                    help="evaluate on transformed copies, made in memory, one run per condition: conditions joined by "
                         "',', steps of one condition by '+' (e.g. none,jpeg:75,resize:0.5,crop:160,resize:0.75+jpeg:90)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the random crop offsets of --transform (default 0)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--quiet", action="store_true")
    add_backend_option(ev)

    be = sub.add_parser("bench", help="residual speed against plain float64, or (--pipeline) every stage's time")
    be.add_argument("--sizes", type=_sizes, default="512x512,2000x3008",
                    help="comma-separated HxW list of RGB image sizes, rows x columns (default 512x512,2000x3008)")
    be.add_argument("--repeat", type=_count, default=3, help="timed calls per measurement, best kept (default 3)")
    be.add_argument("--no-reference", action="store_true", help="skip the slow float64 reference")
    be.add_argument("--pipeline", action="store_true",
                    help="time each stage a user pays for: decode, residual, camera and generator build per image, "
                         "attribution against N references (aligned, crop search, rotations), NCC matrix, PCE/s")
    be.add_argument("--references", type=_count, default=6, metavar="N",
                    help="references per attribution with --pipeline (default 6)")
    be.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    add_backend_option(be)

    de = sub.add_parser("demo", help="end-to-end demo on simulated cameras and generators")
    de.add_argument("--out", default="demo-output", help="output folder (default demo-output/)")
    de.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    de.add_argument("--quiet", action="store_true")

    # --- forensic report and tamper localisation (fingerprint/report.py, fingerprint/localization.py) ---
    lo = sub.add_parser("localize", help="map where a camera's fingerprint is missing from a photo (tampering)")
    lo.add_argument("library")
    lo.add_argument("image", metavar="IMAGE")
    lo.add_argument("--reference", required=True, metavar="NAME", help="the camera reference the photo comes from")
    lo.add_argument("--out", required=True, metavar="MASK.png",
                    help="8-bit PNG of the image's size: 255 where the fingerprint is absent (tampered), 0 elsewhere")
    lo.add_argument("--map", metavar="MAP.png", help="also write a picture of the map over the image")
    lo.add_argument("--window", type=_count, help="window side in pixels (default 128; smaller for images under 512 px)")
    lo.add_argument("--alpha", type=_rate, help="false-alarm rate of the test per window (default 0.01)")
    lo.add_argument("--json", action="store_true", help="print the result as one JSON object")

    rp = sub.add_parser("report", help="forensic HTML report: an index and one self-contained page per image")
    rp.add_argument("library")
    rp.add_argument("paths", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    rp.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the pages (created)")
    rp.add_argument("--no-localize", action="store_true", help="skip tamper localisation of camera matches")
    rp.add_argument("--fpr", type=_rate, default=0.01,
                    help="generator false-alarm rate per image over all generators (default 0.01)")
    rp.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


# --- commands ------------------------------------------------------------------------------------------
def cmd_attribute(args) -> int:
    import contextlib

    from fingerprint.attribution import attribute_paths

    if args.generator_z is not None and args.generator_z < Z_ADVICE:
        from scipy.special import ndtr

        _warn(f"--generator-z {args.generator_z:g} accepts about {1 - ndtr(args.generator_z):.0%} of non-matching "
              f"(image, generator) pairs if z is N(0, 1); calibrated thresholds are usually {Z_ADVICE:g} or more")
    options = dict(crop=args.crop, method=args.method, pce_threshold=args.pce_threshold,
                   generator_threshold=args.generator_z, fpr=args.fpr, rotations=not args.no_rotations,
                   query_sigma=args.sigma, backend=args.backend,
                   strict=args.strict, progress=not args.quiet, **scale_options(args))
    if args.exhaustive:
        options["preselect"] = False
    damaged: list[str] = []  # a damaged reference is skipped with one warning line, and the exit code says so
    options["warn"] = lambda msg: (damaged.append(msg), _warn(msg))
    files, errors, skipped = _expand(args.paths, recursive=not args.no_recursive, strict=args.strict)
    with contextlib.ExitStack() as stack:  # --- distributed (fingerprint/distributed.py) ---
        if getattr(args, "scheduler", None):
            from fingerprint.distributed import connect
            from fingerprint.distributed_attribution import attribute_distributed

            client = stack.enter_context(connect(args.scheduler))
            items = attribute_distributed(args.library, files, client=client, shards=args.shards, **options)
        else:
            items = attribute_paths(args.library, files, max_pixels=args.max_pixels, **options)
        failed = _print_attributions(_after_library(items, errors), args, skipped)
    return EXIT_ERROR if failed or damaged else EXIT_OK


def _after_library(items, errors):
    """``items``, with the error strings ``errors`` first, once the library has opened (library errors
    concern every image, so they come alone)."""
    it = iter(items)
    try:
        first = next(it)
    except StopIteration:
        yield from errors
        return
    yield from errors
    yield first
    yield from it


def _print_attributions(items, args, skipped=()) -> int:
    """Print each result (text row or JSON line) as it arrives, a header first and a summary last.

    Text: the header and summary lines start with '#', on stdout. JSON Lines: results only on
    stdout; the summary goes to stderr unless --quiet. Returns the number of unreadable items.
    """
    from fingerprint.cli_text import HEADER, AttributionTally, attribution_json, dumps, format_row

    tally = AttributionTally(skipped=list(skipped))
    header = not args.json
    for item in items:
        if isinstance(item, str):  # a per-file error message
            tally.unreadable += 1
            _warn(item)
            continue
        tally.add(item)
        if args.json:
            print(dumps(attribution_json(item)), flush=True)
            continue
        if header:
            print(HEADER)
            header = False
        print(format_row(item), flush=True)
    for line in tally.summary():
        if not args.json:
            print(f"# {line}", flush=True)
        elif not args.quiet:
            print(f"ganprint: {line}", file=sys.stderr)
    for line in tally.left_out_lines():  # always: on a seized disk a file passed over is evidence
        print(f"# {line}", flush=True) if not args.json else print(f"ganprint: {line}", file=sys.stderr)
    return tally.unreadable


def cmd_calibrate(args) -> int:
    from fingerprint.attribution import load_attributor
    from fingerprint.build import calibrate_with_negatives
    from fingerprint.cli_text import describe_generator_threshold, left_out

    files, _, skipped = _expand(args.paths, recursive=not args.no_recursive, strict=True)
    refused: list[str] = []  # images that cannot be negatives (a generator's own) and unreadable ones: exit 1
    n = calibrate_with_negatives(args.library, files, crop=args.crop, progress=not args.quiet,
                                 warn=lambda msg: (refused.append(msg), _warn(msg)))
    with load_attributor(args.library) as att:
        described = describe_generator_threshold(att.generator_threshold)
    print(f"added {n} non-matching score(s); generator threshold: {described}")
    for path, why in skipped:
        print(left_out(path, why))
    return EXIT_ERROR if refused else EXIT_OK


def cmd_evaluate(args) -> int:
    from fingerprint.cli_text import dumps, printable
    from fingerprint.evaluate import evaluate_library, format_report, write_per_image

    if args.per_image and Path(args.per_image).suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"{args.per_image}: the per-image file must end in .csv or .jsonl")
    options = dict(crop=args.crop, method=args.method, rotations=not args.no_rotations, fpr=args.fpr,
                   query_sigma=args.sigma, progress=not args.quiet, warn=_warn, recursive=not args.no_recursive,
                   generator_threshold=args.generator_z, backend=args.backend, **scale_options(args))
    if args.transform and len(args.transform) > 1:
        return evaluate_transformed(args, options)
    transform = args.transform[0] if args.transform else None
    report = evaluate_library(args.library, args.queries, plots=args.plots, transform=transform, seed=args.seed, **options)
    if args.per_image:
        write_per_image(report, args.per_image)
    if args.json:
        print(dumps(report.as_dict() | ({"per_image_file": args.per_image} if args.per_image else {}), indent=2))
    else:
        print(format_report(report, show=printable)
              + (f"\nper-image results: {printable(args.per_image)}" if args.per_image else ""))
    return EXIT_ERROR if report.failed else EXIT_OK


def cmd_bench(args) -> int:
    from fingerprint.bench import run_bench, run_pipeline_bench

    if args.pipeline:
        run_pipeline_bench(args.sizes, references=args.references, repeat=args.repeat, as_json=args.json,
                           backend=args.backend)
    else:
        run_bench(args.sizes, repeat=args.repeat, reference=not args.no_reference, as_json=args.json,
                  backend=args.backend)
    return EXIT_OK


def cmd_demo(args) -> int:
    from fingerprint.demo import run_demo

    run_demo(args.out, size=args.size, progress=not args.quiet)
    return EXIT_OK


def cmd_localize(args) -> int:  # --- forensic report and tamper localisation ---
    from fingerprint.report import localize_file

    res = localize_file(args.library, args.image, args.reference, mask_out=args.out, map_out=args.map,
                        window=args.window, alpha=args.alpha, warn=_warn)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{_shown(args.image)}: {100 * res['tampered_fraction']:.1f} % lacks {_shown(args.reference)}'s fingerprint "
              f"(testable: {100 * res['decidable_fraction']:.0f} %); mask written to {_shown(args.out)}"
              + (f", map to {_shown(args.map)}" if args.map else ""))
    return EXIT_OK


def cmd_report(args) -> int:  # --- forensic report and tamper localisation ---
    from fingerprint.report import write_report

    failed = []
    index = write_report(args.library, args.paths, args.out, localize_matches=not args.no_localize, fpr=args.fpr,
                         progress=not args.quiet, warn=lambda msg: (failed.append(msg), _warn(msg)))
    print(f"report written to {_shown(index)}" + (f" ({len(failed)} image(s) could not be read)" if failed else ""))
    return EXIT_ERROR if failed else EXIT_OK


COMMANDS = {"build": cmd_build, "calibrate": cmd_calibrate, "attribute": cmd_attribute, "list": cmd_list, "remove": cmd_remove,
            "rename": cmd_rename, "export": cmd_export, "upgrade": cmd_upgrade, "evaluate": cmd_evaluate, "bench": cmd_bench,
            "demo": cmd_demo, "localize": cmd_localize, "report": cmd_report, "sources": cmd_sources,
            "calibration": cmd_calibration}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    if argv is not None:  # called from Python (tests): SIGINT and the allocator are left as they are
        return _main(argv)
    from fingerprint.allocator import keep_freed_memory

    keep_freed_memory()  # the program owns its process: freed large arrays are reused, not faulted in again
    try:
        return _main(None)
    finally:  # the program itself: a Ctrl-C after the command has ended changes nothing
        from fingerprint import interrupt

        interrupt.settle()


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command == "build" and build_usage_error(args):
            args.usage_error(build_usage_error(args))  # the build parser's error: usage, one line, exit 2
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    from fingerprint import interrupt

    interrupt.install()  # from here on a Ctrl-C is one line (see fingerprint/interrupt.py)
    try:
        problem = backend_error(args)  # --backend cuda without a usable device: a usage error, one line
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    if not problem and getattr(args, "shards", None) is not None and not getattr(args, "scheduler", None):
        problem = "--shards needs --scheduler (shards are spread over Dask workers)"
    if problem:
        _err(problem)
        return EXIT_USAGE
    debug = args.debug
    if not debug:  # Pillow warns about damaged files (TIFF tags) before io reports them in one line
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    try:
        from fingerprint.cli_text import stdout_closed
        from fingerprint.errors import GanprintError, LibraryError

        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return _interrupted()
    except (GanprintError, LibraryError, ValueError, OSError) as err:
        if _caused_by_interrupt(err):
            return _interrupted()
        if isinstance(err, BrokenPipeError) and stdout_closed():
            return EXIT_PIPE  # the reader went away (e.g. '| head'): nothing more to say
        if debug:
            raise
        _err(str(err).strip() or type(err).__name__)
        return EXIT_ERROR
    except Exception as err:  # a bug, not a user error: still one line, details with --debug
        if _caused_by_interrupt(err):
            return _interrupted()
        if debug:
            raise
        _err(f"internal error ({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
             "rerun with --debug for the traceback and please report it")
        return EXIT_ERROR


def _interrupted() -> int:
    from fingerprint import interrupt

    done = interrupt.written()
    if done:  # the Ctrl-C came during a commit, which completed: say what was written
        _err(f"interrupted after the commit completed: {'; '.join(done)}")
    else:
        _err("interrupted; any library being written is as it was before this command")
    return EXIT_INTERRUPTED


def _caused_by_interrupt(err: BaseException) -> bool:
    """Whether ``err`` was raised because a Ctrl-C interrupted the code under it: a
    ``KeyboardInterrupt`` in its chain (``__cause__``/``__context__``). A Ctrl-C that lands inside a
    compiled extension's function (h5py's lock) comes back as ``SystemError: ... returned a result
    with an exception set``, the interrupt as its cause."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
