"""JPEG completeness: every scan of a JPEG carries coded data for every block of its frame.

libjpeg (behind both Pillow and imagecodecs) meets a marker where a scan's data should go on (a
file cut short and padded with an end-of-image marker, a progressive file cut inside any scan) with
a warning, "Corrupt JPEG data: premature end of data segment", fills the missing coefficients with
zeros and returns an image whose lower part is flat grey (sequential) or blurred (progressive).
Neither library reports the warning. So before a pixel is decoded, :func:`check_jpeg_scans` walks
the file: its markers, then the Huffman-coded data of every scan, block by block, consuming bits
exactly as libjpeg's entropy decoder does (:mod:`kernels.jpeg_entropy_cpu`), without computing
a single coefficient. Where libjpeg would warn, this raises:

- a scan runs into a marker or the end of the file before its last block (truncated);
- a restart marker is missing or out of sequence (corrupt);
- a Huffman code matches no table entry, or an AC refinement codes a size other than 1 (corrupt);
- a progressive file's scans leave a coefficient short of full precision, or refine what was
  never sent (truncated: scans are missing), or a sequential file leaves a component without a
  scan;
- no end-of-image marker follows the last scan.

Only the first image of a file is walked (what is decoded: an MPO's first picture; data after its
end-of-image marker, such as camera trailers, is ignored). Arithmetic-coded, lossless and
hierarchical frames are not walked (the markers still are): their data cannot be checked this way.

The walk costs less than decoding: 0.025 s of CPU for a 10-megapixel camera JPEG (Pillow decodes it in 0.04 s). Huffman tables a
file does not define are libjpeg's defaults (ITU-T T.81 K.3, as libjpeg-turbo assumes for motion
JPEG frames), read from a JPEG that Pillow writes once.
"""

from __future__ import annotations

import functools
import io

import numpy as np

import kernels.jpeg_entropy_cpu as entropy

__all__ = ["JpegDataError", "check_jpeg_scans"]

_SOF_SEQUENTIAL = frozenset({0xC0, 0xC1})  # baseline and extended sequential, Huffman
_SOF_PROGRESSIVE = 0xC2
_SOF_UNWALKED = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_DHT, _SOS, _DRI, _EOI, _SOI = 0xC4, 0xDA, 0xDD, 0xD9, 0xD8

_MAX_BLOCKS_IN_MCU = 10  # libjpeg's D_MAX_BLOCKS_IN_MCU


class JpegDataError(ValueError):
    """A JPEG's structure or coded data is incomplete or corrupt (the message says where)."""


# ---- markers (Python) ------------------------------------------------------------------------

class _Tables:
    """Huffman tables as the walker reads them (``tab``, see ``entropy.MAXCODE``...), and which are valid."""

    def __init__(self) -> None:
        self.tab = np.zeros((5, 8, 1 << entropy.LOOKAHEAD), np.int64)
        self.tab[entropy.MAXCODE] = -1
        self.valid = [False] * 8

    def define(self, t: int, counts: bytes, values: bytes) -> None:
        """Derive table ``t`` from its 16 code counts and its symbols (T.81 C.2, F.15)."""
        tab = self.tab
        tab[:, t] = 0
        tab[entropy.MAXCODE, t] = -1
        code, k, valid = 0, 0, True
        for length in range(1, 17):
            n = counts[length - 1]
            if n:
                tab[entropy.VALPTR, t, length] = k
                tab[entropy.MINCODE, t, length] = code
                if length <= entropy.LOOKAHEAD:
                    for i in range(n):  # every lookahead window starting with this code
                        first = (code + i) << (entropy.LOOKAHEAD - length)
                        tab[entropy.LOOK, t, first : first + (1 << (entropy.LOOKAHEAD - length))] = length << 8 | values[k + i]
                code += n
                k += n
                tab[entropy.MAXCODE, t, length] = code - 1
                if code > (1 << length):
                    valid = False  # more codes than fit: libjpeg's "Bogus Huffman table definition"
            code <<= 1
        tab[entropy.HUFFVAL, t, : len(values)] = np.frombuffer(values, np.uint8)
        if t < 4 and any(v > 15 for v in values):
            valid = False  # a DC size above 15 bits
        self.valid[t] = valid

    def copy(self) -> _Tables:
        out = _Tables()
        out.tab, out.valid = self.tab.copy(), list(self.valid)
        return out


