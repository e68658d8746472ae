"""Tests of reference_db: modes and their exact exceptions, round trips, damage, disk full, locks, crashes."""

from __future__ import annotations

import datetime
import errno
import hashlib
import inspect
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import reference_db
from reference_db import (
    Library,
    LibraryClosedError,
    LibraryError,
    LibraryExistsError,
    LibraryLockedError,
    LibraryNotFoundError,
    LibraryPermissionError,
    LibraryWriteError,
    NotALibraryError,
    ReferenceExistsError,
    ReferenceMismatchError,
    ReferenceNotFoundError,
    SchemaVersionError,
)
from reference_db import durable as durable_module
from reference_db import groups as groups_module
from reference_db import schema

REPO = Path(__file__).resolve().parents[1]
SLOW = os.environ.get("GANPRINT_SLOW") == "1"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def camera_kwargs(value: float = 1.0, n: int = 2, h: int = 6, w: int = 5, files=("a.png", "b.png")):
    return dict(
        kind="camera",
        fingerprint=np.full((h, w), value, dtype=np.float64),
        sums={"S": np.full((3, h, w), value, np.float32), "N": np.full((3, h, w), 2 * value)},
        n_images=n,
        shape=(h, w, 3),
        params={"wavelet": "db4", "levels": 4, "sigma": 3.0, "gray": True},
        sources=[(f, sha(f)) for f in files],
    )


def make_library(path: Path, **refs) -> Path:
    with Library(path, "a") as lib:
        for name, kwargs in refs.items():
            lib.add(name, **kwargs)
    return path


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


@pytest.fixture
def lib_path(tmp_path: Path) -> Path:
    return make_library(tmp_path / "refs.h5", cam1=camera_kwargs())


# ---- modes (h5py TestFileOpen style) -----------------------------------------------------------------

class TestOpen:
    def test_default_mode_is_read_only(self, lib_path):
        with Library(lib_path) as lib:
            assert lib.mode == "r"
            with pytest.raises(LibraryPermissionError, match="read-only"):
                lib.remove("cam1")
            with pytest.raises(LibraryPermissionError):
                with lib.transaction():
                    pass

    def test_reader_creates_no_lock_file(self, tmp_path):
        path = make_library(tmp_path / "x.h5")
        os.remove(str(path) + ".lock")
        with Library(path, "r") as lib:
            assert len(lib) == 0
        assert not Path(str(path) + ".lock").exists()

    @pytest.mark.parametrize("mode", ["r", "r+"])
    def test_missing_file(self, tmp_path, mode):
        path = tmp_path / "missing.h5"
        with pytest.raises(LibraryNotFoundError) as info:
            Library(path, mode)
        assert isinstance(info.value, FileNotFoundError)
        assert str(path) in str(info.value)
        assert not path.exists()

    @pytest.mark.parametrize("mode", ["a", "w-", "x"])
    def test_create(self, tmp_path, mode):
        path = tmp_path / "new.h5"
        with Library(path, mode) as lib:
            assert len(lib) == 0 and lib.names() == []
        with h5py.File(path, "r") as f:
            assert f.attrs["format"] == schema.FORMAT_MARKER
            assert f.attrs["schema_version"] == schema.SCHEMA_VERSION
            assert f.attrs["created"].endswith("Z")
            assert f.attrs["ganprint_version"] == "0.1.0"

    @pytest.mark.parametrize("mode", ["w-", "x"])
    def test_create_refuses_existing_library(self, lib_path, mode):
        before = lib_path.read_bytes()
        with pytest.raises(LibraryExistsError) as info:
            Library(lib_path, mode)
        assert isinstance(info.value, FileExistsError)
        assert lib_path.read_bytes() == before

    @pytest.mark.parametrize("mode", ["r", "r+", "a"])
    def test_existing_library(self, lib_path, mode):
        with Library(lib_path, mode) as lib:
            assert lib.names() == ["cam1"]

    @pytest.mark.parametrize("mode", ["w", "rw", "", "R", "wb", None, 1])
    def test_invalid_mode(self, lib_path, mode):
        with pytest.raises(ValueError, match="'r', 'r\\+', 'a', 'w-', 'x'"):
            Library(lib_path, mode)

    def test_invalid_lock_timeout(self, lib_path):
        with pytest.raises(ValueError, match="lock_timeout"):
            Library(lib_path, "r+", lock_timeout=-1)

    def test_missing_directory(self, tmp_path):
        with pytest.raises(LibraryNotFoundError, match="does not exist"):
            Library(tmp_path / "no" / "such.h5", "a")

    def test_directory_is_not_a_library(self, tmp_path):
        with pytest.raises(NotALibraryError, match="directory"):
            Library(tmp_path, "r")

    def test_repr_and_close(self, lib_path):
        lib = Library(lib_path, "r+")
        assert repr(lib) == f"<ganprint Library {str(lib_path)!r} mode='r+' open>"
        lib.close()
        lib.close()  # idempotent
        assert lib.closed and repr(lib).endswith("closed>")
        for call in (lib.names, lambda: lib.get("cam1"), lambda: lib.remove("cam1"), lambda: len(lib)):
            with pytest.raises(LibraryClosedError):
                call()
        with pytest.raises(LibraryClosedError):
            with lib:
                pass

    def test_context_manager_releases_lock(self, lib_path):
        with Library(lib_path, "r+"):
            pass
        with Library(lib_path, "r+", lock_timeout=0):
            pass


