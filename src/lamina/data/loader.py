"""DataLoader and DataLoaders: typed items -> plain-tensor batches on the device, and back for display.

Item transforms run in torch `DataLoader` workers; collation stacks plain tensors and remembers the
semantic types; batch transforms run on the device on the whole (re-typed) batch; the batch that leaves
the loader is a tuple of plain `torch.Tensor`s. `decode_batch` puts the types back and undoes every step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.utils.data as tud

from lamina.core import Pipeline, Transform, strip_type
from lamina.data.datasets import get_item

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.data.datasets import Datasets

__all__ = ["DataLoader", "DataLoaders", "default_device", "default_num_workers", "to_device"]


def default_device() -> torch.device:
    """CUDA when available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_num_workers() -> int:
    """Leave one core to the training process; at most 8 workers."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, n - 1))


def to_device(b: Any, device: torch.device | str | None, non_blocking: bool = True) -> Any:
    """Move tensors (in tuples and lists, one level deep or nested) to `device`."""
    if device is None:
        return b
    if isinstance(b, torch.Tensor):
        return b.to(device, non_blocking=non_blocking)
    if isinstance(b, tuple | list):
        return type(b)(to_device(o, device, non_blocking) for o in b)
    return b


def _collate_one(k: int, elems: list[Any]) -> Any:
    e0 = elems[0]
    if isinstance(e0, torch.Tensor):
        shapes = {tuple(e.shape) for e in elems}
        if len(shapes) > 1:
            some = sorted(shapes)[:3]
            raise RuntimeError(
                f"collate: element {k} ({type(e0).__name__}) has different shapes within one batch, e.g. {some}; "
                "they cannot be stacked.\n"
                "help: make them one size with item_tfms=Resize(224) (images) or pad them (sequences)"
            )
        return torch.stack([strip_type(e) for e in elems])
    if isinstance(e0, bool | int | float):
        return torch.tensor(elems)
    return list(elems)


def collate(batch: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Stack each element of the items into a plain tensor (numbers too); other values become lists."""
    return tuple(_collate_one(k, [b[k] for b in batch]) for k in range(len(batch[0])))


def _retype(b: Sequence[Any], types: Sequence[type]) -> tuple[Any, ...]:
    return tuple(
        e.as_subclass(t) if isinstance(e, torch.Tensor) and issubclass(t, torch.Tensor) else e
        for e, t in zip(b, types, strict=False)
    )


class _ItemDataset(tud.Dataset[tuple[Any, ...]]):
    """What torch workers index: the typed tuple through the item transforms, optionally seeded per item."""

    def __init__(self, dataset: Sequence[Any], item_tfms: Pipeline, seeded: bool) -> None:
        self.dataset, self.item_tfms, self.seeded = dataset, item_tfms, seeded

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> tuple[Any, ...]:
        if not self.seeded:
            return self.item_tfms(self.dataset[key])  # type: ignore[no-any-return]
        i, seed = key
        # seed each item's random transforms from (epoch seed, index): the same augmentation whatever
        # worker handles it; restore the caller's RNG so that in-process loading leaves training untouched
        in_worker = tud.get_worker_info() is not None
        state = None if in_worker else torch.get_rng_state()
        torch.manual_seed(seed)
        try:
            return self.item_tfms(self.dataset[i])  # type: ignore[no-any-return]
        finally:
            if state is not None:
                torch.set_rng_state(state)


