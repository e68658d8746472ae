"""Centre crop of an image to a common size (what ``--crop HxW`` does to every image)."""

from __future__ import annotations

import numpy as np

from fingerprint.errors import InvalidImageError

__all__ = ["check_crop_shape", "crop_center"]


def check_crop_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` as two Python ints, or ValueError when ``shape`` is not two positive integers."""
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"crop shape must be two positive integers (h, w), got {shape!r}")
    return int(shape[0]), int(shape[1])


def crop_center(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop of an image to ``shape = (h, w)``, as in Binghamton's toolbox and prnu-python.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any dtype.
    shape : tuple of int
        ``(h, w)``, rows then columns, each at least 1.

    Returns
    -------
    crop : ndarray, shape (h, w) or (h, w, C)
        ``image[r0:r0 + h, c0:c0 + w]`` with ``r0 = (H - h) // 2`` and ``c0 = (W - w) // 2``: a
        view, not a copy.

    Raises
    ------
    InvalidImageError
        The image is smaller than the crop in either dimension (the message gives both sizes), or
        is not 2-D or 3-D. It names no file (``.path`` is None); ``err.at(path)`` does.
    ValueError
        ``shape`` is not two positive integers.

    Examples
    --------
    >>> import numpy as np
    >>> crop_center(np.arange(25).reshape(5, 5), (2, 3))
    array([[ 6,  7,  8],
           [11, 12, 13]])
    """
    h, w = check_crop_shape(shape)
    if image.ndim not in (2, 3):
        raise InvalidImageError(
            f"crop_center needs an (H, W) or (H, W, C) image, got shape {image.shape}"
        )
    rows, cols = image.shape[:2]
    if rows < h or cols < w:
        raise InvalidImageError(
            f"image of {rows}x{cols} (HxW) is smaller than the {h}x{w} crop requested"
        )
    r0 = (rows - h) // 2
    c0 = (cols - w) // 2
    return image[r0 : r0 + h, c0 : c0 + w]
