"""Distributed build and attribution (fingerprint/distributed.py) on a 2-process LocalCluster."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from conftest import DRESDEN  # noqa: E402
from PIL import Image  # noqa: E402

from fingerprint.attribution import attribute_paths  # noqa: E402
from fingerprint.calibration import NULL_KEY  # noqa: E402
from fingerprint.build import build_reference  # noqa: E402
from fingerprint.distributed import (  # noqa: E402
    PartialSums,
    build_reference_distributed,
    merge_partials,
    parse_scheduler,
    reduce_batch,
)
from fingerprint.distributed_attribution import attribute_distributed  # noqa: E402
from fingerprint.errors import InvalidImageError  # noqa: E402
from fingerprint.estimate import FingerprintParams  # noqa: E402
from fingerprint.synthetic import make_camera, make_generator  # noqa: E402
from reference_db import Library  # noqa: E402

REL = 1e-4


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def _save(images, folder: Path, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, im in enumerate(images):
        p = folder / f"{prefix}_{i:02d}.png"
        Image.fromarray(im).save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=50, env={"NUMBA_NUM_THREADS": "1"})
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    cams = {}
    for k, name in enumerate(("camA", "camB")):
        cams[name] = _save(make_camera(name, 10 + k, shape=(128, 128)).images(6, seed=1, flat=True), root / name, name)
    gens = {}
    for k, (gname, arch) in enumerate((("ganA", "transposed_conv"), ("ganB", "pixel_shuffle"))):
        g = make_generator(gname, arch, 3 + k, out_size=128)
        gens[gname] = _save(g.generate(5, seed=2), root / gname, gname)
    return root, cams, gens


def _both(tmp_path, client, name, kind, paths, **kw):
    """Build in-process and distributed into two libraries; return the two references."""
    lib1, lib2 = tmp_path / "inproc.h5", tmp_path / "dist.h5"
    r1 = build_reference(lib1, name, kind, paths, progress=False, warn=lambda m: None, **kw)
    r2 = build_reference_distributed(lib2, name, kind, paths, client=client, progress=False, warn=lambda m: None,
                                     batch_size=2, **kw)
    return lib1, lib2, r1, r2


def _assert_same(lib1, lib2, name):
    with Library(lib1) as a, Library(lib2) as b:
        ra, rb = a.get(name), b.get(name)
        assert ra.n_images == rb.n_images
        assert ra.info.sources == rb.info.sources
        assert _rel(rb.fingerprint, ra.fingerprint) <= REL
        for k in ra.sums:
            assert _rel(rb.sums[k], ra.sums[k]) <= REL
    return ra, rb


def test_parse_scheduler():
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", None)
    with pytest.raises(ValueError):
        parse_scheduler("local:zero")
    with pytest.raises(ValueError):
        parse_scheduler("local:0")


def test_merge_refuses_overlapping_hashes(data):
    _, cams, _ = data
    params = FingerprintParams("camera")
    a = reduce_batch([(0, str(cams["camA"][0]), "a" * 64), (1, str(cams["camA"][1]), "b" * 64)], params)
    b = reduce_batch([(2, str(cams["camA"][2]), "b" * 64)], params)
    c = reduce_batch([(3, str(cams["camA"][3]), "c" * 64)], params)
    with pytest.raises(ValueError, match="counted only once"):
        merge_partials(a, b)
    ac = merge_partials(a, c)
    assert ac.n_images == 3 and ac.hashes == {"a" * 64, "b" * 64, "c" * 64}
    assert a.n_images == 2 and np.array_equal(merge_partials(a).sums["S"], a.sums["S"])  # inputs untouched
    # deterministic: the same partials in the same order give bit-identical sums
    assert all(np.array_equal(merge_partials(a, c).sums[k], ac.sums[k]) for k in ac.sums)
    assert isinstance(merge_partials(PartialSums(params)), PartialSums)


def test_reduce_batch_reads_through_the_file_loop(tmp_path, data):
    """In the worker task: ``on_image`` before each read, bad files recorded with their path, never raised."""
    _, cams, _ = data
    text = tmp_path / "text.png"
    text.write_text("not an image")
    items = [(0, str(cams["camA"][0]), "h0"), (1, str(text), "h1"), (2, str(cams["camA"][1]), "h2"),
             (3, str(cams["camA"][2]), "h0")]  # the last repeats a hash: the guard refuses it
    seen: list[str] = []
    part = reduce_batch(items, FingerprintParams(), crop=(96, 96), on_image=seen.append)
    assert seen == [p for _, p, _ in items]
    assert part.n_images == 2 and part.hashes == {"h0", "h2"} and part.shape == (96, 96)
    errors = [(r.index, r.error) for r in part.records if r.error is not None]
    assert [i for i, _ in errors] == [1, 3]
    for (index, err), (_, path, _) in zip(errors, (items[1], items[3])):
        assert isinstance(err, InvalidImageError) and err.path == path and str(err).count(path) == 1
    assert "already counted" in str(errors[1][1])


def test_camera_build_equals_in_process(tmp_path, client, data):
    _, cams, _ = data
    paths = cams["camA"][:5]
    lib1, lib2, r1, r2 = _both(tmp_path, client, "camA", "camera", paths)
    assert r2.added == r1.added and r2.n_images == r1.n_images == 5 and r2.created
    _assert_same(lib1, lib2, "camA")
    # update: one new image and the old ones again -> only the new one counted, same as in-process
    more = cams["camA"]
    r1 = build_reference(lib1, "camA", "camera", more, progress=False, warn=lambda m: None)
    r2 = build_reference_distributed(lib2, "camA", "camera", more, client=client, progress=False, warn=lambda m: None)
    assert r2.added == r1.added == [str(more[5])] and r2.n_images == 6 and not r2.created
    assert r2.skipped == r1.skipped
    _assert_same(lib1, lib2, "camA")


def test_generator_build_equals_in_process_with_calibration(tmp_path, client, data):
    _, _, gens = data
    lib1, lib2, *_ = _both(tmp_path, client, "ganA", "generator", gens["ganA"])
    # the second generator's build scores its images against the first, and the first's images against
    # it (both directions, so the threshold does not depend on build order): non-matching scores
    r1 = build_reference(lib1, "ganB", "generator", gens["ganB"], progress=False)
    r2 = build_reference_distributed(lib2, "ganB", "generator", gens["ganB"], client=client, progress=False,
                                     batch_size=2)
    assert r1.added == r2.added
    for name in ("ganA", "ganB"):
        _assert_same(lib1, lib2, name)
    with Library(lib1) as a, Library(lib2) as b:
        na, nb = a.calibration(NULL_KEY), b.calibration(NULL_KEY)
        n_a, n_b = len(gens["ganA"]), len(gens["ganB"])
        assert len(na) == len(nb) == n_a + n_b
        np.testing.assert_allclose(np.sort(nb), np.sort(na), rtol=1e-5)
        # the decision's per-generator statistics: the last-built generator's are those of an in-process build
        from fingerprint.maintenance import _statistics_null_keys

        keys = [k for k in _statistics_null_keys(a) if ":ganB:" in k]
        assert keys == [k for k in _statistics_null_keys(b) if ":ganB:" in k]
        assert sum(a.calibration(k).size for k in keys) > 0
        for key in keys:
            np.testing.assert_allclose(np.sort(b.calibration(key)), np.sort(a.calibration(key)), rtol=1e-4, atol=1e-4,
                                       err_msg=key)


def test_worker_killed_mid_build(tmp_path, client, data):
    _, cams, _ = data
    paths = list(cams["camB"])
    dup = tmp_path / "copy_of_first.png"
    shutil.copy(paths[0], dup)
    paths.append(dup)  # same bytes under another name: counted once
    marker = tmp_path / "crashed"

    def crash_once(path, marker=str(marker), victim=str(paths[3])):
        if path == victim and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies mid-batch; the nanny restarts it

    lib1, lib2 = tmp_path / "a.h5", tmp_path / "b.h5"
    build_reference(lib1, "camB", "camera", paths, progress=False, warn=lambda m: None)
    r = build_reference_distributed(lib2, "camB", "camera", paths, client=client, progress=False,
                                    warn=lambda m: None, batch_size=2, on_image=crash_once)
    assert marker.exists()  # the crash happened
    assert r.n_images == len(cams["camB"]) == 6
    assert [p for p, why in r.skipped] == [str(dup)]
    ra, rb = _assert_same(lib1, lib2, "camB")
    assert len({sha for _, sha in rb.info.sources}) == rb.n_images == 6
    client.wait_for_workers(2, timeout=30)


def test_bad_files_reported_not_fatal_and_strict_raises(tmp_path, client, data):
    _, cams, _ = data
    folder = tmp_path / "mixed"
    folder.mkdir()
    paths = [shutil.copy(p, folder / p.name) for p in cams["camA"][:4]]
    (folder / "camA_01b_truncated.png").write_bytes(Path(paths[1]).read_bytes()[:200])
    (folder / "camA_02b_text.png").write_text("not an image")
    small = next(iter(make_camera("camA", 10, shape=(96, 96)).images(1, seed=9, flat=True)))
    Image.fromarray(small).save(folder / "camA_03b_small.png")
    warned = []
    lib1 = tmp_path / "a.h5"
    r1 = build_reference(lib1, "camA", "camera", [folder], progress=False, warn=lambda m: None)
    lib2 = tmp_path / "b.h5"
    r2 = build_reference_distributed(lib2, "camA", "camera", [folder], client=client, progress=False,
                                     warn=warned.append, batch_size=2)
    assert r2.n_images == r1.n_images == 4
    assert [p for p, _ in r2.skipped] == [p for p, _ in r1.skipped] and len(r2.skipped) == 3
    assert [why for _, why in r2.skipped] == [why for _, why in r1.skipped]
    for path, why in r2.skipped:  # one line, naming the file once, first
        assert why.startswith(f"{path}: ") and why.count(path) == 1 and "\n" not in why, why
    assert len(warned) == 3
    _assert_same(lib1, lib2, "camA")
    lib3 = tmp_path / "c.h5"
    with pytest.raises((InvalidImageError, ValueError)) as caught:
        build_reference_distributed(lib3, "camA", "camera", [folder], client=client, progress=False, strict=True)
    bad = {p for p, _ in r1.skipped}
    assert caught.value.path in bad and str(caught.value).startswith(f"{caught.value.path}: ")  # .path crossed processes
    with Library(lib3, "a") as lib:
        assert "camA" not in lib  # nothing written


def _same_answers(want: list, got: list):
    """Check a distributed run against the in-process one item by item (error lines equal; the same
    image, best, decision and closest, the same references in order); yields each pair of records,
    in-process first, for the caller's score checks."""
    assert len(got) == len(want)
    for w, g in zip(want, got):
        if isinstance(w, str):
            assert g == w
            continue
        assert (g.image, g.best, g.decision, g.closest) == (w.image, w.best, w.decision, w.closest)
        assert list(g.scores) == list(w.scores)
        for name in w.scores:
            yield w.scores[name], g.scores[name]


