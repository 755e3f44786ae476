"""The metric protocol, lamina's torchmetrics-backed base, shared shape checks and the metric functions."""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from torchmetrics import Metric as TorchmetricsMetric

__all__ = [
    "Average",
    "DistSyncFn",
    "Metric",
    "MetricFunc",
    "accuracy",
    "accuracy_multi",
    "error_rate",
    "foreground_acc",
    "mae",
    "mse",
    "rmse",
    "top_k_accuracy",
]

MetricFunc = Callable[[Tensor, Tensor], Tensor]
DistSyncFn = Callable[[Tensor, Any], list[Tensor]]  # torchmetrics' gather: (tensor, group) -> every rank's
Average = Literal["macro", "micro", "weighted", "binary"]
_AVERAGES = ("macro", "micro", "weighted", "binary")
_ACTIVATIONS = ("softmax", "sigmoid", None)


# ----------------------------------------------------------------------------------------------------
# the protocol


class Metric(ABC):
    """What the Learner needs from a metric: reset, accumulate per batch on the device, one value at the end.

    `sync()` combines every process's state before `value()` in a distributed validation; a metric with no
    state shared across processes leaves it as a no-op.
    """

    name: str = "metric"

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated; called before each validation pass."""

    @abstractmethod
    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        """Add one batch: raw model output and target. Must not wait for the device."""

    @abstractmethod
    def value(self) -> float:
        """The metric over everything accumulated (NaN when nothing was); the only device sync."""

    def sync(self, dist_sync_fn: DistSyncFn | None = None) -> None:
        """Replace the state by every process's combined state (`dist_sync_fn` stands in for the gather)."""
        del dist_sync_fn  # this base keeps no state shared across processes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _TorchmetricsLike(Protocol):
    """The part of `torchmetrics.Metric` that lamina uses."""

    def update(self, preds: Tensor, target: Tensor) -> None: ...
    def compute(self) -> Any: ...
    def reset(self) -> None: ...


class _Backed(Metric):
    """A lamina metric whose state is one torchmetrics object, built at the first batch (device, classes).

    The object is made with `sync_on_compute=False, compute_with_cache=False`: it syncs when the Recorder
    says so (a sharded validation), never by itself, so a validation run by one process alone cannot hang;
    `sync()` computes the combined result at once (torchmetrics then restores the local state) and
    `value()` returns it until the next batch or reset.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tm: TorchmetricsMetric | None = None
        self._device: torch.device | None = None
        self._synced: Any = None  # the result over every process, after sync()

    @abstractmethod
    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        """The torchmetrics state for batches like this one."""

    def _state(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        self._synced = None
        if self._tm is None:
            self._tm = self._build(pred, targ)
        if self._device != pred.device:
            self._tm = self._tm.to(pred.device)
            self._device = pred.device
        return self._tm

    def reset(self) -> None:
        self._synced = None
        if self._tm is not None:
            self._tm.reset()

    def _computed(self) -> Any:
        """torchmetrics' `compute()` (over every process after `sync()`), or None before any batch."""
        if self._synced is not None:
            return self._synced
        if self._tm is None or self._tm.update_count == 0:
            return None
        return self._tm.compute()

    def sync(self, dist_sync_fn: DistSyncFn | None = None) -> None:
        if self._tm is None:
            raise _nothing_to_sync(self.name)
        forced = (lambda: True) if dist_sync_fn is not None else None
        self._tm.sync(dist_sync_fn=dist_sync_fn, distributed_available=forced)
        self._synced = self._tm.compute()  # torchmetrics goes back to the local state after compute


def _nothing_to_sync(name: str) -> RuntimeError:
    """The error of a `sync()` before any batch: there is no state to combine across processes."""
    return RuntimeError(
        f"{name}: sync() was called before any batch, so there is no state to combine. "
        "help: every process needs at least one validation batch"
    )


def _tm_states() -> Any:
    """lamina's own torchmetrics states, imported on first use (torchmetrics is not imported with lamina)."""
    from lamina.train.metrics import _states

    return _states


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


def _to_float(out: Any, who: str) -> float:
    """A metric's result as a Python float; a tensor must hold one value."""
    if isinstance(out, Tensor):
        if out.numel() != 1:
            raise ValueError(
                f"{who}: the metric computed a tensor of shape {_shape(out)}; expected a single value. "
                "help: average it (e.g. average='macro' for a torchmetrics metric, .mean() in a function)"
            )
        return float(out.item())
    return float(out)
