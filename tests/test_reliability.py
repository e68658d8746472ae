"""Reliability: bad input, damaged libraries, crashes, Ctrl-C and concurrent access lose nothing
and never end in a traceback. The promises these tests check are listed in docs/reliability.md.

The shared pieces (the bad-input table ``CASES``, the small library fixture, the subprocess
helpers and the hypothesis strategies) are imported by ``tests/test_cli.py`` and by
``benchmarks/fuzz_long.py``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from fingerprint import attribute, load_image
from fingerprint.build import build_reference
from fingerprint.errors import (
    GanprintError,
    InvalidImageError,
    LibraryError,
    LibraryLockedError,
    LibraryNotFoundError,
    LibraryPermissionError,
    LibraryWriteError,
    NotALibraryError,
    SchemaVersionError,
)
from fingerprint.io import MAX_PIXELS
from fingerprint.residual import MIN_SIZE
from reference_db import Library
import reference_db.durable as durable_module
import reference_db.groups as groups_module

try:  # hypothesis is a test dependency; the fuzz tests skip without it
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover
    given = None

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # damaged TIFFs make Pillow warn

SIZE = 96  # side of the library's fingerprints
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------
# Helpers shared with test_cli.py and benchmarks/fuzz_long.py
# ----------------------------------------------------------------------------------------------------

def ganprint_command() -> list[str]:
    """The installed ``ganprint`` console script next to this interpreter (else ``-m``)."""
    exe = Path(sys.executable).with_name("ganprint")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fingerprint.cli"]


def run_ganprint(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*ganprint_command(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    """The non-blank lines of stderr (progress bars are off: every test passes ``--quiet``)."""
    return [line for line in stderr.splitlines() if line.strip()]


def assert_one_line(stderr: str, *names) -> str:
    """stderr is exactly one line, has no traceback and names every one of ``names``."""
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temp_files(library) -> list[str]:
    """Temporary files a writer of ``library`` left behind."""
    library = Path(library)
    return sorted(p.name for p in library.parent.glob(f".{library.name}.tmp-*"))


def snapshot(library) -> dict[str, tuple]:
    """Every reference's content, read in full (fingerprint and sums hashed)."""
    out = {}
    with Library(library, "r") as lib:
        for name in lib.names():
            ref = lib.get(name)
            sums = hashlib.sha256()
            for key in sorted(ref.sums):
                sums.update(key.encode() + np.ascontiguousarray(ref.sums[key]).tobytes())
            out[name] = (ref.kind, ref.n_images, ref.info.n_sources,
                         hashlib.sha256(ref.fingerprint.tobytes()).hexdigest(), sums.hexdigest())
    return out


def save_png(path, array) -> Path:
    Image.fromarray(array).save(path)
    return Path(path)


def noise_pngs(folder, n: int, *, seed: int, size: int = 64) -> Path:
    """``n`` distinct random RGB PNGs of ``size`` x ``size`` in ``folder`` (quick to build from)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        save_png(folder / f"img{i:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written by hand (any header, e.g. a decompression bomb's)."""
    if rows is None:
        rows = b"\x00" * 16
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


# --- the bad-input table ----------------------------------------------------------------------------
def _rng(path) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(Path(path).name.encode()))


def _empty(path):
    Path(path).write_bytes(b"")


def _truncated_jpeg(path):
    full = Path(path).with_suffix(".full.jpg")
    Image.fromarray(_rng(path).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(full, quality=95)
    data = full.read_bytes()
    full.unlink()
    Path(path).write_bytes(data[: len(data) // 2])


def _random_bytes(path):
    Path(path).write_bytes(_rng(path).bytes(4096))


def _text(path):
    Path(path).write_text("this is a text file, not a JPEG\n" * 20)


def _bomb(path):  # header claims 200000 x 200000 RGB pixels (120 GB decoded)
    Path(path).write_bytes(png_bytes(200_000, 200_000))


def _rgb(h, w):
    def make(path):
        save_png(path, _rng(path).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return make


def _gray(path):
    save_png(path, _rng(path).integers(0, 256, (SIZE, SIZE), dtype=np.uint8))


def _rgba(path):
    Image.fromarray(_rng(path).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8), "RGBA").save(path)


def _cmyk_jpeg(path):
    Image.fromarray(_rng(path).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8), "CMYK").save(path, quality=95)


def _tiff16(path):
    Image.fromarray(_rng(path).integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)).save(path)


def _png16_rgb(path):  # 16-bit colour PNG, written by hand (Pillow cannot write one)
    a = _rng(path).integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16)
    rows = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(SIZE))
    Path(path).write_bytes(png_bytes(SIZE, SIZE, bit_depth=16, colour_type=2, rows=rows))


