"""The order of an epoch's items: length buckets, and one process's shard of an order.

Kept apart from the loader so that the rules are small and testable: which items go in which batch, and
which of them a process of a distributed run takes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.utils.data as tud

__all__ = ["BUCKET_BATCHES", "ShardSampler", "bucket_order", "group_keys", "shard_keys", "size_order"]

# a bucket spans this many batches: wide enough to shuffle well, narrow enough that a batch's items are alike
BUCKET_BATCHES = 50


def size_order(sizes: torch.Tensor) -> torch.Tensor:
    """Positions sorted by size, largest first (stable): an unshuffled loader pads least this way."""
    return torch.sort(sizes, descending=True, stable=True).indices


def bucket_order(
    order: torch.Tensor, sizes: torch.Tensor, bs: int, g: torch.Generator | None
) -> torch.Tensor:
    """`order` (a shuffled permutation) re-arranged so that each batch holds items of similar size.

    The order is cut into buckets of `BUCKET_BATCHES` batches, each bucket sorted by size, then the batches
    are shuffled (with `g`), except that the batch holding the largest item comes first: a batch too big
    for memory fails at once rather than mid-epoch.
    """
    n = len(order)
    if n <= bs:
        return order
    span = bs * BUCKET_BATCHES
    parts = []
    for start in range(0, n, span):
        chunk = order[start : start + span]
        parts.append(chunk[size_order(sizes[chunk])])
    arranged = torch.cat(parts)
    batches = list(arranged.split(bs))
    # the last, possibly short, batch stays last (drop_last may cut it)
    full, tail = (batches[:-1], batches[-1:]) if len(batches[-1]) < bs else (batches, [])
    perm = torch.randperm(len(full), generator=g).tolist()
    full = [full[i] for i in perm]
    biggest = max(range(len(full)), key=lambda i: int(sizes[full[i]].max()))
    full.insert(0, full.pop(biggest))
    return torch.cat(full + tail)


def shard_keys(keys: Sequence[Any], rank: int, world: int, even: bool, drop_last: bool) -> list[Any]:
    """Every `world`-th key from `rank` on; `even`: first padded (repeating the start) or, with
    `drop_last`, cut to a multiple of `world`, so that every process gets as many."""
    items = list(keys)
    n = len(items)
    if even and n:
        if drop_last:
            items = items[: n - n % world]
        else:
            items += [items[i % n] for i in range((-n) % world)]
    return items[rank::world]


def group_keys(
    keys: Sequence[Any],
    groups: Sequence[int],
    rank: int,
    world: int,
    even: bool,
    drop_last: bool,
    epoch: int,
) -> list[Any]:
    """Process `rank`'s keys when items come in groups (a shard file each): the epoch's groups are
    shuffled and dealt out, and the process keeps the keys of its own groups, in `keys`' order, so that
    it reads only its own files (with fewer files than processes, every `world`-th key). `even`: every
    process gets as many (len // world, or its ceiling without `drop_last`): a process with fewer repeats
    its first keys, one with more leaves its last ones out."""
    ids = sorted(set(groups))
    if len(ids) < world:  # too few files to give each process its own: every world-th key, as without
        return shard_keys(keys, rank, world, even, drop_last)
    g = torch.Generator().manual_seed(1_000_003 * len(ids) + epoch)
    mine = {ids[i] for i in torch.randperm(len(ids), generator=g)[rank::world].tolist()}
    out = [k for k in keys if groups[k[0] if isinstance(k, tuple) else k] in mine]
    if not even:
        return out
    n = len(keys) // world if drop_last else math.ceil(len(keys) / world)
    if out:
        out += [out[i % len(out)] for i in range(max(0, n - len(out)))]
    return out[:n]


class ShardSampler(tud.Sampler[Any]):
    """One process's shard of another sampler's order (see `shard_keys`); `inner` keeps the epoch.

    With `groups` (one group id per item, e.g. the shard file it is stored in), each process takes whole
    groups instead (see `group_keys`)."""

    def __init__(
        self,
        inner: Any,
        rank: int,
        world: int,
        even: bool,
        drop_last: bool,
        groups: Sequence[int] | None = None,
    ) -> None:
        self.inner, self.rank, self.world, self.even, self.drop_last = inner, rank, world, even, drop_last
        self.groups = groups
        self.skip = 0  # keys of this shard the next pass leaves out at its start (resuming mid-epoch)
        self._passes = 0  # the epoch, for an inner sampler that does not count them

    def __len__(self) -> int:
        n = len(self.inner)
        if not self.even:
            return len(range(self.rank, n, self.world))
        return n // self.world if self.drop_last else math.ceil(n / self.world)

    def __iter__(self) -> Iterator[Any]:
        epoch = getattr(self.inner, "epoch", self._passes)
        self._passes += 1
        if self.groups is not None:
            keys = group_keys(
                list(iter(self.inner)), self.groups, self.rank, self.world, self.even, self.drop_last, epoch
            )
        else:
            keys = shard_keys(list(iter(self.inner)), self.rank, self.world, self.even, self.drop_last)
        skip, self.skip = self.skip, 0
        return iter(keys[skip:])
