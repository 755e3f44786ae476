"""MixedPrecision: forward and loss under autocast (bf16 or fp16), with dynamic loss scaling for fp16.

>>> learn = Learner(dls, model, cbs=MixedPrecision(dtype="bf16"))   # or learn.to_bf16() / learn.to_fp16()
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lamina.train.callback import Callback, CancelStep

__all__ = ["MixedPrecision", "PrecisionName"]

PrecisionName = Literal["bf16", "fp16"]
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
_HALF = (torch.bfloat16, torch.float16)


def _to_float(pred: Any) -> Any:
    """Half-precision predictions (one tensor, or a tuple/list of them) as float32 for the metrics."""
    if isinstance(pred, Tensor):
        return pred.float() if pred.dtype in _HALF else pred
    if isinstance(pred, tuple | list):
        return type(pred)(_to_float(p) for p in pred)
    return pred


class MixedPrecision(Callback):
    """Runs the forward pass and the loss under `torch.autocast` in bfloat16 or float16.

    bf16 has float32's range and needs nothing else. fp16 overflows easily, so the loss is multiplied by a
    dynamic scale (`torch.amp.GradScaler`) before backward and the step is skipped when a gradient
    overflowed. The device type (cuda, cpu, ...) is read from the model's parameters.

    How it sits in the loop (order 30; lower orders run first within an event):

    - before_batch enters autocast; after_loss leaves it (so MixUp's loss, order 15, is still autocast),
      or after_pred when the batch has no targets. after_cancel_batch, after_train, after_validate and
      after_fit leave it too when a Cancel* skipped after_loss, so autocast never outlives the batch. (An
      exception that is not a Cancel* leaves it on until the next `fit`.)
    - In validation, half-precision predictions become float32 in after_pred, so metrics sum in float32.
    - fp16 only: before_backward replaces `learn.loss` by the scaled loss and after_backward puts the real
      loss back (the Recorder logs the real one). before_step does `scaler.step(opt)` (which unscales,
      and skips the step on inf/NaN gradients), `scaler.update()` and `zero_grad`, then raises
      `CancelStep` so the Learner does not step a second time. A callback that must see the true
      gradients before the step runs earlier in before_step and calls `unscale_grads()` first, as
      `GradientClip` (order 20) does; `GradientAccumulation` (order 10) cancels non-stepping steps before
      either, so the scaled gradients accumulate untouched. Callbacks with an order above 30 get no
      before_step under fp16 (after_step still runs).
    - bf16 pays three no-op calls per step for the fp16 events.
    """

    order = 30

    def __init__(self, dtype: PrecisionName = "bf16") -> None:
        if dtype not in _DTYPES:
            raise ValueError(
                f"MixedPrecision: dtype must be one of {tuple(_DTYPES)}, got {dtype!r}.\n"
                'help: use MixedPrecision(dtype="bf16") where the device supports bfloat16, else "fp16"'
            )
        self.dtype: PrecisionName = dtype
        self.scaler: torch.amp.GradScaler | None = None
        self._autocast: torch.autocast | None = None
        self._device_type = ""
        self._in_autocast = False
        self._unscaled = False
        self._real_loss: Tensor | None = None

    # -- setup -----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        learn = self.learn
        param = next(learn.model.parameters(), None)
        device_type = param.device.type if param is not None else learn.dls.device.type
        if not torch.amp.is_autocast_available(device_type):
            raise RuntimeError(
                f"MixedPrecision: autocast is not available on device type {device_type!r}.\n"
                "help: remove the callback (learn.to_fp32()) or move the model to a CUDA or CPU device"
            )
        if self.dtype == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(
                "MixedPrecision: this CUDA device does not support bfloat16.\n"
                'help: use learn.to_fp16() (MixedPrecision(dtype="fp16")) instead'
            )
        if device_type != self._device_type or self._autocast is None:
            self._device_type = device_type
            self._autocast = torch.autocast(device_type=device_type, dtype=_DTYPES[self.dtype])
            self.scaler = torch.amp.GradScaler(device_type) if self.dtype == "fp16" else None

    def _leave(self) -> None:
        if self._in_autocast and self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._in_autocast = False

    def before_fit(self) -> None:
        self._leave()  # left on by an earlier run that ended in an exception
        self._setup()
        self._unscaled, self._real_loss = False, None

    def before_validate(self) -> None:
        if self._autocast is None:  # validate() / get_preds() before any fit
            self._setup()

    # -- autocast around forward and loss --------------------------------------------------------------------
    def before_batch(self) -> None:
        if self._autocast is not None and not self._in_autocast:
            self._autocast.__enter__()
            self._in_autocast = True

    def after_pred(self) -> None:
        learn = self.learn
        if not learn.training:
            learn.pred = _to_float(learn.pred)
        if not learn.yb:  # no loss follows (get_preds on unlabelled items)
            self._leave()

    def after_loss(self) -> None:
        self._leave()

    def after_cancel_batch(self) -> None:
        self._leave()

    def after_train(self) -> None:
        self._leave()

    def after_validate(self) -> None:
        self._leave()

    def after_fit(self) -> None:
        self._leave()

    # -- fp16 loss scaling -----------------------------------------------------------------------------------
    def before_backward(self) -> None:
        if self.scaler is None:
            return
        self._real_loss = self.learn.loss
        self.learn.loss = self.scaler.scale(self.learn.loss)

    def after_backward(self) -> None:
        if self._real_loss is not None:
            self.learn.loss, self._real_loss = self._real_loss, None

    def unscale_grads(self) -> None:
        """Divide the gradients by the loss scale now (once per step; a no-op for bf16).

        For callbacks that read or change gradients in before_step (clipping, logging norms).
        """
        if self.scaler is not None and not self._unscaled:
            self.scaler.unscale_(self.learn.ensure_opt())
            self._unscaled = True

    def before_step(self) -> None:
        if self.scaler is None:
            return
        opt = self.learn.ensure_opt()
        self.scaler.step(opt)  # unscales unless unscale_grads() did; skips the step on inf/NaN gradients
        self.scaler.update()
        self._unscaled = False
        opt.zero_grad(set_to_none=True)
        raise CancelStep
