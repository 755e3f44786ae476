"""ChannelsLast converts model and 4-D inputs; Compile compiles for the fit only and keeps plain keys."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks import hardware
from lamina.train.callbacks.hardware import ChannelsLast, Compile


def _image_learner(cbs: list[Callback]) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    items = [(x[i], y[i]) for i in range(24)]
    dls = DataLoaders.from_dsets(items[:16], items[16:], bs=8, num_workers=0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), cbs=cbs)


def _mlp_learner(cbs: list[Callback]) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = (x[:, 0] > 0).long()
    items = [(x[i], y[i]) for i in range(32)]
    dls = DataLoaders.from_dsets(items[:24], items[24:], bs=8, num_workers=0, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, lr=0.1, cbs=cbs)


def test_channels_last_converts_the_model_and_image_inputs() -> None:
    class SeeInputs(Callback):
        order = 6  # after ChannelsLast (5)

        def __init__(self) -> None:
            self.formats: list[bool] = []

        def before_batch(self) -> None:
            self.formats.append(self.learn.xb[0].is_contiguous(memory_format=torch.channels_last))

    see = SeeInputs()
    learn = _image_learner([ChannelsLast(), see])
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, lr=0.0)
    assert see.formats and all(see.formats)  # training and validation batches
    conv = learn.model[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for k, v in learn.model.state_dict().items():  # same values and keys, only the layout changed
        assert torch.equal(v, before[k]), k


def test_compile_compiles_for_the_fit_and_keeps_the_plain_module() -> None:
    graphs: list[Any] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        graphs.append(gm)
        return gm.forward  # run the captured graph as is: tests the wiring, not code generation

    class SeeKeys(Callback):
        def __init__(self) -> None:
            self.keys: list[list[str]] = []

        def after_epoch(self) -> None:
            self.keys.append(list(self.learn.model.state_dict()))

    torch._dynamo.reset()
    see = SeeKeys()
    learn = _mlp_learner([Compile(backend=counting_backend), see])
    model = learn.model
    keys = list(model.state_dict())
    learn.fit(2)
    assert graphs  # the forward went through torch.compile
    assert learn.model is model  # the same module, not an OptimizedModule wrapper
    assert see.keys == [keys, keys]  # no `_orig_mod.` prefix during the fit (save / checkpoints) ...
    assert list(learn.model.state_dict()) == keys  # ... nor after it
    n = len(graphs)
    learn.model(torch.randn(5, 4))  # a new shape after the fit: eager again, nothing compiles
    assert len(graphs) == n
    eager = _mlp_learner([])
    eager.fit(2)
    for k, v in eager.model.state_dict().items():  # the compiled fit trained the same model
        assert torch.allclose(learn.model.state_dict()[k], v, atol=1e-6), k


def test_compile_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="help:"):
        Compile(mode="fastest")  # type: ignore[arg-type]


def _slow_backend(delay: float) -> Any:
    """A torch.compile backend that runs the captured graph as is, `delay` seconds slower per call."""

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        def run(*args: Any) -> Any:
            time.sleep(delay)
            return gm.forward(*args)

        return run

    return backend


def test_compile_auto_keeps_eager_when_compiling_is_slower() -> None:
    torch._dynamo.reset()
    cb = Compile(mode="auto", backend=_slow_backend(0.02), warmup_steps=1, trial_steps=2)
    learn = _mlp_learner([cb])  # 3 training batches per epoch
    learn.fit(3)
    assert cb.chosen == "eager" and set(cb.step_times) == {"eager", "default"}
    assert cb.step_times["default"] > cb.step_times["eager"]
    assert learn.model._compiled_call_impl is None
    eager = _mlp_learner([])
    eager.fit(3)
    for k, v in eager.model.state_dict().items():  # the trial's steps trained the model like any others
        assert torch.allclose(learn.model.state_dict()[k], v, atol=1e-6), k


class _FakeClock:
    """Stands in for the `time` module: a step costs 1 s eagerly and 0.4 s compiled."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t


def test_compile_auto_keeps_a_faster_compiled_mode_for_the_rest_of_the_fit() -> None:
    torch._dynamo.reset()
    graphs: list[Any] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        graphs.append(gm)
        return gm.forward

    clock = _FakeClock()
    cb = Compile(mode="auto", backend=counting_backend, warmup_steps=1, trial_steps=4)

    class StepCost(Callback):
        def __init__(self) -> None:
            self.compiled_after_epoch: list[bool] = []

        def after_pred(self) -> None:
            if self.learn.training:
                clock.t += 1.0 if cb._active == "eager" else 0.4

        def after_epoch(self) -> None:
            self.compiled_after_epoch.append(self.learn.model._compiled_call_impl is not None)

    cost = StepCost()
    learn = _mlp_learner([cb, cost])
    with mock.patch.object(hardware, "time", clock):
        learn.fit(5)  # 15 steps; each 5-step window spans a validation, which is not timed
    assert cb.chosen == "default"
    assert cb.step_times == pytest.approx({"eager": 1.0, "default": 0.4})
    assert cost.compiled_after_epoch[-1]  # still compiled after the trial ended
    assert graphs and learn.model._compiled_call_impl is None  # eager again after the fit
    n, times = len(graphs), dict(cb.step_times)
    with mock.patch.object(hardware, "time", clock):
        learn.fit(1)  # the same model: no new trial, the same compiled forward (nothing compiles again)
    assert cb.chosen == "default" and cb.step_times == times and cost.compiled_after_epoch[-1]
    assert len(graphs) == n


def test_a_fit_that_crashed_does_not_leave_the_next_fit_compiled_for_good() -> None:
    torch._dynamo.reset()

    class Crash(Callback):
        def after_batch(self) -> None:
            raise RuntimeError("interrupted")

    cb = Compile(backend=_slow_backend(0.0))
    learn = _mlp_learner([cb])
    with pytest.raises(RuntimeError, match="interrupted"):
        learn.fit(1, cbs=[Crash()])
    assert learn.model._compiled_call_impl is not None  # no after_fit ran
    learn.fit(1)
    assert learn.model._compiled_call_impl is None  # the second fit puts the plain forward back


def test_compile_auto_that_runs_out_of_steps_leaves_the_model_eager() -> None:
    torch._dynamo.reset()
    cb = Compile(mode="auto", backend=_slow_backend(0.0), warmup_steps=2, trial_steps=5)
    learn = _mlp_learner([cb])
    learn.fit(1)
    assert cb.chosen is None and set(cb.step_times) <= {"eager"}
    assert learn.model._compiled_call_impl is None
    with pytest.raises(ValueError, match="help:"):
        Compile(mode="auto", candidates=["fastest"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="trial_steps"):
        Compile(mode="auto", trial_steps=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compile_auto_on_cuda_with_cuda_graphs_keeps_validation_predictions() -> None:
    torch._dynamo.reset()
    cb = Compile(mode="auto", warmup_steps=3, trial_steps=3)
    learn = _mlp_learner([cb])
    learn.dls.device = torch.device("cuda")
    learn.model.cuda()
    learn.fit(6)
    assert cb.chosen in ("eager", "default", "reduce-overhead")
    assert set(cb.step_times) == {"eager", "default", "reduce-overhead"}
    preds, _targs = learn.get_preds()
    assert preds.shape == (8, 2) and torch.isfinite(preds).all()
