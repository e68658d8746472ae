#!/usr/bin/env python
"""Long fuzz run of ganprint's input handling (the quick version runs in tests/test_reliability.py).

Three fuzzers, with the hypothesis strategies of ``tests/test_reliability.py``:

- ``arrays``: any array (odd dtypes, shapes, sizes, NaN, inf) through ``fingerprint.attribute``:
  a result or one clear one-line error (``GanprintError``, ``ValueError``, ``TypeError``), never
  another exception;
- ``valid``: uint8/uint16 gray or RGB images of 16..64 pixels a side: always attributed;
- ``files``: valid PNG, JPEG, TIFF (8 and 16 bit), BMP and WebP files truncated, bit-flipped,
  overwritten or spliced, through ``load_image`` then ``attribute``: correct pixels, or an
  ``InvalidImageError`` whose one-line message starts with the file name.

Usage::

    .venv/bin/python benchmarks/fuzz_long.py                    # 2000 examples per fuzzer
    .venv/bin/python benchmarks/fuzz_long.py --examples 20000 --only files --seed 7

Exit code 0 when every example behaved, 1 otherwise (hypothesis prints the shrunk failing
example). Runs single-threaded: roughly 800 to 1600 examples a minute per fuzzer on one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed as hypothesis_seed, settings  # noqa: E402

import test_reliability as rel  # noqa: E402


def _runner(name: str, strategy, check, library: Path, workdir: Path, n: int, seed: int):
    counter = {"n": 0}

    @settings(max_examples=n, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(sample=strategy)
    def run(sample):
        counter["n"] += 1
        check(sample, library, workdir)

    return run, counter


def _check_array(array, library, workdir):
    rel.fuzz_array(array, library)


def _check_valid(image, library, workdir):
    (result,) = rel.attribute(image, library)
    assert result.decision in ("match", "unknown")


def _check_file(sample, library, workdir):
    ext, data = sample
    path = workdir / f"fuzz{ext}"
    path.write_bytes(data)
    rel.fuzz_file(path, library)


FUZZERS = {
    "arrays": (rel.image_arrays, _check_array),
    "valid": (rel.valid_images, _check_valid),
    "files": (rel.corrupted_files, _check_file),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per fuzzer (default 2000)")
    parser.add_argument("--only", choices=sorted(FUZZERS), action="append", help="run only these fuzzers")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # damaged TIFF tags
    names = args.only or list(FUZZERS)
    failed = []
    with tempfile.TemporaryDirectory(prefix="ganprint-fuzz-") as tmp:
        tmp = Path(tmp)
        library, _ = rel.build_small_library(tmp / "library")
        for name in names:
            strategy, check = FUZZERS[name]
            workdir = tmp / name
            workdir.mkdir()
            run, counter = _runner(name, strategy(), check, library, workdir, args.examples, args.seed)
            t0 = time.perf_counter()
            try:
                run()
                status = "ok"
            except Exception:  # noqa: BLE001 - report every fuzzer, then fail
                traceback.print_exc()
                status = "FAILED"
                failed.append(name)
            print(f"{name:7s} {status:6s} {counter['n']:6d} examples in {time.perf_counter() - t0:6.1f} s",
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
