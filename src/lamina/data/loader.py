"""DataLoader and DataLoaders: typed items -> plain-tensor batches on the device, and back for display.

Item transforms run in torch `DataLoader` workers; collation stacks plain tensors and remembers the
semantic types; batch transforms run on the device on the whole (re-typed) batch; the batch that leaves
the loader is a tuple of plain `torch.Tensor`s. `decode_batch` puts the types back and undoes every step.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
import torch.utils.data as tud

from lamina.core import (
    Pipeline,
    TensorBase,
    Transform,
    TransformsLike,
    owned_input,
    strip_type,
    value_title,
)
from lamina.data.datasets import ItemError, describe_item, describe_value, get_item
from lamina.data.order import ShardSampler, bucket_order, size_order

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pandas import DataFrame

    from lamina.data.datasets import Datasets

__all__ = [
    "BatchedItems",
    "DataLoader",
    "DataLoaders",
    "ShapeMismatchError",
    "collate",
    "default_device",
    "default_num_workers",
    "show_decoded",
    "show_items",
    "to_device",
]

# the CPU generator that `torch.rand` & co. draw from; seeded per item (1 us) rather than with
# `torch.manual_seed` (which also seeds every CUDA device: 200 us)
_CPU_RNG = torch.random.default_generator

# mixed into an item's seed to seed its batch's transforms: a different stream from the item's own
_BATCH_SALT = 0x2545F4914F6CDD1D


@contextlib.contextmanager
def _rng_kept(device: torch.device | None = None) -> Iterator[list[torch.Generator]]:
    """Within: torch's CPU generator (and `device`'s, on CUDA) and Python's `random` may be reseeded;
    after: as they were. Yields those torch generators."""
    gens = [_CPU_RNG]
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        gens.append(torch.cuda.default_generators[index])
    states, py_state = [g.get_state() for g in gens], random.getstate()
    try:
        yield gens
    finally:
        for g, st in zip(gens, states, strict=True):
            g.set_state(st)
        random.setstate(py_state)


@contextlib.contextmanager
def _seeded_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Within: the RNGs of `_rng_kept` start from `seed`; after: as they were, so seeded batch transforms
    neither depend on nor change what training draws."""
    if seed is None:
        yield
        return
    with _rng_kept(device) as gens:
        for g in gens:
            g.manual_seed(seed)
        random.seed(seed)
        yield


def _batch_seed(item_seed: int) -> int:
    return (item_seed ^ _BATCH_SALT) & (2**62 - 1)


# skip_bad_files: after this many bad items in a row, it is not a few bad files but a wrong path or transform
_MAX_BAD_IN_A_ROW = 32


