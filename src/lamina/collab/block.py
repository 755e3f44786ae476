"""The DataBlock path: `UserItemBlock()` turns a (user, item) pair into a `TensorUserItem`.

>>> dblock = DataBlock(blocks=(UserItemBlock(), RegressionBlock()),
...                    get_x=ColReader(["user_id", "movie_id"]), get_y=ColReader("rating"),
...                    splitter=RandomSplitter(0.2, seed=42))             # doctest: +SKIP
>>> learn = collab_learner(dblock.dataloaders(ratings))                    # doctest: +SKIP

Items go through per-item pipelines (the general DataBlock machinery: any getter, any splitter); for a
plain ratings table `CollabDataLoaders.from_df` is the fast path (one index per batch). The vocabularies
are learned from the training pairs, with index 0 reserved for unseen users and items, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lamina.collab.data import (
    CollabDataLoaders,
    CollabMeta,
    CollabRatings,
    TensorUserItem,
    UserItem,
    as_key,
    infer_y_range,
    vocab_of,
)
from lamina.core import ItemTransform, register_transform
from lamina.data import DataLoaders, TransformBlock

__all__ = ["UserItemBlock", "UserItemize", "collab_meta", "fill_rating_stats", "training_ratings"]


@register_transform("collab.UserItemize")
class UserItemize(ItemTransform):
    """(user, item) -> TensorUserItem([user index, item index]); ids unseen in training map to 0.

    `setup` learns both vocabularies, each user's rated items and each item's count from the training pairs;
    every piece is plain data, exported as JSON like `CollabDataLoaders`'."""

    order = 1

    def __init__(
        self,
        user_name: str = "user",
        item_name: str = "item",
        rating_name: str = "rating",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.names = (user_name, item_name, rating_name)
        self.meta: CollabMeta | None = CollabMeta.from_json(meta) if meta is not None else None

    def setup(self, items: Sequence[Any]) -> None:
        pairs = [self._pair(o, k) for k, o in enumerate(items)]
        users, its = vocab_of(p[0] for p in pairs), vocab_of(p[1] for p in pairs)
        meta = CollabMeta(*self.names, users=users, items=its)
        x = torch.tensor([[meta.user_index(u), meta.item_index(i)] for u, i in pairs], dtype=torch.int64)
        x = x.reshape(-1, 2)
        meta.item_counts = torch.bincount(x[:, 1], minlength=meta.n_items).tolist()
        x = x[torch.argsort(x[:, 0] * meta.n_items + x[:, 1])]
        per_user = torch.bincount(x[:, 0], minlength=meta.n_users).tolist()
        meta.seen = [s.tolist() for s in torch.split(x[:, 1], per_user)]
        self.meta = meta

    def _pair(self, o: Any, k: int | None = None) -> tuple[Any, Any]:
        if not isinstance(o, tuple | list) or len(o) != 2 or any(v is None for v in o):
            where = f"item {k}" if k is not None else "an item"
            raise ValueError(
                f"UserItemize: {where} is {str(o)[:80]}; expected a (user id, item id) pair.\n"
                "help: get_x=ColReader(['user_id', 'movie_id']) reads the two columns"
            )
        return as_key(o[0]), as_key(o[1])

    def encodes(self, o: object) -> TensorUserItem:
        if self.meta is None:
            raise RuntimeError("UserItemize: used before setup.\nhelp: build the data with a DataBlock")
        u, i = self._pair(o)
        x = torch.tensor([self.meta.user_index(u), self.meta.item_index(i)], dtype=torch.int64)
        return x.as_subclass(TensorUserItem)

    def decodes(self, x: TensorUserItem) -> UserItem:
        m = self.meta
        assert m is not None
        u, i = (int(v) for v in x.tolist())
        return UserItem(m.users[u], m.items[i], None if m.titles is None else m.titles[i], self.names)

    def to_config(self) -> dict[str, Any]:
        u, i, r = self.names
        return {
            "user_name": u,
            "item_name": i,
            "rating_name": r,
            "meta": None if self.meta is None else self.meta.to_json(),
        }


def UserItemBlock(
    user_name: str = "user", item_name: str = "item", rating_name: str = "rating"
) -> TransformBlock:
    """The input block of a ratings DataBlock: a (user, item) pair; the names label tables and exports."""
    return TransformBlock(type_tfms=[UserItemize(user_name, item_name, rating_name)])


def collab_meta(dls: DataLoaders) -> CollabMeta:
    """What a collab learner needs to know of its data: CollabDataLoaders' `meta`, or the `UserItemize`
    of a DataBlock's input pipeline."""
    if isinstance(dls, CollabDataLoaders):
        return dls.meta
    dsets = dls.dsets
    if dsets is not None and dsets.pipelines:
        for t in dsets.pipelines[0].tfms:
            if isinstance(t, UserItemize) and t.meta is not None:
                return t.meta
    raise TypeError(
        f"collab: the data are {type(dls).__name__} without user and item vocabularies.\n"
        "help: build them with CollabDataLoaders.from_df(...) or a DataBlock whose input is UserItemBlock()"
    )


def training_ratings(dls: DataLoaders) -> tuple[Tensor, Tensor]:
    """Every training rating: `x` (N, 2) user and item indices and `y` (N,) (one pass for DataBlock data)."""
    if isinstance(dls, CollabDataLoaders):
        ds = dls.train.dataset
        assert isinstance(ds, CollabRatings) and ds.y is not None
        return ds.x, ds.y
    xs, ys = [], []
    for b in dls.train.new(shuffle=False, drop_last=False):
        xs.append(b[0].reshape(-1, 2).long().cpu())
        ys.append(b[dls.n_inp].float().flatten().cpu())
    if not ys:
        raise ValueError("collab_learner: the training set is empty.\nhelp: check get_items and the splitter")
    return torch.cat(xs).as_subclass(Tensor), torch.cat(ys).as_subclass(Tensor)


def fill_rating_stats(dls: DataLoaders, meta: CollabMeta) -> None:
    """Set `meta`'s y_range and mean rating from one pass over the training targets (DataBlock data)."""
    if isinstance(dls, CollabDataLoaders):
        return
    r = training_ratings(dls)[1]
    meta.y_range, meta.rating_mean = infer_y_range(r), float(r.mean())
