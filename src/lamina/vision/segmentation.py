"""Segmentation data: images with per-pixel masks of class codes, and a side-by-side view of the results.

>>> dls = SegmentationDataLoaders.from_label_func(                                   # doctest: +SKIP
...     path, get_image_files(path / "images"), lambda f: path / "labels" / f.name,
...     codes=["background", "road", "car"], item_tfms=Resize(128), batch_tfms=aug_transforms())
>>> dls.show_batch()                                                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from lamina.core import TensorImage, Transform
from lamina.data import DataBlock, DataLoaders, RandomSplitter
from lamina.data.loader import DataLoader, show_items
from lamina.vision.core import ImageBlock, MaskBlock
from lamina.vision.data import PathLike, resolve_files

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.train import Learner

__all__ = ["SegmentationDataLoaders", "show_segmentation_results"]


class SegmentationDataLoaders:
    """Factories for segmentation DataLoaders (`ImageBlock` + `MaskBlock(codes)`), each a thin DataBlock."""

    @staticmethod
    def from_label_func(
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[Any], Any],
        codes: Sequence[str] | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: Sequence[Transform] | None = None,
        batch_tfms: Sequence[Transform] | None = None,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        img_cls: type[TensorImage] = TensorImage,
    ) -> DataLoaders:
        """Images `fnames` (relative to `path`, or absolute), each with the mask file `label_func(fname)`.

        A mask holds one class code per pixel (0, 1, 2, ...); `codes` names them in order and sets the
        number of classes (without it, the training masks are read once for their largest code).
        Masks follow every item and batch transform (resampled by nearest neighbour).
        """
        if len(fnames) == 0:
            raise ValueError(
                "SegmentationDataLoaders.from_label_func: got no image files.\n"
                "help: pass the images, e.g. fnames=get_image_files(path / 'images')"
            )
        if codes is not None and len(codes) < 2:
            raise ValueError(
                f"SegmentationDataLoaders.from_label_func: codes={list(codes)!r} name fewer than 2 "
                "classes.\n"
                "help: name every class code of the masks in order, background included, e.g. "
                "['background', 'object']"
            )
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), MaskBlock(codes)),
            get_y=label_func,
            splitter=RandomSplitter(valid_pct, seed=seed),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(
            resolve_files(path, fnames), bs=bs, num_workers=num_workers, device=device, seed=seed
        )


def show_segmentation_results(
    learn: Learner,
    max_n: int = 4,
    dl: DataLoader | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Validation images in rows, the actual mask (left, "target") beside the predicted one (right, "pred").

    A mask drawn over its image is easier to compare side by side than as a title, which is all
    `Learner.show_results` can do for a target that is itself an image.
    """
    dl = dl if dl is not None else learn.dls.valid
    b = tuple(e[:max_n] for e in dl.one_batch())
    n = learn.dls.n_inp
    inp, _, targs, dec = learn.get_preds(dl=[b], with_input=True, with_decoded=True)
    if targs is None:
        raise ValueError(
            "show_segmentation_results: the loader has no targets (masks) to compare with.\n"
            "help: pass a labelled loader, e.g. learn.dls.valid"
        )
    actual = dl.decode_batch((*inp[:n], targs), max_n=max_n)
    predicted = dl.decode_batch((*inp[:n], dec), max_n=max_n)
    items = [it for pair in zip(actual, predicted, strict=True) for it in pair]
    titles = ["target", "pred"] * len(actual)
    return show_items(items, ncols=2, titles=titles, figsize=figsize)