def test_attribution_equals_in_process(tmp_path, client, data):
    _, cams, gens = data
    lib = tmp_path / "lib.h5"
    for name in ("camA", "camB"):
        build_reference(lib, name, "camera", cams[name][:4], progress=False)
    build_reference(lib, "ganA", "generator", gens["ganA"][:3], progress=False)
    build_reference(lib, "ganB", "generator", gens["ganB"][:3], progress=False)
    queries = [cams["camA"][4], cams["camB"][5], gens["ganA"][4], tmp_path / "bad.png", cams["camB"][4]]
    (tmp_path / "bad.png").write_text("nope")
    want = list(attribute_paths(lib, queries, progress=False))
    got = list(attribute_distributed(lib, queries, client=client, progress=False, batch_size=1, in_flight=2))
    assert len(want) == 5
    for a, b in _same_answers(want, got):
        assert a.match == b.match and a.offset == b.offset and a.rotation == b.rotation
        # float32 products: a batch of 5 and a batch of 1 may round differently in the last bits
        assert b.ncc == pytest.approx(a.ncc, rel=1e-5, abs=1e-6)
        assert (a.pce is None and b.pce is None) or b.pce == pytest.approx(a.pce, rel=1e-6)
    assert got[0].best == "camA" and got[1].best == "camB"
    assert got[3].startswith(f"{tmp_path / 'bad.png'}: ") and got[3].count("bad.png") == 1
    with pytest.raises(InvalidImageError) as caught:
        list(attribute_distributed(lib, queries, client=client, progress=False, strict=True))
    assert caught.value.path == str(tmp_path / "bad.png")