def default_device() -> torch.device:
    """CUDA when available, then Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(dataset: Sized | None = None, bs: int = 64) -> int:
    """Worker processes for a loader: 0 for in-memory data, a few batches, or 2 cores or fewer; else one per
    core but one (<= 8).

    Workers pay off when items are built from files (decoding, item transforms), but each costs a process
    start and the batches' trip through shared memory, so a list of tensors, or at most 4 batches, loads
    fastest in the training process. On 2 cores a worker competes with the training step's own threads
    (whose OpenMP spin-waits starve it): MNIST sample (5,000 28x28 PNGs), bs=64, test_resnet, 2 epochs of
    fit_one_cycle: 0 workers 10.2 s; 1 worker 136 s (16 s with OMP_WAIT_POLICY=PASSIVE). Loading alone,
    without training, 1-2 workers were faster (1.03 s and 0.54-0.88 s vs 1.15 s an epoch).
    """
    if dataset is not None and (isinstance(dataset, list | tuple) or len(dataset) <= 4 * bs):
        return 0
    cpus = _usable_cpus()
    return 0 if cpus <= 2 else min(8, cpus - 1)


def to_device(b: Any, device: torch.device | str | None, non_blocking: bool = True) -> Any:
    """Move tensors (in tuples and lists, one level deep or nested) to `device`."""
    if device is None:
        return b
    if isinstance(b, torch.Tensor):
        return b.to(device, non_blocking=non_blocking)
    move = getattr(b, "to_device", None)
    if callable(move):  # a batch object that knows where it goes (encoded bytes stay on the host)
        return move(torch.device(device))
    if isinstance(b, tuple | list):
        return type(b)(to_device(o, device, non_blocking) for o in b)
    return b


class ShapeMismatchError(RuntimeError):
    """Items of one batch whose tensors differ in shape (images of mixed sizes): they cannot be stacked."""


def _collate_one(k: int, elems: list[Any], describe: Callable[[int], str] | None = None) -> Any:
    e0 = elems[0]
    if isinstance(e0, TensorBase):
        own = type(e0).collate(elems)  # a type with a batch of its own (ragged encoded bytes)
        if own is not None:
            return own
    if isinstance(e0, torch.Tensor):
        try:
            # one stack of the typed tensors, then one plain view: no per-item Python work on the fast path
            return torch.stack(elems).as_subclass(torch.Tensor)
        except RuntimeError as e:
            shapes = [tuple(x.shape) for x in elems]
            n_shapes = len(set(shapes))
            if n_shapes < 2:
                raise
            common = max(set(shapes), key=shapes.count)
            odd = [i for i, sh in enumerate(shapes) if sh != common]
            name = describe if describe is not None else (lambda i: f"item {i} of the batch")
            shown = "; ".join(f"{name(i)} is {shapes[i]}" for i in odd[:5])
            more = f" (and {len(odd) - 5} more)" if len(odd) > 5 else ""
            raise ShapeMismatchError(
                f"collate: element {k} ({type(e0).__name__}) has {n_shapes} different shapes within one "
                f"batch: most items are {common}, but {shown}{more}; they cannot be stacked.\n"
                "help: make them one size with item_tfms=Resize(224) (images) or pad them (sequences)"
            ) from e
    if isinstance(e0, bool | int | float):
        return torch.tensor(elems)
    return list(elems)


def collate(
    batch: Sequence[tuple[Any, ...]], describe: Callable[[int], str] | None = None
) -> tuple[Any, ...]:
    """Stack each element of the items into a plain tensor (numbers too); other values become lists.

    `describe(i)` names item `i` of the batch (e.g. its file) in the error for items of different shapes."""
    return tuple(_collate_one(k, [b[k] for b in batch], describe) for k in range(len(batch[0])))


def _retype(b: Sequence[Any], types: Sequence[type]) -> tuple[Any, ...]:
    return tuple(
        e.as_subclass(t) if isinstance(e, torch.Tensor) and issubclass(t, torch.Tensor) else e
        for e, t in zip(b, types, strict=False)
    )


class _Replaced:
    """An item built in place of bad ones (skip_bad_files): collation unwraps it and reports the bad ones."""

    __slots__ = ("bad", "item")

    def __init__(self, item: tuple[Any, ...], bad: list[tuple[int, str]]) -> None:
        self.item, self.bad = item, bad


class _BatchSeed(int):
    """Appended to a seeded batch's items by the dataset: the seed of the batch's transforms."""


class _BatchKeys:
    """Appended last to a batch's items by the dataset (in the process that collates it, never pickled):
    names the items in a collation error."""

    __slots__ = ("dataset", "idxs")

    def __init__(self, dataset: Any, idxs: list[int]) -> None:
        self.dataset, self.idxs = dataset, idxs

    def describe(self, i: int) -> str:
        return _describe(self.dataset, self.idxs[i])


def _collate_items(items: Sequence[Any]) -> tuple[tuple[Any, ...], list[tuple[int, str]], int | None]:
    """The collate_fn given to torch: the batch, the (position, message) of the items it skipped, and the
    seed of its batch transforms (None unless the loader is seeded)."""
    seed, keys = None, None
    if items and isinstance(items[-1], _BatchKeys):
        keys, items = items[-1], items[:-1]
    if items and isinstance(items[-1], _BatchSeed):
        seed, items = int(items[-1]), items[:-1]
    bad: list[tuple[int, str]] = []
    plain = []
    for it in items:
        if isinstance(it, _Replaced):
            bad += it.bad
            plain.append(it.item)
        else:
            plain.append(it)
    return collate(plain, keys.describe if keys is not None else None), bad, seed


def _describe(dataset: Any, i: int) -> str:
    describe = getattr(dataset, "describe", None)
    return describe(i) if callable(describe) else f"item {i}"


def _brief(e: BaseException) -> str:
    """An item error on one line for a list: its first two lines (the item and step, then the cause)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.startswith("help:")]
    return " ".join(lines[:2])


