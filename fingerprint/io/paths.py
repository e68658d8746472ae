"""Which files to read: files, folders and glob patterns expanded into a list of image paths.

Two expansions:

- :func:`collect_image_paths` (the library's default): folders not recursive, image files chosen
  by extension;
- :func:`find_images` (what the command line uses): folders searched recursively unless asked not
  to, files chosen by their **content** (the first bytes of JPEG, PNG, TIFF, BMP, WebP) or their
  extension, and every file left out reported with the reason, so that nothing on a disk is
  passed over without a word.
"""

from __future__ import annotations

import glob
import os
import pathlib
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from fingerprint.errors import InvalidImageError

__all__ = ["IMAGE_EXTENSIONS", "ImageSearch", "collect_image_paths", "find_images", "is_image_name", "sniff_format"]

#: File name extensions (lower case) that :func:`collect_image_paths` treats as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
)

_GLOB_MAGIC = re.compile(r"[*?[]")


def is_image_name(path: pathlib.Path) -> bool:
    """True for a name with an extension of :data:`IMAGE_EXTENSIONS` that is not hidden (``.x``)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _sort_key(path: pathlib.Path) -> str:
    return os.fspath(path)


def collect_image_paths(items: Iterable[str | os.PathLike[str]]) -> list[pathlib.Path]:
    """Expand files, folders and glob patterns into a list of image files.

    Parameters
    ----------
    items : iterable of str or os.PathLike
        Each one is
        - an existing file: kept as it is, whatever its extension (the decoder decides);
        - an existing folder: its image files, **not recursive**, sorted by name;
        - otherwise a glob pattern (``*``, ``?``, ``[...]``; ``**`` matches sub-folders, so
          ``"photos/**/*.JPG"`` is the recursive form): the matching image files, sorted.
        Image files are those with an extension in :data:`IMAGE_EXTENSIONS`
        (case-insensitive); hidden files (name starting with ``.``, e.g. macOS ``._x.jpg``) are
        skipped in folders and glob matches.

    Returns
    -------
    paths : list of pathlib.Path
        In the order of ``items``, each item's matches sorted; a file reached twice (same
        resolved path) is kept only where it first appears.

    Raises
    ------
    InvalidImageError
        An item that matches nothing (``.path`` is the item): ``"<item>: no such file or
        folder"``, ``"<item>: no images in folder"`` or ``"<item>: no image files match this
        pattern"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.JPG", "a.png", "notes.txt"):
    ...     _ = (d / name).write_bytes(b"x")
    >>> [p.name for p in collect_image_paths([d])]
    ['a.png', 'b.JPG']
    """
    if isinstance(items, (str, bytes, os.PathLike)):
        raise TypeError("collect_image_paths expects a list of paths, not a single path")
    out: list[pathlib.Path] = []
    seen: set[str] = set()
    for item in items:
        text = os.fspath(item)
        path = pathlib.Path(text)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and is_image_name(p)), key=_sort_key
            )
            if not found:
                raise InvalidImageError("no images in folder", path=path)
        elif path.exists():
            raise InvalidImageError("not a regular file or folder", path=path)
        elif _GLOB_MAGIC.search(text):
            found = sorted(
                (
                    pathlib.Path(m)
                    for m in glob.glob(text, recursive=True)
                    if os.path.isfile(m) and is_image_name(pathlib.Path(m))
                ),
                key=_sort_key,
            )
            if not found:
                raise InvalidImageError("no image files match this pattern", path=text)
        else:
            raise InvalidImageError("no such file or folder", path=text)
        for p in found:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


# --- by content ---------------------------------------------------------------------------------
_SNIFF_BYTES = 32
NOT_SEARCHED = "folder not searched: --no-recursive"
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})  # BITMAPCOREHEADER ... BITMAPV5HEADER


def sniff_format(head: bytes) -> str | None:
    """The image format whose signature starts ``head`` (a file's first bytes), else None.

    Signatures: JPEG ``FF D8 FF``; PNG ``89 'PNG' 0D 0A 1A 0A``; TIFF ``'II*\\0'`` / ``'MM\\0*'``
    (BigTIFF ``+`` for ``*``); WebP ``'RIFF' size 'WEBP'``; BMP ``'BM'`` followed, at byte 14, by a
    known DIB header size (12 to 124), so a text that starts with "BM" is not taken for one.

    >>> sniff_format(b"\\xff\\xd8\\xff\\xe0" + bytes(12)), sniff_format(b"hello"), sniff_format(b"")
    ('JPEG', None, None)
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    return None


@dataclass
class ImageSearch:
    """What :func:`find_images` found.

    Attributes
    ----------
    paths : list of pathlib.Path
        Files to decode, in order (each item's files sorted by path), each file once.
    skipped : list of (pathlib.Path, str)
        Files and folders met inside folders or glob matches and left out, with the reason
        ("not an image: ...", "hidden file, not an image: ...", "folder not searched:
        --no-recursive", "link to a folder, not followed", "not a regular file", "cannot read
        (...)").
    """

    paths: list[pathlib.Path] = field(default_factory=list)
    skipped: list[tuple[pathlib.Path, str]] = field(default_factory=list)


def _triage(path: pathlib.Path) -> str | None:
    """None if ``path`` (met in a folder or a glob match) should be decoded, else why it is left out.

    Kept: image content, or an image extension (a damaged ``.jpg`` is then reported by the
    decoder, not skipped). A hidden file (``.name``, e.g. macOS ``._x.jpg``) is kept only for its content.
    """
    try:
        st = path.stat()
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if sniff_format(head) is not None:
        return None
    hidden = path.name.startswith(".")
    if path.suffix.lower() in IMAGE_EXTENSIONS and not hidden:
        return None
    what = "empty file" if not head else "content is not JPEG, PNG, TIFF, BMP or WebP"
    return f"hidden file, not an image: {what}" if hidden else f"not an image: {what}"


def _walk(folder: pathlib.Path, recursive: bool, found: ImageSearch) -> list[pathlib.Path]:
    """Files of ``folder`` to decode, sorted by path; the rest goes to ``found.skipped``."""
    keep: list[pathlib.Path] = []
    left: list[tuple[pathlib.Path, str]] = []

    def visit(d: pathlib.Path) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as err:
            left.append((d, f"cannot read folder ({err.strerror or err})"))
            return
        for e in entries:
            p = d / e.name
            try:
                is_dir = e.is_dir(follow_symlinks=False)
                is_link = e.is_symlink()
            except OSError as err:
                left.append((p, f"cannot read ({err.strerror or err})"))
                continue
            if is_dir:
                if recursive:
                    visit(p)
                else:
                    left.append((p, NOT_SEARCHED))
            elif is_link and p.is_dir():
                left.append((p, "link to a folder, not followed"))
            else:
                why = _triage(p)
                if why is None:
                    keep.append(p)
                else:
                    left.append((p, why))

    visit(folder)
    found.skipped.extend(sorted(left, key=lambda pr: _sort_key(pr[0])))
    return sorted(keep, key=_sort_key)


def find_images(items: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> ImageSearch:
    """Expand files, folders and glob patterns into the files to decode, saying what was left out.

    Parameters
    ----------
    items : iterable of str or os.PathLike
        Each one is
        - an existing file: kept, whatever its name or content (the decoder decides);
        - an existing folder: every file in it and, with ``recursive`` (default), in its
          sub-folders (links to folders are not followed), kept when its first bytes are those
          of a JPEG, PNG, TIFF, BMP or WebP file (:func:`sniff_format`; so ``.jfif`` files and
          files without an extension count) or its extension is one of :data:`IMAGE_EXTENSIONS`;
        - otherwise a glob pattern (``**`` matches sub-folders): the matching files, kept by the
          same rule.
    recursive : bool, optional
        Search sub-folders of folders (default True); without it they are reported as skipped.

    Returns
    -------
    ImageSearch
        ``paths`` in the order of ``items`` (each item's files sorted by path), a file reached
        twice (same resolved path) only where it first appears; ``skipped`` every file or folder
        left out, with the reason.

    Raises
    ------
    InvalidImageError
        An item that gives nothing to decode (``.path`` is the item): ``"no such file or folder"``,
        ``"no images in folder"`` (with how many files were skipped), ``"no image files match
        this pattern"``, ``"not a regular file or folder"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "case" / "cam1").mkdir(parents=True)
    >>> _ = (d / "case" / "cam1" / "IMG_0001").write_bytes(b"\\xff\\xd8\\xff\\xe0" + bytes(60))
    >>> _ = (d / "case" / "notes.txt").write_text("seized 2024-05-01")
    >>> found = find_images([d / "case"])
    >>> [p.name for p in found.paths], [(p.name, why) for p, why in found.skipped]
    (['IMG_0001'], [('notes.txt', 'not an image: content is not JPEG, PNG, TIFF, BMP or WebP')])
    """
    if isinstance(items, (str, bytes, os.PathLike)):
        raise TypeError("find_images expects a list of paths, not a single path")
    found = ImageSearch()
    seen: set[str] = set()
    for item in items:
        text = os.fspath(item)
        path = pathlib.Path(text)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            before = len(found.skipped)
            files = _walk(path, recursive, found)
            if not files:
                left = [why for _, why in found.skipped[before:]]
                del found.skipped[before:]
                n_dirs = left.count(NOT_SEARCHED)
                parts = [f"{len(left) - n_dirs} other file(s) left out, not images"] if len(left) > n_dirs else []
                parts += [f"{n_dirs} sub-folder(s) not searched (--no-recursive)"] if n_dirs else []
                raise InvalidImageError("; ".join(["no images in folder", *parts]), path=path)
        elif path.exists():
            raise InvalidImageError("not a regular file or folder", path=path)
        elif _GLOB_MAGIC.search(text):
            files = []
            for m in sorted(glob.glob(text, recursive=True)):
                p = pathlib.Path(m)
                if p.is_dir():
                    continue
                why = _triage(p)
                if why is None:
                    files.append(p)
                else:
                    found.skipped.append((p, why))
            if not files:
                raise InvalidImageError("no image files match this pattern", path=text)
        else:
            raise InvalidImageError("no such file or folder", path=text)
        for p in files:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                found.paths.append(p)
    return found
