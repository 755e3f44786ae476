"""Item transforms: sizes, types, nearest masks, points and boxes that follow the image, splits, configs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina.vision.item_tfms as item_tfms
from lamina.core import (
    Pipeline,
    TensorBBox,
    TensorCategory,
    TensorImage,
    TensorImageBW,
    TensorMask,
    TensorPoint,
    Transform,
    lookup_transform,
    registered_name,
)
from lamina.vision.item_tfms import CropPad, RandomResizedCrop, Resize

LANDSCAPE, PORTRAIT = (32, 40), (40, 32)


def make_item(hw: tuple[int, int] = LANDSCAPE, seed: int = 0) -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    img = TensorImage(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
    mask = TensorMask(torch.randint(1, 5, (h, w), generator=g))
    pts = TensorPoint(torch.tensor([[3.0, 5.0], [w / 2, h / 2]]))
    boxes = TensorBBox(torch.tensor([[2.0, 3.0, w - 4.0, h / 2]]))
    return img, mask, pts, boxes, TensorCategory(torch.tensor(1))


def all_tfms() -> list[Transform]:
    return [
        Resize(16),
        Resize((16, 24), method="crop"),
        Resize((24, 16), method="pad"),
        Resize((20, 12), method="pad", pad_mode="zeros"),
        Resize((20, 12), method="pad", pad_mode="border"),
        Resize((12, 20), method="squish"),
        RandomResizedCrop(16),
        RandomResizedCrop((12, 20), min_scale=0.5),
        CropPad(20),
        CropPad((48, 24), pad_mode="reflection"),
        CropPad((10, 60), pad_mode="border"),
    ]


def bright_spot_item(hw: tuple[int, int], yx: tuple[int, int]) -> tuple[TensorImage, TensorPoint]:
    """A black image with one white pixel at `yx`, and a point at that pixel's centre."""
    img = torch.zeros(3, *hw, dtype=torch.uint8)
    img[:, yx[0], yx[1]] = 255
    return TensorImage(img), TensorPoint(torch.tensor([[yx[1] + 0.5, yx[0] + 0.5]]))


def brightest_centre(img: torch.Tensor) -> tuple[float, float]:
    """(x, y) of the centre of the brightest pixel of a (C, H, W) image."""
    w = img.shape[-1]
    y, x = divmod(int(img[0].argmax()), w)
    return x + 0.5, y + 0.5


# ----------------------------------------------------------------------------------------------- types


@pytest.mark.parametrize("tfm", all_tfms(), ids=repr)
@pytest.mark.parametrize("split_idx", [0, 1, None])
def test_types_dtypes_and_sizes_survive(tfm: Transform, split_idx: int | None) -> None:
    item = make_item()
    out = tfm(item, split_idx=split_idx)
    assert [type(e) for e in out] == [type(e) for e in item]
    img, mask, pts, boxes, cat = out
    assert img.dtype == torch.uint8 and mask.dtype == torch.int64
    assert pts.dtype == torch.float32 and boxes.dtype == torch.float32
    assert tuple(img.shape) == (3, *tfm.size) and tuple(mask.shape) == tfm.size  # type: ignore[attr-defined]
    assert pts.shape == (2, 2) and boxes.shape == (1, 4)
    assert cat is item[4]


def test_single_values_and_bw_images() -> None:
    img = TensorImageBW(torch.zeros(1, 32, 40, dtype=torch.uint8))
    out = Resize(16)(img)
    assert type(out) is TensorImageBW and out.shape == (1, 16, 16)
    mask = TensorMask(torch.zeros(32, 40, dtype=torch.int64))
    assert type(Resize((8, 10))(mask)) is TensorMask
    # nothing that tells the size: unchanged
    pts = TensorPoint(torch.tensor([[1.0, 2.0]]))
    assert Resize(16)(pts) is pts


def test_in_a_pipeline() -> None:
    p = Pipeline([Resize(16)], split_idx=1)
    assert p(make_item())[0].shape == (3, 16, 16)
    assert Resize(8).order == RandomResizedCrop(8).order == CropPad(8).order == 1


