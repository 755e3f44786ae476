"""The walking skeleton end to end: data -> vision_learner -> fit -> predict -> export -> load_learner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lamina.core import Category, TensorCategory, TensorImage
from lamina.data import CategoryBlock, DataBlock, RandomSplitter, get_image_files, parent_label
from lamina.train import Learner, accuracy, load_learner
from lamina.vision import ImageBlock, ImageDataLoaders, vision_learner
from lamina.vision.models import create_body


@pytest.mark.slow
def test_a_small_resnet_learns_digits_predicts_and_exports(
    mnist_path: Path, mnist_small: Path, tmp_path: Path
) -> None:
    """300 digits, 2 epochs: far above chance (0.1; ~0.75 measured). The 95% on all 5,000 digits is the
    README's four-lines test (tests/test_readme.py); this one checks predict and export agree."""
    torch.manual_seed(0)
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=42, bs=32)
    learn = vision_learner(dls, "test_resnet", pretrained=False, metrics=accuracy)
    learn.fit_one_cycle(2, 1e-2)
    acc = learn.recorder.values[-1][2]
    assert acc >= 0.5, f"valid accuracy {acc:.3f} after 2 epochs"

    f = sorted((mnist_path / "3").glob("*.png"))[0]
    label, idx, probs = learn.predict(f)
    assert isinstance(label, Category) and label == "3"
    assert int(idx) == 3 and probs.shape == (10,) and abs(float(probs.sum()) - 1) < 1e-4

    out = learn.export(tmp_path / "mnist.lamina")
    learn2 = load_learner(out)
    files = [*sorted((mnist_path / "7").glob("*.png"))[:5], f]
    for g in files:
        a, b = learn.predict(g), learn2.predict(g)
        assert a[0] == b[0] and torch.allclose(a[2], b[2], atol=1e-5)


def test_batch_reaching_the_model_is_plain(mnist_small: Path) -> None:
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    seen: list[type] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3 * 28 * 28, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(type(x))
            return self.lin(x.flatten(1))

    learn = Learner(dls, Spy(), metrics=accuracy)
    learn.fit(1, 1e-3)
    assert seen and all(t is torch.Tensor for t in seen)
    assert type(dls.one_batch()[1]) is torch.Tensor
    # ...while decoding puts the types back
    decoded = dls.decode_batch(dls.one_batch(), max_n=2)
    assert isinstance(decoded[0][0], TensorImage) and isinstance(decoded[0][1], Category)


def test_datablock_and_plain_module_one_layer_down(mnist_small: Path) -> None:
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.2, seed=42),
    )
    dls = dblock.dataloaders(mnist_small, bs=32, num_workers=0)
    assert dls.c == 10 and dls.vocab == [str(i) for i in range(10)]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10))
    learn = Learner(dls, model, metrics=accuracy)
    learn.fit_one_cycle(1, 1e-3)
    assert len(learn.recorder.values) == 1
    with pytest.raises(TypeError, match="no recipe"):
        learn.export(mnist_small.parent / "x.lamina")


