"""The loop on a GPU: no host sync per step under bf16, fp16 loss scaling, channels_last (CUDA only)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks.hardware import ChannelsLast

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _learner(cbs: list[Callback]) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 16, 16, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    items = [(x[i], y[i]) for i in range(96)]
    dls = DataLoaders.from_dsets(items[:64], items[64:], bs=16, num_workers=0, device="cuda", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    )  # fmt: skip
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), lr=1e-2, cbs=cbs)


class NoSyncAfterFirstBatch(Callback):
    """Turns any host-device sync into an error from the second training batch to the end of the phase."""

    order = -50

    def __init__(self) -> None:
        self.checked = 0

    def before_batch(self) -> None:
        if self.learn.training and self.learn.iter == 1:
            torch.cuda.set_sync_debug_mode("error")
        if self.learn.training and self.learn.iter >= 1:
            self.checked += 1

    def after_train(self) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def after_fit(self) -> None:
        torch.cuda.set_sync_debug_mode("default")


def test_training_steps_never_wait_for_the_gpu_under_bf16_and_channels_last() -> None:
    probe = NoSyncAfterFirstBatch()
    learn = _learner([ChannelsLast(), probe])
    learn.to_bf16()
    learn.fit_one_cycle(2)  # Recorder, Progress, 1cycle, fused AdamW: all step-free of syncs
    assert probe.checked == 2 * 3
    assert all(torch.isfinite(torch.tensor(v)).all() for v in learn.recorder.values[-1])


def test_fp16_with_loss_scaling_trains_on_cuda() -> None:
    learn = _learner([])
    learn.to_fp16()
    learn.fit(4)
    first, last = learn.recorder.values[0][0], learn.recorder.values[-1][0]
    assert last < first and torch.isfinite(torch.tensor(last))
