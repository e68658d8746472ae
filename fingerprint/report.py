"""Forensic report: one self-contained HTML page per questioned image, and an index.

``write_report(library, paths, out_dir)`` attributes every image against the library (the same
code as ``ganprint attribute``), gathers what an analyst puts in a case file and renders it with
the Jinja2 templates in ``fingerprint/templates/``:

- the file: SHA-256, size, format, pixel size, EXIF make/model/date/software, JPEG quality;
- the decision: score, threshold, false-alarm probability and what was searched, every
  reference's scores in a table, the score against its null distribution;
- a camera match: the tamper-localisation map (``fingerprint.localize``, in ``fingerprint/localization.py``) over the image;
- a generator: the query's residual spectrum beside the fingerprint's;
- the library's path, SHA-256 and schema, the ganprint version and the time.

Pages need no network and no other file: pictures are PNGs inlined as ``data:`` URIs and the
style sheet is in the page, so a folder copied to a USB stick opens anywhere.

Camera false-alarm probability (when the attribution does not carry one): under H0 the normalised
correlation at one position is N(0, 1), so ``p1 = Q(sqrt(PCE))`` per position and
``P_FA = 1 - (1 - p1)^n`` for ``n`` positions searched. Generators: ``Q((z - m) / s)`` from the
normal fit (mean ``m``, std ``s``) of the library's non-matching z scores.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy import special

from fingerprint import report_plots as plots
from fingerprint.attribution import Attribution, Attributor, ReferenceScore, load_attributor
from fingerprint.calibration import NULL_KEY
from fingerprint.estimate import generator_residual
from fingerprint.io.metadata import file_jpeg_quality
from fingerprint.jpeg_residual import read_jpeg_grid
from fingerprint.localization import Localization, localize

__all__ = ["ImageReport", "false_alarm", "localize_file", "localize_reference", "write_report"]

TEMPLATES = Path(__file__).with_name("templates")
_EXIF_SOFTWARE, _EXIF_DATETIME, _EXIF_IFD, _EXIF_DATETIME_ORIGINAL = 305, 306, 0x8769, 36867
_NEGLIGIBLE_LOG10 = -15.0  # false-alarm probabilities below 1e-15 are reported as "below 1e-15"


@dataclass
class ImageReport:
    """Everything one page shows (also what the index row needs)."""

    path: str
    page: str
    facts: dict[str, Any]
    attribution: Attribution | None = None
    error: str | None = None
    summary: str = ""
    decision_ref: ReferenceScore | None = None
    p_false_alarm: str = ""
    p_false_alarm_note: str = ""
    searched: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    thumbnail: str = ""
    localization: dict[str, Any] | None = None


# --- facts --------------------------------------------------------------------------------------
def _exif_extras(path: Path) -> dict[str, str | None]:
    """EXIF date (DateTimeOriginal, else DateTime) and software; None where absent or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
            date = sub.get(_EXIF_DATETIME_ORIGINAL) or exif.get(_EXIF_DATETIME)
            software = exif.get(_EXIF_SOFTWARE)
    except Exception:  # noqa: BLE001 - broken metadata never stops a report
        return {"date": None, "software": None}

    def clean(v):
        v = v.decode("latin-1") if isinstance(v, bytes) else v
        v = str(v).replace("\x00", "").strip() if v is not None else ""
        return v or None

    return {"date": clean(date), "software": clean(software)}


def _file_facts(path: Path, info, sha: str) -> dict[str, Any]:
    extras = _exif_extras(path)
    quality = getattr(info, "jpeg_quality", None)
    return {
        "name": path.name, "path": str(path.resolve()), "sha256": sha, "size_bytes": path.stat().st_size,
        "format": info.format, "width": info.width, "height": info.height, "mode": info.mode,
        "bit_depth": info.bit_depth, "exif_orientation": info.exif_orientation,
        "make": info.make, "model": info.model, "date": getattr(info, "datetime", None) or extras["date"],
        "software": getattr(info, "software", None) or extras["software"],
        "jpeg_quality": quality if quality is not None else ("not estimated" if info.format in ("JPEG", "MPO") else None),
    }


