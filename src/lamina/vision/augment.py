"""Batch augmentation on the device: geometric (one resampling per batch), lighting, and Normalize.

Every geometric augmentation (`Flip`, `Dihedral`, `Rotate`, `Zoom`, `Warp`) only contributes a (B, 3, 3)
*sampling matrix*: a homography from output to input coordinates, in grid_sample's normalised coordinates
(-1 and 1 are the outer edges of the image, `align_corners=False`). `GeometricAugment` multiplies its
components' matrices into one per sample and resamples the batch with **one** `grid_sample` call per
tensor (images bilinear, masks nearest, through the same grid). Points and boxes live in the input's
pixels, so they move by the *inverse* homography: the output pixel q shows the input at M q, so an
object at r appears at M^-1 r.

The lighting augmentations (`Brightness`, `Contrast`, `Saturation`) act in logit space on float images in
[0, 1]; `LightingAugment` applies them in one pass. `aug_transforms()` builds both from a few numbers:

>>> import torch
>>> from lamina.core import Pipeline, TensorImage
>>> tfms = aug_transforms(size=24)
>>> [type(t).__name__ for t in tfms]
['GeometricAugment', 'LightingAugment']
>>> xb = TensorImage(torch.rand(4, 3, 32, 40))
>>> Pipeline(tfms, split_idx=0)((xb,))[0].shape
torch.Size([4, 3, 24, 24])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from lamina.core import (
    DisplayedTransform,
    ItemTransform,
    NotExportableError,
    TensorBBox,
    TensorImage,
    TensorMask,
    TensorPoint,
    Transform,
    TypeDispatch,
    lookup_transform,
    register_transform,
    registered_name,
    retain_type,
    writable_in_place,
)
from lamina.vision._checks import check_choice

__all__ = [
    "Brightness",
    "Contrast",
    "Dihedral",
    "Flip",
    "GeometricAugment",
    "GeometricTfm",
    "LightingAugment",
    "LightingTfm",
    "Normalize",
    "Rotate",
    "SampleMode",
    "SamplePadMode",
    "Saturation",
    "Warp",
    "Zoom",
    "aug_transforms",
    "imagenet_stats",
]

imagenet_stats: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)

SampleMode = Literal["bilinear", "nearest", "bicubic"]
SamplePadMode = Literal["zeros", "border", "reflection"]


# --------------------------------------------------------------------------------------------------------
# helpers


def _check_p(p: float, who: str) -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"{who}: p must be a probability in [0, 1], got {p!r}.\nhelp: e.g. p=0.5")
    return float(p)


def _as_size(size: int | Sequence[int] | None, who: str) -> tuple[int, int] | None:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in hw):
        raise ValueError(
            f"{who}: size must be None, a positive int or a (height, width) pair, got {size!r}.\n"
            "help: e.g. size=224 or size=(224, 320)"
        )
    return hw[0], hw[1]


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """(n,) floats uniform in [low, high), from torch's global generator of `device`."""
    return low + (high - low) * torch.rand(n, device=device)


def _eye(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3)


def _first_of(items: tuple[Any, ...], *classes: type) -> torch.Tensor | None:
    for cls in classes:
        for e in items:
            if isinstance(e, cls) and isinstance(e, torch.Tensor):
                return e
    return None


def _to_config_entry(t: Transform, who: str) -> dict[str, Any]:
    name = registered_name(t)
    if name is None or not hasattr(t, "to_config"):
        raise NotExportableError(
            f"{who}: component {t!r} has no registered recipe.\n"
            f"help: decorate {type(t).__name__} with @register_transform('...') and give it to_config()"
        )
    return {"name": name, "config": t.to_config()}


def _from_config_entry(entry: Mapping[str, Any]) -> Any:
    cls = lookup_transform(entry["name"])
    from_config = getattr(cls, "from_config", None)
    return from_config(entry["config"]) if from_config is not None else cls(**entry["config"])


