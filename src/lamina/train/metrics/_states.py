"""torchmetrics states that torchmetrics has no class for; imported by lamina.train.metrics on first use.

Both reduce across processes through torchmetrics' own `sync` (`dist_reduce_fx`), like its built-in metrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric as TorchmetricsMetric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["PredsTargets", "WeightedMean"]


class WeightedMean(TorchmetricsMetric):
    """`total / count` summed on the device in `dtype` (float64 except where the device has none)."""

    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__(sync_on_compute=False, compute_with_cache=False)
        self.add_state("total", torch.zeros((), dtype=dtype), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=dtype), dist_reduce_fx="sum")

    def update(self, total: Tensor, count: Tensor | int) -> None:
        self.total += total.detach().to(self.total.dtype)
        self.count += count

    def compute(self) -> Tensor:
        return self.total / self.count


class PredsTargets(TorchmetricsMetric):
    """Every prediction and target, kept on the device and concatenated across processes."""

    full_state_update = False
    preds: list[Tensor]
    targs: list[Tensor]

    def __init__(self) -> None:
        super().__init__(sync_on_compute=False, compute_with_cache=False)
        self.add_state("preds", [], dist_reduce_fx="cat")
        self.add_state("targs", [], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.preds.append(preds.detach())
        self.targs.append(target.detach())

    def compute(self) -> tuple[Tensor, Tensor]:
        return dim_zero_cat(self.preds), dim_zero_cat(self.targs)
