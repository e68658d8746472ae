"""Choosing the compute backend: ``"cpu"``, ``"cuda"`` or ``"auto"`` (STYLE.md §3.1).

``resolve_backend`` turns a requested name into ``"cpu"`` or ``"cuda"``. Nothing here imports CuPy
or ``numba.cuda`` at module import time. ``BackendUnavailableError`` is defined in
``kernels.errors`` (re-exported by ``fingerprint.errors``). ``fingerprint.residual.extract_residual``
dispatches: its CPU path, or ``kernels.residual_gpu`` (loaded only when ``"cuda"`` is chosen).
"""

from __future__ import annotations

import functools

from kernels.errors import BackendUnavailableError
from kernels.launch_gpu import is_device_array

__all__ = ["BACKENDS", "VALID_BACKENDS", "resolve_backend", "cuda_status"]

BACKENDS = ("cpu", "cuda")
VALID_BACKENDS = ("auto", "cpu", "cuda")

_INSTALL_HINT = (
    "install CuPy for your CUDA driver (pip install 'ganprint[gpu]', i.e. cupy-cuda12x, or "
    "cupy-cuda13x for a CUDA 13 driver) and run on a machine with an NVIDIA GPU; "
    "or pass backend='cpu'"
)


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA backend can run here, and why not.

    Returns
    -------
    usable : bool
        True when CuPy imports, sees at least one device, and ``numba.cuda`` reports a device
        (the kernels are ``numba.cuda`` kernels). Always False in Numba's CUDA simulator.
    reason : str
        ``"ok: <device name>"`` or a sentence saying what is missing.

    Notes
    -----
    Cached for the process: devices do not come and go while it runs. Call
    ``cuda_status.cache_clear()`` to probe again.
    """
    from kernels.launch_gpu import simulator_enabled

    if simulator_enabled():
        return False, "Numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): no real device"
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed"
    except Exception as exc:  # a broken CuPy install (wrong CUDA libraries) raises other errors
        return False, f"CuPy failed to import: {exc}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy sees no CUDA driver or device: {exc}"
    if n < 1:
        return False, "CuPy sees no CUDA device"
    try:
        from numba import cuda
    except ImportError as exc:
        return False, f"numba.cuda is not importable ({exc}); pip install numba-cuda"
    try:
        if not cuda.is_available():
            return False, "numba.cuda finds no usable CUDA device or driver"
    except Exception as exc:
        return False, f"numba.cuda failed to probe the driver: {exc}"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception:
        name = "CUDA device"
    return True, f"ok: {name}"


def resolve_backend(backend: str, array=None) -> str:
    """Turn a requested backend name into the one that will run: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    backend : {"auto", "cpu", "cuda"}
        ``"cpu"``: the Numba CPU kernels. ``"cuda"``: the GPU kernels (CuPy + numba.cuda).
        ``"auto"``: ``"cuda"`` when ``array`` is a CuPy array, or when a usable device and CuPy
        are present; ``"cpu"`` otherwise.
    array : array-like, optional
        The input about to be processed. A CuPy array makes ``"auto"`` choose ``"cuda"`` (and is
        then necessarily on a device).

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        ``backend`` is not one of ``VALID_BACKENDS`` (the message lists them).
    BackendUnavailableError
        ``backend="cuda"`` but CuPy or a CUDA device is missing; the message says what to install.

    Examples
    --------
    >>> resolve_backend("cpu")
    'cpu'
    >>> resolve_backend("metal")
    Traceback (most recent call last):
    ...
    ValueError: unknown backend 'metal'; valid backends are 'auto', 'cpu', 'cuda'
    """
    if not isinstance(backend, str) or backend not in VALID_BACKENDS:
        valid = ", ".join(repr(b) for b in sorted(VALID_BACKENDS))
        raise ValueError(f"unknown backend {backend!r}; valid backends are {valid}")
    if backend == "cpu":
        return "cpu"
    if backend == "auto":
        if is_device_array(array):
            return "cuda"
        return "cuda" if cuda_status()[0] else "cpu"
    usable, reason = cuda_status()
    if not usable:
        raise BackendUnavailableError(f"backend 'cuda' is not available here: {reason}; {_INSTALL_HINT}")
    return "cuda"

