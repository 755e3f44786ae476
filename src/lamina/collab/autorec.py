"""An item autoencoder in the AutoRec spirit: an item's code is computed from who rated it and how.

code(i) = sigmoid(sum over i's raters u' of (r_u'i - mean) V[u'] + sum of V'[u'] / sqrt(n_i) + c)
rating(u, i) = W[u] . code(i) + b_u + b_i + b

The raters are the training ratings, held in the model as buffers (so an export predicts alone). Training
leaves the pair's own rating out of its item's code (the target never feeds its prediction), so the model
learns what it is later asked: a rating it has not seen. It is the second member of collab_learner's default
ensemble: its errors differ from the dot product's, and their mean beats either (see benchmarks/collab.py).
Its cost per batch grows with the number of ratings of the batch's items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lamina.collab.models import MAX_EMBEDDINGS, check_n, check_y_range
from lamina.core import register_model

__all__ = ["MAX_RATINGS", "ItemAutoRec", "item_autorec"]

MAX_RATINGS = 2_000_000_000  # training ratings an export may say it holds
_MAX_HIDDEN = 4096


class ItemAutoRec(nn.Module):
    """Ratings from item codes built out of each item's training ratings (leave-one-out while training).

    Index 0 is the reserved unknown user or item: an unknown user gets the item's bias (its learned mean),
    an unknown item, which has no raters, a per-user constant. Predictions are clamped to `y_range` in eval.
    """

    raters: Tensor
    ratings: Tensor
    counts: Tensor

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_ratings: int,
        hidden: int = 200,
        y_range: tuple[float, float] | None = None,
        mean: float = 0.0,
    ) -> None:
        super().__init__()
        self.v_rating = nn.EmbeddingBag(n_users, hidden, mode="sum")
        self.v_rated = nn.EmbeddingBag(n_users, hidden, mode="sum")
        self.code_bias = nn.Parameter(torch.zeros(hidden))
        self.u_weight = nn.Embedding(n_users, hidden, padding_idx=0)
        self.u_bias = nn.Embedding(n_users, 1, padding_idx=0)
        self.i_bias = nn.Embedding(n_items, 1, padding_idx=0)
        self.bias = nn.Parameter(torch.tensor(float(mean)))
        # the training ratings, grouped by item: raters[k] rated its item with ratings[k]
        self.register_buffer("raters", torch.zeros(n_ratings, dtype=torch.long))
        self.register_buffer("ratings", torch.zeros(n_ratings))
        self.register_buffer("counts", torch.zeros(n_items, dtype=torch.long))
        self.y_range, self.mean = y_range, float(mean)
        with torch.no_grad():
            for e in (self.v_rating, self.v_rated, self.u_weight):
                nn.init.normal_(e.weight, std=0.01)
            self.u_weight.weight[0].zero_()
            self.u_bias.weight.zero_()
            self.i_bias.weight.zero_()

    def set_ratings(self, x: Tensor, y: Tensor) -> None:
        """Keep the training ratings (`x` (N, 2) user and item indices, `y` (N,)) that the codes read."""
        if x.ndim != 2 or x.shape[1] != 2 or y.shape != (len(x),) or len(x) != len(self.raters):
            raise ValueError(
                f"ItemAutoRec.set_ratings: got x {tuple(x.shape)} and y {tuple(y.shape)}; the model was "
                f"built for {len(self.raters)} ratings.\nhelp: pass its training ratings"
            )
        users, items = x[:, 0].long().cpu(), x[:, 1].long().cpu()
        n_users, n_items = self.u_weight.num_embeddings, len(self.counts)
        if len(x) and (int(users.max()) >= n_users or int(items.max()) >= n_items or int(x.min()) < 0):
            raise ValueError("ItemAutoRec.set_ratings: an index is outside the vocabularies")
        order = torch.argsort(items * n_users + users)
        dev = self.raters.device
        self.raters.copy_(users[order].to(dev))
        self.ratings.copy_(y.float().cpu()[order].to(dev))
        self.counts.copy_(torch.bincount(items, minlength=n_items).to(dev))

    def codes(self, items: Tensor, leave_out: Tensor | None = None) -> Tensor:
        """(B,) item indices -> (B, hidden) codes; `leave_out` (B,) users whose own rating is skipped."""
        counts = self.counts[items]  # (B,)
        ends = self.counts.cumsum(0)
        starts = (ends - self.counts)[items]  # (B,) where each item's raters begin
        bag = torch.repeat_interleave(torch.arange(len(items), device=items.device), counts)  # (E,)
        offsets = counts.cumsum(0) - counts  # (B,) where each bag begins among the E entries
        pos = torch.arange(len(bag), device=items.device) - offsets[bag] + starts[bag]
        users = self.raters[pos]  # (E,)
        keep = torch.ones(len(bag), device=items.device)
        if leave_out is not None:
            keep = (users != leave_out[bag]).to(keep.dtype)
        left_out = keep.new_zeros(len(items)).index_add_(0, bag, 1 - keep)  # (B,) 1 where a pair was skipped
        n = (counts.to(keep.dtype) - left_out).clamp(min=1)
        w_rating = (self.ratings[pos] - self.mean) * keep
        w_rated = keep / n.sqrt()[bag]
        h = self.v_rating(users, offsets, per_sample_weights=w_rating)
        h = h + self.v_rated(users, offsets, per_sample_weights=w_rated) + self.code_bias
        return torch.sigmoid(h)

    def forward(self, x: Tensor) -> Tensor:
        u, i = x[:, 0], x[:, 1]  # (B,), (B,)
        code = self.codes(i, leave_out=u if self.training else None)
        r = (self.u_weight(u) * code).sum(1) + self.u_bias(u)[:, 0] + self.i_bias(i)[:, 0] + self.bias
        return r if self.training else self._clamp(r)

    def _clamp(self, r: Tensor) -> Tensor:
        return r if self.y_range is None else r.clamp(*self.y_range)

    def scores(self, users: Tensor) -> Tensor:
        """Predicted ratings of every item for each user index: (U,) -> (U, n_items)."""
        codes = self.item_factors()  # (n_items, hidden)
        raw = self.u_weight(users) @ codes.T + self.u_bias(users) + self.i_bias.weight[:, 0] + self.bias
        return self._clamp(raw)

    def item_factors(self) -> Tensor:
        """(n_items, hidden): every item's code from all its training ratings."""
        return self.codes(torch.arange(len(self.counts), device=self.counts.device))

    def item_biases(self) -> Tensor:
        return self.i_bias.weight[:, 0]


