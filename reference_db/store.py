"""Where a library's data lives: the index, its folder of data files, snapshots, drafts and commits.

Schema 2 (``schema``): the library path is a small index whose ``/references/<name>`` are external
links to one HDF5 file per reference in the folder ``PATH.d``; the calibration data is one more
file there. A data file is written once and never modified: a commit writes the new and changed
data files, fsyncs them and the folder, writes a whole new index to a temporary file, fsyncs it and
renames it onto the library path (the rename is the commit), so its cost is that of what changed
plus the small index. A crash at any instant leaves the old or the new index, and at most some data
files that no index names: garbage, removed by the next writer.

Readers *pin* the folder: a shared ``flock`` on its directory, taken before the index is opened and
held until they close. A writer deletes garbage only when it gets the exclusive ``flock`` without
waiting, so it never deletes a file that a reader's snapshot may still open (with readers present
the garbage waits for a later write). Schema 1 files (one file, references as groups) are read as
they are; the first commit writes them as schema 2 (``Draft.materialize``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import re
from collections.abc import Callable, Iterator

import h5py
import numpy as np

from . import durable, schema, validate

__all__ = ["Draft", "Place", "Snapshot", "Unreadable", "collect_garbage", "commit", "create_index",
           "export_single_file", "folder_of", "open_calibration", "open_group"]

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class Unreadable(Exception):
    """A reference or calibration place that cannot be followed; the message says why."""


@dataclasses.dataclass(frozen=True)
class Place:
    """Where one reference (or the calibration data) is.

    Exactly one of: ``path``, the absolute path of a data file (schema 2); ``v1_name``, the name of
    a group under ``/references`` of a schema 1 snapshot file (``""`` for its calibration groups);
    ``problem``, why the index entry cannot be followed (with ``link``, the entry, and ``entry``,
    its path in the snapshot index: a damaged entry is kept, by name, in the next index).
    """

    path: str | None = None
    v1_name: str | None = None
    problem: str | None = None
    link: object = None
    entry: str | None = None


def folder_of(real: str) -> str:
    """The folder of data files of the library whose index is ``real``."""
    return real + schema.FOLDER_SUFFIX


def _pin(folder: str) -> int | None:
    """Shared flock on ``folder`` (waits for a garbage collection in progress); None without a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _data_place(real: str, link: object, prefix: str, inner: str, entry: str,
                present: set[str] | None = None) -> Place:
    if not isinstance(link, h5py.ExternalLink):
        what = "a soft link" if isinstance(link, h5py.SoftLink) else "not a link to a data file"
        return Place(problem=f"its index entry is {what}", link=link, entry=entry)
    parts = link.filename.split("/")
    if len(parts) != 2 or not parts[0].endswith(schema.FOLDER_SUFFIX) or parts[0] in ("..", ".") \
            or not schema.DATA_FILE_RE.match(parts[1]) or not parts[1].startswith(prefix) or link.path != inner:
        return Place(problem=f"its index entry links to {link.filename}:{link.path}, not to a data file of the "
                             "library's folder", link=link, entry=entry)
    path = os.path.join(os.path.dirname(real), *parts)
    if (parts[1] not in present) if (present is not None and parts[0] == os.path.basename(folder_of(real))) \
            else not os.path.isfile(path):
        return Place(problem=f"its data file {link.filename} is missing (a library is its index and the folder "
                             f"{parts[0]} beside it)", link=link, entry=entry)
    return Place(path=path)


