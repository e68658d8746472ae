"""Experiments for issue 11: generator attribution that keeps its false-alarm rate in the wild.

Run: ``.venv/bin/python benchmarks/gan_trust.py [experiment ...]`` (default: all). Experiments:
``baseline`` (the issue's table), ``null`` (null spread against size and source), ``design`` (D1-D10:
the decision designs on every condition), ``final`` (D7-D10 only), ``peaks`` (shift-invariant
spectral peaks, resize factor), ``jpeg`` (compression-matched fingerprints against JPEG bands),
``module`` (fingerprint.generator_decision reproduces the decisions). The residual cache
(``gan_trust_data.py``, $GAN_TRUST_CACHE) fills in about a minute; the shift searches of a first
``design`` run take 15-20 min on 2 shared cores (about 8 CPU minutes) and are memoised on disk
next to the cache, after which each experiment takes 1-6 minutes. Tables are appended to
$GAN_TRUST_LOG (default /tmp/progress/gan_trust_tables.md).

What is used for what (the rule of this file)
---------------------------------------------
- Library and every *tuned* quantity (fingerprints, null models, genuine ranges, variants):
  ``../shared/data/gan/ref`` only, plus data made here (simulated cameras and generators, flat
  images). Thresholds follow from a stated false-alarm rate or a physical floor, never from the
  answers on query images.
- Evaluation: ``gan/query`` (genuine, ``real``, ``unknown_pix2pix_day2night``), Dresden crops and
  the flat set, pristine and transformed (``fingerprint.transforms``).

Fingerprints are those of ``ganprint build`` (``GeneratorAccumulator`` with the default
parameters: colour, sigma 5, self-whitening, Wiener-shrunk mean); scores are NCC over the values
compared, ``z = NCC * sqrt(D)``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gan_trust_data as data  # noqa: E402
from fingerprint.build import default_params  # noqa: E402
from fingerprint.calibration import threshold_from_null  # noqa: E402
from fingerprint.estimate import GeneratorAccumulator, self_whiten  # noqa: E402

PARAMS = default_params("generator")
FPR = 0.01
NEG_KINDS = ("real", "unknown_pix2pix_day2night", "dresden_ff", "dresden_nat", "flat")
_memo: dict = {}


def say(*lines: str) -> None:
    """Print and append to the progress log."""
    text = "\n".join(lines)
    print(text, flush=True)
    with open(os.environ.get("GAN_TRUST_LOG", "/tmp/progress/gan_trust_tables.md"), "a") as fh:
        fh.write(text + "\n")


# --------------------------------------------------------------------------------- residuals
def whitened(set_name: str, cond: str = "none"):
    """Self-whitened residuals R (n, 3, h, w) float32 and labels of a cached set/condition."""
    key = ("w", set_name, cond)
    if key not in _memo:
        images, noise, labels, files, applied = data.load(set_name, cond)
        R = np.stack([self_whiten(np.ascontiguousarray(n)) for n in noise])
        _memo[key] = (R, labels, files, applied)
    return _memo[key]


def raw(set_name: str, cond: str = "none"):
    images, noise, labels, files, applied = data.load(set_name, cond)
    return images, noise, labels


# ------------------------------------------------------------------------------- fingerprints
def accumulate(R: np.ndarray) -> GeneratorAccumulator:
    """The accumulator ``ganprint build`` fills, from whitened residuals (n, C, H, W)."""
    from scipy import fft

    y = fft.rfft2(R, axes=(-2, -1), workers=-1)
    y[:, :, 0, 0] = 0
    sums = {"sum": R.sum(0).astype(np.float32), "power": (y.real**2 + y.imag**2).sum(0).astype(np.float32)}
    return GeneratorAccumulator.from_sums(PARAMS, sums, len(R))


def fingerprint_of(R: np.ndarray) -> np.ndarray:
    return accumulate(R).fingerprint()


@dataclass
class Library:
    names: list[str]
    F: np.ndarray  # (G, 3, H, W)
    ref_R: np.ndarray
    ref_labels: np.ndarray


def library(cond: str = "none", set_name: str = "ref", names=None) -> Library:
    key = ("lib", set_name, cond, tuple(names) if names else None)
    if key not in _memo:
        R, labels, _, _ = whitened(set_name, cond)
        names = names or sorted(set(labels))
        F = np.stack([fingerprint_of(R[labels == g]) for g in names])
        _memo[key] = Library(list(names), F, R, labels)
    return _memo[key]


def loo_fingerprints(R: np.ndarray) -> np.ndarray:
    """Fingerprint of the set without image i, for every i (n, C, H, W): sums minus one image."""
    acc = accumulate(R)
    from scipy import fft

    y = fft.rfft2(R, axes=(-2, -1), workers=-1)
    y[:, :, 0, 0] = 0
    p = y.real**2 + y.imag**2
    out = []
    for i in range(len(R)):
        sums = {"sum": acc.sums["sum"] - R[i], "power": acc.sums["power"] - p[i]}
        out.append(GeneratorAccumulator.from_sums(PARAMS, sums, len(R) - 1).fingerprint())
    return np.stack(out)


# ----------------------------------------------------------------------------------- scores
def centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=(-2, -1), keepdims=True)


def unit(a: np.ndarray) -> np.ndarray:
    """Per-channel centred, flattened over the last three axes, unit norm."""
    v = centred(a).reshape(*a.shape[:-3], -1)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1)


def centre_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = a.shape[-2:]
    t, l = (H - h) // 2, (W - w) // 2
    return a[..., t:t + h, l:l + w]


def z_centre(R: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Current attribution: NCC on the centred common region, z = NCC sqrt(D). (n, G)"""
    h, w = min(R.shape[-2], F.shape[-2]), min(R.shape[-1], F.shape[-1])
    r, f = unit(centre_crop(R, h, w)), unit(centre_crop(F, h, w))
    return (r @ f.T) * math.sqrt(r.shape[-1])


