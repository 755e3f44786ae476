"""Bad inputs of issue 12, one test each: an error for people (what came, what was expected, `help:`),
a non-zero exit from the command line where the run cannot be right, and nothing written that is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from lamina.cli import main
from lamina.data import DataLoaders
from lamina.train import Learner

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torchvision.*")


def _png(path: Path, size: tuple[int, int] = (8, 8), value: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def _folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 6) -> Path:
    for k, c in enumerate(classes):
        for i in range(n):
            _png(root / c / f"{c}_{i}.png", value=20 + 200 * k + i)
    return root


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- 1. a NaN loss ------------------------------------------------------------------------------------------
def _tiny_learner(cbs: list[Any]) -> Learner:
    x = torch.randn(32, 4)
    ds = list(zip(x, (x[:, 0] > 0).long(), strict=True))
    dls = DataLoaders.from_dsets(ds[:24], ds[24:], bs=8, num_workers=0)
    return Learner(dls, nn.Linear(4, 2), loss_func=nn.CrossEntropyLoss(), lr=1e-3, cbs=cbs)  # type: ignore[arg-type]


def test_nan_loss_is_an_error_naming_epoch_and_step() -> None:
    from lamina.train import NonFiniteLossError, TerminateOnNaN

    class Poison(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.lin(x) * (float("nan") if self.calls == 5 else 1.0)  # 3 + 1 batches an epoch

    learn = _tiny_learner([TerminateOnNaN(error=True)])
    learn.model = Poison()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 0 .*learning rate.*\n.*help: lower"):
        learn.fit(3)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_cli_train_diverging_exits_non_zero_without_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = _folder(tmp_path / "pets", n=8), tmp_path / "run"
    code, _, err = _cli(
        capsys, "train", str(data), "--lr", "1e12", "--epochs", "2", "--bs", "4", "--workers", "0",
        "--out", str(run),
    )  # fmt: skip
    assert code == 2, err
    assert "NaN or infinite at epoch" in err and "help:" in err and "--lr auto" in err
    assert not (run / "model.lamina").exists()


# -- 2. empty labels in a CSV -------------------------------------------------------------------------------
def test_csv_with_empty_labels_names_the_rows(tmp_path: Path) -> None:
    from lamina.vision import ImageDataLoaders

    root = _folder(tmp_path / "pets")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    labels: list[object] = [3 if "cat" in f else 7 for f in files]
    labels[2] = labels[9] = None
    pd.DataFrame({"fname": files, "label": labels}).to_csv(root / "labels.csv", index=False)
    with pytest.raises(ValueError, match=r"2 of 12 rows have no label in column 'label': rows 2, 9") as e:
        ImageDataLoaders.from_csv(root, fn_col="fname", label_col="label", num_workers=0)
    assert "help: fill in those labels" in str(e.value) and "nan" not in str(e.value).split("help:")[1]


def test_csv_multilabel_with_empty_cells_keeps_whole_number_labels(tmp_path: Path) -> None:
    from lamina.vision import ImageDataLoaders

    root = _folder(tmp_path / "pets")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    labels = [3 if "cat" in f else 7 for f in files]
    df = pd.DataFrame({"fname": files, "tags": [float(v) for v in labels]})
    df.loc[[2, 9], "tags"] = np.nan  # pandas reads such a column as floats
    dls = ImageDataLoaders.from_df(
        df, path=root, fn_col="fname", label_col="tags", label_delim=" ", num_workers=0, bs=4, seed=0
    )
    assert dls.vocab == ["3", "7"]  # not '3.0', '7.0', nor a 'nan' label


def test_colreader_reads_an_empty_cell_as_no_value() -> None:
    from lamina.data import ColReader

    row = pd.Series({"fn": "a.png", "label": float("nan")})
    assert ColReader("label")(row) is None
    assert ColReader("label", label_delim=" ")(row) == []


# -- 3. short and huge images -------------------------------------------------------------------------------
def test_png_shorter_than_its_header_is_a_named_decode_error(tmp_path: Path) -> None:
    from lamina.vision.core import load_image

    f = tmp_path / "short.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")  # 18 bytes
    with pytest.raises(OSError, match=r"short\.png.*\n.*help:"):
        load_image(f)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_over_the_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from lamina.vision import core

    f = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(np.zeros((120, 100, 3), np.uint8)).save(f, format=fmt)
    assert core.load_image(f).shape == (3, 120, 100)
    monkeypatch.setattr(core, "MAX_IMAGE_PIXELS", 10_000, raising=False)
    with pytest.raises(ValueError, match=r"big\.(png|jpeg).* 100 x 120 = 12,000 pixels.*10,000") as e:
        core.load_image(f)
    assert "help:" in str(e.value) and "MAX_IMAGE_PIXELS" in str(e.value)


def test_gpu_jpeg_path_checks_the_pixel_limit_in_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.vision import core
    from lamina.vision.jpeg import ReadBytes

    f = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((120, 100, 3), np.uint8)).save(
        f, format="JPEG", exif=b"Exif\x00\x00" + bytes(300)
    )
    monkeypatch.setattr(core, "MAX_IMAGE_PIXELS", 10_000, raising=False)
    with pytest.raises(ValueError, match=r"big\.jpg.* 100 x 120 = 12,000 pixels"):
        ReadBytes()(str(f))


# -- 4. mixed image sizes -----------------------------------------------------------------------------------
def test_mixed_sizes_name_the_file_and_cli_suggests_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path / "pets", n=4)
    odd = _png(root / "dog" / "dog_big.png", size=(12, 10), value=250)
    code, _, err = _cli(
        capsys, "show-batch", str(root), "--bs", "16", "--valid-pct", "0.1", "--workers", "0",
        "--out", str(tmp_path / "b.png"),
    )  # fmt: skip
    assert code == 2
    assert "dog_big.png" in err and "(3, 12, 10)" in err and "(3, 8, 8)" in err, err
    assert "--size" in err and "item_tfms" not in err and "Traceback" not in err
    odd.unlink()


def test_skip_bad_files_is_accepted_by_the_factories_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lamina.vision import ImageDataLoaders

    root = _folder(tmp_path / "pets", n=4)
    (root / "cat" / "cat_bad.png").write_bytes(b"not a png at all")
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.2, seed=0, num_workers=0, skip_bad_files=True)
    assert dls.train.skip_bad_files
    code, _, err = _cli(capsys, "show-batch", str(root), "--workers", "0", "--out", str(tmp_path / "b.png"))
    assert code == 2 and "cat_bad.png" in err and "--skip-bad-files" in err and "Traceback" not in err
    code, _, err = _cli(
        capsys,
        "show-batch",
        str(root),
        "--workers",
        "0",
        "--skip-bad-files",
        "--out",
        str(tmp_path / "b.png"),
    )
    assert code == 0, err


# -- 5. the command line ------------------------------------------------------------------------------------
def test_cli_missing_column_is_one_readable_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path / "pets", n=2)
    (root / "labels.csv").write_text("fname,label\ncat/cat_0.png,cat\ndog/dog_0.png,dog\n")
    code, _, err = _cli(capsys, "show-batch", str(root), "--csv", "labels.csv", "--label-col", "nope")
    assert code == 2
    assert "'nope' not found" in err and "\\n" not in err and "\nhelp:" in err and "Traceback" not in err


def test_cli_debug_shows_the_traceback(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets", n=2)
    (root / "labels.csv").write_text("fname,label\ncat/cat_0.png,cat\ndog/dog_0.png,dog\n")
    with pytest.raises(KeyError):
        main(["show-batch", str(root), "--csv", "labels.csv", "--label-col", "nope", "--debug"])


def test_cli_item_error_in_a_worker_is_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path / "pets", n=4)
    (root / "cat" / "cat_bad.png").write_bytes(b"not a png at all")
    code, _, err = _cli(capsys, "show-batch", str(root), "--workers", "1", "--out", str(tmp_path / "b.png"))
    assert code == 2 and "cat_bad.png" in err
    assert "Traceback" not in err and 'File "' not in err and "worker process" not in err, err


def test_cli_refuses_valid_pct_zero_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _folder(tmp_path / "pets", n=2)
    code, out, err = _cli(capsys, "train", str(root), "--valid-pct", "0", "--out", str(tmp_path / "run"))
    assert code == 2 and "--valid-pct 0 leaves no validation set" in err and "help:" in err
    assert "epoch" not in out and not (tmp_path / "run").exists()


def test_cli_refuses_a_single_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _folder(tmp_path / "pets", classes=("cat",), n=6)
    code, out, err = _cli(capsys, "train", str(root), "--workers", "0", "--out", str(tmp_path / "run"))
    assert code == 2 and "at least 2 classes" in err and "'cat'" in err and "help:" in err
    assert "epoch" not in out and not (tmp_path / "run" / "model.lamina").exists()


# -- 7. predict on segmentation and multi-label models ------------------------------------------------------
def _seg_data(root: Path, n: int = 8) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    m = np.zeros((32, 32), np.uint8)
    m[4:20, 4:20] = 1
    for i in range(n):
        Image.fromarray((rng.random((32, 32, 3)) * 60).astype(np.uint8)).save(root / "images" / f"im{i}.png")
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
    return root / "images", root / "masks"


def test_predict_on_a_segmentation_model_writes_masks_and_class_areas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.vision import SegmentationDataLoaders, unet_learner

    images, masks = _seg_data(tmp_path / "data")
    files = sorted(images.iterdir())
    dls = SegmentationDataLoaders.from_label_func(
        images, files, lambda f: masks / Path(f).name, codes=["background", "square"], bs=4, num_workers=0
    )
    learn = unet_learner(dls, "test_resnet", pretrained=False)
    learn.export(tmp_path / "seg.lamina")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = _cli(capsys, "predict", "seg.lamina", str(files[1]))  # text; masks/ by default
    assert code == 0, err
    assert (
        "im1_mask.png" in stdout and "background" in stdout and (tmp_path / "masks" / "im1_mask.png").exists()
    )
    out = tmp_path / "pred"
    code, stdout, err = _cli(capsys, "predict", "seg.lamina", str(files[0]), "--json", "--out", str(out))
    assert code == 0, err
    (r,) = json.loads(stdout)
    mask = np.asarray(Image.open(r["mask"]))
    assert Path(r["mask"]).parent == out and mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1}
    assert set(r["class_areas"]) == {"background", "square"}
    assert abs(sum(r["class_areas"].values()) - 1) < 1e-4
    assert abs(r["class_areas"]["square"] - float((mask == 1).mean())) < 1e-4


def test_predict_json_on_a_multilabel_model_gives_every_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lamina.vision import ImageDataLoaders, vision_learner

    root = _folder(tmp_path / "pets", n=4)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    tags = ["a b" if "cat" in f else "c" for f in files]
    df = pd.DataFrame({"fname": files, "tags": tags})
    dls = ImageDataLoaders.from_df(
        df, path=root, fn_col="fname", label_col="tags", label_delim=" ", bs=4, num_workers=0
    )
    learn = vision_learner(dls, "test_resnet", pretrained=False)
    learn.export(tmp_path / "multi.lamina")
    code, stdout, err = _cli(
        capsys, "predict", str(tmp_path / "multi.lamina"), str(root / files[0]), "--json"
    )
    assert code == 0, err
    (r,) = json.loads(stdout)
    assert set(r["probabilities"]) == {"a", "b", "c"}
    assert all(0 <= p <= 1 for p in r["probabilities"].values())
    assert r["label"] == [k for k, p in r["probabilities"].items() if p > 0.5]
    (tmp_path / "bad.png").write_bytes(b"not an image")  # an item error: one paragraph, exit 2
    code, stdout, err = _cli(capsys, "predict", str(tmp_path / "multi.lamina"), str(tmp_path / "bad.png"))
    assert code == 2 and "bad.png" in err and "help:" in err and "Traceback" not in err