# --------------------------------------------------------------------------------------------------------
# geometric augmentation


class GeometricTfm(ItemTransform, DisplayedTransform):
    """Base of a geometric augmentation: implement `matrix`; `GeometricAugment` composes several.

    `matrix(n, height, width, device)` returns (n, 3, 3) sampling matrices (output -> input, normalised
    coordinates) drawn at random; `sample` applies each with probability `p` (identity otherwise). Used
    alone in a pipeline, a component resamples the batch by itself (one `grid_sample` of its own): prefer
    `GeometricAugment([...])` or `aug_transforms()` to chain several with one interpolation.
    """

    split_idx = 0
    order = 30

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_p(p, type(self).__name__)

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}: a GeometricTfm must implement matrix()")

    def sample(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(n, 3, 3) matrices: this transform's with probability `p`, the identity otherwise."""
        do = torch.rand(n, device=device) < self.p
        m = self.matrix(n, height, width, device)
        return torch.where(do[:, None, None], m, _eye(n, device))

    def __call__(self, x: Any, split_idx: int | None = None) -> Any:
        return GeometricAugment([self])(x, split_idx=split_idx)

    def to_config(self) -> dict[str, Any]:
        return {"p": self.p}


@register_transform("vision.Flip")
class Flip(GeometricTfm):
    """Flip left-right with probability `p`. Alone it is an exact index flip, so it runs on the uint8 batch
    before IntToFloatTensor (order 5): a quarter of the bytes to move."""

    order = 5

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        m = torch.eye(3, device=device)
        m[0, 0] = -1.0
        return m.expand(n, 3, 3)


@register_transform("vision.Dihedral")
class Dihedral(GeometricTfm):
    """With probability `p`, one of the 8 flips and quarter turns, drawn uniformly.

    Non-square images are stretched by the quarter turns (the output keeps the input's size).
    """

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        k = torch.randint(0, 8, (n,), device=device)  # k & 1 flips x, k & 2 flips y, k & 4 transposes
        sx, sy = 1.0 - 2.0 * (k & 1), 1.0 - 2.0 * ((k >> 1) & 1)
        t = ((k >> 2) & 1).float()
        m = torch.eye(3, device=device).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 0, 1] = sx * (1 - t), sy * t
        m[:, 1, 0], m[:, 1, 1] = sx * t, sy * (1 - t)
        return m


