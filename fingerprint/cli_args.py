"""Argument types of the ``ganprint`` command line: sizes, counts, thresholds, rates and sigmas.

Each is an ``argparse`` type: a value out of range is a usage error (one line, exit status 2),
never an internal error or a silent NaN fingerprint. Ranges:

- thresholds (``--pce-threshold``, ``--generator-z``): positive and finite;
- ``--fpr``: a false-positive rate per pair in (0, :data:`FPR_MAX`];
- ``--sigma``: a noise standard deviation in grey levels (8-bit scale) within :data:`SIGMA_RANGE`
  (below it the residual is ~0, above it the denoiser saturates; ``1e300`` gave a NaN fingerprint);
- sizes ``HxW`` (rows x columns, :func:`parse_crop`) and counts (whole numbers >= 1);
- ``--backend {cpu,cuda,auto}`` (:func:`add_backend_option`): ``cuda`` on a machine without a usable
  CUDA device is a usage error too (:func:`backend_error`, one line, exit status 2).
"""

from __future__ import annotations

import argparse
import math
import re

from kernels.spec import SIGMA_RANGE

__all__ = ["ATTRIBUTE_EPILOG", "BACKEND_CHOICES", "CALIBRATION_EPILOG", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK",
           "EXIT_PIPE", "EXIT_USAGE", "FPR_MAX", "SIGMA_RANGE", "Z_ADVICE", "CropSizeError", "add_backend_option",
           "add_maintenance_commands", "add_scale_options", "backend_error", "build_usage_error", "parse_conditions", "parse_crop", "scale_options"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose output pipe was closed


class CropSizeError(argparse.ArgumentTypeError, ValueError):
    """A malformed ``HxW`` size: argparse prints its message; ``except ValueError`` catches it too."""


_CROP_RE = re.compile(r"^\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*$")


def parse_crop(text: str) -> tuple[int, int]:
    """Parse a size ``"HxW"`` (rows x columns), e.g. ``"512x512"`` or ``"2000x3008"``: ``--crop``, ``--sizes``.

    Two positive integers separated by ``x`` (or ``X``, ``×``), spaces around them allowed.
    Returns ``(h, w)``; anything else raises :class:`CropSizeError` (a ``ValueError``) quoting the
    text, which argparse reports as ``argument --crop: <message>``.

    >>> parse_crop("512x256")
    (512, 256)
    """
    match = _CROP_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise CropSizeError(f"crop size must look like HxW, e.g. 512x512, got {text!r}")
    h, w = int(match.group(1)), int(match.group(2))
    if h < 1 or w < 1:
        raise CropSizeError(f"crop size must be positive, got {text!r}")
    return h, w


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


FPR_MAX = 0.5  # a per-pair false-positive rate above this calls most non-matching pairs matches
Z_ADVICE = 2.33  # z of the normal 1 % upper tail: a smaller --generator-z earns a warning


def _sigma(text: str) -> float:
    value = _positive(text)
    lo, hi = SIGMA_RANGE
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"sigma is a noise std in grey levels from {lo:g} to {hi:g}, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = _positive(text)
    if value > FPR_MAX:
        raise argparse.ArgumentTypeError(f"the false-positive rate per pair must be in (0, {FPR_MAX:g}], got {text!r}")
    return value


def _generator_z(text: str) -> float:
    return _positive(text)  # range advice (a z below ~2.3 accepts > 1 % of non-matching pairs) in cmd_attribute


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def parse_conditions(text: str) -> list:
    """``--transform``: evaluation conditions (``fingerprint.transforms.parse_conditions``), a usage error if malformed."""
    from fingerprint.transforms import parse_conditions as parse  # imported only when the option is given

    try:
        return parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _sizes(text: str) -> list[tuple[int, int]]:
    from kernels.spec import MIN_SIZE

    try:
        sizes = [parse_crop(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW sizes (rows x columns) separated by commas, "
                                         f"e.g. 512x512,2000x3008, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of HxW sizes, got {text!r}")
    for h, w in sizes:
        if h < MIN_SIZE or w < MIN_SIZE:
            raise argparse.ArgumentTypeError(f"{h}x{w}: every size must be at least {MIN_SIZE}x{MIN_SIZE}")
    return sizes


BACKEND_CHOICES = ("cpu", "cuda", "auto")


def _min_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a resize factor, got {text!r}") from None
    if not 0.05 <= value < 1:
        raise argparse.ArgumentTypeError(f"the smallest resize factor must be in [0.05, 1), got {text}")
    return value


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """``--no-scale-search`` and ``--min-scale F`` of the camera search (``fingerprint.camera_search``)."""
    parser.add_argument("--no-scale-search", action="store_true",
                        help="do not search resize factors for camera queries smaller than a fingerprint "
                             "(found: 'resized by F' in the text, scale in JSON)")
    parser.add_argument("--min-scale", type=_min_scale, metavar="F",
                        help="smallest resize factor the camera scale search tries, in [0.05, 1) (default 0.3)")


def scale_options(args: argparse.Namespace) -> dict:
    """The ``Attributor`` options of :func:`add_scale_options` (only those given)."""
    out = {"scale_search": not args.no_scale_search}
    if args.min_scale is not None:
        out["min_scale"] = args.min_scale
    return out


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend {cpu,cuda,auto}`` (default auto), passed as ``backend=`` to the API call."""
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="where residuals and scores are computed: cpu, cuda (an NVIDIA GPU; experimental, see "
                             "docs/gpu.md) or auto (the GPU when one is usable and the images have 1 MP or more; "
                             "default)")


def backend_error(args: argparse.Namespace) -> str | None:
    """The one-line usage error of ``--backend cuda`` where CUDA is not usable, else None.

    The reason is ``kernels._backend.cuda_status()``'s. Not checked with ``--scheduler``: there the
    Dask workers, which may have GPUs that this machine lacks, resolve the backend themselves.
    """
    if getattr(args, "backend", None) != "cuda" or getattr(args, "scheduler", None):
        return None
    from kernels._backend import cuda_status

    usable, reason = cuda_status()
    return None if usable else f"--backend cuda: {reason}; use --backend cpu or auto"


def build_usage_error(args: argparse.Namespace) -> str | None:
    """Why ``build``'s options do not go together (a usage error, exit status 2), else None.

    ``--name NAME --kind KIND PATH...``, or ``--labels`` with one PATH (the CSV) and no ``--name``.
    """
    if args.labels and (args.name is not None or len(args.paths) != 1):
        return "--labels takes one PATH, the CSV of path,label[,kind] (the names come from it), and no --name"
    missing = [o for o, v in (("--name", args.name), ("--kind", args.kind)) if v is None and not args.labels]
    return f"the following arguments are required: {', '.join(missing)} (or --labels with a CSV)" if missing else None


CALIBRATION_EPILOG = """\
what is stored: z = NCC*sqrt(D) of images against generators they do not come from, keyed by
(image SHA-256, generator). A generator build adds its images against the generators present and,
re-reading their recorded source files, their images against the new one, so the threshold does
not depend on the order of builds (a warning says when source files are missing).
'ganprint calibrate' adds images of no library generator against every generator; it refuses a
source image of a library generator and an image at or above the threshold at 0.001 per pair
(and z >= 6) against one.
The scores do not record who added them, so --reset drops every stored score ('calibrate'
ones included) and stores what builds of the current generators give, recomputed from their
recorded source images, in one commit. A source file missing or changed since keeps its stored
scores where there are some (a warning counts the pairs that have none)
"""



def add_maintenance_commands(sub) -> None:
    """The ``sources`` and ``calibration`` sub-commands (inspection of a reference and of the calibration)."""
    so = sub.add_parser("sources", help="list the source images counted in a reference (file and SHA-256)",
                        description="One line per image counted in the reference, in the order added: its SHA-256, "
                                    "a tab, the file name recorded at build time. Take one out with "
                                    "'ganprint remove LIBRARY NAME --image PATH|SHA256'.")
    so.add_argument("library")
    so.add_argument("name")
    so.add_argument("--json", action="store_true", help="one JSON object per line (JSON Lines), one per image")
    cb = sub.add_parser("calibration", help="show or reset the library's generator calibration (non-matching "
                        "scores, thresholds)", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=CALIBRATION_EPILOG)
    cb.add_argument("library")
    what = cb.add_mutually_exclusive_group()
    what.add_argument("--show", action="store_true", help="show the stored scores and thresholds (the default)")
    what.add_argument("--reset", action="store_true", help="drop the stored scores ('ganprint calibrate' ones "
                      "included) and store those that builds give, recomputed from the generators' source images; "
                      "then show them")


def _ncc_threshold_removed(text: str) -> float:
    raise argparse.ArgumentTypeError(
        "was a threshold on z = NCC*sqrt(D), not on the NCC (an NCC-sized value such as 0.05 matched almost "
        "every image); use --generator-z Z, e.g. --generator-z 3.1")


ATTRIBUTE_EPILOG = """\
output (text): one tab-separated line per image, between a '#' header and a '#' summary:
  IMAGE  DECISION  SCORE vs THRESHOLD  NOTES
  DECISION  the matching reference, or 'unknown (closest NAME)'
  SCORE     the statistic that decided: PCE (cameras), NCC (cameras with --method ncc),
            z = NCC*sqrt(D) (generators; the NCC in brackets)
  NOTES     'turned 90 deg counter-clockwise': the query turned that way lines up with the
            sensor (so the photo was stored turned clockwise); 'at row R, column C': top-left
            corner of the query inside the fingerprint (after the turn), rows from the top,
            columns from the left; the second residual (sigma 5); a centred comparison;
            why a reference was not compared; 'resized by F (implied by its size | scale
            search)': found in a copy resized by F (row, column then in the fingerprint so
            resized); 'threshold raised: ...' says what was searched and its share of the
            error budget; an unknown lists 'tried: ...'
paths: files, folders (searched recursively) and glob patterns; file names are printed
with control characters escaped (\\t, \\n, \\xNN) so that a name cannot forge a line
"""
