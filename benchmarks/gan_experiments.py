"""Generator-attribution experiments on ../shared/data/gan (DESIGN.md §6-§7).

Run: ``python benchmarks/gan_experiments.py`` (about a minute on 2 cores; skips when the data is absent).

Every variant is a residual transform ``T`` (applied to each image's per-channel noise residual),
a fingerprint estimator (plain mean, or mean with per-frequency Wiener shrinkage) and NCC. Columns:

- ``top1``: closed-set top-1 over the 70 genuine ``query/`` images (5 generators);
- ``rec@5%``: genuine images attributed correctly *and* above the threshold that lets 5 % of the 65
  ``real`` + ``unknown_pix2pix_day2night`` images through (max score over the library) - an oracle
  threshold, it uses the images it is measured on;
- ``LOO``: top-1 of every ``ref/`` image against a library in which its own fingerprint was built
  without it (the other generators keep all their images);
- ``split``: fingerprints from half of ``ref/`` (even / odd files, both ways, averaged), tested on the
  other half plus ``query/``: top-1, and rec@5% with the threshold from real+unknown;
- ``LGO FPR / rec``: a threshold that never sees real or unknown images: the 95th percentile of the
  best score of each generator's ``ref/`` images against the *other* generators' fingerprints (leave
  one generator out). FPR is then measured on real+unknown, recall on genuine queries.

All fingerprint statistics are sums (sum of spectra, sum of squared magnitudes, count), so
leave-one-out is a subtraction.
"""

from __future__ import annotations

import glob
import os
import sys
import time

import numpy as np
from scipy.ndimage import uniform_filter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fingerprint.residual import extract_noise  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "gan")
NULL = ("real", "unknown_pix2pix_day2night")
GRAY = np.array([0.29893602, 0.58704307, 0.11402090], np.float32)


# ----------------------------------------------------------------------------------- data
def load():
    from PIL import Image

    gens = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, "ref", "*")))
    files, lab, part = [], [], []
    for sub in ("ref", "query"):
        for g in sorted(os.listdir(os.path.join(DATA, sub))):
            for f in sorted(glob.glob(os.path.join(DATA, sub, g, "*.png"))):
                files.append(f), lab.append(g), part.append(sub)
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return gens, imgs, np.array(lab), np.array(part)


# ------------------------------------------------------------------ residual transforms
def clip_std(r, k=3.0):
    """Clip each channel of the residual at +-k times its own standard deviation."""
    s = r.std(axis=(1, 2), keepdims=True)
    return np.clip(r, -k * s, k * s)


def local_energy_norm(r, w=9):
    """Divide by the local residual energy (box mean of r^2 over w x w, pooled over channels)."""
    e = uniform_filter(r.astype(np.float64) ** 2, size=(1, w, w), mode="wrap").mean(0, keepdims=True)
    return (r / np.sqrt(e + 1e-3 * e.mean())).astype(np.float32)


