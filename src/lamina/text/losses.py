"""The language-model loss: cross entropy over token ids, with -1 (padding, unmasked tokens) ignored."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lamina.core import register_loss
from lamina.data import BaseLoss

__all__ = ["TextLMLoss"]


@register_loss("text.LMLoss")
class TextLMLoss(BaseLoss):
    """Cross entropy of (B, L, V) logits against (B, L) token ids; -1 targets are ignored. `shift`: causal
    models predict the next token, so logits at position t are scored against the token at t + 1."""

    def __init__(self, shift: bool = False, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.shift = shift

    def _pair(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        if self.shift:
            pred, targ = pred[:, :-1], targ[:, 1:]
        return pred, targ.long()

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred, targ = self._pair(pred, targ)
        return F.cross_entropy(pred.transpose(1, 2), targ, ignore_index=-1, reduction="none")  # (B, L)

    def forward(self, pred: Tensor, targ: Tensor) -> Tensor:
        if self.reduction == "mean":  # over the scored tokens only
            pred, targ = self._pair(pred, targ)
            return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), targ.reshape(-1), ignore_index=-1)
        return super().forward(pred, targ)

    def activation(self, x: Tensor) -> Tensor:
        return x.softmax(-1)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(-1)

    def to_config(self) -> dict[str, Any]:
        return {"shift": self.shift, "reduction": self.reduction}
