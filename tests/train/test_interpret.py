"""Tests for Interpretation and ClassificationInterpretation on a tiny model with known predictions."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _export_fixture import make_learner
from torch import nn

from lamina.data import CrossEntropyLossFlat, DataLoaders
from lamina.train import Learner
from lamina.train.interpret import ClassificationInterpretation, Interpretation

matplotlib.use("Agg")


class Fixed(nn.Module):
    """Outputs the logits stored in the input's last 3 columns: predictions are known in advance."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -3:] + self.dummy


# (target, logits): 3 classes; mistakes: 0->1 twice, 2->1 once, 1->0 once
ROWS = [
    (0, [5.0, 0.0, 0.0]),
    (0, [0.0, 3.0, 0.0]),
    (0, [0.0, 1.0, 0.0]),
    (1, [0.0, 4.0, 0.0]),
    (1, [2.0, 0.0, 0.0]),
    (2, [0.0, 0.0, 6.0]),
    (2, [0.0, 2.0, 0.0]),
    (2, [0.0, 0.0, 1.0]),
]


@pytest.fixture
def interp() -> ClassificationInterpretation:
    items = [(torch.tensor(logits), torch.tensor(t)) for t, logits in ROWS]
    dls = DataLoaders.from_dsets(items, items, bs=3, shuffle=False, num_workers=0, device="cpu")
    learn = Learner(dls, Fixed(), loss_func=CrossEntropyLossFlat())
    return ClassificationInterpretation.from_learner(learn)


def test_from_learner_keeps_everything_per_item(interp: ClassificationInterpretation) -> None:
    logits = torch.tensor([r[1] for r in ROWS])
    targs = torch.tensor([r[0] for r in ROWS])
    assert len(interp) == len(ROWS)
    torch.testing.assert_close(interp.preds, logits.softmax(1))
    assert torch.equal(interp.targs, targs) and torch.equal(interp.decoded, logits.argmax(1))
    torch.testing.assert_close(interp.losses, F.cross_entropy(logits, targs, reduction="none"))
    assert torch.equal(interp.inputs[0], logits)


def test_top_losses(interp: ClassificationInterpretation) -> None:
    losses, idxs = interp.top_losses(3)
    expected = interp.losses.argsort(descending=True)[:3]
    assert idxs.tolist() == expected.tolist() and losses.tolist() == interp.losses[expected].tolist()
    assert idxs[0] == 1  # a 3.0 logit on the wrong class: the biggest mistake
    all_losses, all_idxs = interp.top_losses()
    assert len(all_idxs) == len(ROWS) and all(a >= b for a, b in itertools.pairwise(all_losses))
    _, small_idxs = interp.top_losses(2, largest=False)
    assert small_idxs.tolist() == interp.losses.argsort()[:2].tolist()


def test_confusion_matrix_and_most_confused(interp: ClassificationInterpretation) -> None:
    cm = interp.confusion_matrix()
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 2, 0], [1, 1, 0], [0, 1, 2]]  # rows actual, columns predicted
    assert cm.sum() == len(ROWS)
    assert interp.most_confused() == [(0, 1, 2), (1, 0, 1), (2, 1, 1)]
    assert interp.most_confused(min_val=2) == [(0, 1, 2)]


def test_plots(interp: ClassificationInterpretation) -> None:
    fig = interp.plot_confusion_matrix(title="cm")
    ax = fig.axes[0]
    assert ax.get_title() == "cm" and len(fig.axes) == 2  # the matrix and its colour bar
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in interp.confusion_matrix().flat)
    fig = interp.plot_confusion_matrix(normalize=True)
    assert "0.67" in [t.get_text() for t in fig.axes[0].texts]  # 2 of the 3 zeros predicted as 1
    fig = interp.plot_top_losses(4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4
    pred, actual, loss, prob = titles[0].splitlines()[-1].split(" / ")
    assert (pred, actual) == ("1", "0") and float(loss) == pytest.approx(float(interp.losses[1]), abs=0.01)
    assert float(prob) == pytest.approx(float(interp.preds[1, 1]), abs=0.01)


def test_labels_come_from_the_vocab(tmp_path: Path) -> None:
    learn = make_learner(tmp_path)
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.vocab == ["ant", "bee", "cat"]
    assert all(a in interp.vocab and p in interp.vocab for a, p, _ in interp.most_confused())
    fig = interp.plot_top_losses(3)
    line = fig.axes[0].get_title().splitlines()[-1]
    assert line.split(" / ")[0] in interp.vocab and line.split(" / ")[1] in interp.vocab
    assert Interpretation.from_learner(learn).top_losses(2)[0].shape == (2,)


def test_regression_targets_are_refused_for_confusion_matrix() -> None:
    items = [(torch.randn(3), torch.randn(())) for _ in range(6)]
    dls = DataLoaders.from_dsets(items, items, bs=3, shuffle=False, num_workers=0, device="cpu")
    from lamina.data import MSELossFlat

    learn = Learner(dls, nn.Linear(3, 1), loss_func=MSELossFlat())
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.top_losses(2)[0].shape == (2,)
    with pytest.raises(ValueError, match="help:"):
        interp.confusion_matrix()


def test_classification_report_matches_scikit_learn(
    interp: ClassificationInterpretation, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = interp.classification_report()
    # by hand from the confusion matrix: class 0 predicted twice (once right), seen 3 times
    assert rep["0"] == {"precision": 0.5, "recall": pytest.approx(1 / 3), "f1-score": 0.4, "support": 3}
    assert rep["accuracy"] == pytest.approx(4 / 8)
    text = interp.print_classification_report()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["0", "1", "2"] and "weighted avg" in lines[-1]

    metrics = pytest.importorskip("sklearn.metrics")
    actual, predicted = interp._pairs()
    expected = metrics.classification_report(
        actual.numpy(), predicted.numpy(), labels=[0, 1, 2], target_names=["0", "1", "2"], output_dict=True
    )
    assert rep.keys() == expected.keys()
    for key, value in expected.items():
        assert rep[key] == pytest.approx(value), key
    sk_text = metrics.classification_report(actual.numpy(), predicted.numpy(), labels=[0, 1, 2])
    assert [ln.split() for ln in text.splitlines()] == [ln.split() for ln in sk_text.splitlines()]
