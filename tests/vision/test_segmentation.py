"""Segmentation end to end: PNG masks -> SegmentationDataLoaders -> unet_learner -> predict -> export/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from lamina.core import TensorImage, TensorMask
from lamina.data import DataLoaders
from lamina.data.datasets import ItemError
from lamina.train import Dice, JaccardCoeff, load_learner
from lamina.vision import Resize, aug_transforms
from lamina.vision.segmentation import SegmentationDataLoaders, show_segmentation_results
from lamina.vision.unet import unet_learner

CODES = ["background", "red", "blue"]


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 images 45x61: a red rectangle (code 1) and a blue square (code 2) on black (code 0)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.zeros((45, 61, 3), np.uint8)
        mask = np.zeros((45, 61), np.uint8)
        y, x = rng.integers(0, 25), rng.integers(0, 35)
        img[y : y + 15, x : x + 20, 0] = 255
        mask[y : y + 15, x : x + 20] = 1
        y, x = rng.integers(0, 30), rng.integers(0, 45)
        img[y : y + 12, x : x + 12] = (0, 0, 255)
        mask[y : y + 12, x : x + 12] = 2
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        Image.fromarray(mask, mode="L").save(root / "labels" / f"img{i}.png")
    return root


def _fnames(root: Path) -> list[Path]:
    return sorted((root / "images").glob("*.png"))


def _dls(root: Path, size: tuple[int, int], augment: bool = True) -> DataLoaders:
    return SegmentationDataLoaders.from_label_func(
        root,
        [f.relative_to(root) for f in _fnames(root)],  # relative to path
        lambda f: root / "labels" / f.name,
        codes=CODES,
        valid_pct=0.34,
        seed=0,
        item_tfms=[Resize(size)],
        batch_tfms=aug_transforms(p_affine=1.0, max_rotate=20) if augment else None,
        bs=4,
        num_workers=0,
    )


def test_masks_follow_the_images_through_augmentation(seg_path: Path) -> None:
    dls = _dls(seg_path, (45, 61))
    assert dls.c == 3 and dls.vocab == CODES
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 45, 61) and x.dtype == torch.float32
    assert y.shape == (4, 45, 61) and y.dtype == torch.int64
    assert set(y.unique().tolist()) <= {0, 1, 2}
    for img, mask in dls.train.decode_batch((x, y)):
        assert isinstance(img, TensorImage) and isinstance(mask, TensorMask)
        px = img.as_subclass(torch.Tensor).float()  # (3, H, W) in [0, 255]
        m = mask.as_subclass(torch.Tensor)
        for code, channel in ((1, 0), (2, 2)):
            sel = m == code
            if sel.sum() < 10:
                continue
            # nearest-neighbour masks and bilinear images through one grid: edges may differ by a pixel
            assert (px[channel][sel] > 127).float().mean() > 0.85, code


def test_show_batch_draws_each_mask_over_its_image(seg_path: Path) -> None:
    fig = _dls(seg_path, (45, 61)).show_batch(max_n=4)
    assert isinstance(fig, Figure)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4 and all(len(ax.images) == 2 for ax in drawn)  # the image, then the mask


@pytest.mark.parametrize("size", [(28, 28), (45, 61)])
def test_unet_trains_predicts_masks_and_exports(
    seg_path: Path, tmp_path: Path, size: tuple[int, int]
) -> None:
    dls = _dls(seg_path, size)
    learn = unet_learner(dls, "test_resnet", pretrained=False)
    x, _ = dls.one_batch()
    assert learn.model(x).shape == (4, 3, *size)
    learn.fit(1)
    assert len(learn.recorder.values) == 1

    f = _fnames(seg_path)[0]
    mask, dec, probs = learn.predict(f)
    assert isinstance(mask, TensorMask) and mask.shape == size
    assert torch.equal(mask.as_subclass(torch.Tensor), dec) and probs.shape == (3, *size)
    assert torch.allclose(probs.sum(0), torch.ones(size), atol=1e-5)

    learn2 = load_learner(learn.export(tmp_path / "seg.lamina"))
    mask2, dec2, probs2 = learn2.predict(f)
    assert isinstance(mask2, TensorMask) and torch.equal(dec2, dec)
    assert torch.allclose(probs2, probs, atol=1e-6)

    fig = show_segmentation_results(learn, max_n=2)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["target", "pred", "target", "pred"]


@pytest.fixture(scope="module")
def blob_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 noisy 24x24 images, each with one bright square or disk (code 1) of random size and place."""
    from PIL import Image

    root = tmp_path_factory.mktemp("blobs")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:24, 0:24]
    for i in range(100):
        img = rng.integers(0, 110, (24, 24, 3)).astype(np.uint8)  # noise
        r = int(rng.integers(3, 7))
        cy, cx = rng.integers(r, 24 - r, size=2)
        if i % 2:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        img[mask] = rng.integers(150, 256, (int(mask.sum()), 3))  # bright, noisy too
        Image.fromarray(img).save(root / "images" / f"b{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8), mode="L").save(root / "labels" / f"b{i:03d}.png")
    return root


@pytest.mark.slow
def test_unet_learns_to_segment_bright_blobs(blob_path: Path) -> None:
    dls = SegmentationDataLoaders.from_label_func(
        blob_path, _fnames(blob_path), lambda f: blob_path / "labels" / f.name, codes=["background", "blob"],
        valid_pct=0.2, seed=0, bs=8, num_workers=0,
    )  # fmt: skip
    learn = unet_learner(dls, "test_resnet", pretrained=False, metrics=[JaccardCoeff(), Dice()])
    learn.fit_one_cycle(4, 1e-2)  # bs=8: 40 steps, so BatchNorm's running statistics catch up
    jaccard, dice = learn.recorder.values[-1][2:4]

    probs, targs = learn.get_preds()[:2]  # (N, 2, H, W) probabilities, (N, H, W) codes
    pred = probs.argmax(1)
    iou = [float(((pred == c) & (targs == c)).sum() / ((pred == c) | (targs == c)).sum()) for c in (0, 1)]
    assert abs(iou[1] - jaccard) < 1e-4  # the metric the loop reports, recomputed
    # all background scores IoU 0 on the blob and ~0.8 on the background: the mean must beat 0.4 by far
    assert jaccard >= 0.8 and dice >= 0.88 and sum(iou) / 2 >= 0.85, (iou, dice)


def test_factory_errors_say_what_to_pass(seg_path: Path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        SegmentationDataLoaders.from_label_func(seg_path, [], lambda f: f, codes=CODES)
    with pytest.raises(ValueError, match="fewer than 2"):
        SegmentationDataLoaders.from_label_func(seg_path, _fnames(seg_path), lambda f: f, codes=["only"])


def test_mask_codes_outside_the_classes_are_named_with_the_file(seg_path: Path, tmp_path: Path) -> None:
    from PIL import Image

    from lamina.vision.core import DecodeMask

    mask = seg_path / "labels" / "img0.png"  # codes 0, 1 and 2
    assert int(DecodeMask(CODES)(mask).max()) == 2
    with pytest.raises(ValueError, match=r"(?s)img0\.png has class codes \[0, 1, 2\].*outside 0\.\.1.*help:"):
        DecodeMask(["background", "red"])(mask)
    binary = tmp_path / "binary.png"
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), mode="L").save(binary)
    with pytest.raises(ValueError, match=r"(?s)binary\.png.*map 255 to 1.*no codes given.*help:"):
        DecodeMask()(binary)
    with pytest.raises(ItemError, match=r"(?s)images/img\d\.png.*DecodeMask.*labels/img\d\.png.*help:"):
        SegmentationDataLoaders.from_label_func(
            seg_path, _fnames(seg_path), lambda f: seg_path / "labels" / f.name, codes=["background", "red"],
            item_tfms=[Resize(32)], bs=2, num_workers=0,
        ).one_batch()  # fmt: skip


def test_without_codes_the_classes_come_from_the_training_masks(seg_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"(?s)no codes given: reading the \d+ training masks.*help:"):
        dls = SegmentationDataLoaders.from_label_func(
            seg_path, _fnames(seg_path), lambda f: seg_path / "labels" / f.name,
            valid_pct=0.34, seed=0, item_tfms=[Resize(32)], bs=2, num_workers=0,
        )  # fmt: skip
    assert dls.c == 3 and dls.vocab == ["0", "1", "2"]  # codes 0, 1 and 2 in the masks
    _, y = dls.one_batch()
    assert y.dtype == torch.int64 and int(y.max()) <= 2


def test_files_are_taken_as_given_or_under_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lamina.vision.data import resolve_files

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").touch()
    monkeypatch.chdir(tmp_path)
    # a relative path that exists as given (what get_image_files(Path("images")) returns) is not re-rooted
    assert resolve_files("images", [Path("images/a.png")]) == [Path("images/a.png")]
    assert resolve_files("images", ["a.png"]) == [Path("images/a.png")]
    assert resolve_files("elsewhere", [tmp_path / "images" / "a.png"]) == [tmp_path / "images" / "a.png"]