class _SeededSampler(tud.Sampler[tuple[int, int]]):
    """Yields (index, item seed): order and augmentation depend only on the seed and the epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else range(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g).tolist()
        return iter([(i, s) for i, s in zip(order, seeds, strict=True)])


class DataLoader:
    """Batches of one split, as tuples of plain tensors on `device`.

    `dataset` is any sequence of tuples (a Datasets subset, or a plain list of (x, y)). Item transforms
    run in `num_workers` worker processes; batch transforms on the device. With `seed`, the order and the
    random item transforms are the same on every run whatever `num_workers` is.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        bs: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        item_tfms: Sequence[Transform] | Pipeline | None = None,
        batch_tfms: Sequence[Transform] | Pipeline | None = None,
        split_idx: int | None = None,
        seed: int | None = None,
        pin_memory: bool | None = None,
        dsets: Datasets | None = None,
        n_inp: int | None = None,
    ) -> None:
        if bs < 1:
            raise ValueError(f"DataLoader: bs must be >= 1, got {bs}")
        self.dataset, self.bs, self.shuffle, self.drop_last = dataset, bs, shuffle, drop_last
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.device = torch.device(device) if device is not None else default_device()
        self.split_idx, self.seed, self.dsets = split_idx, seed, dsets
        self.item_tfms = _as_pipeline(item_tfms, split_idx)
        self.batch_tfms = _as_pipeline(batch_tfms, split_idx)
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.n_inp = n_inp if n_inp is not None else (dsets.n_inp if dsets is not None else 1)
        self._types: tuple[type, ...] | None = None
        self._batch_types: tuple[type, ...] | None = None
        self._torch_dl: tud.DataLoader[Any] | None = None

    # -- building the torch loader -------------------------------------------------------------------------
    def _make_torch_dl(self) -> tud.DataLoader[Any]:
        has_random = any(t.split_idx is not None for t in self.item_tfms)
        seeded = self.seed is not None
        sampler: tud.Sampler[Any]
        if seeded:
            sampler = _SeededSampler(len(self.dataset), self.shuffle, int(self.seed))  # type: ignore[arg-type]
        elif self.shuffle:
            sampler = tud.RandomSampler(range(len(self.dataset)))
        else:
            sampler = tud.SequentialSampler(range(len(self.dataset)))
        ds = _ItemDataset(self.dataset, self.item_tfms, seeded=seeded and has_random)
        if seeded and not has_random:
            ds = _ItemDataset(_FirstOfPair(self.dataset), self.item_tfms, seeded=False)
        return tud.DataLoader(
            ds,
            batch_size=self.bs,
            sampler=sampler,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )

    @property
    def types(self) -> tuple[type, ...]:
        """The semantic types of one item after the item transforms (read once, from the first item)."""
        if self._types is None:
            if len(self.dataset) == 0:
                raise ValueError("DataLoader: the dataset is empty.\nhelp: check get_items and the splitter")
            self._types = tuple(type(e) for e in self.item_tfms(self.dataset[0]))
        return self._types

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        types = self.types
        if self._torch_dl is None:
            self._torch_dl = self._make_torch_dl()
        for b in self._torch_dl:
            yield self._after_collate(b, types)

    def _after_collate(self, b: tuple[Any, ...], types: tuple[type, ...]) -> tuple[torch.Tensor, ...]:
        b = to_device(b, self.device, non_blocking=self.pin_memory)
        if len(self.batch_tfms):
            b = self.batch_tfms(_retype(b, types))
            if self._batch_types is None:
                self._batch_types = tuple(type(e) for e in b)
            b = tuple(strip_type(e) for e in b)
        return b

    @property
    def batch_types(self) -> tuple[type, ...]:
        """The semantic types of a batch after the batch transforms (what decoding starts from)."""
        if self._batch_types is None:
            if not len(self.batch_tfms):
                return self.types
            # one item through the batch pipeline is enough to learn the output types
            item = self.item_tfms(self.dataset[0])
            b = self._after_collate_typed(collate([item]))
            self._batch_types = tuple(type(e) for e in b)
        return self._batch_types

    def _after_collate_typed(self, b: tuple[Any, ...]) -> tuple[Any, ...]:
        b = to_device(b, self.device)
        return self.batch_tfms(_retype(b, self.types))  # type: ignore[no-any-return]

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        """The first batch (plain tensors on the device)."""
        for b in self:
            return b
        raise ValueError("DataLoader: no batch (the dataset is empty or smaller than bs with drop_last)")

    # -- decoding and showing --------------------------------------------------------------------------------
    def decode(self, b: Sequence[Any]) -> tuple[Any, ...]:
        """Undo the batch transforms: typed tensors (e.g. uint8 images) back on the CPU."""
        typed = _retype(b, self.batch_types)
        out = self.batch_tfms.decode(typed)
        return tuple(to_device(o, "cpu") for o in out)

    def decode_batch(self, b: Sequence[Any], max_n: int = 9) -> list[tuple[Any, ...]]:
        """Each item of a batch fully decoded: images as pixels, categories as labels."""
        dec = self.decode(b)
        n = min(max_n, len(dec[0]))
        out = []
        for i in range(n):
            item = tuple(e[i] for e in dec)
            item = self.item_tfms.decode(item)
            if self.dsets is not None:
                item = self.dsets.decode(item)
            out.append(item)
        return out

    def show_batch(
        self,
        b: Sequence[Any] | None = None,
        max_n: int = 9,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """A grid of decoded items, each input shown with its target as the title."""
        items = self.decode_batch(b if b is not None else self.one_batch(), max_n=max_n)
        return show_items(items, nrows=nrows, ncols=ncols, figsize=figsize)

    def new(
        self,
        dataset: Sequence[Any] | None = None,
        bs: int | None = None,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        item_tfms: Pipeline | None = None,
        batch_tfms: Pipeline | None = None,
        split_idx: int | None = None,
        n_inp: int | None = None,
    ) -> DataLoader:
        """A copy with some settings changed (same transforms, shared, unless given)."""
        return DataLoader(
            self.dataset if dataset is None else dataset,
            bs=self.bs if bs is None else bs,
            shuffle=self.shuffle if shuffle is None else shuffle,
            drop_last=self.drop_last if drop_last is None else drop_last,
            num_workers=self.num_workers if num_workers is None else num_workers,
            device=self.device if device is None else device,
            item_tfms=self.item_tfms if item_tfms is None else item_tfms,
            batch_tfms=self.batch_tfms if batch_tfms is None else batch_tfms,
            split_idx=self.split_idx if split_idx is None else split_idx,
            seed=self.seed,
            dsets=self.dsets,
            n_inp=self.n_inp if n_inp is None else n_inp,
        )

    def __repr__(self) -> str:
        return f"DataLoader({len(self.dataset)} items, bs={self.bs}, shuffle={self.shuffle}, device={self.device})"


class _FirstOfPair(Sequence[Any]):
    """Lets an unseeded item dataset accept the (index, seed) keys of the seeded sampler."""

    def __init__(self, dataset: Sequence[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key[0]]


def _as_pipeline(tfms: Sequence[Transform] | Pipeline | None, split_idx: int | None) -> Pipeline:
    if isinstance(tfms, Pipeline):
        return tfms.with_split(split_idx)
    return Pipeline(tfms or [], split_idx=split_idx)


def show_items(
    items: Sequence[tuple[Any, ...]],
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Show decoded tuples in a grid: every element that can `show` itself draws on the item's Axes."""
    import matplotlib.pyplot as plt

    n = max(1, len(items))
    ncols = ncols or min(n, math.ceil(math.sqrt(n)))
    nrows = nrows or math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize or (2.6 * ncols, 2.8 * nrows), squeeze=False)
    for i, ax in enumerate(axs.flat):
        ax.set_axis_off()
        if i >= len(items):
            continue
        for e in items[i]:
            show = getattr(e, "show", None)
            if callable(show):
                show(ctx=ax)
            else:
                old = ax.get_title()
                ax.set_title(f"{old}\n{e}" if old else str(e), fontsize=10)
        if titles is not None:
            old = ax.get_title()
            ax.set_title(f"{old}\n{titles[i]}" if old else titles[i], fontsize=9)
    fig.tight_layout()
    return fig


class DataLoaders:
    """The training and validation DataLoaders, plus what the Learner reads from the data.

    `vocab`, `c` (number of outputs) and `loss_func` come from the last (target) block.
    """

    def __init__(
        self,
        train: DataLoader,
        valid: DataLoader,
        loss_func: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.train, self.valid = train, valid
        self._loss_factory = loss_func

    @classmethod
    def from_dsets(
        cls,
        train_ds: Sequence[Any],
        valid_ds: Sequence[Any],
        bs: int = 64,
        shuffle: bool = True,
        num_workers: int | None = 0,
        device: torch.device | str | None = None,
        seed: int | None = None,
        loss_func: Callable[[], torch.nn.Module] | None = None,
        n_inp: int = 1,
    ) -> DataLoaders:
        """DataLoaders over two plain sequences of (x, y) tuples (tensors or numbers)."""
        common = {"num_workers": num_workers, "device": device, "seed": seed, "n_inp": n_inp}
        return cls(
            DataLoader(train_ds, bs=bs, shuffle=shuffle, drop_last=shuffle, split_idx=0, **common),  # type: ignore[arg-type]
            DataLoader(valid_ds, bs=bs * 2, shuffle=False, split_idx=1, **common),  # type: ignore[arg-type]
            loss_func=loss_func,
        )

    @property
    def device(self) -> torch.device:
        return self.train.device

    @property
    def dsets(self) -> Datasets | None:
        return self.train.dsets

    @property
    def n_inp(self) -> int:
        return self.train.n_inp

    @property
    def target_tfm(self) -> Transform | None:
        """The transform that encodes the target (the last element's last transform with a vocab or c)."""
        if self.dsets is None or len(self.dsets.pipelines) <= self.n_inp:
            return None
        for t in reversed(self.dsets.pipelines[-1].tfms):
            if hasattr(t, "c"):
                return t
        return None

    @property
    def vocab(self) -> list[Any] | None:
        return getattr(self.target_tfm, "vocab", None)

    @property
    def c(self) -> int | None:
        """The number of model outputs the target needs (classes, regression values)."""
        t = self.target_tfm
        return int(t.c) if t is not None else None  # type: ignore[attr-defined]

    @property
    def loss_func(self) -> torch.nn.Module | None:
        return self._loss_factory() if self._loss_factory is not None else None

    @property
    def loss_factory(self) -> Callable[[], torch.nn.Module] | None:
        return self._loss_factory

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        return self.train.one_batch()

    def decode_batch(self, b: Sequence[Any], max_n: int = 9) -> list[tuple[Any, ...]]:
        return self.valid.decode_batch(b, max_n=max_n)

    def show_batch(
        self,
        max_n: int = 9,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        return self.train.show_batch(max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize)

    def new(self, bs: int | None = None, device: torch.device | str | None = None, num_workers: int | None = None) -> DataLoaders:
        """The same data with another batch size, device or number of workers."""
        return DataLoaders(
            self.train.new(bs=bs, device=device, num_workers=num_workers),
            self.valid.new(bs=None if bs is None else bs * 2, device=device, num_workers=num_workers),
            loss_func=self._loss_factory,
        )

    def test_dl(
        self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None, skip_getters: bool = False
    ) -> DataLoader:
        """A loader over new raw items with the validation transforms (inputs only unless `with_labels`).

        `skip_getters`: the items are already what get_x returns (e.g. image paths for a table-based learner).
        """
        if self.dsets is None:
            raise ValueError("test_dl needs DataLoaders built from Datasets (a DataBlock or a factory)")
        dsets = self.dsets
        elements = list(range(len(dsets.pipelines))) if with_labels else list(range(self.n_inp))
        items = list(items) if not hasattr(items, "iloc") else items
        ds = _RawItems(dsets, items, elements, skip_getters)
        return self.valid.new(dataset=ds, shuffle=False, drop_last=False, bs=bs)

    def __repr__(self) -> str:
        return f"DataLoaders(train={self.train!r}, valid={self.valid!r})"


class _RawItems(Sequence[tuple[Any, ...]]):
    """New raw items through some elements' pipelines of a Datasets (for test_dl and predict)."""

    def __init__(self, dsets: Datasets, items: Any, elements: Sequence[int], skip_getters: bool) -> None:
        self.dsets, self.items, self.elements, self.skip_getters = dsets, items, list(elements), skip_getters

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        return self.dsets.build(get_item(self.items, i), index=i, elements=self.elements, skip_getters=self.skip_getters)
