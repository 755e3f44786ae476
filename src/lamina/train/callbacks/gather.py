"""GatherPreds: collects predictions, targets, inputs and per-item losses during a validation pass."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from lamina.train.callback import Callback

__all__ = ["GatherPreds"]


def _cat(parts: list[Tensor], pad: float = 0) -> Tensor:
    """Concatenate batches along dim 0; batches that differ in their other dimensions (texts padded to
    each batch's longest) are first padded at the end with `pad` to the largest."""
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1 and len({len(s) for s in shapes}) == 1:
        size = [max(s[d] for s in shapes) for d in range(len(next(iter(shapes))))]
        parts = [
            torch.nn.functional.pad(
                p, [x for d in reversed(range(len(size))) for x in (0, size[d] - p.shape[d + 1])], value=pad
            )
            for p in parts
        ]
    return torch.cat(parts)


class GatherPreds(Callback):
    """Keeps every batch's raw predictions and targets (and on request inputs and per-item losses).

    They stay on the device until the pass ends, then move to the CPU together.
    """

    order = 90
    run_train = False

    def __init__(self, with_input: bool = False, with_loss: bool = False) -> None:
        self.with_input, self.with_loss = with_input, with_loss
        self._preds: list[Tensor] = []
        self._targs: list[tuple[Tensor, ...]] = []
        self._inps: list[tuple[Tensor, ...]] = []
        self._losses: list[Tensor] = []

    def before_validate(self) -> None:
        self._preds, self._targs, self._inps, self._losses = [], [], [], []
        self._item_loss = None
        if self.with_loss:
            loss = self.learn.loss_func
            if not hasattr(loss, "reduction"):
                raise TypeError(
                    f"get_preds(with_loss=True): the loss {type(loss).__name__} has no `reduction` setting.\n"
                    "help: use a lamina loss (e.g. CrossEntropyLossFlat) or a loss module with `reduction`"
                )
            self._item_loss = copy.copy(loss)
            self._item_loss.reduction = "none"

    def after_batch(self) -> None:
        learn = self.learn
        self._preds.append(learn.pred.detach())
        self._targs.append(tuple(y.detach() for y in learn.yb))
        if self.with_input:
            self._inps.append(tuple(x.detach() for x in learn.xb))
        if self._item_loss is not None and learn.yb:
            self._losses.append(self._item_loss(learn.pred, *learn.yb).detach())

    def _pad(self, k: int) -> float:
        """The padding value of element k of the batches (its type's PAD, e.g. -1 for token ids; else 0)."""
        types = getattr(self.learn.dl, "batch_types", ())
        return float(getattr(types[k], "PAD", 0)) if k < len(types) else 0.0

    def pads(self) -> tuple[list[float], list[float]]:
        """The padding value of each input element and of each target element (for a distributed gather)."""
        n_targ = len(self._targs[0]) if self._targs else 0
        n = len(self._inps[0]) if self._inps else self.learn.dls.n_inp
        return [self._pad(k) for k in range(n)], [self._pad(n + k) for k in range(n_targ)]

    def preds(self) -> Tensor:
        return _cat(self._preds).float().cpu() if self._preds else torch.empty(0)

    def targets(self) -> Tensor | tuple[Tensor, ...] | None:
        if not self._targs or not self._targs[0]:
            return None
        n = len(self._inps[0]) if self._inps else self.learn.dls.n_inp
        cols = [_cat([t[k] for t in self._targs], self._pad(n + k)).cpu() for k in range(len(self._targs[0]))]
        return cols[0] if len(cols) == 1 else tuple(cols)

    def inputs(self) -> tuple[Tensor, ...]:
        return tuple(_cat([x[k] for x in self._inps], self._pad(k)).cpu() for k in range(len(self._inps[0])))

    def losses(self) -> Tensor:
        return torch.cat(self._losses).float().cpu() if self._losses else torch.empty(0)
