"""tabular_learner: a Learner for a table, sized from the data; permutation feature importance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from lamina.tabular.data import TabularDataLoaders, TabularTable
from lamina.tabular.model import emb_sz_rule, tabular_model
from lamina.train import Learner, adamw

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["feature_importance", "plot_feature_importance", "tabular_learner"]


def tabular_learner(
    dls: TabularDataLoaders,
    layers: Sequence[int] | None = None,
    emb_szs: dict[str, int] | None = None,
    ps: float = 0.0,
    embed_p: float = 0.0,
    y_range: tuple[float, float] | None = None,
    metrics: Any = (),
    wd: float = 0.01,
    cbs: Any = (),
    opt_func: Callable[..., torch.optim.Optimizer] = adamw,
    lr: float = 1e-3,
    cont_emb: int = 16,
) -> Learner:
    """A Learner with an entity-embedding MLP for `dls`: outputs, loss and decoding come from the target
    (classes, values or labels); `emb_szs` overrides the width of some columns' embeddings; `cont_emb`
    is the width of each continuous column's periodic embedding (0: the raw value)."""
    if not isinstance(dls, TabularDataLoaders):
        raise TypeError(
            f"tabular_learner: expected TabularDataLoaders, got {type(dls).__name__}.\n"
            "help: build them with TabularDataLoaders.from_df(df, y_names=...)"
        )
    cards = dls.cardinalities
    unknown = sorted(set(emb_szs or {}) - set(dls.cat_names))
    if unknown:
        raise KeyError(
            f"tabular_learner: emb_szs names non-categorical columns {unknown}.\nhelp: use {dls.cat_names}"
        )
    dims = [int((emb_szs or {}).get(c, emb_sz_rule(n))) for c, n in zip(dls.cat_names, cards, strict=True)]
    target = dls.processing.target
    y_stats = None
    if target.kind == "regression" and y_range is None:
        ys = dls.train.dataset.ys.float()  # type: ignore[attr-defined]
        y_stats = [float(ys.mean()), float(ys.std()) if len(ys) > 1 and float(ys.std()) > 0 else 1.0]
    model = tabular_model(
        cardinalities=cards,
        emb_dims=dims,
        n_cont=len(dls.cont_names),
        n_out=int(dls.c or 1),
        layers=list(layers) if layers is not None else [200, 100],
        ps=ps,
        embed_p=embed_p,
        y_range=[float(y_range[0]), float(y_range[1])] if y_range is not None else None,
        y_stats=y_stats,
        cont_emb=cont_emb,
    )
    return Learner(dls, model, opt_func=opt_func, lr=lr, metrics=metrics, wd=wd, cbs=cbs)


def feature_importance(learn: Learner, metric: str | None = None, seed: int = 0) -> pd.Series:
    """How much each input column matters: the validation loss (or `metric`) after shuffling that column
    (with its derived `_na` / `_value` parts), minus the loss intact, largest first (validation set)."""
    dls = learn.dls
    if not isinstance(dls, TabularDataLoaders):
        raise TypeError("feature_importance: the learner's data is not a table (TabularDataLoaders)")
    table = dls.valid.dataset
    if not isinstance(table, TabularTable) or len(table) == 0:
        raise ValueError(
            "feature_importance: the validation set is empty.\nhelp: build the data with valid_pct > 0"
        )
    base = _score(learn, dls.valid, metric)
    g = torch.Generator().manual_seed(seed)
    out = {}
    owners = {k: v for p in dls.processing.procs for k, v in p.derived().items()}
    for name, parts in _column_groups(dls.cat_names, dls.cont_names, owners).items():
        perm = torch.randperm(len(table), generator=g)
        cats, conts = table.cats.clone(), table.conts.clone()
        for is_cat, k in parts:  # a column and what the procs derived from it move together
            src, dst = (table.cats, cats) if is_cat else (table.conts, conts)
            dst[:, k] = src[perm, k]
        out[name] = (
            _score(learn, dls.valid.new(dataset=TabularTable(cats, conts, table.ys, table.y_type)), metric)
            - base
        )
    return pd.Series(out, name="importance").sort_values(ascending=False)


def _column_groups(
    cat_names: list[str], cont_names: list[str], owners: dict[str, str]
) -> dict[str, list[tuple[bool, int]]]:
    """Each input column as the user named it -> its (is categorical, position) parts: a column the procs
    derived from another (`owners`: `<col>_na`, `<col>_value` -> `<col>`) belongs to it."""
    groups: dict[str, list[tuple[bool, int]]] = {}
    for k, name in enumerate(cat_names):
        groups.setdefault(owners.get(name, name), []).append((True, k))
    for k, name in enumerate(cont_names):
        groups.setdefault(name, []).append((False, k))
    return groups


def _score(learn: Learner, dl: Any, metric: str | None) -> float:
    res = learn.validate(dl=dl)
    key = metric or "valid_loss"
    if key not in res:
        raise KeyError(f"feature_importance: no {key!r} in the validation results {sorted(res)}")
    val = float(res[key])
    # a metric where higher is better: a drop is the importance
    return -val if metric is not None and key != "valid_loss" else val


def plot_feature_importance(importance: pd.Series, max_n: int = 20) -> Figure:
    """A horizontal bar plot of the `max_n` most important columns."""
    import matplotlib.pyplot as plt

    top = importance.iloc[:max_n][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(top) + 1))
    ax.barh(top.index.astype(str), top.to_numpy())
    ax.set_xlabel("increase in validation loss when shuffled")
    fig.tight_layout()
    return fig
