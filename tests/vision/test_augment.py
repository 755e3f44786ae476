"""Batch augmentation: one resampling per batch, splits, seeds, masks, points, boxes, lighting, Normalize."""

from __future__ import annotations

import json
import math
from typing import Any
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import lamina.vision.augment as augment
from lamina.core import (
    NotExportableError,
    Pipeline,
    TensorBBox,
    TensorCategory,
    TensorImage,
    TensorImageBW,
    TensorMask,
    TensorPoint,
    Transform,
    lookup_transform,
    owned_input,
    registered_name,
)
from lamina.vision.augment import (
    Brightness,
    Contrast,
    Dihedral,
    Flip,
    GeometricAugment,
    GeometricTfm,
    LightingAugment,
    Normalize,
    Rotate,
    Saturation,
    Warp,
    Zoom,
    aug_transforms,
    imagenet_stats,
)

B, H, W = 4, 32, 40


def plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def make_batch(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(B, 3, H, W, generator=g)
    img = img.to(dtype) if dtype.is_floating_point else (img * 255).round().to(dtype)
    mask = torch.randint(1, 6, (B, H, W), generator=g)
    pts = torch.rand(B, 3, 2, generator=g) * torch.tensor([W, H])
    boxes = torch.tensor([[4.0, 6.0, 30.0, 20.0]]).expand(B, 1, 4).clone()
    cats = torch.arange(B)
    return (
        TensorImage(img),
        TensorMask(mask),
        TensorPoint(pts),
        TensorBBox(boxes),
        TensorCategory(cats),
    )


def strong_geometry(**kw: Any) -> GeometricAugment:
    tfms = [Flip(p=1.0), Warp(magnitude=0.3, p=1.0), Rotate(max_deg=30, p=1.0), Zoom(1.0, 1.5, p=1.0)]
    return GeometricAugment(tfms, **kw)


def blob_batch(dtype: torch.dtype = torch.float32) -> tuple[TensorImage, TensorPoint, torch.Tensor]:
    """Black images with a white 3x3 square each (random place) and a point at each square's centre."""
    g = torch.Generator().manual_seed(1)
    ys = torch.randint(10, H - 10, (8,), generator=g)
    xs = torch.randint(12, W - 12, (8,), generator=g)
    img = torch.zeros(8, 3, H, W)
    for i in range(8):  # test set-up only
        img[i, :, ys[i] - 1 : ys[i] + 2, xs[i] - 1 : xs[i] + 2] = 1.0
    pts = torch.stack([xs + 0.5, ys + 0.5], -1).float()[:, None]  # (8, 1, 2)
    img = img if dtype.is_floating_point else (img * 255).to(dtype)
    return TensorImage(img), TensorPoint(pts), torch.stack([xs, ys], -1)


def centroids(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2) brightness-weighted centres (x, y) of the images' first channel, and their total brightness."""
    b = plain(img)[:, 0].float()
    h, w = b.shape[-2:]
    gy, gx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    mass = b.sum((1, 2))
    c = torch.stack([(b * gx).sum((1, 2)), (b * gy).sum((1, 2))], -1) / mass.clamp_min(1e-6)[:, None]
    return c, mass


def all_tfms() -> list[Transform]:
    return [
        Flip(p=0.7),
        Dihedral(p=0.6),
        Rotate(max_deg=25.0, p=0.4),
        Zoom(min_zoom=0.9, max_zoom=1.3, p=0.3),
        Warp(magnitude=0.1, p=0.2),
        GeometricAugment([Flip(), Rotate(max_deg=5.0)], size=(16, 20), mode="nearest", pad_mode="zeros"),
        GeometricAugment(batch=True),
        Brightness(max_lighting=0.3, p=0.5),
        Contrast(max_lighting=0.1, p=1.0),
        Saturation(max_lighting=0.4, p=0.9),
        LightingAugment([Brightness(), Saturation()], batch=True),
        Normalize.from_stats(*imagenet_stats),
    ]


# ----------------------------------------------------------------------------------------------- types


@pytest.mark.parametrize("tfm", all_tfms(), ids=repr)
@pytest.mark.parametrize("split_idx", [0, 1, None])
def test_types_survive(tfm: Transform, split_idx: int | None) -> None:
    batch = make_batch()
    out = tfm(batch, split_idx=split_idx)
    assert [type(e) for e in out] == [type(e) for e in batch]
    assert out[1].dtype == torch.int64 and out[0].dtype == torch.float32
    assert out[4] is batch[4]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_geometry_keeps_the_image_dtype(dtype: torch.dtype) -> None:
    img = make_batch(dtype)[0]
    out = strong_geometry()(img, split_idx=0)
    assert type(out) is TensorImage and out.dtype == dtype and out.shape == img.shape
    bw = TensorImageBW(plain(img)[:, :1])
    assert type(strong_geometry()(bw, split_idx=0)) is TensorImageBW


def test_orders_and_splits() -> None:
    geo, light = aug_transforms()
    assert isinstance(geo, GeometricAugment) and isinstance(light, LightingAugment)
    assert geo.order == 30 and light.order == 40 and Normalize([0.5], [0.5]).order == 99
    assert geo.split_idx == 0 and light.split_idx == 0
    assert GeometricAugment(size=8).split_idx is None  # resizing also happens on validation


# -------------------------------------------------------------------------------------- one resampling


def test_aug_transforms_resample_once_per_batch() -> None:
    tfms = aug_transforms(
        max_rotate=30, min_zoom=0.8, max_zoom=1.3, max_warp=0.3, size=(24, 24), flip_vert=True
    )
    geo = [t for t in tfms if isinstance(t, GeometricAugment)]
    assert len(geo) == 1 and len(geo[0].tfms) == 4  # dihedral, warp, rotate, zoom: one transform
    pipe = Pipeline(tfms, split_idx=0)
    batch = make_batch()
    with mock.patch.object(F, "grid_sample", wraps=F.grid_sample) as gs:
        out = pipe((batch[0], batch[4]))
    assert gs.call_count == 1
    assert out[0].shape == (B, 3, 24, 24)
    # with a mask: one more call, for the mask (nearest) through the same grid; never one per component
    with mock.patch.object(F, "grid_sample", wraps=F.grid_sample) as gs:
        pipe(batch)
    assert gs.call_count == 2
    modes = sorted(c.kwargs["mode"] for c in gs.call_args_list)
    assert modes == ["bilinear", "nearest"]
    assert gs.call_args_list[0].args[1] is gs.call_args_list[1].args[1]  # the same grid


def test_identity_on_the_validation_split() -> None:
    batch = make_batch()
    with mock.patch.object(F, "grid_sample", wraps=F.grid_sample) as gs:
        out = Pipeline(aug_transforms(max_rotate=45, max_warp=0.4), split_idx=1)(batch)
    assert gs.call_count == 0
    assert all(a is b for a, b in zip(out, batch, strict=True))
    # with a size: validation is only resized (squished), not augmented
    out = Pipeline(aug_transforms(size=(16, 20)), split_idx=1)(batch)
    ref = GeometricAugment(size=(16, 20))(batch, split_idx=0)
    assert all(torch.equal(a, b) for a, b in zip(out, ref, strict=True))
    assert torch.allclose(plain(out[2]), plain(batch[2]) * torch.tensor([0.5, 0.5]))


def test_identity_matrices_leave_the_batch_alone() -> None:
    batch = make_batch()
    out = GeometricAugment([Rotate(p=0.0), Warp(p=0.0)])(batch, split_idx=0)
    assert torch.allclose(out[0], batch[0], atol=1e-5)
    assert torch.equal(out[1], batch[1])
    assert torch.allclose(out[2], batch[2], atol=1e-4)


def test_reproducible_with_a_seed() -> None:
    pipe = Pipeline(aug_transforms(max_rotate=30, min_zoom=0.9, max_zoom=1.2), split_idx=0)
    batch = make_batch()
    torch.manual_seed(42)
    a = pipe(batch)
    torch.manual_seed(42)
    b = pipe(batch)
    torch.manual_seed(43)
    c = pipe(batch)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_batch_mode_draws_one_transform_for_all() -> None:
    img = TensorImage(plain(make_batch()[0])[:1].expand(B, 3, H, W).clone())
    out = strong_geometry(batch=True)(img, split_idx=0)
    assert all(torch.equal(out[0], out[i]) for i in range(1, B))
    out = strong_geometry()(img, split_idx=0)
    assert not all(torch.equal(out[0], out[i]) for i in range(1, B))
    light = LightingAugment([Brightness(0.5, p=1.0), Contrast(0.5, p=1.0)], batch=True)(img, split_idx=0)
    assert all(torch.equal(light[0], light[i]) for i in range(1, B))


# -------------------------------------------------------------------------------- masks, points, boxes


@pytest.mark.parametrize("pad_mode", ["reflection", "zeros", "border"])
def test_masks_keep_their_codes(pad_mode: Any) -> None:
    batch = make_batch()
    out = strong_geometry(pad_mode=pad_mode, size=(20, 28))(batch, split_idx=0)
    codes = set(batch[1].unique().tolist()) | ({0} if pad_mode == "zeros" else set())
    assert set(out[1].unique().tolist()) <= codes
    assert out[1].shape == (B, 20, 28)


def test_mask_follows_the_image() -> None:
    img = torch.zeros(B, 3, H, W)
    img[:, :, 8:24, 10:30] = 1.0
    mask = (img[:, 0] > 0).long()
    torch.manual_seed(0)
    o_img, o_mask = strong_geometry()((TensorImage(img), TensorMask(mask)), split_idx=0)
    disagree = ((plain(o_img)[:, 0] > 0.5).long() != plain(o_mask)).float().mean()
    assert disagree < 0.03


@pytest.mark.parametrize("size", [None, (24, 36), (48, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_points_follow_the_image(size: Any, dtype: torch.dtype) -> None:
    """A point on a bright spot lands on the bright spot after flip + warp + rotate + zoom."""
    img, pts, _ = blob_batch(dtype)
    for seed in range(3):
        torch.manual_seed(seed)
        o_img, o_pts = strong_geometry(size=size, pad_mode="zeros")((img, pts), split_idx=0)
        c, mass = centroids(o_img)
        seen = mass > 0.5 * mass.max()  # the spot is still (wholly) in the picture
        assert seen.sum() >= 4
        err = (c[seen] - plain(o_pts)[seen, 0]).abs()
        assert err.max() < 1.0, err


def test_rotate_is_rigid_in_pixels_for_non_square_images() -> None:
    img = TensorImage(torch.zeros(B, 3, 20, 60))
    pts = TensorPoint(torch.tensor([[[10.0, 5.0], [50.0, 15.0], [30.0, 10.0]]]).expand(B, 3, 2).clone())
    _, out = GeometricAugment([Rotate(max_deg=40, p=1.0)])((img, pts), split_idx=0)
    d_in = torch.cdist(plain(pts), plain(pts))
    d_out = torch.cdist(plain(out), plain(out))
    assert torch.allclose(d_in, d_out, atol=1e-3)
    assert not torch.allclose(plain(out), plain(pts))


def test_flip_alone() -> None:
    batch = make_batch()
    img, _, pts, boxes, _ = Flip(p=1.0)(batch, split_idx=0)
    assert torch.allclose(plain(img), plain(batch[0]).flip(-1), atol=1e-5)
    expected = plain(batch[2]) * torch.tensor([-1.0, 1.0]) + torch.tensor([W, 0.0])
    assert torch.allclose(plain(pts), expected, atol=1e-4)
    assert torch.allclose(plain(boxes), torch.tensor([[[W - 30.0, 6.0, W - 4.0, 20.0]]]).expand(B, 1, 4))
    assert Flip(p=1.0)(batch, split_idx=1) is batch


def test_dihedral_gives_exact_symmetries_of_square_images() -> None:
    img = TensorImage(torch.rand(16, 1, 8, 8))
    out = plain(Dihedral(p=1.0)(img, split_idx=0))
    x = plain(img)
    for i in range(16):
        sym = [x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1, -2)]
        sym += [s.transpose(-1, -2) for s in sym]
        assert any(torch.allclose(out[i], s, atol=1e-5) for s in sym)


def test_boxes_contain_their_transformed_object() -> None:
    img = torch.zeros(8, 3, H, W)
    img[:, :, 8:20, 10:26] = 1.0
    boxes = TensorBBox(torch.tensor([[[10.0, 8.0, 26.0, 20.0]]]).expand(8, 1, 4).clone())
    torch.manual_seed(5)
    o_img, o_box = strong_geometry(pad_mode="zeros", size=(30, 36))((TensorImage(img), boxes), split_idx=0)
    for i in range(8):  # checking, not the hot path
        x1, y1, x2, y2 = o_box[i, 0].tolist()
        assert 0 <= x1 <= x2 <= 36 and 0 <= y1 <= y2 <= 30
        ys, xs = torch.nonzero(plain(o_img)[i, 0] > 0.5, as_tuple=True)
        if len(xs):
            assert xs.min() + 0.5 >= x1 - 1 and xs.max() + 0.5 <= x2 + 1
            assert ys.min() + 0.5 >= y1 - 1 and ys.max() + 0.5 <= y2 + 1
            # and the box is not much larger than the object's own bounding box
            assert (x2 - x1) * (y2 - y1) < 2.5 * (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)


def test_geometry_needs_batches() -> None:
    with pytest.raises(ValueError, match="batch_tfms"):
        strong_geometry()(TensorImage(torch.rand(3, H, W)), split_idx=0)


# -------------------------------------------------------------------------------------------- lighting


def test_lighting_stays_in_range_and_changes_the_image() -> None:
    img = make_batch()[0]
    torch.manual_seed(0)
    out = LightingAugment([Brightness(0.5, p=1.0), Contrast(0.5, p=1.0), Saturation(0.5, p=1.0)])(
        img, split_idx=0
    )
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, img, atol=1e-3)
    assert LightingAugment([Brightness(p=0.0), Contrast(p=0.0)])(img, split_idx=0).equal(img)
    assert LightingAugment([Brightness(p=1.0)])(img, split_idx=1) is img


def test_brightness_contrast_and_saturation_do_what_they_say() -> None:
    img = TensorImage(torch.rand(64, 3, 4, 4) * 0.6 + 0.2)
    torch.manual_seed(0)
    bright = plain(Brightness(0.8, p=1.0)(img, split_idx=0))
    # brighter images are brighter everywhere, darker ones darker everywhere
    up = (bright >= plain(img) - 1e-6).flatten(1).all(1)
    down = (bright <= plain(img) + 1e-6).flatten(1).all(1)
    assert (up | down).all() and up.any() and down.any()
    grey = TensorImage(torch.rand(8, 1, 4, 4).expand(8, 3, 4, 4).clone())
    assert torch.allclose(Saturation(0.8, p=1.0)(grey, split_idx=0), grey, atol=1e-5)
    mid = TensorImage(torch.full((8, 3, 2, 2), 0.5))
    assert torch.allclose(Contrast(0.8, p=1.0)(mid, split_idx=0), mid)  # contrast turns about the middle


def test_lighting_on_uint8_images() -> None:
    img = make_batch(torch.uint8)[0]
    out = LightingAugment([Brightness(0.4, p=1.0)])(img, split_idx=0)
    assert out.dtype == torch.uint8 and type(out) is TensorImage
    assert (plain(out).float() - plain(img).float()).abs().max() > 5


# -------------------------------------------------------------------------------------- aug_transforms


def test_aug_transforms_recipe() -> None:
    geo, light = aug_transforms(mult=2.0, flip_vert=True, max_zoom=1.5, p_affine=0.3, p_lighting=0.6)
    assert isinstance(geo, GeometricAugment) and isinstance(light, LightingAugment)
    assert [type(t) for t in geo.tfms] == [Dihedral, Warp, Rotate, Zoom]
    rotate = geo.tfms[2]
    assert isinstance(rotate, Rotate) and rotate.max_deg == 20.0 and rotate.p == 0.3
    assert [type(t) for t in light.tfms] == [Brightness, Contrast]
    assert all(math.isclose(t.max_lighting, 0.4) and t.p == 0.6 for t in light.tfms)
    assert aug_transforms(do_flip=False, max_rotate=0, max_zoom=1.0, max_warp=0, max_lighting=0) == []
    only_size = aug_transforms(do_flip=False, max_rotate=0, max_zoom=1.0, max_warp=0, max_lighting=0, size=8)
    assert len(only_size) == 1 and isinstance(only_size[0], GeometricAugment) and only_size[0].tfms == []


def test_aug_transforms_through_a_pipeline_on_uint8_then_float() -> None:
    batch = make_batch(torch.uint8)
    out = Pipeline([*aug_transforms(), Normalize.from_stats(*imagenet_stats)], split_idx=0)
    with pytest.raises(TypeError, match="IntToFloatTensor"):
        out(batch)  # Normalize wants floats: the error says what is missing
    res = Pipeline(aug_transforms(), split_idx=0)(batch)
    assert res[0].dtype == torch.uint8


# ------------------------------------------------------------------------------------------- Normalize


def test_normalize_round_trip() -> None:
    norm = Normalize.from_stats(*imagenet_stats)
    batch = make_batch()
    enc = norm(batch)
    assert type(enc[0]) is TensorImage and enc[1] is batch[1]
    mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
    assert torch.allclose(plain(enc[0]), (plain(batch[0]) - mean) / std)
    dec = norm.decode(enc)
    assert type(dec[0]) is TensorImage and torch.allclose(dec[0], batch[0], atol=1e-6)
    assert norm.has_decodes


def test_normalize_and_flip_leave_a_callers_tensor_alone() -> None:
    norm = Normalize.from_stats(*imagenet_stats)
    x = TensorImage(torch.rand(4, 3, 6, 5))
    u8 = TensorImage((torch.rand(4, 3, 6, 5) * 255).to(torch.uint8))
    x0, u0 = x.clone(), u8.clone()
    norm(x)
    Flip(p=1.0)(u8, split_idx=0)
    assert torch.equal(x, x0) and torch.equal(u8, u0)


def test_normalize_and_flip_reuse_a_batch_the_loader_owns() -> None:
    norm = Normalize.from_stats(*imagenet_stats)
    x = TensorImage(torch.rand(4, 3, 6, 5))
    expected = plain(norm(x))
    with owned_input():
        out = norm(x)
    assert out.data_ptr() == x.data_ptr() and torch.allclose(plain(out), expected)
    u8 = TensorImage((torch.rand(8, 3, 6, 5) * 255).to(torch.uint8))
    torch.manual_seed(0)
    reference = plain(Flip(p=0.5)(u8, split_idx=0))
    torch.manual_seed(0)
    with owned_input():
        flipped = Flip(p=0.5)(u8, split_idx=0)
    assert flipped.data_ptr() == u8.data_ptr() and torch.equal(plain(flipped), reference)
    # a broadcast view cannot be written in place: a new tensor, the same values
    view = TensorImage(torch.rand(1, 3, 6, 5).expand(4, 3, 6, 5))
    with owned_input():
        out = norm(view)
    assert out.data_ptr() != view.data_ptr() and torch.allclose(plain(out), plain(norm(view)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flip_on_the_gpu_matches_the_cpu() -> None:
    u8 = TensorImage((torch.rand(16, 3, 6, 5) * 255).to(torch.uint8))
    flipped = torch.rand(16) < 0.5
    s = augment._Sampling(*(torch.empty(0),) * 3, (6, 5), (6, 5), "bilinear", "reflection")
    cpu = GeometricAugment._apply_flip(u8, flipped, s)
    gpu = GeometricAugment._apply_flip(u8.cuda().as_subclass(TensorImage), flipped.cuda(), s)
    assert torch.equal(plain(cpu), plain(gpu).cpu())


def test_normalize_one_channel_and_errors() -> None:
    bw = TensorImageBW(torch.rand(2, 1, 4, 4))
    assert type(Normalize([0.5], [0.25])(bw)) is TensorImageBW
    with pytest.raises(ValueError, match="channels"):
        Normalize.from_stats(*imagenet_stats)(bw)
    with pytest.raises(ValueError, match="help:"):
        Normalize([0.5, 0.5], [0.2])
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.5], [0.0])


# ------------------------------------------------------------------------------------- configs, errors


@pytest.mark.parametrize("tfm", all_tfms(), ids=repr)
def test_config_round_trip(tfm: Any) -> None:
    name = registered_name(tfm)
    assert name is not None and name.startswith("vision.")
    cls: Any = lookup_transform(name)
    assert cls is type(tfm)
    cfg = json.loads(json.dumps(tfm.to_config()))
    rebuilt: Any = cls.from_config(cfg) if hasattr(cls, "from_config") else cls(**cfg)
    assert rebuilt.to_config() == cfg
    assert repr(rebuilt) == repr(tfm)
    batch = make_batch()
    for split_idx in (0, 1):
        torch.manual_seed(0)
        a = tfm(batch, split_idx=split_idx)
        torch.manual_seed(0)
        b = rebuilt(batch, split_idx=split_idx)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_every_registered_augmentation_is_covered() -> None:
    public = [getattr(augment, n) for n in augment.__all__]
    registered = {c for c in public if isinstance(c, type) and registered_name(c) is not None}
    assert registered == {type(t) for t in all_tfms()}


def test_unregistered_component_cannot_be_exported() -> None:
    class Shear(GeometricTfm):
        def matrix(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
            m = torch.eye(3, device=device).repeat(n, 1, 1)
            m[:, 0, 1] = 0.2
            return m

    aug = GeometricAugment([Shear(p=1.0)])
    assert aug(make_batch()[0], split_idx=0).shape == (B, 3, H, W)  # custom components work
    with pytest.raises(NotExportableError, match="register_transform"):
        aug.to_config()


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: Flip(p=1.5), ValueError),
        (lambda: Zoom(min_zoom=1.2, max_zoom=1.1), ValueError),
        (lambda: Warp(magnitude=1.0), ValueError),
        (lambda: Brightness(max_lighting=1.0), ValueError),
        (lambda: GeometricAugment(size=(1, 2, 3)), ValueError),
        (lambda: GeometricAugment(mode="area"), ValueError),  # type: ignore[arg-type]
        (lambda: GeometricAugment(pad_mode="wrap"), ValueError),  # type: ignore[arg-type]
        (lambda: GeometricAugment([Brightness()]), TypeError),  # type: ignore[list-item]
        (lambda: LightingAugment([Flip()]), TypeError),  # type: ignore[list-item]
    ],
)
def test_errors_say_what_to_do(make: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="help:"):
        make()


