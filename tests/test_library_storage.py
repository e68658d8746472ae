"""Schema 2 storage (issue 15): an index plus one file per reference, commits that write what
changed, garbage collection that waits for readers, schema 1 read and upgraded, export to one file."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

import reference_db.durable as durable_module
from reference_db import SCHEMA_VERSION, DamagedReferenceError, Library, LibraryExistsError
from test_reliability import run_ganprint


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def camera(value: float = 1.0, h: int = 8, w: int = 6, files=("a.png",)) -> dict:
    return dict(kind="camera", fingerprint=np.full((h, w), value, np.float32),
                sums={"S": np.full((3, h, w), value, np.float32), "N": np.ones((3, h, w), np.float64)},
                n_images=len(files), shape=(h, w, 3), params={"sigma": 3.0, "wavelet": "db8"},
                sources=[(f, sha(f"{f}{value}")) for f in files])


def links(index: Path) -> dict[str, str]:
    """name -> data file name, read from the index with plain h5py."""
    with h5py.File(index, "r") as f:
        out = {}
        for name in f["references"]:
            link = f["references"].get(name, getlink=True)
            assert isinstance(link, h5py.ExternalLink) and link.path == "/"
            folder, file = link.filename.split("/")
            assert folder == f"{index.name}.d"
            out[name] = file
    return out


def data_files(index: Path) -> dict[str, str]:
    """file name -> SHA-256 of its bytes, for every file of the library's folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(f"{index}.d").iterdir()}


@pytest.fixture
def lib3(tmp_path) -> Path:
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib:
        for k, name in enumerate("abc"):
            lib.add(name, **camera(float(k + 1)))
    return path


