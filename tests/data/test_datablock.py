"""DataBlock: validation of its arguments, datasets and dataloaders from folders and tables, summary()."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from lamina.core import Category, TensorCategory, TensorImage
from lamina.data import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    GrandparentSplitter,
    ItemError,
    RandomSplitter,
    RegressionBlock,
    TransformBlock,
    get_image_files,
    parent_label,
)

vision = pytest.importorskip("lamina.vision.core")
ImageBlock = vision.ImageBlock
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")


def row_features(r: pd.Series) -> torch.Tensor:
    return torch.tensor([r["a"], r["b"]], dtype=torch.float32)


def test_arguments_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match=r"(?s)no blocks.*help:"):
        DataBlock()
    with pytest.raises(ValueError, match=r"(?s)n_inp=3 for 2 blocks.*help:"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), n_inp=3)
    with pytest.raises(ValueError, match=r"(?s)1 getters for 2 blocks.*help:"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), getters=[parent_label])
    with pytest.raises(ValueError, match=r"(?s)2 get_y functions for 1 target blocks.*help:"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y=[parent_label, parent_label])
    with pytest.raises(TypeError, match=r"(?s)get_y='label' is a str.*help:.*ColReader\('label'\)"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), get_y="label")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"(?s)getter 3 \(int\) is not callable.*help:"):
        DataBlock(blocks=(TransformBlock, CategoryBlock), getters=[None, 3])  # type: ignore[list-item]


def test_getters_and_n_inp() -> None:
    db = DataBlock(blocks=(TransformBlock, TransformBlock, CategoryBlock), n_inp=2, get_y=str.upper)
    assert db.n_inp == 2 and db.getters == [None, None, str.upper]
    db = DataBlock(
        blocks=(TransformBlock, CategoryBlock), getters=[len, str.lower], splitter=lambda o: ([0, 1], [2])
    )
    dsets = db.datasets(["Ab", "AB", "ab"])
    x, y = dsets[0]
    assert x == 2 and int(y) == 0 and dsets.pipelines[1].tfms[-1].vocab == ["ab"]  # type: ignore[attr-defined]


def test_datasets_and_dataloaders_from_a_folder_of_pngs(png_folder: Path) -> None:
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=0),
    )
    dsets = dblock.datasets(png_folder)
    assert len(dsets.train) == 9 and len(dsets.valid) == 3
    img, lbl = dsets.train[0]
    assert type(img) is TensorImage and img.shape == (3, 8, 8) and img.dtype == torch.uint8
    assert type(lbl) is TensorCategory
    dls = dblock.dataloaders(png_folder, bs=4, num_workers=0, device="cpu")
    assert dls.vocab == ["cat", "dog"] and dls.c == 2 and dls.n_inp == 1
    assert isinstance(dls.loss_func, torch.nn.Module)
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 8, 8) and xb.dtype == torch.float32 and yb.shape == (4,)
    # dark pictures are cats, bright ones dogs: the labels went with their images
    for x, y in zip(xb, yb, strict=True):
        assert (x.mean() > 0.5) == (dls.vocab[int(y)] == "dog")
    assert len(dls.train) == 2 and len(dls.valid) == 1  # train drops the last partial batch


def test_grandparent_layout(tmp_path: Path, png_writer: Callable[..., Path]) -> None:
    for split in ("train", "valid"):
        for label in ("a", "b"):
            png_writer(tmp_path / split / label / "0.png")
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=GrandparentSplitter(),
    )
    dsets = dblock.datasets(tmp_path)
    assert len(dsets.train) == 2 and len(dsets.valid) == 2


def test_dataloaders_from_a_dataframe(table: pd.DataFrame) -> None:
    dblock = DataBlock(
        blocks=(TransformBlock, CategoryBlock),
        get_x=row_features,
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
    )
    dls = dblock.dataloaders(table, bs=5, num_workers=0, device="cpu")
    xb, yb = dls.one_batch()
    assert type(xb) is torch.Tensor and xb.shape == (5, 2) and yb.dtype == torch.int64
    assert len(dls.valid.dataset) == 5
    decoded = dls.decode_batch((xb, yb), max_n=2)
    assert all(isinstance(d[1], Category) for d in decoded)

    reg = DataBlock(
        blocks=(TransformBlock, RegressionBlock),
        get_x=row_features,
        get_y=ColReader("target"),
        splitter=ColSplitter(),
    )
    rdls = reg.dataloaders(table, bs=5, num_workers=0, device="cpu")
    assert rdls.c == 1 and rdls.one_batch()[1].dtype == torch.float32


def test_splitter_leaving_no_training_items(table: pd.DataFrame) -> None:
    dblock = DataBlock(
        blocks=(TransformBlock, CategoryBlock), get_y=ColReader("label"), splitter=lambda items: ([], [0])
    )
    with pytest.raises(ValueError, match=r"(?s)none of the 20 items in the training set.*help:"):
        dblock.datasets(table)


def test_summary_prints_every_step(png_folder: Path) -> None:
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=0),
    )
    out = io.StringIO()
    dblock.summary(png_folder, bs=2, file=out)
    text = out.getvalue()
    for step in (
        "found 12 items",
        "split: 9 training, 3 validation",
        "decode_image",
        "parent_label",
        "Categorize",
        "Collating 2 training items",
        "IntToFloatTensor",
        "The model receives plain tensors",
    ):
        assert step in text, step


def test_summary_reports_the_failing_step_and_item(png_folder: Path) -> None:
    def get_y(p: Path) -> str:
        if p.name == "dog_3.png":
            raise ValueError("no label for this one")
        return parent_label(p)

    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=get_y)
    out = io.StringIO()
    with pytest.raises(ItemError) as e:
        dblock.summary(png_folder, file=out)
    msg = str(e.value)
    assert "get_y" in msg and "dog_3.png" in msg and "no label for this one" in msg and "help:" in msg
    assert "FAILED" in out.getvalue() and "dog_3.png" in out.getvalue()


def test_summary_reports_a_failing_item_transform(png_folder: Path) -> None:
    from lamina.core import Transform

    class Broken(Transform):
        def encodes(self, x: TensorImage) -> TensorImage:
            raise RuntimeError("kaboom")

    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        item_tfms=[Broken()],
    )
    out = io.StringIO()
    with pytest.raises(ItemError, match=r"(?s)'Broken'.*TensorImage \(3, 8, 8\) uint8.*kaboom.*help:"):
        dblock.summary(png_folder, file=out)
    assert "Broken: FAILED on" in out.getvalue()


def test_a_getter_reads_every_item_whatever_its_annotation() -> None:
    from lamina.data import Datasets
    from lamina.data.datasets import Getter

    def stem(p: Path) -> str:  # annotated Path, given str items: it must still run
        return Path(p).stem

    dsets = Datasets(["a.png", "b.png"], [[Getter(stem)]])
    assert dsets[0] == ("a",) and dsets.pipelines[0].tfms[0].name == "stem"
    assert Getter(ColReader("x")).name == "ColReader"


@pytest.mark.parametrize("swap", [False, True])
def test_a_forgotten_get_y_is_named_as_such(
    png_folder: Path, swap: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without get_y (or with the blocks swapped) the labels are the file paths: say so, once."""
    blocks = (CategoryBlock, ImageBlock) if swap else (ImageBlock, CategoryBlock)
    dblock = DataBlock(
        blocks=blocks,
        get_items=get_image_files,
        get_y=parent_label if swap else None,
        splitter=RandomSplitter(0.25, seed=0),
    )
    with pytest.raises(ItemError, match=r"(?s)look like file paths.*did you forget get_y") as err:
        dblock.dataloaders(png_folder, bs=4)
    assert "never seen in training" not in str(err.value)
    with pytest.raises(ItemError, match="did you forget get_y"):
        dblock.summary(png_folder)
    assert "did you forget get_y" not in capsys.readouterr().out  # on a terminal: once, by the error


