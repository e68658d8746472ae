"""Search over many camera references: fingerprint digests against the exhaustive PCE.

For N = 1, 10, 100, 1000 synthetic camera references of 512 x 512 and a fixed set of aligned
queries (matches, rotated matches, weak blended matches, unknown cameras), it measures

- the preparation (exhaustive: every fingerprint's spectrum; digest: every digest and the index;
  also every spectrum loaded from a warm ``SpectrumCache``), the first query (preparation plus
  the first search) and the search time per query, the residuals excluded (they are the same
  for both and reported once);
- whether the digest search decides exactly as the exhaustive one (decision and best
  reference of every query; also the ``closest`` reference);
- the sparse-score model on every (query, reference) pair: the non-matching ``z`` spread and,
  for every pair whose PCE passes the threshold, how far ``z`` lies above the bound.

References: cameras 0..E-1 are estimated from 10 flat-field frames with the real estimator;
the others are synthesised (``fingerprint = wiener_dft(beta K + e)``, ``K`` the camera's PRNU from
``fingerprint.synthetic``, ``beta`` and the white noise ``e`` measured on the estimated ones):
estimating 1000 cameras would take about 2 hours here. ``--dresden`` measures the model on the
six Dresden cameras (512 x 512 centre crops, 16 natural queries) instead.

    .venv/bin/python benchmarks/bench_search.py                      # N = 1, 10, 100, 1000
    .venv/bin/python benchmarks/bench_search.py --sizes 1,10 --queries 6
    .venv/bin/python benchmarks/bench_search.py --dresden            # or --dresden full
    .venv/bin/python benchmarks/bench_search.py --sizes 1000 --no-exhaustive --library-file /tmp/lib.npz
                                                                     # digest timings only, library kept

The digest search here is the plan for ``Attributor`` (docs/scaling.md): pre-select with
``fingerprint.digest``, confirm the candidates with the exact PCE at the pre-selected rotations,
decide among them; a reference not pre-selected is a non-match. It scores with the sequential
thresholds of ``CameraReference.score``/``retry``; the same search through the library and the
one-budget camera search (``fingerprint.camera_library``) is ``bench_library.py --search``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fingerprint.attribution import Attributor  # noqa: E402
from fingerprint.camera_match import CameraReference, gray_image  # noqa: E402
from fingerprint.decision import ReferenceScore, decide  # noqa: E402
from fingerprint.digest import (  # noqa: E402
    DEFAULT_MARGIN,
    DEFAULT_TOP_K,
    DIGEST_FRACTION,
    PCE_RATIO,
    DigestIndex,
    digest_bound,
    digest_size,
    make_digest,
    preselect,
)
from fingerprint.estimate import CameraAccumulator, FingerprintParams  # noqa: E402
from fingerprint.residual import extract_residual  # noqa: E402
from fingerprint.scores import ncc, search_threshold  # noqa: E402
from fingerprint.spectrum_cache import SpectrumCache, content_hash  # noqa: E402
from fingerprint.synthetic import make_camera  # noqa: E402
from kernels.spectral_cpu import wiener_dft  # noqa: E402

SHAPE = (512, 512)
SIZES = (1, 10, 100, 1000)
PARAMS = FingerprintParams()


# --- references -------------------------------------------------------------------------------------
def _estimated(seed: int, shape) -> np.ndarray:
    acc = CameraAccumulator(PARAMS)
    for frame in make_camera(f"cam{seed}", seed, shape=shape).images(10, seed=1, flat=True):
        acc.add(frame)
    return acc.fingerprint()


def _synthesised(seed: int, shape, beta: float, noise: float) -> np.ndarray:
    K = make_camera(f"cam{seed}", seed, shape=shape).K.astype(np.float32)
    e = np.random.default_rng(seed + 10**6).standard_normal(shape).astype(np.float32)
    k = beta * K + noise * e
    return wiener_dft(np.ascontiguousarray(k - k.mean()), float(np.std(k, ddof=1)))


def library(n: int, n_estimated: int, shape) -> tuple[list[np.ndarray], dict]:
    """``n`` fingerprints: the first ``n_estimated`` estimated, the rest synthesised like them."""
    t0 = time.perf_counter()
    fps = [_estimated(1000 + j, shape) for j in range(min(n, n_estimated))]
    t_est = time.perf_counter() - t0
    Ks = [make_camera(f"cam{1000 + j}", 1000 + j, shape=shape).K.astype(np.float64) for j in range(len(fps))]
    beta = float(np.mean([np.sum(f * k) / np.sum(k * k) for f, k in zip(fps, Ks)]))
    noise = float(np.mean([np.std(f - beta * k) for f, k in zip(fps, Ks)]))
    corr = [float(np.corrcoef(f.ravel(), k.ravel())[0, 1]) for f, k in zip(fps, Ks)]
    t0 = time.perf_counter()
    fps += [_synthesised(1000 + j, shape, beta, noise) for j in range(len(fps), n)]
    info = {"estimated": len(Ks), "estimate_s_each": t_est / max(len(Ks), 1), "beta": beta, "noise": noise,
            "corr_estimated_vs_true_K": float(np.mean(corr)), "synthesise_s": time.perf_counter() - t0}
    return fps, info


# --- queries ----------------------------------------------------------------------------------------
def _frame(seed: int, shape, i: int = 0, quality: int = 90) -> np.ndarray:
    cam = make_camera(f"cam{seed}", seed, shape=shape)
    return list(cam.images(i + 1, seed=7, jpeg_quality=quality))[i]


def queries(shape, count: int) -> list[tuple[str, np.ndarray, int | None]]:
    """(label, image, true camera index or None); true cameras are among references 0..9."""
    out = []
    out.append(("match cam0", _frame(1000, shape), 0))
    out.append(("match cam1 q75", _frame(1001, shape, quality=75), 1))
    out.append(("match cam5 (synthesised ref)", _frame(1005, shape), 5))
    out.append(("match cam2 rotated 90", np.ascontiguousarray(np.rot90(_frame(1002, shape))), 2))
    out.append(("match cam7 rotated 180", np.ascontiguousarray(np.rot90(_frame(1007, shape), 2)), 7))
    for j, (w, seed) in enumerate([(0.08, 1003), (0.12, 1004), (0.16, 1008), (0.1, 1000)]):
        mix = w * _frame(seed, shape, 1).astype(np.float32) + (1 - w) * _frame(7000 + j, shape).astype(np.float32)
        out.append((f"weak blend {w:.2f} cam{seed - 1000}", np.clip(np.round(mix), 0, 255).astype(np.uint8), seed - 1000))
    for j in range(5):
        out.append((f"unknown camera {j}", _frame(5000 + j, shape, quality=85 + 2 * j), None))
    return out[:count]


@dataclasses.dataclass
class Query:
    label: str
    image: np.ndarray
    truth: int | None
    W: np.ndarray
    I: np.ndarray

    @functools.cached_property
    def W5(self) -> np.ndarray:
        return extract_residual(self.image, sigma=5.0)


# --- the two searches --------------------------------------------------------------------------------
def exhaustive(att: Attributor, q: Query):
    """``Attributor.score``'s camera loop on precomputed residuals."""
    WI = q.W * q.I
    scores = {c.name: c.score(q.W, WI, q.I, method=att.method, base=att.pce_threshold, rotations=att.rotations)
              for c in att.cameras}
    if att.retry_sigma and not any(s.match for s in scores.values()):
        WI5 = q.W5 * q.I
        scores = {c.name: c.retry(scores[c.name], q.W5, WI5, q.I, att.retry_sigma, method=att.method,
                                  base=att.pce_threshold) for c in att.cameras}
    return decide(scores, q.label)


