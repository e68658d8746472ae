"""``ganprint evaluate --transform A,B,...``: one evaluation per condition, then one summary.

Each condition is a ``fingerprint.transforms`` pipeline applied in memory to every query
(nothing is written); :func:`fingerprint.evaluate.evaluate_conditions` runs them. A single
condition is evaluated like a plain run (``cmd_evaluate``); this module serves two or more.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

__all__ = ["evaluate_transformed", "per_condition_path"]


def per_condition_path(path: str, condition: str) -> Path:
    """``results.csv`` and ``resize:0.5+jpeg:75`` give ``results.resize_0.5+jpeg_75.csv``."""
    p = Path(path)
    tag = re.sub(r"[^A-Za-z0-9.+@-]+", "_", condition)
    return p.with_name(f"{p.stem}.{tag}{p.suffix}")


def evaluate_transformed(args: argparse.Namespace, options: dict) -> int:
    """Evaluate ``args.library`` on ``args.queries`` under every condition of ``args.transform``.

    Prints one line per condition (closed-set top-1, open-set accuracy, unknowns rejected) and
    each full report (``--json``: one array of ``{"condition", "report"}``); ``--per-image FILE``
    writes one file per condition (:func:`per_condition_path`). Returns the exit status: 1 when a
    query could not be read under some condition.
    """
    from fingerprint.cli_args import EXIT_ERROR, EXIT_OK
    from fingerprint.cli_text import dumps, printable
    from fingerprint.evaluate import evaluate_library, format_conditions, write_per_image

    if args.plots:
        raise ValueError("--plots is written for one condition at a time: give --transform one condition")
    reports = []
    for pipeline in args.transform:
        if not args.quiet:
            print(f"condition {pipeline.spec()}", file=sys.stderr)
        reports.append((pipeline.spec(), evaluate_library(args.library, args.queries, transform=pipeline,
                                                          seed=args.seed, **options)))
    written = []
    if args.per_image:
        for cond, report in reports:
            written.append(write_per_image(report, per_condition_path(args.per_image, cond)))
    if args.json:
        print(dumps([{"condition": cond, "report": r.as_dict()} for cond, r in reports], indent=2))
    else:
        print(format_conditions(reports, show=printable))
        for path in written:
            print(f"per-image results: {printable(str(path))}")
    return EXIT_ERROR if any(r.failed for _, r in reports) else EXIT_OK