# ----------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("hw", [LANDSCAPE, PORTRAIT])
@pytest.mark.parametrize("size", [16, (16, 24), (24, 16)])
@pytest.mark.parametrize("method", ["crop", "pad", "squish"])
def test_resize_output_size(hw: tuple[int, int], size: Any, method: Any) -> None:
    out = Resize(size, method=method)(make_item(hw), split_idx=0)
    expected = (size, size) if isinstance(size, int) else size
    assert out[0].shape[-2:] == expected and out[1].shape == expected


def test_crop_keeps_the_aspect_and_covers() -> None:
    # landscape 32x40 -> 16x16: scale 2, so the centre 32x32 is kept; points move by (-4, 0) then / 2
    out = Resize(16)(make_item(LANDSCAPE), split_idx=1)
    assert out[2].tolist() == [[(3 - 4) / 2, 5 / 2], [8.0, 8.0]]


def test_pad_fits_inside() -> None:
    # landscape 32x40 into 16x16: scale 2.5, 40x40 window with 4 rows of padding above and below
    img = TensorImage(torch.full((3, 32, 40), 200, dtype=torch.uint8))
    out = Resize(16, method="pad", pad_mode="zeros")(img)
    assert out[:, 0].max() < 100 and out[:, -1].max() < 100  # padded rows, top and bottom
    assert (out[:, 4:12] == 200).all()  # image rows
    assert (out[:, :, 0] > 100).any()  # no padding at the sides
    pts = Resize(16, method="pad")((img, TensorPoint(torch.tensor([[0.0, 0.0], [40.0, 32.0]]))))[1]
    assert torch.allclose(pts, torch.tensor([[0.0, 1.6], [16.0, 14.4]]))


def test_squish_scales_each_side() -> None:
    pts = TensorPoint(torch.tensor([[40.0, 32.0], [10.0, 8.0]]))
    out = Resize((16, 20), method="squish")((make_item()[0], pts))[1]
    assert torch.allclose(out, torch.tensor([[20.0, 16.0], [5.0, 4.0]]))


def test_reflection_pad_wider_than_the_image() -> None:
    # reflection can only pad size-1 pixels at a time: a 4x40 strip padded to a square needs several passes
    img = TensorImage(torch.arange(4 * 40, dtype=torch.uint8).view(1, 4, 40))
    out = Resize(20, method="pad", pad_mode="reflection")(img)
    assert out.shape == (1, 20, 20)
    one_row = TensorImage(torch.full((3, 1, 40), 7, dtype=torch.uint8))
    assert (Resize(10, method="pad")(one_row) == 7).all()


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    out_h=st.integers(1, 48),
    out_w=st.integers(1, 48),
    method=st.sampled_from(["crop", "pad", "squish"]),
    pad_mode=st.sampled_from(["zeros", "border", "reflection"]),
    split_idx=st.sampled_from([0, 1]),
)
def test_resize_size_property(
    h: int, w: int, out_h: int, out_w: int, method: Any, pad_mode: Any, split_idx: int
) -> None:
    img = TensorImage(torch.zeros(3, h, w, dtype=torch.uint8))
    mask = TensorMask(torch.zeros(h, w, dtype=torch.int64))
    out = Resize((out_h, out_w), method=method, pad_mode=pad_mode)((img, mask), split_idx=split_idx)
    assert out[0].shape == (3, out_h, out_w) and out[1].shape == (out_h, out_w)
    out = RandomResizedCrop((out_h, out_w))((img, mask), split_idx=split_idx)
    assert out[0].shape == (3, out_h, out_w) and out[1].shape == (out_h, out_w)


# ----------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("tfm", all_tfms(), ids=repr)
def test_masks_keep_their_codes(tfm: Transform) -> None:
    mask = make_item()[1]
    codes = set(mask.unique().tolist())
    for split_idx in (0, 1):
        out = tfm(mask, split_idx=split_idx)
        allowed = codes | {0} if getattr(tfm, "pad_mode", None) == "zeros" else codes
        assert set(out.unique().tolist()) <= allowed


