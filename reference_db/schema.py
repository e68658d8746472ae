"""Layout of a ganprint reference library: the only module that spells HDF5 paths and attribute names.

Schema version 2 (``docs/reference_db.md`` documents every item with its dtype and shape): the path
the user names is a small **index** file; each reference lives in its own HDF5 file in the folder
``PATH.d`` beside it, the calibration data in one more, and the index links them::

    PATH (the index)                    root group
        @format            str          FORMAT_MARKER, "ganprint-reference-library"
        @schema_version    int64        SCHEMA_VERSION (2)
        @created           str          ISO 8601 UTC, when the library was created
        @ganprint_version  str          the ganprint that wrote the index
        /references/<name>              external link to (FOLDER/ref-<32 hex>.h5, "/")
        /calibration                    optional: external link to (FOLDER/cal-<32 hex>.h5, "/calibration")
        /calibration_sources            optional: external link to (the same file, "/calibration_sources")
    FOLDER/ref-<32 hex>.h5, root group: one reference
            @kind              str      "camera" or "generator"
            @n_images          int64    images counted in the sums
            @image_shape       int64 (ndim,)  shape of every source image, e.g. (H, W, 3)
            @created           str      ISO 8601 UTC
            @updated           str      ISO 8601 UTC
            @ganprint_version  str      the ganprint that last wrote this reference
            @n_sources         int64    length of the two source datasets
            @fingerprint_sha256 str     optional (written since 2026-12-02): SHA-256, 64 lowercase hex, of
                               the fingerprint as C-ordered little-endian float32; checked on every read
            fingerprint        float32, finite: camera (H, W); generator (H, W) or (C, H, W)
            sums/<sum name>    float32 or float64, finite: the running sums, SUM_LAYOUTS of the kind
                               (camera "S", "N" (C, H, W); generator "sum" (C, H, W), "power" (C, H, W//2+1))
            params/            group with one attribute per parameter (int64, float64, bool, str)
            sources/file_name  str (variable-length UTF-8), shape (n_sources,)
            sources/sha256     bytes (fixed-length ASCII, 64), shape (n_sources,), lowercase hex
    FOLDER/cal-<32 hex>.h5
        /calibration/<key>  float64 (n,) resizable, e.g. "generator_null_z": z = NCC*sqrt(D) of images
                            against fingerprints of other sources (non-matching pairs)
        /calibration_sources/<key>/sha256     bytes (S64) (m,), m <= n: SHA-256 of the image of value i
        /calibration_sources/<key>/reference  str (m,): the reference it was scored against
                            ("" if not recorded; values m..n-1 were written without them)

A data file is never modified once the index names it: a changed reference is a new file, and
files that no index names are garbage. Schema version 1 is one file: the index's root attributes,
``/references/<name>`` the reference groups themselves (members as above), ``/calibration`` and
``/calibration_sources`` groups in the same file; it is read, and written as version 2 from the
first write on. Changing anything above is a new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

#: Value of the root attribute ``format``: what makes an HDF5 file a ganprint library.
FORMAT_MARKER: Final = "ganprint-reference-library"
#: The layout version written by this module; files with a larger one are refused.
SCHEMA_VERSION: Final = 2
#: The single-file layout: still read, and written by ``Library.export``.
SINGLE_FILE_VERSION: Final = 1

#: The folder of data files is the index path plus this suffix (``refs.h5`` -> ``refs.h5.d``).
FOLDER_SUFFIX: Final = ".d"
#: Names of the data files in the folder: a prefix, 32 random hex digits, ``.h5``.
REFERENCE_FILE_PREFIX: Final = "ref-"
CALIBRATION_FILE_PREFIX: Final = "cal-"
DATA_FILE_RE: Final = re.compile(r"^(ref|cal)-[0-9a-f]{32}\.h5$")

# Root attributes.
ATTR_FORMAT: Final = "format"
ATTR_SCHEMA_VERSION: Final = "schema_version"
ATTR_CREATED: Final = "created"
ATTR_GANPRINT_VERSION: Final = "ganprint_version"

# The group of references.
REFERENCES: Final = "references"

# Attributes of one reference group.
ATTR_KIND: Final = "kind"
ATTR_N_IMAGES: Final = "n_images"
ATTR_IMAGE_SHAPE: Final = "image_shape"
ATTR_UPDATED: Final = "updated"
ATTR_N_SOURCES: Final = "n_sources"
ATTR_FINGERPRINT_SHA256: Final = "fingerprint_sha256"  # optional: files written before it have none
# ATTR_CREATED and ATTR_GANPRINT_VERSION are reused on reference groups.

# The optional group of calibration data (float64 1-D datasets, appended to).
CALIBRATION: Final = "calibration"
CALIBRATION_CHUNK: Final = 1024
# The optional group recording, per calibration value, its image and reference (keys of re-adding).
CALIBRATION_SOURCES: Final = "calibration_sources"
CALIBRATION_SHA256: Final = "sha256"
CALIBRATION_REFERENCE: Final = "reference"
# A calibration dataset owned by one reference (statistics of that reference alone) carries its name
# in this attribute, and its key is "<family>:<owner>:<rest>" (family without ':'): `rename` renames
# the key and `remove` deletes it, in the reference's commit.
ATTR_CALIBRATION_OWNER: Final = "owner"


def owned_calibration_key(key: str, owner: str) -> tuple[str, str]:
    """``(family, rest)`` of a calibration ``key`` owned by reference ``owner``: the key must be
    ``"<family>:<owner>:<rest>"`` with a non-empty family free of ``':'``; else ``ValueError``."""
    family, sep, tail = key.partition(":")
    if not (family and sep and tail.startswith(owner + ":")):
        raise ValueError(f"a calibration key owned by {owner!r} must read '<family>:{owner}:<rest>', got {key!r}")
    return family, tail[len(owner) + 1:]


# Members of one reference group.
FINGERPRINT: Final = "fingerprint"
SUMS: Final = "sums"
PARAMS: Final = "params"
SOURCES: Final = "sources"
SOURCE_FILE_NAME: Final = "file_name"
SOURCE_SHA256: Final = "sha256"

#: The legal values of a reference's ``kind``.
KINDS: Final = ("camera", "generator")
#: dtype of the fingerprint dataset.
FINGERPRINT_DTYPE: Final = "float32"
#: dtypes a running sum may be stored in.
SUM_DTYPES: Final = ("float32", "float64")
#: The running sums of each kind and their shapes, given the fingerprint planes (C, H, W): "CHW" is
#: (C, H, W), "CHF" the half spectrum (C, H, W // 2 + 1). ``REQUIRED_SUMS`` must all be present.
SUM_LAYOUTS: Final = {"camera": {"S": "CHW", "N": "CHW"}, "generator": {"sum": "CHW", "power": "CHF"}}
REQUIRED_SUMS: Final = {"camera": ("S", "N"), "generator": ("sum",)}
#: Channel counts C a fingerprint or a sum may have (grey or colour).
CHANNELS: Final = (1, 3)
#: numpy dtype string of the sha256 dataset (fixed 64 ASCII bytes).
SHA256_DTYPE: Final = "S64"
#: Chunk length of the two resizable source datasets.
SOURCES_CHUNK: Final = 256

_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")


def data_file_name(prefix: str) -> str:
    """A fresh data file name, e.g. ``ref-1f0c...e2.h5`` (128 random bits: never used before)."""
    return f"{prefix}{secrets.token_hex(16)}.h5"


def check_name(name: object, *, what: str = "reference name") -> str:
    """Return ``name`` if it can name a reference (or a sum), else raise.

    A name is a non-empty printable ``str`` without ``"/"`` that does not start with ``"."``.

    Raises
    ------
    TypeError
        ``name`` is not a ``str``.
    ValueError
        ``name`` breaks one of the rules above.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if not name.isprintable():
        raise ValueError(f"{what} {name!r} contains non-printable characters")
    if "/" in name:
        raise ValueError(f"{what} {name!r} must not contain '/'")
    if name.startswith("."):
        raise ValueError(f"{what} {name!r} must not start with '.'")
    return name


def check_sha256(digest: object) -> str:
    """Return ``digest`` as 64 lowercase hex characters, or raise ``ValueError``/``TypeError``."""
    if isinstance(digest, bytes):
        digest = digest.decode("ascii", "replace")
    if not isinstance(digest, str):
        raise TypeError(f"sha256 must be a str of 64 hex digits, not {type(digest).__name__}")
    low = digest.strip().lower()
    if not _SHA256_RE.match(low):
        raise ValueError(f"sha256 must be 64 hex digits, got {digest!r}")
    return low
