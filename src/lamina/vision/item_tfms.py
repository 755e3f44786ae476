"""Item transforms for vision: bring every item to one size, in the DataLoader workers, on uint8 tensors.

Each transform here reduces to one *window*: a rectangle of the source image (which may reach outside it,
the outside being filled by `pad_mode`), resized to the output size with torchvision's kernels (bilinear
with antialias for images, nearest for masks). Points and boxes move by the same offset and scale, so they
stay on the pixels they mark. Coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j+1) x [i, i+1), so resizing by a factor s maps x to x * s (torchvision's `align_corners=False`).

>>> import torch
>>> from lamina.core import TensorImage, TensorPoint
>>> img = TensorImage(torch.zeros(3, 32, 40, dtype=torch.uint8))
>>> pts = TensorPoint(torch.tensor([[20.0, 16.0]]))
>>> out = Resize(16)((img, pts))
>>> tuple(out[0].shape), out[1].tolist()
((3, 16, 16), [[8.0, 8.0]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lamina.core import (
    DisplayedTransform,
    ItemTransform,
    TensorBBox,
    TensorImage,
    TensorMask,
    TensorPoint,
    TypeDispatch,
    register_transform,
    retain_type,
)
from lamina.vision._checks import MAX_SIZE, as_size, check_choice

__all__ = ["MAX_SIZE", "CropPad", "PadMode", "RandomResizedCrop", "Resize", "ResizeMethod"]

ResizeMethod = Literal["crop", "pad", "squish"]
PadMode = Literal["zeros", "border", "reflection"]

_TV_PAD_MODE = {"zeros": "constant", "border": "edge", "reflection": "reflect"}


# --------------------------------------------------------------------------------------------------------
# the window and its kernels, one per semantic type


@dataclass(frozen=True)
class _Window:
    """Take the source rectangle (top, left, height, width), pad what lies outside, resize to the output."""

    top: int
    left: int
    height: int
    width: int
    out_h: int
    out_w: int
    pad_mode: str = "zeros"


def _pad(t: torch.Tensor, pads: list[int], pad_mode: str) -> torch.Tensor:
    """Pad the last two dims of `t` by [left, top, right, bottom] pixels; reflection as wide as needed."""
    import torchvision.transforms.v2.functional as TF  # deferred: importing torchvision costs ~1.5 s

    squeeze = t.ndim == 2
    if squeeze:
        t = t.unsqueeze(0)  # (1, H, W): torchvision's kernels want a channel dim
    mode = _TV_PAD_MODE[pad_mode]
    if mode != "reflect":
        t = TF.pad_image(t, pads, fill=0, padding_mode=mode)
    else:
        # torch reflects at most (size - 1) pixels per call: reflect again until the padding is done
        while any(pads):
            h, w = t.shape[-2:]
            step = [min(pads[0], w - 1), min(pads[1], h - 1), min(pads[2], w - 1), min(pads[3], h - 1)]
            if not any(step):  # a side of one pixel cannot be reflected: repeat it
                t = TF.pad_image(t, pads, padding_mode="edge")
                break
            t = TF.pad_image(t, step, padding_mode="reflect")
            pads = [p - s for p, s in zip(pads, step, strict=True)]
    return t.squeeze(0) if squeeze else t


def _crop_pad(t: torch.Tensor, w: _Window) -> torch.Tensor:
    """The window's rectangle of `t` (..., H, W) -> (..., w.height, w.width), padded where it leaves `t`."""
    h_in, w_in = t.shape[-2:]
    top, left = max(w.top, 0), max(w.left, 0)
    bottom, right = min(w.top + w.height, h_in), min(w.left + w.width, w_in)
    t = t[..., top:bottom, left:right]
    pads = [left - w.left, top - w.top, w.left + w.width - right, w.top + w.height - bottom]
    return _pad(t, pads, w.pad_mode) if any(pads) else t


