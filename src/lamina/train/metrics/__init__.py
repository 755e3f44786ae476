"""Metrics for the Learner: lamina's names over torchmetrics states, accumulated on the device, read once.

The Learner calls `reset()` before a validation pass, `accumulate(pred, targ)` on every batch (raw model
output and target, plain tensors on the device) and `value()` once after it: `value()` is the only place
that waits for the device. In a sharded distributed validation the Recorder calls `sync()` first, which is
torchmetrics' own `sync` (each state's `dist_reduce_fx`). A plain function `(pred, targ) -> scalar` that
is a mean over the batch becomes an `AvgMetric`; a torchmetrics metric is used as it is. torchmetrics is
imported when the first metric object is built, not when lamina is.

>>> m = as_metric(accuracy)
>>> m.reset()
>>> m.accumulate(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
>>> m.value()
0.5
"""

from lamina.train.metrics._accumulated import AccumMetric, AvgMetric, Perplexity, R2Score, RocAuc, as_metric
from lamina.train.metrics._classification import Dice, F1Score, FBeta, JaccardCoeff, Precision, Recall
from lamina.train.metrics._core import (
    DistSyncFn,
    Metric,
    accuracy,
    accuracy_multi,
    error_rate,
    foreground_acc,
    mae,
    mse,
    rmse,
    top_k_accuracy,
)

__all__ = [
    "AccumMetric",
    "AvgMetric",
    "Dice",
    "DistSyncFn",
    "F1Score",
    "FBeta",
    "JaccardCoeff",
    "Metric",
    "Perplexity",
    "Precision",
    "R2Score",
    "Recall",
    "RocAuc",
    "accuracy",
    "accuracy_multi",
    "as_metric",
    "error_rate",
    "foreground_acc",
    "mae",
    "mse",
    "rmse",
    "top_k_accuracy",
]