def whiten_window(h, w):
    """Box width of the spectral smoother: 1/8 of the smaller side, odd (31 for 256 x 256)."""
    return int(min(h, w) // 8) | 1


def spectral_whiten(r, width=None):
    """Self-whitening: divide each channel's DFT by the square root of its own local power.

    ``P_s = box_width(|R(f)|^2)`` over a width x width window of frequencies (circular), then
    ``R_w(f) = R(f) / sqrt(P_s(f))``. The smooth, content-dependent colour of the residual spectrum
    is removed; narrow spectral peaks (periodic up-sampling traces) and the phase survive.
    """
    c, h, w = r.shape
    width = width or whiten_window(h, w)
    F = np.fft.fft2(r.astype(np.float64))
    P = uniform_filter(np.abs(F) ** 2, size=(1, width, width), mode="wrap")
    return np.real(np.fft.ifft2(F / np.sqrt(P + 1e-12 * P.mean()))).astype(np.float32)


def to_gray(r):
    return np.tensordot(GRAY, r, axes=(0, 0))[None]


# -------------------------------------------------------- fingerprints and scores (DFT domain)
def _rweights(w):
    """Parseval weights of an rfft2 half spectrum along the last axis (width w)."""
    k = np.full(w // 2 + 1, 2.0)
    k[0] = 1.0
    if w % 2 == 0:
        k[-1] = 1.0
    return k


class Spectra:
    """rfft2 of every (transformed) residual with the DC bin of each channel zeroed (mean removal)."""

    def __init__(self, R):
        self.shape = R.shape[1:]
        F = np.fft.rfft2(R).astype(np.complex64)
        F[..., 0, 0] = 0
        self.F = F
        self.P = (np.abs(F) ** 2).astype(np.float32)
        self.wt = _rweights(self.shape[-1]).astype(np.float32)
        self.qnorm = np.sqrt((self.P * self.wt).reshape(len(F), -1).sum(1))

    def sums(self, idx):
        return self.F[idx].sum(0), self.P[idx].sum(0), len(idx)


def fingerprint(s1, s2, n, shrink):
    """Mean spectrum ``M = S1/n``; with ``shrink``, multiplied by the Wiener gain
    ``max(0, 1 - V / (n |M|^2))`` where ``V = (S2 - n |M|^2) / (n - 1)`` is the per-frequency
    variance of the residuals about their mean (``V / n``: the noise power left in ``M``)."""
    M = s1 / n
    if not shrink:
        return M
    m2 = np.abs(M) ** 2
    V = np.maximum(s2 - n * m2, 0) / (n - 1)
    return M * np.maximum(0.0, 1.0 - V / (n * m2 + 1e-30))


def ncc(sp, fp, idx):
    """NCC of the residuals ``idx`` with fingerprint spectrum ``fp`` (per-channel means removed)."""
    num = (np.real(sp.F[idx] * np.conj(fp)) * sp.wt).reshape(len(idx), -1).sum(1)
    fn = np.sqrt((np.abs(fp) ** 2 * sp.wt).sum())
    return num / (sp.qnorm[idx] * fn + 1e-30)


# ---------------------------------------------------------------------------- evaluation
def evaluate(sp, gens, lab, part, shrink):
    G = len(gens)
    ref = [np.where((part == "ref") & (lab == g))[0] for g in gens]
    qg = np.where((part == "query") & np.isin(lab, gens))[0]
    qn = np.where((part == "query") & np.isin(lab, NULL))[0]
    ql = np.array([gens.index(x) for x in lab[qg]])
    sums = [sp.sums(i) for i in ref]
    fps = [fingerprint(*s, shrink) for s in sums]
    score = lambda fl, idx: np.stack([ncc(sp, f, idx) for f in fl], 1)  # noqa: E731
    Sg, Sn = score(fps, qg), score(fps, qn)
    ok = Sg.argmax(1) == ql
    true = Sg[np.arange(len(ql)), ql]
    thr = np.quantile(Sn.max(1), 0.95)
    out = {"top1": f"{ok.sum()}/{len(ql)}", "rec@5%": np.mean(ok & (true >= thr))}
    # leave one ref image out of its own fingerprint
    hit = n = 0
    for g, idx in enumerate(ref):
        s1, s2, k = sums[g]
        for i in idx:
            own = fingerprint(s1 - sp.F[i], s2 - sp.P[i], k - 1, shrink)
            s = [ncc(sp, own if h == g else fps[h], [i])[0] for h in range(G)]
            hit += int(np.argmax(s) == g)
            n += 1
    out["LOO"] = hit / n
    # half / half, both ways
    t1, rc = [], []
    for par in (0, 1):
        fh = [fingerprint(*sp.sums(i[par::2]), shrink) for i in ref]
        tidx = np.concatenate([i[1 - par :: 2] for i in ref] + [qg])
        tl = np.concatenate([[g] * len(i[1 - par :: 2]) for g, i in enumerate(ref)] + [ql])
        St, Snh = score(fh, tidx), score(fh, qn)
        okh = St.argmax(1) == tl
        t1.append(okh.mean())
        rc.append(np.mean(okh & (St[np.arange(len(tl)), tl] >= np.quantile(Snh.max(1), 0.95))))
    out["split top1"], out["split rec"] = np.mean(t1), np.mean(rc)
    # threshold from other generators' ref images only
    lgo = np.concatenate([score([fps[h] for h in range(G) if h != g], ref[g]).max(1) for g in range(G)])
    tl_ = np.quantile(lgo, 0.95)
    out["LGO FPR"] = np.mean(Sn.max(1) >= tl_)
    out["LGO rec"] = np.mean(ok & (true >= tl_))
    return out, (fps, Sg, Sn, ql, ref, score)


def open_set_rules(sp, gens, extra):
    """Threshold rules for the recommended variant that need no real/unknown images."""
    fps, Sg, Sn, ql, ref, score = extra
    G = len(gens)
    D = float(np.prod(sp.shape))
    ok = Sg.argmax(1) == ql
    true = Sg[np.arange(len(ql)), ql]
    rows = []
    print()
    # (a) analytic: z = NCC * sqrt(C H W) is ~N(0, 1) for a white query independent of F
    for z0 in (6.0, 8.0):
        rows.append((f"z = NCC*sqrt(CHW) >= {z0:g} (no calibration)", np.mean(Sn.max(1) * np.sqrt(D) >= z0),
                     np.mean(ok & (true * np.sqrt(D) >= z0))))
    # (a') the same z with its threshold from the leave-one-generator-out null (no real/unknown used)
    lgo_z = np.concatenate([score([fps[h] for h in range(G) if h != g], ref[g]).max(1) for g in range(G)]) * np.sqrt(D)
    t = np.quantile(lgo_z, 0.95)
    rows.append((f"z >= {t:.2f} (LGO 95th pct of best z)", np.mean(Sn.max(1) * np.sqrt(D) >= t),
                 np.mean(ok & (true * np.sqrt(D) >= t))))
    print("  null best z, real+unknown (top 8):", np.round(np.sort(Sn.max(1) * np.sqrt(D))[-8:], 1))
    print("  genuine z, lowest 8:             ", np.round(np.sort(true * np.sqrt(D))[:8], 1))
    # (b) per-fingerprint null from the other generators' ref images, Gaussian + Bonferroni
    from statistics import NormalDist

    mu, sd = np.zeros(G), np.zeros(G)
    for h in range(G):
        others = np.concatenate([ref[g] for g in range(G) if g != h])
        s = ncc(sp, fps[h], others)
        mu[h], sd[h] = s.mean(), s.std(ddof=1)
    for fpr in (0.05, 0.01):
        t = NormalDist().inv_cdf(1 - fpr / G)
        zn, zg = (Sn - mu) / sd, (Sg - mu) / sd
        okz = zg.argmax(1) == ql
        rows.append((f"per-FP null z >= {t:.2f} (Gauss, {fpr:g}/K)", np.mean(zn.max(1) >= t),
                     np.mean(okz & (zg[np.arange(len(ql)), ql] >= t))))
    # (c) empirical leave-one-generator-out 95th percentile of the best z over other fingerprints
    lgo = np.concatenate([((score([fps[h] for h in range(G) if h != g], ref[g]) - np.delete(mu, g)) / np.delete(sd, g)).max(1)
                          for g in range(G)])
    t = np.quantile(lgo, 0.95)
    zn, zg = (Sn - mu) / sd, (Sg - mu) / sd
    okz = zg.argmax(1) == ql
    rows.append((f"per-FP null z >= {t:.2f} (LGO 95th pct)", np.mean(zn.max(1) >= t),
                 np.mean(okz & (zg[np.arange(len(ql)), ql] >= t))))
    print("Open-set threshold rules for the recommended variant (FPR on real+unknown, recall of genuine):")
    for name, f, r in rows:
        print(f"  {name:46s} FPR {f:.2f}  recall {r:.2f}")


def main():
    if not os.path.isdir(DATA):
        print(f"skipped: {DATA} not found")
        return
    t0 = time.time()
    gens, imgs, lab, part = load()
    res = {s: np.stack([extract_noise(x, s) for x in imgs]) for s in (3.0, 5.0)}
    print(f"{len(imgs)} images, residuals in {time.time() - t0:.1f} s\n")

    def tf(fn, s):
        return np.stack([fn(r) for r in res[s]])

    variants = [
        ("A  baseline: colour, mean, NCC, s=3", lambda: res[3.0], False),
        ("B  baseline s=5", lambda: res[5.0], False),
        ("C  gray s=3", lambda: tf(to_gray, 3.0), False),
        ("D  clip at 3 std, s=3", lambda: tf(clip_std, 3.0), False),
        ("E  local-energy norm 9x9, s=3", lambda: tf(local_energy_norm, 3.0), False),
        ("F  spectral self-whitening, s=3", lambda: tf(spectral_whiten, 3.0), False),
        ("G  spectral self-whitening, s=5", lambda: tf(spectral_whiten, 5.0), False),
        ("H  G + Wiener-shrunk fingerprint, s=3", lambda: tf(spectral_whiten, 3.0), True),
        ("I  G + Wiener-shrunk fingerprint, s=5 (REC.)", lambda: tf(spectral_whiten, 5.0), True),
        ("J  Wiener-shrunk fp, no whitening, s=5", lambda: res[5.0], True),
    ]
    cols = ["top1", "rec@5%", "LOO", "split top1", "split rec", "LGO FPR", "LGO rec"]
    print(f"{'variant':46s} " + " ".join(f"{c:>10s}" for c in cols))
    for name, make, shrink in variants:
        sp = Spectra(make())
        out, extra = evaluate(sp, gens, lab, part, shrink)
        cells = [f"{out[c]:>10s}" if isinstance(out[c], str) else f"{out[c]:10.3f}" for c in cols]
        print(f"{name:46s} " + " ".join(cells), flush=True)
        if "REC." in name:
            rec = (sp, extra)
    open_set_rules(rec[0], gens, rec[1])
    print(f"\ntotal {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