class Snapshot:
    """One committed state of a library, open for reading (``pin``: as a reader, see the module)."""

    def __init__(self, real: str, shown: str, version: str, *, pin: bool, after: Draft | None = None) -> None:
        self.real, self.shown = real, shown
        self.pin_fd: int | None = None
        self.h5: h5py.File | None = None
        if after is not None:  # the state a commit of ``after`` just wrote: no need to read its links back
            self._open_index(version)
            self.created, self.places, self.calibration = after.snapshot.created, dict(after.places), after.calibration
            return
        try:
            if pin:
                self.pin_fd = _pin(folder_of(real))
            self._open_index(version)
            if pin and self.pin_fd is None and self.schema != schema.SINGLE_FILE_VERSION:
                self.pin_fd = _pin(folder_of(real))  # the folder appeared after we looked (an upgrade)
                if self.pin_fd is not None:
                    self.h5.close()
                    self._open_index(version)  # read again, now pinned
            self.created = validate.text(self.h5.attrs.get(schema.ATTR_CREATED, ""))
            self.places, self.calibration = self._read_places()
        except BaseException:
            self.close()
            raise

    def _open_index(self, version: str) -> None:
        self.h5 = validate.open_checked(self.real, self.shown, version)
        self.schema = int(np.asarray(self.h5.attrs[schema.ATTR_SCHEMA_VERSION]).item())

    def _read_places(self) -> tuple[dict[str, Place], Place | None]:
        refs = self.h5[schema.REFERENCES]
        if self.schema == schema.SINGLE_FILE_VERSION:
            places = {name: Place(v1_name=name) for name in refs}
            return places, (Place(v1_name="") if schema.CALIBRATION in self.h5 else None)
        try:
            present = set(os.listdir(folder_of(self.real)))
        except OSError:
            present = set()
        folder = folder_of(self.real)
        own = os.path.basename(folder) + "/"
        places = {}
        for name, (filename, path) in _external_links(refs).items():
            if path == "/" and filename is not None and filename.startswith(own):
                file = filename[len(own):]  # the common case, checked quickly
                if file in present and file.startswith(schema.REFERENCE_FILE_PREFIX) and schema.DATA_FILE_RE.match(file):
                    places[name] = Place(path=f"{folder}/{file}")
                    continue
            link = h5py.ExternalLink(filename, path) if filename is not None else refs.get(name, getlink=True)
            places[name] = _data_place(self.real, link, schema.REFERENCE_FILE_PREFIX, "/",
                                       f"/{schema.REFERENCES}/{name}", present)
        link = self.h5.get(schema.CALIBRATION, getlink=True)
        cal = None if link is None else _data_place(self.real, link, schema.CALIBRATION_FILE_PREFIX,
                                                    "/" + schema.CALIBRATION, "/" + schema.CALIBRATION)
        return places, cal

    def close(self) -> None:
        if self.h5 is not None:
            with contextlib.suppress(Exception):
                self.h5.close()
            self.h5 = None
        if self.pin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pin_fd)
            self.pin_fd = None


@contextlib.contextmanager
def open_group(h5: h5py.File, place: Place) -> Iterator[h5py.HLObject]:
    """The group of a reference at ``place`` (``h5``: the snapshot file, for schema 1 places)."""
    if place.problem:
        raise Unreadable(place.problem)
    if place.v1_name is not None:
        refs = h5[schema.REFERENCES]
        obj = refs.get(place.v1_name)
        if obj is None:
            raise Unreadable(f"it is a dangling {type(refs.get(place.v1_name, getlink=True)).__name__}")
        yield obj
        return
    assert place.path is not None
    with durable.open_h5(place.path, "r") as f:
        yield f


@contextlib.contextmanager
def open_calibration(h5: h5py.File, place: Place | None) -> Iterator[h5py.File | None]:
    """The file holding the ``/calibration`` groups at ``place`` (None: the library has none)."""
    if place is None:
        yield None
    elif place.problem:
        raise Unreadable(place.problem)
    elif place.v1_name is not None:
        yield h5
    else:
        assert place.path is not None
        with durable.open_h5(place.path, "r") as f:
            yield f


class Draft:
    """The writes of one transaction: new data files and the places the next index will name."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.places = dict(snapshot.places)
        self.calibration = snapshot.calibration
        self.created: list[str] = []  # data files written by this draft: removed if it is discarded
        self.changed = False
        self.failed = False
        self._own_calibration: str | None = None

    @property
    def folder(self) -> str:
        return folder_of(self.snapshot.real)

    def _new_file(self, prefix: str, fill: Callable[[int], None] | None = None) -> str:
        """Create a fresh data file (``O_EXCL | O_NOFOLLOW``), optionally written through its fd."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.folder)
        path = os.path.join(self.folder, schema.data_file_name(prefix))
        fd = durable.create_exclusive(path, 0o666)
        self.created.append(path)
        try:
            if fill is not None:
                fill(fd)
        finally:
            os.close(fd)
        return path

    def put_reference(self, name: str, fill: Callable[[h5py.Group], None]) -> None:
        """Write reference ``name`` into a new data file through ``fill(root group)``."""
        path = self._new_file(schema.REFERENCE_FILE_PREFIX)
        with durable.open_h5(path, "w") as f:
            fill(f)
        self.places[name] = Place(path=path)
        self.changed = True

    def remove(self, name: str) -> None:
        del self.places[name]
        self.changed = True

    def rename(self, old: str, new: str) -> None:
        self.places[new] = self.places.pop(old)
        self.changed = True

    @contextlib.contextmanager
    def calibration_file(self) -> Iterator[h5py.File]:
        """This draft's own calibration file, open for writing: a copy of the current one at first use."""
        if self._own_calibration is None:
            current = self.calibration
            if current is not None and current.path is not None:
                path = self._new_file(schema.CALIBRATION_FILE_PREFIX, lambda fd: durable.copy_file(current.path, fd))
            else:
                path = self._new_file(schema.CALIBRATION_FILE_PREFIX)
                with durable.open_h5(path, "w") as f:
                    for group in (schema.CALIBRATION, schema.CALIBRATION_SOURCES):
                        if current is not None and current.v1_name is not None and group in self.snapshot.h5:
                            self.snapshot.h5.copy(self.snapshot.h5[group], f, name=group)
                        else:
                            f.create_group(group)
            self._own_calibration = path
            self.calibration = Place(path=path)
        self.changed = True
        with durable.open_h5(self._own_calibration, "r+") as f:
            yield f

    def materialize(self) -> None:
        """Give every schema 1 place a data file of its own (the upgrade to schema 2)."""
        for name, place in sorted(self.places.items()):
            if place.v1_name is None:
                continue
            refs = self.snapshot.h5[schema.REFERENCES]
            src = refs.get(place.v1_name)
            if not isinstance(src, h5py.Group):  # unreadable: kept by name, as a damaged reference
                self.places[name] = Place(problem="damaged", link=refs.get(place.v1_name, getlink=True),
                                          entry=f"/{schema.REFERENCES}/{place.v1_name}")
                continue
            self.put_reference(name, lambda root, src=src: _copy_group(src, root))
        if self.calibration is not None and self.calibration.v1_name is not None:
            with self.calibration_file():
                pass

    def discard(self) -> None:
        """Remove the data files this draft wrote (no index names them)."""
        for path in self.created:
            durable.remove_quietly(path)
        self.created.clear()