def test_mask_follows_the_image() -> None:
    img = torch.zeros(3, 32, 40, dtype=torch.uint8)
    img[:, 8:24, 10:30] = 255
    mask = (img[0] > 0).long()
    for tfm in all_tfms():
        for split_idx in (0, 1):
            torch.manual_seed(1)
            o_img, o_mask = tfm((TensorImage(img), TensorMask(mask)), split_idx=split_idx)
            disagree = ((o_img[0] > 127).long() != o_mask.as_subclass(torch.Tensor)).float().mean()
            assert disagree < 0.1, (tfm, split_idx)


# --------------------------------------------------------------------------------------- points, boxes


@pytest.mark.parametrize("hw", [LANDSCAPE, PORTRAIT])
@pytest.mark.parametrize("split_idx", [0, 1])
@pytest.mark.parametrize("yx", [(14, 17), (17, 14), (12, 20)])
def test_points_follow_the_image(hw: tuple[int, int], split_idx: int, yx: tuple[int, int]) -> None:
    torch.manual_seed(0)
    item = bright_spot_item(hw, yx)
    tfms = [*all_tfms(), Resize(64), Resize((48, 80), method="squish"), RandomResizedCrop(48, min_scale=0.9)]
    for tfm in tfms:
        for _ in range(3):
            img, pts = tfm(item, split_idx=split_idx)
            x, y = pts[0].tolist()
            if not (0 <= x < img.shape[-1] and 0 <= y < img.shape[-2]):
                continue  # cropped away (random crops)
            bx, by = brightest_centre(img)
            assert abs(bx - x) <= 1 and abs(by - y) <= 1, (tfm, split_idx, (x, y), (bx, by))


def test_boxes_contain_their_object_and_are_clipped() -> None:
    img = torch.zeros(3, 32, 40, dtype=torch.uint8)
    img[:, 6:20, 4:36] = 255
    boxes = TensorBBox(torch.tensor([[4.0, 6.0, 36.0, 20.0]]))
    # reflection and border padding copy the object outside its box: only padding with zeros here
    for tfm in all_tfms():
        pads = isinstance(tfm, CropPad) or getattr(tfm, "method", "") == "pad"
        if pads and getattr(tfm, "pad_mode", "") != "zeros":
            continue
        for split_idx in (0, 1):
            o_img, o_box = tfm((TensorImage(img), boxes), split_idx=split_idx)
            x1, y1, x2, y2 = o_box[0].tolist()
            oh, ow = o_img.shape[-2:]
            assert 0 <= x1 <= x2 <= ow and 0 <= y1 <= y2 <= oh
            ys, xs = torch.nonzero(o_img[0] > 200, as_tuple=True)
            if len(xs):
                assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1, tfm
                assert ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1, tfm


# ---------------------------------------------------------------------------------------------- splits


