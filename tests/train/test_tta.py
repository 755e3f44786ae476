"""learn.tta: plain predictions mixed with passes under the training split's augmentations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.core import ItemTransform
from lamina.data import CrossEntropyLossFlat, DataLoader, DataLoaders
from lamina.train import Learner


class Reverse(ItemTransform):
    """Training-only: the input read backwards (the label does not change)."""

    split_idx = 0

    def encodes(self, b: tuple) -> tuple:  # type: ignore[type-arg]
        return (b[0].flip(0), b[1])


class Jitter(ItemTransform):
    """Training-only: reversed half the time, plus noise."""

    split_idx = 0

    def encodes(self, b: tuple) -> tuple:  # type: ignore[type-arg]
        x = b[0].flip(0) if torch.rand(()) < 0.5 else b[0]
        return (x + 0.3 * torch.randn_like(x), b[1])


def _items(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """8 numbers; the label says whether their sum is positive (reading them backwards changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x.sum(1) > 0).long()
    return [(x[i], y[i]) for i in range(n)]


def _learner(tfm: ItemTransform, n_train: int = 64) -> Learner:
    train = DataLoader(_items(n_train, 0), bs=16, shuffle=True, item_tfms=[tfm], split_idx=0, seed=0)
    valid = DataLoader(_items(64, 1), bs=32, item_tfms=[tfm], split_idx=1, seed=0)
    return Learner(DataLoaders(train, valid), nn.Linear(8, 2), loss_func=CrossEntropyLossFlat())


def test_tta_mixes_plain_and_augmented_predictions() -> None:
    learn = _learner(Reverse())
    x = torch.stack([it[0] for it in _items(64, 1)])
    plain, targs = learn.get_preds()[:2]
    torch.testing.assert_close(plain, learn.model(x).softmax(1))
    backwards = learn.model(x.flip(1)).softmax(1).detach()

    aug_only, t = learn.tta(n=1, beta=0.0)
    torch.testing.assert_close(aug_only, backwards)  # the validation items under training augmentation
    assert torch.equal(t, targs)
    mixed, _ = learn.tta(n=3, beta=0.25)
    torch.testing.assert_close(mixed, 0.25 * plain + 0.75 * backwards)
    assert torch.equal(learn.tta(n=0, beta=0.0)[0], plain)  # no augmented pass: the plain predictions
    assert torch.equal(learn.tta(beta=1.0)[0], plain)
    torch.testing.assert_close(learn.tta(n=2, use_max=True)[0], torch.maximum(plain, backwards))

    with pytest.raises(ValueError, match="help:"):
        learn.tta(n=-1)
    with pytest.raises(ValueError, match="help:"):
        learn.tta(beta=1.5)
    with pytest.raises(TypeError, match="help:"):
        learn.tta(dl=[(x, targs)])  # type: ignore[arg-type]


def test_tta_on_learnable_data_is_not_worse_and_repeats() -> None:
    learn = _learner(Jitter(), n_train=256)
    learn.fit(4, lr=3e-2)
    plain, targs = learn.get_preds()[:2]
    preds, t = learn.tta(n=4)
    assert torch.equal(t, targs) and preds.shape == plain.shape
    assert torch.allclose(preds.sum(1), torch.ones(len(preds)))
    acc_plain = float((plain.argmax(1) == targs).float().mean())
    acc_tta = float((preds.argmax(1) == targs).float().mean())
    assert acc_plain >= 0.85  # it learned
    assert acc_tta >= acc_plain - 0.05
    assert not torch.equal(preds, plain)  # the augmented passes changed something
    assert torch.equal(learn.tta(n=4)[0], preds)  # a seeded loader: the same augmentations every call