def test_summary_of_a_dataframe_names_it_briefly(table: pd.DataFrame) -> None:
    big = pd.concat([table] * 500, ignore_index=True)
    big["text"] = "a long cell value " * 20
    dblock = DataBlock(
        blocks=(TransformBlock, CategoryBlock),
        get_x=row_features,
        get_y=ColReader("label"),
        splitter=RandomSplitter(0.2, seed=0),
    )
    out = io.StringIO()
    dblock.summary(big, file=out)
    text = out.getvalue()
    assert "DataFrame (10000 rows x 7 columns: a, b, label, tags, target, is_valid, text)" in text
    assert max(len(line) for line in text.splitlines()) < 200


def test_joined_tags_without_a_delimiter_are_refused(table: pd.DataFrame) -> None:
    from lamina.data import MultiCategoryBlock

    def dblock(delim: str | None) -> DataBlock:
        return DataBlock(
            blocks=(TransformBlock, MultiCategoryBlock),
            get_x=row_features,
            get_y=ColReader("tags", label_delim=delim),
            splitter=ColSplitter("is_valid"),
        )

    with pytest.raises(ItemError, match=r"(?s)'x y'.*joined by ' '.*label_delim=' '"):
        dblock(None).dataloaders(table, bs=4)
    assert dblock(" ").dataloaders(table, bs=4).c == 3  # x, y, z
