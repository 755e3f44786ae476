"""The collaborative-filtering models: a biased dot product of embeddings, and embeddings into an MLP.

Both take `x` (B, 2) int64 (user index, item index) and return (B,) ratings squashed into `y_range` by a
sigmoid. Index 0 is the reserved "unknown" user or item (seen only after training):

- `EmbeddingDotBias`: its rows are zero and never trained (`padding_idx=0`), so an unknown user gets
  global bias + the item's bias (the item's mean rating, as learned), an unknown item the user's, and
  both unknown the global mean.
- `EmbeddingNN`: its rows are learned: during training a share `unknown_p` of the rows has its user (or
  item) replaced by index 0, so the net learns what to predict for someone it knows nothing about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lamina.core import register_model

__all__ = [
    "MAX_EMBEDDINGS",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "check_n",
    "check_y_range",
    "emb_sz_rule",
    "embedding_dot_bias",
    "embedding_nn",
]

MAX_EMBEDDINGS = 50_000_000  # rows of one embedding table a recipe may ask for
_MAX_WIDTH = 4096


def emb_sz_rule(n: int) -> int:
    """fastai's rule of thumb for an embedding's width from its vocabulary size: min(600, 1.6 n^0.56)."""
    return min(600, round(1.6 * n**0.56))


def _logit_of(mean: float, y_range: Sequence[float] | None) -> float:
    """The raw output that the sigmoid maps to `mean` (so an untrained model predicts the mean rating)."""
    if y_range is None:
        return float(mean)
    lo, hi = float(y_range[0]), float(y_range[1])
    p = min(max((mean - lo) / (hi - lo), 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _squash(r: Tensor, y_range: tuple[float, float] | None) -> Tensor:
    if y_range is None:
        return r
    lo, hi = y_range
    return torch.sigmoid(r) * (hi - lo) + lo


class EmbeddingDotBias(nn.Module):
    """rating = sigmoid_range(u . i + b_u + b_i + b), with reserved zero rows at index 0."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        y_range: tuple[float, float] | None,
        mean: float = 0.0,
    ) -> None:
        super().__init__()
        self.u_weight = nn.Embedding(n_users, n_factors, padding_idx=0)
        self.i_weight = nn.Embedding(n_items, n_factors, padding_idx=0)
        self.u_bias = nn.Embedding(n_users, 1, padding_idx=0)
        self.i_bias = nn.Embedding(n_items, 1, padding_idx=0)
        self.bias = nn.Parameter(torch.tensor(_logit_of(mean, y_range)))
        self.y_range = y_range
        with torch.no_grad():
            for e in (self.u_weight, self.i_weight):
                nn.init.trunc_normal_(e.weight, std=0.01)
                e.weight[0].zero_()
            for e in (self.u_bias, self.i_bias):
                e.weight.zero_()

    def forward(self, x: Tensor) -> Tensor:
        u, i = x[:, 0], x[:, 1]  # (B,), (B,)
        dot = (self.u_weight(u) * self.i_weight(i)).sum(1)
        return _squash(dot + self.u_bias(u)[:, 0] + self.i_bias(i)[:, 0] + self.bias, self.y_range)

    def scores(self, users: Tensor) -> Tensor:
        """Predicted ratings of every item for each user index: (U,) -> (U, n_items), one matrix product."""
        raw = self.u_weight(users) @ self.i_weight.weight.T  # (U, n_items)
        raw = raw + self.u_bias(users) + self.i_bias.weight[:, 0] + self.bias
        return _squash(raw, self.y_range)

    def item_factors(self) -> Tensor:
        """(n_items, n_factors): the item embeddings (similarity, the factor plot)."""
        return self.i_weight.weight

    def item_biases(self) -> Tensor:
        """(n_items,): the item biases."""
        return self.i_bias.weight[:, 0]


