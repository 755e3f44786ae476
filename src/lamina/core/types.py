"""Semantic types: tensors (and decoded labels) that say what they hold and know how to show themselves.

They live in the data pipeline only: the DataLoader strips them before the batch reaches the model, so
the training step runs on plain `torch.Tensor`s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "Category",
    "MultiCategory",
    "TensorBBox",
    "TensorBase",
    "TensorCategory",
    "TensorImage",
    "TensorImageBW",
    "TensorMask",
    "TensorMultiCategory",
    "TensorPoint",
    "TensorText",
    "new_axes",
    "retain_type",
    "strip_type",
    "value_title",
]

T = TypeVar("T")


def new_axes(ctx: Axes | None, figsize: tuple[float, float] = (3, 3)) -> Axes:
    """Return `ctx`, or a fresh matplotlib Axes without ticks when `ctx` is None."""
    if ctx is not None:
        return ctx
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    ax.set_axis_off()
    return ax


def _add_title(ax: Axes, title: str | None) -> None:
    if title:
        # join an existing title (the image's label) with the new one (a prediction), one per line
        old = ax.get_title()
        ax.set_title(f"{old}\n{title}" if old else title, fontsize=10)


def value_title(x: Any, max_values: int = 6) -> str:
    """A short title for a value: numbers to 4 significant digits, a long tensor as its shape."""
    if isinstance(x, torch.Tensor):
        t = x.as_subclass(torch.Tensor).detach()
        if t.numel() > max_values:
            return f"{type(x).__name__}{tuple(t.shape)}"
        vals = t.cpu().flatten().tolist()
        text = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals)
        return text if t.ndim == 0 or len(vals) == 1 else f"[{text}]"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


class TensorBase(torch.Tensor):
    """Base of lamina's semantic tensor types; `show` draws the value on a matplotlib Axes.

    `draws_over_input`: a target drawn as a picture over its input (a mask, points, boxes), so results
    show target and prediction side by side rather than the prediction as a title.
    """

    draws_over_input: ClassVar[bool] = False

    @classmethod
    def collate(cls, elems: list[torch.Tensor]) -> Any:
        """A batch object of its own for items of this type, or None to stack them (the default). Items
        that differ in length (encoded file bytes) return a list of their own kind."""
        return None

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        _add_title(ax, title if title is not None else value_title(self))
        return ax


class TensorImage(TensorBase):
    """An image as a (C, H, W) tensor: uint8 in [0, 255] or float in [0, 1]."""

    _cmap: str | None = None

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        img = self.as_subclass(torch.Tensor).detach().cpu()
        if img.dtype.is_floating_point:
            img = img.clamp(0, 1)
        if img.ndim == 3:
            img = img.permute(1, 2, 0)  # (H, W, C)
            if img.shape[-1] == 1:
                img = img[..., 0]
        cmap = self._cmap if img.ndim == 2 else None
        ax.imshow(img.numpy(), cmap=cmap or ("gray" if img.ndim == 2 else None))
        ax.set_axis_off()
        _add_title(ax, title)
        return ax


class TensorImageBW(TensorImage):
    """A one-channel (1, H, W) image, shown in grey levels."""

    _cmap = "gray"


class TensorMask(TensorBase):
    """A segmentation mask as an (H, W) tensor of class codes; shown over the image, half transparent."""

    draws_over_input = True

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        m = self.as_subclass(torch.Tensor).detach().cpu()
        ax.imshow(m.numpy(), cmap="tab20", alpha=0.5, vmin=0, vmax=19, interpolation="nearest")
        ax.set_axis_off()
        _add_title(ax, title)
        return ax


class TensorCategory(TensorBase):
    """A class index (a 0-d int64 tensor); decodes to a `Category` label."""


class TensorMultiCategory(TensorBase):
    """Several labels at once, as a one-hot float vector of the vocabulary's length."""


class TensorPoint(TensorBase):
    """Points as an (N, 2) tensor of (x, y): pixel coordinates, or [-1, 1] once scaled for the model."""

    draws_over_input = True

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        p = self.as_subclass(torch.Tensor).detach().cpu().reshape(-1, 2)
        ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), s=12, c="#e4007c", marker="x")
        _add_title(ax, title)
        return ax


class TensorBBox(TensorBase):
    """Boxes as an (N, 4) tensor of (x1, y1, x2, y2)."""

    draws_over_input = True

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        from matplotlib import patches

        ax = new_axes(ctx)
        for x1, y1, x2, y2 in self.as_subclass(torch.Tensor).detach().cpu().reshape(-1, 4).tolist():
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec="#ffcc00"))
        _add_title(ax, title)
        return ax


class TensorText(TensorBase):
    """Token ids of a text as a 1-d int64 tensor.

    A batch of texts of different lengths is padded on the right with `PAD` (-1, never a token id) to the
    longest one: (B, L) int64. The model reads its attention mask as `ids >= 0`, so the mask travels in
    the ids themselves, whatever the tokenizer's own padding token is (many have none).
    """

    PAD: ClassVar[int] = -1

    @classmethod
    def collate(cls, elems: list[torch.Tensor]) -> Any:
        if all(e.ndim == 1 for e in elems):
            plain = [e.as_subclass(torch.Tensor) for e in elems]
            return torch.nn.utils.rnn.pad_sequence(plain, batch_first=True, padding_value=cls.PAD)
        return None


class Category(str):
    """A decoded class label; shows itself as a title."""

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        _add_title(ax, str(self) if title is None else f"{self} {title}")
        return ax


class MultiCategory(list[str]):
    """Decoded labels of a multi-label target, written `odd;prime` (joined by `sep`) wherever lamina shows
    them: `str()`, plot titles, top losses, `lamina predict`. `repr()` stays the list's."""

    sep: ClassVar[str] = ";"

    def __str__(self) -> str:
        return self.sep.join(self)

    def show(self, ctx: Axes | None = None, title: str | None = None) -> Axes:
        ax = new_axes(ctx)
        text = str(self)
        _add_title(ax, text if title is None else f"{text} {title}")
        return ax


def retain_type(new: Any, old: Any) -> Any:
    """Give `new` the semantic type of `old` when `new` came back as a plain tensor."""
    if (
        isinstance(old, TensorBase)
        and isinstance(new, torch.Tensor)
        and type(new) is torch.Tensor
        and type(old) is not torch.Tensor
    ):
        return new.as_subclass(type(old))
    return new


def strip_type(x: T) -> T:
    """The plain `torch.Tensor` view of a semantic tensor (no copy); other values unchanged."""
    if isinstance(x, torch.Tensor) and type(x) is not torch.Tensor:
        return x.as_subclass(torch.Tensor)  # type: ignore[return-value]
    return x
