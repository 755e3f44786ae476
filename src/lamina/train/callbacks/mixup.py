"""MixUp and CutMix: train on blends of two examples, with the loss blended the same way (regularisation).

>>> learn.fit_one_cycle(10, 1e-3, cbs=MixUp(alpha=0.4))   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lamina.train.callback import Callback

__all__ = ["CutMix", "MixUp"]


class _Mix(Callback):
    """Shared: shuffles the batch in before_batch, blends the loss in after_loss; training batches only."""

    order = 15  # in after_loss before MixedPrecision (30) leaves autocast
    run_valid = False

    def __init__(self, alpha: float) -> None:
        if not alpha > 0:
            raise ValueError(
                f"{type(self).__name__}: alpha must be > 0, got {alpha}.\n"
                "help: alpha is the Beta(alpha, alpha) parameter; 0.2 to 1.0 are usual"
            )
        self.alpha = float(alpha)
        self.perm: Tensor | None = None  # (B,) the partner of each item
        self.yb_perm: tuple[Tensor, ...] = ()  # the partners' targets

    def _shuffle(self) -> Tensor:
        learn = self.learn
        x = learn.xb[0]
        perm = torch.randperm(len(x), device=x.device)
        self.perm = perm
        self.yb_perm = tuple(y[perm] for y in learn.yb)
        return perm


class MixUp(_Mix):
    """Replaces each training input by `lam * x + (1 - lam) * x_partner`, and the loss by
    `lam * loss(pred, y) + (1 - lam) * loss(pred, y_partner)`, with one `lam` per item from
    Beta(alpha, alpha) taken as max(lam, 1 - lam) so each item stays the larger part of its blend.

    Every input must be a float tensor (images, features), the loss must have a `reduction` (lamina's
    losses and torch's nn losses do): a copy with `reduction="none"` gives the per-item losses. Validation
    is untouched.
    """

    def __init__(self, alpha: float = 0.4) -> None:
        super().__init__(alpha)
        self.lam: Tensor | None = None  # (B,)
        self._item_loss: Callable[..., Tensor] | None = None
        self._reduction = "mean"
        self._beta: torch.distributions.Beta | None = None

    def before_fit(self) -> None:
        loss = self.learn.loss_func
        reduction = getattr(loss, "reduction", None)
        if reduction not in ("mean", "sum"):
            raise TypeError(
                f"MixUp: needs a loss with reduction 'mean' or 'sum' to blend per-item losses; "
                f"{type(loss).__name__} has reduction={reduction!r}.\n"
                "help: use a lamina loss (e.g. CrossEntropyLossFlat) or a torch nn loss such as "
                "nn.CrossEntropyLoss(), or CutMix, which blends whole-batch losses"
            )
        self._reduction = str(reduction)
        item_loss: Any = copy.copy(loss)
        item_loss.reduction = "none"
        self._item_loss = item_loss
        self._beta = None

    def before_batch(self) -> None:
        learn = self.learn
        for x in learn.xb:
            if not x.is_floating_point():
                raise TypeError(
                    f"MixUp: can only blend float inputs, got a {x.dtype} input of shape {tuple(x.shape)}.\n"
                    "help: MixUp suits images and continuous features; remove it for token ids or categories"
                )
        x0 = learn.xb[0]
        if self._beta is None or self._beta.concentration1.device != x0.device:
            a = torch.tensor(self.alpha, device=x0.device)
            self._beta = torch.distributions.Beta(a, a)
        lam = self._beta.sample((len(x0),))  # (B,)
        lam = torch.maximum(lam, 1 - lam)
        self.lam = lam
        perm = self._shuffle()
        learn.xb = tuple(
            torch.lerp(x[perm], x, lam.to(x.dtype).view(-1, *[1] * (x.ndim - 1))) for x in learn.xb
        )

    def _per_item(self, loss: Tensor) -> Tensor:
        if loss.ndim > 1:  # (B, ...) from an nn loss on a dense target: one value per item
            loss = loss.reshape(len(loss), -1)
            loss = loss.sum(1) if self._reduction == "sum" else loss.mean(1)
        return loss  # (B,)

    def after_loss(self) -> None:
        learn = self.learn
        assert self._item_loss is not None and self.lam is not None
        mine = self._per_item(self._item_loss(learn.pred, *learn.yb))  # (B,)
        partner = self._per_item(self._item_loss(learn.pred, *self.yb_perm))  # (B,)
        mixed = torch.lerp(partner, mine, self.lam.to(mine.dtype))  # (B,)
        learn.loss = mixed.sum() if self._reduction == "sum" else mixed.mean()


class CutMix(_Mix):
    """Pastes a random box of another training image into each image, and blends the loss by area:
    `lam * loss(pred, y) + (1 - lam) * loss(pred, y_partner)`, lam = the share of the image kept.

    One box per batch, sized from lam ~ Beta(alpha, alpha) (drawn on the host: no device sync). Inputs
    must be (B, C, H, W); any loss works (it is called twice, as is). Validation is untouched.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)
        self.lam = 1.0
        self.box: tuple[int, int, int, int] = (0, 0, 0, 0)  # y1, y2, x1, x2
        self._beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))

    def before_batch(self) -> None:
        learn = self.learn
        for x in learn.xb:
            if x.ndim != 4:
                raise ValueError(
                    f"CutMix: inputs must be images (B, C, H, W), got shape {tuple(x.shape)}.\n"
                    "help: use MixUp for other inputs"
                )
        H, W = learn.xb[0].shape[-2:]
        lam = float(self._beta.sample())
        cut = math.sqrt(1 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy, cx = int(torch.randint(H, ())), int(torch.randint(W, ()))
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        self.box = (y1, y2, x1, x2)
        self.lam = 1 - (y2 - y1) * (x2 - x1) / (H * W)
        perm = self._shuffle()
        out = []
        for x in learn.xb:
            x = x.clone()  # (B, C, H, W)
            x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
            out.append(x)
        learn.xb = tuple(out)

    def after_loss(self) -> None:
        learn = self.learn
        loss_func = learn.loss_func
        lam = self.lam
        learn.loss = lam * loss_func(learn.pred, *learn.yb) + (1 - lam) * loss_func(learn.pred, *self.yb_perm)
