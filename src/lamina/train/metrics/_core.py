"""Metrics for the Learner: accumulated on the device during validation, read once at the end.

The Learner calls `reset()` before a validation pass, `accumulate(pred, targ)` on every batch (raw model
output and target, plain tensors on the device) and `value()` once after it: `value()` is the only place
that waits for the device. A plain function `(pred, targ) -> scalar tensor` that is a mean over the
batch becomes an `AvgMetric`; metrics that need every prediction at once (ROC AUC, R²) keep them in an
`AccumMetric`; ratio metrics (F-scores, Dice) keep per-class counts, which are small and sum across
processes.

>>> m = as_metric(accuracy)
>>> m.reset()
>>> m.accumulate(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
>>> m.value()
0.5
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AccumMetric",
    "AvgMetric",
    "Dice",
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

MetricFunc = Callable[[Tensor, Tensor], Tensor]
Average = Literal["macro", "micro", "weighted", "binary"]
_AVERAGES = ("macro", "micro", "weighted", "binary")
_ACTIVATIONS = ("softmax", "sigmoid", None)


# ----------------------------------------------------------------------------------------------------
# the protocol


class Metric(ABC):
    """What the Learner needs from a metric: reset, accumulate per batch on the device, one value at the end.

    `state()` lists the tensors another process must contribute for a distributed validation; `reductions`
    says, for each of them, whether the Learner sums them ("sum") or concatenates them along dim 0 ("cat")
    before handing them back through `load_state()`.
    """

    name: str = "metric"
    reductions: tuple[str, ...] = ()

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated; called before each validation pass."""

    @abstractmethod
    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        """Add one batch: raw model output and target. Must not wait for the device."""

    @abstractmethod
    def value(self) -> float:
        """The metric over everything accumulated (NaN when nothing was); the only device sync."""

    @abstractmethod
    def state(self) -> list[Tensor]:
        """The tensors to reduce across processes, one per entry of `reductions`."""

    @abstractmethod
    def load_state(self, gathered: list[Tensor]) -> None:
        """Replace the accumulated state by the reduced `state()` of every process."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _TorchmetricsLike(Protocol):
    """The part of `torchmetrics.Metric` that lamina uses."""

    def update(self, preds: Tensor, target: Tensor) -> None: ...
    def compute(self) -> Any: ...
    def reset(self) -> None: ...


# ----------------------------------------------------------------------------------------------------
# helpers


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _acc_dtype(device: torch.device) -> torch.dtype:
    """float64 for sums over a whole validation set, except on MPS which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _snake(name: str) -> str:
    """`MulticlassF1Score` -> `multiclass_f1_score`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _func_name(func: Callable[..., Any]) -> str:
    """The column name of a metric function: its `__name__` (seen through `functools.partial`)."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__name__", None)
    if name is None:
        return _snake(type(func).__name__)
    return name if name.isidentifier() else "metric"


def _check_batch(pred: Tensor, targ: Tensor, who: str) -> None:
    """pred and targ must hold the same number of items (their first dimension)."""
    if pred.ndim == 0 or targ.ndim == 0 or pred.shape[0] != targ.shape[0]:
        raise ValueError(
            f"{who}: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected both to start "
            "with the same batch size. help: pass the model's output and the target of the same batch; "
            "a metric that works on single values still needs a batch dimension"
        )


def _class_dim(pred: Tensor, targ: Tensor, who: str) -> int:
    """The dimension of `pred` that holds the classes: (B, C) / (B, T, C) use the last, (B, C, H, W) dim 1."""
    if pred.ndim == targ.ndim + 1 and pred.ndim >= 2:
        last = pred.shape[:-1] == targ.shape
        second = tuple(pred.shape[:1]) + tuple(pred.shape[2:]) == tuple(targ.shape)
        if second and (pred.ndim >= 4 or not last):
            return 1
        if last:
            return pred.ndim - 1
    raise ValueError(
        f"{who}: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected pred to have one "
        "more dimension than targ, the class scores: (B, C) with (B,), (B, T, C) with (B, T), or "
        "(B, C, H, W) with (B, H, W). help: pass raw class scores and integer class targets; for "
        "multi-label (one-hot) targets use accuracy_multi"
    )


