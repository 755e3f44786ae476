"""Shared fixtures: the embedded MNIST sample (written once per machine) and a headless matplotlib."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    from lamina.data import samples

    return samples.mnist_sample()


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory: pytest.TempPathFactory, mnist_path: Path) -> Path:
    """300 digits (30 per class) in class folders, for tests that only need a few real images."""
    root = tmp_path_factory.mktemp("mnist_small")
    for d in sorted(mnist_path.iterdir()):
        if not d.is_dir():
            continue
        (root / d.name).mkdir()
        for f in sorted(d.glob("*.png"))[:30]:
            (root / d.name / f.name).symlink_to(f)
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
