#!/usr/bin/env python
"""Long fuzz run of ganprint's input handling (quick versions run in tests/test_reliability.py and
tests/test_memory.py).

Four fuzzers:

- ``arrays``: any array (odd dtypes, shapes, sizes, NaN, inf) through ``fingerprint.attribute``:
  a result or one clear one-line error (``GanprintError``, ``ValueError``, ``TypeError``), never
  another exception (hypothesis strategies of ``tests/test_reliability.py``);
- ``valid``: uint8/uint16 gray or RGB images of 16..64 pixels a side: always attributed;
- ``files``: valid PNG, JPEG, TIFF (8 and 16 bit), BMP and WebP files truncated, bit-flipped,
  overwritten or spliced, through ``load_image`` then ``attribute``: correct pixels, or an
  ``InvalidImageError`` whose one-line message starts with the file name;
- ``headers``: TIFF, PNG and JPEG files of many layouts whose **header fields** are mutated (TIFF:
  dimensions, bits per sample, samples per pixel, planar configuration, photometric, compression,
  sample format, predictor, strip offsets and byte counts, rows per strip, a tag's type or count;
  PNG: IHDR width, height, bit depth, colour type, interlace, with or without a fixed CRC, chunk
  lengths; JPEG: SOF precision, size, components and sampling factors, DHT counts and symbols, SOS
  components, tables and spectral selection, DRI, DQT, segment lengths), plus bit flips, byte
  overwrites and truncations (JPEGs padded with an end-of-image marker). Each file is loaded with
  ``load_image`` in a worker process whose address space is limited (``RLIMIT_AS``, 2 GB by
  default), with a time limit per file: the outcome must be pixels that keep the contract or one
  ``InvalidImageError`` line naming the file; any other exception (a traceback), a hang, a crash of
  the worker, or a peak resident memory at the limit is a failure.

Usage::

    .venv/bin/python benchmarks/fuzz_long.py                    # 2000 examples per fuzzer
    .venv/bin/python benchmarks/fuzz_long.py --examples 20000 --only files --seed 7
    nice .venv/bin/python benchmarks/fuzz_long.py --only headers --examples 12000 --json out.json

Exit code 0 when every example behaved, 1 otherwise (hypothesis prints the shrunk failing
example; ``headers`` prints each failing file's mutation and keeps the file). Single-threaded per
fuzzer: roughly 800 to 1600 examples a minute for the hypothesis fuzzers, a few thousand a minute
for ``headers``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

logging.getLogger("tifffile").addHandler(logging.NullHandler())  # mutated seeds are parsed here too

MEMORY_LIMIT = 2 * 2**30  # bytes of address space for a headers worker (RLIMIT_AS)
FILE_TIMEOUT = 30.0  # seconds a headers worker may spend on one file


# ---- hypothesis fuzzers (arrays, valid, files) ------------------------------------------------

def _runner(name: str, strategy, check, library: Path, workdir: Path, n: int, seed: int):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    counter = {"n": 0}

    @settings(max_examples=n, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(sample=strategy)
    def run(sample):
        counter["n"] += 1
        check(sample, library, workdir)

    return run, counter


def _check_array(array, library, workdir):
    import test_reliability as rel

    rel.fuzz_array(array, library)


def _check_valid(image, library, workdir):
    import test_reliability as rel

    (result,) = rel.attribute(image, library)
    assert result.decision in ("match", "unknown")


def _check_file(sample, library, workdir):
    import test_reliability as rel

    ext, data = sample
    path = workdir / f"fuzz{ext}"
    path.write_bytes(data)
    rel.fuzz_file(path, library)


HYPOTHESIS_FUZZERS = {
    "arrays": ("image_arrays", _check_array),
    "valid": ("valid_images", _check_valid),
    "files": ("corrupted_files", _check_file),
}


# ---- headers: seed files ----------------------------------------------------------------------

def seed_files() -> dict[str, bytes]:
    """Valid files of many layouts (name -> bytes): the starting points of header mutations."""
    import numpy as np
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = 37, 45
    y, x = np.mgrid[0:h, 0:w]
    rgb = (np.stack([x * 5, y * 6, (x + y) * 3], -1) + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
    gray = rgb[..., 0].copy()
    out: dict[str, bytes] = {}

    def pil(name, img, fmt, **kwargs):
        buf = io.BytesIO()
        img.save(buf, fmt, **kwargs)
        out[name] = buf.getvalue()

    for name, kwargs in {"base": {}, "prog": {"progressive": True}, "opt": {"optimize": True},
                         "444": {"subsampling": 0}, "rst": {"restart_marker_blocks": 2},
                         "prog_rst": {"progressive": True, "restart_marker_rows": 1}}.items():
        pil(f"{name}.jpg", Image.fromarray(rgb), "JPEG", quality=85, **kwargs)
    pil("gray.jpg", Image.fromarray(gray), "JPEG")
    pil("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG")
    pil("rgb.png", Image.fromarray(rgb), "PNG")
    pil("gray.png", Image.fromarray(gray), "PNG")
    pil("rgba.png", Image.fromarray(rgb).convert("RGBA"), "PNG")
    pil("palette.png", Image.fromarray(rgb).convert("P"), "PNG")
    pil("gray16.png", Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
    pil("bilevel.png", Image.fromarray(gray > 128), "PNG")
    out["rgb16.png"] = _png16(rgb.astype(np.uint16) * 257)

    def tif(name, data, **kwargs):
        buf = io.BytesIO()
        tifffile.imwrite(buf, data, **kwargs)
        out[name] = buf.getvalue()

    rgb16 = rgb.astype(np.uint16) * 257
    tif("rgb8.tif", rgb, photometric="rgb", rowsperstrip=8)
    tif("rgb16.tif", rgb16, photometric="rgb", rowsperstrip=8)
    tif("rgb16_planar.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate", rowsperstrip=8)
    tif("rgb8_lzw.tif", rgb, photometric="rgb", compression="lzw", rowsperstrip=8)
    tif("rgb16_zlib_pred.tif", rgb16, photometric="rgb", compression="zlib", predictor=True)
    tif("rgb8_packbits.tif", rgb, photometric="rgb", compression="packbits")
    tif("rgb8_jpeg.tif", rgb, photometric="rgb", compression="jpeg", rowsperstrip=16)
    tif("rgb8_tiled.tif", np.pad(rgb, ((0, 48 - h), (0, 48 - w), (0, 0))), photometric="rgb", tile=(16, 16))
    tif("gray16_white.tif", gray.astype(np.uint16) * 257, photometric="miniswhite")
    tif("gray12.tif", gray.astype(np.uint16) * 16, photometric="minisblack", bitspersample=12)
    tif("gray1.tif", gray > 128, photometric="minisblack")
    tif("int8.tif", (gray // 2).astype(np.int8), photometric="minisblack")
    tif("palette.tif", gray, photometric="palette", colormap=rng.integers(0, 65536, (3, 256)).astype(np.uint16))
    tif("cmyk16.tif", np.concatenate([rgb16, rgb16[..., :1]], -1), photometric="separated")
    tif("float.tif", gray.astype(np.float32), photometric="minisblack")
    tif("bigtiff.tif", rgb, photometric="rgb", bigtiff=True)
    tif("be16.tif", rgb16, photometric="rgb", byteorder=">")
    return out


def _png16(a) -> bytes:
    import numpy as np

    height, width = a.shape[:2]
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ---- headers: mutations -----------------------------------------------------------------------

_BIG = (0, 1, 2, 7, 8, 255, 256, 4095, 4096, 65535, 65536, 2**24, 2**31 - 1, 2**31, 2**32 - 1)
_TIFF_VALUES = {  # interesting values per tag
    256: (0, 1, 2, 3, 16, 46, 65535, 15000, 16000, 2**31, 2**32 - 1),  # ImageWidth
    257: (0, 1, 2, 3, 16, 38, 65535, 15000, 16000, 2**31, 2**32 - 1),  # ImageLength
    258: (0, 1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 65535),  # BitsPerSample
    259: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 32773, 32946, 34712, 34925, 50000, 50001, 65535),  # Compression
    262: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 32803, 32844, 34892, 65535),  # Photometric
    273: _BIG, 279: _BIG,  # StripOffsets, StripByteCounts
    277: (0, 1, 2, 3, 4, 5, 8, 255, 65535),  # SamplesPerPixel
    278: (0, 1, 2, 7, 2**31, 2**32 - 1),  # RowsPerStrip
    284: (0, 1, 2, 3, 65535),  # PlanarConfiguration
    317: (0, 1, 2, 3, 34892, 65535),  # Predictor
    338: (0, 1, 2, 3, 65535),  # ExtraSamples
    339: (0, 1, 2, 3, 4, 5, 6, 7, 65535),  # SampleFormat
    322: (0, 1, 15, 16, 17, 2**31), 323: (0, 1, 15, 16, 17, 2**31),  # TileWidth, TileLength
    324: _BIG, 325: _BIG,  # TileOffsets, TileByteCounts
    332: (0, 1, 2, 3),  # InkSet
    274: (0, 1, 3, 6, 8, 9, 65535),  # Orientation
}
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def _mutate_tiff(data: bytearray, rnd: random.Random) -> str:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        page = tif.pages[0]
        big = tif.is_bigtiff
        order = tif.byteorder
        tags = [(t.code, int(t.dtype), t.count, t.offset, t.valueoffset) for t in page.tags.values()]
    code, dtype, count, entry, valueoffset = rnd.choice([t for t in tags if t[0] in _TIFF_VALUES] or tags)
    what = rnd.random()
    if what < 0.8 and dtype in (3, 4, 16):  # a value of the tag (an element of an array tag)
        size = _TIFF_TYPE_SIZES[dtype]
        index = rnd.randrange(count) if count > 1 else 0
        value = rnd.choice(_TIFF_VALUES.get(code, _BIG)) if rnd.random() < 0.8 else rnd.getrandbits(8 * size)
        value &= (1 << (8 * size)) - 1
        fmt = order + {2: "H", 4: "I", 8: "Q"}[size]
        pos = valueoffset + index * size
        if pos + size <= len(data):
            struct.pack_into(fmt, data, pos, value)
        return f"tiff tag {code}[{index}] = {value}"
    if what < 0.9:  # the entry's type
        new = rnd.choice([0, 1, 2, 3, 4, 5, 7, 11, 13, 16, 99])
        struct.pack_into(order + "H", data, entry + 2, new)
        return f"tiff tag {code} type {dtype} -> {new}"
    new = rnd.choice([0, 1, 2, 3, count + 1, 255, 65535, 2**31, 2**32 - 1])  # the entry's count
    struct.pack_into(order + ("Q" if big else "I"), data, entry + 4, new & ((1 << (64 if big else 32)) - 1))
    return f"tiff tag {code} count {count} -> {new}"


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, type, length) of each chunk, as far as the file goes."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((pos, bytes(data[pos + 4 : pos + 8]), length))
        pos += 12 + length
    return out


def _mutate_png(data: bytearray, rnd: random.Random) -> str:
    chunks = _png_chunks(data)
    if rnd.random() < 0.75 and chunks and chunks[0][1] == b"IHDR":
        pos = chunks[0][0] + 8
        field, fmt, values = rnd.choice([
            (0, ">I", (0, 1, 2, 45, 46, 14000, 15000, 65535, 2**31 - 1, 2**31, 2**32 - 1)),
            (4, ">I", (0, 1, 2, 37, 38, 14000, 16000, 65535, 2**31 - 1, 2**31, 2**32 - 1)),
            (8, ">B", (0, 1, 2, 3, 4, 5, 8, 15, 16, 32, 255)),  # bit depth
            (9, ">B", (0, 1, 2, 3, 4, 5, 6, 7, 255)),  # colour type
            (10, ">B", (0, 1, 255)), (11, ">B", (0, 1, 255)), (12, ">B", (0, 1, 2, 255))])
        value = rnd.choice(values)
        struct.pack_into(fmt, data, pos + field, value)
        fixed = rnd.random() < 0.8
        if fixed:  # the CRC made right, so that the decoder sees the field
            struct.pack_into(">I", data, pos + 13, zlib.crc32(bytes(data[pos - 4 : pos + 13])))
        return f"png IHDR+{field} = {value}" + (" (crc fixed)" if fixed else "")
    offset, kind, length = rnd.choice(chunks) if chunks else (8, b"", 0)
    new = rnd.choice([0, 1, length - 1, length + 1, 2**31 - 1, 2**32 - 1]) & 0xFFFFFFFF
    struct.pack_into(">I", data, offset, new)
    return f"png chunk {kind!r} length {length} -> {new}"


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset of the segment's length field, length) up to the first scan's data."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, pos + 2, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _mutate_jpeg(data: bytearray, rnd: random.Random) -> str:
    segments = _jpeg_segments(data)
    if not segments:
        return "jpeg: no segment"
    marker, pos, length = rnd.choice([s for s in segments if s[0] in (0xC0, 0xC2, 0xC4, 0xDA, 0xDD, 0xDB)] or segments)
    body = pos + 2
    if rnd.random() < 0.1:  # the segment's length field
        new = rnd.choice([0, 1, 2, length - 1, length + 1, 65535])
        struct.pack_into(">H", data, pos, new & 0xFFFF)
        return f"jpeg {marker:02X} length {length} -> {new}"
    if marker in (0xC0, 0xC2):  # SOF: P, Y, X, Nf, then (C, HV, Tq) per component
        n = data[body + 5]
        field = rnd.choice(["P", "Y", "X", "Nf"] + [f"{k}{i}" for i in range(n) for k in "CHT"])
        if field in ("Y", "X"):
            value = rnd.choice([0, 1, 7, 8, 9, 16, 17, 255, 15000, 16000, 65535])
            struct.pack_into(">H", data, body + (1 if field == "Y" else 3), value)
        else:
            off = {"P": 0, "Nf": 5}.get(field)
            if off is None:
                off = 6 + 3 * int(field[1:]) + "CHT".index(field[0])
            value = rnd.choice({"P": (0, 1, 8, 12, 16, 255), "Nf": (0, 1, 2, 3, 4, 5, 255)}.get(
                field, (0, 1, 2, 3, 4, 5, 0x11, 0x12, 0x21, 0x22, 0x41, 0x44, 0x45, 0xFF)))
            data[body + off] = value
        return f"jpeg SOF{marker - 0xC0} {field} = {value}"
    if marker == 0xDA:  # SOS: Ns, (Cs, TdTa) per component, Ss, Se, AhAl
        n = data[body]
        off = rnd.choice([0] + [1 + 2 * i + k for i in range(n) for k in (0, 1)] + [1 + 2 * n + k for k in (0, 1, 2)])
        value = rnd.choice([0, 1, 2, 3, 4, 5, 0x10, 0x11, 0x44, 63, 64, 0xFF, rnd.getrandbits(8)])
        if body + off < len(data):
            data[body + off] = value
        return f"jpeg SOS+{off} = {value}"
    if marker == 0xC4:  # DHT: class/id, 16 counts, symbols
        off = rnd.choice([0] + list(range(1, 17)) + [17 + rnd.randrange(max(1, length - 19))])
        value = rnd.choice([0, 1, 2, 0x10, 0x13, 0xFF, rnd.getrandbits(8)])
        if body + off < len(data):
            data[body + off] = value
        return f"jpeg DHT+{off} = {value}"
    if marker == 0xDD:
        value = rnd.choice([0, 1, 2, 7, 65535])
        struct.pack_into(">H", data, body, value)
        return f"jpeg DRI = {value}"
    off = rnd.randrange(max(1, length - 2))
    value = rnd.choice([0, 1, 0x10, 0x13, 0xFF, rnd.getrandbits(8)])
    if body + off < len(data):
        data[body + off] = value
    return f"jpeg {marker:02X}+{off} = {value}"


def _mutate_bytes(data: bytearray, rnd: random.Random, ext: str) -> str:
    what = rnd.random()
    if what < 0.35 and data:
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
        return "bit flips"
    if what < 0.55 and data:
        i = rnd.randrange(len(data))
        n = rnd.randint(1, 16)
        data[i : i + n] = bytes([rnd.choice([0, 0xFF, rnd.getrandbits(8)])] * n)
        return f"overwrite {n} at {i}"
    if what < 0.85:
        cut = rnd.randrange(1, max(2, len(data)))
        del data[cut:]
        if ext == ".jpg" and rnd.random() < 0.7:
            data += b"\xff\xd9"  # cut short and padded with an end-of-image marker
            return f"truncate at {cut} + EOI"
        return f"truncate at {cut}"
    i = rnd.randrange(len(data) + 1)
    data[i:i] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 64)))
    return f"insert at {i}"


_STRUCTURED = {".tif": _mutate_tiff, ".png": _mutate_png, ".jpg": _mutate_jpeg}


def mutate(seed: bytes, ext: str, rnd: random.Random) -> tuple[bytes, list[str]]:
    """One to three mutations of ``seed``; header-field mutations two times in three."""
    data, steps = bytearray(seed), []
    for _ in range(rnd.choice((1, 1, 2, 3))):
        try:
            if rnd.random() < 0.67:
                steps.append(_STRUCTURED[ext](data, rnd))
            else:
                steps.append(_mutate_bytes(data, rnd, ext))
        except Exception as err:  # noqa: BLE001 - the file no longer parses: mutate its bytes instead
            steps.append(f"({type(err).__name__}) " + _mutate_bytes(data, rnd, ext))
    return bytes(data), steps


# ---- headers: the worker (a separate, memory-limited process) ---------------------------------

def worker(memory_limit: int) -> None:
    """Read file paths on stdin, load each, write one JSON line per file on stdout."""
    import resource

    import numpy as np

    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # as the CLI does
    from fingerprint.errors import InvalidImageError
    from fingerprint.io import load_image

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write on the result channel
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        path = line.rstrip("\n")
        t0 = time.perf_counter()
        result = {"path": path}
        try:
            image = load_image(path)
            ok = (image.dtype in (np.uint8, np.uint16) and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
                  and image.flags.c_contiguous and not image.flags.writeable and min(image.shape[:2]) >= 1)
            result.update(status="loaded" if ok else "bad-array", shape=list(image.shape), dtype=str(image.dtype))
            del image
        except InvalidImageError as err:
            text = str(err)
            good = text.startswith(f"{path}: ") and "\n" not in text and "\r" not in text
            result.update(status="refused" if good else "bad-message", message=text[len(path) + 2 :][:300])
        except BaseException as err:  # noqa: BLE001 - a traceback is what the fuzzer looks for
            result.update(status="bug", type=type(err).__name__, traceback=traceback.format_exc()[-4000:])
        result["seconds"] = round(time.perf_counter() - t0, 4)
        result["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
        print(json.dumps(result), file=out, flush=True)


class _Worker:
    def __init__(self, memory_limit: int, stderr) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--memory-limit", str(memory_limit)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                     bufsize=1)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        if self.read(120) is None:
            raise RuntimeError("the fuzz worker did not start")

    def read(self, timeout: float):
        if not self.selector.select(timeout):
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def load(self, path: str, timeout: float) -> dict:
        try:
            self.proc.stdin.write(path + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"path": path, "status": "crash", "returncode": self.proc.poll()}
        t0 = time.monotonic()
        result = self.read(timeout)
        if result is None:
            alive = self.proc.poll() is None
            self.close()
            return {"path": path, "status": "hang" if alive else "crash", "seconds": round(time.monotonic() - t0, 2),
                    "returncode": self.proc.returncode}
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


FAILURES = ("bug", "bad-array", "bad-message", "hang", "crash")


def run_headers(n: int, seed: int = 0, *, memory_limit: int = MEMORY_LIMIT, timeout: float = FILE_TIMEOUT,
                workdir: Path | None = None, keep_failures: Path | None = None) -> dict:
    """Load ``n`` mutated TIFF, PNG and JPEG files (a third each) in a memory-limited worker.

    Returns a summary: counts per format and outcome, failures (with their mutations and
    tracebacks), the worker's peak resident memory (bytes), the slowest file, seconds.
    """
    rnd = random.Random(seed)
    seeds = seed_files()
    by_ext: dict[str, list[str]] = {}
    for name in seeds:
        by_ext.setdefault(Path(name).suffix, []).append(name)
    exts = sorted(_STRUCTURED)
    outcomes: Counter = Counter()
    failures, hogs, peak, slowest = [], [], 0, (0.0, "")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ganprint-fuzz-headers-") as tmp:
        workdir = Path(workdir or tmp)
        stderr_path = workdir / "worker-stderr.txt"
        with open(stderr_path, "w") as stderr:
            current = _Worker(memory_limit, stderr)
            try:
                for i in range(n):
                    ext = exts[i % len(exts)]
                    name = rnd.choice(by_ext[ext])
                    data, steps = mutate(seeds[name], ext, rnd)
                    path = workdir / f"fuzz{ext}"
                    path.write_bytes(data)
                    result = current.load(str(path), timeout)
                    outcomes[(ext, result["status"])] += 1
                    if result.get("maxrss", 0) > peak + 100 * 2**20 and peak:  # this file raised the peak
                        hogs.append({"seed": name, "mutations": steps, "maxrss": result["maxrss"],
                                     "status": result["status"], "message": result.get("message", "")[:120]})
                    peak = max(peak, result.get("maxrss", 0))
                    if result.get("seconds", 0) > slowest[0]:
                        slowest = (result["seconds"], f"{name}: {'; '.join(steps)}")
                    if result["status"] in FAILURES:
                        failure = {"seed": name, "mutations": steps, **result}
                        if keep_failures is not None:
                            keep_failures.mkdir(parents=True, exist_ok=True)
                            kept = keep_failures / f"failure{len(failures):03d}{ext}"
                            kept.write_bytes(data)
                            failure["kept"] = str(kept)
                        failures.append(failure)
                    if result["status"] in ("hang", "crash"):
                        current = _Worker(memory_limit, stderr)
            finally:
                current.close()
        stray = [line for line in stderr_path.read_text(errors="replace").splitlines() if line.strip()]
    return {
        "files": n, "seed": seed, "memory_limit": memory_limit, "timeout": timeout,
        "outcomes": {f"{ext} {status}": k for (ext, status), k in sorted(outcomes.items())},
        "failures": failures, "peak_rss": peak, "peak_raisers": hogs[:20], "slowest": {"seconds": slowest[0], "file": slowest[1]},
        "worker_stderr": stray[:50], "seconds": round(time.perf_counter() - t0, 1),
    }


# ---- command line -----------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per fuzzer (default 2000)")
    parser.add_argument("--only", choices=sorted([*HYPOTHESIS_FUZZERS, "headers"]), action="append",
                        help="run only these fuzzers")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--memory-limit", type=int, default=MEMORY_LIMIT, help="headers: worker RLIMIT_AS in bytes")
    parser.add_argument("--timeout", type=float, default=FILE_TIMEOUT, help="headers: seconds per file")
    parser.add_argument("--json", type=Path, help="headers: write the summary here")
    parser.add_argument("--keep", type=Path, help="headers: keep failing files in this folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.memory_limit)
        return 0
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # damaged TIFF tags
    names = args.only or [*HYPOTHESIS_FUZZERS, "headers"]
    failed = []
    if "headers" in names:
        summary = run_headers(args.examples, args.seed, memory_limit=args.memory_limit, timeout=args.timeout,
                              keep_failures=args.keep)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        for failure in summary["failures"][:20]:
            print(json.dumps(failure, indent=1), flush=True)
        status = "ok" if not summary["failures"] and not summary["worker_stderr"] else "FAILED"
        if status != "ok":
            failed.append("headers")
        print(f"headers {status:6s} {summary['files']:6d} files in {summary['seconds']:6.1f} s, "
              f"{len(summary['failures'])} failures, peak RSS {summary['peak_rss'] / 2**20:.0f} MiB "
              f"(limit {args.memory_limit / 2**30:.1f} GiB address space), slowest {summary['slowest']['seconds']} s",
              flush=True)
        print(json.dumps(summary["outcomes"]), flush=True)
    hypothesis_names = [name for name in names if name in HYPOTHESIS_FUZZERS]
    if hypothesis_names:
        import test_reliability as rel

        with tempfile.TemporaryDirectory(prefix="ganprint-fuzz-") as tmp:
            tmp = Path(tmp)
            library, _ = rel.build_small_library(tmp / "library")
            for name in hypothesis_names:
                strategy_name, check = HYPOTHESIS_FUZZERS[name]
                workdir = tmp / name
                workdir.mkdir()
                run, counter = _runner(name, getattr(rel, strategy_name)(), check, library, workdir, args.examples,
                                       args.seed)
                t0 = time.perf_counter()
                try:
                    run()
                    status = "ok"
                except Exception:  # noqa: BLE001 - report every fuzzer, then fail
                    traceback.print_exc()
                    status = "FAILED"
                    failed.append(name)
                print(f"{name:7s} {status:6s} {counter['n']:6d} examples in {time.perf_counter() - t0:6.1f} s",
                      flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
