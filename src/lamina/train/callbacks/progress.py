"""ProgressCallback: a progress bar for each phase (in a terminal or a Jupyter notebook) and one table row
per epoch."""

from __future__ import annotations

import html
import importlib
import math
import sys
import time
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


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (Jupyter, VS Code, Colab), where a terminal bar cannot show."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has always imported it
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and any(c.__name__ == "ZMQInteractiveShell" for c in type(shell).__mro__)


class _NotebookView:
    """The epoch table and the bar of the running phase, as HTML for a notebook and text for a console."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.rows: list[list[str]] = []
        self.what, self.done, self.total, self.start = "", 0, 0, 0.0

    def _bar_text(self) -> str:
        if not self.what:
            return ""
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return f"{self.what} {self.done}/{self.total} [{_fmt_time(elapsed)}<{_fmt_time(left)}]"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        bar = ""
        if self.what:
            bar = (
                f'<div><progress value="{self.done}" max="{max(self.total, 1)}" style="width:300px">'
                f"</progress> {html.escape(self._bar_text())}</div>"
            )
        return f'<div class="lamina-progress">{bar}<table><tr>{head}</tr>{body}</table></div>'

    def __repr__(self) -> str:
        widths = [max(len(n), 9) for n in self.names]
        lines = [
            "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [self.names, *self.rows]
        ]
        return "\n".join([*lines, self._bar_text()]).rstrip()


class ProgressCallback(Callback):
    """Prints a header, then a row of train loss, valid loss, metrics and time after each epoch.

    In a terminal a transient bar (rich) follows the batches; in a Jupyter notebook (`notebook=None`:
    detected) one live display holds the table and the bar, updated at most every `refresh` seconds; in
    logs and pipes only the rows are printed, so nothing is written per step. The bar counts batches and
    never reads a tensor. `quiet=True` prints nothing, and neither does any process but the main one of a
    distributed run.
    """

    order = 60  # after the Recorder has computed the epoch's values

    def __init__(
        self,
        quiet: bool = False,
        file: TextIO | None = None,
        notebook: bool | None = None,
        refresh: float = 0.2,
    ) -> None:
        self.quiet = quiet
        self.file = file
        self.notebook = notebook
        self.refresh = refresh
        self._progress: Any = None
        self._task: Any = None
        self._view: _NotebookView | None = None
        self._handle: Any = None
        self._shown = 0.0

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
        notebook = self.notebook if self.notebook is not None else self.file is None and _in_notebook()
        if notebook:
            self._view = _NotebookView(self._names)
            display = importlib.import_module("IPython.display").display
            self._handle = display(self._view, display_id=True)
            return
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

    def _update_view(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._handle is not None and (force or now - self._shown >= self.refresh):
            self._handle.update(self._view)
            self._shown = now

    def _start_bar(self, what: str, total: int) -> None:
        desc = f"epoch {self.learn.epoch + 1}/{self.learn.n_epoch} {what}"
        if self._progress is not None:
            self._task = self._progress.add_task(desc, total=total)
        if self._view is not None:
            self._view.what, self._view.done, self._view.total = desc, 0, total
            self._view.start = time.monotonic()
            self._update_view(force=True)

    def before_train(self) -> None:
        self._start_bar("train", self.learn.n_iter)

    def before_validate(self) -> None:
        if getattr(self, "_in_fit", False):
            self._start_bar("valid", self.learn.n_batches(self.learn.dl))

    def after_batch(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)
        if self._view is not None and self._view.what:
            self._view.done += 1
            self._update_view()

    def _end_bar(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        if self._view is not None:
            self._view.what = ""

    def after_train(self) -> None:
        self._end_bar()

    def after_validate(self) -> None:
        self._end_bar()

    def after_epoch(self) -> None:
        rec = self.learn.recorder
        if getattr(self, "_silent", True) or rec is None or not rec.log:
            return
        cells = [_fmt(v) for v in rec.log[:-1]] + [_fmt_time(rec.log[-1])]
        if self._view is not None:
            self._view.rows.append(cells)
            self._update_view(force=True)
            return
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
        if self._view is not None:  # the table stays in the notebook, without a bar
            self._view.what = ""
            self._update_view(force=True)
            self._view, self._handle = None, None
