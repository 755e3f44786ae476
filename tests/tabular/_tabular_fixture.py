"""Writes the golden tabular export (a tiny model on a fixed table) and its expected predictions:

    python tests/tabular/_tabular_fixture.py

Only regenerate it when the export format version changes, as a new file (tabular_v2...).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lamina.tabular import TabularDataLoaders, tabular_learner

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "tabular_v1.lamina"
EXPECTED = FIXTURES / "tabular_v1_expected.json"
ROWS = [
    {"color": "red", "size": 0.1, "n": 3},
    {"color": "blue", "size": None, "n": 1},
    {"color": "never-seen", "size": 0.9, "n": 2},
]


def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {"color": rng.choice(["red", "green", "blue"], n), "size": rng.random(n), "n": rng.integers(0, 4, n)}
    )
    df.loc[::13, "size"] = np.nan
    df["y"] = np.where((df["color"] == "red") | (df["size"] > 0.5), "yes", "no")
    return df


def main() -> None:
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(table(), y_names="y", valid_pct=0.2, seed=0, bs=32)
    learn = tabular_learner(dls, layers=[8], cont_emb=4)
    learn.fit(2, 1e-2)
    FIXTURES.mkdir(exist_ok=True)
    learn.export(GOLDEN)
    preds, _ = learn.get_preds(dl=dls.test_dl(pd.DataFrame(ROWS)))
    EXPECTED.write_text(json.dumps({"rows": ROWS, "probs": preds.tolist()}, indent=1))


if __name__ == "__main__":
    main()