def _argmax_labels(pred: Tensor, targ: Tensor, dim: int | None, who: str) -> Tensor:
    """Predicted class indices, shaped like `targ`."""
    d = _class_dim(pred, targ, who) if dim is None else dim
    labels = pred.argmax(dim=d)
    if labels.shape != targ.shape:
        raise ValueError(
            f"{who}: the argmax of pred over dim {d} has shape {_shape(labels)} but targ has shape "
            f"{_shape(targ)}; expected the same. help: pass dim= the class dimension of pred, or leave it "
            "as None to infer it"
        )
    return labels


def _flat_pair(pred: Tensor, targ: Tensor, who: str) -> tuple[Tensor, Tensor]:
    """pred and targ as flat float vectors of the same length, e.g. a (B, 1) output against (B,) targets."""
    if pred.numel() != targ.numel():
        raise ValueError(
            f"{who}: pred has shape {_shape(pred)} ({pred.numel()} values) and targ has shape "
            f"{_shape(targ)} ({targ.numel()} values); expected one prediction per target value. "
            "help: a regression model should output one value per target, e.g. (B, 1) or (B,) for (B,)"
        )
    return pred.reshape(-1).float(), targ.reshape(-1).float()


def _safe_div(num: Tensor, den: Tensor, empty: float) -> Tensor:
    """num / den, and `empty` where den is 0."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, empty))


def _check_gathered(metric: Metric, gathered: Sequence[Tensor]) -> None:
    if len(gathered) != len(metric.reductions):
        raise ValueError(
            f"{metric.name}: load_state got {len(gathered)} tensors but this metric's state has "
            f"{len(metric.reductions)} ({', '.join(metric.reductions) or 'none'}). help: pass back the "
            "reduced state() of this metric, in the same order"
        )


# ----------------------------------------------------------------------------------------------------
# metric functions (a mean over the batch: averaged over the validation set by AvgMetric)


def accuracy(pred: Tensor, targ: Tensor, dim: int | None = None) -> Tensor:
    """Fraction of items whose highest-scoring class is the target.

    Works on (B, C) logits with (B,) targets, (B, T, C) with (B, T) and segmentation (B, C, H, W) with
    (B, H, W); `dim` names the class dimension when the shapes are ambiguous.
    """
    return (_argmax_labels(pred, targ, dim, "accuracy") == targ).float().mean()


def error_rate(pred: Tensor, targ: Tensor, dim: int | None = None) -> Tensor:
    """1 - accuracy."""
    return 1 - accuracy(pred, targ, dim=dim)


def top_k_accuracy(pred: Tensor, targ: Tensor, k: int = 5, dim: int | None = None) -> Tensor:
    """Fraction of items whose target is among the `k` highest-scoring classes."""
    d = _class_dim(pred, targ, "top_k_accuracy") if dim is None else dim
    n_classes = pred.shape[d]
    if not 1 <= k <= n_classes:
        raise ValueError(
            f"top_k_accuracy: k={k} but pred has {n_classes} classes (shape {_shape(pred)}); expected "
            f"1 <= k <= {n_classes}. help: use functools.partial(top_k_accuracy, k=...) with a smaller k"
        )
    top = pred.topk(k, dim=d).indices  # class indices, k of them along d
    return (top == targ.unsqueeze(d)).any(dim=d).float().mean()


def accuracy_multi(pred: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: fraction of (item, label) pairs predicted right, thresholding the scores.

    `sigmoid=True` expects logits; pass `sigmoid=False` when the model already outputs probabilities.
    """
    if pred.shape != targ.shape:
        raise ValueError(
            f"accuracy_multi: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected "
            "the same shape, one score per label. help: for one class per item use accuracy"
        )
    probs = pred.float().sigmoid() if sigmoid else pred.float()
    return ((probs > thresh) == targ.bool()).float().mean()


