"""GradientAccumulation (a big batch from several small ones) and GradientClip (bound the gradient norm)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from torch import Tensor, nn

from lamina.train.callback import Callback

__all__ = ["GradientAccumulation", "GradientClip"]


def _batch_size(xb: tuple[Tensor, ...], yb: tuple[Tensor, ...]) -> int:
    b = yb if yb else xb
    return len(b[0]) if b else 0


class GradientAccumulation(Callback):
    """Steps the optimizer once every `n_acc` samples, so small batches train like one batch of `n_acc`.

    Each batch's backward is weighted by `bs / n_acc` (`learn.loss_weight`; the Recorder still logs the
    real loss), so with a loss that is a mean over items the summed gradients equal those of one batch of
    `n_acc` items. On the other batches it sets `learn.step_now = False`: the Learner skips the step (and
    the `zero_grad` after it), so gradients add up, and no other callback sees a step that did not happen.
    Samples left over at the end of an epoch carry into the next one; a new `fit` starts from zero
    gradients.

    Under DDP the gradients of non-stepping batches need no all-reduce: `_no_sync()` is the hook that
    returns the context to skip it (`learn.no_sync()` inside `learn.distributed()`, else `model.no_sync()`
    for a DistributedDataParallel model wrapped by hand), entered before backward and left after the batch.
    """

    run_valid = False

    def __init__(self, n_acc: int = 32) -> None:
        if n_acc < 1:
            raise ValueError(
                f"GradientAccumulation: n_acc is a number of samples and must be >= 1, got {n_acc}.\n"
                "help: pass the effective batch size you want, e.g. GradientAccumulation(n_acc=64)"
            )
        self.n_acc = n_acc
        self._count = 0
        self._can_skip_sync = False
        self._sync_off: AbstractContextManager[Any] | None = None

    def _no_sync(self) -> AbstractContextManager[Any] | None:
        """DDP hook: a context under which backward does not all-reduce gradients, or None without DDP."""
        learn = self.learn
        if learn.accelerator is not None:  # inside learn.distributed()
            return learn.no_sync()
        no_sync = getattr(learn.model, "no_sync", None)  # a DistributedDataParallel wrapped by hand
        return no_sync() if callable(no_sync) else None

    def _restore_sync(self) -> None:
        if self._sync_off is not None:
            self._sync_off.__exit__(None, None, None)
            self._sync_off = None

    def before_fit(self) -> None:
        self._restore_sync()
        self._count = 0
        learn = self.learn
        self._can_skip_sync = learn.accelerator is not None or callable(getattr(learn.model, "no_sync", None))
        learn.ensure_opt().zero_grad(set_to_none=True)

    def resume_state(self) -> dict[str, Any]:
        """Samples accumulated since the last step (`ResumeCallback` keeps the gradients themselves)."""
        return {"count": self._count}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self._count = int(state.get("count", 0))

    def before_backward(self) -> None:
        learn = self.learn
        bs = _batch_size(learn.xb, learn.yb)
        self._count += bs
        step_now = self._count >= self.n_acc
        learn.loss_weight *= bs / self.n_acc
        learn.step_now = learn.step_now and step_now
        if step_now:
            self._count = 0
        elif self._can_skip_sync:
            self._sync_off = self._no_sync()
            if self._sync_off is not None:
                self._sync_off.__enter__()

    def after_batch(self) -> None:
        self._restore_sync()


class GradientClip(Callback):
    """Clips the norm of all gradients to `max_norm` before each optimizer step.

    It asks the Learner for the true gradients first (`learn.unscale_grads()`: under fp16 loss scaling they
    are divided by the scale), so the bound holds whatever precision callback is present and in whatever
    order. `last_norm` keeps the norm before clipping (a device tensor: reading it waits for the device).
    """

    run_valid = False

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        if not max_norm > 0:
            raise ValueError(
                f"GradientClip: max_norm must be > 0, got {max_norm}.\n"
                "help: typical values are 0.5 to 5; remove the callback to train without clipping"
            )
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)
        self.last_norm: Tensor | None = None

    def before_step(self) -> None:
        self.learn.unscale_grads()
        self.last_norm = nn.utils.clip_grad_norm_(
            self.learn.model.parameters(), self.max_norm, norm_type=self.norm_type
        )
