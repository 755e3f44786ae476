"""Blocks for keypoints and bounding boxes: pixel coordinates in the pipeline, [-1, 1] for the model.

Points and boxes stay in the pixels of their image through every item and batch transform (Resize,
RandomResizedCrop, GeometricAugment move them with it); `PointScaler`, the last geometric step, scales them
to [-1, 1] of the batch's image size for the model and decodes predictions back to pixels.

>>> dblock = DataBlock(blocks=(ImageBlock, PointBlock), get_y=centre_of,  # doctest: +SKIP
...                    item_tfms=Resize(224), batch_tfms=aug_transforms())

Boxes of different counts per image: give `BBoxBlock(max_boxes=...)`, which pads every item to that count
(boxes with zeros, labels with 0, the `'#na#'` background of `BBoxLblBlock`); decoding drops the padding.
A detection DataBlock has one input: `DataBlock(blocks=(ImageBlock, BBoxBlock(8), BBoxLblBlock), n_inp=1,
getters=[get_img, get_boxes, get_labels])`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lamina.core import (
    ItemTransform,
    MissingKeyError,
    MultiCategory,
    TensorBBox,
    TensorCategory,
    TensorImage,
    TensorMask,
    TensorPoint,
    Transform,
    register_transform,
    retain_type,
)
from lamina.data.blocks import TransformBlock
from lamina.data.losses import MSELossFlat

__all__ = [
    "BBoxBlock",
    "BBoxCategorize",
    "BBoxLblBlock",
    "BBoxPad",
    "PointBlock",
    "PointScaler",
    "ToTensorBBox",
    "ToTensorPoint",
    "bb_pad",
]

NA = "#na#"


def _as_coords(o: Any, k: int, who: str) -> torch.Tensor:
    """A list / array / tensor of coordinates -> a float32 (N, k) tensor."""
    if isinstance(o, torch.Tensor):
        t = o.as_subclass(torch.Tensor).detach().to(torch.float32)
    else:
        try:
            t = torch.from_numpy(np.asarray(o, dtype=np.float32).copy())
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{who}: cannot read {o!r} as coordinates: {e}.\n"
                f"help: get_y must return a list of {k}-number sequences (pixels), e.g. "
                f"{[[10, 20]] if k == 2 else [[5, 5, 40, 30]]}"
            ) from None
    if t.numel() % k:
        raise ValueError(
            f"{who}: got {t.numel()} numbers (shape {tuple(t.shape)}), not a multiple of {k}.\n"
            f"help: each {'point is (x, y)' if k == 2 else 'box is (x1, y1, x2, y2)'} in pixels"
        )
    return t.reshape(-1, k)


@register_transform("vision.ToTensorPoint")
class ToTensorPoint(Transform):
    """(x, y) pixel points -> `TensorPoint` (N, 2) float32; learns N (the model outputs `c = 2 * N`)."""

    order = 1

    def __init__(self, n_points: int | None = None) -> None:
        super().__init__()
        self.n_points = n_points

    @property
    def c(self) -> int:
        """Outputs a model needs: two coordinates per point."""
        return 2 * (self.n_points or 1)

    def setup(self, items: Sequence[Any]) -> None:
        if len(items) and self.n_points is None:
            self.n_points = int(_as_coords(items[0], 2, "PointBlock").shape[0])
        self.check(items, "training")

    def check(self, items: Sequence[Any], which: str = "validation") -> None:
        """Every item must have the same number of points (the model has a fixed output size)."""
        for i, o in enumerate(items):
            n = int(_as_coords(o, 2, "PointBlock").shape[0])
            if n != self.n_points:
                raise ValueError(
                    f"PointBlock: {which} item {i} has {n} points, expected {self.n_points} (the model "
                    "predicts a fixed number of points).\nhelp: give every item the same points, in the "
                    "same order; mark a missing one, e.g. at (-1, -1), rather than leaving it out"
                )

    def encodes(self, o: object) -> TensorPoint:
        return _as_coords(o, 2, "PointBlock").as_subclass(TensorPoint)

    def to_config(self) -> dict[str, Any]:
        return {"n_points": self.n_points}


@register_transform("vision.ToTensorBBox")
class ToTensorBBox(Transform):
    """(x1, y1, x2, y2) pixel boxes -> `TensorBBox` (N, 4) float32."""

    order = 1

    def encodes(self, o: object) -> TensorBBox:
        b = _as_coords(o, 4, "BBoxBlock")
        if bool((b[:, 2:] < b[:, :2]).any()):
            raise ValueError(
                f"BBoxBlock: a box has x2 < x1 or y2 < y1: {b.tolist()[:4]}.\n"
                "help: boxes are (x1, y1, x2, y2), top-left then bottom-right, in pixels"
            )
        return b.as_subclass(TensorBBox)

    def to_config(self) -> dict[str, Any]:
        return {}


@register_transform("vision.BBoxCategorize")
class BBoxCategorize(Transform):
    """One label per box -> `TensorCategory` (N,) of indices; the vocabulary starts with `'#na#'` (0), the
    background label that padding uses. Decodes to a `MultiCategory` list, one label per box."""

    order = 1

    def __init__(self, vocab: Sequence[Any] | None = None, add_na: bool = True) -> None:
        super().__init__()
        self.add_na = add_na
        self.vocab: list[Any] | None = self._with_na(list(vocab)) if vocab is not None else None
        self._o2i = {v: i for i, v in enumerate(self.vocab or [])}

    def _with_na(self, vocab: list[Any]) -> list[Any]:
        if self.add_na and (not vocab or vocab[0] != NA):
            vocab = [NA, *(v for v in vocab if v != NA)]
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"BBoxLblBlock: vocab has duplicates: {vocab}")
        return vocab

    @property
    def c(self) -> int:
        """The number of classes, background included."""
        return len(self.vocab or [])

    def setup(self, items: Sequence[Any]) -> None:
        if self.vocab is not None:
            return
        labels: set[Any] = set()
        for lbls in items:
            labels.update(_labels(lbls))
        labels.discard(NA)
        self.vocab = self._with_na(sorted(labels, key=str))
        self._o2i = {v: i for i, v in enumerate(self.vocab)}

    def check(self, items: Sequence[Any]) -> None:
        """Fail at construction when validation boxes carry labels never seen in training."""
        unseen = sorted({str(lbl) for lbls in items for lbl in _labels(lbls) if lbl not in self._o2i})
        if unseen:
            raise ValueError(
                f"BBoxLblBlock: validation label(s) never seen in training: {unseen[:10]}.\n"
                "help: pass the full vocab to BBoxLblBlock(vocab=...)"
            )

    def encodes(self, o: object) -> TensorCategory:
        idx = []
        for lbl in _labels(o):
            if lbl not in self._o2i:
                raise MissingKeyError(
                    f"BBoxLblBlock: label {lbl!r} is not in the vocabulary {(self.vocab or [])[:10]}.\n"
                    "help: the label was never seen in training; pass the full vocab=..."
                )
            idx.append(self._o2i[lbl])
        return torch.tensor(idx, dtype=torch.long).as_subclass(TensorCategory)

    def decodes(self, o: TensorCategory) -> MultiCategory:
        assert self.vocab is not None
        return MultiCategory([str(self.vocab[i]) for i in o.as_subclass(torch.Tensor).reshape(-1).tolist()])

    def to_config(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "add_na": self.add_na}


def _labels(o: Any) -> list[Any]:
    if o is None:
        return []
    if isinstance(o, str):
        return [o]
    return list(o)


def _find(items: tuple[Any, ...], cls: type, ndim: int | None = None) -> int | None:
    """Index of the first element of type `cls` (with `ndim` dims, when given)."""
    for i, e in enumerate(items):
        if isinstance(e, cls) and (ndim is None or (isinstance(e, torch.Tensor) and e.ndim == ndim)):
            return i
    return None


def _pad_to(boxes: torch.Tensor, labels: torch.Tensor | None, n: int, pad_idx: int) -> tuple[Any, Any]:
    """Boxes (N, 4) and labels (N,) padded to n entries with zero boxes and `pad_idx` labels."""
    k = int(boxes.shape[0])
    b = torch.cat([boxes, boxes.new_zeros(n - k, 4)])
    lbl = None if labels is None else torch.cat([labels, labels.new_full((n - k,), pad_idx)])
    return retain_type(b, boxes), None if lbl is None else retain_type(lbl, labels)


@register_transform("vision.BBoxPad")
class BBoxPad(ItemTransform):
    """Pad an item's boxes (zeros) and box labels (`pad_idx`, the background) to `max_boxes`, so items
    stack into one batch; `decodes` drops the padding again (boxes whose label is `pad_idx`).

    Runs after the resizing item transforms (order 20 > 1); an item with more boxes raises.
    """

    order = 20

    def __init__(self, max_boxes: int, pad_idx: int = 0) -> None:
        super().__init__()
        if not isinstance(max_boxes, int) or isinstance(max_boxes, bool) or max_boxes < 1:
            raise ValueError(
                f"BBoxPad: max_boxes must be a positive int, got {max_boxes!r}.\n"
                "help: pass the largest number of boxes of any image, e.g. BBoxBlock(max_boxes=20)"
            )
        self.max_boxes, self.pad_idx = max_boxes, pad_idx

    def encodes(self, x: tuple[Any, ...]) -> tuple[Any, ...]:
        ib = _find(x, TensorBBox)
        if ib is None:
            return x
        il = _find(x, TensorCategory, ndim=1)
        boxes, labels = x[ib], (x[il] if il is not None else None)
        n = int(boxes.shape[0])
        if labels is not None and int(labels.shape[0]) != n:
            raise ValueError(
                f"BBoxPad: an item has {n} boxes but {int(labels.shape[0])} box labels.\n"
                "help: get the boxes and their labels from the same annotation, one label per box"
            )
        if n > self.max_boxes:
            raise ValueError(
                f"BBoxPad: an item has {n} boxes, more than max_boxes={self.max_boxes}.\n"
                f"help: raise max_boxes to at least {n} (BBoxBlock(max_boxes=...))"
            )
        b, lbl = _pad_to(boxes, labels, self.max_boxes, self.pad_idx)
        out = list(x)
        out[ib] = b
        if il is not None:
            out[il] = lbl
        return tuple(out)

    def decodes(self, x: tuple[Any, ...]) -> tuple[Any, ...]:
        ib, il = _find(x, TensorBBox, ndim=2), _find(x, TensorCategory, ndim=1)
        if ib is None or il is None:
            return x
        keep = x[il].as_subclass(torch.Tensor) != self.pad_idx
        out = list(x)
        out[ib], out[il] = retain_type(x[ib][keep], x[ib]), retain_type(x[il][keep], x[il])
        return tuple(out)

    def to_config(self) -> dict[str, Any]:
        return {"max_boxes": self.max_boxes, "pad_idx": self.pad_idx}


def bb_pad(samples: Sequence[tuple[Any, ...]], pad_idx: int = 0) -> list[tuple[Any, ...]]:
    """Pad the boxes and box labels of `samples` to the largest count among them (a collation helper for
    loaders you build yourself; lamina's DataBlock uses `BBoxPad` instead)."""
    n = max((int(s[i].shape[0]) for s in samples if (i := _find(s, TensorBBox)) is not None), default=0)
    return [BBoxPad(max(n, 1), pad_idx)(s) for s in samples]


@register_transform("vision.PointScaler")
class PointScaler(ItemTransform):
    """Batch transform: points and boxes from pixels to [-1, 1] of the image in the same tuple (-1 and 1 are
    its outer edges); `decodes` maps model outputs ((B, 2N) or (B, N, 2)) back to pixels.

    Runs after the geometric augmentation (order 50 > 30), which moves points in pixels.
    """

    order = 50

    def encodes(self, x: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._scale(x, decode=False)

    def decodes(self, x: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._scale(x, decode=True)

    def _scale(self, x: tuple[Any, ...], decode: bool) -> tuple[Any, ...]:
        i = _find(x, TensorImage)
        if i is None:
            i = _find(x, TensorMask)
        if i is None:  # no image in the tuple tells the size: leave the coordinates alone
            return x
        img = x[i]
        batched = img.ndim == (4 if isinstance(img, TensorImage) else 3)
        h, w = (int(s) for s in img.shape[-2:])
        out = []
        for e in x:
            k = 2 if isinstance(e, TensorPoint) else 4 if isinstance(e, TensorBBox) else 0
            if not k:
                out.append(e)
                continue
            t = e.as_subclass(torch.Tensor)
            lead = (t.shape[0],) if batched else ()
            t = (t if t.is_floating_point() else t.float()).reshape(*lead, -1, k)  # (B, N, k) or (N, k)
            half = torch.tensor([w / 2, h / 2] * (k // 2), dtype=t.dtype, device=t.device)
            out.append(retain_type((t + 1) * half if decode else t / half - 1, e))
        return tuple(out)

    def to_config(self) -> dict[str, Any]:
        return {}


def PointBlock(n_points: int | None = None) -> TransformBlock:
    """Keypoints as (x, y) pixels per item (a fixed number of them); regressed with mean squared error."""
    return TransformBlock(type_tfms=[ToTensorPoint(n_points)], batch_tfms=[PointScaler()], loss=MSELossFlat)


def BBoxBlock(max_boxes: int | None = None) -> TransformBlock:
    """Boxes as (x1, y1, x2, y2) pixels per item; `max_boxes` pads items to one count (see `BBoxPad`)."""
    item_tfms: list[Transform] = [BBoxPad(max_boxes)] if max_boxes is not None else []
    return TransformBlock(type_tfms=[ToTensorBBox()], item_tfms=item_tfms, batch_tfms=[PointScaler()])


def BBoxLblBlock(vocab: Sequence[Any] | None = None, add_na: bool = True) -> TransformBlock:
    """One label per box, with a `'#na#'` background class first (what `BBoxPad` pads with)."""
    return TransformBlock(type_tfms=[BBoxCategorize(vocab, add_na)])
