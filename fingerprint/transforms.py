"""Image transformations for robustness tests: JPEG re-saves, resizing, crops, rotations.

What happens to an image on its way to a user (re-compression, down-scaling, cropping) is
written as a small text spec and applied in memory, so an evaluation can run on transformed copies
of its queries without writing files.

Grammar
-------
::

    conditions := pipeline ("," pipeline)*          several evaluation conditions
    pipeline   := step ("+" step)* | "none"         steps applied left to right
    step       := "jpeg:" Q [":" SUB]               JPEG re-save at quality Q (1..100);
                                                    SUB chroma subsampling 444, 422 or 420
                                                    (default 420, Pillow's and most cameras')
                | "resize:" SCALE [":" FILTER]      SCALE a factor (0.05..8, e.g. 0.5) or a size HxW;
                                                    FILTER nearest, box, bilinear, hamming,
                                                    bicubic (default) or lanczos (Pillow's)
                | "crop:" SIZE ["@" WHERE]          SIZE N (square) or HxW; WHERE random (default:
                                                    uniform offset from the caller's seeded RNG),
                                                    center, or TOP:LEFT in pixels
                | "rotate:" ANGLE                   90, 180 or 270 degrees counter-clockwise
                                                    (lossless, ``numpy.rot90``)

Examples: ``jpeg:75``, ``resize:0.5:lanczos``, ``crop:160@center``, ``resize:0.75+jpeg:90+crop:128``,
and ``jpeg:90,jpeg:75,resize:0.5,crop:160`` (four conditions). Spaces around tokens are ignored,
names are case-insensitive.

Pixel conventions: input uint8 or uint16, (H, W) or (H, W, 3); output the same dtype, except after
a JPEG step, which always gives uint8 (a JPEG file has 8 bits; uint16 is divided by 257 and
rounded first). Resizing uint8 uses Pillow on the whole image (what an image editor does);
uint16 is resized per channel in Pillow's 32-bit float mode, then rounded and clipped.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "FILTERS",
    "Crop",
    "Jpeg",
    "Pipeline",
    "Resize",
    "Rotate",
    "Transformed",
    "apply_pipeline",
    "image_rng",
    "parse_conditions",
    "parse_pipeline",
]

FILTERS = ("bicubic", "bilinear", "box", "hamming", "lanczos", "nearest")
SUBSAMPLING = {"444": 0, "422": 1, "420": 2}  # Pillow's ``subsampling`` codes
SCALE_RANGE = (0.05, 8.0)
_SIZE_RE = re.compile(r"^(\d+)(?:[xX](\d+))?$")
_INT_RE = re.compile(r"^\d+$")


def _fail(step: str, problem: str) -> ValueError:
    return ValueError(f"transform {step!r}: {problem}")


@dataclass(frozen=True)
class Jpeg:
    """Re-save as JPEG at ``quality`` with chroma ``subsampling`` ("444", "422", "420")."""

    quality: int
    subsampling: str = "420"

    def spec(self) -> str:
        return f"jpeg:{self.quality}" + ("" if self.subsampling == "420" else f":{self.subsampling}")


@dataclass(frozen=True)
class Resize:
    """Resample by ``factor`` (both axes) or to ``size`` = (h, w), with a Pillow ``filter``."""

    factor: float | None = None
    size: tuple[int, int] | None = None
    filter: str = "bicubic"

    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(h, w) after resizing an image of ``shape``: ``round(H * factor)`` (at least 1) or ``size``."""
        if self.size is not None:
            return self.size
        return max(1, int(round(shape[0] * self.factor))), max(1, int(round(shape[1] * self.factor)))

    def spec(self) -> str:
        scale = f"{self.factor:g}" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        return f"resize:{scale}" + ("" if self.filter == "bicubic" else f":{self.filter}")


