"""The `lamina` console script, run as a user would (its `main` in this process; two tests start it in a
subprocess of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _cli import run_lamina


@pytest.mark.slow
def test_train_then_predict(mnist_small: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = run_lamina(
        "train",
        str(mnist_small),
        "--epochs",
        "1",
        "--bs",
        "32",
        "--workers",
        "0",
        "--out",
        str(run),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "train_loss" in r.stdout and "valid_loss" in r.stdout and "accuracy" in r.stdout
    for name in ("model.lamina", "metrics.csv", "loss.png", "summary.json"):
        assert (run / name).exists(), name
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,valid_loss,accuracy")

    files = [str(sorted((mnist_small / d).iterdir())[0]) for d in ("3", "8")]
    r = run_lamina("predict", str(run / "model.lamina"), *files, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [o["file"] for o in out] == files
    assert all(o["label"] in [str(i) for i in range(10)] and 0 < o["probability"] <= 1 for o in out)

    r = run_lamina("predict", str(run / "model.lamina"), str(tmp_path / "missing.png"), cwd=tmp_path)
    assert r.returncode != 0 and "missing.png" in r.stderr


def test_train_on_missing_folder_says_so(tmp_path: Path) -> None:
    r = run_lamina("train", str(tmp_path / "nowhere"), cwd=tmp_path, isolated=True)  # a real exit code
    assert r.returncode != 0 and "nowhere" in (r.stderr + r.stdout)


def test_show_batch_writes_a_picture(mnist_small: Path, tmp_path: Path) -> None:
    r = run_lamina(
        "show-batch", str(mnist_small), "--out", str(tmp_path / "b.png"), "--workers", "0", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_datasets_lists_the_registry(tmp_path: Path) -> None:
    r = run_lamina("datasets", cwd=tmp_path, isolated=True)  # `python -m lamina.cli` itself
    assert r.returncode == 0 and "imagenette" in r.stdout


@pytest.mark.slow
def test_example_runs(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "vision_mnist.py"
    r = subprocess.run(
        [sys.executable, str(example), "--epochs", "1", "--out", str(tmp_path / "m.lamina")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert r.returncode == 0, r.stderr
    assert "reloaded export predicts" in r.stdout


def _square_images(root: Path, n: int = 16) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        img = (rng.random((32, 32, 3)) * 60).astype(np.uint8)
        m = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(0, 20, size=2)
        img[y : y + 12, x : x + 12] = 220
        m[y : y + 12, x : x + 12] = 1
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
        rows.append(f"images/im{i}.png,{'top' if y < 10 else 'bottom'} {'left' if x < 10 else 'right'}")
    (root / "labels.csv").write_text("fname,tags\n" + "\n".join(rows) + "\n")


@pytest.mark.slow
def test_train_segmentation_with_masks(tmp_path: Path) -> None:
    _square_images(tmp_path / "data")
    run = tmp_path / "run"
    r = run_lamina(
        "train",
        str(tmp_path / "data" / "images"),
        "--masks",
        str(tmp_path / "data" / "masks"),
        "--codes",
        "background,square",
        "--epochs",
        "1",
        "--bs",
        "4",
        "--workers",
        "0",
        "--out",
        str(run),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "dice" in r.stdout and (run / "model.lamina").exists() and (run / "results.png").exists()


@pytest.mark.slow
def test_train_multilabel_from_csv(tmp_path: Path) -> None:
    _square_images(tmp_path / "data")
    run = tmp_path / "run"
    r = run_lamina(
        "train",
        str(tmp_path / "data"),
        "--csv",
        "labels.csv",
        "--fn-col",
        "fname",
        "--label-col",
        "tags",
        "--label-delim",
        " ",
        "--epochs",
        "1",
        "--bs",
        "4",
        "--workers",
        "0",
        "--out",
        str(run),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "accuracy_multi" in r.stdout and (run / "model.lamina").exists()
    import csv

    header, *rows = list(csv.reader((run / "metrics.csv").open()))
    assert header[-1] == "time" and len(rows) == 1
    assert len(rows[0]) == len(header) and float(rows[0][-1]) > 0  # every column filled: seconds last


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import lamina
    from lamina.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"lamina {lamina.__version__}"


def test_masks_that_do_not_match_the_images_are_named(tmp_path: Path) -> None:
    _square_images(tmp_path / "data")
    (tmp_path / "data" / "masks" / "im3.png").unlink()
    r = run_lamina(
        "train", str(tmp_path / "data" / "images"), "--masks", str(tmp_path / "data" / "masks"), cwd=tmp_path
    )
    assert r.returncode != 0 and "im3.png" in r.stderr


def test_compile_option_adds_the_compile_callback(mnist_small: Path) -> None:
    from lamina.cli import _dataloaders, _learner, build_parser
    from lamina.train.callbacks.hardware import Compile

    def compiles(*extra: str) -> list[Compile]:
        args = build_parser().parse_args(["train", str(mnist_small), "--workers", "0", *extra])
        learn = _learner(args, _dataloaders(args))
        return [cb for cb in learn.cbs if isinstance(cb, Compile)]

    assert compiles() == []  # off by default
    (cb,) = compiles("--compile", "auto")
    assert cb.mode == "auto"
    (cb,) = compiles("--compile", "reduce-overhead")
    assert cb.mode == "reduce-overhead"
    with pytest.raises(SystemExit):
        compiles("--compile", "fastest")


@pytest.mark.slow
def test_lr_find_suggests_the_same_rate_on_every_run(mnist_small: Path, tmp_path: Path) -> None:
    """The model is initialised from --seed, so the same command gives the same suggestion."""
    args = ("lr-find", str(mnist_small), "--bs", "16", "--workers", "0")
    first, second = run_lamina(*args, cwd=tmp_path), run_lamina(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = [r.stdout.strip().splitlines()[-1] for r in (first, second)]
    assert lines[0].startswith("valley") and lines[0] == lines[1]