# ---- damaged and foreign files ---------------------------------------------------------------------

class TestForeignFiles:
    @pytest.mark.parametrize("mode", ["r", "r+", "a"])
    @pytest.mark.parametrize("content", [b"", b"hello, world\n" * 100, b"\x89PNG\r\n\x1a\n" + bytes(200)])
    def test_not_hdf5(self, tmp_path, mode, content):
        path = tmp_path / "notes.h5"
        path.write_bytes(content)
        with pytest.raises(NotALibraryError) as info:
            Library(path, mode)
        assert str(path) in str(info.value)
        assert path.read_bytes() == content
        assert temp_files(tmp_path) == []

    @pytest.mark.parametrize("mode", ["w-", "x"])
    def test_never_overwrites_other_file(self, tmp_path, mode):
        path = tmp_path / "notes.h5"
        path.write_bytes(b"precious")
        with pytest.raises(LibraryExistsError):
            Library(path, mode)
        assert path.read_bytes() == b"precious"

    @pytest.mark.parametrize("mode", ["r", "r+", "a"])
    def test_hdf5_but_not_library(self, tmp_path, mode):
        path = tmp_path / "other.h5"
        with h5py.File(path, "w") as f:
            f["data"] = np.arange(10)
        before = path.read_bytes()
        with pytest.raises(NotALibraryError, match="not a ganprint reference library"):
            Library(path, mode)
        assert path.read_bytes() == before

    @pytest.mark.parametrize("mode", ["r", "r+", "a"])
    def test_newer_schema(self, lib_path, mode):
        with h5py.File(lib_path, "r+") as f:
            f.attrs["schema_version"] = schema.SCHEMA_VERSION + 1
        before = lib_path.read_bytes()
        with pytest.raises(SchemaVersionError, match="upgrade ganprint") as info:
            Library(lib_path, mode)
        assert str(lib_path) in str(info.value)
        assert lib_path.read_bytes() == before

    def test_bad_schema_version(self, lib_path):
        with h5py.File(lib_path, "r+") as f:
            f.attrs["schema_version"] = "one"
        with pytest.raises(NotALibraryError, match="schema_version"):
            Library(lib_path)

    @pytest.mark.parametrize("keep", [8, 100, 0.5, 0.9, -1])
    @pytest.mark.parametrize("mode", ["r", "a"])
    def test_truncated(self, tmp_path, keep, mode):
        path = make_library(tmp_path / "t.h5", cam1=camera_kwargs(h=40, w=40), cam2=camera_kwargs(h=40, w=40))
        data = path.read_bytes()
        n = keep if isinstance(keep, int) and keep > 0 else (len(data) - 1 if keep == -1 else int(len(data) * keep))
        path.write_bytes(data[:n])
        try:
            with Library(path, mode) as lib:  # may open if only data blocks were cut off
                for name in lib.names():
                    lib.get(name)
        except NotALibraryError as err:
            assert str(path) in str(err)
        assert path.read_bytes() == data[:n]


# ---- round trips ---------------------------------------------------------------------------------

