"""The U-Net: output of the input size for any size, pixel-shuffle upsampling, groups, pretrained weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from lamina.core import lookup_model, model_recipe
from lamina.data import DataLoaders
from lamina.vision import Normalize, Resize
from lamina.vision.models import create_body
from lamina.vision.segmentation import SegmentationDataLoaders
from lamina.vision.unet import (
    DynamicUnet,
    PixelShuffleUp,
    _flat_key,
    create_unet_model,
    unet_learner,
    unet_splitter,
)


@pytest.fixture(scope="module")
def seg_dls_factory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("unet_seg")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(6):
        img = np.zeros((32, 32, 3), np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        img[4 + i : 16 + i, 6:20, 0] = 255
        mask[4 + i : 16 + i, 6:20] = 1
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(mask, mode="L").save(root / "labels" / f"{i}.png")
    fnames = sorted((root / "images").glob("*.png"))

    def make() -> DataLoaders:
        return SegmentationDataLoaders.from_label_func(
            root,
            fnames,
            lambda f: root / "labels" / f.name,
            codes=["background", "object"],
            valid_pct=0.34,
            seed=0,
            item_tfms=[Resize(32)],
            bs=4,
            num_workers=0,
        )

    return make


@pytest.mark.parametrize("hw", [(28, 28), (45, 61), (17, 9), (64, 64)])
def test_output_has_the_exact_input_size(hw: tuple[int, int]) -> None:
    model = create_unet_model("test_resnet", n_out=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    assert out.shape == (2, 3, *hw)


def test_one_channel_input_and_no_last_cross() -> None:
    model = create_unet_model("test_resnet", n_out=2, n_in=1, last_cross=False).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 45, 61)).shape == (1, 2, 45, 61)


def test_icnr_pixel_shuffle_starts_as_nearest_upsampling() -> None:
    up = PixelShuffleUp(6, 4, scale=2)
    out = up(torch.randn(2, 6, 5, 7))  # (2, 4, 10, 14)
    assert out.shape == (2, 4, 10, 14)
    # each 2x2 block holds one value: the conv's four sub-pixel outputs start equal
    top_left = out[..., 0::2, 0::2]
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        assert torch.allclose(out[..., dy::2, dx::2], top_left)


def test_splitter_gives_encoder_then_decoder_covering_every_parameter() -> None:
    model = create_unet_model("test_resnet", n_out=3)
    enc, dec = unet_splitter(model)
    assert {id(p) for p in enc} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in dec} == {id(p) for p in model.decoder.parameters()}
    assert len(enc) + len(dec) == len(list(model.parameters()))


def test_recipe_is_json_and_rebuilds_the_same_model() -> None:
    model = create_unet_model("test_resnet", n_out=3)
    rec = model_recipe(model)
    assert rec == ("vision.unet", {"arch": "test_resnet", "n_out": 3, "n_in": 3, "last_cross": True})
    json.dumps(rec[1])
    again = lookup_model("vision.unet")(**rec[1])
    assert again.state_dict().keys() == model.state_dict().keys()


class _FakeInfo:
    def channels(self) -> list[int]:
        return [8, 16]

    def reduction(self) -> list[int]:
        return [4, 8]


class _NHWCEncoder(nn.Module):
    """A features_only-like encoder returning channels-last maps, as timm's swin does."""

    feature_info = _FakeInfo()
    output_fmt = "NHWC"

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.a(x)
        f2 = self.b(f1)
        return [f1.permute(0, 2, 3, 1), f2.permute(0, 2, 3, 1)]


def test_channels_last_encoder_outputs_are_permuted() -> None:
    model = DynamicUnet(_NHWCEncoder(), n_out=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 30, 22)).shape == (1, 2, 30, 22)
    with pytest.raises(TypeError, match="features_only=True"):
        DynamicUnet(nn.Conv2d(3, 3, 1), n_out=2)


@pytest.mark.parametrize("arch", ["test_resnet", "test_convnext"])
def test_pretrained_local_file_fills_the_encoder_and_freezes_it(
    arch: str, seg_dls_factory: Any, tmp_path: Path
) -> None:
    # test_convnext's features_only wrapper renames 'stages.0' to 'stages_0': the names are mapped
    body = create_body(arch, n_in=3)
    weights = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in body.state_dict().items()}
    weights["head.fc.weight"] = torch.randn(1000, 8)  # a classifier in the file is dropped
    save_file(weights, str(tmp_path / "w.safetensors"))
    dls = seg_dls_factory()
    learn = unet_learner(dls, arch, pretrained=tmp_path / "w.safetensors")
    model = learn.model
    assert isinstance(model, DynamicUnet)
    got = model.encoder.state_dict()
    flat = {_flat_key(k): v for k, v in weights.items()}
    for k, v in got.items():
        assert torch.equal(v, flat[_flat_key(k)]), k
    assert model.decoder.head[-1].out_channels == 2  # n_out from the codes
    frozen = [p.requires_grad for n, p in model.encoder.named_parameters() if p.ndim > 1]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in model.decoder.parameters())
    norm = [t for t in dls.train.batch_tfms if isinstance(t, Normalize)]
    assert len(norm) == 1 and norm[0].mean == (0.5, 0.5, 0.5)  # the timm weights' own statistics


def test_errors_say_what_to_pass(seg_dls_factory: Any, tmp_path: Path) -> None:
    dls = seg_dls_factory()
    with pytest.raises(TypeError, match="timm architecture name"):
        unet_learner(dls, nn.Conv2d(3, 3, 1), pretrained=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown architecture"):
        unet_learner(dls, "resnet_does_not_exist", pretrained=False)
    save_file({"conv.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="do not fit the body"):
        unet_learner(dls, "test_resnet", pretrained=str(tmp_path / "bad.safetensors"))
