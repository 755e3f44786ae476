"""The learning-rate finder: a short run with an exponentially growing learning rate, then suggestions.

>>> suggestion = learn.lr_find()        # doctest: +SKIP
>>> suggestion.valley                   # doctest: +SKIP
0.0013
>>> plot_lr_find(suggestion)            # or learn.recorder.plot_lr_find()   # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from lamina.train.callback import Callback, CancelFit, CancelTrain, CancelValid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.train.learner import Learner

__all__ = ["LRFinder", "SuggestedLRs", "lr_find", "plot_lr_find", "suggest_lrs"]


@dataclass(frozen=True)
class SuggestedLRs:
    """Learning rates read off the loss-vs-learning-rate curve, and the curve itself (for the plot).

    `valley`: inside the longest stretch where the loss keeps going down (the usual pick); `steepest`: where
    the loss falls fastest per log-step of the learning rate; `minimum`: a tenth of the learning rate at
    the lowest loss (at the minimum itself training is already close to diverging).
    """

    valley: float
    steepest: float
    minimum: float
    lrs: tuple[float, ...] = field(default=(), repr=False)
    losses: tuple[float, ...] = field(default=(), repr=False)  # smoothed


def _smooth(values: Sequence[float], beta: float) -> list[float]:
    """Debiased exponential moving average (the Recorder's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def _trim(n: int) -> slice:
    """The part of the curve the suggestions read: without the first tenth (the moving average warming up)
    and the last 5 points (the divergence that stopped the run), when enough points remain."""
    s = slice(n // 10, n - 5)
    return s if len(range(n)[s]) >= 3 else slice(0, n)


def _valley(losses: Sequence[float]) -> int:
    """Index of the valley suggestion: the longest decreasing (not necessarily contiguous) run of the loss,
    then a point half-way between its first and second thirds, where the loss still falls well but is
    not yet near its minimum. A heuristic (fastai's), which works well on typical curves."""
    n = len(losses)
    run = [1] * n  # run[i]: length of the longest decreasing run ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[end]:
            end = i
    start = end - run[end] + 1
    third = (end - start) / 3
    return min(n - 1, start + int(third) + int(third / 2))


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float]) -> SuggestedLRs:
    """The three suggestions from learning rates and their smoothed losses (see `SuggestedLRs`)."""
    if len(lrs) != len(losses) or not lrs:
        raise ValueError(
            f"suggest_lrs: needs as many losses as learning rates, at least one; "
            f"got {len(lrs)} and {len(losses)}.\n"
            "help: run lr_find with num_it >= 2 on a training set that is not empty"
        )
    s = _trim(len(lrs))
    lr, loss = list(lrs[s]), list(losses[s])
    finite = [i for i, v in enumerate(loss) if math.isfinite(v)] or [0]
    lr, loss = [lr[i] for i in finite], [loss[i] for i in finite]
    minimum = lr[min(range(len(loss)), key=loss.__getitem__)] / 10
    if len(lr) > 1:
        grads = [
            (loss[i + 1] - loss[i]) / (math.log(lr[i + 1]) - math.log(lr[i])) for i in range(len(lr) - 1)
        ]
        steepest = lr[min(range(len(grads)), key=grads.__getitem__)]
    else:
        steepest = lr[0]
    valley = lr[_valley(loss)]
    return SuggestedLRs(valley, steepest, minimum, tuple(lrs), tuple(losses))