class TestRoundTrip:
    def test_add_get(self, tmp_path):
        clock = lambda: datetime.datetime(2025, 1, 31, 12, 0, 5, tzinfo=datetime.timezone.utc)  # noqa: E731
        kwargs = camera_kwargs(value=0.25)
        with Library(tmp_path / "x.h5", "a", version="9.9.9", clock=clock) as lib:
            lib.add("Nikon D70 #1", **kwargs)
            assert "Nikon D70 #1" in lib and len(lib) == 1 and list(lib) == ["Nikon D70 #1"]
            ref = lib.get("Nikon D70 #1")
        info = ref.info
        assert (ref.name, ref.kind, ref.n_images) == ("Nikon D70 #1", "camera", 2)
        assert info.shape == (6, 5, 3) and info.fingerprint_shape == (6, 5)
        assert info.params == {"wavelet": "db4", "levels": 4, "sigma": 3.0, "gray": True}
        assert [type(v) for v in (info.params["levels"], info.params["sigma"], info.params["gray"])] == \
            [int, float, bool]
        assert info.created == info.updated == "2025-01-31T12:00:05Z"
        assert info.ganprint_version == "9.9.9"
        assert info.sources == [("a.png", sha("a.png")), ("b.png", sha("b.png"))] and info.n_sources == 2
        assert ref.fingerprint.dtype == np.float32
        np.testing.assert_array_equal(ref.fingerprint, kwargs["fingerprint"])
        assert set(ref.sums) == {"S", "N"} and info.sum_names == ("N", "S")
        assert ref.sums["S"].dtype == np.float32 and ref.sums["N"].dtype == np.float64
        np.testing.assert_array_equal(ref.sums["N"], kwargs["sums"]["N"])
        with Library(tmp_path / "x.h5") as lib:
            assert lib.get("Nikon D70 #1", with_sums=False).sums == {}
            assert lib.info("Nikon D70 #1", with_sources=False).sources == []

    def test_generator_chw(self, tmp_path):
        fp = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32)
        with Library(tmp_path / "g.h5", "x") as lib:
            lib.add("stylegan2", kind="generator", fingerprint=fp, sums={"sum": fp * 4}, n_images=4,
                    shape=(8, 8, 3), params={"residual": "noise_extract"}, sources=[])
        with Library(tmp_path / "g.h5") as lib:
            ref = lib.get("stylegan2")
        np.testing.assert_array_equal(ref.fingerprint, fp)
        assert ref.kind == "generator" and ref.info.sources == []

    def test_documented_snippet_runs(self, tmp_path, monkeypatch):
        doc = (REPO / "docs" / "reference_db.md").read_text()
        snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
        assert len(snippet.strip().splitlines()) == 5
        make_library(tmp_path / "refs.h5", Nikon_D70_0=camera_kwargs())
        monkeypatch.chdir(tmp_path)
        namespace: dict = {}
        exec(snippet, namespace)
        assert namespace["n_images"] == 2 and namespace["fingerprint"].shape == (6, 5)

    @pytest.mark.parametrize("layout", ["index", "single_file"])
    def test_plain_h5py_reads_fingerprint(self, lib_path, tmp_path, monkeypatch, layout):
        # The five lines of docs/reference_db.md, from another working directory.
        if layout == "single_file":
            with Library(lib_path) as lib:
                lib.export(tmp_path / "single.h5")
            lib_path = tmp_path / "single.h5"
        monkeypatch.chdir("/")
        with h5py.File(lib_path, "r") as f:
            assert f.attrs["format"] == "ganprint-reference-library"
            assert f.attrs["schema_version"] == (2 if layout == "index" else 1)
            ref = f["references/cam1"]
            fingerprint = ref["fingerprint"][()]
            n, kind = int(ref.attrs["n_images"]), ref.attrs["kind"]
            shas = ref["sources/sha256"].asstr()[()]
            names = ref["sources/file_name"].asstr()[()]
            sigma = ref["params"].attrs["sigma"]
        assert fingerprint.shape == (6, 5) and fingerprint.dtype == np.float32
        assert (n, kind, sigma) == (2, "camera", 3.0)
        assert list(shas) == [sha("a.png"), sha("b.png")] and list(names) == ["a.png", "b.png"]

    def test_no_pickle_no_object_references(self, lib_path):
        kinds = set()
        files = [lib_path, *Path(f"{lib_path}.d").iterdir()]
        assert len(files) == 2  # the index and one reference file
        for path in files:
            with h5py.File(path, "r") as f:
                f.visititems(lambda _, obj: kinds.add(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
                f.visititems(lambda _, obj: [kinds.add(np.asarray(v).dtype.kind) for v in obj.attrs.values()])
            assert b"pickle" not in path.read_bytes()
        assert "f" in kinds and kinds <= {"f", "i", "S", "O", "U", "b"}

    def test_update(self, lib_path):
        times = iter([datetime.datetime(2025, 2, 1, tzinfo=datetime.timezone.utc)])
        with Library(lib_path, "r+", clock=lambda: next(times)) as lib:
            created = lib.info("cam1").created
            new = camera_kwargs(value=7.0)
            lib.update("cam1", fingerprint=new["fingerprint"], sums=new["sums"], n_images=4,
                       sources_added=[("c.png", sha("c.png")), ("d.png", sha("d.png"))],
                       kind="camera", shape=(6, 5, 3), params=new["params"])
            ref = lib.get("cam1")
        assert ref.n_images == 4 and ref.info.n_sources == 4
        assert [f for f, _ in ref.info.sources] == ["a.png", "b.png", "c.png", "d.png"]
        assert ref.info.created == created and ref.info.updated == "2025-02-01T00:00:00Z"
        np.testing.assert_array_equal(ref.fingerprint, np.full((6, 5), 7.0))
        np.testing.assert_array_equal(ref.sums["S"], np.full((3, 6, 5), 7.0))
        assert ref.sums["S"].dtype == np.float32  # the stored dtype is kept

    def test_update_refuses_counted_sha(self, lib_path):
        before = lib_path.read_bytes()
        new = camera_kwargs(value=7.0)
        with Library(lib_path, "r+") as lib:
            with pytest.raises(ReferenceExistsError, match="'copy of a.png'.*'a.png'"):
                lib.update("cam1", fingerprint=new["fingerprint"], sums=new["sums"], n_images=4,
                           sources_added=[("c.png", sha("c.png")), ("copy of a.png", sha("a.png"))])
            with pytest.raises(ReferenceExistsError, match="same SHA-256"):
                lib.update("cam1", fingerprint=new["fingerprint"], sums=new["sums"], n_images=4,
                           sources_added=[("c.png", sha("c.png")), ("c2.png", sha("c.png"))])
        assert lib_path.read_bytes() == before

    def test_add_refuses_duplicate_sources(self, tmp_path):
        with Library(tmp_path / "x.h5", "a") as lib:
            with pytest.raises(ReferenceExistsError, match="same SHA-256"):
                lib.add("c", **{**camera_kwargs(), "sources": [("a", sha("a")), ("b", sha("a"))]})
            assert len(lib) == 0

    @pytest.mark.parametrize("change, pattern", [
        (dict(kind="generator"), "existing kind 'camera' vs new 'generator'"),
        (dict(shape=(6, 5)), r"existing image shape \(6, 5, 3\) vs new \(6, 5\)"),
        (dict(params={"wavelet": "db8", "levels": 4, "sigma": 3.0, "gray": True}),
         "wavelet: existing 'db4' vs new 'db8'"),
        (dict(params={"wavelet": "db4", "levels": 4, "sigma": 3.0}), "gray"),
        (dict(fingerprint=np.zeros((5, 6))), r"existing fingerprint shape \(6, 5\) vs new \(5, 6\)"),
        (dict(sums={"S": np.zeros((3, 6, 5))}), r"existing sums \['N', 'S'\] vs new \['S'\]"),
        (dict(sums={"S": np.zeros((1, 6, 5)), "N": np.zeros((3, 6, 5))}), "sum 'S'"),
        (dict(n_images=2), "at least the stored count"),
    ])
    def test_update_mismatch(self, lib_path, change, pattern):
        before = lib_path.read_bytes()
        new = camera_kwargs(value=3.0)
        kwargs = dict(fingerprint=new["fingerprint"], sums=new["sums"], n_images=3,
                      sources_added=[("c.png", sha("c.png"))])
        kwargs.update(change)
        with Library(lib_path, "r+") as lib:
            with pytest.raises((ReferenceMismatchError, ValueError), match=pattern):
                lib.update("cam1", **kwargs)
        assert lib_path.read_bytes() == before

    def test_add_existing_name(self, lib_path):
        with Library(lib_path, "r+") as lib:
            with pytest.raises(ReferenceExistsError, match="existing camera, 2 images"):
                lib.add("cam1", **camera_kwargs())

    @pytest.mark.parametrize("bad, exc", [
        (dict(kind="phone"), ValueError), (dict(fingerprint=np.zeros(3, complex)), TypeError),
        (dict(fingerprint=1.0), ValueError), (dict(n_images=-1), ValueError), (dict(n_images=1.5), TypeError),
        (dict(n_images=1), ValueError), (dict(shape=(0, 5)), ValueError), (dict(shape=5), TypeError),
        (dict(params={"x": None}), TypeError), (dict(params={"x": [1, 2]}), TypeError),
        (dict(sums={"a/b": np.zeros(3)}), ValueError), (dict(sums=[1]), TypeError),
        (dict(sources=[("a.png", "xyz")]), ValueError), (dict(sources=["a.png"]), TypeError),
    ])
    def test_add_bad_arguments(self, tmp_path, bad, exc):
        with Library(tmp_path / "x.h5", "a") as lib:
            with pytest.raises(exc):
                lib.add("c", **{**camera_kwargs(), **bad})
            assert len(lib) == 0

    @pytest.mark.parametrize("name", ["", "a/b", ".hidden", "..", "tab\there", "nl\n", 3])
    def test_bad_names(self, lib_path, name):
        with Library(lib_path, "r+") as lib:
            with pytest.raises((ValueError, TypeError)):
                lib.add(name, **camera_kwargs())
            with pytest.raises((ValueError, TypeError)):
                lib.get(name)
            with pytest.raises((ValueError, TypeError)):
                lib.rename("cam1", name)
            assert name not in lib

    def test_unicode_name(self, tmp_path):
        with Library(tmp_path / "x.h5", "a") as lib:
            lib.add("Appareil été 📷", **camera_kwargs(files=("é.png",)), )
        with Library(tmp_path / "x.h5") as lib:
            assert lib.names() == ["Appareil été 📷"]
            assert lib.info("Appareil été 📷").sources[0][0] == "é.png"

    def test_missing_name(self, lib_path):
        with Library(lib_path) as lib:
            with pytest.raises(ReferenceNotFoundError) as info:
                lib.get("cam2")
        msg = str(info.value)
        assert str(lib_path) in msg and "'cam2'" in msg and "cam1" in msg and "did you mean 'cam1'" in msg
        assert isinstance(info.value, KeyError)

    def test_missing_name_lists_briefly(self, tmp_path):
        refs = {f"camera{i:02d}": camera_kwargs(h=2, w=2) for i in range(15)}
        path = make_library(tmp_path / "x.h5", **refs)
        with Library(path) as lib:
            for call in (lib.get, lib.info, lib.remove):
                with pytest.raises((ReferenceNotFoundError, LibraryPermissionError)):
                    call("zzz")
            with pytest.raises(ReferenceNotFoundError, match=r"holds 15: .*\(5 more\)"):
                lib.get("zzz")
        with Library(tmp_path / "empty.h5", "a") as lib:
            with pytest.raises(ReferenceNotFoundError, match="empty"):
                lib.info("x")

    def test_remove_rename(self, lib_path):
        with Library(lib_path, "r+") as lib:
            lib.add("cam2", **camera_kwargs(value=2.0))
            lib.rename("cam1", "old")
            lib.rename("old", "old")
            assert lib.names() == ["cam2", "old"]
            with pytest.raises(ReferenceExistsError, match="exists already"):
                lib.rename("old", "cam2")
            with pytest.raises(ReferenceNotFoundError):
                lib.rename("cam1", "x")
            lib.remove("cam2")
            with pytest.raises(ReferenceNotFoundError):
                lib.remove("cam2")
        with Library(lib_path) as lib:
            assert lib.names() == ["old"]
            np.testing.assert_array_equal(lib.get("old").fingerprint, np.ones((6, 5)))

    def test_infos_reads_metadata(self, tmp_path):
        path = make_library(tmp_path / "x.h5", b=camera_kwargs(), a=camera_kwargs(files=("z",)))
        with Library(path) as lib:
            infos = lib.infos()
        assert [i.name for i in infos] == ["a", "b"]
        assert [i.n_sources for i in infos] == [1, 2] and all(i.sources == [] for i in infos)

    def test_removing_reclaims_space(self, tmp_path):
        def size(path):  # the index and its folder of data files
            return path.stat().st_size + sum(p.stat().st_size for p in Path(f"{path}.d").iterdir())

        path = make_library(tmp_path / "x.h5", big=camera_kwargs(h=200, w=200))
        before = size(path)
        for _ in range(3):
            with Library(path, "r+") as lib:
                lib.remove("big")
                lib.add("big", **camera_kwargs(h=200, w=200))
                lib.update("big", fingerprint=np.zeros((200, 200)), sums=camera_kwargs(h=200, w=200)["sums"],
                           n_images=lib.info("big").n_images + 1, sources_added=[])
        assert size(path) < 1.2 * before and len(data_files(path)) == 1

    def test_symlink_stays_a_symlink(self, tmp_path):
        real = make_library(tmp_path / "real.h5", cam1=camera_kwargs())
        link = tmp_path / "link.h5"
        link.symlink_to(real)
        with Library(link, "r+") as lib:
            lib.remove("cam1")
        assert link.is_symlink()
        with Library(real) as lib:
            assert len(lib) == 0


# ---- transactions --------------------------------------------------------------------------------

class TestTransaction:
    def test_one_commit(self, lib_path, monkeypatch):
        calls = []
        real_replace = durable_module.replace
        monkeypatch.setattr(durable_module, "replace", lambda a, b: (calls.append(b), real_replace(a, b)))
        with Library(lib_path, "r+") as lib:
            with lib.transaction() as same:
                assert same is lib
                lib.add("cam2", **camera_kwargs())
                lib.rename("cam1", "cam0")
                lib.remove("cam2")
                assert lib.names() == ["cam0"]  # own writes are visible
                with Library(lib_path) as reader:
                    assert reader.names() == ["cam1"]
            with lib.transaction():  # no writes: no commit
                pass
        assert len(calls) == 1
        with Library(lib_path) as lib:
            assert lib.names() == ["cam0"]
        assert temp_files(lib_path.parent) == []

    def test_exception_discards(self, lib_path):
        before = lib_path.read_bytes()
        with Library(lib_path, "r+") as lib:
            with pytest.raises(KeyError, match="boom"):
                with lib.transaction():
                    lib.remove("cam1")
                    raise KeyError("boom")
            assert lib.names() == ["cam1"]
        assert lib_path.read_bytes() == before
        assert temp_files(lib_path.parent) == []

    def test_nested_refused(self, lib_path):
        with Library(lib_path, "r+") as lib, lib.transaction():
            with pytest.raises(RuntimeError, match="nested"):
                with lib.transaction():
                    pass

    def test_validation_error_inside_keeps_transaction(self, lib_path):
        with Library(lib_path, "r+") as lib:
            with lib.transaction():
                lib.add("cam2", **camera_kwargs())
                with pytest.raises(ReferenceExistsError):
                    lib.add("cam2", **camera_kwargs())
            assert lib.names() == ["cam1", "cam2"]

    def test_close_inside_transaction(self, lib_path):
        before = lib_path.read_bytes()
        lib = Library(lib_path, "r+")
        with pytest.raises(LibraryClosedError):
            with lib.transaction():
                lib.remove("cam1")
                lib.close()
        assert lib_path.read_bytes() == before


# ---- disk full, read-only location, stale temporaries -----------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_then_enospc(g, **kwargs):
    """A reference file half written when the disk fills up."""
    g.create_dataset("fingerprint", data=kwargs["fingerprint"])
    _enospc()


def data_files(library: Path) -> list[str]:
    """The data files in the folder of ``library`` (schema 2)."""
    folder = Path(f"{library}.d")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class TestWriteFailures:
    @pytest.mark.parametrize("where, patch", [("write_reference", _write_then_enospc), ("fsync", _enospc),
                                              ("replace", _enospc)])
    @pytest.mark.parametrize("in_transaction", [False, True])
    def test_disk_full_leaves_library_unchanged(self, lib_path, monkeypatch, where, patch, in_transaction):
        before, files = lib_path.read_bytes(), data_files(lib_path)
        with Library(lib_path, "r+") as lib:
            monkeypatch.setattr(groups_module if where == "write_reference" else durable_module, where, patch)
            with pytest.raises(LibraryWriteError, match="No space left.*unchanged") as info:
                if in_transaction:
                    with lib.transaction():
                        lib.add("cam2", **camera_kwargs())
                        lib.remove("cam1")
                else:
                    lib.add("cam2", **camera_kwargs())
            assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
            assert lib_path.read_bytes() == before and data_files(lib_path) == files  # nothing left behind
            assert temp_files(lib_path.parent) == []
            assert lib.names() == ["cam1"]
            monkeypatch.undo()
            lib.add("cam2", **camera_kwargs())  # the library still works
        with Library(lib_path) as lib:
            assert lib.names() == ["cam1", "cam2"]

    def test_hdf5_write_error_inside_transaction(self, lib_path, monkeypatch):
        before = lib_path.read_bytes()
        with Library(lib_path, "r+") as lib:
            with pytest.raises(LibraryError, match="nothing was committed"):
                with lib.transaction():
                    lib.add("cam2", **camera_kwargs())
                    monkeypatch.setattr(groups_module, "append_sources", _enospc)
                    with pytest.raises(LibraryWriteError):
                        lib.add("cam3", **camera_kwargs())
                    with pytest.raises(LibraryError, match="earlier write"):
                        lib.remove("cam1")
        assert lib_path.read_bytes() == before
        assert temp_files(lib_path.parent) == []

    def test_read_only_directory(self, lib_path, monkeypatch):
        before = lib_path.read_bytes()
        monkeypatch.setattr(durable_module, "can_write", lambda path: False)
        for mode in ("r+", "a"):
            with pytest.raises(LibraryPermissionError, match="not writable") as info:
                Library(lib_path, mode)
            assert isinstance(info.value, PermissionError)
        with pytest.raises(LibraryPermissionError):
            Library(lib_path.parent / "new.h5", "a")
        assert not (lib_path.parent / "new.h5").exists()
        with Library(lib_path) as lib:  # reading still works
            assert lib.names() == ["cam1"]
        assert lib_path.read_bytes() == before

    def test_permission_denied_during_write(self, lib_path, monkeypatch):
        before = lib_path.read_bytes()

        def denied(path, mode=0o600):
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS))

        with Library(lib_path, "r+") as lib:
            monkeypatch.setattr(durable_module, "create_exclusive", denied)
            with pytest.raises(LibraryPermissionError, match="unchanged"):
                lib.remove("cam1")
        assert lib_path.read_bytes() == before and temp_files(lib_path.parent) == []

    @pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only directory")
    def test_real_read_only_directory(self, tmp_path):
        path = make_library(tmp_path / "x.h5", cam1=camera_kwargs())
        os.chmod(tmp_path, 0o555)
        try:
            with pytest.raises(LibraryPermissionError):
                Library(path, "r+")
            with Library(path) as lib:
                assert lib.names() == ["cam1"]
        finally:
            os.chmod(tmp_path, 0o755)

    def test_stale_temporaries_removed_by_next_writer(self, lib_path):
        stale = lib_path.parent / f".{lib_path.name}.tmp-99999-deadbeef"
        stale.write_bytes(b"half written")
        other = lib_path.parent / ".other.h5.tmp-1-ab"
        other.write_bytes(b"not ours")
        with Library(lib_path):
            assert stale.exists()  # readers touch nothing
        with Library(lib_path, "r+"):
            pass
        assert not stale.exists() and other.exists()

    def test_file_mode_kept(self, lib_path):
        os.chmod(lib_path, 0o640)
        with Library(lib_path, "r+") as lib:
            lib.remove("cam1")
        assert (lib_path.stat().st_mode & 0o777) == 0o640


