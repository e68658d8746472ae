"""Errors raised by the kernels' input checks and backend choice, and by every layer above.

Defined here, at the lowest layer, and re-exported by ``fingerprint.errors`` (as it re-exports
``reference_db.errors``): so the CPU residual (``fingerprint.residual``) and the GPU residual
(``kernels.residual_gpu``), which share ``kernels.spec.check_image``, raise the very same
``InvalidImageError`` and ``except fingerprint.errors.InvalidImageError`` catches both, while
the layers stay one-way (``fingerprint`` is above ``kernels``, never loaded from here). Each
error also subclasses the matching built-in (STYLE.md §4), so ``except ValueError`` /
``except RuntimeError`` work too.
"""

from __future__ import annotations

import os

__all__ = ["BackendUnavailableError", "GanprintError", "InvalidImageError", "ShapeMismatchError"]


class GanprintError(Exception):
    """Base class of ganprint's own errors (not about the library file)."""


class _FileError(GanprintError):
    """Base of the errors that may concern one file: ``.path`` and ``.problem``.

    ``Error(problem, path=p)`` reads ``"<p>: <problem>"``; without ``path`` (an array in memory,
    or a message that names its subject itself) it reads ``problem``. Either way the message is
    one line: carriage returns and new lines are escaped as ``\\r`` and ``\\n``.
    """

    def __init__(self, problem: object = "", *, path: str | os.PathLike[str] | None = None):
        self.path: str | None = None if path is None else os.fspath(path)
        self.problem: str = _one_line(str(problem))
        super().__init__(self.problem if self.path is None else _one_line(f"{self.path}: {self.problem}"))

    def at(self, path: str | os.PathLike[str]) -> _FileError:
        """The same error (same class, same problem) about the file ``path``."""
        return type(self)(self.problem, path=path)

    def __reduce__(self):  # pickled with its path (errors travel back from Dask workers)
        return (_rebuild, (type(self), self.problem, self.path))


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _rebuild(cls: type[_FileError], problem: str, path: str | None) -> _FileError:
    return cls(problem, path=path)


class InvalidImageError(_FileError, ValueError):
    """An image file or array ganprint cannot use: unreadable, truncated, too large, too small."""


class ShapeMismatchError(_FileError, ValueError):
    """Arrays whose shapes must agree do not (residual vs fingerprint, images of one build)."""


class BackendUnavailableError(GanprintError, RuntimeError):
    """A compute backend was asked for but cannot run here (no CuPy, no CUDA device)."""