def _float_tiff_nan(path):
    a = _rng(path).random((SIZE, SIZE)).astype(np.float32)
    a[5, 7] = np.nan
    Image.fromarray(a, mode="F").save(path)


def _float_tiff(path):
    Image.fromarray(_rng(path).random((SIZE, SIZE)).astype(np.float32), mode="F").save(path)


def _tiff_header_only(path):  # the IFD offset points past the end: Pillow warns, then fails
    import io

    buf = io.BytesIO()
    Image.fromarray(_rng(path).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buf, "TIFF")
    Path(path).write_bytes(buf.getvalue()[:8])


def _directory(path):
    Path(path).mkdir()


OK, ERR = "ok", "error"

#: file name -> (maker, load_image outcome, attribute outcome, outcome of a build from this file alone)
CASES: dict[str, tuple] = {
    "empty.png": (_empty, ERR, ERR, ERR),
    "truncated.jpg": (_truncated_jpeg, ERR, ERR, ERR),
    "random_bytes.png": (_random_bytes, ERR, ERR, ERR),
    "text.jpg": (_text, ERR, ERR, ERR),
    "bomb_200000x200000.png": (_bomb, ERR, ERR, ERR),
    "one_1x1.png": (_rgb(1, 1), OK, ERR, ERR),
    "tiny_8x8.png": (_rgb(8, 8), OK, ERR, ERR),
    "below_min_15x15.png": (_rgb(MIN_SIZE - 1, MIN_SIZE - 1), OK, ERR, ERR),
    "min_16x16.png": (_rgb(MIN_SIZE, MIN_SIZE), OK, OK, OK),
    "smaller_than_fp_40x56.png": (_rgb(40, 56), OK, OK, OK),
    "larger_than_fp_128x112.png": (_rgb(128, 112), OK, OK, OK),
    "gray16.tif": (_tiff16, OK, OK, OK),
    "rgb16.png": (_png16_rgb, OK, OK, OK),
    "float_nan.tif": (_float_tiff_nan, ERR, ERR, ERR),
    "float.tif": (_float_tiff, ERR, ERR, ERR),
    "gray.png": (_gray, OK, OK, OK),
    "rgba.png": (_rgba, OK, OK, OK),
    "cmyk.jpg": (_cmyk_jpeg, OK, OK, OK),
    "tiff_header_only.tif": (_tiff_header_only, ERR, ERR, ERR),
    "a_directory.png": (_directory, ERR, ERR, ERR),
}
BAD = sorted(k for k, v in CASES.items() if v[2] == ERR)


def make_case(folder, name: str) -> Path:
    path = Path(folder) / name
    if not path.exists():
        CASES[name][0](path)
    return path


@pytest.fixture(scope="session")
def case_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cases")
    for name in CASES:
        make_case(folder, name)
    return folder


def build_small_library(folder) -> tuple[Path, dict[str, list[Path]]]:
    """A library of two simulated 96x96 cameras, 3 flat-field PNGs each, plus 2 query PNGs each."""
    from fingerprint.synthetic import make_camera

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    library = folder / "refs.h5"
    for name, seed in (("camA", 11), ("camB", 22)):
        cam = make_camera(name, seed, shape=(SIZE, SIZE))
        flats = [save_png(folder / f"{name}_flat{i}.png", img) for i, img in enumerate(cam.images(3, seed=1, flat=True))]
        files[name] = [save_png(folder / f"{name}_query{i}.png", img) for i, img in enumerate(cam.images(2, seed=9))]
        build_reference(library, name, "camera", flats, progress=False, warn=lambda msg: None)
    return library, files


@pytest.fixture(scope="session")
def small_library(tmp_path_factory):
    """(library path, {camera: [query PNGs]}); never modified: copy it before writing."""
    return build_small_library(tmp_path_factory.mktemp("library"))


def copy_library(src, dst) -> Path:
    """Copy a library: its index and the folder of data files beside it (``cp`` of the index alone
    leaves its references without their files). Links name the folder after the source's name."""
    src, dst = Path(src), Path(dst)
    shutil.copyfile(src, dst)
    folder = Path(f"{src}.d")
    if folder.is_dir():
        shutil.copytree(folder, dst.parent / folder.name, dirs_exist_ok=True)
    return dst


@pytest.fixture
def library_copy(small_library, tmp_path) -> Path:
    return copy_library(small_library[0], tmp_path / "refs.h5")