# ---- concurrency ---------------------------------------------------------------------------------

class TestConcurrency:
    def test_second_writer_times_out(self, lib_path):
        with Library(lib_path, "r+"):
            with pytest.raises(LibraryLockedError, match="another process.*lock_timeout") as info:
                Library(lib_path, "a", lock_timeout=0.2)
            assert str(lib_path) in str(info.value) and f"process {os.getpid()}" in str(info.value)
            with Library(lib_path) as reader:  # readers are never blocked
                assert reader.names() == ["cam1"]

    def test_second_writer_waits(self, lib_path):
        first = Library(lib_path, "r+")
        timer = threading.Timer(0.2, first.close)
        timer.start()
        try:
            with Library(lib_path, "r+", lock_timeout=10) as second:
                second.remove("cam1")
        finally:
            timer.join()
        with Library(lib_path) as lib:
            assert len(lib) == 0

    def test_reader_sees_old_content_while_writer_writes(self, lib_path):
        reader = Library(lib_path)
        with Library(lib_path, "r+") as writer:
            with writer.transaction():
                writer.update("cam1", fingerprint=np.full((6, 5), 9.0), sums=camera_kwargs(9.0)["sums"],
                              n_images=3, sources_added=[("c.png", sha("c.png"))])
                writer.add("cam2", **camera_kwargs())
                with Library(lib_path) as during:
                    assert during.names() == ["cam1"] and during.info("cam1").n_images == 2
            with Library(lib_path) as after:
                assert after.names() == ["cam1", "cam2"] and after.info("cam1").n_images == 3
        # a reader opened before the commit keeps its snapshot
        assert reader.names() == ["cam1"]
        np.testing.assert_array_equal(reader.get("cam1").fingerprint, np.ones((6, 5)))
        reader.close()

    def test_lock_held_by_other_process(self, lib_path):
        code = textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(REPO)!r})
            from reference_db import Library
            lib = Library({str(lib_path)!r}, "r+")
            print("locked", flush=True)
            time.sleep(30)
        """)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "locked"
            with pytest.raises(LibraryLockedError, match=f"process {child.pid}"):
                Library(lib_path, "r+", lock_timeout=0.1)
            child.kill()  # the kernel drops the flock of a dead process
            child.wait()
            with Library(lib_path, "r+", lock_timeout=1) as lib:
                lib.remove("cam1")
        finally:
            child.kill()
            child.wait()


# ---- update with sources_removed, calibration_scores, clear_calibration ---------------------------

def test_update_with_sources_removed_keeps_created(tmp_path):
    days = iter(range(1, 10))
    clock = lambda: datetime.datetime(2025, 1, next(days), tzinfo=datetime.timezone.utc)  # noqa: E731
    with Library(tmp_path / "x.h5", "a", clock=clock) as lib:
        lib.add("cam", **camera_kwargs(files=("a.png", "b.png", "c.png"), n=3))
        new = {k: v for k, v in camera_kwargs(2.0).items() if k in ("fingerprint", "sums")}
        lib.update("cam", **new, n_images=2, sources_added=[], sources_removed=[sha("b.png")])
        info = lib.info("cam")
        assert info.sources == [("a.png", sha("a.png")), ("c.png", sha("c.png"))] and info.n_images == 2
        assert (info.created, info.updated) == ("2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z")  # day 1: the index
        with pytest.raises(ValueError, match="no recorded source"):
            lib.update("cam", **new, n_images=2, sources_added=[], sources_removed=[sha("b.png")])
        with pytest.raises(ValueError, match="at least the stored count"):  # 2 - 1 + 0 > 0 is fine, 0 is not
            lib.update("cam", **new, n_images=0, sources_added=[], sources_removed=[sha("a.png")])
        # removed and added back in one call: counted once
        lib.update("cam", **new, n_images=2, sources_added=[("a2.png", sha("a.png"))], sources_removed=[sha("a.png")])
        assert lib.info("cam").sources == [("c.png", sha("c.png")), ("a2.png", sha("a.png"))]


def test_clear_calibration_is_one_commit_and_keeps_other_keys(tmp_path):
    path = tmp_path / "x.h5"
    with Library(path, "a") as lib:
        lib.add_calibration("k", [1.0, 2.0], sha256=[sha("a"), sha("b")], against=["g", "g"])
        lib.add_calibration("k", [3.0])  # unkeyed
        lib.add_calibration("j", [9.0])
        assert lib.calibration_scores("k") == [(sha("a"), "g", 1.0), (sha("b"), "g", 2.0)]
    with Library(path, "r+") as lib:
        with pytest.raises(RuntimeError, match="boom"), lib.transaction():
            assert lib.clear_calibration("k") == 3
            assert lib.calibration("k").size == 0  # visible inside the transaction
            raise RuntimeError("boom")
        assert list(lib.calibration("k")) == [1.0, 2.0, 3.0]  # discarded: unchanged
        with lib.transaction():
            assert lib.clear_calibration("k") == 3
            assert lib.add_calibration("k", [5.0], sha256=[sha("a")], against=["g"]) == 1  # the pair is free again
    with Library(path) as lib:
        assert list(lib.calibration("k")) == [5.0] and list(lib.calibration("j")) == [9.0]
        assert lib.calibration_scores("k") == [(sha("a"), "g", 5.0)]
        with pytest.raises(LibraryPermissionError):
            lib.clear_calibration("k")
    with Library(path, "r+") as lib:
        assert lib.clear_calibration("nothing-here") == 0
    assert data_files(path) == _named_files(path)  # no data file left behind


def test_owned_calibration_follows_its_reference_on_rename_and_goes_with_it_on_remove(tmp_path):
    """Statistics of one reference (``owner=``) are renamed with it and deleted with it, in its commit;
    the library's own datasets and those of other references are left as they are."""
    path = tmp_path / "x.h5"
    with Library(path, "a") as lib:
        lib.add("g:1", **camera_kwargs())
        lib.add("other", **camera_kwargs(2.0))
        lib.add_calibration("gnull:g:1:aligned:8x8", [1.0, 2.0], sha256=[sha("a"), sha("b")], against=["g:1", "g:1"],
                            owner="g:1")
        lib.add_calibration("gjpeg:g:1:q90", [4.0], owner="g:1")
        lib.add_calibration("gnull:other:aligned:8x8", [7.0], owner="other")
        lib.add_calibration("library_null", [5.0], sha256=[sha("c")], against=["g:1"])  # the library's: never moved
        with pytest.raises(ValueError, match="must read"):
            lib.add_calibration("gnull:x:aligned", [1.0], owner="g:1")  # the key does not name its owner
        with pytest.raises(ValueError, match="belongs to"):
            lib.add_calibration("gnull:other:aligned:8x8", [1.0], owner="other:aligned")  # another owner's
    with Library(path, "r+") as lib:
        lib.rename("g:1", "g2")
        assert lib.calibration("gnull:g:1:aligned:8x8").size == 0 and lib.calibration("gjpeg:g:1:q90").size == 0
        assert list(lib.calibration("gnull:g2:aligned:8x8")) == [1.0, 2.0] and list(lib.calibration("gjpeg:g2:q90")) == [4.0]
        assert lib.calibration_scores("gnull:g2:aligned:8x8") == [(sha("a"), "g2", 1.0), (sha("b"), "g2", 2.0)]
        assert lib.calibration_scores("library_null") == [(sha("c"), "g:1", 5.0)]
        with pytest.raises(RuntimeError, match="boom"), lib.transaction():
            lib.remove("g2")
            assert lib.calibration("gnull:g2:aligned:8x8").size == 0  # gone inside the transaction
            raise RuntimeError("boom")
        assert list(lib.calibration("gnull:g2:aligned:8x8")) == [1.0, 2.0]  # discarded with it
        lib.remove("g2")
        lib.add("g2", **camera_kwargs(3.0))  # a new reference of the same name inherits nothing
        assert lib.calibration("gnull:g2:aligned:8x8").size == 0 and lib.calibration("gjpeg:g2:q90").size == 0
        assert lib.add_calibration("gnull:g2:aligned:8x8", [1.0], sha256=[sha("a")], against=["g2"], owner="g2") == 1
    with Library(path) as lib:
        assert list(lib.calibration("gnull:other:aligned:8x8")) == [7.0] and list(lib.calibration("library_null")) == [5.0]
        assert list(lib.calibration("gnull:g2:aligned:8x8")) == [1.0]
    assert data_files(path) == _named_files(path)  # no data file left behind


