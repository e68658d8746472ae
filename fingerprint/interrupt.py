"""Ctrl-C that cannot be lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; when that is inside a
finalizer or a weakref callback, the exception is printed as "ignored" and the command goes on.
The CLI installs a SIGINT handler that also sets a flag, and long loops (building, attributing)
call :func:`check` between images, so an interrupt always stops the command before it writes.
"""

from __future__ import annotations

import signal
import threading

_interrupted = threading.Event()


def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
    _interrupted.set()
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT through the flag (main thread only; the CLI calls this)."""
    if threading.current_thread() is threading.main_thread():
        _interrupted.clear()
        signal.signal(signal.SIGINT, _handler)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived, even one that was swallowed."""
    if _interrupted.is_set():
        raise KeyboardInterrupt
