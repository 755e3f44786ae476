"""DataBlock: a dataset described by its blocks, getters and splitter; Datasets or DataLoaders from a source.

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

from lamina.core import Transform, TransformsLike, as_transform, as_transforms, strip_type
from lamina.data.blocks import TransformBlock, as_block, block_tfms
from lamina.data.datasets import Datasets, Getter, ItemError, describe_item, describe_value, get_item
from lamina.data.loader import DataLoader, DataLoaders, collate
from lamina.data.shards import Shards, storer
from lamina.data.sources import RandomSplitter, Splits

__all__ = ["DataBlock"]

GetterFn = Callable[[Any], Any]
BlockLike = TransformBlock | Callable[[], TransformBlock]


class DataBlock:
    """A recipe for data: `blocks` say what each element is, getters where it comes from, `splitter` how.

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
        item_tfms: TransformsLike = None,
        batch_tfms: TransformsLike = None,
    ) -> None:
        if not blocks:
            raise ValueError(
                "DataBlock: got no blocks.\n"
                "help: say what each element is, e.g. blocks=(ImageBlock, CategoryBlock)"
            )
        nb = len(blocks)
        self._block_specs = list(blocks)
        self.n_inp = n_inp if n_inp is not None else max(1, nb - 1)
        if not 1 <= self.n_inp <= nb:
            raise ValueError(
                f"DataBlock: n_inp={self.n_inp} for {nb} blocks; expected 1 to {nb}.\n"
                "help: n_inp counts the blocks that are model inputs; the rest are targets"
            )
        self.get_items = get_items
        for name, g in (("get_x", get_x), ("get_y", get_y)):
            if isinstance(g, str):
                raise TypeError(
                    f"DataBlock: {name}={g!r} is a str; expected a function of the item.\n"
                    f"help: to read a column, pass {name}=ColReader({g!r})"
                )
        if getters is not None:
            if len(getters) != nb:
                raise ValueError(
                    f"DataBlock: got {len(getters)} getters for {nb} blocks; expected one per block.\n"
                    "help: use None for a block that takes the item as it is, or use get_x/get_y"
                )
            self.getters: list[GetterFn | None] = list(getters)
        else:
            n_y = nb - self.n_inp
            ys: list[GetterFn | None] = [get_y] * n_y if get_y is None or callable(get_y) else list(get_y)
            if len(ys) != n_y:
                raise ValueError(
                    f"DataBlock: got {len(ys)} get_y functions for {n_y} target blocks.\n"
                    "help: give one get_y per target block, or a single function for all of them"
                )
            self.getters = [get_x] * self.n_inp + ys
        for g in self.getters:
            if g is not None and not callable(g):
                raise TypeError(
                    f"DataBlock: getter {g!r} ({type(g).__name__}) is not callable.\n"
                    "help: pass a function of the item, e.g. ColReader('label') or parent_label"
                )
        self.splitter = splitter if splitter is not None else RandomSplitter(0.2)
        self.item_tfms = as_transforms(item_tfms)
        self.batch_tfms = as_transforms(batch_tfms)

    def _blocks(self) -> list[TransformBlock]:
        # blocks hold transforms with setup state (a vocab): make fresh ones for every Datasets
        return [as_block(b) for b in self._block_specs]

    def new_blocks(self) -> list[TransformBlock]:
        """Fresh blocks (their transforms not set up yet), one per element."""
        return self._blocks()

    def items(self, source: Any) -> Any:
        """The raw items `get_items` finds in `source` (the source itself without `get_items`)."""
        return self._items(source)

    def split(self, items: Any) -> Splits:
        """The splitter's (training, validation) positions of `items`."""
        return self._split(items)

    def _items(self, source: Any) -> Any:
        if isinstance(source, Shards):
            return source
        items = self.get_items(source) if self.get_items is not None else source
        if items is None or len(items) == 0:
            via = (
                f" via {getattr(self.get_items, '__name__', repr(self.get_items))}" if self.get_items else ""
            )
            raise ValueError(
                f"DataBlock: no items from source {describe_item(source)}{via}.\n"
                "help: check the source path and get_items"
            )
        return items

    def _element_tfms(self, blocks: Sequence[TransformBlock], source: Any = None) -> list[list[Transform]]:
        getters = self._getters(source)
        out = []
        for k, (g, b) in enumerate(zip(getters, blocks, strict=True)):
            tfms: list[Transform] = [Getter(g)] if g is not None else []
            type_tfms = [as_transform(t) for t in b.type_tfms]
            if isinstance(source, Shards):
                _check_stored(source, k, storer(type_tfms, k < source.n_inp))
            out.append(tfms + type_tfms)
        return out

    def _getters(self, source: Any) -> Sequence[GetterFn | None]:
        """The DataBlock's getters; for a `Shards` source the shards' own (holding the getters' outputs)."""
        if not isinstance(source, Shards):
            return self.getters
        if len(source.kinds) != len(self.getters) or source.n_inp != self.n_inp:
            raise ValueError(
                f"DataBlock: {source!r} holds {len(source.kinds)} elements ({source.n_inp} inputs); this "
                f"DataBlock has {len(self.getters)} blocks ({self.n_inp} inputs).\n"
                "help: read the shards with a DataBlock of the same blocks as the one that wrote them"
            )
        return source.getters()

    def _split(self, items: Any) -> Splits:
        splits = items.splits() if isinstance(items, Shards) else self.splitter(items)
        if len(splits[0]) == 0:
            raise ValueError(
                f"DataBlock: the splitter put none of the {len(items)} items in the training set.\n"
                "help: check the splitter (e.g. valid_pct, or the folder names for GrandparentSplitter)"
            )
        return splits

    def _build(self, source: Any, skip_bad_files: bool) -> tuple[list[TransformBlock], Datasets]:
        blocks = self._blocks()
        items = self._items(source)
        dsets = Datasets(
            items,
            self._element_tfms(blocks, items),
            splits=self._split(items),
            n_inp=self.n_inp,
            skip_bad_files=skip_bad_files,
        )
        return blocks, dsets

    def datasets(self, source: Any, skip_bad_files: bool = False) -> Datasets:
        """Items from `source`, split, with pipelines set up on the training items.

        `skip_bad_files`: loaders built from them replace an item that fails to build (a corrupt image)
        by the next good one and warn, instead of raising (found as they are read: see `DataLoader`).
        """
        return self._build(source, skip_bad_files)[1]

    def dataloaders(
        self,
        source: Any,
        bs: int = 64,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
        seed: int | None = None,
        skip_bad_files: bool = False,
    ) -> DataLoaders:
        """DataLoaders for training (shuffled, augmented) and validation from `source`.

        `seed`: the same batches in the same order on every run, whatever `num_workers`;
        `skip_bad_files`: see `datasets`.
        """
        blocks, dsets = self._build(source, skip_bad_files)
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
        train = DataLoader(
            dsets.train,
            bs=bs,
            shuffle=shuffle,
            drop_last=(shuffle and n_train > bs) if drop_last is None else drop_last,
            num_workers=num_workers,
            device=device,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            split_idx=0,
            seed=seed,
            dsets=dsets,
        )
        valid = DataLoader(
            dsets.valid,
            bs=bs,
            shuffle=False,
            drop_last=False,
            num_workers=num_workers,
            device=device,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            split_idx=1,
            seed=seed,
            dsets=dsets,
        )
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

        def failed(step: str, got: str, e: Exception, where: str) -> ItemError:
            say(f"    {step}: FAILED on {got}\n      {type(e).__name__}: {e}")
            fix = "" if "help:" in str(e) else "\nhelp: fix that step for this kind of item (or the item)"
            return ItemError(
                f"DataBlock.summary: step {step!r} failed on {where}, which it received as {got}:\n"
                f"  {type(e).__name__}: {e}{fix}"
            )

        blocks = self._blocks()
        say("Setting up the data")
        try:
            items = self._items(source)
            say(f"  found {len(items)} items from {describe_item(source)}")
            splits = self._split(items)
        except Exception as e:
            say(f"  FAILED while listing or splitting the items{_detail(e, out)}")
            raise
        how = "as written in the shards" if isinstance(items, Shards) else type(self.splitter).__name__
        say(f"  split: {len(splits[0])} training, {len(splits[1])} validation ({how})")
        dsets = Datasets(
            items, self._element_tfms(blocks, items), splits=splits, n_inp=self.n_inp, do_setup=False
        )
        try:
            dsets.setup()
        except Exception as e:
            say(f"  FAILED while setting up the pipelines on the training items{_detail(e, out)}")
            raise
        for k, p in enumerate(dsets.pipelines):
            say(f"  element {k} ({'input' if k < self.n_inp else 'target'}): {p}")

        idx = splits[0][0]
        raw = get_item(items, idx)
        where = f"item {idx} ({describe_item(raw)})"
        say(f"\nBuilding one item: item {idx} = {describe_item(raw)}")
        elems = []
        for k, p in enumerate(dsets.pipelines):
            say(f"  element {k}:")
            x = raw
            for t in p:
                try:
                    x = t(x)
                except Exception as e:
                    raise failed(t.name, describe_value(x), e, f"{where}, element {k}") from e
                say(f"    {t.name:<24} -> {describe_value(x)}")
            elems.append(x)
        item = tuple(elems)

        dls = self._loaders(dsets, blocks, bs, 0, None, False, False, None)
        dl = dls.train
        say(f"\nItem transforms (training): {dl.item_tfms}")
        for t in dl.item_tfms:
            try:
                item = t(item, split_idx=0)
            except Exception as e:
                raise failed(t.name, describe_value(item), e, where) from e
            say(f"    {t.name:<24} -> {describe_value(item)}")

        n = min(bs, len(splits[0]))
        say(f"\nCollating {n} training items")
        batch_items = [dl.item_tfms(dsets.train[i]) for i in range(n)]
        try:
            b: tuple[Any, ...] = collate(batch_items)
        except Exception as e:
            raise failed("collate", f"{n} items", e, f"the first {n} training items") from e
        say(f"    {'collate':<24} -> {describe_value(b)}")
        b = dl.typed_batch(b)
        say(f"\nBatch transforms (training, on {dl.device}): {dl.batch_tfms}")
        for t in dl.batch_tfms:
            try:
                b = t(b, split_idx=0)
            except Exception as e:
                raise failed(t.name, describe_value(b), e, f"a batch of {n} training items") from e
            say(f"    {t.name:<24} -> {describe_value(b)}")
        say(f"\nThe model receives plain tensors: {describe_value(tuple(strip_type(e) for e in b))}")


def _detail(e: Exception, out: TextIO) -> str:
    """The error for a report written to a file; on the terminal only a pointer, since the error follows."""
    if out in (sys.stdout, sys.stderr):
        return f" ({type(e).__name__}, below)"
    return f":\n    {type(e).__name__}: {e}"


def _check_stored(source: Shards, k: int, reader: Transform | None) -> None:
    """Input k of the shards was stored by a transform (token ids): the block reading it has the same one."""
    wrote, reads = source.stored[k], reader.stored_as if reader is not None else None
    if wrote != reads:
        raise ValueError(
            f"DataBlock: element {k} of {source!r} was written as {wrote or 'raw values'}; this DataBlock "
            f"reads it as {reads or 'raw values'}.\n"
            "help: read shards with the same blocks (the same tokenizer and max_len) as the DataBlock "
            "that wrote them"
        )