class EmbeddingNN(nn.Module):
    """rating = sigmoid_range(MLP([user embedding, item embedding])); the embedding widths are its own."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        user_sz: int,
        item_sz: int,
        layers: Sequence[int],
        ps: Sequence[float],
        y_range: tuple[float, float] | None,
        mean: float = 0.0,
        unknown_p: float = 0.02,
    ) -> None:
        super().__init__()
        self.u_weight = nn.Embedding(n_users, user_sz)
        self.i_weight = nn.Embedding(n_items, item_sz)
        for e in (self.u_weight, self.i_weight):
            nn.init.trunc_normal_(e.weight, std=0.01)
        sizes = [user_sz + item_sz, *layers]
        blocks: list[nn.Module] = []
        for k in range(len(layers)):
            blocks += [nn.Linear(sizes[k], sizes[k + 1]), nn.ReLU()]
            if ps[k] > 0:
                blocks.append(nn.Dropout(ps[k]))
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(sizes[-1], 1)
        with torch.no_grad():
            self.head.bias.fill_(_logit_of(mean, y_range))
        self.y_range, self.unknown_p = y_range, unknown_p

    def forward(self, x: Tensor) -> Tensor:
        u, i = x[:, 0], x[:, 1]  # (B,), (B,)
        if self.training and self.unknown_p > 0:  # teach the reserved rows: some rows as if unknown
            u = u.masked_fill(torch.rand(u.shape, device=u.device) < self.unknown_p, 0)
            i = i.masked_fill(torch.rand(i.shape, device=i.device) < self.unknown_p, 0)
        h = torch.cat([self.u_weight(u), self.i_weight(i)], dim=1)  # (B, user_sz + item_sz)
        return _squash(self.head(self.layers(h))[:, 0], self.y_range)

    def scores(self, users: Tensor, chunk: int = 1 << 20) -> Tensor:
        """Predicted ratings of every item for each user index: (U,) -> (U, n_items), in chunks of pairs."""
        n_items = self.i_weight.num_embeddings
        items = torch.arange(n_items, device=users.device)
        rows = max(1, chunk // n_items)
        out = []
        for start in range(0, len(users), rows):
            u = users[start : start + rows]
            x = torch.stack([u.repeat_interleave(n_items), items.repeat(len(u))], dim=1)
            out.append(self.forward(x).view(len(u), n_items))
        return torch.cat(out) if out else torch.zeros((0, n_items), device=users.device)

    def item_factors(self) -> Tensor:
        return self.i_weight.weight

    def item_biases(self) -> Tensor | None:
        return None


def check_n(v: Any, name: str, hi: int) -> None:
    """Refuse a recipe value that is not an integer in [1, hi] (sizes an export asks to allocate)."""
    if type(v) is not int or not 1 <= v <= hi:
        raise ValueError(f"{name} must be an integer in [1, {hi}], got {str(v)[:50]}")


def check_y_range(y_range: Any) -> tuple[float, float] | None:
    """A recipe's y_range as (lo, hi) floats with lo < hi, or None."""
    if y_range is None:
        return None
    if (
        not isinstance(y_range, list | tuple)
        or len(y_range) != 2
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in y_range)
        or not y_range[0] < y_range[1]
    ):
        raise ValueError(f"y_range must be (lo, hi) with lo < hi, got {str(y_range)[:80]}")
    return float(y_range[0]), float(y_range[1])


def _check_dot(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    check_n(kwargs.get("n_users"), "n_users", MAX_EMBEDDINGS)
    check_n(kwargs.get("n_items"), "n_items", MAX_EMBEDDINGS)
    check_n(kwargs.get("n_factors", 50), "n_factors", _MAX_WIDTH)
    check_y_range(kwargs.get("y_range"))
    want = (kwargs["n_users"], kwargs.get("n_factors", 50))
    if shapes and shapes.get("u_weight.weight") != want:
        raise ValueError(
            f"u_weight.weight is {shapes.get('u_weight.weight')} in the weights, recipe says {want}"
        )


def _check_nn(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    check_n(kwargs.get("n_users"), "n_users", MAX_EMBEDDINGS)
    check_n(kwargs.get("n_items"), "n_items", MAX_EMBEDDINGS)
    for k in ("user_sz", "item_sz"):
        check_n(kwargs.get(k), k, _MAX_WIDTH)
    layers, ps = kwargs.get("layers", [100]), kwargs.get("ps")
    if not isinstance(layers, list | tuple) or len(layers) > 16:
        raise ValueError(f"layers must be a list of at most 16 widths, got {str(layers)[:80]}")
    for w in layers:
        check_n(w, "a layer width", _MAX_WIDTH)
    if ps is not None and (
        not isinstance(ps, list | tuple)
        or len(ps) != len(layers)
        or not all(isinstance(p, int | float) and 0 <= p < 1 for p in ps)
    ):
        raise ValueError(f"ps must hold one dropout in [0, 1) per layer, got {str(ps)[:80]}")
    check_y_range(kwargs.get("y_range"))
    p = kwargs.get("unknown_p", 0.02)
    if not isinstance(p, int | float) or not 0 <= p < 1:
        raise ValueError(f"unknown_p must be in [0, 1), got {str(p)[:50]}")
    want = (kwargs["n_users"], kwargs["user_sz"])
    if shapes and shapes.get("u_weight.weight") != want:
        raise ValueError(
            f"u_weight.weight is {shapes.get('u_weight.weight')} in the weights, recipe says {want}"
        )


@register_model("collab.embedding_dot_bias", check=_check_dot)
def embedding_dot_bias(
    n_users: int,
    n_items: int,
    n_factors: int = 50,
    y_range: Sequence[float] | None = None,
    mean: float = 0.0,
) -> EmbeddingDotBias:
    """An `EmbeddingDotBias` from JSON arguments (the recipe an export keeps)."""
    return EmbeddingDotBias(n_users, n_items, n_factors, check_y_range(y_range), float(mean))


@register_model("collab.embedding_nn", check=_check_nn)
def embedding_nn(
    n_users: int,
    n_items: int,
    user_sz: int,
    item_sz: int,
    layers: Sequence[int] = (100,),
    ps: Sequence[float] | None = None,
    y_range: Sequence[float] | None = None,
    mean: float = 0.0,
    unknown_p: float = 0.02,
) -> EmbeddingNN:
    """An `EmbeddingNN` from JSON arguments (the recipe an export keeps)."""
    layers = [int(w) for w in layers]
    drop = [float(p) for p in ps] if ps is not None else [0.0] * len(layers)
    return EmbeddingNN(
        n_users,
        n_items,
        user_sz,
        item_sz,
        layers,
        drop,
        check_y_range(y_range),
        float(mean),
        float(unknown_p),
    )
