"""Data sets and the residual cache of ``benchmarks/gan_trust.py`` (issue 11).

Every set is a list of (image, label) at 256 x 256 (RGB uint8); every *condition* is a pipeline
of ``fingerprint.transforms`` applied to each image (random crops from ``image_rng(SEED, index)``).
What is cached per (set, condition): the transformed images (uint8) and their per-channel noise
residuals ``extract_noise(image, sigma=5)`` (float16, no whitening: every statistic is computed
from these), under ``$GAN_TRUST_CACHE`` (default /tmp/gan_trust_cache).

Sets
----
- ``ref``      ../shared/data/gan/ref: 5 generators, 129 images (build, leave-one-out)
- ``query``    ../shared/data/gan/query: 70 genuine + 45 real + 20 unknown-generator images
- ``dresden``  ../shared/data/dresden ff + nat: a centre 256 x 256 crop (8 x 8-grid aligned, as a
               centre crop of these sizes is) and one at a random offset of every photo: 152
- ``flat``     featureless images: uniform levels, ramps, radial and two-colour images, blurred and
               saturated scenes (made here, no data)
- ``simcam``   simulated cameras (``fingerprint.synthetic.make_camera``): 6 cameras x 10 images,
               natural and flat-field scenes, some JPEG-compressed as cameras do
- ``simisp``   the default null of ``fingerprint.default_null`` (simulated cameras with demosaicing,
               sharpening and JPEG, on and off the 8 x 8 grid): 96 images
- ``simgen``   simulated generators (``make_generator``): 4 architectures x 3 seeds, 20 images each;
               seeds of one architecture are siblings (the family problem, without the shared data)
"""

from __future__ import annotations

import glob
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fingerprint.residual import extract_noise  # noqa: E402
from fingerprint.transforms import apply_pipeline, image_rng, parse_pipeline  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data")
GAN = os.path.join(DATA, "gan")
DRESDEN = os.path.join(DATA, "dresden")
CACHE = os.environ.get("GAN_TRUST_CACHE", "/tmp/gan_trust_cache")
SIGMA = 5.0  # the generator default (fingerprint.build.default_params)
SEED = 11
SIZE = 256
CONDITIONS = ("none", "jpeg:90", "jpeg:75", "resize:0.9", "resize:0.75", "resize:0.5",
              "crop:200", "crop:160", "crop:128")
NEGATIVE_LABELS = ("real", "unknown_pix2pix_day2night")
SIM_ARCHS = ("transposed_conv", "nearest_conv", "bilinear_conv", "pixel_shuffle")


def _png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def gan_set(part: str):
    images, labels, files = [], [], []
    for g in sorted(os.listdir(os.path.join(GAN, part))):
        for f in sorted(glob.glob(os.path.join(GAN, part, g, "*.png"))):
            images.append(_png(f)), labels.append(g), files.append(f)
    return images, labels, files


def dresden_set():
    from PIL import Image

    images, labels, files = [], [], []
    rng = np.random.default_rng(SEED)
    for folder in ("ff", "nat"):
        for f in sorted(glob.glob(os.path.join(DRESDEN, folder, "*.JPG"))):
            with Image.open(f) as im:
                x = np.asarray(im.convert("RGB"))
            H, W = x.shape[:2]
            top, left = (H - SIZE) // 2, (W - SIZE) // 2
            for t, l, kind in ((top, left, "centre"), (int(rng.integers(0, H - SIZE)), int(rng.integers(0, W - SIZE)), "random")):
                images.append(np.ascontiguousarray(x[t:t + SIZE, l:l + SIZE]))
                labels.append(f"dresden_{folder}")
                files.append(f"{os.path.basename(f)}@{t}:{l}({kind})")
    return images, labels, files


def flat_set():
    """Featureless and nearly featureless 256 x 256 RGB images (labels say which kind)."""
    from scipy import ndimage

    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    out = []
    for v in (0, 1, 40, 128, 200, 254, 255):
        out.append((np.full((SIZE, SIZE, 3), v, np.uint8), "flat_uniform"))
    for c in ((255, 0, 0), (30, 120, 200)):
        out.append((np.broadcast_to(np.array(c, np.uint8), (SIZE, SIZE, 3)).copy(), "flat_uniform"))
    ramps = [x, y, (x + y) / 2, SIZE - 1 - x, np.hypot(x - 128, y - 128) * 1.4, x * 0.25, y * 0.1 + 100]
    for r in ramps:
        v = np.clip(np.rint(r), 0, 255).astype(np.uint8)
        out.append((np.stack([v, v, v], -1), "flat_ramp"))
    for a, b in ((0.3, 0.7), (0.9, 0.2)):
        v = np.stack([x * a + 20, y * b + 30, (x + y) * 0.2 + 10], -1)
        out.append((np.clip(np.rint(v), 0, 255).astype(np.uint8), "flat_ramp"))
    two = np.where((x > 100)[..., None], np.array([200, 180, 160]), np.array([20, 40, 60])).astype(np.uint8)
    out.append((two, "flat_two_colour"))
    disc = np.where((np.hypot(x - 128, y - 128) < 70)[..., None], 230, 25).astype(np.uint8).repeat(3, -1)
    out.append((disc, "flat_two_colour"))
    # heavily smoothed and saturated versions of real generator-free content (a simulated scene)
    from fingerprint.synthetic import make_camera

    cam = make_camera("flat-source", 901)
    scenes = list(cam.images(4, seed=5))
    for s in scenes[:2]:
        out.append((np.clip(np.rint(ndimage.gaussian_filter(s.astype(float), (4, 4, 0))), 0, 255).astype(np.uint8), "flat_blurred"))
    for s in scenes[2:]:
        out.append((np.clip(s.astype(np.int32) * 4, 0, 255).astype(np.uint8), "flat_saturated"))
    # a gray ramp with sub-quantisation dither (still featureless: noise of +-0.5 grey level)
    rng = np.random.default_rng(SEED)
    v = np.clip(np.rint(x * 0.5 + 60 + rng.uniform(-0.5, 0.5, x.shape)), 0, 255).astype(np.uint8)
    out.append((np.stack([v, v, v], -1), "flat_dithered"))
    return [o[0] for o in out], [o[1] for o in out], [f"flat{i}" for i in range(len(out))]


