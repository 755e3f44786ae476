"""Top-k recommendations, similar items and the item-factor picture, from a trained collab model.

Every function takes the model and the data's `CollabMeta` (what an export keeps), so a loaded learner
recommends as the one that was trained. Scores are the model's predicted ratings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lamina.collab.data import CollabMeta

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["item_scores", "plot_item_factors", "recommend", "similar_items"]

_USERS_PER_CHUNK = 4096  # users scored at once: (4096, n_items) floats


def item_scores(model: nn.Module, users: Tensor) -> Tensor:
    """Predicted ratings (U, n_items) of every item for user indices `users` (U,), in eval mode."""
    scores = getattr(model, "scores", None)
    if not callable(scores):
        raise TypeError(
            f"recommend: the model {type(model).__name__} has no scores(users) method.\n"
            "help: use collab_learner's EmbeddingDotBias or EmbeddingNN, or give your model scores(users)"
        )
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return scores(users)
    finally:
        model.train(was)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_k(k: int, who: str) -> None:
    if type(k) is not int or k < 1:
        raise ValueError(f"{who}: k={k!r}; expected a positive integer.\nhelp: e.g. k=10")


def recommend(
    model: nn.Module,
    meta: CollabMeta,
    users: Any,
    k: int = 10,
    exclude_seen: bool = True,
) -> pd.DataFrame:
    """The `k` items with the highest predicted rating for each user, as a table (user, rank, item,
    title, score), best first.

    `users`: one id or a list of ids. An id unseen in training gets the recommendations of the reserved
    unknown user (for the dot model: the items with the highest bias, i.e. the best-liked on average).
    `exclude_seen` leaves out the items each user rated in training.
    """
    import pandas as pd

    _check_k(k, "recommend")
    many = isinstance(users, list | tuple) or getattr(users, "ndim", 0) > 0  # a list, array or Series
    keys = list(users.tolist() if hasattr(users, "tolist") else users) if many else [users]
    if exclude_seen and meta.seen is None:
        raise ValueError(
            "recommend: this learner does not know which items each user rated in training (the export "
            "left them out: too many ratings).\nhelp: pass exclude_seen=False"
        )
    idx = torch.tensor([meta.user_index(u) for u in keys], dtype=torch.int64)
    k_eff = min(k, meta.n_items - 1)
    device = _device(model)
    top_items, top_scores = [], []
    for start in range(0, len(idx), _USERS_PER_CHUNK):
        chunk = idx[start : start + _USERS_PER_CHUNK]
        s = item_scores(model, chunk.to(device)).float().cpu()  # (U, n_items)
        s[:, 0] = -torch.inf  # the reserved unknown item is never recommended
        if exclude_seen and meta.seen is not None:
            rows = [torch.full((len(meta.seen[int(u)]),), r) for r, u in enumerate(chunk)]
            cols = [torch.tensor(meta.seen[int(u)], dtype=torch.int64) for u in chunk]
            if rows:
                s[torch.cat(rows), torch.cat(cols)] = -torch.inf
        v, i = s.topk(k_eff, dim=1)
        top_items.append(i)
        top_scores.append(v)
    items = torch.cat(top_items) if top_items else torch.zeros((0, k_eff), dtype=torch.int64)
    scores = torch.cat(top_scores) if top_scores else torch.zeros((0, k_eff))
    keep = torch.isfinite(scores)  # a user who rated nearly everything has fewer than k left
    u_pos = torch.arange(len(keys)).unsqueeze(1).expand_as(items)[keep].tolist()
    ranks = torch.arange(1, k_eff + 1).expand_as(items)[keep].tolist()
    it = items[keep].tolist()
    table: dict[str, Any] = {
        meta.user_name: [keys[p] for p in u_pos],
        "rank": ranks,
        meta.item_name: [meta.items[j] for j in it],
    }
    if meta.titles is not None:
        table["title"] = [meta.titles[j] for j in it]
    table["score"] = scores[keep].tolist()
    return pd.DataFrame(table)


def _factors(model: nn.Module) -> Tensor:
    f = getattr(model, "item_factors", None)
    if not callable(f):
        raise TypeError(
            f"similar_items: the model {type(model).__name__} has no item_factors() method.\n"
            "help: use collab_learner's EmbeddingDotBias or EmbeddingNN"
        )
    return f().detach().float().cpu()


def similar_items(model: nn.Module, meta: CollabMeta, item: Any, k: int = 10) -> pd.DataFrame:
    """The `k` items whose factors are closest (cosine similarity) to `item`'s, as a table (rank, item,
    title, similarity). An item unseen in training has no factors: a KeyError says so."""
    import pandas as pd

    _check_k(k, "similar_items")
    j = meta.item_index(item)
    if j == 0:
        raise KeyError(
            f"similar_items: item {item!r} was not in the training data, so it has no learned factors.\n"
            f"help: pick an item id from dls.classes[{meta.item_name!r}]"
        )
    f = torch.nn.functional.normalize(_factors(model), dim=1)  # (n_items, n_factors)
    sim = f @ f[j]  # (n_items,)
    sim[0] = -torch.inf
    sim[j] = -torch.inf
    v, i = sim.topk(min(k, meta.n_items - 2))
    out: dict[str, Any] = {
        "rank": list(range(1, len(i) + 1)),
        meta.item_name: [meta.items[x] for x in i.tolist()],
    }
    if meta.titles is not None:
        out["title"] = [meta.titles[x] for x in i.tolist()]
    out["similarity"] = v.tolist()
    return pd.DataFrame(out)


def plot_item_factors(
    model: nn.Module, meta: CollabMeta, n: int = 50, figsize: tuple[float, float] = (14, 6)
) -> Figure:
    """The item-factor picture for the `n` most-rated items: their biases (lowest and highest, when the
    model has biases) and their factors projected on the first two principal components, with titles."""
    import matplotlib.pyplot as plt

    _check_k(n, "plot_item_factors")
    counts = torch.tensor(meta.item_counts or [0] * meta.n_items)
    counts[0] = -1
    top = counts.argsort(descending=True)[: min(n, meta.n_items - 1)]
    biases_fn = getattr(model, "item_biases", None)
    biases = biases_fn() if callable(biases_fn) else None
    ncols = 2 if biases is not None else 1
    fig, axs = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    labels = [meta.item_label(int(j))[:40] for j in top]
    if biases is not None:
        b = biases.detach().float().cpu()[top]
        order = b.argsort()
        shown = torch.cat([order[:10], order[-10:]]) if len(order) > 20 else order
        ax = axs[0, 0]
        ax.barh(range(len(shown)), b[shown].tolist())
        ax.set_yticks(range(len(shown)), [labels[int(s)] for s in shown], fontsize=7)
        ax.set_title(f"item biases: lowest and highest of the {len(top)} most-rated")
    f = _factors(model)[top]
    f = f - f.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(f, full_matrices=False)
    xy = f @ v[:2].T  # (n, 2): the first two principal components
    ax = axs[0, ncols - 1]
    ax.scatter(xy[:, 0].tolist(), xy[:, 1].tolist(), s=8)
    for (x, y), lbl in zip(xy.tolist(), labels, strict=True):
        ax.annotate(lbl, (x, y), fontsize=6)
    ax.set_title(f"item factors: first two principal components ({len(top)} most-rated items)")
    fig.tight_layout()
    return fig
