"""JPEG-aware weighting of a camera query residual: the file's last compression says which parts
of the residual can still carry the sensor's PRNU.

A JPEG file stores the luminance as 8 x 8 blocks of DCT coefficients, each rounded to a multiple
of its entry ``Q[u, v]`` of the quantisation table. Seen through that rounding, the residual
``W`` of the decoded image is made of two kinds of coefficients (in the same blocks):

* a coefficient the file stores as 0 fell in the dead zone ``|c| < Q / 2``: the small PRNU term
  ``I K`` (a grey level or two) is lost in it, and what the residual holds there is the
  denoiser's error, noise only. Its weight is 0.
* a coefficient stored as ``n Q``, ``n != 0``, keeps the PRNU term plus a rounding error uniform
  on ``(-Q/2, Q/2)`` (standard deviation ``Q / sqrt 12``). Its weight is ``min(Q) / Q``: the
  inverse of that error's standard deviation, 1 for the finest entry of the table.

So the weighted residual is, block by block, ``W' = IDCT(a * DCT(W))`` with ``a = min(Q) / Q``
where ``round(DCT(I - 128) / Q) != 0`` and 0 elsewhere, ``I`` the grey image (the file's
luminance to within the colour conversion's rounding). The weighting is linear in ``W`` and does
not depend on any fingerprint: against a camera that did not take the photo the correlation
surface is still noise, and the PCE's null is unchanged (``benchmarks/camera_false_alarm.py
--jpeg`` measures the false-alarm rate with weighted JPEG queries). It matters most when the
PRNU is weak in the file: a photo resized and then saved at quality 75 keeps the PRNU mostly in
the low-frequency coefficients of each block, which the unweighted residual drowns in the noise
of the zeroed ones (``benchmarks/camera_scaled.py`` measures it on Dresden photos).

The block grid is the file's: block rows start at multiples of 8 of the decoded image, in the
orientation the pixels are stored (``fingerprint.io.load_image`` does not apply the EXIF
orientation). A crop of the decoded image moves the grid (:meth:`JpegGrid.cropped`); partial
blocks at the right and bottom edges are left unweighted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = ["BLOCK", "JpegGrid", "grid_from_tables", "read_jpeg_grid", "remove_block_grid", "weight_residual"]

BLOCK = 8
"""Side of a JPEG DCT block, in pixels (ITU-T T.81)."""


@dataclass(frozen=True)
class JpegGrid:
    """The last JPEG compression of a query image: luminance table and block grid.

    Attributes
    ----------
    table : tuple of 64 int
        Quantisation table 0 (luminance) in natural, row-major order (as Pillow gives it).
    offset : (int, int)
        Row and column of the array where the first whole block starts, each in 0..7: (0, 0) for
        the file's own pixels, else moved by a crop (:meth:`cropped`).
    """

    table: tuple[int, ...]
    offset: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        table = tuple(int(q) for q in self.table)
        if len(table) != BLOCK * BLOCK or min(table) < 1:
            raise ValueError(f"a JPEG quantisation table has 64 positive entries, got {self.table!r}")
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "offset", (int(self.offset[0]) % BLOCK, int(self.offset[1]) % BLOCK))

    @property
    def quality(self) -> int | None:
        """The IJG quality that table 0 corresponds to (``io.metadata.jpeg_quality``)."""
        from fingerprint.io.metadata import jpeg_quality

        return jpeg_quality(self.table)

    def cropped(self, top: int, left: int) -> JpegGrid:
        """The grid of ``image[top:, left:]``: the first whole block starts ``(offset - top) mod 8`` down.

        >>> JpegGrid([1] * 64).cropped(3, 8).offset
        (5, 0)
        """
        return JpegGrid(self.table, (self.offset[0] - top, self.offset[1] - left))


def grid_from_tables(tables) -> JpegGrid | None:
    """The :class:`JpegGrid` of a file's own pixels from its quantisation tables (Pillow's
    ``Image.quantization``, or ``transforms.Transformed.quantization``: ``{table id: 64 steps}``),
    whose table 0 is the luminance's; None when there is no table 0."""
    if not isinstance(tables, dict) or 0 not in tables:
        return None
    return JpegGrid(tuple(tables[0]))


