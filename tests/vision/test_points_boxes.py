"""PointBlock and BBoxBlock: coordinates follow every item and batch transform, scale to [-1, 1] and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from lamina.core import MultiCategory, TensorBBox, TensorCategory, TensorImage, TensorPoint, Transform
from lamina.data import DataBlock, EndSplitter, RandomSplitter
from lamina.train import load_learner
from lamina.vision import ImageBlock, RandomResizedCrop, Resize, aug_transforms, vision_learner
from lamina.vision.blocks import (
    BBoxBlock,
    BBoxCategorize,
    BBoxLblBlock,
    BBoxPad,
    PointBlock,
    PointScaler,
    ToTensorBBox,
    ToTensorPoint,
    bb_pad,
)


def _save(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def square_points(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Path], dict[str, list[list[float]]]]:
    """20 black 32x32 images, each with a white 8x8 square; the point is its centre (pixels)."""
    root = tmp_path_factory.mktemp("points")
    rng = np.random.default_rng(0)
    centres: dict[str, list[list[float]]] = {}
    for i in range(20):
        img = np.zeros((32, 32, 3), np.uint8)
        cx, cy = int(rng.integers(8, 25)), int(rng.integers(8, 25))
        img[cy - 4 : cy + 4, cx - 4 : cx + 4] = 255
        _save(img, root / f"sq{i:02d}.png")
        centres[f"sq{i:02d}.png"] = [[float(cx), float(cy)]]
    return sorted(root.glob("*.png")), centres


def _point_dblock(centres: dict[str, list[list[float]]], item_tfm: Transform) -> DataBlock:
    def get_y(f: Path) -> list[list[float]]:
        return centres[f.name]

    return DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_y=get_y,
        splitter=RandomSplitter(0.2, seed=0),
        item_tfms=[item_tfm],
        batch_tfms=aug_transforms(p_affine=1.0, max_rotate=30, max_zoom=1.3, pad_mode="zeros"),
    )


def test_point_type_transform_reads_lists_and_learns_the_count() -> None:
    t = ToTensorPoint()
    t.setup([[[1, 2], [3, 4]], np.array([[5.0, 6.0], [7.0, 8.0]])])
    assert t.n_points == 2 and t.c == 4
    p = t([[1, 2], [3, 4]])
    assert isinstance(p, TensorPoint) and p.dtype == torch.float32 and p.tolist() == [[1, 2], [3, 4]]
    assert t(torch.tensor([1, 2])).shape == (1, 2)
    with pytest.raises(ValueError, match=r"training item 1 has 1 points, expected 2.*\nhelp:"):
        ToTensorPoint().setup([[[1, 2], [3, 4]], [[1, 2]]])
    with pytest.raises(ValueError, match="not a multiple of 2"):
        t([1, 2, 3])


def test_point_scaler_round_trip_and_model_outputs() -> None:
    img = TensorImage(torch.zeros(2, 3, 24, 32))
    pts = TensorPoint(torch.tensor([[[0.0, 0.0], [32.0, 24.0]], [[16.0, 12.0], [8.0, 6.0]]]))
    boxes = TensorBBox(torch.tensor([[[0.0, 0.0, 32.0, 24.0]], [[8.0, 6.0, 16.0, 12.0]]]))
    s = PointScaler()
    _, p, b = s((img, pts, boxes))
    assert isinstance(p, TensorPoint) and isinstance(b, TensorBBox)
    assert p[0].tolist() == [[-1, -1], [1, 1]] and p[1, 0].tolist() == [0, 0]
    assert b[0].tolist() == [[-1, -1, 1, 1]] and b[1].tolist() == [[-0.5, -0.5, 0, 0]]
    _, p2, b2 = s.decode((img, p, b))
    assert torch.allclose(p2, pts) and torch.allclose(b2, boxes)
    # a regression head outputs (B, 2N): decoding gives (B, N, 2) pixels
    _, flat = s.decode((img, TensorPoint(torch.tensor([[0.0, 0.0, 1.0, -1.0]]))))
    assert flat.shape == (1, 2, 2) and flat[0].tolist() == [[16, 12], [32, 0]]
    # nothing to read the size from: unchanged
    assert s((pts,))[0] is pts


@pytest.mark.parametrize(
    "item_tfm", [Resize(24), RandomResizedCrop(24, min_scale=0.5)], ids=["resize", "rrc"]
)
def test_points_follow_every_augmentation(square_points: Any, item_tfm: Transform) -> None:
    fnames, centres = square_points
    dls = _point_dblock(centres, item_tfm).dataloaders(fnames, bs=8, num_workers=0, seed=1)
    assert dls.c == 2
    x, y = dls.one_batch()  # training split: item and batch augmentation
    assert x.shape == (8, 3, 24, 24) and y.shape == (8, 1, 2)
    checked = 0
    for img, pt in dls.train.decode_batch((x, y), max_n=8):
        assert isinstance(pt, TensorPoint) and pt.shape == (1, 2)
        px, py = pt[0].tolist()
        if not (0 <= px < 24 and 0 <= py < 24):
            continue  # the crop or zoom took the square's centre out of view
        bright = img.as_subclass(torch.Tensor).float().mean(0) > 127  # (H, W)
        ys, xs = torch.nonzero(bright, as_tuple=True)
        assert len(xs), "the square vanished although its centre is in view"
        # the point lies on the white square...
        d = ((xs + 0.5 - px) ** 2 + (ys + 0.5 - py) ** 2).sqrt().min()
        assert d <= 1.5, (pt.tolist(), d)
        # ...at its centre when the whole square is in view
        if xs.min() > 0 and ys.min() > 0 and xs.max() < 23 and ys.max() < 23:
            cx, cy = xs.float().mean() + 0.5, ys.float().mean() + 0.5
            assert abs(cx - px) < 1.5 and abs(cy - py) < 1.5, (pt.tolist(), cx, cy)
        checked += 1
    assert checked >= 4


def test_keypoint_regression_trains_and_predicts_pixels(square_points: Any, tmp_path: Path) -> None:
    fnames, centres = square_points
    dls = _point_dblock(centres, Resize(24)).dataloaders(fnames, bs=8, num_workers=0, seed=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False)
    model = learn.model
    assert isinstance(model, nn.Sequential) and isinstance(model[1], nn.Sequential)
    assert model[1][-1].out_features == 2
    learn.fit(1)
    assert len(learn.recorder.values) == 1
    pt, raw, out = learn.predict(fnames[0])
    assert isinstance(pt, TensorPoint) and pt.shape == (1, 2)
    assert raw.shape == (2,) and torch.equal(raw, out)  # MSE: no activation, no decoding
    assert torch.allclose(pt.as_subclass(torch.Tensor), (raw.view(1, 2) + 1) * 12)  # 24 px image
    learn2 = load_learner(learn.export(tmp_path / "points.lamina"))
    pt2, raw2, _ = learn2.predict(fnames[0])
    assert isinstance(pt2, TensorPoint) and torch.allclose(raw2, raw, atol=1e-6)


@pytest.fixture(scope="module")
def dot_points(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, list[list[float]]]]:
    """400 noisy 20x28 images (not square: x and y cannot be mixed up), each with one white 3x3 dot; the
    point is its centre (pixels)."""
    root = tmp_path_factory.mktemp("dots")
    rng = np.random.default_rng(0)
    centres: dict[str, list[list[float]]] = {}
    for i in range(400):
        img = rng.integers(0, 100, (20, 28, 3)).astype(np.uint8)  # (H, W, C)
        x, y = int(rng.integers(2, 23)), int(rng.integers(2, 15))
        img[y : y + 3, x : x + 3] = 255  # covers [x, x + 3) x [y, y + 3): the centre is (x + 1.5, y + 1.5)
        _save(img, root / f"dot{i:03d}.png")
        centres[f"dot{i:03d}.png"] = [[x + 1.5, y + 1.5]]
    return sorted(root.glob("*.png")), centres


@pytest.mark.slow
def test_keypoint_regression_finds_the_dot_within_two_pixels(dot_points: Any) -> None:
    fnames, centres = dot_points
    dblock = DataBlock(
        blocks=(ImageBlock, PointBlock), get_y=lambda f: centres[f.name], splitter=EndSplitter(0.2)
    )
    dls = dblock.dataloaders(fnames, bs=16, num_workers=0, seed=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, ps=0.0)  # no dropout: precise outputs
    assert learn.model[1][-1].out_features == 2  # n_out from the data: one (x, y) point
    learn.fit_one_cycle(10, 2e-2)

    # predictions in pixels through the library's decode path, against the true centres of the files
    inp, _, _, dec = learn.get_preds(with_input=True, with_decoded=True)
    valid = fnames[-len(dec) :]
    decoded = dls.valid.decode_batch((*inp, dec), max_n=len(dec))
    pred = torch.stack([d[1].as_subclass(torch.Tensor).view(2) for d in decoded])  # (N, 2) pixels
    true = torch.tensor([centres[f.name][0] for f in valid])  # (N, 2)
    err = float((pred - true).norm(dim=1).mean())
    train_mean = torch.tensor([centres[f.name][0] for f in fnames[: -len(dec)]]).mean(0)
    baseline = float((train_mean - true).norm(dim=1).mean())  # always guessing the mean point
    assert baseline > 5  # the dots are spread: the mean point is no answer
    assert err <= 2.0, (err, baseline)


COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@pytest.fixture(scope="module")
def box_items(tmp_path_factory: pytest.TempPathFactory) -> list[list[Any]]:
    """8 images 40x48 with 1 to 3 coloured rectangles; each box labelled by its colour.

    Items are [path, boxes, labels] lists: a getter maps over a tuple item element by element.
    """
    root = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(1)
    items = []
    for i in range(8):
        img = np.zeros((40, 48, 3), np.uint8)
        boxes, labels = [], []
        for name in list(COLOURS)[: 1 + i % 3]:
            w, h = int(rng.integers(8, 14)), int(rng.integers(8, 14))
            x, y = int(rng.integers(0, 48 - w)), int(rng.integers(0, 40 - h))
            img[y : y + h, x : x + w] = COLOURS[name]
            boxes.append([float(x), float(y), float(x + w), float(y + h)])
            labels.append(name)
        _save(img, root / f"b{i}.png")
        items.append([root / f"b{i}.png", boxes, labels])
    return items


def test_bbox_blocks_pad_follow_augmentation_and_decode(box_items: Any) -> None:
    dblock = DataBlock(
        blocks=(ImageBlock, BBoxBlock(max_boxes=3), BBoxLblBlock),
        n_inp=1,
        getters=[lambda o: o[0], lambda o: o[1], lambda o: o[2]],
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=[Resize(32, method="squish")],
        batch_tfms=aug_transforms(p_affine=1.0, max_rotate=15, max_warp=0, pad_mode="zeros"),
    )
    dls = dblock.dataloaders(box_items, bs=6, num_workers=0, seed=0)
    assert dls.vocab == ["#na#", "blue", "green", "red"] and dls.c == 4
    x, b, lbl = dls.one_batch()
    assert b.shape == (6, 3, 4) and lbl.shape == (6, 3) and lbl.dtype == torch.int64
    assert float(b.abs().max()) <= 1 + 1e-5  # scaled for the model
    n_boxes = 0
    for img, boxes, labels in dls.train.decode_batch((x, b, lbl), max_n=6):
        assert isinstance(boxes, TensorBBox) and isinstance(labels, MultiCategory)
        assert len(labels) == boxes.shape[0] and "#na#" not in labels  # the padding is dropped
        px = img.as_subclass(torch.Tensor).float()
        for (x1, y1, x2, y2), name in zip(boxes.tolist(), labels, strict=True):
            rgb = torch.tensor(COLOURS[name], dtype=torch.float32).view(3, 1)
            sel = ((px.flatten(1) - rgb).abs().max(0).values < 60).view(px.shape[1:])
            ys, xs = torch.nonzero(sel, as_tuple=True)
            if len(xs) < 4:
                continue
            # the rectangle's pixels (centres) sit inside its moved box
            assert xs.min() + 0.5 >= x1 - 1.5 and xs.max() + 0.5 <= x2 + 1.5, name
            assert ys.min() + 0.5 >= y1 - 1.5 and ys.max() + 0.5 <= y2 + 1.5, name
            n_boxes += 1
    assert n_boxes >= 4
    assert isinstance(dls.show_batch(max_n=4), Figure)


def test_bbox_transforms_and_their_errors() -> None:
    boxes = ToTensorBBox()([[1, 2, 5, 6]])
    assert isinstance(boxes, TensorBBox) and boxes.shape == (1, 4) and boxes.dtype == torch.float32
    assert ToTensorBBox()([]).shape == (0, 4)
    with pytest.raises(ValueError, match="x2 < x1"):
        ToTensorBBox()([[5, 2, 1, 6]])
    cat = BBoxCategorize()
    cat.setup([["dog", "cat"], ["cat"]])
    assert cat.vocab == ["#na#", "cat", "dog"]
    lbl = cat(["dog", "cat"])
    assert isinstance(lbl, TensorCategory) and lbl.tolist() == [2, 1]
    assert cat.decode(lbl) == ["dog", "cat"]
    with pytest.raises(ValueError, match="never seen in training"):
        cat.check([["cow"]])
    assert BBoxCategorize(vocab=["b", "a"]).vocab == ["#na#", "b", "a"]

    img = TensorImage(torch.zeros(3, 8, 8, dtype=torch.uint8))
    pad = BBoxPad(3)
    _, b, lab = pad((img, boxes, TensorCategory(torch.tensor([1]))))
    assert b.shape == (3, 4) and lab.tolist() == [1, 0, 0] and isinstance(b, TensorBBox)
    _, b2, lab2 = pad.decode((img, b, lab))
    assert b2.tolist() == [[1, 2, 5, 6]] and lab2.tolist() == [1]
    with pytest.raises(ValueError, match=r"more than max_boxes=3.*\nhelp: raise max_boxes to at least 4"):
        pad((img, ToTensorBBox()([[0, 0, 1, 1]] * 4)))
    with pytest.raises(ValueError, match="2 boxes but 1 box labels"):
        pad((img, ToTensorBBox()([[0, 0, 1, 1]] * 2), TensorCategory(torch.tensor([1]))))
    with pytest.raises(ValueError, match="positive int"):
        BBoxPad(0)

    samples = [
        (img, ToTensorBBox()([[0, 0, 1, 1]]), TensorCategory(torch.tensor([1]))),
        (img, ToTensorBBox()([[0, 0, 1, 1], [2, 2, 3, 3]]), TensorCategory(torch.tensor([1, 2]))),
    ]
    padded = bb_pad(samples)
    assert [s[1].shape[0] for s in padded] == [2, 2] and padded[0][2].tolist() == [1, 0]
