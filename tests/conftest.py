"""Shared test fixtures: data locations, markers, tolerances, small synthetic images."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DRESDEN = DATA / "dresden"
GAN = DATA / "gan"

# PyWavelets warns that 4 levels on tiny sub-bands see boundary effects; the spec asks for it.
warnings.filterwarnings("ignore", message="Level value of .* is too high")


def tolerance(dtype) -> float:
    """Relative tolerance for comparing a result of ``dtype`` with a float64 reference."""
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-10


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("GANPRINT_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow test: set GANPRINT_SLOW=1 to run"))
        if "shared_data" in item.keywords and not DATA.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"shared data not found at {DATA}"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def dresden_files(folder: str = "nat") -> list[Path]:
    return sorted((DRESDEN / folder).glob("*.JPG")) if DRESDEN.is_dir() else []
