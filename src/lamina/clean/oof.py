"""Out-of-fold predictions: every item predicted by a model that never trained on it.

`out_of_fold` trains k models on stratified folds of all the items (training and validation splits
together), each with the user's own learner recipe and a short 1cycle schedule, and keeps, for every
item, the probabilities of the model that held it out, the input of the model's last linear layer (an
embedding) and a small fingerprint of the model's input (for near-duplicates). `learner_predictions` does
the same from one trained learner in one pass: quicker, but biased towards the labels it trained on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lamina.data import DataLoader, DataLoaders, Datasets
from lamina.data.datasets import get_item
from lamina.train import Callback, Learner, ProgressCallback

__all__ = [
    "FINGERPRINT_SIZE",
    "AllItems",
    "LearnerFactory",
    "Predictions",
    "all_items",
    "check_folds",
    "fold_indices",
    "item_targets",
    "learner_predictions",
    "out_of_fold",
]

LearnerFactory = Callable[[DataLoaders], Learner]
FINGERPRINT_SIZE = 32  # images are pooled to 32 x 32 grey values for near-duplicate search


@dataclass(frozen=True)
class Predictions:
    """Per-item model outputs over a whole dataset, in the order of `AllItems(dls)`.

    `probs` (N, C) holds NaN rows for the items that were left out (`predicted` False: broken files).
    `targets` are class indices (classification) or values (regression); `in_valid` marks the items of
    the data's own validation split; `folds` is 0 for `learner_predictions` (biased: seen in training).
    Embeddings of items predicted by different fold models live in different spaces: compare them only
    within one `fold`."""

    probs: np.ndarray
    targets: np.ndarray
    embeddings: np.ndarray
    fingerprints: np.ndarray
    predicted: np.ndarray
    in_valid: np.ndarray
    vocab: list[Any] | None
    folds: int
    fold: np.ndarray  # (N,) int: the model that predicted each item (-1: none); embeddings compare within one
    notes: list[str] = field(default_factory=list)

    @property
    def is_classification(self) -> bool:
        return self.vocab is not None


class AllItems(Sequence[tuple[Any, ...]]):
    """Every item of `dls`, training and validation together, as the typed tuples the loaders draw from.

    With a Datasets behind the loaders (DataBlock, the vision factories) item i is `dsets[i]`, in the order
    of `dsets.items`; otherwise (a table already processed into tensors) the training items come first,
    then the validation items."""

    def __init__(self, dls: DataLoaders) -> None:
        self.dsets: Datasets | None = dls.dsets
        self.n_inp = dls.n_inp
        if self.dsets is not None:
            n = len(self.dsets)
            self.valid = np.zeros(n, dtype=bool)
            self.valid[np.asarray(self.dsets.splits[1], dtype=np.int64)] = True
            self._parts: list[Sequence[Any]] = []
        else:
            self._parts = [dls.train.dataset, dls.valid.dataset]
            n_train, n_valid = len(self._parts[0]), len(self._parts[1])
            self.valid = np.r_[np.zeros(n_train, dtype=bool), np.ones(n_valid, dtype=bool)]

    def __len__(self) -> int:
        return len(self.valid)

    def __getitem__(self, i: Any) -> tuple[Any, ...]:
        i = int(i)
        if self.dsets is not None:
            return self.dsets[i]
        n_train = len(self._parts[0])
        return self._parts[0][i] if i < n_train else self._parts[1][i - n_train]

    def target(self, i: int) -> tuple[Any, ...]:
        """Item i's target element alone (with a Datasets: read without decoding the inputs)."""
        if self.dsets is not None:
            return self.dsets.build(get_item(self.dsets.items, i), index=i, elements=[self.n_inp])
        return self[i][self.n_inp :]


class _Picked(Sequence[tuple[Any, ...]]):
    def __init__(self, items: AllItems, idxs: Sequence[int]) -> None:
        self.items, self.idxs = items, list(idxs)

    def __len__(self) -> int:
        return len(self.idxs)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.items[self.idxs[i]]


def all_items(dls: DataLoaders) -> AllItems:
    """All the items of `dls`, or an error that says why they cannot be checked."""
    items = AllItems(dls)
    if len(items) == 0:
        raise ValueError("lamina.clean: the data has no items.\nhelp: check the source and get_items")
    if len(items.target(0)) == 0:
        raise ValueError(
            f"lamina.clean: the items have {dls.n_inp} input(s) and no target to check.\n"
            "help: give the data a target (a CategoryBlock or RegressionBlock, a label column)"
        )
    return items


