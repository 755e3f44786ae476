"""Callbacks that watch a quantity: EarlyStoppingCallback, SaveModelCallback, TerminateOnNaN."""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lamina.train.callback import Callback, CancelFit

__all__ = [
    "EarlyStoppingCallback",
    "NonFiniteLossError",
    "SaveModelCallback",
    "TerminateOnNaN",
    "TrackerCallback",
]

Comparison = Callable[[float, float], bool]


def _lower_is_better(monitor: str) -> bool:
    return "loss" in monitor or "error" in monitor


class TrackerCallback(Callback):
    """Base: after each epoch, reads `monitor` from the Recorder and says whether it improved on the best.

    `comp(new, best)` is True when `new` is better: `operator.lt` or `operator.gt`; by default a name with
    "loss" or "error" in it is better lower, anything else higher. An improvement must beat the best by
    more than `min_delta`. Epochs whose value is NaN (no validation) neither improve nor count as worse.
    """

    order = 65  # after the Recorder (50) and the progress row (60): a CancelFit here still shows the epoch

    def __init__(
        self, monitor: str = "valid_loss", comp: Comparison | None = None, min_delta: float = 0.0
    ) -> None:
        if min_delta < 0:
            raise ValueError(
                f"{type(self).__name__}: min_delta must be >= 0, got {min_delta}.\n"
                "help: min_delta is how much better a value must be; the direction comes from comp"
            )
        self.monitor = monitor
        self.comp: Comparison = comp or (operator.lt if _lower_is_better(monitor) else operator.gt)
        # improved when comp(value + _delta, best): lower-better needs value < best - min_delta
        self._delta = min_delta if self.comp(0.0, 1.0) else -min_delta
        self.best = math.nan
        self.best_epoch = -1
        self._idx = 0

    def before_fit(self) -> None:
        rec = self.learn.recorder
        if rec is None:
            raise RuntimeError(
                f"{type(self).__name__}: needs the Recorder, which this Learner does not have.\n"
                "help: create the Learner with default_cbs=True, or add a Recorder()"
            )
        names = list(rec.metric_names[1:-1])  # the columns of recorder.values
        if self.monitor not in names:
            raise ValueError(
                f"{type(self).__name__}: monitor {self.monitor!r} is not recorded; the recorded values are "
                f"{names}.\nhelp: pass monitor= one of those (a metric's name), e.g. monitor={names[-1]!r}"
            )
        self._idx = names.index(self.monitor)
        self.best, self.best_epoch = math.nan, -1

    def _improved(self) -> bool:
        """Reads this epoch's value; True (and a new best) when it beats the best by more than min_delta."""
        values = self.learn.recorder.values
        if not values:
            return False
        value = float(values[-1][self._idx])
        if math.isnan(value):
            return False
        if math.isnan(self.best) or self.comp(value + self._delta, self.best):
            self.best, self.best_epoch = value, self.learn.epoch
            return True
        return False