def z_rp_centre(R: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Random-phase z on the centred common region. (n, G)

    ``z = sum_f Re(R(f) F*(f)) / sqrt(sum_f |R(f)|^2 |F(f)|^2)`` over every frequency f and channel
    (R, F the DFTs of the per-channel centred query residual and fingerprint region). If the phase
    of R relative to F is uniform and independent across frequencies (H0), z has mean 0 and
    variance exactly 1 whatever the spectra and the size; NCC sqrt(D) equals it only for a flat |R|.
    """
    h, w = min(R.shape[-2], F.shape[-2]), min(R.shape[-1], F.shape[-1])
    r = np.fft.fft2(centred(centre_crop(R, h, w)))  # (n, C, h, w)
    f = np.fft.fft2(centred(centre_crop(F, h, w)))  # (G, C, h, w)
    num = np.einsum("ncij,gcij->ng", r, f.conj()).real
    den = np.sqrt(np.einsum("ncij,gcij->ng", np.abs(r) ** 2, np.abs(f) ** 2))
    return num / np.where(den > 0, den, np.inf)


def zrpc_pair(r: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Channel-coupled random-phase z of same-size residuals r (n, C, h, w) and f (C, h, w). (n,)

    ``A(k) = sum_c R_c(k) F_c(k)^*``; ``z = sum_k Re A(k) / sqrt(sum_k |A(k)|^2)``. If the phase of
    the query at each frequency is uniform and independent of F (shared by the channels), z has
    mean 0 and variance 1 exactly, whatever the magnitudes, the size or the number of channels.
    """
    R = np.fft.fft2(centred(r))
    Fk = np.fft.fft2(centred(f))
    A = np.einsum("ncij,cij->nij", R, Fk.conj())
    den = np.sqrt((np.abs(A) ** 2).sum((1, 2)))
    return np.where(den > 0, A.real.sum((1, 2)) / np.where(den > 0, den, 1), 0.0)


def _box_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of a (C, H, W) over every h x w window: (C, H - h + 1, W - w + 1)."""
    c = np.pad(a.astype(np.float64).cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    return c[:, h:, w:] - c[:, :-h, w:] - c[:, h:, :-w] + c[:, :-h, :-w]


@dataclass
class Search:
    z0: np.ndarray  # (n, G) best NCC sqrt(D) over the positions searched
    zrpc: np.ndarray  # (n, G) channel-coupled random-phase z at that position
    offset: np.ndarray  # (n, G, 2) top, left of the best position in the fingerprint
    n_positions: int


def shift_search(R: np.ndarray, F: np.ndarray) -> Search:
    """NCC sqrt(D) of queries R (n, C, h, w) at every shift inside fingerprints F (G, C, H, W).

    Circular cross-correlation by FFT (the zero-padded query never wraps for valid shifts); the
    fingerprint region's per-channel mean and norm from box sums. zrpc is evaluated exactly on
    the best region.
    """
    n, C, h, w = R.shape
    G, _, H, W = F.shape
    q = centred(R).astype(np.float64)
    qn = np.sqrt((q**2).sum((1, 2, 3)))
    Q = np.fft.rfft2(q, s=(H, W))
    z0 = np.zeros((n, G))
    zr = np.zeros((n, G))
    off = np.zeros((n, G, 2), int)
    for g in range(G):
        Fg = F[g].astype(np.float64)
        corr = np.fft.irfft2(np.conj(Q) * np.fft.rfft2(Fg)[None], s=(H, W)).sum(1)[:, :H - h + 1, :W - w + 1]
        s1, s2 = _box_sums(Fg, h, w), _box_sums(Fg**2, h, w)
        den = np.sqrt(np.maximum((s2 - s1**2 / (h * w)).sum(0), 1e-300))
        z = corr / (den[None] * np.where(qn > 0, qn, np.inf)[:, None, None]) * math.sqrt(C * h * w)
        flat = z.reshape(n, -1)
        k = flat.argmax(1)
        z0[:, g] = flat[np.arange(n), k]
        t, l = np.unravel_index(k, z.shape[1:])
        off[:, g, 0], off[:, g, 1] = t, l
        for i in range(n):
            zr[i, g] = zrpc_pair(R[i:i + 1], F[g, :, t[i]:t[i] + h, l[i]:l[i] + w])[0]
    return Search(z0, zr, off, (H - h + 1) * (W - w + 1))


def aligned(R: np.ndarray, F: np.ndarray) -> Search:
    """Same-size queries and fingerprints (or the centred common region): one position."""
    h, w = min(R.shape[-2], F.shape[-2]), min(R.shape[-1], F.shape[-1])
    Fc = centre_crop(F, h, w)
    z0 = z_centre(R, F)
    zr = np.stack([zrpc_pair(centre_crop(R, h, w), Fc[g]) for g in range(len(F))], 1)
    return Search(z0, zr, np.zeros((*z0.shape, 2), int), 1)


def resample_fingerprint(F: np.ndarray, shape: tuple[int, int], method: str = "fourier") -> np.ndarray:
    """A fingerprint (G, C, H, W) at another size: Fourier cropping (band-limited resampling:
    the bins |k| < h/2 kept, amplitude per pixel kept) or Pillow's bicubic on each channel."""
    G, C, H, W = F.shape
    h, w = shape
    if method == "fourier":
        S = np.fft.fftshift(np.fft.fft2(F), axes=(-2, -1))
        t, l = H // 2 - h // 2, W // 2 - w // 2
        S = S[..., t:t + h, l:l + w]
        return np.fft.ifft2(np.fft.ifftshift(S, axes=(-2, -1))).real.astype(np.float32) * (h * w) / (H * W)
    from PIL import Image

    out = np.empty((G, C, h, w), np.float32)
    for g in range(G):
        for c in range(C):
            out[g, c] = np.asarray(Image.fromarray(F[g, c].astype(np.float32), mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return out


Q_STD = 1 / math.sqrt(12)  # grey levels: std of 8-bit rounding


def gate_stats(set_name: str, cond: str) -> np.ndarray:
    """(n, 2): informative pixels (8 x 8 local residual rms > 2 Q, unsaturated) and the spread of
    the smoothed residual power spectrum (participation ratio / number of bins, in (0, 1])."""
    key = ("gate", set_name, cond)
    if key not in _memo:
        from scipy import ndimage

        images, noise, labels, *_ = data.load(set_name, cond)
        out = []
        for x, n in zip(images, noise):
            x = np.asarray(x)
            n = n.astype(np.float64)
            e = ndimage.uniform_filter((n**2).mean(0), 8, mode="reflect")
            sat = ((x == 0) | (x == 255)).any(-1)
            ninf = float(((np.sqrt(e) > 2 * Q_STD) & ~sat).sum())
            P = (np.abs(np.fft.fft2(n - n.mean((1, 2), keepdims=True))) ** 2).sum(0)
            Ps = ndimage.uniform_filter(P, (min(P.shape) // 8) | 1, mode="wrap")
            out.append((ninf, Ps.sum() ** 2 / max((Ps**2).sum(), 1e-300) / P.size))
        _memo[key] = np.array(out)
    return _memo[key]


def testable(set_name: str, cond: str, min_pixels: float = 4096, min_spread: float = 0.3) -> np.ndarray:
    g = gate_stats(set_name, cond)
    return (g[:, 0] >= min_pixels) & (g[:, 1] >= min_spread)


# ---------------------------------------------------------------------------------- reports
def is_negative(label: str) -> bool:
    return label in data.NEGATIVE_LABELS or label.startswith("dresden") or label.startswith("flat") \
        or label.startswith("simcam") or label.startswith("simisp")


def neg_kind(label: str) -> str:
    return "flat" if label.startswith("flat") else label


def summary(names, z, labels, thr, decided=None) -> dict:
    """Closed-set top-1, genuine matched, and match rate of each negative kind.

    ``z`` (n, G); ``thr`` scalar or (G,) thresholds; ``decided`` optional (n,) bool "allowed to
    match" (False: answered unknown for another reason, e.g. insufficient texture).
    """
    thr = np.broadcast_to(np.asarray(thr, float), (z.shape[1],))
    best = z.argmax(1)
    match = z[np.arange(len(z)), best] >= thr[best]
    if decided is not None:
        match &= decided
    out = {}
    gen = np.array([lab in names for lab in labels])
    truth = np.array([names.index(lab) if lab in names else -1 for lab in labels])
    if gen.any():
        out["top1"] = float((best[gen] == truth[gen]).mean())
        out["matched"] = float((match & (best == truth))[gen].mean())
        out["wrong_match"] = float((match & (best != truth))[gen].mean())
    for kind in sorted({neg_kind(lab) for lab in labels if is_negative(lab)}):
        sel = np.array([neg_kind(lab) == kind for lab in labels])
        out[f"fp:{kind}"] = float(match[sel].mean())
        out[f"n:{kind}"] = int(sel.sum())
    return out


def table(rows: list[tuple[str, dict]], cols: list[str]) -> list[str]:
    lines = ["| condition | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, d in rows:
        cells = []
        for c in cols:
            v = d.get(c)
            cells.append("" if v is None else (f"{v:.0%}" if isinstance(v, float) and c != "thr" else f"{v}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


EVAL_COLS = ["top1", "matched", "wrong_match", "fp:real", "fp:unknown_pix2pix_day2night", "fp:dresden_ff",
             "fp:dresden_nat", "fp:flat"]


def eval_sets(cond: str):
    """Whitened residuals and labels of every evaluation set available for a condition."""
    Rs, labs = [], []
    for s in ("query", "dresden", "flat"):
        if cond in data.CONDITIONS_OF[s]:
            R, labels, _, _ = whitened(s, cond)
            Rs.append(R), labs.append(labels)
    return Rs, np.concatenate(labs)


# ------------------------------------------------------------------------------ experiments
def exp_baseline():
    """The issue's table with today's statistic (centre region, one library-wide threshold)."""
    lib = library()
    null = [z for g in range(len(lib.names)) for z in
            z_centre(lib.ref_R[lib.ref_labels == lib.names[g]], np.delete(lib.F, g, 0)).ravel()]
    thr = threshold_from_null(np.array(null), FPR)
    say("", "## baseline: centre-region NCC, one threshold from build-time null (other refs)",
        f"threshold {thr.describe()}")
    rows = []
    for cond in data.CONDITIONS:
        Rs, labels = eval_sets(cond)
        z = np.concatenate([z_centre(R, lib.F) for R in Rs])
        rows.append((cond, summary(lib.names, z, labels, thr.value)))
    say(*table(rows, EVAL_COLS))


def _disk_memo(key: tuple, compute):
    """Memoise in memory and on disk (the residual cache folder): hypothesis searches take minutes."""
    import pickle

    if key in _memo:
        return _memo[key]
    path = os.path.join(data.CACHE, "memo_" + "_".join(str(k) for k in key).replace(":", "-").replace("/", "-")
                        .replace(" ", "").replace("(", "").replace(")", "").replace(",", "-").replace("'", "") + ".pkl")
    if os.path.exists(path):
        with open(path, "rb") as fh:
            _memo[key] = pickle.load(fh)
    else:
        _memo[key] = compute()
        with open(path, "wb") as fh:
            pickle.dump(_memo[key], fh)
    return _memo[key]


def hyp_scores(set_name: str, cond: str, jpeg_variants: tuple[str, ...] = ()) -> dict:
    """Scores of every hypothesis for a set/condition against the library: {type: (z0 (n, G), N)}.

    Same size as the fingerprint: "aligned" (and "aligned@<cond>" for each compression-matched
    fingerprint variant when the query is a JPEG). Smaller: "crop" (every shift at scale 1) and
    "resize" (the whole image resized: the fingerprint resampled bicubically to the query size).
    """
    jpeg_variants = jpeg_variants if cond.startswith("jpeg") else ()
    return _disk_memo(("hyp", set_name, cond, jpeg_variants), lambda: _hyp_scores(set_name, cond, jpeg_variants))


def _hyp_scores(set_name: str, cond: str, jpeg_variants: tuple[str, ...]) -> dict:
    lib = library()
    R = whitened(set_name, cond)[0]
    H, W = lib.F.shape[-2:]
    h, w = R.shape[-2:]
    out = {}
    if (h, w) == (H, W):
        out["aligned"] = (aligned(R, lib.F).z0, 1)
        if cond.startswith("jpeg"):
            for v in jpeg_variants:
                out[f"aligned@{v}"] = (aligned(R, library(v).F).z0, 1)
    elif h <= H and w <= W:
        S = shift_search(R, lib.F)
        out["crop"] = (S.z0, S.n_positions)
        out["resize"] = (aligned(R, resample_fingerprint(lib.F, (h, w), "bicubic")).z0, 1)
    else:
        out["aligned"] = (aligned(R, lib.F).z0, 1)
    return out


def loo_scores(cond: str, jpeg_variants: tuple[str, ...] = ()) -> dict:
    """Genuine scores by leave-one-out: each ref image (transformed by ``cond``) against its own
    generator's fingerprint built without it, for every hypothesis type. {type: (n_ref,)}"""
    jpeg_variants = jpeg_variants if cond.startswith("jpeg") else ()
    return _disk_memo(("loo", cond, jpeg_variants), lambda: _loo_scores(cond, jpeg_variants))


def _loo_scores(cond: str, jpeg_variants: tuple[str, ...]) -> dict:
    lib = library()
    R = whitened("ref", cond)[0]
    H, W = lib.F.shape[-2:]
    h, w = R.shape[-2:]
    out: dict = {}
    for g, name in enumerate(lib.names):
        idx = np.flatnonzero(lib.ref_labels == name)
        loo = loo_fingerprints(lib.ref_R[idx])
        variants = {v: loo_fingerprints(library(v).ref_R[idx]) for v in jpeg_variants} if cond.startswith("jpeg") else {}
        for j, i in enumerate(idx):
            r = R[i:i + 1]
            F1 = loo[j:j + 1]
            if (h, w) == (H, W):
                out.setdefault("aligned", {})[i] = aligned(r, F1).z0[0, 0]
                for v, Fv in variants.items():
                    out.setdefault(f"aligned@{v}", {})[i] = aligned(r, Fv[j:j + 1]).z0[0, 0]
            else:
                out.setdefault("crop", {})[i] = shift_search(r, F1).z0[0, 0]
                out.setdefault("resize", {})[i] = aligned(r, resample_fingerprint(F1, (h, w), "bicubic")).z0[0, 0]
    return {t: np.array([v[i] for i in range(len(R))]) for t, v in out.items()}


def null_pool(cond: str, names: list[str], pools=("simcam", "simisp", "ref"), jpeg_variants=(),
              calibration: str | None = None) -> dict:
    """Per hypothesis type: list over generators of null z0 arrays (other refs exclude their own).

    ``calibration`` adds user-style calibration photos: the Dresden crops of the ``_0`` camera
    units (the ``_1`` units stay for evaluation).
    """
    out: dict = {}
    for s in pools + ((calibration,) if calibration else ()):
        hs = hyp_scores(s, cond, jpeg_variants)
        labels = whitened(s, cond)[1]
        ok = testable(s, cond)
        if s == "dresden":
            ok = ok & calibration_half(cond)
        for t, (z, _) in hs.items():
            lst = out.setdefault(t, [[] for _ in names])
            for g, name in enumerate(names):
                sel = ok & (labels != name)
                lst[g].append(z[sel, g])
    return {t: [np.concatenate(v) for v in lst] for t, lst in out.items()}


def calibration_half(cond: str) -> np.ndarray:
    """Dresden crops of the camera units ``*_0`` (calibration); the ``*_1`` units are evaluated."""
    files = whitened("dresden", cond)[2]
    return np.array(["_0_" in f for f in files])


@dataclass
class Design:
    pools: tuple = ("simcam", "simisp", "ref")
    jpeg_variants: tuple = ()
    family_k: float | None = None
    calibration: str | None = None
    gate: bool = True
    fpr: float = FPR
    genuine: str = "condition"  # "condition": LOO under the query's transform; "hypothesis": under the hypothesis' own truth
    jpeg_replace: bool = False  # JPEG queries (known from their quantisation tables): only the compression-matched F


def genuine_condition(cond: str, hypothesis: str) -> str:
    """The reference transform under which ``hypothesis`` is true, at the size nearest the query's.

    aligned: the query's own condition (same size; JPEG queries: the same quality); crop: the crop
    condition of nearest size; resize: the resize condition of nearest size.
    """
    from fingerprint.generator_decision import nearest_size

    if hypothesis.startswith("aligned"):
        return cond
    size = whitened("query", cond)[0].shape[-2:]
    kind = "crop" if hypothesis == "crop" else "resize"
    options = {whitened("ref", c)[0].shape[-2:]: c for c in data.CONDITIONS if c.startswith(kind)}
    return options[nearest_size(list(options), tuple(size))]


def decide(cond: str, design: Design) -> tuple[dict, dict]:
    """Decisions for every evaluation image of a condition. Returns (arrays, thresholds)."""
    lib = library()
    names = lib.names
    nulls = null_pool(cond, names, design.pools, design.jpeg_variants, design.calibration)
    zs, labs, oks, sets = [], [], [], []
    for s in ("query", "dresden", "flat"):
        if cond not in data.CONDITIONS_OF[s]:
            continue
        zs.append(hyp_scores(s, cond, design.jpeg_variants))
        labs.append(whitened(s, cond)[1])
        ok = testable(s, cond) if design.gate else np.ones(len(labs[-1]), bool)
        keep = ~calibration_half(cond) if (s == "dresden" and design.calibration) else np.ones(len(ok), bool)
        oks.append((ok, keep))
        sets.append(s)
    types = list(zs[0])
    if design.jpeg_replace and cond.startswith("jpeg") and design.jpeg_variants:
        types = [t for t in types if t != "aligned"]
    alpha = design.fpr / len(types)
    G = len(names)
    thr = {t: np.array([threshold_from_null(nulls[t][g], alpha).value for g in range(G)]) for t in types}
    mu = {t: np.array([nulls[t][g].mean() for g in range(G)]) for t in types}
    sd = {t: np.array([nulls[t][g].std() for g in range(G)]) for t in types}
    low = None
    if design.family_k is not None:
        low = {}
        for t in types:
            c = genuine_condition(cond, t) if design.genuine == "hypothesis" else cond
            loo = loo_scores(c, design.jpeg_variants)[t]
            low[t] = np.array([loo[lib.ref_labels == n].mean() - design.family_k * loo[lib.ref_labels == n].std(ddof=1)
                               for n in names])
    U, P, N, L, K = [], [], [], [], []
    for z, lab, (ok, keep) in zip(zs, labs, oks):
        u = np.max([(z[t][0] - mu[t]) / sd[t] for t in types], 0)
        above_null = np.any([z[t][0] >= thr[t] for t in types], 0)
        genuine_like = np.any([(z[t][0] >= thr[t]) & (z[t][0] >= (low[t] if low else -np.inf)) for t in types], 0)
        U.append(u[keep]), P.append(genuine_like[keep]), N.append(above_null[keep]), L.append(lab[keep]), K.append(ok[keep])
    arrays = {"u": np.concatenate(U), "genuine_like": np.concatenate(P), "above_null": np.concatenate(N),
              "labels": np.concatenate(L), "testable": np.concatenate(K)}
    return arrays, {"thr": thr, "low": low, "types": types}


def evaluate_design(design: Design, conds=data.CONDITIONS, title: str = "") -> list:
    names = library().names
    rows = []
    for cond in conds:
        a, th = decide(cond, design)
        best = a["u"].argmax(1)
        idx = np.arange(len(best))
        passed = a["genuine_like"][idx, best] & a["testable"]
        res = summary(names, a["u"], a["labels"], -np.inf, decided=passed)
        family = a["above_null"][idx, best] & ~a["genuine_like"][idx, best] & a["testable"]
        neg = np.array([is_negative(lab) for lab in a["labels"]])
        res["family"] = f"{family[neg].mean():.0%}/{family[~neg].mean():.0%}"
        res["untestable"] = f"{(~a['testable'][neg]).mean():.0%}/{(~a['testable'][~neg]).mean():.0%}"
        res["all_neg_unknown"] = float(1 - passed[neg].mean())
        rows.append((cond, res))
    say("", f"## {title}", f"{design}", "family / untestable: negatives / genuine; all_neg_unknown: every negative kind pooled")
    say(*table(rows, EVAL_COLS + ["all_neg_unknown", "family", "untestable"]))
    return rows


def exp_design():
    evaluate_design(Design(), title="D1: z0, per-generator per-hypothesis per-size null (simcam + simisp + other refs), gate")
    evaluate_design(Design(family_k=2.33), title="D2: D1 + genuine range (leave-one-out normal fit, 1 % low tail)")
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",)),
                    title="D3: D2 + compression-matched fingerprint (refs re-saved at q90) for JPEG queries")
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",), calibration="dresden"),
                    title="D4: D3 + calibrate with real photos (Dresden units *_0; evaluated on units *_1)")
    G = len(library().names)
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",), fpr=FPR / G),
                    title=f"D5: D3 at 1 % false alarms per image (per pair {FPR / G:g}: split over the {G} generators)")
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",), fpr=FPR / G, calibration="dresden"),
                    title="D6: D5 + calibrate with real photos (Dresden units *_0; evaluated on units *_1)")
    exp_design_final()


def exp_design_final():
    G = len(library().names)
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",), fpr=FPR / G, genuine="hypothesis"),
                    title="D7: D5, genuine range of each hypothesis measured where it is true (crops of refs for "
                          "'crop', resized refs for 'resize', at the nearest size)")
    evaluate_design(Design(family_k=2.33, fpr=FPR / G, genuine="hypothesis"),
                    title="D8: D7 without the compression-matched fingerprint")
    evaluate_design(Design(family_k=2.33, fpr=FPR / G, genuine="hypothesis", calibration="dresden"),
                    title="D9: D8 + calibrate with real photos (Dresden units *_0; evaluated on units *_1)")
    evaluate_design(Design(family_k=2.33, jpeg_variants=("jpeg:90",), jpeg_replace=True, fpr=FPR / G, genuine="hypothesis"),
                    title="D10: D7, JPEG queries compared with the q90 compression-matched fingerprint only "
                          "(chosen by the query's quantisation tables, no extra hypothesis)")


# ------------------------------------------------------------ shift-invariant spectral peaks
def power_centred(R: np.ndarray) -> np.ndarray:
    """Channel-summed power spectrum, fftshifted (zero frequency at the centre): (n, h, w)."""
    return np.fft.fftshift((np.abs(np.fft.fft2(centred(R))) ** 2).sum(-3), axes=(-2, -1))


def peak_templates(lib: Library) -> np.ndarray:
    """Per generator: mean channel-summed power of its whitened reference residuals minus its
    median (the flat floor left by whitening), on the fingerprint's frequency grid. (G, H, W)"""
    T = np.stack([power_centred(lib.ref_R[lib.ref_labels == g]).mean(0) for g in lib.names])
    return T - np.median(T, axis=(1, 2), keepdims=True)


def sample_power(P: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Query power spectra P (n, h, w) (fftshifted) sampled at the frequencies u / scale of an
    H x W grid (u in cycles per pixel of the original), bilinear; NaN beyond the query's band."""
    from scipy import ndimage

    n, h, w = P.shape
    H, W = shape
    u = (np.arange(H) - H // 2) / H / scale  # cycles per query pixel
    v = (np.arange(W) - W // 2) / W / scale
    rows = u * h + h // 2
    cols = v * w + w // 2
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    inside = (rr >= 0) & (rr <= h - 1) & (cc >= 0) & (cc <= w - 1)
    out = np.full((n, H, W), np.nan)
    for i in range(n):
        out[i][inside] = ndimage.map_coordinates(P[i], [rr[inside], cc[inside]], order=1)
    return out


def peak_scores(R: np.ndarray, T: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """NCC sqrt(D) between the query's sampled power (minus its median) and every template,
    over the frequencies inside the query's band. Invariant to shifts of the query. (n, G)"""
    S = sample_power(power_centred(R), T.shape[1:], scale)
    out = np.zeros((len(S), len(T)))
    for i, s in enumerate(S):
        m = np.isfinite(s)
        a = s[m] - np.median(s[m])
        for g in range(len(T)):
            b = T[g][m] - T[g][m].mean()
            den = np.linalg.norm(a) * np.linalg.norm(b)
            out[i, g] = (a - a.mean()) @ b / den * math.sqrt(m.sum()) if den > 0 else 0.0
    return out


def exp_peaks():
    """Shift-invariant statistic (up-sampling peaks of the power spectrum) against the shift search."""
    lib = library()
    T = peak_templates(lib)
    say("", "## spectral-peak statistic (shift-invariant) vs shift search",
        "query power sampled on the fingerprint's frequency grid (scale = query/original for resizes), NCC with "
        "each generator's mean reference power; separation = genuine median / q99 of Dresden+real+unknown")
    rows = []
    for cond in ("none", "crop:160", "crop:128", "resize:0.75", "resize:0.5"):
        R, labels, _, applied = whitened("query", cond)
        scale = float(cond.split(":")[1]) if cond.startswith("resize") else 1.0
        z = peak_scores(R, T, scale)
        Rn = whitened("dresden", cond)[0]
        zn = np.concatenate([z[[is_negative(lab) for lab in labels]], peak_scores(Rn[::2], T, scale)])
        gen = np.array([lab in lib.names for lab in labels])
        truth = np.array([lib.names.index(lab) for lab in labels[gen]])
        sep = [np.median(z[gen][truth == g, g]) / np.quantile(zn[:, g], 0.99) for g in range(len(lib.names))]
        rows.append((cond, {"top1": float((z[gen].argmax(1) == truth).mean()),
                            "separation": " ".join(f"{v:.2f}" for v in sep)}))
    say(*table(rows, ["top1", "separation"]))
    # resize factor estimated by the peaks: best of a grid, per genuine query (its generator's template)
    rows = []
    grid = np.round(np.arange(0.4, 1.01, 0.02), 2)
    for cond in ("resize:0.9", "resize:0.75", "resize:0.5"):
        R, labels, _, _ = whitened("query", cond)
        gen = np.array([lab in lib.names for lab in labels])
        Rg, truth = R[gen], np.array([lib.names.index(lab) for lab in labels[gen]])
        zs = np.stack([peak_scores(Rg, T, s)[np.arange(len(Rg)), truth] for s in grid], 1)
        found = grid[zs.argmax(1)]
        true = float(cond.split(":")[1])
        rows.append((cond, {"median found": f"{np.median(found):.2f}", "within 0.02": float((abs(found - true) <= 0.021).mean()),
                            "size ratio": f"{R.shape[-1] / 256:.3f}"}))
    say("", "resize factor from the spectral peaks (grid 0.40-1.00 step 0.02, genuine queries, own template)")
    say(*table(rows, ["median found", "within 0.02", "size ratio"]))


# --------------------------------------------------------------------------------- JPEG bands
def low_pass(a: np.ndarray, cutoff: float) -> np.ndarray:
    """Keep the frequencies with |u|, |v| < cutoff cycles per pixel (ideal separable low-pass)."""
    h, w = a.shape[-2:]
    u = np.abs(np.fft.fftfreq(h))[:, None]
    v = np.abs(np.fft.fftfreq(w))[None, :]
    return np.fft.ifft2(np.fft.fft2(a) * ((u < cutoff) & (v < cutoff))).real.astype(np.float32)


def exp_jpeg():
    """Compression-matched fingerprints against JPEG-surviving (low) bands, on JPEG queries."""
    lib = library()
    variants = {"pristine F": lib.F, "F from refs at q90": library("jpeg:90").F, "F from refs at q75": library("jpeg:75").F}
    rows = []
    for cond in ("none", "jpeg:90", "jpeg:75"):
        R, labels, _, _ = whitened("query", cond)
        Rn = whitened("dresden", cond)[0]
        gen = np.array([lab in lib.names for lab in labels])
        truth = np.array([lib.names.index(lab) for lab in labels[gen]])
        neg = np.array([is_negative(lab) for lab in labels])
        for vname, F in variants.items():
            for cutoff in (None, 0.375, 0.25):
                Fv = F if cutoff is None else low_pass(F, cutoff)
                Rv = R if cutoff is None else low_pass(R, cutoff)
                Rnv = Rn if cutoff is None else low_pass(Rn, cutoff)
                z = z_centre(Rv, Fv)
                zn = np.concatenate([z[neg], z_centre(Rnv, Fv)])
                sep = [np.median(z[gen][truth == g, g]) / np.quantile(zn[:, g], 0.99) for g in range(len(lib.names))]
                rows.append((f"{cond} / {vname}" + ("" if cutoff is None else f" / band < {cutoff}"),
                             {"top1": float((z[gen].argmax(1) == truth).mean()),
                              "separation": " ".join(f"{v:.1f}" for v in sep),
                              "min separation": f"{min(sep):.2f}"}))
    say("", "## JPEG: compression-matched fingerprints vs JPEG-surviving bands (aligned 256 x 256 queries)",
        "separation = genuine median / q99 of Dresden + real + unknown-generator scores at the same condition, per generator "
        + " ".join(lib.names))
    say(*table(rows, ["top1", "separation", "min separation"]))


# ------------------------------------------------------------------------------- null vs size
def zrpc_centre(R: np.ndarray, F: np.ndarray) -> np.ndarray:
    h, w = min(R.shape[-2], F.shape[-2]), min(R.shape[-1], F.shape[-1])
    Fc = centre_crop(F, h, w)
    return np.stack([zrpc_pair(centre_crop(R, h, w), Fc[g]) for g in range(len(F))], 1)


def exp_null():
    """Null spread against size and source: z0 = NCC sqrt(D) and the channel-coupled random-phase z."""
    lib = library()
    conds = ("none", "crop:200", "crop:160", "crop:128", "resize:0.75", "resize:0.5", "jpeg:75")
    sources = (("simcam", None), ("simisp", None), ("dresden", None), ("query", "real"),
               ("query", "unknown_pix2pix_day2night"), ("ref", "other"), ("simgen", None), ("flat", None))
    for stat, fn in (("z0", z_centre), ("zrpc", zrpc_centre)):
        rows = []
        for s_name, which in sources:
            d = {}
            for cond in conds:
                if cond not in data.CONDITIONS_OF[s_name]:
                    continue
                R, labels, _, _ = whitened(s_name, cond)
                if which in ("real", "unknown_pix2pix_day2night"):
                    sel = labels == which
                else:
                    sel = np.ones(len(labels), bool)
                z = np.nan_to_num(fn(R[sel], lib.F))
                if which == "other":
                    sds = [z[labels[sel] != n, g].std() for g, n in enumerate(lib.names)]
                else:
                    sds = list(z.std(0))
                d[cond] = f"{np.mean(sds):.2f} ({np.max(sds):.1f})"
            rows.append((f"{s_name}{'/' + which if which else ''}", d))
        say("", f"## null spread of {stat} (centred region, no search): mean over generators of the std (max)")
        say(*table(rows, list(conds)))


def exp_module():
    """fingerprint.generator_decision.decide reproduces the D8 decisions of this file (same inputs)."""
    from fingerprint.generator_decision import GenuineRange, HypothesisScore, NullModel
    from fingerprint.generator_decision import decide as module_decide

    lib = library()
    names = lib.names
    design = Design(family_k=2.33, fpr=FPR / len(names), genuine="hypothesis")
    rows = []
    for cond in data.CONDITIONS:
        a, th = decide(cond, design)
        nulls = null_pool(cond, names, design.pools)
        models = {(n, t): NullModel(n, t, (0, 0), nulls[t][g]) for t in th["types"] for g, n in enumerate(names)}
        genuine = {(n, t): GenuineRange(n, t, (0, 0), loo_scores(genuine_condition(cond, t))[t][lib.ref_labels == n])
                   for t in th["types"] for n in names}
        hs = hyp_scores("query", cond)
        n_q = len(whitened("query", cond)[1])
        best = a["u"].argmax(1)[:n_q]
        passed = a["genuine_like"][np.arange(n_q), best] & a["testable"][:n_q]
        ok = testable("query", cond)
        agree = 0
        for i in range(n_q):
            scores = [HypothesisScore(n, t, float(hs[t][0][i, g])) for t in th["types"] for g, n in enumerate(names)]
            dec = module_decide(scores, models, genuine, fpr=design.fpr)
            agree += ((dec.decision == "match" and ok[i]) == passed[i]) and dec.closest == names[best[i]]
        rows.append((cond, {"agree": f"{agree}/{n_q}"}))
    say("", "## fingerprint.generator_decision.decide against this file's D8 decisions (query set)")
    say(*table(rows, ["agree"]))


EXPERIMENTS = {"baseline": exp_baseline, "null": exp_null, "design": exp_design, "final": exp_design_final,
               "peaks": exp_peaks, "jpeg": exp_jpeg, "module": exp_module}


def main(argv: list[str]) -> int:
    names = argv or list(EXPERIMENTS)
    for name in names:
        if name not in EXPERIMENTS:
            print(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}", file=sys.stderr)
            return 2
    for name in names:
        t0 = time.perf_counter()
        EXPERIMENTS[name]()
        say(f"({name}: {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
