"""Metrics over a whole validation set: running means, every prediction at once (AccumMetric, ROC AUC, R²),
a torchmetrics metric as it is, and `as_metric`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lamina.train.metrics._core import (
    _ACTIVATIONS,
    DistSyncFn,
    Metric,
    MetricFunc,
    _acc_dtype,
    _Backed,
    _check_batch,
    _class_dim,
    _flat_pair,
    _func_name,
    _nothing_to_sync,
    _shape,
    _snake,
    _tm_states,
    _to_float,
    _TorchmetricsLike,
    mae,
    mse,
    rmse,
)

if TYPE_CHECKING:
    from torchmetrics import Metric as TorchmetricsMetric

__all__ = ["AccumMetric", "AvgMetric", "Perplexity", "R2Score", "RocAuc", "as_metric"]


# ----------------------------------------------------------------------------------------------------
# running means: AvgMetric, mse / rmse / mae, Perplexity


class _Mean(Metric):
    """A running `total / count` on the device, in lamina itself: the plain metric functions (accuracy...)
    need no torchmetrics, whose import costs ~2.5 s on top of torch. `sync` sums the two over processes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._sums: Tensor | None = None  # (total, count)

    def reset(self) -> None:
        self._sums = None

    def _add(self, total: Tensor, count: Tensor | int) -> None:
        if self._sums is None:
            self._sums = torch.zeros(2, dtype=_acc_dtype(total.device), device=total.device)
        self._sums[0] += total.detach().to(self._sums.dtype)
        self._sums[1] += count

    def _mean(self) -> Tensor | None:
        return None if self._sums is None or self._sums[1] == 0 else self._sums[0] / self._sums[1]

    def sync(self, dist_sync_fn: DistSyncFn | None = None) -> None:
        if self._sums is None:
            raise _nothing_to_sync(self.name)
        if dist_sync_fn is not None:
            self._sums = torch.stack(dist_sync_fn(self._sums, None)).sum(0)
            return
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._sums)


class AvgMetric(_Mean):
    """A function that is a mean over the batch, averaged over the validation set weighted by batch size.

    >>> m = AvgMetric(mae)
    """

    def __init__(self, func: MetricFunc, name: str | None = None) -> None:
        if func is rmse:
            raise ValueError(
                "AvgMetric: rmse is not a mean over the batch, so averaging it per batch would be wrong. "
                "help: use as_metric(rmse), which takes the root of the mean over the whole set"
            )
        self.func = func
        super().__init__(name or _func_name(func))

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        bs = targ.shape[0]
        out = torch.as_tensor(self.func(pred, targ), device=pred.device)
        self._add(out * bs, bs)

    def value(self) -> float:
        out = self._mean()
        return math.nan if out is None else _to_float(out, self.name)


class _RegressionError(_Backed):
    """mse, rmse or mae over every value of the set: torchmetrics' MeanSquaredError / MeanAbsoluteError.

    rmse is the root of the mean over the whole set, not a mean of per-batch roots.
    """

    def __init__(self, kind: Literal["mse", "rmse", "mae"]) -> None:
        self.kind = kind
        super().__init__(kind)

    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

        if self.kind == "mae":
            m: TorchmetricsMetric = MeanAbsoluteError(sync_on_compute=False, compute_with_cache=False)
        else:
            m = MeanSquaredError(squared=self.kind == "mse", sync_on_compute=False, compute_with_cache=False)
        return m.set_dtype(_acc_dtype(pred.device))

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        p, t = _flat_pair(pred, targ, self.name)
        self._state(pred, targ).update(p, t)

    def value(self) -> float:
        out = self._computed()
        return math.nan if out is None else _to_float(out, self.name)