class LRFinder(Callback):
    """Raises the learning rate exponentially from `start_lr` to `end_lr` over `num_it` training batches.

    After each batch it smooths the loss (reading it: one device sync per batch, for at most `num_it`
    batches) and stops when `stop_div` and the smoothed loss exceeds 4x its minimum, or is NaN. It skips
    validation (CancelValid) and ends the fit (CancelFit) once done. `lrs` and `losses` (smoothed) are the
    curve; `lr_find` turns them into a `SuggestedLRs`.
    """

    order = 55  # in after_batch after the Recorder (50) took the batch; its own lr wins in before_batch
    run_valid = False

    def __init__(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
        beta: float = 0.98,
    ) -> None:
        if not 0 < start_lr < end_lr:
            raise ValueError(
                f"lr_find: needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}.\n"
                "help: the defaults (1e-7, 10) cover almost every model"
            )
        if num_it < 2:
            raise ValueError(f"lr_find: num_it must be >= 2 batches, got {num_it}.\nhelp: 100 is usual")
        self.start_lr, self.end_lr, self.num_it, self.stop_div, self.beta = (
            start_lr,
            end_lr,
            num_it,
            stop_div,
            beta,
        )
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def lr_at(self, i: int) -> float:
        """The learning rate of batch `i`: start_lr at 0, end_lr at num_it - 1, geometric in between."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_it - 1))

    def before_fit(self) -> None:
        self.lrs, self.losses = [], []
        self._i, self._avg, self._best, self._done = 0, 0.0, math.inf, False

    def before_batch(self) -> None:
        lr = self.lr_at(self._i)
        self._lr = lr
        self.learn.set_hyper("lr", [lr] * self.learn.n_groups)

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.yb:
            return
        self._i += 1
        loss = learn.loss.detach().float()
        if learn.accelerator is not None:  # every process must stop at the same batch: use the mean loss
            loss = learn.accelerator.reduce(loss, reduction="mean")
        self._avg = self.beta * self._avg + (1 - self.beta) * float(loss)
        smooth = self._avg / (1 - self.beta**self._i)
        self.lrs.append(self._lr)
        self.losses.append(smooth)
        self._best = min(self._best, smooth)
        diverged = self.stop_div and (math.isnan(smooth) or smooth > 4 * self._best)
        if diverged or self._i >= self.num_it:
            self._done = True
            raise CancelTrain  # after_train still runs: the Recorder moves this epoch's losses to the host

    def before_validate(self) -> None:
        raise CancelFit if self._done else CancelValid


def _clone_to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _clone_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone_to_cpu(v) for v in obj)
    return obj


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
) -> SuggestedLRs:
    """Trains up to `num_it` batches with a learning rate growing from `start_lr` to `end_lr`, puts the
    weights and optimizer back as they were, and returns suggested learning rates with the curve.

    The model and optimizer states are kept in host memory meanwhile. No epoch table is printed (the
    progress callbacks are set aside during the run). `learn.recorder` holds the run's batch losses and
    learning rates afterwards, as after any fit.
    """
    from lamina.train.callbacks.progress import ProgressCallback

    rec = learn.recorder
    beta = rec.smooth_beta if rec is not None else 0.98  # as the Recorder smooths: plot_lr_find(learn) agrees
    finder = LRFinder(start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, beta=beta)
    n_batches = len(learn.dls.train)
    if n_batches == 0:
        raise ValueError(
            "lr_find: the training DataLoader has no batches.\n"
            "help: check the training set is not empty and bs is not larger than it (drop_last)"
        )
    model_state = _clone_to_cpu(learn.model.state_dict())
    opt_state = _clone_to_cpu(learn.opt.state_dict()) if learn.opt is not None else None
    progress = [cb for cb in learn.cbs if isinstance(cb, ProgressCallback)]
    learn.remove_cbs(progress)
    checked = rec is not None and rec.check_finite
    if rec is not None:
        rec.check_finite = False  # the run diverges on purpose at its end
    try:
        learn.fit(math.ceil(num_it / n_batches), cbs=[finder])
    finally:
        learn.add_cbs(progress)
        if rec is not None:
            rec.check_finite = checked
        learn.model.load_state_dict(model_state)
        if opt_state is not None:
            learn.ensure_opt().load_state_dict(opt_state)
        else:
            learn.opt = None  # the next fit creates a fresh one, as it would have
        learn.model.zero_grad(set_to_none=True)
    if not finder.lrs:
        raise RuntimeError(
            "lr_find: no training batch ran, so there is nothing to suggest.\n"
            "help: check that no callback cancels every training batch"
        )
    return suggest_lrs(finder.lrs, finder.losses)


def plot_lr_find(result: SuggestedLRs | Learner, skip_end: int = 5) -> Figure:
    """Loss against learning rate (log scale) with the suggestions marked.

    Takes what `lr_find` returned, or a Learner after `lr_find` (its Recorder holds the curve; the
    suggestions are worked out again from it). `skip_end` drops the last points, where the loss shot up.
    """
    import matplotlib.pyplot as plt

    if isinstance(result, SuggestedLRs):
        sugg = result
    else:
        rec = result.recorder
        if rec is None or not rec.lrs:
            raise ValueError(
                "plot_lr_find: this Learner has no recorded learning-rate run.\n"
                "help: call learn.lr_find() first, or pass the SuggestedLRs it returned"
            )
        n = min(len(rec.lrs), len(rec.losses))
        sugg = suggest_lrs(list(rec.lrs[:n]), _smooth(rec.losses[:n], rec.smooth_beta))
    n = len(sugg.lrs)
    end = n - skip_end if n - skip_end >= 2 else n
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sugg.lrs[:end], sugg.losses[:end])
    lrs, losses = sugg.lrs, sugg.losses
    for name, lr, marker in (
        ("valley", sugg.valley, "o"),
        ("steepest", sugg.steepest, "^"),
        ("minimum", sugg.minimum, "s"),
    ):
        i = min(range(n), key=lambda k: abs(math.log(lrs[k]) - math.log(lr)))  # nearest point on the curve
        ax.plot(lr, losses[i], marker, markersize=8, linestyle="none", label=f"{name}: {lr:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("Learning rate finder")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
