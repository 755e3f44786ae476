"""TabularModel: an embedding per categorical column, BatchNorm on the continuous ones, then an MLP.

Embedding sizes follow a rule of thumb (`emb_sz_rule`: about 1.6 * n ** 0.56, at most 600), as entity
embeddings do. A regression head predicts in units of the training target's spread around its mean (the
model scales back), so the last layer starts well scaled whatever the target's units; `y_range` squashes the
output into a range with a sigmoid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lamina.core import register_model

__all__ = [
    "GroupedEmbedding",
    "PeriodicEmbedding",
    "TabularModel",
    "emb_sz_rule",
    "embedding_groups",
    "tabular_model",
]


def emb_sz_rule(n_cat: int) -> int:
    """The embedding width for a column of `n_cat` categories."""
    return min(600, round(1.6 * n_cat**0.56))


class PeriodicEmbedding(nn.Module):
    """Each continuous value -> `width` features from sines and cosines of learned frequencies, through a
    small per-column linear layer and a ReLU (periodic embeddings for numerical features): an MLP then sees
    fine structure (e.g. a location's latitude) that one raw number would hide."""

    def __init__(self, n_cont: int, n_freq: int = 16, width: int = 16, sigma: float = 1.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.randn(n_cont, n_freq) * sigma)  # (n_cont, n_freq)
        self.weight = nn.Parameter(torch.randn(n_cont, 2 * n_freq, width) / (2 * n_freq) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_cont, width))

    def forward(self, x: Tensor) -> Tensor:
        v = 2 * torch.pi * self.freq[None] * x[..., None]  # (B, n_cont, n_freq)
        f = torch.cat([torch.cos(v), torch.sin(v)], -1)  # (B, n_cont, 2 n_freq)
        out = torch.relu(torch.einsum("bnf,nfw->bnw", f, self.weight) + self.bias)  # (B, n_cont, width)
        return out.flatten(1)


def embedding_groups(emb_szs: Sequence[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """The columns that share an embedding width, by width: [(width, [column positions])]."""
    widths = sorted({d for _, d in emb_szs})
    return [(w, [k for k, (_, d) in enumerate(emb_szs) if d == w]) for w in widths]


class GroupedEmbedding(nn.Module):
    """One embedding table per width, holding every column of that width at an offset: a table of 500
    categorical columns is a handful of lookups per batch, not 500."""

    def __init__(self, emb_szs: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.tables = nn.ModuleList()
        self.out_width = sum(d for _, d in emb_szs)
        for k, (width, cols) in enumerate(embedding_groups(emb_szs)):
            sizes = [emb_szs[c][0] for c in cols]
            self.tables.append(nn.Embedding(sum(sizes), width))
            offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
            self.register_buffer(f"cols{k}", torch.tensor(cols), persistent=False)
            self.register_buffer(f"offsets{k}", offsets, persistent=False)

    def forward(self, x_cat: Tensor) -> Tensor:
        outs = []
        for k, table in enumerate(self.tables):
            cols, offsets = getattr(self, f"cols{k}"), getattr(self, f"offsets{k}")
            outs.append(table(x_cat[:, cols] + offsets).flatten(1))  # (B, n_cols * width)
        return torch.cat(outs, 1) if outs else x_cat.new_zeros((len(x_cat), 0), dtype=torch.float32)


class TabularModel(nn.Module):
    """(categorical codes (B, n_cat) int64, continuous values (B, n_cont) float) -> (B, n_out)."""

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        n_cont: int,
        n_out: int,
        layers: Sequence[int] = (200, 100),
        ps: float = 0.0,
        embed_p: float = 0.0,
        y_range: tuple[float, float] | None = None,
        y_stats: tuple[float, float] | None = None,
        bn_cont: bool = True,
        cont_emb: int = 0,
    ) -> None:
        super().__init__()
        self.cont_emb = PeriodicEmbedding(n_cont, width=cont_emb) if cont_emb and n_cont else None
        self.embeds = GroupedEmbedding(emb_szs)
        self.emb_drop = nn.Dropout(embed_p)
        self.bn_cont = nn.BatchNorm1d(n_cont) if bn_cont and n_cont else None
        n_in = sum(d for _, d in emb_szs) + n_cont * (cont_emb if self.cont_emb is not None else 1)
        body: list[nn.Module] = []
        for width in layers:
            body += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.BatchNorm1d(width)]
            if ps:
                body.append(nn.Dropout(ps))
            n_in = width
        self.layers = nn.Sequential(*body)
        self.head = nn.Linear(n_in, n_out)
        self.y_range = y_range
        self.register_buffer("y_mean", torch.tensor(0.0 if y_stats is None else float(y_stats[0])))
        self.register_buffer("y_std", torch.tensor(1.0 if y_stats is None else float(y_stats[1])))

    def forward(self, x_cat: Tensor, x_cont: Tensor) -> Tensor:
        x = self.emb_drop(self.embeds(x_cat)).to(x_cont.dtype)  # (B, sum of widths)
        if x_cont.shape[1]:
            cont = self.bn_cont(x_cont) if self.bn_cont is not None else x_cont
            if self.cont_emb is not None:
                cont = self.cont_emb(cont)
            x = torch.cat([x, cont], 1)
        out = self.head(self.layers(x))  # (B, n_out)
        if self.y_range is not None:
            lo, hi = self.y_range
            return torch.sigmoid(out) * (hi - lo) + lo
        return out * self.y_std + self.y_mean


def _check_recipe(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse a recipe whose embedding tables or widths do not match the weights (before building it)."""
    cards, dims = kwargs.get("cardinalities"), kwargs.get("emb_dims")
    if not isinstance(cards, list) or not isinstance(dims, list) or len(cards) != len(dims):
        raise ValueError("cardinalities and emb_dims must be lists of the same length")
    if not all(isinstance(v, int) and v > 0 for v in [*cards, *dims]):
        raise ValueError("cardinalities and emb_dims must be positive integers")
    for k, (width, cols) in enumerate(embedding_groups(list(zip(cards, dims, strict=True)))):
        want = (sum(cards[c] for c in cols), width)
        if shapes.get(f"embeds.tables.{k}.weight") != want:
            raise ValueError(f"embedding table {k} is {shapes.get(f'embeds.tables.{k}.weight')}, not {want}")


@register_model("tabular.tabular_model", check=_check_recipe)
def tabular_model(
    cardinalities: list[int],
    emb_dims: list[int],
    n_cont: int,
    n_out: int,
    layers: list[int],
    ps: float = 0.0,
    embed_p: float = 0.0,
    y_range: list[float] | None = None,
    y_stats: list[float] | None = None,
    bn_cont: bool = True,
    cont_emb: int = 0,
) -> TabularModel:
    """The TabularModel for given column cardinalities and embedding widths (JSON arguments, for export)."""
    if len(cardinalities) != len(emb_dims):
        raise ValueError(
            f"tabular_model: {len(cardinalities)} cardinalities for {len(emb_dims)} embedding widths"
        )
    return TabularModel(
        list(zip(cardinalities, emb_dims, strict=True)),
        n_cont,
        n_out,
        layers=layers,
        ps=ps,
        embed_p=embed_p,
        y_range=(float(y_range[0]), float(y_range[1])) if y_range is not None else None,
        y_stats=(float(y_stats[0]), float(y_stats[1])) if y_stats is not None else None,
        bn_cont=bn_cont,
        cont_emb=cont_emb,
    )
