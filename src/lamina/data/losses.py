"""The losses that a target block brings, each knowing how to turn raw outputs into probabilities and labels.

`activation` maps logits to what a user reads (probabilities); `decodes` maps those to the target's
encoding (a class index, a multi-hot vector). They flatten extra dimensions, so the same loss serves a
classifier (B, C) and a segmenter (B, C, H, W). `reduction="none"` gives one loss per item (top losses).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lamina.core import register_loss

__all__ = ["BCEWithLogitsLossFlat", "BaseLoss", "CrossEntropyLossFlat", "L1LossFlat", "MSELossFlat"]

_REDUCTIONS = ("mean", "sum", "none")


class BaseLoss(nn.Module):
    """A loss from an unreduced elementwise loss; knows its `activation` and `decodes` for predictions."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        """The unreduced loss, batch first."""
        raise NotImplementedError

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        loss = self.elementwise(pred, targ)
        if self.reduction == "none":
            return loss.reshape(loss.shape[0], -1).mean(1)  # (B,)
        return loss.sum() if self.reduction == "sum" else loss.mean()

    def activation(self, x: Tensor) -> Tensor:
        return x

    def decodes(self, x: Tensor) -> Tensor:
        return x

    def to_config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this loss (for export)."""
        return {"reduction": self.reduction}


@register_loss("loss.CrossEntropyLossFlat")
class CrossEntropyLossFlat(BaseLoss):
    """Cross entropy over the class dimension `axis` (1 for (B, C, H, W) outputs); targets: class indices."""

    def __init__(self, axis: int = 1, label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.axis, self.label_smoothing = axis, label_smoothing

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        if pred.ndim > 2 and self.axis != 1:
            pred = pred.movedim(self.axis, 1)
        return F.cross_entropy(pred, targ.long(), label_smoothing=self.label_smoothing, reduction="none")

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        if self.reduction == "mean":  # the fused kernel, without materialising the per-item losses
            if pred.ndim > 2 and self.axis != 1:
                pred = pred.movedim(self.axis, 1)
            return F.cross_entropy(pred, targ.long(), label_smoothing=self.label_smoothing)
        return super().forward(pred, targ)

    def activation(self, x: Tensor) -> Tensor:
        return torch.softmax(x, dim=self.axis if x.ndim > 2 else -1)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(dim=self.axis if x.ndim > 2 else -1)

    def to_config(self) -> dict[str, Any]:
        return {"axis": self.axis, "label_smoothing": self.label_smoothing, "reduction": self.reduction}


@register_loss("loss.BCEWithLogitsLossFlat")
class BCEWithLogitsLossFlat(BaseLoss):
    """Binary cross entropy on logits for multi-label targets; `thresh` decides which labels are on."""

    def __init__(self, thresh: float = 0.5, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.thresh = thresh

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(pred, targ.to(pred.dtype), reduction="none")

    def activation(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def decodes(self, x: Tensor) -> Tensor:
        return (x > self.thresh).to(x.dtype)

    def to_config(self) -> dict[str, Any]:
        return {"thresh": self.thresh, "reduction": self.reduction}


@register_loss("loss.MSELossFlat")
class MSELossFlat(BaseLoss):
    """Mean squared error on flattened outputs and targets (regression, points)."""

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.mse_loss(pred, targ.reshape(pred.shape).to(pred.dtype), reduction="none")


@register_loss("loss.L1LossFlat")
class L1LossFlat(BaseLoss):
    """Mean absolute error on flattened outputs and targets."""

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        return F.l1_loss(pred, targ.reshape(pred.shape).to(pred.dtype), reduction="none")
