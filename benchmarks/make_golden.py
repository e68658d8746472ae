"""Write ``tests/data/golden.npz``: residual and fingerprints of deterministic synthetic images.

    python benchmarks/make_golden.py [--check]

The images are made with integer arithmetic only (no random generator, no libm), so they are the
same bits on every platform and numpy version. The stored results are those of the current
``fingerprint`` code, checked against the float64 twins of ``tests/naive.py`` before writing.
``tests/test_golden.py`` compares the current code with them at a tight tolerance, so a change of
the residual or estimator algorithms fails ``make test`` even where the twin changed as well (and
even without ``../shared``). Rerun this script only for a deliberate change of the algorithm, and
say why in the commit. ``--check`` compares without writing (exit status 1 on a difference).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden.npz"
RESIDUAL_SHAPE = (81, 115, 3)  # odd sides: padding on both ends differs
CAMERA_SHAPE = (64, 80, 3)
GENERATOR_SHAPE = (40, 40, 3)
N_IMAGES = 3


def synthetic_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A uint8 RGB test image: ramps, a checkerboard of 16-pixel blocks, a saturated patch and
    hash noise of +-15 levels, every value from integer arithmetic modulo 2**32.

    ``noise[i, j, c] = ((i * 73856093) ^ (j * 19349663) ^ ((c + 3 * seed) * 83492791)) * 2654435761 mod 2**32 >> 24``
    """
    h, w, ch = shape
    i, j, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64),
                          np.arange(ch, dtype=np.uint64), indexing="ij")
    mask = np.uint64(0xFFFFFFFF)
    k = c + np.uint64(3 * seed)
    v = ((i * np.uint64(73856093)) ^ (j * np.uint64(19349663)) ^ (k * np.uint64(83492791))) & mask
    v = (v * np.uint64(2654435761)) & mask
    noise = (v >> np.uint64(24)).astype(np.int64) % 31 - 15
    ii, jj, cc = i.astype(np.int64), j.astype(np.int64), c.astype(np.int64)
    base = 40 + (ii * 5 + jj * 3 + cc * 17 + seed * 11) % 97 + 60 * ((ii // 16 + jj // 16) % 2)
    img = np.clip(base + noise, 0, 255)
    img[5:11, 7:15, :] = 255  # saturated in every channel
    return img.astype(np.uint8)


def image_digest(images) -> str:
    """SHA-256 of the images' bytes: the test checks that it regenerates the same inputs."""
    h = hashlib.sha256()
    for im in images:
        h.update(np.ascontiguousarray(im).tobytes())
    return h.hexdigest()


def compute() -> dict[str, np.ndarray]:
    """The current results: ``residual`` (float32 H x W), ``camera`` (float32 H x W),
    ``generator`` (float32 3 x H x W), and the digest of the input images."""
    from fingerprint.build import build_fingerprint
    from fingerprint.residual import extract_residual

    res_img = synthetic_image(RESIDUAL_SHAPE, 0)
    cams = [synthetic_image(CAMERA_SHAPE, s) for s in range(1, 1 + N_IMAGES)]
    gens = [synthetic_image(GENERATOR_SHAPE, s) for s in range(10, 10 + N_IMAGES)]
    return {
        "residual": extract_residual(res_img),
        "camera": build_fingerprint(cams, "camera"),
        "generator": build_fingerprint(gens, "generator"),
        "images_sha256": np.array(image_digest([res_img, *cams, *gens])),
    }


def _naive():
    spec = importlib.util.spec_from_file_location("naive", ROOT / "tests" / "naive.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_against_twins(results: dict[str, np.ndarray]) -> None:
    """Raise AssertionError unless the residual and camera fingerprint match the float64 twins."""
    naive = _naive()
    warnings.filterwarnings("ignore", message="Level value of .* is too high")  # pywt on small sub-bands
    for key, ref in (("residual", naive.residual(synthetic_image(RESIDUAL_SHAPE, 0))),
                     ("camera", naive.camera_fingerprint([synthetic_image(CAMERA_SHAPE, s)
                                                          for s in range(1, 1 + N_IMAGES)]))):
        err = np.abs(results[key] - ref).max() / np.abs(ref).max()
        assert err < 1e-4, f"{key}: relative error {err:.2e} against tests/naive.py"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the stored file, write nothing")
    args = ap.parse_args(argv)
    results = compute()
    check_against_twins(results)
    if args.check:
        stored = np.load(GOLDEN)
        worst = max(float(np.abs(results[k] - stored[k]).max() / np.abs(stored[k]).max())
                    for k in ("residual", "camera", "generator"))
        same = str(stored["images_sha256"]) == str(results["images_sha256"])
        print(f"{GOLDEN}: images {'identical' if same else 'DIFFER'}, largest relative difference {worst:.2e}")
        return 0 if same and worst < 2e-5 else 1
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **results)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
