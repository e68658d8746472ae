"""Damaged libraries never give answers (issue 13): NaN/inf, sums of the wrong shape or dtype,
dangling links and damaged calibration data are refused on write, and on read reported (one line
naming the library and the reference), skipped by attribution, listed as damaged, and never
reach a kernel."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from fingerprint import attribute
from fingerprint.build import build_reference
from reference_db import DamagedReferenceError, Library, NotALibraryError, ReferenceExistsError
from test_reliability import (  # noqa: F401 - fixtures
    SIZE,
    assert_one_line,
    error_lines,
    library_copy,
    noise_pngs,
    run_ganprint,
    sha256_of,
    small_library,
)

NEG_NAN = np.frombuffer(np.array([0xFFC00000], np.uint32).tobytes(), np.float32)[0]  # NaN, sign bit set
NON_FINITE = {"nan": np.nan, "negative_nan": NEG_NAN, "inf": np.inf, "minus_inf": -np.inf}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def camera(h: int = 6, w: int = 5, c: int = 3, value: float = 1.0) -> dict:
    return dict(kind="camera", fingerprint=np.full((h, w), value, np.float32),
                sums={"S": np.full((c, h, w), value, np.float32), "N": np.ones((c, h, w), np.float32)},
                n_images=1, shape=(h, w, 3) if c == 3 else (h, w), params={"sigma": 3.0},
                sources=[("a.png", sha(f"a{value}"))])


def generator(h: int = 8, w: int = 8, power: bool = True) -> dict:
    fp = np.ones((3, h, w), np.float32)
    sums = {"sum": fp * 2, **({"power": np.ones((3, h, w // 2 + 1), np.float32)} if power else {})}
    return dict(kind="generator", fingerprint=fp, sums=sums, n_images=2, shape=(h, w, 3), params={}, sources=[])


def poke(path: Path, dataset: str, value=np.nan, index=(0, 0)) -> None:
    """Write ``value`` into one element of ``dataset`` behind the library's back."""
    with h5py.File(path, "r+") as f:
        ds = f[dataset]
        data = ds[()]
        data[index] = value
        ds[...] = data


def replace_dataset(path: Path, dataset: str, data) -> None:
    """Replace ``dataset`` behind the library's back (in the file that holds it: links are followed)."""
    parent, leaf = dataset.rsplit("/", 1)
    with h5py.File(path, "r+") as f:
        group = f[parent]
        del group[leaf]
        group[leaf] = data


@pytest.fixture
def two(tmp_path) -> Path:
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib:
        lib.add("cam", **camera())
        lib.add("gen", **generator())
    return path


# ---- NaN and inf -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", sorted(NON_FINITE))
@pytest.mark.parametrize("where", ["fingerprint", "S", "N"])
def test_add_and_update_refuse_non_finite(tmp_path, bad, where):
    kwargs = camera()
    target = kwargs["fingerprint"] if where == "fingerprint" else kwargs["sums"][where]
    target[(0,) * target.ndim] = NON_FINITE[bad]
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib:
        with pytest.raises(ValueError, match=r"refusing to store reference 'cam'.*1 NaN or infinite") as info:
            lib.add("cam", **kwargs)
        assert str(path) in str(info.value)
        assert lib.names() == []
        lib.add("cam", **camera())
        with pytest.raises(ValueError, match="NaN or infinite"):
            lib.update("cam", fingerprint=kwargs["fingerprint"], sums=kwargs["sums"], n_images=2,
                       sources_added=[("b.png", sha("b"))])
        assert lib.info("cam").n_images == 1