# ----------------------------------------------------------------------------------------------------
# 1. Bad input through the Python API
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_load_image_matrix(case_dir, name):
    path = case_dir / name
    if CASES[name][1] == OK:
        image = load_image(path)
        assert image.dtype in (np.uint8, np.uint16)
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        assert not image.flags.writeable
        return
    with pytest.raises(InvalidImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize("name", sorted(CASES))
def test_attribute_matrix(case_dir, small_library, name):
    library, _ = small_library
    path = case_dir / name
    if CASES[name][2] == OK:
        (result,) = attribute(path, library)
        assert result.image == str(path)
        assert result.decision in ("match", "unknown")
        return
    with pytest.raises(InvalidImageError) as info:
        attribute(path, library)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and message.count(str(path)) == 1 and "\n" not in message


def test_api_errors_name_each_file_once(case_dir, small_library, tmp_path):
    """Decoding, crop and residual refusals through attribute, attribute_paths, build and calibrate:
    each one line ``"<path>: <problem>"``, the file named once."""
    from fingerprint.attribution import attribute_paths
    from fingerprint.build import calibrate_with_negatives
    from fingerprint.synthetic import make_generator

    library, queries = small_library
    good, truncated, tiny = queries["camA"][0], case_dir / "truncated.jpg", case_dir / "one_1x1.png"

    def named_once(message, path, words):
        assert message.startswith(f"{path}: ") and message.count(str(path)) == 1 and "\n" not in message, message
        assert words in message, message

    for path, crop, words in [(truncated, None, "truncated"), (good, (200, 200), "smaller than the 200x200 crop"),
                              (tiny, None, "too small")]:
        with pytest.raises(InvalidImageError) as info:
            attribute(path, library, crop=crop)
        named_once(str(info.value), path, words)
        assert info.value.path in (str(path), None)
    items = list(attribute_paths(library, [good, truncated, tiny], progress=False))
    assert items[0].image == str(good)
    named_once(items[1], truncated, "truncated")
    named_once(items[2], tiny, "too small")

    warnings: list[str] = []
    report = build_reference(tmp_path / "b.h5", "camA", "camera", [good, truncated, tiny], crop=(64, 64),
                             progress=False, warn=warnings.append)
    assert report.added == [str(good)] and len(warnings) == 2
    named_once(dict(report.skipped)[str(truncated)], truncated, "truncated")
    named_once(dict(report.skipped)[str(tiny)], tiny, "smaller than the 64x64 crop")

    gen = make_generator("g", "transposed_conv", 1, out_size=64)
    flats = [save_png(tmp_path / f"g{i}.png", im) for i, im in enumerate(gen.generate(2, seed=1))]
    build_reference(tmp_path / "g.h5", "g", "generator", flats, progress=False, warn=lambda m: None)
    warnings.clear()
    calibrate_with_negatives(tmp_path / "g.h5", [good, truncated, tiny], progress=False, warn=warnings.append)
    assert len(warnings) == 2
    named_once(warnings[0], truncated, "truncated")
    named_once(warnings[1], tiny, "too small")


@pytest.mark.parametrize("name", sorted(CASES))
def test_build_matrix(case_dir, tmp_path, name):
    """A reference built from this one file alone: created, or an error naming the file."""
    path = case_dir / name
    library = tmp_path / "lib.h5"
    warnings: list[str] = []
    if CASES[name][3] == OK:
        report = build_reference(library, "x", "camera", [path], progress=False, warn=warnings.append)
        assert report.created and report.added == [str(path)] and not warnings
        return
    with pytest.raises(GanprintError) as info:
        build_reference(library, "x", "camera", [path], progress=False, warn=warnings.append)
    # the file is named in its warning (skipped), or in the error itself (a folder, found empty)
    assert len(warnings) <= 1 and str(path) in " ".join([*warnings, str(info.value)])
    assert not any("\n" in w for w in warnings)
    assert all(w.startswith(f"{path}: ") and w.count(str(path)) == 1 for w in warnings)  # named once
    if library.exists():  # see docs/reliability.md: an empty library may be left behind
        assert snapshot(library) == {}
    with pytest.raises(InvalidImageError) as info:  # strict: the first bad file's own error
        build_reference(tmp_path / "strict.h5", "x", "camera", [path], strict=True, progress=False)
    assert str(path) in str(info.value)


def test_decompression_bomb_is_refused_before_allocation(case_dir, tmp_path):
    path = case_dir / "bomb_200000x200000.png"
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match="decompression-bomb"):
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # refused from the header: the pixels (120 GB) were never allocated
    # the limit is the header's pixel count, whatever the file's real size
    small = tmp_path / "claims_2000x2000.png"
    small.write_bytes(png_bytes(2000, 2000))
    with pytest.raises(InvalidImageError, match=f"{small}.*exceeds the limit of 1000000 pixels"):
        load_image(small, max_pixels=1_000_000)
    assert MAX_PIXELS == 200_000_000  # 200 megapixels: the largest camera sensors fit