def test_shard_names_balance_pixels_and_keep_generators_on_the_first():
    from fingerprint.distributed_attribution import shard_names

    sizes = {"a": 100, "b": 60, "c": 50, "d": 40, "e": 10}
    shards = shard_names(sizes, ["g1", "g2"], 2)
    assert sorted(sum(shards, [])) == ["a", "b", "c", "d", "e", "g1", "g2"]
    assert shards == [["a", "d", "g1", "g2"], ["b", "c", "e"]]  # 140 and 120 pixels: largest first, to the lighter
    assert shard_names({"a": 1}, ["g"], 4) == [["a", "g"]]  # never an empty shard
    assert shard_names({}, ["g"], 3) == [["g"]]
    with pytest.raises(ValueError):
        shard_names(sizes, [], 0)


def test_sharded_attribution_equals_in_process(tmp_path, client, data):
    """Two shards (one camera each, the generators with the first), pinned to the two workers."""
    _, cams, gens = data
    lib = tmp_path / "lib.h5"
    for name in ("camA", "camB"):
        build_reference(lib, name, "camera", cams[name][:4], progress=False)
    build_reference(lib, "ganA", "generator", gens["ganA"][:3], progress=False)
    queries = [cams["camA"][4], cams["camB"][5], gens["ganA"][4], tmp_path / "bad.png", gens["ganB"][4]]
    (tmp_path / "bad.png").write_text("nope")
    want = list(attribute_paths(lib, queries, progress=False))
    got = list(attribute_distributed(lib, queries, client=client, progress=False, batch_size=2, shards=2))
    assert len(want) == 5
    for a, b in _same_answers(want, got):
        assert a.match == b.match and a.threshold == pytest.approx(b.threshold)  # the same budget
        if a.match or a.pce is None or a.kind == "generator":
            assert (a.offset, a.rotation) == (b.offset, b.rotation)
            assert (a.pce is None and b.pce is None) or b.pce == pytest.approx(a.pce, rel=1e-6)
        else:  # a shard whose cameras matched nothing runs its later passes (the sigma-5 residual), which
            assert b.pce >= a.pce * (1 - 1e-6)  # in-process a match in another shard made unnecessary
    assert got[0].best == "camA" and got[1].best == "camB"


