"""Memory bounded by what the machine has, not by what a header claims.

- An image that does not fit in the memory left (``MemoryError`` while it is decoded or while its
  residual is computed, e.g. under ``ulimit -v``) is reported as one line naming it, and the rest
  of the batch is answered: the whole batch used to be lost to one ``internal error (MemoryError)``.
  These run in a subprocess whose address space is limited (``RLIMIT_AS``) a few hundred MB above
  what it uses after a warm-up.
- ``attribute_paths`` scores batches of at most ``BATCH`` images **and** ``BATCH_BYTES`` bytes of
  pixels (eight 64-megapixel JPEGs took 10 GB in one batch of 8).
- The size limit is an argument (``max_pixels``) and a CLI option (``--max-pixels``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fingerprint import attribution
from fingerprint.attribution import attribute_paths
from fingerprint.cli import EXIT_ERROR, main
from fingerprint.io import MAX_PIXELS
from test_reliability import (  # noqa: F401 - fixtures
    build_small_library,
    library_copy,
    noise_pngs,
    small_library,
)

resource = pytest.importorskip("resource")  # RLIMIT_AS: POSIX only

HEADROOM = 150 * 2**20  # address space granted above the warmed-up process's own


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def big_png(path: Path, height: int, width: int) -> Path:
    """An RGB PNG of ``height`` x ``width`` (a horizontal ramp), written row by row: a few hundred KB
    on disk, ``3 * height * width`` bytes decoded."""
    row = b"\x00" + (np.arange(width, dtype=np.uint8).repeat(3)).tobytes()
    z = zlib.compressobj(1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


# The subprocess: warm up (imports, Numba, thread pools) on a small image, then limit the address
# space to what it uses plus HEADROOM, and run the command on every path.
_LIMITED = textwrap.dedent("""
    import json, resource, sys
    from fingerprint.attribution import attribute_paths
    from fingerprint.build import build_reference
    from fingerprint import cli
    what, library, headroom, paths = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    list(attribute_paths(library, [paths[0]], progress=False))
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    used = int(status["VmSize"].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))
    if what == "attribute":
        out = [item if isinstance(item, str) else "answered " + item.image
               for item in attribute_paths(library, paths, progress=False, max_pixels=10**9)]
        print(json.dumps(out))
    elif what == "build":
        warnings = []
        rep = build_reference(library, "camC", "camera", paths, crop=(96, 96), progress=False,
                              max_pixels=10**9, warn=warnings.append)
        print(json.dumps({"added": rep.added, "warnings": warnings, "n_images": rep.n_images}))
    else:
        sys.exit(cli.main(["attribute", library, "--quiet", "--max-pixels", str(10**9), *paths]))