def test_build_batch_skips_bad_files_unless_strict(small_library, case_dir, tmp_path):
    library, files = small_library
    good = sorted(Path(library).parent.glob("camA_flat*.png"))
    bad = [case_dir / "truncated.jpg", case_dir / "larger_than_fp_128x112.png", case_dir / "tiny_8x8.png"]
    warnings: list[str] = []
    lib = tmp_path / "lib.h5"
    report = build_reference(lib, "cam", "camera", [good[0], *bad, *good[1:]], progress=False, warn=warnings.append)
    assert report.added == [str(p) for p in good]
    assert [p for p, _ in report.skipped] == [str(p) for p in bad]
    for path, line in zip(bad, warnings):
        assert str(path) in line
    before = sha256_of(lib)
    with pytest.raises(GanprintError) as info:  # strict stops at the first bad file, writes nothing
        build_reference(lib, "cam2", "camera", [good[0], *bad], strict=True, progress=False)
    assert str(bad[0]) in str(info.value)
    assert sha256_of(lib) == before


def test_attribute_arrays_of_every_layout(small_library):
    library, _ = small_library
    rng = np.random.default_rng(3)
    ok = [rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8),
          rng.integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16),
          rng.integers(0, 256, (SIZE, SIZE, 1), dtype=np.uint8),
          rng.integers(0, 256, (MIN_SIZE, MIN_SIZE, 3), dtype=np.uint8)]
    assert len(attribute(ok, library)) == len(ok)
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((SIZE, SIZE, 4), np.uint8),
                np.full((SIZE, SIZE), np.nan, np.float32), np.zeros((0, 0), np.uint8)):
        with pytest.raises((GanprintError, ValueError, TypeError)) as info:
            attribute(bad, library)
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------
# 2. Library failures: clear errors, nothing overwritten
# ----------------------------------------------------------------------------------------------------

def _not_hdf5(path):
    Path(path).write_text("name,fingerprint\ncam,0.1\n")


def _foreign_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
        f.attrs["format"] = "something else"


