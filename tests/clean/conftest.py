"""Fixtures of the clean tests: the planted digits dataset, fresh or scanned once per module."""

from __future__ import annotations

from pathlib import Path

import pytest
from _clean_kit import Planted, make_digits, mlp_learner


@pytest.fixture
def digits(tmp_path: Path, mnist_path: Path) -> Planted:
    return make_digits(tmp_path / "digits", mnist_path)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, mnist_path: Path) -> tuple[Planted, object]:
    """The planted dataset scanned once with 3-fold out-of-fold models (a few seconds on 2 cores)."""
    import torch

    from lamina.clean import find_issues
    from lamina.vision import ImageDataLoaders, Resize

    torch.manual_seed(0)
    planted = make_digits(tmp_path_factory.mktemp("scan") / "digits", mnist_path)
    dls = ImageDataLoaders.from_folder(
        planted.root, valid_pct=0.2, seed=42, bs=16, num_workers=0, item_tfms=[Resize(28)]
    )
    issues = find_issues(dls, mlp_learner, folds=3, epochs=10, lr=3e-3, seed=0)
    return planted, issues