@pytest.mark.parametrize("bad", sorted(NON_FINITE))
@pytest.mark.parametrize("dataset", ["fingerprint", "sums/S", "sums/N"])
def test_stored_non_finite_is_damage(two, bad, dataset):
    poke(two, f"references/cam/{dataset}", NON_FINITE[bad], (0, 0) if dataset == "fingerprint" else (0, 0, 0))
    with Library(two) as lib:
        if dataset == "fingerprint":
            with pytest.raises(DamagedReferenceError) as info:
                lib.get("cam", with_sums=False)
        else:  # attribution reads only the fingerprint; a build reads the sums too
            assert lib.get("cam", with_sums=False).n_images == 1
            with pytest.raises(DamagedReferenceError) as info:
                lib.get("cam")
        message = str(info.value)
        assert "'cam'" in message and str(two) in message and "NaN or infinite" in message and "\n" not in message
        assert info.value.name == "cam" and isinstance(info.value, NotALibraryError)
        assert lib.get("gen").n_images == 2  # the rest of the library is intact
        listed = {i.name: i.damaged for i in lib.infos(verify=True)}
        assert listed["gen"] is None and "NaN or infinite" in listed["cam"]
        assert lib.infos()[0].damaged is None  # without verify only metadata is checked
        assert set(lib.damaged()) == {"cam"}
    with Library(two, "r+") as lib:  # the way out: remove it
        lib.remove("cam")
        assert lib.damaged() == {}


def test_generator_power_sum_checked(two):
    poke(two, "references/gen/sums/power", -np.inf, (2, 7, 4))
    with Library(two) as lib:
        with pytest.raises(DamagedReferenceError, match="'power' has 1 NaN or infinite"):
            lib.get("gen")


@pytest.mark.parametrize("bad", ["nan", "negative_nan", "inf"])
def test_attribute_skips_a_nan_fingerprint(library_copy, small_library, bad):
    """Before: a NaN fingerprint matched every image (PCE inf), or, sign bit set, none of its own."""
    healthy_library, files = small_library
    poke(library_copy, "references/camA/fingerprint", NON_FINITE[bad], (3, 4))
    warnings: list[str] = []
    for query in (files["camB"][0], files["camA"][0]):
        (healthy,) = attribute(query, healthy_library)
        (result,) = attribute(query, library_copy, warn=warnings.append)
        assert set(result.scores) == {"camB"} and result.best in (None, "camB")
        assert result.scores["camB"].pce == healthy.scores["camB"].pce
        assert result.best == (healthy.best if healthy.best == "camB" else None)
    assert len(warnings) == 2 and all("'camA'" in w and str(library_copy) in w for w in warnings)


def test_an_altered_finite_fingerprint_is_found_by_its_recorded_sha256(library_copy, small_library):
    """A finite value changed behind the library's back is no NaN: the SHA-256 written with the
    fingerprint finds it, on every read; a reference written before the SHA-256 was recorded still reads."""
    healthy_library, files = small_library
    with Library(healthy_library) as lib:
        info = lib.info("camA", with_sources=False)
        assert info.fingerprint_sha256 is not None and len(info.fingerprint_sha256) == 64
        original = lib.fingerprint("camA")
    poke(library_copy, "references/camA/fingerprint", float(original[3, 4]) + 0.25, (3, 4))
    with Library(library_copy) as lib:
        with pytest.raises(DamagedReferenceError, match="SHA-256 recorded"):
            lib.fingerprint("camA")
        with pytest.raises(DamagedReferenceError, match="SHA-256 recorded"):
            lib.get("camA")
        assert "SHA-256" in lib.damaged()["camA"] and "camB" not in lib.damaged()
    warnings: list[str] = []
    (result,) = attribute(files["camA"][0], library_copy, warn=warnings.append)
    assert set(result.scores) == {"camB"} and len(warnings) == 1 and "'camA'" in warnings[0]
    with h5py.File(library_copy, "r+") as f:  # as written before the attribute existed
        del f["references/camA"].attrs["fingerprint_sha256"]
    with Library(library_copy) as lib:
        assert lib.info("camA").fingerprint_sha256 is None
        assert lib.fingerprint("camA")[3, 4] == np.float32(float(original[3, 4]) + 0.25)