# ---- crash safety --------------------------------------------------------------------------------

def _writer_step(lib):
    """One step of the crash-test writer: a transaction of three writes, sometimes two renames."""
    import hashlib

    import numpy as np

    if "r2" in lib:
        lib.rename("r2", "r")
    v = lib.info("r", with_sources=False).n_images + 1
    fp = np.full((128, 128), v, np.float32)
    with lib.transaction():
        lib.update("r", fingerprint=fp, sums={"S": np.full((1, 128, 128), v), "N": np.ones((1, 128, 128))}, n_images=v,
                   sources_added=[(f"{v}.png", hashlib.sha256(str(v).encode()).hexdigest())])
        lib.clear_calibration("z")  # the calibration replaced in the same commit
        lib.add_calibration("z", np.full(v, float(v)))
        if "tmp" in lib:
            lib.remove("tmp")
        else:
            lib.add("tmp", kind="generator", fingerprint=fp, sums={"sum": fp[None] * v}, n_images=v, shape=(128, 128),
                    params={}, sources=[])
    if v % 3 == 0:
        lib.rename("r", "r2")  # two single commits: "r2" is a legal state in between
        lib.rename("r2", "r")


WRITER = """
import sys
sys.path.insert(0, {repo!r})
from reference_db import Library
{step}
with Library({path!r}, "a", lock_timeout=30) as lib:
    print("ready", flush=True)
    while True:
        _writer_step(lib)
"""