def simcam_set(n_cameras: int = 6, per_camera: int = 10):
    from fingerprint.synthetic import make_camera

    images, labels, files = [], [], []
    for k in range(n_cameras):
        cam = make_camera(f"sim{k}", 700 + k, prnu_std=0.005 + 0.003 * k)
        q = (None, 95, 90, 85, None, 80)[k % 6]
        for i, im in enumerate(cam.images(per_camera - 2, seed=k, jpeg_quality=q)):
            images.append(im), labels.append(f"simcam{k}"), files.append(f"simcam{k}/{i}")
        for i, im in enumerate(cam.images(2, seed=k, flat=True, jpeg_quality=q)):
            images.append(im), labels.append(f"simcam{k}"), files.append(f"simcam{k}/flat{i}")
    return images, labels, files


def simisp_set():
    """The default null's simulated camera photos (``fingerprint.default_null``): 8 cameras x 12,
    demosaiced, sharpened, JPEG-compressed at camera qualities, on and off the JPEG grid."""
    from fingerprint.default_null import default_null_images

    images, labels, files = [], [], []
    for image, desc in default_null_images((SIZE, SIZE), seed=SEED):
        images.append(image), labels.append("simisp" + desc.split("/")[0][3:]), files.append(desc)
    return images, labels, files


def simgen_set(per_generator: int = 20, seeds: tuple[int, ...] = (1, 2, 3)):
    from fingerprint.synthetic import make_generator

    images, labels, files = [], [], []
    for arch in SIM_ARCHS:
        for s in seeds:
            g = make_generator(f"{arch}{s}", arch, s)
            for i, im in enumerate(g.generate(per_generator, seed=100 + s)):
                images.append(im), labels.append(f"sim_{arch}_{s}"), files.append(f"sim_{arch}_{s}/{i}")
    return images, labels, files


SETS = {"ref": lambda: gan_set("ref"), "query": lambda: gan_set("query"), "dresden": dresden_set,
        "flat": flat_set, "simcam": simcam_set, "simgen": simgen_set, "simisp": simisp_set}
CONDITIONS_OF = {"ref": CONDITIONS, "query": CONDITIONS,
                 "dresden": CONDITIONS, "flat": ("none", "jpeg:75", "resize:0.5", "crop:160"),
                 "simcam": CONDITIONS, "simisp": CONDITIONS,
                 "simgen": ("none", "jpeg:75", "resize:0.75", "crop:160")}


def _key(set_name: str, cond: str) -> str:
    return os.path.join(CACHE, f"{set_name}__{cond.replace(':', '_').replace('+', '_')}")


_sources: dict = {}


def source(set_name: str):
    if set_name not in _sources:
        _sources[set_name] = SETS[set_name]()
    return _sources[set_name]


def build(set_name: str, cond: str, verbose: bool = True) -> None:
    """Transform every image of a set and cache images + noise residuals (skips what exists)."""
    key = _key(set_name, cond)
    if os.path.exists(key + ".noise.npy"):
        return
    os.makedirs(CACHE, exist_ok=True)
    images, labels, files = source(set_name)
    pipe = parse_pipeline(cond)
    t0 = time.perf_counter()
    imgs, noise, applied = [], [], []
    for i, im in enumerate(images):
        t = apply_pipeline(im, pipe, image_rng(SEED, i))
        imgs.append(t.image)
        noise.append(extract_noise(t.image, SIGMA, 4).astype(np.float16))
        applied.append(";".join(t.applied))
    np.save(key + ".images.npy", np.stack(imgs))
    np.save(key + ".labels.npy", np.array(labels))
    np.save(key + ".files.npy", np.array(files))
    np.save(key + ".applied.npy", np.array(applied))
    np.save(key + ".noise.npy", np.stack(noise))
    if verbose:
        print(f"cached {set_name} {cond}: {len(images)} images in {time.perf_counter() - t0:.1f} s", flush=True)


def load(set_name: str, cond: str = "none"):
    """(images uint8 (n,h,w,3), noise float32 (n,3,h,w), labels, files, applied) of a set/condition."""
    build(set_name, cond)
    key = _key(set_name, cond)
    return (np.load(key + ".images.npy", mmap_mode="r"), np.load(key + ".noise.npy").astype(np.float32),
            np.load(key + ".labels.npy"), np.load(key + ".files.npy"), np.load(key + ".applied.npy"))


def build_all(sets=None) -> None:
    for s in sets or SETS:
        for c in CONDITIONS_OF[s]:
            build(s, c)


if __name__ == "__main__":
    build_all(sys.argv[1:] or None)