def _check_autorec(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    check_n(kwargs.get("n_users"), "n_users", MAX_EMBEDDINGS)
    check_n(kwargs.get("n_items"), "n_items", MAX_EMBEDDINGS)
    check_n(kwargs.get("n_ratings"), "n_ratings", MAX_RATINGS)
    check_n(kwargs.get("hidden", 200), "hidden", _MAX_HIDDEN)
    check_y_range(kwargs.get("y_range"))
    want = {
        "raters": (kwargs["n_ratings"],),
        "counts": (kwargs["n_items"],),
        "u_weight.weight": (kwargs["n_users"], kwargs.get("hidden", 200)),
    }
    for name, shape in want.items():
        if shapes and shapes.get(name) != shape:
            raise ValueError(f"{name} is {shapes.get(name)} in the weights, recipe says {shape}")


@register_model("collab.item_autorec", check=_check_autorec)
def item_autorec(
    n_users: int,
    n_items: int,
    n_ratings: int,
    hidden: int = 200,
    y_range: Sequence[float] | None = None,
    mean: float = 0.0,
) -> ItemAutoRec:
    """An `ItemAutoRec` from JSON arguments (its ratings come from `set_ratings` or the saved weights)."""
    return ItemAutoRec(n_users, n_items, n_ratings, hidden, check_y_range(y_range), float(mean))
