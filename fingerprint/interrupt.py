"""Ctrl-C that cannot be lost, cannot cut a commit in two, and cannot end in a traceback.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Three things go wrong
with that, and the CLI's SIGINT handler (:func:`install`) prevents each:

- Raised inside a finalizer, a weakref callback (h5py closes files in those) or a ctypes callback
  (Numba's compiler and cache), the exception is printed as "Exception ignored" and the command
  goes on. So the handler sets a flag and does not raise while such code is on the stack, and
  long loops (building, attributing) call :func:`check` between images, so an interrupt always
  stops the command before it writes.
- Raised while a library commits (copy, fsync, rename), it would leave the outcome to chance. So a
  commit runs inside :func:`deferred`: a SIGINT there is only recorded; the commit completes, the
  block records what it wrote (:func:`written`), and ``KeyboardInterrupt`` is raised right after
  it. The CLI then says that the library was written (exit 130); an interrupt before the commit
  leaves nothing written (exit 130).
- Pressed again while the first ``KeyboardInterrupt`` unwinds (three Ctrl-C 1 ms apart), Python
  would raise a second one inside the clean-up code or after the command returned, and print a
  traceback. So further SIGINTs within :data:`GRACE_S` seconds of the one that raised are only
  recorded; a later one raises again, so that a command stuck after a swallowed interrupt can
  still be stopped. Once the command has returned, :func:`settle` ignores SIGINT: Python restores
  the default action while it shuts down, and a repeat arriving then would kill the process
  without its exit code.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

__all__ = ["GRACE_S", "check", "deferred", "install", "interrupted", "settle", "written"]

#: Seconds after a SIGINT raised ``KeyboardInterrupt`` during which further SIGINTs only set the flag.
GRACE_S: float = 2.0

_interrupted = threading.Event()
_state = {"deferred": 0, "raised_at": None}
_written: list[str] = []


#: Code where a ``KeyboardInterrupt`` would be swallowed and printed as "Exception ignored ...":
#: ctypes callbacks of Numba's compiler and cache (llvmlite), h5py's weakref finalizers. A SIGINT
#: landing there only sets the flag; the next :func:`check` of the loop raises it.
_SWALLOWING_CODE = ("/numba/", "/llvmlite/", "/h5py/", "/weakref.py")


def _in_swallowing_code(frame) -> bool:
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if any(part in name for part in _SWALLOWING_CODE):
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    _interrupted.set()
    if _state["deferred"]:
        return  # a commit is running: it completes, and deferred() raises after it
    if _in_swallowing_code(frame):
        return  # raising here would be printed and lost: the loop's check() raises instead
    raised_at = _state["raised_at"]
    if raised_at is not None and time.monotonic() - raised_at < GRACE_S:
        return  # the first KeyboardInterrupt is still unwinding
    _state["raised_at"] = time.monotonic()
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT through the flag (main thread only; the CLI calls this at the start of a command)."""
    if threading.current_thread() is threading.main_thread():
        _interrupted.clear()
        _state.update(deferred=0, raised_at=None)
        _written.clear()
        signal.signal(signal.SIGINT, _handler)


def settle() -> None:
    """Ignore SIGINT from now on: the command has ended and the process is about to exit (the
    console script calls this after :func:`~fingerprint.cli.main` has its exit code)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupted() -> bool:
    """Whether a SIGINT arrived since :func:`install`."""
    return _interrupted.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived, even one that was swallowed."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


def written() -> list[str]:
    """What :func:`deferred` blocks completed since :func:`install` (e.g. "reference 'camA' ...")."""
    return list(_written)


@contextlib.contextmanager
def deferred(what: str) -> Iterator[None]:
    """Run the body (a commit) with SIGINT held back; ``what`` names what it writes.

    A SIGINT that arrives before the block raises at once (:func:`check`: nothing is written). One
    that arrives inside it is recorded; when the body completes, ``what`` is recorded as written
    and ``KeyboardInterrupt`` is raised; when the body fails, its exception propagates (nothing
    written). Only the main thread's signal handler defers; other threads run the body unchanged.
    """
    check()
    _state["deferred"] += 1
    try:
        yield
        _written.append(what)
    finally:
        _state["deferred"] -= 1
    check()
