"""Collab suite: MovieLens 100k, random 20% validation (seed 42), side by side in one run.

- `plain`: the same model (collab_learner's default: the dot product and the item autoencoder, same initial
  weights, each member on its own squared error) trained by a plain loop: contiguous index tensors,
  `randperm` batches of 64, torch's AdamW (lamina's betas 0.9/0.99, eps 1e-5, the same weight decay) and
  `OneCycleLR` set to lamina's 1cycle; validation RMSE after every epoch.
- `lamina`: the four-line path: `CollabDataLoaders.from_df(..., seed=42)`, `collab_learner(dls)`,
  `fit_one_cycle(5, 5e-3)` with the default callbacks and metric (rmse).
- `lamina-dot`: the same with `autorec=None`: the dot product alone (fastai's model), for its RMSE.
- `surprise-svd`: scikit-surprise's SVD with its defaults on the same split, where it is installed.

Figures: seconds per epoch (train + validation; the ratio to `plain` is the loop's overhead), the final
validation RMSE, and the seconds `recommend` takes for all 943 users at once (top 10, seen items out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

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
    seconds,
)

__all__ = ["CollabConfig", "run_suite"]


@dataclass(frozen=True)
class CollabConfig:
    epochs: int = 5
    lr: float = 5e-3
    bs: int = 64
    max_rows: int | None = None  # a subset, for --quick
    seed: int = 42


def _data(cfg: CollabConfig) -> Any:
    import pandas as pd

    from lamina.collab import CollabDataLoaders
    from lamina.data.samples import movielens_100k

    paths = movielens_100k()
    ratings = pd.read_parquet(paths["ratings"])
    if cfg.max_rows is not None:
        ratings = ratings.head(cfg.max_rows)
    items = pd.read_parquet(paths["items"])
    return CollabDataLoaders.from_df(
        ratings,
        user_name="user_id",
        item_name="movie_id",
        rating_name="rating",
        title_name="movie_title",
        items=items,
        seed=cfg.seed,
        bs=cfg.bs,
        device="cpu",
    )


def _model(dls: Any) -> Any:
    from lamina.collab import collab_learner

    torch.manual_seed(0)
    return collab_learner(dls).model


def _members_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's squared error, averaged (what MembersMSE computes), written out for the plain loop."""
    return ((pred - y[:, None]) ** 2).mean() if pred.ndim == 2 else F.mse_loss(pred, y)


def plain_run(dls: Any, cfg: CollabConfig) -> Sample:
    from lamina.collab import DEFAULT_WD

    tr, va = dls.train.dataset, dls.valid.dataset
    model = _model(dls)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=DEFAULT_WD
    )
    n_batches = len(tr) // cfg.bs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr,
        total_steps=cfg.epochs * n_batches,
        pct_start=0.25,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e5 / 25.0,
        base_momentum=0.85,
        max_momentum=0.95,
    )
    g = torch.Generator().manual_seed(1)
    rmse = math.nan
    t0 = seconds()
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(tr), generator=g)
        for b in range(n_batches):
            idx = perm[b * cfg.bs : (b + 1) * cfg.bs]
            loss = _members_mse(model(tr.x[idx]), tr.y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        model.eval()
        with torch.no_grad():
            sq = sum(
                float(((model(va.x[s : s + 2 * cfg.bs]) - va.y[s : s + 2 * cfg.bs]) ** 2).sum())
                for s in range(0, len(va), 2 * cfg.bs)
            )
        rmse = math.sqrt(sq / len(va))
    elapsed = seconds() - t0
    return Sample(elapsed / cfg.epochs, {"rmse": rmse})


def lamina_run(dls: Any, cfg: CollabConfig, autorec: int | None = 200) -> Sample:
    from lamina.collab import collab_learner

    torch.manual_seed(0)
    learn = collab_learner(dls, autorec=autorec)
    t0 = seconds()
    with quiet():
        learn.fit_one_cycle(cfg.epochs, cfg.lr)
    elapsed = seconds() - t0
    rmse = float(learn.recorder.values[-1][2])
    t1 = seconds()
    recs = learn.recommend(dls.meta.users[1:], k=10)
    rec_s = seconds() - t1
    return Sample(elapsed / cfg.epochs, {"rmse": rmse, "recommend_all_users_s": rec_s, "rec_rows": len(recs)})


def surprise_run(dls: Any, cfg: CollabConfig) -> Sample:
    import pandas as pd
    from surprise import SVD, Dataset, Reader, accuracy

    def frame(ds: Any, raw_users: list[Any], raw_items: list[Any]) -> pd.DataFrame:
        return pd.DataFrame({"u": raw_users, "i": raw_items, "r": ds.y.tolist()})

    m = dls.meta
    tr, va = dls.train.dataset, dls.valid.dataset
    train_df = frame(tr, [m.users[u] for u in tr.x[:, 0].tolist()], [m.items[i] for i in tr.x[:, 1].tolist()])
    lo, hi = float(tr.y.min()), float(tr.y.max())
    trainset = Dataset.load_from_df(train_df, Reader(rating_scale=(lo, hi))).build_full_trainset()
    # rows of users/items unseen in training get an id Surprise does not know (it predicts the mean)
    va_users = [m.users[u] if u else f"unseen-{k}" for k, u in enumerate(va.x[:, 0].tolist())]
    va_items = [m.items[i] if i else f"unseen-{k}" for k, i in enumerate(va.x[:, 1].tolist())]
    testset = list(zip(va_users, va_items, va.y.tolist(), strict=True))
    algo = SVD(random_state=0)
    t0 = seconds()
    algo.fit(trainset)
    preds = algo.test(testset)
    elapsed = seconds() - t0
    with quiet():
        rmse = accuracy.rmse(preds, verbose=False)
    return Sample(elapsed / 20, {"rmse": float(rmse)})  # SVD's 20 epochs (seconds per epoch)


def run_suite(opts: Options) -> SuiteResult:
    suite = SuiteResult("collab")
    cfg = CollabConfig(epochs=1, max_rows=10_000) if opts.quick else CollabConfig()
    log("collab: MovieLens 100k, random 20% validation (seed 42)")
    optional_import("torchmetrics")  # the rmse metric's one-off import (~2.5 s) stays out of the timings
    dls = _data(cfg)
    result = ConfigResult(
        f"movielens100k-{cfg.epochs}ep",
        "s/epoch",
        lower_is_better=True,
        baseline="plain",
        params={
            "train_ratings": len(dls.train.dataset),
            "valid_ratings": len(dls.valid.dataset),
            "epochs": cfg.epochs,
            "bs": cfg.bs,
            "lr": cfg.lr,
            "model": "EmbeddingDotBias(n_factors=50) + ItemAutoRec(hidden=200), y_range=(0, 5.5)",
            "threads": torch.get_num_threads(),
        },
    )
    contenders = [
        Contender("plain", partial(plain_run, dls, cfg)),
        Contender("lamina", partial(lamina_run, dls, cfg)),
        Contender("lamina-dot", partial(lamina_run, dls, cfg, None)),
    ]
    if optional_import("surprise") is not None:
        contenders.append(Contender("surprise-svd", partial(surprise_run, dls, cfg), optional=True))
    else:
        suite.note("scikit-surprise not installed: no Surprise SVD column (pip install scikit-surprise)")
    result.notes.append("value: seconds per epoch (train + validation); extra: final validation rmse")
    result.notes.append("lamina's recommend_all_users_s: top 10 for every training user at once (CPU)")
    interleave(result, contenders, reps=opts.n_reps(full=2, quick=1), warmup=0)
    suite.configs.append(result)
    return suite