def test_labels_build_on_the_cluster_equals_in_process(tmp_path, client, data):
    """``build --labels`` with ``--scheduler``: each planned reference built over the workers."""
    import functools

    from fingerprint.labels import build_labels, parse_labels, plan_labels

    root, cams, gens = data
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{p},camA\n" for p in cams["camA"][:3])
                      + "".join(f"{p},ganA,generator\n" for p in gens["ganA"][:3]), encoding="utf-8")
    lib1, lib2 = tmp_path / "inproc.h5", tmp_path / "dist.h5"
    for lib, builder in ((lib1, None), (lib2, functools.partial(build_reference_distributed, client=client))):
        plan = plan_labels(parse_labels(labels, kind="camera"), lib, csv_path=labels)
        result = build_labels(lib, plan, builder=builder, warn=lambda m: None)
        assert [(ref.name, rep.n_images, err) for ref, rep, err in result.reports] == \
               [("camA", 3, None), ("ganA", 3, None)]
    for name in ("camA", "ganA"):
        _assert_same(lib1, lib2, name)


def test_cli_scheduler_local(tmp_path, data, capsys):
    from fingerprint.cli import main

    _, cams, _ = data
    lib1, lib2 = tmp_path / "a.h5", tmp_path / "b.h5"
    paths = [str(p) for p in cams["camA"][:3]]
    assert main(["build", str(lib1), "--name", "camA", "--kind", "camera", "--quiet", *paths]) == 0
    assert main(["build", str(lib2), "--name", "camA", "--kind", "camera", "--quiet", "--scheduler", "local:2",
                 *paths]) == 0
    _assert_same(lib1, lib2, "camA")
    capsys.readouterr()
    assert main(["attribute", str(lib2), "--quiet", "--json", "--scheduler", "local:2", str(cams["camA"][4])]) == 0
    assert '"best": "camA"' in capsys.readouterr().out
    assert main(["attribute", str(lib2), "--quiet", "--json", "--scheduler", "local:2", "--shards", "2",
                 str(cams["camA"][4])]) == 0  # one camera: one shard
    assert '"best": "camA"' in capsys.readouterr().out
    assert main(["attribute", str(lib2), "--quiet", "--shards", "2", str(cams["camA"][4])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shards needs --scheduler" in err[0]


def test_cli_scheduler_without_dask(tmp_path, data):
    """``--scheduler`` without dask.distributed: one line naming the extra, exit code 1."""
    import subprocess

    _, cams, _ = data
    code = ("import sys; sys.modules['distributed'] = None; from fingerprint.cli import main; "
            f"sys.exit(main(['build', {str(tmp_path / 'x.h5')!r}, '--name', 'c', '--kind', 'camera', "
            f"'--scheduler', 'local:1', {str(cams['camA'][0])!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1, proc.stderr
    assert "pip install 'ganprint[dist]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.shared_data
def test_dresden_flat_fields_local2_equals_in_process(tmp_path, client):
    files = sorted((DRESDEN / "ff").glob("Nikon_D70_0_*.JPG"))
    if not files:
        pytest.skip("no Nikon_D70_0 flat-fields")
    lib1, lib2, r1, r2 = _both(tmp_path, client, "Nikon_D70_0", "camera", files, crop=(512, 512))
    assert r2.n_images == r1.n_images == len(files)
    _assert_same(lib1, lib2, "Nikon_D70_0")
