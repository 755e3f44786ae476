"""Callbacks the tests share: interrupting a fit at a chosen training batch, as a crash would."""

from __future__ import annotations

from lamina.train import Callback


class CrashAt(Callback):
    """Raises `RuntimeError("interrupted")` after training batch `batch` (0-based) of `epoch`."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def after_batch(self) -> None:
        if self.learn.training and self.learn.epoch == self.epoch and self.learn.iter == self.batch:
            raise RuntimeError("interrupted")