def _newer_schema(path, source):
    shutil.copyfile(source, path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = np.int64(99)


def _truncated(path, source):
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


LIBRARY_FAULTS = {
    "not_hdf5": (lambda p, s: _not_hdf5(p), NotALibraryError),
    "foreign_hdf5": (lambda p, s: _foreign_hdf5(p), NotALibraryError),
    "newer_schema": (_newer_schema, SchemaVersionError),
    "truncated": (_truncated, NotALibraryError),
}


@pytest.mark.parametrize("fault", sorted(LIBRARY_FAULTS))
def test_damaged_library_is_refused_and_untouched(small_library, tmp_path, fault):
    source, files = small_library
    make, error = LIBRARY_FAULTS[fault]
    library = tmp_path / "refs.h5"
    make(library, source)
    before = sha256_of(library)
    for mode in ("r", "r+", "a"):
        with pytest.raises(error) as info:
            Library(library, mode)
        assert str(library) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(error):
        attribute(files["camA"][0], library)
    with pytest.raises(error):
        build_reference(library, "camC", "camera", files["camA"], progress=False)
    assert sha256_of(library) == before and not temp_files(library)
    if fault == "newer_schema":
        assert "upgrade ganprint" in str(info.value)


def test_missing_library(small_library, tmp_path):
    _, files = small_library
    missing = tmp_path / "nope" / "refs.h5"
    for call in (lambda: Library(missing), lambda: Library(missing, "r+"),
                 lambda: attribute(files["camA"][0], missing)):
        with pytest.raises(LibraryNotFoundError) as info:
            call()
        assert str(missing) in str(info.value)
    with pytest.raises(LibraryNotFoundError, match="does not exist"):  # mode "a", missing folder
        build_reference(missing, "x", "camera", files["camA"], progress=False)
    assert not missing.parent.exists()


def test_read_only_location(library_copy, small_library, monkeypatch, tmp_path):
    _, files = small_library
    before = snapshot(library_copy), sha256_of(library_copy)
    monkeypatch.setattr(durable_module, "can_write", lambda path: False)  # root ignores chmod
    with pytest.raises(LibraryPermissionError, match="read-only location or permission denied"):
        build_reference(library_copy, "camA", "camera", files["camA"], progress=False)
    with pytest.raises(LibraryPermissionError):
        build_reference(tmp_path / "new.h5", "x", "camera", files["camA"], progress=False)
    assert not (tmp_path / "new.h5").exists()
    (result,) = attribute(files["camA"][0], library_copy)  # reading needs no write access
    assert result.image == str(files["camA"][0])
    assert (snapshot(library_copy), sha256_of(library_copy)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_for_real(library_copy, small_library):
    _, files = small_library
    folder = library_copy.parent
    before = sha256_of(library_copy)
    folder.chmod(0o555)
    try:
        with pytest.raises(LibraryPermissionError):
            build_reference(library_copy, "camC", "camera", files["camA"], progress=False)
        assert attribute(files["camA"][0], library_copy)
    finally:
        folder.chmod(0o755)
    assert sha256_of(library_copy) == before


@pytest.mark.parametrize("stage", ["copy", "fsync", "replace"])
def test_disk_full_leaves_library_unchanged(library_copy, small_library, monkeypatch, stage):
    _, files = small_library
    before = snapshot(library_copy), sha256_of(library_copy)

    def enospc(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def half_written_then_full(g, **kwargs):  # part of the new reference file reaches the disk, then it is full
        g.create_dataset("fingerprint", data=kwargs["fingerprint"])
        enospc()

    folder = sorted(Path(f"{library_copy}.d").iterdir())
    if stage == "copy":
        monkeypatch.setattr(groups_module, "write_reference", half_written_then_full)
    elif stage == "fsync":
        monkeypatch.setattr(durable_module, "fsync", enospc)
    else:
        monkeypatch.setattr(durable_module, "replace", enospc)
    new = noise_pngs(library_copy.parent / "new", 2, seed=5, size=SIZE)
    with pytest.raises(LibraryWriteError) as info:
        build_reference(library_copy, "camC", "camera", [new], progress=False)
    assert info.value.errno == errno.ENOSPC
    assert str(library_copy) in str(info.value) and "unchanged" in str(info.value)
    assert (snapshot(library_copy), sha256_of(library_copy)) == before
    assert not temp_files(library_copy) and sorted(Path(f"{library_copy}.d").iterdir()) == folder
    monkeypatch.undo()  # the disk has space again: the next write works (the lock was released)
    report = build_reference(library_copy, "camC", "camera", [new], progress=False, lock_timeout=0)
    assert report.created and set(snapshot(library_copy)) == {"camA", "camB", "camC"}


# ----------------------------------------------------------------------------------------------------
# 3. Crash safety: SIGKILL at random moments of `ganprint build`
# ----------------------------------------------------------------------------------------------------

def _kill_cycles(folder: Path, n_kills: int, seed: int) -> dict[str, int]:
    """Start ``ganprint build`` on an existing library and SIGKILL it ``n_kills`` times.

    Rounds alternate between updating an existing reference and creating a new one. After each
    kill the library must open, every other reference must be exactly as before, the built one
    either as before or complete, and a new write must get the lock at once (no stale lock).
    """
    rng = random.Random(seed)
    library = folder / "refs.h5"
    build_reference(library, "victim", "camera", [noise_pngs(folder / "init", 4, seed=seed)], progress=False)
    outcomes = {"killed": 0, "finished": 0}
    for i in range(n_kills):
        images = noise_pngs(folder / f"round{i}", 12, seed=seed * 1000 + i)
        target = "victim" if i % 2 else f"new{i}"
        before = snapshot(library)
        proc = subprocess.Popen([*ganprint_command(), "build", str(library), "--name", target, "--kind",
                                 "camera", "--quiet", str(images)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, 1.6))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        outcomes["killed" if proc.returncode == -signal.SIGKILL else "finished"] += 1
        if proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0, err
        after = snapshot(library)  # opens and reads every array in full
        assert set(after) - set(before) <= {target}
        for name, state in before.items():
            if name != target:
                assert after[name] == state, (i, name)
        if target in after and after[target] != before.get(target):
            previous = before[target][1] if target in before else 0
            assert after[target][1] == previous + 12, (i, after[target])  # complete, never partial
        with Library(library, "r+", lock_timeout=0) as lib:  # no stale lock
            lib.add_calibration("reliability_probe", [float(i)])
        assert not temp_files(library)
        with Library(library) as lib:
            assert lib.calibration("reliability_probe").tolist() == [float(j) for j in range(i + 1)]
    return outcomes


def test_sigkill_during_build_quick(tmp_path):
    outcomes = _kill_cycles(tmp_path, 5, seed=1)
    assert sum(outcomes.values()) == 5


@pytest.mark.slow
def test_sigkill_during_build_50_times(tmp_path):
    outcomes = _kill_cycles(tmp_path, 50, seed=2)
    assert outcomes["killed"] >= 25, outcomes


# ----------------------------------------------------------------------------------------------------
# 4. Ctrl-C: exit 130, one line, library unchanged
# ----------------------------------------------------------------------------------------------------

def _wait_for_lock_holder(library: Path, pid: int, timeout: float = 60) -> None:
    """Wait until process ``pid`` holds the writer lock (it writes its PID into PATH.lock)."""
    lock = Path(str(library) + ".lock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if lock.read_text().split() == [str(pid)]:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    raise AssertionError("the build never took the library lock")


@pytest.mark.parametrize("delay", [0.0, 0.15])
def test_sigint_during_build(small_library, tmp_path, delay):
    library = tmp_path / "refs.h5"
    copy_library(small_library[0], library)
    images = noise_pngs(tmp_path / "many", 150, seed=3)
    before = sha256_of(library)
    proc = subprocess.Popen([*ganprint_command(), "build", str(library), "--name", "camC", "--kind", "camera",
                             "--quiet", str(images)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock_holder(library, proc.pid)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, out, err)
    line = assert_one_line(err)
    assert line.startswith("ganprint: error: interrupted")
    assert sha256_of(library) == before and not temp_files(library)
    with Library(library, "r+", lock_timeout=0) as lib:  # the lock went with the process
        assert lib.names() == ["camA", "camB"]


# A ``ganprint`` whose library commit gets Ctrl-C: ``how`` = "finalizer" delivers one SIGINT while a
# finalizer runs (Python then prints "Exception ignored" and goes on), "burst" three SIGINTs 1 ms apart.
_INTERRUPTED_COMMIT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import reference_db.store as store
    from fingerprint import cli
    how = sys.argv[1]
    real = store.commit

    class Finalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal handler runs here, inside a finalizer

    def burst():
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.001)

    def commit_copy(*args, **kwargs):
        if how == "finalizer":
            Finalizer()
        else:
            threading.Thread(target=burst).start()
            time.sleep(0.05)
        return real(*args, **kwargs)

    store.commit = commit_copy
    sys.exit(cli.main(sys.argv[2:]))
""")


@pytest.mark.parametrize("how", ["finalizer", "burst"])
def test_sigint_during_the_commit_completes_it_and_says_so(small_library, tmp_path, how):
    """Ctrl-C while a build commits: the commit completes, the one line says so, exit code 130.
    (It used to print "Exception ignored ... KeyboardInterrupt" and exit 0, library written.)"""
    library = tmp_path / "refs.h5"
    copy_library(small_library[0], library)
    images = noise_pngs(tmp_path / "imgs", 3, seed=5)
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_COMMIT, how, "build", str(library), "--name", "camC",
                           "--kind", "camera", "--quiet", str(images)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stdout, proc.stderr)
    assert "Exception ignored" not in proc.stderr
    line = assert_one_line(proc.stderr, "camC", library)
    assert line.startswith("ganprint: error: interrupted after the commit completed") and "written" in line
    assert not temp_files(library)
    with Library(library, "r+", lock_timeout=0) as lib:
        assert lib.names() == ["camA", "camB", "camC"] and lib.get("camC").n_images == 3


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_three_sigints_1ms_apart_give_one_line(small_library, tmp_path, delay):
    """Three Ctrl-C 1 ms apart during a build used to print a traceback (the second one raised while
    the first unwound): now one line, exit 130, and the library as it was."""
    library = tmp_path / "refs.h5"
    copy_library(small_library[0], library)
    images = noise_pngs(tmp_path / "many", 150, seed=3)
    before = sha256_of(library)
    proc = subprocess.Popen([*ganprint_command(), "build", str(library), "--name", "camC", "--kind", "camera",
                             "--quiet", str(images)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock_holder(library, proc.pid)
        time.sleep(delay)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.001)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert assert_one_line(err).startswith("ganprint: error: interrupted")
    assert sha256_of(library) == before and not temp_files(library)


# ----------------------------------------------------------------------------------------------------
# 5. Concurrency
# ----------------------------------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from reference_db import Library
    path, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        with Library(path, "a", lock_timeout=30) as lib:
            lib.add(f"w{i:03d}", kind="camera", fingerprint=np.full((32, 32), i, np.float32),
                    sums={"S": np.full((1, 32, 32), i, np.float64), "N": np.ones((1, 32, 32))},
                    n_images=i + 1, shape=(32, 32), params={"sigma": 3.0}, sources=[])
""")


def test_readers_while_a_writer_writes(tmp_path):
    library = tmp_path / "refs.h5"
    n = 25
    with Library(library, "a"):
        pass
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(library), str(n)], stderr=subprocess.PIPE, text=True)
    errors: list[BaseException] = []
    reads = [0]

    def reader():
        try:
            while True:
                done = writer.poll() is not None
                with Library(library) as lib:
                    names = lib.names()
                    for name in names:
                        ref = lib.get(name)
                        i = int(name[1:])
                        assert ref.n_images == i + 1 and np.all(ref.fingerprint == i)
                        assert np.all(ref.sums["S"] == i)
                    assert names == [f"w{j:03d}" for j in range(len(names))]  # commits in order
                reads[0] += 1
                if done:
                    return
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert writer.wait(timeout=60) == 0, writer.stderr.read()
    assert not errors, errors[0]
    assert reads[0] >= 2
    assert len(snapshot(library)) == n


def test_attribute_while_ganprint_build_writes(small_library, tmp_path):
    library = tmp_path / "refs.h5"
    copy_library(small_library[0], library)
    query = small_library[1]["camB"][0]
    proc = subprocess.Popen([*ganprint_command(), "build", str(library), "--name", "camC", "--kind", "camera",
                             "--quiet", str(noise_pngs(tmp_path / "imgs", 12, seed=4))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    while proc.poll() is None:
        (result,) = attribute(query, library)
        seen.add(tuple(sorted(result.scores)))
        time.sleep(0.05)  # leave the build a core on small machines
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (result,) = attribute(query, library)
    assert set(result.scores) == {"camA", "camB", "camC"}
    assert seen <= {("camA", "camB"), ("camA", "camB", "camC")}


def test_second_writer_fails_clearly_after_lock_timeout(library_copy, small_library):
    _, files = small_library
    before = sha256_of(library_copy)
    with Library(library_copy, "r+"):
        with pytest.raises(LibraryLockedError) as info:
            build_reference(library_copy, "camC", "camera", files["camA"], progress=False, lock_timeout=0.3)
    message = str(info.value)
    assert str(library_copy) in message and f"process {os.getpid()}" in message and "\n" not in message
    assert sha256_of(library_copy) == before


def test_second_writer_waits_for_the_first(library_copy, small_library):
    _, files = small_library
    holder = Library(library_copy, "r+")
    try:
        proc = subprocess.Popen([*ganprint_command(), "build", str(library_copy), "--name", "camC", "--kind",
                                 "camera", "--quiet", *map(str, files["camA"])],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting for the lock
    finally:
        holder.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert set(snapshot(library_copy)) == {"camA", "camB", "camC"}


def test_two_ganprint_builds_at_once(library_copy, tmp_path):
    procs = [subprocess.Popen([*ganprint_command(), "build", str(library_copy), "--name", name, "--kind", "camera",
                               "--quiet", str(noise_pngs(tmp_path / name, 4, seed=k, size=SIZE))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, name in enumerate(("camC", "camD"))]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    state = snapshot(library_copy)
    assert set(state) == {"camA", "camB", "camC", "camD"}
    assert state["camC"][1] == state["camD"][1] == 4


# ----------------------------------------------------------------------------------------------------
# 6. Fuzzing (longer runs: benchmarks/fuzz_long.py)
# ----------------------------------------------------------------------------------------------------

def image_arrays():
    """Any array an API user might pass as an image: odd dtypes, shapes, sizes, NaN."""
    dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.bool_])
    shapes = st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=48),
                       st.tuples(st.integers(0, 48), st.integers(0, 48), st.sampled_from([1, 2, 3, 4])),
                       hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    return st.builds(lambda d, s: (d, s), dtypes, shapes).flatmap(
        lambda ds: hnp.arrays(ds[0], ds[1], elements=_elements(ds[0])))


def _elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return st.floats(width=32 if dtype.itemsize == 4 else 64, allow_nan=True, allow_infinity=True)
    return None


def valid_images():
    """Arrays that must always be attributed: uint8/uint16, 16..64 pixels a side, gray or RGB."""
    return st.builds(
        lambda dtype, h, w, c, seed: np.random.default_rng(seed).integers(
            0, np.iinfo(dtype).max + 1, (h, w) if c == 1 else (h, w, c), dtype=dtype),
        st.sampled_from([np.uint8, np.uint16]), st.integers(MIN_SIZE, 64), st.integers(MIN_SIZE, 64),
        st.sampled_from([1, 3]), st.integers(0, 2**32 - 1))


_SEED_FILES: dict[str, bytes] = {}


def seed_files() -> dict[str, bytes]:
    """Small valid files of every supported format, the starting points of corruption."""
    if not _SEED_FILES:
        import io

        rng = np.random.default_rng(7)
        rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        for ext, fmt, extra in ((".png", "PNG", {}), (".jpg", "JPEG", {"quality": 90}), (".tif", "TIFF", {}),
                                (".bmp", "BMP", {}), (".webp", "WEBP", {"lossless": True})):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, fmt, **extra)
            _SEED_FILES[ext] = buf.getvalue()
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 65536, (20, 20), dtype=np.uint16)).save(buf, "TIFF")
        _SEED_FILES["16.tif"] = buf.getvalue()
    return _SEED_FILES