def test_layout(lib3):
    names = links(lib3)
    assert sorted(names) == ["a", "b", "c"] and len(set(names.values())) == 3
    assert sorted(data_files(lib3)) == sorted(names.values())
    with h5py.File(lib3, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION == 2
        assert f["references/b"]["fingerprint"][0, 0] == 2.0  # plain h5py follows the link
    with Library(lib3) as lib:
        assert lib.schema_version == 2 and lib.get("c").fingerprint[0, 0] == 3.0


def test_a_commit_writes_only_what_changed(lib3):
    before_links, before_files = links(lib3), data_files(lib3)
    with Library(lib3, "r+") as lib:
        lib.add("d", **camera(4.0))
    now_links, now_files = links(lib3), data_files(lib3)
    assert {k: now_links[k] for k in "abc"} == before_links  # untouched, not even rewritten
    assert {k: now_files[k] for k in before_files} == before_files and len(now_files) == 4

    with Library(lib3, "r+") as lib:
        lib.rename("a", "e")  # the index only
    renamed = links(lib3)
    assert renamed["e"] == now_links["a"] and "a" not in renamed and data_files(lib3) == now_files

    with Library(lib3, "r+") as lib:
        lib.update("b", fingerprint=np.full((8, 6), 9.0), sums=camera(9.0)["sums"], n_images=2,
                   sources_added=[("z.png", sha("z"))])
        created = lib.info("b").created
    updated = links(lib3)
    assert updated["b"] != renamed["b"] and renamed["b"] not in data_files(lib3)  # a new file; the old is gone
    assert {k: updated[k] for k in "cde"} == {k: renamed[k] for k in "cde"}
    with Library(lib3) as lib:
        ref = lib.get("b")
        assert ref.n_images == 2 and ref.fingerprint[0, 0] == 9.0 and ref.info.created == created
        assert [f for f, _ in ref.info.sources] == ["a.png", "z.png"]
        assert ref.sums["S"].dtype == np.float32 and ref.sums["N"].dtype == np.float64

    with Library(lib3, "r+") as lib:
        lib.remove("c")
    assert updated["c"] not in data_files(lib3) and sorted(links(lib3)) == ["b", "d", "e"]


def test_garbage_of_a_killed_writer_is_collected(lib3):
    folder = Path(f"{lib3}.d")
    strays = [folder / f"ref-{'0' * 32}.h5", folder / f"cal-{'f' * 32}.h5", folder / "ref-1234.h5.tmp-99-ab"]
    for p in strays:
        p.write_bytes(b"half written by a killed writer")
    notes = folder / "notes.txt"
    notes.write_text("not ours")
    with Library(lib3) as lib:  # readers touch nothing
        assert lib.names() == ["a", "b", "c"]
    assert all(p.exists() for p in strays)
    with Library(lib3, "r+"):
        pass
    assert not any(p.exists() for p in strays) and notes.exists()
    assert sorted(data_files(lib3)) == sorted([*links(lib3).values(), "notes.txt"])


def test_garbage_waits_for_readers(lib3):
    old_file = Path(f"{lib3}.d") / links(lib3)["a"]
    reader = Library(lib3)
    try:
        with Library(lib3, "r+") as writer:  # a reader never blocks a writer
            writer.update("a", fingerprint=np.full((8, 6), 5.0), sums=camera(5.0)["sums"], n_images=2,
                          sources_added=[("y.png", sha("y"))])
            writer.remove("b")
        assert old_file.exists()  # the reader's snapshot may still read it
        assert reader.get("a").fingerprint[0, 0] == 1.0 and reader.get("b").n_images == 1
        with Library(lib3) as fresh:
            assert fresh.get("a").fingerprint[0, 0] == 5.0 and fresh.names() == ["a", "c"]
    finally:
        reader.close()
    with Library(lib3, "r+"):  # the next writer, with no reader left, collects
        pass
    assert not old_file.exists() and sorted(data_files(lib3)) == sorted(links(lib3).values())


def test_transaction_discarded_leaves_no_file(lib3):
    before = data_files(lib3), lib3.read_bytes()
    with Library(lib3, "r+") as lib:
        with pytest.raises(RuntimeError, match="stop"):
            with lib.transaction():
                lib.add("x", **camera(7.0))
                lib.update("a", fingerprint=np.zeros((8, 6)), sums=camera(0.0)["sums"], n_images=1,
                           sources_added=[])
                assert lib.get("x").fingerprint[0, 0] == 7.0  # own writes are visible
                raise RuntimeError("stop")
        assert lib.names() == ["a", "b", "c"]
    assert (data_files(lib3), lib3.read_bytes()) == before


def test_data_files_get_the_index_mode(lib3):
    os.chmod(lib3, 0o640)
    with Library(lib3, "r+") as lib:
        lib.add("d", **camera(4.0))
    new = Path(f"{lib3}.d") / links(lib3)["d"]
    assert stat.S_IMODE(new.stat().st_mode) == 0o640 == stat.S_IMODE(lib3.stat().st_mode)


def test_index_copied_without_its_folder(lib3, tmp_path):
    alone = tmp_path / "elsewhere" / "lib.h5"
    alone.parent.mkdir()
    alone.write_bytes(lib3.read_bytes())
    with Library(alone) as lib:
        assert lib.names() == ["a", "b", "c"]
        with pytest.raises(DamagedReferenceError, match=r"data file lib.h5.d/ref-.* is missing .*folder lib.h5.d"):
            lib.get("a")
    proc = run_ganprint("list", alone)
    assert proc.returncode == 1 and proc.stdout.count("damaged: its data file") == 3


# ---- schema 1 ------------------------------------------------------------------------------------------

@pytest.fixture
def v1(lib3, tmp_path) -> Path:
    """A schema 1 (single file) library with calibration data, as ``export`` writes it."""
    with Library(lib3, "r+") as lib:
        lib.add_calibration("generator_null_z", [0.5, 1.5], sha256=[sha("p"), sha("q")], against=["a", "b"])
        lib.add_calibration("generator_null_z", [2.5])
    out = tmp_path / "single.h5"
    with Library(lib3) as lib:
        assert lib.export(out) == {}
    return out


def _contents(path: Path) -> dict:
    with Library(path) as lib:
        refs = {n: (lib.get(n).info, lib.get(n).fingerprint.tobytes(), lib.get(n).sums["S"].tobytes())
                for n in lib.names()}
        return dict(refs=refs, cal=lib.calibration("generator_null_z").tolist())


def test_export_is_one_self_contained_file(lib3, v1, tmp_path):
    moved = tmp_path / "moved" / "anywhere.h5"
    moved.parent.mkdir()
    os.replace(v1, moved)
    with h5py.File(moved, "r") as f:
        assert f.attrs["schema_version"] == 1
        kinds = set()
        f.visititems_links(lambda name, link: kinds.add(type(link).__name__))
        assert kinds == {"HardLink"}  # no link leaves the file
    assert _contents(moved) == _contents(lib3)
    with Library(lib3) as lib, pytest.raises(LibraryExistsError, match="refusing to overwrite"):
        lib.export(moved)
    proc = run_ganprint("export", lib3, tmp_path / "cli.h5")
    assert proc.returncode == 0 and (tmp_path / "cli.h5").exists()
    assert run_ganprint("export", lib3, tmp_path / "cli.h5").returncode == 1


def test_export_leaves_damaged_references_out(lib3, tmp_path):
    with h5py.File(lib3, "r+") as f:
        f["references/b/fingerprint"][0, 0] = np.nan
    with Library(lib3) as lib:
        left_out = lib.export(tmp_path / "out.h5")
    assert list(left_out) == ["b"] and "NaN" in left_out["b"]
    with Library(tmp_path / "out.h5") as lib:
        assert lib.names() == ["a", "c"]


def test_schema_1_is_read(v1, lib3):
    with Library(v1) as lib:
        assert lib.schema_version == 1
    assert _contents(v1) == _contents(lib3)
    assert not Path(f"{v1}.d").exists()


def test_schema_1_upgraded_by_the_first_write(v1, lib3):
    expected = _contents(lib3)
    with Library(v1, "r+") as lib:
        assert lib.schema_version == 1
        lib.remove("c")
        assert lib.schema_version == 2
    del expected["refs"]["c"]
    assert _contents(v1) == expected
    with Library(v1) as lib:
        assert lib.schema_version == 2
    assert sorted(links(v1)) == ["a", "b"] and sorted(data_files(v1)) == sorted([*links(v1).values(),
                                                                                    *_calibration_file(v1)])
    with h5py.File(v1, "r") as f:  # the calibration keys came along
        assert f["calibration_sources/generator_null_z/reference"].asstr()[()].tolist() == ["a", "b"]
    with Library(v1, "r+") as lib:
        assert lib.add_calibration("generator_null_z", [9.0], sha256=[sha("p")], against=["a"]) == 0


def _calibration_file(index: Path) -> list[str]:
    with h5py.File(index, "r") as f:
        link = f.get("calibration", getlink=True)
        return [link.filename.split("/")[1]] if isinstance(link, h5py.ExternalLink) else []


def test_upgrade(v1, lib3):
    with Library(v1, "r+") as lib:
        assert lib.upgrade() is True and lib.schema_version == 2 and lib.upgrade() is False
    assert _contents(v1) == _contents(lib3)
    proc = run_ganprint("upgrade", v1)
    assert proc.returncode == 0 and "schema 2 already" in proc.stdout


def test_cli_upgrade_of_schema_1(v1):
    proc = run_ganprint("upgrade", v1)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("schema 1 -> 2"), proc


def test_upgrade_keeps_a_damaged_reference_by_name(v1):
    with h5py.File(v1, "r+") as f:
        f["references/ghost"] = h5py.SoftLink("/nowhere")
        f["references/odd"] = np.zeros(3)
    with Library(v1, "r+") as lib:
        assert lib.upgrade()
    with Library(v1) as lib:
        damaged = lib.damaged()
        assert sorted(damaged) == ["ghost", "odd"] and lib.get("a").n_images == 1
    with Library(v1, "r+") as lib:  # and it can be removed
        lib.remove("ghost")
        lib.remove("odd")
        assert lib.damaged() == {}


def test_upgrade_failure_leaves_schema_1(v1, monkeypatch):
    before = v1.read_bytes()

    def full(*args):
        raise OSError(28, os.strerror(28))

    with Library(v1, "r+") as lib:
        monkeypatch.setattr(durable_module, "replace", full)
        with pytest.raises(OSError, match="No space left"):
            lib.upgrade()
    assert v1.read_bytes() == before and not list(Path(f"{v1}.d").iterdir())
    with Library(v1) as lib:
        assert lib.schema_version == 1


def test_fingerprint_alone_is_read_and_checked(lib3, v1):
    for path in (lib3, v1):
        with Library(path) as lib:
            for name in lib.names():
                assert np.array_equal(lib.fingerprint(name), lib.get(name, with_sums=False).fingerprint)
                assert lib.fingerprint(name).dtype == np.float32
    with h5py.File(lib3, "r+") as f:
        f["references/b/fingerprint"][0, 0] = np.nan
    with Library(lib3) as lib:
        with pytest.raises(DamagedReferenceError, match="NaN"):
            lib.fingerprint("b")
        assert lib.fingerprint("a").shape == (8, 6)
