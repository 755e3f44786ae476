"""Security issue 12: an export from a stranger. Each crafted file is a real small export with its
learner.json rewritten; `load_learner` must refuse it with ExportError (and a `help:` line) before it
costs memory, time, a network request or a file read; `export` must refuse what it cannot rebuild."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _export_attack_kit import export_fixture, members, rewrite, watched
from torch import nn

from lamina.train import ExportError, Learner, load_learner
from lamina.vision import ImageDataLoaders, Resize, vision_learner


@pytest.fixture(scope="module")
def vision_learn(mnist_small: Path) -> Learner:
    dls = ImageDataLoaders.from_folder(
        mnist_small, valid_pct=0.2, seed=0, bs=8, item_tfms=Resize(28), num_workers=0, device="cpu"
    )
    return vision_learner(dls, "test_resnet", pretrained=False, lin_ftrs=16)


@pytest.fixture(scope="module")
def vision_file(vision_learn: Learner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vision_learn.export(tmp_path_factory.mktemp("attacks") / "vision.lamina")


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("attacks_mlp")
    return export_fixture().make_learner(tmp).export(tmp / "mlp.lamina")


def _kwarg(key: str, value: Any) -> Any:
    def edit(r: dict[str, Any]) -> None:
        r["model"]["kwargs"][key] = value

    return edit


def _refused(path: Path, match: str = "") -> ExportError:
    with watched() as meter, pytest.raises(ExportError) as e:
        load_learner(path)
    meter.check()  # first: what it cost, then what it said
    assert re.search(match, str(e.value)) and "help:" in str(e.value), str(e.value)[:500]
    return e.value


# -- sizes in the recipe: refused before any memory ----------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"), [("n_out", 50_000_000), ("n_in", 1_000_000), ("lin_ftrs", 10_000_000)]
)
def test_a_huge_size_in_the_recipe_is_refused_before_memory(
    key: str, value: int, vision_file: Path, tmp_path: Path
) -> None:
    bad = rewrite(vision_file, tmp_path / "bad.lamina", _kwarg(key, value))
    _refused(bad, key)


def test_a_model_without_its_own_check_is_built_only_within_its_weights(
    mlp_file: Path, tmp_path: Path
) -> None:
    # test.tiny_mlp registers no check: the generic bound (meta build against the weights' header) holds
    bad = rewrite(mlp_file, tmp_path / "bad.lamina", _kwarg("n_hidden", 200_000_000))
    _refused(bad, "do not fit the model")


@pytest.mark.parametrize("factory", ["vision.classifier", "vision.unet"])
def test_a_giant_architecture_name_is_refused_at_once(
    factory: str, vision_file: Path, tmp_path: Path
) -> None:
    def edit(r: dict[str, Any]) -> None:  # 1.8 MB: timm's name matching took ~20 s over it
        r["model"] = {"name": factory, "kwargs": {**r["model"]["kwargs"], "arch": "resnet" * 300_000}}
        if factory == "vision.unet":
            r["model"]["kwargs"] = {k: r["model"]["kwargs"][k] for k in ("arch", "n_out", "n_in")}

    _refused(rewrite(vision_file, tmp_path / "bad.lamina", edit), "not a plain timm name")


def test_a_5000_digit_integer_is_an_export_error(vision_file: Path, tmp_path: Path) -> None:
    n_out = json.loads(members(vision_file)["learner.json"])["model"]["kwargs"]["n_out"]
    bad = rewrite(
        vision_file,
        tmp_path / "bad.lamina",
        text=lambda s: s.replace(f'"n_out": {n_out}', '"n_out": ' + "9" * 5000),
    )
    _refused(bad, "digits")


def test_a_huge_resize_is_refused_at_load(vision_file: Path, tmp_path: Path) -> None:
    def edit(r: dict[str, Any]) -> None:
        (entry,) = [e for e in r["data"]["item_tfms"] if e["name"] == "vision.Resize"]
        entry["config"]["size"] = [60000, 60000]

    _refused(rewrite(vision_file, tmp_path / "bad.lamina", edit), "Resize")


# -- names that reach the network or the disk ----------------------------------------------------------------
def test_an_hf_hub_architecture_never_reaches_the_network(
    vision_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def no_network(*a: Any, **k: Any) -> Any:
        calls.append(a)
        raise OSError("test: no network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for arch in ("hf-hub:timm/resnet18.a1_in1k", "hf_hub:timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k"):
        _refused(rewrite(vision_file, tmp_path / "bad.lamina", _kwarg("arch", arch)), "not a plain timm name")
    assert calls == []


_OPENED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and "lamina-local-dir" in str(args[0]):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records paths under the marker dir


def test_a_local_dir_architecture_reads_no_file(vision_file: Path, tmp_path: Path) -> None:
    local = tmp_path / "lamina-local-dir"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 3}))
    _OPENED.clear()
    for arch in (f"local-dir:{local}", str(local / "config.json"), "../../etc/passwd"):
        _refused(rewrite(vision_file, tmp_path / "bad.lamina", _kwarg("arch", arch)), "not a plain timm name")
    assert _OPENED == []


# -- the vocabulary and the outputs --------------------------------------------------------------------------
def test_a_vocabulary_that_does_not_match_the_outputs_is_refused(vision_file: Path, tmp_path: Path) -> None:
    def edit(r: dict[str, Any]) -> None:
        (entry,) = [e for e in r["data"]["pipelines"][-1] if e["name"] == "data.Categorize"]
        entry["config"]["vocab"] = entry["config"]["vocab"][:3]

    _refused(rewrite(vision_file, tmp_path / "bad.lamina", edit), "vocabulary has 3 labels")


# -- export refuses what it cannot rebuild -------------------------------------------------------------------
@pytest.mark.parametrize("change", ["ReLU -> GELU", "Dropout p"])
def test_a_model_edited_after_its_factory_is_not_exported(
    change: str, mnist_small: Path, tmp_path: Path
) -> None:
    dls = ImageDataLoaders.from_folder(
        mnist_small, valid_pct=0.2, seed=0, bs=8, item_tfms=Resize(28), num_workers=0, device="cpu"
    )
    learn = vision_learner(dls, "test_resnet", pretrained=False, lin_ftrs=16)
    head: nn.Sequential = learn.model[1]  # type: ignore[index,assignment]
    if change == "ReLU -> GELU":
        (i,) = [i for i, m in enumerate(head) if isinstance(m, nn.ReLU)]
        head[i] = nn.GELU()
    else:
        i = max(i for i, m in enumerate(head) if isinstance(m, nn.Dropout))
        head[i] = nn.Dropout(0.1)
    with pytest.raises(ExportError, match=r"(?s)differs from what its recipe.*help:"):
        learn.export(tmp_path / "x.lamina")
    assert not (tmp_path / "x.lamina").exists()


def test_non_finite_weights_are_not_exported(vision_learn: Learner, tmp_path: Path) -> None:
    w = vision_learn.model[1][-1].weight  # type: ignore[index]
    saved = w.detach().clone()
    with torch.no_grad():
        w[0, 0] = float("nan")
    try:
        with pytest.raises(ExportError, match=r"(?s)'1\.\d+\.weight' holds NaN.*help:"):
            vision_learn.export(tmp_path / "x.lamina")
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert not (tmp_path / "x.lamina").exists()