@register_transform("vision.Rotate")
class Rotate(GeometricTfm):
    """Rotate by an angle drawn uniformly in [-max_deg, max_deg] degrees, with probability `p`.

    The rotation is rigid in pixels (corrected for the aspect ratio of non-square images).
    """

    def __init__(self, max_deg: float = 10.0, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.max_deg = float(max_deg)

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        theta = _uniform(n, -self.max_deg, self.max_deg, device) * (math.pi / 180)
        c, s = theta.cos(), theta.sin()
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        # normalised coordinates stretch x by 2/width and y by 2/height: undo, rotate, redo
        a = width / height
        rows = [torch.stack([c, -s / a, zero], -1), torch.stack([s * a, c, zero], -1)]
        return torch.stack([*rows, torch.stack([zero, zero, one], -1)], 1)  # (n, 3, 3)

    def to_config(self) -> dict[str, Any]:
        return {"max_deg": self.max_deg, "p": self.p}


@register_transform("vision.Zoom")
class Zoom(GeometricTfm):
    """Zoom by a factor drawn uniformly in [min_zoom, max_zoom] about a random centre, with probability `p`.

    A factor above 1 zooms in (crops); below 1 zooms out (the border is filled by the pad mode).
    """

    def __init__(self, min_zoom: float = 1.0, max_zoom: float = 1.1, p: float = 0.5) -> None:
        super().__init__(p=p)
        if not 0 < min_zoom <= max_zoom:
            raise ValueError(
                f"Zoom: need 0 < min_zoom <= max_zoom, got min_zoom={min_zoom!r}, max_zoom={max_zoom!r}.\n"
                "help: e.g. Zoom(min_zoom=1.0, max_zoom=1.1)"
            )
        self.min_zoom, self.max_zoom = float(min_zoom), float(max_zoom)

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        inv = 1 / _uniform(n, self.min_zoom, self.max_zoom, device)  # (n,): size of the window seen
        cx, cy = torch.rand(n, device=device), torch.rand(n, device=device)  # where the window sits
        m = torch.diag_embed(torch.stack([inv, inv, torch.ones_like(inv)], -1))  # (n, 3, 3)
        m[:, 0, 2] = (1 - inv) * (2 * cx - 1)
        m[:, 1, 2] = (1 - inv) * (2 * cy - 1)
        return m

    def to_config(self) -> dict[str, Any]:
        return {"min_zoom": self.min_zoom, "max_zoom": self.max_zoom, "p": self.p}


def _corner_homography(targets: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) homographies sending the corners (-1,-1), (-1,1), (1,-1), (1,1) to `targets` (n, 4, 2).

    Closed form (Heckbert's square-to-quad) rather than a linear solve: plain elementwise ops, batched,
    with nothing for the device to report back to the host.
    """
    # quad corners in the order of the unit square's (0,0), (1,0), (1,1), (0,1)
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (targets[:, i].unbind(-1) for i in (0, 2, 3, 1))
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    den = dx1 * dy2 - dx2 * dy1
    g = (dx3 * dy2 - dx2 * dy3) / den
    h = (dx1 * dy3 - dx3 * dy1) / den
    one = torch.ones_like(g)
    sq = torch.stack(
        [
            torch.stack([x1 - x0 + g * x1, x3 - x0 + h * x3, x0], -1),
            torch.stack([y1 - y0 + g * y1, y3 - y0 + h * y3, y0], -1),
            torch.stack([g, h, one], -1),
        ],
        1,
    )  # (n, 3, 3): unit square -> quad
    to_unit = torch.eye(3, device=targets.device, dtype=targets.dtype)  # [-1, 1] -> [0, 1]
    to_unit[0, 0] = to_unit[1, 1] = to_unit[0, 2] = to_unit[1, 2] = 0.5
    return sq @ to_unit


@register_transform("vision.Warp")
class Warp(GeometricTfm):
    """A random perspective warp, with probability `p`.

    The corners move by up to `magnitude` (in units of half the image), as if the image turned about its
    vertical and horizontal axes.
    """

    def __init__(self, magnitude: float = 0.2, p: float = 0.5) -> None:
        super().__init__(p=p)
        if not 0 <= magnitude < 1:
            raise ValueError(
                f"Warp: magnitude must be in [0, 1), got {magnitude!r}.\nhelp: e.g. Warp(magnitude=0.2)"
            )
        self.magnitude = float(magnitude)

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        mx = _uniform(n, -self.magnitude, self.magnitude, device)
        my = _uniform(n, -self.magnitude, self.magnitude, device)
        # the four corners tilt as if the image turned about its vertical (mx) and horizontal (my) axes
        targets = torch.stack(
            [
                torch.stack([-1 - my, -1 - mx], -1),
                torch.stack([-1 + my, 1 + mx], -1),
                torch.stack([1 + my, -1 + mx], -1),
                torch.stack([1 - my, 1 - mx], -1),
            ],
            1,
        )  # (n, 4, 2)
        return _corner_homography(targets)

    def to_config(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude, "p": self.p}


@dataclass(frozen=True)
class _Sampling:
    """What every element of a batch needs to follow one geometric augmentation."""

    matrix: torch.Tensor  # (B, 3, 3) output -> input, normalised coordinates
    inverse: torch.Tensor  # (B, 3, 3) input -> output
    grid: torch.Tensor  # (B, H_out, W_out, 2) for grid_sample
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    mode: str
    pad_mode: str


def _adjugate(m: torch.Tensor) -> torch.Tensor:
    """Adjugate of (B, 3, 3) matrices: det(m) * inverse(m), with elementwise ops only (no linalg backend)."""
    a, b, c, d, e, f, g, h, i = m.flatten(1).unbind(1)
    rows = [
        torch.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
        torch.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
        torch.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1),
    ]
    return torch.stack(rows, 1)


def _homography_grid(m: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """The sampling grid (B, out_h, out_w, 2) of the homographies `m` (B, 3, 3), at output pixel centres."""
    device = m.device
    xs = (torch.arange(out_w, device=device, dtype=m.dtype) * 2 + 1) / out_w - 1
    ys = (torch.arange(out_h, device=device, dtype=m.dtype) * 2 + 1) / out_h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(1, out_h * out_w, 3)
    g = base @ m.transpose(1, 2)  # (B, H*W, 3)
    xy = g[..., :2] / g[..., 2:].clamp_min(1e-6)
    return xy.view(m.shape[0], out_h, out_w, 2)


def _map_points(p: torch.Tensor, s: _Sampling) -> torch.Tensor:
    """Input-pixel points (B, N, 2) -> output pixels, through the inverse homography."""
    h, w = s.in_hw
    oh, ow = s.out_hw
    px, py = p.unbind(-1)
    nh = torch.stack([px * (2 / w) - 1, py * (2 / h) - 1, torch.ones_like(px)], -1)  # input, normalised
    nh = nh @ s.inverse.to(p.dtype).transpose(1, 2)  # (B, N, 3): output, homogeneous
    z = nh[..., 2]
    return torch.stack([(nh[..., 0] / z + 1) * (ow / 2), (nh[..., 1] / z + 1) * (oh / 2)], -1)


def _batched(x: torch.Tensor, ndim: int, what: str) -> torch.Tensor:
    t = x.as_subclass(torch.Tensor)
    if t.ndim != ndim:
        raise ValueError(
            f"GeometricAugment: expected batched {what} with {ndim} dims, got shape {tuple(t.shape)}.\n"
            "help: geometric augmentation is a batch transform: pass it as batch_tfms, after collation"
        )
    return t


def _sample_image(x: TensorImage, s: _Sampling) -> torch.Tensor:
    img = _batched(x, 4, "images (B, C, H, W)")
    f = img if img.is_floating_point() else img.float()
    out = F.grid_sample(f, s.grid.to(f.dtype), mode=s.mode, padding_mode=s.pad_mode, align_corners=False)
    if img.is_floating_point():
        return out
    info = torch.iinfo(img.dtype)
    return out.round_().clamp_(info.min, info.max).to(img.dtype)


def _sample_mask(x: TensorMask, s: _Sampling) -> torch.Tensor:
    m = _batched(x, 3, "masks (B, H, W)")
    out = F.grid_sample(
        m.unsqueeze(1).float(), s.grid, mode="nearest", padding_mode=s.pad_mode, align_corners=False
    )
    return out.squeeze(1).round_().to(m.dtype)


def _sample_points(x: TensorPoint, s: _Sampling) -> torch.Tensor:
    p = _batched(x, 3, "points (B, N, 2)")
    return _map_points(p if p.is_floating_point() else p.float(), s)


def _sample_bbox(x: TensorBBox, s: _Sampling) -> torch.Tensor:
    b = _batched(x, 3, "boxes (B, N, 4)")
    b = b if b.is_floating_point() else b.float()
    x1, y1, x2, y2 = b.unbind(-1)
    corners = torch.stack([x1, y1, x2, y1, x1, y2, x2, y2], -1).view(b.shape[0], -1, 2)  # (B, N*4, 2)
    c = _map_points(corners, s).view(*b.shape[:2], 4, 2)
    lo, hi = c.amin(2), c.amax(2)  # (B, N, 2)
    oh, ow = s.out_hw
    return torch.stack(
        [lo[..., 0].clamp(0, ow), lo[..., 1].clamp(0, oh), hi[..., 0].clamp(0, ow), hi[..., 1].clamp(0, oh)],
        -1,
    )


_SAMPLE_KERNELS = TypeDispatch([_sample_image, _sample_mask, _sample_points, _sample_bbox])


@register_transform("vision.GeometricAugment")
class GeometricAugment(ItemTransform, DisplayedTransform):
    """Compose geometric augmentations into one homography per sample, and resample the batch once.

    On the training set (or when called without a split) each sample gets the product of its components'
    random matrices; on validation it is left alone, or only resized (squished) to `size` when one is
    given. Images are resampled with `mode`, masks by nearest neighbour through the same grid, points and
    boxes (in pixels) by the inverse homography; boxes become the bounding box of their moved corners,
    clipped to the image. `batch=True` draws one set of parameters for the whole batch. Works on uint8
    (converted to float for the resampling and back) or float images.

    >>> import torch
    >>> from lamina.core import TensorImage
    >>> aug = GeometricAugment([Flip(p=1.0), Rotate(max_deg=20, p=1.0)], size=(16, 20))
    >>> aug((TensorImage(torch.rand(2, 3, 32, 40)),), split_idx=0)[0].shape
    torch.Size([2, 3, 16, 20])
    """

    order = 30

    def __init__(
        self,
        tfms: Sequence[GeometricTfm] = (),
        size: int | Sequence[int] | None = None,
        mode: SampleMode = "bilinear",
        pad_mode: SamplePadMode = "reflection",
        batch: bool = False,
    ) -> None:
        super().__init__()
        for t in tfms:
            if not isinstance(t, GeometricTfm):
                raise TypeError(
                    f"GeometricAugment: expected GeometricTfm components, got {type(t).__name__}: {t!r}.\n"
                    "help: pass e.g. [Flip(), Rotate(), Zoom(), Warp()]; lighting goes to LightingAugment"
                )
        self.tfms = list(tfms)
        self.size = _as_size(size, "GeometricAugment")
        self.mode: SampleMode = check_choice(mode, SampleMode, "mode", "GeometricAugment")  # type: ignore[assignment]
        self.pad_mode: SamplePadMode = check_choice(pad_mode, SamplePadMode, "pad_mode", "GeometricAugment")  # type: ignore[assignment]
        self.batch = bool(batch)
        # an augmentation only (training set), unless it also resizes: then validation is resized too
        self.split_idx = 0 if self.size is None else None
        if self.size is None and self.tfms and all(type(t) is Flip for t in self.tfms):
            # flips only: an exact index flip, done on the uint8 batch before IntToFloatTensor (order 10)
            # moves a quarter of the bytes
            self.order = 5

    def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(n, 3, 3): the product of the components' random matrices (the first component applied first)."""
        k = 1 if self.batch else n
        m = _eye(k, device)
        for t in self.tfms:
            m = m @ t.sample(k, height, width, device)
        return m.expand(n, 3, 3)

    def __call__(self, x: Any, split_idx: int | None = None) -> Any:
        augment = split_idx is None or split_idx == 0
        if not augment and self.size is None:
            return x
        items = x if isinstance(x, tuple) else (x,)
        ref = _first_of(items, TensorImage, TensorMask)
        if ref is None:  # no image to take the size from
            return x
        b, (h, w), device = ref.shape[0], ref.shape[-2:], ref.device
        out_hw = self.size or (int(h), int(w))
        m = self.matrix(b, h, w, device) if augment else _eye(b, device)
        inverse = _adjugate(m)  # the inverse up to a factor, which the homogeneous divide cancels
        if augment and self.size is None and all(type(t) is Flip for t in self.tfms):
            # flips only: the resampling is an exact index flip, about 7x cheaper than a grid (same result)
            s = _Sampling(m, inverse, torch.empty(0), (int(h), int(w)), out_hw, self.mode, self.pad_mode)
            flipped = m[:, 0, 0] < 0  # (B,)
            out = tuple(self._apply_flip(e, flipped, s) for e in items)
            return out if isinstance(x, tuple) else out[0]
        grid = _homography_grid(m, *out_hw)
        s = _Sampling(m, inverse, grid, (int(h), int(w)), out_hw, self.mode, self.pad_mode)
        out = tuple(self._apply_sampling(e, s) for e in items)
        return out if isinstance(x, tuple) else out[0]

    @classmethod
    def _apply_flip(cls, e: Any, flipped: torch.Tensor, s: _Sampling) -> Any:
        if isinstance(e, TensorImage | TensorMask):
            t = e.as_subclass(torch.Tensor)
            if t.device.type == "cpu":
                # on the CPU one image at a time is ~7x faster than flipping the batch then selecting
                # (each image stays in cache); on a GPU that loop would sync, one `where` does not
                out = t if writable_in_place(t) else t.clone()
                for i in flipped.nonzero().flatten().tolist():
                    out[i] = t[i].flip(-1)
                return retain_type(out, e)
            where = flipped.view(-1, *([1] * (t.ndim - 1)))  # (B, 1, 1[, 1])
            return retain_type(torch.where(where, t.flip(-1), t), e)
        return cls._apply_sampling(e, s)  # points and boxes: through the same matrix

    @staticmethod
    def _apply_sampling(e: Any, s: _Sampling) -> Any:
        f = _SAMPLE_KERNELS.lookup(type(e))
        return e if f is None else retain_type(f(e, s), e)

    def to_config(self) -> dict[str, Any]:
        return {
            "tfms": [_to_config_entry(t, "GeometricAugment") for t in self.tfms],
            "size": None if self.size is None else list(self.size),
            "mode": self.mode,
            "pad_mode": self.pad_mode,
            "batch": self.batch,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GeometricAugment:
        cfg = dict(config)
        tfms = [_from_config_entry(e) for e in cfg.pop("tfms", [])]
        return cls(tfms, **cfg)


# --------------------------------------------------------------------------------------------------------
# lighting augmentation


class LightingTfm(DisplayedTransform):
    """Base of a lighting augmentation, applied to float images in logit space with probability `p`.

    Implement `draw(n, device)` -> (n,) parameters and `apply(logits, param)` for logits (B, C, H, W) and
    param (B or 1, 1, 1, 1); `identity` is the parameter value that leaves the image unchanged.
    """

    split_idx = 0
    order = 40
    identity: ClassVar[float] = 0.0

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        super().__init__()
        who = type(self).__name__
        if not 0 <= max_lighting < 1:
            raise ValueError(
                f"{who}: max_lighting must be in [0, 1), got {max_lighting!r}.\nhelp: e.g. max_lighting=0.2"
            )
        self.max_lighting = float(max_lighting)
        self.p = _check_p(p, who)

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}: a LightingTfm must implement draw()")

    def apply(self, logits: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}: a LightingTfm must implement apply()")

    def encodes(self, x: TensorImage) -> torch.Tensor:
        return _lighting([self], x, batch=False)

    def to_config(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


def _log_uniform_around_one(n: int, max_lighting: float, device: torch.device) -> torch.Tensor:
    """(n,) factors in [1 - max_lighting, 1 / (1 - max_lighting)], log-uniform (shrink as likely as grow)."""
    lo = math.log(1 - max_lighting)
    return _uniform(n, lo, -lo, device).exp()


@register_transform("vision.Brightness")
class Brightness(LightingTfm):
    """Shift the brightness: add logit(c) to the logits, c drawn in 0.5 +- max_lighting / 2."""

    identity = 0.5

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        return _uniform(n, 0.5 * (1 - self.max_lighting), 0.5 * (1 + self.max_lighting), device)

    def apply(self, logits: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return logits + torch.logit(param)


@register_transform("vision.Contrast")
class Contrast(LightingTfm):
    """Scale the contrast: multiply the logits by a factor in [1 - max_lighting, 1 / (1 - max_lighting)]."""

    identity = 1.0

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        return _log_uniform_around_one(n, self.max_lighting, device)

    def apply(self, logits: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return logits * param


_GREY_WEIGHTS = (0.299, 0.587, 0.114)


@register_transform("vision.Saturation")
class Saturation(LightingTfm):
    """Scale the saturation: move the logits away from (or towards) their grey level by a random factor."""

    identity = 1.0

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        return _log_uniform_around_one(n, self.max_lighting, device)

    def apply(self, logits: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 3:
            r, g, b = logits.split(1, dim=1)
            grey = r * _GREY_WEIGHTS[0] + g * _GREY_WEIGHTS[1] + b * _GREY_WEIGHTS[2]  # (B, 1, H, W)
        else:
            grey = logits.mean(1, keepdim=True)
        return grey + (logits - grey) * param


def _lighting(tfms: Sequence[LightingTfm], x: TensorImage, batch: bool) -> torch.Tensor:
    """Apply lighting components to images (B, C, H, W) in one pass through logit space."""
    img = x.as_subclass(torch.Tensor)
    if img.ndim != 4:
        raise ValueError(
            f"LightingAugment: expected batched images (B, C, H, W), got shape {tuple(img.shape)}.\n"
            "help: lighting augmentation is a batch transform: pass it as batch_tfms, after collation"
        )
    f = img.float() / 255 if not img.is_floating_point() else img.float()  # (B, C, H, W) in [0, 1]
    b, device = f.shape[0], f.device
    k = 1 if batch else b
    logits = torch.logit(f, eps=1e-6)
    changed = torch.zeros(k, dtype=torch.bool, device=device)
    for t in tfms:
        do = torch.rand(k, device=device) < t.p
        param = torch.where(do, t.draw(k, device), t.identity)
        changed |= do
        logits = t.apply(logits, param.view(k, 1, 1, 1))
    out = torch.where(changed.view(k, 1, 1, 1), torch.sigmoid(logits), f)  # untouched samples stay exact
    if img.is_floating_point():
        return out.to(img.dtype)
    return (out * 255).round_().clamp_(0, 255).to(img.dtype)


@register_transform("vision.LightingAugment")
class LightingAugment(DisplayedTransform):
    """Apply lighting augmentations (`Brightness`, `Contrast`, `Saturation`) to a batch in one pass.

    Meant for float images in [0, 1], after `IntToFloatTensor` (order 40 > 10); uint8 images are converted
    and converted back. `batch=True` draws one set of parameters for the whole batch.
    """

    split_idx = 0
    order = 40

    def __init__(self, tfms: Sequence[LightingTfm] = (), batch: bool = False) -> None:
        super().__init__()
        for t in tfms:
            if not isinstance(t, LightingTfm):
                raise TypeError(
                    f"LightingAugment: expected LightingTfm components, got {type(t).__name__}: {t!r}.\n"
                    "help: pass e.g. [Brightness(), Contrast()]; geometric ones go to GeometricAugment"
                )
        self.tfms = list(tfms)
        self.batch = bool(batch)

    def encodes(self, x: TensorImage) -> torch.Tensor:
        return _lighting(self.tfms, x, self.batch)

    def to_config(self) -> dict[str, Any]:
        return {"tfms": [_to_config_entry(t, "LightingAugment") for t in self.tfms], "batch": self.batch}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LightingAugment:
        cfg = dict(config)
        tfms = [_from_config_entry(e) for e in cfg.pop("tfms", [])]
        return cls(tfms, **cfg)


# --------------------------------------------------------------------------------------------------------
# the usual recipe


def aug_transforms(
    mult: float = 1.0,
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    min_zoom: float = 1.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    size: int | Sequence[int] | None = None,
    mode: SampleMode = "bilinear",
    pad_mode: SamplePadMode = "reflection",
    batch: bool = False,
) -> list[Transform]:
    """The standard batch augmentations: a `GeometricAugment` (flip, warp, rotate, zoom; one resampling)
    and a `LightingAugment` (brightness, contrast).

    `mult` scales `max_rotate`, `max_lighting` and `max_warp`. `flip_vert=True` draws among all 8 flips
    and quarter turns (`Dihedral`) instead of left-right flips. `size` also resizes (squishes) the batch,
    on validation too. Components with a zero range are left out, and so is an empty augmentation.

    >>> [type(t).__name__ for t in aug_transforms(max_lighting=0)]
    ['GeometricAugment']
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    geo: list[GeometricTfm] = []
    if do_flip:
        geo.append(Dihedral(p=0.5) if flip_vert else Flip(p=0.5))
    if max_warp:
        geo.append(Warp(magnitude=max_warp, p=p_affine))
    if max_rotate:
        geo.append(Rotate(max_deg=max_rotate, p=p_affine))
    if min_zoom < 1 or max_zoom > 1:
        geo.append(Zoom(min_zoom=min_zoom, max_zoom=max_zoom, p=p_affine))
    res: list[Transform] = []
    if geo or size is not None:
        res.append(GeometricAugment(geo, size=size, mode=mode, pad_mode=pad_mode, batch=batch))
    if max_lighting:
        light = [Brightness(max_lighting, p=p_lighting), Contrast(max_lighting, p=p_lighting)]
        res.append(LightingAugment(light, batch=batch))
    return res


# --------------------------------------------------------------------------------------------------------
# normalisation


@register_transform("vision.Normalize")
class Normalize(DisplayedTransform):
    """Normalise float images per channel: (x - mean) / std; `decodes` undoes it (for showing).

    Runs last among batch transforms (order 99), on float images in [0, 1] (after `IntToFloatTensor`).

    >>> import torch
    >>> from lamina.core import TensorImage
    >>> norm = Normalize.from_stats(*imagenet_stats)
    >>> x = TensorImage(torch.rand(2, 3, 4, 4))
    >>> torch.allclose(norm.decode(norm(x)), x, atol=1e-6)
    True
    """

    order = 99

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not len(mean):
            raise ValueError(
                f"Normalize: mean and std need one value per channel, got {len(mean)} and {len(std)}.\n"
                "help: e.g. Normalize.from_stats(*imagenet_stats)"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize: std must be positive, got {tuple(std)!r}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._stats_cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float]) -> Normalize:
        """Normalize with these per-channel statistics, e.g. `Normalize.from_stats(*imagenet_stats)`."""
        return cls(mean=mean, std=std)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as (C, 1, 1) on `x`'s device and dtype (cached: no host-device copy per batch)."""
        if not x.is_floating_point():
            raise TypeError(
                f"Normalize: expected a float image, got dtype {x.dtype}.\n"
                "help: put IntToFloatTensor (order 10) before Normalize in the batch transforms"
            )
        c = x.shape[-3] if x.ndim >= 3 else 0
        if len(self.mean) not in (1, c):
            raise ValueError(
                f"Normalize: statistics for {len(self.mean)} channels, but the image has shape "
                f"{tuple(x.shape)} ({c} channels).\nhelp: use statistics with one value per channel"
            )
        key = (x.device, x.dtype)
        if key not in self._stats_cache:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            self._stats_cache[key] = (mean, std)
        return self._stats_cache[key]

    def encodes(self, x: TensorImage) -> torch.Tensor:
        t = x.as_subclass(torch.Tensor)
        mean, std = self._stats(t)
        if writable_in_place(t):  # a batch the loader built: no new batch-sized tensor (CPU: fresh pages)
            return t.sub_(mean).div_(std)
        return (t - mean).div_(std)  # one new tensor instead of two: this pass is memory-bound

    def decodes(self, x: TensorImage) -> torch.Tensor:
        t = x.as_subclass(torch.Tensor)
        mean, std = self._stats(t)
        return t * std + mean

    def to_config(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}