@dataclass(frozen=True)
class Crop:
    """Cut an (h, w) window; ``where`` is "random", "center" or a (top, left) offset."""

    size: tuple[int, int]
    where: str | tuple[int, int] = "random"

    def spec(self) -> str:
        size = f"{self.size[0]}" if self.size[0] == self.size[1] else f"{self.size[0]}x{self.size[1]}"
        where = "" if self.where == "random" else (
            "@center" if self.where == "center" else f"@{self.where[0]}:{self.where[1]}")
        return f"crop:{size}{where}"


@dataclass(frozen=True)
class Rotate:
    """Rotate by ``angle`` in {90, 180, 270} degrees counter-clockwise (``numpy.rot90``)."""

    angle: int

    def spec(self) -> str:
        return f"rotate:{self.angle}"


Step = Jpeg | Resize | Crop | Rotate


@dataclass(frozen=True)
class Pipeline:
    """Steps applied left to right; ``spec()`` gives back the canonical text ("none" when empty)."""

    steps: tuple[Step, ...] = ()

    def spec(self) -> str:
        return "+".join(s.spec() for s in self.steps) or "none"

    def __str__(self) -> str:
        return self.spec()


@dataclass
class Transformed:
    """A transformed image and what was done to it.

    Attributes
    ----------
    image : ndarray, uint8 or uint16, (h, w) or (h, w, 3)
    applied : list of str
        The steps as applied, random choices resolved (``"crop:160@37:12"``).
    scale : (float, float)
        Product of every resize's output/input size ratio, rows and columns.
    quantization : dict or None
        The JPEG quantisation tables (Pillow's ``{table id: 64 values}``) when the last step is a
        JPEG save, i.e. what a reader of the file would see; None otherwise (a later step would be
        saved losslessly).
    jpeg_quality : int or None
        The quality of the last JPEG step, if any step is one.
    """

    image: np.ndarray
    applied: list[str] = field(default_factory=list)
    scale: tuple[float, float] = (1.0, 1.0)
    quantization: dict[int, list[int]] | None = None
    jpeg_quality: int | None = None


# ------------------------------------------------------------------------------------------ parsing
def _parse_size(step: str, text: str) -> tuple[int, int]:
    m = _SIZE_RE.match(text)
    if m is None:
        raise _fail(step, f"size must be N or HxW in pixels, got {text!r}")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) is not None else h
    if h < 1 or w < 1:
        raise _fail(step, "size must be at least 1 pixel")
    return h, w


def _parse_jpeg(step: str, args: list[str]) -> Jpeg:
    if not 1 <= len(args) <= 2 or not _INT_RE.match(args[0]) or not 1 <= int(args[0]) <= 100:
        raise _fail(step, "expected jpeg:Q with Q an integer in 1..100, optionally :444, :422 or :420")
    sub = args[1] if len(args) == 2 else "420"
    if sub not in SUBSAMPLING:
        raise _fail(step, f"chroma subsampling must be one of {', '.join(sorted(SUBSAMPLING))}, got {sub!r}")
    return Jpeg(int(args[0]), sub)


def _parse_resize(step: str, args: list[str]) -> Resize:
    if not 1 <= len(args) <= 2:
        raise _fail(step, "expected resize:FACTOR or resize:HxW, optionally :FILTER")
    filt = args[1].lower() if len(args) == 2 else "bicubic"
    if filt not in FILTERS:
        raise _fail(step, f"filter must be one of {', '.join(FILTERS)}, got {args[1]!r}")
    if "x" in args[0].lower():
        return Resize(size=_parse_size(step, args[0].lower()), filter=filt)
    try:
        factor = float(args[0])
    except ValueError:
        raise _fail(step, f"scale must be a factor such as 0.5 or a size HxW, got {args[0]!r}") from None
    if not SCALE_RANGE[0] <= factor <= SCALE_RANGE[1]:
        raise _fail(step, f"scale factor must be in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}], got {args[0]}")
    return Resize(factor=factor, filter=filt)


