"""ProgressCallback: a progress bar for each phase (in a terminal) and one table row per epoch."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from lamina.train.callback import Callback

__all__ = ["ProgressCallback"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.6f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def _fmt_time(sec: float) -> str:
    m, s = divmod(round(sec), 60)
    return f"{m:02d}:{s:02d}"


class ProgressCallback(Callback):
    """Prints a header, then a row of train loss, valid loss, metrics and time after each epoch.

    In a terminal a transient bar (rich) follows the batches; in logs and pipes only the rows are printed,
    so nothing is written per step. `quiet=True` prints nothing, and neither does any process but the
    main one of a distributed run.
    """

    order = 60  # after the Recorder has computed the epoch's values

    def __init__(self, quiet: bool = False, file: TextIO | None = None) -> None:
        self.quiet = quiet
        self.file = file
        self._progress: Any = None
        self._task: Any = None

    @property
    def _out(self) -> TextIO:
        return self.file or sys.stdout

    def _interactive(self) -> bool:
        return not self.quiet and self.file is None and sys.stdout.isatty()

    def before_fit(self) -> None:
        self._in_fit = True
        self._stop_bar()  # a fit interrupted by an exception never reached after_fit
        rec = self.learn.recorder
        self._silent = self.quiet or rec is None or not self.learn.is_main_process
        if self._silent:
            return
        self._names = rec.metric_names
        self._widths = [max(len(n), 9) for n in self._names]
        header = "  ".join(n.rjust(w) for n, w in zip(self._names, self._widths, strict=True))
        print(header, file=self._out, flush=True)
        if self._interactive():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._progress.start()

    def _start_bar(self, what: str, total: int) -> None:
        if self._progress is not None:
            desc = f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} {what}"
            self._task = self._progress.add_task(desc, total=total)

    def before_train(self) -> None:
        self._start_bar("train", self.learn.n_iter)

    def before_validate(self) -> None:
        if getattr(self, "_in_fit", False):
            self._start_bar("valid", self.learn.n_batches(self.learn.dl))

    def after_batch(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def _end_bar(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None

    def after_train(self) -> None:
        self._end_bar()

    def after_validate(self) -> None:
        self._end_bar()

    def after_epoch(self) -> None:
        rec = self.learn.recorder
        if getattr(self, "_silent", True) or rec is None or not rec.log:
            return
        cells = [_fmt(v) for v in rec.log[:-1]] + [_fmt_time(rec.log[-1])]
        line = "  ".join(c.rjust(w) for c, w in zip(cells, self._widths, strict=True))
        if self._progress is not None:
            self._progress.console.print(line, highlight=False)
        else:
            print(line, file=self._out, flush=True)

    def after_fit(self) -> None:
        self._in_fit = False
        self._stop_bar()

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
