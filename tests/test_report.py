"""``ganprint report``: pages exist, name each file's SHA-256, need no network, and render in a browser."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import special

from fingerprint.attribution import Attribution, ReferenceScore
from fingerprint.build import build_reference
from fingerprint.cli import main
from fingerprint.report import _summary, false_alarm, write_report
from fingerprint.synthetic import make_camera, make_generator

CHROMIUM = Path("/usr/bin/chromium")
SIZE = 256


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A library of 2 cameras and 3 generators (calibrated threshold) and 5 query files."""
    root = tmp_path_factory.mktemp("report")
    lib = root / "lib.h5"
    cams = [make_camera(f"cam{i}", 40 + i, shape=(SIZE, SIZE), prnu_std=0.01) for i in range(2)]
    for cam in cams:
        folder = root / "build" / cam.name
        folder.mkdir(parents=True)
        for i, frame in enumerate(cam.images(8, seed=1, flat=True)):
            Image.fromarray(frame).save(folder / f"f{i}.png", compress_level=1)
        build_reference(lib, cam.name, "camera", [folder], progress=False)
    gens = [make_generator(f"gen{i}", arch, 50 + i, out_size=128)
            for i, arch in enumerate(("transposed_conv", "bilinear_conv", "pixel_shuffle"))]
    for gen in gens:
        folder = root / "build" / gen.name
        folder.mkdir(parents=True)
        for i, sample in enumerate(gen.images(12, seed=1)):
            Image.fromarray(sample).save(folder / f"s{i}.png", compress_level=1)
        build_reference(lib, gen.name, "generator", [folder], progress=False)
    q = root / "queries"
    q.mkdir()
    photo = next(cams[0].images(1, seed=5))
    Image.fromarray(photo).save(q / "cam0_photo.jpg", quality=95)
    spliced = photo.copy()
    spliced[64:192, 64:192] = next(cams[1].images(1, seed=5))[64:192, 64:192]
    Image.fromarray(spliced).save(q / "cam0_spliced.png")
    Image.fromarray(next(gens[0].images(1, seed=9))).save(q / "gen0_sample.png")
    Image.fromarray(next(make_camera("outsider", 99, shape=(SIZE, SIZE)).images(1, seed=3))).save(q / "outsider.png")
    (q / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = root / "report"
    warnings: list[str] = []
    index = write_report(lib, [q], out, warn=warnings.append)
    return lib, q, out, index, warnings


def pages(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.html") if p.name != "index.html")


def test_every_image_gets_a_page_with_its_sha256(case):
    _, q, out, index, warnings = case
    assert index == out / "index.html" and index.is_file()
    good = sorted(p for p in q.iterdir() if p.name != "broken.png")
    assert len(pages(out)) == len(good)
    text = index.read_text(encoding="utf-8")
    for path in good:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        page = next(p for p in pages(out) if path.stem in p.name)
        body = page.read_text(encoding="utf-8")
        assert sha in body
        assert sha[:16] in text and page.name in text
    # the unreadable file is in the index with its reason, not silently dropped
    assert len(warnings) == 1 and "broken.png" in warnings[0]
    assert "broken.png" in text and "not analysed" in text


def test_pages_are_self_contained(case):
    out = case[2]
    for page in [out / "index.html"] + pages(out):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), page.name
        assert "<script" not in html.lower() and "<link" not in html.lower()
        for src in re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", html):
            assert src.startswith("data:image/"), src[:40]
        for href in re.findall(r"""href="([^"]*)\"""", html):  # only links between the report's own pages
            assert (out / href).is_file(), href


def test_decisions_and_wording(case):
    out = case[2]
    stems = ("cam0_photo", "cam0_spliced", "gen0_sample", "outsider")
    by_name = {stem: p.read_text(encoding="utf-8") for p in pages(out) for stem in stems if p.stem.endswith(stem)}
    assert sorted(by_name) == sorted(stems)
    photo = by_name["cam0_photo"]
    assert "very probably taken by camera cam0" in photo and "Tamper localisation against cam0" in photo
    spliced = by_name["cam0_spliced"]
    assert "fingerprint is missing where it should show" in spliced  # the pasted block is outlined
    assert "0.0 % flagged" not in case[3].read_text(encoding="utf-8").split("cam0_spliced")[-1].split("</tr>")[0]
    assert "very probably made by generator gen0" in by_name["gen0_sample"]
    assert "Spectrum: this image beside gen0" in by_name["gen0_sample"]
    outsider = by_name["outsider"]
    assert "No reference in this library matches this image" in outsider
    assert "does not show that the image is authentic" in outsider
    for html in by_name.values():
        assert "library SHA-256" in html and "ganprint version" in html and "false-alarm probability" in html


def test_two_matching_cameras_are_called_a_composite():
    scores = {n: ReferenceScore(n, "camera", 0.05, pce, "pce", 60.0, True, rotation=0, offset=(0, 0), n_positions=1)
              for n, pce in (("camA", 900.0), ("camB", 150.0))}
    text = _summary(Attribution("x.png", "camA", "match", scores, "camA"), "tiny", None)
    assert text.startswith("This image was very probably taken by camera camA")
    assert "also matches camB" in text and "composite" in text


def test_camera_false_alarm_formula():
    score = ReferenceScore("c", "camera", 0.01, 30.0, "pce", 60.0, False, rotation=0, offset=(0, 0), n_positions=1)
    log10p, note = false_alarm(score)
    assert 10 ** log10p == pytest.approx(0.5 * math.erfc(math.sqrt(30.0 / 2)), rel=1e-9)
    assert "computed by this report" in note
    score.n_positions = 5000
    p1 = 0.5 * math.erfc(math.sqrt(15.0))
    assert 10 ** false_alarm(score)[0] == pytest.approx(1 - (1 - p1) ** 5000, rel=1e-6)
    score.pce = 5000.0  # far in the tail: log space, no underflow to 0
    log10p, _ = false_alarm(score)
    assert math.isfinite(log10p) and log10p == pytest.approx(
        (special.log_ndtr(-math.sqrt(5000.0)) + math.log(5000)) / math.log(10), rel=1e-9)


def test_cli_report(case, tmp_path, capsys):
    lib, q, _, _, _ = case
    out = tmp_path / "cli-report"
    code = main(["report", str(lib), str(q / "cam0_photo.jpg"), str(q / "gen0_sample.png"), "--out", str(out),
                 "--quiet", "--no-localize"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "index.html" in stdout and len(pages(out)) == 2
    assert "Tamper localisation" not in next(p for p in pages(out) if "cam0_photo" in p.name).read_text(encoding="utf-8")
    code = main(["report", str(lib), str(q / "broken.png"), "--out", str(tmp_path / "bad"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "broken.png" in err


def _screenshot(html: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        f"--screenshot={png}", "--window-size=1280,1600", html.resolve().as_uri()],
                       check=True, timeout=120, capture_output=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium: browser rendering not checked")
def test_pages_render_in_a_browser(case, tmp_path):
    out = case[2]
    page = next(p for p in pages(out) if "cam0_spliced" in p.name)
    for html in (out / "index.html", page):
        png = tmp_path / f"{html.stem}.png"
        _screenshot(html, png)
        with Image.open(png) as im:
            assert im.size == (1280, 1600)
            gray = np.asarray(im.convert("L"), dtype=np.float64)
            rgb = np.asarray(im.convert("RGB"))
        assert gray.std() > 10  # text, tables and pictures, not a blank page
        assert (gray < 128).mean() > 0.005  # some dark ink
        assert len(np.unique(rgb.reshape(-1, 3)[::37], axis=0)) > 50  # the inlined pictures decoded