def _library_facts(path: Path, att: Attributor) -> dict[str, Any]:
    from fingerprint import __version__
    from fingerprint.io import file_sha256
    from reference_db import SCHEMA_VERSION, Library

    with Library(path, "r") as lib:
        schema = getattr(lib, "schema_version", None) or SCHEMA_VERSION
        null = np.asarray(lib.calibration(NULL_KEY), dtype=np.float64)
    gthr = att.generator_threshold
    return {
        "path": str(path.resolve()), "sha256": file_sha256(path), "schema_version": schema,
        "ganprint_version": __version__, "n_cameras": len(att.camera_names), "n_generators": len(att.generators),
        "generator_threshold": gthr.describe() if gthr else "no generator threshold",
        "pce_threshold": att.pce_threshold, "null": null[np.isfinite(null)],
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", " UTC"),
    }


# --- false-alarm probability --------------------------------------------------------------------
def _format_log10(log10p: float) -> str:
    if log10p >= -3:
        return f"{10 ** log10p:.3g}"
    if log10p < _NEGLIGIBLE_LOG10:
        return f"below 1e-15 (the Gaussian model gives about 1e{math.floor(log10p)})"
    mant, exp = 10 ** (log10p - math.floor(log10p)), math.floor(log10p)
    return f"{mant:.2g}e{exp}"


def false_alarm(score: ReferenceScore, null: np.ndarray | None = None) -> tuple[float | None, str]:
    """``(log10 P_FA, how it was obtained)`` of one reference's score, or ``(None, reason)``.

    Uses the attribution's own value when it carries one (``p_false_alarm``, ``p_fa`` or
    ``false_alarm``). Cameras otherwise: ``p1 = Q(sqrt(PCE))`` at one position (Gaussian tail of the
    peak under H0), ``1 - (1 - p1)^n`` for the ``n`` positions searched, in log space (no
    underflow). Generators: the normal fit of the library's non-matching z scores ``null``.
    """
    for attr in ("p_false_alarm", "p_fa", "false_alarm"):
        value = getattr(score, attr, None)
        if isinstance(value, (int, float)) and value is not None:
            return (math.log10(value) if value > 0 else -math.inf), "reported by the attribution"
    if score.kind == "camera":
        if score.pce is None:
            return None, "not scored"
        n = max(int(score.n_positions or 1), 1)
        if score.pce <= 0:
            return 0.0, "PCE not positive"
        log_p1 = float(special.log_ndtr(-math.sqrt(score.pce)))  # ln Q(sqrt(PCE))
        if log_p1 + math.log(n) < -18:  # 1 - (1 - p)^n = n p to double precision
            ln_p = log_p1 + math.log(n)
        else:
            ln_p = math.log(-math.expm1(n * math.log1p(-math.exp(log_p1))))
        return ln_p / math.log(10), (f"computed by this report: Q(sqrt(PCE)) per position, 1-(1-p)^n for "
                                     f"n = {n:,} positions searched")
    if score.z is None:
        return None, "not scored"
    null = np.asarray(null if null is not None else [], dtype=np.float64)
    if null.size < 2:
        return None, "no non-matching scores in the library to compare with"
    m, s = float(null.mean()), float(null.std(ddof=1))
    log_p = float(special.log_ndtr(-(score.z - m) / s)) / math.log(10)
    return log_p, (f"computed by this report: normal fit (mean {m:.2f}, std {s:.2f}) of {null.size} non-matching "
                   "z scores in the library, per (image, generator) pair")


# --- localisation -------------------------------------------------------------------------------
def localize_reference(att: Attributor, image: np.ndarray, name: str, *, score: ReferenceScore | None = None,
                       **options) -> tuple[Localization, ReferenceScore]:
    """Tamper localisation of ``image`` against camera ``name`` of an attributor.

    The offset and rotation come from the attribution (``score``, else the image is scored against
    ``name`` alone first), so crops and rotated photos are localised where they sit on the sensor.
    ``options`` go to :func:`fingerprint.localization.localize` (window, alpha, ...).

    Raises
    ------
    ReferenceNotFoundError
        ``name`` is not in the library.
    ValueError
        ``name`` is a generator, or the image cannot be placed on the camera's sensor.
    """
    from reference_db import ReferenceNotFoundError

    if name not in att.camera_names:
        if any(g.name == name for g in att.generators):
            raise ValueError(f"{name} is a generator; tamper localisation needs a camera fingerprint")
        known = ", ".join(sorted(att.camera_names)) or "none"
        raise ReferenceNotFoundError(f"no camera reference named {name!r} in the library (cameras: {known})")
    try:
        cam = att.camera(name)
    except KeyError:  # found damaged when its fingerprint was read (reported by the attributor's warning)
        raise ReferenceNotFoundError(f"the camera reference {name!r} is damaged and cannot be used") from None
    if score is None:
        single = Attributor([(name, "camera", cam.K, cam.params)], pce_threshold=att.pce_threshold,
                            rotations=att.rotations != (0,), query_sigma=att.query_sigma, retry_sigma=att.retry_sigma)
        score = single.score(image, name).scores[name]
    if score.offset is None:
        raise ValueError(f"the image could not be placed on {name}'s sensor ({score.note or 'no offset found'})")
    loc = localize(image, cam.K, offset=score.offset, rotation=score.rotation or 0, sigma=att.query_sigma, **options)
    return loc, score


