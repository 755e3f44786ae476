"""vision_learner: a timm body with lamina's head, sized and normalized from the data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks import with_precise_bn
from lamina.train.optim import OptFactory, adamw
from lamina.vision.augment import Normalize, imagenet_stats
from lamina.vision.models import (
    create_head,
    create_vision_model,
    load_pretrained_body,
    num_features,
    vision_splitter,
)

__all__ = ["add_normalize", "input_channels", "vision_learner"]


def input_channels(dls: DataLoaders) -> int:
    """Channels of the input images, read from one item of the training set."""
    x = dls.train.item_tfms(dls.train.dataset[0])[0] if len(dls.train.dataset) else None
    return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.ndim == 3 else 3


def add_normalize(dls: DataLoaders, stats: tuple[Sequence[float], Sequence[float]], n_in: int) -> None:
    """Append `Normalize(stats)` to both loaders' batch transforms, unless they normalize already."""
    for dl in (dls.train, dls.valid):
        if any(isinstance(t, Normalize) for t in dl.batch_tfms):
            continue
        mean, std = stats
        if n_in != len(mean):  # e.g. one-channel images and 3-channel stats: average them
            mean, std = [sum(mean) / len(mean)] * n_in, [sum(std) / len(std)] * n_in
        dl.add_batch_tfms([Normalize.from_stats(tuple(mean), tuple(std))])


def _split_stats(got: Sequence[float]) -> tuple[Sequence[float], Sequence[float]]:
    half = len(got) // 2
    return tuple(got[:half]), tuple(got[half:])


def _timm_stats(arch: str) -> tuple[Sequence[float], Sequence[float]]:
    """The mean and std timm lists for `arch`'s pretrained weights (ImageNet's when it lists none)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    mean, std = getattr(cfg, "mean", None), getattr(cfg, "std", None)
    return (tuple(mean), tuple(std)) if mean and std else imagenet_stats


def vision_learner(
    dls: DataLoaders,
    arch: str | nn.Module | Callable[..., nn.Module],
    pretrained: bool | str | Path = True,
    n_out: int | None = None,
    loss_func: Callable[..., torch.Tensor] | None = None,
    normalize: bool = True,
    metrics: Any = (),
    cbs: Callback | Sequence[Callback] = (),
    lr: float = 1e-3,
    wd: float = 0.01,
    opt_func: OptFactory = adamw,
    lin_ftrs: int | None = 512,
    ps: float = 0.5,
    concat_pool: bool = True,
    path: str | Path = ".",
) -> Learner:
    """A Learner for image classification/regression from a timm architecture.

    `arch`: a timm name ("resnet34", "convnext_tiny"), an nn.Module body, or a callable returning one.
    `pretrained`: True downloads timm's weights; a path loads a local safetensors/timm checkpoint; False
    starts from scratch. Pretrained bodies start frozen (call `fine_tune`) and, with `normalize`, the
    images are normalized with the weights' statistics; from scratch they are left as they are (as fastai
    does). `n_out` and the loss come from the data.

    >>> learn = vision_learner(dls, "resnet18", pretrained=False, metrics=accuracy)  # doctest: +SKIP
    """
    n_out = n_out if n_out is not None else dls.c
    if n_out is None:
        raise ValueError("vision_learner: cannot read the number of outputs from the data; pass n_out=...")
    n_in = input_channels(dls)
    stats: tuple[Sequence[float], Sequence[float]] = imagenet_stats
    if isinstance(arch, str):
        model = create_vision_model(arch, n_out, n_in=n_in, lin_ftrs=lin_ftrs, ps=ps, concat_pool=concat_pool)
        got = load_pretrained_body(
            model[0], str(pretrained) if isinstance(pretrained, Path) else pretrained, arch, n_in
        )
        stats = _split_stats(got) if got else _timm_stats(arch)
    else:
        body = arch if isinstance(arch, nn.Module) else arch()
        reset = getattr(body, "reset_classifier", None)
        if callable(reset):  # a timm model: drop its classifier and pooling
            reset(0, "")
        model = _custom(body, n_out, n_in, lin_ftrs, ps, concat_pool)
    if normalize and pretrained is not False:
        # the weights expect the statistics they were trained with; from scratch, BatchNorm takes the scale
        # (ImageNet statistics on other data, e.g. digits, made the running statistics unreliable)
        add_normalize(dls, stats, n_in)
    learn = Learner(
        dls,
        model,
        loss_func=loss_func,
        opt_func=opt_func,
        lr=lr,
        wd=wd,
        metrics=metrics,
        cbs=with_precise_bn(model, cbs),
        splitter=vision_splitter,
        path=path,
    )
    if pretrained is not False:
        learn.freeze()
    return learn


def _custom(
    body: nn.Module, n_out: int, n_in: int, lin_ftrs: int | None, ps: float, concat_pool: bool
) -> nn.Sequential:
    return nn.Sequential(body, create_head(num_features(body, n_in), n_out, lin_ftrs, ps, concat_pool))
