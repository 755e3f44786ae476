"""A torchmetrics state that torchmetrics has no class for; imported by lamina.train.metrics on first use.

It reduces across processes through torchmetrics' own `sync` (`dist_reduce_fx`), like its built-in metrics.
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import Metric as TorchmetricsMetric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["PredsTargets"]


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
