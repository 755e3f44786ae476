"""Parameter groups and discriminative learning rates over torch.optim optimizers.

A splitter cuts the model into ordered groups (body first, head last). Each group becomes two torch
parameter groups (with and without weight decay, so norm layers and biases can skip it); the key
`lamina_group` says which model group a torch group belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "LrLike",
    "OptFactory",
    "adamw",
    "default_splitter",
    "make_optimizer",
    "norm_and_bias_params",
    "spread_lr",
    "trainable_params",
]

LrLike = float | slice | Sequence[float]
OptFactory = Callable[..., torch.optim.Optimizer]
_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def adamw(
    params: Iterable[Any],
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.99),
    eps: float = 1e-5,
    weight_decay: float = 0.01,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """torch's AdamW with the defaults lamina trains with: beta2 0.99 and eps 1e-5 (torch: 0.999, 1e-8).

    With eps 1e-8 a weight whose gradients are nearly zero still moves by about `lr` each step; in short
    1cycle schedules that made BatchNorm networks drift from their running statistics (see the README).
    """
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One group holding every parameter."""
    return [list(model.parameters())]


def trainable_params(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def norm_and_bias_params(model: nn.Module) -> set[int]:
    """ids of the parameters of normalization layers and of every bias."""
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, _NORM_TYPES):
            ids.update(id(p) for p in m.parameters(recurse=False))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            ids.add(id(p))
    return ids


def spread_lr(lr: LrLike, n_groups: int) -> list[float]:
    """One learning rate per group: a float for all; `slice(hi)` gives hi to the last and hi/10 to the
    others; `slice(lo, hi)` spreads geometrically from lo (first group) to hi (last group)."""
    if isinstance(lr, slice):
        if lr.start is None:
            hi = float(lr.stop)
            return [hi / 10] * (n_groups - 1) + [hi]
        if n_groups == 1:
            return [float(lr.stop)]
        return [float(v) for v in np.geomspace(float(lr.start), float(lr.stop), n_groups)]
    if isinstance(lr, int | float):
        return [float(lr)] * n_groups
    lrs = [float(v) for v in lr]
    if len(lrs) != n_groups:
        raise ValueError(f"{len(lrs)} learning rates for {n_groups} parameter groups")
    return lrs


def make_optimizer(
    opt_func: OptFactory,
    groups: Sequence[Sequence[nn.Parameter]],
    no_decay: set[int],
    lrs: Sequence[float],
    wd: float,
    opt_kwargs: dict[str, Any] | None = None,
) -> torch.optim.Optimizer:
    """A torch optimizer over the groups; fused AdamW/Adam/SGD when every parameter is on CUDA."""
    param_groups: list[dict[str, Any]] = []
    for gi, (params, lr) in enumerate(zip(groups, lrs, strict=True)):
        decay = [p for p in params if id(p) not in no_decay]
        nodecay = [p for p in params if id(p) in no_decay]
        for ps, w in ((decay, wd), (nodecay, 0.0)):
            if ps:
                param_groups.append(
                    {"params": ps, "lr": lr, "weight_decay": w, "lamina_group": gi, "lamina_wd": w > 0}
                )
    kwargs = dict(opt_kwargs or {})
    all_params = [p for g in groups for p in g]
    if (
        opt_func in (adamw, torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)
        and all_params
        and all(p.is_cuda and p.is_floating_point() for p in all_params)
        and "foreach" not in kwargs
    ):
        kwargs.setdefault("fused", True)
    return opt_func(param_groups, lr=lrs[-1], **kwargs)