def test_resize_crop_is_random_on_train_only() -> None:
    item = make_item((32, 64))
    tfm = Resize(16)
    valid = {tuple(tfm(item, split_idx=1)[2][0].tolist()) for _ in range(5)}
    assert len(valid) == 1
    assert tfm(item)[2].tolist() == tfm(item, split_idx=1)[2].tolist()  # no split given: deterministic
    train = {tuple(tfm(item, split_idx=0)[2][0].tolist()) for _ in range(20)}
    assert len(train) > 1
    torch.manual_seed(3)
    a = tfm(item, split_idx=0)
    torch.manual_seed(3)
    b = tfm(item, split_idx=0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_random_resized_crop_train_vs_valid() -> None:
    item = make_item()
    tfm = RandomResizedCrop(16, min_scale=0.1)
    # valid: centre crop of the image resized to cover 16 + 8 (val_xtra 0.14: 8 px): 21x21 window at (9, 5)
    out = tfm(item, split_idx=1)
    assert torch.equal(out[0], tfm(item, split_idx=1)[0])
    probe = tfm((item[0], TensorPoint(torch.tensor([[9.0, 5.0], [30.0, 26.0]]))), split_idx=1)[1]
    assert torch.allclose(probe, torch.tensor([[0.0, 0.0], [16.0, 16.0]]))
    # train: different windows, reproducible under a seed
    boxes = {tuple(tfm(item, split_idx=0)[2][1].tolist()) for _ in range(20)}
    assert len(boxes) > 5
    torch.manual_seed(7)
    a = tfm(item, split_idx=0)
    torch.manual_seed(7)
    b = tfm(item, split_idx=0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_random_resized_crop_falls_back_to_a_centre_crop() -> None:
    # a 2x64 strip cannot hold a crop of ratio <= 4/3 and area >= 90%: the fallback keeps the allowed ratio
    img = TensorImage(torch.zeros(3, 2, 64, dtype=torch.uint8))
    out = RandomResizedCrop(8, min_scale=0.9)((img, TensorPoint(torch.tensor([[32.0, 1.0]]))), split_idx=0)
    assert out[0].shape == (3, 8, 8)
    assert torch.allclose(out[1], torch.tensor([[4.0, 4.0]]))


def test_crop_pad_centres() -> None:
    img = TensorImage(torch.arange(32 * 40, dtype=torch.int64).view(1, 32, 40).to(torch.uint8))
    out = CropPad((16, 20))(img)
    assert torch.equal(out, img[:, 8:24, 10:30])
    padded = CropPad((36, 44))(img)
    assert torch.equal(padded[:, 2:34, 2:42], img)
    assert padded[:, :2].eq(0).all() and padded[:, :, :2].eq(0).all()


# ------------------------------------------------------------------------------------- configs, errors


@pytest.mark.parametrize("tfm", all_tfms(), ids=repr)
def test_config_round_trip(tfm: Any) -> None:
    name = registered_name(tfm)
    assert name is not None and name.startswith("vision.")
    cls: Any = lookup_transform(name)
    assert cls is type(tfm)
    cfg = json.loads(json.dumps(tfm.to_config()))
    rebuilt: Any = cls(**cfg)
    assert rebuilt.to_config() == cfg
    assert repr(rebuilt) == repr(tfm)
    item = make_item()
    assert all(
        torch.equal(a, b) for a, b in zip(tfm(item, split_idx=1), rebuilt(item, split_idx=1), strict=True)
    )


def test_every_registered_item_transform_is_covered() -> None:
    public = [getattr(item_tfms, n) for n in item_tfms.__all__]
    registered = {c for c in public if isinstance(c, type) and registered_name(c) is not None}
    assert registered == {type(t) for t in all_tfms()}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Resize(0), r"ints in \[1, 8192\]"),
        (lambda: Resize((1, 2, 3)), "size must be"),
        (lambda: Resize(8, method="fit"), "unknown method"),  # type: ignore[arg-type]
        (lambda: Resize(8, pad_mode="wrap"), "unknown pad_mode"),  # type: ignore[arg-type]
        (lambda: RandomResizedCrop(8, min_scale=0), "min_scale"),
        (lambda: RandomResizedCrop(8, ratio=(2, 1)), "ratio"),
        (lambda: CropPad("8"), "size must be"),  # type: ignore[arg-type]
    ],
)
def test_errors_say_what_to_do(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        make()
    assert "help:" in str(e.value)


def test_a_single_transform_is_accepted_wherever_a_list_is(mnist_small: Any) -> None:
    """`item_tfms=Resize(16)` (the fastai spelling) works like `item_tfms=[Resize(16)]`."""
    from lamina.data import CategoryBlock, DataBlock, RandomSplitter, get_image_files, parent_label
    from lamina.vision import ImageBlock, ImageDataLoaders, Normalize

    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=8, item_tfms=Resize(16))
    assert dls.one_batch()[0].shape[-2:] == (16, 16)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=0),
        item_tfms=Resize(12),
        batch_tfms=Normalize.from_stats((0.5,) * 3, (0.5,) * 3),
    )
    x, _ = dblock.dataloaders(mnist_small, bs=8).one_batch()
    assert x.shape[-2:] == (12, 12) and x.min() < 0  # resized and normalized
    p = Pipeline(Resize(10))
    p.add(Resize(8))
    assert len(p) == 2