def mse(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error."""
    p, t = _flat_pair(pred, targ, "mse")
    return F.mse_loss(p, t)


def mae(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error."""
    p, t = _flat_pair(pred, targ, "mae")
    return (p - t).abs().mean()


def rmse(pred: Tensor, targ: Tensor) -> Tensor:
    """Root mean squared error of the values given.

    As a metric (`as_metric(rmse)`) it is the root of the mean over the whole validation set, not a mean
    of per-batch roots.
    """
    return mse(pred, targ).sqrt()


def foreground_acc(pred: Tensor, targ: Tensor, bkg_idx: int = 0, dim: int | None = None) -> Tensor:
    """Segmentation accuracy over the pixels whose target is not the background class `bkg_idx`.

    A batch without foreground counts as 0; as a metric it is averaged per batch like other functions.
    """
    labels = _argmax_labels(pred, targ, dim, "foreground_acc")
    fg = targ != bkg_idx
    return ((labels == targ) & fg).sum().float() / fg.sum().clamp(min=1).float()


# ----------------------------------------------------------------------------------------------------
# running means: AvgMetric, rmse, Perplexity


class _MeanMetric(Metric):
    """A running `total / count`, both kept on the device; subclasses decide what a batch adds."""

    reductions = ("sum", "sum")

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._total: Tensor | None = None
        self._count: Tensor | None = None

    def _add(self, total: Tensor, count: Tensor | int) -> None:
        dtype = _acc_dtype(total.device)
        if self._total is None or self._count is None:
            self._total = torch.zeros((), dtype=dtype, device=total.device)
            self._count = torch.zeros((), dtype=dtype, device=total.device)
        self._total += total.detach().to(dtype)
        self._count += count

    def _finalize(self, mean: Tensor) -> Tensor:
        return mean

    def value(self) -> float:
        if self._total is None or self._count is None:
            return math.nan
        return float(self._finalize(self._total / self._count).item())

    def state(self) -> list[Tensor]:
        if self._total is None or self._count is None:
            return [torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)]
        return [self._total, self._count]

    def load_state(self, gathered: list[Tensor]) -> None:
        _check_gathered(self, gathered)
        self._total, self._count = gathered[0].reshape(()), gathered[1].reshape(())


class AvgMetric(_MeanMetric):
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


class _RootMeanSquaredError(_MeanMetric):
    """Root of the mean squared error over every value of the validation set."""

    def __init__(self) -> None:
        super().__init__("rmse")

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        p, t = _flat_pair(pred, targ, self.name)
        self._add((p - t).square().sum(), t.numel())

    def _finalize(self, mean: Tensor) -> Tensor:
        return mean.sqrt()


class Perplexity(_MeanMetric):
    """exp of the cross entropy averaged over every token of the validation set.

    Takes (B, T, V) logits with (B, T) token ids, or (N, V) with (N,); targets equal to `ignore_index`
    (padding) are skipped.
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

    def _finalize(self, mean: Tensor) -> Tensor:
        return mean.exp()


# ----------------------------------------------------------------------------------------------------
# AccumMetric: keep everything, compute once


class AccumMetric(Metric):
    """Keeps every prediction and target (on the device) and computes `func` once on all of them.

    Before `func`, the predictions go through `activation` ("softmax" or "sigmoid" over `dim`), then
    `argmax` over `dim` or `pred > thresh`, and, with `flatten`, both become flat vectors.
    """

    reductions = ("cat", "cat")

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
        self.name = name or _func_name(func)
        self.activation = activation
        self.argmax = argmax
        self.thresh = thresh
        self.flatten = flatten
        self.dim = dim
        self.reset()

    def reset(self) -> None:
        self._preds: list[Tensor] = []
        self._targs: list[Tensor] = []

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        self._preds.append(pred.detach())
        self._targs.append(targ.detach())

    def state(self) -> list[Tensor]:
        if not self._preds:
            return [torch.empty(0), torch.empty(0)]
        return [torch.cat(self._preds), torch.cat(self._targs)]

    def load_state(self, gathered: list[Tensor]) -> None:
        _check_gathered(self, gathered)
        self._preds, self._targs = [gathered[0]], [gathered[1]]

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
        if not self._preds:
            return math.nan
        pred, targ = self._prepare(torch.cat(self._preds), torch.cat(self._targs))
        out = self.func(pred, targ)
        return float(out.item()) if isinstance(out, Tensor) else float(out)


def _r2_score(pred: Tensor, targ: Tensor) -> Tensor:
    """Coefficient of determination, averaged uniformly over outputs (a constant target scores 1 or 0)."""
    if pred.numel() != targ.numel():
        raise ValueError(
            f"r2_score: pred has shape {_shape(pred)} and targ has shape {_shape(targ)}; expected one "
            "prediction per target value. help: the model should output (B,) or (B, 1) for (B,) targets"
        )
    dtype = _acc_dtype(targ.device)
    t = targ.reshape(targ.shape[0], -1).to(dtype)  # (N, K)
    p = pred.reshape(t.shape).to(dtype)
    ss_res = (t - p).square().sum(0)
    ss_tot = (t - t.mean(0)).square().sum(0)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / torch.where(ss_tot > 0, ss_tot, 1.0), (ss_res == 0).to(dtype))
    return r2.mean()


class R2Score(AccumMetric):
    """R² (coefficient of determination) over the whole validation set; several outputs are averaged."""

    def __init__(self, name: str = "r2_score") -> None:
        super().__init__(_r2_score, name=name, flatten=False)


def _binary_auc(score: Tensor, pos: Tensor) -> Tensor:
    """ROC AUC of one column as the Mann-Whitney statistic, ties counting half; NaN without both classes."""
    dtype = _acc_dtype(score.device)
    n_pos = pos.sum().to(dtype)
    n_neg = pos.numel() - n_pos
    sorted_scores, order = score.sort()
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(dtype)
    mean_rank = ends - (counts.to(dtype) - 1) / 2  # 1-based average rank of each run of ties
    ranks = mean_rank[inverse]  # rank of each sorted score
    pos_rank_sum = (ranks * pos[order].to(dtype)).sum()
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _weighted_mean(scores: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of the defined (non-NaN) scores, weighted when `weights` is given."""
    ok = ~scores.isnan()
    if weights is None:
        return scores[ok].mean()
    w = weights.to(scores.dtype)[ok]
    return (scores[ok] * w).sum() / w.sum()


