"""`lamina train` / `lamina predict` on texts: a CSV with --text-col, a folder of .txt files per class."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _text_kit import word_tokenizer

from lamina.cli import main


@pytest.mark.slow
def test_train_csv_then_predict(
    tmp_path: Path, model_folder: Path, reviews: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "reviews.csv"
    reviews.rename(columns={"text": "Review", "label": "Rating"}).to_csv(csv, index=False)
    run = tmp_path / "run"
    argv = ["train", str(csv), "--text-col", "Review", "--label-col", "Rating", "--model", str(model_folder)]
    assert main([*argv, "--epochs", "1", "--lr", "3e-3", "--out", str(run)]) == 0
    assert {"model.lamina", "metrics.csv", "results.csv", "top_losses.csv"} <= {p.name for p in run.iterdir()}
    results = pd.read_csv(run / "results.csv")
    assert list(results.columns) == ["text", "target", "prediction"]
    capsys.readouterr()
    assert (
        main(["predict", str(run / "model.lamina"), "a lovely soft top", "awful torn dress", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in out] == ["a lovely soft top", "awful torn dress"]
    assert all(r["label"] in ("pos", "neg") and 0.5 <= r["probability"] <= 1 for r in out)
    (tmp_path / "one.txt").write_text("a lovely soft top")
    assert main(["predict", str(run / "model.lamina"), str(tmp_path / "one.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["text"] == "a lovely soft top"  # a .txt file: its text
    assert main(["predict", str(run / "model.lamina"), str(csv), "--text-col", "Review"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(reviews) and lines[0].split("\t")[1] in ("pos", "neg")


@pytest.mark.slow
def test_train_text_folder(tmp_path: Path, model_folder: Path, reviews: pd.DataFrame) -> None:
    data = tmp_path / "texts"
    for i, (text, label) in enumerate(zip(reviews.text[:80], reviews.label[:80], strict=True)):
        (data / label).mkdir(parents=True, exist_ok=True)
        (data / label / f"{i}.txt").write_text(text)
    run = tmp_path / "run"
    argv = ["train", str(data), "--model", str(model_folder), "--epochs", "1", "--out", str(run)]
    assert main(argv) == 0
    assert (run / "model.lamina").is_file()


def test_bad_text_inputs_exit_2(
    tmp_path: Path, model_folder: Path, reviews: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "r.csv"
    reviews.to_csv(csv, index=False)
    model = ["--model", str(model_folder)]
    assert main(["train", str(csv), "--text-col", "score", "--label-col", "label", *model]) == 2
    assert "holds numbers" in capsys.readouterr().err
    assert main(["train", str(csv), "--text-col", "nope", "--label-col", "label", *model]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    reviews.assign(label="pos").to_csv(csv, index=False)
    assert main(["train", str(csv), "--text-col", "text", "--label-col", "label", *model]) == 2
    assert "single class" in capsys.readouterr().err
    empty = tmp_path / "no-tokenizer"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "bert"}')
    assert main(["train", str(csv), "--text-col", "text", "--model", str(empty)]) == 2
    assert "has no tokenizer" in capsys.readouterr().err


@pytest.mark.slow
def test_example_runs(tmp_path: Path, model_folder: Path) -> None:
    """examples/text_reviews.py end to end, on a tiny model folder (the real reviews, 120 of them)."""
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "text_reviews.py"
    out = tmp_path / "r.lamina"
    args = ["--n", "120", "--model", str(model_folder), "--out", str(out)]
    res = subprocess.run(
        [sys.executable, str(example), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.is_file() and "reloaded export predicts" in res.stdout


@pytest.mark.slow
def test_shard_a_table_of_texts_then_train_is_the_tables_run(
    tmp_path: Path, model_folder: Path, reviews: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lamina shard reviews.csv --text-col ...` writes token ids; `lamina train SHARDS` trains on them the
    same run as `lamina train reviews.csv --text-col ...` (same split, batches and losses)."""
    csv = tmp_path / "reviews.csv"
    reviews.rename(columns={"text": "Review", "label": "Rating"}).to_csv(csv, index=False)
    cols = ["--text-col", "Review", "--label-col", "Rating", "--model", str(model_folder)]
    shards = tmp_path / "text-shards"
    assert main(["shard", str(csv), *cols, "--out", str(shards), "--shard-mb", "0.01"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {len(reviews)} texts" in said and "tokens" in said and f"lamina train {shards}" in said
    runs = {}
    for name, source in (
        ("table", [str(csv), *cols]),
        ("shards", [str(shards), "--model", str(model_folder)]),
    ):
        out = tmp_path / name
        assert main(["train", *source, "--epochs", "1", "--lr", "3e-3", "--out", str(out)]) == 0
        runs[name] = pd.read_csv(out / "metrics.csv")
        assert (out / "model.lamina").is_file() and (out / "results.csv").is_file()
    table, sharded = runs["table"], runs["shards"]
    assert list(table.columns) == list(sharded.columns)
    pd.testing.assert_frame_equal(table.drop(columns="time"), sharded.drop(columns="time"), atol=1e-5)
    other = word_tokenizer(special=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[X]"))
    (tmp_path / "other").mkdir()
    other.save(str(tmp_path / "other" / "tokenizer.json"))
    assert main(["train", str(shards), "--model", str(tmp_path / "other"), "--epochs", "1"]) == 2
    assert "written as Tokenize-" in capsys.readouterr().err
