"""The Learner's own tally of a validation pass: loss and metrics on the device, read once at the end.

The Learner computes its results itself (as Keras' trainer does), so `validate()` reports them by name
with or without callbacks; the Recorder and the progress bar only observe `learn.last_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lamina.train.metrics import Metric

if TYPE_CHECKING:
    from lamina.train.distributed import Run

__all__ = ["ValidationTally"]


class ValidationTally:
    """Valid loss (weighted by batch size) and metrics of one pass; `results` reads them once."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = list(metrics)
        self._losses: list[Tensor] = []
        self._sizes: list[int] = []
        for m in self.metrics:
            m.reset()

    def add(self, pred: Tensor, yb: tuple[Tensor, ...], loss: Tensor) -> None:
        """One batch: its mean loss and size, and each metric's state (no host sync)."""
        self._losses.append(loss.detach())
        self._sizes.append(len(yb[0]))
        for m in self.metrics:
            m.accumulate(pred, yb[0] if len(yb) == 1 else torch.stack(yb))

    def results(self, dist: Run | None = None) -> dict[str, float]:
        """`{"valid_loss": ..., <metric name>: ...}`; `{}` when no batch had targets. With `dist`, every
        process takes part (even one that saw no batch) and all get the totals over the processes."""
        total: Tensor | float = 0.0
        n = 0
        if self._losses:
            means = torch.stack(self._losses).float()
            total = (means * torch.tensor(self._sizes, dtype=means.dtype, device=means.device)).sum()
            n = sum(self._sizes)
        if dist is not None and dist.world > 1:
            total = dist.all_reduce_sum(total)
            n = int(dist.all_reduce_sum(n).item())
            if n:
                for m in self.metrics:
                    dist.reduce_metric(m)
        if not n:
            return {}
        return {"valid_loss": float(total / n), **{m.name: float(m.value()) for m in self.metrics}}