class RocAuc(AccumMetric):
    """Area under the ROC curve, computed with torch on the whole validation set.

    Binary: (B,) or (B, 1) logits, or (B, 2) class scores, with (B,) 0/1 targets. Multi-class: (B, C)
    scores with (B,) targets, one-vs-rest (`average` "macro", "weighted" or "micro") or one-vs-one (Hand &
    Till; "macro" or "weighted") on the softmax. Multi-label: (B, C) logits with (B, C) 0/1 targets, per
    label on the sigmoid. A class whose AUC is undefined (no positive or no negative) is left out of the
    average; NaN when none is defined.
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
        super().__init__(self._score, name=name, flatten=False)

    def _score(self, pred: Tensor, targ: Tensor) -> Tensor:
        if pred.ndim == 2 and pred.shape == targ.shape and pred.shape[1] > 1:  # multi-label (N, C)
            return self._one_vs_rest(pred.sigmoid(), targ > 0.5)
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
        return self._one_vs_rest(probs, F.one_hot(targ, pred.shape[1]).bool())

    def _one_vs_rest(self, probs: Tensor, onehot: Tensor) -> Tensor:
        if self.average == "micro":
            return _binary_auc(probs.reshape(-1), onehot.reshape(-1))
        aucs = torch.stack([_binary_auc(probs[:, c], onehot[:, c]) for c in range(probs.shape[1])])
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
            weights.append(in_pair.float().mean())
        if not scores:
            return torch.tensor(math.nan)
        weighted = self.average == "weighted"
        return _weighted_mean(torch.stack(scores), torch.stack(weights) if weighted else None)


# ----------------------------------------------------------------------------------------------------
# per-class counts: precision, recall, F-beta, Dice, Jaccard


def _class_counts(pred: Tensor, targ: Tensor, thresh: float, who: str) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Per-class true positives, false positives and false negatives of a batch, (C,) each, and multi-label.

    Single-label: class scores with class targets (argmax), or one logit per item with 0/1 targets
    (sigmoid > thresh, two classes). Multi-label: (B, C) logits with (B, C) 0/1 targets. Targets outside
    [0, C), such as an ignore index of -100, are left out.
    """
    dtype = _acc_dtype(pred.device)
    if pred.ndim == 2 and pred.shape == targ.shape and pred.shape[1] > 1:  # multi-label (B, C)
        p, t = pred.float().sigmoid() > thresh, targ > 0.5
        tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
        return tp.to(dtype), fp.to(dtype), fn.to(dtype), True
    if pred.ndim == targ.ndim + 1 and pred.shape[_class_dim(pred, targ, who)] == 1:
        pred = pred.squeeze(_class_dim(pred, targ, who))
    if pred.shape == targ.shape:  # one logit per item: binary
        n_classes, labels = 2, (pred.float().sigmoid() > thresh).long()
    else:
        d = _class_dim(pred, targ, who)
        n_classes, labels = pred.shape[d], pred.argmax(dim=d)
    t = targ.reshape(-1).long()  # (N,)
    p = labels.reshape(-1)  # (N,)
    valid = ((t >= 0) & (t < n_classes)).to(dtype)
    t = t.clamp(0, n_classes - 1)
    zeros = torch.zeros(n_classes, dtype=dtype, device=pred.device)
    # scatter_add rather than bincount: bincount waits for the device to size its output
    tp = zeros.scatter_add(0, t, valid * (p == t).to(dtype))
    n_pred = zeros.scatter_add(0, p, valid)
    n_targ = zeros.scatter_add(0, t, valid)
    return tp, n_pred - tp, n_targ - tp, False


