"""Callback: the one way to extend the training loop. The event list and the Cancel* exceptions.

A callback implements methods named after the events it cares about; the Learner calls only those (no
per-step cost for events a callback ignores). It reaches the loop's state through `self.learn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = [
    "CANCEL_EVENTS",
    "EVENTS",
    "Callback",
    "CancelBatch",
    "CancelEpoch",
    "CancelFit",
    "CancelStep",
    "CancelTrain",
    "CancelValid",
]

EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
)
CANCEL_EVENTS: tuple[str, ...] = tuple(
    f"after_cancel_{s}" for s in ("batch", "step", "train", "validate", "epoch", "fit")
)


class CancelBatch(Exception):
    """Skip the rest of this batch (the loop goes on with the next one)."""


class CancelStep(Exception):
    """Skip this optimizer step (and the zeroing of gradients that follows it)."""


class CancelTrain(Exception):
    """Skip the rest of this epoch's training phase."""


class CancelValid(Exception):
    """Skip this epoch's validation phase."""


class CancelEpoch(Exception):
    """Skip the rest of this epoch."""


class CancelFit(Exception):
    """Stop training now (after_cancel_fit and after_fit still run)."""


class Callback:
    """Base class: override the events you need; `order` sorts callbacks (lower runs first).

    `run_train` / `run_valid` say whether the callback runs during training and validation batches.
    """

    order: int = 0
    run_train: bool = True
    run_valid: bool = True
    learn: Learner

    @property
    def name(self) -> str:
        """snake_case of the class name without 'Callback': `SaveModelCallback` -> `save_model`."""
        n = type(self).__name__
        n = n[: -len("Callback")] if n.endswith("Callback") and n != "Callback" else n
        return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(n))

    def __repr__(self) -> str:
        return type(self).__name__
