"""collab_learner and CollabLearner: a Learner over rating data that also recommends.

`CollabLearner` adds queries on the learned factors (`recommend`, `similar_items`,
`plot_item_factors`); it changes nothing in the training loop. A learner from `load_learner` becomes one
with `CollabLearner.from_learner(learn)` (or `load_collab_learner(path)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lamina.collab.autorec import ItemAutoRec
from lamina.collab.block import collab_meta, fill_rating_stats, training_ratings
from lamina.collab.data import CollabDataLoaders, CollabMeta
from lamina.collab.ensemble import MembersMSE, collab_ensemble
from lamina.collab.models import emb_sz_rule, embedding_dot_bias, embedding_nn
from lamina.collab.recommend import plot_item_factors, recommend, similar_items
from lamina.data import DataLoaders
from lamina.train import Callback, Learner, load_learner, rmse
from lamina.train.optim import OptFactory, adamw

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_WD", "CollabLearner", "collab_learner", "load_collab_learner"]

# decoupled weight decay of the default fit; see README "Collaborative filtering" for the measurements
DEFAULT_WD = 0.15


class CollabLearner(Learner):
    """A Learner whose data are CollabDataLoaders: trains as any Learner, and answers top-k queries."""

    @property
    def meta(self) -> CollabMeta:
        """The data's vocabularies, names and training pairs (CollabDataLoaders' or a UserItemBlock's)."""
        return collab_meta(self.dls)

    @classmethod
    def from_learner(cls, learn: Learner) -> CollabLearner:
        """The same data, model and loss as a CollabLearner (e.g. for a learner from `load_learner`)."""
        out = cls(learn.dls, learn.model, loss_func=learn.loss_func, lr=learn.lr, wd=learn.wd)
        out.model.eval()
        return out

    def recommend(self, user: Any, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The `k` items with the highest predicted rating for `user` (an id, or a list of ids), best
        first, leaving out what the user rated in training (`exclude_seen`); see `recommend`."""
        return recommend(self.model, self.meta, user, k=k, exclude_seen=exclude_seen)

    def similar_items(self, item: Any, k: int = 10) -> pd.DataFrame:
        """The `k` items closest to `item` in the learned factors (cosine similarity)."""
        return similar_items(self.model, self.meta, item, k=k)

    def plot_item_factors(self, n: int = 50, figsize: tuple[float, float] = (14, 6)) -> Figure:
        """Item biases and a 2-D projection of the factors of the `n` most-rated items, with titles."""
        return plot_item_factors(self.model, self.meta, n=n, figsize=figsize)


def _sizes(
    m: CollabMeta, emb_szs: dict[str, int] | Sequence[int] | None, default: int | None
) -> tuple[int, int]:
    """(user width, item width) from `emb_szs` (by column name or as a pair), else `default` or the rule."""
    if emb_szs is None:
        if default is not None:
            return default, default
        return emb_sz_rule(m.n_users), emb_sz_rule(m.n_items)
    if isinstance(emb_szs, dict):
        unknown = set(emb_szs) - {m.user_name, m.item_name}
        if unknown:
            raise KeyError(
                f"collab_learner: emb_szs names {sorted(unknown)}; the columns are {m.user_name!r} and "
                f"{m.item_name!r}.\nhelp: e.g. emb_szs={{{m.user_name!r}: 40, {m.item_name!r}: 60}}"
            )
        fallback = _sizes(m, None, default)
        pair = (emb_szs.get(m.user_name, fallback[0]), emb_szs.get(m.item_name, fallback[1]))
    else:
        pair = tuple(emb_szs)  # type: ignore[assignment]
        if len(pair) != 2:
            raise ValueError(f"collab_learner: emb_szs={emb_szs!r}; expected (user width, item width)")
    if not all(type(v) is int and v >= 1 for v in pair):
        raise ValueError(f"collab_learner: emb_szs={emb_szs!r}; widths must be positive integers")
    return pair[0], pair[1]


def collab_learner(
    dls: CollabDataLoaders | DataLoaders,
    n_factors: int = 50,
    use_nn: bool = False,
    autorec: int | None = 200,
    emb_szs: dict[str, int] | Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    ps: Sequence[float] | None = None,
    y_range: tuple[float, float] | None = None,
    loss_func: Callable[..., torch.Tensor] | None = None,
    metrics: Any = None,
    cbs: Callback | Sequence[Callback] = (),
    lr: float = 5e-3,
    wd: float = DEFAULT_WD,
    opt_func: OptFactory = adamw,
    path: str | Path = ".",
) -> CollabLearner:
    """A CollabLearner with an `EmbeddingDotBias` (or, with `use_nn`, an `EmbeddingNN`) averaged with an
    `ItemAutoRec` of `autorec` hidden units, each trained on its own error; `autorec=None`: the first alone.

    The mean is the default because it is measurably better (MovieLens 100k RMSE 0.893 against 0.907 for
    the dot product alone; README "Collaborative filtering").

    Embedding widths: `emb_szs` ({column: width} or (user, item)) in both models; the dot product needs
    one width for both, `n_factors` by default. The NN defaults to fastai's size rule and `layers=[100]`.
    `y_range` defaults to the data's (the ratings' range, widened a little). `metrics` defaults to rmse.

    >>> learn = collab_learner(dls)                       # doctest: +SKIP
    >>> learn.fit_one_cycle(5, 5e-3)                      # doctest: +SKIP
    >>> learn.recommend(196, k=10)                        # doctest: +SKIP
    """
    m = collab_meta(dls)
    fill_rating_stats(dls, m)  # DataBlock data: the ratings' range and mean, from one pass
    yr = list(y_range if y_range is not None else m.y_range)
    _check_y_range(dls, yr)
    name, kwargs = _base_recipe(m, use_nn, n_factors, emb_szs, layers, ps, yr)
    model: nn.Module
    if autorec is None:
        model = (embedding_nn if use_nn else embedding_dot_bias)(**kwargs)
    else:
        if loss_func is not None:
            raise ValueError(
                "collab_learner: with autorec (the default ensemble) the model returns one prediction per "
                "member while training, which a custom loss_func does not expect.\n"
                "help: pass autorec=None to train one model with your loss"
            )
        x, y = training_ratings(dls)
        ae: dict[str, Any] = {
            "n_users": m.n_users,
            "n_items": m.n_items,
            "n_ratings": len(x),
            "hidden": autorec,
        }
        ae |= {"y_range": yr, "mean": m.rating_mean}
        model = collab_ensemble(
            [{"model": name, "kwargs": kwargs}, {"model": "collab.item_autorec", "kwargs": ae}]
        )
        member = model.members[1]
        assert isinstance(member, ItemAutoRec)
        member.set_ratings(x, y)
        loss_func = MembersMSE()
    return CollabLearner(
        dls,
        model,
        loss_func=loss_func,
        opt_func=opt_func,
        lr=lr,
        wd=wd,
        metrics=[rmse] if metrics is None else metrics,
        cbs=cbs,
        path=path,
    )


def _base_recipe(
    m: CollabMeta,
    use_nn: bool,
    n_factors: int,
    emb_szs: dict[str, int] | Sequence[int] | None,
    layers: Sequence[int] | None,
    ps: Sequence[float] | None,
    yr: list[float],
) -> tuple[str, dict[str, Any]]:
    """The registered name and JSON kwargs of the dot-product or MLP model collab_learner was asked for."""
    if use_nn:
        user_sz, item_sz = _sizes(m, emb_szs, None)
        kwargs: dict[str, Any] = {"n_users": m.n_users, "n_items": m.n_items, "user_sz": user_sz}
        kwargs |= {"item_sz": item_sz, "layers": list(layers) if layers is not None else [100]}
        kwargs |= {"ps": list(ps) if ps is not None else None, "y_range": yr, "mean": m.rating_mean}
        return "collab.embedding_nn", kwargs
    if layers is not None or ps is not None:
        raise ValueError(
            "collab_learner: layers= and ps= describe the MLP of use_nn=True; the dot-product model has "
            "none.\nhelp: pass use_nn=True, or drop layers/ps"
        )
    user_sz, item_sz = _sizes(m, emb_szs, n_factors)
    if user_sz != item_sz:
        raise ValueError(
            f"collab_learner: emb_szs gives users {user_sz} and items {item_sz} factors; a dot product "
            "needs the same number for both.\nhelp: give one width (n_factors=...), or use_nn=True"
        )
    kwargs = {"n_users": m.n_users, "n_items": m.n_items, "n_factors": user_sz}
    return "collab.embedding_dot_bias", kwargs | {"y_range": yr, "mean": m.rating_mean}


def _check_y_range(dls: DataLoaders, yr: list[float]) -> None:
    """Refuse a y_range that the training ratings fall outside of (the sigmoid could never reach them)."""
    if not (len(yr) == 2 and yr[0] < yr[1]):
        raise ValueError(f"collab_learner: y_range={yr}; expected (lo, hi) with lo < hi")
    r = getattr(dls.train.dataset, "y", None) if isinstance(dls, CollabDataLoaders) else None
    if isinstance(r, torch.Tensor) and len(r) and (float(r.min()) < yr[0] or float(r.max()) > yr[1]):
        raise ValueError(
            f"collab_learner: the training ratings span [{float(r.min()):g}, {float(r.max()):g}], outside "
            f"y_range=({yr[0]:g}, {yr[1]:g}); the model could never predict them.\n"
            "help: widen y_range, or leave it out to use the data's"
        )


def load_collab_learner(path: str | Path, cpu: bool = True) -> CollabLearner:
    """`load_learner` for a collab export, as a CollabLearner (recommend, similar_items, ...)."""
    learn = load_learner(path, cpu=cpu)
    try:
        collab_meta(learn.dls)
    except TypeError:
        raise TypeError(
            f"load_collab_learner: {str(path)!r} holds a learner that is not a collaborative-filtering one.\n"
            "help: use load_learner for other exports"
        ) from None
    _check_sizes(learn.model, collab_meta(learn.dls), str(path))
    return CollabLearner.from_learner(learn)


def _check_sizes(model: nn.Module, meta: CollabMeta, where: str) -> None:
    """The vocabularies must have one entry per embedding row (a file edited by hand may not)."""
    for part in model.modules():
        for what, emb, n in (
            ("users", "u_weight", meta.n_users),
            ("items", "i_weight", meta.n_items),
            ("items", "i_bias", meta.n_items),
        ):
            table = getattr(part, emb, None)
            rows = getattr(table, "num_embeddings", n)
            if rows != n:
                raise ValueError(
                    f"load_collab_learner: {where!r} has {n} {what} in its vocabulary but the model has "
                    f"{rows} embedding rows for them.\nhelp: the file was modified; export the learner again"
                )