def _parse_dht(seg: bytes, tables: _Tables) -> None:
    pos = 0
    while pos < len(seg):
        if pos + 17 > len(seg):
            raise JpegDataError("corrupt JPEG: Huffman table segment cut short")
        tc, th = seg[pos] >> 4, seg[pos] & 15
        counts = seg[pos + 1 : pos + 17]
        total = sum(counts)
        if tc > 1 or th > 3 or total > 256 or pos + 17 + total > len(seg):
            raise JpegDataError("corrupt JPEG: bad Huffman table definition")
        tables.define(4 * tc + th, counts, seg[pos + 17 : pos + 17 + total])
        pos += 17 + total


@functools.lru_cache(maxsize=1)
def _default_tables() -> _Tables:
    """libjpeg's standard Huffman tables (T.81 K.3), read from a small JPEG Pillow writes."""
    from PIL import Image  # noqa: PLC0415

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=75, optimize=False)
    tables = _Tables()
    data = buf.getvalue()
    pos = 2
    while data[pos + 1] != _SOS:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == _DHT:
            _parse_dht(data[pos + 4 : pos + 2 + length], tables)
        pos += 2 + length
    assert all(tables.valid[t] for t in (0, 1, 4, 5))
    return tables


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Frame:
    """A frame header (SOFn): precision, size, and per component (id, h, v)."""

    def __init__(self, marker: int, seg: bytes) -> None:
        if len(seg) < 6:
            raise JpegDataError("corrupt JPEG: frame header cut short")
        self.marker = marker
        self.precision = seg[0]
        self.height = int.from_bytes(seg[1:3], "big")
        self.width = int.from_bytes(seg[3:5], "big")
        n = seg[5]
        if n < 1 or len(seg) < 6 + 3 * n:
            raise JpegDataError("corrupt JPEG: bad frame header")
        self.ids = [seg[6 + 3 * i] for i in range(n)]
        self.h = [seg[7 + 3 * i] >> 4 for i in range(n)]
        self.v = [seg[7 + 3 * i] & 15 for i in range(n)]
        if len(set(self.ids)) != n or not all(1 <= f <= 4 for f in self.h + self.v):
            raise JpegDataError("corrupt JPEG: bad components in the frame header")
        if self.height == 0:
            raise JpegDataError("JPEG whose height is given after the first scan (DNL) is not supported")
        if self.width == 0:
            raise JpegDataError("corrupt JPEG: frame of width 0")
        hmax, vmax = max(self.h), max(self.v)
        self.mcux = _ceil_div(self.width, 8 * hmax)
        self.mcuy = _ceil_div(self.height, 8 * vmax)
        # blocks per row and block rows of each component (T.81 A.1.1: a component is
        # ceil(X h / hmax) x ceil(Y v / vmax) samples), and the padded grid of interleaved scans
        self.bw = [_ceil_div(_ceil_div(self.width * h, hmax), 8) for h in self.h]
        self.bh = [_ceil_div(_ceil_div(self.height * v, vmax), 8) for v in self.v]
        self.padw = [self.mcux * h for h in self.h]
        self.padh = [self.mcuy * v for v in self.v]
        self.walked = marker in _SOF_SEQUENTIAL or marker == _SOF_PROGRESSIVE
        self.progressive = marker == _SOF_PROGRESSIVE
        self.offsets = np.cumsum([0] + [w * h for w, h in zip(self.padw, self.padh)])
        self.nz = np.zeros(int(self.offsets[-1]) if self.progressive else 1, np.uint64)
        # progressive: successive-approximation bit of each coefficient, -1 before its first scan
        self.al = np.full((n, 64), -1, np.int64)
        self.scanned = [False] * n


