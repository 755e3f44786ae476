"""`TabularDataLoaders.from_large_parquet`: a parquet file read a chunk at a time gives the tables
`from_df` gives on the same split when the setup sample holds every training row, trains from a small
sample, and refuses a missing file, a missing target and a label its sample never saw, by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.tabular import TabularDataLoaders, tabular_learner
from lamina.train import accuracy


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue", "grey"], n).astype(object)
    color[::23] = None
    size = rng.random(n)
    size[::17] = np.nan
    y = np.where((color == "red") | (np.nan_to_num(size) > 0.6), "yes", "no")
    return pd.DataFrame({"color": color, "size": size, "noise": rng.normal(size=n), "y": y})


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "t.parquet"
    _table().to_parquet(path, row_group_size=400)
    return path


def test_chunks_give_from_dfs_tables(parquet: Path) -> None:
    ref = TabularDataLoaders.from_df(pd.read_parquet(parquet), "y", seed=3, bs=64)
    big = TabularDataLoaders.from_large_parquet(parquet, "y", seed=3, bs=64, chunk_rows=700)
    assert (big.cat_names, big.cont_names, big.vocab) == (ref.cat_names, ref.cont_names, ref.vocab)
    for a, b in ((big.train.dataset, ref.train.dataset), (big.valid.dataset, ref.valid.dataset)):
        assert len(a) == len(b) > 500
        assert torch.equal(a.cats, b.cats) and torch.equal(a.ys, b.ys)  # type: ignore[attr-defined]
        torch.testing.assert_close(a.conts, b.conts)  # type: ignore[attr-defined]
    assert all(torch.equal(x, y) for x, y in zip(big.train.one_batch(), ref.train.one_batch(), strict=True))


def test_a_sampled_setup_trains(parquet: Path) -> None:
    dls = TabularDataLoaders.from_large_parquet(parquet, "y", seed=0, bs=64, chunk_rows=500, setup_rows=300)
    learn = tabular_learner(dls, metrics=accuracy)
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][2] >= 0.9


def test_bad_inputs_are_named(parquet: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TabularDataLoaders.from_large_parquet(tmp_path / "nope.parquet", "y")
    with pytest.raises(ValueError, match=r"(?s)the target column\(s\) \['income'\].*help: check y_names"):
        TabularDataLoaders.from_large_parquet(parquet, "income")
    df = _table()
    df.loc[1234, "y"] = "maybe"  # one row, a training row the 300-row sample does not hold
    rare = tmp_path / "rare.parquet"
    df.to_parquet(rare)
    with pytest.raises(ValueError, match=r"(?s)label never seen in training, e.g. 'maybe'"):
        TabularDataLoaders.from_large_parquet(rare, "y", seed=0, setup_rows=300, valid_pct=0.0)
