"""The batched JPEG path on the CPU: batches, boxes, seeds, one roi_align, geometry, export, selection."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchvision.ops
from PIL import Image

from lamina.core import TensorCategory, TensorImage, lookup_transform
from lamina.data.loader import collate, to_device
from lamina.vision import DecodeImage, ImageDataLoaders, RandomResizedCrop, Resize, vision_learner
from lamina.vision.jpeg import BytesBatch, DecodeJpegBatch, ReadBytes, TensorBytes, gpu_jpeg_decoder


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/valid folders of two classes, 3 JPEGs each, of sizes between 40 and 100 pixels."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        for label in ("a", "b"):
            for i in range(3):
                h, w = (int(v) for v in rng.integers(40, 100, 2))
                _save(root / split / label / f"{i}.jpg", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def _dls(root: Path, **kw: object) -> object:
    args: dict[str, object] = dict(item_tfms=[RandomResizedCrop(32)], bs=4, device="cpu", num_workers=0)
    args.update(kw)
    return ImageDataLoaders.from_folder(root, gpu_jpeg=True, **args)  # type: ignore[arg-type]


def _bytes(*paths: Path) -> BytesBatch:
    return BytesBatch([ReadBytes()(p).as_subclass(torch.Tensor) for p in paths], device=torch.device("cpu"))


def test_batch_shapes_types_and_show(jpeg_folder: Path) -> None:
    dls = _dls(jpeg_folder)
    assert len(dls.train.item_tfms) == 0  # the crop moved to the batch
    assert dls.train.types == (TensorBytes, TensorCategory)
    x, y = dls.one_batch()
    assert type(x) is torch.Tensor and x.dtype == torch.float32 and x.shape == (4, 3, 32, 32)
    assert x.min() >= 0 and x.max() <= 1 and y.shape == (4,)
    assert dls.train.batch_types == (TensorImage, TensorCategory)
    xv, _ = next(iter(dls.valid))
    assert xv.shape == (4, 3, 32, 32)
    dec = dls.train.decode_batch((x, y))
    assert isinstance(dec[0][0], TensorImage) and str(dec[0][1]) in ("a", "b")
    plt.close(dls.show_batch())


def test_collate_keeps_bytes_on_the_host() -> None:
    label = TensorCategory(torch.tensor(0))
    items = [(TensorBytes(torch.arange(n, dtype=torch.uint8)), label) for n in (3, 5)]
    b = collate(items)
    assert isinstance(b[0], BytesBatch) and [len(t) for t in b[0]] == [3, 5]
    moved = to_device(b, "meta")
    assert moved[0].device == torch.device("meta") and moved[0][0].device.type == "cpu"
    assert moved[1].device.type == "meta"


@pytest.mark.parametrize("mode", ["random_resized", "resize", "squish"])
@pytest.mark.parametrize("train", [True, False])
def test_boxes_stay_inside_each_image(mode: str, train: bool) -> None:
    g = torch.Generator().manual_seed(1)
    hw = torch.randint(1, 400, (500, 2), generator=g)
    hw[:5] = torch.tensor([[1, 400], [400, 1], [10, 10], [3, 200], [200, 3]])  # extreme aspects: fallbacks
    b = DecodeJpegBatch((24, 32), mode=mode).boxes(hw, train=train)  # type: ignore[arg-type]
    h, w = hw[:, 0].float(), hw[:, 1].float()
    eps = 1e-3
    assert (b[:, 0] >= -eps).all() and (b[:, 1] >= -eps).all()
    assert (b[:, 2] <= w + eps).all() and (b[:, 3] <= h + eps).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()


def test_seeded_batches_repeat_and_validation_is_deterministic(jpeg_folder: Path) -> None:
    dls = _dls(jpeg_folder, seed=3)
    torch.manual_seed(0)
    a = dls.train.one_batch()[0]
    torch.manual_seed(0)
    b = dls.train.one_batch()[0]
    assert torch.equal(a, b)
    assert torch.equal(dls.valid.one_batch()[0], dls.valid.one_batch()[0])


def test_one_roi_align_call_per_batch(jpeg_folder: Path) -> None:
    dls = _dls(jpeg_folder)
    with mock.patch.object(torchvision.ops, "roi_align", wraps=torchvision.ops.roi_align) as spy:
        dls.train.one_batch()
    assert spy.call_count == 1


def test_white_square_lands_where_the_centre_crop_puts_it(tmp_path: Path) -> None:
    img = np.zeros((64, 96, 3), dtype=np.uint8)
    img[16:48, 32:64] = 255  # rows 16-47, columns 32-63
    f = _save(tmp_path / "sq.jpg", img)
    # val_xtra 0.14 of 32 -> 8 more pixels: scale 64 / 40 = 1.6, centre crop 51.2 px from (22.4, 6.4)
    out = DecodeJpegBatch(32)((_bytes(f),), split_idx=1)[0]
    assert isinstance(out, TensorImage) and out.shape == (1, 3, 32, 32)
    m = out[0].as_subclass(torch.Tensor).mean(0)  # (32, 32); the square maps to rows/columns [6, 26)
    assert (m[8:24, 8:24] > 0.9).all()
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[4:28, 4:28] = False
    assert (m[outside] < 0.1).all()


def test_padding_does_not_darken_borders(tmp_path: Path) -> None:
    small = _save(tmp_path / "small.jpg", np.full((40, 40, 3), 200, dtype=np.uint8))
    large = _save(tmp_path / "large.jpg", np.full((90, 70, 3), 50, dtype=np.uint8))
    out = DecodeJpegBatch(16, mode="squish")((_bytes(small, large),), split_idx=1)[0]
    assert torch.allclose(out[0], torch.full_like(out[0], 200 / 255), atol=0.02)
    assert torch.allclose(out[1], torch.full_like(out[1], 50 / 255), atol=0.02)


def test_batches_over_the_pixel_budget_are_split(tmp_path: Path) -> None:
    files = [_save(tmp_path / f"{i}.jpg", np.full((40 + 10 * i, 50, 3), 30 * i, np.uint8)) for i in range(3)]
    big = DecodeJpegBatch(8, mode="squish")((_bytes(*files),), split_idx=1)[0]
    with mock.patch.object(torchvision.ops, "roi_align", wraps=torchvision.ops.roi_align) as spy:
        small = DecodeJpegBatch(8, mode="squish", max_pixels=3000)((_bytes(*files),), split_idx=1)[0]
    assert spy.call_count > 1 and torch.allclose(big, small)


def test_config_round_trip() -> None:
    t = DecodeJpegBatch((24, 32), min_scale=0.35, mode="resize", val_xtra=0.0)
    cfg = t.to_config()
    assert lookup_transform("vision.DecodeJpegBatch")(**cfg).to_config() == cfg
    assert lookup_transform("vision.ReadBytes")(**ReadBytes().to_config()).to_config() == {}


def test_predict_after_export(jpeg_folder: Path, tmp_path: Path) -> None:
    from lamina.train import load_learner

    dls = _dls(jpeg_folder)
    learn = vision_learner(dls, "test_resnet", pretrained=False)
    f = jpeg_folder / "valid" / "b" / "0.jpg"
    label, _, probs = learn.predict(f)
    learn2 = load_learner(learn.export(tmp_path / "m.lamina"))
    label2, _, probs2 = learn2.predict(f)
    assert str(label2) == str(label) in ("a", "b")
    assert probs2.shape == (2,) and torch.allclose(probs, probs2, atol=1e-5)


def test_automatic_selection_only_for_cuda_and_jpeg() -> None:
    jpgs = [Path("a/x.jpg"), Path("b/y.JPEG")]
    chosen = gpu_jpeg_decoder("cuda", jpgs, [RandomResizedCrop(64, min_scale=0.5)])
    assert isinstance(chosen, DecodeJpegBatch) and chosen.size == (64, 64) and chosen.min_scale == 0.5
    assert gpu_jpeg_decoder("cpu", jpgs, [RandomResizedCrop(64)]) is None
    assert gpu_jpeg_decoder("cuda", [*jpgs, Path("c/z.png")], [RandomResizedCrop(64)]) is None
    assert gpu_jpeg_decoder("cuda", jpgs, [Resize(64), RandomResizedCrop(64)]) is None
    assert gpu_jpeg_decoder("cuda", jpgs, [Resize(64, method="pad")]) is None
    squish = gpu_jpeg_decoder("cuda", jpgs, [Resize(64, method="squish")])
    assert squish is not None and squish.mode == "squish"
    none = gpu_jpeg_decoder(torch.device("cuda", 0), jpgs, None)
    assert none is not None and none.size is None


def test_from_folder_keeps_the_default_path_off_cuda(jpeg_folder: Path) -> None:
    dls = ImageDataLoaders.from_folder(jpeg_folder, item_tfms=[Resize(32)], bs=4, device="cpu", num_workers=0)
    assert any(isinstance(t, DecodeImage) for t in dls.train.dsets.pipelines[0].tfms)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="gpu_jpeg=True"):
        ImageDataLoaders.from_folder(jpeg_folder, item_tfms=[Resize(32, method="pad")], gpu_jpeg=True)


def test_corrupt_jpeg_gives_a_clear_error(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.jpg", np.zeros((40, 40, 3), np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    msg = r"(?s)1 of the 2 files.*not valid JPEG.*positions 1.*gpu_jpeg=False"
    with pytest.raises(ValueError, match=msg):
        DecodeJpegBatch(16)((_bytes(good, bad),), split_idx=0)
    png = tmp_path / "png.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(ValueError, match=r"(?s)png\.jpg.*not a JPEG.*gpu_jpeg=False"):
        ReadBytes()(png)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_chooses_the_gpu_path_and_matches_the_cpu_decode(jpeg_folder: Path) -> None:
    tfms = [Resize(32, method="squish")]  # deterministic: the two paths differ only by their JPEG decoder
    gpu = ImageDataLoaders.from_folder(jpeg_folder, item_tfms=tfms, bs=6, device="cuda", num_workers=0)
    assert len(gpu.valid.item_tfms) == 0 and any(isinstance(t, DecodeJpegBatch) for t in gpu.valid.batch_tfms)
    cpu = _dls(jpeg_folder, item_tfms=tfms, bs=6)
    (xg, yg), (xc, yc) = next(iter(gpu.valid)), next(iter(cpu.valid))
    assert xg.device.type == "cuda" and xg.shape == xc.shape == (6, 3, 32, 32)
    assert torch.equal(yg.cpu(), yc)
    assert (xg.cpu() - xc).abs().mean() < 0.02  # nvjpeg and libjpeg-turbo round the IDCT differently


def test_the_bytes_types_live_in_vision_and_collate_through_the_type_hook() -> None:
    """core knows no bytes type: TensorBytes brings its own batch (BytesBatch) through TensorBase.collate,
    and an export written when the type lived in core still names a known type."""
    import lamina.core
    from lamina.train.export import _resolve_types

    assert not hasattr(lamina.core, "TensorBytes") and TensorBytes.__module__ == "lamina.vision.jpeg"
    b = collate(
        [
            (TensorBytes(torch.arange(3, dtype=torch.uint8)),),
            (TensorBytes(torch.arange(5, dtype=torch.uint8)),),
        ]
    )
    assert isinstance(b[0], BytesBatch) and to_device(b[0], "cpu").device == torch.device("cpu")
    old = {"item": ["lamina.core.types.TensorBytes"], "batch": ["lamina.core.types.TensorImage"]}
    assert _resolve_types(old, "test") == ((TensorBytes,), (TensorImage,))
