"""DataLoader and DataLoaders: plain-tensor batches, decoding and showing, test_dl, and reproducibility."""

from __future__ import annotations

import io
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from lamina.core import Category, MultiCategory, TensorCategory, TensorImage, Transform, input_is_owned
from lamina.data import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataLoader,
    DataLoaders,
    MultiCategoryBlock,
    RandomSplitter,
    RegressionBlock,
    TransformBlock,
    get_image_files,
    parent_label,
    to_device,
)
from lamina.data import loader as loader_module
from lamina.data.loader import collate, default_num_workers

vision = pytest.importorskip("lamina.vision.core")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")


class Noise(Transform):
    """A random augmentation of the training set only, drawing from torch's and Python's RNGs."""

    split_idx = 0
    order = 5

    def encodes(self, x: TensorImage) -> TensorImage:
        jitter = torch.rand(x.shape) + random.random()
        return (x.float() + jitter).as_subclass(TensorImage)


class RandomShift(Transform):
    """Random on every split (split_idx None), like a random crop that is also used on validation."""

    def encodes(self, x: TensorImage) -> TensorImage:
        return (x.float() + torch.randint(0, 100, ())).as_subclass(TensorImage)


def image_block(png_folder: Path, item_tfms: list[Transform] | None = None) -> DataBlock:
    return DataBlock(
        blocks=(vision.ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=item_tfms,
    )


def epochs(dl: DataLoader, n: int = 2) -> list[list[torch.Tensor]]:
    return [[t.clone() for b in dl for t in b] for _ in range(n)]


def same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(s, t) for s, t in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def test_batches_reaching_the_model_are_plain_tensors(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    for b in (dls.one_batch(), next(iter(dls.valid))):
        assert all(type(t) is torch.Tensor for t in b)
    assert dls.train.types == (TensorImage, TensorCategory)
    assert dls.train.batch_types[0] is TensorImage


class SeesOwnership(Transform):
    """Records, per call, whether the batch it gets belongs to the pipeline (may be overwritten)."""

    order = 50

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def encodes(self, x: TensorImage) -> TensorImage:
        self.seen.append(input_is_owned())
        return x


def test_batch_transforms_own_the_batch_only_inside_the_loader(png_folder: Path) -> None:
    probe = SeesOwnership()
    block = image_block(png_folder)
    block.batch_tfms = [probe]
    dls = block.dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    list(dls.train)
    assert probe.seen and all(probe.seen)  # a collated batch: the transforms may reuse it
    probe.seen.clear()
    block.summary(png_folder, file=io.StringIO())  # shows every step: nothing may be overwritten there
    assert probe.seen and not any(probe.seen)
    assert not input_is_owned()


def test_decode_batch_gives_labels_and_pixels(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    b = dls.one_batch()
    decoded = dls.decode_batch(b, max_n=3)
    assert len(decoded) == 3
    img, lbl = decoded[0]
    assert type(img) is TensorImage and img.dtype == torch.uint8  # IntToFloatTensor undone
    assert isinstance(lbl, Category) and lbl in ("cat", "dog")


def test_show_batch_returns_a_figure(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    fig = dls.show_batch(max_n=4)
    try:
        assert isinstance(fig, Figure)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert len(titles) == 4 and set(titles) <= {"cat", "dog"}
    finally:
        plt.close(fig)


def test_show_batch_with_multi_label_and_regression_targets(table: pd.DataFrame) -> None:
    def feats(r: pd.Series) -> torch.Tensor:
        return torch.tensor([r["a"], r["b"]], dtype=torch.float32)

    multi = DataBlock(
        blocks=(TransformBlock, MultiCategoryBlock),
        get_x=feats,
        get_y=ColReader("tags", label_delim=" "),
        splitter=ColSplitter(),
    ).dataloaders(table, bs=4, num_workers=0, device="cpu")
    decoded = multi.decode_batch(multi.one_batch())
    assert all(isinstance(d[1], MultiCategory) for d in decoded)
    fig = multi.show_batch(max_n=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert len(titles) == 4 and any(";" in t or t in ("x", "y", "z") for t in titles)

    reg = DataBlock(
        blocks=(TransformBlock, RegressionBlock),
        get_x=feats,
        get_y=ColReader("target"),
        splitter=ColSplitter(),
    ).dataloaders(table, bs=4, num_workers=0, device="cpu")
    fig = reg.show_batch(max_n=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert len(titles) == 4
    for t in titles:  # the features, then the target, to 4 significant digits
        target = t.splitlines()[-1]
        assert 0 <= float(target) <= 1 and len(target) <= 6


def test_test_dl_with_and_without_labels(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    files = get_image_files(png_folder)[:3]
    tdl = dls.test_dl(files)
    (xb,) = tdl.one_batch()
    assert xb.shape == (3, 3, 8, 8) and tdl.num_workers == 0 and not tdl.skip_bad_files
    xb, yb = dls.test_dl(files, with_labels=True).one_batch()
    assert yb.tolist() == [0, 0, 0]  # the first files are cats
    (xb2,) = dls.test_dl(files, skip_getters=True, bs=2).one_batch()
    assert xb2.shape == (2, 3, 8, 8)


def test_new_changes_bs_and_keeps_the_rest(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    d2 = dls.new(bs=2)
    assert (
        d2.train.bs == 2
        and d2.valid.bs == 2
        and d2.vocab == dls.vocab
        and d2.loss_factory is dls.loss_factory
    )
    assert d2.one_batch()[0].shape[0] == 2
    assert dls.train.new(shuffle=False).item_tfms.tfms is dls.train.item_tfms.tfms


def test_from_dsets_on_plain_tuples() -> None:
    train = [(torch.full((3,), float(i)), i % 2) for i in range(10)]
    valid = [(torch.zeros(3), 1) for _ in range(3)]
    dls = DataLoaders.from_dsets(train, valid, bs=4, device="cpu", seed=0)
    xb, yb = dls.one_batch()
    assert type(xb) is torch.Tensor and xb.shape == (4, 3) and yb.dtype == torch.int64
    assert [len(b[0]) for b in dls.train] == [4, 4]  # shuffled training drops the partial batch
    assert [len(b[0]) for b in dls.valid] == [3]
    assert dls.train.num_workers == 0 and dls.dsets is None and dls.vocab is None
    assert dls.train.decode_batch((xb, yb), max_n=2)[0][1] in (0, 1)
    assert sorted(int(x[0]) for b in dls.train.new(shuffle=False, drop_last=False) for x in b[0]) == list(
        range(10)
    )
    with pytest.raises(ValueError, match=r"(?s)test_dl needs DataLoaders built from Datasets.*help:"):
        dls.test_dl([torch.zeros(3)])


class _Double(Transform):
    def encodes(self, x: TensorImage) -> TensorImage:
        return x * 2


def test_public_seams_torch_loader_types_and_batch_tfms() -> None:
    items = [(torch.full((3,), float(i)).as_subclass(TensorImage), i % 2) for i in range(6)]
    dl = DataLoader(items, bs=2, device="cpu", num_workers=0)
    tl = dl.torch_loader  # built once, then the same object
    assert tl is dl.torch_loader and len(tl) == 3
    dl.torch_loader = torch.utils.data.DataLoader(
        tl.dataset, batch_size=2, sampler=[5], collate_fn=tl.collate_fn
    )
    assert [b[0][:, 0].tolist() for b in dl] == [[5.0]]  # batches come from the loader it was given
    dl.torch_loader = tl
    assert dl.typed_batch(collate([items[0]]))[0].__class__ is TensorImage
    assert dl.batch_types == (TensorImage, int)
    dl.add_batch_tfms([_Double()])
    xb, _ = dl.one_batch()
    assert type(xb) is torch.Tensor and xb[1].tolist() == [2.0] * 3
    empty = DataLoader([], device="cpu", num_workers=0)
    empty.set_types((TensorImage, int), (TensorImage, TensorCategory))
    assert empty.types == (TensorImage, int) and empty.batch_types == (TensorImage, TensorCategory)


def test_collate_and_to_device() -> None:
    b = collate([(torch.zeros(2), 1, 0.5, "a"), (torch.ones(2), 2, 1.5, "b")])
    assert (
        b[0].shape == (2, 2)
        and b[1].tolist() == [1, 2]
        and b[2].dtype == torch.float32
        and b[3] == ["a", "b"]
    )
    moved = to_device((torch.zeros(1), [torch.ones(1)], "x"), "cpu")
    assert isinstance(moved, tuple) and isinstance(moved[1], list) and moved[2] == "x"
    assert to_device(torch.zeros(1), None).shape == (1,)


def test_default_num_workers_rule() -> None:
    assert default_num_workers([(torch.zeros(1), 0)] * 1000) == 0  # in memory: no workers
    assert default_num_workers(range(100), bs=64) == 0  # a few batches: not worth starting processes
    n = default_num_workers(range(10_000), bs=64)
    cpus = loader_module._usable_cpus()
    assert n == (0 if cpus <= 2 else min(8, cpus - 1))  # workers only where a core is left for training


@pytest.mark.parametrize(
    ("tfm", "where"),
    [(Noise, "item"), (RandomShift, "item"), (Noise, "batch"), (RandomShift, "batch")],
    ids=["train-only", "every-split", "batch-train-only", "batch-every-split"],
)
def test_seeded_batches_are_the_same_across_runs_and_workers(
    png_folder: Path, tfm: type[Transform], where: str
) -> None:
    dblock = image_block(png_folder, item_tfms=[tfm()] if where == "item" else None)
    if where == "batch":
        dblock.batch_tfms = [tfm()]
    runs = []
    for workers in (0, 0, 2):
        dls = dblock.dataloaders(png_folder, bs=3, num_workers=workers, device="cpu", seed=42)
        runs.append(epochs(dls.train, 2) + epochs(dls.valid, 1))
    assert same(runs[0], runs[1]), "two runs with the same seed differ"
    assert same(runs[0], runs[2]), "num_workers=0 and num_workers=2 differ"
    first, second = runs[0][0], runs[0][1]
    assert not same([first], [second]), "every epoch gives the same batches"
    other = dblock.dataloaders(png_folder, bs=3, num_workers=0, device="cpu", seed=7)
    assert not same(runs[0][:1], epochs(other.train, 1))


def test_seeded_loading_leaves_the_global_rng_alone(png_folder: Path) -> None:
    block = image_block(png_folder, item_tfms=[Noise()])
    block.batch_tfms = [Noise()]  # batch transforms draw from their own seeds too
    dls = block.dataloaders(png_folder, bs=3, num_workers=0, device="cpu", seed=1)
    torch.manual_seed(123)
    random.seed(123)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(123)
    random.seed(123)
    for _ in dls.train:
        pass
    dls.one_batch()
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_one_batch_is_the_next_epochs_first_and_does_not_advance_it(png_folder: Path) -> None:
    dls = image_block(png_folder, item_tfms=[Noise()]).dataloaders(
        png_folder, bs=3, num_workers=0, device="cpu", seed=3
    )
    ob = dls.train.one_batch()
    ob_again = dls.train.one_batch()
    first = next(iter(dls.train))
    assert all(torch.equal(a, b) for a, b in zip(ob, first, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(ob, ob_again, strict=True))


def test_unseeded_shuffle_covers_every_item(png_folder: Path) -> None:
    dls = image_block(png_folder).dataloaders(png_folder, bs=3, num_workers=0, device="cpu", drop_last=False)
    labels = [int(y) for _, yb in dls.train for y in yb]
    assert sorted(labels) == sorted(int(dls.train.dataset[i][1]) for i in range(len(dls.train.dataset)))


def test_empty_and_invalid_loaders() -> None:
    with pytest.raises(ValueError, match=r"(?s)bs must be >= 1.*help:"):
        DataLoader([], bs=0)
    dl = DataLoader([(torch.zeros(1), 0)], bs=2, drop_last=True, num_workers=0, device="cpu")
    with pytest.raises(ValueError, match=r"(?s)no batch from 1 items with bs=2.*help:"):
        dl.one_batch()
    with pytest.raises(ValueError, match=r"(?s)empty.*help:"):
        _ = DataLoader([], num_workers=0, device="cpu").types


def test_batches_come_back_as_tuples_even_from_pinning() -> None:
    # pin_memory hands batches back as lists: the loader turns them into tuples again
    dl = DataLoader([(torch.zeros(2), 1)], num_workers=0, device="cpu")
    out = dl._after_collate([torch.zeros(1, 2), torch.tensor([1])], dl.types)
    assert isinstance(out, tuple) and len(out) == 2


def test_new_keeps_the_validation_batch_ratio() -> None:
    data = [(torch.zeros(1), 0)] * 20
    dls = DataLoaders.from_dsets(data, data, bs=4, device="cpu")
    assert (dls.train.bs, dls.valid.bs) == (4, 8)
    d2 = dls.new(bs=2)
    assert (d2.train.bs, d2.valid.bs) == (2, 4)


class DeviceNoise(Transform):
    """Draws from the RNG of the batch's device (CUDA's own generator on a GPU)."""

    def encodes(self, x: TensorImage) -> TensorImage:
        return (x.float() + torch.rand(x.shape, device=x.device)).as_subclass(TensorImage)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_seeded_batch_transforms_repeat_on_cuda(png_folder: Path) -> None:
    block = image_block(png_folder)
    block.batch_tfms = [DeviceNoise()]
    runs = []
    for workers in (0, 2):
        dls = block.dataloaders(png_folder, bs=3, num_workers=workers, device="cuda", seed=3)
        runs.append(epochs(dls.train, 2))
    assert same(runs[0], runs[1])
    assert not same(runs[0][:1], runs[0][1:])
