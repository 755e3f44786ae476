"""Callbacks that fit the computation to the hardware: ChannelsLast memory format and torch.compile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from lamina.train.callback import Callback

__all__ = ["ChannelsLast", "Compile", "CompileMode"]

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ChannelsLast(Callback):
    """Trains a convolutional model in the channels_last (NHWC) memory format.

    Tensor cores on recent GPUs run convolutions faster in NHWC, most of all under mixed precision. The
    model is converted once in before_fit (it stays converted: the weights' values and the state_dict are
    unchanged, and checkpoints store contiguous copies) and every 4-D input in before_batch.
    """

    order = 5

    def before_fit(self) -> None:
        self.learn.model.to(memory_format=torch.channels_last)

    def before_batch(self) -> None:
        learn = self.learn
        learn.xb = tuple(
            x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in learn.xb
        )


class Compile(Callback):
    """Compiles the model with `torch.compile` for the duration of `fit`.

    The model is compiled in place (`nn.Module.compile`), so `learn.model` stays the same module: the
    optimizer, `learn.save` during the fit and the state_dict keys are unchanged (no `_orig_mod.` prefix).
    After the fit the module is put back to eager execution, so `get_preds`, `predict` and export see the
    plain module. The first batches are slow while the graphs compile; changing batch shapes (the last
    batch, validation) can compile again, which `dynamic=True` avoids. `backend` is torch.compile's
    (a name or a callable; "eager" checks that the model traces without generating code).
    """

    order = 90  # in before_fit after the callbacks that change the model (ChannelsLast, ...)

    def __init__(
        self,
        mode: CompileMode | None = None,
        fullgraph: bool = False,
        dynamic: bool | None = None,
        backend: str | Callable[..., Any] = "inductor",
    ) -> None:
        if mode is not None and mode not in _MODES:
            raise ValueError(
                f"Compile: mode must be None or one of {_MODES}, got {mode!r}.\n"
                'help: None or "default" suit most models; "reduce-overhead" uses CUDA graphs (small batches)'
            )
        self.mode, self.fullgraph, self.dynamic, self.backend = mode, fullgraph, dynamic, backend
        self._previous: Callable[..., Any] | None = None
        self._compiled = False

    def before_fit(self) -> None:
        model = self.learn.model
        self._previous = model._compiled_call_impl  # None unless the user compiled it already
        model.compile(mode=self.mode, fullgraph=self.fullgraph, dynamic=self.dynamic, backend=self.backend)
        self._compiled = True

    def after_fit(self) -> None:
        if self._compiled:
            # nn.Module.compile has no public inverse: resetting the attribute it sets is the undo
            self.learn.model._compiled_call_impl = self._previous
            self._compiled, self._previous = False, None