class Perplexity(_Mean):
    """exp of the cross entropy averaged over every token of the validation set.

    Takes (B, T, V) logits with (B, T) token ids, or (N, V) with (N,); targets equal to `ignore_index`
    (padding) are skipped. (torchmetrics' Perplexity takes only (B, T, V) and masks per batch, which waits
    for the device.)
    """

    def __init__(self, ignore_index: int = -100, name: str = "perplexity") -> None:
        self.ignore_index = ignore_index
        super().__init__(name)

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        d = _class_dim(pred, targ, self.name)
        logits = pred.movedim(d, -1).reshape(-1, pred.shape[d]).float()  # (N, V)
        tokens = targ.reshape(-1).long()  # (N,)
        ce = F.cross_entropy(logits, tokens, ignore_index=self.ignore_index, reduction="sum")
        self._add(ce, (tokens != self.ignore_index).sum())

    def value(self) -> float:
        out = self._mean()
        return math.nan if out is None else math.exp(_to_float(out, self.name))


# ----------------------------------------------------------------------------------------------------
# every prediction at once: AccumMetric, RocAuc; R²


class AccumMetric(_Backed):
    """Keeps every prediction and target (on the device) and computes `func` once on all of them.

    Before `func`, the predictions go through `activation` ("softmax" or "sigmoid" over `dim`), then
    `argmax` over `dim` or `pred > thresh`, and, with `flatten`, both become flat vectors.
    """

    def __init__(
        self,
        func: Callable[[Tensor, Tensor], Tensor | float],
        name: str | None = None,
        activation: Literal["softmax", "sigmoid"] | None = None,
        argmax: bool = False,
        thresh: float | None = None,
        flatten: bool = True,
        dim: int = -1,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"AccumMetric: activation={activation!r}; expected 'softmax', 'sigmoid' or None. "
                "help: apply other transforms inside func"
            )
        if argmax and thresh is not None:
            raise ValueError(
                f"AccumMetric: argmax=True and thresh={thresh} both given; expected one way to turn scores "
                "into labels. help: argmax for single-label classes, thresh for multi-label"
            )
        self.func = func
        self.activation = activation
        self.argmax = argmax
        self.thresh = thresh
        self.flatten = flatten
        self.dim = dim
        super().__init__(name or _func_name(func))

    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        return _tm_states().PredsTargets()

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        self._state(pred, targ).update(pred, targ)

    def _prepare(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        pred = pred.float()
        if self.activation == "softmax":
            pred = pred.softmax(dim=self.dim)
        elif self.activation == "sigmoid":
            pred = pred.sigmoid()
        if self.argmax:
            pred = pred.argmax(dim=self.dim)
        elif self.thresh is not None:
            pred = (pred > self.thresh).float()
        if self.flatten:
            if pred.numel() != targ.numel():
                raise ValueError(
                    f"{self.name}: pred has shape {_shape(pred)} and targ {_shape(targ)} after the "
                    "activation/argmax; expected as many values to flatten. help: pass flatten=False to "
                    "keep the shapes, or argmax=True to turn class scores into labels"
                )
            pred, targ = pred.reshape(-1), targ.reshape(-1)
        return pred, targ

    def value(self) -> float:
        out = self._computed()
        if out is None:
            return math.nan
        return _to_float(self.func(*self._prepare(*out)), self.name)


class R2Score(_Backed):
    """R² (coefficient of determination) over the whole validation set: torchmetrics' R2Score, several
    outputs averaged uniformly (a constant target scores 1 when predicted exactly, else 0)."""

    def __init__(self, name: str = "r2_score") -> None:
        super().__init__(name)

    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        from torchmetrics.regression import R2Score as TorchmetricsR2

        return TorchmetricsR2(sync_on_compute=False, compute_with_cache=False).set_dtype(
            _acc_dtype(pred.device)
        )

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        if pred.numel() != targ.numel():
            raise ValueError(
                f"{self.name}: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected one "
                "prediction per target value. help: the model should output (B,) or (B, 1) for (B,) targets"
            )
        dtype = _acc_dtype(pred.device)
        t = targ.reshape(targ.shape[0], -1).to(dtype) if targ.ndim > 1 else targ.to(dtype)  # (N, K) or (N,)
        self._state(pred, targ).update(pred.reshape(t.shape).to(dtype), t)

    def value(self) -> float:
        out = self._computed()
        return math.nan if out is None else _to_float(out, self.name)


def _binary_auc(score: Tensor, pos: Tensor) -> Tensor:
    """ROC AUC of one column (torchmetrics' binary_auroc, ties counting half); NaN without both classes."""
    from torchmetrics.functional.classification import binary_auroc

    n_pos = int(pos.sum().item())
    if n_pos in (0, pos.numel()):
        return torch.tensor(math.nan, dtype=torch.float64)
    return binary_auroc(score.double(), pos.long(), validate_args=False)


def _weighted_mean(scores: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of the defined (non-NaN) scores, weighted when `weights` is given."""
    ok = ~scores.isnan()
    if weights is None:
        return scores[ok].mean()
    w = weights.to(scores.dtype)[ok]
    return (scores[ok] * w).sum() / w.sum()


class RocAuc(_Backed):
    """Area under the ROC curve on the whole validation set, with torchmetrics' AUROC functions.

    Binary: (B,) or (B, 1) logits, or (B, 2) class scores, with (B,) 0/1 targets. Multi-class: (B, C)
    scores with (B,) targets, one-vs-rest (`average` "macro", "weighted" or "micro") or one-vs-one (Hand &
    Till; "macro" or "weighted", which torchmetrics lacks) on the softmax. Multi-label: (B, C) logits with
    (B, C) 0/1 targets, per label on the sigmoid. A class whose AUC is undefined (no positive or no
    negative) is left out of the average; NaN when none is defined.
    """

    def __init__(
        self,
        average: Literal["macro", "weighted", "micro"] = "macro",
        multi_class: Literal["ovr", "ovo"] = "ovr",
        name: str = "roc_auc",
    ) -> None:
        if average not in ("macro", "weighted", "micro"):
            raise ValueError(
                f"RocAuc: average={average!r}; expected 'macro', 'weighted' or 'micro'. "
                "help: a binary problem ignores average"
            )
        if multi_class not in ("ovr", "ovo"):
            raise ValueError(f"RocAuc: multi_class={multi_class!r}; expected 'ovr' or 'ovo'. help: use 'ovr'")
        if multi_class == "ovo" and average == "micro":
            raise ValueError(
                "RocAuc: average='micro' is not defined for multi_class='ovo'. "
                "help: use average='macro' or 'weighted', or multi_class='ovr'"
            )
        self.average = average
        self.multi_class = multi_class
        super().__init__(name)

    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        return _tm_states().PredsTargets()

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        self._state(pred, targ).update(pred, targ)

    def value(self) -> float:
        out = self._computed()
        return math.nan if out is None else _to_float(self._score(*out), self.name)

    def _score(self, pred: Tensor, targ: Tensor) -> Tensor:
        pred = pred.double()
        if pred.ndim == 2 and pred.shape == targ.shape and pred.shape[1] > 1:  # multi-label (N, C)
            return self._one_vs_rest(pred.sigmoid(), targ > 0.5, None)
        if pred.ndim == 2 and targ.ndim == 1 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.ndim == 1 and targ.ndim == 1:  # binary logits (N,)
            return _binary_auc(pred, targ > 0.5)
        if pred.ndim != 2 or targ.ndim != 1:
            raise ValueError(
                f"{self.name}: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected "
                "(N,) or (N, C) scores with (N,) targets, or (N, C) with (N, C) multi-label targets. "
                "help: flatten segmentation outputs to (N, C) and (N,) first"
            )
        if pred.shape[1] == 2:  # binary with two class scores: rank by the positive class
            return _binary_auc(pred[:, 1] - pred[:, 0], targ == 1)
        probs = pred.softmax(dim=1)  # (N, C)
        targ = targ.long()
        if self.multi_class == "ovo":
            return self._one_vs_one(probs, targ)
        return self._one_vs_rest(probs, F.one_hot(targ, pred.shape[1]).bool(), targ)

    def _one_vs_rest(self, probs: Tensor, onehot: Tensor, targ: Tensor | None) -> Tensor:
        """Per class against the rest; `targ` holds the class indices of single-label data."""
        from torchmetrics.functional.classification import multiclass_auroc, multilabel_auroc

        if self.average == "micro":
            return _binary_auc(probs.reshape(-1), onehot.reshape(-1))
        n = probs.shape[1]
        if targ is None:
            aucs = multilabel_auroc(probs, onehot.long(), num_labels=n, average=None, validate_args=False)
        else:
            aucs = multiclass_auroc(probs, targ, num_classes=n, average=None, validate_args=False)
        defined = onehot.any(0) & (~onehot).any(0)  # (C,)
        aucs = torch.where(defined, aucs.double(), torch.full_like(aucs, math.nan, dtype=torch.float64))
        return _weighted_mean(aucs, onehot.sum(0) if self.average == "weighted" else None)

    def _one_vs_one(self, probs: Tensor, targ: Tensor) -> Tensor:
        present = torch.unique(targ).tolist()
        scores, weights = [], []
        for a, b in itertools.combinations(present, 2):
            in_pair = (targ == a) | (targ == b)
            t = targ[in_pair]
            auc_a = _binary_auc(probs[in_pair, a], t == a)
            auc_b = _binary_auc(probs[in_pair, b], t == b)
            scores.append((auc_a + auc_b) / 2)
            weights.append(in_pair.double().mean())
        if not scores:
            return torch.tensor(math.nan)
        weighted = self.average == "weighted"
        return _weighted_mean(torch.stack(scores), torch.stack(weights) if weighted else None)


# ----------------------------------------------------------------------------------------------------
# a torchmetrics metric as it is, and turning anything into a Metric


class _TorchmetricsMetric(Metric):
    """A torchmetrics metric used as it is: `update` per batch, `compute` at the end.

    It keeps its own settings: by default torchmetrics syncs across processes inside `compute()`, so
    `sync()` here does nothing.
    """

    def __init__(self, metric: _TorchmetricsLike) -> None:
        self.metric = metric
        self.name = _snake(type(metric).__name__)
        self._device: torch.device | None = None

    def reset(self) -> None:
        self.metric.reset()

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        to = getattr(self.metric, "to", None)
        if callable(to) and self._device != pred.device:
            to(pred.device)
            self._device = pred.device
        self.metric.update(pred.detach(), targ.detach())

    def value(self) -> float:
        return _to_float(self.metric.compute(), self.name)


_REGRESSION: dict[Callable[..., Any], Literal["mse", "rmse", "mae"]] = {mse: "mse", rmse: "rmse", mae: "mae"}


def as_metric(m: Metric | MetricFunc | _TorchmetricsLike) -> Metric:
    """Turn what a user passes as a metric into a `Metric`.

    A `Metric` is returned as it is; an object with `update`, `compute` and `reset` (a torchmetrics
    metric) is wrapped; `mse`, `rmse` and `mae` become torchmetrics' MeanSquaredError / MeanAbsoluteError
    over every value of the set; any other function `(pred, targ) -> scalar` becomes an `AvgMetric`.
    """
    if isinstance(m, Metric):
        return m
    if isinstance(m, type):
        raise TypeError(
            f"as_metric: got the class {m.__name__}; expected a metric instance or function. "
            f"help: call it, e.g. {m.__name__}()"
        )
    if all(callable(getattr(m, a, None)) for a in ("update", "compute", "reset")):
        return _TorchmetricsMetric(m)  # type: ignore[arg-type]
    if callable(m) and m in _REGRESSION:
        return _RegressionError(_REGRESSION[m])
    if callable(m):
        return AvgMetric(m)
    raise TypeError(
        f"as_metric: got {type(m).__name__} {m!r}; expected a lamina Metric, a function (pred, targ) -> "
        "tensor, or a torchmetrics metric. help: wrap other computations in AvgMetric or AccumMetric"
    )
