"""`lamina shard PATH --out DIR` then `lamina train DIR`: the same run, epoch for epoch, as training on the
folder itself (same split, same batches); a used output folder is refused and left as it was."""

from __future__ import annotations

from pathlib import Path

from _cli import run_lamina


def _train(source: str, run: Path, cwd: Path) -> str:
    r = run_lamina(
        "train", source, "--epochs", "1", "--bs", "32", "--workers", "0", "--out", str(run), cwd=cwd
    )
    assert r.returncode == 0, r.stderr
    return (run / "metrics.csv").read_text()


def test_shard_then_train_is_the_folders_run(mnist_small: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    r = run_lamina("shard", str(mnist_small), "--out", str(shards), "--shard-mb", "0.05", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote 300 images (240 training, 60 validation)" in r.stdout
    assert len(list(shards.glob("shard-*.arrow"))) > 1
    from_shards = _train(str(shards), tmp_path / "a", tmp_path)
    from_folder = _train(str(mnist_small), tmp_path / "b", tmp_path)
    a, b = ([line.split(",")[:4] for line in text.splitlines()] for text in (from_shards, from_folder))
    assert a[0] == ["epoch", "train_loss", "valid_loss", "accuracy"] and len(a) == 2
    assert a == b  # the same losses and accuracy (the time column aside)
    assert float(a[1][3]) >= 0.3  # it learned (10 classes, one short epoch)

    r = run_lamina("shard", str(mnist_small), "--out", str(shards), cwd=tmp_path)
    assert r.returncode == 2 and "not an empty folder" in r.stderr