def read_jpeg_grid(path: str | os.PathLike[str], crop: tuple[int, int] | None = None) -> JpegGrid | None:
    """The :class:`JpegGrid` of a JPEG (or MPO) file from its header; None for other formats or a
    header Pillow cannot read (the decoder reports those).

    ``crop``: the ``(h, w)`` centre crop the pixels are scored at (``fingerprint.io.crop_center``,
    rows ``(H - h) // 2`` on), which moves the grid; None when the crop does not fit (the crop
    reports it)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            grid = grid_from_tables(getattr(img, "quantization", None)) if img.format in ("JPEG", "MPO") else None
            width, height = img.size
    except Exception:  # noqa: BLE001 - the decoder names the file and the problem
        return None
    if grid is None or crop is None:
        return grid
    h, w = crop
    if h > height or w > width:
        return None
    return grid.cropped((height - h) // 2, (width - w) // 2)


def _blocks(a: np.ndarray, y0: int, x0: int, ny: int, nx: int) -> np.ndarray:
    """View of ``a[y0:y0 + 8 ny, x0:x0 + 8 nx]`` as (ny, nx, 8, 8) blocks."""
    return a[y0: y0 + BLOCK * ny, x0: x0 + BLOCK * nx].reshape(ny, BLOCK, nx, BLOCK).swapaxes(1, 2)


def weight_residual(residual: np.ndarray, gray: np.ndarray, grid: JpegGrid) -> np.ndarray:
    """The residual weighted by what its file's quantisation kept (module docstring).

    Parameters
    ----------
    residual : ndarray of float32, shape (H, W)
        Query residual ``W`` of the decoded image (``fingerprint.residual.extract_residual``).
    gray : ndarray, shape (H, W)
        Grey image ``I`` in grey levels 0-255 (the luminance the coefficients are read from).
    grid : JpegGrid
        The file's table and block grid.

    Returns
    -------
    ndarray of float32, shape (H, W)
        ``W'``: each whole block ``IDCT(a * DCT(W))`` with ``a = min(Q) / Q`` where the file's
        coefficient is nonzero and 0 where it is zero; partial blocks at the edges unchanged.
    """
    w = np.asarray(residual, dtype=np.float32)
    if w.ndim != 2 or np.shape(gray) != w.shape:
        raise ValueError(f"residual and gray image must be the same 2-D shape, got {w.shape} and {np.shape(gray)}")
    y0, x0 = grid.offset
    ny, nx = (w.shape[0] - y0) // BLOCK, (w.shape[1] - x0) // BLOCK
    out = np.array(w, dtype=np.float32, copy=True)
    if ny < 1 or nx < 1:
        return out
    q = np.asarray(grid.table, dtype=np.float64).reshape(BLOCK, BLOCK)
    # the luminance's coefficients in float64: which ones round to 0 is decided as exactly as the encoder did
    lum = scipy.fft.dctn(_blocks(np.asarray(gray, dtype=np.float64), y0, x0, ny, nx) - 128.0, axes=(2, 3),
                         norm="ortho", workers=-1)
    coef = scipy.fft.dctn(_blocks(w, y0, x0, ny, nx), axes=(2, 3), norm="ortho", workers=-1)
    coef *= np.where(np.rint(lum / q) != 0, q.min() / q, 0.0).astype(np.float32)
    _blocks(out, y0, x0, ny, nx)[...] = scipy.fft.idctn(coef, axes=(2, 3), norm="ortho", workers=-1)
    return out


def remove_block_grid(residual: np.ndarray, period: int = BLOCK) -> np.ndarray:
    """The residual less its ``period``-periodic part: the JPEG block grid of a generator query.

    JPEG writes the same 8 x 8 pattern into every block of a smooth region (the rounding of each
    block's few coefficients), and generators trained on JPEG photos reproduce such a pattern in
    their own fingerprints. A JPEG query's residual therefore correlates with those fingerprints
    through the grid alone, whatever made the picture (a resized, re-saved gray ramp does). The
    periodic part is the mean of the residual over each of the ``period**2`` residue classes
    ``(y mod p, x mod p)``, tiled; removing it makes the residual orthogonal to *every*
    ``p``-periodic pattern at *every* shift (each class sums to zero), so the block grid of the
    file, at whatever offset a crop left it, no longer contributes to any score. What a
    fingerprint has off the grid's frequencies (``H W / p**2`` of them are removed, 1 in 64) is kept.

    Parameters
    ----------
    residual : ndarray, shape (C, H, W) or (H, W)
    period : int
        Pixels; the JPEG block (``BLOCK``).

    Returns
    -------
    ndarray of float32, the same shape: ``R - P``, ``P[y, x] = mean(R[c, y' = y mod p, x' = x mod p])``
    per channel ``c``.
    """
    out = np.array(residual, dtype=np.float32, copy=True)
    planes = out[None] if out.ndim == 2 else out
    if planes.ndim != 3 or period < 1:
        raise ValueError(f"residual must be (C, H, W) or (H, W) and period >= 1, got {np.shape(residual)}, {period}")
    for a in range(min(period, planes.shape[1])):
        for b in range(min(period, planes.shape[2])):
            cls = planes[:, a::period, b::period]
            cls -= cls.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    return out
