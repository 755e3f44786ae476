"""PreciseBN: BatchNorm running statistics re-estimated at the weights training ended with.

During training, BatchNorm keeps an exponential average (momentum 0.1) of each batch's statistics, taken
while the weights were still moving: after a short or fast schedule it describes an earlier network, and
the model evaluates worse than it trains (README's resnet18 on 28-px digits: epoch-0 valid loss 3.8 at a
train loss of 0.75). Recomputing the averages over a few thousand training items at the final weights is
the remedy of Wu & Johnson, "Rethinking 'Batch' in BatchNorm" (2021). It costs one forward pass without
gradients over at most `n_items` training items, once per fit (or per epoch with `every_epoch`).

>>> learn.add_cb(PreciseBN())   # vision_learner and unet_learner add it when the model has BatchNorm
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from lamina.train.callback import Callback

__all__ = ["PreciseBN", "refresh_batchnorm", "with_precise_bn"]

_BN = nn.modules.batchnorm._BatchNorm


def refresh_batchnorm(
    model: nn.Module, batches: Iterable[Sequence[torch.Tensor]], n_inp: int, max_batches: int
) -> int:
    """Replace the running statistics of `model`'s BatchNorm layers in training mode by their average over
    up to `max_batches` of `batches` (tuples whose first `n_inp` elements are the inputs); returns how many
    batches were used. Layers in eval mode (frozen on purpose) are left as they are."""
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats and m.training]
    if not bns or max_batches < 1:
        return 0
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in bns]  # type: ignore[union-attr]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    n = 0
    try:
        with torch.no_grad():
            for b in batches:
                if n >= max_batches:
                    break
                model(*b[:n_inp])
                n += 1
    finally:
        for m, (mom, mean, var) in zip(bns, saved, strict=True):
            m.momentum = mom
            if n == 0:  # interrupted before any batch, or none to read: keep what training left
                m.running_mean.copy_(mean)  # type: ignore[union-attr]
                m.running_var.copy_(var)  # type: ignore[union-attr]
    return n


class PreciseBN(Callback):
    """After the last training phase of a fit (every phase with `every_epoch`), before its validation,
    re-estimates BatchNorm's running statistics over up to `n_items` training items at the final weights.

    The items come from a fresh copy of the training loader (same transforms and augmentation, its own
    sampler), so the training loader's order and the global RNG of a seeded run are left alone. A phase
    that was cancelled (e.g. by `lr_find`) is not followed by a re-estimate.
    """

    order = 60  # after the Recorder (50) has checked the epoch's losses
    run_valid = False

    def __init__(self, n_items: int = 4096, every_epoch: bool = False) -> None:
        if n_items < 1:
            raise ValueError(f"PreciseBN: n_items must be >= 1, got {n_items}.\nhelp: 4096 is usual")
        self.n_items, self.every_epoch = n_items, every_epoch
        self.batches_used = 0
        self._cancelled = False

    def before_train(self) -> None:
        self._cancelled = False

    def after_cancel_train(self) -> None:
        self._cancelled = True

    def after_train(self) -> None:
        learn = self.learn
        if self._cancelled or not (self.every_epoch or learn.epoch == learn.n_epoch - 1):
            return
        dl = learn.dls.train
        n_batches = min(len(dl), math.ceil(self.n_items / max(1, dl.bs)))
        self.batches_used = refresh_batchnorm(learn.model, dl.new(), learn.dls.n_inp, n_batches)


def with_precise_bn(model: nn.Module, cbs: Callback | Sequence[Callback]) -> list[Callback]:
    """`cbs` plus a `PreciseBN` when the model has BatchNorm layers and `cbs` holds none (the
    applications' default)."""
    out = [cbs] if isinstance(cbs, Callback) else list(cbs)
    has_bn = any(isinstance(m, _BN) for m in model.modules())
    if has_bn and not any(isinstance(c, PreciseBN) for c in out):
        out.append(PreciseBN())
    return out
