"""Paths that are not what they seem (issue 13): symlinked lock and temporary files, export onto
a library, FIFOs and devices given as the library, calibration counted twice, and writes that
changed the library's permission bits and owner."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import reference_db.durable as durable_module
from fingerprint.build import build_reference, calibrate_with_negatives
from fingerprint.calibration import NULL_KEY
from reference_db import Library, LibraryError, LibraryExistsError, NotALibraryError
from test_reliability import (  # noqa: F401 - fixtures
    SIZE,
    assert_one_line,
    copy_library,
    library_copy,
    noise_pngs,
    run_ganprint,
    sha256_of,
    small_library,
)

VICTIM = b"precious, not a lock\n"


def _camera():
    h = hashlib.sha256(b"a").hexdigest()
    return dict(kind="camera", fingerprint=np.ones((4, 4)), sums={"S": np.ones((1, 4, 4)), "N": np.ones((1, 4, 4))},
                n_images=1, shape=(4, 4), params={}, sources=[("a.png", h)])


@pytest.fixture
def lib_path(tmp_path) -> Path:
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib:
        lib.add("cam", **_camera())
    os.remove(str(path) + ".lock")
    return path


# ---- the lock file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["existing", "dangling"])
def test_symlinked_lock_is_refused(lib_path, tmp_path, target):
    """Before: the writer wrote its PID through the link, over the target (or created it)."""
    victim = tmp_path / "victim.txt"
    if target == "existing":
        victim.write_bytes(VICTIM)
    Path(str(lib_path) + ".lock").symlink_to(victim)
    before = sha256_of(lib_path)
    for mode in ("r+", "a"):
        with pytest.raises(LibraryError, match="symbolic link") as info:
            Library(lib_path, mode, lock_timeout=0)
        assert str(lib_path) + ".lock" in str(info.value) and "\n" not in str(info.value)
    assert (victim.read_bytes() == VICTIM) if target == "existing" else not victim.exists()
    assert sha256_of(lib_path) == before
    with Library(lib_path) as lib:  # readers take no lock: unaffected
        assert lib.names() == ["cam"]
    proc = run_ganprint("remove", lib_path, "cam")
    assert proc.returncode == 1 and "symbolic link" in assert_one_line(proc.stderr, lib_path)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_lock_that_is_not_a_file(lib_path, kind):
    lock = Path(str(lib_path) + ".lock")
    os.mkfifo(lock) if kind == "fifo" else lock.mkdir()
    with pytest.raises(LibraryError, match="not a regular file"):
        Library(lib_path, "r+", lock_timeout=0)
    assert stat.S_ISFIFO(lock.lstat().st_mode) if kind == "fifo" else lock.is_dir()


def test_symlinked_temporary_file_is_never_followed(lib_path, tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    planted = tmp_path / ".planted.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(durable_module, "temp_path", lambda real: str(planted))
    with Library(lib_path, "r+") as lib:
        with pytest.raises(LibraryError):
            lib.remove("cam")
        assert lib.names() == ["cam"]
    assert victim.read_bytes() == VICTIM and planted.is_symlink()


# ---- export --------------------------------------------------------------------------------------------

def test_export_through_a_planted_temporary_symlink(library_copy, tmp_path):
    """Before: ``export`` wrote its temporary ``.OUT.tmp`` through a symlink planted there."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM)
    out = tmp_path / "camA.npy"
    Path(tmp_path / f".{out.name}.tmp").symlink_to(victim)
    proc = run_ganprint("export", library_copy, "camA", out)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == VICTIM
    assert np.load(out, allow_pickle=False).shape == (SIZE, SIZE)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_export_replaces_a_symlink_not_its_target(library_copy, tmp_path):
    victim = tmp_path / "victim.npy"
    np.save(victim, np.zeros(3))
    out = tmp_path / "out.npy"
    out.symlink_to(victim)
    with Library(library_copy) as lib:
        fp = lib.export_fingerprint("camA", out)
    assert not out.is_symlink() and np.array_equal(np.load(out), fp)
    assert np.array_equal(np.load(victim), np.zeros(3))