class _ClassCountMetric(Metric):
    """Accumulates per-class true/false positives and false negatives; subclasses score them."""

    reductions = ("sum", "sum", "sum")
    _empty_score = 0.0  # the score of a class with nothing to divide by (scikit-learn's zero_division)

    def __init__(self, name: str, average: Average, pos_label: int, thresh: float) -> None:
        if average not in _AVERAGES:
            raise ValueError(
                f"{name}: average={average!r}; expected one of {', '.join(map(repr, _AVERAGES))}. "
                "help: 'macro' weighs every class the same, 'weighted' by its number of targets"
            )
        self.name = name
        self.average = average
        self.pos_label = pos_label
        self.thresh = thresh
        self.reset()

    def reset(self) -> None:
        self._counts: list[Tensor] | None = None
        self._multilabel = False

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        *counts, self._multilabel = _class_counts(pred, targ, self.thresh, self.name)
        if self._counts is None:
            self._counts = counts
        elif self._counts[0].shape != counts[0].shape:
            raise ValueError(
                f"{self.name}: this batch has {counts[0].shape[0]} classes but earlier batches had "
                f"{self._counts[0].shape[0]}. help: every batch of a validation pass needs the same classes"
            )
        else:
            self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]

    def state(self) -> list[Tensor]:
        if self._counts is None:
            raise RuntimeError(
                f"{self.name}: state() was called before any batch, so the number of classes is unknown. "
                "help: every process needs at least one validation batch"
            )
        return list(self._counts)

    def load_state(self, gathered: list[Tensor]) -> None:
        _check_gathered(self, gathered)
        self._counts = list(gathered)

    @abstractmethod
    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        """The score of each class from its counts."""

    def value(self) -> float:
        if self._counts is None:
            return math.nan
        tp, fp, fn = self._counts
        if self.average == "micro":
            return float(self._per_class(tp.sum(), fp.sum(), fn.sum()).item())
        if self.average == "binary":
            if self._multilabel or tp.shape[0] != 2:
                what = "multi-label targets" if self._multilabel else f"{tp.shape[0]} classes"
                raise ValueError(
                    f"{self.name}: average='binary' needs a two-class problem but got {what}. "
                    "help: use average='macro', 'micro' or 'weighted'"
                )
            if self.pos_label not in (0, 1):
                raise ValueError(
                    f"{self.name}: pos_label={self.pos_label} but the classes are 0 and 1. "
                    "help: pos_label is the index of the positive class"
                )
            return float(self._per_class(tp, fp, fn)[self.pos_label].item())
        scores = self._per_class(tp, fp, fn)
        if self.average == "weighted":
            support = tp + fn
            total = float(support.sum().item())
            return float((scores * support).sum().item()) / total if total > 0 else 0.0
        # macro: a single-label class that is neither a target nor a prediction is not a class of this data
        present = torch.ones_like(tp, dtype=torch.bool) if self._multilabel else (tp + fp + fn) > 0
        return float(scores[present].mean().item()) if bool(present.any()) else math.nan


class Precision(_ClassCountMetric):
    """Precision, tp / (tp + fp), averaged over classes as `average` says ("binary" scores `pos_label`)."""

    def __init__(
        self, average: Average = "macro", pos_label: int = 1, thresh: float = 0.5, name: str = "precision"
    ) -> None:
        super().__init__(name, average, pos_label, thresh)

    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _safe_div(tp, tp + fp, self._empty_score)


class Recall(_ClassCountMetric):
    """Recall, tp / (tp + fn), averaged over classes as `average` says ("binary" scores `pos_label`)."""

    def __init__(
        self, average: Average = "macro", pos_label: int = 1, thresh: float = 0.5, name: str = "recall"
    ) -> None:
        super().__init__(name, average, pos_label, thresh)

    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _safe_div(tp, tp + fn, self._empty_score)