class LazyCamera(CameraReference):
    """A camera whose spectrum is computed (or loaded from the cache) the first time it is scored."""

    def __init__(self, name, fingerprint, params, cache: SpectrumCache | None = None, key: str | None = None):
        self.name, self.params = name, params
        self.K = np.ascontiguousarray(fingerprint, dtype=np.float32)
        self.xp, self._K, self._ncc = np, self.K, ncc  # the host attributes of CameraReference.__init__
        self._cache, self._key = cache, key

    @functools.cached_property
    def spectrum(self):
        from fingerprint.scores import ReferenceSpectrum

        if self._cache is None:
            return ReferenceSpectrum(self.K)
        return self._cache.reference_spectrum(self.K, self.params, key=self._key)


def _fits(K, q, k):
    return np.rot90(q, k).shape == K.shape


def restricted_score(cam: CameraReference, q: Query, WI, allowed, rotations, base) -> ReferenceScore:
    """``CameraReference.score`` with the PCE computed only at the ``allowed`` rotations; the others are
    non-matches by the digest bound, so the match decision and a match's record are the exhaustive ones."""
    fitting = [k for k in rotations if _fits(cam.K, WI, k)]
    n_total = len(fitting)  # an aligned query: one position per fitting rotation
    first = cam._try(WI, 0) if 0 in fitting and allowed[0] else None
    if first is not None:
        unrotated = cam._result(0, first, 1, q.W, q.I, "pce", base)
        if unrotated.match or rotations == (0,):
            return unrotated
    tried = [(k, cam._try(WI, k)) for k in fitting if k != 0 and allowed[k]]
    if tried:
        k, res = max(tried, key=lambda kr: kr[1].pce)
        rotated = cam._result(k, res, n_total, q.W, q.I, "pce", base)
        if rotated.match or 0 not in fitting:
            return rotated
    if first is not None:
        return cam._result(0, first, n_total, q.W, q.I, "pce", base)
    return ReferenceScore(cam.name, "camera", None, None, "pce", search_threshold(base, max(n_total, 1)), False,
                          rotation=0 if 0 in fitting else None, n_positions=n_total,
                          note="not confirmed: sparse digest score below the bound")


