"""U-Net for segmentation: a timm `features_only` encoder and a pixel-shuffle decoder, for any input size.

The decoder climbs the encoder's feature maps from the deepest: each step upsamples by pixel shuffle (a 1x1
conv to 4x the channels, ICNR-initialised so it starts as nearest-neighbour upsampling, without checkerboard
artifacts), resizes to the skip feature's exact size (odd sizes like 45x61 round differently on the way
down), concatenates the skip and convolves. The output has the input's exact height and width.

>>> learn = unet_learner(dls, "resnet34")      # n_out and the loss from the MaskBlock  # doctest: +SKIP
>>> learn.fine_tune(3)                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lamina.core import register_model
from lamina.data import DataLoaders
from lamina.train import Callback, Learner
from lamina.train.callbacks import with_precise_bn
from lamina.train.optim import OptFactory, adamw
from lamina.vision.augment import imagenet_stats
from lamina.vision.learner import add_normalize, input_channels
from lamina.vision.models import check_arch_name, create_body, load_pretrained_body

__all__ = [
    "DynamicUnet",
    "PixelShuffleUp",
    "UnetBlock",
    "UnetDecoder",
    "create_unet_model",
    "icnr_",
    "unet_learner",
    "unet_splitter",
]


def _conv(ni: int, nf: int, ks: int = 3) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, keeping the spatial size."""
    return nn.Sequential(nn.Conv2d(ni, nf, ks, padding=ks // 2, bias=False), nn.BatchNorm2d(nf), nn.ReLU())


def icnr_(weight: Tensor, scale: int = 2) -> Tensor:
    """ICNR init of a conv feeding `nn.PixelShuffle(scale)`: the `scale**2` outputs of each channel start
    equal, so the shuffle starts as nearest-neighbour upsampling (no checkerboard artifacts)."""
    nf, ni, kh, kw = weight.shape
    if nf % (scale * scale):
        raise ValueError(
            f"icnr_: {nf} output channels is not a multiple of scale**2 = {scale * scale}.\n"
            "help: the conv before PixelShuffle(scale) needs out_channels = channels * scale**2"
        )
    sub = torch.empty(nf // (scale * scale), ni, kh, kw)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
    return weight


class PixelShuffleUp(nn.Module):
    """Upsample by `scale`: 1x1 conv to `nf * scale**2` channels (ICNR), ReLU, `nn.PixelShuffle(scale)`."""

    def __init__(self, ni: int, nf: int, scale: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ni, nf * scale * scale, 1)
        icnr_(self.conv.weight, scale)
        if self.conv.bias is not None:  # equal sub-pixel outputs need equal biases too
            nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(F.relu(self.conv(x)))  # (B, ni, h, w) -> (B, nf, h * s, w * s)


def _resize_to(x: Tensor, hw: Sequence[int]) -> Tensor:
    """`x` (B, C, h, w) resized to exactly `hw` (bilinear) when it differs."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=(int(hw[0]), int(hw[1])), mode="bilinear", align_corners=False)


class UnetBlock(nn.Module):
    """One decoder step: upsample `up_c` channels by pixel shuffle to the skip's size, concatenate the
    (batch-normalised) skip features, two 3x3 convs to `out_c`."""

    def __init__(self, up_c: int, skip_c: int, out_c: int, scale: int = 2) -> None:
        super().__init__()
        self.up = PixelShuffleUp(up_c, up_c // 2, scale)
        self.bn = nn.BatchNorm2d(skip_c)
        self.conv1 = _conv(up_c // 2 + skip_c, out_c)
        self.conv2 = _conv(out_c, out_c)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = _resize_to(self.up(x), skip.shape[-2:])  # (B, up_c // 2, H_skip, W_skip)
        h = F.relu(torch.cat([up, self.bn(skip)], dim=1))
        return self.conv2(self.conv1(h))


class UnetDecoder(nn.Module):
    """Everything but the encoder: middle convs, one `UnetBlock` per skip, upsampling to full resolution
    and the 1x1 classifier. `channels`/`reductions` describe the encoder's feature maps, shallow first."""

    def __init__(
        self, channels: Sequence[int], reductions: Sequence[int], n_out: int, n_in: int, last_cross: bool
    ) -> None:
        super().__init__()
        c = int(channels[-1])
        self.middle = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), _conv(c, 2 * c), _conv(2 * c, c))
        blocks = []
        for i in reversed(range(len(channels) - 1)):
            scale = max(1, round(reductions[i + 1] / reductions[i]))
            out_c = c // 2 + int(channels[i])
            blocks.append(UnetBlock(c, int(channels[i]), out_c, scale))
            c = out_c
        self.blocks = nn.ModuleList(blocks)
        ups: list[nn.Module] = []
        r = int(reductions[0])
        while r >= 2:  # to full resolution by steps of 2 (a 16x shuffle would need 256x the channels)
            ups.append(PixelShuffleUp(c, c, 2))
            r //= 2
        self.final_up = nn.Sequential(*ups)
        self.last_cross = last_cross
        self.head = nn.Sequential(_conv(c + n_in if last_cross else c, c), nn.Conv2d(c, n_out, 1))

    def forward(self, feats: Sequence[Tensor], x: Tensor) -> Tensor:
        h = self.middle(feats[-1])
        for block, skip in zip(self.blocks, reversed(feats[:-1]), strict=True):
            h = block(h, skip)
        h = _resize_to(self.final_up(h), x.shape[-2:])  # (B, c, H, W): the input's exact size
        if self.last_cross:
            h = torch.cat([h, x], dim=1)
        return self.head(h)  # (B, n_out, H, W)


class DynamicUnet(nn.Module):
    """`encoder` (a timm `features_only` model) + `decoder`: (B, n_in, H, W) -> (B, n_out, H, W)."""

    def __init__(self, encoder: nn.Module, n_out: int, n_in: int = 3, last_cross: bool = True) -> None:
        super().__init__()
        info = getattr(encoder, "feature_info", None)
        if info is None:
            raise TypeError(
                f"DynamicUnet: the encoder {type(encoder).__name__} has no feature_info.\n"
                "help: pass a timm model created with features_only=True"
            )
        self.encoder = encoder
        fmt = getattr(encoder, "output_fmt", "NCHW")
        self.channels_last = str(getattr(fmt, "value", fmt)) == "NHWC"
        self.decoder = UnetDecoder(info.channels(), info.reduction(), n_out, n_in, last_cross)

    def forward(self, x: Tensor) -> Tensor:
        feats = list(self.encoder(x))
        if self.channels_last:  # e.g. swin: (B, H, W, C) -> (B, C, H, W)
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return self.decoder(feats, x)


def _check_unet_recipe(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """A `create_unet_model` recipe against the weights' shapes, before anything is built."""
    check_arch_name(kwargs.get("arch"))
    for key, default in (("n_out", None), ("n_in", 3)):
        v = kwargs.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{key}={v!r} is not a positive integer")
    if not isinstance(kwargs.get("last_cross", True), bool):
        raise ValueError(f"last_cross={kwargs.get('last_cross')!r} is not a boolean")
    head = shapes.get("decoder.head.1.weight")
    if head is None or head[0] != kwargs["n_out"]:
        raise ValueError(f"n_out={kwargs['n_out']} but the decoder's last layer in the weights is {head}")
    n_in = kwargs.get("n_in", 3)
    if not any(k.startswith("encoder.") and len(s) == 4 and s[1] == n_in for k, s in shapes.items()):
        raise ValueError(f"n_in={n_in} but no convolution of the encoder takes {n_in} channels")


@register_model("vision.unet", check=_check_unet_recipe)
def create_unet_model(arch: str, n_out: int, n_in: int = 3, last_cross: bool = True) -> DynamicUnet:
    """A U-Net on the timm architecture `arch` (randomly initialised; `unet_learner` loads weights)."""
    import timm

    try:
        encoder = timm.create_model(arch, features_only=True, pretrained=False, in_chans=n_in)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        raise ValueError(
            f"unet_learner: unknown architecture {arch!r}; similar timm models: {close}.\n"
            "help: pass a name from timm.list_models() whose model supports features_only=True"
        ) from e
    return DynamicUnet(encoder, n_out, n_in=n_in, last_cross=last_cross)


def unet_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two groups, encoder then decoder, for `freeze()` and `lr=slice(lo, hi)`."""
    return [list(model.encoder.parameters()), list(model.decoder.parameters())]  # type: ignore[union-attr]


def _flat_key(k: str) -> str:
    # timm's feature wrappers rename modules: FeatureListNet flattens 'stages.0' to 'stages_0',
    # FeatureGetterNet holds the model under 'model.'
    return k.removeprefix("model.").replace(".", "_")


def _load_encoder(model: DynamicUnet, pretrained: bool | str, arch: str, n_in: int) -> None:
    """Fill the encoder with pretrained weights: timm's own (True), or a local file read (and checked) by
    `load_pretrained_body` into the full timm body, then copied over under the feature wrapper's names."""
    if pretrained is True:
        import timm

        ref = timm.create_model(arch, features_only=True, pretrained=True, in_chans=n_in)
        model.encoder.load_state_dict(ref.state_dict())
        return
    body = create_body(arch, n_in=n_in)
    load_pretrained_body(body, pretrained, arch)
    src = {_flat_key(k): v for k, v in body.state_dict().items()}
    own = model.encoder.state_dict()
    missing = [k for k in own if _flat_key(k) not in src or src[_flat_key(k)].shape != own[k].shape]
    if missing:
        raise ValueError(
            f"unet_learner: the weights in {str(pretrained)!r} fit the {arch!r} body, but {len(missing)} "
            f"tensors of its features_only encoder have no match by name, e.g. {missing[:3]}.\n"
            "help: this architecture's feature wrapper renames its layers; use pretrained=True (timm's "
            "download) or pretrained=False"
        )
    model.encoder.load_state_dict({k: src[_flat_key(k)] for k in own})


def _pretrained_stats(encoder: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    return (tuple(mean), tuple(std)) if mean and std else imagenet_stats


def unet_learner(
    dls: DataLoaders,
    arch: str,
    pretrained: bool | str | Path = True,
    n_out: int | None = None,
    loss_func: Callable[..., Tensor] | None = None,
    normalize: bool = True,
    metrics: Any = (),
    cbs: Callback | Sequence[Callback] = (),
    lr: float = 1e-3,
    wd: float = 0.01,
    opt_func: OptFactory = adamw,
    last_cross: bool = True,
    path: str | Path = ".",
) -> Learner:
    """A Learner for segmentation: a U-Net on a timm encoder, sized and normalized from the data.

    `pretrained`: True downloads timm's weights; a path loads a local safetensors/timm checkpoint of the
    full `arch` model; False starts from scratch. A pretrained encoder starts frozen (call `fine_tune`) and
    the images are normalized with the weights' statistics (timm's `pretrained_cfg`; none when training
    from scratch, where BatchNorm takes the scale). `n_out` (the classes: `codes` of the MaskBlock) and
    the loss (per-pixel cross entropy) come from the data. `last_cross` feeds the input image to the last
    conv, for fine edges.

    >>> dls = SegmentationDataLoaders.from_label_func(path, fnames, label_func, codes)  # doctest: +SKIP
    >>> learn = unet_learner(dls, "resnet34")                                           # doctest: +SKIP
    """
    if not isinstance(arch, str):
        raise TypeError(
            f"unet_learner: arch must be a timm architecture name, got {type(arch).__name__}.\n"
            "help: pass e.g. 'resnet34' (the encoder is timm.create_model(arch, features_only=True))"
        )
    n_out = n_out if n_out is not None else dls.c
    if n_out is None:
        raise ValueError(
            "unet_learner: cannot read the number of classes from the data.\n"
            "help: build the data with a MaskBlock(codes=...) target, or pass n_out=..."
        )
    n_in = input_channels(dls)
    model = create_unet_model(arch, n_out, n_in=n_in, last_cross=last_cross)
    if pretrained is not False:
        _load_encoder(model, pretrained if isinstance(pretrained, bool) else str(pretrained), arch, n_in)
        if normalize:  # match the statistics the weights were trained with; from scratch there are none
            add_normalize(dls, _pretrained_stats(model.encoder), n_in)
    learn = Learner(
        dls,
        model,
        loss_func=loss_func,
        opt_func=opt_func,
        lr=lr,
        wd=wd,
        metrics=metrics,
        cbs=with_precise_bn(model, cbs),
        splitter=unet_splitter,
        path=path,
    )
    if pretrained is not False:
        learn.freeze()
    return learn
