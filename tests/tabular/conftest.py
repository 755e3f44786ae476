from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.manual_seed(0)


@pytest.fixture
def toy() -> pd.DataFrame:
    """A learnable table: the class is `color == 'red'` or `size > 0.5`, with a noise column and NaNs."""
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.random(n)
    noise = rng.normal(size=n)
    y = np.where((color == "red") | (size > 0.5), "yes", "no")
    df = pd.DataFrame({"color": color, "size": size, "noise": noise, "y": y})
    df.loc[::17, "size"] = np.nan
    return df
