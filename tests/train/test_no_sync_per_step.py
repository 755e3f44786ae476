"""No lamina code reads a tensor's value within a batch (on a GPU each read would wait for the device).

On the CPU a read costs nothing, so the test watches for the reads themselves: a torch function mode
records every `item`, `tolist`, `bool`, `float`, `int`, `numpy` and `cpu` call from the start of a
training or validation batch to its end (on CUDA, tests/train/test_cuda_loop.py checks the same with
`set_sync_debug_mode`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import lamina
from lamina.data import DataLoaders
from lamina.train import (
    Callback,
    ChannelsLast,
    GradientAccumulation,
    GradientClip,
    Learner,
    TerminateOnNaN,
    accuracy,
)

_LAMINA = str(Path(lamina.__file__).parent)
_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}


class _Reads(TorchFunctionMode):
    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _READS:
            caller = _reader()
            if caller.startswith(_LAMINA):  # torch's own reads (the CPU AdamW's step count) are the plain
                self.seen.append(f"{name} in {caller}")  # loop's too: only lamina's count
        return func(*args, **(kwargs or {}))


def _reader() -> str:
    """Where the read was written: the caller of `.item()` etc., past torch's dispatch machinery."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.endswith(("overrides.py", "_tensor.py")):
        frame = frame.f_back  # type: ignore[assignment]
    return "" if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"


class _Open(Callback):
    order = -10_000  # first in before_batch: the whole step is watched

    def __init__(self, seen: list[str]) -> None:
        self.mode = _Reads(seen)
        self.watched = 0
        self.active = False

    def before_batch(self) -> None:
        if self.learn.iter >= 1:  # training and validation batches (metrics accumulate on the device)
            self.mode.__enter__()
            self.active = True
            self.watched += 1


class _Close(Callback):
    order = 10_000  # last in after_batch

    def __init__(self, opener: _Open) -> None:
        self.opener = opener

    def after_batch(self) -> None:
        if self.opener.active:
            self.opener.active = False
            self.opener.mode.__exit__(None, None, None)


def test_training_steps_read_no_tensor_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    items = [(x[i], y[i]) for i in range(96)]
    dls = DataLoaders.from_dsets(items[:64], items[64:], bs=8, num_workers=0, seed=0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )  # fmt: skip
    seen: list[str] = []
    opener = _Open(seen)
    cbs = [
        ChannelsLast(),
        GradientAccumulation(16),
        GradientClip(1.0),
        TerminateOnNaN(),
        opener,
        _Close(opener),
    ]
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, cbs=cbs)
    learn.to_bf16()
    learn.fit_one_cycle(2, 1e-2)  # with the default Recorder and progress bar
    assert opener.watched == 2 * (7 + 1)  # 8 training and 2 validation batches an epoch
    assert seen == []
