"""learn.summary(): the model's layers on one batch of the data, with the optimizer, loss and callbacks.

>>> learn.summary()   # doctest: +SKIP
Sequential (input 64 x 3 x 28 x 28)
layer        type       output shape      params  trainable
0            Conv2d     64 x 8 x 28 x 28     224  trainable
...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lamina.train.distributed import unwrap_model

if TYPE_CHECKING:
    from lamina.train.learner import Learner

__all__ = ["LayerSummary", "LearnerSummary", "summarize"]

_NOT_CALLED = "-"


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its name in the model, class, output shape on the batch, parameters, and whether they
    train (`trainable`, `frozen`, `partly frozen`, or "" for a layer without parameters)."""

    name: str
    type: str
    output_shape: str
    params: int
    trainable: str


@dataclass(frozen=True)
class LearnerSummary:
    """What `learn.summary()` found; `str()` is the table it prints."""

    model: str
    input_shapes: tuple[str, ...]
    layers: tuple[LayerSummary, ...]
    total_params: int
    trainable_params: int
    optimizer: str
    loss: str
    callbacks: tuple[str, ...]

    @property
    def frozen_params(self) -> int:
        return self.total_params - self.trainable_params

    def __str__(self) -> str:
        head = ("layer", "type", "output shape", "params", "trainable")
        rows = [(r.name, r.type, r.output_shape, f"{r.params:,}", r.trainable) for r in self.layers]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]

        def line(cells: tuple[str, ...]) -> str:
            pairs = enumerate(zip(cells, widths, strict=True))
            parts = [c.rjust(w) if k in (2, 3) else c.ljust(w) for k, (c, w) in pairs]  # numbers right
            return "  ".join(parts).rstrip()

        rule = "-" * len(line(head))
        out = [f"{self.model} (input {', '.join(self.input_shapes)})", rule, line(head), rule]
        out += [line(r) for r in rows]
        out += [
            rule,
            f"total parameters: {self.total_params:,}",
            f"trainable: {self.trainable_params:,}   frozen: {self.frozen_params:,}",
            f"optimizer: {self.optimizer}",
            f"loss: {self.loss}",
            f"callbacks: {', '.join(self.callbacks) or 'none'}",
        ]
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"LearnerSummary({self.model}, {len(self.layers)} layers, {self.total_params:,} parameters)"


def _shape(o: Any) -> str:
    if isinstance(o, Tensor):
        return " x ".join(str(d) for d in o.shape) or "scalar"
    if isinstance(o, tuple | list):
        return ", ".join(_shape(e) for e in o)
    if isinstance(o, dict):
        return ", ".join(f"{k}: {_shape(v)}" for k, v in o.items())
    return type(o).__name__


def _trainable(params: list[nn.Parameter]) -> str:
    if not params:
        return ""
    n = sum(p.requires_grad for p in params)
    return "trainable" if n == len(params) else "frozen" if n == 0 else "partly frozen"


def _name(f: Any) -> str:
    return str(getattr(f, "__name__", None) or type(f).__name__)


def _optimizer(learn: Learner) -> str:
    lr = f"lr {learn.lr:g}, weight decay {learn.wd:g}"
    if learn.opt is None:
        return f"{_name(learn.opt_func)} ({lr}; created at the first fit)"
    groups = learn.opt.param_groups
    lrs = sorted({float(g["lr"]) for g in groups})
    lr_text = f"lr {lrs[0]:g}" if len(lrs) == 1 else f"lr {lrs[0]:g} to {lrs[-1]:g}"
    return f"{type(learn.opt).__name__} ({lr_text}, {len(groups)} parameter groups)"


def summarize(learn: Learner, batch: tuple[Tensor, ...] | None = None) -> LearnerSummary:
    """Run one batch (the training loader's first, by default) through the model in eval mode, without
    gradients, and record each layer's output shape with forward hooks; the weights do not change."""
    model = unwrap_model(learn.model)
    b = batch if batch is not None else learn.dls.train.one_batch()
    xb = tuple(b[: learn.dls.n_inp])
    # leaves, and containers that hold parameters of their own (a class token, a learned scale)
    mods = [
        (name, m)
        for name, m in model.named_modules()
        if name and (not any(True for _ in m.children()) or any(True for _ in m.parameters(recurse=False)))
    ]
    outputs: dict[str, str] = {}

    def hook(name: str) -> Any:
        def record(_m: nn.Module, _inp: Any, out: Any) -> None:
            outputs.setdefault(name, _shape(out))

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in mods]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*xb)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    layers = tuple(
        LayerSummary(
            name=name,
            type=type(m).__name__,
            output_shape=outputs.get(name, _NOT_CALLED),
            params=sum(p.numel() for p in m.parameters(recurse=False)),
            trainable=_trainable(list(m.parameters(recurse=False))),
        )
        for name, m in mods
    )
    params = list(model.parameters())  # each shared parameter once
    return LearnerSummary(
        model=type(model).__name__,
        input_shapes=tuple(_shape(x) for x in xb),
        layers=layers,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        optimizer=_optimizer(learn),
        loss=_name(learn.loss_func),
        callbacks=tuple(type(cb).__name__ for cb in learn.cbs),
    )