def digest_search(cams, index: DigestIndex, q: Query, *, rotations=(0, 1, 2, 3), base=60.0, retry=5.0,
                  top_k=DEFAULT_TOP_K, margin=DEFAULT_MARGIN, pce_ratio=PCE_RATIO):
    """Pre-select with the digests, confirm with the exact PCE, decide; returns (Attribution, stats)."""
    WI = q.W * q.I
    t0 = time.perf_counter()
    z = index.scores(WI, rotations)
    t_sparse = time.perf_counter() - t0
    sel = preselect(z, index.correlation, base, top_k=top_k, margin=margin, pce_ratio=pce_ratio)
    scores = {cams[j].name: restricted_score(cams[j], q, WI, sel.pairs[j], rotations, base) for j in sel.candidates}
    n_pce = int(sel.pairs[sel.candidates].sum())
    crops = [j for j in range(len(cams)) if np.isnan(z[j]).all()]  # aligned at no rotation: searched exhaustively
    for j in crops:
        scores[cams[j].name] = cams[j].score(q.W, WI, q.I, method="pce", base=base, rotations=rotations)
        n_pce += len(rotations)
    n_cand = len(sel.candidates)
    if retry and not any(s.match for s in scores.values()):
        WI5 = q.W5 * q.I
        # every non-matching record of a query aligned at 0 degrees is at 0 degrees: the retry's rotation
        retry_rotations = (0,) if WI.shape in index.shapes and all(not np.isnan(z[j, 0]) or np.isnan(z[j]).all()
                                                                   for j in range(len(cams))) else rotations
        t0 = time.perf_counter()
        z5 = index.scores(WI5, retry_rotations)
        t_sparse += time.perf_counter() - t0
        sel5 = preselect(z5, index.correlation, base, top_k=top_k, margin=margin, pce_ratio=pce_ratio)
        for j in sorted(set(sel.candidates.tolist()) | set(sel5.candidates.tolist()) | set(crops)):
            cam = cams[j]
            record = scores.get(cam.name)
            if j in crops:
                pass  # already the exhaustive record
            elif np.isnan(z[j, 0]) and j in sel5.candidates:  # aligned at 90/270 only: the retry's rotation is
                record = cam.score(q.W, WI, q.I, method="pce", base=base, rotations=rotations)  # the best one's
                n_pce += len(rotations)
            elif record is None or record.pce is None:  # the first-pass record at 0 degrees is needed
                allowed = sel.pairs[j].copy()
                allowed[0] = True
                record = restricted_score(cam, q, WI, allowed, rotations, base)
                n_pce += 1
            scores[cam.name] = cam.retry(record, q.W5, WI5, q.I, retry, method="pce", base=base)
            n_pce += 1
        n_cand = len(set(sel.candidates.tolist()) | set(sel5.candidates.tolist()))
    return decide(scores, q.label), {"sparse_s": t_sparse, "pce": n_pce, "candidates": n_cand,
                                                 "expected_false": sel.expected_false}


