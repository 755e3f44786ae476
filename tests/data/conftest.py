"""Fixtures for the data tests: tiny image folders written on the fly, and a small table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def write_png(path: Path, size: tuple[int, int] = (8, 8), value: int | None = None, seed: int = 0) -> Path:
    """A small RGB PNG of random (or constant) pixels; `size` is (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    arr = (
        np.full((h, w, 3), value, np.uint8)
        if value is not None
        else rng.integers(0, 256, (h, w, 3), np.uint8)
    )
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def png_writer() -> Callable[..., Path]:
    """`write_png` for tests that lay out their own folders."""
    return write_png


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """`cat/` and `dog/` with 6 tiny PNGs each (8x8); `cat` pictures are dark, `dog` ones bright."""
    root = tmp_path / "pets"
    for label, value in (("cat", 10), ("dog", 240)):
        for i in range(6):
            write_png(root / label / f"{label}_{i}.png", value=value + i)
    return root


@pytest.fixture
def table() -> pd.DataFrame:
    """20 rows: two features, a label, a multi-label, a number and a validation flag (last 5 rows)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.random(20),
            "b": rng.random(20),
            "label": ["x", "y"] * 10,
            "tags": ["x y", "y", "x", "z x"] * 5,
            "target": rng.random(20),
            "is_valid": [False] * 15 + [True] * 5,
        }
    )