def item_targets(dls: DataLoaders) -> np.ndarray:
    """Every item's encoded target (class index or value)."""
    items = all_items(dls)
    out = []
    for i in range(len(items)):
        t = items.target(i)[0]
        out.append(t.as_subclass(torch.Tensor).float().reshape(-1)[0].item())
    arr = np.asarray(out, dtype=np.float64)
    return arr.astype(np.int64) if dls.vocab is not None else arr


def check_folds(targets: np.ndarray, vocab: Sequence[Any] | None, folds: int, idx: np.ndarray) -> None:
    """Refuse fold counts that leave a model without the class it must predict, and one-class data."""
    if folds < 2:
        raise ValueError(
            f"lamina.clean: folds={folds}; out-of-fold predictions need at least 2 folds.\n"
            "help: pass folds=5 (the default), or quick=True to use a trained learner's own predictions"
        )
    if len(idx) < folds:
        raise ValueError(
            f"lamina.clean: {len(idx)} usable items for folds={folds}.\n"
            "help: pass fewer folds, or check that the items load"
        )
    if vocab is None:
        return
    counts = np.bincount(targets[idx], minlength=len(vocab))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        name = vocab[present[0]] if len(present) else None
        raise ValueError(
            f"lamina.clean: every usable item has the same label {name!r}; finding wrong labels needs at "
            "least 2 classes (with one, every label agrees with every other).\n"
            "help: put each class's items in its own sub-folder, or point the labels at the right column"
        )
    small = int(present[np.argmin(counts[present])])
    if counts[small] < folds:
        raise ValueError(
            f"lamina.clean: folds={folds} but class {vocab[small]!r} has only {counts[small]} items, so "
            "some fold would train without ever seeing it and call all of them wrong.\n"
            f"help: pass folds={max(2, int(counts[small]))} or fewer, or add items to that class"
        )


