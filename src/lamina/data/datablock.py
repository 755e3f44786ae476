"""DataBlock: describe a dataset by its blocks, getters and splitter; get Datasets or DataLoaders from a source.

>>> dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
...                    get_y=parent_label, splitter=RandomSplitter(0.2, seed=42))
>>> dls = dblock.dataloaders(path, bs=64)      # doctest: +SKIP
>>> dblock.summary(path)                         # every step for one item, then one batch  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import torch

from lamina.core import Transform, as_transform, strip_type
from lamina.data.blocks import TransformBlock, as_block, block_tfms
from lamina.data.datasets import Datasets, Getter, ItemError, describe_item, get_item
from lamina.data.loader import DataLoader, DataLoaders, _retype, collate, to_device
from lamina.data.sources import RandomSplitter, Splits

__all__ = ["DataBlock"]

GetterFn = Callable[[Any], Any]
BlockLike = TransformBlock | Callable[[], TransformBlock]


class DataBlock:
    """A recipe for data: `blocks` say what each element is, getters where it comes from, `splitter` how to split.

    `n_inp` elements are inputs (default: all but the last); `get_x` reads the inputs and `get_y` the
    targets (or give one getter per block with `getters`). `item_tfms` run on single items in the loader
    workers; `batch_tfms` on whole batches on the device.
    """

    def __init__(
        self,
        blocks: Sequence[BlockLike] = (),
        n_inp: int | None = None,
        get_items: Callable[[Any], Any] | None = None,
        get_x: GetterFn | None = None,
        get_y: GetterFn | Sequence[GetterFn] | None = None,
        getters: Sequence[GetterFn | None] | None = None,
        splitter: Callable[[Any], Splits] | None = None,
        item_tfms: Sequence[Transform] | None = None,
        batch_tfms: Sequence[Transform] | None = None,
    ) -> None:
        if not blocks:
            raise ValueError("DataBlock: give at least one block, e.g. blocks=(ImageBlock, CategoryBlock)")
        self._block_specs = list(blocks)
        self.n_inp = n_inp if n_inp is not None else max(1, len(blocks) - 1)
        if not 1 <= self.n_inp <= len(blocks):
            raise ValueError(f"DataBlock: n_inp={self.n_inp} for {len(blocks)} blocks; it must be in [1, {len(blocks)}]")
        self.get_items = get_items
        if getters is not None:
            if len(getters) != len(blocks):
                raise ValueError(f"DataBlock: {len(getters)} getters for {len(blocks)} blocks; give one per block")
            self.getters: list[GetterFn | None] = list(getters)
        else:
            ys: list[GetterFn | None]
            if get_y is None or callable(get_y):
                ys = [get_y] * (len(blocks) - self.n_inp)
            else:
                ys = list(get_y)
            if len(ys) != len(blocks) - self.n_inp:
                raise ValueError(f"DataBlock: {len(ys)} get_y for {len(blocks) - self.n_inp} target blocks")
            self.getters = [get_x] * self.n_inp + ys
        for g in self.getters:
            if g is not None and not callable(g):
                raise TypeError(f"DataBlock: getter {g!r} is not callable")
        self.splitter = splitter if splitter is not None else RandomSplitter(0.2)
        self.item_tfms = list(item_tfms or [])
        self.batch_tfms = list(batch_tfms or [])

    def _blocks(self) -> list[TransformBlock]:
        # blocks hold transforms with setup state (a vocab): make fresh ones for every Datasets
        return [as_block(b) for b in self._block_specs]

    def _items(self, source: Any) -> Any:
        items = self.get_items(source) if self.get_items is not None else source
        if items is None or len(items) == 0:
            raise ValueError(
                f"DataBlock: no items from source {describe_item(source)}"
                f"{' via ' + getattr(self.get_items, '__name__', repr(self.get_items)) if self.get_items else ''}.\n"
                "help: check the source path and get_items"
            )
        return items

    def _element_tfms(self, blocks: Sequence[TransformBlock]) -> list[list[Transform]]:
        out = []
        for g, b in zip(self.getters, blocks, strict=True):
            tfms: list[Transform] = [Getter(g)] if g is not None else []
            out.append(tfms + [as_transform(t) for t in b.type_tfms])
        return out

    def _build(self, source: Any) -> tuple[list[TransformBlock], Datasets]:
        blocks = self._blocks()
        items = self._items(source)
        splits = self.splitter(items)
        if len(splits[0]) == 0:
            raise ValueError(
                f"DataBlock: the splitter put no item in the training set ({len(items)} items).\n"
                "help: check the splitter (e.g. valid_pct, or the folder names for GrandparentSplitter)"
            )
        return blocks, Datasets(items, self._element_tfms(blocks), splits=splits, n_inp=self.n_inp)

    def datasets(self, source: Any) -> Datasets:
        """Items from `source`, split, with pipelines set up on the training items."""
        return self._build(source)[1]

    def dataloaders(
        self,
        source: Any,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
        seed: int | None = None,
    ) -> DataLoaders:
        """DataLoaders for training (shuffled, augmented) and validation from `source`."""
        blocks, dsets = self._build(source)
        return self._loaders(dsets, blocks, bs, num_workers, device, shuffle, drop_last, seed)

    def _loaders(
        self,
        dsets: Datasets,
        blocks: Sequence[TransformBlock],
        bs: int,
        num_workers: int | None,
        device: torch.device | str | None,
        shuffle: bool,
        drop_last: bool | None,
        seed: int | None,
    ) -> DataLoaders:
        item_tfms = block_tfms(blocks, "item_tfms") + self.item_tfms
        batch_tfms = block_tfms(blocks, "batch_tfms") + self.batch_tfms
        n_train = len(dsets.splits[0])
        dl_kw: dict[str, Any] = {
            "num_workers": num_workers,
            "device": device,
            "item_tfms": item_tfms,
            "batch_tfms": batch_tfms,
            "seed": seed,
            "dsets": dsets,
        }
        train = DataLoader(
            dsets.train,
            bs=bs,
            shuffle=shuffle,
            drop_last=(shuffle and n_train > bs) if drop_last is None else drop_last,
            split_idx=0,
            **dl_kw,
        )
        valid = DataLoader(dsets.valid, bs=bs, shuffle=False, drop_last=False, split_idx=1, **dl_kw)
        # the loss comes from the last target block that brings one
        loss = next((b.loss for b in reversed(blocks[self.n_inp :]) if b.loss is not None), None)
        return DataLoaders(train, valid, loss_func=loss)

    # -- summary ---------------------------------------------------------------------------------------------
    def summary(self, source: Any, bs: int = 4, file: TextIO | None = None) -> None:
        """Print every step for one item, then the collation and batch transforms for one batch.

        When a step fails, the report says which step, on which item and what it received, then raises.
        """
        out = file or sys.stdout

        def say(s: str = "") -> None:
            print(s, file=out)

        blocks = self._blocks()
        say("Setting up the data")
        items = self._items(source)
        say(f"  found {len(items)} items from {describe_item(source)}")
        splits = self.splitter(items)
        say(f"  split: {len(splits[0])} training, {len(splits[1])} validation ({type(self.splitter).__name__})")
        dsets = Datasets(items, self._element_tfms(blocks), splits=splits, n_inp=self.n_inp, do_setup=False)
        try:
            dsets.setup()
        except Exception as e:
            say(f"  FAILED while setting up the pipelines on the training items: {e}")
            raise
        for k, p in enumerate(dsets.pipelines):
            say(f"  element {k} ({'input' if k < self.n_inp else 'target'}): {p}")

        idx = splits[0][0]
        raw = get_item(items, idx)
        say(f"\nBuilding one item: item {idx} = {describe_item(raw)}")
        elems = []
        for k, p in enumerate(dsets.pipelines):
            say(f"  element {k}:")
            x = raw
            for t in p:
                try:
                    x = t(x)
                except Exception as e:
                    say(f"    {t.name}: FAILED on {_show(x)}\n      {type(e).__name__}: {e}")
                    raise ItemError(
                        f"DataBlock.summary: step {t.name!r} of element {k} failed on item {idx} "
                        f"({describe_item(raw)}), which it received as {_show(x)}: {e}\n"
                        "help: fix that step (a getter or a block's transform) for this kind of item"
                    ) from e
                say(f"    {t.name:<24} -> {_show(x)}")
            elems.append(x)
        item = tuple(elems)

        dls = self._loaders(dsets, blocks, bs, 0, None, False, False, None)
        dl = dls.train
        say(f"\nItem transforms (training): {dl.item_tfms}")
        for t in dl.item_tfms:
            try:
                item = t(item, split_idx=0)
            except Exception as e:
                say(f"    {t.name}: FAILED on {_show(item)}\n      {type(e).__name__}: {e}")
                raise ItemError(f"DataBlock.summary: item transform {t.name!r} failed: {e}") from e
            say(f"    {t.name:<24} -> {_show(item)}")

        n = min(bs, len(splits[0]))
        say(f"\nCollating {n} training items")
        batch_items = [dl.item_tfms(dsets.train[i]) for i in range(n)]
        try:
            b: tuple[Any, ...] = collate(batch_items)
        except Exception as e:
            say(f"    collate: FAILED: {e}")
            raise
        say(f"    collate{'':<18} -> {_show(b)}")
        b = to_device(b, dl.device)
        say(f"\nBatch transforms (training, on {dl.device}): {dl.batch_tfms}")
        b = _retype(b, dl.types)
        for t in dl.batch_tfms:
            b = t(b, split_idx=0)
            say(f"    {t.name:<24} -> {_show(b)}")
        say(f"\nThe model receives plain tensors: {_show(tuple(strip_type(e) for e in b))}")


def _show(x: Any) -> str:
    if isinstance(x, tuple):
        return "(" + ", ".join(_show(e) for e in x) + ")"
    if isinstance(x, torch.Tensor):
        shape = tuple(x.shape)
        if x.ndim == 0:
            return f"{type(x).__name__}({x.item()!r})"
        return f"{type(x).__name__} {shape} {str(x.dtype).replace('torch.', '')}"
    s = repr(x)
    return f"{type(x).__name__} {s if len(s) < 60 else s[:57] + '...'}"
