"""The CUDA backend of attribution and building: device-resident references, residuals and scores.

Loaded only when ``kernels._backend.resolve_backend`` chose ``"cuda"`` (so CuPy is imported only
then). One :class:`Device` per ``Attributor`` or build holds the array module ``xp`` (``cupy``;
``numpy`` in Numba's CUDA simulator, where the ``numba.cuda`` kernels run as Python) and offers:

* ``put`` / ``host``: copies to and from the device;
* ``residual``: the query residual ``W`` (docs/algorithm.md §4) of a device-resident image,
  ``kernels.residual_gpu``'s kernels, result on the device;
* ``noise``: the per-channel noise of the estimators (§5, §6), ``fingerprint.residual.extract_noise``'s
  twin, result copied back (the running sums, ZeroMeanTotal of generator residuals and spectral
  whitening stay on the CPU: they have no GPU twin);
* ``gray``: the gray query image ``I``;
* :class:`DeviceSpectrum`: a camera fingerprint's spectrum kept on the device, PCE by
  ``kernels.scores_gpu.pce_batch``, returning the CPU's :class:`~fingerprint.scores.PCEResult`;
* ``ncc`` / ``ncc_rows``: NCC by ``kernels.scores_gpu.ncc_matrix`` (one GEMM for a batch).

Every score comes back as a Python float, so the ``ReferenceScore`` records are those of the CPU
path, equal up to float32 rounding. Status: run in Numba's CUDA simulator only
(``tests/test_gpu.py``), never on a real GPU (``docs/gpu.md``).
"""

from __future__ import annotations

import numpy as np

from fingerprint.errors import ShapeMismatchError
from fingerprint.scores import PCEResult
from kernels import layout_gpu, scores_gpu
from kernels.launch_gpu import array_module
from kernels.residual_gpu import _noise_channel, _residual
from kernels.spec import check_residual_params, check_search, gray_image, value_scale

__all__ = ["Device", "DeviceSpectrum"]


class Device:
    """The CUDA device as the attribution and the builds use it (see the module docstring).

    Parameters
    ----------
    xp : module, optional
        The device's array module; default ``kernels.launch_gpu.array_module(None)``: ``cupy``, or
        ``numpy`` in the CUDA simulator.
    """

    def __init__(self, xp=None):
        self.xp = xp if xp is not None else array_module(None)

    def put(self, a):
        """``a`` as a C-contiguous array on the device (no copy when it is one already)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a))

    def host(self, a) -> np.ndarray:
        """``a`` as a NumPy array (a device-to-host copy for a CuPy array)."""
        return a.get() if hasattr(a, "get") else np.asarray(a)

    def residual(self, x, sigma: float, levels: int):
        """Query residual ``W`` (float32, H x W, on the device) of a checked image ``x`` already on the device.

        Twin of ``fingerprint.residual.extract_residual``; a constant image gives exact zeros.
        """
        sigma, levels = check_residual_params(sigma, levels)
        return _residual(x, sigma, levels, self.xp)

    def gray(self, x):
        """Gray query image ``I`` in [0, 255] (float32, H x W, on the device): ``kernels.spec.gray_image``."""
        return gray_image(x, self.xp)

    def noise(self, image, sigma: float, levels: int) -> np.ndarray:
        """Per-channel noise of a checked image, float32 (C, H, W), copied back to the host.

        Twin of ``fingerprint.residual.extract_noise`` (pad, db4 DWT, local Wiener of the details,
        approximation zeroed, inverse DWT, crop; no gray, no ZeroMeanTotal, no DFT Wiener).
        """
        sigma, levels = check_residual_params(sigma, levels)
        xp = self.xp
        x = self.put(image)
        planes = x[:, :, None] if x.ndim == 2 else x
        h, w, c = planes.shape
        out = xp.empty((c, h, w), dtype=xp.float32)
        sigma2 = xp.full(1, sigma * sigma, dtype=xp.float32)
        scale = np.float32(value_scale(x.dtype))
        for k in range(c):
            rec, top, left = _noise_channel(planes, k, sigma2, levels, scale, xp)
            layout_gpu.add_crop(rec, top, left, np.float32(1.0), out[k], True)
            del rec
        return self.host(out)

    def spectrum(self, reference: np.ndarray) -> DeviceSpectrum:
        """A reference's spectrum kept on the device (``DeviceSpectrum``)."""
        return DeviceSpectrum(reference, self)

    def ncc(self, a, b) -> float:
        """NCC of two device arrays of one shape (``fingerprint.scores.ncc``'s twin), a Python float."""
        if a.shape != b.shape:
            raise ShapeMismatchError(f"ncc needs arrays of one shape, got {a.shape} and {b.shape}")
        return float(scores_gpu.ncc_matrix(a[None], b[None], xp=self.xp)[0, 0])

    def ncc_rows(self, queries: np.ndarray, references) -> np.ndarray:
        """NCC of every row of ``queries`` (Q, ...) with every row of ``references`` (R, ..., on the
        device): one GEMM per chunk on the device, the (Q, R) float64 result copied back."""
        return self.host(scores_gpu.ncc_matrix(self.put(queries), references, xp=self.xp))


class DeviceSpectrum:
    """``fingerprint.scores.ReferenceSpectrum`` on the device: ``rfft2(ref - mean(ref))`` kept there.

    Parameters
    ----------
    reference : ndarray of float32, shape (H, W)
        A camera fingerprint ``K`` (copied to the device once).
    device : Device
    """

    def __init__(self, reference: np.ndarray, device: Device):
        self.device = device
        ref = device.put(np.asarray(reference, dtype=np.float32))
        self.shape: tuple[int, int] = (int(ref.shape[0]), int(ref.shape[1]))
        self.spectrum = scores_gpu.reference_spectrum(ref, xp=device.xp)

    def __repr__(self) -> str:
        return f"DeviceSpectrum(shape={self.shape})"

    def pce(self, query, *, search: str = "aligned") -> PCEResult:
        """PCE of a device-resident float32 query (h, w) <= (H, W): ``ReferenceSpectrum.pce``'s twin.

        ``"aligned"`` needs the reference's shape; ``"crop"`` searches every offset keeping the
        query inside, ``n_positions = (H - h + 1)(W - w + 1)``. Peak neighbourhood 11 x 11.
        """
        mode = check_search(search)
        h, w = int(query.shape[0]), int(query.shape[1])
        big_h, big_w = self.shape
        if (mode == "aligned" and (h, w) != self.shape) or h > big_h or w > big_w:
            raise ShapeMismatchError(f"query of shape {(h, w)} does not fit the reference of shape {self.shape} "
                                     f"for {mode!r} scoring")
        res = scores_gpu.pce_batch(query[None], self.spectrum, self.shape, search=mode, xp=self.device.xp)
        n_positions = 1 if mode == "aligned" else (big_h - h + 1) * (big_w - w + 1)
        return PCEResult(pce=float(res["pce"][0]), offset=(int(res["oy"][0]), int(res["ox"][0])),
                         peak=float(res["peak"][0]), n_positions=int(n_positions))