def _scan(seg: bytes, frame: _Frame, tables: _Tables, ri: int, data: np.ndarray, pos: int, number: int) -> int:
    """Check and walk scan ``number`` (start of scan segment ``seg``, coded data from ``pos``); returns
    the position of the marker after it."""
    ns = seg[0] if seg else 0
    if not 1 <= ns <= 4 or len(seg) != 4 + 2 * ns:
        raise JpegDataError(f"corrupt JPEG: bad header of scan {number}")
    ss, se, ah, al = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns] >> 4, seg[3 + 2 * ns] & 15
    comps = []
    for i in range(ns):
        cid, td, ta = seg[1 + 2 * i], seg[2 + 2 * i] >> 4, seg[2 + 2 * i] & 15
        if cid not in frame.ids or td > 3 or ta > 3:
            raise JpegDataError(f"corrupt JPEG: scan {number} names an unknown component or table")
        comps.append((frame.ids.index(cid), td, 4 + ta))
    if len({c for c, _, _ in comps}) != ns:
        raise JpegDataError(f"corrupt JPEG: scan {number} names a component twice")
    if ns > 1 and sum(frame.h[c] * frame.v[c] for c, _, _ in comps) > _MAX_BLOCKS_IN_MCU:
        raise JpegDataError(f"corrupt JPEG: scan {number} has more than {_MAX_BLOCKS_IN_MCU} blocks per MCU")
    if frame.progressive:
        if (ss == 0) != (se == 0) or se < ss or se > 63 or (ss > 0 and ns > 1) or ah > 13 or al > 13:
            raise JpegDataError(f"corrupt JPEG: bad progression parameters in scan {number}")
        kind = (entropy.DC_REFINE if ah else entropy.DC_FIRST) if ss == 0 else (entropy.AC_REFINE if ah else entropy.AC_FIRST)
        for c, _, _ in comps:
            band = frame.al[c, ss : se + 1]
            if ss > 0 and frame.al[c, 0] < 0:
                raise JpegDataError(f"corrupt JPEG: scan {number} codes AC coefficients before their DC")
            if (ah == 0 and (band != -1).any()) or (ah and (band != ah).any()) or (ah and al != ah - 1):
                raise JpegDataError(f"corrupt JPEG: inconsistent progression in scan {number}")
            band[:] = al
    else:
        kind = entropy.SEQUENTIAL
        for c, _, _ in comps:
            if frame.scanned[c]:
                raise JpegDataError(f"corrupt JPEG: scan {number} codes a component a second time")
    needed = [td for _, td, _ in comps] if kind in (entropy.SEQUENTIAL, entropy.DC_FIRST) else []
    needed += [ta for _, _, ta in comps] if kind in (entropy.SEQUENTIAL, entropy.AC_FIRST, entropy.AC_REFINE) else []
    if not all(tables.valid[t] for t in needed):
        raise JpegDataError(f"corrupt JPEG: scan {number} uses a missing or bad Huffman table")
    for c, _, _ in comps:
        frame.scanned[c] = True
    comp = np.array([[frame.h[c] if ns > 1 else 1, frame.v[c] if ns > 1 else 1, frame.bw[c], frame.bh[c],
                      frame.padw[c], td, ta, frame.offsets[c]] for c, td, ta in comps], np.int64)
    result, where, done = entropy.walk_scan(data, pos, kind, comp, frame.mcux, frame.mcuy, ss, se, ri, tables.tab, frame.nz)
    total = frame.mcux * frame.mcuy if ns > 1 else frame.bw[comps[0][0]] * frame.bh[comps[0][0]]
    if result == entropy.OUT_OF_DATA and done == total:
        raise JpegDataError("truncated JPEG: no end-of-image marker after the last scan")
    if result == entropy.OUT_OF_DATA:
        raise JpegDataError(f"truncated JPEG: scan {number} runs out of data at byte {where}, after {done} of "
                            f"its {total} MCUs")
    if result == entropy.BAD_CODE:
        raise JpegDataError(f"corrupt JPEG: invalid Huffman code in scan {number} at byte {where}")
    if result == entropy.BAD_RESTART:
        raise JpegDataError(f"corrupt JPEG: restart marker missing or out of order in scan {number} at byte {where}")
    return int(where)