def test_pretrained_from_local_file_arrives_intact_head_replaced_body_frozen(
    mnist_small: Path, tmp_path: Path
) -> None:
    body = create_body("test_resnet", n_in=3)
    weights = {k: v.clone() for k, v in body.state_dict().items()}
    # a timm checkpoint has a classifier too: it must be dropped
    weights["fc.weight"] = torch.randn(1000, 8)
    save_file(weights, str(tmp_path / "w.safetensors"))
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=str(tmp_path / "w.safetensors"))
    got = learn.model[0].state_dict()
    for k, v in body.state_dict().items():
        assert torch.equal(got[k], v), k
    assert learn.model[1][-1].out_features == 10  # the head is lamina's, sized from the data
    norm_ids = {
        id(p) for m in learn.model[0].modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    frozen = [p.requires_grad for p in learn.model[0].parameters() if id(p) not in norm_ids]
    assert frozen and not any(frozen)  # the body is frozen except its norm layers (train_bn)
    assert all(p.requires_grad for p in learn.model[1].parameters())
    learn.fine_tune(1, freeze_epochs=1)
    assert all(p.requires_grad for p in learn.model.parameters())


def test_pretrained_file_for_another_architecture_is_refused(mnist_small: Path, tmp_path: Path) -> None:
    save_file({"conv.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    with pytest.raises(ValueError, match="do not fit the body"):
        vision_learner(dls, "test_resnet", pretrained=str(tmp_path / "bad.safetensors"))


def test_arch_as_module_and_unknown_name(mnist_small: Path) -> None:
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    learn = vision_learner(dls, body, pretrained=False)
    assert learn.model(torch.zeros(2, 3, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown architecture"):
        vision_learner(dls, "resnet_does_not_exist", pretrained=False)


def test_errors_name_what_is_wrong(tmp_path: Path, mnist_small: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no image found in .*empty.*\.png"):
        ImageDataLoaders.from_folder(tmp_path / "empty", valid_pct=0.2)
    bad = tmp_path / "bad" / "cat"
    bad.mkdir(parents=True)
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dls = ImageDataLoaders.from_folder(tmp_path / "bad", valid_pct=0.0, bs=1, num_workers=0)
    with pytest.raises(Exception, match=r"broken\.png"):
        dls.one_batch()
    learn = vision_learner(
        ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, bs=8, num_workers=0),
        "test_resnet",
        pretrained=False,
    )
    with pytest.raises(Exception, match=r"nope\.png"):
        learn.predict(tmp_path / "nope.png")
    (tmp_path / "junk.lamina").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a lamina export"):
        load_learner(tmp_path / "junk.lamina")


def test_category_type_round_trip(mnist_small: Path) -> None:
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=4, num_workers=0)
    x, y = dls.train.dataset[0]
    assert isinstance(x, TensorImage) and x.dtype == torch.uint8 and x.shape == (3, 28, 28)
    assert isinstance(y, TensorCategory)
    assert dls.dsets is not None and isinstance(dls.dsets.decode((x, y))[1], Category)


def test_a_typo_in_the_architecture_suggests_the_close_names(mnist_small: Path) -> None:
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    with pytest.raises(ValueError, match=r"closest timm names: \['resnet18'"):
        vision_learner(dls, "resnet_19", pretrained=False)


def _offline_hub(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """The Hugging Face hub at a closed loopback port, with an empty cache of our own."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def test_pretrained_offline_fails_at_once_with_the_ways_out(
    mnist_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    _offline_hub(monkeypatch, tmp_path / "hub")
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"(?s)cannot be reached.*help: pass pretrained="):
        vision_learner(dls, "test_resnet", pretrained=True)
    assert time.monotonic() - start < 30  # not a minute of retries


def test_pretrained_weights_in_the_local_hub_cache_load_without_network(
    mnist_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    _offline_hub(monkeypatch, cache)
    body = create_body("test_resnet", n_in=3)
    repo = cache / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(body.state_dict(), str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=0, bs=16, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=True)
    got = learn.model[0].state_dict()
    assert all(torch.equal(got[k], v) for k, v in body.state_dict().items())


@pytest.mark.slow
def test_load_learner_finds_vision_without_the_user_importing_it(mnist_small: Path, tmp_path: Path) -> None:
    """Core imports nothing upward: load_learner imports lamina.vision through its entry point."""
    dls = ImageDataLoaders.from_folder(mnist_small, valid_pct=0.2, seed=42, bs=16, num_workers=0)
    out = vision_learner(dls, "test_resnet", pretrained=False).export(tmp_path / "m.lamina")
    f = sorted((mnist_small / "3").glob("*.png"))[0]
    code = (
        "import sys; from lamina.train import load_learner\n"
        "assert 'lamina.vision' not in sys.modules\n"
        f"learn = load_learner({str(out)!r}); print(learn.predict({str(f)!r})[0]); "
        "print('lamina.vision' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "True" and r.stdout.split()[0] in [str(i) for i in range(10)]