class FBeta(_ClassCountMetric):
    """F-beta score, recall weighted `beta` times as much as precision, averaged over classes.

    Takes (B, C) scores with (B,) targets (also (B, C, H, W) with (B, H, W)), one logit per item with 0/1
    targets, or multi-label (B, C) logits with (B, C) targets; matches scikit-learn's `fbeta_score`.
    """

    def __init__(
        self,
        beta: float,
        average: Average = "macro",
        pos_label: int = 1,
        thresh: float = 0.5,
        name: str = "fbeta_score",
    ) -> None:
        if not beta > 0:
            raise ValueError(f"{name}: beta={beta}; expected beta > 0. help: beta=1 is the F1 score")
        self.beta = beta
        super().__init__(name, average, pos_label, thresh)

    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        b2 = self.beta**2
        return _safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp, self._empty_score)


class F1Score(FBeta):
    """F1 score, the harmonic mean of precision and recall, averaged over classes as `average` says."""

    def __init__(
        self, average: Average = "macro", pos_label: int = 1, thresh: float = 0.5, name: str = "f1_score"
    ) -> None:
        super().__init__(1.0, average=average, pos_label=pos_label, thresh=thresh, name=name)


class Dice(_ClassCountMetric):
    """Dice coefficient of a segmentation, 2|A∩B| / (|A| + |B|), over all pixels of the validation set.

    `multi=False`: the foreground (class 1) of a binary mask, from (B, 2, H, W) scores or (B, H, W)
    logits. `multi=True`: the mean over classes of the per-class Dice (classes absent from both the
    targets and the predictions are left out). NaN when there is nothing to compare.
    """

    _empty_score = math.nan

    def __init__(self, multi: bool = False, name: str | None = None) -> None:
        self.multi = multi
        default = "dice_multi" if multi else "dice"
        super().__init__(name or default, "macro" if multi else "binary", pos_label=1, thresh=0.5)

    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _safe_div(2 * tp, 2 * tp + fp + fn, self._empty_score)

    def value(self) -> float:
        if not self.multi and self._counts is not None and self._counts[0].shape[0] != 2:
            raise ValueError(
                f"{self.name}: multi=False scores the foreground of a binary mask but pred has "
                f"{self._counts[0].shape[0]} classes. help: use {type(self).__name__}(multi=True)"
            )
        return super().value()


class JaccardCoeff(Dice):
    """Jaccard index (intersection over union) of a segmentation, over all pixels of the validation set.

    Same inputs and `multi` as `Dice`.
    """

    def __init__(self, multi: bool = False, name: str | None = None) -> None:
        super().__init__(multi=multi, name=name or ("jaccard_coeff_multi" if multi else "jaccard_coeff"))

    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        return _safe_div(tp, tp + fp + fn, self._empty_score)


# ----------------------------------------------------------------------------------------------------
# torchmetrics, and turning anything into a Metric


class _TorchmetricsMetric(Metric):
    """A torchmetrics metric used as it is: `update` per batch, `compute` at the end.

    torchmetrics synchronizes its own state across processes in `compute()`, so there is no state here.
    """

    reductions = ()

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
        out = self.metric.compute()
        if isinstance(out, Tensor):
            if out.numel() != 1:
                raise ValueError(
                    f"{self.name}: compute() returned a tensor of shape {_shape(out)}; expected a single "
                    "value. help: configure the torchmetrics metric to average (e.g. average='macro')"
                )
            return float(out.item())
        return float(out)

    def state(self) -> list[Tensor]:
        return []

    def load_state(self, gathered: list[Tensor]) -> None:
        _check_gathered(self, gathered)


def as_metric(m: Metric | MetricFunc | _TorchmetricsLike) -> Metric:
    """Turn what a user passes as a metric into a `Metric`.

    A `Metric` is returned as it is; an object with `update`, `compute` and `reset` (a torchmetrics
    metric) is wrapped; a function `(pred, targ) -> scalar` becomes an `AvgMetric` named after it, except
    `rmse`, whose root is taken over the whole set.
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
    if m is rmse:
        return _RootMeanSquaredError()
    if callable(m):
        return AvgMetric(m)
    raise TypeError(
        f"as_metric: got {type(m).__name__} {m!r}; expected a lamina Metric, a function (pred, targ) -> "
        "tensor, or a torchmetrics metric. help: wrap other computations in AvgMetric or AccumMetric"
    )