class EarlyStoppingCallback(TrackerCallback):
    """Stops training when `monitor` has not improved for `patience` epochs in a row."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comparison | None = None,
        min_delta: float = 0.0,
        patience: int = 1,
    ) -> None:
        super().__init__(monitor=monitor, comp=comp, min_delta=min_delta)
        if patience < 1:
            raise ValueError(f"EarlyStoppingCallback: patience must be >= 1 epoch, got {patience}")
        self.patience = patience
        self.wait = 0
        self.stopped_epoch: int | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self.wait, self.stopped_epoch = 0, None

    def after_epoch(self) -> None:
        if self._improved():
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = self.learn.epoch
            print(f"No improvement in {self.monitor} since epoch {self.best_epoch}: early stopping")
            raise CancelFit


class SaveModelCallback(TrackerCallback):
    """Saves the model whenever `monitor` improves (`learn.save(fname)`), and loads the best at the end.

    `every_epoch=True` saves `fname_<epoch>` after every epoch instead (an int n: every n epochs) and loads
    nothing. `at_end=True` saves the final model under `fname` after the fit instead of loading the best.
    """

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comparison | None = None,
        min_delta: float = 0.0,
        fname: str = "model",
        every_epoch: bool | int = False,
        with_opt: bool = False,
        at_end: bool = False,
    ) -> None:
        super().__init__(monitor=monitor, comp=comp, min_delta=min_delta)
        if not isinstance(every_epoch, bool) and every_epoch < 1:
            raise ValueError(
                f"SaveModelCallback: every_epoch must be a bool or an int >= 1, got {every_epoch}"
            )
        self.fname, self.every_epoch, self.with_opt, self.at_end = fname, int(every_epoch), with_opt, at_end
        self._saved = False

    def before_fit(self) -> None:
        super().before_fit()
        self._saved = False

    def after_epoch(self) -> None:
        learn = self.learn
        if self.every_epoch:
            if (learn.epoch + 1) % self.every_epoch == 0:
                learn.save(f"{self.fname}_{learn.epoch}", with_opt=self.with_opt)
            return
        if self._improved():
            print(f"Better model found at epoch {learn.epoch} with {self.monitor} value: {self.best}.")
            learn.save(self.fname, with_opt=self.with_opt)
            self._saved = True

    def after_fit(self) -> None:
        learn = self.learn
        if self.at_end:
            learn.save(self.fname, with_opt=self.with_opt)
        elif not self.every_epoch and self._saved:
            if learn.accelerator is not None:  # only the main process writes: let it finish first
                learn.accelerator.wait_for_everyone()
            learn.load(self.fname, with_opt=self.with_opt)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (`TerminateOnNaN(error=True)`); the weights were restored."""


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite, and puts back the last good weights.

    Checking a loss on the host waits for the device, so the check happens every `check_every` steps
    (and at the end of each training phase): in between, a flag stays on the device. The weights
    after the last checked step whose loss (and every loss before it) was finite are kept as a snapshot;
    when a check finds a non-finite loss, the model's state_dict is restored from it, a RuntimeWarning
    names the epoch and step of the first bad loss, and `CancelFit` ends the fit. With `error=True` a
    `NonFiniteLossError` with the same message ends it instead (the run cannot be right: the caller must
    not go on as if it trained, e.g. export).

    Cost: one extra copy of the model's state_dict in device memory, refreshed (a device-to-device copy)
    at every passing check. The default (16) keeps the loop free of per-step syncs and may go back up to
    16 steps; `check_every=1` restores the weights the bad step started from, at one sync per step. The
    optimizer state is not restored (its moments may hold NaN): re-create it (`learn.create_opt()`) before
    training on.
    In a distributed run the processes agree at each check (one small all-reduce), so they stop together.
    """

    order = 40  # after the loss-changing callbacks have put the real loss back in after_batch (10)
    run_valid = False

    def __init__(self, check_every: int = 16, error: bool = False) -> None:
        if check_every < 1:
            raise ValueError(f"TerminateOnNaN: check_every must be >= 1 step, got {check_every}")
        self.check_every, self.error = check_every, error
        self.stopped_at: tuple[int, int] | None = None  # (epoch, step in epoch) of the first bad loss
        self._snapshot: list[Tensor] = []
        self._ok: Tensor | None = None  # all losses since the last check finite (device bool)
        # steps since the last check before the first bad one (device int): names the bad step exactly
        self._n_ok: Tensor | None = None
        self._since = 0
        self._first_step = 0

    def _state(self) -> list[Tensor]:
        return list(self.learn.model.state_dict().values())

    def before_fit(self) -> None:
        self._snapshot = [t.detach().clone() for t in self._state()]
        self.stopped_at, self._ok, self._n_ok, self._since = None, None, None, 0

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.yb:
            return
        finite = torch.isfinite(learn.loss.detach()).all()
        if self._ok is None or self._n_ok is None:
            self._ok, self._n_ok = finite, finite.long()
            self._first_step = learn.train_iter
        else:
            self._ok = self._ok & finite
            self._n_ok = self._n_ok + self._ok.long()
        self._since += 1
        if self._since >= self.check_every:
            self._check()

    def after_train(self) -> None:
        if self._since:
            self._check()

    def _check(self) -> None:
        assert self._ok is not None and self._n_ok is not None
        # every process decides alike (else one would stop while the others wait for it in all-reduce)
        mine = torch.stack([self._ok.long(), self._n_ok])
        ok, n_ok = torch.stack(self.learn.run.all_gather(mine)).min(0).values.tolist()  # the one sync
        self._ok, self._n_ok, self._since = None, None, 0
        learn = self.learn
        if ok:
            with torch.no_grad():
                for s, t in zip(self._snapshot, self._state(), strict=True):
                    s.copy_(t)
            return
        with torch.no_grad():
            for s, t in zip(self._snapshot, self._state(), strict=True):
                t.copy_(s)
        bad = self._first_step + n_ok
        n_iter = max(1, learn.n_iter)
        self.stopped_at = (bad // n_iter, bad % n_iter)
        lrs = [float(g["lr"]) for g in learn.opt.param_groups] if learn.opt is not None else []
        at_lr = f" (learning rate {max(lrs):.2g})" if lrs else ""
        msg = (
            f"TerminateOnNaN: the loss became NaN or infinite at epoch {self.stopped_at[0]}, step "
            f"{self.stopped_at[1]}{at_lr}; restored the last weights checked good and stopped training.\n"
            "help: lower the learning rate (10x or more; learn.lr_find() suggests one), clip gradients "
            "(GradientClip) or check the inputs for NaN"
        )
        if self.error:
            raise NonFiniteLossError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        raise CancelFit