# --- measurements ------------------------------------------------------------------------------------
def model_pairs(index: DigestIndex, result, q: Query, names) -> list[tuple[float, float, float]]:
    """(z at the reported rotation, PCE, r) of every reference the exhaustive search scored."""
    z = index.scores(q.W * q.I)
    out = []
    for j, name in enumerate(names):
        s = result.scores[name]
        if s.pce is not None and s.rotation is not None and not (s.note or "").startswith("matched with"):
            out.append((float(z[j, (s.rotation // 90) % 4]), float(s.pce), float(index.correlation[j])))
    return out


def _z_full(q: np.ndarray, K: np.ndarray) -> float:
    """The full aligned statistic ``sum q~ k~ / (sigma_q ||k~||)`` (``fingerprint.digest`` module doc)."""
    qc = q.astype(np.float64) - q.mean(dtype=np.float64)
    kc = K.astype(np.float64) - K.mean(dtype=np.float64)
    return float(np.sum(qc * kc) / (qc.std() * np.linalg.norm(kc)))


def summarise_model(pairs, base=60.0, margin=DEFAULT_MARGIN, pce_ratio=PCE_RATIO) -> dict:
    a = np.asarray(pairs, dtype=float).reshape(-1, 3)
    z, pce, r = a[:, 0], a[:, 1], a[:, 2]
    passing = pce >= base
    low = pce < base / 4
    above = z[passing] - digest_bound(r[passing], base, margin=margin, pce_ratio=pce_ratio)
    resid = (z[passing] - r[passing] * np.sqrt(pce[passing])) / np.sqrt(1 - r[passing] ** 2)
    return {"pairs": int(len(z)), "passing": int(passing.sum()),
            "z_low_pce_mean": float(z[low].mean()) if low.any() else None,
            "z_low_pce_std": float(z[low].std()) if low.any() else None,
            "min_z_minus_bound_passing": float(above.min()) if passing.any() else None,
            "passing_resid_mean": float(resid.mean()) if passing.any() else None,
            "passing_resid_std": float(resid.std()) if passing.any() else None}


def run(sizes, n_queries, n_estimated, shape, fraction, margin, pce_ratio, top_k, cache_dir, repeat=3,
        compare=True, library_file=None) -> dict:
    big = max(sizes)
    if library_file and Path(library_file).is_file():
        with np.load(library_file, allow_pickle=False) as npz:
            fps, lib_info = list(npz["fps"][:big]), json.loads(str(npz["info"]))
    else:
        fps, lib_info = library(big, n_estimated, shape)
        if library_file:
            np.savez(library_file, fps=np.stack(fps), info=np.array(json.dumps(lib_info)))
    names = [f"cam{1000 + j:04d}" for j in range(big)]
    t0 = time.perf_counter()
    qs = [Query(lab, im, tr, extract_residual(im), gray_image(im)) for lab, im, tr in queries(shape, n_queries)]
    residual_s = (time.perf_counter() - t0) / len(qs)
    for q in qs:
        _ = q.W5  # the retry residual, outside the search timings
    t0 = time.perf_counter()
    digests = [make_digest(k, digest_size(shape, fraction)) for k in fps]
    digest_s = (time.perf_counter() - t0) / big
    out = {"shape": shape, "fraction": fraction, "margin": margin, "pce_ratio": pce_ratio, "top_k": top_k,
           "library": lib_info, "residual_s_per_query": residual_s, "digest_s_per_reference": digest_s, "runs": []}
    model = []
    for n in sizes:
        refs = [(names[j], "camera", fps[j], PARAMS) for j in range(n)]
        t0 = time.perf_counter()
        att = Attributor(refs) if compare else None
        prep_ex = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = DigestIndex(digests[:n])
        index_s = time.perf_counter() - t0
        prep_dg = index_s + digest_s * n
        cams = [LazyCamera(names[j], fps[j], PARAMS) for j in range(n)]
        row = {"N": n, "prepare_exhaustive_s": prep_ex, "prepare_digest_s": prep_dg, "index_build_s": index_s,
               "digests_s": digest_s * n, "index_MiB": index.nbytes / 2**20, "queries": []}
        for q in qs:
            t0 = time.perf_counter()
            ex = exhaustive(att, q) if compare else None
            t_ex = time.perf_counter() - t0
            t0 = time.perf_counter()
            dg, stats = digest_search(cams, index, q, margin=margin, pce_ratio=pce_ratio, top_k=top_k)
            t_dg = time.perf_counter() - t0
            again = []
            for _ in range(repeat - 1):  # spectra of the candidates are now computed: the steady state
                t0 = time.perf_counter()
                digest_search(cams, index, q, margin=margin, pce_ratio=pce_ratio, top_k=top_k)
                again.append(time.perf_counter() - t0)
            ex = ex or dg  # timing only (--no-exhaustive): nothing to compare with
            same = (ex.decision, ex.best) == (dg.decision, dg.best)
            row["queries"].append({"label": q.label, "exhaustive": [ex.decision, ex.best], "digest": [dg.decision, dg.best],
                                   "same": same if compare else None, "same_closest": ex.closest == dg.closest,
                                   "best_pce": ex.scores[ex.closest].pce if ex.closest else None,
                                   "exhaustive_s": t_ex, "digest_s": t_dg, "digest_best_s": min([t_dg] + again),
                                   **stats})
            if n == big and compare:
                model += model_pairs(index, ex, q, names[:n])
        row["first_query_exhaustive_s"] = prep_ex + row["queries"][0]["exhaustive_s"]
        row["first_query_digest_s"] = prep_dg + row["queries"][0]["digest_s"]
        row["per_query_exhaustive_s"] = float(np.median([r["exhaustive_s"] for r in row["queries"][1:] or row["queries"]]))
        row["per_query_digest_s"] = float(np.median([r["digest_s"] for r in row["queries"][1:] or row["queries"]]))
        row["max_query_digest_s"] = float(max(r["digest_s"] for r in row["queries"]))
        row["per_query_digest_best_s"] = float(np.median([r["digest_best_s"] for r in row["queries"]]))
        row["load_average"] = os.getloadavg()[0]
        row["all_same"] = all(r["same"] for r in row["queries"]) if compare else None
        out["runs"].append(row)
        del att
        print(_row_line(row), flush=True)
    if compare:
        out["model"] = summarise_model(model, margin=margin, pce_ratio=pce_ratio)
        out["spectrum_cache"] = _cache_timing(fps[: min(big, 200)], cache_dir)
    return out


def _cache_timing(fps, cache_dir) -> dict:
    """Preparing spectra: computed, first run into an empty cache, second run from the warm cache."""
    with tempfile.TemporaryDirectory(dir=cache_dir) as root:
        cache = SpectrumCache(root)
        keys = [content_hash(k, PARAMS) for k in fps]
        t0 = time.perf_counter()
        for k in fps:
            Attributor([("x", "camera", k, PARAMS)])
        computed = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k, key in zip(fps, keys):
            cache.reference_spectrum(k, PARAMS, key=key)
        cold = time.perf_counter() - t0
        warm_cache = SpectrumCache(root)
        t0 = time.perf_counter()
        for k, key in zip(fps, keys):
            warm_cache.reference_spectrum(k, PARAMS, key=key)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in fps:
            content_hash(k, PARAMS)
        hashing = time.perf_counter() - t0
        return {"references": len(fps), "computed_ms_each": 1e3 * computed / len(fps),
                "cold_cache_ms_each": 1e3 * cold / len(fps), "warm_cache_ms_each": 1e3 * warm / len(fps),
                "content_hash_ms_each": 1e3 * hashing / len(fps), "warm_hits": warm_cache.hits}


def _row_line(row) -> str:
    same = sum(bool(r["same"]) for r in row["queries"])
    cands = np.mean([r["candidates"] for r in row["queries"]])
    pces = np.mean([r["pce"] for r in row["queries"]])
    return (f"N={row['N']:5d}  first query: exhaustive {row['first_query_exhaustive_s']:7.3f} s, digest "
            f"{row['first_query_digest_s']:7.3f} s | per query (median): exhaustive {row['per_query_exhaustive_s']:7.3f} s, "
            f"digest {row['per_query_digest_s']:6.3f} s (max {row['max_query_digest_s']:.3f}, best of repeats "
            f"{row['per_query_digest_best_s']:.3f}) | load {row['load_average']:.1f} | candidates {cands:.1f}, "
            f"exact PCEs {pces:.1f} | same decisions {same}/{len(row['queries'])} | index {row['index_MiB']:.0f} MiB")


# --- Dresden --------------------------------------------------------------------------------------
def dresden(crop: int | None, fraction: float, margin: float, pce_ratio: float) -> dict:
    """The sparse-score model on the six Dresden cameras: every (natural query, camera, rotation)."""
    from fingerprint.io import iter_images

    data = ROOT.parent / "shared" / "data" / "dresden"
    if not data.is_dir():
        raise SystemExit(f"no Dresden data at {data}")
    camera = lambda p: Path(p).stem.rsplit("_", 1)[0]  # noqa: E731
    ff, nat = sorted((data / "ff").glob("*.JPG")), sorted((data / "nat").glob("*.JPG"))
    names = sorted({camera(p) for p in ff})
    fps = []
    for name in names:
        acc = CameraAccumulator(PARAMS)
        for item in iter_images([p for p in ff if camera(p) == name], crop=(crop, crop) if crop else None):
            acc.add(item.image)
        fps.append(acc.fingerprint())
    index = DigestIndex([make_digest(k, digest_size(k.shape, fraction)) for k in fps])
    att = Attributor([(n, "camera", k, PARAMS) for n, k in zip(names, fps)])
    pairs, lam, same, decisions, timing = [], [], 0, [], {"exhaustive": 0.0, "digest": 0.0}
    cams = [LazyCamera(n, k, PARAMS) for n, k in zip(names, fps)]
    items = list(iter_images(nat, crop=(crop, crop) if crop else None))
    for item in items:
        q = Query(str(item.path), item.image, names.index(camera(item.path)), extract_residual(item.image),
                  gray_image(item.image))
        WI = q.W * q.I
        z = index.scores(WI)
        for j, cam in enumerate(att.cameras):  # every aligned rotation, exact PCE
            for k in range(4):
                if not _fits(cam.K, WI, k):
                    continue
                res = cam._try(WI, k)
                pairs.append((float(z[j, k]), float(res.pce), float(index.correlation[j])))
                lam.append((res.pce, _z_full(np.rot90(WI, k), cam.K)))
        t0 = time.perf_counter()
        ex = exhaustive(att, q)
        t1 = time.perf_counter()
        dg, _ = digest_search(cams, index, q, margin=margin, pce_ratio=pce_ratio, top_k=0)  # no top-k help
        timing["exhaustive"] += t1 - t0
        timing["digest"] += time.perf_counter() - t1
        same += (ex.decision, ex.best) == (dg.decision, dg.best)
        decisions.append((Path(q.label).name, ex.decision, ex.best, dg.decision, dg.best))
    lam = np.asarray(lam)
    strong = lam[:, 0] >= 20
    ratio = lam[strong, 0] / lam[strong, 1] ** 2
    return {"crop": crop or "full", "queries": len(items), "same_decisions_top_k_0": same, "search_s": timing,
            "model": summarise_model(pairs, margin=margin, pce_ratio=pce_ratio),
            "pce_ratio_pce_ge_20": [float(ratio.min()), float(ratio.max())] if strong.any() else None,
            "pairs_pce_ge_20": int(strong.sum()), "decisions": decisions}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="reference counts, comma-separated")
    p.add_argument("--queries", type=int, default=14, help="number of queries (at most 14)")
    p.add_argument("--estimated", type=int, default=4, help="references estimated from flat fields (the rest synthesised)")
    p.add_argument("--size", type=int, default=SHAPE[0], help="fingerprint side in pixels")
    p.add_argument("--fraction", type=float, default=DIGEST_FRACTION)
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    p.add_argument("--pce-ratio", type=float, default=PCE_RATIO)
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    p.add_argument("--repeat", type=int, default=3, help="runs of each digest search (best reported beside the first)")
    p.add_argument("--cache-dir", default=None, help="where the spectrum-cache timing writes (default: the temp dir)")
    p.add_argument("--dresden", nargs="?", const="512", default=None, metavar="CROP",
                   help="measure the model on Dresden centre crops of this size (default 512; 'full': whole photos) instead")
    p.add_argument("--json", default=None, help="write all numbers to this file")
    p.add_argument("--no-exhaustive", action="store_true", help="time the digest search only (no decisions compared)")
    p.add_argument("--library-file", default=None,
                   help="an .npz of the synthetic fingerprints: read if present, else written after building them")
    args = p.parse_args(argv)
    if args.dresden:
        out = dresden(None if args.dresden == "full" else int(args.dresden), args.fraction, args.margin, args.pce_ratio)
    else:
        sizes = sorted(int(s) for s in args.sizes.split(","))
        shape = (args.size, args.size)
        out = run(sizes, args.queries, args.estimated, shape, args.fraction, args.margin, args.pce_ratio, args.top_k,
                  args.cache_dir, args.repeat, not args.no_exhaustive, args.library_file)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=1, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