""")


def _run_limited(what: str, library, paths) -> subprocess.CompletedProcess:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status to measure the process")
    env = dict(os.environ, MALLOC_ARENA_MAX="2", NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _LIMITED, what, str(library), str(HEADROOM), *map(str, paths)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def memory_cases(tmp_path_factory):
    """Small images, one whose residual does not fit (3000 x 3000: decoded 27 MB, residual ~270 MB)
    and one whose pixels do not fit (8000 x 8000: 192 MB decoded)."""
    folder = tmp_path_factory.mktemp("memory")
    small = sorted(noise_pngs(folder / "small", 3, seed=8, size=96).glob("*.png"))
    return {"small": small, "residual": big_png(folder / "residual_too_big.png", 3000, 3000),
            "decode": big_png(folder / "decode_too_big.png", 8000, 8000)}


def test_attribute_reports_the_image_that_does_not_fit_and_answers_the_rest(small_library, memory_cases):
    """The 3000 x 3000 image is larger than every fingerprint of the library (96 x 96): nothing is
    computed for it (no residual: no camera can be searched), so it is answered within the limit."""
    s = memory_cases["small"]
    paths = [s[0], memory_cases["residual"], s[1], memory_cases["decode"], s[2]]
    proc = _run_limited("attribute", small_library[0], paths)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert len(out) == 5
    assert [out[i] for i in (0, 2, 4)] == [f"answered {s[i]}" for i in range(3)]
    assert out[1] == f"answered {memory_cases['residual']}"
    assert out[3].startswith(f"{memory_cases['decode']}: not enough memory to decode"), out[3]
    assert all("\n" not in line for line in out)


def test_an_image_whose_scoring_runs_out_of_memory_is_reported_and_the_rest_answered(small_library, memory_cases,
                                                                                     monkeypatch):
    """MemoryError while scoring (the residual of a large query against a large fingerprint): the
    image is named in one line, the batch is rescored one by one, the others are answered."""
    from fingerprint.attribution import Attributor
    from fingerprint.io import load_image

    s = memory_cases["small"]
    real, target = Attributor._camera_scores, load_image(s[1])

    def scores(self, image, jpeg=None):
        if image.shape == target.shape and np.array_equal(image, target):
            raise MemoryError
        return real(self, image, jpeg)

    monkeypatch.setattr(Attributor, "_camera_scores", scores)
    out = list(attribute_paths(small_library[0], [s[0], s[1], s[2]], progress=False))
    assert [o.image for o in (out[0], out[2])] == [str(s[0]), str(s[2])]
    assert isinstance(out[1], str) and out[1].startswith(f"{s[1]}: not enough memory to attribute"), out[1]


def test_build_skips_the_image_that_does_not_fit(library_copy, memory_cases):
    s = memory_cases["small"]
    proc = _run_limited("build", library_copy, [s[0], memory_cases["decode"], s[1]])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["added"] == [str(s[0]), str(s[1])] and out["n_images"] == 2
    assert len(out["warnings"]) == 1 and "not enough memory" in out["warnings"][0]
    assert str(memory_cases["decode"]) in out["warnings"][0]


def test_cli_attribute_under_a_memory_limit_prints_one_line_per_bad_image(small_library, memory_cases):
    s = memory_cases["small"]
    proc = _run_limited("cli", small_library[0], [s[0], memory_cases["decode"], s[1]])
    assert proc.returncode == EXIT_ERROR, proc.stderr[-3000:]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "not enough memory" in errors[0] and str(memory_cases["decode"]) in errors[0]
    assert str(s[0]) in proc.stdout and str(s[1]) in proc.stdout


# ----------------------------------------------------------------------------------------------
# Batches bounded by bytes
# ----------------------------------------------------------------------------------------------


def test_batches_are_bounded_by_bytes_as_well_as_count(small_library, tmp_path, monkeypatch):
    sizes = []
    real = attribution.Attributor.score_batch

    def spy(self, images, labels=None, qualities=None, **kwargs):
        sizes.append(sum(im.nbytes for im in images))
        return real(self, images, labels, qualities, **kwargs)

    monkeypatch.setattr(attribution.Attributor, "score_batch", spy)
    monkeypatch.setattr(attribution, "BATCH_BYTES", 3 * 96 * 96 * 3)  # three 96 x 96 RGB images
    paths = sorted(noise_pngs(tmp_path / "q", 8, seed=4, size=96).glob("*.png"))
    out = list(attribute_paths(small_library[0], paths, progress=False))
    assert [a.image for a in out] == [str(p) for p in paths]  # every image answered, in order
    assert sizes and max(sizes) <= 3 * 96 * 96 * 3 and sum(sizes) == 8 * 96 * 96 * 3
    assert len(sizes) == 3  # 3 + 3 + 2 (by count alone: one batch of 8)


def test_default_batch_bytes_keep_eight_64_megapixel_images_apart():
    assert attribution.BATCH_BYTES < 2 * 64_000_000 * 3  # at most one 64 MP RGB image per batch


# ----------------------------------------------------------------------------------------------
# The size limit: default, argument, CLI option
# ----------------------------------------------------------------------------------------------


def test_default_limit_is_200_megapixels():
    assert MAX_PIXELS == 200_000_000


def test_max_pixels_option_of_attribute_and_build(small_library, library_copy, tmp_path, capsys):
    image = tmp_path / "q.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(image)
    assert main(["attribute", str(small_library[0]), str(image), "--quiet", "--max-pixels", "9216"]) == 0
    capsys.readouterr()
    assert main(["attribute", str(small_library[0]), str(image), "--quiet", "--max-pixels", "9215"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "exceeds the limit of 9215 pixels" in err and str(image) in err
    assert main(["build", str(library_copy), "--name", "camZ", "--kind", "camera", "--quiet", "--max-pixels", "100",
                 str(image)]) == EXIT_ERROR
    assert "exceeds the limit of 100 pixels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["attribute", str(small_library[0]), str(image), "--max-pixels", "0"])
    assert caught.value.code == 2


# ----------------------------------------------------------------------------------------------
# Fuzzing: mutated headers never give a traceback, a hang or unbounded memory
# ----------------------------------------------------------------------------------------------


def test_quick_header_fuzz_in_a_2_gb_worker():
    """240 mutated TIFF, PNG and JPEG files (header fields, bit flips, truncations) loaded in a worker
    limited to 2 GB of address space, 30 s a file: pixels or one line, every time. The long run
    (``benchmarks/fuzz_long.py --only headers --examples 12000``) is reported in docs/reliability.md."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import fuzz_long
    finally:
        sys.path.pop(0)
    summary = fuzz_long.run_headers(240, seed=3)
    assert summary["failures"] == [], json.dumps(summary["failures"][:3], indent=1)
    assert summary["worker_stderr"] == []  # no traceback, no stray warning
    assert 0 < summary["peak_rss"] < 2 * 2**30
    outcomes = summary["outcomes"]
    for ext in (".jpg", ".png", ".tif"):  # each format both loaded and refused: the mutations bite
        assert outcomes.get(f"{ext} loaded", 0) > 0 and outcomes.get(f"{ext} refused", 0) > 0, outcomes
