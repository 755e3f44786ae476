"""Callbacks that fit the computation to the hardware: ChannelsLast memory format and torch.compile."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from lamina.train.callback import Callback

__all__ = ["ChannelsLast", "Compile", "CompileMode"]

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # their outputs live in memory the next step reuses
EAGER = "eager"


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
    """Compiles the model with `torch.compile` for the duration of `fit`; `mode="auto"` measures and chooses.

    The model is compiled in place (`nn.Module.compile`), so `learn.model` stays the same module: the
    optimizer, `learn.save` during the fit and the state_dict keys are unchanged (no `_orig_mod.` prefix).
    After the fit the module is put back to eager execution, so `get_preds`, `predict` and export see the
    plain module. The first batches are slow while the graphs compile; changing batch shapes (the last
    batch, validation) can compile again, which `dynamic=True` avoids. `backend` is torch.compile's
    (a name or a callable; "eager" checks that the model traces without generating code).

    Compiling is not always faster: it wins on small, launch-bound steps (CUDA graphs, "reduce-overhead")
    and can lose on large convolutions. `mode="auto"` runs the first training steps eagerly, then under
    each of `candidates` (default: "default", plus "reduce-overhead" on CUDA), `warmup_steps` untimed then
    `trial_steps` timed each (validation pauses the clock), and keeps the fastest; a compiled mode must
    beat eager by `margin` (a fraction) to be kept. Every step of the trial trains the model. `chosen` and
    `step_times` (seconds per training step, summed over processes when distributed) tell what was
    measured and decided; a fit too short to finish the trial stays eager (`chosen` None). Later fits of
    the same model reuse the choice and the compiled forwards (`fine_tune` does not compile twice).
    With a CUDA-graph mode, validation predictions are copied out of the graph's memory (`get_preds` keeps
    them across steps); a callback that keeps training predictions across steps must copy them too.
    """

    # no `order`: `nn.Module.compile` only marks the module; the graph is traced at the first forward,
    # after every callback's before_fit (ChannelsLast's conversion included), so any order works

    def __init__(
        self,
        mode: CompileMode | Literal["auto"] | None = None,
        fullgraph: bool = False,
        dynamic: bool | None = None,
        backend: str | Callable[..., Any] = "inductor",
        candidates: Sequence[CompileMode] | None = None,
        warmup_steps: int = 3,
        trial_steps: int = 10,
        margin: float = 0.03,
    ) -> None:
        if mode is not None and mode != "auto" and mode not in _MODES:
            raise ValueError(
                f"Compile: mode must be None, 'auto' or one of {_MODES}, got {mode!r}.\n"
                'help: None or "default" suit most models; "reduce-overhead" uses CUDA graphs (small '
                'batches); "auto" measures eager and compiled steps and keeps the faster'
            )
        bad = [c for c in candidates or () if c not in _MODES]
        if bad:
            raise ValueError(f"Compile: unknown candidate modes {bad!r}.\nhelp: choose among {_MODES}")
        if warmup_steps < 1 or trial_steps < 1 or not 0 <= margin < 1:
            raise ValueError(
                "Compile: warmup_steps and trial_steps must be >= 1 and margin in [0, 1), got "
                f"{warmup_steps}, {trial_steps}, {margin}"
            )
        self.mode, self.fullgraph, self.dynamic, self.backend = mode, fullgraph, dynamic, backend
        self.candidates = None if candidates is None else tuple(candidates)
        self.warmup_steps, self.trial_steps, self.margin = warmup_steps, trial_steps, margin
        self.chosen: str | None = None  # EAGER or the mode in use; None while an auto trial runs
        self.step_times: dict[str, float] = {}
        self._previous: Callable[..., Any] | None = None
        self._compiled = False
        self._impls: dict[str, Callable[..., Any]] = {}  # mode -> compiled forward, kept across fits
        self._active: str = EAGER
        self._trial: list[str] = []  # auto: the modes still to time, the one being timed first
        self._step, self._n_timed, self._timed = 0, 0, 0.0  # auto: steps under this mode, timed, seconds
        self._t0: float | None = None  # when the running timing window opened
        self._device = torch.device("cpu")
        self._model: weakref.ref[torch.nn.Module] | None = None  # the model the compiled forwards belong to

    # -- the fit -------------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        model = self.learn.model
        previous = model._compiled_call_impl  # None unless the user compiled it already...
        if any(previous is f for f in self._impls.values()):
            previous = None  # ...or an earlier fit of ours ended by an exception, before after_fit
        self._previous = previous
        self._compiled = True
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if self._model is None or self._model() is not model or device != self._device:
            # another model or device: forget the compiled forwards and what was measured
            self._model, self._device = weakref.ref(model), device
            self._impls, self.step_times = {}, {}
            self.chosen = None
        if self.mode != "auto":
            self.chosen = self.mode or "default"
        if self.chosen is not None:  # a fixed mode, or decided in an earlier fit: no new trial
            self._use(self.chosen)
            return
        self._trial = [EAGER, *self._candidate_modes()]
        self.step_times = {}
        self._reset_timing()
        self._use(EAGER)

    def after_fit(self) -> None:
        if self._compiled:
            # nn.Module.compile has no public inverse: resetting the attribute it sets is the undo. The
            # compiled forwards are kept: the next fit of this model reuses them (and the choice) as they are
            self.learn.model._compiled_call_impl = self._previous
            self._compiled, self._previous, self._trial, self._active = False, None, [], EAGER

    # -- the steps -----------------------------------------------------------------------------------------
    def before_batch(self) -> None:
        if self._trial and self.learn.training and self._step >= self.warmup_steps and self._t0 is None:
            self._t0 = self._now()
        if self._active in _CUDAGRAPH_MODES and self._device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be reused

    def after_pred(self) -> None:
        if not self.learn.training and self._active in _CUDAGRAPH_MODES and self._device.type == "cuda":
            self.learn.pred = _copy_out(self.learn.pred)

    def after_batch(self) -> None:
        if not (self._trial and self.learn.training):
            return
        self._step += 1
        if self._t0 is None:  # still warming up (compiling)
            return
        self._n_timed += 1
        if self._n_timed < self.trial_steps:
            return
        self._timed += self._now() - self._t0
        self.step_times[self._trial.pop(0)] = self._timed / self._n_timed
        self._reset_timing()
        if self._trial:
            self._use(self._trial[0])
        else:
            self._decide()

    def before_validate(self) -> None:
        # validation is not a training step: pause the timing, resume at the next training batch
        if self._trial and self._t0 is not None:
            self._timed += self._now() - self._t0
            self._t0 = None

    # -- helpers -------------------------------------------------------------------------------------------
    def _reset_timing(self) -> None:
        self._step, self._n_timed, self._timed, self._t0 = 0, 0, 0.0, None

    def _candidate_modes(self) -> list[str]:
        if self.candidates is not None:
            return list(self.candidates)
        return ["default", "reduce-overhead"] if self._device.type == "cuda" else ["default"]

    def _use(self, mode: str) -> None:
        model = self.learn.model
        if mode == EAGER:
            model._compiled_call_impl = self._previous
        elif mode in self._impls:  # the trial's compiled function: its graphs (and CUDA graphs) stay valid
            model._compiled_call_impl = self._impls[mode]
        else:
            model._compiled_call_impl = None  # compile the plain forward, not an earlier candidate's
            model.compile(mode=mode, fullgraph=self.fullgraph, dynamic=self.dynamic, backend=self.backend)
            impl = model._compiled_call_impl
            assert impl is not None  # set by nn.Module.compile
            self._impls[mode] = impl
        self._active = mode

    def _decide(self) -> None:
        times = dict(self.step_times)
        run = self.learn.run
        if run.is_distributed:  # every process must make the same choice
            times = {k: float(run.all_reduce_sum(v)) for k, v in times.items()}
            self.step_times = times
        eager = times[EAGER]
        best = min((m for m in times if m != EAGER), key=lambda m: times[m], default=EAGER)
        self.chosen = best if best != EAGER and times[best] < eager * (1 - self.margin) else EAGER
        self._use(self.chosen)
        self._impls = {self.chosen: self._impls[self.chosen]} if self.chosen != EAGER else {}

    def _now(self) -> float:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)  # twice per timed mode, not per step
        return time.perf_counter()


def _copy_out(pred: Any) -> Any:
    """`pred` with every tensor copied (a CUDA graph overwrites its outputs on the next replay)."""
    if isinstance(pred, torch.Tensor):
        return pred.clone()
    if isinstance(pred, tuple | list):
        return type(pred)(_copy_out(p) for p in pred)
    if isinstance(pred, dict):
        return {k: _copy_out(v) for k, v in pred.items()}
    return pred
