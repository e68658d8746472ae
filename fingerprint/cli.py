"""The ``ganprint`` command line: a thin layer over the public API.

Results go to stdout, progress and warnings to stderr. Exit codes: 0 success, 1 a user error
(bad file, bad library, bad argument; one line on stderr), 2 bad command-line usage,
130 interrupted (Ctrl-C; a library being written is left as it was). ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _crop(text: str) -> tuple[int, int]:
    from fingerprint.io import parse_crop

    try:
        return parse_crop(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from fingerprint import __version__

    p = argparse.ArgumentParser(prog="ganprint", description="Which camera or which generator made an image, or unknown.")
    p.add_argument("--version", action="version", version=f"ganprint {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="add images of one camera or generator to a library")
    b.add_argument("library", help="HDF5 library file (created if missing)")
    b.add_argument("--name", required=True, help="reference name (adding to an existing name updates it)")
    b.add_argument("--kind", required=True, choices=["camera", "generator"])
    b.add_argument("--crop", type=_crop, metavar="HxW", help="centre-crop every image to HxW first")
    b.add_argument("--sigma", type=_positive,
                   help="estimator noise std in grey levels (default 3 for cameras, 5 for generators)")
    b.add_argument("--strict", action="store_true", help="stop at the first bad image instead of skipping it")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    # --- distributed (fingerprint/distributed.py) ---
    b.add_argument("--scheduler", metavar="ADDRESS|local[:N]",
                   help="build on a Dask cluster: a scheduler address, or local[:N] worker processes (needs ganprint[dist])")

    a = sub.add_parser("attribute", help="attribute questioned images against a library")
    a.add_argument("library")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--crop", type=_crop, metavar="HxW", help="centre-crop every image to HxW first")
    a.add_argument("--method", choices=["pce", "ncc"], default="pce", help="score deciding camera matches (default pce)")
    a.add_argument("--pce-threshold", type=_positive, default=60.0, help="camera PCE threshold at one position (default 60)")
    a.add_argument("--ncc-threshold", type=float, help="generator NCC threshold (default: calibrated per library)")
    a.add_argument("--fpr", type=_positive, default=0.01,
                   help="generator false-positive rate per (image, generator) pair for the calibrated threshold (default 0.01)")
    a.add_argument("--no-rotations", action="store_true", help="do not try 90/180/270 degree rotations")
    a.add_argument("--sigma", type=_positive, default=2.0,
                   help="denoiser noise std of camera query residuals in grey levels (default 2)")
    a.add_argument("--json", action="store_true", help="one JSON object per image")
    a.add_argument("--strict", action="store_true", help="stop at the first bad image")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    # --- distributed (fingerprint/distributed.py) ---
    a.add_argument("--scheduler", metavar="ADDRESS|local[:N]",
                   help="attribute on a Dask cluster: a scheduler address, or local[:N] worker processes (needs ganprint[dist])")

    ca = sub.add_parser("calibrate", help="add non-matching generator scores from images of no library generator")
    ca.add_argument("library")
    ca.add_argument("paths", nargs="+", metavar="PATH", help="images known to come from none of the library's generators")
    ca.add_argument("--crop", type=_crop, metavar="HxW")
    ca.add_argument("--quiet", action="store_true")

    ls = sub.add_parser("list", help="list the references of a library")
    ls.add_argument("library")
    ls.add_argument("--json", action="store_true")

    rm = sub.add_parser("remove", help="remove a reference")
    rm.add_argument("library")
    rm.add_argument("name")

    rn = sub.add_parser("rename", help="rename a reference")
    rn.add_argument("library")
    rn.add_argument("old")
    rn.add_argument("new")

    ex = sub.add_parser("export", help="write a reference's fingerprint to a .npy file")
    ex.add_argument("library")
    ex.add_argument("name")
    ex.add_argument("out", metavar="OUT.npy")

    ev = sub.add_parser("evaluate", help="accuracy, confusion, ROC AUC and EER on labelled queries")
    ev.add_argument("library")
    ev.add_argument("queries", help="a folder with one sub-folder per source, or a CSV file of path,label")
    ev.add_argument("--crop", type=_crop, metavar="HxW")
    ev.add_argument("--method", choices=["pce", "ncc"], default="pce")
    ev.add_argument("--no-rotations", action="store_true")
    ev.add_argument("--sigma", type=_positive, default=2.0, help="camera query residual sigma (default 2)")
    ev.add_argument("--fpr", type=_positive, default=0.01, help="generator false-positive rate per pair (default 0.01)")
    ev.add_argument("--plots", metavar="DIR", help="write ROC, score-distribution and confusion PNGs here")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--quiet", action="store_true")

    be = sub.add_parser("bench", help="measure residual speed against the plain float64 implementation")
    be.add_argument("--sizes", default="512x512,2000x3008", help="comma-separated HxW list (RGB images)")
    be.add_argument("--repeat", type=int, default=3)
    be.add_argument("--no-reference", action="store_true", help="skip the slow float64 reference")

    de = sub.add_parser("demo", help="end-to-end demo on simulated cameras and generators")
    de.add_argument("--out", default="demo-output", help="output folder (default demo-output/)")
    de.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    de.add_argument("--quiet", action="store_true")
    return p


def _err(msg: str) -> None:
    print(f"ganprint: error: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
    print(f"ganprint: warning: {msg}", file=sys.stderr)


# --- commands ------------------------------------------------------------------------------------------
def cmd_build(args) -> int:
    from fingerprint.build import build_reference

    if getattr(args, "scheduler", None):  # --- distributed (fingerprint/distributed.py) ---
        from fingerprint.distributed import build_reference_distributed, connect

        with connect(args.scheduler) as client:
            rep = build_reference_distributed(args.library, args.name, args.kind, args.paths, client=client,
                                              crop=args.crop, strict=args.strict, sigma=args.sigma,
                                              progress=not args.quiet, warn=_warn)
    else:
        rep = build_reference(args.library, args.name, args.kind, args.paths, crop=args.crop, strict=args.strict,
                              sigma=args.sigma, progress=not args.quiet, warn=_warn)
    verb = "created" if rep.created else "updated"
    if not rep.added:
        print(f"{args.name}: nothing new to add ({len(rep.skipped)} file(s) already counted); {rep.n_images} image(s)")
    else:
        print(f"{args.name}: {verb} {args.kind} fingerprint from {len(rep.added)} new image(s), {rep.n_images} in total"
              + (f"; {len(rep.skipped)} skipped" if rep.skipped else ""))
    return EXIT_ERROR if rep.skipped and any(not r.startswith("already") for _, r in rep.skipped) else EXIT_OK


def _format_row(res) -> str:
    d = res.as_dict()
    best = res.scores.get(res.best) if res.best else (res.scores.get(res.closest) if res.closest else None)
    if best is None:
        return f"{res.image}\tunknown\t-"
    score = f"PCE {best.pce:.1f}" if best.decided_by == "pce" and best.pce is not None else f"NCC {best.ncc:.4f}"
    extra = []
    if d["rotation"]:
        extra.append(f"rotated {d['rotation']}")
    if best.offset and tuple(best.offset) != (0, 0):
        extra.append(f"offset {best.offset[0]},{best.offset[1]}")
    who = res.best if res.best else f"unknown (closest {res.closest})"
    return f"{res.image}\t{who}\t{score} (threshold {best.threshold:.4g})" + (f"\t{', '.join(extra)}" if extra else "")


def cmd_attribute(args) -> int:
    import contextlib

    from fingerprint.attribution import attribute_paths

    options = dict(crop=args.crop, method=args.method, pce_threshold=args.pce_threshold,
                   generator_threshold=args.ncc_threshold, fpr=args.fpr, rotations=not args.no_rotations,
                   query_sigma=args.sigma,
                   strict=args.strict, progress=not args.quiet)
    with contextlib.ExitStack() as stack:  # --- distributed (fingerprint/distributed.py) ---
        if getattr(args, "scheduler", None):
            from fingerprint.distributed import attribute_distributed, connect

            client = stack.enter_context(connect(args.scheduler))
            items = attribute_distributed(args.library, args.paths, client=client, **options)
        else:
            items = attribute_paths(args.library, args.paths, **options)
        failed = _print_attributions(items, args)
    return EXIT_ERROR if failed else EXIT_OK


def _print_attributions(items, args) -> int:
    failed = 0
    for item in items:
        if isinstance(item, str):  # a per-file error message
            failed += 1
            _warn(item)
            continue
        if args.json:
            print(json.dumps(item.as_dict()), flush=True)
        else:
            print(_format_row(item), flush=True)
    return failed


def cmd_calibrate(args) -> int:
    from fingerprint.attribution import load_attributor
    from fingerprint.build import calibrate_with_negatives

    n = calibrate_with_negatives(args.library, args.paths, crop=args.crop, progress=not args.quiet, warn=_warn)
    att = load_attributor(args.library)
    print(f"added {n} non-matching score(s); generator threshold: {att.generator_threshold.describe()}")
    return EXIT_OK


def cmd_list(args) -> int:
    from reference_db import Library

    with Library(args.library, "r") as lib:
        infos = lib.infos()
    if args.json:
        for i in infos:
            print(json.dumps({"name": i.name, "kind": i.kind, "n_images": i.n_images, "shape": list(i.shape),
                              "params": i.params, "created": i.created, "updated": i.updated,
                              "ganprint_version": i.ganprint_version}))
        return EXIT_OK
    if not infos:
        print(f"{args.library}: no references")
    for i in infos:
        shape = "x".join(str(s) for s in i.shape)
        print(f"{i.name}\t{i.kind}\t{i.n_images} images\t{shape}\tupdated {i.updated}")
    return EXIT_OK


def cmd_remove(args) -> int:
    from fingerprint import __version__
    from reference_db import Library

    with Library(args.library, "r+", version=__version__) as lib:
        lib.remove(args.name)
    print(f"removed {args.name}")
    return EXIT_OK


def cmd_rename(args) -> int:
    from fingerprint import __version__
    from reference_db import Library

    with Library(args.library, "r+", version=__version__) as lib:
        lib.rename(args.old, args.new)
    print(f"renamed {args.old} to {args.new}")
    return EXIT_OK


def cmd_export(args) -> int:
    import numpy as np

    from reference_db import Library

    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"{out}: the output file must end in .npy")
    with Library(args.library, "r") as lib:
        fp = lib.get(args.name, with_sums=False).fingerprint
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, fp, allow_pickle=False)
    tmp.replace(out)
    print(f"{args.name}: fingerprint {'x'.join(map(str, fp.shape))} float32 written to {out}")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from fingerprint.evaluate import evaluate_library, format_report

    report = evaluate_library(args.library, args.queries, crop=args.crop, method=args.method,
                              rotations=not args.no_rotations, fpr=args.fpr, query_sigma=args.sigma, plots=args.plots, progress=not args.quiet, warn=_warn)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return EXIT_OK


def cmd_bench(args) -> int:
    from fingerprint.bench import run_bench

    sizes = [_crop(s) for s in args.sizes.split(",") if s]
    run_bench(sizes, repeat=args.repeat, reference=not args.no_reference)
    return EXIT_OK


def cmd_demo(args) -> int:
    from fingerprint.demo import run_demo

    run_demo(args.out, size=args.size, progress=not args.quiet)
    return EXIT_OK


COMMANDS = {"build": cmd_build, "calibrate": cmd_calibrate, "attribute": cmd_attribute, "list": cmd_list, "remove": cmd_remove,
            "rename": cmd_rename, "export": cmd_export, "evaluate": cmd_evaluate, "bench": cmd_bench,
            "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    try:
        parser = _parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    debug = args.debug
    from fingerprint import interrupt

    interrupt.install()
    if not debug:  # Pillow warns about damaged files (TIFF tags) before io reports them in one line
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    try:
        from fingerprint.errors import GanprintError, LibraryError

        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted; any library being written is as it was before this command")
        return EXIT_INTERRUPTED
    except (GanprintError, LibraryError, ValueError, OSError) as err:
        if debug:
            raise
        _err(" ".join(str(err).split()) or type(err).__name__)
        return EXIT_ERROR
    except Exception as err:  # a bug, not a user error: still one line, details with --debug
        if debug:
            raise
        _err(f"internal error ({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
             "rerun with --debug for the traceback and please report it")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
