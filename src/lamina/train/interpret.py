"""Interpretation: where a trained model goes wrong, from its predictions and per-item losses on a dataset.

>>> interp = ClassificationInterpretation.from_learner(learn)   # doctest: +SKIP
>>> interp.plot_top_losses(9)                                    # doctest: +SKIP
>>> interp.most_confused(min_val=2)                              # doctest: +SKIP
[('7', '1', 5), ('4', '9', 3)]
>>> interp.print_classification_report()                         # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch
from torch import Tensor

from lamina.core import MultiCategory
from lamina.data import DataLoader

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.train.learner import AnyLoader, Learner

__all__ = ["ClassificationInterpretation", "Interpretation"]


def _fmt(v: Any, max_values: int = 4) -> str:
    """A short title for a value: numbers to 3 significant digits, long vectors cut with an ellipsis;
    multi-label sets as `MultiCategory` writes them (`odd;prime`)."""
    if isinstance(v, MultiCategory):
        return str(v)
    if isinstance(v, Tensor):
        v = v.item() if v.numel() == 1 else v.flatten().tolist()
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        cells = [_fmt(e) for e in v[:max_values]]
        return "[" + ", ".join(cells) + (", ...]" if len(v) > max_values else "]")
    return str(v)


class Interpretation:
    """A learner's inputs, predictions (after the loss's activation), targets, decoded predictions and
    per-item losses on `dl`, item by item in the loader's order."""

    def __init__(
        self,
        learn: Learner,
        dl: AnyLoader,
        inputs: tuple[Tensor, ...],
        preds: Tensor,
        targs: Tensor | tuple[Tensor, ...] | None,
        decoded: Tensor,
        losses: Tensor,
    ) -> None:
        self.learn, self.dl = learn, dl
        self.inputs, self.preds, self.targs, self.decoded, self.losses = inputs, preds, targs, decoded, losses

    @classmethod
    def from_learner(cls, learn: Learner, dl: AnyLoader | None = None) -> Self:
        """Run `learn` over `dl` (the validation set by default) and keep everything per item.

        The loss must give per-item values (`reduction="none"`), as lamina's losses do.
        """
        dl = dl if dl is not None else learn.dls.valid
        inputs, preds, targs, decoded, losses = learn.get_preds(
            dl=dl, with_input=True, with_decoded=True, with_loss=True
        )
        if targs is None:
            raise ValueError(
                "Interpretation: the loader has no targets, so there are no losses to look at.\n"
                "help: pass a labelled loader, e.g. dls.test_dl(items, with_labels=True)"
            )
        return cls(learn, dl, inputs, preds, targs, decoded, losses)

    def __len__(self) -> int:
        return len(self.losses)

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[Tensor, Tensor]:
        """The `k` largest (or smallest) per-item losses and their item indices (all items when k is None)."""
        k = len(self.losses) if k is None else max(0, min(k, len(self.losses)))
        res = self.losses.topk(k, largest=largest)
        return res.values, res.indices

    def _probability(self, i: int) -> float | None:
        """The probability the model gave its own prediction for item `i` (classification only)."""
        p, d = self.preds[i], self.decoded[i]
        if p.ndim == 1 and d.ndim == 0 and not d.is_floating_point() and 0 <= int(d) < len(p):
            return float(p[int(d)])
        return None

    def _decoded_items(self, idxs: Tensor, values: Tensor) -> list[tuple[Any, ...]]:
        """Items `idxs` with `values` as their target, decoded through the loader (labels, pixels)."""
        n = self.learn.dls.n_inp
        b = (*(x[idxs] for x in self.inputs[:n]), values[idxs])
        if isinstance(self.dl, DataLoader):
            return self.dl.decode_batch(b, max_n=len(idxs))
        return [tuple(e[i] for e in b) for i in range(len(idxs))]

    def plot_top_losses(
        self,
        k: int = 9,
        largest: bool = True,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """The `k` items with the largest losses, each titled `prediction / actual / loss / probability`
        (the probability the model gave its prediction: single-label classification only).

        Inputs that can show themselves (images, ...) are drawn; others are written in the title.
        """
        import matplotlib.pyplot as plt

        losses, idxs = self.top_losses(k, largest=largest)
        if len(idxs) == 0:
            raise ValueError(
                "plot_top_losses: there are no items to show.\nhelp: check the loader is not empty"
            )
        targs = self.targs[0] if isinstance(self.targs, tuple) else self.targs
        assert targs is not None
        n_inp = self.learn.dls.n_inp
        predicted = self._decoded_items(idxs, self.decoded)
        actual = self._decoded_items(idxs, targs)
        probs = [self._probability(i) for i in idxs.tolist()]
        fields = ["prediction", "actual", "loss"] + (["probability"] if None not in probs else [])
        ncols = ncols or min(len(idxs), math.ceil(math.sqrt(len(idxs))))
        nrows = nrows or math.ceil(len(idxs) / ncols)
        fig, axs = plt.subplots(nrows, ncols, figsize=figsize or (3.0 * ncols, 3.2 * nrows), squeeze=False)
        for ax in axs.flat:
            ax.set_axis_off()
        for ax, prob, loss, pred_item, act_item in zip(
            axs.flat, probs, losses, predicted, actual, strict=False
        ):
            text = []
            for e in act_item[:n_inp]:
                show = getattr(e, "show", None)
                if callable(show):
                    show(ctx=ax)
                else:
                    text.append(_fmt(e))
            shown = ax.get_title()
            pred = pred_item[n_inp] if len(pred_item) > n_inp else pred_item[-1]
            act = act_item[n_inp] if len(act_item) > n_inp else act_item[-1]
            cells = [_fmt(pred), _fmt(act), f"{float(loss):.2f}"]
            if "probability" in fields:
                cells.append(f"{prob:.2f}")
            line = " / ".join(cells)
            ax.set_title("\n".join(t for t in (shown, *text, line) if t), fontsize=9)
        fig.suptitle(" / ".join(fields), fontsize=10)  # names exactly the fields each title shows
        fig.tight_layout()
        return fig


class ClassificationInterpretation(Interpretation):
    """Interpretation for single-label classification: confusion matrix and the most confused pairs.

    Classes are named and ordered by the data's vocabulary (`learn.dls.vocab`), or numbered.
    """

    @property
    def vocab(self) -> list[Any]:
        vocab = self.learn.dls.vocab
        if vocab is not None:
            return list(vocab)
        n = int(self.preds.shape[-1]) if self.preds.ndim >= 2 else int(self.decoded.max()) + 1
        return list(range(n))

    def _pairs(self) -> tuple[Tensor, Tensor]:
        targs = self.targs[0] if isinstance(self.targs, tuple) else self.targs
        assert targs is not None
        if targs.is_floating_point() or self.decoded.shape != targs.shape:
            raise ValueError(
                f"ClassificationInterpretation: targets of shape {tuple(targs.shape)} ({targs.dtype}) and "
                f"decoded predictions of shape {tuple(self.decoded.shape)}; expected class indices of the "
                "same shape.\nhelp: use Interpretation for regression or multi-label targets"
            )
        return targs.reshape(-1).long(), self.decoded.reshape(-1).long()

    def confusion_matrix(self) -> np.ndarray:
        """Counts of (actual, predicted) pairs: rows are actual classes, columns predicted, in vocab order."""
        c = len(self.vocab)
        actual, predicted = self._pairs()
        top = int(max(actual.max(), predicted.max())) if len(actual) else -1
        if top >= c or (len(actual) and int(min(actual.min(), predicted.min())) < 0):
            raise ValueError(
                f"confusion_matrix: class index {top} outside the vocabulary of {c} classes.\n"
                "help: the model's number of outputs should match the data's vocab (dls.c)"
            )
        flat = torch.bincount(actual * c + predicted, minlength=c * c)
        return flat[: c * c].reshape(c, c).numpy().astype(np.int64)

    def plot_confusion_matrix(
        self,
        normalize: bool = False,
        cmap: str = "Blues",
        title: str = "Confusion matrix",
        figsize: tuple[float, float] | None = None,
        norm_dec: int = 2,
        labels: Sequence[str] | None = None,
    ) -> Figure:
        """The confusion matrix as a heat map, with the count (or row fraction, `normalize`) in each cell."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix()
        values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
        names = [str(v) for v in (labels if labels is not None else self.vocab)]
        c = len(names)
        size = max(4.0, 0.5 * c + 2.5)
        fig, ax = plt.subplots(figsize=figsize or (size + 1.0, size))
        im = ax.imshow(values, interpolation="nearest", cmap=cmap, vmin=0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title)
        ax.set_xticks(range(c), names, rotation=90)
        ax.set_yticks(range(c), names)
        ax.set_xlabel("Predicted")
        ax.set_ylabel("Actual")
        if c <= 30:  # beyond that the numbers are unreadable anyway
            thresh = values.max() / 2 if values.size else 0
            for r in range(c):
                for col in range(c):
                    v = values[r, col]
                    txt = f"{v:.{norm_dec}f}" if normalize else str(int(v))
                    color = "white" if v > thresh else "black"
                    ax.text(col, r, txt, ha="center", va="center", color=color, fontsize=8)
        fig.tight_layout()
        return fig

    def classification_report(self) -> dict[str, Any]:
        """Per class (by name) precision, recall, f1-score and support, then "accuracy", "macro avg" and
        "weighted avg" (by support): the numbers and layout of scikit-learn's `output_dict=True`.

        A class never predicted has precision 0 (and one never seen, recall 0), as scikit-learn's default.
        """
        cm = self.confusion_matrix().astype(np.float64)
        support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
        precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
        total = float(support.sum())
        out: dict[str, Any] = {}
        for i, name in enumerate(self.vocab):
            out[str(name)] = {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1-score": float(f1[i]),
                "support": int(support[i]),
            }
        out["accuracy"] = float(hits.sum() / total) if total else 0.0
        w = support / total if total else np.zeros_like(support)
        for key, weights in (("macro avg", np.full_like(support, 1 / len(support))), ("weighted avg", w)):
            out[key] = {
                "precision": float((precision * weights).sum()),
                "recall": float((recall * weights).sum()),
                "f1-score": float((f1 * weights).sum()),
                "support": int(total),
            }
        return out

    def print_classification_report(self, digits: int = 2) -> str:
        """Print `classification_report()` as a table (scikit-learn's layout) and return the text."""
        rep = self.classification_report()
        fields = ("precision", "recall", "f1-score")
        names = [k for k in rep if k not in ("accuracy", "macro avg", "weighted avg")]
        width = max(len("weighted avg"), *(len(n) for n in names))
        head = " " * width + "".join(f"{f:>10}" for f in fields) + f"{'support':>10}"

        def row(name: str, r: dict[str, Any]) -> str:
            cells = "".join(f"{r[f]:>10.{digits}f}" for f in fields)
            return f"{name:>{width}}{cells}{r['support']:>10}"

        total = rep["macro avg"]["support"]
        lines = [head, "", *(row(n, rep[n]) for n in names), ""]
        lines.append(f"{'accuracy':>{width}}{'':>20}{rep['accuracy']:>10.{digits}f}{total:>10}")
        lines += [row(k, rep[k]) for k in ("macro avg", "weighted avg")]
        text = "\n".join(lines)
        print(text)
        return text

    def most_confused(self, min_val: int = 1) -> list[tuple[Any, Any, int]]:
        """(actual, predicted, count) of each wrong pair seen `min_val` times or more, most frequent first."""
        cm = self.confusion_matrix()
        vocab = self.vocab
        out = [
            (vocab[a], vocab[p], int(cm[a, p]))
            for a in range(len(vocab))
            for p in range(len(vocab))
            if a != p and cm[a, p] >= min_val
        ]
        return sorted(out, key=lambda t: -t[2])