@pytest.mark.parametrize("onto", ["library", "link_to_library", "lock", "other_hdf5"])
def test_export_never_overwrites_a_library(small_library, tmp_path, onto):
    """Before: ``ganprint export LIB NAME LIB`` replaced the library by a .npy file."""
    library = tmp_path / "refs.npy"  # a library may have any name; this one is a single file (schema 1)
    with Library(small_library[0]) as lib:
        assert lib.export(library) == {}
    Library(library, "r+").close()  # creates the lock file
    other = tmp_path / "other.npy"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    out = {"library": library, "link_to_library": tmp_path / "link.npy", "lock": Path(str(library) + ".lock"),
           "other_hdf5": other}[onto]
    if onto == "link_to_library":
        out.symlink_to(library)
    if onto == "lock":  # the lock file has no .npy suffix: use the API
        with Library(library) as lib, pytest.raises(LibraryExistsError, match="lock file"):
            lib.export_fingerprint("camA", out)
        return
    before = {p: sha256_of(p) for p in (library, other)}
    proc = run_ganprint("export", library, "camA", out)
    assert proc.returncode == 1
    assert "refusing to overwrite" in assert_one_line(proc.stderr, out)
    assert {p: sha256_of(p) for p in (library, other)} == before
    with Library(library) as lib:
        assert lib.names() == ["camA", "camB"]


def test_export_onto_a_directory_or_fifo(library_copy, tmp_path):
    folder = tmp_path / "dir.npy"
    folder.mkdir()
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)
    for out in (folder, fifo):
        proc = run_ganprint("export", library_copy, "camA", out, timeout=30)
        assert proc.returncode == 1 and "regular file" in assert_one_line(proc.stderr, out)


# ---- FIFOs and devices as the library --------------------------------------------------------------

