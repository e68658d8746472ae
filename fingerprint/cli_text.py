"""What the command line prints: escaped paths, strict JSON, attribution rows and their summary.

Nothing here computes a score; it formats the results of ``fingerprint.attribution`` for a
reader (tab-separated text) or a program (JSON).

Text rows of ``ganprint attribute`` are tab-separated, one per image::

    IMAGE <TAB> DECISION <TAB> SCORE vs THRESHOLD <TAB> NOTES

``DECISION`` is the matching reference or ``unknown (closest NAME)``. ``SCORE`` is the statistic
that decided: ``PCE`` (cameras, default), ``NCC`` (cameras with ``--method ncc``) or ``z`` (generators,
``z = NCC * sqrt(D)``, D the number of values compared; the NCC is shown beside it). ``NOTES``
says how the match was found: ``turned 90 deg counter-clockwise`` (the query, turned that way,
lines up with the sensor; the photo was stored turned clockwise), ``at row R, column C`` (top-left
corner of the query inside the fingerprint, rows counted down from the top, columns from the left,
after the turn), ``resized by F`` (a camera found in a resized copy: the factor F, and the
stage that found it, ``implied by its size`` or ``scale search``; the row and column are then
those of the fingerprint resized by F), the second residual (``sigma 5``), a comparison on a
centred region, or why a reference was not compared. A camera threshold above the one-position
value says why: ``threshold raised: searched 2 rotations × 2 sigmas × 1.2 M shifts: threshold 91``
(every position the search may score counts, docs/camera_search.md); an ``unknown`` says what was
tried for its closest camera (``tried: ...``). Lines starting with ``#`` are the header and the
closing summary.
"""

from __future__ import annotations

import json
import math
import os
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AttributionTally", "HEADER", "dumps", "format_row", "json_safe", "printable", "stdout_closed"]

HEADER = "# image\tdecision\tscore vs threshold\tnotes"

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(text: object, *, backslash: bool = True) -> str:
    """``text`` with every control or format character escaped, so it prints on one line as itself.

    Tab, newline and carriage return become ``\\t``, ``\\n``, ``\\r``; other control characters
    (Unicode categories Cc, Cf, Zl, Zp: escape sequences, bidirectional overrides, ...) become
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``. On POSIX a backslash is doubled (unless ``backslash``
    is False: messages of errors, which escape their own newlines), so an escape cannot be confused
    with a file name that contains one. A file named ``"a\\tb.png"`` therefore cannot forge a result line.

    >>> printable("evil\\tcamA\\tPCE 9999\\nnext.png")
    'evil\\\\tcamA\\\\tPCE 9999\\\\nnext.png'
    """
    s = str(text)
    out = []
    for ch in s:
        if ch == "\\" and backslash and os.sep == "/":
            out.append("\\\\")
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **kwargs) -> str:
    """Strict JSON (``allow_nan=False``) of ``value`` after :func:`json_safe`."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def attribution_json(res) -> dict:
    """``Attribution.as_dict()`` made strict: a threshold that is not a number becomes null with a note."""
    d = res.as_dict()
    for s in d.get("scores", {}).values():
        t = s.get("threshold")
        if isinstance(t, float) and not math.isfinite(t) and not s.get("note"):
            s["note"] = "no threshold: this reference cannot match"
    return json_safe(d)


def _is_uncalibrated(s) -> bool:
    return s.kind == "generator" and not math.isfinite(s.threshold)


def _z_threshold(s) -> float | None:
    """The z threshold of a generator score (the NCC threshold times sqrt(D), D = (z / NCC)**2)."""
    zt = getattr(s, "z_threshold", None)
    if zt is not None:
        return float(zt)
    if s.z is not None and s.ncc and math.isfinite(s.threshold):
        return s.threshold * s.z / s.ncc
    return None


def _versus(value: float, threshold: float, decimals: int, match: bool) -> str:
    """``value >= threshold`` or ``value < threshold``, with enough decimals that the two differ."""
    for d in (decimals, decimals + 2, decimals + 4):
        a, b = f"{value:.{d}f}", f"{threshold:.{d}f}"
        if a != b:
            break
    return f"{a} {'>=' if match else '<'} {b}"


def _score_text(s) -> str:
    """The deciding statistic against its threshold, e.g. ``PCE 1234.5 >= 87.3``."""
    if s.kind == "generator":
        z = f"z {s.z:.2f}" if s.z is not None else "z -"
        ncc = f" (NCC {s.ncc:.4f})" if s.ncc is not None else ""
        if _is_uncalibrated(s):
            return f"{z}{ncc}, no threshold (uncalibrated)"
        zt = _z_threshold(s)
        if zt is None:
            return f"{z}{ncc}, NCC threshold {s.threshold:.4g}"
        return f"z {_versus(s.z, zt, 2, s.match)}{ncc}"
    if s.decided_by == "pce" and s.pce is not None:
        return f"PCE {_versus(s.pce, s.threshold, 1, s.match)}"
    if s.ncc is not None:
        return f"NCC {_versus(s.ncc, s.threshold, 4, s.match)}"
    return "not compared"


def _own_notes(s) -> list[str]:
    """The parts of a score's note about this comparison (the threshold's story is told once, in the summary)."""
    parts = (s.note or "").split("; ")
    return [p for p in parts if p and not p.startswith(("uncalibrated", "no calibrated threshold"))]


_STAGE_WORDS = {"implied scale": "implied by its size", "scale search": "scale search"}


def _where(s) -> list[str]:
    out = []
    if s.rotation:
        out.append(f"turned {s.rotation} deg counter-clockwise")
    scaled = s.scale is not None and s.scale != 1.0
    if scaled:  # a non-match only says where its best position was
        out.append(f"resized by {s.scale:.4g} ({_STAGE_WORDS.get(s.stage, s.stage)})" if s.match
                   else f"best at factor {s.scale:.4g} ({s.stage})")
    if s.offset and tuple(s.offset) != (0, 0):
        out.append(f"at row {s.offset[0]}, column {s.offset[1]}" + (" of the fingerprint so resized" if scaled else ""))
    return out + _own_notes(s)


def _search_notes(s, matched: bool) -> list[str]:
    """Why a camera's threshold is above its one-position value (a match), or what was tried (an unknown)."""
    if s.kind != "camera" or not getattr(s, "searched", None):
        return []
    if matched:  # the deciding stage's part of the text
        own = [p for p in s.searched.split("; ") if s.stage and p.startswith(f"{s.stage}: ")]
        return [f"threshold raised: {own[0] if own else s.searched}"] if s.n_positions > 1 else []
    return [f"tried: {s.searched}"]


