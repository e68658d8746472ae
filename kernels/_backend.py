"""Choosing the compute backend: ``"cpu"``, ``"cuda"`` or ``"auto"`` (STYLE.md §3.1).

``resolve_backend`` turns a requested name into ``"cpu"`` or ``"cuda"``; every public entry point
(``extract_residual``, ``Attributor``, the builds, ``evaluate_library``, ``run_bench``) calls it once
per call and then runs one path. Nothing here imports CuPy or ``numba.cuda`` at module import
time. ``BackendUnavailableError`` is defined in ``kernels.errors`` (re-exported by
``fingerprint.errors``).

The ``"auto"`` policy: a CuPy input stays on the device (``"cuda"``); a NumPy input goes to the
device only when ``cuda_status()`` says a device is usable *and* the image has at least
:data:`AUTO_MIN_PIXELS` pixels, since below that the copies and the ~80 kernel launches of one
residual are expected to cost about as much as the CPU residual (an estimate: not yet measured on
a device, see ``docs/gpu.md``). Without a known size, ``"auto"`` is ``"cpu"``. Until the device
check has passed on real hardware, :data:`AUTO_MOVES_HOST_DATA` is False and ``"auto"`` keeps
NumPy input on the CPU (STYLE.md §3.1: data is never moved to the device behind the user's back).
"""

from __future__ import annotations

import functools

from kernels.errors import BackendUnavailableError
from kernels.launch_gpu import is_device_array

__all__ = ["AUTO_MIN_PIXELS", "AUTO_MOVES_HOST_DATA", "BACKENDS", "VALID_BACKENDS", "resolve_backend", "cuda_status"]

BACKENDS = ("cpu", "cuda")
VALID_BACKENDS = ("auto", "cpu", "cuda")

#: Smallest image (H * W pixels) that ``"auto"`` sends to a usable device: 1 MP. A conservative
#: estimate of where the ~80 kernel launches and two copies of one residual cost less than the CPU
#: residual (~30 MP/s); ``benchmarks/gpu_bench.py`` measures the break-even (``auto_break_even``).
AUTO_MIN_PIXELS = 1_000_000

#: Whether ``"auto"`` may copy host (NumPy) images to a usable device at all. Off until the device
#: check (``benchmarks/gpu_check.sh``: parity and the CPU's decisions on Dresden) has passed on real
#: hardware: the CUDA path has run only in Numba's simulator, and a forensic answer must not depend
#: on unverified code that the user did not ask for. ``backend="cuda"`` opts in explicitly; a CuPy
#: input always stays on its device.
AUTO_MOVES_HOST_DATA = False

#: Tests only: with Numba's CUDA simulator on, let ``cuda_status`` report a usable "device" (NumPy
#: standing in for CuPy), so that the ``"cuda"`` paths run in the simulator. Call
#: ``cuda_status.cache_clear()`` after changing it.
SIMULATOR_COUNTS_AS_DEVICE = False

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
        (the kernels are ``numba.cuda`` kernels). False in Numba's CUDA simulator, unless a test
        set :data:`SIMULATOR_COUNTS_AS_DEVICE`.
    reason : str
        ``"ok: <device name>"`` or a sentence saying what is missing.

    Notes
    -----
    Cached for the process: devices do not come and go while it runs. Call
    ``cuda_status.cache_clear()`` to probe again.
    """
    from kernels.launch_gpu import simulator_enabled

    if simulator_enabled():
        if SIMULATOR_COUNTS_AS_DEVICE:
            return True, "ok: Numba's CUDA simulator (NumPy stands in for CuPy; tests only)"
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


def resolve_backend(backend: str, array=None, *, pixels: int | None = None) -> str:
    """Turn a requested backend name into the one that will run: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    backend : {"auto", "cpu", "cuda"}
        ``"cpu"``: the Numba CPU kernels. ``"cuda"``: the GPU kernels (CuPy + numba.cuda).
        ``"auto"``: ``"cuda"`` for a CuPy ``array``; for anything else ``"cuda"`` only when
        :data:`AUTO_MOVES_HOST_DATA` is on, a device is usable (``cuda_status()``) and the work
        is at least :data:`AUTO_MIN_PIXELS` pixels; ``"cpu"`` otherwise (and when the size is unknown).
    array : array-like, optional
        The input about to be processed: a CuPy array means ``"cuda"`` for ``"auto"``; the
        size (H * W) of any other array is the work size when ``pixels`` is not given.
    pixels : int, optional
        The work size in pixels (e.g. the largest reference of an ``Attributor``).

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
    >>> resolve_backend("auto", pixels=64 * 64)  # too small to pay for the copies
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
        if pixels is None and array is not None:
            shape = getattr(array, "shape", ())
            pixels = int(shape[0]) * int(shape[1]) if len(shape) >= 2 else 0
        if not AUTO_MOVES_HOST_DATA or pixels is None or pixels < AUTO_MIN_PIXELS:
            return "cpu"
        return "cuda" if cuda_status()[0] else "cpu"
    usable, reason = cuda_status()
    if not usable:
        raise BackendUnavailableError(f"backend 'cuda' is not available here: {reason}; {_INSTALL_HINT}")
    return "cuda"