def fold_indices(
    targets: np.ndarray, idx: np.ndarray, folds: int, seed: int, stratify: bool
) -> list[np.ndarray]:
    """`idx` cut into `folds` held-out parts, each class spread evenly over them (seeded)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    groups = [idx[targets[idx] == c] for c in np.unique(targets[idx])] if stratify else [idx]
    start = 0
    for g in groups:
        g = rng.permutation(g)
        for j, i in enumerate(g):
            parts[(start + j) % folds].append(int(i))
        start += len(g)  # the next class starts where this one stopped: folds stay equal in size
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


class _Collect(Callback):
    """During prediction: the input of the model's last linear layer, and a pooled copy of the input."""

    order = 95
    run_train = False

    def __init__(self) -> None:
        self.embeddings: list[torch.Tensor] = []
        self.fingerprints: list[torch.Tensor] = []
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def before_validate(self) -> None:
        self.embeddings, self.fingerprints = [], []
        last = [m for m in self.learn.model.modules() if isinstance(m, nn.Linear)]
        if last:
            self._hook = last[-1].register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.embeddings.append(args[0].detach().float().flatten(1).cpu())

    def after_pred(self) -> None:
        self.fingerprints.append(fingerprint(self.learn.xb))
        if self._hook is None:  # no linear layer: the output itself
            pred = self.learn.pred
            if isinstance(pred, torch.Tensor):
                self.embeddings.append(pred.detach().float().flatten(1).cpu())

    def after_validate(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def fingerprint(xb: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, F) float: each image pooled to 32 x 32 grey values, other inputs flattened (first 4096 values)."""
    parts = []
    for x in xb:
        if not isinstance(x, torch.Tensor):
            continue
        x = x.detach().float()
        if x.ndim == 4:  # (B, C, H, W)
            x = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), FINGERPRINT_SIZE)
        parts.append(x.flatten(1)[:, :4096].cpu())
    return torch.cat(parts, dim=1) if parts else torch.zeros(len(xb[0]) if xb else 0, 1)


def _predict(learn: Learner, dl: DataLoader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    collect = _Collect()
    with learn.added_cbs([collect]):
        preds = learn.get_preds(dl=dl)[0]
    probs = preds.float().reshape(len(preds), -1).numpy()
    emb = torch.cat(collect.embeddings).numpy() if collect.embeddings else np.zeros((len(probs), 1))
    fp = torch.cat(collect.fingerprints).numpy() if collect.fingerprints else np.zeros((len(probs), 1))
    return probs, emb, fp


def _loader(dls: DataLoaders, items: AllItems, idx: np.ndarray, train: bool) -> DataLoader:
    base = dls.train if train else dls.valid
    return base.new(
        dataset=_Picked(items, idx.tolist()), shuffle=train, drop_last=train and len(idx) > base.bs
    )


def _fold_loaders(dls: DataLoaders, items: AllItems, train_idx: np.ndarray, held: np.ndarray) -> DataLoaders:
    """`dls` (its class and everything an application's learner reads from it) over other items."""
    fold = copy.copy(dls)
    fold.train = _loader(dls, items, train_idx, True)
    fold.valid = _loader(dls, items, held, False)
    return fold


def _empty(n: int, widths: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.full((n, w), np.nan, dtype=np.float32) for w in widths)  # type: ignore[return-value]


def out_of_fold(
    dls: DataLoaders,
    learner: LearnerFactory,
    folds: int = 5,
    epochs: int = 2,
    lr: float | None = None,
    seed: int = 42,
    exclude: Sequence[int] = (),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Predictions:
    """Train `folds` models with `learner(dls_for_fold)` and `fit_one_cycle(epochs, lr)`; predict each
    item with the one model that held it out.

    `learner` is the user's recipe, e.g. `lambda dls: vision_learner(dls, "resnet18", pretrained=False)`;
    `exclude`: item indices to leave out (files that fail to load). The folds are stratified by class and
    seeded, so the same call gives the same folds.
    """
    items = all_items(dls)
    n = len(items)
    targets = item_targets(dls)
    vocab = dls.vocab
    bad = set(int(i) for i in exclude)
    idx = np.asarray([i for i in range(n) if i not in bad], dtype=np.int64)
    check_folds(targets, vocab, folds, idx)
    parts = fold_indices(targets, idx, folds, seed, stratify=vocab is not None)
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    fold = np.full(n, -1, dtype=np.int64)
    for k, held in enumerate(parts):
        train_idx = np.setdiff1d(idx, held, assume_unique=True)
        fold_dls = _fold_loaders(dls, items, train_idx, held)
        torch.manual_seed(seed + k)
        learn = learner(fold_dls)
        if not progress:
            learn.remove_cb(ProgressCallback)
        learn.fit_one_cycle(epochs, lr if lr is not None else learn.lr)
        probs, emb, fp = _predict(learn, fold_dls.valid)
        if out is None:
            out = _empty(n, (probs.shape[1], emb.shape[1], fp.shape[1]))
        for arr, got in zip(out, (probs, emb, fp), strict=True):
            arr[held] = got
        fold[held] = k
        if log is not None:
            log(f"fold {k + 1}/{folds}: trained on {len(train_idx)} items, predicted {len(held)}")
    assert out is not None
    predicted = np.zeros(n, dtype=bool)
    predicted[idx] = True
    return Predictions(
        probs=out[0],
        targets=targets,
        embeddings=out[1],
        fingerprints=out[2],
        predicted=predicted,
        in_valid=items.valid.copy(),
        vocab=list(vocab) if vocab is not None else None,
        folds=folds,
        fold=fold,
    )


def learner_predictions(learn: Learner, exclude: Sequence[int] = ()) -> Predictions:
    """Every item predicted by one trained learner, in one pass: fast, but biased (it has seen the labels
    of its training items, so it agrees with wrong ones it memorised). Out-of-fold predictions are not."""
    dls = learn.dls
    items = all_items(dls)
    n = len(items)
    bad = set(int(i) for i in exclude)
    idx = np.asarray([i for i in range(n) if i not in bad], dtype=np.int64)
    probs, emb, fp = _predict(learn, _loader(dls, items, idx, False))
    out = _empty(n, (probs.shape[1], emb.shape[1], fp.shape[1]))
    for arr, got in zip(out, (probs, emb, fp), strict=True):
        arr[idx] = got
    predicted = np.zeros(n, dtype=bool)
    predicted[idx] = True
    return Predictions(
        probs=out[0],
        targets=item_targets(dls),
        embeddings=out[1],
        fingerprints=out[2],
        predicted=predicted,
        in_valid=items.valid.copy(),
        vocab=list(dls.vocab) if dls.vocab is not None else None,
        folds=0,
        fold=np.where(predicted, 0, -1),
        notes=[
            "quick: predictions of the trained learner itself, which saw most of these labels in training; "
            "it misses wrong labels it memorised (use folds for unbiased out-of-fold predictions)"
        ],
    )