def _check_consistent(path: Path) -> int:
    """Open the library and check the invariants every committed state satisfies; return the count."""
    with Library(path) as lib:
        main = "r2" if "r2" in lib else "r"  # the writer renames r -> r2 -> r in two commits
        assert lib.names() in ([main], [main, "tmp"])
        ref = lib.get(main)
        v = ref.n_images
        assert ref.info.n_sources == v and len(ref.info.sources) == v
        assert ref.info.sources[-1][1] == hashlib.sha256(str(v).encode()).hexdigest()
        assert np.all(ref.fingerprint == v) and np.all(ref.sums["S"] == v)
        if "tmp" in lib:
            assert lib.info("tmp").n_images == v
        z = lib.calibration("z")
        assert (z.size == 0 and v == 1) or (z.size == v and np.all(z == v))  # v == 1: before the first step
    return v


def _named_files(index: Path) -> list[str]:
    """The data files that the index ``index`` links to (read with plain h5py)."""
    with h5py.File(index, "r") as f:
        found = [f["references"].get(n, getlink=True) for n in f["references"]]
        found.append(f.get("calibration", getlink=True))
    return sorted({link.filename.split("/")[-1] for link in found if isinstance(link, h5py.ExternalLink)})


def _crash_loop(tmp_path: Path, kills: int) -> None:
    path = tmp_path / "crash.h5"
    with Library(path, "x") as lib:
        fp = np.ones((128, 128), np.float32)
        lib.add("r", kind="camera", fingerprint=fp, sums={"S": np.ones((1, 128, 128)), "N": np.ones((1, 128, 128))},
                n_images=1,
                shape=(128, 128), params={}, sources=[("1.png", hashlib.sha256(b"1").hexdigest())])
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO), path=str(path), step=inspect.getsource(_writer_step)))
    rnd = random.Random(20250131)
    last = 1
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            ready, _, _ = select.select([child.stdout], [], [], 30)
            assert ready and child.stdout.readline().strip() == "ready"
            time.sleep(rnd.uniform(0.0, 0.25))
            v = _check_consistent(path)  # a reader while the writer writes
            assert v >= last
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        v = _check_consistent(path)
        assert v >= last
        last = v
        # no stale lock, and a new write succeeds
        with Library(path, "r+", lock_timeout=2) as lib:
            _writer_step(lib)
        assert temp_files(tmp_path) == []  # the writer removed any temporary file of the killed one
        assert data_files(path) == _named_files(path)  # and every data file no index names
        last = _check_consistent(path)
    assert last > kills  # the writers made progress


def test_crash_safety_quick(tmp_path):
    _crash_loop(tmp_path, kills=5)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow test: set GANPRINT_SLOW=1 to run")
def test_crash_safety_many_kills(tmp_path):
    _crash_loop(tmp_path, kills=25)


def test_public_api():
    assert set(reference_db.__all__) >= {"Library", "Reference", "ReferenceInfo", "LibraryError", "MODES",
                                         "SCHEMA_VERSION"}
    assert reference_db.MODES == ("r", "r+", "a", "w-", "x")
