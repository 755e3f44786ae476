"""GradientAccumulation equals one big batch; its DDP no_sync hook; GradientClip bounds the true gradients
(also under fp16 loss scaling)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks.accumulate import GradientAccumulation, GradientClip
from lamina.train.callbacks.precision import MixedPrecision


def _data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] - x[:, 2] > 0).long()


def _learner(
    bs: int, cbs: list[Callback], model: nn.Module | None = None, lr: float = 0.1, n: int = 32
) -> Learner:
    x, y = _data(n)
    items = [(x[i], y[i]) for i in range(n)]
    dls = DataLoaders.from_dsets(items, items[:8], bs=bs, shuffle=False, num_workers=0)
    if model is None:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    return Learner(
        dls, model, loss_func=nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, lr=lr, wd=0.0, cbs=cbs
    )


class _CountSteps(Callback):
    def __init__(self) -> None:
        self.steps = 0
        self.cancelled = 0

    def after_step(self) -> None:
        self.steps += 1

    def after_cancel_step(self) -> None:
        self.cancelled += 1


def test_accumulating_small_batches_equals_one_big_batch() -> None:
    small_count, big_count = _CountSteps(), _CountSteps()
    small = _learner(bs=4, cbs=[GradientAccumulation(n_acc=16), small_count])
    big = _learner(bs=16, cbs=[big_count])
    small.fit(3)
    big.fit(3)
    for (name, a), b in zip(small.model.state_dict().items(), big.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert small_count.steps - small_count.cancelled == big_count.steps == 6  # 2 real steps per epoch
    # the Recorder logs each small batch's real loss, not the scaled one used for backward
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = _data()
    assert small.recorder.losses[0] == pytest.approx(
        float(F.cross_entropy(fresh(x[:4]), y[:4]).detach()), rel=1e-6
    )


def test_no_sync_hook_skips_gradient_sync_on_non_stepping_batches() -> None:
    class FakeDDP(nn.Module):
        """Stands for DistributedDataParallel: counts how often gradient sync is switched off."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(3, 2)
            self.entered = 0
            self.syncing = True
            self.synced_backwards = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        @contextlib.contextmanager
        def no_sync(self) -> Iterator[None]:
            self.entered += 1
            self.syncing = False
            try:
                yield
            finally:
                self.syncing = True

    class SeeSync(Callback):
        order = 15

        def after_backward(self) -> None:
            model = self.learn.model
            assert isinstance(model, FakeDDP)
            model.synced_backwards += model.syncing

    model = FakeDDP()
    learn = _learner(bs=4, cbs=[GradientAccumulation(n_acc=12), SeeSync()], model=model)
    learn.fit(1)  # 8 batches of 4: steps after batches 3 and 6; 8 carries over
    assert model.entered == 6
    assert model.synced_backwards == 2
    assert model.syncing


def test_gradient_accumulation_refuses_zero_samples() -> None:
    with pytest.raises(ValueError, match="help:"):
        GradientAccumulation(n_acc=0)


class _GradNorm(Callback):
    order = 25  # after GradientClip (20), before MixedPrecision's fp16 step (30)

    def __init__(self) -> None:
        self.norms: list[float] = []

    def before_step(self) -> None:
        grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_gradient_clip_bounds_the_norm() -> None:
    clip, seen = GradientClip(max_norm=0.05), _GradNorm()
    learn = _learner(bs=8, cbs=[clip, seen])
    learn.fit(1)
    assert clip.last_norm is not None and float(clip.last_norm) > 0.05  # there was something to clip
    assert max(seen.norms) <= 0.05 * (1 + 1e-4)


def test_gradient_clip_sees_unscaled_gradients_under_fp16() -> None:
    clip, seen = GradientClip(max_norm=0.05), _GradNorm()
    learn = _learner(bs=8, cbs=[MixedPrecision(dtype="fp16"), clip, seen])
    model0 = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    model0.load_state_dict(learn.model.state_dict())

    class FirstNorm(Callback):
        order = 21

        def __init__(self) -> None:
            self.first: float | None = None

        def before_step(self) -> None:
            if self.first is None and clip.last_norm is not None:
                self.first = float(clip.last_norm)

    first = FirstNorm()
    learn.add_cb(first)
    learn.fit(1)
    # the first step's pre-clip norm is the true gradient norm (about 1), not 65536 times it
    x, y = _data()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(model0(x[:8]), y[:8])
    loss.backward()
    true_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model0.parameters()])))
    assert first.first == pytest.approx(true_norm, rel=1e-2)
    assert max(seen.norms) <= 0.05 * (1 + 1e-3)  # and clipping applied to the true gradients


def test_gradient_clip_refuses_a_non_positive_bound() -> None:
    with pytest.raises(ValueError, match="help:"):
        GradientClip(max_norm=0.0)


def test_precision_accumulation_and_clipping_compose_in_any_order() -> None:
    """Each fills in its part of the Learner's step (autocast/scaler, loss weight and step_now, unscaled
    gradients); none knows the others, so every order of the three trains to the same weights."""
    import itertools

    results, steps = [], []
    for orders in itertools.permutations([-10, 0, 10]):
        mp, acc, clip, count = (
            MixedPrecision("fp16"),
            GradientAccumulation(n_acc=16),
            GradientClip(0.05),
            _CountSteps(),
        )
        for cb, order in zip((mp, acc, clip), orders, strict=True):
            cb.order = order
        learn = _learner(4, [mp, acc, clip, count], n=32)
        learn.fit(2)
        results.append([p.detach().clone() for p in learn.model.parameters()])
        steps.append(count.steps)
        assert clip.last_norm is not None and float(clip.last_norm) > 0.05  # clipping was active
        assert max(learn.recorder.losses) < 10  # the real loss is logged, not the scaled one
    assert steps[0] == 4 and len(set(steps)) == 1  # 64 samples, a step every 16
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_compile_and_channels_last_join_in_any_order() -> None:
    """Compile compiles in place and lazily (the graph is traced at the first forward, after every
    before_fit), so it needs no place in the order either: with ChannelsLast, mixed precision, accumulation
    and clipping, each rotation of the five orders trains to the same weights, and the model was compiled."""
    from lamina.train.callbacks.hardware import ChannelsLast, Compile

    results = []
    orders = [-10, -5, 0, 5, 10]
    for r in range(len(orders)):
        rotated = orders[r:] + orders[:r]
        compile_cb = Compile(backend="eager")
        cbs = [
            ChannelsLast(),
            compile_cb,
            MixedPrecision("bf16"),
            GradientAccumulation(n_acc=16),
            GradientClip(0.05),
        ]
        for cb, order in zip(cbs, rotated, strict=True):
            cb.order = order
        learn = _learner(4, cbs, n=32)
        learn.fit(1)
        assert compile_cb.chosen == "default" and compile_cb._impls  # it ran compiled
        results.append([p.detach().clone() for p in learn.model.parameters()])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))
