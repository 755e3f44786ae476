"""ImageDataLoaders factories that a fastai user looks for: from_name_func labels by the file's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.vision import ImageDataLoaders


@pytest.fixture
def pets(tmp_path: Path) -> tuple[Path, list[str]]:
    """12 tiny images named like the Oxford pets: a capital first letter is a cat."""
    names = [f"{'Abyssinian' if i % 2 else 'beagle'}_{i}.png" for i in range(12)]
    for i, n in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(tmp_path / n)
    return tmp_path, names


def is_cat(name: str) -> str:
    return "cat" if name[0].isupper() else "dog"


def test_from_name_func_labels_by_the_file_name(pets: tuple[Path, list[str]]) -> None:
    path, names = pets
    dls = ImageDataLoaders.from_name_func(path, names, is_cat, valid_pct=0.25, seed=0, bs=4, num_workers=0)
    assert dls.vocab == ["cat", "dog"]
    assert len(dls.train.dataset) == 9 and len(dls.valid.dataset) == 3
    dsets = dls.dsets
    assert dsets is not None
    for i, f in enumerate(dsets.items):
        assert str(dsets.decode(dsets[i])[1]) == is_cat(Path(f).name)
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 8, 8) and y.shape == (4,)
    same = ImageDataLoaders.from_name_func(path, names, is_cat, valid_pct=0.25, seed=0, num_workers=0)
    assert same.dsets is not None and same.dsets.splits == dsets.splits  # the seed fixes the split
