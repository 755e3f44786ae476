"""Blocks: what one element of an item is (a category, several labels, a number) and what it brings with it.

A block names the type transforms that turn a raw value into a semantic tensor, the item and batch
transforms that type needs, and, for targets, the loss that fits it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lamina.core import (
    Category,
    MissingKeyError,
    MultiCategory,
    TensorBase,
    TensorCategory,
    TensorMultiCategory,
    Transform,
    register_transform,
)
from lamina.data.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat

__all__ = [
    "Categorize",
    "CategoryBlock",
    "EncodedMultiCategorize",
    "MultiCategorize",
    "MultiCategoryBlock",
    "RegressionBlock",
    "RegressionSetup",
    "TensorRegression",
    "TransformBlock",
]


@dataclass
class TransformBlock:
    """One element of an item: its type transforms, the item/batch transforms it needs, and a loss factory."""

    type_tfms: list[Transform | Callable[..., Any]] = field(default_factory=list)
    item_tfms: list[Transform] = field(default_factory=list)
    batch_tfms: list[Transform] = field(default_factory=list)
    loss: Callable[[], torch.nn.Module] | None = None


def _vocab_key(v: Any) -> tuple[str, Any]:
    # sort numbers numerically and strings alphabetically, without comparing the two kinds
    return (type(v).__name__, v) if isinstance(v, int | float | str) else (type(v).__name__, str(v))


_PATH_SUFFIXES = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".txt",
        ".csv",
        ".json",
        ".wav",
        ".mp3",
        ".npy",
        ".dcm",
    ]
)


def _looks_like_path(v: Any) -> bool:
    """A file path given as a label: a Path, or a str with a directory part and a known file suffix."""
    if hasattr(v, "__fspath__"):
        return True
    if not isinstance(v, str) or ("/" not in v and "\\" not in v):
        return False
    dot = v.rfind(".")
    return dot > 0 and v[dot:].lower() in _PATH_SUFFIXES


def _check_not_items(name: str, labels: Sequence[Any]) -> None:
    """Refuse labels that are the items themselves (file paths): the sign of a missing or misplaced get_y."""
    sample = labels[:200]
    if sample and sum(_looks_like_path(v) for v in sample) > len(sample) // 2:
        raise ValueError(
            f"{name}: the labels look like file paths, one per item (e.g. {str(sample[0])!r}), so every "
            "item would be its own class.\n"
            "help: did you forget get_y? e.g. get_y=parent_label (the folder name is the label) or "
            "get_y=ColReader('label'); also check that the input block comes first in blocks=(...)"
        )


_TAG_SEPARATORS = (" ", ";", ",", "|")


def _check_joined_tags(labels: Sequence[Any]) -> None:
    """Refuse strings that hold several tags joined by a separator but were not split into labels."""
    texts = [v for v in labels if isinstance(v, str)]
    if len(texts) < 2:
        return
    for sep in _TAG_SEPARATORS:
        joined = [v for v in texts if sep in v.strip()]
        if len(joined) * 4 < len(texts):  # tags joined by `sep` in under a quarter of the labels: not a list
            continue
        tags = {t for v in texts for t in v.split(sep) if t.strip()}
        if len(tags) < len(set(texts)):  # the parts repeat across labels: they are the real tags
            raise ValueError(
                f"MultiCategorize: labels like {joined[0]!r} look like several tags joined by {sep!r}, "
                "but each string was taken as one label.\n"
                f"help: split them, e.g. ColReader('tags', label_delim={sep!r}), "
                f"ImageDataLoaders.from_csv(..., label_delim={sep!r}) or lamina train --label-delim {sep!r}"
            )


def _head(vocab: Sequence[Any] | None, n: int = 10) -> list[Any]:
    """The first labels of a vocabulary, for messages."""
    return list(vocab[:n]) if vocab else []


def _check_vocab(name: str, vocab: Sequence[Any]) -> list[Any]:
    vocab = list(vocab)
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"{name}: vocab has duplicates: {vocab}")
    return vocab


@register_transform("data.Categorize")
class Categorize(Transform):
    """Label -> class index (`TensorCategory`), with a vocabulary learned from the training labels."""

    order = 1

    def __init__(self, vocab: Sequence[Any] | None = None, sort: bool = True) -> None:
        super().__init__()
        self.vocab: list[Any] | None = _check_vocab("Categorize", vocab) if vocab is not None else None
        self.sort = sort
        self._o2i = {v: i for i, v in enumerate(self.vocab or [])}

    @property
    def c(self) -> int:
        """The number of classes."""
        return len(self.vocab or [])

    def setup(self, items: Sequence[Any]) -> None:
        if self.vocab is not None:
            return
        labels: dict[Any, None] = {}  # an ordered set: first-seen order when not sorting
        for i, lbl in enumerate(items):
            if lbl is None:
                raise ValueError(
                    f"Categorize: the label of training item {i} is None.\n"
                    "help: check get_y on that item; it must return a label for every item"
                )
            labels[lbl] = None
        _check_not_items("Categorize", list(labels))
        self.vocab = sorted(labels, key=_vocab_key) if self.sort else list(labels)
        self._o2i = {v: i for i, v in enumerate(self.vocab)}

    def check(self, items: Sequence[Any]) -> None:
        """Fail early when validation labels are missing from the vocabulary."""
        unseen = sorted({str(lbl) for lbl in items if lbl not in self._o2i})
        if unseen:
            raise ValueError(
                f"Categorize: validation label(s) never seen in training: {unseen[:10]}"
                f"{' ...' if len(unseen) > 10 else ''} (training vocab: {_head(self.vocab)}).\n"
                "help: split so that every class has training examples"
                " (e.g. TrainTestSplitter(stratify=...)), or pass the full vocab to CategoryBlock(vocab=...)"
            )

    def encodes(self, o: object) -> TensorCategory:
        try:
            idx = self._o2i[o]
        except KeyError:
            if o is None:
                raise ValueError("Categorize: got None as a label.\nhelp: check get_y on this item") from None
            raise MissingKeyError(
                f"Categorize: label {o!r} is not in the vocabulary {_head(self.vocab)}.\n"
                "help: the label was never seen in training; add examples or pass vocab=..."
            ) from None
        return torch.tensor(idx).as_subclass(TensorCategory)

    def decodes(self, o: TensorCategory) -> Category:
        assert self.vocab is not None
        return Category(str(self.vocab[int(o)]))

    def to_config(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "sort": self.sort}


@register_transform("data.MultiCategorize")
class MultiCategorize(Transform):
    """A list of labels -> a multi-hot float vector (`TensorMultiCategory`) over the learned vocabulary."""

    order = 1

    def __init__(self, vocab: Sequence[Any] | None = None) -> None:
        super().__init__()
        self.vocab: list[Any] | None = _check_vocab("MultiCategorize", vocab) if vocab is not None else None
        self._o2i = {v: i for i, v in enumerate(self.vocab or [])}

    @property
    def c(self) -> int:
        return len(self.vocab or [])

    def setup(self, items: Sequence[Any]) -> None:
        if self.vocab is not None:
            return
        labels: set[Any] = set()
        raw = []
        for lbls in items:
            labels.update(_as_labels(lbls))
            raw.append(lbls)
        _check_not_items("MultiCategorize", sorted(labels, key=_vocab_key))
        _check_joined_tags(raw)
        self.vocab = sorted(labels, key=_vocab_key)
        self._o2i = {v: i for i, v in enumerate(self.vocab)}

    def check(self, items: Sequence[Any]) -> None:
        unseen = sorted({str(lbl) for lbls in items for lbl in _as_labels(lbls) if lbl not in self._o2i})
        if unseen:
            raise ValueError(
                f"MultiCategorize: validation label(s) never seen in training: {unseen[:10]}.\n"
                "help: pass the full vocab to MultiCategoryBlock(vocab=...)"
            )

    def encodes(self, o: object) -> TensorMultiCategory:
        out = torch.zeros(self.c)
        for lbl in _as_labels(o):
            if lbl not in self._o2i:
                raise MissingKeyError(
                    f"MultiCategorize: label {lbl!r} is not in the vocabulary {_head(self.vocab)}."
                    "\nhelp: the label was never seen in training; pass the full vocab=..."
                )
            out[self._o2i[lbl]] = 1.0
        return out.as_subclass(TensorMultiCategory)

    def decodes(self, o: TensorMultiCategory) -> MultiCategory:
        assert self.vocab is not None
        return MultiCategory([str(self.vocab[i]) for i in torch.nonzero(o > 0.5).flatten().tolist()])

    def to_config(self) -> dict[str, Any]:
        return {"vocab": self.vocab}


def _as_labels(o: Any) -> list[Any]:
    if o is None:
        return []
    if isinstance(o, str):
        return [o]
    return list(o)


@register_transform("data.EncodedMultiCategorize")
class EncodedMultiCategorize(Transform):
    """Labels already one-hot encoded (a row of 0/1 columns) -> `TensorMultiCategory`; `vocab` names them."""

    order = 1

    def __init__(self, vocab: Sequence[Any]) -> None:
        super().__init__()
        self.vocab = _check_vocab("EncodedMultiCategorize", vocab)

    @property
    def c(self) -> int:
        return len(self.vocab)

    def encodes(self, o: object) -> TensorMultiCategory:
        t = torch.as_tensor(list(o) if not isinstance(o, torch.Tensor) else o, dtype=torch.float32)  # type: ignore[call-overload]
        if t.numel() != self.c:
            raise ValueError(f"EncodedMultiCategorize: got {t.numel()} values for a vocab of {self.c}")
        return t.as_subclass(TensorMultiCategory)

    def decodes(self, o: TensorMultiCategory) -> MultiCategory:
        return MultiCategory([str(self.vocab[i]) for i in torch.nonzero(o > 0.5).flatten().tolist()])

    def to_config(self) -> dict[str, Any]:
        return {"vocab": self.vocab}


class TensorRegression(TensorBase):
    """A regression target: a float tensor of `n_out` values."""


@register_transform("data.RegressionSetup")
class RegressionSetup(Transform):
    """Number(s) -> float tensor; learns `n_out` (the model's output size) from the training targets."""

    order = 1

    def __init__(self, n_out: int | None = None) -> None:
        super().__init__()
        self.n_out = n_out

    @property
    def c(self) -> int:
        return self.n_out or 1

    def setup(self, items: Sequence[Any]) -> None:
        self.check(items, "training")
        if self.n_out is None and len(items):
            self.n_out = int(torch.as_tensor(items[0], dtype=torch.float32).numel())

    def check(self, items: Sequence[Any], which: str = "validation") -> None:
        """Fail at construction, not mid-epoch, when a target is missing."""
        missing = [i for i, o in enumerate(items) if o is None]
        if missing:
            raise ValueError(
                f"RegressionSetup: the target of {len(missing)} {which} item(s) is None, e.g. {which} item "
                f"{missing[0]}.\nhelp: check get_y on that item; it must return a number for every item"
            )

    def encodes(self, o: object) -> TensorRegression:
        if o is None:
            raise ValueError("RegressionSetup: got None as a target.\nhelp: check get_y on this item")
        return torch.as_tensor(o, dtype=torch.float32).as_subclass(TensorRegression)

    def to_config(self) -> dict[str, Any]:
        return {"n_out": self.n_out}


def CategoryBlock(vocab: Sequence[Any] | None = None, sort: bool = True) -> TransformBlock:
    """A single-label classification target (cross entropy loss, argmax decoding)."""
    return TransformBlock(type_tfms=[Categorize(vocab=vocab, sort=sort)], loss=CrossEntropyLossFlat)


def MultiCategoryBlock(encoded: bool = False, vocab: Sequence[Any] | None = None) -> TransformBlock:
    """A multi-label target (binary cross entropy, threshold decoding); `encoded`: one-hot label columns."""
    if encoded:
        if vocab is None:
            raise ValueError("MultiCategoryBlock(encoded=True) needs vocab=<the names of the label columns>")
        tfm: Transform = EncodedMultiCategorize(vocab)
    else:
        tfm = MultiCategorize(vocab)
    return TransformBlock(type_tfms=[tfm], loss=BCEWithLogitsLossFlat)


def RegressionBlock(n_out: int | None = None) -> TransformBlock:
    """A regression target of `n_out` floats (mean squared error)."""
    return TransformBlock(type_tfms=[RegressionSetup(n_out)], loss=MSELossFlat)


def as_block(b: TransformBlock | Callable[[], TransformBlock]) -> TransformBlock:
    """A block as is, or a block factory called with no arguments (`CategoryBlock` -> `CategoryBlock()`)."""
    return b if isinstance(b, TransformBlock) else b()


def block_tfms(blocks: Iterable[TransformBlock], kind: str) -> list[Transform]:
    """The item or batch transforms of all blocks, without duplicates of the same class."""
    out: list[Transform] = []
    for b in blocks:
        for t in getattr(b, kind):
            if not any(type(t) is type(o) for o in out):
                out.append(t)
    return out
