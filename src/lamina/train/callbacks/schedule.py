"""Hyper-parameter schedules as a callback: 1cycle and flat-then-cosine, over the fraction of training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lamina.train.callback import Callback

__all__ = [
    "ParamScheduler",
    "Schedule",
    "combined_cos",
    "flat_cos_scheduler",
    "one_cycle_scheduler",
    "sched_cos",
]

Schedule = Callable[[float], float]


def sched_cos(start: float, end: float) -> Schedule:
    """Cosine from `start` (pos 0) to `end` (pos 1)."""

    def f(pos: float) -> float:
        return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2

    return f


@dataclass(frozen=True)
class _Combined:
    pct: float
    first: Schedule
    second: Schedule

    def __call__(self, pos: float) -> float:
        if pos < self.pct:
            return self.first(pos / self.pct) if self.pct > 0 else self.second(0.0)
        return self.second((pos - self.pct) / (1 - self.pct) if self.pct < 1 else 1.0)


def combined_cos(pct: float, start: float, middle: float, end: float) -> Schedule:
    """Cosine from start to middle over the first `pct` of training, then from middle to end."""
    return _Combined(pct, sched_cos(start, middle), sched_cos(middle, end))


class ParamScheduler(Callback):
    """Sets hyper-parameters per model group before every training batch from `scheds[name][group](pct)`.

    Names: `lr`, `mom` (Adam's beta1 or SGD's momentum), `weight_decay`.
    """

    order = 1
    run_valid = False

    def __init__(self, scheds: dict[str, Sequence[Schedule]]) -> None:
        self.scheds = scheds

    def before_fit(self) -> None:
        n = self.learn.n_groups
        for name, fs in self.scheds.items():
            if len(fs) != n:
                raise ValueError(f"ParamScheduler: {len(fs)} schedules for {name!r} and {n} parameter groups")

    def before_batch(self) -> None:
        pos = self.learn.pct_train
        for name, fs in self.scheds.items():
            self.learn.set_hyper(name, [f(pos) for f in fs])


def one_cycle_scheduler(
    lrs: Sequence[float],
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
) -> ParamScheduler:
    """The 1cycle policy for each group's maximum learning rate in `lrs`."""
    scheds: dict[str, Sequence[Schedule]] = {
        "lr": [combined_cos(pct_start, lr / div, lr, lr / div_final) for lr in lrs]
    }
    if moms is not None:
        scheds["mom"] = [combined_cos(pct_start, *moms) for _ in lrs]
    return ParamScheduler(scheds)


def flat_cos_scheduler(
    lrs: Sequence[float], div_final: float = 1e5, pct_start: float = 0.75
) -> ParamScheduler:
    """Constant learning rate, then cosine annealing to lr/div_final."""
    return ParamScheduler({"lr": [combined_cos(pct_start, lr, lr, lr / div_final) for lr in lrs]})
