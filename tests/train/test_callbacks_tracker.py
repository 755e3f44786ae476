"""EarlyStoppingCallback stops, SaveModelCallback saves and reloads the best, TerminateOnNaN stops on a
NaN loss and puts back the last good weights."""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner, accuracy
from lamina.train.callbacks.tracker import EarlyStoppingCallback, SaveModelCallback, TerminateOnNaN


def _learner(cbs: list[Callback], path: Path | str = ".", lr: float = 0.1) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    items = [(x[i], y[i]) for i in range(48)]
    dls = DataLoaders.from_dsets(items[:32], items[32:], bs=8, num_workers=0, seed=0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(
        dls,
        model,
        loss_func=nn.CrossEntropyLoss(),
        opt_func=torch.optim.SGD,
        lr=lr,
        wd=0.0,
        metrics=accuracy,
        cbs=cbs,
        path=path,
    )


def _state(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


# -- early stopping ------------------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    es = EarlyStoppingCallback(patience=2)
    learn = _learner([es], lr=0.0)  # nothing changes: the valid loss never improves after epoch 0
    learn.fit(10)
    assert len(learn.recorder.values) == 3  # epoch 0 sets the best, 1 and 2 do not improve: stop
    assert es.stopped_epoch == 2 and es.best_epoch == 0


def test_early_stopping_keeps_going_while_it_improves() -> None:
    es = EarlyStoppingCallback(monitor="valid_loss", patience=1)
    learn = _learner([es], lr=0.1)
    learn.fit(4)
    assert len(learn.recorder.values) == 4 and es.stopped_epoch is None


def test_comparison_direction_and_min_delta() -> None:
    assert EarlyStoppingCallback(monitor="valid_loss").comp is operator.lt
    assert EarlyStoppingCallback(monitor="error_rate").comp is operator.lt
    assert EarlyStoppingCallback(monitor="accuracy").comp is operator.gt
    es = EarlyStoppingCallback(monitor="accuracy", min_delta=0.05)
    learn = _learner([es])
    learn.recorder.values = [[0.0, 0.0, 0.50]]
    es._idx = 2
    assert es._improved() and es.best == 0.50  # the first value is the best so far
    learn.recorder.values = [[0.0, 0.0, 0.54]]
    assert not es._improved()  # better, but not by more than min_delta
    learn.recorder.values = [[0.0, 0.0, 0.56]]
    assert es._improved() and es.best == 0.56
    lower = EarlyStoppingCallback(monitor="valid_loss", min_delta=0.1)
    lower.learn = learn
    lower.best, lower._idx = 1.0, 1
    learn.recorder.values = [[0.0, 0.95, 0.0]]
    assert not lower._improved()
    learn.recorder.values = [[0.0, 0.85, 0.0]]
    assert lower._improved()


def test_an_unknown_monitor_is_refused_when_the_fit_starts() -> None:
    learn = _learner([EarlyStoppingCallback(monitor="f1")])
    with pytest.raises(ValueError, match=r"'accuracy'.*\n.*help:"):
        learn.fit(1)


# -- saving the best model ----------------------------------------------------------------------------------
def test_save_model_saves_the_best_and_loads_it_at_the_end(tmp_path: Path) -> None:
    class SpoilEpoch2(Callback):
        """Before epoch 2's validation, scramble the weights: that epoch is the worst."""

        def __init__(self) -> None:
            self.at_epoch_end: list[dict[str, torch.Tensor]] = []

        def before_validate(self) -> None:
            if self.learn.epoch == 2:
                with torch.no_grad():
                    for p in self.learn.model.parameters():
                        p.add_(torch.randn_like(p) * 5)

        def after_epoch(self) -> None:
            self.at_epoch_end.append(_state(self.learn))

    save, spoil = SaveModelCallback(fname="best"), SpoilEpoch2()
    learn = _learner([save, spoil], path=tmp_path)
    learn.fit(3)
    losses = [row[1] for row in learn.recorder.values]
    assert losses[2] > min(losses[:2])
    assert (tmp_path / "models" / "best.safetensors").exists()
    assert save.best_epoch == min(range(2), key=losses.__getitem__)
    for k, v in learn.model.state_dict().items():  # the best epoch's weights are back
        assert torch.equal(v, spoil.at_epoch_end[save.best_epoch][k]), k


def test_save_model_every_epoch_and_at_end(tmp_path: Path) -> None:
    learn = _learner([SaveModelCallback(fname="m", every_epoch=True)], path=tmp_path)
    learn.fit(2)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m_0.safetensors", "m_1.safetensors"]
    learn = _learner([SaveModelCallback(fname="last", at_end=True)], path=tmp_path)
    learn.fit(1)
    final = _state(learn)
    learn.model.load_state_dict({k: torch.zeros_like(v) for k, v in final.items()})
    learn.load("last")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, final[k]), k


# -- NaN -----------------------------------------------------------------------------------------------------
class _PoisonAndWatch(Callback):
    """Puts a NaN into the inputs of global step `bad`, and keeps the weights each step starts from."""

    order = 1

    def __init__(self, bad: int) -> None:
        self.bad = bad
        self.start_of_step: dict[int, dict[str, torch.Tensor]] = {}

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        self.start_of_step[learn.train_iter] = _state(learn)
        if learn.train_iter == self.bad:
            learn.xb = (learn.xb[0].clone().fill_(float("nan")),)


def test_terminate_on_nan_stops_and_restores_the_last_good_weights() -> None:
    watch, term = _PoisonAndWatch(bad=6), TerminateOnNaN(check_every=1)
    learn = _learner([watch, term])
    with pytest.warns(RuntimeWarning, match="epoch 1, step 2"):
        learn.fit(5)
    assert term.stopped_at == (1, 2)  # 4 batches per epoch: global step 6
    assert max(watch.start_of_step) == 6  # no batch ran after the bad one
    assert len(learn.recorder.values) == 1  # only epoch 0 finished
    for k, v in learn.model.state_dict().items():  # the weights the bad step started from
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, watch.start_of_step[6][k]), k


def test_terminate_on_nan_checking_every_few_steps() -> None:
    watch, term = _PoisonAndWatch(bad=6), TerminateOnNaN(check_every=4)
    learn = _learner([watch, term])
    with pytest.warns(RuntimeWarning, match="epoch 1, step 2"):
        learn.fit(5)
    assert term.stopped_at == (1, 2)  # the first bad step is still named exactly
    assert max(watch.start_of_step) == 7  # found at the check after step 7
    for k, v in learn.model.state_dict().items():  # the weights of the last passing check (after step 3)
        assert torch.equal(v, watch.start_of_step[4][k]), k


def test_terminate_on_nan_does_nothing_to_a_healthy_run() -> None:
    term = TerminateOnNaN()
    learn = _learner([term])
    learn.fit(2)
    assert term.stopped_at is None and len(learn.recorder.values) == 2