def _compared(s) -> bool:
    return s.ncc is not None or s.pce is not None


def _unknown_notes(res, shown) -> list[str]:
    """For an unknown: references not compared (and why), and the best uncalibrated generator."""
    out = []
    why: dict[str, list[str]] = {}
    for name, s in res.scores.items():
        if not _compared(s):
            why.setdefault("; ".join(_own_notes(s)) or "no comparison possible", []).append(name)
    out += [f"not compared with {', '.join(names)}: {reason}" for reason, names in why.items()]
    loose = [s for s in res.scores.values() if _is_uncalibrated(s) and s.z is not None and s is not shown]
    if loose:
        top = max(loose, key=lambda s: s.z)
        out.append(f"generator {top.name}: z {top.z:.2f} (no threshold, uncalibrated)")
    return out


def format_row(res) -> str:
    """One tab-separated text line for an Attribution (see the module docstring)."""
    image = printable(res.image)
    shown = res.scores.get(res.best) if res.best else (res.scores.get(res.closest) if res.closest else None)
    notes = _unknown_notes(res, shown) if not res.best else []
    if shown is None or not _compared(shown):
        return f"{image}\tunknown\t-\t{printable('; '.join(notes) or 'no reference could be compared')}"
    who = printable(res.best) if res.best else f"unknown (closest {printable(res.closest)})"
    notes = _where(shown) + _search_notes(shown, bool(res.best)) + notes
    return f"{image}\t{who}\t{_score_text(shown)}\t{printable('; '.join(notes))}".rstrip("\t")


@dataclass
class AttributionTally:
    """Counts for the closing summary of ``ganprint attribute``."""

    matched: dict[str, int] = field(default_factory=lambda: {"camera": 0, "generator": 0})
    unknown: int = 0
    unreadable: int = 0
    uncalibrated: bool = False
    skipped: list[tuple[Any, str]] = field(default_factory=list)  # (path, reason): files met in folders, not tried

    def add(self, res) -> None:
        if res.best:
            kind = res.scores[res.best].kind
            self.matched[kind] = self.matched.get(kind, 0) + 1
        else:
            self.unknown += 1
        self.uncalibrated = self.uncalibrated or any(_is_uncalibrated(s) for s in res.scores.values())

    def summary(self) -> list[str]:
        """The closing lines, e.g. ``16 images: 14 matched (cameras 10, generators 4), 2 unknown, 0 unreadable``."""
        n_matched = sum(self.matched.values())
        total = n_matched + self.unknown + self.unreadable
        kinds = ", ".join(f"{k}s {v}" for k, v in self.matched.items() if v)
        lines = [f"{total} image{'s' if total != 1 else ''}: {n_matched} matched" + (f" ({kinds})" if kinds else "")
                 + f", {self.unknown} unknown, {self.unreadable} unreadable"
                 + (f"; {len(self.skipped)} file(s) in the folders left out (listed below)" if self.skipped else "")]
        if self.uncalibrated:
            lines.append("generators were scored but never matched: the library's generator threshold is "
                         "uncalibrated; build a second generator, run 'ganprint calibrate' with images of no "
                         "library generator, or pass --generator-z Z")
        return lines

    def left_out_lines(self) -> list[str]:
        """One line per file or folder that the folder search left out, with the reason."""
        return [left_out(path, why) for path, why in self.skipped]


def left_out(path, why: str) -> str:
    """The line for a file that a folder search left out, e.g. ``left out: case/notes.txt (not an image ...)``."""
    return f"left out: {printable(path)} ({why})"


def describe_generator_threshold(threshold) -> str:
    """One line on a library's generator threshold (a ``calibration.GeneratorThreshold``) for the CLI."""
    from fingerprint.calibration import MIN_NULL_SCORES

    if threshold is None:
        return "none"
    if threshold.value is None:
        return (f"uncalibrated ({threshold.n_null} non-matching scores, {MIN_NULL_SCORES} needed): generators are "
                "scored but never matched; build another generator, run 'ganprint calibrate' with images of no "
                "library generator, or pass --generator-z Z to attribute")
    if threshold.source == "given":
        return f"z = NCC*sqrt(D) >= {threshold.value:.2f} (given)"
    return threshold.describe()


def stdout_closed() -> bool:
    """True when stdout's reader has gone (a broken pipe); stdout then points at /dev/null, so the
    interpreter's final flush stays quiet.

    A pipe whose reader closed polls as POLLERR on its write end; where stdout has no file
    descriptor (tests), a flush that raises BrokenPipeError again tells.
    """
    import os
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        fd = None
    broken = False
    if fd is not None and hasattr(select, "poll"):
        try:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            broken = any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
        except (OSError, ValueError):
            broken = False
    if not broken:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            broken = True
        except (OSError, ValueError):
            pass
    if broken and fd is not None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except OSError:
            pass
    return broken