class _ItemDataset(tud.Dataset[Any]):
    """What torch workers index: item `i` of `dataset` through the item transforms.

    A key is an index, or `(index, seed)` from `_SeededSampler`: the item's random transforms then draw
    from that seed, so they are the same whichever worker (or the main process) builds the item. With
    `skip_bad`, an item that fails to build is replaced by the next one that builds (see `DataLoader`).
    """

    def __init__(self, dataset: Sequence[Any], item_tfms: Pipeline, skip_bad: bool) -> None:
        self.dataset, self.item_tfms, self.skip_bad = dataset, item_tfms, skip_bad

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.__getitems__([key])[0]  # the item (a seeded key also adds its batch seed after it)

    def __getitems__(self, keys: Sequence[Any]) -> list[Any]:
        """A batch's items (torch's fetcher calls this): in the main process, seeding leaves the caller's RNGs
        as they were, so in-process loading doesn't change what the training step draws."""
        if not keys or not isinstance(keys[0], tuple):
            return [*(self._get(k, None) for k in keys), _BatchKeys(self.dataset, [int(k) for k in keys])]
        in_worker = tud.get_worker_info() is not None  # a worker's RNGs are its own: nothing to put back
        with contextlib.nullcontext() if in_worker else _rng_kept():
            # the batch transforms' seed travels with the batch: it is the same whichever process built it,
            # and a distributed shard's batches get their own
            return [
                *(self._get(i, seed) for i, seed in keys),
                _BatchSeed(_batch_seed(keys[0][1])),
                _BatchKeys(self.dataset, [int(i) for i, _ in keys]),
            ]

    def _get(self, i: int, seed: int | None) -> Any:
        if not self.skip_bad:
            return self.build(i, seed)
        n = len(self.dataset)
        bad: list[tuple[int, str]] = []
        for step in range(min(n, _MAX_BAD_IN_A_ROW)):
            j = (i + step) % n
            try:
                item = self.build(j, seed)
            except ItemError as e:
                bad.append((j, _brief(e)))
                continue
            return _Replaced(item, bad) if bad else item
        raise ItemError(
            f"DataLoader: {len(bad)} items in a row failed to build (from position {i}), e.g.\n"
            f"  {bad[0][1]}\n"
            "help: skip_bad_files skips a few bad files; this many means a wrong path, reader or transform"
        )

    def build(self, i: int, seed: int | None) -> tuple[Any, ...]:
        """Item `i` through the item transforms; a failure raises an ItemError naming the item and step."""
        if seed is not None:
            _CPU_RNG.manual_seed(seed)
            random.seed(seed)
        x = self.dataset[i]
        split_idx = self.item_tfms.split_idx
        for t in self.item_tfms.tfms:
            try:
                x = t(x, split_idx=split_idx)
            except ItemError:
                raise
            except Exception as e:
                raise ItemError(
                    f"{_describe(self.dataset, i)}: item transform {t.name!r} failed on "
                    f"{describe_value(x)}:\n  {type(e).__name__}: {e}"
                    + ("" if "help:" in str(e) else "\nhelp: check that transform's settings for this item")
                ) from e
        return x


def _epoch_order(
    n: int, shuffle: bool, sizes: torch.Tensor | None, bs: int, g: torch.Generator | None
) -> torch.Tensor:
    """One epoch's item order: shuffled or not, and with `sizes`, in length buckets (or by size)."""
    if not shuffle:
        return size_order(sizes) if sizes is not None else torch.arange(n)
    order = torch.randperm(n, generator=g)
    return bucket_order(order, sizes, bs, g) if sizes is not None else order


class _SeededSampler(tud.Sampler[tuple[int, int]]):
    """Yields (index, item seed): order and augmentation depend only on the seed and the epoch."""

    def __init__(
        self, n: int, shuffle: bool, seed: int, sizes: torch.Tensor | None = None, bs: int = 1
    ) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        self.sizes, self.bs = sizes, bs
        self.skip = 0  # items the next epoch leaves out at its start (resuming in the middle of an epoch)

    def __len__(self) -> int:
        return self.n

    def arrays(self, epoch: int, with_seeds: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch's item order and the items' seeds (drawn after the order: none when not wanted)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = _epoch_order(self.n, self.shuffle, self.sizes, self.bs, g)
        seeds = torch.randint(0, 2**62, (self.n,), generator=g) if with_seeds else order[:0]
        return order, seeds

    def keys(self, epoch: int, n: int | None = None) -> list[tuple[int, int]]:
        """The (index, seed) pairs of one epoch, in order (its first `n`)."""
        order, seeds = self.arrays(epoch)
        return list(zip(order[:n].tolist(), seeds[:n].tolist(), strict=True))

    def next_arrays(self, with_seeds: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """What iterating gives (the next epoch, after the items to skip) as tensors; the epoch advances."""
        order, seeds = self.arrays(self.epoch, with_seeds)
        order, seeds = order[self.skip :], seeds[self.skip :]
        self.epoch, self.skip = self.epoch + 1, 0
        return order, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # the epoch advances now, not at the first item; pairs are made a chunk at a time (a list of
        # every pair took ~100 bytes an item: 320 MB for a 3.2M-text epoch)
        order, seeds = self.next_arrays()
        return _pairs(order, seeds)


class _SizedSampler(tud.Sampler[int]):
    """An unseeded order in length buckets (shuffled from torch's global RNG, or a `generator` that a
    distributed run shares between processes), or by size when not shuffled."""

    def __init__(self, n: int, shuffle: bool, sizes: torch.Tensor, bs: int) -> None:
        self.n, self.shuffle, self.sizes, self.bs = n, shuffle, sizes, bs
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        if g is None and self.shuffle:
            g = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
        return iter(_epoch_order(self.n, self.shuffle, self.sizes, self.bs, g).tolist())


class _Batches(tud.Sampler[Any]):
    """Whole batches of keys from an item sampler (`inner`, which keeps the epoch and may be one process's
    shard): an index tensor per batch, and its batch seed when the keys are seeded."""

    def __init__(self, inner: Any, bs: int, drop_last: bool, seeds: bool = True) -> None:
        self.inner, self.bs, self.drop_last, self.seeds = inner, bs, drop_last, seeds

    def __len__(self) -> int:
        n = len(self.inner)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int | None]]:
        seeds: list[int | None]
        if isinstance(self.inner, _SeededSampler):  # the order as tensors: no Python object per item
            idx, item_seeds = self.inner.next_arrays(with_seeds=self.seeds)
            seeds = [_batch_seed(s) for s in item_seeds[:: self.bs].tolist()] if self.seeds else []
            seeds += [None] * (math.ceil(len(idx) / self.bs) - len(seeds))
        elif isinstance(self.inner, tud.SequentialSampler):
            idx = torch.arange(len(self.inner))
            seeds = [None] * math.ceil(len(idx) / self.bs)
        else:
            keys = list(iter(self.inner))
            if keys and isinstance(keys[0], tuple):
                idx = torch.tensor([k[0] for k in keys], dtype=torch.int64)
                seeds = [_batch_seed(k[1]) for k in keys[:: self.bs]]
            else:
                idx = torch.as_tensor(keys, dtype=torch.int64)
                seeds = [None] * math.ceil(len(keys) / self.bs)
        n = int(idx.shape[0])
        stop = n - n % self.bs if self.drop_last else n
        for j, start in enumerate(range(0, stop, self.bs)):
            yield idx[start : start + self.bs], seeds[j]