def _window_image(x: TensorImage, w: _Window) -> torch.Tensor:
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms.v2.functional import InterpolationMode

    # (C, h, w), a view: no copy before resizing. JPEGs decode to an (H, W, C) memory layout, which
    # torchvision's uint8 kernel resizes as is; making it contiguous first cost ~200 us per 500x375 image
    t = _crop_pad(x.as_subclass(torch.Tensor), w)
    if tuple(t.shape[-2:]) != (w.out_h, w.out_w):
        if t.dtype == torch.uint8 and w.out_h == w.out_w == 1:
            # torch's native uint8 antialias kernel fails on a 1x1 output (internal assert): go through float
            f = TF.resize_image(t.float(), [1, 1], interpolation=InterpolationMode.BILINEAR, antialias=True)
            return f.round_().clamp_(0, 255).to(torch.uint8)
        t = TF.resize_image(t, [w.out_h, w.out_w], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return t.contiguous()


def _window_mask(x: TensorMask, w: _Window) -> torch.Tensor:
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms.v2.functional import InterpolationMode

    t = _crop_pad(x.as_subclass(torch.Tensor), w)  # (h, w)
    if tuple(t.shape[-2:]) != (w.out_h, w.out_w):
        # NEAREST_EXACT samples at pixel centres, like the bilinear image kernel: the two stay aligned
        t = TF.resize_mask(t, [w.out_h, w.out_w], interpolation=InterpolationMode.NEAREST_EXACT)
    return t.contiguous()


def _scale_offset(w: _Window, like: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and offset of the window per coordinate, (x, y) repeated `n` times: new = (old - off) * scale."""
    sx, sy = w.out_w / w.width, w.out_h / w.height
    scale = torch.tensor([sx, sy] * n, dtype=like.dtype, device=like.device)
    off = torch.tensor([float(w.left), float(w.top)] * n, dtype=like.dtype, device=like.device)
    return scale, off


def _float(x: torch.Tensor) -> torch.Tensor:
    t = x.as_subclass(torch.Tensor)
    return t if t.is_floating_point() else t.float()


def _window_points(x: TensorPoint, w: _Window) -> torch.Tensor:
    p = _float(x)  # (N, 2) of (x, y)
    scale, off = _scale_offset(w, p, 1)
    return (p - off) * scale


def _window_bbox(x: TensorBBox, w: _Window) -> torch.Tensor:
    b = _float(x)  # (N, 4) of (x1, y1, x2, y2)
    scale, off = _scale_offset(w, b, 2)
    b = (b - off) * scale
    hi = torch.tensor([w.out_w, w.out_h] * 2, dtype=b.dtype, device=b.device)
    return torch.minimum(b.clamp_min(0), hi)


_WINDOW_KERNELS = TypeDispatch([_window_image, _window_mask, _window_points, _window_bbox])


def _image_hw(items: tuple[Any, ...]) -> tuple[int, int] | None:
    """(H, W) of the first image, or else the first mask, of the item."""
    for cls in (TensorImage, TensorMask):
        for e in items:
            if isinstance(e, cls):
                h, w = e.shape[-2:]
                return int(h), int(w)
    return None


def _randint(high: int) -> int:
    """A random int in [0, high], from torch's global generator (so `torch.manual_seed` reproduces it)."""
    return int(torch.randint(0, high + 1, ()).item()) if high > 0 else 0


def _center(outer: int, inner: int) -> int:
    """Offset that centres `inner` in `outer` (negative when `inner` is larger: that part is padding)."""
    return (outer - inner) // 2


class _WindowTransform(ItemTransform, DisplayedTransform):
    """Base of the item transforms that reduce to a `_Window` computed once per item from its image size.

    The window depends on the split: `__call__` receives `split_idx` from the Pipeline and passes
    `train = split_idx == 0` to `_window`, so random choices happen only when the training pipeline asks
    (a call without a split, e.g. at inference, is deterministic).
    """

    order = 1

    def _window(self, height: int, width: int, train: bool) -> _Window:
        raise NotImplementedError

    def __call__(self, x: Any, split_idx: int | None = None) -> Any:
        if split_idx is not None and self.split_idx is not None and split_idx != self.split_idx:
            return x
        items = x if isinstance(x, tuple) else (x,)
        hw = _image_hw(items)
        if hw is None:  # nothing tells the size: nothing to do
            return x
        w = self._window(*hw, train=split_idx == 0)
        out = tuple(self._apply_window(e, w) for e in items)
        return out if isinstance(x, tuple) else out[0]

    @staticmethod
    def _apply_window(e: Any, w: _Window) -> Any:
        f = _WINDOW_KERNELS.lookup(type(e))
        return e if f is None else retain_type(f(e, w), e)


@register_transform("vision.Resize")
class Resize(_WindowTransform):
    """Resize items to `size` (an int, or (height, width)), with their masks, points and boxes.

    - `method="crop"`: scale so the image covers `size`, then crop: centred on validation (and when no
      split is given), at a random position on the training set.
    - `method="pad"`: scale so the image fits inside `size`, then pad the rest with `pad_mode`.
    - `method="squish"`: scale each side to `size`, ignoring the aspect ratio.

    Images are resampled bilinearly with antialiasing, masks by nearest neighbour; boxes are clipped to
    the image (a box cropped away becomes empty rather than removed, so labels stay aligned).

    >>> import torch
    >>> from lamina.core import TensorImage
    >>> Resize((16, 24), method="pad")(TensorImage(torch.zeros(3, 32, 32, dtype=torch.uint8))).shape
    torch.Size([3, 16, 24])
    """

    def __init__(
        self, size: int | Sequence[int], method: ResizeMethod = "crop", pad_mode: PadMode = "reflection"
    ) -> None:
        super().__init__()
        self.size = as_size(size, "Resize")
        self.method: ResizeMethod = check_choice(method, ResizeMethod, "method", "Resize")  # type: ignore[assignment]
        self.pad_mode: PadMode = check_choice(pad_mode, PadMode, "pad_mode", "Resize")  # type: ignore[assignment]

    def _window(self, height: int, width: int, train: bool) -> _Window:
        out_h, out_w = self.size
        if self.method == "squish":
            return _Window(0, 0, height, width, out_h, out_w, self.pad_mode)
        if self.method == "crop":
            s = min(height / out_h, width / out_w)  # source pixels per output pixel
            h = max(1, min(height, round(out_h * s)))
            w = max(1, min(width, round(out_w * s)))
            if train:
                top, left = _randint(height - h), _randint(width - w)
            else:
                top, left = _center(height, h), _center(width, w)
            return _Window(top, left, h, w, out_h, out_w, self.pad_mode)
        s = max(height / out_h, width / out_w)
        h, w = max(height, round(out_h * s)), max(width, round(out_w * s))
        return _Window(_center(height, h), _center(width, w), h, w, out_h, out_w, self.pad_mode)

    def to_config(self) -> dict[str, Any]:
        return {"size": list(self.size), "method": self.method, "pad_mode": self.pad_mode}


@register_transform("vision.RandomResizedCrop")
class RandomResizedCrop(_WindowTransform):
    """On the training set, crop a random area and aspect ratio, then resize to `size`; on validation,
    resize (keeping the aspect) to cover `size` enlarged by `val_xtra` and take the centre `size`.

    The training crop covers a fraction in [`min_scale`, 1] of the image's area with an aspect ratio
    (width / height) drawn log-uniformly in `ratio`; after 10 failed draws it falls back to the largest
    centred crop allowed by `ratio`. On validation the enlargement is `val_xtra * max(size)`, rounded up to
    a multiple of 8 (the usual "resize 256, crop 224" for `size=224`). One resampling either way.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        min_scale: float = 0.08,
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        val_xtra: float = 0.14,
    ) -> None:
        super().__init__()
        self.size = as_size(size, "RandomResizedCrop")
        if not isinstance(min_scale, (int, float)) or not 0 < min_scale <= 1:
            raise ValueError(
                f"RandomResizedCrop: min_scale must be in (0, 1], got {min_scale!r}.\n"
                "help: it is the smallest fraction of the image's area to keep, e.g. 0.08 or 0.35"
            )
        if (
            not isinstance(ratio, Sequence)
            or len(ratio) != 2
            or not all(isinstance(r, (int, float)) and math.isfinite(r) for r in ratio)
            or not 0 < ratio[0] <= ratio[1]
        ):
            raise ValueError(
                f"RandomResizedCrop: ratio must be (low, high) with 0 < low <= high, got {ratio!r}.\n"
                "help: pass the range of width / height, e.g. (3/4, 4/3)"
            )
        if not isinstance(val_xtra, (int, float)) or not 0 <= val_xtra <= 10:
            raise ValueError(
                f"RandomResizedCrop: val_xtra must be in [0, 10], got {val_xtra!r}.\nhelp: e.g. 0.14"
            )
        self.min_scale = float(min_scale)
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.val_xtra = float(val_xtra)

    def _window(self, height: int, width: int, train: bool) -> _Window:
        out_h, out_w = self.size
        if not train:
            xtra = math.ceil(max(out_h, out_w) * self.val_xtra / 8) * 8
            s = min(height / (out_h + xtra), width / (out_w + xtra))  # source pixels per output pixel
            h = max(1, min(height, round(out_h * s)))
            w = max(1, min(width, round(out_w * s)))
            return _Window(_center(height, h), _center(width, w), h, w, out_h, out_w)
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u = torch.rand(2).tolist()
            target = (self.min_scale + (1 - self.min_scale) * u[0]) * area
            r = math.exp(log_lo + (log_hi - log_lo) * u[1])
            w, h = round(math.sqrt(target * r)), round(math.sqrt(target / r))
            if 0 < w <= width and 0 < h <= height:
                return _Window(_randint(height - h), _randint(width - w), h, w, out_h, out_w)
        if width / height < self.ratio[0]:
            w, h = width, max(1, int(width / self.ratio[0]))
        elif width / height > self.ratio[1]:
            w, h = max(1, int(height * self.ratio[1])), height
        else:
            w, h = width, height
        return _Window(_center(height, h), _center(width, w), h, w, out_h, out_w)

    def to_config(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "min_scale": self.min_scale,
            "ratio": list(self.ratio),
            "val_xtra": self.val_xtra,
        }


@register_transform("vision.CropPad")
class CropPad(_WindowTransform):
    """Centre-crop or pad (with `pad_mode`) items to `size`, without resampling."""

    def __init__(self, size: int | Sequence[int], pad_mode: PadMode = "zeros") -> None:
        super().__init__()
        self.size = as_size(size, "CropPad")
        self.pad_mode: PadMode = check_choice(pad_mode, PadMode, "pad_mode", "CropPad")  # type: ignore[assignment]

    def _window(self, height: int, width: int, train: bool) -> _Window:
        out_h, out_w = self.size
        top, left = _center(height, out_h), _center(width, out_w)
        return _Window(top, left, out_h, out_w, out_h, out_w, self.pad_mode)

    def to_config(self) -> dict[str, Any]:
        return {"size": list(self.size), "pad_mode": self.pad_mode}