def test_cli_on_a_damaged_reference(library_copy, small_library, tmp_path):
    _, files = small_library
    poke(library_copy, "references/camA/fingerprint", np.nan, (3, 4))
    before = sha256_of(library_copy)
    proc = run_ganprint("attribute", library_copy, files["camB"][0], "--quiet")
    assert proc.returncode == 1
    line = assert_one_line(proc.stderr, library_copy, "camA")
    assert "damaged" in line and "NaN" in line
    assert "camB" in proc.stdout and "camA" not in proc.stdout
    proc = run_ganprint("list", library_copy)
    assert proc.returncode == 1 and not proc.stderr
    rows = dict(row.split("\t", 1) for row in proc.stdout.splitlines())
    assert rows["camA"].startswith("damaged: its fingerprint has 1 NaN") and "camera" in rows["camB"]
    images = noise_pngs(tmp_path / "more", 2, seed=8, size=SIZE)
    proc = run_ganprint("build", library_copy, "--name", "camA", "--kind", "camera", "--quiet", images)
    assert proc.returncode == 1 and "damaged" in assert_one_line(proc.stderr, library_copy, "camA")
    proc = run_ganprint("export", library_copy, "camA", tmp_path / "camA.npy")
    assert proc.returncode == 1 and not (tmp_path / "camA.npy").exists()
    assert_one_line(proc.stderr, "camA")
    assert sha256_of(library_copy) == before  # nothing was lost
    proc = run_ganprint("remove", library_copy, "camA")
    assert proc.returncode == 0, proc.stderr


def test_every_reference_damaged(library_copy, small_library):
    _, files = small_library
    for name in ("camA", "camB"):
        poke(library_copy, f"references/{name}/fingerprint", np.inf)
    with pytest.raises(ValueError, match=r"no usable references \(2 damaged\)"):
        attribute(files["camA"][0], library_copy, warn=lambda msg: None)


# ---- shapes and dtypes ----------------------------------------------------------------------------

@pytest.mark.parametrize("change, pattern", [
    (dict(sums={"S": np.ones((3, 6, 5)), "N": np.ones((1, 6, 5))}), r"sum 'N' has shape \(1, 6, 5\), expected \(3, 6, 5\)"),
    (dict(sums={"S": np.ones((1, 6, 5)), "N": np.ones((1, 6, 5))}), r"sum 'N' has shape \(1, 6, 5\), expected \(3, 6, 5\)"),
    (dict(sums={"S": np.ones((3, 7, 5)), "N": np.ones((3, 7, 5))}), r"sum 'N' has shape \(3, 7, 5\)"),
    (dict(sums={"S": np.ones((3, 6, 5))}), r"running sums are \['S'\], but a camera has \['S', 'N'\]"),
    (dict(sums={"S": np.ones((3, 6, 5)), "N": np.ones((3, 6, 5)), "x": np.ones(3)}), "running sums are"),
    (dict(sums={"S": np.ones((2, 6, 5)), "N": np.ones((2, 6, 5))}, shape=(6, 5)), r"'N' has shape \(2, 6, 5\), expected \(1, 6, 5\)"),
    (dict(fingerprint=np.ones((5, 6))), r"fingerprint shape \(5, 6\) does not fit its 6x5 images"),
    (dict(fingerprint=np.ones((3, 6, 5))), "a camera fingerprint is"),
    (dict(shape=(6, 5, 3, 1)), "is not"),
])
def test_add_refuses_inconsistent_shapes(tmp_path, change, pattern):
    with Library(tmp_path / "lib.h5", "a") as lib:
        with pytest.raises(ValueError, match=pattern):
            lib.add("cam", **{**camera(), **change})
        assert len(lib) == 0


@pytest.mark.parametrize("change, pattern", [
    (dict(sums={"sum": np.ones((1, 8, 8))}), r"sum 'sum' has shape \(1, 8, 8\), expected \(3, 8, 8\)"),
    (dict(sums={"sum": np.ones((3, 8, 8)), "power": np.ones((3, 8, 8))}), r"'power' has shape \(3, 8, 8\), expected \(3, 8, 5\)"),
    (dict(sums={"power": np.ones((3, 8, 5))}), "a generator has"),
    (dict(fingerprint=np.ones((2, 8, 8)), sums={"sum": np.ones((2, 8, 8))}), "fingerprint shape"),
])
def test_generator_shapes(tmp_path, change, pattern):
    with Library(tmp_path / "lib.h5", "a") as lib:
        lib.add("ok", **generator(power=False))
        lib.add("flat", **{**generator(), "fingerprint": np.ones((8, 8)), "sums": {"sum": np.ones((1, 8, 8))}})
        with pytest.raises(ValueError, match=pattern):
            lib.add("gen", **{**generator(), **change})
        assert lib.names() == ["flat", "ok"]