def test_warp_homography_sends_the_corners_to_their_targets() -> None:
    from lamina.vision.augment import _adjugate, _corner_homography

    targets = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]) + 0.3 * torch.rand(5, 4, 2)
    m = _corner_homography(targets)  # (5, 3, 3)
    corners = torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
    mapped = corners @ m.transpose(1, 2)
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], targets, atol=1e-5)
    adj = _adjugate(m)
    assert torch.allclose(adj / torch.linalg.det(m)[:, None, None], torch.linalg.inv(m), atol=1e-4)


def test_flip_only_takes_the_exact_index_path_and_matches_the_grid() -> None:
    from lamina.vision.augment import Flip, GeometricAugment, Rotate

    x = torch.rand(8, 3, 20, 30).as_subclass(TensorImage)
    m = (torch.rand(8, 20, 30) * 3).long().as_subclass(TensorMask)
    p = (torch.rand(8, 2, 2) * 20).as_subclass(TensorPoint)
    fast = GeometricAugment([Flip(p=0.5)])
    generic = GeometricAugment([Flip(p=0.5), Rotate(max_deg=0.0, p=0.0)])  # same flips, through the grid
    with mock.patch.object(torch.nn.functional, "grid_sample", wraps=torch.nn.functional.grid_sample) as gs:
        torch.manual_seed(3)
        a = fast((x, m, p), split_idx=0)
        assert gs.call_count == 0
    torch.manual_seed(3)
    b = generic((x, m, p), split_idx=0)
    for u, v in zip(a, b, strict=True):
        assert type(u) is type(v)
        u_, v_ = u.as_subclass(torch.Tensor).float(), v.as_subclass(torch.Tensor).float()
        assert torch.allclose(u_, v_, atol=1e-4)