def corrupted_files():
    """(extension, bytes): a valid file truncated, bit-flipped, overwritten or spliced."""
    def mutate(ext, data, kind, pos, values):
        pos = pos % (len(data) + 1)
        if kind == "truncate":
            return ext, data[:pos]
        if kind == "flip":
            out = bytearray(data)
            for k, v in enumerate(values):
                out[(pos + 37 * k) % len(out)] ^= v or 1
            return ext, bytes(out)
        if kind == "overwrite":
            return ext, data[:pos] + values + data[pos + len(values):]
        return ext, data[:pos] + values + data[pos:]  # insert

    return st.builds(lambda ext, *rest: mutate(ext, seed_files()[ext], *rest),
                     st.sampled_from(sorted(seed_files())),
                     st.sampled_from(["truncate", "flip", "overwrite", "insert"]),
                     st.integers(0, 10**6), st.binary(min_size=1, max_size=16))


def check_loaded(path, image) -> None:
    assert image.dtype in (np.uint8, np.uint16), image.dtype
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), image.shape
    assert min(image.shape[:2]) >= 1 and not image.flags.writeable


def check_error(err: BaseException, path=None) -> None:
    message = str(err)
    assert message and "\n" not in message, message
    if path is not None:
        assert str(path) in message, message


def fuzz_array(array, library) -> None:
    """attribute() of any array: a result, or one clear error (never another exception)."""
    try:
        results = attribute(array, library)
    except (GanprintError, ValueError, TypeError) as err:
        check_error(err)
        return
    for r in results:
        assert r.decision in ("match", "unknown")


