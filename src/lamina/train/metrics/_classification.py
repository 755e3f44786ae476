"""Per-class counts in torchmetrics' MultilabelStatScores: precision, recall, F-beta, Dice, Jaccard."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from lamina.train.metrics._core import (
    _AVERAGES,
    Average,
    _acc_dtype,
    _Backed,
    _check_batch,
    _class_dim,
    _safe_div,
)

if TYPE_CHECKING:
    from torchmetrics import Metric as TorchmetricsMetric

__all__ = ["Dice", "F1Score", "FBeta", "JaccardCoeff", "Precision", "Recall"]


# ----------------------------------------------------------------------------------------------------
# per-class counts (torchmetrics' MultilabelStatScores): precision, recall, F-beta, Dice, Jaccard


def _one_hot_pair(pred: Tensor, targ: Tensor, thresh: float, who: str) -> tuple[Tensor, Tensor, bool]:
    """(N, C) 0/1 predictions and targets for torchmetrics' per-label counts, and whether it is multi-label.

    Single-label: class scores with class targets (argmax), or one logit per item with 0/1 targets
    (sigmoid > thresh, two classes), become one-hot rows; a target outside [0, C) (an ignore index such as
    -100) becomes a row of -1, which torchmetrics counts nowhere. One-hot rows rather than torchmetrics'
    multiclass counts, whose bincount and masking wait for the device on every batch.
    """
    if pred.ndim == 2 and pred.shape == targ.shape and pred.shape[1] > 1:  # multi-label (B, C)
        return (pred.float().sigmoid() > thresh).to(torch.int8), (targ > 0.5).to(torch.int8), True
    if pred.ndim == targ.ndim + 1 and pred.shape[_class_dim(pred, targ, who)] == 1:
        pred = pred.squeeze(_class_dim(pred, targ, who))
    if pred.shape == targ.shape:  # one logit per item: binary
        n_classes, labels = 2, (pred.float().sigmoid() > thresh).long()
    else:
        d = _class_dim(pred, targ, who)
        n_classes, labels = pred.shape[d], pred.argmax(dim=d)
    t = targ.reshape(-1).long()  # (N,)
    valid = (t >= 0) & (t < n_classes)
    t_oh = F.one_hot(t.clamp(0, n_classes - 1), n_classes).to(torch.int8)  # (N, C)
    p_oh = F.one_hot(labels.reshape(-1), n_classes).to(torch.int8)  # (N, C)
    return p_oh, t_oh.masked_fill(~valid[:, None], -1), False


class _ClassCountMetric(_Backed):
    """Per-class true/false positives and false negatives in torchmetrics' `MultilabelStatScores`; subclasses
    score them (lamina's averaging: a single-label class absent from targets and predictions is left out)."""

    _empty_score = 0.0  # the score of a class with nothing to divide by (scikit-learn's zero_division)

    def __init__(self, name: str, average: Average, pos_label: int, thresh: float) -> None:
        if average not in _AVERAGES:
            raise ValueError(
                f"{name}: average={average!r}; expected one of {', '.join(map(repr, _AVERAGES))}. "
                "help: 'macro' weighs every class the same, 'weighted' by its number of targets"
            )
        self.average = average
        self.pos_label = pos_label
        self.thresh = thresh
        self._n_classes = 0
        self._multilabel = False
        super().__init__(name)

    def _build(self, pred: Tensor, targ: Tensor) -> TorchmetricsMetric:
        from torchmetrics.classification import MultilabelStatScores

        return MultilabelStatScores(
            num_labels=self._n_classes,
            average=None,
            validate_args=False,
            sync_on_compute=False,
            compute_with_cache=False,
        )

    def accumulate(self, pred: Tensor, targ: Tensor) -> None:
        _check_batch(pred, targ, self.name)
        p, t, multilabel = _one_hot_pair(pred, targ, self.thresh, self.name)
        n = p.shape[1]
        if self._tm is None or self._tm.update_count == 0:
            if n != self._n_classes:  # the first batch of a pass decides the classes
                self._tm, self._device = None, None
            self._n_classes, self._multilabel = n, multilabel
        elif n != self._n_classes:
            raise ValueError(
                f"{self.name}: this batch has {n} classes but earlier batches had {self._n_classes}. "
                "help: every batch of a validation pass needs the same classes"
            )
        self._state(pred, targ).update(p, t)

    @abstractmethod
    def _per_class(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        """The score of each class from its counts."""

    def value(self) -> float:
        out = self._computed()
        if out is None:
            return math.nan
        tp, fp, _, fn, _ = out.to(_acc_dtype(out.device)).unbind(-1)  # (C,) each: tp, fp, tn, fn, support
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
        if not self.multi and self._tm is not None and self._n_classes != 2:
            raise ValueError(
                f"{self.name}: multi=False scores the foreground of a binary mask but pred has "
                f"{self._n_classes} classes. help: use {type(self).__name__}(multi=True)"
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
