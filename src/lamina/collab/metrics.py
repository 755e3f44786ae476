"""Ranking metrics over a held-out split, usable as Learner metrics: recall@k and NDCG@k.

Each user's held-out items are ranked by predicted rating (Surprise's protocol for explicit ratings):
recall@k is the share of the user's relevant held-out items (true rating >= `threshold`) that reach the
top k; NDCG@k compares the top k's true ratings, discounted by rank, with the best order. Both are
averaged over users (recall over users with a relevant item, NDCG over users with a held-out item).

The Learner hands a metric predictions and ratings only, in the validation loader's order, so the metric
takes the users of that order from the data: use it on `dls.valid` (unsharded; a distributed validation
raises a clear error).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lamina.collab.block import collab_meta
from lamina.collab.data import CollabDataLoaders
from lamina.data import DataLoaders
from lamina.train import Metric
from lamina.train.metrics import DistSyncFn

__all__ = ["NDCGAtK", "RecallAtK", "ndcg_at_k", "rank_within_users", "recall_at_k"]


def rank_within_users(users: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """The order that sorts rows by user, then by descending score, and each sorted row's 0-based rank
    within its user."""
    by_score = scores.argsort(descending=True, stable=True)
    order = by_score[users[by_score].argsort(stable=True)]
    u = users[order]
    starts = torch.ones_like(u, dtype=torch.bool)
    starts[1:] = u[1:] != u[:-1]
    first = torch.cummax(torch.where(starts, torch.arange(len(u)), 0), dim=0).values
    return order, torch.arange(len(u)) - first


def recall_at_k(users: Tensor, preds: Tensor, targs: Tensor, k: int = 10, threshold: float = 4.0) -> float:
    """Mean over users (with a relevant held-out item) of |relevant in top k| / |relevant|."""
    users, preds, targs = users.cpu(), preds.float().cpu().flatten(), targs.float().cpu().flatten()
    order, rank = rank_within_users(users, preds)
    u, rel = users[order], (targs[order] >= threshold).float()
    n_users = int(users.max()) + 1 if len(users) else 0
    hits = torch.zeros(n_users).index_add_(0, u, rel * (rank < k).float())
    total = torch.zeros(n_users).index_add_(0, u, rel)
    has = total > 0
    return float((hits[has] / total[has]).mean()) if bool(has.any()) else math.nan


def ndcg_at_k(users: Tensor, preds: Tensor, targs: Tensor, k: int = 10) -> float:
    """Mean over users of DCG@k / ideal DCG@k, with the true rating as the gain."""
    users, preds, targs = users.cpu(), preds.float().cpu().flatten(), targs.float().cpu().flatten()
    n_users = int(users.max()) + 1 if len(users) else 0

    def dcg(scores: Tensor) -> Tensor:
        order, rank = rank_within_users(users, scores)
        gain = targs[order] / torch.log2(rank.float() + 2) * (rank < k).float()
        return torch.zeros(n_users).index_add_(0, users[order], gain)

    present = torch.zeros(n_users, dtype=torch.bool)
    present[users] = True
    ideal = dcg(targs)
    ok = present & (ideal > 0)
    return float((dcg(preds)[ok] / ideal[ok]).mean()) if bool(ok.any()) else math.nan


class _HeldOutRanking(Metric):
    """Collects the validation pass's predictions in order; ranks them per user at `value()`."""

    def __init__(self, dls: CollabDataLoaders | DataLoaders, k: int, name: str) -> None:
        if type(k) is not int or k < 1:
            raise ValueError(f"{type(self).__name__}: k={k!r}; expected a positive integer.\nhelp: e.g. k=10")
        collab_meta(dls)  # collab data, else a clear error
        if isinstance(dls, CollabDataLoaders):
            users = dls.valid.dataset.x[:, 0].clone()  # type: ignore[attr-defined]
        else:  # a DataBlock's loader: one pass over the validation inputs, in order
            users = torch.cat([b[0][:, 0].cpu() for b in dls.valid] or [torch.zeros(0, dtype=torch.int64)])
        self.users, self.k, self.name = users, k, name
        self._preds: list[Tensor] = []
        self._targs: list[Tensor] = []

    def reset(self) -> None:
        self._preds, self._targs = [], []

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        self._preds.append(pred.detach().flatten())
        self._targs.append(targ.detach().flatten())

    def sync(self, dist_sync_fn: DistSyncFn | None = None) -> None:
        raise RuntimeError(
            f"{self.name}: a ranking metric needs every validation row in order in one process; this "
            "validation was split across processes.\nhelp: compute it after training, in one process: "
            "learn.validate() outside learn.distributed()"
        )

    def _all(self) -> tuple[Tensor, Tensor] | None:
        if not self._preds:
            return None
        preds, targs = torch.cat(self._preds).cpu(), torch.cat(self._targs).cpu()
        if len(preds) != len(self.users):
            return None  # another loader than dls.valid (get_preds, predict): its users are unknown here
        return preds, targs


class RecallAtK(_HeldOutRanking):
    """recall@k over each user's held-out items (relevant: true rating >= `threshold`; default the
    training mean rating, so 4 and 5 stars on MovieLens)."""

    def __init__(
        self, dls: CollabDataLoaders | DataLoaders, k: int = 10, threshold: float | None = None
    ) -> None:
        super().__init__(dls, k, f"recall@{k}")
        self.threshold = float(collab_meta(dls).rating_mean if threshold is None else threshold)

    def value(self) -> float:
        got = self._all()
        return math.nan if got is None else recall_at_k(self.users, *got, k=self.k, threshold=self.threshold)


class NDCGAtK(_HeldOutRanking):
    """NDCG@k over each user's held-out items, the true rating as the gain."""

    def __init__(self, dls: CollabDataLoaders | DataLoaders, k: int = 10) -> None:
        super().__init__(dls, k, f"ndcg@{k}")

    def value(self) -> float:
        got = self._all()
        return math.nan if got is None else ndcg_at_k(self.users, *got, k=self.k)