def fuzz_file(path, library) -> None:
    """load_image then attribute() of a corrupted file: pixels, or InvalidImageError naming it."""
    try:
        image = load_image(path)
    except InvalidImageError as err:
        check_error(err, path)
        return
    check_loaded(path, image)
    try:
        (result,) = attribute(path, library)
    except InvalidImageError as err:  # decodable but too small for a residual
        check_error(err, path)
        assert min(image.shape[:2]) < MIN_SIZE
        return
    assert result.decision in ("match", "unknown")


if given is not None:
    _FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

    @_FUZZ
    @given(array=image_arrays())
    def test_fuzz_attribute_arrays(small_library, array):
        fuzz_array(array, small_library[0])

    @_FUZZ
    @given(image=valid_images())
    def test_fuzz_valid_images_are_always_attributed(small_library, image):
        (result,) = attribute(image, small_library[0])
        assert result.decision in ("match", "unknown") and set(result.scores) == {"camA", "camB"}

    @_FUZZ
    @given(sample=corrupted_files())
    def test_fuzz_corrupted_files(small_library, tmp_path_factory, sample):
        ext, data = sample
        folder = tmp_path_factory.mktemp("fuzz", numbered=True)
        path = folder / f"fuzz{ext}"
        path.write_bytes(data)
        fuzz_file(path, small_library[0])


