"""The library commands of ``ganprint``: list, remove, rename, export, upgrade, sources, calibration.

Each is a thin layer over ``reference_db.Library`` and ``fingerprint.maintenance``; the argument
parsers are in ``cli`` and ``cli_args``. Also the one-line printers every command uses: errors
and warnings on stderr, names and paths with their control characters escaped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fingerprint.cli_args import EXIT_ERROR, EXIT_OK

__all__ = ["cmd_calibration", "cmd_export", "cmd_list", "cmd_remove", "cmd_rename", "cmd_sources", "cmd_upgrade",
           "error", "shown", "warn"]


def error(msg: str) -> None:
    """Print ``ganprint: error: MSG`` on stderr (control characters escaped)."""
    from fingerprint.cli_text import printable

    print(f"ganprint: error: {printable(msg, backslash=False)}", file=sys.stderr)


def warn(msg: str) -> None:
    """Print ``ganprint: warning: MSG`` on stderr (control characters escaped)."""
    from fingerprint.cli_text import printable

    print(f"ganprint: warning: {printable(msg, backslash=False)}", file=sys.stderr)


def shown(text) -> str:
    """A name or path as printed: control characters escaped (``cli_text.printable``)."""
    from fingerprint.cli_text import printable

    return printable(text)


def cmd_list(args) -> int:
    from fingerprint.cli_text import dumps, printable
    from reference_db import Library

    with Library(args.library, "r") as lib:
        infos = lib.infos(verify=True)  # reads every array once: NaN or inf marks a reference damaged
    status = EXIT_ERROR if any(i.damaged for i in infos) else EXIT_OK
    if args.json:
        for i in infos:
            print(dumps({"name": i.name, "kind": i.kind, "n_images": i.n_images, "shape": list(i.shape),
                         "params": i.params, "created": i.created, "updated": i.updated,
                         "ganprint_version": i.ganprint_version, "damaged": i.damaged}))
        return status
    if not infos:
        print(f"{printable(args.library)}: no references")
    for i in infos:
        if i.damaged:
            print(f"{printable(i.name)}\tdamaged: {printable(i.damaged)}")
            continue
        shape = "x".join(str(s) for s in i.shape)
        print(f"{printable(i.name)}\t{i.kind}\t{i.n_images} images\t{shape}\tupdated {i.updated}")
    return status


def cmd_remove(args) -> int:
    from fingerprint import __version__
    from reference_db import Library

    if args.image is not None:
        from fingerprint.maintenance import remove_image

        done = remove_image(args.library, args.name, args.image)
        print(f"removed {shown(done.path)} ({done.sha256}) from {shown(args.name)}; {done.n_images} image(s) left")
        return EXIT_OK
    with Library(args.library, "r+", version=__version__) as lib:
        lib.remove(args.name)
    print(f"removed {shown(args.name)}")
    return EXIT_OK


def cmd_sources(args) -> int:
    from fingerprint.cli_text import dumps
    from fingerprint.maintenance import list_sources

    for path, sha in list_sources(args.library, args.name):
        print(dumps({"path": path, "sha256": sha}) if args.json else f"{sha}\t{shown(path)}")
    return EXIT_OK


def cmd_calibration(args) -> int:
    from fingerprint.calibration import NULL_KEY, describe_null
    from reference_db import Library

    if args.reset:
        from fingerprint.maintenance import reset_calibration

        done = reset_calibration(args.library)
        print(f"reset: dropped {done.dropped} stored score(s); stored {done.written} build score(s) "
              f"({done.recomputed} recomputed from the generators' source images"
              + (f", {done.kept} kept: source file missing or changed" if done.kept else "") + ")")
        if done.missing:
            warn(f"{done.missing} (image, generator) pair(s) left out: the source file is missing or changed and "
                 "no stored score of the pair exists")
    with Library(args.library, "r") as lib:
        print("\n".join(describe_null(lib.calibration(NULL_KEY))))
    return EXIT_OK


def cmd_rename(args) -> int:
    from fingerprint import __version__
    from reference_db import Library

    with Library(args.library, "r+", version=__version__) as lib:
        lib.rename(args.old, args.new)
    print(f"renamed {shown(args.old)} to {shown(args.new)}")
    return EXIT_OK


def cmd_export(args) -> int:
    from reference_db import Library

    out = Path(args.out)
    if args.name is None:  # the whole library, one self-contained file (schema 1)
        if out.suffix != ".h5":
            raise ValueError(f"{out}: a whole library is exported to a new .h5 file (or give a reference name)")
        with Library(args.library, "r") as lib:
            left_out = lib.export(out)
        for name, reason in left_out.items():
            warn(f"{args.library}: damaged reference {name!r} left out of {out}: {reason}")
        print(f"{shown(args.library)}: exported to {shown(out)} (one file)")
        return EXIT_ERROR if left_out else EXIT_OK
    if out.suffix != ".npy":
        raise ValueError(f"{out}: the output file must end in .npy")
    with Library(args.library, "r") as lib:  # atomic, no symlink followed, never over a library
        fp = lib.export_fingerprint(args.name, out)
    print(f"{shown(args.name)}: fingerprint {'x'.join(map(str, fp.shape))} float32 written to {shown(out)}")
    return EXIT_OK


def cmd_upgrade(args) -> int:
    from fingerprint import __version__
    from reference_db import SCHEMA_VERSION, Library

    with Library(args.library, "r+", version=__version__) as lib:
        old = lib.schema_version
        done = lib.upgrade()
    print(f"{shown(args.library)}: schema {old} -> {SCHEMA_VERSION}" if done else
          f"{shown(args.library)}: schema {old} already; nothing to do")
    return EXIT_OK
