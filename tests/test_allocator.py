"""fingerprint.allocator: freed large arrays stay in the process and are reused (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from fingerprint.allocator import keep_freed_memory
    assert keep_freed_memory()
a = np.ones(10 << 20, np.float32); del a  # 40 MB, above glibc's largest automatic mmap threshold
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(10 << 20, np.float32); del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_large_array_is_reused_instead_of_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    assert default > 0  # each 40 MB array came from fresh pages
    assert kept < max(1, default // 10)


def test_it_does_nothing_where_the_c_library_is_not_glibc(monkeypatch):
    from fingerprint import allocator

    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.keep_freed_memory() is False