def test_a_swallowed_interrupt_still_stops_the_build(tmp_path, small_library):
    """A SIGINT whose KeyboardInterrupt was swallowed (raised inside a finalizer) stops the next build step."""
    import signal

    from fingerprint import interrupt

    _, files = small_library
    library = tmp_path / "new.h5"
    interrupt.install()
    try:
        try:
            interrupt._handler(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass  # what Python does with an exception raised in a weakref callback
        with pytest.raises(KeyboardInterrupt):
            build_reference(library, "camC", "camera", files["camA"], progress=False)
        assert not library.exists()
    finally:
        interrupt._interrupted.clear()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_interrupt_handler_raises_once_then_absorbs_and_defers_commits(monkeypatch):
    """The handler's rules (fingerprint/interrupt.py): the first SIGINT raises, repeats within
    GRACE_S are only recorded, a later one raises again; inside deferred() nothing raises until
    the block has completed and recorded what it wrote."""
    import signal

    from fingerprint import interrupt

    clock = [100.0]
    monkeypatch.setattr(interrupt.time, "monotonic", lambda: clock[0])
    interrupt.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupt._handler(signal.SIGINT, None)
        interrupt._handler(signal.SIGINT, None)  # 1 ms later: absorbed, no second KeyboardInterrupt
        clock[0] += interrupt.GRACE_S + 0.1
        with pytest.raises(KeyboardInterrupt):
            interrupt._handler(signal.SIGINT, None)  # much later: a stuck command can still be stopped

        interrupt.install()
        with pytest.raises(KeyboardInterrupt):
            with interrupt.deferred("the thing"):
                interrupt._handler(signal.SIGINT, None)  # during the commit: recorded only
                completed = True
        assert completed and interrupt.written() == ["the thing"]

        interrupt.install()
        interrupt._interrupted.set()  # a SIGINT before the commit: the block does not run
        with pytest.raises(KeyboardInterrupt):
            with interrupt.deferred("never"):
                raise AssertionError("the commit ran after a Ctrl-C")
        assert interrupt.written() == []
    finally:
        interrupt._interrupted.clear()
        signal.signal(signal.SIGINT, signal.default_int_handler)
