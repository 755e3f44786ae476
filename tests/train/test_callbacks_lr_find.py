"""lr_find: exponential learning rates, early stop on divergence, weights and optimizer put back, no
table printed, suggestions from the curve, and the plot."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Learner
from lamina.train.callbacks.lr_find import LRFinder, SuggestedLRs, lr_find, plot_lr_find, suggest_lrs


def _learner(n: int = 64, bs: int = 8) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    items = [(x[i], y[i]) for i in range(n)]
    dls = DataLoaders.from_dsets(items[: n * 3 // 4], items[n * 3 // 4 :], bs=bs, num_workers=0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss())


def _state(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def test_lr_find_restores_weights_and_optimizer_and_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    learn = _learner()
    learn.fit(1)  # an optimizer with state (AdamW moments) to put back
    capsys.readouterr()
    weights = _state(learn)
    opt = learn.opt
    assert opt is not None
    opt_state = {k: v.clone() for k, v in opt.state[next(learn.model.parameters())].items()}
    lrs_before = [g["lr"] for g in opt.param_groups]
    result = learn.lr_find(num_it=20, stop_div=False)
    assert capsys.readouterr().out == ""  # no epoch table
    assert isinstance(result, SuggestedLRs)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert learn.opt is opt and [g["lr"] for g in opt.param_groups] == lrs_before
    for k, v in opt.state[next(learn.model.parameters())].items():
        assert torch.equal(v, opt_state[k]), k
    # 20 batches over 3 epochs of 6, at geometrically growing rates from 1e-7 to 10
    assert len(result.lrs) == len(result.losses) == 20
    assert result.lrs[0] == pytest.approx(1e-7) and result.lrs[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * 19)
    assert learn.recorder.lrs == pytest.approx(list(result.lrs))  # the Recorder saw the same run
    assert not any(isinstance(cb, LRFinder) for cb in learn.cbs)
    assert sum(type(cb).__name__ == "ProgressCallback" for cb in learn.cbs) == 1  # put back
    learn.fit(1)
    assert "train_loss" in capsys.readouterr().out  # and it prints again


def test_lr_find_without_an_optimizer_leaves_none() -> None:
    learn = _learner()
    lr_find(learn, num_it=10, stop_div=False)
    assert learn.opt is None


def test_lr_find_stops_when_the_loss_diverges() -> None:
    learn = _learner()
    result = learn.lr_find(start_lr=1e-3, end_lr=1e4, num_it=100)
    assert len(result.lrs) < 100
    assert max(result.losses) > 4 * min(result.losses) or math.isnan(result.losses[-1])
    for name in ("valley", "steepest", "minimum"):
        lr = getattr(result, name)
        assert 1e-4 <= lr <= 1e4, name


def test_suggestions_on_a_known_curve() -> None:
    lrs = [1e-6 * 10 ** (i / 10) for i in range(61)]  # 1e-6 .. 1
    # flat, then falling fastest around 1e-4, a minimum at 1e-2, then up again
    losses = [
        2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 4) * 3)) + max(0.0, math.log10(lr) + 2) ** 2
        for lr in lrs
    ]
    s = suggest_lrs(lrs, losses)
    i_min = min(range(6, 56), key=losses.__getitem__)
    assert s.minimum == pytest.approx(lrs[i_min] / 10)
    assert s.steepest == pytest.approx(1e-4, rel=0.3)
    assert lrs[6] < s.valley < lrs[i_min]  # on the falling part, before the minimum
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.valley = 1.0  # type: ignore[misc]


def test_bad_arguments_are_refused() -> None:
    learn = _learner()
    with pytest.raises(ValueError, match="help:"):
        learn.lr_find(start_lr=1.0, end_lr=1e-3)
    with pytest.raises(ValueError, match="num_it"):
        learn.lr_find(num_it=1)


def test_plot_lr_find_from_the_result_and_from_the_learner() -> None:
    learn = _learner()
    result = learn.lr_find(num_it=30)
    legends = []
    for fig in (plot_lr_find(result), plot_lr_find(learn)):
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        assert ax.get_title() == "Learning rate finder"
        assert "learning rate" in ax.get_xlabel() and "loss" in ax.get_ylabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [lab.split(":")[0] for lab in labels] == ["valley", "steepest", "minimum"]
        legends.append(labels)
        plt.close(fig)
    # the learner's curve (from its Recorder) gives the suggestions lr_find returned
    assert legends[0] == legends[1]
    assert legends[0][0] == f"valley: {result.valley:.2e}"


def test_plot_lr_find_needs_a_run() -> None:
    learn = _learner()
    with pytest.raises(ValueError, match="help:"):
        plot_lr_find(learn)