@pytest.mark.parametrize("dataset, data, pattern", [
    ("references/cam/sums/S", np.ones((1, 2, 2), np.float32), r"'S' has shape \(1, 2, 2\)"),
    ("references/cam/sums/N", np.ones((3, 6), np.float32), "'N' has shape"),
    ("references/cam/sums/S", np.ones((3, 6, 5), np.int32), "'S' is int32"),
    ("references/cam/fingerprint", np.ones((6, 5), np.float64), "fingerprint is float64"),
    ("references/cam/fingerprint", np.ones((6, 6), np.float32), "fingerprint shape"),
    ("references/cam/sources/sha256", np.zeros(3, "S64"), "source lists"),
    ("references/cam/fingerprint", np.array([b"text"]), "fingerprint"),
])
def test_stored_shapes_and_dtypes_are_checked(two, dataset, data, pattern):
    replace_dataset(two, dataset, data)
    with Library(two) as lib:
        for call in (lambda: lib.get("cam"), lambda: lib.info("cam")):
            with pytest.raises(DamagedReferenceError, match=pattern):
                call()
        (listed,) = [i for i in lib.infos() if i.name == "cam"]
        assert listed.damaged and pattern.split()[0].strip("'\\(") in listed.damaged
    with Library(two, "r+") as lib:
        with pytest.raises(DamagedReferenceError):
            lib.update("cam", **{k: v for k, v in camera(value=2.0).items() if k in ("fingerprint", "sums")},
                       n_images=2, sources_added=[])
        with pytest.raises(ReferenceExistsError, match="damaged reference 'cam'"):
            lib.add("cam", **camera())
        lib.rename("cam", "broken")  # damaged references can still be renamed and removed
        lib.remove("broken")
        lib.add("cam", **camera())


