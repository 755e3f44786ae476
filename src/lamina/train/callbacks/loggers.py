"""Loggers: the Recorder's rows to a CSV file; losses, learning rates and metrics to TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.train.callback import Callback

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSVLogger", "TensorBoardCallback"]


def _recorder(cb: Callback) -> Any:
    rec = cb.learn.recorder
    if rec is None:
        raise RuntimeError(
            f"{type(cb).__name__}: needs the Recorder, which this Learner does not have.\n"
            "help: create the Learner with default_cbs=True, or add a Recorder()"
        )
    return rec


class CSVLogger(Callback):
    """Appends each epoch's row (epoch, train_loss, valid_loss, metrics, time in seconds) to a CSV file.

    `fname` is relative to `learn.path`. The file is opened only to write a row, so a crash leaves every
    finished epoch on disk. `append=True` adds to an existing file (the header is written only when the
    file is new or empty); otherwise each fit starts the file again. In a distributed run only the main
    process writes.
    """

    order = 55  # after the Recorder (50) has made the row; before trackers (65) that may stop the fit

    def __init__(self, fname: str | Path = "history.csv", append: bool = False) -> None:
        self.fname, self.append = Path(fname), append
        self._write = True

    @property
    def path(self) -> Path:
        return self.learn.path / self.fname

    def before_fit(self) -> None:
        rec = _recorder(self)
        self._write = self.learn.is_main_process  # one file for a distributed run
        if not self._write:
            return
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.append and path.exists() and path.stat().st_size > 0:
            return
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(rec.metric_names)

    def after_epoch(self) -> None:
        log = _recorder(self).log
        if not log or not self._write:
            return
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in log])

    def read_log(self) -> pd.DataFrame:
        """The file as a DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path)


class TensorBoardCallback(Callback):
    """Writes training losses and learning rates (per batch) and validation loss and metrics (per epoch)
    to TensorBoard.

    Everything is written after each epoch from the Recorder, which reads the device once per epoch: this
    callback adds nothing per step. `log_dir` is relative to `learn.path` (default: SummaryWriter's
    `runs/<date>_<host>`). Needs the `tensorboard` package. In a distributed run only the main process writes.
    """

    order = 55

    def __init__(self, log_dir: str | Path | None = None) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "TensorBoardCallback: the tensorboard package is not installed.\n"
                "help: pip install tensorboard"
            )
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.writer: Any = None
        self._n_logged = 0  # batches of this fit already written
        self._step0 = 0  # batches written by earlier fits: steps keep increasing across fits
        self._epoch = 0  # epochs written, across fits

    def before_fit(self) -> None:
        _recorder(self)
        if self.writer is None and self.learn.is_main_process:
            from torch.utils.tensorboard import SummaryWriter

            log_dir = None if self.log_dir is None else str(self.learn.path / self.log_dir)
            self.writer = SummaryWriter(log_dir=log_dir)
        self._step0 += self._n_logged  # the Recorder starts its per-batch lists again at each fit
        self._n_logged = 0

    def after_epoch(self) -> None:
        rec = _recorder(self)
        w = self.writer
        if w is None:  # not the main process of a distributed run
            return
        for i in range(self._n_logged, len(rec.losses)):
            w.add_scalar("train_loss", rec.losses[i], self._step0 + i)
            if i < len(rec.lrs):
                w.add_scalar("lr", rec.lrs[i], self._step0 + i)
        self._n_logged = len(rec.losses)
        if rec.values:
            names = rec.metric_names[2:-1]  # valid_loss, *metrics
            for name, v in zip(names, rec.values[-1][1:], strict=True):
                w.add_scalar(name, v, self._epoch)
        self._epoch += 1
        w.flush()

    def after_fit(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
