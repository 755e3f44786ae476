"""MixedPrecision: bf16 autocast on CPU (dtype inside, float32 outside, no leak on cancel), fp16 loss
scaling (the real loss is logged, an overflowing step is skipped and the scale backs off)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, CancelBatch, Learner
from lamina.train.callbacks.precision import MixedPrecision


def _learner(cbs: list[Callback], n: int = 64, bs: int = 8, lr: float = 0.1, seed: int = 0) -> Learner:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    items = [(x[i], y[i]) for i in range(n)]
    dls = DataLoaders.from_dsets(items[: n * 3 // 4], items[n * 3 // 4 :], bs=bs, num_workers=0, seed=seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    return Learner(
        dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, lr=lr, wd=0.0, cbs=cbs
    )


class _Probe(Callback):
    """Runs after MixedPrecision (order 30): what the loop looks like inside the autocast region."""

    order = 35

    def __init__(self) -> None:
        self.train_dtypes: list[torch.dtype] = []
        self.valid_dtypes: list[torch.dtype] = []
        self.losses: list[float] = []

    def after_pred(self) -> None:
        (self.train_dtypes if self.learn.training else self.valid_dtypes).append(self.learn.pred.dtype)

    def after_batch(self) -> None:
        if self.learn.training:
            self.losses.append(float(self.learn.loss.detach()))


class _EarlyProbe(Callback):
    order = 1  # before MixedPrecision enters autocast

    def __init__(self) -> None:
        self.autocast_on: list[bool] = []

    def before_batch(self) -> None:
        self.autocast_on.append(torch.is_autocast_enabled(self.learn.dls.device.type))


def test_bf16_autocast_inside_float32_outside_and_converges() -> None:
    probe, early = _Probe(), _EarlyProbe()
    learn = _learner([MixedPrecision(dtype="bf16"), probe, early])
    learn.fit(4)
    assert set(probe.train_dtypes) == {torch.bfloat16}  # the forward ran under bf16 autocast
    assert set(probe.valid_dtypes) == {torch.float32}  # metrics see float32 predictions
    assert not any(early.autocast_on)  # autocast was left after every batch
    assert not torch.is_autocast_enabled("cpu")
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # the weights stay float32
    first, last = learn.recorder.values[0][1], learn.recorder.values[-1][1]
    assert last < first  # valid loss went down: training works in bf16


def test_autocast_does_not_leak_when_a_batch_is_cancelled() -> None:
    class CancelAfterPred(Callback):
        order = 35

        def after_pred(self) -> None:
            if self.learn.training and self.learn.iter % 2 == 0:
                raise CancelBatch

    early = _EarlyProbe()
    learn = _learner([MixedPrecision(dtype="bf16"), CancelAfterPred(), early])
    learn.fit(1)
    assert early.autocast_on and not any(early.autocast_on)
    assert not torch.is_autocast_enabled("cpu")


def test_to_bf16_to_fp16_to_fp32_swap_the_callback() -> None:
    learn = _learner([])
    learn.to_bf16()
    assert [cb.dtype for cb in learn.cbs if isinstance(cb, MixedPrecision)] == ["bf16"]
    learn.to_fp16()
    assert [cb.dtype for cb in learn.cbs if isinstance(cb, MixedPrecision)] == ["fp16"]
    learn.to_fp32()
    assert learn.get_cb(MixedPrecision) is None


def test_bad_dtype_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="help:"):
        MixedPrecision(dtype="fp8")  # type: ignore[arg-type]


def test_fp16_scales_the_loss_but_logs_the_real_one() -> None:
    class SeeScaledLoss(Callback):
        order = -5  # any order: the scale is the Learner's, applied in its backward

        def __init__(self) -> None:
            self.ratios: list[float] = []

        def before_backward(self) -> None:
            scaler = self.learn.grad_scaler
            assert scaler is not None
            loss = self.learn.loss.detach()
            self.ratios.append(float(scaler.scale(loss)) / float(loss))

    see, probe = SeeScaledLoss(), _Probe()
    learn = _learner([MixedPrecision(dtype="fp16"), see, probe])
    learn.fit(3)
    mp = learn.get_cb(MixedPrecision)
    assert mp.scaler is not None
    scale = mp.scaler.get_scale()
    assert see.ratios[0] == pytest.approx(65536.0, rel=1e-3)  # GradScaler's initial scale
    assert set(probe.train_dtypes) == {torch.float16}
    assert probe.losses == pytest.approx(learn.recorder.losses)  # what the Recorder logs ...
    assert max(probe.losses) < 10  # ... is the real loss, not the scaled one
    assert scale == 65536.0  # no overflow on this problem: the scale did not back off
    assert learn.recorder.values[-1][1] < learn.recorder.values[0][1]


def test_fp16_skips_a_step_whose_gradients_overflow() -> None:
    class Overflow(Callback):
        order = 35  # after MixedPrecision's after_backward, before the step

        def __init__(self) -> None:
            self.before: list[torch.Tensor] = []

        def after_backward(self) -> None:
            if self.learn.train_iter == 2:
                first = next(self.learn.model.parameters())
                assert first.grad is not None
                first.grad[0, 0] = float("inf")
                self.before = [p.detach().clone() for p in self.learn.model.parameters()]

    class AfterStep(Callback):
        order = 36

        def __init__(self) -> None:
            self.after: list[torch.Tensor] = []

        def after_step(self) -> None:
            if self.learn.train_iter == 2:
                self.after = [p.detach().clone() for p in self.learn.model.parameters()]

    ov, af = Overflow(), AfterStep()
    learn = _learner([MixedPrecision(dtype="fp16"), ov, af])
    learn.fit(1)
    for b, a in zip(ov.before, af.after, strict=True):
        assert torch.equal(b, a)  # the overflowing step changed nothing
    mp = learn.get_cb(MixedPrecision)
    assert mp.scaler.get_scale() == 32768.0  # and the scale halved
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert all(p.grad is None for p in learn.model.parameters())  # zeroed after the (skipped) step


def test_get_preds_without_targets_leaves_autocast() -> None:
    learn = _learner([MixedPrecision(dtype="bf16")])
    x = torch.randn(10, 4, device=learn.dls.device)
    preds = learn.get_preds(dl=[(x,)])[0]
    assert preds.dtype == torch.float32 and preds.shape == (10, 2)
    assert not torch.is_autocast_enabled(learn.dls.device.type)
