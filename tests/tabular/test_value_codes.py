"""ValueCodes: a numeric column with few distinct values also becomes a category of its frequent values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.tabular import (
    Categorify,
    FillMissing,
    QuantileNormalize,
    TabularDataLoaders,
    ValueCodes,
    feature_importance,
    tabular_learner,
)
from lamina.tabular.procs import Columns
from lamina.train import accuracy, load_learner


def _exact_values() -> pd.DataFrame:
    """Mostly 0, else an integer 1..80 (as Adult's capital gains are); the class is whether the value is one
    of 24 scattered ones: a fact about exact values, not a smooth function of the number."""
    rng = np.random.default_rng(0)
    n = 4000
    code = np.where(rng.random(n) < 0.6, 0, rng.integers(1, 81, n))
    chosen = rng.choice(np.arange(1, 81), 24, replace=False)
    noise = rng.normal(size=n)
    return pd.DataFrame({"code": code, "noise": noise, "y": np.where(np.isin(code, chosen), "yes", "no")})


@pytest.mark.slow
def test_exact_values_are_learned_that_the_number_alone_misses() -> None:
    df = _exact_values()
    found = {}
    without = [lambda c, k: FillMissing(k), lambda c, k: Categorify(c), lambda c, k: QuantileNormalize(k)]
    for name, procs in (("default", None), ("without", without)):
        dls = TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.25, seed=42, bs=128, procs=procs)
        torch.manual_seed(0)
        learn = tabular_learner(dls, metrics=accuracy)
        learn.fit_one_cycle(4, 1e-2)
        found[name] = learn.validate()["accuracy"]
    assert "code_value" in TabularDataLoaders.from_df(df, y_names="y", seed=0).cat_names
    assert found["default"] >= 0.99, found  # the labels are a function of the code: no noise
    assert found["without"] < found["default"] - 0.02, found
    torch.manual_seed(0)
    coded = tabular_learner(TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.25, seed=42, bs=128))
    coded.fit_one_cycle(4, 1e-2)
    imp = feature_importance(coded)  # `code` and its `code_value` are shuffled together, reported as one
    assert list(imp.index) == ["code", "noise"] and imp["code"] > 0.3 > abs(imp["noise"]), imp


def test_rare_unseen_and_missing_values_share_the_reserved_code() -> None:
    train = Columns(
        hours=np.array([40.0] * 10 + [20.0] * 5 + [99.0] * 2 + [np.nan]),  # 99 is rare: no code of its own
        price=np.linspace(0, 1, 18),  # no value repeats: nothing to learn per value, no column
    )
    vc = ValueCodes(["hours", "price"], min_count=5)
    vc.setup(train)
    assert vc.values == {"hours": [20.0, 40.0]} and vc.columns(["a"], ["hours", "price"]) == (
        ["a", "hours_value"],
        ["hours", "price"],
    )
    out = vc(Columns(hours=np.array([40.0, 99.0, 7.0, np.nan]), price=np.zeros(4)))
    assert np.array_equal(out["hours_value"][:1], [40.0]) and np.isnan(out["hours_value"][1:]).all()
    assert np.array_equal(out["hours"][:3], [40.0, 99.0, 7.0])  # the column itself is untouched
    again = ValueCodes(**vc.to_config())
    assert again.values == vc.values and again.coded == ["hours"]


def test_smooth_columns_many_values_or_a_taken_name_are_left_alone() -> None:
    rng = np.random.default_rng(0)
    zeros = rng.random(5000) < 0.6
    cols = Columns(
        age=rng.integers(17, 90, 5000).astype(float),  # a smooth column: no value dominates
        many=np.where(zeros, 0.0, rng.integers(1, 1000, 5000)),  # dominated, but ~1,000 values
        y=np.repeat([1.0, 2.0], 2500),
        gain=np.where(zeros, 0.0, rng.integers(1, 50, 5000)),  # dominated by 0, 50 values: coded
    )
    cols["y_value"] = np.zeros(5000)  # the user's own column keeps its name and values
    vc = ValueCodes(["age", "many", "y", "gain"], max_values=200)
    vc.setup(cols)
    assert vc.coded == ["gain"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_values"):
        ValueCodes(["x"], max_values=0)
    with pytest.raises(ValueError, match="min_count"):
        ValueCodes(["x"], min_count=-1)
    with pytest.raises(ValueError, match="min_share"):
        ValueCodes(["x"], min_share=1.5)
    with pytest.raises(TypeError, match="at most 2 numbers"):
        ValueCodes(["x"], values={"x": [1.0, 2.0, 3.0]}, max_values=2)
    with pytest.raises(TypeError, match="a column it codes"):
        ValueCodes(["x"], values={"other": [1.0]})


@pytest.mark.slow
def test_export_keeps_the_codes_and_an_unseen_value_predicts(tmp_path: Path) -> None:
    df = _exact_values().head(1500)
    dls = TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.2, seed=0, bs=64)
    learn = tabular_learner(dls)
    learn.fit_one_cycle(1, 1e-2)
    loaded = load_learner(learn.export(tmp_path / "codes.lamina"))
    rows = df.drop(columns="y").iloc[:40]
    want, _ = learn.get_preds(dl=dls.test_dl(rows))
    got, _ = loaded.get_preds(dl=loaded.dls.test_dl(rows))
    assert torch.allclose(want, got, atol=1e-6)
    assert loaded.predict({"code": 1000, "noise": 0.0})[2].shape == (2,)  # never seen: the reserved code


def test_shown_rows_hold_the_users_columns_not_the_codes() -> None:
    df = _exact_values().head(400)
    dls = TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.2, seed=0, bs=16)
    assert "code_value" in dls.cat_names
    table = dls.valid.show_batch(max_n=4)
    assert list(table.columns) == ["code", "noise", "target"]  # the user's columns, not the codes
    assert set(table["code"]) <= set(df["code"])  # whole numbers decode to themselves, not 53.999996


def test_importance_groups_only_what_the_procs_derived() -> None:
    df = _exact_values().head(600)
    df["noise_value"] = np.where(df["noise"] > 0, "hi", "lo")  # the user's own column, not a derived one
    df.loc[::7, "noise"] = np.nan  # FillMissing adds noise_na: it belongs to noise
    dls = TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.25, seed=0, bs=64)
    assert {"code_value", "noise_na", "noise_value"} <= set(dls.cat_names)
    learn = tabular_learner(dls)
    learn.fit_one_cycle(1, 1e-2)
    assert sorted(feature_importance(learn).index) == ["code", "noise", "noise_value"]
