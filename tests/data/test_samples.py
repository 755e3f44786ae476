"""Embedded samples: real small datasets that load offline, end to end through a DataBlock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lamina.core import TensorImageBW
from lamina.data import (
    CategoryBlock,
    ColReader,
    DataBlock,
    RandomSplitter,
    RegressionBlock,
    TrainTestSplitter,
    TransformBlock,
    get_image_files,
    parent_label,
    samples,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")


def test_iris_sample_classification(tmp_path: Path) -> None:
    path = samples.iris_sample(tmp_path)
    assert samples.iris_sample(tmp_path) == path  # written once
    df = pd.read_csv(path)
    assert df.shape == (150, 5) and sorted(df.species.unique()) == ["setosa", "versicolor", "virginica"]
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    dblock = DataBlock(
        blocks=(TransformBlock, CategoryBlock),
        get_x=lambda r: torch.tensor(r[cols].to_numpy(dtype="float32")),
        get_y=ColReader("species"),
        splitter=TrainTestSplitter(0.2, seed=0, stratify=list(df.species)),
    )
    dls = dblock.dataloaders(df, bs=16, num_workers=0, device="cpu")
    xb, _ = dls.one_batch()
    assert xb.shape == (16, 4) and dls.c == 3 and len(dls.valid.dataset) == 30


def test_autompg_sample_regression(tmp_path: Path) -> None:
    df = pd.read_csv(samples.autompg_sample(tmp_path))
    assert len(df) == 392 and not df.isna().any().any()
    assert set(df.origin) == {"usa", "europe", "japan"} and df.mpg.between(5, 50).all()
    cols = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year"]
    dblock = DataBlock(
        blocks=(TransformBlock, RegressionBlock),
        get_x=lambda r: torch.tensor(r[cols].to_numpy(dtype="float32")),
        get_y=ColReader("mpg"),
        splitter=RandomSplitter(0.2, seed=0),
    )
    dls = dblock.dataloaders(df, bs=32, num_workers=0, device="cpu")
    xb, yb = dls.one_batch()
    assert xb.shape == (32, 6) and yb.shape == (32,) and yb.dtype == torch.float32 and dls.c == 1


def test_mnist_digits_through_a_datablock(mnist_small: Path) -> None:
    pytest.importorskip("lamina.vision.core")
    from lamina.vision.core import ImageBlock

    dblock = DataBlock(
        blocks=(ImageBlock(TensorImageBW), CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=0),
    )
    dls = dblock.dataloaders(mnist_small, bs=32, num_workers=0, device="cpu", seed=0)
    xb, _ = dls.one_batch()
    assert xb.shape == (32, 1, 28, 28) and float(xb.min()) >= 0 and float(xb.max()) <= 1
    assert dls.vocab == [str(d) for d in range(10)] and len(dls.train.dataset) == 240


def test_widedeep_tables_are_plain_parquet(tmp_path):
    """The shipped tables come out as parquet with their documented shapes and target columns."""
    import pandas as pd

    from lamina.data import samples

    adult = pd.read_parquet(samples.adult_sample(tmp_path))
    assert adult.shape == (48842, 15) and set(adult["income"]) == {"<=50K", ">50K"}
    ml = samples.movielens_100k(tmp_path)
    ratings = pd.read_parquet(ml["ratings"])
    assert len(ratings) == 100_000 and ratings["rating"].between(1, 5).all()
    assert samples.california_housing_sample(tmp_path).exists()
    assert samples.womens_clothing_reviews(tmp_path) == tmp_path / "womens_clothing.parquet"