@pytest.mark.parametrize("command", ["list", "remove", "attribute", "build"])
def test_fifo_as_library(tmp_path, command):
    """Before: any command given a FIFO as the library blocked forever."""
    fifo = tmp_path / "lib.h5"
    os.mkfifo(fifo)
    image = noise_pngs(tmp_path / "img", 1, seed=1, size=SIZE) / "img000.png"
    args = {"list": [fifo], "remove": [fifo, "x"], "attribute": [fifo, image, "--quiet"],
            "build": [fifo, "--name", "x", "--kind", "camera", "--quiet", image]}[command]
    proc = run_ganprint(command, *args, timeout=60)
    assert proc.returncode == 1
    assert "FIFO" in assert_one_line(proc.stderr, fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize("mode", ["r", "r+", "a", "x"])
def test_device_and_linked_fifo_as_library(tmp_path, mode):
    fifo = tmp_path / "real.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "lib.h5"
    link.symlink_to(fifo)
    code = ("import sys; from reference_db import Library\n"
            "try:\n    Library(sys.argv[1], sys.argv[2])\nexcept Exception as e:\n    print(type(e).__name__, e)")
    for path, kind in ((link, "a FIFO"), ("/dev/null", "a character device")):
        proc = subprocess.run([sys.executable, "-c", code, str(path), mode], capture_output=True, text=True,
                              timeout=60)
        expected = "LibraryExistsError" if mode == "x" else "NotALibraryError"
        assert proc.stdout.startswith(expected), proc
        if mode != "x":
            assert f"is {kind}, not a ganprint reference library" in proc.stdout
    assert link.is_symlink()


# ---- calibration keyed by image hash -----------------------------------------------------------------

@pytest.fixture(scope="module")
def generator_library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gens")
    library = folder / "gens.h5"
    for k, name in enumerate(("genA", "genB")):
        build_reference(library, name, "generator", [noise_pngs(folder / name, 3, seed=40 + k, size=48)],
                        progress=False)
    return library, folder


def test_calibrate_twice_counts_once(generator_library, tmp_path):
    """Before: a second ``calibrate`` with the same images appended every score again."""
    source, folder = generator_library
    library = tmp_path / "gens.h5"
    copy_library(source, library)
    with Library(library) as lib:
        built = lib.calibration(NULL_KEY).size
    assert built == 6  # genB's 3 images against genA, and genA's 3 against genB
    negatives = noise_pngs(tmp_path / "neg", 4, seed=77, size=48)
    copy = tmp_path / "neg" / "copy of img000.png"  # the same image under another name
    copy.write_bytes((negatives / "img000.png").read_bytes())
    assert calibrate_with_negatives(library, [negatives], progress=False) == 8  # 4 images x 2 generators
    with Library(library) as lib:
        first = lib.calibration(NULL_KEY)
    assert first.size == built + 8
    assert calibrate_with_negatives(library, [negatives], progress=False) == 0
    proc = run_ganprint("calibrate", library, negatives, "--quiet")
    assert proc.returncode == 0 and proc.stdout.startswith("added 0 non-matching score(s)")
    with Library(library) as lib:
        assert np.array_equal(lib.calibration(NULL_KEY), first)
        assert lib.calibration(NULL_KEY).size == built + 8
    with h5py.File(library) as f:
        pairs = list(zip(f[f"calibration_sources/{NULL_KEY}/sha256"].asstr()[()],
                         f[f"calibration_sources/{NULL_KEY}/reference"].asstr()[()]))
    assert len(set(pairs)) == len(pairs) == built + 8


def test_rebuild_adds_no_calibration_twice(generator_library, tmp_path):
    source, folder = generator_library
    library = tmp_path / "gens.h5"
    copy_library(source, library)
    with Library(library) as lib:
        built = lib.calibration(NULL_KEY).size
    report = build_reference(library, "genB", "generator", [folder / "genB"], progress=False)
    assert not report.added
    build_reference(library, "genB", "generator", [folder / "genB", noise_pngs(tmp_path / "new", 1, seed=5, size=48)],
                    progress=False)
    with Library(library) as lib:
        assert lib.calibration(NULL_KEY).size == built + 1  # only the new image's score against genA


def test_two_first_builds_both_calibrate(tmp_path, monkeypatch):
    """Before: two first builds into a library that did not exist left it without calibration scores.

    The race, made deterministic: while build B reads its images (no library yet, so no lock and no
    other generator to score against), build A creates the library with its generator.
    """
    import fingerprint.build as build_module

    library = tmp_path / "lib.h5"
    images = {n: noise_pngs(tmp_path / n, 3, seed=60 + k, size=48) for k, n in enumerate(("genA", "genB"))}
    real_iter = build_module.iter_images
    state = {"raced": False}

    def racing_iter(*args, **kwargs):
        if not state["raced"]:
            state["raced"] = True
            build_reference(library, "genA", "generator", [images["genA"]], progress=False)
        return real_iter(*args, **kwargs)

    monkeypatch.setattr(build_module, "iter_images", racing_iter)
    report = build_reference(library, "genB", "generator", [images["genB"]], progress=False)
    assert report.created and state["raced"]
    with Library(library) as lib:
        assert lib.names() == ["genA", "genB"]
        scores = lib.calibration(NULL_KEY)
    assert scores.size == 6 and np.all(np.isfinite(scores))  # genB's images against genA, genA's against genB
    with h5py.File(library) as f:
        against = f[f"calibration_sources/{NULL_KEY}/reference"].asstr()[()].tolist()
    assert sorted(against) == ["genA"] * 3 + ["genB"] * 3


# ---- permission bits and owner ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o444, 0o640, 0o600, 0o664])
def test_write_keeps_permission_bits(lib_path, mode):
    """Before: 0444 became 0644 after a write (as root, who may write it)."""
    os.chmod(lib_path, mode)
    if not os.access(lib_path, os.W_OK):
        pytest.skip("this user cannot write a read-only file")
    with Library(lib_path, "r+") as lib:
        lib.add("cam2", **_camera())
    assert stat.S_IMODE(os.stat(lib_path).st_mode) == mode
    with Library(lib_path) as lib:
        assert lib.names() == ["cam", "cam2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_write_keeps_owner(lib_path):
    os.chown(lib_path, 12345, 23456)
    with Library(lib_path, "r+") as lib:
        lib.remove("cam")
    st = os.stat(lib_path)
    assert (st.st_uid, st.st_gid) == (12345, 23456)
