"""Recorder: losses, learning rates and metrics of a run, accumulated on the device, read once per epoch."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from lamina.train.callback import Callback

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Recorder"]


class Recorder(Callback):
    """Keeps per-batch training losses, learning rates and momentums, and per-epoch train loss, valid loss
    and metrics.

    Nothing here calls `.item()` during an epoch: sums stay on the device and are read in `after_epoch`.
    `log` is the last epoch's row (`metric_names` names its columns); `values` holds every epoch's row.
    In a distributed run the sums and metric states are reduced across processes once per phase, so every
    process logs the same numbers. `resume_state` / `load_resume_state` carry the history through a
    `ResumeCallback` checkpoint.
    """

    order = 50

    def __init__(self, smooth_beta: float = 0.98, check_finite: bool = True) -> None:
        self.smooth_beta = smooth_beta
        # a NaN/inf training loss ends the fit with NonFiniteLossError at the end of its epoch, when the
        # batch losses reach the host anyway (no extra sync); lr_find turns it off, it diverges on purpose
        self.check_finite = check_finite
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.values: list[list[float]] = []
        self.log: list[Any] = []
        self.last_valid: list[float] = []
        self.times: list[float] = []  # seconds of each epoch
        self._batch_losses: list[torch.Tensor] = []
        self._batch_bs: list[int] = []

    @property
    def metric_names(self) -> list[str]:
        return ["epoch", "train_loss", "valid_loss", *[m.name for m in self.learn.metrics], "time"]

    def before_fit(self) -> None:
        self.losses, self.lrs, self.moms, self.values, self.log = [], [], [], [], []
        self.times = []
        self._batch_losses, self._batch_bs = [], []
        self._resumed_batches: tuple[list[float], list[int]] | None = None

    def before_epoch(self) -> None:
        self._start = time.perf_counter()
        self._tr_sum: torch.Tensor | float = 0.0
        self._tr_n = 0
        self._batch_bs = []
        self.last_valid = []
        if self._resumed_batches is not None:  # resumed mid-epoch: the batches of this epoch done before
            losses, sizes = self._resumed_batches
            dev = next((p.device for p in self.learn.model.parameters()), torch.device("cpu"))
            self._batch_losses = [torch.tensor(v, device=dev) for v in losses]
            self._batch_bs, self._resumed_batches = list(sizes), None

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.yb:
            return
        bs = len(learn.yb[0])
        loss = learn.loss.detach()
        # keep batch means and sizes; the weighted sums are computed once per phase, not per step
        if learn.training:
            self._batch_losses.append(loss)
            self._batch_bs.append(bs)
            g = learn.ensure_opt().param_groups[-1]
            self.lrs.append(float(g["lr"]))
            mom = g["betas"][0] if "betas" in g else g.get("momentum")
            if mom is not None:
                self.moms.append(float(mom))

    def after_train(self) -> None:
        # one sync per epoch: move this epoch's batch losses to the host together
        run = self.learn.run
        if self._batch_losses:
            batch_losses = torch.stack(self._batch_losses).float()
            self._tr_sum, self._tr_n = _weighted_sum(batch_losses, self._batch_bs), sum(self._batch_bs)
            self._batch_bs = []
            if run.world > 1:  # every process makes the same number of steps
                batch_losses = run.all_reduce_sum(batch_losses) / run.world
            host = batch_losses.cpu().tolist()
            self.losses += host
            self._batch_losses = []
            if self.check_finite:
                self._refuse_non_finite(host)
        if run.world > 1:
            self._tr_sum = run.all_reduce_sum(self._tr_sum)
            self._tr_n = int(run.all_reduce_sum(self._tr_n).item())

    def _refuse_non_finite(self, losses: list[float]) -> None:
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is None:
            return
        from lamina.train.callbacks.tracker import NonFiniteLossError

        learn = self.learn
        k = len(self.lrs) - len(losses) + bad  # this epoch's batches are the last len(losses) recorded
        lr = self.lrs[k] if 0 <= k < len(self.lrs) else None
        at_lr = f" (learning rate {lr:.2g})" if lr is not None else ""
        raise NonFiniteLossError(
            f"Recorder: the training loss became {losses[bad]} at epoch {learn.epoch}, batch {bad}{at_lr}; "
            "the model's weights are no longer usable, so training stopped.\n"
            "help: lower the learning rate (10x or more; learn.lr_find() suggests one), clip gradients "
            "(GradientClip), or add TerminateOnNaN() to stop sooner and keep the last good weights"
        )

    def after_validate(self) -> None:
        # the Learner computed the results (and reduced them across processes); the Recorder keeps them
        res, names = self.learn.last_metrics, [m.name for m in self.learn.metrics]
        self.last_valid = [res["valid_loss"], *[res[n] for n in names]] if res else []

    def after_epoch(self) -> None:
        train_loss = float(self._tr_sum / self._tr_n) if self._tr_n else float("nan")
        valid = self.last_valid or [float("nan")] * (1 + len(self.learn.metrics))
        row = [train_loss, *valid]
        self.values.append(row)
        secs = time.perf_counter() - self._start
        self.times.append(secs)
        self.log = [self.learn.epoch, *row, secs]

    def history(self) -> list[list[float]]:
        """Every epoch's row, as `metric_names` names the columns: epoch, losses, metrics, seconds."""
        times = self.times + [float("nan")] * (len(self.values) - len(self.times))  # resumed from old state
        return [[i, *row, t] for i, (row, t) in enumerate(zip(self.values, times, strict=False))]

    # -- resuming ------------------------------------------------------------------------------------------
    def resume_state(self) -> dict[str, Any]:
        """The history so far, as plain JSON data (for `ResumeCallback`)."""
        return {
            "losses": self.losses,
            "lrs": self.lrs,
            "moms": self.moms,
            "values": self.values,
            "times": self.times,
            "log": self.log,
            # the training batches of an unfinished epoch (a mid-epoch checkpoint; empty at an epoch's end)
            "batch_losses": [float(v) for v in self._batch_losses],
            "batch_bs": list(self._batch_bs),
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Continue the history saved by `resume_state`."""
        self.losses = [float(v) for v in state.get("losses", [])]
        self.lrs = [float(v) for v in state.get("lrs", [])]
        self.moms = [float(v) for v in state.get("moms", [])]
        self.values = [[float(v) for v in row] for row in state.get("values", [])]
        self.times = [float(v) for v in state.get("times", [])]
        losses, sizes = state.get("batch_losses") or [], state.get("batch_bs") or []
        self._resumed_batches = ([float(v) for v in losses], [int(v) for v in sizes]) if losses else None
        self.log = list(state.get("log", []))

    # -- pictures ------------------------------------------------------------------------------------------
    def smoothed_losses(self) -> list[float]:
        """Exponential moving average of the batch losses, debiased (what the loss plot shows)."""
        out, avg = [], 0.0
        for i, v in enumerate(self.losses, 1):
            avg = self.smooth_beta * avg + (1 - self.smooth_beta) * v
            out.append(avg / (1 - self.smooth_beta**i))
        return out

    def plot_loss(self, skip_start: int = 5, with_valid: bool = True) -> Figure:
        """Training loss per batch (smoothed) and validation loss per epoch."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        sm = self.smoothed_losses()
        ax.plot(range(skip_start, len(sm)), sm[skip_start:], label="train (smoothed)")
        if with_valid and self.values:
            n_per = max(1, len(self.losses) // len(self.values))
            xs = [n_per * (i + 1) for i in range(len(self.values))]
            ax.plot(xs, [v[1] for v in self.values], marker="o", label="valid")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def plot_sched(self) -> Figure:
        """Learning rate per batch."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(self.lrs)
        ax.set_xlabel("batch")
        ax.set_ylabel("learning rate")
        ax.set_title("Schedule")
        fig.tight_layout()
        return fig

    def plot_lr_find(self, skip_end: int = 5) -> Figure:
        """The last lr_find's loss against learning rate, with the suggestions marked."""
        from lamina.train.callbacks.lr_find import plot_lr_find

        return plot_lr_find(self.learn, skip_end=skip_end)


def _weighted_sum(means: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Sum of per-batch mean losses weighted by batch size: the total loss over every item."""
    return (means * torch.tensor(sizes, dtype=means.dtype, device=means.device)).sum()