def _parse_crop(step: str, args: list[str]) -> Crop:
    # "crop:160@12:34" splits into ["160@12", "34"]: glue the arguments back together first
    text = ":".join(args)
    size_text, _, where_text = text.partition("@")
    if not size_text:
        raise _fail(step, "expected crop:N or crop:HxW, optionally @center, @random or @TOP:LEFT")
    size = _parse_size(step, size_text.lower())
    where_text = where_text.lower()
    if "@" in text and not where_text:
        raise _fail(step, "nothing after '@': use @center, @random or @TOP:LEFT")
    if where_text in ("", "random"):
        return Crop(size, "random")
    if where_text in ("center", "centre"):
        return Crop(size, "center")
    parts = where_text.split(":")
    if len(parts) != 2 or not all(_INT_RE.match(p) for p in parts):
        raise _fail(step, f"offset must be center, random or TOP:LEFT (non-negative integers), got {where_text!r}")
    return Crop(size, (int(parts[0]), int(parts[1])))


def _parse_rotate(step: str, args: list[str]) -> Rotate:
    if len(args) != 1 or args[0] not in ("90", "180", "270"):
        raise _fail(step, "expected rotate:90, rotate:180 or rotate:270 (counter-clockwise)")
    return Rotate(int(args[0]))


_PARSERS = {"crop": _parse_crop, "jpeg": _parse_jpeg, "resize": _parse_resize, "rotate": _parse_rotate}


def _parse_step(text: str) -> Step:
    step = text.strip()
    if not step:
        raise ValueError("empty transform step (two '+' in a row, or a '+' at either end?)")
    name, sep, rest = step.partition(":")
    parser = _PARSERS.get(name.strip().lower())
    if parser is None:
        raise _fail(step, f"unknown transform {name.strip()!r}; valid: {', '.join(sorted(_PARSERS))} "
                          "(or 'none' for no transform)")
    if not sep or not rest.strip():
        raise _fail(step, f"{name.strip().lower()} needs an argument, e.g. "
                          + {"crop": "crop:160", "jpeg": "jpeg:75", "resize": "resize:0.5",
                             "rotate": "rotate:90"}[name.strip().lower()])
    return parser(step, [a.strip() for a in rest.split(":")])


def parse_pipeline(text: str) -> Pipeline:
    """Parse one pipeline, steps joined by ``+`` (``"resize:0.5+jpeg:75"``); ``"none"`` is empty.

    Raises
    ------
    ValueError
        One line naming the bad step and what is expected.

    Examples
    --------
    >>> parse_pipeline("resize:0.5:lanczos+crop:128@center").spec()
    'resize:0.5:lanczos+crop:128@center'
    """
    if not isinstance(text, str):
        raise ValueError(f"a transform must be text such as 'jpeg:75', got {type(text).__name__}")
    if text.strip().lower() in ("none", "identity"):
        return Pipeline()
    if "," in text:
        raise ValueError(f"transform {text!r}: ',' separates conditions; join the steps of one pipeline with '+'")
    return Pipeline(tuple(_parse_step(s) for s in text.split("+")))


def parse_conditions(text: str | Sequence[str]) -> list[Pipeline]:
    """Parse evaluation conditions: pipelines separated by ``,`` (or given as a list of texts).

    Examples
    --------
    >>> [p.spec() for p in parse_conditions("none,jpeg:75,resize:0.5+crop:128")]
    ['none', 'jpeg:75', 'resize:0.5+crop:128']
    """
    items = text.split(",") if isinstance(text, str) else [t for part in text for t in part.split(",")]
    if not items or any(not t.strip() for t in items):
        raise ValueError(f"empty transform condition in {text!r} (two ',' in a row, or one at either end?)")
    return [parse_pipeline(t) for t in items]