@runtime_checkable
class BatchedItems(Protocol):
    """A dataset that builds a whole batch at once from an index tensor (a table held as tensors): the
    loader then takes one index per batch instead of collating items one by one."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...

    def get_batch(self, idxs: torch.Tensor) -> tuple[Any, ...]:
        """The batch of the items at positions `idxs` (int64, 1-d), as collated (typed) tensors."""
        ...


class _BatchFetch(tud.Dataset[Any]):
    """What torch's loader indexes in whole-batch mode: a key (index tensor, batch seed) -> a batch."""

    def __init__(self, dataset: BatchedItems) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[torch.Tensor, int | None]) -> Any:
        idx, seed = key
        return tuple(self.dataset.get_batch(idx)), [], seed


def _as_batch(b: Any) -> Any:
    """The collate_fn of whole-batch mode: the dataset already built the batch."""
    return b


def _item_groups(dataset: Any) -> list[int] | None:
    """The group (shard file) of each item of a split whose items say which file holds them, else None."""
    items = getattr(getattr(dataset, "dsets", None), "items", None)
    groups = getattr(items, "groups", None)
    if not callable(groups) or not hasattr(dataset, "idxs"):
        return None
    of_item = groups()
    return [int(of_item[i]) for i in dataset.idxs]


class DataLoader:
    """Batches of one split, as tuples of plain tensors on `device`.

    `dataset` is any sequence of tuples (a Datasets subset, or a plain list of (x, y)). Item transforms
    run in `num_workers` worker processes (`None`: `default_num_workers`), kept alive across epochs;
    batch transforms run on the device, drawing from torch's global RNG. With `seed`, the order, the
    random item transforms and the random batch transforms (each batch from its own seed, torch's RNG
    left as it was) are the same on every run whatever `num_workers` is.

    `skip_bad_files` (default: the Datasets' setting): an item that fails to build (a corrupt image) is
    replaced by the next good item, so batches keep their size, and the loader warns once per epoch with
    the list (`bad_items` keeps it). Checking every file up front would cost a full decoding pass, so bad
    files are found as they are read; a replaced item appears twice in that epoch.

    `sizes` (one number per item, e.g. a text's length): a shuffled loader draws each batch from items of
    similar size (shuffled length buckets), an unshuffled one goes largest first, so little is padded.
    A dataset that is `BatchedItems` (a table held as tensors) is fetched a whole batch at a time: one
    index per batch, no per-item collation, no workers by default.
    """

    def __init__(
        self,
        dataset: Sequence[Any],
        bs: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        item_tfms: TransformsLike | Pipeline = None,
        batch_tfms: TransformsLike | Pipeline = None,
        split_idx: int | None = None,
        seed: int | None = None,
        pin_memory: bool | None = None,
        dsets: Datasets | None = None,
        n_inp: int | None = None,
        skip_bad_files: bool | None = None,
        sizes: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        if bs < 1:
            raise ValueError(f"DataLoader: bs must be >= 1, got {bs}.\nhelp: e.g. bs=64")
        self.dataset, self.bs, self.shuffle, self.drop_last = dataset, bs, shuffle, drop_last
        self.sizes = None if sizes is None else torch.as_tensor(sizes).flatten()
        if self.sizes is not None and len(self.sizes) != len(dataset):
            raise ValueError(
                f"DataLoader: {len(self.sizes)} sizes for {len(dataset)} items.\n"
                "help: give one size per item of the dataset, in its order"
            )
        self.batched = isinstance(dataset, BatchedItems)
        if num_workers is None:
            num_workers = 0 if self.batched else default_num_workers(dataset, bs)
        self.num_workers = num_workers
        self.device = torch.device(device) if device is not None else default_device()
        self.split_idx, self.seed, self.dsets = split_idx, seed, dsets
        self.item_tfms = _as_pipeline(item_tfms, split_idx)
        self.batch_tfms = _as_pipeline(batch_tfms, split_idx)
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.n_inp = n_inp if n_inp is not None else (dsets.n_inp if dsets is not None else 1)
        default_skip = dsets.skip_bad_files if dsets is not None else False
        self.skip_bad_files = default_skip if skip_bad_files is None else skip_bad_files
        self.bad_items: dict[int, str] = {}  # position in `dataset` -> why it failed, over all epochs so far
        self._types: tuple[type, ...] | None = None
        self._on_host = True
        self._batch_types: tuple[type, ...] | None = None
        self._items: _ItemDataset | None = None
        self._sampler: tud.Sampler[Any] | None = None
        self._torch_dl: tud.DataLoader[Any] | None = None
        self._unsharded: tuple[tud.DataLoader[Any], torch.device, bool] | None = None
        self._shard_sampler: ShardSampler | None = None

    # -- building the torch loader -------------------------------------------------------------------------
    def _item_ds(self) -> _ItemDataset:
        if self._items is None:
            self._items = _ItemDataset(self.dataset, self.item_tfms, self.skip_bad_files)
        return self._items

    @property
    def torch_loader(self) -> tud.DataLoader[Any]:
        """The torch DataLoader the batches come from (built on first use: sampler, workers, pinning).

        Set it to draw from another one built on it, e.g. one process's shard of its sampler."""
        if self._torch_dl is None:
            self._torch_dl = self._make_torch_dl()
        return self._torch_dl

    @torch_loader.setter
    def torch_loader(self, loader: tud.DataLoader[Any]) -> None:
        self._torch_dl = loader

    def _make_torch_dl(self) -> tud.DataLoader[Any]:
        n = len(self.dataset)
        generator = None
        if self.seed is not None:
            self._sampler = _SeededSampler(n, self.shuffle, int(self.seed), self.sizes, self.bs)
            # workers' base seeds from our own generator: loading never draws from the global RNG
            generator = torch.Generator().manual_seed(int(self.seed))
        elif self.sizes is not None:
            self._sampler = _SizedSampler(n, self.shuffle, self.sizes, self.bs)
        elif self.shuffle:
            self._sampler = tud.RandomSampler(range(n))
        else:
            self._sampler = tud.SequentialSampler(range(n))
        return self._torch_dl_over(self._sampler, generator)

    def _torch_dl_over(self, sampler: Any, generator: torch.Generator | None) -> tud.DataLoader[Any]:
        """The torch DataLoader drawing items (or, for BatchedItems, whole batches) in `sampler`'s order."""
        workers = self.num_workers > 0
        common: dict[str, Any] = {
            "num_workers": self.num_workers,
            # items already on a GPU cannot (and need not) be pinned
            "pin_memory": self.pin_memory and len(self.dataset) > 0 and self._items_on_host(),
            # workers start once, not every epoch; the sampler (epoch counter) lives in this process
            "persistent_workers": workers,
            "prefetch_factor": 4 if workers else None,
            "generator": generator,
        }
        if self.batched:
            # the batch transforms' seeds (drawn per epoch) only when there are batch transforms to seed
            batches = _Batches(sampler, self.bs, self.drop_last, seeds=len(self.batch_tfms) > 0)
            fetch = _BatchFetch(self.dataset)  # type: ignore[arg-type]
            return tud.DataLoader(fetch, batch_size=None, sampler=batches, collate_fn=_as_batch, **common)
        return tud.DataLoader(
            self._item_ds(),
            batch_size=self.bs,
            sampler=sampler,
            drop_last=self.drop_last,
            collate_fn=_collate_items,
            **common,
        )

    # -- one process's shard ---------------------------------------------------------------------------------
    def shard(self, rank: int, world: int, even: bool, seed: int, device: torch.device | None = None) -> None:
        """Draw only process `rank`'s share of every epoch from now on: every `world`-th item of the same
        order (`even`: padded so that every process gets as many; an unseeded shuffle takes `seed`, shared
        by the processes, so that all shuffle alike). `unshard()` puts the whole loader back."""
        if self._unsharded is not None:
            raise RuntimeError("DataLoader.shard: already sharded.\nhelp: call unshard() first")
        base = self.torch_loader
        sampler = self._sampler
        generator_set = False
        if self.seed is None and self.shuffle and getattr(sampler, "generator", 0) is None:
            sampler.generator = torch.Generator().manual_seed(seed)  # type: ignore[union-attr]
            generator_set = True
        groups = _item_groups(self.dataset) if even else None  # training: each process reads its own files
        shard = ShardSampler(sampler, rank, world, even=even, drop_last=self.drop_last, groups=groups)
        self._shard_sampler = shard
        self._unsharded = (base, self.device, generator_set)
        self._torch_dl = self._torch_dl_over(shard, base.generator)
        if device is not None:
            self.device = torch.device(device)

    def unshard(self) -> None:
        """Draw every item again (and on the device it had before `shard`)."""
        if self._unsharded is None:
            return
        base, device, generator_set = self._unsharded
        self._torch_dl, self.device, self._unsharded = base, device, None
        self._shard_sampler = None
        if generator_set:
            self._sampler.generator = None  # type: ignore[union-attr]

    @property
    def is_sharded(self) -> bool:
        return self._unsharded is not None

    @property
    def epoch(self) -> int | None:
        """The epoch a seeded loader draws next (its order and augmentation follow from it); None unseeded."""
        if self.seed is None:
            return None
        _ = self.torch_loader
        assert isinstance(self._sampler, _SeededSampler)
        return self._sampler.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        if self.seed is not None:
            _ = self.torch_loader
            assert isinstance(self._sampler, _SeededSampler)
            self._sampler.epoch = int(epoch)

    def _first_item(self) -> tuple[Any, ...]:
        if len(self.dataset) == 0:
            raise ValueError("DataLoader: the dataset is empty.\nhelp: check get_items and the splitter")
        key = (0, int(self.seed)) if self.seed is not None else 0
        item = self._item_ds().__getitems__([key])[0]
        return item.item if isinstance(item, _Replaced) else item

    @property
    def types(self) -> tuple[type, ...]:
        """The semantic types of one item after the item transforms (read once, from the first item)."""
        if self._types is None:
            first = self._first_item()
            self._types = tuple(type(e) for e in first)
            self._on_host = not any(isinstance(e, torch.Tensor) and e.device.type != "cpu" for e in first)
        return self._types

    def _items_on_host(self) -> bool:
        """Whether the items' tensors are in host memory (read with the types, from the first item)."""
        _ = self.types
        return self._on_host

    def __len__(self) -> int:
        """Batches per epoch (of this process's shard, when sharded)."""
        if self._unsharded is not None:
            return len(self.torch_loader)
        n = len(self.dataset)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if len(self.dataset) == 0:  # e.g. no validation set: no batch, rather than an error mid-fit
            return
        types = self.types
        bad: dict[int, str] = {}
        loader = self.torch_loader
        if self.batched and self.num_workers == 0 and not loader.pin_memory:
            # whole batches built in this process: index them straight from the batch sampler, without
            # the torch iterator's per-batch bookkeeping (a table's batch costs microseconds)
            get_batch = self.dataset.get_batch  # type: ignore[attr-defined]
            plain = None  # plain CPU tensors for a CPU loader without batch transforms: passed on as they are
            for idx, seed in loader.sampler:
                b = get_batch(idx)
                if plain is None:
                    plain = self.device.type == "cpu" and not len(self.batch_tfms)
                    plain = plain and all(type(t) is torch.Tensor and t.device.type == "cpu" for t in b)
                yield tuple(b) if plain else self._after_collate(b, types, seed)
            return
        source: Any = loader
        try:
            for b, b_bad, b_seed in source:
                if b_bad:
                    bad.update((int(i), str(m)) for i, m in b_bad)
                yield self._after_collate(b, types, b_seed)
        finally:
            if bad:
                self._report_bad(bad)

    def _report_bad(self, bad: dict[int, str]) -> None:
        self.bad_items.update(bad)
        lines = "\n".join(f"  {m}" for m in list(bad.values())[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        warnings.warn(
            f"DataLoader: skipped {len(bad)} item(s) that failed to build, each replaced by the next good "
            f"item:\n{lines}{more}\nhelp: fix or remove these files; `dl.bad_items` lists them",
            stacklevel=3,
        )

    def _after_collate(
        self, b: Sequence[Any], types: tuple[type, ...], seed: int | None = None
    ) -> tuple[torch.Tensor, ...]:
        # pinning turns the batch tuple into a list: make it a tuple again
        out: tuple[Any, ...] = tuple(b)
        on_cpu = self.device.type == "cpu"
        if not (on_cpu and all(type(t) is torch.Tensor and t.device.type == "cpu" for t in out)):
            out = to_device(out, self.device, non_blocking=self.pin_memory)  # (plain CPU tensors stay)
        if len(self.batch_tfms):
            # collated here: nobody else holds it, the batch transforms may reuse it
            with owned_input(), _seeded_rng(seed, self.device):
                out = self.batch_tfms(_retype(out, types))
            if self._batch_types is None:
                self._batch_types = tuple(type(e) for e in out)
            out = tuple(strip_type(e) for e in out)
        return out

    @property
    def batch_types(self) -> tuple[type, ...]:
        """The semantic types of a batch after the batch transforms (what decoding starts from)."""
        if self._batch_types is None:
            if not len(self.batch_tfms):
                return self.types
            # one item through the batch pipeline is enough to learn the output types
            b = self._after_collate_typed(collate([self._first_item()]))
            self._batch_types = tuple(type(e) for e in b)
        return self._batch_types

    def set_types(self, types: tuple[type, ...], batch_types: tuple[type, ...]) -> None:
        """Give the semantic types of an item and of a batch, for a loader without items to read them from."""
        self._types, self._batch_types = tuple(types), tuple(batch_types)

    def add_batch_tfms(self, tfms: TransformsLike) -> None:
        """Append batch transforms (e.g. a Normalize); the batch's types are read again."""
        self.batch_tfms.add(tfms)
        self._batch_types = None

    def typed_batch(self, b: Sequence[Any]) -> tuple[Any, ...]:
        """A collated batch on the device with the items' semantic types: what the batch transforms get."""
        return _retype(to_device(tuple(b), self.device), self.types)

    def _after_collate_typed(self, b: tuple[Any, ...]) -> tuple[Any, ...]:
        return self.batch_tfms(self.typed_batch(b))

    def _first_keys(self) -> list[Any]:
        n = min(self.bs, len(self.dataset))
        if self.seed is not None:
            if self._sampler is None:
                _ = self.torch_loader
            assert isinstance(self._sampler, _SeededSampler)
            return self._sampler.keys(self._sampler.epoch, n)  # the next epoch's first batch
        if self.shuffle:
            return torch.randperm(len(self.dataset))[:n].tolist()
        if self.sizes is not None:
            return size_order(self.sizes)[:n].tolist()
        return list(range(n))

    def skip_batches(self, n: int) -> None:
        """The next pass leaves out its first `n` batches without building them (resuming mid-epoch).

        Only a seeded loader can: its order and augmentation depend on the epoch alone, so the rest of the
        epoch is what it would have been. A sharded loader skips `n` batches of its own shard (every process
        of a distributed run skips as many, so together they resume where they stopped).
        """
        if not isinstance(self._sampler, _SeededSampler):
            raise ValueError(
                "DataLoader.skip_batches: only a seeded loader can replay an epoch from its middle.\n"
                "help: build the DataLoaders with seed=..."
            )
        if self._shard_sampler is not None:
            self._shard_sampler.skip = n * self.bs
        else:
            self._sampler.skip = n * self.bs

    def one_batch(self) -> tuple[torch.Tensor, ...]:
        """The first batch of an epoch (plain tensors on the device), built in this process.

        No worker starts for it, and a seeded loader's epoch doesn't advance: the next epoch starts with it.
        """
        if len(self) == 0:
            raise ValueError(
                f"DataLoader: no batch from {len(self.dataset)} items with bs={self.bs}, "
                f"drop_last={self.drop_last}.\n"
                "help: check get_items and the splitter, or lower bs"
            )
        types = self.types
        keys = self._first_keys()
        if self.batched:
            first = keys[0]
            idx = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys], dtype=torch.int64)
            seed = _batch_seed(first[1]) if isinstance(first, tuple) else None
            b = tuple(self.dataset.get_batch(idx))  # type: ignore[attr-defined]
            return self._after_collate(b, types, seed)
        b, bad, seed = _collate_items(self._item_ds().__getitems__(keys))
        if bad:
            self._report_bad(dict(bad))
        return self._after_collate(b, types, seed)

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
    ) -> Figure | DataFrame:
        """A grid of decoded items, each input shown with its target as the title."""
        items = self.decode_batch(b if b is not None else self.one_batch(), max_n=max_n)
        return show_decoded(items, nrows=nrows, ncols=ncols, figsize=figsize)

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
        skip_bad_files: bool | None = None,
        sizes: Sequence[float] | torch.Tensor | None = None,
    ) -> DataLoader:
        """A copy with some settings changed (same transforms, shared, unless given; the item sizes are
        kept for the same dataset, dropped for another one unless given)."""
        if sizes is None and dataset is None:
            sizes = self.sizes
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
            pin_memory=self.pin_memory if device is None else None,
            dsets=self.dsets,
            n_inp=self.n_inp if n_inp is None else n_inp,
            skip_bad_files=self.skip_bad_files if skip_bad_files is None else skip_bad_files,
            sizes=sizes,
        )

    def __repr__(self) -> str:
        n = len(self.dataset)
        return f"DataLoader({n} items, bs={self.bs}, shuffle={self.shuffle}, device={self.device})"


