"""The JPEG entropy walker: a scan's Huffman-coded bits consumed block by block, as libjpeg does.

A Numba loop (array in, status out, no I/O), used by ``fingerprint.io.jpeg_scan``, which parses
the file's markers and tables. :func:`walk_scan` reads one scan of coded
data (ITU-T T.81 F.2.2 for sequential scans; G.1.2 for progressive ones: DC first and refinement,
AC first with end-of-band runs, AC refinement with its correction bits) and says whether every
block of it is there, without computing a coefficient. It mirrors libjpeg-turbo's ``decode_mcu``
(jdhuff.c) and ``decode_mcu_{DC,AC}_{first,refine}`` (jdphuff.c) bit for bit: where libjpeg would
run into a marker and substitute zeros ("premature end of data segment"), the walk stops and says
so. Progressive AC refinement needs to know which coefficients earlier scans made nonzero: one
64-bit mask per block (``nz``, zig-zag order), which the AC scans update.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels import config

__all__ = ["AC_FIRST", "AC_REFINE", "BAD_CODE", "BAD_RESTART", "DC_FIRST", "DC_REFINE", "HUFFVAL", "LOOK",
           "LOOKAHEAD", "MAXCODE", "MINCODE", "OK", "OUT_OF_DATA", "SEQUENTIAL", "VALPTR", "next_marker",
           "walk_scan"]

# scan kinds of the entropy walker
SEQUENTIAL, DC_FIRST, DC_REFINE, AC_FIRST, AC_REFINE = 0, 1, 2, 3, 4
# walker results
OK, OUT_OF_DATA, BAD_CODE, BAD_RESTART = 0, 1, 2, 3

_JIT = dict(cache=config.CACHE, nogil=True)
# The walker allocates nothing, so Numba's reference counting can be left out of it: with it, every
# inlined helper call increments and decrements the counts of its array arguments (atomic
# operations), which made a bit read 25x slower (10 ns instead of 0.4). ``_nrt`` is Numba's own
# switch (numba.core.cpu.CPUTargetOptions); without it the walker is merely slower.
_NO_REFCOUNTS = {"_nrt": False} if hasattr(getattr(numba.core, "cpu", None), "CPUTargetOptions") and hasattr(
    numba.core.cpu.CPUTargetOptions, "_nrt") else {}


# Huffman tables, packed for the walker as ``tab[field, table, i]`` (int64), table ``4 * class + id``
# (class 0 DC, 1 AC); fields per T.81 F.2.2.3 plus a 10-bit lookahead table (libjpeg's HUFF_LOOKAHEAD):
MAXCODE, VALPTR, MINCODE, HUFFVAL, LOOK = range(5)  # LOOK: code length << 8 | symbol, 0: longer code
LOOKAHEAD = 10
_LOOK_MASK = (1 << LOOKAHEAD) - 1


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def _fill(data, p, buf, nb):
    """Top up the bit buffer ``buf`` (``nb`` bits; next byte at ``p``) to more than 48 bits, stopping
    at a marker or the end; a stuffed ``FF 00`` is one ``FF`` data byte. Returns (p, buf, nb)."""
    end = data.shape[0]
    buf &= (np.int64(1) << nb) - 1
    while nb <= 48 and p < end:
        b = np.int64(data[p])
        if b == 0xFF:
            if p + 1 >= end or data[p + 1] != 0:
                break
            p += 2
        else:
            p += 1
        buf = (buf << 8) | b
        nb += 8
    return p, buf, nb


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def _bits(data, p, buf, nb, n):
    """The next ``n`` (<= 16) coded bits: (p, buf, nb, value), value -1 when a marker or the end comes first."""
    if nb < n:
        p, buf, nb = _fill(data, p, buf, nb)
        if nb < n:
            return p, buf, nb, np.int64(-1)
    nb -= n
    return p, buf, nb, (buf >> nb) & ((np.int64(1) << n) - 1)


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def _huff(data, p, buf, nb, t, tab):
    """Decode one symbol with table ``t``: (p, buf, nb, symbol), symbol -1 (data ran out) or -2 (no such code)."""
    if nb < 16:
        p, buf, nb = _fill(data, p, buf, nb)
    if nb >= 16:
        look = tab[LOOK, t, (buf >> (nb - LOOKAHEAD)) & _LOOK_MASK]
        if look:
            return p, buf, nb - (look >> 8), look & 0xFF
        window = (buf >> (nb - 16)) & 0xFFFF
        for length in range(LOOKAHEAD + 1, 17):
            code = window >> (16 - length)
            if code <= tab[MAXCODE, t, length]:
                return p, buf, nb - length, tab[HUFFVAL, t, tab[VALPTR, t, length] + code - tab[MINCODE, t, length]]
        return p, buf, nb, np.int64(-2)
    code = np.int64(0)
    for length in range(1, 17):  # near a marker or the end: T.81 F.2.2.3, bit by bit
        p, buf, nb, b = _bits(data, p, buf, nb, 1)
        if b < 0:
            return p, buf, nb, np.int64(-1)
        code = (code << 1) | b
        if code <= tab[MAXCODE, t, length]:
            return p, buf, nb, tab[HUFFVAL, t, tab[VALPTR, t, length] + code - tab[MINCODE, t, length]]
    return p, buf, nb, np.int64(-2)


@numba.njit(inline="always", **_JIT, **_NO_REFCOUNTS)
def _mark(nz, idx, k):
    """Remember that coefficient ``k`` (zig-zag order; libjpeg maps overruns to 63) of block ``idx`` is nonzero."""
    nz[idx] |= np.uint64(1) << np.uint64(min(k, 63))


@numba.njit(inline="always", **_JIT, **_NO_REFCOUNTS)
def _is_nonzero(nz, idx, k):
    return (nz[idx] >> np.uint64(k)) & np.uint64(1)


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def _block(kind, data, p, buf, nb, run, dct, act, ss, se, nz, idx, tab):
    """Consume one block's coded bits; ``run`` is the end-of-band run. Returns (p, buf, nb, run,
    status), status 0, -1 (data ran out) or -2 (bad code). Mirrors libjpeg's ``decode_mcu``
    (jdhuff.c) and ``decode_mcu_{DC,AC}_{first,refine}`` (jdphuff.c)."""
    if kind == SEQUENTIAL or kind == DC_FIRST:
        p, buf, nb, s = _huff(data, p, buf, nb, dct, tab)
        if s < 0:
            return p, buf, nb, run, s
        if s:
            p, buf, nb, v = _bits(data, p, buf, nb, s)
            if v < 0:
                return p, buf, nb, run, np.int64(-1)
        if kind == DC_FIRST:
            return p, buf, nb, run, np.int64(0)
        k = 1
        while k < 64:
            p, buf, nb, rs = _huff(data, p, buf, nb, act, tab)
            if rs < 0:
                return p, buf, nb, run, rs
            r, s = rs >> 4, rs & 15
            if s:
                k += r
                p, buf, nb, v = _bits(data, p, buf, nb, s)
                if v < 0:
                    return p, buf, nb, run, np.int64(-1)
            elif r != 15:
                break
            else:
                k += 15
            k += 1
        return p, buf, nb, run, np.int64(0)
    if kind == DC_REFINE:
        p, buf, nb, v = _bits(data, p, buf, nb, 1)
        return p, buf, nb, run, (np.int64(-1) if v < 0 else np.int64(0))
    if kind == AC_FIRST:
        if run > 0:
            return p, buf, nb, run - 1, np.int64(0)
        k = ss
        while k <= se:
            p, buf, nb, rs = _huff(data, p, buf, nb, act, tab)
            if rs < 0:
                return p, buf, nb, run, rs
            r, s = rs >> 4, rs & 15
            if s:
                k += r
                p, buf, nb, v = _bits(data, p, buf, nb, s)
                if v < 0:
                    return p, buf, nb, run, np.int64(-1)
                _mark(nz, idx, k)
            elif r == 15:
                k += 15
            else:
                run = np.int64(1) << r
                if r:
                    p, buf, nb, v = _bits(data, p, buf, nb, r)
                    if v < 0:
                        return p, buf, nb, run, np.int64(-1)
                    run += v
                run -= 1
                break
            k += 1
        return p, buf, nb, run, np.int64(0)
    # AC refinement
    k = ss
    if run == 0:
        while k <= se:
            p, buf, nb, rs = _huff(data, p, buf, nb, act, tab)
            if rs < 0:
                return p, buf, nb, run, rs
            r, s = rs >> 4, rs & 15
            if s:
                if s != 1:
                    return p, buf, nb, run, np.int64(-2)  # libjpeg: "Corrupt JPEG data: bad Huffman code"
                p, buf, nb, v = _bits(data, p, buf, nb, 1)
                if v < 0:
                    return p, buf, nb, run, np.int64(-1)
            elif r != 15:
                run = np.int64(1) << r
                if r:
                    p, buf, nb, v = _bits(data, p, buf, nb, r)
                    if v < 0:
                        return p, buf, nb, run, np.int64(-1)
                    run += v
                break
            while k <= se:  # pass over nonzero coefficients (a correction bit each) and r zero ones
                if _is_nonzero(nz, idx, k):
                    p, buf, nb, v = _bits(data, p, buf, nb, 1)
                    if v < 0:
                        return p, buf, nb, run, np.int64(-1)
                else:
                    if r == 0:
                        break
                    r -= 1
                k += 1
            if s:
                _mark(nz, idx, k)
            k += 1
    if run > 0:
        while k <= se:
            if _is_nonzero(nz, idx, k):
                p, buf, nb, v = _bits(data, p, buf, nb, 1)
                if v < 0:
                    return p, buf, nb, run, np.int64(-1)
            k += 1
        run -= 1
    return p, buf, nb, run, np.int64(0)


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def next_marker(data, p):
    """Position of the ``FF`` that starts the next marker at or after ``p`` (stuffed ``FF 00`` and
    fill bytes skipped), or -1 when the file ends first."""
    end = data.shape[0]
    while p + 1 < end:
        if data[p] == 0xFF:
            b = data[p + 1]
            if b == 0x00:
                p += 2
                continue
            if b != 0xFF:
                return p
        p += 1
    return -1


@numba.njit(**_JIT, **_NO_REFCOUNTS)
def walk_scan(data, pos, kind, comp, mcux, mcuy, ss, se, ri, tab, nz):
    """Walk one scan's coded data from byte ``pos``.

    ``comp`` (Ns, 8) int64 rows: h, v, blocks per row, block rows, padded blocks per row, DC
    table, AC table, offset of the component's blocks in ``nz``. Returns (result, position,
    MCUs done): result 0 with the position of the marker after the scan, or 1 (data ran out),
    2 (bad Huffman code), 3 (restart marker missing or out of order) with where it happened.
    """
    p, buf, nb, run = pos, np.int64(0), np.int64(0), np.int64(0)
    ns = comp.shape[0]
    n_mcu = mcux * mcuy if ns > 1 else comp[0, 2] * comp[0, 3]
    todo = ri
    expected = 0
    for m in range(n_mcu):
        if ri > 0:
            if todo == 0:  # a restart marker comes first: the unused bits of its byte are dropped
                q = next_marker(data, p)
                if q < 0:
                    return OUT_OF_DATA, data.shape[0], m
                if data[q + 1] != 0xD0 + expected:
                    return (OUT_OF_DATA if data[q + 1] == 0xD9 else BAD_RESTART), q, m
                p, buf, nb, run = q + 2, np.int64(0), np.int64(0), np.int64(0)
                expected = (expected + 1) & 7
                todo = ri
            todo -= 1
        if ns > 1:
            mr = m // mcux
            mc = m - mr * mcux
            for c in range(ns):
                h = comp[c, 0]
                v = comp[c, 1]
                for yy in range(v):
                    row = comp[c, 7] + (mr * v + yy) * comp[c, 4] + mc * h
                    for xx in range(h):
                        p, buf, nb, run, r = _block(kind, data, p, buf, nb, run, comp[c, 5], comp[c, 6], ss, se,
                                                    nz, row + xx, tab)
                        if r < 0:
                            return (OUT_OF_DATA if r == -1 else BAD_CODE), p, m
        else:
            br = m // comp[0, 2]
            idx = comp[0, 7] + br * comp[0, 4] + (m - br * comp[0, 2])
            p, buf, nb, run, r = _block(kind, data, p, buf, nb, run, comp[0, 5], comp[0, 6], ss, se, nz, idx, tab)
            if r < 0:
                return (OUT_OF_DATA if r == -1 else BAD_CODE), p, m
    # bytes still in the bit buffer hold no marker (filling stops at one): search on from p
    q = next_marker(data, p)
    if q < 0:
        return OUT_OF_DATA, data.shape[0], n_mcu
    return OK, q, n_mcu