# ----------------------------------------------------------------------------------------- applying
def image_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator for image ``index`` of an evaluation seeded with ``seed``.

    Independent streams per image (``numpy.random.SeedSequence([seed, index])``), so an image's
    random crop does not depend on which other images are evaluated.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _check(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"transforms need a uint8 or uint16 array, got {getattr(image, 'dtype', type(image))}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"transforms need an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, step: Jpeg) -> tuple[np.ndarray, dict[int, list[int]]]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(_to_uint8(image))).save(
        buf, format="JPEG", quality=step.quality, subsampling=SUBSAMPLING[step.subsampling])
    buf.seek(0)
    with Image.open(buf) as im:
        tables = {int(k): list(v) for k, v in im.quantization.items()}
        out = np.asarray(im.convert("L" if image.ndim == 2 else "RGB")).copy()
    return out, tables


def _resample(step: Resize) -> int:
    from PIL import Image

    return getattr(Image.Resampling, step.filter.upper())


def _resize(image: np.ndarray, step: Resize) -> np.ndarray:
    from PIL import Image

    h, w = step.output_shape(image.shape[:2])
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), _resample(step))).copy()
    planes = image[..., None] if image.ndim == 2 else image
    out = np.empty((h, w, planes.shape[2]), dtype=np.uint16)
    for c in range(planes.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32), mode="F")
        out[..., c] = np.clip(np.rint(np.asarray(plane.resize((w, h), _resample(step)))), 0, 65535)
    return out[..., 0] if image.ndim == 2 else out


def _crop(image: np.ndarray, step: Crop, rng: np.random.Generator | None) -> tuple[np.ndarray, tuple[int, int]]:
    H, W = image.shape[:2]
    h, w = step.size
    if h > H or w > W:
        raise ValueError(f"transform {step.spec()!r}: a {h}x{w} crop does not fit a {H}x{W} image")
    if step.where == "center":
        top, left = (H - h) // 2, (W - w) // 2
    elif step.where == "random":
        if rng is None:
            raise ValueError(f"transform {step.spec()!r}: a random crop needs a seeded rng (see image_rng)")
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    else:
        top, left = step.where
        if top + h > H or left + w > W:
            raise ValueError(f"transform {step.spec()!r}: a {h}x{w} crop at {top}:{left} does not fit a {H}x{W} image")
    return image[top: top + h, left: left + w], (top, left)


def apply_pipeline(image: np.ndarray, pipeline: Pipeline | str, rng: np.random.Generator | None = None) -> Transformed:
    """Apply a pipeline (or its text) to one image.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, 3) ((H, W, 1) is read as gray)
    pipeline : Pipeline or str
        See the module docstring for the grammar.
    rng : numpy.random.Generator, optional
        Needed by random crops (use :func:`image_rng` for reproducible per-image offsets).

    Returns
    -------
    Transformed
        The new image (C-contiguous, a copy) and the steps as applied.

    Raises
    ------
    ValueError
        Bad spec, bad image, a crop larger than the image, or a random crop without ``rng``.

    Examples
    --------
    >>> import numpy as np
    >>> t = apply_pipeline(np.zeros((64, 48, 3), np.uint8), "resize:0.5+crop:16@center")
    >>> t.image.shape, t.applied, t.scale
    ((16, 16, 3), ['resize:0.5', 'crop:16@8:4'], (0.5, 0.5))
    """
    pipe = parse_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    x = _check(image)
    out = Transformed(x)
    sy, sx = 1.0, 1.0
    for step in pipe.steps:
        out.quantization = None
        if isinstance(step, Jpeg):
            x, out.quantization = _jpeg(x, step)
            out.jpeg_quality = step.quality
            out.applied.append(step.spec())
        elif isinstance(step, Resize):
            h0, w0 = x.shape[:2]
            x = _resize(x, step)
            sy, sx = sy * x.shape[0] / h0, sx * x.shape[1] / w0
            out.applied.append(step.spec())
        elif isinstance(step, Crop):
            x, (top, left) = _crop(x, step, rng)
            out.applied.append(Crop(step.size, (top, left)).spec())
        else:
            x = np.rot90(x, step.angle // 90)
            out.applied.append(step.spec())
    out.image = np.array(x, order="C", copy=True)  # never a view of the caller's array
    out.scale = (sy, sx)
    return out
