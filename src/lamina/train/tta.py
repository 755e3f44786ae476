"""Test-time augmentation: predictions averaged over augmented copies of each item, as fastai's `tta`.

>>> preds, targs = learn.tta(n=4, beta=0.25)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lamina.data import DataLoader

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = ["tta"]


def tta(
    learn: Learner,
    dl: DataLoader | None = None,
    n: int = 4,
    beta: float = 0.25,
    use_max: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """(predictions, targets) for every item of `dl` (the validation set by default), in order.

    The items go through the model once with `dl`'s own (validation) transforms and `n` times with the
    training split's random augmentations (`dl.new(split_idx=0)`); the result is
    `beta * plain + (1 - beta) * mean(augmented)`, or with `use_max` the element-wise maximum of all. `n=0`
    gives the plain predictions. A seeded loader gives the same augmentations, and predictions, each call.
    """
    if n < 0:
        raise ValueError(f"tta: n must be >= 0 augmented passes, got {n}.\nhelp: e.g. n=4")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(
            f"tta: beta must be between 0 and 1, got {beta}.\n"
            "help: beta is the weight of the plain predictions; the augmented passes get 1 - beta"
        )
    dl = dl if dl is not None else learn.dls.valid
    if not isinstance(dl, DataLoader):
        raise TypeError(
            f"tta: needs a lamina DataLoader to re-run with the training augmentations, got "
            f"{type(dl).__name__}.\nhelp: pass dls.valid or dls.test_dl(items, with_labels=True)"
        )
    plain = dl.new(shuffle=False, drop_last=False)
    preds, targs = learn.get_preds(dl=plain)[:2]
    if n == 0 or (beta == 1.0 and not use_max):
        return preds, targs
    augmented = dl.new(shuffle=False, drop_last=False, split_idx=0)  # one loader: each pass a new epoch
    passes = torch.stack([learn.get_preds(dl=augmented)[0] for _ in range(n)])  # (n, N, ...)
    if use_max:
        return torch.maximum(preds, passes.amax(0)), targs
    return torch.lerp(passes.mean(0), preds, beta), targs