def _copy_group(src: h5py.Group, dst: h5py.Group) -> None:
    """Copy the members and attributes of ``src`` into ``dst`` (HDF5 object copies: exact)."""
    for key in src:
        src.copy(src[key], dst, name=key)
    for key, value in src.attrs.items():
        dst.attrs[key] = value


def _external_links(group: h5py.Group) -> dict[str, tuple[str | None, str | None]]:
    """name -> (file name, object path) of every member of ``group``; (None, None) if not an external link.

    Read through h5py's low-level API: a thousand links in about ten milliseconds.
    """
    kinds: dict[bytes, int] = {}
    group.id.links.iterate(lambda name, info: kinds.__setitem__(name, info.type), info=True)
    out: dict[str, tuple[str | None, str | None]] = {}
    get_val = group.id.links.get_val
    for raw, kind in kinds.items():
        if kind == h5py.h5l.TYPE_EXTERNAL:
            filename, path = get_val(raw)
            out[raw.decode("utf-8", "surrogateescape")] = (filename.decode("utf-8", "surrogateescape"),
                                                           path.decode("utf-8", "surrogateescape"))
        else:
            out[raw.decode("utf-8", "surrogateescape")] = (None, None)
    return out


def _link_target(path: str, real: str) -> str:
    """The external-link file name of data file ``path``, relative to the directory of the index ``real``."""
    folder = folder_of(real)
    if path.startswith(folder + "/"):
        return os.path.basename(folder) + path[len(folder):]
    return os.path.relpath(path, os.path.dirname(real))


def _keep_entry(f: h5py.File, where: str, place: Place, source: h5py.File | None) -> None:
    """Write a damaged entry into the new index as it was: its link, or a copy of its object."""
    if isinstance(place.link, (h5py.ExternalLink, h5py.SoftLink)):
        f[where] = place.link
    elif source is not None and place.entry is not None and source.get(place.entry) is not None:
        source.copy(source[place.entry], f, name=where)
    else:
        f[where] = h5py.SoftLink(f"/damaged{where}")


def _write_index(path: str, real: str, places: dict[str, Place], calibration: Place | None,
                 created: str, version: str, source: h5py.File | None) -> None:
    with durable.open_h5(path, "w") as f:
        f.attrs[schema.ATTR_FORMAT] = schema.FORMAT_MARKER
        f.attrs[schema.ATTR_SCHEMA_VERSION] = np.int64(schema.SCHEMA_VERSION)
        f.attrs[schema.ATTR_CREATED] = created
        f.attrs[schema.ATTR_GANPRINT_VERSION] = version
        refs = f.create_group(schema.REFERENCES)
        lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
        lcpl.set_char_encoding(h5py.h5t.CSET_UTF8)
        for name in sorted(places):
            place = places[name]
            if place.path is not None:  # the low-level call: a thousand links in milliseconds
                refs.id.links.create_external(name.encode("utf-8"), _link_target(place.path, real).encode("utf-8"),
                                              b"/", lcpl=lcpl)
            else:  # a damaged entry keeps its name
                _keep_entry(f, f"/{schema.REFERENCES}/{name}", place, source)
        if calibration is not None and calibration.path is not None:
            rel = _link_target(calibration.path, real)
            for group in (schema.CALIBRATION, schema.CALIBRATION_SOURCES):
                f[group] = h5py.ExternalLink(rel, "/" + group)
        elif calibration is not None and calibration.problem:
            _keep_entry(f, "/" + schema.CALIBRATION, calibration, source)