def localize_file(library: str | os.PathLike, image_path: str | os.PathLike, reference: str, *,
                  mask_out: str | os.PathLike, map_out: str | os.PathLike | None = None, window: int | None = None,
                  alpha: float | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``ganprint localize``: localise one image file against one camera and write the mask PNG.

    ``mask_out`` gets an 8-bit gray PNG of the image's size, 255 where the fingerprint is absent
    (tampered) and 0 elsewhere; ``map_out`` (optional) the picture of the map over the image.
    Returns the JSON-ready summary (``Localization.as_dict`` plus the attribution's score).
    A photo that does not match the reference is still localised, with a warning: the map then
    has no authentic part to learn from and flags nothing that a match would.
    """
    from PIL import Image

    from fingerprint.io import load_image

    for out in (mask_out, map_out):
        if out is not None and Path(out).suffix.lower() != ".png":
            raise ValueError(f"{out}: the output file must end in .png")
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    att = load_attributor(library)  # library errors first: they concern every image
    image = load_image(image_path)
    options = {k: v for k, v in (("window", window), ("alpha", alpha)) if v is not None}
    loc, score = localize_reference(att, image, reference, **options)
    if not score.match:
        warn(f"{image_path} does not match {reference} ({_score_text(score)}); the map is not evidence of tampering")
    Image.fromarray(loc.mask.astype(np.uint8) * np.uint8(255), mode="L").save(mask_out, format="PNG")
    if map_out is not None:
        Path(map_out).write_bytes(plots.localization_png(image, loc.mask, loc.fraction_present, loc.decidable,
                                                          title=f"fingerprint of {reference} across the image"))
    return {"image": str(image_path), "reference": reference, "mask": str(mask_out), "map": str(map_out) if map_out else None,
            **loc.as_dict(), "attribution": score.as_dict()}


def _localization_facts(image, loc: Localization, name: str) -> dict[str, Any]:
    png = plots.localization_png(image, loc.mask, loc.fraction_present, loc.decidable,
                                 title=f"fingerprint of {name} across the image")
    return {"figure": plots.data_uri(png), "tampered_pct": 100 * loc.tampered_fraction,
            "decidable_pct": 100 * loc.decidable_fraction, **loc.as_dict()}


# --- words ----------------------------------------------------------------------------------------
def _score_text(s: ReferenceScore) -> str:
    if s.kind == "camera" and s.decided_by == "pce" and s.pce is not None:
        return f"PCE {s.pce:,.1f} against a threshold of {s.threshold:,.1f}"
    if s.z is not None:
        thr = f"a threshold of NCC {s.threshold:.4g}" if math.isfinite(s.threshold) else "no calibrated threshold"
        return f"z = {s.z:.2f} (NCC {s.ncc:.4f}) against {thr}"
    return f"NCC {s.ncc:.4f} against a threshold of {s.threshold:.4g}" if s.ncc is not None else "no score"


def _summary(att: Attribution, p_text: str, loc: dict | None) -> str:
    """The plain-language paragraph at the top of a page."""
    if att.best:
        s = att.scores[att.best]
        what = "taken by camera" if s.kind == "camera" else "made by generator"
        text = (f"This image was very probably {what} {att.best}: its {'sensor noise' if s.kind == 'camera' else 'residual'} "
                f"matches that reference with {_score_text(s)}. The chance that an image from another source scores "
                f"this high is {p_text}.")
        others = [o for o in att.scores.values() if o.match and o.name != att.best]
        if others:
            text += (" It also matches " + "; ".join(f"{o.name} ({_score_text(o)})" for o in others) +
                     ": an image matching two sources is probably a composite, parts of it coming from each.")
        if loc is not None:
            if loc["tampered_pct"] > 0:
                text += (f" However, the camera's fingerprint is missing where it should show on {loc['tampered_pct']:.1f} % "
                         "of the image (outlined in red below): those parts may have been pasted in or altered.")
            else:
                text += " No part of the image was found to lack the camera's fingerprint where it could be tested."
            if loc["decidable_pct"] < 90:
                text += (f" Only {loc['decidable_pct']:.0f} % of the image could be tested (dark, saturated or highly "
                         "textured areas carry too little fingerprint to tell).")
        return text
    text = "No reference in this library matches this image at the stated false-alarm rates."
    if att.closest:
        text += f" The closest was {att.closest}, with {_score_text(att.scores[att.closest])}: not enough to attribute it."
    unscored = [s for s in att.scores.values() if s.kind == "camera" and s.pce is None]
    if unscored:
        text += (f" {len(unscored)} camera(s) could not be compared at all ({unscored[0].note or 'no score'}), so this "
                 "says nothing about them.")
    undecided = [s for s in att.scores.values() if s.kind == "generator" and not math.isfinite(s.threshold)]
    if undecided:
        best = max(undecided, key=lambda s: s.z if s.z is not None else -math.inf)
        text += (f" Generators could not be decided: the library has no calibrated generator threshold (highest score: "
                 f"{best.name}, z = {best.z:.2f}; see the table).")
    return text + (" This does not show that the image is authentic, original or from no camera: it may come from a camera or "
                   "generator that is not in the library, or have been resized, cropped at a different scale, heavily "
                   "compressed or otherwise processed so that its traces no longer show.")


def _searched(att: Attribution, lib: dict[str, Any], ref: ReferenceScore | None) -> list[str]:
    """What the attribution searched, in words (the positions counted for the decision's reference)."""
    out = [f"{lib['n_cameras']} camera(s) and {lib['n_generators']} generator(s) in the library, every one tried."]
    cams = [s for s in att.scores.values() if s.kind == "camera" and s.pce is not None]
    if cams:
        s = ref if ref is not None and ref.kind == "camera" and ref.pce is not None else cams[0]
        out.append(f"Cameras: PCE of the query residual (sigma 2, retried at sigma 5 when nothing matched) times the image "
                   f"against each fingerprint; {s.n_positions:,} position(s) (shifts x rotations) searched for {s.name}; "
                   f"threshold {lib['pce_threshold']:g} at one position, raised for the search.")
    unscored = [s for s in att.scores.values() if s.kind == "camera" and s.pce is None]
    if unscored:
        out.append(f"Not compared: {', '.join(s.name for s in unscored)} ({unscored[0].note or 'no score'}).")
    if any(s.kind == "generator" for s in att.scores.values()):
        out.append(f"Generators: NCC of the generator residual with each fingerprint; {lib['generator_threshold']}.")
    return out


def _rows(att: Attribution, null) -> list[dict[str, Any]]:
    rows = []
    for s in sorted(att.scores.values(), key=lambda s: s.strength, reverse=True):
        log_p, _ = false_alarm(s, null)
        rows.append({"name": s.name, "kind": s.kind, "pce": s.pce, "ncc": s.ncc, "z": s.z, "threshold": s.threshold,
                     "decided_by": s.decided_by, "strength": s.strength, "match": s.match, "rotation": s.rotation,
                     "offset": s.offset, "n_positions": s.n_positions, "note": s.note,
                     "p_fa": _format_log10(log_p) if log_p is not None else "-"})
    return rows


# --- one image ------------------------------------------------------------------------------------
def _report_image(att: Attributor, path: Path, page: str, lib: dict[str, Any], *, with_localization: bool,
                  localize_options: dict) -> ImageReport:
    from fingerprint.io import file_sha256, load_image

    image, info = load_image(path, return_metadata=True)
    rep = ImageReport(str(path), page, _file_facts(path, info, file_sha256(path)))
    res = att.score(image, str(path), file_jpeg_quality(path), jpeg=read_jpeg_grid(path))  # as `attribute` scores it
    rep.attribution = res
    rep.thumbnail = plots.data_uri(plots.thumbnail_jpeg(image, 200), "image/jpeg")
    rep.figures["image"] = plots.data_uri(plots.thumbnail_jpeg(image, 720), "image/jpeg")
    name = res.best or res.closest
    ref = res.scores.get(name) if name else None
    rep.decision_ref = ref
    log_p, note = false_alarm(ref, lib["null"]) if ref is not None else (None, "")
    rep.p_false_alarm, rep.p_false_alarm_note = (_format_log10(log_p) if log_p is not None else "not available"), note
    rep.searched = _searched(res, lib, ref)
    rep.rows = _rows(res, lib["null"])
    ordered = sorted(res.scores.values(), key=lambda s: s.strength, reverse=True)
    rep.figures["strengths"] = plots.data_uri(plots.strengths_png([s.name for s in ordered],
                                                                  [s.strength for s in ordered], [s.kind for s in ordered]))
    if ref is not None and ref.kind == "camera" and ref.pce is not None:
        rep.figures["null"] = plots.data_uri(plots.camera_null_png(ref.pce, ref.threshold, ref.n_positions, name=ref.name))
    elif ref is not None and ref.kind == "generator" and ref.z is not None:
        zthr = att.generator_threshold.value if att.generator_threshold else None
        rep.figures["null"] = plots.data_uri(plots.generator_null_png(ref.z, zthr, lib["null"], name=ref.name))
    if res.best and ref.kind == "camera" and with_localization:
        loc, _ = localize_reference(att, image, res.best, score=ref, **localize_options)
        rep.localization = _localization_facts(image, loc, res.best)
    if ref is not None and ref.kind == "generator":
        gen = next(g for g in att.generators if g.name == ref.name)
        residual = generator_residual(image, gen.params)
        rep.figures["spectra"] = plots.data_uri(plots.spectra_png(residual, gen.F, name=gen.name))
    rep.summary = _summary(res, rep.p_false_alarm, rep.localization)
    return rep


def _page_name(i: int, path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{path.parent.name}_{path.stem}".strip("_"))[-60:] or "image"
    return f"{i:03d}_{stem}.html"


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def num(v, fmt=",.1f"):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    env.filters["num"] = num
    return env


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(library: str | os.PathLike, paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 localize_matches: bool = True, localize_options: dict | None = None, note: str | None = None,
                 progress: bool = False, warn: Callable[[str], None] | None = None, **options) -> Path:
    """Write ``out_dir/index.html`` and one page per image; returns the index path.

    Parameters
    ----------
    library : path of a reference library
    paths : image files, folders or glob patterns (expanded as ``ganprint attribute`` does)
    out_dir : folder, created if missing; pages already there with the same names are replaced
    localize_matches : bool
        Run tamper localisation for every camera match (one more residual per match).
    localize_options : dict, optional
        Passed to :func:`fingerprint.localization.localize` (``window``, ``alpha``).
    note : str, optional
        A line shown at the top of the index (e.g. "a subset of the queries").
    warn : callable, optional
        Receives one line per image that could not be read (it gets a row saying why).
    **options
        Passed to :func:`fingerprint.attribution.load_attributor` (``fpr``, ``method``, ...).

    Returns
    -------
    pathlib.Path
        ``out_dir/index.html``.
    """
    from fingerprint.errors import GanprintError
    from fingerprint.io import collect_image_paths

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    lib_path = Path(library)
    att = load_attributor(lib_path, **options)
    lib = _library_facts(lib_path, att)
    files = collect_image_paths(list(paths))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = _environment()
    page_t, index_t = env.get_template("report_image.html"), env.get_template("report_index.html")
    reports: list[ImageReport] = []
    for i, path in enumerate(files):
        page = _page_name(i, path)
        if progress:
            print(f"report: {i + 1}/{len(files)} {path}", file=sys.stderr, flush=True)
        try:
            rep = _report_image(att, path, page, lib, with_localization=localize_matches,
                                localize_options=dict(localize_options or {}))
        except GanprintError as err:
            warn(str(err))
            reports.append(ImageReport(str(path), "", {"name": path.name}, error=str(err)))
            continue
        _write_atomic(out / page, page_t.render(r=rep, lib=lib))
        reports.append(rep)
    index = out / "index.html"
    _write_atomic(index, index_t.render(reports=reports, lib=lib, note=note))
    return index
