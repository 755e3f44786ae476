"""Tabular data: column kinds, procs, whole-batch loading checked against a hand-built batch, bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lamina.tabular import (
    NA_LABEL,
    Categorify,
    FillMissing,
    Normalize,
    QuantileNormalize,
    TabularDataLoaders,
    add_datepart,
    plan_columns,
)
from lamina.tabular.procs import Columns, TensorCont


def test_column_kinds_are_inferred_and_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    df = pd.DataFrame(
        {
            "city": ["a", "b", "c", "a"] * 10,
            "flag": [True, False] * 20,
            "rooms": [1, 2, 3, 4] * 10,  # few distinct integers: a category
            "price": np.linspace(0, 1, 40),
            "id": range(40),  # many distinct integers: continuous
            "const": [7.0] * 40,
            "empty": [np.nan] * 40,
            "y": [0.5] * 40,
        }
    )
    plan = plan_columns(df, ["y"])
    assert plan.cat_names == ["city", "flag", "rooms"]
    assert plan.cont_names == ["price", "id", "const"]
    assert "empty" in plan.dropped and "const" in plan.notes
    dls = TabularDataLoaders.from_df(df, y_names="y", seed=0, bs=8)
    dls.summary()
    out = capsys.readouterr().out
    assert "categorical (3): city, flag, rooms" in out and "left out 'empty'" in out and "regression" in out


def test_loader_batch_equals_a_hand_built_batch(toy: pd.DataFrame) -> None:
    """The first validation batch is the hand-processed rows: codes 1.. by sorted vocabulary (0 = missing),
    NaN indicator, training median fill, then (x - mean) / std with the training statistics."""
    valid_idx = list(range(0, 600, 5))
    procs = [
        lambda cats, conts: FillMissing(conts),
        lambda cats, conts: Categorify(cats),
        lambda cats, conts: Normalize(conts),
    ]
    dls = TabularDataLoaders.from_df(toy, y_names="y", valid_idx=valid_idx, bs=16, device="cpu", procs=procs)
    assert dls.cat_names == ["color", "size_na"] and dls.cont_names == ["size", "noise"]
    train = toy.drop(index=valid_idx)
    rows = toy.iloc[valid_idx[:32]]
    vocab = {"blue": 1, "green": 2, "red": 3}
    want_cats = torch.tensor(
        [[vocab[c], 2 if np.isnan(s) else 1] for c, s in zip(rows["color"], rows["size"], strict=True)]
    )
    med = train["size"].median()
    filled = train["size"].fillna(med)
    conts = []
    for s, z in zip(rows["size"].fillna(med), rows["noise"], strict=True):
        conts.append(
            [
                (s - filled.mean()) / filled.std(ddof=0),
                (z - train["noise"].mean()) / train["noise"].std(ddof=0),
            ]
        )
    x_cat, x_cont, y = dls.valid.one_batch()
    assert type(x_cat) is torch.Tensor and x_cat.dtype == torch.int64  # plain tensors reach the model
    assert torch.equal(x_cat, want_cats)
    assert torch.allclose(x_cont, torch.tensor(conts, dtype=torch.float32), atol=1e-5)
    assert y.tolist() == [1 if v == "yes" else 0 for v in rows["y"]]


def test_quantile_normalize_bounds_outliers_keeps_order_and_decodes() -> None:
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.lognormal(0, 1, 990), [1e6] * 10])  # a heavy tail, as AveOccup has
    q = QuantileNormalize(["x"])
    q.setup(Columns(x=heavy))
    new = np.array([-1.0, 0.5, 1.0, 3.0, 1e7])
    z = q(Columns(x=new))["x"]
    assert np.all(np.diff(z) > 0) and np.abs(z).max() < 4  # order kept, a far outlier stays near 3.7
    back = [q.decode(torch.tensor([v], dtype=torch.float32).as_subclass(TensorCont))["x"] for v in z[1:4]]
    assert np.allclose(back, new[1:4], rtol=0.05)
    again = QuantileNormalize(**q.to_config())
    assert np.allclose(again(Columns(x=new))["x"], z)


def test_show_batch_is_a_table_of_original_values(toy: pd.DataFrame) -> None:
    dls = TabularDataLoaders.from_df(toy, y_names="y", valid_pct=0.2, seed=1, bs=16)
    table = dls.valid.show_batch(max_n=4)
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert set(table["color"]) <= {"red", "green", "blue"} and set(table["target"]) <= {"yes", "no"}
    assert table["noise"].between(-5, 5).all()  # un-normalised numbers, not z-scores of z-scores


def test_unseen_and_missing_categories_get_the_reserved_code(toy: pd.DataFrame) -> None:
    dls = TabularDataLoaders.from_df(toy, y_names="y", valid_pct=0.2, seed=0, bs=16)
    new = pd.DataFrame({"color": ["purple", None], "size": [0.3, 0.9], "noise": [0.0, 1.0]})
    x_cat, _ = dls.test_dl(new).one_batch()
    assert x_cat[:, 0].tolist() == [0, 0]
    assert dls.valid.decode_batch((x_cat, torch.zeros(2, 2)), max_n=1)[0][0]["color"] == NA_LABEL


def test_polars_frames_and_parquet_files(toy: pd.DataFrame, tmp_path) -> None:
    pl = pytest.importorskip("polars")
    a = TabularDataLoaders.from_df(pl.from_pandas(toy), y_names="y", valid_pct=0.2, seed=0, bs=32)
    toy.to_parquet(tmp_path / "t.parquet")
    b = TabularDataLoaders.from_csv(tmp_path / "t.parquet", y_names="y", valid_pct=0.2, seed=0, bs=32)
    toy.to_csv(tmp_path / "t.csv", index=False)
    c = TabularDataLoaders.from_csv(tmp_path / "t.csv", y_names="y", valid_pct=0.2, seed=0, bs=32)
    for other in (b, c):
        assert torch.equal(a.valid.one_batch()[0], other.valid.one_batch()[0])


def test_add_datepart() -> None:
    df = pd.DataFrame({"saleDate": ["2021-03-31", "2022-01-01", None]})
    out = add_datepart(df, "saleDate")
    assert "saleDate" not in out and out["saleYear"].tolist()[:2] == [2021, 2022]
    assert out["saleIs_month_end"].tolist()[:2] == [1, 0] and np.isnan(out["saleElapsed"].iloc[2])


def test_date_columns_are_expanded_by_the_loaders_and_at_predict_time() -> None:
    """A datetime column becomes its parts by itself (DateParts, first proc); the same at predict time."""
    rng = np.random.default_rng(0)
    days = pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 730, 400), unit="D")
    df = pd.DataFrame({"saleDate": days, "x": rng.random(400)})
    df["y"] = np.where(df["saleDate"].dt.month <= 6, "first half", "second half")
    dls = TabularDataLoaders.from_df(df, y_names="y", valid_pct=0.2, seed=0, bs=32)
    assert "saleMonth" in dls.cont_names and "saleIs_month_end" in dls.cat_names
    assert dls.plan is not None and dls.plan.date_names == ["saleDate"]
    x_cat, x_cont = dls.test_dl([{"saleDate": pd.Timestamp("2021-03-31"), "x": 0.5}]).one_batch()
    row = dls.valid.decode_batch((x_cat, x_cont), max_n=1)[0]
    assert row[1]["saleMonth"] == pytest.approx(3, abs=0.05) and row[0]["saleIs_month_end"] == "1.0"


# -- bad inputs --------------------------------------------------------------------------------------------
def test_missing_target_values_are_refused_with_the_rows(toy: pd.DataFrame) -> None:
    toy.loc[[3, 8], "y"] = None
    with pytest.raises(
        ValueError, match=r"target column 'y' has 2 missing value\(s\), e.g. at rows \[3, 8\]"
    ):
        TabularDataLoaders.from_df(toy, y_names="y", seed=0)


def test_a_string_in_a_numeric_column_is_named(toy: pd.DataFrame) -> None:
    toy["size"] = toy["size"].astype(object)
    toy.loc[5, "size"] = "big"
    with pytest.raises(
        ValueError, match=r"continuous column 'size' holds 1 value\(s\) that are not numbers.*'big'"
    ):
        TabularDataLoaders.from_df(
            toy, y_names="y", cont_names=["size", "noise"], cat_names=["color"], seed=0
        )


def test_one_row_duplicate_names_single_class_and_absent_columns() -> None:
    with pytest.raises(ValueError, match="has 1 row"):
        TabularDataLoaders.from_df(pd.DataFrame({"a": [1.0], "y": ["x"]}), y_names="y")
    dup = pd.DataFrame([[1.0, 2.0, "a"], [3.0, 4.0, "b"]], columns=["a", "a", "y"])
    with pytest.raises(ValueError, match="duplicate column names"):
        TabularDataLoaders.from_df(dup, y_names="y")
    with pytest.raises(ValueError, match="single class"):
        TabularDataLoaders.from_df(
            pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["x"] * 3}), y_names="y", valid_pct=0
        )
    with pytest.raises(KeyError, match="'income'"):
        TabularDataLoaders.from_df(pd.DataFrame({"a": [1.0, 2.0], "y": ["x", "z"]}), y_names="income")


def test_a_missing_column_at_predict_time_is_named(toy: pd.DataFrame) -> None:
    dls = TabularDataLoaders.from_df(toy, y_names="y", seed=0)
    with pytest.raises(KeyError, match=r"\['noise'\] missing"):
        dls.test_dl(pd.DataFrame({"color": ["red"], "size": [0.2]}))


def test_ten_thousand_columns() -> None:
    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.random((40, 10_000)), columns=[f"c{i}" for i in range(10_000)])
    wide["y"] = rng.choice(["a", "b"], 40)
    dls = TabularDataLoaders.from_df(wide, y_names="y", seed=0, bs=8)
    x_cat, x_cont, _ = dls.train.one_batch()
    assert x_cont.shape == (8, 10_000) and x_cat.shape == (8, 0)


def test_custom_splits_with_the_data_block_splitters(toy: pd.DataFrame) -> None:
    from lamina.data import TrainTestSplitter

    toy["is_valid"] = np.arange(600) % 4 == 0
    dls = TabularDataLoaders.from_df(toy, y_names="y", valid_col="is_valid", bs=16)
    assert len(dls.valid.dataset) == 150 and "is_valid" not in dls.cat_names + dls.cont_names
    strat = TrainTestSplitter(0.25, seed=0, stratify=list(toy["y"]))
    dls = TabularDataLoaders.from_df(toy.drop(columns="is_valid"), y_names="y", splitter=strat, bs=16)
    share = float(dls.valid.dataset.ys.float().mean())  # type: ignore[attr-defined]
    assert abs(share - (toy["y"] == "yes").mean()) < 0.02  # the classes keep their proportions


def test_a_table_file_over_the_size_bound_is_refused_before_reading(toy: pd.DataFrame, tmp_path) -> None:
    toy.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="over max_bytes=1000"):
        TabularDataLoaders.from_csv(tmp_path / "t.csv", y_names="y", max_bytes=1000)
    assert len(TabularDataLoaders.from_csv(tmp_path / "t.csv", y_names="y", seed=0).train.dataset) == 480
