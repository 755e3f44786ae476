"""Length buckets, whole-batch datasets and shards: which items go in which batch, and in which process."""

from __future__ import annotations

import torch

from lamina.data import DataLoader
from lamina.data.order import bucket_order, shard_keys


def _padding_waste(batches: list[torch.Tensor], sizes: torch.Tensor) -> float:
    padded = sum(len(b) * int(sizes[b].max()) for b in batches)
    return 1 - float(sizes.sum()) / padded


def test_bucket_order_is_a_permutation_with_little_padding() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 500, (5000,), generator=g)
    order = torch.randperm(5000, generator=g)
    bucketed = bucket_order(order, sizes, 32, torch.Generator().manual_seed(1))
    assert sorted(bucketed.tolist()) == list(range(5000))
    plain = _padding_waste(list(order.split(32)), sizes)
    waste = _padding_waste(list(bucketed.split(32)), sizes)
    assert plain > 0.4 and waste < 0.05, (plain, waste)
    assert int(sizes[bucketed[:32]].max()) == int(sizes.max())  # the biggest batch comes first


class _Sized:
    """Items (a tensor of `size` ones, its size) for a loader with `sizes`."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.sizes[i]), torch.tensor(i)


def test_loader_with_sizes_buckets_training_and_sorts_validation() -> None:
    sizes = torch.randint(1, 1000, (640,), generator=torch.Generator().manual_seed(3)).tolist()
    ds = _Sized(sizes)
    train = DataLoader(ds, bs=16, shuffle=True, seed=0, num_workers=0, sizes=sizes)
    batches = [b[1] for b in train]
    assert sorted(torch.cat(batches).tolist()) == list(range(640))
    assert _padding_waste(batches, torch.tensor(sizes)) < 0.1
    assert [
        b[1].tolist() for b in DataLoader(ds, bs=16, shuffle=True, seed=0, num_workers=0, sizes=sizes)
    ] == [b.tolist() for b in batches]  # seeded: the same buckets on every run
    valid = DataLoader(ds, bs=64, shuffle=False, num_workers=0, sizes=sizes)
    seen = torch.cat([b[0] for b in valid])
    assert seen.tolist() == sorted(sizes, reverse=True)
    unseeded = DataLoader(ds, bs=16, shuffle=True, num_workers=0, sizes=sizes)
    assert _padding_waste([b[1] for b in unseeded], torch.tensor(sizes)) < 0.1


class _Table:
    """A table held as tensors: items one at a time (types, display) or a whole batch from an index."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
        self.y = torch.arange(n) % 7
        self.calls = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def get_batch(self, idxs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.x[idxs], self.y[idxs]


def test_batched_dataset_gives_the_batches_of_the_item_path_in_one_fetch_each() -> None:
    table = _Table(103)
    items = [table[i] for i in range(103)]  # the same rows as a plain list: per-item collation
    for shuffle, drop_last in ((True, True), (False, False)):
        fast = DataLoader(table, bs=10, shuffle=shuffle, drop_last=drop_last, seed=5, device="cpu")
        slow = DataLoader(
            items, bs=10, shuffle=shuffle, drop_last=drop_last, seed=5, device="cpu", num_workers=0
        )
        assert fast.batched and not slow.batched and fast.num_workers == 0
        table.calls = 0
        got, want = list(fast), list(slow)
        assert table.calls == len(fast) == len(want)
        for a, b in zip(got, want, strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    fast = DataLoader(table, bs=10, shuffle=True, seed=5, device="cpu")
    first = fast.one_batch()
    assert torch.equal(first[0], next(iter(fast))[0])  # one_batch is the next epoch's first batch


def test_batched_dataset_resumes_mid_epoch_and_keeps_its_epoch() -> None:
    table = _Table(100)
    dl = DataLoader(table, bs=8, shuffle=True, seed=1, device="cpu")
    _ = list(dl)
    second = [b[1] for b in dl]
    assert dl.epoch == 2
    again = DataLoader(table, bs=8, shuffle=True, seed=1, device="cpu")
    again.epoch = 1
    again.skip_batches(3)
    rest = [b[1] for b in again]
    assert len(rest) == len(second) - 3 and all(
        torch.equal(a, b) for a, b in zip(rest, second[3:], strict=True)
    )


def test_sharded_batched_loader_splits_the_items_like_the_item_path() -> None:
    table = _Table(45)
    whole = torch.cat([b[1] for b in DataLoader(table, bs=4, shuffle=False, device="cpu")])
    parts = []
    for rank in range(2):
        dl = DataLoader(table, bs=4, shuffle=False, device="cpu")
        dl.shard(rank, 2, even=False, seed=0)
        assert dl.is_sharded and len(dl) == len(list(dl))
        parts.append(torch.cat([b[1] for b in dl]))
        dl.unshard()
        assert not dl.is_sharded and len(dl) == 12
    # every other item of the same order, as the validation gather expects
    assert parts[0].tolist() == shard_keys(whole.tolist(), 0, 2, False, False)
    assert parts[1].tolist() == shard_keys(whole.tolist(), 1, 2, False, False)


def test_group_keys_deal_whole_files_to_processes() -> None:
    from lamina.data.order import group_keys

    groups = [i // 10 for i in range(60)]  # 6 files of 10 items
    keys = [(int(k), 7) for k in torch.randperm(60, generator=torch.Generator().manual_seed(0))]
    parts = [group_keys(keys, groups, r, 3, even=True, drop_last=False, epoch=0) for r in range(3)]
    files = [{groups[k[0]] for k in p} for p in parts]
    assert all(len(f) == 2 for f in files) and set().union(*files) == set(range(6))  # disjoint, all dealt
    assert sorted(k for p in parts for k in p) == sorted(keys)  # every key once
    assert parts[0] == [k for k in keys if groups[k[0]] in files[0]]  # the epoch's order, filtered
    assert files != [
        {groups[k[0]] for k in p} for p in (group_keys(keys, groups, r, 3, True, False, 1) for r in range(3))
    ]
    uneven = [min(g, 4) for g in groups]  # 5 files for 2 processes: 3 and 2 files, as many keys each
    lens = {len(group_keys(keys, uneven, r, 2, even=True, drop_last=True, epoch=0)) for r in range(2)}
    assert lens == {30}  # every process makes as many steps
    one_file = [group_keys(keys, [0] * 60, r, 2, even=True, drop_last=False, epoch=0) for r in range(2)]
    assert one_file == [keys[0::2], keys[1::2]]  # fewer files than processes: every other key