def _as_pipeline(tfms: TransformsLike | Pipeline, split_idx: int | None) -> Pipeline:
    if isinstance(tfms, Pipeline):
        return tfms.with_split(split_idx)
    return Pipeline(tfms, split_idx=split_idx)


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
                old, text = ax.get_title(), value_title(e)
                ax.set_title(f"{old}\n{text}" if old else text, fontsize=10)
        if titles is not None:
            old = ax.get_title()
            ax.set_title(f"{old}\n{titles[i]}" if old else titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def show_decoded(
    items: Sequence[tuple[Any, ...]],
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    titles: Sequence[str] | None = None,
) -> Figure | DataFrame:
    """Show decoded tuples the way their type chooses: items whose first element's type has a
    `show_many(items, titles)` classmethod (rows of a table) as that returns (a DataFrame), else a grid."""
    show_many = getattr(type(items[0][0]), "show_many", None) if items and items[0] else None
    if callable(show_many):
        return show_many(items, titles)
    return show_items(items, nrows=nrows, ncols=ncols, figsize=figsize, titles=titles)


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
        """DataLoaders over two plain sequences of (x, y) tuples (tensors or numbers); validation bs is 2x."""
        train = DataLoader(
            train_ds,
            bs=bs,
            shuffle=shuffle,
            drop_last=shuffle and len(train_ds) > bs,
            num_workers=num_workers,
            device=device,
            split_idx=0,
            seed=seed,
            n_inp=n_inp,
        )
        valid = DataLoader(
            valid_ds,
            bs=bs * 2,
            shuffle=False,
            num_workers=num_workers,
            device=device,
            split_idx=1,
            seed=seed,
            n_inp=n_inp,
        )
        return cls(train, valid, loss_func=loss_func)

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
    ) -> Figure | DataFrame:
        return self.train.show_batch(max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize)

    def new(
        self, bs: int | None = None, device: torch.device | str | None = None, num_workers: int | None = None
    ) -> DataLoaders:
        """The same data with another batch size (validation keeps its ratio to it), device or workers."""
        valid_bs = None if bs is None else max(1, bs * self.valid.bs // self.train.bs)
        return DataLoaders(
            self.train.new(bs=bs, device=device, num_workers=num_workers),
            self.valid.new(bs=valid_bs, device=device, num_workers=num_workers),
            loss_func=self._loss_factory,
        )

    def test_dl(
        self,
        items: Sequence[Any],
        with_labels: bool = False,
        bs: int | None = None,
        skip_getters: bool = False,
    ) -> DataLoader:
        """A loader over new raw items with the validation transforms (inputs only unless `with_labels`).

        `skip_getters`: the items are already what get_x returns (e.g. image paths for a table-based
        learner). A bad item raises (never skipped: predictions must line up with the items), and a few
        items load in this process rather than starting workers.
        """
        if self.dsets is None:
            raise ValueError(
                "test_dl needs DataLoaders built from Datasets; these were built from plain tuples.\n"
                "help: build them with a DataBlock or an application's factory"
            )
        dsets = self.dsets
        elements = list(range(len(dsets.pipelines))) if with_labels else list(range(self.n_inp))
        items = list(items) if not hasattr(items, "iloc") else items
        ds = _RawItems(dsets, items, elements, skip_getters)
        bs = self.valid.bs if bs is None else bs
        return self.valid.new(
            dataset=ds,
            shuffle=False,
            drop_last=False,
            bs=bs,
            num_workers=min(self.valid.num_workers, default_num_workers(ds, bs)),
            skip_bad_files=False,
        )

    def __repr__(self) -> str:
        return f"DataLoaders(train={self.train!r}, valid={self.valid!r})"


class _RawItems(Sequence[tuple[Any, ...]]):
    """New raw items through some elements' pipelines of a Datasets (for test_dl and predict)."""

    def __init__(self, dsets: Datasets, items: Any, elements: Sequence[int], skip_getters: bool) -> None:
        self.dsets, self.items, self.elements, self.skip_getters = dsets, items, list(elements), skip_getters

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        item = get_item(self.items, i)
        return self.dsets.build(item, index=i, elements=self.elements, skip_getters=self.skip_getters)

    def describe(self, i: int) -> str:
        return f"item {i} {describe_item(get_item(self.items, i))}"


def _pairs(order: torch.Tensor, seeds: torch.Tensor, chunk: int = 65_536) -> Iterator[tuple[int, int]]:
    """(index, seed) pairs of an epoch, converted to Python a chunk at a time."""
    for start in range(0, len(order), chunk):
        yield from zip(
            order[start : start + chunk].tolist(), seeds[start : start + chunk].tolist(), strict=True
        )