@pytest.mark.parametrize("sum_name, bad_sum", [("S", np.ones((1, 2, 2), np.float32)), ("S", np.ones((3, SIZE), np.float32)),
                                               ("S", np.ones((3, SIZE, SIZE + 7), np.float32)),
                                               ("N", np.ones((3, SIZE // 2, SIZE // 2), np.float32))])
def test_build_into_sums_of_the_wrong_shape(library_copy, tmp_path, sum_name, bad_sum):
    """Before: the kernels got these sums; exit 139 (segfault) or ``free(): invalid size``."""
    replace_dataset(library_copy, f"references/camA/sums/{sum_name}", bad_sum)
    images = noise_pngs(tmp_path / "imgs", 2, seed=3, size=SIZE)
    before = sha256_of(library_copy)
    proc = run_ganprint("build", library_copy, "--name", "camA", "--kind", "camera", "--quiet", images)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    line = assert_one_line(proc.stderr, library_copy, "camA")
    assert "damaged" in line and f"'{sum_name}'" in line
    assert sha256_of(library_copy) == before
    proc = run_ganprint("build", library_copy, "--name", "camC", "--kind", "camera", "--quiet", images)
    assert proc.returncode == 0, proc.stderr  # other references can still be built


# ---- links and calibration groups -----------------------------------------------------------------

@pytest.mark.parametrize("link", ["soft", "external", "dataset"])
def test_dangling_link(library_copy, small_library, link):
    """Before: ``internal error (KeyError ...)`` for every listing and attribution."""
    _, files = small_library
    with h5py.File(library_copy, "r+") as f:
        f["references/ghost"] = {"soft": h5py.SoftLink("/nowhere"), "dataset": np.zeros(3),
                                 "external": h5py.ExternalLink("missing.h5", "/")}[link]
    with Library(library_copy) as lib:
        assert "ghost" in lib and lib.names() == ["camA", "camB", "ghost"]
        with pytest.raises(DamagedReferenceError, match=r"'ghost' in the library .* is damaged") as info:
            lib.get("ghost")
        assert str(library_copy) in str(info.value)
        assert [i.name for i in lib.infos() if i.damaged] == ["ghost"]
    warnings: list[str] = []
    (result,) = attribute(files["camA"][0], library_copy, warn=warnings.append)
    assert result.best == "camA" and len(warnings) == 1 and "'ghost'" in warnings[0]
    proc = run_ganprint("list", library_copy)
    assert proc.returncode == 1 and "ghost\tdamaged: " in proc.stdout
    assert run_ganprint("remove", library_copy, "ghost").returncode == 0
    with Library(library_copy) as lib:
        assert lib.names() == ["camA", "camB"]


def _calibration_group(f):
    del f["calibration/generator_null_z"]
    f["calibration"].create_group("generator_null_z")


def _calibration_dataset(f):
    del f["calibration"]
    f["calibration"] = np.zeros(3)


def _calibration_2d(f):
    del f["calibration/generator_null_z"]
    f["calibration"]["generator_null_z"] = np.zeros((2, 2))


def _calibration_text(f):
    del f["calibration/generator_null_z"]
    f["calibration"]["generator_null_z"] = np.array([b"x"])


def _calibration_keys_too_long(f):
    sub = f.require_group("calibration_sources").require_group("generator_null_z")
    for name in ("sha256", "reference"):
        del sub[name]
    sub["sha256"] = np.zeros(9, "S64")
    sub["reference"] = np.array(["x"] * 9, dtype=h5py.string_dtype())


@pytest.mark.parametrize("damage", [_calibration_group, _calibration_dataset, _calibration_2d, _calibration_text,
                                    _calibration_keys_too_long])
def test_damaged_calibration(library_copy, small_library, damage):
    """Before: ``internal error (TypeError: Accessing a group is done with bytes or str ...)``."""
    _, files = small_library
    with Library(library_copy, "r+") as lib:
        lib.add_calibration("generator_null_z", [0.5, 1.5], sha256=[sha("1"), sha("2")], against=["g", "g"])
    with h5py.File(library_copy, "r+") as f:
        damage(f)
    before = sha256_of(library_copy)
    with Library(library_copy) as lib:
        with pytest.raises(NotALibraryError, match="calibration data 'generator_null_z' of the library") as info:
            lib.calibration("generator_null_z")
        assert str(library_copy) in str(info.value) and "\n" not in str(info.value)
    with Library(library_copy, "r+") as lib, pytest.raises(NotALibraryError, match="calibration"):
        lib.add_calibration("generator_null_z", [1.0])
    proc = run_ganprint("attribute", library_copy, files["camA"][0], "--quiet")
    assert proc.returncode == 1
    assert "calibration" in assert_one_line(proc.stderr, library_copy)
    assert "internal error" not in proc.stderr
    assert sha256_of(library_copy) == before


def test_keyed_calibration_round_trip(tmp_path):
    path = tmp_path / "lib.h5"
    with Library(path, "a") as lib:
        assert lib.add_calibration("k", [1.0, 2.0]) == 2  # unkeyed (older ganprint wrote these)
        assert lib.add_calibration("k", [3.0, 4.0, 5.0], sha256=[sha("a"), sha("b"), sha("a")],
                                   against=["g1", "g1", "g2"]) == 3
        assert lib.add_calibration("k", [3.5, 6.0], sha256=[sha("a"), sha("c")], against=["g1", "g1"]) == 1
        assert lib.add_calibration("k", [7.0, 7.0], sha256=[sha("d")] * 2, against=["g1"] * 2) == 1
        with pytest.raises(ValueError, match="keys for"):
            lib.add_calibration("k", [1.0], sha256=[sha("e"), sha("f")], against=["g", "g"])
        with pytest.raises(TypeError, match="both"):
            lib.add_calibration("k", [1.0], sha256=[sha("e")])
        with pytest.raises(ValueError, match="64 hex"):
            lib.add_calibration("k", [1.0], sha256=["abc"], against=["g"])
    with Library(path) as lib:
        assert lib.calibration("k").tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    with h5py.File(path) as f:  # plain h5py: the values, and per value its image and reference
        assert f["calibration/k"][()].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        refs = f["calibration_sources/k/reference"].asstr()[()].tolist()
        assert refs == ["", "", "g1", "g1", "g2", "g1", "g1"]
        assert f["calibration_sources/k/sha256"][()][2].decode() == sha("a")
