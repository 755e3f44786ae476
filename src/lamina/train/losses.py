"""Losses used for training recipes rather than brought by a data block: LabelSmoothingCrossEntropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lamina.core import register_loss
from lamina.data.losses import BaseLoss

__all__ = ["LabelSmoothingCrossEntropy"]


@register_loss("train.LabelSmoothingCrossEntropy")
class LabelSmoothingCrossEntropy(BaseLoss):
    """Cross entropy against a target that puts `1 - eps` on the true class and spreads `eps` evenly.

    Discourages over-confident logits, which often generalises better. Written out (rather than
    `F.cross_entropy(label_smoothing=eps)`, which it equals) so the blend is visible:
    `(1 - eps) * nll + eps * mean over classes of -log p`. The class dimension is 1, as for
    (B, C) classifier and (B, C, H, W) segmenter outputs; targets are class indices.
    """

    def __init__(self, eps: float = 0.1, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if not 0.0 <= eps < 1.0:
            raise ValueError(
                f"LabelSmoothingCrossEntropy: eps must be in [0, 1), got {eps}.\n"
                "help: eps is the probability mass spread over all classes; 0.1 is usual"
            )
        self.eps = float(eps)

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        logp = F.log_softmax(pred, dim=1)  # (B, C, ...)
        nll = -logp.gather(1, targ.long().unsqueeze(1)).squeeze(1)  # (B, ...)
        smooth = -logp.mean(dim=1)  # (B, ...)
        return (1 - self.eps) * nll + self.eps * smooth

    def activation(self, x: Tensor) -> Tensor:
        return torch.softmax(x, dim=1)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(dim=1)

    def to_config(self) -> dict[str, Any]:
        return {"eps": self.eps, "reduction": self.reduction}
