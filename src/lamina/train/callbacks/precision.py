"""MixedPrecision: forward and loss under autocast (bf16 or fp16), with dynamic loss scaling for fp16.

>>> learn = Learner(dls, model, cbs=MixedPrecision(dtype="bf16"))   # or learn.to_bf16() / learn.to_fp16()
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lamina.train.callback import Callback

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
    dynamic scale (`torch.amp.GradScaler`) for backward and the step is skipped when a gradient overflowed.
    The device type (cuda, cpu, ...) is read from the model's parameters.

    It only fills in the Learner's step contract: `learn.autocast` (entered by the Learner around forward and
    loss, so a cancelled batch cannot leave it on) and, for fp16, `learn.grad_scaler` (used by the
    Learner's backward and step; `learn.unscale_grads()` gives other callbacks the true gradients). In
    validation, half-precision predictions become float32 so metrics sum in float32. No other callback
    needs to know it is there, and its `order` does not matter.
    """

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
        learn.autocast = self._autocast

    def before_fit(self) -> None:
        self._setup()
        self.learn.grad_scaler = self.scaler

    def before_validate(self) -> None:
        self._setup()  # also for validate() / get_preds() outside a fit

    def after_pred(self) -> None:
        if not self.learn.training:
            self.learn.pred = _to_float(self.learn.pred)

    def after_fit(self) -> None:
        self.learn.autocast, self.learn.grad_scaler = None, None