def _publish(tmp: str, real: str, like: os.stat_result | None, *, new: bool) -> None:
    if like is not None:
        durable.keep_mode_and_owner(tmp, like)
    durable.fsync_path(tmp)
    if new:
        if not durable.publish_new(tmp, real):
            raise FileExistsError(errno.EEXIST, "appeared while it was being created; it was not overwritten", real)
    else:
        durable.replace(tmp, real)
        with contextlib.suppress(OSError):  # committed already; only durability is at stake
            durable.fsync_dir(os.path.dirname(real))


def create_index(real: str, created: str, version: str) -> None:
    """Create the empty library ``real`` (schema 2) and its folder; never overwrites a file."""
    tmp, fd = durable.new_temp(real, 0o666)
    os.close(fd)
    try:
        _write_index(tmp, real, {}, None, created, version, None)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder_of(real))
        _publish(tmp, real, None, new=True)
    finally:
        durable.remove_quietly(tmp)


def commit(draft: Draft, version: str) -> None:
    """Make ``draft`` the library's state: data files durable first, then the new index renamed in.

    The data files and the index get the library's permission bits and owner. On failure nothing
    the index names has changed; the caller discards the draft.
    """
    real = draft.snapshot.real
    draft.materialize()
    like = os.stat(real)
    for path in draft.created:
        durable.keep_mode_and_owner(path, like)
        durable.fsync_path(path)
    if draft.created:
        durable.fsync_dir(draft.folder)
    tmp, fd = durable.new_temp(real, 0o666)
    os.close(fd)
    try:
        _write_index(tmp, real, draft.places, draft.calibration, draft.snapshot.created, version, draft.snapshot.h5)
        _publish(tmp, real, like, new=False)
    except BaseException:
        durable.remove_quietly(tmp)
        raise


_TEMP_RE = re.compile(r"\.tmp-\d+-[0-9a-f]+$")


def _named(state: Snapshot | Draft) -> set[str]:
    return {p.path for p in (*state.places.values(), state.calibration) if p is not None and p.path is not None}


def collect_garbage(snapshot: Snapshot, committed: Draft | None = None) -> int:
    """Remove the data files of ``snapshot``'s folder that its index does not name; returns how many.

    Call only as the writer (holding the lock), with no draft open. With ``committed`` (the draft
    that ``snapshot`` results from) only the files it made garbage are removed, without listing the
    folder; without, the folder is scanned (what a killed writer left). Does nothing while any
    reader pins the folder: the garbage waits for a later scan.
    """
    folder = folder_of(snapshot.real)
    try:
        fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY)
    except OSError:
        return 0
    keep = _named(snapshot)
    removed = 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if committed is not None:
            candidates = (_named(committed.snapshot) | set(committed.created)) - keep
        else:
            with os.scandir(folder) as entries:
                candidates = {e.path for e in entries if schema.DATA_FILE_RE.match(e.name) or _TEMP_RE.search(e.name)}
        for path in sorted(candidates - keep):
            if os.path.dirname(path) == folder:
                durable.remove_quietly(path)
                removed += 1
    except OSError:  # a reader pins the folder (or it cannot be read): the garbage waits
        pass
    finally:
        os.close(fd)
    return removed


def export_single_file(tmp: str, h5: h5py.File, places: dict[str, Place], calibration: Place | None,
                       created: str, version: str) -> None:
    """Write the self-contained schema 1 file ``tmp``: every reference of ``places`` as a group."""
    with durable.open_h5(tmp, "w") as f:
        f.attrs[schema.ATTR_FORMAT] = schema.FORMAT_MARKER
        f.attrs[schema.ATTR_SCHEMA_VERSION] = np.int64(schema.SINGLE_FILE_VERSION)
        f.attrs[schema.ATTR_CREATED] = created
        f.attrs[schema.ATTR_GANPRINT_VERSION] = version
        refs = f.create_group(schema.REFERENCES)
        for name in sorted(places):
            with open_group(h5, places[name]) as src:
                _copy_group(src, refs.create_group(name))
        with open_calibration(h5, calibration) as cal:
            for group in (schema.CALIBRATION, schema.CALIBRATION_SOURCES):
                if cal is not None and group in cal:
                    cal.copy(cal[group], f, name=group)