def check_jpeg_scans(data: bytes, *, tables: bytes | None = None) -> int:
    """Walk a JPEG stream from its start-of-image to its end-of-image marker; raise if incomplete.

    Parameters
    ----------
    data : bytes
        The file's bytes (or one JPEG stream, e.g. a strip of a JPEG-compressed TIFF).
    tables : bytes, optional
        An abbreviated table stream (SOI, DQT/DHT, EOI; a TIFF's JPEGTables) read first.

    Returns
    -------
    end : int
        Position just after the end-of-image marker (what follows, e.g. a camera trailer, is not
        looked at).

    Raises
    ------
    JpegDataError
        A one-line problem: "truncated JPEG: ..." or "corrupt JPEG: ..." (see the module doc).

    Examples
    --------
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (40, 24)).save(buf, "JPEG")
    >>> data = buf.getvalue()
    >>> check_jpeg_scans(data) == len(data)
    True
    >>> check_jpeg_scans(data[: len(data) // 2] + b"\\xff\\xd9")
    Traceback (most recent call last):
    ...
    fingerprint.io.jpeg_scan.JpegDataError: truncated JPEG: ...
    """
    state = _default_tables().copy()
    if tables:
        _walk_markers(bytes(tables), state, tables_only=True)
    return _walk_markers(bytes(data), state, tables_only=False)


def _walk_markers(raw: bytes, tables: _Tables, *, tables_only: bool) -> int:
    """Parse the marker segments of ``raw``, walking every scan; the position after its EOI."""
    data = np.frombuffer(raw, np.uint8)
    n = len(raw)
    if n < 4 or raw[0] != 0xFF or raw[1] != _SOI:
        raise JpegDataError("corrupt JPEG: no start-of-image marker")
    pos, frame, ri, scans = 2, None, 0, 0
    while True:
        pos = raw.find(b"\xff", pos)  # stray bytes between segments: libjpeg skips them too
        while 0 <= pos < n and raw[pos] == 0xFF:
            pos += 1
        if pos < 0 or pos >= n:
            raise JpegDataError("truncated JPEG: the file ends before the end-of-image marker")
        marker = raw[pos]
        pos += 1
        if marker == _EOI:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # standalone markers
        if marker == _SOI:
            raise JpegDataError("corrupt JPEG: a second start-of-image marker")
        if pos + 2 > n:
            raise JpegDataError("truncated JPEG: the file ends inside a marker segment")
        length = raw[pos] << 8 | raw[pos + 1]
        if length < 2:
            raise JpegDataError(f"corrupt JPEG: marker segment of length {length} at byte {pos}")
        if pos + length > n:
            raise JpegDataError(f"truncated JPEG: a marker segment at byte {pos} runs past the end of the file")
        seg = raw[pos + 2 : pos + length]
        end = pos + length
        if marker == _DHT:
            _parse_dht(seg, tables)
        elif marker == _DRI:
            if len(seg) < 2:
                raise JpegDataError("corrupt JPEG: bad restart interval segment")
            ri = int.from_bytes(seg[:2], "big")
        elif marker in _SOF_SEQUENTIAL or marker == _SOF_PROGRESSIVE or marker in _SOF_UNWALKED:
            if frame is not None:
                raise JpegDataError("corrupt JPEG: more than one frame (hierarchical JPEG is not supported)")
            frame = _Frame(marker, seg)
        elif marker == _SOS:
            if frame is None or tables_only:
                raise JpegDataError("corrupt JPEG: a scan before the frame header")
            scans += 1
            if frame.walked:
                end = _scan(seg, frame, tables, ri, data, end, scans)
            else:
                end = int(entropy.next_marker(data, end))
                if end < 0:
                    raise JpegDataError("truncated JPEG: the file ends inside a scan")
        pos = end
    if tables_only:
        return pos
    if frame is None or scans == 0:
        raise JpegDataError("corrupt JPEG: no image data (no frame or no scan)")
    if frame.walked:
        if frame.progressive and (frame.al != 0).any():
            comp = int(np.nonzero((frame.al != 0).any(axis=1))[0][0])
            raise JpegDataError(f"truncated JPEG: progressive scans missing (component {comp + 1} "
                                "never reaches full precision)")
        if not all(frame.scanned):
            raise JpegDataError("truncated JPEG: a component has no scan")
    return pos
