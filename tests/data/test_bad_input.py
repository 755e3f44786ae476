"""Bad input, one test per issue: each fails early with an error naming the culprit and saying what to do."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lamina.core import TensorImageBW, Transform
from lamina.data import (
    CategoryBlock,
    ColReader,
    ColSplitter,
    DataBlock,
    DataLoader,
    ItemError,
    RandomSplitter,
    RegressionBlock,
    TransformBlock,
    get_image_files,
    parent_label,
)

vision = pytest.importorskip("lamina.vision.core")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")


def image_block(img_cls: type = vision.TensorImage) -> DataBlock:
    return DataBlock(
        blocks=(vision.ImageBlock(img_cls), CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.0),
    )


def noisy_png(path: Path, size: int = 32) -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (size, size, 3), np.uint8)
    Image.fromarray(arr).save(path)
    return path.read_bytes()


@pytest.fixture
def with_bad_files(png_folder: Path) -> Path:
    """The pets folder plus a file that is not an image and a truncated PNG."""
    (png_folder / "cat" / "cat_bad.png").write_bytes(b"this is not a png")
    data = noisy_png(png_folder / "dog" / "dog_trunc.png")
    (png_folder / "dog" / "dog_trunc.png").write_bytes(data[: len(data) // 2])
    return png_folder


# -- corrupt files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cat_bad.png", "dog_trunc.png"])
def test_corrupt_or_truncated_image_names_the_file(with_bad_files: Path, name: str) -> None:
    bad = next(p for p in get_image_files(with_bad_files) if p.name == name)
    dsets = image_block().datasets(with_bad_files)
    i = dsets.items.index(bad)
    with pytest.raises(ItemError) as e:
        dsets[i]
    msg = str(e.value)
    assert str(bad) in msg and "decode_image" in msg and "help:" in msg and "skip_bad_files" in msg
    with pytest.raises(OSError, match=name):
        vision.load_image(bad)


def test_corrupt_image_stops_the_loader_by_default(with_bad_files: Path) -> None:
    dls = image_block().dataloaders(with_bad_files, bs=4, num_workers=0, device="cpu")
    with pytest.raises(ItemError, match=r"cat_bad\.png|dog_trunc\.png"):
        for _ in dls.train:
            pass


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_bad_files_keeps_batches_full_and_warns_with_the_list(
    with_bad_files: Path, workers: int
) -> None:
    dls = image_block().dataloaders(
        with_bad_files, bs=4, num_workers=workers, device="cpu", seed=0, skip_bad_files=True
    )
    assert dls.dsets is not None and dls.dsets.skip_bad_files and dls.train.skip_bad_files
    with pytest.warns(UserWarning) as record:
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision's, re-emitted by pytest.warns
        sizes = [len(xb) for xb, _ in dls.train]
    assert sizes == [4, 4, 4, 4, 4, 4, 4, 4, 4][: len(dls.train)] and len(dls.train) == 14 // 4
    msgs = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(msgs) == 1  # once per epoch, with the whole list
    assert "cat_bad.png" in msgs[0] and "dog_trunc.png" in msgs[0] and "help:" in msgs[0]
    assert sorted(Path(m.split("'")[1]).name for m in dls.train.bad_items.values()) == [
        "cat_bad.png",
        "dog_trunc.png",
    ]


def test_skip_bad_files_replaces_with_the_next_good_item(with_bad_files: Path) -> None:
    dsets = image_block().datasets(with_bad_files, skip_bad_files=True)
    dl = DataLoader(dsets.train, bs=14, num_workers=0, device="cpu", dsets=dsets)
    assert dl.skip_bad_files
    with pytest.warns(UserWarning, match="skipped 2 item"):
        warnings.simplefilter("ignore", DeprecationWarning)
        (xb, _), *_ = list(dl)
    assert len(xb) == 14 and len(dl.bad_items) == 2
    bad = sorted(dl.bad_items)
    nxt = (bad[0] + 1) % 14
    while nxt in dl.bad_items:
        nxt = (nxt + 1) % 14
    assert torch.equal(xb[bad[0]], xb[nxt])  # the replacement is the next item that builds


def test_skip_bad_files_gives_up_when_everything_is_bad(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / "x").mkdir(exist_ok=True)
        (tmp_path / "x" / f"{i}.png").write_bytes(b"junk")
    dls = image_block().dataloaders(tmp_path, bs=4, num_workers=0, device="cpu", skip_bad_files=True)
    with pytest.raises(ItemError, match=r"(?s)items in a row failed.*help:"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls.one_batch()


def test_test_dl_never_skips(with_bad_files: Path) -> None:
    dls = image_block().dataloaders(with_bad_files, bs=4, num_workers=0, device="cpu", skip_bad_files=True)
    bad = [p for p in get_image_files(with_bad_files) if p.name == "cat_bad.png"]
    with pytest.raises(ItemError, match=r"cat_bad\.png"):
        dls.test_dl(bad).one_batch()


# -- image modes ---------------------------------------------------------------------------------------------
def _cmyk_jpeg(path: Path) -> None:
    Image.new("CMYK", (6, 5), (0, 255, 255, 0)).save(path, "JPEG")  # pure red in CMYK


def _rgba(path: Path) -> None:
    arr = np.zeros((5, 6, 4), np.uint8)
    arr[..., 0] = arr[..., 3] = 255  # opaque red
    Image.fromarray(arr, "RGBA").save(path)


def _palette(path: Path) -> None:
    img = Image.new("P", (6, 5), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.save(path)


def _gray16(path: Path) -> None:
    Image.fromarray(np.full((5, 6), 65535, np.uint16)).save(path)


def _gray(path: Path) -> None:
    Image.fromarray(np.full((5, 6), 200, np.uint8), "L").save(path)


MODES: dict[str, tuple[Callable[[Path], None], str, tuple[int, int, int]]] = {
    "cmyk": (_cmyk_jpeg, "jpg", (255, 0, 0)),
    "rgba": (_rgba, "png", (255, 0, 0)),
    "palette": (_palette, "png", (255, 0, 0)),
    "gray16": (_gray16, "png", (255, 255, 255)),
    "gray": (_gray, "png", (200, 200, 200)),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_image_modes_become_what_the_block_asks(tmp_path: Path, mode: str) -> None:
    make, ext, rgb = MODES[mode]
    (tmp_path / "a").mkdir()
    make(tmp_path / "a" / f"x.{ext}")
    dsets = image_block().datasets(tmp_path)
    img = dsets[0][0]
    assert img.shape == (3, 5, 6) and img.dtype == torch.uint8
    center = img[:, 2, 3].tolist()
    assert all(abs(c - e) <= 2 for c, e in zip(center, rgb, strict=True)), center  # JPEG is lossy
    bw = image_block(TensorImageBW).datasets(tmp_path)[0][0]
    assert type(bw) is TensorImageBW and bw.shape == (1, 5, 6) and bw.dtype == torch.uint8


# -- layout and labels ---------------------------------------------------------------------------------------
def test_empty_folder_names_folder_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        image_block().dataloaders(tmp_path)
    assert str(tmp_path) in str(e.value) and ".jpg" in str(e.value) and "help:" in str(e.value)


def test_missing_column_lists_the_columns(table: pd.DataFrame) -> None:
    dblock = DataBlock(blocks=(TransformBlock, CategoryBlock), get_x=ColReader("a"), get_y=ColReader("lbl"))
    with pytest.raises(ItemError) as e:
        dblock.dataloaders(table)
    msg = str(e.value)
    assert "'lbl'" in msg and "['a', 'b', 'label', 'tags', 'target', 'is_valid']" in msg and "help:" in msg
    bad_x = DataBlock(
        blocks=(TransformBlock, CategoryBlock), get_x=ColReader("fname"), get_y=ColReader("label")
    )
    with pytest.raises(ItemError, match=r"(?s)get_x.*'fname' not found"):  # at construction, not mid-epoch
        bad_x.datasets(table)


def test_unseen_validation_label_is_named(table: pd.DataFrame) -> None:
    table.loc[18, "label"] = "unicorn"
    dblock = DataBlock(
        blocks=(TransformBlock, CategoryBlock),
        get_x=ColReader("a"),
        get_y=ColReader("label"),
        splitter=ColSplitter(),
    )
    with pytest.raises(ValueError, match=r"(?s)never seen in training: \['unicorn'\].*help:"):
        dblock.datasets(table)


def test_images_of_different_sizes_fail_at_collation_suggesting_resize(
    tmp_path: Path, png_writer: Callable[..., Path]
) -> None:
    for i, size in enumerate([(8, 8), (9, 8), (8, 10)]):
        png_writer(tmp_path / "a" / f"{i}.png", size=size)
    dls = image_block().dataloaders(tmp_path, bs=3, num_workers=0, device="cpu", shuffle=False)
    with pytest.raises(RuntimeError, match=r"(?s)different shapes.*\(3, 8, 8\).*help:.*item_tfms=Resize"):
        dls.one_batch()
    with pytest.raises(RuntimeError, match="item_tfms=Resize"):
        next(iter(dls.train))


@pytest.mark.parametrize("where", ["training", "validation"])
def test_get_y_returning_none_names_the_item(png_folder: Path, where: str) -> None:
    victim = "dog_3.png"

    def get_y(p: Path) -> str | None:
        return None if p.name == victim else parent_label(p)

    def splitter(items: list[Path]) -> tuple[list[int], list[int]]:
        is_valid = [
            (p.name == victim) == (where == "validation") and p.name.endswith(("3.png", "4.png"))
            for p in items
        ]
        return [i for i, v in enumerate(is_valid) if not v], [i for i, v in enumerate(is_valid) if v]

    dblock = DataBlock(
        blocks=(vision.ImageBlock, CategoryBlock), get_items=get_image_files, get_y=get_y, splitter=splitter
    )
    with pytest.raises(ItemError) as e:
        dblock.datasets(png_folder)
    msg = str(e.value)
    assert "returned None for 1 of 12 items" in msg and victim in msg and "help:" in msg


def test_regression_target_none_names_the_item(table: pd.DataFrame) -> None:
    table.loc[4, "target"] = None
    dblock = DataBlock(
        blocks=(TransformBlock, RegressionBlock),
        get_x=ColReader("a"),
        get_y=lambda r: None if pd.isna(r["target"]) else r["target"],
        splitter=ColSplitter(),
    )
    with pytest.raises(ItemError, match=r"(?s)returned None for 1 of 20 items, e\.g\. item 4 row\(a="):
        dblock.datasets(table)


def test_failing_item_transform_names_item_and_step(png_folder: Path) -> None:
    class Explode(Transform):
        def encodes(self, x: vision.TensorImage) -> vision.TensorImage:  # type: ignore[name-defined]
            raise ValueError("bad crop")

    dblock = image_block()
    dblock.item_tfms = [Explode()]
    dls = dblock.dataloaders(png_folder, bs=2, num_workers=0, device="cpu", shuffle=False)
    with pytest.raises(
        ItemError, match=r"(?s)item \d+ '.*cat_0\.png'.*'Explode'.*TensorImage \(3, 8, 8\).*bad crop.*help:"
    ):
        next(iter(dls.train))
